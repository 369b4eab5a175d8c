//! `--instructions`: user-space instructions per keep-alive request, counted by
//! callgrind, for gateway (a) and nginx.
//!
//! Owns: starting each target under `valgrind --tool=callgrind`, a warm-up, zeroing the
//! counters, N sequential keep-alive requests, a dump, and the per-function summary.
//! Instruction counts repeat for the same binary and input whatever else the machine is
//! doing, so a change of a few hundred instructions per request shows, where the CPU-time
//! figures of the load run (±5 % across runs on a shared VM) cannot. They leave out the
//! kernel (system calls, TCP), which the load run's CPU time includes.
//!
//! Does not own: the timing figures (the load run), the targets' configuration (`setup`).

use crate::client::{self, Endpoint};
use crate::procs::{self, Proc};
use crate::{Harness, setup};
use anyhow::Context as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Requests before the counters are zeroed (pools filled, caches warm, lazy statics set).
const WARMUP: usize = 300;

/// One target's count.
struct Count {
    name: &'static str,
    instructions: u64,
    requests: usize,
    top: String,
}

/// Runs both targets and returns the Markdown report.
pub async fn run(harness: &Harness, requests: usize) -> anyhow::Result<String> {
    anyhow::ensure!(
        procs::tool_works("valgrind", "--version"),
        "valgrind is not installed (apt-get install -y valgrind)"
    );
    let mut counts = Vec::new();
    let dir = harness.dir.join("callgrind");
    std::fs::create_dir_all(&dir)?;

    let gateway = {
        let ports = setup::GatewayPorts {
            consumer: procs::free_port()?,
            ops: procs::free_port()?,
        };
        let config = setup::write_gateway(
            &harness.dir.join("gateway-a-callgrind"),
            setup::GatewayProfile::PassThrough,
            setup::GatewayLimits::Wide { connections: 64 },
            &harness.pki,
            ports,
            harness.stub_port,
        )?;
        let mut command = callgrind(harness, &dir, "gateway-a");
        command
            .arg(env!("CARGO_BIN_EXE_datagate"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .env_remove("DATAGATE_CONFIG");
        ("(a) gateway, pass-through", command, ports.consumer)
    };
    counts.push(measure(harness, &dir, "gateway-a", gateway, requests).await?);

    if let Some(nginx) = &harness.nginx {
        let prefix = harness.dir.join("nginx-callgrind");
        std::fs::create_dir_all(&prefix)?;
        let port = procs::free_port()?;
        let conf = setup::write_nginx(&prefix, &harness.pki, port, harness.stub_port, 64)?;
        let mut command = callgrind(harness, &dir, "nginx");
        command.arg(nginx);
        crate::nginx_args(&mut command, &prefix, &conf);
        counts.push(measure(harness, &dir, "nginx", ("nginx", command, port), requests).await?);
    }
    Ok(render(&counts))
}

fn callgrind(harness: &Harness, dir: &Path, id: &str) -> Command {
    let mut command = procs::pinned(harness.pinning.target, Path::new("valgrind"));
    command
        .arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}",
            dir.join(format!("{id}.out")).display()
        ))
        .arg("--dump-instr=no");
    command
}

async fn measure(
    harness: &Harness,
    dir: &Path,
    id: &str,
    (name, command, port): (&'static str, Command, u16),
    requests: usize,
) -> anyhow::Result<Count> {
    eprintln!("load: {name} under callgrind ({requests} requests)");
    let mut proc = Proc::spawn(id, command, &dir.join(format!("{id}.log")), false)?;
    procs::wait_listening(&mut proc, port, Duration::from_secs(120))?;
    let client = client::keepalive_client(&harness.pki)?;
    let endpoint = Endpoint::new(port, true);
    for _ in 0..WARMUP {
        client::get(&client, &endpoint)
            .await
            .map_err(|e| anyhow::anyhow!("warm-up request to {name}: {e}"))?;
    }
    control(&proc, "--zero")?;
    for _ in 0..requests {
        client::get(&client, &endpoint)
            .await
            .map_err(|e| anyhow::anyhow!("request to {name}: {e}"))?;
    }
    control(&proc, "--dump")?;
    drop(client);
    proc.stop();
    let dump = newest_dump(dir, id)?;
    // Kept with the results, for `callgrind_annotate` by hand.
    let kept = harness.options.out.join(format!("callgrind-{id}.out"));
    std::fs::copy(&dump, &kept).with_context(|| format!("cannot keep {}", dump.display()))?;
    let mut annotate = Command::new("callgrind_annotate");
    annotate.arg("--threshold=99").arg(&dump);
    let (status, annotated) = procs::run_capture(annotate, dir, Duration::from_secs(120))?;
    anyhow::ensure!(status.success(), "callgrind_annotate failed: {annotated}");
    let instructions = totals(&annotated).context("callgrind_annotate printed no total")?;
    Ok(Count {
        name,
        instructions,
        requests,
        top: top_functions(&annotated, instructions, 25),
    })
}

fn control(proc: &Proc, action: &str) -> anyhow::Result<()> {
    let status = Command::new("callgrind_control")
        .arg(action)
        .arg(proc.pid().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("callgrind_control")?;
    anyhow::ensure!(status.success(), "callgrind_control {action} failed");
    Ok(())
}

/// The dump written by `--dump` (`<id>.out.<n>`), the most recent.
fn newest_dump(dir: &Path, id: &str) -> anyhow::Result<PathBuf> {
    let prefix = format!("{id}.out.");
    let mut dumps: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dumps.sort();
    dumps
        .pop()
        .map(|(_, path)| path)
        .with_context(|| format!("no callgrind dump {prefix}* in {}", dir.display()))
}

fn number(text: &str) -> Option<u64> {
    text.replace(',', "").parse().ok()
}

/// `PROGRAM TOTALS` of `callgrind_annotate`'s output.
fn totals(annotated: &str) -> Option<u64> {
    annotated
        .lines()
        .find(|line| line.contains("PROGRAM TOTALS"))
        .and_then(|line| line.split_whitespace().next())
        .and_then(number)
}

/// The `limit` functions with the most instructions, as Markdown table rows.
fn top_functions(annotated: &str, total: u64, limit: usize) -> String {
    let mut rows = String::new();
    let mut in_table = false;
    let mut taken = 0;
    for line in annotated.lines() {
        if line.contains("file:function") {
            in_table = true;
            continue;
        }
        if !in_table || line.trim().is_empty() || line.starts_with('-') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(count) = fields.next().and_then(number) else {
            continue;
        };
        // "1,234 (12.3%)  file:function"
        let function = line
            .split_once(')')
            .map_or(line, |(_, rest)| rest)
            .trim()
            .rsplit_once(':')
            .map_or(line.trim(), |(_, f)| f)
            .chars()
            .take(110)
            .collect::<String>()
            .replace('|', "\\|");
        let _ = writeln!(
            rows,
            "| {:.1}% | {} | `{}` |",
            100.0 * count as f64 / total.max(1) as f64,
            count,
            function
        );
        taken += 1;
        if taken == limit {
            break;
        }
    }
    rows
}

fn render(counts: &[Count]) -> String {
    let mut out = String::new();
    let nginx = counts
        .iter()
        .find(|c| c.name == "nginx")
        .map(|c| c.instructions as f64 / c.requests as f64);
    let _ = writeln!(
        out,
        "**User-space instructions per keep-alive request** (callgrind; {WARMUP} requests of warm-up, then counted; kernel not included)\n"
    );
    let _ = writeln!(
        out,
        "| target | requests | instructions | per request | × nginx |\n|---|---:|---:|---:|---:|"
    );
    for count in counts {
        let per = count.instructions as f64 / count.requests as f64;
        let ratio = nginx.map_or("–".to_owned(), |n| format!("{:.2}×", per / n));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} |",
            count.name, count.requests, count.instructions, per, ratio
        );
    }
    for count in counts {
        let _ = writeln!(
            out,
            "\n{}: functions by own instructions (top 25)\n\n| share | instructions | function |\n|---:|---:|---|\n{}",
            count.name, count.top
        );
    }
    out
}
