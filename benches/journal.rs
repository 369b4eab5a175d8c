//! Journal throughput: records per second through the group-commit writer (many
//! concurrent appenders, each waiting for its record to be durable, as exchanges do),
//! the CPU each record costs the process, and verification speed, on the embedded store
//! and on PostgreSQL (when `DATAGATE_TEST_POSTGRES_URL` is set).
//!
//! `taskset -c 1 cargo bench --bench journal -- [--records N] [--producers N]`
//! (defaults 200 000 records, 512 producers). `--verify-only N` also builds a journal of
//! N records (e.g. 10 000 000) and times `journal verify` over it.
//!
//! The runtime is single-threaded, so "per core" is what it says (SQLite's own worker
//! thread is counted in the process CPU, and it is why the figure is CPU per record rather
//! than wall time).

// Each bench uses part of it.
#[allow(dead_code)]
#[path = "common/proc_self.rs"]
mod proc_self;

use datagate::journal::{self, ExchangeRecord, Journal};
use std::time::Duration;

fn record(n: u64, key_id: &str, at: time::OffsetDateTime) -> ExchangeRecord {
    ExchangeRecord {
        message_id: format!("bench-{n:012}"),
        client: Some("VN/GOV/000.00.00.G22/portal".into()),
        service: Some("VN/GOV/000.00.00.H01/BCA/cong-dan".into()),
        method: "GET".into(),
        operation: Some("get-citizen".into()),
        purpose: Some("HC-2026-001".into()),
        contract_id: Some("bench-contract".into()),
        peer_fingerprint: Some("ab".repeat(32)),
        status: 200,
        error_code: None,
        request_in_at: at,
        request_out_at: Some(at),
        response_in_at: Some(at),
        response_out_at: at,
        request_bytes: 0,
        response_bytes: 1024,
        request_digest: "cd".repeat(32),
        response_digest: Some("ef".repeat(32)),
        subject_digest: Some("12".repeat(32)),
        leg: "local",
        signature_digest: None,
        remote_key_id: None,
        key_id: key_id.to_owned(),
    }
}

fn sealer() -> journal::chain::Sealer {
    let ca = datagate::pki::CertificateAuthority::new("bench CA").expect("CA");
    let leaf = ca
        .issue(&datagate::pki::LeafSpec::server(
            "bench",
            &["localhost"],
            &[],
        ))
        .expect("leaf");
    journal::chain::Sealer {
        key: datagate::msgsig::SigningKey::from_pem(&leaf.key_pem, None).expect("key"),
        certificate: leaf.cert_der,
    }
}

/// Appends `records` through the writer from `producers` concurrent tasks; returns
/// (records/s wall, CPU µs per record, batches).
async fn append(journal: &Journal, records: u64, producers: u64) -> (f64, f64) {
    let key_id = journal.key_id().to_owned();
    let at = time::macros::datetime!(2026-12-01 09:00 UTC);
    let cpu = proc_self::cpu().as_secs_f64();
    let started = tokio::time::Instant::now();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let journal = journal.clone();
        let key_id = key_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = p;
            while n < records {
                journal
                    .append(record(n, &key_id, at))
                    .await
                    .expect("append");
                n += producers;
            }
        }));
    }
    for task in tasks {
        task.await.expect("producer");
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = proc_self::cpu().as_secs_f64() - cpu;
    (records as f64 / wall, cpu * 1e6 / records as f64)
}

async fn verify(locator: &journal::store::Locator) -> (u64, f64) {
    let started = tokio::time::Instant::now();
    let outcome = journal::verify::verify(locator, None, None, None, &mut |_, _| {})
        .await
        .expect("verify");
    let wall = started.elapsed().as_secs_f64();
    match outcome {
        journal::verify::Verification::Intact(summary) => (summary.chained, wall),
        broken => panic!("the bench journal does not verify: {broken:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let records = value("--records", 200_000);
    let producers = value("--producers", 512);
    let big = value("--verify-only", 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        println!("journal bench: {records} records, {producers} concurrent producers, one runtime thread");
        println!("| store | records/s | CPU µs/record | verify records/s |");
        println!("|---|---:|---:|---:|");
        let path = dir.path().join("journal.sqlite");
        let store = journal::sqlite::SqliteJournal::open(&path)
            .await
            .expect("open")
            .with_sealer(sealer())
            .with_min_free_bytes(0);
        let journal = Journal::start(store, &[7; 32]);
        let (rate, cpu) = append(&journal, records, producers).await;
        drop(journal);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let locator = journal::store::Locator::Sqlite(path.clone());
        let (checked, wall) = verify(&locator).await;
        println!(
            "| embedded (SQLite, WAL, synchronous=FULL) | {rate:.0} | {cpu:.1} | {:.0} |",
            checked as f64 / wall
        );
        match std::env::var("DATAGATE_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => {
                let schema = format!("dg_bench_{}", std::process::id());
                let location = journal::store::PgLocation {
                    url: url.clone(),
                    schema: schema.clone(),
                    chain: Some("bench".into()),
                };
                let store = journal::postgres::PgJournal::open(location.clone())
                    .await
                    .expect("open")
                    .with_sealer(sealer());
                let journal = Journal::start(store, &[7; 32]);
                let (rate, cpu) = append(&journal, records, producers).await;
                drop(journal);
                tokio::time::sleep(Duration::from_millis(200)).await;
                let locator = journal::store::Locator::Postgres(location);
                let (checked, wall) = verify(&locator).await;
                println!(
                    "| PostgreSQL (local server, synchronous_commit on) | {rate:.0} | {cpu:.1} (client side) | {:.0} |",
                    checked as f64 / wall
                );
                use sqlx::ConnectOptions as _;
                if let Ok(mut connection) = url
                    .parse::<sqlx::postgres::PgConnectOptions>()
                    .expect("url")
                    .connect()
                    .await
                {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut connection)
                    .await;
                }
            }
            _ => println!("(PostgreSQL skipped: DATAGATE_TEST_POSTGRES_URL is not set)"),
        }
        if big > 0 {
            let path = dir.path().join("big.sqlite");
            let store = journal::sqlite::SqliteJournal::open(&path)
                .await
                .expect("open")
                .with_sealer(sealer())
                .with_min_free_bytes(0);
            let journal = Journal::start(store, &[7; 32]);
            let (rate, _) = append(&journal, big, producers).await;
            drop(journal);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            let (checked, wall) = verify(&journal::store::Locator::Sqlite(path)).await;
            let rss = std::fs::read_to_string("/proc/self/status")
                .unwrap_or_default()
                .lines()
                .find(|l| l.starts_with("VmHWM"))
                .unwrap_or("VmHWM: ?")
                .to_owned();
            println!(
                "big journal: {big} records written at {rate:.0}/s ({} MB); verified {checked} in {wall:.1} s ({:.0}/s); {rss}",
                size / 1_000_000,
                checked as f64 / wall
            );
        }
    });
}
