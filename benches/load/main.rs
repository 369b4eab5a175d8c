//! Load harness: the gateway against nginx and the direct call, on loopback.
//!
//! `cargo bench --bench load -- --quick` (about 3 minutes), `-- --full`, or `-- --overload`.
//! It generates a PKI, starts a stub upstream (core 1), nginx as a
//! single-worker TLS 1.3 mTLS reverse proxy (core 0), and the gateway
//! (`datagate serve`, core 0) in its pass-through and full-pipeline
//! configurations, one target at a time, and measures from this process
//! (core 1): CPU time per request at a fixed offered rate (open loop, latency
//! from the scheduled time), CPU per new mTLS connection, throughput at
//! saturation, and peak RSS, including with many idle keep-alive connections.
//! Scenario (c) runs two (or three, with the hub) gateways with `[federation]`
//! configurations and compares each one's CPU per request with nginx's plus its
//! role's cryptographic floor, measured in the same run. Last, the overload phase
//! (`overload.rs`): each proxy past its saturation rate, in a process of its own.
//! Results: `target/bench-load/results.{json,md}`; method and figures in
//! `docs/BENCHMARKS.md` (`## Load harness`). The targets of the issue are
//! reported as met or missed; the harness exits 0 either way.

// A benchmark measures real time and reads its own local servers' answers whole.
#![allow(clippy::disallowed_methods)]

mod client;
mod federation;
// The role floors, shared with benches/crypto_floor.rs.
#[allow(dead_code)]
#[path = "../common/federation_crypto.rs"]
mod federation_crypto;
mod flood;
mod instructions;
mod measure;
mod overload;
mod procs;
mod report;
mod setup;
mod stub;

use anyhow::Context as _;
use measure::Live;
use procs::Proc;
use report::TargetResult;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage: cargo bench --bench load -- [--quick | --full] [options]

  --quick              ~10 s runs at 1 000 req/s, 1 000 idle connections (default; ~3 min)
  --full               ~30 s runs at 2 000 req/s, 10 000 idle connections (~8 min;
                       needs ~25 000 open files: run under `prlimit --nofile=65536`)
  --targets LIST       comma-separated subset of
                       direct,nginx,gateway-a,gateway-b,gateway-b0,fed-direct,fed-hub
                       (gateway-b0: (b) with the journal off; (b) − (b0) is the
                       journal's CPU per exchange)
  --federation         only scenario (c) and what it is compared with: the targets
                       direct,nginx,gateway-a,fed-direct,fed-hub (portal → A → B and
                       portal → A → hub → B, signed and encrypted)
  --rate N             offered rate of the keep-alive run (req/s)
  --federation-rate N  offered rate of the keep-alive run for the federation paths
                       (default 100 req/s: their gateways share core 0)
  --seconds N          measured seconds of the keep-alive run, per target
  --rounds N           interleaved rounds the keep-alive run is split into (the
                       other runs use a third and a half of it, at least 2 and 3)
  --concurrency N      concurrent requests of the saturation run
  --idle N             idle keep-alive connections for the memory figure
  --flood              only the flood run: 20 000 idle connections from 127.0.0.2 against
                       a gateway with default limits, a second consumer served from
                       127.0.0.3 meanwhile, /readyz, RSS before, during and after
  --instructions N     only the instruction count: gateway (a) and nginx under callgrind,
                       N sequential keep-alive requests each after a warm-up; user-space
                       instructions per request and the top functions (valgrind)
  --overload           only the overload phase (targets nginx,gateway-a unless --targets):
                       each target's saturation rate, then 50 % of it (reference) and
                       2 × it for 10 s over a pool of keep-alive connections; admitted
                       throughput, shed answers by code, p99 of admitted, peak RSS
  --no-overload        leave the overload phase out of --quick / --full
  --overload-seconds N seconds at 2 × saturation (default 5 in --quick, 10 otherwise)
  --overload-connections N
                       keep-alive connections of the overload phase (default 512: twice
                       the gateway's default in-flight share of one consumer)
  --overload-max-concurrent N, --overload-share N
                       the gateway's max_concurrent_requests and max_in_flight_per_consumer
                       in the overload phase (default: the node's defaults, 1024 and 256)
  --perf               record `perf record -g` of each TLS target during its keep-alive
                       run and write `perf report` summaries next to the results
  --out DIR            where results go (default: target/bench-load)
  --datagate PATH      the gateway binary to measure (default: the one this bench was
                       built with); scripts/pgo-build passes its instrumented and its
                       profile-guided builds here
  --compare PATH       a second gateway binary, measured as target gateway-a2 (pass-through)
                       beside gateway-a in the same interleaved rounds
  --repeat N           N whole runs in a row (results in DIR/run-1 … run-N), then the
                       median of each target's figure across them and its verdict
                       (summary.md): the added-p99 target is a median of five quick runs
";

/// Every target, in report order.
const TARGETS: [&str; 8] = [
    "direct",
    "nginx",
    "gateway-a",
    "gateway-a2",
    "gateway-b",
    "gateway-b0",
    "fed-direct",
    "fed-hub",
];

/// What to run and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    full: bool,
    /// Offered rate of the keep-alive run (req/s).
    pub rate: f64,
    /// Offered rate of the keep-alive run for the federation paths (req/s): below what
    /// two or three gateways sharing core 0 can serve, so CPU per request is not
    /// measured in overload.
    pub federation_rate: f64,
    /// Its measured seconds per target.
    pub seconds: f64,
    /// Rounds it is split into.
    pub rounds: usize,
    /// Its warm-up seconds per target.
    pub warmup: f64,
    /// Offered rate of the new-connection run.
    pub new_connection_rate: f64,
    /// Its measured seconds per target.
    pub new_connection_seconds: f64,
    /// Concurrency of the saturation run.
    pub saturation_concurrency: usize,
    /// Its warm-up seconds per target.
    pub saturation_warmup: f64,
    /// Its measured seconds per target.
    pub saturation_seconds: f64,
    /// Idle keep-alive connections for the memory figure.
    pub idle: usize,
    /// How many of them are opened at once.
    pub idle_parallel: usize,
    /// Deadline for opening them, seconds.
    pub idle_deadline: f64,
    targets: Vec<String>,
    /// Only the flood run.
    pub flood: bool,
    /// Whether the overload phase runs.
    pub overload: bool,
    /// Only the overload phase (`--overload`).
    pub overload_only: bool,
    /// Keep-alive connections of the overload phase.
    pub overload_connections: usize,
    /// Seconds at 2 × saturation.
    pub overload_seconds: f64,
    /// Seconds of the reference run at 50 %.
    pub overload_reference_seconds: f64,
    /// Seconds of warm-up at 50 %.
    pub overload_warmup_seconds: f64,
    /// The gateway's `max_concurrent_requests` in the overload phase (default: the node's).
    pub overload_max_concurrent: Option<usize>,
    /// The gateway's `max_in_flight_per_consumer` in the overload phase (default: the node's).
    pub overload_share: Option<usize>,
    /// Whether to record perf profiles.
    pub perf: bool,
    /// Only the instruction count: requests counted under callgrind per target.
    pub instructions: Option<usize>,
    /// Where results go.
    pub out: PathBuf,
    /// The gateway binary under test: this build's by default, or `--datagate PATH`
    /// (a profile-guided build from `scripts/pgo-build`, say).
    pub datagate: PathBuf,
    /// A second gateway binary, measured as target `gateway-a2` (pass-through) beside
    /// `gateway-a` in the same run: `--compare PATH`.
    pub compare: Option<PathBuf>,
    /// Whole runs in a row (`--repeat N`), each in `out/run-K`, then the median of each
    /// target's figure and its verdict (the p99 target is a median of five quick runs).
    pub repeat: usize,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let full = args.iter().any(|a| a == "--full");
        let mut options = if full {
            Options {
                full: true,
                rate: 2000.0,
                federation_rate: 100.0,
                seconds: 30.0,
                rounds: 10,
                warmup: 5.0,
                new_connection_rate: 200.0,
                new_connection_seconds: 15.0,
                saturation_concurrency: 128,
                saturation_warmup: 2.0,
                saturation_seconds: 10.0,
                idle: 10_000,
                idle_parallel: 64,
                idle_deadline: 120.0,
                targets: Vec::new(),
                perf: false,
                instructions: None,
                flood: false,
                overload: true,
                overload_only: false,
                overload_connections: 512,
                overload_seconds: 10.0,
                overload_reference_seconds: 10.0,
                overload_warmup_seconds: 2.0,
                overload_max_concurrent: None,
                overload_share: None,
                out: PathBuf::new(),
                datagate: PathBuf::from(env!("CARGO_BIN_EXE_datagate")),
                compare: None,
                repeat: 1,
            }
        } else {
            Options {
                full: false,
                rate: 1000.0,
                federation_rate: 100.0,
                seconds: 10.0,
                rounds: 5,
                warmup: 2.0,
                new_connection_rate: 200.0,
                new_connection_seconds: 4.0,
                saturation_concurrency: 64,
                saturation_warmup: 1.0,
                saturation_seconds: 3.0,
                idle: 1000,
                idle_parallel: 32,
                idle_deadline: 30.0,
                targets: Vec::new(),
                perf: false,
                instructions: None,
                flood: false,
                overload: true,
                overload_only: false,
                overload_connections: 512,
                overload_seconds: 5.0,
                overload_reference_seconds: 3.0,
                overload_warmup_seconds: 1.0,
                overload_max_concurrent: None,
                overload_share: None,
                out: PathBuf::new(),
                datagate: PathBuf::from(env!("CARGO_BIN_EXE_datagate")),
                compare: None,
                repeat: 1,
            }
        };
        options.targets = TARGETS.map(String::from).to_vec();
        options.out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-load");
        let mut iter = args.iter();
        let number = |value: Option<&String>, name: &str| -> anyhow::Result<f64> {
            value
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
                .with_context(|| format!("{name} needs a positive number"))
        };
        let mut targets_given = false;
        let mut overload_seconds = None;
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "--quick" | "--full" | "--bench" => {}
                "--targets" => {
                    targets_given = true;
                    let list = iter.next().context("--targets needs a list")?;
                    options.targets = list.split(',').map(|t| t.trim().to_owned()).collect();
                    for t in &options.targets {
                        anyhow::ensure!(TARGETS.contains(&t.as_str()), "unknown target {t:?}");
                    }
                }
                "--federation" => {
                    targets_given = true;
                    options.overload = false;
                    options.targets = ["direct", "nginx", "gateway-a", "fed-direct", "fed-hub"]
                        .map(String::from)
                        .to_vec();
                }
                "--rate" => options.rate = number(iter.next(), "--rate")?,
                "--federation-rate" => {
                    options.federation_rate = number(iter.next(), "--federation-rate")?
                }
                "--seconds" => options.seconds = number(iter.next(), "--seconds")?,
                "--rounds" => options.rounds = number(iter.next(), "--rounds")?.max(1.0) as usize,
                "--idle" => options.idle = number(iter.next(), "--idle")? as usize,
                "--concurrency" => {
                    options.saturation_concurrency = number(iter.next(), "--concurrency")? as usize
                }
                "--perf" => options.perf = true,
                "--flood" => options.flood = true,
                "--instructions" => {
                    options.instructions = Some(number(iter.next(), "--instructions")? as usize)
                }
                "--overload" => options.overload_only = true,
                "--no-overload" => options.overload = false,
                "--overload-seconds" => {
                    overload_seconds = Some(number(iter.next(), "--overload-seconds")?)
                }
                "--overload-connections" => {
                    options.overload_connections =
                        number(iter.next(), "--overload-connections")? as usize
                }
                "--overload-max-concurrent" => {
                    options.overload_max_concurrent =
                        Some(number(iter.next(), "--overload-max-concurrent")? as usize)
                }
                "--overload-share" => {
                    options.overload_share = Some(number(iter.next(), "--overload-share")? as usize)
                }
                "--out" => {
                    options.out = PathBuf::from(iter.next().context("--out needs a directory")?)
                }
                "--datagate" => {
                    options.datagate =
                        PathBuf::from(iter.next().context("--datagate needs a binary")?);
                    anyhow::ensure!(
                        options.datagate.is_file(),
                        "--datagate: {} is not a file",
                        options.datagate.display()
                    );
                }
                "--compare" => {
                    let path = PathBuf::from(iter.next().context("--compare needs a binary")?);
                    anyhow::ensure!(
                        path.is_file(),
                        "--compare: {} is not a file",
                        path.display()
                    );
                    options.compare = Some(path);
                }
                "--repeat" => options.repeat = number(iter.next(), "--repeat")?.max(1.0) as usize,
                "--help" | "-h" => anyhow::bail!("{USAGE}"),
                other => eprintln!("load: ignoring argument {other:?}"),
            }
        }
        if options.overload_only {
            options.overload = true;
            if !targets_given {
                options.targets = ["nginx", "gateway-a"].map(String::from).to_vec();
            }
            // Alone, the phase runs the 10 s at 2 × saturation in either mode.
            if !full {
                options.overload_seconds = 10.0;
                options.overload_reference_seconds = 5.0;
                options.overload_warmup_seconds = 2.0;
            }
        }
        if let Some(seconds) = overload_seconds {
            options.overload_seconds = seconds;
        }
        // `gateway-a2` is the `--compare` binary: measured when given, and only then.
        options.targets.retain(|t| t != "gateway-a2");
        if options.compare.is_some() {
            let at = options
                .targets
                .iter()
                .position(|t| t == "gateway-a")
                .map_or(options.targets.len(), |i| i + 1);
            options.targets.insert(at, "gateway-a2".into());
        }
        Ok(options)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(stub::STUB_FLAG) {
        return stub::main(&args[1..]);
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    // Pin this process (the load generator) to core 1 before any thread exists.
    let cpus = cpu_count();
    let pinning = if cpus >= 2 && procs::tool_works("taskset", "-V") && procs::pin_self(1) {
        Pinning {
            target: Some(0),
            loadgen: Some(1),
            text: "target on core 0; load generator and stub upstream on core 1 (taskset)".into(),
        }
    } else {
        Pinning {
            target: None,
            loadgen: None,
            text: "NOT pinned (needs 2 CPUs and taskset): figures are not comparable".into(),
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("load: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // On SIGINT or SIGTERM the run is dropped, which stops every child process.
    let outcome = runtime.block_on(async {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            outcome = repeated(options, pinning) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = terminate => Err(anyhow::anyhow!("terminated")),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("load: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone)]
struct Pinning {
    target: Option<usize>,
    loadgen: Option<usize>,
    text: String,
}

/// What every target's measurement needs.
pub struct Harness {
    /// The run's options.
    pub options: Options,
    /// The run's temporary directory.
    pub dir: PathBuf,
    /// Certificates.
    pub pki: setup::Pki,
    /// The stub upstream.
    pub stub: Proc,
    stub_port: u16,
    /// Clock ticks per second.
    pub ticks: f64,
    pinning: Pinning,
    nginx: Option<PathBuf>,
}

/// `options.repeat` whole runs, each in a folder of its own when more than one, then the
/// medians of their targets' figures.
async fn repeated(options: Options, pinning: Pinning) -> anyhow::Result<()> {
    if options.repeat <= 1 {
        return run(options, pinning).await.map(drop);
    }
    let mut runs = Vec::new();
    for k in 1..=options.repeat {
        eprintln!("load: run {k} of {}", options.repeat);
        let mut one = options.clone();
        one.out = options.out.join(format!("run-{k}"));
        runs.push(run(one, pinning.clone()).await?);
    }
    let markdown = report::median_summary(&runs);
    println!("{markdown}");
    std::fs::write(options.out.join("summary.md"), &markdown)?;
    eprintln!("load: wrote {}/summary.md", options.out.display());
    Ok(())
}

/// One whole run; returns its targets' checks (none for `--instructions` and `--flood`).
async fn run(mut options: Options, pinning: Pinning) -> anyhow::Result<Vec<report::Check>> {
    let started = Instant::now();
    let date = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)?
        .format(&time::format_description::well_known::Rfc3339)?;
    std::fs::create_dir_all(&options.out)
        .with_context(|| format!("cannot create {}", options.out.display()))?;
    let temp = tempfile::Builder::new()
        .prefix("datagate-load-")
        .tempdir()?;
    let dir = temp.path().to_owned();
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();

    // Open files: the idle connections, twice (client and target side in one
    // machine, the harness holds one end), plus headroom.
    let wanted = (options.idle as u64) + 4096;
    let soft = procs::raise_nofile(wanted);
    let mut idle_note = None;
    if soft < wanted {
        let reduced = (soft.saturating_sub(4096) as usize)
            .max(100)
            .min(options.idle);
        idle_note = Some(format!(
            "open-file limit {soft}: {reduced} idle connections instead of {} (run under `prlimit --nofile=65536`)",
            options.idle
        ));
        options.idle = reduced;
    }
    if let Some(note) = &idle_note {
        eprintln!("load: {note}");
    }

    let ticks = procs::clock_ticks();
    let pki = setup::write_pki(&dir.join("pki"))?;
    let stub_port = procs::free_port()?;
    let exe = std::env::current_exe()?;
    let mut command = procs::pinned(pinning.loadgen, &exe);
    command.arg(stub::STUB_FLAG).arg(stub_port.to_string());
    let mut stub = Proc::spawn("stub upstream", command, &dir.join("stub.log"), true)?;
    procs::wait_listening(&mut stub, stub_port, Duration::from_secs(10))?;

    let nginx = which("nginx").or_else(install_nginx);
    let datagate = options.datagate.clone();
    let environment = report::Environment {
        cpus: cpu_count(),
        cpu_model: cpu_model(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        load_average_at_start: load_average,
        state_dir: format!(
            "{} ({})",
            dir.display(),
            version(
                &dir,
                Command::new("stat").args(["-f", "-c", "%T"]).arg(&dir)
            )
        ),
        clock_ticks_per_second: ticks,
        pinning: pinning.text.clone(),
        nginx: match &nginx {
            Some(path) => version(&dir, Command::new(path).arg("-v")),
            None => "nginx not installed".into(),
        },
        rustc: version(&dir, Command::new("rustc").arg("-V")),
        datagate: format!(
            "{} ({})",
            version(&dir, Command::new(&datagate).arg("--version")),
            datagate.display()
        ),
        git: git_state(&dir),
    };
    let mut settings = report::Settings {
        mode: if options.full { "full" } else { "quick" }.into(),
        rate: options.rate,
        seconds: options.seconds,
        rounds: options.rounds,
        warmup_seconds: options.warmup,
        new_connection_rate: options.new_connection_rate,
        new_connection_seconds: options.new_connection_seconds,
        saturation_concurrency: options.saturation_concurrency,
        saturation_seconds: options.saturation_seconds,
        idle_connections: options.idle,
        record_bytes: stub::record().len(),
        overload: None,
        overload_only: options.overload_only,
    };
    eprintln!(
        "load: {} mode; {}; results in {}",
        settings.mode,
        pinning.text,
        options.out.display()
    );

    let mut harness = Harness {
        options: options.clone(),
        dir,
        pki,
        stub,
        stub_port,
        ticks,
        pinning,
        nginx,
    };
    if let Some(requests) = options.instructions {
        let markdown = instructions::run(&harness, requests).await?;
        println!("{markdown}");
        std::fs::write(options.out.join("instructions.md"), &markdown)?;
        eprintln!("load: wrote {}/instructions.md", options.out.display());
        harness.stub.stop();
        drop(temp);
        return Ok(Vec::new());
    }
    if options.flood {
        let markdown = flood::run(&harness).await?;
        println!("{markdown}");
        std::fs::write(options.out.join("flood.md"), &markdown)?;
        eprintln!("load: wrote {}/flood.md", options.out.display());
        harness.stub.stop();
        drop(temp);
        return Ok(Vec::new());
    }
    let wants = |id: &str| options.targets.iter().any(|t| t == id);
    let mut targets = Vec::new();
    let mut floors = None;
    if !options.overload_only {
        floors = cost_phases(&harness, &idle_note, &mut targets).await;
    }
    // The overload phase: each proxy in a process of its own, after the other runs.
    if options.overload {
        let plans: Vec<overload::Plan> = overload::TARGETS
            .iter()
            .filter(|id| wants(id))
            .map(|id| overload::Plan {
                id: (*id).to_owned(),
                saturation_rps: targets
                    .iter()
                    .find(|t: &&TargetResult| t.id == *id)
                    .and_then(|t| t.saturation.as_ref())
                    .map(|s| s.rps)
                    .filter(|rps| *rps > 0.0),
            })
            .collect();
        if !plans.is_empty() {
            settings.overload = Some(overload::settings(&harness));
            overload::run(&harness, plans, &mut targets).await;
        }
    }
    let order = |id: &str| TARGETS.iter().position(|o| *o == id);
    targets.sort_by_key(|t| order(&t.id));

    let checks = report::checks(
        &targets,
        options.idle,
        floors.as_ref(),
        options.overload_only,
    );
    let run = report::Run {
        date,
        environment,
        settings,
        targets,
        floors,
        checks,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    let markdown = report::markdown(&run);
    println!("{markdown}");
    std::fs::write(
        options.out.join("results.json"),
        serde_json::to_vec_pretty(&run)?,
    )?;
    std::fs::write(options.out.join("results.md"), &markdown)?;
    eprintln!("load: wrote {}/results.{{json,md}}", options.out.display());
    harness.stub.stop();
    drop(temp);
    Ok(run.checks)
}

/// The cost comparison: every target started, then measured side by side (keep-alive,
/// new connections, saturation, memory); the federation's crypto floors around them.
async fn cost_phases(
    harness: &Harness,
    idle_note: &Option<String>,
    targets: &mut Vec<TargetResult>,
) -> Option<federation::Floors> {
    let options = &harness.options;
    let wants = |id: &str| options.targets.iter().any(|t| t == id);
    let mut floors = None;
    // Scenario (c): the role floors first (this core is idle now), then its gateways.
    let with_federation = wants("fed-direct") || wants("fed-hub");
    let mut federation = None;
    let mut federation_error = None;
    if with_federation {
        eprintln!("load: measuring the crypto floor of each federation role");
        match federation::measure_floors(None) {
            Ok(measured) => floors = Some(measured),
            Err(error) => eprintln!("load: crypto floor: {error:#}"),
        }
        eprintln!("load: starting the federation's gateways");
        match federation::start(harness, wants("fed-hub")) {
            Ok(running) => federation = Some(running),
            Err(error) => {
                eprintln!("load: federation: {error:#}");
                federation_error = Some(format!("{error:#}"));
            }
        }
    }
    // Start every target, then measure them side by side.
    let mut lives = Vec::new();
    for id in TARGETS {
        if !wants(id) {
            continue;
        }
        let mut result = TargetResult::new(id, label(id));
        if let (Some(note), true) = (&idle_note, id != "direct") {
            result.note = Some(note.clone());
        }
        let started = if id.starts_with("fed-") {
            start_federation_target(
                harness,
                federation.as_ref(),
                &federation_error,
                result.clone(),
            )
            .await
        } else {
            start(harness, result.clone()).await
        };
        match started {
            Ok(Some(live)) => lives.push(live),
            Ok(None) => {
                result.available = false;
                result.note =
                    Some("nginx is not installed (apt-get install -y nginx-light)".into());
                targets.push(result);
            }
            Err(error) => {
                eprintln!("load: {id}: {error:#}");
                result.error = Some(format!("{error:#}"));
                targets.push(result);
            }
        }
    }
    measure::measure_all(harness, &mut lives).await;
    let federation_exits = federation.as_mut().map(|f| f.exits()).unwrap_or_default();
    if let Some(running) = federation.as_mut() {
        running.stop();
    }
    if floors.is_some() {
        eprintln!("load: measuring the crypto floors again");
        match federation::measure_floors(floors.clone()) {
            Ok(measured) => floors = Some(measured),
            Err(error) => eprintln!("load: crypto floor: {error:#}"),
        }
    }
    for mut live in lives {
        if !live.roles.is_empty() && !federation_exits.is_empty() {
            live.result.note = Some(federation_exits.join("; "));
        }
        if let Some(mut proc) = live.proc.take() {
            if let Some(status) = proc.exited() {
                live.result.note = Some(format!(
                    "the process exited during the run ({status}): {}",
                    proc.log_tail()
                ));
            }
            proc.stop();
        }
        targets.push(live.result);
    }
    floors
}

fn label(id: &str) -> &'static str {
    match id {
        "direct" => "direct call to the stub (plain HTTP)",
        "nginx" => "nginx (TLS 1.3 mTLS reverse proxy, 1 worker)",
        "gateway-a" => "(a) gateway, pass-through contract, no journal",
        "gateway-a2" => "(a′) the --compare binary, pass-through contract, no journal",
        "gateway-b0" => "(b0) gateway, full pipeline, journal off",
        "fed-direct" => "(c) portal → A → B, signed + encrypted (A + B)",
        "fed-hub" => "(c) portal → A → hub → B, signed + encrypted (A + hub + B)",
        _ => "(b) gateway, full pipeline with the durable journal",
    }
}

/// Wraps a federation path as a target once A answers 200 through it (which needs every
/// gateway on the path and the global configuration in force).
async fn start_federation_target(
    harness: &Harness,
    running: Option<&federation::Running>,
    error: &Option<String>,
    result: TargetResult,
) -> anyhow::Result<Option<Live>> {
    let Some(running) = running else {
        anyhow::bail!(
            "the federation did not start: {}",
            error.as_deref().unwrap_or("unknown error")
        );
    };
    eprintln!("load: starting {}", result.label);
    let endpoint = client::Endpoint::for_path(
        running.a_consumer_port,
        true,
        &federation::Running::path(&result.id),
    );
    let roles = running.roles(&result.id);
    Live::new(harness, result, running.a.pid(), endpoint, None)
        .await
        .map(|live| Some(live.with_roles(roles)))
}

/// Starts a target and waits until it answers; `None` when nginx is missing.
async fn start(harness: &Harness, result: TargetResult) -> anyhow::Result<Option<Live>> {
    let id = result.id.clone();
    eprintln!("load: starting {}", result.label);
    let (pid, endpoint, proc) = match id.as_str() {
        "direct" => (
            harness.stub.pid(),
            client::Endpoint::new(harness.stub_port, false),
            None,
        ),
        "nginx" => {
            let Some(nginx) = harness.nginx.clone() else {
                return Ok(None);
            };
            let (proc, port) = start_nginx(harness, &nginx, "nginx", harness.options.idle)?;
            (proc.pid(), client::Endpoint::new(port, true), Some(proc))
        }
        _ => {
            let profile = match id.as_str() {
                "gateway-a" | "gateway-a2" => setup::GatewayProfile::PassThrough,
                "gateway-b0" => setup::GatewayProfile::FullNoJournal,
                _ => setup::GatewayProfile::Full,
            };
            let limits = setup::GatewayLimits::Wide {
                connections: harness.options.idle + harness.options.saturation_concurrency,
            };
            let (proc, ports) = start_gateway(harness, &id, profile, limits)?;
            (
                proc.pid(),
                client::Endpoint::new(ports.consumer, true),
                Some(proc),
            )
        }
    };
    Live::new(harness, result, pid, endpoint, proc)
        .await
        .map(Some)
}

/// Starts nginx with its files under the run's directory `name`, for up to
/// `max_connections` client connections.
/// nginx's arguments: its prefix, its configuration and its error log in the prefix.
fn nginx_args(command: &mut Command, prefix: &Path, conf: &Path) {
    command
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(prefix.join("error.log"));
}

fn start_nginx(
    harness: &Harness,
    nginx: &Path,
    name: &str,
    max_connections: usize,
) -> anyhow::Result<(Proc, u16)> {
    let prefix = harness.dir.join(name);
    std::fs::create_dir_all(&prefix)?;
    let port = procs::free_port()?;
    let conf = setup::write_nginx(
        &prefix,
        &harness.pki,
        port,
        harness.stub_port,
        max_connections,
    )?;
    let mut command = procs::pinned(harness.pinning.target, nginx);
    nginx_args(&mut command, &prefix, &conf);
    let mut proc = Proc::spawn("nginx", command, &prefix.join("stderr.log"), false)?;
    procs::wait_listening(&mut proc, port, Duration::from_secs(15)).map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\nerror.log: {}",
            std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default()
        )
    })?;
    Ok((proc, port))
}

fn start_gateway(
    harness: &Harness,
    id: &str,
    profile: setup::GatewayProfile,
    limits: setup::GatewayLimits,
) -> anyhow::Result<(Proc, setup::GatewayPorts)> {
    let dir = harness.dir.join(id);
    let ports = setup::GatewayPorts {
        consumer: procs::free_port()?,
        ops: procs::free_port()?,
    };
    let config = setup::write_gateway(
        &dir,
        profile,
        limits,
        &harness.pki,
        ports,
        harness.stub_port,
    )?;
    let binary = match (&harness.options.compare, id) {
        (Some(compare), "gateway-a2") => compare,
        _ => &harness.options.datagate,
    };
    let mut command = procs::pinned(harness.pinning.target, binary);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .env_remove("DATAGATE_CONFIG");
    let mut proc = Proc::spawn(id, command, &dir.join("gateway.log"), false)?;
    procs::wait_listening(&mut proc, ports.consumer, Duration::from_secs(20))?;
    Ok((proc, ports))
}

/// `git describe --always --dirty`, plus the uncommitted files under `src/`
/// (the code the gateway binary was built from).
fn git_state(scratch: &Path) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let describe = version(
        scratch,
        Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .current_dir(root),
    );
    let mut status = Command::new("git");
    status
        .args([
            "status",
            "--porcelain",
            "--untracked-files=all",
            "--",
            "src",
        ])
        .current_dir(root);
    let changed: Vec<String> = procs::run_capture(status, scratch, Duration::from_secs(10))
        .map(|(_, text)| {
            text.lines()
                .filter_map(|l| l.get(3..))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if changed.is_empty() {
        format!("git {describe}")
    } else {
        format!(
            "git {describe}, uncommitted in src/: {}",
            changed.join(", ")
        )
    }
}

/// Installs nginx from Debian's packages when it is missing (as root, with apt-get),
/// unless `DATAGATE_BENCH_NO_INSTALL` is set. Each apt-get call is bounded by `timeout`.
fn install_nginx() -> Option<PathBuf> {
    if std::env::var_os("DATAGATE_BENCH_NO_INSTALL").is_some() || which("apt-get").is_none() {
        return None;
    }
    eprintln!("load: nginx is missing; installing nginx-light from Debian's packages");
    let apt = |args: &[&str]| {
        Command::new("timeout")
            .arg("600")
            .arg("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    let installed = apt(&["install", "-y", "-q", "nginx-light"])
        || (apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "nginx-light"]));
    if !installed {
        eprintln!("load: could not install nginx; it will be reported as not available");
    }
    which("nginx")
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn version(scratch: &Path, command: &mut Command) -> String {
    let program = command.get_program().to_string_lossy().into_owned();
    let mut owned = Command::new(command.get_program());
    owned.args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        owned.current_dir(dir);
    }
    match procs::run_capture(owned, scratch, Duration::from_secs(10)) {
        Ok((status, text)) if status.success() => {
            text.lines().next().unwrap_or_default().trim().to_owned()
        }
        _ => format!("{program}: unknown"),
    }
}

fn cpu_count() -> usize {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| text.lines().filter(|l| l.starts_with("processor")).count())
        .ok()
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
