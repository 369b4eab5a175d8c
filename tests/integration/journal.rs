//! The journal: one durable row per exchange, allowed or denied, and never a
//! personal identifier in clear.

use crate::journal_backends::{Backend, datagate};
use crate::support::*;
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Row};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every column of every row, as text (NULL as `None`), keyed by column name.
pub async fn journal_rows(node: &TestNode) -> Vec<BTreeMap<String, Option<String>>> {
    let mut connection = SqliteConnectOptions::new()
        .filename(node.journal_path())
        .read_only(true)
        .connect()
        .await
        .expect("open the journal");
    let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('exchanges')")
        .fetch_all(&mut connection)
        .await
        .expect("columns")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    assert!(columns.contains(&"message_id".to_owned()), "{columns:?}");
    let select = columns
        .iter()
        .map(|c| format!("CAST(\"{c}\" AS TEXT)"))
        .collect::<Vec<_>>()
        .join(", ");
    // The column names come from the schema itself, not from any input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {select} FROM exchanges ORDER BY seq"
    )))
    .fetch_all(&mut connection)
    .await
    .expect("rows")
    .iter()
    .map(|row| {
        columns
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), row.get::<Option<String>, _>(i)))
            .collect()
    })
    .collect()
}

/// 004 Điều 27 khoản 3, Điều 6 khoản 1–2; 002 Điều 26 khoản 1: every exchange is journaled before it is answered, personal ids only as keyed digests.
#[tokio::test]
async fn journals_every_exchange_once_without_citizen_ids_in_clear() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url()).start().await;
    let portal = node.client(&pki.portal);
    let ministry = node.client(&pki.ministry);
    let stranger = node.client(&pki.client("unregistered"));
    let looked_up = "079099000123";
    let searched = "001188004567";
    let citizen = node.citizen_url(looked_up);

    // (message id, request, expected status, expected error code)
    let exchanges: Vec<(&str, reqwest::RequestBuilder, u16, Option<&str>)> = vec![
        ("journal-ok-get", node.lookup(&portal, looked_up), 200, None),
        (
            "journal-ok-search",
            portal
                .post(node.url(&format!("/r1/{CITIZEN_SERVICE}/search")))
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", PURPOSE)
                .json(&json!({ "citizen_id": searched })),
            200,
            None,
        ),
        (
            "journal-purpose",
            portal
                .get(&citizen)
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", "MARKETING"),
            403,
            Some("contract.purpose_not_allowed"),
        ),
        (
            "journal-no-client",
            portal.get(&citizen).header("X-Purpose", PURPOSE),
            400,
            Some("request.client_missing"),
        ),
        (
            "journal-expired",
            ministry
                .get(&citizen)
                .header("X-Road-Client", MINISTRY)
                .header("X-Purpose", "LAND-TITLE"),
            403,
            Some("contract.outside_validity"),
        ),
        (
            "journal-stranger",
            stranger
                .get(&citizen)
                .header("X-Road-Client", PORTAL)
                .header("X-Purpose", PURPOSE),
            403,
            Some("trust.certificate_unregistered"),
        ),
        (
            "journal-schema",
            node.lookup(&portal, "12345"),
            422,
            Some("request.schema_invalid"),
        ),
    ];
    let mut expected = BTreeMap::new();
    for (id, request, status, code) in exchanges {
        let response = request
            .header("X-Road-Id", id)
            .send()
            .await
            .expect("request");
        assert_eq!(
            response.status().as_u16(),
            status,
            "{id}: {}",
            response.text().await.unwrap_or_default()
        );
        expected.insert(id.to_owned(), (status, code));
    }

    // Journaled before acknowledged: every answer received means every row committed.
    let rows = journal_rows(&node).await;
    assert_eq!(
        rows.len(),
        expected.len(),
        "one row per exchange: {rows:#?}"
    );
    for row in &rows {
        let id = row["message_id"].clone().expect("message id");
        let (status, code) = expected
            .remove(&id)
            .unwrap_or_else(|| panic!("unexpected or repeated row {id}"));
        assert_eq!(
            row["status"].as_deref(),
            Some(status.to_string().as_str()),
            "{id}"
        );
        assert_eq!(row["error_code"].as_deref(), code, "{id}");
        assert_eq!(
            row["peer_fingerprint"].as_ref().map(String::len),
            Some(64),
            "{id}"
        );
        for (column, value) in row {
            for citizen_id in [looked_up, searched] {
                assert!(
                    !value.as_deref().unwrap_or("").contains(citizen_id),
                    "{id}: column {column} holds a citizen id in clear: {value:?}"
                );
            }
        }
        if status == 200 {
            assert!(row["contract_id"].is_some(), "{id}");
            let subject = row["subject_digest"]
                .clone()
                .expect("the subject is journaled as a digest");
            assert_eq!(subject.len(), 64, "{id}");
            assert!(row["response_digest"].is_some(), "{id}");
        }
    }
    assert!(expected.is_empty(), "exchanges without a row: {expected:?}");

    // The two successful lookups name different subjects, so their digests differ.
    let subjects: Vec<_> = rows
        .iter()
        .filter(|r| r["status"].as_deref() == Some("200"))
        .filter_map(|r| r["subject_digest"].clone())
        .collect();
    assert_eq!(subjects.len(), 2);
    assert_ne!(subjects[0], subjects[1]);

    // Nor anywhere in the database files, indexes and write-ahead log included.
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", node.journal_path().display());
        if let Ok(bytes) = std::fs::read(&path) {
            for citizen_id in [looked_up, searched] {
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

#[tokio::test]
async fn dangerous_disable_journal_serves_without_recording() {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .dangerous("disable_journal = true")
        .start()
        .await;
    let portal = node.client(&pki.portal);
    let response = node
        .lookup(&portal, "079099000123")
        .send()
        .await
        .expect("lookup");
    assert_eq!(response.status(), 200);
    assert!(
        !node.journal_path().exists(),
        "no journal database is even created when the journal is disabled"
    );
}

/// Issue 9 (003 Điều 33–35, đối chiếu, tra soát): the journal is hash-chained and each
/// batch sealed (its Merkle root signed with the node's key); `datagate journal verify`
/// passes an intact journal and, for a record changed or removed after the fact (in the
/// middle or at the end), or a seal altered, exits non-zero naming the first bad record
/// by sequence number and X-Road-Id. On the embedded backend.
#[tokio::test]
async fn journal_verify_names_the_first_changed_or_removed_record() {
    verify_names_the_first_bad_record(Backend::Sqlite).await;
}

/// The same as [`journal_verify_names_the_first_changed_or_removed_record`], on
/// PostgreSQL (003 Điều 33–35).
#[tokio::test]
async fn journal_verify_names_the_first_changed_or_removed_record_on_postgres() {
    if let Some((backend, _guard)) = Backend::postgres("verify") {
        verify_names_the_first_bad_record(backend).await;
    }
}

async fn verify_names_the_first_bad_record(backend: Backend) {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let mut node = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("verify-1"))
        .start()
        .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let id = format!("chain-{n}");
        let response = node
            .client(&pki.portal)
            .get(node.citizen_url(CITIZEN_ID))
            .header("X-Road-Client", PORTAL)
            .header("X-Purpose", PURPOSE)
            .header("X-Road-Id", &id)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        ids.push(id);
    }
    node.shutdown();
    node.stopped().await.expect("stopped");
    let dir = node.written.path("");
    let verify = |copy: Option<&str>, range: Option<&str>| {
        let mut args: Vec<std::ffi::OsString> = vec!["journal".into(), "verify".into()];
        args.extend(backend.args(&dir, copy));
        if let Some(from) = range {
            args.extend([
                "--from".into(),
                from.into(),
                "--to".into(),
                "9999-12-31T00:00:00Z".into(),
            ]);
        }
        datagate(&args)
    };
    let intact = verify(None, None);
    assert!(intact.status.success(), "{intact:?}");
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(stdout.contains("4 chained records"), "{intact:?}");
    assert!(stdout.contains("0 not yet sealed"), "{intact:?}");

    // A changed status (an answer "made" successful after the fact).
    backend
        .tamper(
            &dir,
            "changed",
            "UPDATE exchanges SET status = 403 WHERE seq = 2",
        )
        .await;
    let output = verify(Some("changed"), None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("seq 2") && stderr.contains(&ids[1]),
        "{stderr}"
    );

    // A range that leaves the changed record out verifies; one that takes it in names it.
    let received: Vec<String> = backend
        .rows(&dir)
        .await
        .into_iter()
        .filter_map(|row| row["request_in_at"].clone())
        .collect();
    assert_eq!(received.len(), 4);
    let later = verify(Some("changed"), Some(&received[2]));
    assert!(later.status.success(), "{later:?}");
    assert!(
        String::from_utf8_lossy(&later.stdout).contains("2 chained records"),
        "{later:?}"
    );
    let all = verify(Some("changed"), Some(&received[0]));
    assert!(!all.status.success(), "{all:?}");
    assert!(String::from_utf8_lossy(&all.stderr).contains("seq 2"));

    // A removed record: the next one no longer follows.
    backend
        .tamper(&dir, "removed", "DELETE FROM exchanges WHERE seq = 3")
        .await;
    let output = verify(Some("removed"), None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("seq 4") && stderr.contains(&ids[3]),
        "{stderr}"
    );

    // A reordered pair: two records' contents swapped.
    backend
        .tamper(
            &dir,
            "reordered",
            "UPDATE exchanges SET seq = CASE seq WHEN 2 THEN -3 WHEN 3 THEN -2 ELSE seq END \
             WHERE seq IN (2, 3); UPDATE exchanges SET seq = -seq WHERE seq < 0",
        )
        .await;
    let output = verify(Some("reordered"), None);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("seq 2"),
        "{output:?}"
    );

    // The last record removed: no link breaks, but its seal no longer adds up.
    backend
        .tamper(&dir, "truncated", "DELETE FROM exchanges WHERE seq = 4")
        .await;
    let output = verify(Some("truncated"), None);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("lost records"),
        "{output:?}"
    );

    // A seal altered: its root no longer matches its records.
    backend
        .tamper(
            &dir,
            "forged",
            "UPDATE seals SET merkle_root = '0000000000000000000000000000000000000000000000000000000000000000'",
        )
        .await;
    let output = verify(Some("forged"), None);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Merkle root"),
        "{output:?}"
    );

    // A seal's time changed: its signature no longer verifies (the seal covers it).
    backend
        .tamper(
            &dir,
            "resigned",
            "UPDATE seals SET sealed_at = '2000-01-01T00:00:00Z' WHERE first_seq = 1",
        )
        .await;
    let output = verify(Some("resigned"), None);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("signature does not verify"),
        "{output:?}"
    );
}

/// A free port on 127.0.0.1 (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Issue 9, durability (004 Điều 27 khoản 3): `kill -9` under load loses nothing that was
/// acknowledged: every exchange whose answer reached its client is in the journal, and
/// the chain and its seals verify (a batch and its seal commit together).
#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_exchange() {
    kill_9_scenario(Backend::Sqlite).await;
}

/// The same as [`kill_9_under_load_loses_no_acknowledged_exchange`], on PostgreSQL: the
/// commit PostgreSQL acknowledged is the durability point (004 Điều 27 khoản 3).
#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_exchange_on_postgres() {
    if let Some((backend, _guard)) = Backend::postgres("kill9") {
        kill_9_scenario(backend).await;
    }
}

async fn kill_9_scenario(backend: Backend) {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let written = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("kill9"))
        .write();
    let (consumer, ops) = (free_port(), free_port());
    let text = std::fs::read_to_string(&written.config_file).expect("config");
    let text = text
        .replace(
            "consumer = \"127.0.0.1:0\"",
            &format!("consumer = \"127.0.0.1:{consumer}\""),
        )
        .replace(
            "ops = \"127.0.0.1:0\"",
            &format!("ops = \"127.0.0.1:{ops}\""),
        );
    std::fs::write(&written.config_file, text).expect("config");
    let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["serve", "--config"])
        .arg(&written.config_file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("datagate serve");
    let ready = format!("http://127.0.0.1:{ops}/readyz");
    let mut up = false;
    for _ in 0..100 {
        if reqwest::get(&ready).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the node did not start");

    let identity = reqwest::Identity::from_pem(
        format!("{}{}", pki.portal.cert_pem, pki.portal.key_pem).as_bytes(),
    )
    .expect("identity");
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca.cert_pem().as_bytes()).expect("CA")])
        .identity(identity)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let url = format!("https://127.0.0.1:{consumer}/r1/{CITIZEN_SERVICE}/{CITIZEN_ID}");
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (client, url, acknowledged, stop) = (
            client.clone(),
            url.clone(),
            acknowledged.clone(),
            stop.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("kill9-{worker}-{n}");
                n += 1;
                let answer = client
                    .get(&url)
                    .header("X-Road-Client", PORTAL)
                    .header("X-Purpose", PURPOSE)
                    .header("X-Road-Id", &id)
                    .send()
                    .await;
                if let Ok(response) = answer
                    && response.status() == 200
                    && response.bytes().await.is_ok()
                {
                    acknowledged.lock().expect("lock").push(id);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill().expect("kill -9");
    let _ = node.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        acknowledged.len() > 10,
        "too little load: {}",
        acknowledged.len()
    );

    let dir = written.path("");
    let mut args: Vec<std::ffi::OsString> = vec!["journal".into(), "verify".into()];
    args.extend(backend.args(&dir, None));
    let verified = datagate(&args);
    assert!(verified.status.success(), "{verified:?}");
    let ids: std::collections::HashSet<String> = backend
        .rows(&dir)
        .await
        .into_iter()
        .filter_map(|row| row["message_id"].clone())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !ids.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not journaled: {lost:?}");
}

/// Issue 9: `datagate journal export --x-road-id` writes an evidence bundle that
/// `datagate journal verify --bundle` checks with nothing else, and a change to any
/// record value, hash, proof step or seal field is detected and located (record or
/// seal named).
#[tokio::test]
async fn evidence_bundle_verifies_alone_and_locates_any_change() {
    bundle_scenario(Backend::Sqlite).await;
}

/// The same as [`evidence_bundle_verifies_alone_and_locates_any_change`], exported from a
/// PostgreSQL journal (003 Điều 33–35).
#[tokio::test]
async fn evidence_bundle_verifies_alone_and_locates_any_change_on_postgres() {
    if let Some((backend, _guard)) = Backend::postgres("bundle") {
        bundle_scenario(backend).await;
    }
}

async fn bundle_scenario(backend: Backend) {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let mut node = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("bundle-1"))
        .start()
        .await;
    // Concurrent lookups, so batches hold several records and proofs have steps.
    let client = node.client(&pki.portal);
    let lookups = (0..12).map(|n| {
        node.lookup(&client, CITIZEN_ID)
            .header("X-Road-Id", format!("bundle-{n}"))
            .send()
    });
    for response in futures_util::future::join_all(lookups).await {
        assert_eq!(response.expect("request").status(), 200);
    }
    node.shutdown();
    node.stopped().await.expect("stopped");
    let journal = node.journal_path();
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
            .args(args)
            .output()
            .expect("datagate runs")
    };
    let bundle_path = journal.with_file_name("bundle-5.json");
    let mut export: Vec<std::ffi::OsString> = vec!["journal".into(), "export".into()];
    export.extend(backend.args(&node.written.path(""), None));
    export.extend([
        "--x-road-id".into(),
        "bundle-5".into(),
        "--out".into(),
        bundle_path.clone().into_os_string(),
    ]);
    let exported = datagate(&export);
    assert!(exported.status.success(), "{exported:?}");
    let verify = |path: &std::path::Path| {
        run(&[
            "journal".as_ref(),
            "verify".as_ref(),
            "--bundle".as_ref(),
            path.as_os_str(),
        ])
    };
    let intact = verify(&bundle_path);
    assert!(intact.status.success(), "{intact:?}");

    let original: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&bundle_path).expect("bundle")).expect("json");
    assert_eq!(original["records"].as_array().map(Vec::len), Some(1));
    // Every string in the bundle, changed in turn by one character: each is caught and
    // the error names the record or the seal it is in.
    let mut paths = Vec::new();
    fn strings(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(_) => out.push(at),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    strings(item, format!("{at}/{i}"), out);
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map {
                    strings(item, format!("{at}/{key}"), out);
                }
            }
            _ => {}
        }
    }
    strings(&original, String::new(), &mut paths);
    let mutated_path = journal.with_file_name("bundle-mutated.json");
    let mut checked = 0;
    for pointer in paths.iter().filter(|p| *p != "/format") {
        let mut mutated = original.clone();
        let Some(serde_json::Value::String(text)) = mutated.pointer_mut(pointer) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        // Swap the last character for another of the same kind (hex stays hex).
        let last = text.pop().expect("not empty");
        text.push(if last == '0' { '1' } else { '0' });
        std::fs::write(&mutated_path, serde_json::to_vec(&mutated).expect("json")).expect("write");
        let output = verify(&mutated_path);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "a change at {pointer} went unnoticed"
        );
        let located = if pointer.starts_with("/seals") {
            stderr.contains("seal 0")
        } else {
            stderr.contains("record 0") || stderr.contains("seal 0")
        };
        assert!(located, "{pointer}: {stderr}");
        checked += 1;
    }
    assert!(checked > 30, "only {checked} fields checked");
}
