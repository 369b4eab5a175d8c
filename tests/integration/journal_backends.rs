//! The journal's two backends under one test suite: the embedded SQLite file and a
//! PostgreSQL schema of the test's own (on the server named by
//! `DATAGATE_TEST_POSTGRES_URL`, which `.ci/run` always sets; without it the PostgreSQL
//! runs say plainly that they skip). Each PostgreSQL run drops its schemas at the end.

use crate::support::*;
use sqlx::{ConnectOptions as _, Row as _};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a test's journal lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// `journal.sqlite` in the node's directory.
    Sqlite,
    /// A schema of this test's own.
    Postgres {
        /// The server.
        url: String,
        /// The schema.
        schema: String,
    },
}

/// Drops a test's PostgreSQL schemas when the test ends, however it ends.
pub struct SchemaGuard {
    url: String,
    prefix: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let Ok(mut connection) = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .connect()
                    .await
                else {
                    return;
                };
                let schemas: Vec<String> = sqlx::query_scalar(
                    "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE $1",
                )
                .bind(format!("{prefix}%"))
                .fetch_all(&mut connection)
                .await
                .unwrap_or_default();
                for schema in schemas {
                    // Names this test made: lowercase letters, digits and underscores.
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut connection)
                    .await;
                }
            });
        })
        .join();
    }
}

impl Backend {
    /// The PostgreSQL backend for `test` with its guard, or `None` (saying so) when
    /// `DATAGATE_TEST_POSTGRES_URL` is unset.
    pub fn postgres(test: &str) -> Option<(Backend, SchemaGuard)> {
        match std::env::var("DATAGATE_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                let mut random = [0u8; 6];
                aws_lc_rs::rand::fill(&mut random).expect("randomness");
                let tag: String = random.iter().map(|b| format!("{b:02x}")).collect();
                let schema = format!("dgt_{test}_{tag}");
                let guard = SchemaGuard {
                    url: url.clone(),
                    prefix: schema.clone(),
                };
                Some((Backend::Postgres { url, schema }, guard))
            }
            _ => {
                eprintln!(
                    "SKIPPED on PostgreSQL: {test}: DATAGATE_TEST_POSTGRES_URL is not set \
                     (.ci/run sets it)"
                );
                None
            }
        }
    }

    /// The `[journal]` lines of a node of this backend writing chain `chain`.
    pub fn section(&self, chain: &str) -> String {
        match self {
            Backend::Sqlite => "path = \"journal.sqlite\"".to_owned(),
            Backend::Postgres { url, schema } => format!(
                "backend = \"postgres\"\nurl = \"{url}\"\nschema = \"{schema}\"\nchain = \"{chain}\""
            ),
        }
    }

    /// The `journal verify|export` arguments naming this backend's journal (the node's
    /// file, or the schema); `copy` names a tampered copy made by [`Backend::tamper`].
    pub fn args(&self, dir: &std::path::Path, copy: Option<&str>) -> Vec<std::ffi::OsString> {
        match self {
            Backend::Sqlite => vec![
                "--journal".into(),
                dir.join(copy.map_or("journal.sqlite".to_owned(), |c| format!("{c}.sqlite")))
                    .into_os_string(),
            ],
            Backend::Postgres { url, schema } => vec![
                "--journal".into(),
                url.into(),
                "--schema".into(),
                copy.map_or(schema.clone(), |c| format!("{schema}_{c}"))
                    .into(),
            ],
        }
    }

    /// Copies the journal to `copy` and runs `statement` on the copy (SQL both backends
    /// speak).
    pub async fn tamper(&self, dir: &std::path::Path, copy: &str, statement: &str) {
        match self {
            Backend::Sqlite => {
                let path = dir.join(format!("{copy}.sqlite"));
                std::fs::copy(dir.join("journal.sqlite"), &path).expect("copy");
                let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(&path)
                    .connect()
                    .await
                    .expect("open");
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
                    .execute(&mut connection)
                    .await
                    .expect("edit");
            }
            Backend::Postgres { url, schema } => {
                let target = format!("{schema}_{copy}");
                let options = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .options([("search_path", target.as_str())]);
                let mut connection = options.connect().await.expect("connect");
                let mut script = format!("CREATE SCHEMA {target};");
                for table in ["chains", "exchanges", "seals", "archives"] {
                    script.push_str(&format!(
                        "CREATE TABLE {target}.{table} AS SELECT * FROM {schema}.{table};"
                    ));
                }
                script.push_str(statement);
                sqlx::raw_sql(sqlx::AssertSqlSafe(script))
                    .execute(&mut connection)
                    .await
                    .expect("copy and edit");
            }
        }
    }

    /// Every stored row of the node's journal, each column as text, in sequence.
    pub async fn rows(&self, dir: &std::path::Path) -> Vec<BTreeMap<String, Option<String>>> {
        let columns = [
            "seq",
            "message_id",
            "client",
            "service",
            "status",
            "error_code",
            "subject_digest",
            "request_digest",
            "response_digest",
            "leg",
            "key_id",
            "request_in_at",
            "record_hash",
        ];
        let select = columns
            .iter()
            .map(|c| format!("CAST({c} AS TEXT)"))
            .collect::<Vec<_>>()
            .join(", ");
        let query = format!("SELECT {select} FROM exchanges ORDER BY seq");
        let to_map = |values: Vec<Option<String>>| -> BTreeMap<String, Option<String>> {
            columns
                .iter()
                .map(|c| (*c).to_owned())
                .zip(values)
                .collect()
        };
        match self {
            Backend::Sqlite => {
                let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(dir.join("journal.sqlite"))
                    .read_only(true)
                    .connect()
                    .await
                    .expect("open");
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .fetch_all(&mut connection)
                    .await
                    .expect("rows")
                    .iter()
                    .map(|row| to_map((0..columns.len()).map(|i| row.get(i)).collect()))
                    .collect()
            }
            Backend::Postgres { url, schema } => {
                let mut connection = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .options([("search_path", schema.as_str())])
                    .connect()
                    .await
                    .expect("connect");
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .fetch_all(&mut connection)
                    .await
                    .expect("rows")
                    .iter()
                    .map(|row| to_map((0..columns.len()).map(|i| row.get(i)).collect()))
                    .collect()
            }
        }
    }
}

/// Runs `datagate journal …` with `args`.
pub fn datagate(args: &[std::ffi::OsString]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(args)
        .output()
        .expect("datagate runs")
}

/// A TCP relay to the PostgreSQL server that a test can cut and restore: the server
/// "goes away" mid-run without touching the machine's server.
pub struct Relay {
    /// The address to connect to instead of the server.
    pub address: std::net::SocketAddr,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<tokio::sync::Notify>,
}

impl Relay {
    /// Relays to `target` (host:port).
    pub async fn start(target: String) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let (accepting, cutting) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let cutting = cutting.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cutting.notified() => {}
                    }
                });
            }
        });
        Relay { address, up, cut }
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Relays again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Issue 9 (replicas): two processes configured with the same PostgreSQL chain cannot
/// both write it: the advisory lock refuses the second at start, naming the chain; a
/// second replica with its own chain starts beside the first, and both chains verify.
#[tokio::test]
async fn one_writer_per_postgres_chain_and_replicas_verify_side_by_side() {
    init();
    let Some((backend, _guard)) = Backend::postgres("replicas") else {
        return;
    };
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let first = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("replica-1"))
        .start()
        .await;
    let same_chain = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("replica-1"))
        .write();
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["serve", "--config"])
        .arg(&same_chain.config_file)
        .output()
        .expect("datagate serve");
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("another process writes"), "{stderr}");

    let second = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("replica-2"))
        .start()
        .await;
    for node in [&first, &second] {
        let client = node.client(&pki.portal);
        for n in 0..3 {
            let response = node
                .lookup(&client, CITIZEN_ID)
                .header("X-Road-Id", format!("replica-{}-{n}", node.consumer.port()))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status(), 200);
        }
    }
    let mut args: Vec<std::ffi::OsString> = vec!["journal".into(), "verify".into()];
    args.extend(backend.args(std::path::Path::new("."), None));
    let verified = datagate(&args);
    assert!(verified.status.success(), "{verified:?}");
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(stdout.contains("6 chained records"), "{stdout}");
    assert!(stdout.contains("over 2 chain(s)"), "{stdout}");
}

/// Issue 9 (no exchange without its record): when PostgreSQL goes away mid-run, the
/// gateway refuses new exchanges with 503 `journal.unavailable` — without calling the
/// backend — and `/readyz` says so; when the server returns, the node recovers by itself
/// and the chain still verifies.
#[tokio::test]
async fn postgres_gone_mid_run_refuses_exchanges_then_recovers_by_itself() {
    init();
    let Some((Backend::Postgres { url, schema }, _guard)) = Backend::postgres("outage") else {
        return;
    };
    let parsed = url::Url::parse(&url).expect("url");
    let target = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432)
    );
    let relay = Relay::start(target).await;
    let mut relayed = parsed.clone();
    relayed.set_host(Some("127.0.0.1")).expect("host");
    relayed.set_port(Some(relay.address.port())).expect("port");
    let backend = Backend::Postgres {
        url: relayed.to_string(),
        schema: schema.clone(),
    };
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&backend.section("outage"))
        .start()
        .await;
    let client = node.client(&pki.portal);
    let ok = node
        .lookup(&client, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    let calls_before = upstream.hits();

    relay.cut();
    // The first exchange after the cut fails at commit (its answer withheld); from then
    // on exchanges are refused before the backend.
    let mut codes = Vec::new();
    for _ in 0..3 {
        let response = node
            .lookup(&client, CITIZEN_ID)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 503);
        let body: serde_json::Value = response.json().await.expect("problem");
        codes.push(body["code"].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        codes.iter().all(|c| c == "journal.unavailable"),
        "{codes:?}"
    );
    assert!(
        upstream.hits() <= calls_before + 1,
        "the backend was called while the journal was down"
    );
    let ready = reqwest::get(format!("http://{}/readyz", node.ops))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);

    relay.restore();
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let response = node
            .lookup(&client, CITIZEN_ID)
            .send()
            .await
            .expect("request");
        if response.status() == 200 {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "the node did not recover when the server returned"
    );
    let mut args: Vec<std::ffi::OsString> = vec!["journal".into(), "verify".into()];
    args.extend(Backend::Postgres { url, schema }.args(std::path::Path::new("."), None));
    let verified = datagate(&args);
    assert!(verified.status.success(), "{verified:?}");
}

/// Issue 9 (retention and archiving; 004 Điều 24 k3a: kept no longer than needed): sealed
/// batches past their age leave the store for gzip archive files, and `journal verify
/// --config` still checks every record, archived ones included; a truncated or missing
/// archive is named; past retention, archives are deleted and what follows still
/// verifies from their anchor. On both backends.
#[tokio::test]
async fn archived_batches_still_verify_and_a_damaged_archive_is_named() {
    archive_scenario(Backend::Sqlite).await;
    if let Some((backend, _guard)) = Backend::postgres("archive") {
        archive_scenario(backend).await;
    }
}

async fn archive_scenario(backend: Backend) {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let mut node = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&format!(
            "{}\narchive_dir = \"archive\"\narchive_after_days = 0.00001\nmaintenance_interval_secs = 1",
            backend.section("archive-1")
        ))
        .start()
        .await;
    let client = node.client(&pki.portal);
    for n in 0..6 {
        let response = node
            .lookup(&client, CITIZEN_ID)
            .header("X-Road-Id", format!("archive-{n}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let dir = node.written.path("");
    let archive_dir = dir.join("archive");
    let mut archived = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        archived = std::fs::read_dir(&archive_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "gz"))
                    .collect()
            })
            .unwrap_or_default();
        if !archived.is_empty() && backend.rows(&dir).await.is_empty() {
            break;
        }
    }
    assert!(!archived.is_empty(), "nothing was archived");
    assert!(
        backend.rows(&dir).await.is_empty(),
        "archived rows stayed in the store"
    );
    node.shutdown();
    node.stopped().await.expect("stopped");
    let config = node.written.config_file.clone();
    let verify = || {
        datagate(&[
            "journal".into(),
            "verify".into(),
            "--config".into(),
            config.clone().into_os_string(),
        ])
    };
    let intact = verify();
    assert!(intact.status.success(), "{intact:?}");
    let stdout = String::from_utf8_lossy(&intact.stdout);
    assert!(
        stdout.contains("6 chained records (6 from archives)"),
        "{stdout}"
    );

    // A truncated archive is named, then a missing one.
    let first = archived.iter().min().expect("an archive").clone();
    let bytes = std::fs::read(&first).expect("archive");
    std::fs::write(&first, &bytes[..bytes.len() / 2]).expect("truncate");
    let output = verify();
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("truncated or corrupt"),
        "{output:?}"
    );
    std::fs::remove_file(&first).expect("remove");
    let output = verify();
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("archive file is missing"),
        "{output:?}"
    );
    std::fs::write(&first, &bytes).expect("restore");
    assert!(verify().status.success());

    // Past retention: the archives go, and new records still verify from the anchor.
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        text.replace(
            "archive_after_days = 0.00001",
            "archive_after_days = 0.00001\nretention_days = 0.00002",
        ),
    )
    .expect("config");
    let mut restarted = std::process::Command::new(env!("CARGO_BIN_EXE_datagate"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("serve");
    let mut expired = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if std::fs::read_dir(&archive_dir).map_or(0, |e| {
            e.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "gz"))
                .count()
        }) == 0
        {
            expired = true;
            break;
        }
    }
    let _ = restarted.kill();
    let _ = restarted.wait();
    assert!(expired, "archives past retention were not deleted");
    let output = verify();
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("6 gone by retention"),
        "{output:?}"
    );
}

/// Issue 9 (never stop because the disk is full): on a small file system (a tmpfs), once
/// free space falls below the journal's reserve the node refuses new exchanges with 503
/// `journal.unavailable` before calling any backend and `/readyz` says so; when space
/// returns it accepts again by itself, and the journal verifies.
#[tokio::test]
async fn below_the_free_space_reserve_exchanges_are_refused_until_space_returns() {
    init();
    let mount = tempfile::tempdir().expect("dir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(mount.path())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root); the reserve is not tested");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.path().to_owned());
    let journal = mount.path().join("journal.sqlite");
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let node = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&format!(
            "path = \"{}\"\nmin_free_mb = 8\nmaintenance_interval_secs = 1",
            journal.display()
        ))
        .start()
        .await;
    let client = node.client(&pki.portal);
    let ok = node
        .lookup(&client, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);

    // Fill the file system until less than the reserve is free.
    let filler = mount.path().join("filler");
    std::fs::write(&filler, vec![0u8; 10 * 1024 * 1024]).expect("fill");
    let hits = upstream.hits();
    let refused = node
        .lookup(&client, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 503);
    let body: serde_json::Value = refused.json().await.expect("problem");
    assert_eq!(body["code"], "journal.unavailable", "{body}");
    let again = node
        .lookup(&client, CITIZEN_ID)
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 503);
    assert!(upstream.hits() <= hits + 1, "the backend was called");
    let ready = reqwest::get(format!("http://{}/readyz", node.ops))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);

    std::fs::remove_file(&filler).expect("free");
    let mut recovered = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if node
            .lookup(&client, CITIZEN_ID)
            .send()
            .await
            .expect("request")
            .status()
            == 200
        {
            recovered = true;
            break;
        }
    }
    assert!(
        recovered,
        "the node did not accept again once space returned"
    );
    let verified = datagate(&[
        "journal".into(),
        "verify".into(),
        "--journal".into(),
        journal.into_os_string(),
    ]);
    assert!(verified.status.success(), "{verified:?}");
}

/// Issue 9 (operator experience): `datagate journal archive --config` is refused while
/// the node runs (it holds the writer's lock: one writer per chain), and on the stopped
/// node moves every sealed batch past its age to archive files that `journal verify`
/// still checks. On both backends.
#[tokio::test]
async fn journal_archive_runs_on_a_stopped_node_only() {
    archive_command_scenario(Backend::Sqlite).await;
    if let Some((backend, _guard)) = Backend::postgres("archive_cli") {
        archive_command_scenario(backend).await;
    }
}

async fn archive_command_scenario(backend: Backend) {
    init();
    let pki = TestPki::new();
    let upstream = MockUpstream::start(Reply::Citizen).await;
    let mut node = NodeBuilder::standard(&pki, &upstream.url())
        .journal(&format!(
            "{}\narchive_dir = \"archive\"\narchive_after_days = 0.00001\nmaintenance_interval_secs = 3600",
            backend.section("archive-cli")
        ))
        .start()
        .await;
    let client = node.client(&pki.portal);
    for _ in 0..5 {
        let response = node
            .lookup(&client, CITIZEN_ID)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let config = node.written.config_file.clone();
    let archive = || {
        datagate(&[
            "journal".into(),
            "archive".into(),
            "--config".into(),
            config.clone().into_os_string(),
        ])
    };
    let refused = archive();
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("another process writes"),
        "{refused:?}"
    );
    node.shutdown();
    node.stopped().await.expect("stopped");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let done = archive();
    assert!(done.status.success(), "{done:?}");
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("5 records moved to archive files"),
        "{done:?}"
    );
    assert!(backend.rows(&node.written.path("")).await.is_empty());
    let verified = datagate(&[
        "journal".into(),
        "verify".into(),
        "--config".into(),
        config.clone().into_os_string(),
    ]);
    assert!(verified.status.success(), "{verified:?}");
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains("5 chained records (5 from archives)"),
        "{verified:?}"
    );
}
