//! RFC 9421 Appendix B and §4.3 vectors: exact signature bases, reproduced
//! deterministic signatures, verified randomised ones.

use super::msgsig_common as common;

use common::{TestResult, rfc, signing_key, verifying_key};
use datagate::msgsig::http1::parse_http1_response;
use datagate::msgsig::{
    Algorithm, Component, HttpMessage, Message, ParsedMessage, ResponseWithRequest,
    SignatureParams, VerifyingKey, check_freshness, parse_http1_request, sign, signature_base,
    verify, verify_message_content_digest,
};

const CREATED: i64 = 1_618_884_473;

fn request() -> ParsedMessage {
    parse_http1_request(rfc("test-request.http").as_bytes()).expect("test-request parses")
}

fn response() -> ParsedMessage {
    parse_http1_response(rfc("test-response.http").as_bytes()).expect("test-response parses")
}

fn h(name: &str) -> Component {
    Component::Header(name.into())
}

fn params(keyid: &str) -> SignatureParams {
    SignatureParams {
        created: Some(CREATED),
        keyid: Some(keyid.into()),
        ..SignatureParams::default()
    }
}

/// Adds the RFC's Signature-Input/Signature for `vector` and verifies `label` with `key`.
fn verify_published(
    mut message: ParsedMessage,
    vector: &str,
    label: &str,
    key: VerifyingKey,
) -> Result<datagate::msgsig::Verified, datagate::msgsig::SignatureError> {
    message.add_header(
        "Signature-Input",
        &rfc(&format!("{vector}.signature-input")),
    );
    message.add_header("Signature", &rfc(&format!("{vector}.signature")));
    verify(label, &message, |_| Ok(key.clone()))
}

#[test]
fn bodies_match_their_content_digest() -> TestResult {
    let req = request();
    verify_message_content_digest(&req, req.body())?;
    let resp = response();
    verify_message_content_digest(&resp, resp.body())?;
    Ok(())
}

#[test]
fn b21_minimal_rsa_pss() -> TestResult {
    let p = SignatureParams {
        nonce: Some("b3k2pp5k7z-50gnwp.yemd".into()),
        ..params("test-key-rsa-pss")
    };
    assert_eq!(signature_base(&[], &p, &request())?, rfc("b21.base"));
    let v = verify_published(
        request(),
        "b21",
        "sig-b21",
        verifying_key("test-key-rsa-pss")?,
    )?;
    assert_eq!(v.params, p);
    assert_eq!(v.algorithm, Algorithm::RsaPssSha512);
    assert!(v.components.is_empty());

    // Our own PSS signature over the same base: the header matches, and it verifies.
    let key = signing_key("test-key-rsa-pss")?;
    assert_eq!(key.algorithm(), Algorithm::RsaPssSha512);
    let signed = sign("sig-b21", &[], &p, &request(), &key)?;
    assert_eq!(signed.signature_input, rfc("b21.signature-input"));
    let mut m = request();
    m.add_header("Signature-Input", &signed.signature_input);
    m.add_header("Signature", &signed.signature);
    let vk = verifying_key("test-key-rsa-pss")?;
    verify("sig-b21", &m, |_| Ok(vk.clone()))?;
    Ok(())
}

#[test]
fn b22_selective_components() -> TestResult {
    let components = [
        Component::Authority,
        h("content-digest"),
        Component::QueryParam("Pet".into()),
    ];
    let p = SignatureParams {
        tag: Some("header-example".into()),
        ..params("test-key-rsa-pss")
    };
    assert_eq!(
        signature_base(&components, &p, &request())?,
        rfc("b22.base")
    );
    let v = verify_published(
        request(),
        "b22",
        "sig-b22",
        verifying_key("test-key-rsa-pss")?,
    )?;
    assert_eq!(v.components, components);
    assert_eq!(v.params.tag.as_deref(), Some("header-example"));
    let signed = sign(
        "sig-b22",
        &components,
        &p,
        &request(),
        &signing_key("test-key-rsa-pss")?,
    )?;
    assert_eq!(signed.signature_input, rfc("b22.signature-input"));
    Ok(())
}

#[test]
fn b23_full_coverage() -> TestResult {
    let components = [
        h("date"),
        Component::Method,
        Component::Path,
        Component::Query,
        Component::Authority,
        h("content-type"),
        h("content-digest"),
        h("content-length"),
    ];
    let p = params("test-key-rsa-pss");
    assert_eq!(
        signature_base(&components, &p, &request())?,
        rfc("b23.base")
    );
    let v = verify_published(
        request(),
        "b23",
        "sig-b23",
        verifying_key("test-key-rsa-pss")?,
    )?;
    v.require_covered(&[Component::Method, Component::Path, h("content-digest")])?;
    Ok(())
}

#[test]
fn b24_response_ecdsa() -> TestResult {
    let components = [
        Component::Status,
        h("content-type"),
        h("content-digest"),
        h("content-length"),
    ];
    let p = params("test-key-ecc-p256");
    assert_eq!(
        signature_base(&components, &p, &response())?,
        rfc("b24.base")
    );
    let v = verify_published(
        response(),
        "b24",
        "sig-b24",
        verifying_key("test-key-ecc-p256")?,
    )?;
    assert_eq!(v.algorithm, Algorithm::EcdsaP256Sha256);

    // The SEC1 private key signs what the SPKI public key verifies.
    let signed = sign(
        "sig-b24",
        &components,
        &p,
        &response(),
        &signing_key("test-key-ecc-p256")?,
    )?;
    assert_eq!(signed.signature_input, rfc("b24.signature-input"));
    let mut m = response();
    m.add_header("Signature-Input", &signed.signature_input);
    m.add_header("Signature", &signed.signature);
    let vk = verifying_key("test-key-ecc-p256")?;
    verify("sig-b24", &m, |_| Ok(vk.clone()))?;
    Ok(())
}

#[test]
fn b26_ed25519_is_reproduced() -> TestResult {
    let components = [
        h("date"),
        Component::Method,
        Component::Path,
        Component::Authority,
        h("content-type"),
        h("content-length"),
    ];
    let p = params("test-key-ed25519");
    assert_eq!(
        signature_base(&components, &p, &request())?,
        rfc("b26.base")
    );
    let signed = sign(
        "sig-b26",
        &components,
        &p,
        &request(),
        &signing_key("test-key-ed25519")?,
    )?;
    assert_eq!(signed.signature_input, rfc("b26.signature-input"));
    assert_eq!(signed.signature, rfc("b26.signature"));
    verify_published(
        request(),
        "b26",
        "sig-b26",
        verifying_key("test-key-ed25519")?,
    )?;
    Ok(())
}

fn s43_components() -> Vec<Component> {
    vec![
        Component::Method,
        Component::Authority,
        Component::Path,
        h("content-digest"),
        h("content-type"),
        h("content-length"),
    ]
}

#[test]
fn s43_client_signature_verifies() -> TestResult {
    let p = SignatureParams {
        created: Some(1_618_884_475),
        keyid: Some("test-key-ecc-p256".into()),
        ..SignatureParams::default()
    };
    assert_eq!(
        signature_base(&s43_components(), &p, &request())?,
        rfc("s43-sig1.base")
    );
    verify_published(
        request(),
        "s43-sig1",
        "sig1",
        verifying_key("test-key-ecc-p256")?,
    )?;
    Ok(())
}

#[test]
fn s43_proxy_rsa_v1_5_is_reproduced() -> TestResult {
    let proxied = parse_http1_request(rfc("proxy-request.http").as_bytes())?;
    let mut components = s43_components();
    components.push(h("forwarded"));
    let p = SignatureParams {
        created: Some(1_618_884_480),
        expires: Some(1_618_884_540),
        keyid: Some("test-key-rsa".into()),
        alg: Some(Algorithm::RsaV15Sha256),
        ..SignatureParams::default()
    };
    assert_eq!(
        signature_base(&components, &p, &proxied)?,
        rfc("s43-proxy_sig.base")
    );
    let key = datagate::msgsig::SigningKey::from_pem(
        &rfc("test-key-rsa.pem"),
        Some(Algorithm::RsaV15Sha256),
    )?;
    let signed = sign("proxy_sig", &components, &p, &proxied, &key)?;
    assert_eq!(signed.signature_input, rfc("s43-proxy_sig.signature-input"));
    assert_eq!(signed.signature, rfc("s43-proxy_sig.signature"));

    // The PKCS#1 public key verifies it once rsa-v1_5-sha256 is allowed, not before.
    let pss_only = VerifyingKey::from_pem(&rfc("test-key-rsa.pub.pem"), None)?;
    let err = verify_published(
        proxied.clone(),
        "s43-proxy_sig",
        "proxy_sig",
        pss_only.clone(),
    );
    assert_eq!(err.err().map(|e| e.code()), Some("signature.key_mismatch"));
    let both = pss_only.allow(Algorithm::RsaV15Sha256)?;
    let v = verify_published(proxied, "s43-proxy_sig", "proxy_sig", both)?;
    assert_eq!(v.algorithm, Algorithm::RsaV15Sha256);
    assert_eq!(check_freshness(&v.params, 1_618_884_500, 300, 0), Ok(()));
    assert_eq!(
        check_freshness(&v.params, 1_618_884_541, 300, 0)
            .err()
            .map(|e| e.code()),
        Some("signature.expired")
    );
    Ok(())
}

#[test]
fn s43_both_signatures_in_one_message() -> TestResult {
    // Both signatures side by side, as the proxy forwards them: each label verifies
    // against its own key; sig1 no longer matches the rewritten Host.
    let mut m = parse_http1_request(rfc("proxy-request.http").as_bytes())?;
    m.add_header(
        "Signature-Input",
        &format!(
            "{}, {}",
            rfc("s43-sig1.signature-input"),
            rfc("s43-proxy_sig.signature-input")
        ),
    );
    m.add_header("Signature", &rfc("s43-sig1.signature"));
    m.add_header("Signature", &rfc("s43-proxy_sig.signature"));
    let rsa = VerifyingKey::from_pem(&rfc("test-key-rsa.pub.pem"), Some(Algorithm::RsaV15Sha256))?;
    verify("proxy_sig", &m, |p| {
        assert_eq!(p.keyid.as_deref(), Some("test-key-rsa"));
        Ok(rsa.clone())
    })?;
    let ec = verifying_key("test-key-ecc-p256")?;
    let err = verify("sig1", &m, |_| Ok(ec.clone()));
    assert_eq!(err.err().map(|e| e.code()), Some("signature.invalid"));
    Ok(())
}

/// RFC 9421 §2.4's request-response binding, as published in
/// draft-ietf-httpbis-message-signatures-13 (the same keys; the final RFC's §2.4 text
/// could not be retrieved offline). The response signature covers the request's
/// `sig1` signature value with `"signature";req;key="sig1"`.
#[test]
fn s24_response_covers_request_signature() -> TestResult {
    let sig1 = "sig1=:LAH8BjcfcOcLojiuOBFWn0P5keD3xAOuJRGziCLuD8r5MW9S0RoXXLzLSRfGY/3SF8kVIkHjE13SEFdTo4Af/fJ/Pu9wheqoLVdwXyY/UkBIS1M8Brc8IODsn5DFIrG0IrburbLi0uCc+E2ZIIb6HbUJ+o+jP58JelMTe0QE3IpWINTEzpxjqDf5/Df+InHCAkQCTuKsamjWXUpyOT1Wkxi7YPVNOjW4MfNuTZ9HdbD2Tr65+BXeTG9ZS/9SWuXAc+BZ8WyPz0QRz//ec3uWXd7bYYODSjRAxHqX+S1ag3LZElYyUKaAIjZ8MGOt4gXEwCSLDv/zqxZeWLj/PDkn6w==:";
    let req = Message::request("POST", "https://example.com/foo?param=Value&Pet=dog")
        .header("Host", "example.com")
        .header("Signature", sig1);
    let resp = Message::response(503)
        .header("Date", "Tue, 20 Apr 2021 02:07:56 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Length", "62");
    let components = [
        Component::Status,
        h("content-length"),
        h("content-type"),
        Component::request_signature("sig1"),
        Component::FromRequest(Box::new(Component::Authority)),
        Component::FromRequest(Box::new(Component::Method)),
    ];
    let p = SignatureParams {
        created: Some(1_618_884_479),
        keyid: Some("test-key-ecc-p256".into()),
        ..SignatureParams::default()
    };
    let view = ResponseWithRequest {
        response: &resp,
        request: &req,
    };
    let expected = [
        "\"@status\": 503",
        "\"content-length\": 62",
        "\"content-type\": application/json",
        &format!("\"signature\";req;key=\"sig1\": {}", sig1.trim_start_matches("sig1=")),
        "\"@authority\";req: example.com",
        "\"@method\";req: POST",
        "\"@signature-params\": (\"@status\" \"content-length\" \"content-type\" \"signature\";req;key=\"sig1\" \"@authority\";req \"@method\";req);created=1618884479;keyid=\"test-key-ecc-p256\"",
    ]
    .join("\n");
    assert_eq!(signature_base(&components, &p, &view)?, expected);

    let signed_resp = resp
        .clone()
        .header("Signature-Input", "reqres=(\"@status\" \"content-length\" \"content-type\" \"signature\";req;key=\"sig1\" \"@authority\";req \"@method\";req);created=1618884479;keyid=\"test-key-ecc-p256\"")
        .header("Signature", "reqres=:mh17P4TbYYBmBwsXPT4nsyVzW4Rp9Fb8WcvnfqKCQLoMvzOBLD/n32tL/GPW6XE5GAS5bdsg1khK6lBzV1Cx/Q==:");
    let view = ResponseWithRequest {
        response: &signed_resp,
        request: &req,
    };
    let ec = verifying_key("test-key-ecc-p256")?;
    let v = verify("reqres", &view, |_| Ok(ec.clone()))?;
    assert!(v.covers(&Component::request_signature("sig1")));
    assert!(v.covers(&Component::FromRequest(Box::new(Component::Method))));
    assert_eq!(view.status(), Some(503));
    Ok(())
}
