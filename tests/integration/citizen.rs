//! Citizen assertions on `/r1/` lookups (issue 10, fix first): a contract with an
//! `assurance_level` is served only to a request carrying a valid assertion of at least
//! that level, from a trusted identity provider, issued to the calling portal, consented
//! to the service, and about the request's own subject; checked before any backend is
//! touched (a path subject before the quota, a body subject right after the capped read).

use crate::support::*;
use serde_json::{Value, json};

const ISSUER: &str = IDP_ISSUER;
const OTHER_CITIZEN: &str = "079099000999";

/// The standard node, its lookup contract at `medium`, its search contract (body
/// subject) at `high`, trusting `idp`.
async fn node(pki: &TestPki, upstream: &MockUpstream, idp: &Idp) -> TestNode {
    NodeBuilder::standard(pki, &upstream.url())
        .contract(
            "portal-citizen",
            &portal_citizen_contract().replace(
                "subject: path:citizen_id",
                "subject: path:citizen_id\nassurance_level: medium",
            ),
        )
        .contract(
            "portal-search",
            &portal_search_contract().replace(
                "subject: body:/citizen_id",
                "subject: body:/citizen_id\nassurance_level: high",
            ),
        )
        .file("idp/jwks.json", idp.jwks.clone())
        .section(&format!(
            "[[identity_providers]]\nissuer = \"{ISSUER}\"\njwks_file = \"idp/jwks.json\""
        ))
        .start()
        .await
}

async fn problem(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    for id in [CITIZEN_ID, OTHER_CITIZEN] {
        assert!(!text.contains(id), "a citizen id in the answer: {text}");
    }
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Issue 10 (fix first); 003 Điều 9–11, Điều 11 k3; 004 Điều 6 k2: a citizen lookup under
/// a contract with an assurance level is answered only with a valid assertion about that
/// same citizen. Missing, foreign (issuer), for another portal, expired, without consent
/// to the service, or about another citizen: refused with its own code, and the register
/// is never called.
#[tokio::test]
async fn citizen_lookups_need_a_valid_assertion_about_the_same_citizen() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let idp = Idp::new();
    let node = node(&pki, &upstream, &idp).await;
    let client = node.client(&pki.portal);

    let (status, body) = problem(
        node.lookup(&client, CITIZEN_ID)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("citizen.assertion_missing")),
        "{body}"
    );
    assert_eq!(body["requiredLevel"], "medium");

    let stranger = Idp::new();
    let cases: Vec<(String, u16, &str)> = vec![
        (
            idp.assertion(OTHER_CITIZEN, "medium", |_| {}),
            403,
            "citizen.subject_mismatch",
        ),
        (
            idp.assertion(CITIZEN_ID, "medium", |c| {
                c["aud"] = json!("VN/GOV/000.00.00.H29/tax-kiosk")
            }),
            401,
            "citizen.audience_mismatch",
        ),
        (
            idp.assertion(CITIZEN_ID, "medium", |c| {
                c["iat"] = json!(c["iat"].as_i64().unwrap_or(0) - 1200);
                c["exp"] = json!(c["iat"].as_i64().unwrap_or(0) + 600);
            }),
            401,
            "citizen.assertion_expired",
        ),
        (
            idp.assertion(CITIZEN_ID, "medium", |c| {
                c["iss"] = json!("https://other-idp.test")
            }),
            401,
            "citizen.issuer_unknown",
        ),
        (
            stranger.assertion(CITIZEN_ID, "medium", |_| {}),
            401,
            "citizen.assertion_invalid",
        ),
        (
            idp.assertion(CITIZEN_ID, "medium", |c| {
                c["consent"] =
                    json!({"services": ["VN/GOV/000.00.00.G06/enterprise-db/enterprise"]})
            }),
            403,
            "citizen.consent_missing",
        ),
    ];
    for (token, status, code) in cases {
        let response = node
            .lookup(&client, CITIZEN_ID)
            .header("X-Citizen-Assertion", token)
            .send()
            .await
            .expect("request");
        let (got, body) = problem(response).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{body}");
    }
    assert_eq!(
        upstream.hits(),
        0,
        "the register was called for a refused lookup"
    );

    let response = node
        .lookup(&client, CITIZEN_ID)
        .header(
            "X-Citizen-Assertion",
            idp.assertion(CITIZEN_ID, "high", |_| {}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "a high assertion satisfies medium");
    assert_eq!(upstream.hits(), 1);

    // Two assertions in one request are ambiguous.
    let response = node
        .lookup(&client, CITIZEN_ID)
        .header(
            "X-Citizen-Assertion",
            idp.assertion(CITIZEN_ID, "medium", |_| {}),
        )
        .header(
            "X-Citizen-Assertion",
            idp.assertion(OTHER_CITIZEN, "medium", |_| {}),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
}

/// Issue 10 (fix first); 003 Điều 11 k3: below the contract's level the answer is a
/// step-up naming the level required, not a generic failure; a body subject is bound
/// right after the capped read, before the register is called.
#[tokio::test]
async fn a_lower_level_gets_a_step_up_and_a_body_subject_is_bound() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let idp = Idp::new();
    let node = node(&pki, &upstream, &idp).await;
    let client = node.client(&pki.portal);
    let search = |token: String, citizen: &str| {
        client
            .post(node.url(&format!("/r1/{CITIZEN_SERVICE}/search")))
            .header("X-Road-Client", PORTAL)
            .header("X-Purpose", PURPOSE)
            .header("X-Citizen-Assertion", token)
            .json(&json!({ "citizen_id": citizen }))
            .send()
    };
    let (status, body) = problem(
        search(idp.assertion(CITIZEN_ID, "medium", |_| {}), CITIZEN_ID)
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("citizen.step_up_required")),
        "{body}"
    );
    assert_eq!(body["requiredLevel"], "high");

    let (status, body) = problem(
        search(idp.assertion(CITIZEN_ID, "high", |_| {}), OTHER_CITIZEN)
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("citizen.subject_mismatch")),
        "{body}"
    );
    assert_eq!(upstream.hits(), 0);

    let response = search(idp.assertion(CITIZEN_ID, "high", |_| {}), CITIZEN_ID)
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.hits(), 1);
}

/// No control fails open: a contract with an assurance level on a node that trusts no
/// identity provider (and has no federation to list any) is refused by `datagate check`,
/// and so is a JWKS that is not one.
#[test]
fn check_refuses_levels_without_identity_providers_and_bad_jwks() {
    init();
    let pki = TestPki::new();
    let levelled = portal_citizen_contract().replace(
        "subject: path:citizen_id",
        "subject: path:citizen_id\nassurance_level: medium",
    );
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .contract("portal-citizen", &levelled)
        .write();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["check", "--config"])
        .arg(&written.config_file)
        .output()
        .expect("datagate runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("identity_providers"),
        "{output:?}"
    );

    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .contract("portal-citizen", &levelled)
        .file(
            "idp/jwks.json",
            r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#,
        )
        .section(&format!(
            "[[identity_providers]]\nissuer = \"{ISSUER}\"\njwks_file = \"idp/jwks.json\""
        ))
        .write();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["check", "--config"])
        .arg(&written.config_file)
        .output()
        .expect("datagate runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("identity_providers[0].jwks_file"),
        "{output:?}"
    );

    // An issuer that is not https, and one listed twice.
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .contract("portal-citizen", &levelled)
        .file("idp/jwks.json", Idp::new().jwks)
        .section(
            "[[identity_providers]]\nissuer = \"http://vneid.test\"\njwks_file = \"idp/jwks.json\"\n\n\
             [[identity_providers]]\nissuer = \"http://vneid.test\"\njwks_file = \"idp/jwks.json\"",
        )
        .write();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["check", "--config"])
        .arg(&written.config_file)
        .output()
        .expect("datagate runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("identity_providers[0].issuer"), "{stderr}");
    assert!(stderr.contains("identity_providers[1].issuer"), "{stderr}");
}
