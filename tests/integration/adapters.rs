//! Backends behind adapters: REST and SOAP answers, and every way they fail.

use crate::support::*;
use datagate::demo::registers::PopulationRegister;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Starts the standard node over a mock answering `reply`, with extra adapter keys.
async fn node_over(pki: &TestPki, reply: Reply, adapter_extra: &str) -> (MockUpstream, TestNode) {
    let upstream = MockUpstream::start(reply).await;
    let node = NodeBuilder::standard(pki, &upstream.url())
        .citizen_rest_service(&upstream.url(), adapter_extra, None)
        .start()
        .await;
    (upstream, node)
}

#[tokio::test]
async fn upstream_slower_than_adapter_timeout_is_a_gateway_timeout() {
    init();
    let pki = TestPki::new();
    let slow = Reply::Slow(Duration::from_secs(3), Box::new(Reply::Citizen));
    let (upstream, node) = node_over(&pki, slow, "timeout_ms = 200").await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 504, "upstream.timeout").await;
    assert_eq!(upstream.hits(), 1, "no retry is configured");
}

#[tokio::test]
async fn upstream_server_error_is_a_bad_gateway() {
    init();
    let pki = TestPki::new();
    let (_upstream, node) = node_over(
        &pki,
        Reply::Json(500, json!({ "error": "database down" })),
        "",
    )
    .await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 502, "upstream.bad_status").await;
    assert!(
        !body.to_string().contains("database down"),
        "upstream text leaked: {body}"
    );
}

/// 002 Điều 26 khoản 2: a backend's answer is capped.
#[tokio::test]
async fn upstream_body_over_the_cap_is_refused_when_content_length_announces_it() {
    init();
    let pki = TestPki::new();
    let oversized = Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: vec![b' '; 4096],
    };
    let (_upstream, node) = node_over(&pki, oversized, "max_response_bytes = 1024").await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 502, "upstream.body_too_large").await;
}

/// 002 Điều 26 khoản 2: a backend's answer is capped, even without Content-Length.
#[tokio::test]
async fn upstream_body_over_the_cap_is_refused_when_streamed_without_content_length() {
    init();
    let pki = TestPki::new();
    let streamed = Reply::Stream {
        chunk: 512,
        chunks: 16,
    };
    let (upstream, node) = node_over(&pki, streamed, "max_response_bytes = 1024").await;
    let direct = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("{}/citizens/{CITIZEN_ID}", upstream.url()))
        .send()
        .await
        .expect("mock answers");
    assert_eq!(
        direct.content_length(),
        None,
        "the mock must not announce the length"
    );

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 502, "upstream.body_too_large").await;
}

#[tokio::test]
async fn malformed_json_from_upstream_is_a_bad_gateway() {
    init();
    let pki = TestPki::new();
    let malformed = Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: format!("{{\"citizen_id\": \"{CITIZEN_ID}\", \"full_name\": ").into_bytes(),
    };
    let (_upstream, node) = node_over(&pki, malformed, "").await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 502, "upstream.malformed").await;
    assert!(!body.to_string().contains(CITIZEN_ID), "{body}");
}

/// 004 Điều 13 khoản 4, 002 Điều 26 khoản 1: answers follow the contract's structure, and the provider's data stays out of the error.
#[tokio::test]
async fn answer_breaking_the_response_schema_is_refused() {
    init();
    let pki = TestPki::new();
    let mut record = synthetic_citizen(CITIZEN_ID);
    record["full_name"] = json!(42);
    let (_upstream, node) = node_over(&pki, Reply::Json(200, record), "").await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 502, "upstream.response_invalid").await;
    assert!(
        body.get("errors").is_none(),
        "provider data details stay in the log: {body}"
    );
    assert!(!body.to_string().contains(CITIZEN_ID), "{body}");
}

#[tokio::test]
async fn upstream_not_found_is_a_not_found() {
    init();
    let pki = TestPki::new();
    let (_upstream, node) = node_over(
        &pki,
        Reply::Json(404, json!({ "error": "no such citizen" })),
        "",
    )
    .await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    expect_problem(response, 404, "upstream.not_found").await;
}

// ---------------------------------------------------------------------------
// SOAP
// ---------------------------------------------------------------------------

/// A node with the repository's SOAP adapter and citizen contract (which asks for a citizen
/// signed in at level medium), trusting a test identity provider.
async fn soap_node(pki: &TestPki, upstream: &MockUpstream) -> (TestNode, Idp) {
    let idp = Idp::new();
    let node = idp
        .trusted_by(
            NodeBuilder::new(pki)
                .population_soap_service(&upstream.url())
                .register(&pki.portal, PORTAL),
        )
        .start()
        .await;
    (node, idp)
}

/// A citizen lookup by the portal for the citizen who signed in.
fn soap_lookup(
    node: &TestNode,
    pki: &TestPki,
    idp: &Idp,
    citizen_id: &str,
) -> reqwest::RequestBuilder {
    node.lookup(&node.client(&pki.portal), citizen_id).header(
        "X-Citizen-Assertion",
        idp.assertion(citizen_id, "medium", |_| {}),
    )
}

/// Asks the register directly and returns the text of every leaf element by local name.
async fn register_record(upstream: &MockUpstream, citizen_id: &str) -> BTreeMap<String, String> {
    let envelope = format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:pop=\"urn:vn:gov:population:1\"><soapenv:Body><pop:GetCitizen>\
         <pop:CitizenId>{citizen_id}</pop:CitizenId></pop:GetCitizen></soapenv:Body></soapenv:Envelope>"
    );
    let xml = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .post(format!("{}/soap", upstream.url()))
        .header("Content-Type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"urn:vn:gov:population:1#GetCitizen\"")
        .body(envelope)
        .send()
        .await
        .expect("register answers")
        .text()
        .await
        .expect("XML");
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut leaves = BTreeMap::new();
    let mut open: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            quick_xml::events::Event::Start(start) => {
                open.push(start.local_name().into_inner().to_owned());
                text.clear();
            }
            quick_xml::events::Event::Text(t) => text.push_str(&t.xml10_content()),
            quick_xml::events::Event::GeneralRef(r) => text.push_str(
                quick_xml::escape::resolve_predefined_entity(&r).expect("predefined entity"),
            ),
            quick_xml::events::Event::End(_) => {
                if let Some(name) = open.pop()
                    && !text.is_empty()
                {
                    leaves.insert(name, std::mem::take(&mut text));
                }
            }
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    leaves
}

/// 002 Điều 9 khoản 2, 004 Điều 3: a SOAP/XML register is shared as a JSON API, cut to the contract's fields.
#[tokio::test]
async fn soap_upstream_answers_with_the_projected_record() {
    init();
    let pki = TestPki::new();
    let register = Arc::new(PopulationRegister::synthetic());
    let citizen_id = register.sample_citizen_ids(1).remove(0);
    let upstream = MockUpstream::router(register.router()).await;
    let (node, idp) = soap_node(&pki, &upstream).await;

    let response = soap_lookup(&node, &pki, &idp, &citizen_id)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["x-contract-id"],
        "hcm-portal-citizen-2026"
    );
    let body: Value = response.json().await.expect("JSON");

    let source = register_record(&upstream, &citizen_id).await;
    assert_eq!(source["CitizenId"], citizen_id);
    for withheld in ["Street", "Ethnicity", "HouseholdSize", "Nationality"] {
        assert!(
            source.contains_key(withheld),
            "the register sends {withheld}"
        );
    }
    // Exactly the contract's allowed fields: no street, ethnicity, nationality or household size.
    let expected = json!({
        "citizen_id": citizen_id,
        "full_name": source["FullName"],
        "date_of_birth": source["DateOfBirth"],
        "sex": source["Sex"],
        "permanent_address": {
            "province": source["Province"],
            "district": source["District"],
            "ward": source["Ward"],
        }
    });
    assert_eq!(body, expected);
}

#[tokio::test]
async fn soap_not_found_fault_is_a_not_found() {
    init();
    let pki = TestPki::new();
    let register = Arc::new(PopulationRegister::synthetic());
    let upstream = MockUpstream::router(register.router()).await;
    let (node, idp) = soap_node(&pki, &upstream).await;

    let response = node
        .lookup(&node.client(&pki.portal), "999999999999")
        .header(
            "X-Citizen-Assertion",
            idp.assertion("999999999999", "medium", |_| {}),
        )
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 404, "upstream.not_found").await;
    assert!(!body.to_string().contains("999999999999"), "{body}");
}

#[tokio::test]
async fn malformed_xml_from_soap_upstream_is_a_bad_gateway() {
    init();
    let pki = TestPki::new();
    let truncated = Reply::Raw {
        status: 200,
        content_type: "text/xml; charset=utf-8",
        body:
            b"<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>\
                <pop:GetCitizenResponse xmlns:pop=\"urn:vn:gov:population:1\"><pop:Citizen>\
                <pop:CitizenId>079099000123</pop:CitizenId>"
                .to_vec(),
    };
    let upstream = MockUpstream::start(truncated).await;
    let (node, idp) = soap_node(&pki, &upstream).await;

    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .header(
            "X-Citizen-Assertion",
            idp.assertion(CITIZEN_ID, "medium", |_| {}),
        )
        .send()
        .await
        .expect("request");
    let body = expect_problem(response, 502, "upstream.malformed").await;
    assert!(!body.to_string().contains(CITIZEN_ID), "{body}");
    assert_eq!(upstream.hits(), 1);
}

/// The portal's contract turned pass-through: the whole answer, no schemas.
fn pass_through_contract() -> String {
    let contract = portal_citizen_contract()
        .replace(
            "allowed_fields: [/citizen_id, /full_name, /date_of_birth, /permanent_address/province]",
            "allowed_fields: [\"\"]",
        )
        .replace("request_schema: schemas/citizen-request.json\n", "")
        .replace("response_schema: schemas/citizen.json\n", "");
    assert!(contract.contains("allowed_fields: [\"\"]"), "{contract}");
    assert!(!contract.contains("schema"), "{contract}");
    contract
}

/// A node whose citizen backend answers `body` as JSON, under the pass-through contract,
/// and the answer to one lookup. The backend and the node live as long as the tuple.
async fn pass_through_lookup(
    pki: &TestPki,
    body: Vec<u8>,
) -> (reqwest::Response, TestNode, MockUpstream) {
    let upstream = MockUpstream::start(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body,
    })
    .await;
    let node = NodeBuilder::standard(pki, &upstream.url())
        .contract("portal-citizen", &pass_through_contract())
        .start()
        .await;
    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    (response, node, upstream)
}

#[tokio::test]
async fn pass_through_contract_forwards_the_backend_document_unchanged() {
    init();
    let pki = TestPki::new();
    let document = format!(
        "{{\"citizen_id\": \"{CITIZEN_ID}\",  \"full_name\": \"Trần Thị B\", \"extra\": [1, 2]}}"
    );
    let (response, _node, _upstream) =
        pass_through_lookup(&pki, document.clone().into_bytes()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().await.expect("body"),
        document,
        "byte for byte"
    );
}

#[tokio::test]
async fn pass_through_contract_still_refuses_malformed_json() {
    init();
    let pki = TestPki::new();
    let truncated = format!("{{\"citizen_id\": \"{CITIZEN_ID}\", \"full_name\": ");
    let (response, _node, _upstream) = pass_through_lookup(&pki, truncated.into_bytes()).await;
    let body = expect_problem(response, 502, "upstream.malformed").await;
    assert!(!body.to_string().contains(CITIZEN_ID), "{body}");
}

/// A pass-through answer is forwarded as `application/json` only if it is JSON, and JSON
/// between systems is UTF-8 (RFC 8259 §8.1): a byte that is not UTF-8 inside a string,
/// which a grammar-only check skips over, is refused like any malformed answer.
#[tokio::test]
async fn pass_through_contract_refuses_an_answer_that_is_not_utf8() {
    init();
    let pki = TestPki::new();
    let mut document =
        format!("{{\"citizen_id\": \"{CITIZEN_ID}\", \"full_name\": \"Tr").into_bytes();
    document.extend_from_slice(&[0xff, 0xfe]);
    document.extend_from_slice(b"n\"}");
    assert!(
        serde_json::from_slice::<serde::de::IgnoredAny>(&document).is_ok(),
        "the grammar alone passes it"
    );
    let (response, _node, _upstream) = pass_through_lookup(&pki, document).await;
    let body = expect_problem(response, 502, "upstream.malformed").await;
    assert!(!body.to_string().contains(CITIZEN_ID), "{body}");
}

/// X-Road REST (pr-rest §4.4): every answer carries `X-Road-Request-Hash`, here SHA-256
/// over the method, the canonical target and the body, each with its 8-byte length,
/// computed again by the test from the request it sent. `X-Road-Service` names the
/// service exactly as the path did.
#[tokio::test]
async fn the_answer_names_the_request_it_answers() {
    init();
    let pki = TestPki::new();
    let (_upstream, node) = node_over(&pki, Reply::Citizen, "").await;
    let response = node
        .lookup(&node.client(&pki.portal), CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let target = format!("/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}");
    for part in [&b"GET"[..], target.as_bytes(), b""] {
        hash.update(&(part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let expected: String = hash
        .finish()
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-road-request-hash"), Some(expected));
    assert_eq!(header("x-road-service").as_deref(), Some(CITIZEN_SERVICE));
}
