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
            .arg(&harness.options.datagate)
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
    let text = std::fs::read_to_string(&dump)
        .with_context(|| format!("cannot read {}", dump.display()))?;
    let costs = self_costs(&text);
    let instructions = costs.iter().map(|(_, cost)| cost).sum();
    Ok(Count {
        name,
        instructions,
        requests,
        top: top_functions(&costs, instructions, 25),
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

/// Each function's own instructions (not its callees'), largest first, read from a
/// callgrind file: `fn=` opens a function's cost lines (names are compressed: `(id) name`
/// the first time, `(id)` after); a `calls=` line is followed by the cost of that call,
/// which belongs to the callee and is skipped. `callgrind_annotate`'s text output changed
/// across valgrind versions, so it is not parsed.
fn self_costs(text: &str) -> Vec<(String, u64)> {
    let mut names: std::collections::HashMap<String, String> = Default::default();
    let mut costs: std::collections::HashMap<String, u64> = Default::default();
    let mut current = String::new();
    let mut skip_next_cost = false;
    let mut resolve = |spec: &str| -> String {
        let spec = spec.trim();
        match spec.strip_prefix('(').and_then(|rest| rest.split_once(')')) {
            Some((id, rest)) if !rest.trim().is_empty() => {
                names.insert(id.to_owned(), rest.trim().to_owned());
                rest.trim().to_owned()
            }
            Some((id, _)) => names.get(id).cloned().unwrap_or_else(|| spec.to_owned()),
            None => spec.to_owned(),
        }
    };
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("fn=") {
            current = resolve(spec);
            skip_next_cost = false;
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            resolve(spec);
        } else if line.starts_with("calls=") {
            skip_next_cost = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            if std::mem::take(&mut skip_next_cost) {
                continue;
            }
            let cost = line
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            *costs.entry(current.clone()).or_default() += cost;
        }
    }
    let mut costs: Vec<(String, u64)> = costs.into_iter().collect();
    costs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    costs
}

/// The `limit` functions with the most own instructions, as Markdown table rows.
fn top_functions(costs: &[(String, u64)], total: u64, limit: usize) -> String {
    let mut rows = String::new();
    for (function, count) in costs.iter().take(limit) {
        let function = function
            .chars()
            .take(110)
            .collect::<String>()
            .replace('|', "\\|");
        let _ = writeln!(
            rows,
            "| {:.1}% | {} | `{}` |",
            100.0 * *count as f64 / total.max(1) as f64,
            count,
            function
        );
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
