//! Property: whatever header values and body, sign then verify succeeds, and changing
//! a covered value breaks it.

use super::msgsig_common as common;

use common::{signing_key, verifying_key};
use datagate::msgsig::{
    Component, DigestAlgorithm, Message, SignatureParams, content_digest, sign, verify,
    verify_content_digest,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sign_verify_round_trip(
        client in "[ -~]{0,60}",
        purpose in "[ -~]{0,60}",
        extra in proptest::collection::vec("[ -~]{0,20}", 0..3),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        path in "/[a-zA-Z0-9/_-]{0,30}",
    ) {
        let sk = signing_key("test-key-ed25519").expect("key");
        let vk = verifying_key("test-key-ed25519").expect("key");
        let digest = content_digest(&body, DigestAlgorithm::Sha512);
        let mut m = Message::request("POST", &format!("https://lgsp-b.example{path}"))
            .header("Content-Digest", &digest)
            .header("X-Road-Client", &client)
            .header("X-Purpose", &purpose);
        for e in &extra {
            m.add_header("X-Extra", e);
        }
        let mut components = vec![
            Component::Method,
            Component::TargetUri,
            Component::Header("content-digest".into()),
            Component::Header("x-road-client".into()),
            Component::Header("x-purpose".into()),
        ];
        if !extra.is_empty() {
            components.push(Component::Header("x-extra".into()));
        }
        let params = SignatureParams { created: Some(1), keyid: Some("k".into()), ..SignatureParams::default() };
        let h = sign("sig1", &components, &params, &m, &sk).expect("sign");
        let signed = m.clone()
            .header("Signature-Input", &h.signature_input)
            .header("Signature", &h.signature);
        let v = verify("sig1", &signed, |_| Ok(vk.clone()));
        prop_assert!(v.is_ok(), "{:?}", v);
        prop_assert_eq!(verify_content_digest(&digest, &body), Ok(()));

        let mut tampered = signed.clone();
        tampered.remove_header("x-purpose");
        tampered.add_header("X-Purpose", &format!("{}!", purpose.trim()));
        let err = verify("sig1", &tampered, |_| Ok(vk.clone())).err().map(|e| e.code());
        prop_assert_eq!(err, Some("signature.invalid"));
    }
}
