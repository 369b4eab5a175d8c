//! Open data (issue 11 §2) from the backends that are not a file: a PostgreSQL table read
//! live, and an upstream REST service imported and refreshed. Over real sockets: the public
//! listener in front, a real PostgreSQL server (`DATAGATE_TEST_POSTGRES_URL`, which
//! `.ci/run` always sets; each test in a schema of its own, dropped at the end), a real HTTP
//! upstream.

use crate::journal_backends::{Backend, SchemaGuard};
use crate::opendata::{action, dataset, error_code, public_url};
use crate::support::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const ROWS: usize = 2_500;

/// A PostgreSQL schema of this test with a table of `ROWS` units whose columns have
/// PostgreSQL's own types (`varchar`, `int4`, `numeric`), or `None` when the server is not
/// configured (said plainly).
async fn units_table(test: &str) -> Option<(String, String, SchemaGuard)> {
    let (backend, guard) = Backend::postgres(test)?;
    let Backend::Postgres { url, schema } = backend else {
        unreachable!("a PostgreSQL backend")
    };
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("PostgreSQL at DATAGATE_TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA {schema};
         CREATE TABLE {schema}.units (code varchar(10) PRIMARY KEY, name text NOT NULL,
             province text, population int4, area_km2 numeric(10,2));
         INSERT INTO {schema}.units
             SELECT lpad(i::text, 5, '0'), 'Xã ' || i || ', huyện Mẫu',
                    (ARRAY['Hà Nội','TP. Hồ Chí Minh','Đà Nẵng','Cần Thơ'])[(i - 1) % 4 + 1],
                    1000 + (i - 1) * 7, ((i - 1) % 90) + 0.5
             FROM generate_series(1, {ROWS}) AS i;"
    )))
    .execute(&mut connection)
    .await
    .expect("the test's table");
    Some((url, schema, guard))
}

async fn postgres_node(pki: &TestPki, url: &str, schema: &str) -> TestNode {
    NodeBuilder::standard(pki, "http://127.0.0.1:9")
        .public("per_second = 1000\nburst = 1000")
        .section(&format!(
            "[datasets]\ndir = \"contracts/datasets\"\npostgres_url = \"{url}\""
        ))
        .file(
            "contracts/datasets/units.yaml",
            dataset(
                "units",
                &format!("{{ kind: postgres, schema: {schema}, table: units }}"),
                "",
            ),
        )
        .start()
        .await
}

/// 000 Điều 8 k6; issue 11 §2: a dataset read live from PostgreSQL answers CKAN's
/// `datastore_search` with filters, free text, sorts, chosen fields and totals, its values
/// typed as declared whatever the column's own type; hostile values stay values.
#[tokio::test]
async fn a_postgres_table_answers_searches_with_bound_values_only() {
    init();
    let Some((url, schema, _guard)) = units_table("od_search").await else {
        return;
    };
    let pki = TestPki::new();
    let node = postgres_node(&pki, &url, &schema).await;

    let (status, page) = action(
        &node,
        "datastore_search",
        &[("resource_id", "units"), ("limit", "3"), ("offset", "10")],
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let result = &page["result"];
    assert_eq!(result["total"], ROWS);
    let records = result["records"].as_array().expect("records");
    assert_eq!(records.len(), 3);
    assert_eq!(
        records[0],
        json!({"code": "00011", "name": "Xã 11, huyện Mẫu", "province": "Đà Nẵng",
               "population": 1070, "area_km2": 10.5}),
        "natural order is the key's; int4 and numeric read as the declared types"
    );

    let (_, filtered) = action(
        &node,
        "datastore_search",
        &[
            ("resource_id", "units"),
            ("filters", r#"{"province": ["Đà Nẵng", "Cần Thơ"]}"#),
            ("q", "huyện"),
            ("sort", "population desc"),
            ("fields", "code,population"),
            ("limit", "2"),
        ],
    )
    .await;
    let result = &filtered["result"];
    assert_eq!(result["total"], ROWS / 2);
    assert_eq!(
        result["records"],
        json!([{"code": "02500", "population": 18493}, {"code": "02499", "population": 18486}])
    );

    for hostile in [
        r#"{"province": "x' OR '1'='1"}"#,
        r#"{"province": "'; DROP TABLE units; --"}"#,
    ] {
        let (status, body) = action(
            &node,
            "datastore_search",
            &[("resource_id", "units"), ("filters", hostile)],
        )
        .await;
        assert_eq!(status, 200, "a value, not SQL: {body}");
        assert_eq!(body["result"]["total"], 0);
    }
    let (status, body) = action(
        &node,
        "datastore_search",
        &[("resource_id", "units"), ("q", "%_\\")],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["total"], 0, "wildcards in q are literal");
    let (status, body) = action(
        &node,
        "datastore_search",
        &[
            ("resource_id", "units"),
            ("sort", "population; DROP TABLE units"),
        ],
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(error_code(&body), "opendata.invalid_query");
    let (_, after) = action(&node, "datastore_search", &[("resource_id", "units")]).await;
    assert_eq!(after["result"]["total"], ROWS, "the table is intact");
}

/// Issue 11 §5: a PostgreSQL dataset downloads whole, streamed in key order by keyset
/// batches; a live table has no cheap version, so its download carries no `ETag` and says
/// `no-cache` rather than claim one.
#[tokio::test]
async fn a_postgres_table_downloads_whole_in_key_order_without_an_etag() {
    init();
    let Some((url, schema, _guard)) = units_table("od_download").await else {
        return;
    };
    let pki = TestPki::new();
    let node = postgres_node(&pki, &url, &schema).await;
    let response = reqwest::get(public_url(&node, "/dataset/units.csv"))
        .await
        .expect("download");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("etag").is_none());
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let body = response.text().await.expect("csv");
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let codes: Vec<String> = reader
        .records()
        .map(|r| r.expect("record")[0].to_owned())
        .collect();
    assert_eq!(codes.len(), ROWS, "every row, across three batches");
    assert!(codes.windows(2).all(|w| w[0] < w[1]), "key order");
    let json: Vec<Value> = reqwest::get(public_url(&node, "/dataset/units.json"))
        .await
        .expect("json")
        .json()
        .await
        .expect("array");
    assert_eq!(json.len(), ROWS);
    assert_eq!(json[ROWS - 1]["area_km2"], 69.5);
}

/// An upstream REST service for the tests: answers `body` (with `status`) at `/units`.
struct Upstream {
    address: std::net::SocketAddr,
    answer: Arc<Mutex<(u16, String)>>,
}

impl Upstream {
    async fn start(body: String) -> Upstream {
        let answer = Arc::new(Mutex::new((200u16, body)));
        let shared = answer.clone();
        let app = axum::Router::new().route(
            "/units",
            axum::routing::get(move || {
                let shared = shared.clone();
                async move {
                    let (status, body) = shared.lock().expect("answer").clone();
                    (
                        axum::http::StatusCode::from_u16(status).expect("status"),
                        [("content-type", "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Upstream { address, answer }
    }

    fn answer(&self, status: u16, body: String) {
        *self.answer.lock().expect("answer") = (status, body);
    }
}

fn units_json(count: usize, province: &str) -> String {
    let rows: Vec<Value> = (1..=count)
        .map(|i| {
            json!({"code": format!("{i:05}"), "name": format!("Xã {i}"), "province": province,
                   "population": 1000 + i, "area_km2": 1.5})
        })
        .collect();
    Value::from(rows).to_string()
}

/// Issue 11 §2: a dataset from an upstream REST service is imported at start and served
/// from the import; a reload fetches again and serves the new answer; an upstream that is
/// down, oversized, or answers rows that do not fit the declared types leaves the last good
/// import in service (nothing already accepted is lost).
#[tokio::test]
async fn an_upstream_rest_source_is_imported_and_its_last_good_answer_kept() {
    init();
    let upstream = Upstream::start(units_json(30, "Hà Nội")).await;
    let pki = TestPki::new();
    let source = format!(
        "{{ kind: rest, url: \"http://{}/units\", format: json, refresh_minutes: 5, max_bytes: 20000 }}",
        upstream.address
    );
    let node = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .public("per_second = 1000\nburst = 1000")
        .file(
            "contracts/datasets/units.yaml",
            dataset("units", &source, ""),
        )
        .start()
        .await;
    let total = |node: &TestNode| {
        let node_url = public_url(
            node,
            "/api/3/action/datastore_search?resource_id=units&limit=1",
        );
        async move {
            let body: Value = reqwest::get(node_url)
                .await
                .expect("search")
                .json()
                .await
                .expect("json");
            (
                body["result"]["total"].as_u64().unwrap_or(0),
                body["result"]["records"][0]["province"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    assert_eq!(total(&node).await, (30, "Hà Nội".to_owned()));
    let first_etag = reqwest::get(public_url(&node, "/dataset/units.csv"))
        .await
        .expect("download")
        .headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();

    // A reload opens the datasets off the signal path: each round retitles the dataset, and
    // the new title shows when the new catalog (fetched, imported or kept) is in service.
    let yaml = node.written.path("contracts/datasets/units.yaml");
    let reload = |round: usize| {
        let text = dataset("units", &source, "").replace(
            "title: Đơn vị hành chính (units)",
            &format!("title: Đơn vị hành chính (round {round})"),
        );
        std::fs::write(&yaml, text).expect("retitle");
        assert!(node.reload(), "round {round}: the reload is applied");
        let show = public_url(&node, "/api/3/action/package_show?id=units");
        async move {
            for _ in 0..200 {
                let body: Value = reqwest::get(&show)
                    .await
                    .expect("show")
                    .json()
                    .await
                    .expect("json");
                if body["result"]["title"] == format!("Đơn vị hành chính (round {round})") {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("round {round}: the reloaded catalog never came into service");
        }
    };
    upstream.answer(200, units_json(40, "Huế"));
    reload(1).await;
    assert_eq!(total(&node).await, (40, "Huế".to_owned()), "the new answer");
    let second_etag = reqwest::get(public_url(&node, "/dataset/units.csv"))
        .await
        .expect("download")
        .headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    assert_ne!(first_etag, second_etag, "a new version, a new ETag");

    for (round, (status, body, why)) in [
        (503, "{}".to_owned(), "upstream down"),
        (200, units_json(400, "Sơn La"), "larger than max_bytes"),
        (
            200,
            r#"[{"code": "1", "name": "x", "province": "y", "population": "many", "area_km2": 1}]"#
                .to_owned(),
            "a value of the wrong type",
        ),
        (200, "not json".to_owned(), "not JSON"),
        (200, "[1, 2]".to_owned(), "items that are not objects"),
    ]
    .into_iter()
    .enumerate()
    {
        upstream.answer(status, body);
        reload(round + 2).await;
        assert_eq!(
            total(&node).await,
            (40, "Huế".to_owned()),
            "{why}: the last good import is served"
        );
    }
}

/// Issue 11 §2: `check` refuses a PostgreSQL dataset on a node with no open-data database
/// (here: a URL that is not PostgreSQL's), an upstream over plain HTTP to another host or
/// with credentials, bad bounds, and an answer cache below its floor, naming each path and
/// never a secret.
#[test]
fn check_refuses_backends_that_could_not_be_read_safely() {
    init();
    let pki = TestPki::new();
    let written = NodeBuilder::standard(&pki, "http://127.0.0.1:9")
        .public("per_second = 10")
        .section(
            "[datasets]\ndir = \"contracts/datasets\"\npostgres_url = \"mysql://reader:hunter2@db/open\"\n\n[cache]\nmax_bytes = 1000",
        )
        .file(
            "contracts/datasets/live.yaml",
            dataset("live", "{ kind: postgres, schema: stats, table: units }", ""),
        )
        .file(
            "contracts/datasets/plain.yaml",
            dataset(
                "plain",
                "{ kind: rest, url: \"http://data.example.org/units\", format: json }",
                "",
            ),
        )
        .file(
            "contracts/datasets/secret.yaml",
            dataset(
                "secret",
                "{ kind: rest, url: \"https://user:pw@data.example.org/units\", format: csv, refresh_minutes: 0, max_bytes: 0 }",
                "",
            ),
        )
        .file(
            "contracts/datasets/odd.yaml",
            dataset("odd", "{ kind: postgres, schema: \"a b\", table: units }", ""),
        )
        .write();
    let output = written.check();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    let path = |file: &str| written.path(file).display().to_string();
    for needle in [
        format!("{}: source.url: ", path("contracts/datasets/plain.yaml")),
        format!("{}: source.url: ", path("contracts/datasets/secret.yaml")),
        format!(
            "{}: source.refresh_minutes: ",
            path("contracts/datasets/secret.yaml")
        ),
        format!(
            "{}: source.max_bytes: ",
            path("contracts/datasets/secret.yaml")
        ),
        format!("{}: source.schema: ", path("contracts/datasets/odd.yaml")),
        "datasets.postgres_url: dataset live is read from PostgreSQL".to_owned(),
        "datasets.postgres_url: must be a postgres:// URL".to_owned(),
        "cache.max_bytes: must be at least 65536".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("pw@"),
        "no credentials in errors:\n{stderr}"
    );
}
