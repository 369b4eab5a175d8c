//! The open-data catalog on a running node: DCAT in JSON-LD and Turtle checked against an
//! independent RDF implementation (Python `rdflib`, `tests/interop/dcat_interop.py`: the
//! two files must be the same graph), and the catalog page (language, headings, every
//! link answering on the same listener).
//!
//! The rdflib check is skipped with a printed notice where rdflib is not installed;
//! `DATAGATE_REQUIRE_INTEROP=1` turns the skip into a failure (CI sets it).

use crate::support::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// A public dataset whose text needs escaping in Turtle, JSON and HTML.
const SCHOOLS: &str = r#"id: truong-hoc
title: Danh sách trường tiểu học
title_en: Primary schools
description: "Trường tiểu học công lập và tư thục; mã \"TH\" \\ cập nhật <hằng quý> & công khai.\nDòng hai."
description_en: Public and private primary schools.
publisher: VN/GOV/000.00.00.G10
publisher_name: Sở Giáo dục và Đào tạo
licence: { id: cc-by-4.0, title: Creative Commons Attribution 4.0, url: "https://creativecommons.org/licenses/by/4.0/" }
update_frequency: quarterly
retention_months: 24
provenance: procedure
attribution: "Nguồn: Sở Giáo dục và Đào tạo"
classification: open
audience: public
keywords: [giáo dục, trường học]
fields:
  - { name: code, type: text, title: Mã trường }
  - { name: name, type: text, title: Tên trường, description: Tên đầy đủ }
  - { name: pupils, type: integer, title: Số học sinh }
key: code
source: { kind: csv, path: truong-hoc.csv }
rate_limit: { per_second: 1000, burst: 1000 }
"#;

const SCHOOLS_CSV: &str = "code,name,pupils\nTH001,Trường Tiểu học Kim Đồng,812\nTH002,\"Trường Tiểu học Lê Lợi, cơ sở 2\",455\n";

/// A dataset for members only: never in the public catalog.
const BUDGET: &str = r#"id: du-toan-noi-bo
title: Dự toán ngân sách chi tiết
description: Dự toán chi tiết theo đơn vị, chia sẻ cho cơ quan thành viên.
publisher: VN/GOV/000.00.00.G10
publisher_name: Sở Giáo dục và Đào tạo
licence: { id: odc-by, title: ODC Attribution, url: "https://opendatacommons.org/licenses/by/1-0/" }
update_frequency: annual
retention_months: 60
provenance: derived
attribution: "Nguồn: Sở Giáo dục và Đào tạo"
classification: open
audience: members
fields:
  - { name: unit, type: text, title: Đơn vị }
  - { name: amount, type: number, title: Số tiền }
key: unit
source: { kind: csv, path: du-toan.csv }
"#;

const BUDGET_CSV: &str = "unit,amount\nA,1.5\n";

const ADAPTER_DESCRIPTION: &str = "Cơ sở dữ liệu quốc gia về dân cư (test)";

/// A node with a public listener, both datasets, and the citizen service (whose adapter
/// has a description).
fn open_data_node<'a>(pki: &'a TestPki, upstream: &str, public: &str) -> NodeBuilder<'a> {
    NodeBuilder::new(pki)
        .citizen_rest_service(
            upstream,
            &format!("description = \"{ADAPTER_DESCRIPTION}\""),
            None,
        )
        .register_system(
            &pki.portal,
            PORTAL_MEMBER,
            &["dvc-portal", "tax-kiosk"],
            Effective::Already,
        )
        .public(&format!("per_second = 1000\nburst = 1000\n{public}\n"))
        .file("contracts/datasets/truong-hoc.yaml", SCHOOLS)
        .file("contracts/datasets/truong-hoc.csv", SCHOOLS_CSV)
        .file("contracts/datasets/du-toan.yaml", BUDGET)
        .file("contracts/datasets/du-toan.csv", BUDGET_CSV)
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, String, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

fn rdflib_available() -> bool {
    python_has("rdflib", "pip install rdflib")
}

/// Issue 11 (DCAT catalog): the JSON-LD and the Turtle a node serves are, to an
/// independent RDF parser, the same graph, listing the public dataset (titles in both
/// languages, the EU frequency IRI, both downloads) and the node's shared-data service,
/// with IRIs under the configured `base_url`; a members-only dataset is not in it.
#[tokio::test]
async fn dcat_jsonld_and_turtle_are_the_same_graph_to_rdflib() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = open_data_node(
        &pki,
        &upstream.url(),
        "base_url = \"https://data.example.gov.vn/mo/\"",
    )
    .start()
    .await;
    let public = node.public.expect("a public listener");
    let client = plain_client();

    let (status, content_type, jsonld) =
        get(&client, &format!("http://{public}/catalog.jsonld")).await;
    assert_eq!(status, 200, "{jsonld}");
    assert_eq!(content_type, "application/ld+json");
    let (status, content_type, turtle) =
        get(&client, &format!("http://{public}/catalog.ttl")).await;
    assert_eq!(status, 200, "{turtle}");
    assert!(content_type.starts_with("text/turtle"), "{content_type}");
    assert!(turtle.contains("<https://data.example.gov.vn/mo/dataset/truong-hoc> a dcat:Dataset"));
    assert!(
        !turtle.contains("du-toan-noi-bo"),
        "a members-only dataset is public"
    );
    assert!(!jsonld.contains("du-toan-noi-bo"));
    // Metadata of services, never contracts.
    assert!(!turtle.contains("portal-citizen"));

    if !rdflib_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let jsonld_file = dir.path().join("catalog.jsonld");
    let turtle_file = dir.path().join("catalog.ttl");
    std::fs::write(&jsonld_file, &jsonld).expect("write");
    std::fs::write(&turtle_file, &turtle).expect("write");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/dcat_interop.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&jsonld_file)
        .arg(&turtle_file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "rdflib could not parse the catalog: {}\n{turtle}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    assert_eq!(report["isomorphic"], true, "{report:#}");
    assert_eq!(report["triples"][0], report["triples"][1]);
    assert!(
        report["triples"][0].as_u64().expect("count") > 60,
        "{report:#}"
    );
    assert_eq!(report["datasets"], serde_json::json!(["truong-hoc"]));
    assert_eq!(report["services"], serde_json::json!([CITIZEN_SERVICE]));
    assert_eq!(
        report["titles"]["truong-hoc"],
        serde_json::json!({"vi": "Danh sách trường tiểu học", "en": "Primary schools"})
    );
    assert_eq!(
        report["frequency"]["truong-hoc"],
        "http://publications.europa.eu/resource/authority/frequency/QUARTERLY"
    );
    assert_eq!(
        report["downloads"]["truong-hoc"],
        serde_json::json!([
            "https://data.example.gov.vn/mo/dataset/truong-hoc.csv",
            "https://data.example.gov.vn/mo/dataset/truong-hoc.json"
        ])
    );
}

/// Issue 11: without `base_url` the IRIs come from the request's host, so every
/// `dcat:downloadURL` and `dcat:accessURL` answers on the listener that served the catalog;
/// members see both tiers under `/opendata/v1` on the consumer listener.
#[tokio::test]
async fn dcat_links_resolve_and_members_see_both_tiers() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = open_data_node(&pki, &upstream.url(), "").start().await;
    let public = node.public.expect("a public listener");
    let client = plain_client();
    let (status, _, turtle) = get(&client, &format!("http://{public}/catalog.ttl")).await;
    assert_eq!(status, 200);
    let origin = format!("http://{public}/");
    let urls: Vec<&str> = turtle
        .lines()
        .filter(|line| line.contains("dcat:downloadURL") || line.contains("dcat:accessURL"))
        .filter_map(|line| line.split('<').nth(1)?.split('>').next())
        .collect();
    assert_eq!(urls.len(), 5, "{turtle}");
    for url in urls {
        assert!(url.starts_with(&origin), "{url}");
        let (status, _, body) = get(&client, url).await;
        assert_eq!(status, 200, "{url}: {body}");
    }

    let members = node.client(&pki.portal);
    let response = members
        .get(node.url("/opendata/v1/catalog.ttl"))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let turtle = response.text().await.expect("body");
    let prefix = format!("<https://{}/opendata/v1/dataset/", node.consumer);
    assert!(
        turtle.contains(&format!("{prefix}truong-hoc> a dcat:Dataset")),
        "{turtle}"
    );
    assert!(turtle.contains(&format!("{prefix}du-toan-noi-bo> a dcat:Dataset")));
    // Without the member's header the catalog is refused like the rest of the API.
    let refused = members
        .get(node.url("/opendata/v1/catalog.jsonld"))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 400);
}

/// `href="…"` values of a page, unescaped.
fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| {
            href.replace("&#38;", "&")
                .replace("&#47;", "/")
                .replace("&amp;", "&")
                .replace("&#34;", "\"")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
        })
        .collect()
}

/// Issue 11 (catalog page): `/` is a Vietnamese page (English with `?lang=en` or an
/// `Accept-Language` preferring English) with one `h1`, each public dataset's title,
/// text escaped, no script, and every link on it answering 200 on the same listener
/// (the licences' links excepted: they leave the node).
#[tokio::test]
async fn catalog_page_is_accessible_and_every_link_answers() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = open_data_node(&pki, &upstream.url(), "").start().await;
    let public = node.public.expect("a public listener");
    let client = plain_client();
    let page_url = format!("http://{public}/");

    let (status, content_type, html) = get(&client, &page_url).await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(content_type, "text/html; charset=utf-8");
    assert!(html.contains("<html lang=\"vi\">"), "{html}");
    assert_eq!(html.matches("<h1").count(), 1);
    assert!(html.contains("Danh sách trường tiểu học"));
    assert!(
        !html.contains("Dự toán ngân sách"),
        "a members-only dataset is public"
    );
    assert!(!html.contains("<script"));
    assert!(!html.contains("<hằng quý>"), "text is escaped");
    assert!(
        html.contains("&#60;hằng quý&#62;") || html.contains("&lt;hằng quý&gt;"),
        "text is escaped"
    );
    assert!(html.contains(ADAPTER_DESCRIPTION));
    assert!(html.contains(CITIZEN_SERVICE));
    for label in [
        "Hằng quý",
        "24 tháng",
        "Mã trường",
        "Creative Commons Attribution 4.0",
    ] {
        assert!(html.contains(label), "{label}");
    }

    let (_, _, english) = get(&client, &format!("{page_url}?lang=en")).await;
    assert!(english.contains("<html lang=\"en\">"));
    assert!(english.contains("Primary schools"));
    assert!(english.contains("Quarterly"));
    let response = client
        .get(&page_url)
        .header("Accept-Language", "en-GB,en;q=0.9,vi;q=0.5")
        .send()
        .await
        .expect("request");
    assert_eq!(
        response
            .headers()
            .get("content-language")
            .map(|v| v.as_bytes()),
        Some(&b"en"[..])
    );

    let base = url::Url::parse(&page_url).expect("url");
    let links = hrefs(&html);
    assert!(links.len() >= 10, "{links:?}");
    for href in links {
        if let Some(fragment) = href.strip_prefix('#') {
            assert!(html.contains(&format!("id=\"{fragment}\"")), "{href}");
            continue;
        }
        let url = base.join(&href).expect("a valid link");
        if url.host_str() != base.host_str() || url.port() != base.port() {
            assert!(
                href == "https://creativecommons.org/licenses/by/4.0/",
                "only the licence leaves the node: {href}"
            );
            continue;
        }
        let (status, _, body) = get(&client, url.as_str()).await;
        assert_eq!(status, 200, "{href}: {body}");
    }

    // Members: the same page on the consumer listener, both tiers.
    let members = node.client(&pki.portal);
    let response = members
        .get(node.url("/opendata/v1/"))
        .header("X-Road-Client", PORTAL)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let html = response.text().await.expect("body");
    assert!(html.contains("Dự toán ngân sách chi tiết"));
    assert!(html.contains("href=\"/opendata/v1/dataset/du-toan-noi-bo.csv\""));
}

/// `[public] base_url` must be an http(s) URL: `config::load` (what `datagate check`
/// runs) names the field.
#[tokio::test]
async fn a_base_url_that_is_not_http_is_refused_at_load() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let written = open_data_node(
        &pki,
        &upstream.url(),
        "base_url = \"ftp://data.example.gov.vn\"",
    )
    .write();
    let errors = datagate::config::load(&written.config_file).expect_err("refused");
    assert!(
        errors
            .iter()
            .any(|e| e.to_string().contains("public.base_url")),
        "{errors:?}"
    );
}
