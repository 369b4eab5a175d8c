//! Once-only autofill (issue 10): a portal fills a form from three registers through its
//! gateway, each source request going through the whole exchange pipeline (contract,
//! quota, citizen assertion, cache, journal), over real mTLS.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

const INSURANCE_SERVICE: &str = "VN/GOV/000.00.00.G22/insurance-db/participant";
const REPRESENTATIVE_SERVICE: &str = "VN/GOV/000.00.00.G06/enterprise-db/representative";
const FORM: &str = "household-business";
const OTHER_CITIZEN: &str = "079099000999";

fn rest_adapter(name: &str, address: &str, backend_path: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"rest\"\naddress = \"{address}\"\ntimeout_ms = 5000\n\n\
         [[operations]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/{{citizen_id}}\"\n\n\
         [operations.rest]\npath = \"{backend_path}/{{citizen_id}}\"\n"
    )
}

fn contract(id: &str, service: &str, fields: &str, extra: &str) -> String {
    format!(
        "id: {id}\nversion: 1\nconsumer: {PORTAL}\nservice: {service}\n\
         operations:\n  - {{ method: GET, path: \"/{{citizen_id}}\" }}\n\
         purposes: [HOUSEHOLD-REGISTRATION]\nlegal_basis: {id} legal basis (test)\n\
         classification: sensitive\nallowed_fields: {fields}\n\
         valid_from: 2020-01-01T00:00:00+07:00\nvalid_until: 2099-12-31T23:59:59+07:00\n\
         subject: path:citizen_id\nassurance_level: medium\n\
         cache: {{ allowed: true, ttl_seconds: 300 }}\n{extra}approved_by: Test approver\n"
    )
}

fn form(level: &str, insurance_timeout_ms: u64) -> String {
    format!(
        r#"id: {FORM}
title: Đăng ký thành lập hộ kinh doanh (test)
procedure: "2.000575"
legal_basis: Nghị định 01/2021/NĐ-CP (test)
purpose: HOUSEHOLD-REGISTRATION
assurance_level: {level}
consumers: [{PORTAL}]
deadline_ms: 3000
sources:
  citizen: {{ service: {CITIZEN_SERVICE}, path: "/{{subject}}" }}
  insurance: {{ service: {INSURANCE_SERVICE}, path: "/{{subject}}", timeout_ms: {insurance_timeout_ms} }}
  enterprise: {{ service: {REPRESENTATIVE_SERVICE}, path: "/{{subject}}", timeout_ms: 1500 }}
fields:
  - {{ name: citizen_id, label: Số định danh cá nhân, source: citizen, pointer: /citizen_id }}
  - {{ name: full_name, label: Họ và tên, source: citizen, pointer: /full_name }}
  - {{ name: date_of_birth, label: Ngày sinh, source: citizen, pointer: /date_of_birth, transform: date_dmy }}
  - {{ name: province, label: Tỉnh thường trú, source: citizen, pointer: /permanent_address/province }}
  - {{ name: insurance_number, label: Mã số BHXH, source: insurance, pointer: /social_insurance_number }}
  - {{ name: employer, label: Đơn vị công tác, source: insurance, pointer: /employer/name }}
  - {{ name: enterprises, label: Số doanh nghiệp đại diện, source: enterprise, pointer: /enterprises, transform: count }}
  - {{ name: first_enterprise, label: Doanh nghiệp, source: enterprise, pointer: /enterprises/0/name }}
"#
    )
}

fn insurance_record() -> Value {
    json!({"social_insurance_number": "7912345678", "status": "active",
           "employer": {"name": "Công ty Thử Nghiệm", "tax_code": "0312345678"}, "salary_vnd": 12000000})
}

fn representative_record() -> Value {
    json!({"enterprises": [{"tax_code": "0312345678", "name": "Công ty Thử Nghiệm"}]})
}

/// The three registers behind the form.
struct Registers {
    citizen: MockUpstream,
    insurance: MockUpstream,
    enterprise: MockUpstream,
}

impl Registers {
    async fn start() -> Registers {
        Registers {
            citizen: MockUpstream::start(Reply::Citizen).await,
            insurance: MockUpstream::start(Reply::Json(200, insurance_record())).await,
            enterprise: MockUpstream::start(Reply::Json(200, representative_record())).await,
        }
    }

    fn hits(&self) -> (usize, usize, usize) {
        (
            self.citizen.hits(),
            self.insurance.hits(),
            self.enterprise.hits(),
        )
    }
}

fn builder<'p>(
    pki: &'p TestPki,
    registers: &Registers,
    idp: &Idp,
    form_text: &str,
) -> NodeBuilder<'p> {
    let builder = NodeBuilder::standard(pki, &registers.citizen.url())
        .contract(
            "portal-citizen",
            &portal_citizen_contract().replace(
                "subject: path:citizen_id",
                "subject: path:citizen_id\nassurance_level: medium\ncache: { allowed: true, ttl_seconds: 300 }",
            ),
        )
        .adapter(
            "insurance-rest",
            &rest_adapter("insurance-rest", &registers.insurance.url(), "/participants"),
        )
        .service(INSURANCE_SERVICE, "insurance-rest")
        .contract(
            "portal-insurance",
            &contract(
                "portal-insurance",
                INSURANCE_SERVICE,
                "[/social_insurance_number, /status, /employer/name]",
                "response_schema: { type: object, required: [social_insurance_number, status] }\n",
            ),
        )
        .adapter(
            "enterprise-rest",
            &rest_adapter(
                "enterprise-rest",
                &registers.enterprise.url(),
                "/representatives",
            ),
        )
        .service(REPRESENTATIVE_SERVICE, "enterprise-rest")
        .contract(
            "portal-representative",
            &contract(
                "portal-representative",
                REPRESENTATIVE_SERVICE,
                "[/enterprises]",
                "",
            ),
        )
        .file("contracts/forms/household-business.yaml", form_text.to_owned())
        .limit("max_concurrent_requests = 1024\nmax_in_flight_per_consumer = 512");
    idp.trusted_by(builder)
}

/// The three registers, the identity provider, the node and the portal's client.
struct Fixture {
    registers: Registers,
    idp: Idp,
    node: TestNode,
    client: reqwest::Client,
}

impl Fixture {
    async fn start(pki: &TestPki, form_text: &str) -> Fixture {
        let registers = Registers::start().await;
        let idp = Idp::new();
        let node = builder(pki, &registers, &idp, form_text).start().await;
        let client = node.client(&pki.portal);
        Fixture {
            registers,
            idp,
            node,
            client,
        }
    }
}

/// An assertion for `citizen` at `level`, consenting to the form and its three services.
fn consent(idp: &Idp, citizen: &str, level: &str) -> String {
    idp.assertion(citizen, level, |claims| {
        claims["consent"] = json!({
            "form": FORM,
            "services": [CITIZEN_SERVICE, INSURANCE_SERVICE, REPRESENTATIVE_SERVICE],
        });
    })
}

/// `POST /autofill/v1/{FORM}` as the portal with `body`, and the assertion when given.
async fn post_fill(
    node: &TestNode,
    client: &reqwest::Client,
    assertion: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = client
        .post(node.url(&format!("/autofill/v1/{FORM}")))
        .header("X-Road-Client", PORTAL)
        .json(body);
    if let Some(assertion) = assertion {
        request = request.header("X-Citizen-Assertion", assertion);
    }
    request.send().await.expect("autofill request")
}

async fn fill(
    node: &TestNode,
    client: &reqwest::Client,
    assertion: &str,
    subject: &str,
) -> (u16, Value) {
    let response = post_fill(node, client, Some(assertion), &json!({"subject": subject})).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("json answer"))
}

fn field<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["fields"]
        .as_array()
        .and_then(|fields| fields.iter().find(|f| f["name"] == name))
        .unwrap_or_else(|| panic!("no field {name} in {answer}"))
}

/// 002 Điều 11 k2c; 004 Điều 54; 000 Điều 22: a form is filled from three registers, each
/// field with its value and its provenance (service, provider, retrieved at, live or
/// cached, legal basis, classification); only the contracts' fields (the salary the
/// insurance register also answers never appears); a second fill is served from the
/// cache (journaled, every phase run) without calling any register again.
#[tokio::test]
async fn a_form_is_filled_from_three_registers_with_provenance() {
    init();
    let pki = TestPki::new();
    let Fixture {
        registers,
        idp,
        node,
        client,
    } = Fixture::start(&pki, &form("medium", 1500)).await;
    let assertion = consent(&idp, CITIZEN_ID, "medium");

    let (status, answer) = fill(&node, &client, &assertion, CITIZEN_ID).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(field(&answer, "full_name")["value"], "Trần Thị Thử Nghiệm");
    assert_eq!(field(&answer, "date_of_birth")["value"], "01/01/1990");
    assert_eq!(field(&answer, "employer")["value"], "Công ty Thử Nghiệm");
    assert_eq!(field(&answer, "enterprises")["value"], 1);
    let provenance = &field(&answer, "insurance_number")["provenance"];
    assert_eq!(provenance["service"], INSURANCE_SERVICE);
    assert_eq!(provenance["provider"], "VN/GOV/000.00.00.G22");
    assert_eq!(provenance["mode"], "live");
    assert_eq!(provenance["contract"], "portal-insurance");
    assert_eq!(
        provenance["legalBasis"],
        "portal-insurance legal basis (test)"
    );
    assert_eq!(provenance["classification"], "sensitive");
    assert!(
        provenance["retrievedAt"]
            .as_str()
            .is_some_and(|t| t.len() >= 20)
    );
    assert!(
        !answer.to_string().contains("12000000"),
        "a field no contract allows"
    );
    assert_eq!(registers.hits(), (1, 1, 1));
    // Each source request carried the procedure's code to the pipeline's journal and
    // the form's purpose; the upstream saw the subject in its own path only.
    assert_eq!(
        registers.insurance.last_uri().as_deref(),
        Some(format!("/participants/{CITIZEN_ID}").as_str())
    );

    let (status, again) = fill(&node, &client, &assertion, CITIZEN_ID).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(registers.hits(), (1, 1, 1), "a warm fill calls no register");
    for name in ["full_name", "insurance_number", "first_enterprise"] {
        let provenance = &field(&again, name)["provenance"];
        assert_eq!(provenance["mode"], "cached", "{again}");
        assert!(provenance["ageSeconds"].as_i64().is_some(), "{again}");
    }

    // Who accessed my data: the six source requests, with the form's purpose, seen by
    // the citizen through the portal; another citizen sees none of them.
    let accesses: Value = client
        .get(node.url("/citizen/v1/access"))
        .header("X-Road-Client", PORTAL)
        .header("X-Citizen-Assertion", &assertion)
        .send()
        .await
        .expect("access view")
        .json()
        .await
        .expect("json");
    let accesses = accesses["accesses"].as_array().expect("accesses").clone();
    assert_eq!(accesses.len(), 6, "{accesses:?}");
    assert!(
        accesses
            .iter()
            .all(|a| a["purpose"] == PURPOSE && a["status"] == 200)
    );
    assert!(accesses.iter().any(|a| a["service"] == INSURANCE_SERVICE));
    let other: Value = client
        .get(node.url("/citizen/v1/access"))
        .header("X-Road-Client", PORTAL)
        .header(
            "X-Citizen-Assertion",
            consent(&idp, OTHER_CITIZEN, "medium"),
        )
        .send()
        .await
        .expect("access view")
        .json()
        .await
        .expect("json");
    assert_eq!(other["accesses"], json!([]), "{other}");
}

/// Issue 10 §4: a source that is down, one slower than its deadline and one answering
/// out of its contract's schema each leave only their own fields to the citizen, with
/// a reason code; the other fields are filled.
#[tokio::test]
async fn failing_sources_leave_only_their_fields_to_the_citizen() {
    init();
    let pki = TestPki::new();
    let Fixture {
        registers,
        idp,
        node,
        client,
    } = Fixture::start(&pki, &form("medium", 300)).await;

    registers.insurance.set(Reply::Slow(
        Duration::from_secs(2),
        Box::new(Reply::Json(200, insurance_record())),
    ));
    registers
        .enterprise
        .set(Reply::Json(503, json!({"error": "maintenance"})));
    let (status, answer) = fill(
        &node,
        &client,
        &consent(&idp, CITIZEN_ID, "medium"),
        CITIZEN_ID,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["complete"], false);
    assert_eq!(field(&answer, "full_name")["status"], "filled");
    let insurance = field(&answer, "insurance_number");
    assert_eq!(insurance["status"], "ask_citizen");
    assert_eq!(insurance["reason"], "autofill.source_timeout", "{answer}");
    let enterprise = field(&answer, "first_enterprise");
    assert_eq!(enterprise["status"], "ask_citizen");
    assert!(
        enterprise["reason"]
            .as_str()
            .is_some_and(|code| code.starts_with("upstream.")),
        "{answer}"
    );

    // Out of schema: the insurance register forgets a required field.
    registers
        .insurance
        .set(Reply::Json(200, json!({"status": "active"})));
    registers
        .enterprise
        .set(Reply::Json(200, representative_record()));
    let (_, answer) = fill(
        &node,
        &client,
        &consent(&idp, OTHER_CITIZEN, "medium"),
        OTHER_CITIZEN,
    )
    .await;
    assert_eq!(field(&answer, "insurance_number")["status"], "ask_citizen");
    assert_eq!(
        field(&answer, "insurance_number")["reason"],
        "upstream.response_invalid",
        "{answer}"
    );
    assert_eq!(field(&answer, "first_enterprise")["status"], "filled");
    assert_eq!(field(&answer, "full_name")["status"], "filled");
    assert!(!answer.to_string().contains("maintenance"));
}

/// Issue 10 §6 (single-flight): fifty identical cold fills at once reach each register
/// exactly once, counted at the register.
#[tokio::test]
async fn fifty_concurrent_cold_fills_reach_each_register_once() {
    init();
    let pki = TestPki::new();
    let Fixture {
        registers,
        idp,
        node,
        client,
    } = Fixture::start(&pki, &form("medium", 2500)).await;
    // Slow registers, so the fifty fills overlap.
    let slow = |reply| Reply::Slow(Duration::from_millis(300), Box::new(reply));
    registers.citizen.set(slow(Reply::Citizen));
    registers
        .insurance
        .set(slow(Reply::Json(200, insurance_record())));
    registers
        .enterprise
        .set(slow(Reply::Json(200, representative_record())));
    let assertion = consent(&idp, CITIZEN_ID, "medium");
    let fills = (0..50).map(|_| fill(&node, &client, &assertion, CITIZEN_ID));
    let answers = futures_util::future::join_all(fills).await;
    for (status, answer) in &answers {
        assert_eq!(*status, 200, "{answer}");
        assert_eq!(answer["complete"], true, "{answer}");
    }
    assert_eq!(registers.hits(), (1, 1, 1));
    let live = answers
        .iter()
        .filter(|(_, answer)| field(answer, "full_name")["provenance"]["mode"] == "live")
        .count();
    assert_eq!(live, 1, "one fill fetched, the others shared its call");
}

/// 003 Điều 11 k3; Điều 9–10: a form at `high` answers a `medium` sign-in with a step-up
/// naming the level; an assertion for another citizen, one not consenting to this form,
/// or none at all are refused before any register is called.
#[tokio::test]
async fn a_fill_needs_the_forms_level_consent_and_the_same_citizen() {
    init();
    let pki = TestPki::new();
    let Fixture {
        registers,
        idp,
        node,
        client,
    } = Fixture::start(&pki, &form("high", 1500)).await;

    let refusals = [
        (
            consent(&idp, CITIZEN_ID, "medium"),
            401,
            "citizen.step_up_required",
        ),
        (
            consent(&idp, OTHER_CITIZEN, "high"),
            403,
            "citizen.subject_mismatch",
        ),
        (
            idp.assertion(CITIZEN_ID, "high", |claims| {
                claims["consent"] = json!({"form": "another-form", "services": [CITIZEN_SERVICE]});
            }),
            403,
            "citizen.consent_missing",
        ),
        (
            Idp::new().assertion(CITIZEN_ID, "high", |_| {}),
            401,
            "citizen.assertion_invalid",
        ),
    ];
    for (assertion, status, code) in refusals {
        let response = post_fill(
            &node,
            &client,
            Some(&assertion),
            &json!({"subject": CITIZEN_ID}),
        )
        .await;
        let body = expect_problem(response, status, code).await;
        if code == "citizen.step_up_required" {
            assert_eq!(body["requiredLevel"], "high");
        }
        assert!(!body.to_string().contains(CITIZEN_ID));
    }
    let response = post_fill(&node, &client, None, &json!({"subject": CITIZEN_ID})).await;
    expect_problem(response, 401, "citizen.assertion_missing").await;
    for body in [
        json!({"subject": "123"}),
        json!({"subject": CITIZEN_ID, "extra": 1}),
    ] {
        let assertion = consent(&idp, CITIZEN_ID, "high");
        let response = post_fill(&node, &client, Some(&assertion), &body).await;
        expect_problem(response, 400, "request.body_invalid").await;
    }
    assert_eq!(registers.hits(), (0, 0, 0), "no register called");

    let (status, answer) = fill(
        &node,
        &client,
        &consent(&idp, CITIZEN_ID, "high"),
        CITIZEN_ID,
    )
    .await;
    assert_eq!(
        (status, &answer["complete"]),
        (200, &json!(true)),
        "{answer}"
    );
}

/// Issue 10 §3: before the citizen consents, the portal sees which fields and sources a
/// form uses, under which contracts, and the consent to ask for: no data. A subsystem the
/// form is not offered to, and an unknown form, are refused.
#[tokio::test]
async fn the_preview_names_fields_sources_and_consent_without_data() {
    init();
    let pki = TestPki::new();
    let Fixture {
        registers,
        node,
        client,
        ..
    } = Fixture::start(&pki, &form("medium", 1500)).await;
    let preview: Value = client
        .get(node.url(&format!("/autofill/v1/{FORM}")))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("preview")
        .json()
        .await
        .expect("json");
    assert_eq!(preview["procedure"], "2.000575");
    assert_eq!(preview["assuranceLevel"], "medium");
    assert_eq!(preview["fields"].as_array().map(Vec::len), Some(8));
    assert_eq!(
        preview["consent"]["services"],
        // Sources in the order of their names.
        json!([CITIZEN_SERVICE, REPRESENTATIVE_SERVICE, INSURANCE_SERVICE])
    );
    let insurance = preview["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "insurance"))
        .expect("insurance source");
    assert_eq!(insurance["contract"]["id"], "portal-insurance");
    assert_eq!(insurance["contract"]["cache"]["ttlSeconds"], 300);
    assert_eq!(registers.hits(), (0, 0, 0));

    let kiosk = client
        .get(node.url(&format!("/autofill/v1/{FORM}")))
        .header("X-Road-Client", PORTAL_KIOSK)
        .send()
        .await
        .expect("request");
    expect_problem(kiosk, 403, "autofill.form_not_allowed").await;
    let unknown = client
        .get(node.url("/autofill/v1/no-such-form"))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("request");
    expect_problem(unknown, 404, "autofill.form_unknown").await;
    let ministry = node
        .client(&pki.ministry)
        .get(node.url(&format!("/autofill/v1/{FORM}")))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("request");
    expect_problem(ministry, 403, "trust.member_mismatch").await;
}

/// Issue 10 §6: a contract that changes takes its cached answers with it: after the
/// reload the next fill asks the register again.
#[tokio::test]
async fn a_contract_change_drops_its_cached_answers() {
    init();
    let pki = TestPki::new();
    let Fixture {
        registers,
        idp,
        node,
        client,
    } = Fixture::start(&pki, &form("medium", 1500)).await;
    let assertion = consent(&idp, CITIZEN_ID, "medium");
    fill(&node, &client, &assertion, CITIZEN_ID).await;
    fill(&node, &client, &assertion, CITIZEN_ID).await;
    assert_eq!(registers.hits(), (1, 1, 1));

    let file = node.written.path("contracts/portal-insurance.yaml");
    let text = std::fs::read_to_string(&file).expect("contract");
    std::fs::write(&file, text.replace("version: 1", "version: 2")).expect("write");
    assert!(node.reload(), "reload");
    let (_, answer) = fill(&node, &client, &assertion, CITIZEN_ID).await;
    assert_eq!(registers.hits(), (1, 2, 1), "{answer}");
    assert_eq!(
        field(&answer, "insurance_number")["provenance"]["mode"],
        "live"
    );
    assert_eq!(field(&answer, "full_name")["provenance"]["mode"], "cached");
}
