//! The parts of the hot path that every worker thread shares, on one thread and on two
//! (issue 12, scaling with cores). Each part runs for a fixed number of operations per
//! thread; the figure is the process's CPU time per operation (all threads) and the
//! operations per second of wall time. A part that scales keeps its CPU per operation
//! flat from one thread to two and doubles its throughput; a lock that threads wait on
//! or a cache line they fight over shows as CPU per operation rising.
//!
//! Run pinned to two cores on a quiet machine: `cargo bench --bench contention`.
//! Figures and the argument for 32 cores are in docs/BENCHMARKS.md and
//! docs/ARCHITECTURE.md ("Scaling with cores").

// A benchmark measures real time.
#![allow(clippy::disallowed_methods)]

// Only its CPU reader is used here.
#[allow(dead_code)]
#[path = "common/proc_self.rs"]
mod proc_self;

use datagate::config::{Limits, raw::RawLimits};
use datagate::contract::quota::{ContractQuota, Rate};
use datagate::gateway::admission::Admission;
use datagate::identity::ClientId;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Wall time each part runs for on one thread, roughly (its operation count is
/// calibrated from a first short run).
const TARGET: Duration = Duration::from_millis(1500);

struct Row {
    part: &'static str,
    threads: usize,
    cpu_ns_per_op: f64,
    ops_per_second: f64,
}

/// Runs `op(thread, i)` `per_thread` times on each of `threads` threads.
fn run(threads: usize, per_thread: u64, op: &(dyn Fn(usize, u64) + Sync)) -> (Duration, Duration) {
    let cpu = proc_self::cpu();
    let wall = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            scope.spawn(move || {
                for i in 0..per_thread {
                    op(thread, i);
                }
            });
        }
    });
    (proc_self::cpu() - cpu, wall.elapsed())
}

fn part(rows: &mut Vec<Row>, name: &'static str, op: &(dyn Fn(usize, u64) + Sync)) {
    // Calibrate: operations that take about TARGET on one thread.
    let probe = 20_000u64;
    let (_, wall) = run(1, probe, op);
    let per_thread =
        ((probe as f64) * TARGET.as_secs_f64() / wall.as_secs_f64().max(1e-6)).max(1e5) as u64;
    for threads in [1, 2] {
        let (cpu, wall) = run(threads, per_thread, op);
        let ops = (per_thread * threads as u64) as f64;
        rows.push(Row {
            part: name,
            threads,
            cpu_ns_per_op: cpu.as_nanos() as f64 / ops,
            ops_per_second: ops / wall.as_secs_f64(),
        });
    }
}

fn limits() -> Limits {
    let raw = RawLimits {
        max_concurrent_requests: 8192,
        max_in_flight_per_consumer: Some(8192),
        ..Default::default()
    };
    let mut errors = Vec::new();
    let limits = Limits::build(&raw, Path::new("bench.toml"), &mut errors);
    assert!(errors.is_empty(), "{errors:?}");
    limits
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut rows = Vec::new();
    let limits = limits();

    let admission = Admission::new();
    let one: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
    part(&mut rows, "admission, one consumer", &|_, _| {
        drop(black_box(admission.admit(&one, &limits).expect("room")));
    });
    let own: Vec<ClientId> = ["VN/GOV/000.00.00.H29/a", "VN/GOV/000.00.00.H29/b"]
        .iter()
        .map(|id| id.parse().expect("id"))
        .collect();
    part(&mut rows, "admission, a consumer per thread", &|t, _| {
        drop(black_box(admission.admit(&own[t], &limits).expect("room")));
    });

    let quota = ContractQuota::new(
        Some(Rate {
            requests: NonZeroU32::new(1_000_000_000).expect("non-zero"),
            per: Duration::from_secs(1),
        }),
        None,
        Some(u64::MAX / 2),
    );
    let now = time::macros::datetime!(2026-12-01 10:00 +7);
    part(&mut rows, "contract quota (rate and daily)", &|_, _| {
        black_box(quota.check(now)).expect("under the quota");
    });

    let _recorder = datagate::observe::metrics_handle().expect("recorder");
    let service = "VN/GOV/000.00.00.G10/bench-db".to_owned();
    let consumer = "VN/GOV/000.00.00.H29/dvc-portal".to_owned();
    part(
        &mut rows,
        "request metrics looked up (counter + histogram; refusals)",
        &|_, i| {
            metrics::counter!("datagate_requests_total", "service" => service.clone(), "consumer" => consumer.clone(), "status" => "200", "leg" => "local").increment(1);
            metrics::histogram!("datagate_request_duration_seconds", "service" => service.clone())
                .record((i % 1000) as f64 * 1e-6);
        },
    );
    let kept = datagate::observe::ExchangeMetrics::new(&service, &consumer);
    part(
        &mut rows,
        "request metrics kept by the contract (counter + histogram)",
        &|_, i| {
            kept.record(200, (0, "local"), (i % 1000) as f64 * 1e-6);
        },
    );

    let shared = arc_swap::ArcSwap::from_pointee(limits);
    part(
        &mut rows,
        "configuration snapshot (ArcSwap load_full)",
        &|_, _| {
            black_box(shared.load_full());
        },
    );
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    part(&mut rows, "reference: one shared atomic add", &|_, _| {
        counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    });

    println!(
        "| part | threads | CPU ns/op | ops/s | CPU/op × 1 thread |\n|---|---:|---:|---:|---:|"
    );
    for pair in rows.chunks(2) {
        let base = pair[0].cpu_ns_per_op;
        for row in pair {
            println!(
                "| {} | {} | {:.1} | {:.0} | {:.2}× |",
                row.part,
                row.threads,
                row.cpu_ns_per_op,
                row.ops_per_second,
                row.cpu_ns_per_op / base
            );
        }
    }
}
