//! The overload phase (issue 12): past saturation, does the target shed what it cannot
//! serve and keep serving what it admitted at steady latency, with flat memory?
//!
//! Each target gets a process of its own for this phase (the gateway with admission
//! limits under which it sheds; nginx as configured). The load generator opens a fixed
//! pool of keep-alive mTLS connections first, larger than the gateway's admission limit,
//! so that the queue forms at the target and not in the generator. Then two open loops:
//! 50 % of the target's saturation rate (the reference), and 2 × its saturation rate.
//!
//! Request `i` is scheduled at `start + i / rate` and waits in the generator's queue for
//! a free connection; one that cannot be written within [`CLIENT_QUEUE_DEADLINE`] is
//! dropped and counted as *not sent* (it never reached the target). The latency of a
//! request runs from the moment its first byte is written on a connection to the last
//! byte of the answer: the time the target held it, whatever the generator's own queue.
//! The same definition applies to every target.

use crate::client::{self, Endpoint};
use crate::procs;
use crate::report::{Latency, Overload, OverloadRun, OverloadSettings, ServerTiming, TargetResult};
use crate::{Harness, setup};
use anyhow::Context as _;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The gateway's refusals under load: the node is full (503), or the consumer already has
/// its share of the node in flight (429). See docs/ERRORS.md.
pub const SHED_CODES: [&str; 2] = ["gateway.overloaded", "ratelimit.in_flight_share_exceeded"];

/// How long a scheduled request may wait in the generator for a free connection before
/// the generator gives up on it (counted as not sent).
pub const CLIENT_QUEUE_DEADLINE: Duration = Duration::from_millis(10);

/// The targets the phase applies to (proxies; not the direct call or the federation).
pub const TARGETS: [&str; 3] = ["nginx", "gateway-a", "gateway-b"];

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// What the phase runs against one target.
pub struct Plan {
    /// `nginx`, `gateway-a` or `gateway-b`.
    pub id: String,
    /// Its saturation rate from this run's saturation phase, if it ran.
    pub saturation_rps: Option<f64>,
}

/// The phase's settings, from the options.
pub fn settings(harness: &Harness) -> OverloadSettings {
    let o = &harness.options;
    OverloadSettings {
        connections: o.overload_connections,
        seconds: o.overload_seconds,
        reference_seconds: o.overload_reference_seconds,
        warmup_seconds: o.overload_warmup_seconds,
        client_queue_deadline_ms: CLIENT_QUEUE_DEADLINE.as_secs_f64() * 1e3,
        request_timeout_seconds: client::REQUEST_TIMEOUT.as_secs_f64(),
    }
}

/// Runs the phase on each planned target in turn, filling in `results` (one per plan,
/// created when missing).
pub async fn run(harness: &Harness, plans: Vec<Plan>, results: &mut Vec<TargetResult>) {
    for plan in plans {
        let index = match results.iter().position(|r| r.id == plan.id) {
            Some(index) => index,
            None => {
                results.push(TargetResult::new(&plan.id, crate::label(&plan.id)));
                results.len() - 1
            }
        };
        if plan.id == "nginx" && harness.nginx.is_none() {
            results[index].available = false;
            results[index].note =
                Some("nginx is not installed (apt-get install -y nginx-light)".into());
            continue;
        }
        eprintln!("load: overload phase: {}", results[index].label);
        match one(harness, &plan).await {
            Ok(overload) => results[index].overload = Some(overload),
            Err(error) => {
                eprintln!("load: overload: {}: {error:#}", plan.id);
                let message = format!("overload phase: {error:#}");
                results[index].error = Some(match results[index].error.take() {
                    Some(earlier) => format!("{earlier}; {message}"),
                    None => message,
                });
            }
        }
    }
}

/// Starts the target's own process, then saturation (if needed), the reference run and
/// the overload run.
async fn one(harness: &Harness, plan: &Plan) -> anyhow::Result<Overload> {
    let o = &harness.options;
    let connections = o.overload_connections;
    let (mut proc, port, ops, limits) = match plan.id.as_str() {
        "nginx" => {
            let nginx = harness.nginx.clone().context("nginx is not installed")?;
            let (proc, port) = crate::start_nginx(
                harness,
                &nginx,
                "nginx-overload",
                connections.max(o.idle) * 2,
            )?;
            (
                proc,
                port,
                None,
                format!(
                    "as configured for the other runs: no limit on requests in flight; \
                     worker_connections {}, upstream keepalive 256",
                    connections.max(o.idle) * 2 + 1024
                ),
            )
        }
        id => {
            let profile = if id == "gateway-a" {
                setup::GatewayProfile::PassThrough
            } else {
                setup::GatewayProfile::Full
            };
            let limits = setup::GatewayLimits::Overload {
                connections,
                max_concurrent_requests: o.overload_max_concurrent,
                max_in_flight_per_consumer: o.overload_share,
            };
            let (proc, ports) =
                crate::start_gateway(harness, &format!("{id}-overload"), profile, limits)?;
            let total = o.overload_max_concurrent.unwrap_or(1024);
            let share = o.overload_share.unwrap_or((total / 4).max(1));
            (
                proc,
                ports.consumer,
                Some(ports.ops),
                format!(
                    "max_concurrent_requests {total}{}, max_in_flight_per_consumer {share}{} \
                     ({}); connection caps wide; adapter max_in_flight 8192",
                    if o.overload_max_concurrent.is_none() {
                        " (node default)"
                    } else {
                        ""
                    },
                    if o.overload_share.is_none() {
                        " (node default: a quarter)"
                    } else {
                        ""
                    },
                    if share < 512 {
                        "one consumer with 512 connections: past the overload control's limit \
                         its requests wait, and are refused with 503 (waited too long) or 429 \
                         (its share of running exchanges)"
                    } else {
                        "one consumer whose share covers its 512 connections: past the \
                         overload control's limit its requests wait; refusals are 503"
                    },
                ),
            )
        }
    };
    let pid = proc.pid();
    let endpoint = Arc::new(Endpoint::new(port, true));
    let keepalive = client::keepalive_client(&harness.pki)?;
    crate::measure::wait_answering(&keepalive, &endpoint).await?;
    let outcome = phases(harness, plan, pid, ops, &endpoint, keepalive, limits).await;
    if let Some(status) = proc.exited() {
        anyhow::bail!(
            "the process exited during the run ({status}): {}",
            proc.log_tail()
        );
    }
    proc.stop();
    outcome
}

async fn phases(
    harness: &Harness,
    plan: &Plan,
    pid: u32,
    ops: Option<u16>,
    endpoint: &Arc<Endpoint>,
    keepalive: reqwest::Client,
    limits: String,
) -> anyhow::Result<Overload> {
    let plain = reqwest::Client::builder().no_proxy().build()?;
    let o = &harness.options;
    let stub = harness.stub.pid();
    let (saturation_rps, saturation_source) = match plan.saturation_rps {
        Some(rps) => (rps, "this run's saturation phase (another process of the target, same configuration but wide limits)".to_owned()),
        None => {
            eprintln!(
                "  saturation: closed loop with {} concurrent requests, {:.0} s",
                o.saturation_concurrency, o.saturation_seconds
            );
            let warm = client::closed_loop(
                keepalive.clone(),
                endpoint.clone(),
                o.saturation_concurrency,
                Duration::from_secs_f64(o.saturation_warmup),
            )
            .await;
            drop(warm);
            let measured = client::closed_loop(
                keepalive,
                endpoint.clone(),
                o.saturation_concurrency,
                Duration::from_secs_f64(o.saturation_seconds),
            )
            .await;
            anyhow::ensure!(
                measured.ok > 0,
                "saturation run failed: {}",
                measured.first_error.unwrap_or_default()
            );
            (
                measured.ok as f64 / measured.wall.as_secs_f64(),
                format!(
                    "measured in this phase (closed loop, {} concurrent requests, {:.0} s, {} errors)",
                    o.saturation_concurrency, o.saturation_seconds, measured.errors
                ),
            )
        }
    };
    eprintln!(
        "  saturation {saturation_rps:.0} req/s; opening {} keep-alive connections",
        o.overload_connections
    );
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client::tls_config(&harness.pki, false)?));
    let mut streams = top_up(&connector, endpoint, Vec::new(), o.overload_connections).await?;

    let reference_rate = saturation_rps * 0.5;
    let overload_rate = saturation_rps * 2.0;
    eprintln!(
        "  {:.0} s warm-up and {:.0} s reference at {reference_rate:.0} req/s (50 %)",
        o.overload_warmup_seconds, o.overload_reference_seconds
    );
    let (_, returned) = open_loop(
        &connector,
        endpoint,
        streams,
        reference_rate,
        o.overload_warmup_seconds,
        pid,
        stub,
    )
    .await;
    streams = top_up(&connector, endpoint, returned, o.overload_connections).await?;
    let scrape_0 = scrape(&plain, ops).await;
    let (reference, returned) = open_loop(
        &connector,
        endpoint,
        streams,
        reference_rate,
        o.overload_reference_seconds,
        pid,
        stub,
    )
    .await;
    streams = top_up(&connector, endpoint, returned, o.overload_connections).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let scrape_1 = scrape(&plain, ops).await;

    let mb = |kib: Option<u64>| kib.map(|k| k as f64 * 1024.0 / 1e6);
    let before = procs::status_kib(pid, "VmRSS");
    let hwm_before = procs::status_kib(pid, "VmHWM");
    eprintln!(
        "  {:.0} s at {overload_rate:.0} req/s (2 × saturation)",
        o.overload_seconds
    );
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut peak = 0u64;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(rss) = procs::status_kib(pid, "VmRSS") {
                    peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        }
    });
    let (overload, returned) = open_loop(
        &connector,
        endpoint,
        streams,
        overload_rate,
        o.overload_seconds,
        pid,
        stub,
    )
    .await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let sampled_peak = sampler.await.unwrap_or(0);
    let hwm_after = procs::status_kib(pid, "VmHWM");
    // VmHWM is the lifetime peak: it says something about this run only if it rose.
    let peak_kib = match (hwm_before, hwm_after) {
        (Some(b), Some(a)) if a > b => sampled_peak.max(a),
        _ => sampled_peak,
    };
    let scrape_2 = scrape(&plain, ops).await;
    // The pool stays open, as it was for "before".
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = procs::status_kib(pid, "VmRSS");
    drop(returned);
    let peak = (peak_kib > 0).then_some(peak_kib);
    let result = Overload {
        limits,
        connections: o.overload_connections,
        saturation_rps,
        saturation_source,
        reference,
        overload,
        rss_mb_before: mb(before),
        rss_mb_peak: mb(peak),
        rss_mb_after: mb(after),
        rss_growth_mb: mb(peak)
            .zip(mb(before))
            .map(|(peak, before)| (peak - before).max(0.0)),
        server_reference: server_timings(scrape_0.as_deref(), scrape_1.as_deref()),
        server_overload: server_timings(scrape_1.as_deref(), scrape_2.as_deref()),
    };
    let r = &result.overload;
    eprintln!(
        "  sent {:.0} req/s ({:.2} × saturation), admitted {:.0} req/s, shed {}, other errors {}, not sent {}; p99 admitted {} ms (at 50 %: {} ms); RSS {} → {} MB",
        r.sent_rps,
        r.sent_rps / saturation_rps,
        r.admitted_rps,
        r.shed,
        r.other_errors,
        r.not_sent,
        r.admitted_latency
            .as_ref()
            .map_or("–".into(), |l| format!("{:.3}", l.p99_ms)),
        result
            .reference
            .admitted_latency
            .as_ref()
            .map_or("–".into(), |l| format!("{:.3}", l.p99_ms)),
        result
            .rss_mb_before
            .map_or("–".into(), |v| format!("{v:.1}")),
        result.rss_mb_peak.map_or("–".into(), |v| format!("{v:.1}")),
    );
    Ok(result)
}

/// The node's `/metrics` (the gateway's ops listener); `None` for nginx or on failure.
async fn scrape(client: &reqwest::Client, ops: Option<u16>) -> Option<String> {
    let response = client
        .get(format!("http://127.0.0.1:{}/metrics", ops?))
        .timeout(client::REQUEST_TIMEOUT)
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

/// The histograms of the node's own metrics set beside the generator's view: metric,
/// label, value, what it times.
const SERVER_SERIES: [(&str, &str, &str, &str); 3] = [
    (
        "datagate_request_duration_seconds",
        "service",
        setup::SERVICE,
        "admitted exchanges (contract matched), from the handler's start to the answer built",
    ),
    (
        "datagate_request_duration_seconds",
        "service",
        "unknown",
        "refused before a contract matched (the shed ones), the same span",
    ),
    (
        "datagate_upstream_duration_seconds",
        "adapter",
        "bench-db",
        "the call to the stub upstream, inside an admitted exchange",
    ),
];

/// Each of [`SERVER_SERIES`] between two scrapes of `/metrics`.
fn server_timings(before: Option<&str>, after: Option<&str>) -> Vec<ServerTiming> {
    let (Some(before), Some(after)) = (before, after) else {
        return Vec::new();
    };
    SERVER_SERIES
        .iter()
        .map(|(metric, label, value, what)| {
            let earlier = buckets(before, metric, label, value);
            let mut delta: Vec<(f64, f64)> = buckets(after, metric, label, value)
                .into_iter()
                .map(|(le, count)| {
                    let was = earlier
                        .iter()
                        .find(|(l, _)| *l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (le, count - was)
                })
                .collect();
            delta.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = delta.last().map_or(0.0, |(_, count)| *count);
            let at = |q: f64| {
                if total <= 0.0 {
                    return None;
                }
                delta
                    .iter()
                    .find(|(_, count)| *count >= q * total)
                    .and_then(|(le, _)| le.is_finite().then_some(le * 1e3))
            };
            ServerTiming {
                what: (*what).to_owned(),
                count: total,
                p50_at_most_ms: at(0.5),
                p99_at_most_ms: at(0.99),
            }
        })
        .collect()
}

/// The cumulative buckets `(le in seconds, count)` of the histogram `metric` whose
/// `label` is `value`, from Prometheus's text format.
fn buckets(text: &str, metric: &str, label: &str, value: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{metric}_bucket{{");
    let wanted = format!("{label}=\"{value}\"");
    text.lines()
        .filter_map(|line| {
            let (labels, count) = line.strip_prefix(&prefix)?.rsplit_once('}')?;
            let labels: Vec<&str> = labels.split(',').collect();
            if !labels.contains(&wanted.as_str()) {
                return None;
            }
            let le = labels
                .iter()
                .find_map(|l| l.strip_prefix("le=\""))?
                .trim_end_matches('"');
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// Opens connections (full handshake and one request each) until there are `count`.
async fn top_up(
    connector: &tokio_rustls::TlsConnector,
    endpoint: &Arc<Endpoint>,
    mut streams: Vec<Stream>,
    count: usize,
) -> anyhow::Result<Vec<Stream>> {
    if streams.len() >= count {
        return Ok(streams);
    }
    let opened = client::open_idle(
        connector.clone(),
        endpoint.clone(),
        count - streams.len(),
        32,
        Duration::from_secs(60),
    )
    .await;
    streams.extend(opened.streams);
    anyhow::ensure!(
        streams.len() >= count / 2,
        "could open only {} of {count} keep-alive connections: {}",
        streams.len(),
        opened.first_error.unwrap_or_default()
    );
    Ok(streams)
}

/// The generator's queue of scheduled requests: `Some(instant)` per request, then one
/// `None` per connection to end the run. The semaphore counts the entries.
struct Queue {
    entries: Mutex<VecDeque<Option<Instant>>>,
    ready: Semaphore,
}

impl Queue {
    fn push(&self, entries: impl Iterator<Item = Option<Instant>>) {
        let mut queue = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let before = queue.len();
        queue.extend(entries);
        let added = queue.len() - before;
        drop(queue);
        self.ready.add_permits(added);
    }

    async fn pop(&self) -> Option<Instant> {
        let permit = self.ready.acquire().await.ok()?;
        permit.forget();
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
            .flatten()
    }
}

/// What the connections observed, shared between them.
#[derive(Default)]
struct Tally {
    sent: u64,
    sent_in_window: u64,
    not_sent: u64,
    admitted: u64,
    admitted_in_window: u64,
    shed: u64,
    other_statuses: u64,
    timeouts: u64,
    connection_errors: u64,
    reconnects: u64,
    statuses: BTreeMap<String, u64>,
    admitted_us: Vec<u32>,
    refused_us: Vec<u32>,
    wait_us: Vec<u32>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, error: String) {
        self.first_error.get_or_insert(error);
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// One open loop at `rate` for `seconds` over `streams`; gives the connections back.
async fn open_loop(
    connector: &tokio_rustls::TlsConnector,
    endpoint: &Arc<Endpoint>,
    streams: Vec<Stream>,
    rate: f64,
    seconds: f64,
    pid: u32,
    stub: u32,
) -> (OverloadRun, Vec<Stream>) {
    let connections = streams.len().max(1);
    let queue = Arc::new(Queue {
        entries: Mutex::new(VecDeque::new()),
        ready: Semaphore::new(0),
    });
    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now() + Duration::from_millis(20);
    let window_end = start + Duration::from_secs_f64(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for stream in streams {
        tasks.spawn(connection(
            Some(stream),
            queue.clone(),
            tally.clone(),
            connector.clone(),
            endpoint.clone(),
            window_end,
        ));
    }
    let cpu = |pid: u32| procs::cpu_ticks(pid).unwrap_or(0);
    let (target0, stub0, loadgen0, at0) =
        (cpu(pid), cpu(stub), cpu(std::process::id()), Instant::now());
    let scheduler = tokio::task::spawn_blocking({
        let queue = queue.clone();
        move || schedule(&queue, rate, seconds, start, connections)
    });
    let scheduled = scheduler.await.unwrap_or(0);
    let (target1, stub1, loadgen1, at1) =
        (cpu(pid), cpu(stub), cpu(std::process::id()), Instant::now());
    // Stragglers: each request is bounded by the request deadline (and a reconnection by
    // another), so this ends; anything still running after that is aborted.
    let mut streams = Vec::with_capacity(connections);
    let drain = tokio::time::timeout(client::REQUEST_TIMEOUT * 3, async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Some(stream)) = joined {
                streams.push(stream);
            }
        }
    })
    .await;
    if drain.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let mut t = std::mem::take(&mut *tally.lock().unwrap_or_else(|p| p.into_inner()));
    // Entries left in the queue (the run was aborted) were never sent.
    let left = queue
        .entries
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|e| e.is_some())
        .count() as u64;
    t.not_sent += left;
    let ticks = crate::procs::clock_ticks();
    let wall = at1.duration_since(at0).as_secs_f64().max(1e-9);
    let share = |a: u64, b: u64| a.saturating_sub(b) as f64 / ticks / wall;
    let run = OverloadRun {
        scheduled_rps: rate,
        seconds,
        scheduled,
        sent: t.sent,
        sent_rps: t.sent_in_window as f64 / seconds,
        not_sent: t.not_sent,
        admitted: t.admitted,
        admitted_rps: t.admitted_in_window as f64 / seconds,
        shed: t.shed,
        other_errors: t.other_statuses + t.timeouts + t.connection_errors,
        timeouts: t.timeouts,
        connection_errors: t.connection_errors,
        reconnects: t.reconnects,
        statuses: t.statuses,
        admitted_latency: Latency::of(&mut t.admitted_us),
        refused_latency: Latency::of(&mut t.refused_us),
        client_wait: Latency::of(&mut t.wait_us),
        target_core_share: share(target1, target0),
        loadgen_core_share: share(loadgen1, loadgen0),
        stub_core_share: share(stub1, stub0),
        first_error: t.first_error,
    };
    (run, streams)
}

/// The scheduling thread: puts request `i` in the queue at `start + i / rate` (all the
/// requests due at each wake-up together), then one end marker per connection.
fn schedule(queue: &Queue, rate: f64, seconds: f64, start: Instant, connections: usize) -> u64 {
    let count = (rate * seconds).round().max(1.0) as u64;
    let at = |i: u64| start + Duration::from_secs_f64(i as f64 / rate);
    let mut next = 0u64;
    while next < count {
        let now = Instant::now();
        if now >= start {
            let due = (((now - start).as_secs_f64() * rate).floor() as u64 + 1).min(count);
            if due > next {
                queue.push((next..due).map(|i| Some(at(i))));
                next = due;
            }
        }
        if next < count {
            let wake = at(next);
            let now = Instant::now();
            if wake > now {
                std::thread::sleep(wake - now);
            }
        }
    }
    queue.push(std::iter::repeat_n(None, connections));
    count
}

/// One connection of the generator: takes the next scheduled request, writes it, reads
/// the answer, until the end marker. Opens the connection again when the target closed
/// it. Gives the connection back when it is still usable.
async fn connection(
    mut stream: Option<Stream>,
    queue: Arc<Queue>,
    tally: Arc<Mutex<Tally>>,
    connector: tokio_rustls::TlsConnector,
    endpoint: Arc<Endpoint>,
    window_end: Instant,
) -> Option<Stream> {
    let lock = || tally.lock().unwrap_or_else(|p| p.into_inner());
    while let Some(scheduled) = queue.pop().await {
        let waited = scheduled.elapsed();
        if waited > CLIENT_QUEUE_DEADLINE {
            lock().not_sent += 1;
            continue;
        }
        if stream.is_none() {
            let connected = tokio::time::timeout(
                client::REQUEST_TIMEOUT,
                client::connect_tls(&connector, &endpoint),
            )
            .await;
            match connected {
                Ok(Ok(connected)) => {
                    lock().reconnects += 1;
                    stream = Some(connected);
                }
                Ok(Err(error)) => {
                    let mut t = lock();
                    t.sent += 1;
                    t.connection_errors += 1;
                    t.error(format!("reconnecting: {error}"));
                    continue;
                }
                Err(_) => {
                    let mut t = lock();
                    t.sent += 1;
                    t.timeouts += 1;
                    t.error("reconnecting: timed out".into());
                    continue;
                }
            }
        }
        let Some(open) = stream.as_mut() else {
            continue;
        };
        let written = Instant::now();
        let outcome = tokio::time::timeout(
            client::REQUEST_TIMEOUT,
            client::exchange_raw(open, &endpoint.raw_request),
        )
        .await;
        let done = Instant::now();
        let took = micros(done - written);
        let mut t = lock();
        t.sent += 1;
        if written < window_end {
            t.sent_in_window += 1;
        }
        t.wait_us.push(micros(written - scheduled));
        match outcome {
            Ok(Ok(response)) => {
                let key = match &response.code {
                    Some(code) => format!("{} {code}", response.status),
                    None => response.status.to_string(),
                };
                *t.statuses.entry(key).or_insert(0) += 1;
                if (200..300).contains(&response.status) {
                    t.admitted += 1;
                    if done <= window_end {
                        t.admitted_in_window += 1;
                    }
                    t.admitted_us.push(took);
                } else if response
                    .code
                    .as_deref()
                    .is_some_and(|code| SHED_CODES.contains(&code))
                {
                    t.shed += 1;
                    t.refused_us.push(took);
                } else {
                    t.other_statuses += 1;
                    t.error(format!(
                        "status {}: {}",
                        response.status,
                        String::from_utf8_lossy(&response.body_start)
                    ));
                }
                if response.close {
                    stream = None;
                }
            }
            Ok(Err(error)) => {
                t.connection_errors += 1;
                t.error(error);
                stream = None;
            }
            Err(_) => {
                t.timeouts += 1;
                t.error(format!("no answer within {:?}", client::REQUEST_TIMEOUT));
                stream = None;
            }
        }
    }
    stream
}
