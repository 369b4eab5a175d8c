//! Child processes the harness starts (always stopped on drop) and what it
//! reads about processes from `/proc`.

use anyhow::Context;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a stopped process gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `command` with stdout and stderr going to `log`. With
    /// `keep_stdin`, the child's stdin is a pipe held open until the process is
    /// dropped (the stub upstream exits when it closes, even if the harness is
    /// killed outright).
    pub fn spawn(
        name: &str,
        mut command: Command,
        log: &Path,
        keep_stdin: bool,
    ) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        command
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .stdin(if keep_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// The process id (the target itself: `taskset` execs its command).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The last lines of the process's output, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Sends `signal` (a name such as `INT` or `TERM`) with the `kill` command.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process: `signal`, up to 3 s of grace, then SIGKILL.
    pub fn stop_with(&mut self, signal: &str) {
        if self.child.is_none() {
            return;
        }
        if self.exited().is_none() {
            self.signal(signal);
            if self.wait_timeout(TERM_GRACE).is_none() {
                eprintln!(
                    "  {} did not stop within {TERM_GRACE:?}; killing it",
                    self.name
                );
                if let Some(child) = self.child.as_mut() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        // Dropping the child closes its stdin pipe, if any.
        self.child = None;
    }

    /// Stops the process with SIGTERM.
    pub fn stop(&mut self) {
        self.stop_with("TERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `Command` running `program` pinned to `cpu` with `taskset` (unpinned
/// when `taskset` is missing).
pub fn pinned(cpu: Option<usize>, program: &Path) -> Command {
    match cpu {
        Some(cpu) => {
            let mut command = Command::new("taskset");
            command.arg("-c").arg(cpu.to_string()).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// Whether `program` runs (e.g. `taskset -V`).
pub fn tool_works(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command to completion within `timeout` and returns its stdout and
/// stderr (both through files, so a chatty command cannot block on a pipe).
pub fn run_capture(
    mut command: Command,
    scratch: &Path,
    timeout: Duration,
) -> anyhow::Result<(ExitStatus, String)> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = scratch.join(format!("command-{n}.log"));
    let mut proc = Proc::spawn(
        "command",
        {
            command.env("LC_ALL", "C");
            command
        },
        &log,
        false,
    )?;
    let status = proc
        .wait_timeout(timeout)
        .ok_or_else(|| anyhow::anyhow!("timed out after {timeout:?}"))?;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    drop(proc);
    let _ = std::fs::remove_file(&log);
    Ok((status, text))
}

/// Pins every thread of this process to `cpu` (`taskset -a -p`). Threads
/// created later inherit the affinity.
pub fn pin_self(cpu: usize) -> bool {
    Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when it cannot be read).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads, live and exited), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    cpu_ticks_split(pid).map(|(user, system)| user + system)
}

/// (utime, stime) of a process (all its threads, live and exited), in clock ticks.
pub fn cpu_ticks_split(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

/// Context switches (voluntary + involuntary) of the live threads of a process.
pub fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("voluntary_ctxt_switches")
                    || l.starts_with("nonvoluntary_ctxt_switches")
            })
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

/// Number of threads of a process.
pub fn thread_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()
        .map(|d| d.count())
}

/// A `kB` field of `/proc/PID/status` such as `VmHWM` or `VmRSS`, in KiB.
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Number of open file descriptors of a process.
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// The soft and hard limits on open files of this process.
pub fn nofile_limits() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    let parse = |v: Option<&str>| match v? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((parse(values.next())?, parse(values.next())?))
}

/// Raises this process's open-file limit to at least `wanted` with the
/// `prlimit` command (children started afterwards inherit it). Returns the
/// soft limit in force afterwards.
pub fn raise_nofile(wanted: u64) -> u64 {
    let current = nofile_limits().map(|(soft, _)| soft).unwrap_or(1024);
    if current >= wanted {
        return current;
    }
    let pid = std::process::id().to_string();
    let hard = nofile_limits().map(|(_, hard)| hard).unwrap_or(current);
    // First try to raise both limits (needs privilege), then the soft one up to the hard one.
    for limit in [
        format!("{wanted}:{wanted}"),
        format!("{}:", wanted.min(hard)),
    ] {
        let _ = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={limit}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if nofile_limits().is_some_and(|(soft, _)| soft >= wanted) {
            break;
        }
    }
    nofile_limits().map(|(soft, _)| soft).unwrap_or(current)
}

/// A free TCP port on 127.0.0.1 (bound and released; the window for a clash is tiny).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Waits until something accepts TCP connections on `port`, or the process
/// exits, or `timeout` passes.
pub fn wait_listening(proc: &mut Proc, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = proc.exited() {
            anyhow::bail!(
                "{} exited ({status}) before listening on {port}:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        if Instant::now() >= until {
            anyhow::bail!(
                "{} is not listening on {port} after {timeout:?}:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
