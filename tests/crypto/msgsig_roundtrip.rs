//! Round trips for the four algorithms and every failure mode, with their codes.

use super::msgsig_common as common;

use common::{TestResult, rfc, signing_key, verifying_key};
use datagate::msgsig::{
    Algorithm, Component, DigestAlgorithm, Message, ResponseWithRequest, SignatureError,
    SignatureParams, SigningKey, VerifyingKey, content_digest, sign, verify,
    verify_message_content_digest,
};

const BODY: &[u8] = br#"{"citizen": "0123456789"}"#;

fn required() -> Vec<Component> {
    vec![
        Component::Method,
        Component::TargetUri,
        Component::Header("content-digest".into()),
        Component::Header("x-road-client".into()),
        Component::Header("x-road-id".into()),
        Component::Header("x-purpose".into()),
    ]
}

fn request() -> Message {
    Message::request("POST", "https://lgsp-b.example/exchange/v1/VN/GOV/000/svc")
        .header("Host", "lgsp-b.example")
        .header("Content-Type", "application/json")
        .header(
            "Content-Digest",
            &content_digest(BODY, DigestAlgorithm::Sha256),
        )
        .header("X-Road-Client", "VN/GOV/000/client")
        .header("X-Road-Id", "8d1c3a0e")
        .header("X-Purpose", "verification")
}

fn params(alg: Algorithm) -> SignatureParams {
    SignatureParams {
        created: Some(1_700_000_000),
        expires: Some(1_700_000_300),
        nonce: Some("n-1".into()),
        keyid: Some("node-a".into()),
        alg: Some(alg),
        tag: Some("datagate".into()),
    }
}

fn keys() -> Result<Vec<(SigningKey, VerifyingKey)>, SignatureError> {
    let rsa15 = SigningKey::from_pem(&rfc("test-key-rsa.pem"), Some(Algorithm::RsaV15Sha256))?;
    let rsa15_pub =
        VerifyingKey::from_pem(&rfc("test-key-rsa.pub.pem"), Some(Algorithm::RsaV15Sha256))?;
    Ok(vec![
        (
            signing_key("test-key-ecc-p256")?,
            verifying_key("test-key-ecc-p256")?,
        ),
        (
            signing_key("test-key-rsa-pss")?,
            verifying_key("test-key-rsa-pss")?,
        ),
        (rsa15, rsa15_pub),
        (
            signing_key("test-key-ed25519")?,
            verifying_key("test-key-ed25519")?,
        ),
    ])
}

fn signed_with(key: &SigningKey) -> Result<Message, SignatureError> {
    let m = request();
    let h = sign("sig1", &required(), &params(key.algorithm()), &m, key)?;
    Ok(m.header("Signature-Input", &h.signature_input)
        .header("Signature", &h.signature))
}

fn code<T>(r: Result<T, SignatureError>) -> Option<&'static str> {
    r.err().map(|e| e.code())
}

#[test]
fn all_four_algorithms_round_trip() -> TestResult {
    let algs: Vec<Algorithm> = keys()?.iter().map(|(s, _)| s.algorithm()).collect();
    assert_eq!(
        algs,
        [
            Algorithm::EcdsaP256Sha256,
            Algorithm::RsaPssSha512,
            Algorithm::RsaV15Sha256,
            Algorithm::Ed25519
        ]
    );
    for (sk, vk) in keys()? {
        let m = signed_with(&sk)?;
        let v = verify("sig1", &m, |p| {
            assert_eq!(p.keyid.as_deref(), Some("node-a"));
            Ok(vk.clone())
        })?;
        assert_eq!(v.params, params(sk.algorithm()));
        v.require_covered(&required())?;
        verify_message_content_digest(&m, BODY)?;
    }
    Ok(())
}

#[test]
fn tampered_body_fails_the_digest() -> TestResult {
    let (sk, vk) = keys()?.remove(0);
    let m = signed_with(&sk)?;
    verify("sig1", &m, |_| Ok(vk.clone()))?;
    let tampered = br#"{"citizen": "9876543210"}"#;
    assert_eq!(
        code(verify_message_content_digest(&m, tampered)),
        Some("digest.mismatch")
    );
    assert_eq!(
        code(verify_message_content_digest(&request().header("x", "y"), BODY).and(Ok(()))),
        None
    );
    let mut no_digest = m.clone();
    no_digest.remove_header("content-digest");
    assert_eq!(
        code(verify_message_content_digest(&no_digest, BODY)),
        Some("digest.missing")
    );
    Ok(())
}

#[test]
fn tampered_or_removed_covered_header() -> TestResult {
    for (sk, vk) in keys()? {
        let m = signed_with(&sk)?;
        let mut tampered = m.clone();
        tampered.remove_header("x-purpose");
        tampered.add_header("X-Purpose", "marketing");
        assert_eq!(
            code(verify("sig1", &tampered, |_| Ok(vk.clone()))),
            Some("signature.invalid")
        );

        let mut removed = m.clone();
        removed.remove_header("x-road-id");
        let err = verify("sig1", &removed, |_| Ok(vk.clone()));
        assert_eq!(
            err,
            Err(SignatureError::ComponentMissing("x-road-id".into()))
        );
        assert_eq!(code(err), Some("signature.component_missing"));

        // A second field line changes the combined value.
        let mut doubled = m.clone();
        doubled.add_header("X-Road-Client", "VN/GOV/000/other");
        assert_eq!(
            code(verify("sig1", &doubled, |_| Ok(vk.clone()))),
            Some("signature.invalid")
        );

        // An uncovered header may change.
        let mut extra = m.clone();
        extra.add_header("Via", "1.1 proxy");
        verify("sig1", &extra, |_| Ok(vk.clone()))?;
    }
    Ok(())
}

#[test]
fn label_and_fields_missing() -> TestResult {
    let (sk, vk) = keys()?.remove(3);
    let m = signed_with(&sk)?;
    let err = verify("sig2", &m, |_| Ok(vk.clone()));
    assert_eq!(err, Err(SignatureError::LabelMissing("sig2".into())));
    assert_eq!(code(err), Some("signature.missing"));
    let mut bare = m.clone();
    bare.remove_header("signature");
    assert_eq!(
        verify("sig1", &bare, |_| Ok(vk.clone())),
        Err(SignatureError::FieldMissing("signature"))
    );
    let bare = request();
    assert_eq!(
        code(verify("sig1", &bare, |_| Ok(vk.clone()))),
        Some("signature.missing")
    );
    Ok(())
}

fn with_input(input: &str, signature: &str) -> Message {
    request()
        .header("Signature-Input", input)
        .header("Signature", signature)
}

#[test]
fn malformed_inputs() -> TestResult {
    let (_, vk) = keys()?.remove(3);
    let sig = "sig1=:AAAA:";
    let cases = [
        ("sig1=(\"@method\"", sig, "signature.malformed"),
        ("sig1=\"@method\"", sig, "signature.malformed"),
        (
            "sig1=(\"@method\" \"@method\");created=1",
            sig,
            "signature.malformed",
        ),
        (
            "sig1=(\"x-purpose\";bs);created=1",
            sig,
            "signature.malformed",
        ),
        (
            "sig1=(\"x-purpose\";tr);created=1",
            sig,
            "signature.malformed",
        ),
        ("sig1=(\"@unknown\");created=1", sig, "signature.malformed"),
        ("sig1=(@method);created=1", sig, "signature.malformed"),
        ("sig1=();created=\"yesterday\"", sig, "signature.malformed"),
        ("sig1=();keyid=1", sig, "signature.malformed"),
        ("sig1=()", "sig1=\"AAAA\"", "signature.malformed"),
        ("sig1=()", "sig1=:AAAA", "signature.malformed"),
        (
            "sig1=();alg=\"hmac-sha256\"",
            sig,
            "signature.algorithm_unsupported",
        ),
        (
            "sig1=();alg=\"rsa-pss-sha512\"",
            sig,
            "signature.key_mismatch",
        ),
        ("sig1=()", sig, "signature.invalid"),
        ("sig1=(\"date\")", sig, "signature.component_missing"),
        (
            "sig1=(\"signature\";req;key=\"a\")",
            sig,
            "signature.component_missing",
        ),
    ];
    for (input, signature, expected) in cases {
        let m = with_input(input, signature);
        assert_eq!(
            code(verify("sig1", &m, |_| Ok(vk.clone()))),
            Some(expected),
            "{input} / {signature}"
        );
    }
    Ok(())
}

#[test]
fn key_resolution_and_mismatch() -> TestResult {
    let (sk, _) = keys()?.remove(3);
    let m = signed_with(&sk)?;
    assert_eq!(
        code(verify("sig1", &m, |_| Err(SignatureError::KeyUnknown))),
        Some("signature.key_unknown")
    );
    // alg says ed25519, the resolver returns an EC key.
    let ec = verifying_key("test-key-ecc-p256")?;
    assert_eq!(
        code(verify("sig1", &m, |_| Ok(ec.clone()))),
        Some("signature.key_mismatch")
    );
    // Signing with an alg the key cannot do.
    let err = sign(
        "sig1",
        &required(),
        &params(Algorithm::RsaPssSha512),
        &request(),
        &sk,
    );
    assert_eq!(code(err), Some("signature.key_mismatch"));
    assert_eq!(
        code(SigningKey::from_pem(
            &rfc("test-key-ecc-p256.pem"),
            Some(Algorithm::Ed25519)
        )),
        Some("signature.key_mismatch")
    );
    Ok(())
}

#[test]
fn without_alg_the_key_decides() -> TestResult {
    let sk = signing_key("test-key-rsa-pss")?;
    let m = request();
    let p = SignatureParams {
        alg: None,
        ..params(Algorithm::RsaPssSha512)
    };
    let h = sign("sig1", &[Component::Method], &p, &m, &sk)?;
    let m = m
        .header("Signature-Input", &h.signature_input)
        .header("Signature", &h.signature);
    let pss = verifying_key("test-key-rsa-pss")?;
    assert_eq!(
        verify("sig1", &m, |_| Ok(pss.clone()))?.algorithm,
        Algorithm::RsaPssSha512
    );
    // A key configured for rsa-v1_5 only does not verify a PSS signature.
    let v15 = VerifyingKey::from_pem(
        &rfc("test-key-rsa-pss.pub.pem"),
        Some(Algorithm::RsaV15Sha256),
    )?;
    assert_eq!(
        code(verify("sig1", &m, |_| Ok(v15.clone()))),
        Some("signature.invalid")
    );
    Ok(())
}

fn signed_response(request: &Message, key: &SigningKey) -> Result<Message, SignatureError> {
    let resp = Message::response(200)
        .header("Content-Type", "application/json")
        .header(
            "Content-Digest",
            &content_digest(b"{}", DigestAlgorithm::Sha512),
        );
    let components = [
        Component::Status,
        Component::Header("content-digest".into()),
        Component::request_signature("sig1"),
        Component::FromRequest(Box::new(Component::Method)),
        Component::FromRequest(Box::new(Component::TargetUri)),
        Component::RequestHeader("x-road-id".into()),
    ];
    let view = ResponseWithRequest {
        response: &resp,
        request,
    };
    let h = sign("resp", &components, &params(key.algorithm()), &view, key)?;
    Ok(resp
        .header("Signature-Input", &h.signature_input)
        .header("Signature", &h.signature))
}

#[test]
fn response_bound_to_the_request_signature() -> TestResult {
    let (sk, vk) = keys()?.remove(0);
    let req_a = signed_with(&sk)?;
    let req_b = signed_with(&sk)?; // ECDSA: same request, different signature bytes.
    let resp = signed_response(&req_a, &sk)?;

    let ok = ResponseWithRequest {
        response: &resp,
        request: &req_a,
    };
    let v = verify("resp", &ok, |_| Ok(vk.clone()))?;
    v.require_covered(&[Component::request_signature("sig1"), Component::Status])?;
    assert!(v.covers(&Component::FromRequest(Box::new(Component::Header(
        "x-road-id".into()
    )))));

    let other = ResponseWithRequest {
        response: &resp,
        request: &req_b,
    };
    assert_eq!(
        code(verify("resp", &other, |_| Ok(vk.clone()))),
        Some("signature.invalid")
    );

    // Without the request at all, the ;req components are missing.
    assert_eq!(
        code(verify("resp", &resp, |_| Ok(vk.clone()))),
        Some("signature.component_missing")
    );

    // The same response embedded with Message::with_request verifies too.
    let embedded = resp.clone().with_request(req_a.clone());
    verify("resp", &embedded, |_| Ok(vk.clone()))?;
    Ok(())
}

#[test]
fn http_crate_messages() -> TestResult {
    let sk = signing_key("test-key-ed25519")?;
    let vk = verifying_key("test-key-ed25519")?;
    let req = http::Request::builder()
        .method("PUT")
        .uri("/exchange/v1/x?a=1")
        .header("host", "lgsp-b.example")
        .header("x-road-client", "VN/GOV/000/client")
        .body(())?;
    let components = [
        Component::Method,
        Component::TargetUri,
        Component::Header("x-road-client".into()),
    ];
    let h = sign("sig1", &components, &params(Algorithm::Ed25519), &req, &sk)?;
    let mut req = req;
    req.headers_mut()
        .insert("signature-input", h.signature_input.parse()?);
    req.headers_mut().insert("signature", h.signature.parse()?);
    let v = verify("sig1", &req, |_| Ok(vk.clone()))?;
    v.require_covered(&components)?;
    // The same request as an owned Message with the absolute URI gives the same base.
    let owned = Message::request("PUT", "https://lgsp-b.example/exchange/v1/x?a=1")
        .header("x-road-client", "VN/GOV/000/client")
        .header("Signature-Input", &h.signature_input)
        .header("Signature", &h.signature);
    verify("sig1", &owned, |_| Ok(vk.clone()))?;
    Ok(())
}
