//! Logs and metrics.
//!
//! Logs are `tracing` events on stderr, JSON when `DATAGATE_LOG_FORMAT=json`, filtered by
//! `RUST_LOG` (default `info`). They never carry payloads, paths (which may
//! hold personal ids) or tokens.
//!
//! Metrics are Prometheus, rendered on the ops listener's `/metrics`. Labels are
//! bounded: the consumer label is set only after the registry authenticated the
//! client (else `unauthenticated`), the service label only after a contract
//! matched (else `unknown`), so a caller cannot inflate cardinality.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds, from 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder once and returns its handle.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

/// A warning that can repeat once per request (a shed request, a backend down): logged at
/// most once per [`Throttled::EVERY`], the line saying how many occurrences it stands for.
/// Under overload a line per shed request would cost CPU where it is scarcest and bury the
/// log; the metrics still count every occurrence (issue 12).
///
/// Lock-free: one compare-and-swap decides which occurrence writes the line, the others add
/// to a counter.
#[derive(Debug, Default)]
pub struct Throttled {
    /// The instant it counts from: its first occurrence.
    epoch: OnceLock<tokio::time::Instant>,
    /// When the next line may be written, in nanoseconds since `epoch`.
    next_at: std::sync::atomic::AtomicU64,
    /// Occurrences since the last line that did not write one.
    suppressed: std::sync::atomic::AtomicU64,
}

impl Throttled {
    /// At most one line per this interval.
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(1);
    /// [`Throttled::EVERY`] in nanoseconds, the unit of `next_at`.
    const EVERY_NANOS: u64 = Self::EVERY.as_nanos() as u64;

    /// A throttle that lets its first occurrence through.
    pub const fn new() -> Self {
        Throttled {
            epoch: OnceLock::new(),
            next_at: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// One occurrence now: `Some(n)` when it should be logged, standing for `n` occurrences
    /// (itself and those suppressed since the last line); `None` when it is only counted.
    pub fn occurrence(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let now = tokio::time::Instant::now();
        let epoch = *self.epoch.get_or_init(|| now);
        let now =
            u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_at.load(Ordering::Acquire);
        if now >= next
            && self
                .next_at
                .compare_exchange(
                    next,
                    now.saturating_add(Self::EVERY_NANOS),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel) + 1);
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// One [`Throttled`] per error code: a failure's warning, at most once per code and
/// [`Throttled::EVERY`], for a path that fails per request (exchanges, the hub's relay).
#[derive(Debug)]
pub struct ThrottledByCode([Throttled; crate::error::ErrorCode::ALL.len()]);

impl ThrottledByCode {
    /// Every code's first occurrence is let through.
    pub const fn new() -> Self {
        ThrottledByCode([const { Throttled::new() }; crate::error::ErrorCode::ALL.len()])
    }

    /// One failure of `code` now: as [`Throttled::occurrence`]. Indexed by the variant (the
    /// enum has no fields); a variant past [`crate::error::ErrorCode::ALL`]'s length, which
    /// the error module's tests rule out, is always logged.
    pub fn occurrence(&self, code: crate::error::ErrorCode) -> Option<u64> {
        self.0
            .get(code as usize)
            .map_or(Some(1), Throttled::occurrence)
    }
}

impl Default for ThrottledByCode {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets up `tracing` once; later calls do nothing.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("DATAGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colours only on a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The statuses the node answers with, each a static label; the slot of a status is its
/// index here.
const STATUSES: [(u16, &str); 15] = [
    (200, "200"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (408, "408"),
    (413, "413"),
    (414, "414"),
    (415, "415"),
    (429, "429"),
    (431, "431"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// The status as a metric label: the codes the node answers with are static text, so
/// the label costs no formatting or allocation per request (issue 12); any other code
/// is formatted.
fn status_label(status: u16) -> metrics::SharedString {
    match STATUSES.iter().find(|(code, _)| *code == status) {
        Some((_, text)) => metrics::SharedString::const_str(text),
        None => metrics::SharedString::from(status.to_string()),
    }
}

/// How many legs [`ExchangeMetrics::record`] keeps a handle for.
pub const LEGS: usize = 8;

/// The exchange metrics of one (service, consumer) pair, which a contract fixes:
/// `datagate_requests_total` per status and leg, and `datagate_request_duration_seconds`.
///
/// Each handle is registered on first use and kept, so an answered exchange costs an
/// atomic add, not the recorder's look-up (hashing the name and four labels) and two
/// label strings formatted (issue 12). The recorder never evicts (no idle timeout is
/// set in [`metrics_handle`]), so a kept handle stays the one `/metrics` renders.
pub struct ExchangeMetrics {
    service: std::sync::Arc<str>,
    consumer: std::sync::Arc<str>,
    requests: Box<[OnceLock<metrics::Counter>]>,
    duration: OnceLock<metrics::Histogram>,
}

impl std::fmt::Debug for ExchangeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeMetrics")
            .field("service", &self.service)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl ExchangeMetrics {
    /// The handles of `service` called by `consumer` (both as the labels read them).
    pub fn new(service: &str, consumer: &str) -> Self {
        ExchangeMetrics {
            service: service.into(),
            consumer: consumer.into(),
            requests: (0..STATUSES.len() * LEGS)
                .map(|_| OnceLock::new())
                .collect(),
            duration: OnceLock::new(),
        }
    }

    /// Counts one answered exchange with `status` on leg `leg` (its slot below
    /// [`LEGS`], and its label), and records how long it took.
    pub fn record(&self, status: u16, leg: (usize, &'static str), elapsed_seconds: f64) {
        let slot = STATUSES
            .iter()
            .position(|(code, _)| *code == status)
            .filter(|_| leg.0 < LEGS)
            .map(|index| index * LEGS + leg.0);
        let register = || {
            requests_counter(
                self.service.clone().into(),
                self.consumer.clone().into(),
                status,
                leg.1,
            )
        };
        match slot {
            Some(slot) => self.requests[slot].get_or_init(register).increment(1),
            None => register().increment(1),
        }
        self.duration
            .get_or_init(|| duration_histogram(self.service.clone().into()))
            .record(elapsed_seconds);
    }
}

/// Counts and times an exchange no contract matched (a refusal before authorisation, or
/// one the owner's gateway decided): the service label is `unknown`, and the handles are
/// looked up, as such exchanges carry no contract to keep them.
pub fn record_unmatched_exchange(
    consumer: metrics::SharedString,
    status: u16,
    leg: &'static str,
    elapsed_seconds: f64,
) {
    let unknown = metrics::SharedString::const_str("unknown");
    requests_counter(unknown.clone(), consumer, status, leg).increment(1);
    duration_histogram(unknown).record(elapsed_seconds);
}

/// `datagate_requests_total`, the one place its name and labels are spelled.
fn requests_counter(
    service: metrics::SharedString,
    consumer: metrics::SharedString,
    status: u16,
    leg: &'static str,
) -> metrics::Counter {
    metrics::counter!(
        "datagate_requests_total",
        "service" => service,
        "consumer" => consumer,
        "status" => status_label(status),
        "leg" => leg
    )
}

/// `datagate_request_duration_seconds`, the one place its name and label are spelled.
fn duration_histogram(service: metrics::SharedString) -> metrics::Histogram {
    metrics::histogram!("datagate_request_duration_seconds", "service" => service)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: a warning that repeats once per request (a shed request) is written once per
    /// interval, and the line says how many occurrences it stands for; none is lost from the
    /// count.
    #[tokio::test(start_paused = true)]
    async fn a_repeated_warning_is_logged_once_per_interval_with_its_count() {
        let throttle = Throttled::new();
        assert_eq!(
            throttle.occurrence(),
            Some(1),
            "the first one is logged at once"
        );
        for _ in 0..999 {
            assert_eq!(
                throttle.occurrence(),
                None,
                "within the interval: counted only"
            );
        }
        tokio::time::advance(Throttled::EVERY / 2).await;
        assert_eq!(
            throttle.occurrence(),
            None,
            "half an interval later: still counted"
        );
        tokio::time::advance(Throttled::EVERY / 2).await;
        assert_eq!(
            throttle.occurrence(),
            Some(1001),
            "the next line stands for itself and the 1 000 counted since the last"
        );
        assert_eq!(throttle.occurrence(), None);
        tokio::time::advance(Throttled::EVERY * 3).await;
        assert_eq!(
            throttle.occurrence(),
            Some(2),
            "a quiet spell: the next is logged at once"
        );
    }

    /// Issue 12: a flood of one failure does not hide another: each error code has its own
    /// interval and count.
    #[tokio::test(start_paused = true)]
    async fn each_error_code_is_throttled_on_its_own() {
        use crate::error::ErrorCode;
        let warnings = ThrottledByCode::new();
        let shed = ErrorCode::ALL[0];
        let other = ErrorCode::ALL[ErrorCode::ALL.len() - 1];
        assert_ne!(shed, other);
        assert_eq!(warnings.occurrence(shed), Some(1));
        for _ in 0..99 {
            assert_eq!(warnings.occurrence(shed), None);
        }
        assert_eq!(
            warnings.occurrence(other),
            Some(1),
            "another code is logged at once, whatever the first one's count"
        );
        tokio::time::advance(Throttled::EVERY).await;
        assert_eq!(warnings.occurrence(shed), Some(100));
        assert_eq!(warnings.occurrence(other), Some(1));
    }

    /// Threads racing on one throttle: exactly one writes the line, and the counts add up.
    #[test]
    fn racing_occurrences_write_one_line_and_lose_no_count() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime");
        let _entered = runtime.enter();
        let throttle = Throttled::new();
        let logged: Vec<Option<u64>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let throttle = &throttle;
                    let handle = runtime.handle().clone();
                    scope.spawn(move || {
                        let _entered = handle.enter();
                        (0..250).map(|_| throttle.occurrence()).collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().expect("worker"))
                .collect()
        });
        let lines: Vec<u64> = logged.into_iter().flatten().collect();
        assert_eq!(lines, vec![1], "one line in the first interval");
        runtime.block_on(tokio::time::advance(Throttled::EVERY));
        assert_eq!(
            throttle.occurrence(),
            Some(1000),
            "999 counted, and this one"
        );
    }
}
