//! The journal admin API on the admin listener (`[admin]`): operators and auditors, each a
//! client certificate with a role, query the journal (detail rows, summaries, one
//! citizen's accesses), and every query is journaled itself.

use crate::support::*;
use datagate::pki::IssuedCertificate;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const AUDITOR_NAME: &str = "Thanh tra Bộ (test)";
const OPERATOR_NAME: &str = "Vận hành LGSP (test)";
/// A second synthetic citizen (12 digits, no real person).
const OTHER_CITIZEN: &str = "001188004567";
/// The legal basis of the test contracts (support's `portal_citizen_contract`).
const PORTAL_LEGAL_BASIS: &str = "Nghị định 47/2024/NĐ-CP (test)";

/// An auditor's and an operator's certificates, from the node's trusted CA.
struct Admins {
    auditor: IssuedCertificate,
    operator: IssuedCertificate,
}

impl Admins {
    fn new(pki: &TestPki) -> Self {
        Admins {
            auditor: pki.client("auditor"),
            operator: pki.client("operator"),
        }
    }

    /// The `[admin]` section listing both.
    fn section(&self) -> String {
        format!(
            r#"[admin]
listen = "127.0.0.1:0"

[[admin.clients]]
fingerprint = "{}"
role = "auditor"
name = "{AUDITOR_NAME}"

[[admin.clients]]
fingerprint = "{}"
role = "operator"
name = "{OPERATOR_NAME}"
"#,
            self.auditor.fingerprint_sha256, self.operator.fingerprint_sha256
        )
    }
}

/// `GET https://{admin}{target}` with `cert`.
async fn admin_get(node: &TestNode, cert: &IssuedCertificate, target: &str) -> reqwest::Response {
    let admin = node.admin.expect("the node has an admin listener");
    node.client(cert)
        .get(format!("https://{admin}{target}"))
        .send()
        .await
        .expect("admin request")
}

/// A 200 JSON answer and its `X-Road-Id`.
async fn admin_json(node: &TestNode, cert: &IssuedCertificate, target: &str) -> (Value, String) {
    let response = admin_get(node, cert, target).await;
    let status = response.status().as_u16();
    let id = response
        .headers()
        .get("x-road-id")
        .and_then(|v| v.to_str().ok())
        .expect("every admin answer carries an X-Road-Id")
        .to_owned();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{target}: {text}");
    (serde_json::from_str(&text).expect("JSON"), id)
}

/// This node's journal records of one `X-Road-Id`, read through the ops listener.
async fn journal_records(node: &TestNode, message_id: &str) -> Vec<Value> {
    let body: Value = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(node.ops_url(&format!("/status/v1/journal/{message_id}")))
        .send()
        .await
        .expect("ops request")
        .json()
        .await
        .expect("JSON");
    body["records"].as_array().cloned().unwrap_or_default()
}

/// The one journal record of `message_id`.
async fn journal_record(node: &TestNode, message_id: &str) -> Value {
    let records = journal_records(node, message_id).await;
    assert_eq!(records.len(), 1, "{message_id}: {records:#?}");
    records.into_iter().next().expect("one record")
}

/// Looks up `citizen_id` as the portal with `purpose`, under `message_id`; returns the status.
async fn lookup(node: &TestNode, pki: &TestPki, citizen_id: &str, purpose: &str, id: &str) -> u16 {
    node.client(&pki.portal)
        .get(node.citizen_url(citizen_id))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", purpose)
        .header("X-Road-Id", id)
        .send()
        .await
        .expect("lookup")
        .status()
        .as_u16()
}

fn message_ids(rows: &Value, key: &str) -> Vec<String> {
    rows[key]
        .as_array()
        .expect("an array")
        .iter()
        .map(|row| row["message_id"].as_str().expect("message id").to_owned())
        .collect()
}

/// 003 Điều 33–35 (tra soát, đối chiếu) and 004 Điều 27 khoản 3 (online inspection and
/// audit): both roles read the journal's detail rows and summaries; the summary's counts
/// are those of the exchanges made, with latency percentiles, and each filter narrows.
#[tokio::test]
async fn auditor_and_operator_read_detail_and_summary_that_match_the_exchanges() {
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .section(&admins.section())
        .start()
        .await;
    let ok = ["admin-ok-1", "admin-ok-2", "admin-ok-3"];
    for (id, citizen) in ok.iter().zip([CITIZEN_ID, OTHER_CITIZEN, CITIZEN_ID]) {
        assert_eq!(lookup(&node, &pki, citizen, PURPOSE, id).await, 200);
    }
    assert_eq!(
        lookup(&node, &pki, CITIZEN_ID, "MARKETING", "admin-refused").await,
        403
    );
    let service = format!("service={CITIZEN_SERVICE}");

    for admin in [&admins.auditor, &admins.operator] {
        let (summary, _) = admin_json(&node, admin, &format!("/admin/v1/summary?{service}")).await;
        assert_eq!(summary["total"], 4, "{summary}");
        assert_eq!(summary["failures"], 1, "{summary}");
        assert_eq!(
            summary["by_status_class"],
            json!({"2xx": 3, "4xx": 1, "5xx": 0}),
            "{summary}"
        );
        assert_eq!(
            summary["by_error_code"],
            json!({"contract.purpose_not_allowed": 1}),
            "{summary}"
        );
        assert_eq!(summary["by_leg"], json!({"local": 4}), "{summary}");
        let latency = &summary["latency_ms"];
        assert_eq!(latency["count"], 4, "{summary}");
        let p = |name: &str| {
            latency[name]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: {summary}"))
        };
        assert!(
            0.0 <= p("p50") && p("p50") <= p("p90") && p("p90") <= p("p99"),
            "{summary}"
        );

        let (detail, _) = admin_json(
            &node,
            admin,
            &format!("/admin/v1/exchanges?{service}&status=200"),
        )
        .await;
        assert_eq!(
            message_ids(&detail, "records"),
            ok,
            "oldest first: {detail}"
        );
        assert_eq!(detail["order"], "oldest_first");
        assert_eq!(detail["truncated"], false);
        for row in detail["records"].as_array().expect("records") {
            assert_eq!(row["client"], PORTAL);
            assert_eq!(row["leg"], "local");
            assert_eq!(row["contract_id"], "portal-citizen");
        }
    }

    // Filters narrow: by consumer and status, by provider, by contract, by period, by limit.
    let auditor = &admins.auditor;
    let (refused, _) = admin_json(
        &node,
        auditor,
        &format!("/admin/v1/exchanges?consumer={PORTAL}&status=403"),
    )
    .await;
    assert_eq!(message_ids(&refused, "records"), ["admin-refused"]);
    assert_eq!(
        refused["records"][0]["error_code"],
        "contract.purpose_not_allowed"
    );
    let (ministry, _) = admin_json(
        &node,
        auditor,
        &format!("/admin/v1/summary?consumer={MINISTRY}"),
    )
    .await;
    assert_eq!(ministry["total"], 0);
    assert_eq!(ministry["latency_ms"]["p50"], Value::Null);
    let (provider, _) = admin_json(
        &node,
        auditor,
        &format!("/admin/v1/summary?provider={NODE_MEMBER}"),
    )
    .await;
    assert_eq!(provider["total"], 4, "{provider}");
    let (contract, _) =
        admin_json(&node, auditor, "/admin/v1/summary?contract=portal-citizen").await;
    assert_eq!(contract["total"], 3, "{contract}");
    let (future, _) = admin_json(
        &node,
        auditor,
        "/admin/v1/exchanges?from=2099-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(future["records"], json!([]));
    let (page, _) = admin_json(
        &node,
        auditor,
        &format!("/admin/v1/exchanges?{service}&limit=2"),
    )
    .await;
    assert_eq!(message_ids(&page, "records"), ok[..2]);
    assert_eq!(page["truncated"], true);

    // The admin queries are journal records too: leg `admin`, counted apart.
    let (all, _) = admin_json(&node, &admins.operator, "/admin/v1/summary").await;
    assert!(
        all["by_leg"]["admin"].as_u64().is_some_and(|n| n >= 2),
        "{all}"
    );
    assert_eq!(all["by_leg"]["local"], 4, "{all}");

    // Unknown or malformed parameters: 400 with a stable code, values never echoed.
    for target in [
        "/admin/v1/exchanges?secret=079099000123",
        "/admin/v1/exchanges?from=yesterday",
        "/admin/v1/exchanges?limit=5000",
        "/admin/v1/summary?limit=5",
        "/admin/v1/summary?status=200&status=403",
    ] {
        let body = expect_problem(
            admin_get(&node, auditor, target).await,
            400,
            "admin.bad_query",
        )
        .await;
        assert!(!body.to_string().contains(CITIZEN_ID), "{target}: {body}");
    }
    expect_problem(
        admin_get(&node, auditor, "/admin/v1/nowhere").await,
        404,
        "request.route_not_found",
    )
    .await;
}

/// 004 Điều 6 khoản 2 (the data subject is told who processed their data and for what
/// purpose) and 004 Điều 62 khoản 2c: for one citizen, an auditor gets every access (the
/// consumer, the service, when, the purpose, the contract and its legal basis), and only
/// that citizen's; an operator may not ask (403 `admin.forbidden`); a malformed id is
/// 400 and never echoed, and no citizen id reaches the journal in clear.
#[tokio::test]
async fn subject_access_lists_one_citizens_accesses_to_auditors_only() {
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .section(&admins.section())
        .start()
        .await;
    let portal = node.client(&pki.portal);
    assert_eq!(
        lookup(&node, &pki, CITIZEN_ID, PURPOSE, "subject-a-1").await,
        200
    );
    assert_eq!(
        lookup(&node, &pki, OTHER_CITIZEN, PURPOSE, "subject-b-1").await,
        200
    );
    assert_eq!(
        lookup(&node, &pki, CITIZEN_ID, "SOCIAL-ALLOWANCE", "subject-a-2").await,
        200
    );
    // A search names the citizen in its body: the same subject.
    let search = portal
        .post(node.url(&format!("/r1/{CITIZEN_SERVICE}/search")))
        .header("X-Road-Client", PORTAL)
        .header("X-Purpose", PURPOSE)
        .header("X-Road-Id", "subject-a-3")
        .json(&json!({ "citizen_id": CITIZEN_ID }))
        .send()
        .await
        .expect("search");
    assert_eq!(search.status(), 200);

    let (answer, admin_id) = admin_json(
        &node,
        &admins.auditor,
        &format!("/admin/v1/subjects/{CITIZEN_ID}/accesses"),
    )
    .await;
    assert_eq!(
        message_ids(&answer, "accesses"),
        ["subject-a-1", "subject-a-2", "subject-a-3"],
        "{answer}"
    );
    let accesses = answer["accesses"].as_array().expect("accesses");
    let purposes: Vec<&str> = accesses
        .iter()
        .map(|a| a["purpose"].as_str().expect("purpose"))
        .collect();
    assert_eq!(purposes, [PURPOSE, "SOCIAL-ALLOWANCE", PURPOSE]);
    let contracts: Vec<&str> = accesses
        .iter()
        .map(|a| a["contract_id"].as_str().expect("contract"))
        .collect();
    assert_eq!(
        contracts,
        ["portal-citizen", "portal-citizen", "portal-citizen-search"]
    );
    for access in accesses {
        assert_eq!(access["consumer"], PORTAL, "{access}");
        assert_eq!(access["service"], CITIZEN_SERVICE, "{access}");
        assert_eq!(access["legal_basis"], PORTAL_LEGAL_BASIS, "{access}");
        assert_eq!(access["status"], 200, "{access}");
        assert!(
            access["request_in_at"]
                .as_str()
                .is_some_and(|at| at.len() >= 20)
        );
        assert!(access.get("embargoed_until").is_none(), "{access}");
    }
    let (other, _) = admin_json(
        &node,
        &admins.auditor,
        &format!("/admin/v1/subjects/{OTHER_CITIZEN}/accesses"),
    )
    .await;
    assert_eq!(message_ids(&other, "accesses"), ["subject-b-1"]);
    let (none, _) = admin_json(
        &node,
        &admins.auditor,
        &format!("/admin/v1/subjects/{CITIZEN_ID}/accesses?from=2099-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(none["accesses"], json!([]));

    // The query is journaled against the citizen's digest, the one the lookups carry.
    let looked_up = journal_record(&node, "subject-a-1").await;
    let queried = journal_record(&node, &admin_id).await;
    assert_eq!(queried["subject_digest"], looked_up["subject_digest"]);
    assert_eq!(queried["operation"], "admin.subject_accesses");

    // An operator runs the node; it does not inspect who looked at whom.
    let refused = admin_get(
        &node,
        &admins.operator,
        &format!("/admin/v1/subjects/{CITIZEN_ID}/accesses"),
    )
    .await;
    expect_problem(refused, 403, "admin.forbidden").await;

    for malformed in ["07909900012X", "07909900012", "0790990001234"] {
        let response = admin_get(
            &node,
            &admins.auditor,
            &format!("/admin/v1/subjects/{malformed}/accesses"),
        )
        .await;
        let body = expect_problem(response, 400, "admin.bad_query").await;
        assert!(!body.to_string().contains(malformed), "{body}");
    }

    // No citizen id in clear anywhere in the journal's files, the admin queries included.
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", node.journal_path().display());
        if let Ok(bytes) = std::fs::read(&path) {
            for citizen_id in [CITIZEN_ID, OTHER_CITIZEN] {
                assert!(
                    !bytes
                        .windows(citizen_id.len())
                        .any(|w| w == citizen_id.as_bytes()),
                    "{path} holds a citizen id in clear"
                );
            }
        }
    }
}

/// 003 Điều 3 khoản 1 and Điều 48 (admin rights bound to certificates): a certificate of
/// the trusted CA that `[admin]` does not list, even a registered information system's,
/// gets 403 `admin.forbidden` (and is journaled); no certificate completes no handshake;
/// a client removed from `[admin]` loses access at the next reload.
#[tokio::test]
async fn unlisted_certificates_are_forbidden_and_a_removed_client_is_revoked_on_reload() {
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .section(&admins.section())
        .start()
        .await;
    let stranger = pki.client("stranger");
    for cert in [&stranger, &pki.portal] {
        let response = admin_get(&node, cert, "/admin/v1/summary").await;
        let body = expect_problem(response, 403, "admin.forbidden").await;
        let record = journal_record(&node, body["messageId"].as_str().expect("id")).await;
        assert_eq!(record["leg"], "admin");
        assert_eq!(record["client"], Value::Null);
        assert_eq!(record["peer_fingerprint"], cert.fingerprint_sha256.as_str());
        assert_eq!(record["status"], 403);
        assert_eq!(record["error_code"], "admin.forbidden");
    }

    // Without a client certificate the handshake fails: no HTTP is spoken.
    let admin = node.admin.expect("admin listener");
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem().as_bytes()).expect("CA")])
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let refused = anonymous
        .get(format!("https://{admin}/admin/v1/summary"))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "answered without a client certificate: {refused:?}"
    );

    // Remove the operator and reload: it is refused from then on; the auditor is not.
    admin_json(&node, &admins.operator, "/admin/v1/summary").await;
    let file = &node.written.config_file;
    let text = std::fs::read_to_string(file).expect("config");
    let without_operator = text
        .split("[[admin.clients]]")
        .filter(|part| !part.contains(&admins.operator.fingerprint_sha256))
        .collect::<Vec<_>>()
        .join("[[admin.clients]]");
    assert_ne!(text, without_operator);
    std::fs::write(file, without_operator).expect("write config");
    assert!(node.reload(), "the reload applies");
    expect_problem(
        admin_get(&node, &admins.operator, "/admin/v1/summary").await,
        403,
        "admin.forbidden",
    )
    .await;
    admin_json(&node, &admins.auditor, "/admin/v1/summary").await;
}

/// 004 Điều 27 khoản 3 and 003 Điều 33 (tra soát): every admin query, answered or
/// refused, is journaled before its answer leaves, as a record of leg `admin` under the
/// `X-Road-Id` of the answer, naming the route, the caller and the outcome.
#[tokio::test]
async fn every_admin_query_is_journaled_under_the_x_road_id_it_answers_with() {
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .section(&admins.section())
        .start()
        .await;
    assert_eq!(
        lookup(&node, &pki, CITIZEN_ID, PURPOSE, "journaled-lookup").await,
        200
    );
    let subject = journal_record(&node, "journaled-lookup").await["subject_digest"].clone();
    assert!(subject.as_str().is_some_and(|d| d.len() == 64));

    let (_, summary) = admin_json(&node, &admins.operator, "/admin/v1/summary").await;
    let (_, exchanges) = admin_json(&node, &admins.auditor, "/admin/v1/exchanges?limit=1").await;
    let (_, accesses) = admin_json(
        &node,
        &admins.auditor,
        &format!("/admin/v1/subjects/{CITIZEN_ID}/accesses"),
    )
    .await;
    let forbidden = expect_problem(
        admin_get(
            &node,
            &admins.operator,
            &format!("/admin/v1/subjects/{CITIZEN_ID}/accesses"),
        )
        .await,
        403,
        "admin.forbidden",
    )
    .await;
    let forbidden = forbidden["messageId"].as_str().expect("id").to_owned();
    let bad = expect_problem(
        admin_get(&node, &admins.auditor, "/admin/v1/summary?limit=1").await,
        400,
        "admin.bad_query",
    )
    .await;
    let bad = bad["messageId"].as_str().expect("id").to_owned();

    let operator = format!("admin:{OPERATOR_NAME}");
    let auditor = format!("admin:{AUDITOR_NAME}");
    let expected = [
        (
            &summary,
            "admin.summary",
            &operator,
            &admins.operator,
            200,
            None,
            false,
        ),
        (
            &exchanges,
            "admin.exchanges",
            &auditor,
            &admins.auditor,
            200,
            None,
            false,
        ),
        (
            &accesses,
            "admin.subject_accesses",
            &auditor,
            &admins.auditor,
            200,
            None,
            true,
        ),
        (
            &forbidden,
            "admin.subject_accesses",
            &operator,
            &admins.operator,
            403,
            Some("admin.forbidden"),
            true,
        ),
        (
            &bad,
            "admin.summary",
            &auditor,
            &admins.auditor,
            400,
            Some("admin.bad_query"),
            false,
        ),
    ];
    let mut ids = BTreeSet::new();
    for (id, operation, client, cert, status, code, about_subject) in expected {
        assert!(ids.insert(id.clone()), "X-Road-Ids are fresh: {id}");
        let record = journal_record(&node, id).await;
        assert_eq!(record["leg"], "admin", "{record}");
        assert_eq!(record["operation"], operation, "{record}");
        assert_eq!(record["client"], client.as_str(), "{record}");
        assert_eq!(record["peer_fingerprint"], cert.fingerprint_sha256.as_str());
        assert_eq!(record["method"], "GET");
        assert_eq!(record["service"], Value::Null);
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(record["error_code"].as_str(), code, "{record}");
        assert!(
            record["request_digest"]
                .as_str()
                .is_some_and(|d| d.len() == 64)
        );
        let expected_subject = if about_subject {
            subject.clone()
        } else {
            Value::Null
        };
        assert_eq!(record["subject_digest"], expected_subject, "{record}");
    }
}

/// 004 Điều 6 khoản 2 with a law-enforcement embargo (design decision of issue 9): the
/// exchanges under a contract whose `embargo_until` is still ahead are left out of the
/// subject-access answer (what the citizen would be shown); an auditor who asks
/// `include_embargoed=true` sees them, each flagged with the embargo's end.
#[tokio::test]
async fn embargoed_accesses_are_hidden_unless_an_auditor_asks_and_then_flagged() {
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let embargoed = format!(
        r#"id: kiosk-citizen-embargoed
version: 1
consumer: {PORTAL_KIOSK}
service: {CITIZEN_SERVICE}
operations:
  - {{ method: GET, path: "/{{citizen_id}}" }}
purposes: [INVESTIGATION]
legal_basis: Bộ luật Tố tụng hình sự 2015 (test)
classification: sensitive
allowed_fields: [/citizen_id]
valid_from: 2020-01-01T00:00:00+07:00
valid_until: 2099-12-31T23:59:59+07:00
subject: path:citizen_id
approved_by: Test approver
embargo_until: 2099-01-01
"#
    );
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .contract("kiosk-citizen-embargoed", &embargoed)
        .section(&admins.section())
        .start()
        .await;
    assert_eq!(
        lookup(&node, &pki, CITIZEN_ID, PURPOSE, "open-access").await,
        200
    );
    let embargoed_lookup = node
        .client(&pki.portal)
        .get(node.citizen_url(CITIZEN_ID))
        .header("X-Road-Client", PORTAL_KIOSK)
        .header("X-Purpose", "INVESTIGATION")
        .header("X-Road-Id", "embargoed-access")
        .send()
        .await
        .expect("lookup");
    assert_eq!(embargoed_lookup.status(), 200);

    let target = format!("/admin/v1/subjects/{CITIZEN_ID}/accesses");
    let (hidden, _) = admin_json(&node, &admins.auditor, &target).await;
    assert_eq!(
        message_ids(&hidden, "accesses"),
        ["open-access"],
        "{hidden}"
    );
    assert_eq!(hidden["embargoed_included"], false);
    assert!(!hidden.to_string().contains("kiosk-citizen-embargoed"));

    let (shown, _) = admin_json(
        &node,
        &admins.auditor,
        &format!("{target}?include_embargoed=true"),
    )
    .await;
    assert_eq!(
        message_ids(&shown, "accesses"),
        ["open-access", "embargoed-access"],
        "{shown}"
    );
    assert_eq!(shown["embargoed_included"], true);
    let flagged = &shown["accesses"][1];
    assert_eq!(flagged["embargoed_until"], "2099-01-01", "{flagged}");
    assert_eq!(flagged["consumer"], PORTAL_KIOSK);
    assert_eq!(flagged["contract_id"], "kiosk-citizen-embargoed");
    assert_eq!(
        flagged["legal_basis"],
        "Bộ luật Tố tụng hình sự 2015 (test)"
    );
    assert!(shown["accesses"][0].get("embargoed_until").is_none());

    // The operator cannot reach either view.
    expect_problem(
        admin_get(
            &node,
            &admins.operator,
            &format!("{target}?include_embargoed=true"),
        )
        .await,
        403,
        "admin.forbidden",
    )
    .await;
}

fn check(config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_datagate"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("DATAGATE_CONFIG")
        .output()
        .expect("run datagate check")
}

/// 003 Điều 3 khoản 1 and Điều 48 (admin rights bound to certificates), design §10
/// (configuration validated completely): `datagate check` refuses an `[admin]` section
/// with a fingerprint that is not one, an unknown role, a certificate listed twice, or the
/// address of another listener, naming each path; a valid section passes.
#[test]
fn check_refuses_bad_admin_sections_naming_each_path() {
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let valid = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .section(&admins.section())
        .write();
    let output = check(&valid.config_file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let auditor = &admins.auditor.fingerprint_sha256;
    let broken = format!(
        r#"[admin]
listen = "0.0.0.0:19443"

[[admin.clients]]
fingerprint = "{auditor}"
role = "auditor"

[[admin.clients]]
fingerprint = "not-a-fingerprint"
role = "operator"

[[admin.clients]]
fingerprint = "{}"
role = "superuser"

[[admin.clients]]
fingerprint = "{}"
role = "operator"
"#,
        admins.operator.fingerprint_sha256,
        auditor.to_uppercase(),
    );
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .section(&broken)
        .write();
    // The ops listener on the admin listener's port.
    let text = std::fs::read_to_string(&written.config_file).expect("config");
    let text = text.replacen("ops = \"127.0.0.1:0\"", "ops = \"127.0.0.1:19443\"", 1);
    std::fs::write(&written.config_file, text).expect("config");

    let output = check(&written.config_file);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "stderr:\n{stderr}");
    let file = written.config_file.display();
    for path in [
        "admin.listen",
        "admin.clients[1].fingerprint",
        "admin.clients[2].role",
        "admin.clients[3].fingerprint",
    ] {
        assert!(
            stderr.contains(&format!("{file}: {path}: ")),
            "stderr does not name {path}:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("admin.clients[0]"),
        "the valid client is not blamed:\n{stderr}"
    );
}

/// The admin listener under attack (003 Điều 48; 002 Điều 26 k2): a flood of concurrent
/// queries is answered, every one with 200 or 503 `gateway.overloaded` (at most four run
/// at once) and none hangs; a connection that completes the handshake and then says
/// nothing is closed at the idle deadline, like on every other listener.
#[tokio::test]
async fn the_admin_listener_sheds_a_flood_and_closes_silent_connections() {
    use tokio::io::AsyncReadExt as _;
    init();
    let pki = TestPki::new();
    let admins = Admins::new(&pki);
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .section(&admins.section())
        .limit("idle_timeout_ms = 300")
        .start()
        .await;
    for n in 0..20 {
        assert_eq!(
            lookup(&node, &pki, CITIZEN_ID, PURPOSE, &format!("flood-{n}")).await,
            200
        );
    }
    let admin = node.admin.expect("the node has an admin listener");
    let client = node.client(&admins.auditor);
    let queries = (0..32).map(|_| {
        let client = client.clone();
        async move {
            let response = tokio::time::timeout(
                Duration::from_secs(20),
                client
                    .get(format!("https://{admin}/admin/v1/summary"))
                    .send(),
            )
            .await
            .expect("an answer, not a hang")
            .expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("JSON");
            (status, body)
        }
    });
    let answers = futures_util::future::join_all(queries).await;
    for (status, body) in &answers {
        assert!(
            *status == 200 || (*status == 503 && body["code"] == "gateway.overloaded"),
            "{status}: {body}"
        );
    }
    assert!(answers.iter().any(|(status, _)| *status == 200));

    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        node.tls_client_config(Some(&admins.auditor)),
    ));
    let tcp = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buffer)).await;
    assert!(
        closed.is_ok(),
        "the admin listener kept a silent connection open for 10 s"
    );
    assert!(buffer.is_empty());
}
