//! Results: what is measured per target, the pass/fail targets of the issue,
//! and the JSON and Markdown renderings.

use crate::federation::Floors;
use crate::federation_crypto::Role;
use serde::Serialize;
use std::fmt::Write as _;

/// The limit of the federation's CPU targets: 1.25 × (nginx's CPU per request + the
/// role's crypto floor).
pub const FEDERATION_CPU_FACTOR: f64 = 1.25;
/// The limit of the federation's added p99 over the unsigned exchange (gateway (a)), ms.
pub const FEDERATION_ADDED_P99_MS: f64 = 1.0;
/// The limit of the RSS growth during the overload run, MB.
pub const OVERLOAD_RSS_GROWTH_MB: f64 = 50.0;

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Samples.
    pub samples: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    /// Percentiles of `samples` (microseconds); `None` when empty.
    pub fn of(samples: &mut [u32]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let n = samples.len();
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(samples[rank - 1]) / 1000.0
        };
        let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
        Some(Latency {
            samples: n,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: f64::from(samples[n - 1]) / 1000.0,
            mean_ms: sum as f64 / n as f64 / 1000.0,
        })
    }
}

/// The fixed-rate run over keep-alive connections.
#[derive(Debug, Clone, Serialize)]
pub struct FixedRate {
    /// Offered rate (requests/s).
    pub offered_rps: f64,
    /// Measured seconds (after the warm-up).
    pub seconds: f64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second of wall time.
    pub achieved_rps: f64,
    /// CPU seconds (utime + stime) of the target during the run.
    pub target_cpu_seconds: f64,
    /// Target CPU per successful request, microseconds.
    pub cpu_us_per_request: f64,
    /// The user-space part of it (utime), microseconds; the rest is the kernel's
    /// (stime). Tick-sampled by the kernel: indicative only.
    pub user_cpu_us_per_request: f64,
    /// Context switches of the target's threads per request.
    pub context_switches_per_request: f64,
    /// Threads of the target after the run.
    pub threads: usize,
    /// Stub upstream CPU per request, microseconds.
    pub stub_cpu_us_per_request: f64,
    /// Load generator (this process) CPU per request, microseconds.
    pub loadgen_cpu_us_per_request: f64,
    /// Average response body size, bytes.
    pub response_bytes: f64,
    /// Latency from the scheduled send time.
    pub latency: Option<Latency>,
    /// The first failure.
    pub first_error: Option<String>,
    /// For a federation path: each gateway's own CPU (they add up to the target's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleCpu>,
}

/// One gateway of a federation path.
#[derive(Debug, Clone, Serialize)]
pub struct RoleCpu {
    /// What the report calls it.
    pub label: String,
    /// The floor it is compared with (`consumer`, `provider`, `provider-via-hub`, `hub`).
    pub role: String,
    /// Its CPU per successful request, microseconds.
    pub cpu_us_per_request: f64,
}

/// The run where every request opens a new mTLS connection.
#[derive(Debug, Clone, Serialize)]
pub struct NewConnections {
    /// Offered rate (connections = requests per second).
    pub offered_rps: f64,
    /// Measured seconds.
    pub seconds: f64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Target CPU per request (handshake + request + close), microseconds.
    pub cpu_us_per_request: f64,
    /// 1 / the above: new mTLS connections (with one request each) per CPU-second.
    pub connections_per_cpu_second: f64,
    /// This run's CPU per request minus the keep-alive run's: the connection's own cost.
    pub connection_only_cpu_us: Option<f64>,
    /// Latency from the scheduled time (connect, handshake, request).
    pub latency: Option<Latency>,
    /// The first failure.
    pub first_error: Option<String>,
}

/// The closed-loop run at saturation.
#[derive(Debug, Clone, Serialize)]
pub struct Saturation {
    /// Concurrent requests.
    pub concurrency: usize,
    /// Measured seconds.
    pub seconds: f64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Target CPU seconds per wall second (1.0 = its whole core).
    pub target_core_share: f64,
    /// Load generator CPU seconds per wall second.
    pub loadgen_core_share: f64,
    /// Stub CPU seconds per wall second.
    pub stub_core_share: f64,
    /// Which side ran out of CPU.
    pub saturated: String,
    /// The first failure.
    pub first_error: Option<String>,
}

/// Memory of the target.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// VmHWM after the load runs, MB (10^6 bytes).
    pub peak_rss_mb_after_load: Option<f64>,
    /// Idle keep-alive mTLS connections asked for.
    pub idle_requested: usize,
    /// Connections opened and answered.
    pub idle_opened: usize,
    /// Connections that failed.
    pub idle_failed: usize,
    /// Seconds to open them.
    pub idle_open_seconds: f64,
    /// The first failure.
    pub idle_first_error: Option<String>,
    /// Open descriptors of the target while they were held.
    pub target_fds: Option<usize>,
    /// VmRSS before opening them, MB.
    pub rss_mb_before_idle: Option<f64>,
    /// VmRSS while holding them, MB.
    pub rss_mb_with_idle: Option<f64>,
    /// VmHWM after holding them, MB.
    pub peak_rss_mb_with_idle: Option<f64>,
    /// (RSS with − RSS before) / opened, KB (10^3 bytes).
    pub kb_per_idle_connection: Option<f64>,
    /// RSS before + 10 000 × the per-connection cost, MB (when fewer were opened).
    pub extrapolated_rss_mb_at_10000: Option<f64>,
}

/// One open loop of the overload phase, as the load generator saw it.
#[derive(Debug, Clone, Serialize)]
pub struct OverloadRun {
    /// Requests scheduled per second (the asked-for offered rate).
    pub scheduled_rps: f64,
    /// Seconds of the schedule.
    pub seconds: f64,
    /// Requests scheduled.
    pub scheduled: u64,
    /// Requests written on a connection (the rest waited longer than the client's queue
    /// deadline for a free connection).
    pub sent: u64,
    /// Requests written on a connection during the schedule, per second: the offered rate
    /// the target actually received.
    pub sent_rps: f64,
    /// Scheduled requests dropped by the generator: no free connection within the
    /// client's queue deadline. Never reached the target.
    pub not_sent: u64,
    /// 2xx answers.
    pub admitted: u64,
    /// 2xx answers completed during the schedule, per second.
    pub admitted_rps: f64,
    /// Answers with the node's load-shedding codes (`gateway.overloaded`,
    /// `ratelimit.in_flight_share_exceeded`).
    pub shed: u64,
    /// Every other failure: other statuses, timeouts, connection errors.
    pub other_errors: u64,
    /// Requests without an answer within the request deadline.
    pub timeouts: u64,
    /// Requests that failed on the connection (reset, closed, handshake of a reconnection).
    pub connection_errors: u64,
    /// Connections the generator had to open again during the run (the target closed one).
    pub reconnects: u64,
    /// Answers by status and problem+json `code` (`"200"`, `"503 gateway.overloaded"`, …).
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Latency of admitted (2xx) requests, from the first byte written to the last byte read.
    pub admitted_latency: Option<Latency>,
    /// The same for refused (shed) requests.
    pub refused_latency: Option<Latency>,
    /// Time sent requests waited in the generator for a free connection (scheduled → written).
    pub client_wait: Option<Latency>,
    /// Target CPU seconds per wall second during the run.
    pub target_core_share: f64,
    /// Load generator CPU seconds per wall second (core 1).
    pub loadgen_core_share: f64,
    /// Stub CPU seconds per wall second (core 1).
    pub stub_core_share: f64,
    /// The first failure other than a shed answer.
    pub first_error: Option<String>,
}

/// A latency histogram of the gateway's own `/metrics` over one run (the difference of
/// two scrapes): how long the node itself held requests, to set beside what the load
/// generator saw. The node's buckets are coarse (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250 ms,
/// …), so a percentile is the bucket's upper bound: "at most".
#[derive(Debug, Clone, Serialize)]
pub struct ServerTiming {
    /// What the histogram times.
    pub what: String,
    /// Observations during the run.
    pub count: f64,
    /// Upper bound of the bucket holding the median, ms (`None`: above the last bucket).
    pub p50_at_most_ms: Option<f64>,
    /// Upper bound of the bucket holding the 99th percentile, ms.
    pub p99_at_most_ms: Option<f64>,
}

/// The overload phase of one target: 50 % of its saturation rate (the reference), then
/// twice its saturation rate.
#[derive(Debug, Clone, Serialize)]
pub struct Overload {
    /// The limits the target ran with in this phase.
    pub limits: String,
    /// Keep-alive connections the load generator held.
    pub connections: usize,
    /// The saturation rate the two runs are fractions and multiples of (req/s).
    pub saturation_rps: f64,
    /// Where it comes from (this run's saturation phase, or measured in this phase).
    pub saturation_source: String,
    /// The open loop at 50 % of saturation.
    pub reference: OverloadRun,
    /// The open loop at 2 × saturation.
    pub overload: OverloadRun,
    /// VmRSS just before the overload run (after the reference run), MB.
    pub rss_mb_before: Option<f64>,
    /// Peak RSS during the overload run (VmRSS sampled every 50 ms, and VmHWM when it
    /// rose during the run), MB.
    pub rss_mb_peak: Option<f64>,
    /// VmRSS a second after the overload run, MB.
    pub rss_mb_after: Option<f64>,
    /// Peak − before, MB.
    pub rss_growth_mb: Option<f64>,
    /// The gateway's own timings during the reference run (from its `/metrics`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_reference: Vec<ServerTiming>,
    /// The gateway's own timings during the overload run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub server_overload: Vec<ServerTiming>,
}

/// Everything measured for one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// Short id: `direct`, `nginx`, `gateway-a`, `gateway-b`, `gateway-c`.
    pub id: String,
    /// Description.
    pub label: String,
    /// Whether it could be measured.
    pub available: bool,
    /// Why not, or caveats.
    pub note: Option<String>,
    /// A failure that ended its measurement.
    pub error: Option<String>,
    /// Fixed-rate keep-alive run.
    pub fixed: Option<FixedRate>,
    /// New connection per request.
    pub new_connections: Option<NewConnections>,
    /// Saturation.
    pub saturation: Option<Saturation>,
    /// Memory.
    pub memory: Option<Memory>,
    /// `perf report` summary file, when `--perf` was given.
    pub profile: Option<String>,
    /// The overload phase (its own process of the target).
    pub overload: Option<Overload>,
}

impl TargetResult {
    /// An empty result for `id`.
    pub fn new(id: &str, label: &str) -> Self {
        TargetResult {
            id: id.to_owned(),
            label: label.to_owned(),
            available: true,
            note: None,
            error: None,
            fixed: None,
            new_connections: None,
            saturation: None,
            memory: None,
            profile: None,
            overload: None,
        }
    }
}

/// One pass/fail target of the issue (a benchmark, not an assertion).
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub criterion: String,
    /// Measured value (ratio, ms or MB).
    pub measured: Option<f64>,
    /// The limit.
    pub limit: Option<f64>,
    /// Unit of both.
    pub unit: String,
    /// `met`, `missed`, `indicative met`, `indicative missed`, `n/a`.
    pub verdict: String,
    /// What makes this run's figure only indicative (empty when nothing does). Kept out of
    /// `criterion`, so that `--repeat` finds the same target in every run.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Met only below the limit (`<`), not at it.
    #[serde(skip)]
    pub strict: bool,
}

/// The machine and software measured.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// Logical CPUs (from /proc/cpuinfo, not the harness's affinity).
    pub cpus: usize,
    /// CPU model.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Load average when the run started (1, 5, 15 min).
    pub load_average_at_start: String,
    /// The run's temporary directory (gateway journals) and its file system type.
    pub state_dir: String,
    /// `getconf CLK_TCK`.
    pub clock_ticks_per_second: f64,
    /// How processes were pinned.
    pub pinning: String,
    /// `nginx -v`.
    pub nginx: String,
    /// `rustc -V`.
    pub rustc: String,
    /// `datagate --version` and the binary's path.
    pub datagate: String,
    /// `git describe`.
    pub git: String,
}

/// Settings of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `quick` or `full`.
    pub mode: String,
    /// Offered rate of the keep-alive run.
    pub rate: f64,
    /// Its measured seconds per target.
    pub seconds: f64,
    /// Interleaved rounds it was split into.
    pub rounds: usize,
    /// Warm-up seconds before it.
    pub warmup_seconds: f64,
    /// Offered rate of the new-connection run.
    pub new_connection_rate: f64,
    /// Its seconds.
    pub new_connection_seconds: f64,
    /// Concurrency of the saturation run.
    pub saturation_concurrency: usize,
    /// Its measured seconds.
    pub saturation_seconds: f64,
    /// Idle keep-alive connections held for the memory figure.
    pub idle_connections: usize,
    /// Size of the stub's record.
    pub record_bytes: usize,
    /// The overload phase's settings, when it ran.
    pub overload: Option<OverloadSettings>,
    /// Whether only the overload phase ran (`--overload`).
    pub overload_only: bool,
}

/// Settings of the overload phase.
#[derive(Debug, Clone, Serialize)]
pub struct OverloadSettings {
    /// Keep-alive mTLS connections the generator holds (opened before the runs).
    pub connections: usize,
    /// Seconds of the run at 2 × saturation.
    pub seconds: f64,
    /// Seconds of the reference run at 50 % of saturation.
    pub reference_seconds: f64,
    /// Seconds of warm-up at 50 % before the reference run.
    pub warmup_seconds: f64,
    /// How long a scheduled request may wait for a free connection, ms.
    pub client_queue_deadline_ms: f64,
    /// Deadline of one request, s.
    pub request_timeout_seconds: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// RFC 3339, UTC.
    pub date: String,
    /// Machine and versions.
    pub environment: Environment,
    /// Settings.
    pub settings: Settings,
    /// Per target.
    pub targets: Vec<TargetResult>,
    /// The crypto floor of each federation role, measured in this run.
    pub floors: Option<Floors>,
    /// The targets.
    pub checks: Vec<Check>,
    /// Seconds the whole run took.
    pub total_seconds: f64,
}

fn target<'a>(targets: &'a [TargetResult], id: &str) -> Option<&'a TargetResult> {
    targets.iter().find(|t| t.id == id && t.available)
}

fn cpu(t: Option<&TargetResult>) -> Option<f64> {
    t?.fixed
        .as_ref()
        .map(|f| f.cpu_us_per_request)
        .filter(|v| v.is_finite())
}

fn p99(t: Option<&TargetResult>) -> Option<f64> {
    Some(t?.fixed.as_ref()?.latency.as_ref()?.p99_ms)
}

fn conn_cpu(t: Option<&TargetResult>) -> Option<f64> {
    t?.new_connections
        .as_ref()
        .map(|n| n.cpu_us_per_request)
        .filter(|v| v.is_finite())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn check(
    criterion: &str,
    measured: Option<f64>,
    limit: Option<f64>,
    unit: &str,
    strict: bool,
    indicative: bool,
) -> Check {
    let verdict = match (measured, limit) {
        (Some(m), Some(l)) => {
            let met = if strict { m < l } else { m <= l };
            let word = if met { "met" } else { "missed" };
            if indicative {
                format!("indicative {word}")
            } else {
                word.to_owned()
            }
        }
        _ => "n/a".to_owned(),
    };
    Check {
        criterion: criterion.to_owned(),
        measured,
        limit,
        unit: unit.to_owned(),
        verdict,
        strict,
        note: String::new(),
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// `--repeat N`: each target's figure and limit across the runs, their medians, and the
/// verdict on the medians (where a limit is itself measured, such as nginx's added p99,
/// the median of the limits). Runs without a figure for a target are left out of its row,
/// and a target no run measured has no row.
pub fn median_summary(runs: &[Vec<Check>]) -> String {
    let mut order: Vec<&Check> = Vec::new();
    for check in runs.iter().flatten() {
        if !order.iter().any(|c| c.criterion == check.criterion) {
            order.push(check);
        }
    }
    let mut out = format!(
        "**Targets over {} runs** (median of each figure and of its limit; the verdict is on \
         the medians)\n\n| criterion | per run | median | limit (median) | met in | verdict |\n\
         |---|---|---:|---:|---:|---|\n",
        runs.len()
    );
    for first in order {
        let same: Vec<&Check> = runs
            .iter()
            .filter_map(|run| run.iter().find(|c| c.criterion == first.criterion))
            .collect();
        let mut measured: Vec<f64> = same.iter().filter_map(|c| c.measured).collect();
        if measured.is_empty() {
            // A target none of the runs measured (not in `--targets`).
            continue;
        }
        let mut limits: Vec<f64> = same.iter().filter_map(|c| c.limit).collect();
        let per_run = same
            .iter()
            .map(|c| c.measured.map_or("–".to_owned(), |m| format!("{m:.3}")))
            .collect::<Vec<_>>()
            .join(", ");
        let met = same
            .iter()
            .filter(|c| c.verdict.ends_with(" met") || c.verdict == "met");
        let indicative = same
            .iter()
            .filter(|c| c.verdict.starts_with("indicative"))
            .count();
        let summary = check(
            &first.criterion,
            median(&mut measured),
            median(&mut limits),
            &first.unit,
            first.strict,
            indicative > 0,
        );
        let notes: Vec<&str> = same
            .iter()
            .filter(|c| !c.note.is_empty())
            .map(|c| c.note.as_str())
            .collect();
        let criterion = match (indicative, notes.is_empty()) {
            (0, _) => first.criterion.clone(),
            (n, true) => format!(
                "{} (indicative in {n} of {} runs)",
                first.criterion,
                same.len()
            ),
            (n, false) => format!(
                "{} (indicative in {n} of {} runs: {})",
                first.criterion,
                same.len(),
                notes.join("; ")
            ),
        };
        let _ = writeln!(
            out,
            "| {criterion} | {per_run} | {} | {} | {} of {} | {} |",
            summary
                .measured
                .map_or("–".to_owned(), |m| format!("{m:.3} {}", first.unit)),
            summary
                .limit
                .map_or("–".to_owned(), |l| format!("{l:.3} {}", first.unit)),
            met.count(),
            same.len(),
            summary.verdict,
        );
    }
    out
}

/// The targets, evaluated on `targets` (only the overload phase's with
/// `overload_only`).
pub fn checks(
    targets: &[TargetResult],
    idle_connections: usize,
    floors: Option<&Floors>,
    overload_only: bool,
) -> Vec<Check> {
    let mut out = if overload_only {
        Vec::new()
    } else {
        cost_checks(targets, idle_connections, floors)
    };
    out.extend(overload_checks(targets));
    out
}

/// The overload phase's targets: only the shedding codes, p99 of admitted requests within
/// 2 × its value at 50 % load, RSS growth under 50 MB; nginx's beside for comparison.
fn overload_checks(targets: &[TargetResult]) -> Vec<Check> {
    let mut out = Vec::new();
    for (name, id) in [
        ("(a)", "gateway-a"),
        ("nginx (comparison)", "nginx"),
        ("(b)", "gateway-b"),
    ] {
        let Some(o) = target(targets, id).and_then(|t| t.overload.as_ref()) else {
            continue;
        };
        let p99 = |run: &OverloadRun| run.admitted_latency.as_ref().map(|l| l.p99_ms);
        out.push(check(
            &format!("{name} overload: only overload / fair-share refusals (other errors)"),
            Some(o.overload.other_errors as f64),
            Some(0.0),
            "errors",
            false,
            false,
        ));
        // At 50 % no request should wait 10 ms for one of the pool's connections: if some
        // did, the target stalled for over 100 ms during the reference run (on this shared
        // machine, usually other work on core 0), and the reference is not a steady one.
        let unsteady = o.reference.not_sent > 0;
        let mut ratio = check(
            &format!("{name} overload: p99 admitted ≤ 2× p99 at 50% load"),
            p99(&o.overload),
            p99(&o.reference).map(|p| 2.0 * p),
            "ms",
            false,
            unsteady,
        );
        if unsteady {
            ratio.note = format!(
                "the 50 % run was not steady: {} requests found no free connection",
                o.reference.not_sent
            );
        }
        out.push(ratio);
        out.push(check(
            &format!("{name} overload: RSS growth < 50 MB"),
            o.rss_growth_mb,
            Some(OVERLOAD_RSS_GROWTH_MB),
            "MB",
            true,
            false,
        ));
    }
    out
}

/// The cost comparison's targets.
fn cost_checks(
    targets: &[TargetResult],
    idle_connections: usize,
    floors: Option<&Floors>,
) -> Vec<Check> {
    let direct = target(targets, "direct");
    let nginx = target(targets, "nginx");
    let a = target(targets, "gateway-a");
    let b = target(targets, "gateway-b");
    let added = |t| Some(p99(t)? - p99(direct)?);
    let nginx_added = added(nginx);
    // `--compare`: the second binary against the same targets, in the same rounds.
    let a2 = target(targets, "gateway-a2");
    let compared = a2.map(|a2| {
        [
            check(
                "(a′) the --compare binary, pass-through: CPU/request ÷ nginx's",
                ratio(cpu(Some(a2)), cpu(nginx)),
                Some(1.0),
                "×",
                false,
                false,
            ),
            check(
                "(a′) the --compare binary: added p99 over the direct call ≤ nginx's",
                added(Some(a2)),
                nginx_added,
                "ms",
                false,
                false,
            ),
            check(
                "(a′) the --compare binary: CPU per new mTLS connection ÷ nginx's",
                ratio(conn_cpu(Some(a2)), conn_cpu(nginx)),
                Some(0.5),
                "×",
                false,
                false,
            ),
        ]
    });
    let mut out = vec![
        check(
            "(a) pass-through: CPU/request ÷ nginx's",
            ratio(cpu(a), cpu(nginx)),
            Some(1.0),
            "×",
            false,
            false,
        ),
        check(
            "(b) full pipeline: CPU/request ÷ nginx's",
            ratio(cpu(b), cpu(nginx)),
            Some(1.25),
            "×",
            false,
            false,
        ),
        check(
            "(a) added p99 over the direct call ≤ nginx's",
            added(a),
            nginx_added,
            "ms",
            false,
            false,
        ),
        check(
            "(b) added p99 over the direct call ≤ nginx's + 0.5 ms",
            added(b),
            nginx_added.map(|n| n + 0.5),
            "ms",
            false,
            false,
        ),
        check(
            "(a) CPU per new mTLS connection ÷ nginx's",
            ratio(conn_cpu(a), conn_cpu(nginx)),
            Some(0.5),
            "×",
            false,
            false,
        ),
        check(
            "(b) CPU per new mTLS connection ÷ nginx's",
            ratio(conn_cpu(b), conn_cpu(nginx)),
            Some(0.5),
            "×",
            false,
            false,
        ),
    ];
    // What the durable journal costs per exchange: (b) − (b0), at the offered rate.
    let b0 = target(targets, "gateway-b0");
    if b0.is_some() {
        let rate = b.and_then(|t| t.fixed.as_ref()).map(|f| f.offered_rps);
        let limit = rate.map(|r| if r >= 5000.0 { 25.0 } else { 60.0 });
        out.push(check(
            &format!(
                "journal: CPU/exchange added, (b) − (b0), at {} req/s (≤ 25 µs at 5 000, ≤ 60 µs at 1 000)",
                rate.map_or("?".to_owned(), |r| format!("{r:.0}"))
            ),
            cpu(b).zip(cpu(b0)).map(|(b, b0)| b - b0),
            limit,
            "µs",
            false,
            false,
        ));
        out.push(check(
            "journal: added p99, (b) − (b0), ≤ 1 ms",
            p99(b).zip(p99(b0)).map(|(b, b0)| b - b0),
            Some(1.0),
            "ms",
            false,
            false,
        ));
    }
    out.extend(compared.into_iter().flatten());
    out.extend(federation_checks(targets, floors));
    for (name, t) in [("(a)", a), ("(b)", b)] {
        let memory = t.and_then(|t| t.memory.as_ref());
        let (value, indicative) = match memory {
            Some(m) if m.idle_opened >= 10_000 => (m.peak_rss_mb_with_idle, false),
            Some(m) => (m.extrapolated_rss_mb_at_10000, true),
            None => (None, false),
        };
        let how = if idle_connections >= 10_000 {
            "peak RSS with 10 000 idle keep-alive mTLS connections".to_owned()
        } else {
            format!(
                "RSS with 10 000 idle keep-alive mTLS connections, extrapolated from {idle_connections}"
            )
        };
        out.push(check(
            &format!("{name} {how} < 200 MB"),
            value,
            Some(200.0),
            "MB",
            true,
            indicative,
        ));
    }
    out
}

/// The role named `name` (`consumer`, …).
fn role_of(name: &str) -> Option<Role> {
    Role::ALL.into_iter().find(|r| r.name() == name)
}

/// The limit of a federation gateway: 1.25 × (nginx's CPU per request + its floor).
pub fn federation_limit(nginx_cpu: Option<f64>, floor: Option<f64>) -> Option<f64> {
    Some(FEDERATION_CPU_FACTOR * (nginx_cpu? + floor?))
}

/// (c): each gateway's CPU per request against 1.25 × (nginx + its role's floor), and
/// the path's added p99 over the unsigned exchange (gateway (a)).
fn federation_checks(targets: &[TargetResult], floors: Option<&Floors>) -> Vec<Check> {
    let nginx = target(targets, "nginx");
    let a = target(targets, "gateway-a");
    let mut out = Vec::new();
    for (id, path) in [("fed-direct", "A → B"), ("fed-hub", "A → hub → B")] {
        let Some(t) = target(targets, id) else {
            continue;
        };
        for role in t.fixed.iter().flat_map(|f| &f.roles) {
            let floor = role_of(&role.role).and_then(|r| floors?.of(r));
            out.push(check(
                &format!(
                    "(c) {path}: {} CPU/request ≤ 1.25 × (nginx + {} floor)",
                    role.label, role.role
                ),
                Some(role.cpu_us_per_request).filter(|v| v.is_finite()),
                federation_limit(cpu(nginx), floor),
                "µs",
                false,
                false,
            ));
        }
        out.push(check(
            &format!("(c) {path}: added p99 over the unsigned exchange (a) ≤ 1 ms"),
            p99(Some(t)).zip(p99(a)).map(|(t, a)| t - a),
            Some(FEDERATION_ADDED_P99_MS),
            "ms",
            false,
            false,
        ));
    }
    out
}

fn f(value: Option<f64>, digits: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".to_owned(),
    }
}

fn x(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.2}×"),
        _ => "–".to_owned(),
    }
}

/// The (c) section: each gateway of each federation path beside its floor and target.
fn federation_markdown(md: &mut String, run: &Run) {
    let paths: Vec<&TargetResult> = ["fed-direct", "fed-hub"]
        .iter()
        .filter_map(|id| target(&run.targets, id))
        .collect();
    if paths.is_empty() {
        return;
    }
    let nginx = cpu(target(&run.targets, "nginx"));
    let a = target(&run.targets, "gateway-a");
    let floors = run.floors.as_ref();
    let _ = writeln!(
        md,
        "\n**(c) Federation, per gateway** (keep-alive open loop at {} req/s, the rounds interleaved with the other targets'; crypto floor measured in this run: {}; {}; {}):\n",
        paths
            .first()
            .and_then(|t| t.fixed.as_ref())
            .map_or("–".to_owned(), |fixed| format!(
                "{:.0}",
                fixed.offered_rps
            )),
        floors.map_or("not measured", |f| f.keys.as_str()),
        floors.map_or("", |f| f.exchange.as_str()),
        floors.map_or("", |f| f.method.as_str()),
    );
    md.push_str("| path | gateway | CPU µs/req | crypto floor µs | nginx µs/req | limit 1.25 × (nginx + floor) µs | CPU − floor − nginx µs | verdict |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---:|---|\n");
    for t in &paths {
        for role in t.fixed.iter().flat_map(|f| &f.roles) {
            let floor = role_of(&role.role).and_then(|r| floors?.of(r));
            let limit = federation_limit(nginx, floor);
            let verdict = match limit {
                Some(l) if role.cpu_us_per_request <= l => "met",
                Some(_) => "missed",
                None => "n/a",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                t.label,
                role.label,
                f(Some(role.cpu_us_per_request), 1),
                f(floor, 1),
                f(nginx, 1),
                f(limit, 1),
                f(
                    floor
                        .zip(nginx)
                        .map(|(fl, n)| role.cpu_us_per_request - fl - n),
                    1
                ),
                verdict
            );
        }
    }
    md.push_str("\n| path | p50 ms | p99 ms | unsigned exchange (a) p99 ms | added p99 ms | limit ms |\n|---|---:|---:|---:|---:|---:|\n");
    for t in &paths {
        let l = t.fixed.as_ref().and_then(|f| f.latency.as_ref());
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            t.label,
            f(l.map(|l| l.p50_ms), 3),
            f(l.map(|l| l.p99_ms), 3),
            f(p99(a), 3),
            f(p99(Some(*t)).zip(p99(a)).map(|(t, a)| t - a), 3),
            f(Some(FEDERATION_ADDED_P99_MS), 1),
        );
    }
    if let Some(floors) = floors {
        md.push_str("\nFloors of every role (µs per exchange; before / after the load runs):");
        for r in &floors.roles {
            let _ = write!(
                md,
                " {} {} ({} / {});",
                r.role,
                f(Some(r.us), 1),
                f(Some(r.before_us), 1),
                f(r.after_us, 1)
            );
        }
        md.push('\n');
    }
}

/// The Markdown report.
pub fn markdown(run: &Run) -> String {
    let mut md = String::new();
    let e = &run.environment;
    let s = &run.settings;
    let _ = writeln!(md, "### Load harness — {} mode, {}\n", s.mode, run.date);
    let _ = writeln!(
        md,
        "Machine: {} × {} (kernel {}, load average at start {}); {}; journals in {}. {}; {}; {}; {}.\n",
        e.cpus,
        e.cpu_model,
        e.kernel,
        e.load_average_at_start,
        e.pinning,
        e.state_dir,
        e.datagate,
        e.nginx,
        e.rustc,
        e.git
    );
    if !s.overload_only {
        cost_markdown(&mut md, run);
    }
    overload_markdown(&mut md, run);
    targets_markdown(&mut md, run);
    let _ = writeln!(md, "\nWhole run: {:.0} s.", run.total_seconds);
    md
}

/// The keep-alive, federation, new-connection, saturation and memory tables.
fn cost_markdown(md: &mut String, run: &Run) {
    let s = &run.settings;
    let direct = target(&run.targets, "direct");
    let nginx = target(&run.targets, "nginx");

    let _ = writeln!(
        md,
        "**Keep-alive, open loop at {:.0} req/s, {:.0} s per target in {} interleaved rounds** (after {:.0} s warm-up; latency from the scheduled send time; {} B record):\n",
        s.rate, s.seconds, s.rounds, s.warmup_seconds, s.record_bytes
    );
    md.push_str("| target | CPU µs/req | × nginx | × direct | context switches/req | p50 ms | p99 ms | p99.9 ms | added p99 vs direct, ms | ok / errors |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for t in &run.targets {
        if !t.available {
            let _ = writeln!(
                md,
                "| {} | {} | | | | | | | | |",
                t.label,
                t.note.as_deref().unwrap_or("not available")
            );
            continue;
        }
        let Some(fixed) = &t.fixed else {
            let _ = writeln!(
                md,
                "| {} | failed: {} | | | | | | | | |",
                t.label,
                t.error
                    .as_deref()
                    .unwrap_or("no data")
                    .replace('\n', " ")
                    .replace('|', "/")
            );
            continue;
        };
        let l = fixed.latency.as_ref();
        let added = match (l, p99(direct)) {
            (Some(l), Some(d)) => Some(l.p99_ms - d),
            _ => None,
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            t.label,
            f(Some(fixed.cpu_us_per_request), 1),
            x(ratio(Some(fixed.cpu_us_per_request), cpu(nginx))),
            x(ratio(Some(fixed.cpu_us_per_request), cpu(direct))),
            f(Some(fixed.context_switches_per_request), 1),
            f(l.map(|l| l.p50_ms), 3),
            f(l.map(|l| l.p99_ms), 3),
            f(l.map(|l| l.p999_ms), 3),
            if t.id == "direct" {
                "0".to_owned()
            } else {
                f(added, 3)
            },
            fixed.ok,
            fixed.errors,
        );
    }

    federation_markdown(md, run);

    let _ = writeln!(
        md,
        "\n**New mTLS connection per request** (full TLS 1.3 handshake, X25519, ECDSA P-256 certificates, one request, close), open loop at {:.0} conn/s for {:.0} s:\n",
        s.new_connection_rate, s.new_connection_seconds
    );
    md.push_str("| target | CPU µs/req | connections per CPU-second | × nginx (CPU) | connection only, µs | p50 ms | p99 ms | ok / errors |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for t in run.targets.iter().filter(|t| t.available) {
        let Some(n) = &t.new_connections else {
            continue;
        };
        let l = n.latency.as_ref();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            t.label,
            f(Some(n.cpu_us_per_request), 0),
            f(Some(n.connections_per_cpu_second), 0),
            x(ratio(Some(n.cpu_us_per_request), conn_cpu(nginx))),
            f(n.connection_only_cpu_us, 0),
            f(l.map(|l| l.p50_ms), 3),
            f(l.map(|l| l.p99_ms), 3),
            n.ok,
            n.errors
        );
    }

    let _ = writeln!(
        md,
        "\n**Saturation** (closed loop, {} concurrent requests, {:.0} s) **and memory** ({} idle keep-alive mTLS connections):\n",
        s.saturation_concurrency, s.saturation_seconds, s.idle_connections
    );
    md.push_str("| target | req/s | × nginx | core 0 (target) | core 1 (load gen. + stub) | saturated | peak RSS after load, MB | RSS with idle conns, MB | KB per idle conn | RSS at 10 000, MB |\n");
    md.push_str("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|\n");
    let nginx_rps = nginx.and_then(|t| t.saturation.as_ref()).map(|s| s.rps);
    for t in run.targets.iter().filter(|t| t.available) {
        let sat = t.saturation.as_ref();
        let mem = t.memory.as_ref();
        let core0 = if t.id == "direct" {
            "–".to_owned()
        } else {
            sat.map(|s| format!("{:.0}%", s.target_core_share * 100.0))
                .unwrap_or_else(|| "–".into())
        };
        // The stub runs on core 1 with the load generator (for the direct call it is the target).
        let core1 = sat
            .map(|s| format!("{:.0}%", (s.loadgen_core_share + s.stub_core_share) * 100.0))
            .unwrap_or_else(|| "–".into());
        let at_10000 = mem.and_then(|m| {
            if m.idle_opened >= 10_000 {
                m.peak_rss_mb_with_idle
            } else {
                m.extrapolated_rss_mb_at_10000
            }
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.label,
            f(sat.map(|s| s.rps), 0),
            x(ratio(sat.map(|s| s.rps), nginx_rps)),
            core0,
            core1,
            sat.map(|s| s.saturated.as_str()).unwrap_or("–"),
            f(mem.and_then(|m| m.peak_rss_mb_after_load), 1),
            f(mem.and_then(|m| m.rss_mb_with_idle), 1),
            f(mem.and_then(|m| m.kb_per_idle_connection), 1),
            f(at_10000, 1),
        );
    }
}

/// The overload phase's tables.
fn overload_markdown(md: &mut String, run: &Run) {
    let Some(settings) = &run.settings.overload else {
        return;
    };
    let measured: Vec<(&TargetResult, &Overload)> = run
        .targets
        .iter()
        .filter_map(|t| Some((t, t.overload.as_ref()?)))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n**Overload** (each target in a process of its own; {} keep-alive mTLS connections opened beforehand; open loop at 50 % of the target's saturation rate for {:.0} s after {:.0} s of warm-up, then at 2 × its saturation rate for {:.0} s; latency from the request's first byte written on a connection to the last byte of the answer; a request that waits more than {:.0} ms in the generator for a free connection is not sent; request deadline {:.0} s):\n",
        settings.connections,
        settings.reference_seconds,
        settings.warmup_seconds,
        settings.seconds,
        settings.client_queue_deadline_ms,
        settings.request_timeout_seconds,
    );
    md.push_str("| target | saturation req/s | scheduled req/s | sent req/s | sent ÷ saturation | not sent | admitted req/s | shed (503 / 429) | other errors | of which timeouts / connection | core 0 (target) | core 1 (load gen. + stub) |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (t, o) in &measured {
        let r = &o.overload;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} | {:.0}% | {:.0}% |",
            t.label,
            f(Some(o.saturation_rps), 0),
            f(Some(r.scheduled_rps), 0),
            f(Some(r.sent_rps), 0),
            x(ratio(Some(r.sent_rps), Some(o.saturation_rps))),
            r.not_sent,
            f(Some(r.admitted_rps), 0),
            r.shed,
            r.other_errors,
            r.timeouts,
            r.connection_errors,
            r.target_core_share * 100.0,
            (r.loadgen_core_share + r.stub_core_share) * 100.0,
        );
    }
    md.push_str("\n| target | p50 admitted ms | p99 admitted ms | p99 at 50 % load ms | p99 ÷ p99 at 50 % | p99.9 admitted ms | p99 of shed answers ms | RSS before MB | peak MB | growth MB | a second after MB |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (t, o) in &measured {
        let l = o.overload.admitted_latency.as_ref();
        let reference = o.reference.admitted_latency.as_ref().map(|l| l.p99_ms);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.label,
            f(l.map(|l| l.p50_ms), 3),
            f(l.map(|l| l.p99_ms), 3),
            f(reference, 3),
            x(ratio(l.map(|l| l.p99_ms), reference)),
            f(l.map(|l| l.p999_ms), 3),
            f(o.overload.refused_latency.as_ref().map(|l| l.p99_ms), 3),
            f(o.rss_mb_before, 1),
            f(o.rss_mb_peak, 1),
            f(o.rss_growth_mb, 1),
            f(o.rss_mb_after, 1),
        );
    }
    let with_view: Vec<&(&TargetResult, &Overload)> = measured
        .iter()
        .filter(|(_, o)| !o.server_overload.is_empty())
        .collect();
    if !with_view.is_empty() {
        md.push_str("\nThe gateway's own view (histograms of its `/metrics` over each run; its buckets are 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250 ms, …, so each figure is the upper bound of the bucket: *at most*):\n\n");
        md.push_str("| target | run | timed span | count | p50 ≤ ms | p99 ≤ ms |\n|---|---|---|---:|---:|---:|\n");
        for (t, o) in with_view {
            for (run, timings) in [("50 %", &o.server_reference), ("2 ×", &o.server_overload)] {
                for timing in timings.iter().filter(|t| t.count > 0.0) {
                    let _ = writeln!(
                        md,
                        "| {} | {run} | {} | {:.0} | {} | {} |",
                        t.label,
                        timing.what,
                        timing.count,
                        f(timing.p50_at_most_ms, 1),
                        f(timing.p99_at_most_ms, 1),
                    );
                }
            }
        }
    }
    md.push('\n');
    for (t, o) in &measured {
        let answers = |run: &OverloadRun| {
            run.statuses
                .iter()
                .map(|(k, v)| format!("`{k}` {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            md,
            "- {}: limits: {}. Saturation from {}. At 2 ×: answers {}; {} reconnections; {} not sent. At 50 %: {} sent, answers {}, {} other errors, {} not sent.",
            t.label,
            o.limits,
            o.saturation_source,
            answers(&o.overload),
            o.overload.reconnects,
            o.overload.not_sent,
            o.reference.sent,
            answers(&o.reference),
            o.reference.other_errors,
            o.reference.not_sent,
        );
    }
}

/// The targets table and the notes.
fn targets_markdown(md: &mut String, run: &Run) {
    md.push_str("\n**Targets** (benchmarks, not assertions):\n\n| criterion | measured | limit | verdict |\n|---|---:|---:|---|\n");
    for c in &run.checks {
        let digits = match c.unit.as_str() {
            "×" => 2,
            "ms" => 3,
            "errors" => 0,
            _ => 1,
        };
        let criterion = match c.note.as_str() {
            "" => c.criterion.clone(),
            note => format!("{} ({note})", c.criterion),
        };
        let _ = writeln!(
            md,
            "| {criterion} | {} {} | {} {} | {} |",
            f(c.measured, digits),
            c.unit,
            f(c.limit, digits),
            c.unit,
            c.verdict
        );
    }
    let notes: Vec<String> = run
        .targets
        .iter()
        .filter_map(|t| {
            let mut parts = Vec::new();
            if let Some(note) = &t.note
                && t.available
            {
                parts.push(note.clone());
            }
            if let Some(error) = &t.error {
                parts.push(format!("error: {}", error.replace('\n', " ")));
            }
            for (what, first) in [
                (
                    "fixed-rate",
                    t.fixed.as_ref().and_then(|f| f.first_error.clone()),
                ),
                (
                    "new-connection",
                    t.new_connections
                        .as_ref()
                        .and_then(|n| n.first_error.clone()),
                ),
                (
                    "saturation",
                    t.saturation.as_ref().and_then(|s| s.first_error.clone()),
                ),
                (
                    "idle connections",
                    t.memory.as_ref().and_then(|m| m.idle_first_error.clone()),
                ),
                (
                    "overload (at 50 %)",
                    t.overload
                        .as_ref()
                        .and_then(|o| o.reference.first_error.clone()),
                ),
                (
                    "overload (at 2 ×)",
                    t.overload
                        .as_ref()
                        .and_then(|o| o.overload.first_error.clone()),
                ),
            ] {
                if let Some(first) = first {
                    parts.push(format!(
                        "first {what} failure: {}",
                        first.replace('\n', " ")
                    ));
                }
            }
            (!parts.is_empty()).then(|| format!("- {}: {}", t.label, parts.join("; ")))
        })
        .collect();
    if !notes.is_empty() {
        md.push_str("\nNotes:\n\n");
        md.push_str(&notes.join("\n"));
        md.push('\n');
    }
}
