//! Open data (issue 11) over real sockets: the public listener's CKAN Action API and
//! downloads, the members tier on the consumer listener, per-client limits, hostile
//! parameters; and CKAN's own Python client (`ckanapi`) reading the node.

use crate::support::*;
use serde_json::{Value, json};

const ROWS: usize = 2_500;

/// A dataset file; `extra` replaces keys (e.g. `audience: members`).
pub(crate) fn dataset(id: &str, source: &str, extra: &str) -> String {
    format!(
        r#"id: {id}
title: Đơn vị hành chính ({id})
title_en: Administrative units ({id})
description: Danh mục đơn vị hành chính cấp xã (dữ liệu thử nghiệm)
publisher: VN/GOV/000.00.00.G10
publisher_name: Bộ Nội vụ (test)
licence: {{ id: cc-by-4.0, title: Creative Commons Attribution 4.0, url: "https://creativecommons.org/licenses/by/4.0/" }}
update_frequency: monthly
retention_months: 60
provenance: agency_database
attribution: "Nguồn: Bộ Nội vụ (test)"
classification: open
audience: public
keywords: [hanh-chinh, dia-gioi]
fields:
  - {{ name: code, type: text, title: Mã }}
  - {{ name: name, type: text, title: Tên }}
  - {{ name: province, type: text, title: Tỉnh }}
  - {{ name: population, type: integer, title: Dân số }}
  - {{ name: area_km2, type: number, title: Diện tích }}
key: code
source: {source}
{extra}"#
    )
}

fn csv_rows() -> String {
    let mut csv = String::from("code,name,province,population,area_km2\n");
    for i in 0..ROWS {
        let province = ["Hà Nội", "TP. Hồ Chí Minh", "Đà Nẵng", "Cần Thơ"][i % 4];
        csv.push_str(&format!(
            "{:05},\"Xã {i}, huyện Mẫu\",{province},{},{}.5\n",
            i + 1,
            1000 + i * 7,
            i % 90
        ));
    }
    csv
}

async fn node(pki: &TestPki, public: &str, extra_units: &str) -> TestNode {
    NodeBuilder::standard(pki, "http://127.0.0.1:9")
        .public(public)
        .file("contracts/datasets/units.csv", csv_rows())
        .file(
            "contracts/datasets/units.yaml",
            dataset("units", "{ kind: csv, path: units.csv }", extra_units),
        )
        .file(
            "contracts/datasets/internal.yaml",
            dataset("internal-units", "{ kind: csv, path: units.csv }", "")
                .replace("audience: public", "audience: members"),
        )
        .start()
        .await
}

pub(crate) fn public_url(node: &TestNode, path: &str) -> String {
    format!("http://{}{path}", node.public.expect("a public listener"))
}

pub(crate) async fn action(node: &TestNode, name: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let encoded: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query.iter().copied())
        .finish();
    let response = reqwest::Client::new()
        .get(public_url(node, &format!("/api/3/action/{name}?{encoded}")))
        .send()
        .await
        .expect("action");
    let status = response.status().as_u16();
    (status, response.json().await.expect("CKAN JSON"))
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// 000 Điều 8 k6, Điều 22 k2; 002 Điều 3 k11; 004 Điều 21, 24 k3a; 000 Điều 4 k6: the
/// catalogue for everyone in CKAN's API, each dataset with its metadata (licence, update
/// frequency, retention, provenance, attribution); the members tier (000 Điều 3 k11) is not
/// visible to strangers.
#[tokio::test]
async fn ckan_actions_answer_with_ckans_envelope_and_the_metadata() {
    init();
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;

    let (status, list) = action(&node, "package_list", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(list["success"], true);
    assert_eq!(
        list["result"],
        json!(["units"]),
        "the members tier is not public"
    );

    let (_, show) = action(&node, "package_show", &[("id", "units")]).await;
    let package = &show["result"];
    assert_eq!(package["license_id"], "cc-by-4.0");
    assert_eq!(package["organization"]["name"], "vn-gov-000-00-00-g10");
    let extras: Vec<(String, String)> = package["extras"]
        .as_array()
        .expect("extras")
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (key, value) in [
        ("retention_months", "60"),
        ("provenance", "agency_database"),
        ("update_frequency", "MONTHLY"),
        ("attribution", "Nguồn: Bộ Nội vụ (test)"),
    ] {
        assert!(
            extras.contains(&(key.to_owned(), value.to_owned())),
            "{key}: {extras:?}"
        );
    }
    assert_eq!(package["resources"][0]["datastore_active"], true);
    assert_eq!(package["resources"][0]["rows"], ROWS);

    let (_, search) = action(
        &node,
        "package_search",
        &[
            ("q", "hành chính"),
            ("fq", "tags:hanh-chinh organization:vn-gov-000-00-00-g10"),
            ("rows", "5"),
        ],
    )
    .await;
    assert_eq!(search["result"]["count"], 1, "{search}");
    let (_, none) = action(&node, "package_search", &[("fq", "tags:nothing")]).await;
    assert_eq!(none["result"]["count"], 0);
    let (_, orgs) = action(&node, "organization_list", &[]).await;
    assert_eq!(orgs["result"], json!(["vn-gov-000-00-00-g10"]));
    let (_, org) = action(
        &node,
        "organization_show",
        &[("id", "vn-gov-000-00-00-g10")],
    )
    .await;
    assert_eq!(org["result"]["package_count"], 1);
    let (_, resource) = action(&node, "resource_show", &[("id", "units")]).await;
    assert_eq!(resource["result"]["format"], "CSV");

    // datastore_search: filters, fields, sort, paging, total.
    let (status, page) = action(
        &node,
        "datastore_search",
        &[
            ("resource_id", "units"),
            ("filters", r#"{"province": "Đà Nẵng"}"#),
            ("fields", "code,population"),
            ("sort", "population desc"),
            ("limit", "3"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let result = &page["result"];
    assert_eq!(result["total"], ROWS / 4);
    let records = result["records"].as_array().expect("records");
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0].as_object().map(|o| o.len()),
        Some(2),
        "only the fields asked for"
    );
    let populations: Vec<i64> = records
        .iter()
        .map(|r| r["population"].as_i64().expect("int"))
        .collect();
    assert!(
        populations.windows(2).all(|w| w[0] >= w[1]),
        "{populations:?}"
    );
    assert_eq!(
        result["fields"],
        json!([{"id": "code", "type": "text"}, {"id": "population", "type": "int"}])
    );

    // The natural order, deep: offset 2 000 is row 2 001.
    let (_, deep) = action(
        &node,
        "datastore_search",
        &[("resource_id", "units"), ("offset", "2000"), ("limit", "2")],
    )
    .await;
    assert_eq!(deep["result"]["records"][0]["code"], "02001", "{deep}");
    let (_, text) = action(
        &node,
        "datastore_search",
        &[("resource_id", "units"), ("q", "Xã 1234,")],
    )
    .await;
    assert_eq!(text["result"]["total"], 1, "{text}");

    // Not found, CKAN-style, with our code.
    for (name, query) in [
        ("package_show", vec![("id", "internal-units")]),
        ("package_show", vec![("id", "nothing")]),
        ("datastore_search", vec![("resource_id", "internal-units")]),
        ("no_such_action", vec![]),
    ] {
        let (status, body) = action(&node, name, &query).await;
        assert_eq!(
            (status, body["success"].clone()),
            (404, json!(false)),
            "{name}: {body}"
        );
        assert_eq!(body["error"]["__type"], "Not Found Error");
        assert_eq!(error_code(&body), "opendata.not_found");
    }
}

/// Issue 11, bad input: malformed or hostile `filters`, `fq`, `sort`, `fields`, `q`, huge
/// `limit`, negative or enormous `offset`: each a CKAN validation error (409) with our code,
/// values never reaching SQL as text and identifiers only from the declared fields; the table
/// is intact afterwards.
#[tokio::test]
async fn malformed_and_hostile_parameters_are_validation_errors() {
    init();
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;
    let refused: Vec<Vec<(&str, &str)>> = vec![
        vec![("filters", "{not json")],
        vec![("filters", r#"["province"]"#)],
        vec![("filters", r#"{"province; DROP TABLE rows": "x"}"#)],
        vec![("filters", r#"{"population": "many"}"#)],
        vec![("sort", "name; DROP TABLE rows")],
        vec![("sort", "population sideways")],
        vec![("sort", "secret asc")],
        vec![("fields", "code,(SELECT 1)")],
        vec![("limit", "100000")],
        vec![("limit", "-1")],
        vec![("offset", "-5")],
        vec![("offset", "99999999999999999999")],
    ];
    for query in refused {
        let mut all = vec![("resource_id", "units")];
        all.extend(query.iter().copied());
        let (status, body) = action(&node, "datastore_search", &all).await;
        assert_eq!(status, 409, "{query:?}: {body}");
        assert_eq!(body["error"]["__type"], "Validation Error", "{query:?}");
        assert_eq!(error_code(&body), "opendata.invalid_query", "{query:?}");
    }
    for fq in ["secret:1", "tags:\"unclosed", "organization"] {
        let (status, body) = action(&node, "package_search", &[("fq", fq)]).await;
        assert_eq!(status, 409, "{fq}: {body}");
    }
    // Injection in q and in filter values is only ever a value.
    for q in ["' OR 1=1 --", "%", "_", "\\"] {
        let (status, body) = action(
            &node,
            "datastore_search",
            &[("resource_id", "units"), ("q", q)],
        )
        .await;
        assert_eq!(status, 200, "{q}: {body}");
        assert_eq!(
            body["result"]["total"], 0,
            "{q} matched as a pattern: {body}"
        );
    }
    let (_, body) = action(
        &node,
        "datastore_search",
        &[
            ("resource_id", "units"),
            ("filters", r#"{"code": "x' OR '1'='1"}"#),
        ],
    )
    .await;
    assert_eq!(body["result"]["total"], 0);
    let (_, intact) = action(
        &node,
        "datastore_search",
        &[("resource_id", "units"), ("limit", "1")],
    )
    .await;
    assert_eq!(intact["result"]["total"], ROWS, "the table is intact");
    // A POST with a body that is not a JSON object.
    let response = reqwest::Client::new()
        .post(public_url(&node, "/api/3/action/datastore_search"))
        .body("[1, 2")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 400);
}

/// Issue 11 §5: downloads are streamed CSV and JSON with `ETag` (a matching `If-None-Match`
/// is 304), `Cache-Control` and `Content-Disposition`; the CSV has the header and every row.
#[tokio::test]
async fn downloads_stream_every_row_with_cache_headers() {
    init();
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;
    let client = reqwest::Client::new();
    let csv = client
        .get(public_url(&node, "/dataset/units.csv"))
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), 200);
    let etag = csv.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(
        csv.headers()["content-disposition"],
        "attachment; filename=\"units.csv\""
    );
    assert_eq!(csv.headers()["cache-control"], "public, max-age=300");
    let text = csv.text().await.expect("body");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        ["code", "name", "province", "population", "area_km2"]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), ROWS);
    assert_eq!(
        &rows[1233][1], "Xã 1233, huyện Mẫu",
        "commas survive quoting"
    );

    let json: Value = client
        .get(public_url(&node, "/dataset/units.json"))
        .send()
        .await
        .expect("json")
        .json()
        .await
        .expect("array");
    assert_eq!(json.as_array().map(Vec::len), Some(ROWS));
    assert_eq!(json[0]["population"], 1000);

    let again = client
        .get(public_url(&node, "/dataset/units.csv"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("conditional");
    assert_eq!(again.status(), 304);
    for missing in [
        "/dataset/nothing.csv",
        "/dataset/units.xml",
        "/dataset/internal-units.csv",
    ] {
        let response = client
            .get(public_url(&node, missing))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 404, "{missing}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
}

/// Issue 11 §6: anonymous clients are limited per IP (429 with `Retry-After`); an
/// `X-Forwarded-For` from a peer that is not a trusted proxy changes nothing, while behind a
/// trusted proxy each forwarded client has its own budget.
#[tokio::test]
async fn per_client_limits_ignore_spoofed_forwarded_for() {
    init();
    let pki = TestPki::new();
    let limited = "rate_limit: { per_second: 1, burst: 2 }\n";
    let node = node(&pki, "per_second = 1000\nburst = 1000", limited).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..4 {
        let response = client
            .get(public_url(
                &node,
                "/api/3/action/datastore_search?resource_id=units&limit=1",
            ))
            .header("X-Forwarded-For", format!("198.51.100.{i}"))
            .send()
            .await
            .expect("search");
        let status = response.status().as_u16();
        if status == 429 {
            assert!(response.headers().contains_key("retry-after"));
            let body: Value = response.json().await.expect("json");
            assert_eq!(error_code(&body), "opendata.rate_limited");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses,
        [200, 200, 429, 429],
        "spoofed hops do not buy a new budget"
    );

    let proxied = node_behind_proxy(&pki, limited).await;
    let get = |hop: &'static str| {
        client
            .get(public_url(&proxied, "/dataset/units.csv"))
            .header("X-Forwarded-For", hop)
            .send()
    };
    for _ in 0..2 {
        assert_eq!(get("203.0.113.1").await.expect("a").status(), 200);
    }
    assert_eq!(get("203.0.113.1").await.expect("a").status(), 429);
    assert_eq!(
        get("203.0.113.2").await.expect("b").status(),
        200,
        "another client, its own budget"
    );
}

async fn node_behind_proxy(pki: &TestPki, extra: &str) -> TestNode {
    node(
        pki,
        "trusted_proxies = [\"127.0.0.1\"]\nper_second = 1000\nburst = 1000",
        extra,
    )
    .await
}

/// 000 Điều 3 k11: a members-tier dataset is served to registered members on the consumer
/// listener (mTLS, the registry), never to strangers.
#[tokio::test]
async fn members_datasets_are_served_to_registered_members_only() {
    init();
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;
    let list: Value = node
        .client(&pki.portal)
        .get(node.url("/opendata/v1/api/3/action/package_list"))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["result"], json!(["internal-units", "units"]));
    let anonymous = node
        .client(&pki.portal)
        .get(node.url("/opendata/v1/api/3/action/package_list"))
        .send()
        .await
        .expect("list");
    assert_eq!(anonymous.status(), 400, "no X-Road-Client");
}

/// Issue 11 §2: `check` refuses a dataset that is not open data, a public dataset on a
/// node with no public listener, an undeclared key and a malformed licence, naming each path.
#[test]
fn check_refuses_datasets_that_could_not_be_published() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .file("contracts/datasets/units.csv", csv_rows())
        .file(
            "contracts/datasets/secret.yaml",
            dataset("secret-units", "{ kind: csv, path: units.csv }", "")
                .replace("classification: open", "classification: sensitive"),
        )
        .file(
            "contracts/datasets/keyless.yaml",
            dataset("keyless", "{ kind: csv, path: units.csv }", "")
                .replace("key: code", "key: nothing")
                .replace("url: \"https://", "url: \"http://"),
        )
        .file(
            "contracts/datasets/public.yaml",
            dataset("public-units", "{ kind: csv, path: units.csv }", ""),
        )
        .write();
    let output = written.check();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    for needle in [
        format!(
            "{}: classification: ",
            written.path("contracts/datasets/secret.yaml").display()
        ),
        format!(
            "{}: key: ",
            written.path("contracts/datasets/keyless.yaml").display()
        ),
        format!(
            "{}: licence.url: ",
            written.path("contracts/datasets/keyless.yaml").display()
        ),
        "listeners.public: dataset public-units is published to the public".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
    }
}

/// Issue 11 §3, against an independent implementation: CKAN's own Python client
/// (`ckanapi`, installed by `.ci/run`) lists, shows, searches and pages the node as it
/// would a CKAN portal.
#[tokio::test]
async fn ckans_python_client_reads_the_catalogue() {
    init();
    if !python_has("ckanapi", "pip install ckanapi") {
        return;
    }
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;
    let script = repo_root().join("tests/interop/ckan_client.py");
    let url = public_url(&node, "");
    let output = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&url)
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ckan_client.py: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("the script's JSON report");
    assert_eq!(report["packages"], json!(["units"]));
    assert_eq!(report["license"], "cc-by-4.0");
    assert_eq!(report["total"], ROWS);
    assert_eq!(report["first_code"], "00001");
    assert_eq!(report["not_found"], "NotFound");
    assert_eq!(report["validation"], "ValidationError");
}

/// Issue 11 §6: a dataset's limit holds however the parameters arrive: a POST with a JSON
/// body names the dataset as surely as a query string.
#[tokio::test]
async fn a_datasets_limit_holds_for_posted_parameters_too() {
    init();
    let pki = TestPki::new();
    let node = node(
        &pki,
        "per_second = 1000\nburst = 1000",
        "rate_limit: { per_second: 1, burst: 2 }\n",
    )
    .await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(public_url(&node, "/api/action/datastore_search"))
            .json(&json!({"resource_id": "units", "limit": 1}))
            .send()
            .await
            .expect("post");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429]);
}

/// Issue 11 §7, against an independent validator: the public listener's OpenAPI 3.1 document,
/// generated from the configured datasets, is valid (`openapi-spec-validator`, installed by
/// `.ci/run`), describes the public dataset and its record, and names neither the members'
/// dataset nor any contract.
#[tokio::test]
async fn the_public_openapi_document_is_valid_and_tells_strangers_nothing_more() {
    init();
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;
    let text = reqwest::get(public_url(&node, "/openapi.json"))
        .await
        .expect("openapi")
        .text()
        .await
        .expect("body");
    let document: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    assert!(
        document["components"]["schemas"]["Record_units"]["properties"]["population"].is_object()
    );
    assert!(
        !text.contains("internal-units"),
        "the members tier is not described"
    );
    assert!(!text.contains("portal-citizen"), "no contract is named");
    assert_valid_openapi(&text);
}

/// Issue 11 §1: anonymous reads are counted in daily summaries (by dataset, action and
/// edge) on the ops listener, never one by one, and with nothing about the client: a
/// dataset id that is not in the catalog is not a key of its own.
#[tokio::test]
async fn anonymous_reads_are_summarised_per_day_without_the_client() {
    init();
    let pki = TestPki::new();
    let node = node(&pki, "per_second = 1000\nburst = 1000", "").await;
    for _ in 0..3 {
        let (status, _) = action(&node, "datastore_search", &[("resource_id", "units")]).await;
        assert_eq!(status, 200);
    }
    let (status, _) = action(
        &node,
        "datastore_search",
        &[("resource_id", "no-such-dataset-9f3a")],
    )
    .await;
    assert_eq!(status, 404);
    let download = reqwest::get(public_url(&node, "/dataset/units.csv"))
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let summary: Value = reqwest::get(format!("http://{}/status/v1/opendata/usage", node.ops))
        .await
        .expect("usage")
        .json()
        .await
        .expect("json");
    let rows = summary["days"].as_array().expect("days");
    let count = |dataset: &str, action: &str| {
        rows.iter()
            .filter(|r| r["dataset"] == dataset && r["action"] == action && r["edge"] == "public")
            .map(|r| r["requests"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    assert_eq!(count("units", "datastore_search"), 3);
    assert_eq!(
        count("*", "datastore_search"),
        1,
        "unknown ids are not keys"
    );
    assert_eq!(count("units", "download_csv"), 1);
    let text = summary.to_string();
    assert!(!text.contains("no-such-dataset"), "{text}");
    assert!(!text.contains("127.0.0.1"), "no client addresses: {text}");
}

/// A plain-HTTP client of the public listener: writes `head` and reads until the node
/// closes or 5 s pass; the answer's text.
async fn raw_public(node: &TestNode, head: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = tokio::net::TcpStream::connect(node.public.expect("a public listener"))
        .await
        .expect("connect");
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut answer),
    )
    .await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// 002 Điều 26 khoản 2: the public listener, open to anyone, resists what the consumer
/// listener resists. A silent connection is closed at the idle deadline, a trickled head is
/// cut at the receive deadline, oversized heads and targets get problem+json (431, 414),
/// connections per IP are capped before any HTTP, and a duplicated `resource_id` cannot
/// reach a members-tier dataset; the listener keeps serving after each.
#[tokio::test]
async fn the_public_listener_resists_slow_flooding_and_oversized_clients() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    init();
    let pki = TestPki::new();
    let node = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .public("per_second = 1000\nburst = 1000")
        .limit("idle_timeout_ms = 300")
        .limit("request_receive_timeout_ms = 300")
        .limit("max_connections_per_ip = 3")
        .file("contracts/datasets/units.csv", csv_rows())
        .file(
            "contracts/datasets/units.yaml",
            dataset("units", "{ kind: csv, path: units.csv }", ""),
        )
        .file(
            "contracts/datasets/internal.yaml",
            dataset("internal-units", "{ kind: csv, path: units.csv }", "")
                .replace("audience: public", "audience: members"),
        )
        .start()
        .await;
    let public = node.public.expect("a public listener");
    let served = || async {
        let (status, _) = action(&node, "package_list", &[]).await;
        assert_eq!(status, 200, "the listener keeps serving");
    };

    // Silent: closed at the idle deadline, nothing answered.
    let mut silent = tokio::net::TcpStream::connect(public).await.expect("tcp");
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        silent.read_to_end(&mut buffer),
    )
    .await;
    assert!(closed.is_ok(), "a silent connection was kept for 10 s");
    served().await;

    // Trickled: one byte every 100 ms never completes a head.
    let head = "GET /api/3/action/package_list HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut slow = tokio::net::TcpStream::connect(public).await.expect("tcp");
    let trickle = async {
        for byte in head.as_bytes() {
            slow.write_all(&[*byte]).await?;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let mut answer = Vec::new();
        slow.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), trickle).await;
    assert!(
        !matches!(&outcome, Ok(Ok(answer)) if answer.starts_with(b"HTTP/1.1 200")),
        "the node served a head trickled over {} ms",
        head.len() * 100
    );
    served().await;

    // Oversized heads and targets.
    let many: String = (0..80).map(|n| format!("X-Filler-{n}: x\r\n")).collect();
    let answer = raw_public(
        &node,
        &format!("GET /api/3/action/package_list HTTP/1.1\r\nHost: x\r\n{many}\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains("request.headers_too_large"), "{answer}");
    let long = "a".repeat(10 * 1024);
    let answer = raw_public(
        &node,
        &format!("GET /api/3/action/package_show?id={long} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 414"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    served().await;

    // A duplicated resource_id: whichever is read, the members tier stays hidden.
    for order in [
        "resource_id=internal-units&resource_id=units",
        "resource_id=units&resource_id=internal-units",
    ] {
        let body: serde_json::Value = reqwest::get(public_url(
            &node,
            &format!("/api/3/action/datastore_search?{order}&limit=1"),
        ))
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
        assert!(
            !body.to_string().contains("internal-units\",\"fields"),
            "{order}: {body}"
        );
        assert_ne!(body["result"]["resource_id"], "internal-units", "{order}");
    }

    // Flood: three bare connections from one address hold its allowance; a fourth is
    // closed before any HTTP, another address is served.
    let flooder: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tcp_connect(public, Some(flooder)).await.expect("tcp"));
    }
    let mut fourth = tcp_connect(public, Some(flooder)).await.expect("tcp");
    let _ = fourth.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        fourth.read_to_end(&mut answer),
    )
    .await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "a fourth connection from one address was served"
    );
    served().await;
    drop(held);
}
