//! Who may talk to the node: the mTLS handshake (chain, validity, revocation)
//! and the secure-server registry (fingerprint → member, from when).

use crate::support::*;
use datagate::pki::{CertificateAuthority, LeafSpec};
use rustls::AlertDescription;
use time::{Duration, OffsetDateTime};

fn assert_alert(error: &rustls::Error, expected: AlertDescription) {
    assert!(
        matches!(error, rustls::Error::AlertReceived(alert) if *alert == expected),
        "expected the alert {expected:?}, got {error:?}"
    );
}

/// 004 Điều 3, Điều 6 khoản 3: the consumer receives only the fields the data owner's contract allows.
#[tokio::test]
async fn registered_consumer_receives_exactly_the_allowed_fields() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["x-contract-id"], "portal-citizen");
    assert_eq!(response.headers()["x-road-service"], CITIZEN_SERVICE);
    let body: serde_json::Value = response.json().await.expect("JSON");
    // The whole document: street, district, ward, sex, ethnicity and household
    // size are in the upstream's answer but outside allowed_fields.
    assert_eq!(body, projected_citizen(CITIZEN_ID));
    assert_eq!(upstream.hits(), 1);
}

/// 003 Điều 3 khoản 3: a caller authenticates with a certificate from the trusted CA; without one there is no handshake.
#[tokio::test]
async fn refuses_handshake_without_client_certificate() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let error = node.tls_refusal(None).await;
    assert_alert(&error, AlertDescription::CertificateRequired);
    assert_eq!(upstream.hits(), 0);
}

/// 003 Điều 3 khoản 3: only certificates issued by the trusted CA (Ban Cơ yếu Chính phủ) authenticate.
#[tokio::test]
async fn rejects_certificate_from_unknown_ca() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    // Same subject as the portal, issued by a CA the node does not trust.
    let unknown = CertificateAuthority::new("Unknown Private CA").expect("CA");
    let stranger = unknown
        .issue(&LeafSpec::client("dvc-portal", "000.00.00.H29"))
        .expect("certificate");
    let error = node.tls_refusal(Some(&stranger)).await;
    assert_alert(&error, AlertDescription::UnknownCA);
    assert_eq!(upstream.hits(), 0);
}

/// 003 Điều 3 khoản 3: a CA that only copies the trusted CA's name authenticates no one.
#[tokio::test]
async fn rejects_certificate_from_impostor_ca_with_the_trusted_ca_name() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    // Another key under the trusted CA's very name: the issuer name matches the
    // trust anchor, the signature does not.
    let impostor = TestPki::new();
    let error = node.tls_refusal(Some(&impostor.portal)).await;
    assert_alert(&error, AlertDescription::DecryptError);
    assert_eq!(upstream.hits(), 0);
}

/// 003 Điều 3 khoản 3: an expired certificate no longer authenticates.
#[tokio::test]
async fn rejects_expired_certificate() {
    init();
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let expired = pki.client_valid_between(
        "expired-portal",
        now - Duration::days(30),
        now - Duration::days(1),
    );
    let upstream = MockUpstream::start(Reply::Citizen).await;
    // Registered, so only the validity window can refuse it.
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .register(&expired, PORTAL)
        .start()
        .await;

    let error = node.tls_refusal(Some(&expired)).await;
    assert_alert(&error, AlertDescription::CertificateExpired);
}

/// 003 Điều 3 khoản 3: a certificate that is not yet valid does not authenticate.
#[tokio::test]
async fn rejects_not_yet_valid_certificate() {
    init();
    let pki = TestPki::new();
    let now = OffsetDateTime::now_utc();
    let future = pki.client_valid_between(
        "future-portal",
        now + Duration::days(1),
        now + Duration::days(30),
    );
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .register(&future, PORTAL)
        .start()
        .await;

    // TLS has no "not yet valid" alert: certificate_expired covers "not currently valid".
    let error = node.tls_refusal(Some(&future)).await;
    assert_alert(&error, AlertDescription::CertificateExpired);
}

/// 003 Điều 3 khoản 3: a certificate its CA has revoked (CRL) no longer authenticates.
#[tokio::test]
async fn rejects_revoked_certificate_and_keeps_accepting_others() {
    init();
    let pki = TestPki::new();
    let revoked = pki.client("revoked-portal");
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .register(&revoked, PORTAL)
        .revoke(&revoked)
        .start()
        .await;

    let error = node.tls_refusal(Some(&revoked)).await;
    assert_alert(&error, AlertDescription::CertificateRevoked);

    // The CRL does not get in the way of a certificate it does not list.
    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
}

/// 004 Điều 55 khoản 3: sender identity needs a registered information system, not just a certificate from the trusted CA.
#[tokio::test]
async fn rejects_unregistered_certificate_from_trusted_ca() {
    init();
    let pki = TestPki::new();
    let unregistered = pki.client("unregistered-portal");
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .lookup(&node.client(&unregistered), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 403, "trust.certificate_unregistered").await;
    assert_eq!(upstream.hits(), 0);
}

/// 004 Điều 55 khoản 3: a certificate speaks only for the member it is registered for.
#[tokio::test]
async fn rejects_certificate_registered_for_another_member() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    // The portal's certificate claims to act for the ministry.
    let response = node
        .lookup_citizen_as(&pki.portal, MINISTRY, Some("LAND-TITLE"))
        .await;
    expect_problem(response, 403, "trust.member_mismatch").await;
    assert_eq!(upstream.hits(), 0);
}

/// Design §5 (no article): an information system's registration takes effect only at its effective_from.
#[tokio::test]
async fn rejects_registration_that_is_not_yet_effective() {
    init();
    let pki = TestPki::new();
    let newcomer = pki.client("new-portal-server");
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .register_with(&newcomer, PORTAL, Effective::Later)
        .start()
        .await;

    let response = node
        .lookup(&node.client(&newcomer), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 403, "trust.registration_not_effective").await;
    assert_eq!(upstream.hits(), 0);
}

/// 003 Điều 50 khoản 2: a secure server's registration needs three working days' notice.
#[tokio::test]
async fn registry_entry_with_less_than_three_working_days_notice_is_rejected_at_load() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::new(&pki)
        .citizen_rest_service("http://127.0.0.1:9", "", None)
        .register_server(&pki.portal, PORTAL_MEMBER, Effective::ShortNotice)
        .register(&pki.ministry, MINISTRY)
        .write();

    let errors = datagate::config::load(&written.config_file).expect_err("short notice is refused");
    let registry = written.path("registry.toml");
    assert!(
        errors
            .iter()
            .any(|e| e.file == registry && e.path == "secure_servers[0].effective_from"),
        "{errors:#?}"
    );
    // Only the short-notice entry is at fault.
    assert!(
        errors
            .iter()
            .all(|e| !e.path.starts_with("secure_servers[1]")),
        "{errors:#?}"
    );
}

/// docs/ERRORS.md names the alert a client sees for each refused certificate; this
/// checks the two that differ from the obvious guess (issue 7, finding 10).
/// 003 Điều 3 khoản 3: a self-signed or server-only certificate does not authenticate a caller.
#[tokio::test]
async fn self_signed_and_server_only_certificates_get_the_documented_alerts() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    // A self-signed certificate (a CA of its own, presented as the client).
    let own = CertificateAuthority::new("dvc-portal").expect("CA");
    let der = own.cert_der().to_vec();
    let self_signed = datagate::pki::IssuedCertificate {
        cert_pem: own.cert_pem().to_owned(),
        key_pem: own.key_pem(),
        fingerprint_sha256: datagate::pki::fingerprint_sha256(&der),
        cert_der: der,
        serial: vec![1],
    };
    let error = node.tls_refusal(Some(&self_signed)).await;
    assert_alert(&error, AlertDescription::CertificateUnknown);

    // A certificate of the trusted CA whose extended key usage is server only.
    let server_only = pki
        .ca
        .issue(&LeafSpec::server("dvc-portal", &["portal.example"], &[]))
        .expect("certificate");
    let error = node.tls_refusal(Some(&server_only)).await;
    assert_alert(&error, AlertDescription::UnsupportedCertificate);
    assert_eq!(upstream.hits(), 0);
}
