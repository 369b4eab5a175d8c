//! The measurement phases. Every target is started first and kept running;
//! each phase then measures the targets in interleaved rounds (target 1,
//! 2, 3, 4, then again starting one further), so that a change in the
//! machine's background load during the run weighs on every target alike.
//! CPU counters are read around each round and summed.

use crate::client::{self, Endpoint, Mode, Observed};
use crate::federation::RoleProcess;
use crate::procs::{self, Proc};
use crate::report::{
    FixedRate, Latency, Memory, NewConnections, RoleCpu, Saturation, TargetResult,
};
use crate::{Harness, Options};
use anyhow::Context as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A target that is up and answering.
pub struct Live {
    /// What is reported.
    pub result: TargetResult,
    /// The process measured (the first on the path, for a federation target).
    pub pid: u32,
    /// For a federation target, every gateway process on the path: the target's CPU is
    /// their sum, and each is reported on its own.
    pub roles: Vec<RoleProcess>,
    /// Where requests go.
    pub endpoint: Arc<Endpoint>,
    /// The process, stopped when dropped (none for the stub: the harness owns it).
    pub proc: Option<Proc>,
    keepalive: reqwest::Client,
    saturating: reqwest::Client,
    connector: Option<tokio_rustls::TlsConnector>,
    failed: bool,
}

impl Live {
    /// Wraps a started target once it answers 200.
    pub async fn new(
        harness: &Harness,
        result: TargetResult,
        pid: u32,
        endpoint: Endpoint,
        proc: Option<Proc>,
    ) -> anyhow::Result<Self> {
        let keepalive = client::keepalive_client(&harness.pki)?;
        wait_answering(&keepalive, &endpoint).await?;
        let connector = if endpoint.tls {
            Some(tokio_rustls::TlsConnector::from(Arc::new(
                client::tls_config(&harness.pki, false)?,
            )))
        } else {
            None
        };
        Ok(Live {
            result,
            pid,
            roles: Vec::new(),
            endpoint: Arc::new(endpoint),
            proc,
            keepalive,
            saturating: client::keepalive_client(&harness.pki)?,
            connector,
            failed: false,
        })
    }

    /// Makes this a target of several processes (a federation path).
    pub fn with_roles(mut self, roles: Vec<RoleProcess>) -> Self {
        self.roles = roles;
        self
    }

    /// The keep-alive run's offered rate for this target.
    fn rate(&self, options: &Options) -> f64 {
        if self.roles.is_empty() {
            options.rate
        } else {
            options.federation_rate
        }
    }

    /// The processes whose CPU is the target's.
    fn pids(&self) -> Vec<u32> {
        if self.roles.is_empty() {
            vec![self.pid]
        } else {
            self.roles.iter().map(|r| r.pid).collect()
        }
    }

    fn fail(&mut self, what: &str, error: anyhow::Error) {
        let mut message = format!("{what}: {error:#}");
        if let Some(proc) = self.proc.as_mut()
            && let Some(status) = proc.exited()
        {
            message.push_str(&format!(
                "; the process exited ({status}): {}",
                proc.log_tail()
            ));
        }
        eprintln!("load: {}: {message}", self.result.id);
        self.result.error = Some(message);
        self.failed = true;
    }
}

/// Waits until the target answers 200 through `client` (20 s at most).
pub async fn wait_answering(client: &reqwest::Client, endpoint: &Endpoint) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let last = match tokio::time::timeout(
            client::REQUEST_TIMEOUT,
            client::get(client, endpoint),
        )
        .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(error)) => error,
            Err(_) => "timed out".into(),
        };
        if Instant::now() >= until {
            anyhow::bail!("the target does not answer 200: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU counters at one instant.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    target: u64,
    target_user: u64,
    target_switches: u64,
    /// Each process of the target (one, or a federation path's gateways).
    per_process: Vec<u64>,
    stub: u64,
    loadgen: u64,
}

impl Snapshot {
    fn take(targets: &[u32], stub: u32) -> anyhow::Result<Self> {
        let read = |pid: u32| {
            procs::cpu_ticks(pid).with_context(|| format!("cannot read /proc/{pid}/stat"))
        };
        let mut snapshot = Snapshot {
            at: Instant::now(),
            target: 0,
            target_user: 0,
            target_switches: 0,
            per_process: Vec::with_capacity(targets.len()),
            stub: read(stub)?,
            loadgen: read(std::process::id())?,
        };
        for &target in targets {
            let (user, system) = procs::cpu_ticks_split(target)
                .with_context(|| format!("cannot read /proc/{target}/stat"))?;
            snapshot.target += user + system;
            snapshot.target_user += user;
            snapshot.target_switches += procs::context_switches(target).unwrap_or(0);
            snapshot.per_process.push(user + system);
        }
        Ok(snapshot)
    }
}

/// Observations and CPU seconds summed over rounds.
#[derive(Debug, Default)]
struct Totals {
    observed: Observed,
    target: f64,
    target_user: f64,
    per_process: Vec<f64>,
    switches: u64,
    stub: f64,
    loadgen: f64,
    wall: f64,
}

impl Totals {
    fn add(&mut self, before: &Snapshot, after: &Snapshot, observed: Observed, ticks: f64) {
        let d = |a: u64, b: u64| a.saturating_sub(b) as f64 / ticks;
        self.target += d(after.target, before.target);
        self.target_user += d(after.target_user, before.target_user);
        self.per_process
            .resize(after.per_process.len().max(self.per_process.len()), 0.0);
        for (sum, (a, b)) in self
            .per_process
            .iter_mut()
            .zip(after.per_process.iter().zip(&before.per_process))
        {
            *sum += d(*a, *b);
        }
        self.switches += after.target_switches.saturating_sub(before.target_switches);
        self.stub += d(after.stub, before.stub);
        self.loadgen += d(after.loadgen, before.loadgen);
        self.wall += after.at.duration_since(before.at).as_secs_f64();
        self.observed.merge(observed);
    }

    fn per_request_us(&self, cpu_seconds: f64) -> f64 {
        if self.observed.ok == 0 {
            f64::NAN
        } else {
            cpu_seconds * 1e6 / self.observed.ok as f64
        }
    }
}

fn mb(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 * 1024.0 / 1e6)
}

/// What a phase does to one target for one round.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    KeepAlive,
    NewConnection,
    Saturation,
}

async fn drive(
    live: &Live,
    options: &Options,
    phase: Phase,
    seconds: f64,
) -> anyhow::Result<Observed> {
    let duration = Duration::from_secs_f64(seconds);
    match phase {
        Phase::KeepAlive => {
            client::open_loop(
                Mode::KeepAlive(live.keepalive.clone()),
                live.endpoint.clone(),
                live.rate(options),
                duration,
            )
            .await
        }
        Phase::NewConnection => {
            let connector = live
                .connector
                .clone()
                .context("no TLS connector for this target")?;
            client::open_loop(
                Mode::NewConnection(connector),
                live.endpoint.clone(),
                options.new_connection_rate,
                duration,
            )
            .await
        }
        Phase::Saturation => Ok(client::closed_loop(
            live.saturating.clone(),
            live.endpoint.clone(),
            options.saturation_concurrency,
            duration,
        )
        .await),
    }
}

/// Warms every target up, then measures them in interleaved rounds.
async fn rounds(
    harness: &Harness,
    lives: &mut [Live],
    phase: Phase,
    warmup: f64,
    rounds: usize,
    total_seconds: f64,
) -> Vec<Option<Totals>> {
    let stub_pid = harness.stub.pid();
    // A new connection per request at 200/s would overload a federation path (two or
    // three gateways on one core): its cost is A's, which (a) already shows.
    let applies = |live: &Live| {
        !live.failed
            && (phase != Phase::NewConnection || (live.endpoint.tls && live.roles.is_empty()))
    };
    for live in lives.iter_mut().filter(|l| applies(l)) {
        if let Err(error) = drive(live, &harness.options, phase, warmup).await {
            live.fail("warm-up", error);
        }
    }
    let mut totals: Vec<Option<Totals>> = lives
        .iter()
        .map(|l| applies(l).then(Totals::default))
        .collect();
    let per_round = total_seconds / rounds.max(1) as f64;
    let n = lives.len();
    for round in 0..rounds.max(1) {
        for k in 0..n {
            let i = (k + round) % n;
            let live = &mut lives[i];
            if !applies(live) {
                continue;
            }
            let pids = live.pids();
            let outcome = async {
                let before = Snapshot::take(&pids, stub_pid)?;
                let observed = drive(live, &harness.options, phase, per_round).await?;
                let after = Snapshot::take(&pids, stub_pid)?;
                anyhow::Ok((before, after, observed))
            }
            .await;
            match outcome {
                Ok((before, after, observed)) => {
                    if let Some(t) = totals[i].as_mut() {
                        t.add(&before, &after, observed, harness.ticks);
                    }
                }
                Err(error) => {
                    live.fail("measurement", error);
                    totals[i] = None;
                }
            }
        }
    }
    totals
}

/// Runs every phase on every live target and fills in their results.
pub async fn measure_all(harness: &Harness, lives: &mut [Live]) {
    let o = harness.options.clone();

    // 1. Fixed rate over keep-alive connections.
    eprintln!(
        "load: keep-alive, open loop at {:.0} req/s: {:.0} s warm-up, then {} rounds of {:.1} s per target",
        o.rate,
        o.warmup,
        o.rounds,
        o.seconds / o.rounds as f64
    );
    let perf: Vec<Vec<(String, Proc)>> = lives
        .iter()
        .map(|l| {
            if !(o.perf && l.endpoint.tls && !l.failed) {
                return Vec::new();
            }
            let processes: Vec<(String, u32)> = if l.roles.is_empty() {
                vec![(l.result.id.clone(), l.pid)]
            } else {
                l.roles
                    .iter()
                    .map(|r| (format!("{}-{}", l.result.id, r.role.name()), r.pid))
                    .collect()
            };
            processes
                .into_iter()
                .filter_map(|(name, pid)| start_perf(harness, &name, pid).map(|p| (name, p)))
                .collect()
        })
        .collect();
    let totals = rounds(
        harness,
        lives,
        Phase::KeepAlive,
        o.warmup,
        o.rounds,
        o.seconds,
    )
    .await;
    for (live, perf) in lives.iter_mut().zip(perf) {
        let files: Vec<String> = perf
            .into_iter()
            .filter_map(|(name, perf)| finish_perf(harness, &name, perf))
            .collect();
        if !files.is_empty() {
            live.result.profile = Some(files.join(", "));
        }
    }
    for (live, totals) in lives.iter_mut().zip(totals) {
        let Some(mut t) = totals else { continue };
        let fixed = FixedRate {
            offered_rps: live.rate(&o),
            seconds: t.observed.wall.as_secs_f64(),
            ok: t.observed.ok,
            errors: t.observed.errors,
            achieved_rps: t.observed.ok as f64 / t.wall,
            target_cpu_seconds: t.target,
            cpu_us_per_request: t.per_request_us(t.target),
            user_cpu_us_per_request: t.per_request_us(t.target_user),
            context_switches_per_request: t.switches as f64 / t.observed.ok.max(1) as f64,
            threads: procs::thread_count(live.pid).unwrap_or(0),
            stub_cpu_us_per_request: t.per_request_us(t.stub),
            loadgen_cpu_us_per_request: t.per_request_us(t.loadgen),
            response_bytes: t.observed.body_bytes as f64 / t.observed.ok.max(1) as f64,
            latency: Latency::of(&mut t.observed.latencies_us),
            first_error: t.observed.first_error.take(),
            roles: live
                .roles
                .iter()
                .zip(&t.per_process)
                .map(|(role, cpu)| RoleCpu {
                    label: role.label.clone(),
                    role: role.role.name().to_owned(),
                    cpu_us_per_request: t.per_request_us(*cpu),
                })
                .collect(),
        };
        for role in &fixed.roles {
            eprintln!(
                "  {:<10}   {}: {:.1} µs CPU/request",
                "", role.label, role.cpu_us_per_request
            );
        }
        eprintln!(
            "  {:<10} {:>7.1} µs CPU/request, {:>5.1} context switches/request, p99 {} ms, {} errors",
            live.result.id,
            fixed.cpu_us_per_request,
            fixed.context_switches_per_request,
            fixed
                .latency
                .as_ref()
                .map(|l| format!("{:.3}", l.p99_ms))
                .unwrap_or_default(),
            fixed.errors
        );
        live.result.fixed = Some(fixed);
    }

    // 2. A new mTLS connection per request.
    let new_rounds = (o.rounds / 3).max(2);
    eprintln!(
        "load: new mTLS connection per request at {:.0}/s: 1 s warm-up, then {} rounds of {:.1} s per target",
        o.new_connection_rate,
        new_rounds,
        o.new_connection_seconds / new_rounds as f64
    );
    let totals = rounds(
        harness,
        lives,
        Phase::NewConnection,
        1.0,
        new_rounds,
        o.new_connection_seconds,
    )
    .await;
    for (live, totals) in lives.iter_mut().zip(totals) {
        let Some(mut t) = totals else { continue };
        let cpu = t.per_request_us(t.target);
        let keepalive = live.result.fixed.as_ref().map(|f| f.cpu_us_per_request);
        eprintln!(
            "  {:<10} {cpu:>7.0} µs CPU/request, {} errors",
            live.result.id, t.observed.errors
        );
        live.result.new_connections = Some(NewConnections {
            offered_rps: o.new_connection_rate,
            seconds: t.observed.wall.as_secs_f64(),
            ok: t.observed.ok,
            errors: t.observed.errors,
            cpu_us_per_request: cpu,
            connections_per_cpu_second: 1e6 / cpu,
            connection_only_cpu_us: keepalive.map(|k| cpu - k).filter(|v| v.is_finite()),
            latency: Latency::of(&mut t.observed.latencies_us),
            first_error: t.observed.first_error.take(),
        });
    }

    // 3. Saturation: closed loop.
    let saturation_rounds = (o.rounds / 2).max(3);
    eprintln!(
        "load: saturation, closed loop with {} concurrent requests: {:.0} s warm-up, then {} rounds of {:.1} s per target",
        o.saturation_concurrency,
        o.saturation_warmup,
        saturation_rounds,
        o.saturation_seconds / saturation_rounds as f64
    );
    let totals = rounds(
        harness,
        lives,
        Phase::Saturation,
        o.saturation_warmup,
        saturation_rounds,
        o.saturation_seconds,
    )
    .await;
    for (live, totals) in lives.iter_mut().zip(totals) {
        let Some(t) = totals else { continue };
        let (target_share, stub_share, loadgen_share) =
            (t.target / t.wall, t.stub / t.wall, t.loadgen / t.wall);
        let core1 = loadgen_share + stub_share;
        let saturated = if !live.endpoint.tls {
            format!(
                "core 1 at {:.0}% (stub and load generator share it)",
                core1 * 100.0
            )
        } else if target_share >= 0.9 {
            format!("target (core 0 at {:.0}%)", target_share * 100.0)
        } else if core1 >= 0.9 {
            format!("load generator + stub (core 1 at {:.0}%)", core1 * 100.0)
        } else {
            format!(
                "neither core full (core 0 {:.0}%, core 1 {:.0}%): the target waits (e.g. on the journal's fsync) or other load",
                target_share * 100.0,
                core1 * 100.0
            )
        };
        let rps = t.observed.ok as f64 / t.wall;
        eprintln!("  {:<10} {rps:>7.0} req/s, {saturated}", live.result.id);
        live.result.saturation = Some(Saturation {
            concurrency: o.saturation_concurrency,
            seconds: t.wall,
            ok: t.observed.ok,
            errors: t.observed.errors,
            rps,
            target_core_share: target_share,
            loadgen_core_share: loadgen_share,
            stub_core_share: stub_share,
            saturated,
            first_error: t.observed.first_error,
        });
    }

    // 4. Memory: peak after load, then with idle keep-alive connections (one target at a
    // time). Not for a federation path: its idle connections would measure A alone, as (a).
    for live in lives.iter_mut().filter(|l| !l.failed && l.roles.is_empty()) {
        live.result.memory = Some(memory(harness, live).await);
    }
}

async fn memory(harness: &Harness, live: &Live) -> Memory {
    let o = &harness.options;
    let pid = live.pid;
    let mut memory = Memory {
        peak_rss_mb_after_load: mb(procs::status_kib(pid, "VmHWM")),
        idle_requested: 0,
        idle_opened: 0,
        idle_failed: 0,
        idle_open_seconds: 0.0,
        idle_first_error: None,
        target_fds: None,
        rss_mb_before_idle: None,
        rss_mb_with_idle: None,
        peak_rss_mb_with_idle: None,
        kb_per_idle_connection: None,
        extrapolated_rss_mb_at_10000: None,
    };
    let Some(connector) = live.connector.clone() else {
        return memory;
    };
    eprintln!(
        "load: {}: {} idle keep-alive mTLS connections",
        live.result.id, o.idle
    );
    let before_kib = procs::status_kib(pid, "VmRSS");
    let idle = client::open_idle(
        connector,
        live.endpoint.clone(),
        o.idle,
        o.idle_parallel,
        Duration::from_secs_f64(o.idle_deadline),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_kib = procs::status_kib(pid, "VmRSS");
    memory.target_fds = procs::fd_count(pid);
    memory.peak_rss_mb_with_idle = mb(procs::status_kib(pid, "VmHWM"));
    memory.idle_requested = o.idle;
    memory.idle_opened = idle.streams.len();
    memory.idle_failed = idle.failed;
    memory.idle_open_seconds = idle.took.as_secs_f64();
    memory.idle_first_error = idle.first_error.clone();
    memory.rss_mb_before_idle = mb(before_kib);
    memory.rss_mb_with_idle = mb(with_kib);
    if let (Some(before), Some(with)) = (before_kib, with_kib)
        && !idle.streams.is_empty()
    {
        let per_kb = (with as f64 - before as f64) * 1.024 / idle.streams.len() as f64;
        memory.kb_per_idle_connection = Some(per_kb);
        if idle.streams.len() < 10_000 {
            memory.extrapolated_rss_mb_at_10000 = Some(before as f64 * 1.024 / 1e3 + per_kb * 10.0);
        }
    }
    eprintln!(
        "  opened {} in {:.1} s: RSS {} MB, {} KB/connection",
        idle.streams.len(),
        idle.took.as_secs_f64(),
        memory
            .rss_mb_with_idle
            .map(|v| format!("{v:.1}"))
            .unwrap_or_default(),
        memory
            .kb_per_idle_connection
            .map(|v| format!("{v:.1}"))
            .unwrap_or_default()
    );
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    memory
}

/// Starts `perf record -g` on `pid` (when perf works).
fn start_perf(harness: &Harness, id: &str, pid: u32) -> Option<Proc> {
    let data = harness.options.out.join(format!("perf-{id}.data"));
    let mut command = Command::new("perf");
    command
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(&data)
        .args(["-p", &pid.to_string()]);
    match Proc::spawn(
        "perf record",
        command,
        &harness.dir.join(format!("perf-{id}.log")),
        false,
    ) {
        Ok(proc) => Some(proc),
        Err(error) => {
            eprintln!("load: perf unavailable: {error:#}");
            None
        }
    }
}

/// Stops `perf record` and writes `perf report` summaries next to the
/// results: by thread and object, then by symbol.
fn finish_perf(harness: &Harness, id: &str, mut perf: Proc) -> Option<String> {
    perf.stop_with("INT");
    let data = harness.options.out.join(format!("perf-{id}.data"));
    let mut text = String::new();
    for sort in ["comm,dso", "dso,symbol"] {
        let mut command = Command::new("perf");
        command
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                sort,
                "--percent-limit",
                "0.5",
                "-g",
                "none",
                "-i",
            ])
            .arg(&data);
        match procs::run_capture(command, &harness.dir, Duration::from_secs(120)) {
            Ok((_, report)) => text.push_str(&report),
            Err(error) => {
                eprintln!("load: perf report failed: {error:#}");
                return None;
            }
        }
    }
    let file = harness.options.out.join(format!("perf-{id}.txt"));
    std::fs::write(&file, text).ok()?;
    Some(file.display().to_string())
}
