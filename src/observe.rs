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

/// Sets up `tracing` once; later calls do nothing.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("DATAGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
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
