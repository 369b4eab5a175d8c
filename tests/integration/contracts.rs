//! The X-Road protocol headers and the data-sharing contracts: deny by default,
//! purposes, validity, request schema, quota and request body limits.

use crate::support::*;
use serde_json::json;

/// 004 Điều 55 khoản 3: every request names its sender (X-Road-Client).
#[tokio::test]
async fn rejects_request_without_x_road_client() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .client(&pki.portal)
        .get(node.citizen_url(CITIZEN_ID))
        .header("X-Purpose", PURPOSE)
        .send()
        .await
        .expect("request");
    expect_problem(response, 400, "request.client_missing").await;
    assert_eq!(upstream.hits(), 0);
}

/// Design §3 (no article): every exchange, answered or refused, carries a message id.
#[tokio::test]
async fn echoes_given_message_id_and_generates_one_when_absent() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let client = node.client(&pki.portal);

    // Given, on success: echoed.
    let ok = node
        .lookup(&client, CITIZEN_ID)
        .header("X-Road-Id", "test-msg-0001")
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-road-id"], "test-msg-0001");

    // Given, on an error: echoed in the header and the body.
    let denied = node
        .client(&pki.portal)
        .get(node.citizen_url(CITIZEN_ID))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", "MARKETING")
        .header("X-Road-Id", "test-msg-0002")
        .send()
        .await
        .expect("request");
    assert_eq!(denied.headers()["x-road-id"], "test-msg-0002");
    let body = expect_problem(denied, 403, "contract.purpose_not_allowed").await;
    assert_eq!(body["messageId"], "test-msg-0002");

    // Absent, on success: a fresh UUID.
    let generated_ok = node
        .lookup(&client, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(generated_ok.status(), 200);
    let first = generated_ok.headers()["x-road-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    uuid::Uuid::parse_str(&first).expect("a generated X-Road-Id is a UUID");

    // Absent, on an error: a fresh UUID, also in the body.
    let generated_error = client
        .get(node.citizen_url(CITIZEN_ID))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("request");
    let second = generated_error.headers()["x-road-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    uuid::Uuid::parse_str(&second).expect("a generated X-Road-Id is a UUID");
    assert_ne!(first, second, "every exchange gets its own id");
    let body = expect_problem(generated_error, 400, "request.purpose_missing").await;
    assert_eq!(body["messageId"], second.as_str());
}

/// 004 Điều 3, Điều 69 khoản 3: without the data owner's agreement (a contract) there is no data.
#[tokio::test]
async fn denies_client_without_contract() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    // The certificate is bound to this subsystem, but the subsystem has no contract.
    let response = node
        .lookup_citizen_as(&pki.portal, PORTAL_KIOSK, Some(PURPOSE))
        .await;
    expect_problem(response, 403, "contract.not_found").await;
    assert_eq!(upstream.hits(), 0);
}

/// 004 Điều 6 khoản 2: data is used only for a purpose the contract states.
#[tokio::test]
async fn denies_purpose_the_contract_does_not_list() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .lookup_citizen_as(&pki.portal, PORTAL, Some("MARKETING"))
        .await;
    expect_problem(response, 403, "contract.purpose_not_allowed").await;
    assert_eq!(upstream.hits(), 0);
}

/// 004 Điều 6 khoản 2: a request states its purpose when the contract lists purposes.
#[tokio::test]
async fn requires_a_purpose_when_the_contract_lists_purposes() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node.lookup_citizen_as(&pki.portal, PORTAL, None).await;
    expect_problem(response, 400, "request.purpose_missing").await;
    assert_eq!(upstream.hits(), 0);
}

/// 004 Điều 69 khoản 3: access lasts only while the agreement with the data owner is valid.
#[tokio::test]
async fn denies_request_outside_the_contract_validity() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    // The ministry's pilot contract ended in 2021.
    let response = node
        .lookup_citizen_as(&pki.ministry, MINISTRY, Some("LAND-TITLE"))
        .await;
    let body = expect_problem(response, 403, "contract.outside_validity").await;
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("ministry-citizen-pilot"),
        "{body}"
    );
    assert_eq!(upstream.hits(), 0);
}

/// 004 Điều 13 khoản 4, 002 Điều 26 khoản 1: requests follow the published structure, and errors never echo personal data.
#[tokio::test]
async fn rejects_schema_invalid_request_naming_the_path_not_the_value() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let offending = "NOT-A-CCCD-4711";
    let response = node
        .lookup(&node.client(&pki.portal), offending)
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 422, "request.schema_invalid").await;
    let errors = body["errors"].as_array().expect("errors[]");
    assert!(
        errors
            .iter()
            .any(|e| e["path"] == "/path/citizen_id" && e["rule"] == "pattern"),
        "{body}"
    );
    assert!(
        !body.to_string().contains(offending),
        "the offending value leaked: {body}"
    );
    assert!(
        !body.to_string().contains("4711"),
        "part of the offending value leaked: {body}"
    );
    assert_eq!(upstream.hits(), 0);
}

/// Design §5 (no article; the texts are silent on rate limits): over the quota, 429 with Retry-After.
#[tokio::test]
async fn refuses_requests_over_the_contract_quota_with_retry_after() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let contract = format!(
        "{}quota: {{ rate: 1/min, burst: 2 }}\n",
        portal_citizen_contract()
    );
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("portal-citizen", &contract)
        .start()
        .await;
    let client = node.client(&pki.portal);

    for _ in 0..2 {
        let response = node
            .lookup(&client, CITIZEN_ID)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let response = node
        .lookup(&client, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ASCII")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!(
        (1..=60).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    expect_problem(response, 429, "ratelimit.exceeded").await;
    assert_eq!(upstream.hits(), 2);
}

/// 004 Điều 13 khoản 4: a request that follows the published exchange structure is served.
#[tokio::test]
async fn accepts_json_body_that_satisfies_the_request_schema() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .client(&pki.portal)
        .post(node.url(&format!("/r1/{CITIZEN_SERVICE}/search")))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", PURPOSE)
        .json(&json!({ "citizen_id": CITIZEN_ID }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-contract-id"], "portal-citizen-search");
    let body: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({ "citizen_id": CITIZEN_ID, "full_name": "Trần Thị Thử Nghiệm" })
    );
}

/// 002 Điều 26 khoản 2: request bodies are capped.
#[tokio::test]
async fn rejects_request_body_over_the_limit() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .limit("request_body_bytes = 1024")
        .start()
        .await;
    let client = node.client(&pki.portal);
    let url = node.url(&format!("/r1/{CITIZEN_SERVICE}/search"));
    let big = format!(
        "{{\"citizen_id\":\"{CITIZEN_ID}\",\"padding\":\"{}\"}}",
        "x".repeat(4096)
    );

    // With Content-Length.
    let response = client
        .post(&url)
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", PURPOSE)
        .header("Content-Type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("request");
    expect_problem(response, 413, "request.body_too_large").await;

    // Streamed, without Content-Length: counted while read.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        big.as_bytes().chunks(512).map(|c| Ok(c.to_vec())).collect();
    let response = client
        .post(&url)
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", PURPOSE)
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    expect_problem(response, 413, "request.body_too_large").await;
    assert_eq!(upstream.hits(), 0);
}

/// 002 Điều 26 khoản 1: a malformed body is refused without echoing the personal data in it.
#[tokio::test]
async fn rejects_body_that_is_not_json() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .client(&pki.portal)
        .post(node.url(&format!("/r1/{CITIZEN_SERVICE}/search")))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", PURPOSE)
        .header("Content-Type", "application/json")
        .body(format!("{{\"citizen_id\": \"{CITIZEN_ID}\""))
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 400, "request.body_invalid").await;
    assert!(!body.to_string().contains(CITIZEN_ID), "{body}");
    assert_eq!(upstream.hits(), 0);
}
