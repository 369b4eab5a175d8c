//! The one error shape: RFC 9457 problem+json with a stable code, the HTTP
//! status, and the exchange's message id (the `X-Road-Id` header).

use crate::support::*;
use serde_json::json;

/// 002 Điều 26 khoản 1: no error echoes personal data; design §10 invariant 6: one problem+json shape.
#[tokio::test]
async fn every_error_is_problem_json_carrying_code_status_and_message_id() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let portal = node.client(&pki.portal);
    let stranger = node.client(&pki.client("unregistered"));
    let citizen = node.citizen_url(CITIZEN_ID);

    // (request, expected status, expected code); half of them carry an X-Road-Id.
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            portal
                .get(node.url("/status"))
                .header("X-Road-Client", PORTAL),
            404,
            "request.route_not_found",
        ),
        (
            portal
                .get(node.url("/r1/VN/GOV/short"))
                .header("X-Road-Client", PORTAL),
            400,
            "request.path_invalid",
        ),
        (
            portal.get(&citizen).header("X-Purpose", PURPOSE),
            400,
            "request.client_missing",
        ),
        (
            portal.get(&citizen).header("X-Road-Client", "not-a-client"),
            400,
            "request.client_invalid",
        ),
        (
            portal.get(&citizen).header("X-Road-Client", PORTAL),
            400,
            "request.purpose_missing",
        ),
        (
            portal
                .get(&citizen)
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", "MARKETING"),
            403,
            "contract.purpose_not_allowed",
        ),
        (
            portal
                .get(&citizen)
                .header("X-Road-Client", PORTAL_KIOSK)
                .header("X-Purpose", PURPOSE),
            403,
            "contract.not_found",
        ),
        (
            portal
                .get(&citizen)
                .header("X-Road-Client", "VN/GOV/000.00.00.H29/other")
                .header("X-Purpose", PURPOSE),
            403,
            "trust.subsystem_not_bound",
        ),
        (
            portal
                .delete(&citizen)
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", PURPOSE),
            403,
            "contract.operation_not_allowed",
        ),
        (
            stranger
                .get(&citizen)
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", PURPOSE),
            403,
            "trust.certificate_unregistered",
        ),
        (node.lookup(&portal, "12345"), 422, "request.schema_invalid"),
        (
            portal
                .post(node.url(&format!("/r1/{CITIZEN_SERVICE}/search")))
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", PURPOSE)
                .header("Content-Type", "text/plain")
                .body(CITIZEN_ID),
            400,
            "request.body_invalid",
        ),
    ];
    for (index, (request, status, code)) in cases.into_iter().enumerate() {
        let given = format!("errors-case-{index}");
        let request = if index % 2 == 0 {
            request.header("X-Road-Id", &given)
        } else {
            request
        };
        let response = request.send().await.expect("request");
        let header_id = response
            .headers()
            .get("x-road-id")
            .map(|v| v.to_str().expect("ASCII").to_owned());
        let body = expect_problem(response, status, code).await;
        if index % 2 == 0 {
            assert_eq!(header_id.as_deref(), Some(given.as_str()), "{code}");
        } else {
            uuid::Uuid::parse_str(header_id.as_deref().expect("X-Road-Id"))
                .expect("generated id is a UUID");
        }
        assert_eq!(body["type"], "about:blank", "{body}");
        assert!(body["detail"].is_string(), "{body}");
        assert_eq!(body["origin"], "consumer", "{body}");
        assert!(
            !body.to_string().contains(CITIZEN_ID),
            "{code} echoes the citizen id: {body}"
        );
    }

    // An upstream failure has the same shape, with origin upstream.
    upstream.set(Reply::Json(503, json!({ "error": "maintenance" })));
    let response = node
        .lookup(&portal, CITIZEN_ID)
        .header("X-Road-Id", "errors-upstream")
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 502, "upstream.bad_status").await;
    assert_eq!(body["messageId"], "errors-upstream");
    assert_eq!(body["origin"], "upstream");
    assert_eq!(body["retryable"], true);
}

/// A caller's invalid `X-Road-Id` cannot be echoed, but the exchange still needs
/// an id: the refusal should carry a fresh one in the header and the body, like
/// every other error (and the journal row should not have an empty message id).
/// Design §3 (no article): every exchange, refused ones included, has its own message id.
#[tokio::test]
async fn invalid_message_id_is_refused_with_a_fresh_message_id() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .header("X-Road-Id", "not valid/id")
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 400, "request.message_id_invalid").await;
    let id = body["messageId"].as_str().expect("messageId");
    assert_ne!(id, "not valid/id");
    uuid::Uuid::parse_str(id).expect("a generated id");
    assert_eq!(upstream.hits(), 0);
}
