//! The journal: every exchange, allowed or denied, is recorded durably before
//! its response leaves the node.
//!
//! [`Journal::append`] hands an [`ExchangeRecord`] to one writer task that
//! commits whatever has queued up in a single transaction (group commit) and
//! then acknowledges each record; so durability costs one fsync per batch, not
//! per request. The store is behind [`JournalStore`]: [`sqlite`] is the
//! embedded default, [`postgres`] the shared one of a node's replicas; both chain
//! every record ([`chain`]) and seal each batch with a signed Merkle root. Between
//! batches the writer probes a failed store until it returns and runs maintenance
//! (archiving and retention, [`archive`]).
//!
//! Records never hold personal identifiers in clear: the subject and the
//! request/response digests are HMAC-SHA256 under the node's journal key.

pub mod archive;
pub mod bundle;
pub mod chain;
pub mod postgres;
pub mod reconcile;
pub mod sqlite;
pub mod stamper;
pub mod store;
pub mod tsa;
pub mod verify;

use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

/// One exchange, as journaled (design §8).
#[derive(Debug, Clone, Serialize)]
pub struct ExchangeRecord {
    /// `X-Road-Id`.
    pub message_id: String,
    /// Calling subsystem: the authenticated one (the certificate is bound to it) when the
    /// request got that far, otherwise the one claimed in `X-Road-Client`, if it parsed.
    pub client: Option<String>,
    /// Addressed service, if the path parsed.
    pub service: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Adapter operation name (never the raw path: it may hold personal ids).
    pub operation: Option<String>,
    /// Purpose code.
    pub purpose: Option<String>,
    /// Contract that allowed the exchange.
    pub contract_id: Option<String>,
    /// Fingerprint of the peer's certificate.
    pub peer_fingerprint: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// Stable error code, for failures.
    pub error_code: Option<String>,
    /// Request received from the consumer.
    #[serde(with = "time::serde::rfc3339")]
    pub request_in_at: OffsetDateTime,
    /// Request sent to the provider's backend.
    #[serde(with = "time::serde::rfc3339::option")]
    pub request_out_at: Option<OffsetDateTime>,
    /// Response received from the backend.
    #[serde(with = "time::serde::rfc3339::option")]
    pub response_in_at: Option<OffsetDateTime>,
    /// Response sent to the consumer (set just before journaling).
    #[serde(with = "time::serde::rfc3339")]
    pub response_out_at: OffsetDateTime,
    /// Request body size.
    pub request_bytes: u64,
    /// Response body size.
    pub response_bytes: u64,
    /// HMAC-SHA256 (hex) of method, request target (path and query) and body.
    pub request_digest: String,
    /// HMAC-SHA256 (hex) of the response body.
    pub response_digest: Option<String>,
    /// HMAC-SHA256 (hex) of the data subject's identifier.
    pub subject_digest: Option<String>,
    /// The part this node played: `local`, `consumer`, `hub` or `provider`.
    pub leg: &'static str,
    /// SHA-256 (hex, unkeyed, so every node of the path computes the same value) of
    /// this leg's request `Signature` header, when the exchange crossed gateways.
    pub signature_digest: Option<String>,
    /// Key id (certificate SHA-256) of the gateway at the other end of this leg.
    pub remote_key_id: Option<String>,
    /// Id of the journal key the digests were made with ([`key_id`]), so keys can rotate
    /// and a digest is always checked against the right key.
    pub key_id: String,
}

impl ExchangeRecord {
    /// The record's values as the store keeps them (text forms), in
    /// [`chain::CHAINED_FIELDS`] order: what its hash covers.
    pub fn stored_values(&self) -> Vec<Option<String>> {
        let at = |at: time::OffsetDateTime| {
            at.format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        };
        vec![
            Some(self.message_id.clone()),
            self.client.clone(),
            self.service.clone(),
            Some(self.method.clone()),
            self.operation.clone(),
            self.purpose.clone(),
            self.contract_id.clone(),
            self.peer_fingerprint.clone(),
            Some(self.status.to_string()),
            self.error_code.clone(),
            Some(at(self.request_in_at)),
            self.request_out_at.map(at),
            self.response_in_at.map(at),
            Some(at(self.response_out_at)),
            Some(self.request_bytes.to_string()),
            Some(self.response_bytes.to_string()),
            Some(self.request_digest.clone()),
            self.response_digest.clone(),
            self.subject_digest.clone(),
            Some(self.leg.to_owned()),
            self.signature_digest.clone(),
            self.remote_key_id.clone(),
            Some(self.key_id.clone()),
        ]
    }
}

/// The id of a journal key: the first 16 hex digits of SHA-256 over a label and the key.
/// It names the key without revealing it.
pub fn key_id(key: &[u8]) -> String {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"datagate journal key id\0");
    context.update(key);
    let digest = crate::base::hex::encode(context.finish().as_ref());
    digest[..16].to_owned()
}

/// SHA-256 (hex) of `bytes`, unkeyed: for values every node of a federated exchange
/// sees alike (signatures), so their journals can be matched.
pub fn plain_digest(bytes: &[u8]) -> String {
    crate::base::hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Why the journal could not record.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// The store failed.
    #[error("journal store: {0}")]
    Store(String),
    /// The writer task is gone (shutting down).
    #[error("the journal writer has stopped")]
    Closed,
    /// The writer's queue is full: the store is slower than the exchanges.
    #[error("the journal queue is full")]
    Overloaded,
    /// The record was not durable within the acknowledgement deadline.
    #[error("the journal did not acknowledge in time")]
    Timeout,
    /// The journal's disk has less free space than its reserve: new exchanges are
    /// refused before the disk is full.
    #[error("the journal's free space is below its reserve")]
    StorageLow,
}

/// What a store's operations return.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;

/// A durable store of records.
pub trait JournalStore: Send + 'static {
    /// Appends a batch in one transaction; returns after it is durable.
    fn append_batch<'a>(&'a mut self, records: &'a [ExchangeRecord]) -> StoreFuture<'a>;

    /// Checks that the store can take records now (reconnecting when it can); the writer
    /// calls it while the store is failing, so the node recovers by itself.
    fn probe(&mut self) -> StoreFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// When the store next needs the writer without a batch (a seal falling due).
    fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// Called by the writer at [`JournalStore::deadline`], and once more when it stops.
    fn on_deadline(&mut self) -> StoreFuture<'_> {
        Box::pin(async { Ok(()) })
    }

    /// One step of archiving and retention under `policy` at `now`.
    fn maintain<'a>(
        &'a mut self,
        _policy: &'a archive::Policy,
        _now: OffsetDateTime,
    ) -> StoreFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

/// How the writer looks after its store between batches.
#[derive(Debug, Clone)]
pub struct Upkeep {
    /// Archiving and retention, if configured.
    pub policy: Option<archive::Policy>,
    /// How often maintenance and the probe of a healthy store run.
    pub interval: std::time::Duration,
    /// The wall clock archiving and retention count by.
    pub clock: std::sync::Arc<dyn crate::base::clock::Clock>,
    /// How long the writer waits, after the first record of a batch, for more to commit
    /// with it (zero: commit at once). Fewer commits for a bounded added latency.
    pub commit_window: std::time::Duration,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            policy: None,
            interval: std::time::Duration::from_secs(30),
            clock: std::sync::Arc::new(crate::base::clock::SystemClock),
            commit_window: std::time::Duration::ZERO,
        }
    }
}

/// How often a failed store is probed.
const PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

type Pending = (ExchangeRecord, oneshot::Sender<Result<(), JournalError>>);

/// The most records committed in one transaction.
const MAX_BATCH: usize = 512;
/// Records waiting for the writer: beyond it appends are refused at once (503), so a
/// slow disk never piles up memory or waiting handlers.
pub const QUEUE_CAPACITY: usize = 4096;
/// How long an exchange waits for its record to be durable before it is answered 503.
pub const ACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What `/readyz` reports of the journal.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JournalHealth {
    /// Whether exchanges are journaled at all.
    pub enabled: bool,
    /// Whether the writer task runs.
    pub writer_running: bool,
    /// Whether the last commit succeeded.
    pub last_commit_ok: bool,
    /// Records waiting for the writer.
    pub queued: usize,
    /// The queue's capacity.
    pub capacity: usize,
    /// The key id of the digests.
    pub key_id: String,
}

/// Handle to the journal writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    /// `None` when the journal is disabled by `[dangerous] disable_journal`.
    sender: Option<mpsc::Sender<Pending>>,
    key: std::sync::Arc<aws_lc_rs::hmac::Key>,
    key_id: String,
    last_commit_ok: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Where the store lives, for read-only lookups beside the writer.
    locator: Option<store::Locator>,
    /// Asks the writer to seal now (shutdown), answering when done.
    flusher: Option<mpsc::Sender<oneshot::Sender<()>>>,
}

impl Journal {
    /// Starts the writer task over `store`.
    pub fn start(store: impl JournalStore, key_bytes: &[u8]) -> Self {
        Journal::start_with(store, key_bytes, QUEUE_CAPACITY, Upkeep::default())
    }

    /// [`Journal::start`] with a queue of `capacity` records (tests use a small one).
    pub fn start_with_capacity(
        store: impl JournalStore,
        key_bytes: &[u8],
        capacity: usize,
    ) -> Self {
        Journal::start_with(store, key_bytes, capacity, Upkeep::default())
    }

    /// [`Journal::start`] with a queue of `capacity` records and `upkeep` between batches.
    pub fn start_with(
        mut store: impl JournalStore,
        key_bytes: &[u8],
        capacity: usize,
        upkeep: Upkeep,
    ) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Pending>(capacity.max(1));
        let (flusher, mut flushes) = mpsc::channel::<oneshot::Sender<()>>(4);
        let last_commit_ok = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let healthy = last_commit_ok.clone();
        tokio::spawn(async move {
            use std::sync::atomic::Ordering::Relaxed;
            let mut batch = Vec::with_capacity(MAX_BATCH);
            let mut next_upkeep = tokio::time::Instant::now() + upkeep.interval;
            loop {
                let wake = match store.deadline() {
                    Some(deadline) => deadline.min(next_upkeep),
                    None => next_upkeep,
                };
                let wait = if healthy.load(Relaxed) {
                    wake.saturating_duration_since(tokio::time::Instant::now())
                } else {
                    PROBE_INTERVAL
                };
                let received = tokio::select! {
                    received = tokio::time::timeout(wait, receiver.recv_many(&mut batch, MAX_BATCH)) => received,
                    Some(done) = flushes.recv() => {
                        if let Err(error) = store.on_deadline().await {
                            tracing::warn!(error = %error, "sealing the journal failed");
                        }
                        let _ = done.send(());
                        continue;
                    }
                };
                match received {
                    Ok(0) => {
                        // Stopping: seal what was committed since the last seal.
                        if let Err(error) = store.on_deadline().await {
                            tracing::warn!(error = %error, "the journal's last seal failed");
                        }
                        break;
                    }
                    Ok(_) => {
                        if !upkeep.commit_window.is_zero() {
                            let until = tokio::time::Instant::now() + upkeep.commit_window;
                            while batch.len() < MAX_BATCH {
                                let room = MAX_BATCH - batch.len();
                                match tokio::time::timeout_at(
                                    until,
                                    receiver.recv_many(&mut batch, room),
                                )
                                .await
                                {
                                    Ok(0) | Err(_) => break,
                                    Ok(_) => {}
                                }
                            }
                        }
                        let (records, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                        let outcome = store.append_batch(&records).await;
                        healthy.store(outcome.is_ok(), Relaxed);
                        metrics::gauge!("datagate_journal_accepting").set(if outcome.is_ok() {
                            1.0
                        } else {
                            0.0
                        });
                        if let Err(error) = &outcome {
                            tracing::error!(error = %error, records = records.len(), "journal commit failed");
                        }
                        metrics::histogram!("datagate_journal_batch_size")
                            .record(records.len() as f64);
                        for waiter in waiters {
                            let _ = waiter.send(outcome.clone());
                        }
                    }
                    Err(_) => {}
                }
                let now = tokio::time::Instant::now();
                if healthy.load(Relaxed)
                    && store.deadline().is_some_and(|deadline| deadline <= now)
                    && let Err(error) = store.on_deadline().await
                {
                    tracing::warn!(error = %error, "sealing the journal failed");
                }
                let failing = !healthy.load(Relaxed);
                if failing || now >= next_upkeep {
                    // A failing store is probed until it returns; a healthy one is checked
                    // (free space) and maintained now and then.
                    let probed = store.probe().await;
                    let ok = probed.is_ok();
                    if ok && failing {
                        tracing::info!("the journal store is back: accepting exchanges again");
                    }
                    healthy.store(ok, Relaxed);
                    metrics::gauge!("datagate_journal_accepting").set(if ok { 1.0 } else { 0.0 });
                    if ok
                        && now >= next_upkeep
                        && let Some(policy) = &upkeep.policy
                        && let Err(error) = store.maintain(policy, upkeep.clock.now()).await
                    {
                        tracing::warn!(error = %error, "journal maintenance failed");
                    }
                    if now >= next_upkeep {
                        next_upkeep = tokio::time::Instant::now() + upkeep.interval;
                    }
                }
            }
        });
        Journal {
            sender: Some(sender),
            key: std::sync::Arc::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                key_bytes,
            )),
            key_id: key_id(key_bytes),
            last_commit_ok,
            locator: None,
            flusher: Some(flusher),
        }
    }

    /// Seals what the writer committed since its last seal, and waits (at most
    /// [`ACK_TIMEOUT`]) until it has: a node stopping gracefully leaves no record unsealed.
    pub async fn flush(&self) {
        let Some(flusher) = &self.flusher else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if flusher.send(done).await.is_ok() {
            let _ = tokio::time::timeout(ACK_TIMEOUT, wait).await;
        }
    }

    /// Lets [`Journal::find`] and [`Journal::reader`] read the store at `locator`.
    pub fn with_locator(mut self, locator: store::Locator) -> Self {
        self.locator = Some(locator);
        self
    }

    /// A read-only connection to the store, beside the writer (`None`: disabled).
    pub async fn reader(&self) -> Result<Option<store::Reader>, JournalError> {
        match &self.locator {
            Some(locator) => store::Reader::open(locator).await.map(Some),
            None => Ok(None),
        }
    }

    /// The records of one `X-Road-Id` (reconciliation between nodes: each node's legs of
    /// one exchange), oldest first; digests and identifiers only, never payloads.
    pub async fn find(&self, message_id: &str) -> Result<Vec<serde_json::Value>, JournalError> {
        let Some(mut reader) = self.reader().await? else {
            return Ok(Vec::new());
        };
        let records = reader
            .select(&store::Filter::default(), Some(message_id), 100)
            .await?;
        Ok(records
            .iter()
            .map(|(chain, record)| store::record_json(chain, record))
            .collect())
    }

    /// A journal that records nothing (`[dangerous] disable_journal`), for benchmarks.
    pub fn disabled(key_bytes: &[u8]) -> Self {
        Journal {
            sender: None,
            key: std::sync::Arc::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                key_bytes,
            )),
            key_id: key_id(key_bytes),
            last_commit_ok: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            locator: None,
            flusher: None,
        }
    }

    /// Whether exchanges are journaled (false only with `[dangerous] disable_journal`).
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Appends a record and waits, at most [`ACK_TIMEOUT`], until it is durable. A full
    /// queue is refused at once ([`JournalError::Overloaded`]): back-pressure, never an
    /// unbounded queue of records or of waiting handlers.
    pub async fn append(&self, record: ExchangeRecord) -> Result<(), JournalError> {
        let Some(sender) = &self.sender else {
            return Ok(());
        };
        let (ack, done) = oneshot::channel();
        sender
            .try_send((record, ack))
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => JournalError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => JournalError::Closed,
            })?;
        match tokio::time::timeout(ACK_TIMEOUT, done).await {
            Ok(acknowledged) => acknowledged.map_err(|_| JournalError::Closed)?,
            Err(_) => Err(JournalError::Timeout),
        }
    }

    /// The id of the key this journal's digests are made with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// What `/readyz` reports.
    pub fn health(&self) -> JournalHealth {
        let (writer_running, queued, capacity) = match &self.sender {
            Some(sender) => (
                !sender.is_closed(),
                sender.max_capacity() - sender.capacity(),
                sender.max_capacity(),
            ),
            None => (false, 0, 0),
        };
        JournalHealth {
            enabled: self.sender.is_some(),
            writer_running,
            last_commit_ok: self
                .last_commit_ok
                .load(std::sync::atomic::Ordering::Relaxed),
            queued,
            capacity,
            key_id: self.key_id.clone(),
        }
    }

    /// Whether new exchanges may start: the store took its last batch (or its last
    /// probe succeeded). When it did not, exchanges are refused before any backend is
    /// touched, since their records could not be kept.
    pub fn accepting(&self) -> bool {
        self.sender.is_none()
            || self
                .last_commit_ok
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the journal can take records now (or is disabled on purpose).
    pub fn ready(&self) -> bool {
        let health = self.health();
        !health.enabled
            || (health.writer_running && health.last_commit_ok && health.queued < health.capacity)
    }

    /// Keyed digest (HMAC-SHA256, hex) of the given parts, separated unambiguously.
    pub fn digest(&self, parts: &[&[u8]]) -> String {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.key);
        for part in parts {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        crate::base::hex::encode(context.sign().as_ref())
    }
}

/// Reads the journal key from `path`: at least 32 bytes, never created here.
pub fn read_key(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < 32 {
        return Err(std::io::Error::other(
            "journal key file holds fewer than 32 bytes",
        ));
    }
    Ok(bytes)
}

/// Reads the journal key from `path`, creating a random 32-byte key when missing (the
/// demo and `datagate certs`; a node never does, see [`read_key`]).
pub fn load_or_create_key(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        Ok(_) => Err(std::io::Error::other(
            "journal key file holds fewer than 32 bytes",
        )),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| std::io::Error::other("no randomness"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, &key)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(key)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, key_id: &str) -> ExchangeRecord {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        ExchangeRecord {
            message_id: id.to_owned(),
            client: None,
            service: None,
            method: "GET".into(),
            operation: None,
            purpose: None,
            contract_id: None,
            peer_fingerprint: None,
            status: 200,
            error_code: None,
            request_in_at: at,
            request_out_at: None,
            response_in_at: None,
            response_out_at: at,
            request_bytes: 0,
            response_bytes: 0,
            request_digest: String::new(),
            response_digest: None,
            subject_digest: None,
            leg: "local",
            signature_digest: None,
            remote_key_id: None,
            key_id: key_id.to_owned(),
        }
    }

    /// A store that holds every batch until released: a disk that has stalled.
    struct StalledStore(std::sync::Arc<tokio::sync::Semaphore>);

    impl JournalStore for StalledStore {
        fn append_batch<'a>(&'a mut self, _records: &'a [ExchangeRecord]) -> StoreFuture<'a> {
            let gate = self.0.clone();
            Box::pin(async move {
                let _permit = gate.acquire().await.map_err(|_| JournalError::Closed)?;
                Ok(())
            })
        }
    }

    /// A store that remembers the size of every batch it committed.
    struct CountingStore(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

    impl JournalStore for CountingStore {
        fn append_batch<'a>(&'a mut self, records: &'a [ExchangeRecord]) -> StoreFuture<'a> {
            self.0.lock().expect("lock").push(records.len());
            Box::pin(async { Ok(()) })
        }
    }

    /// Issue 9 (cost per exchange): with a commit window, records that arrive within it
    /// after the first commit together, one durable commit for the lot; each append still
    /// returns only once its batch is committed.
    #[tokio::test]
    async fn a_commit_window_gathers_records_arriving_within_it_into_one_commit() {
        let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let upkeep = Upkeep {
            commit_window: std::time::Duration::from_millis(200),
            ..Upkeep::default()
        };
        let journal = Journal::start_with(CountingStore(batches.clone()), &[3; 32], 16, upkeep);
        let id = journal.key_id().to_owned();
        let mut appends = Vec::new();
        for n in 0..3 {
            let (journal, id) = (journal.clone(), id.clone());
            appends.push(tokio::spawn(async move {
                journal.append(record(&format!("w{n}"), &id)).await
            }));
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        for append in appends {
            assert!(append.await.expect("task").is_ok());
        }
        assert_eq!(*batches.lock().expect("lock"), vec![3]);
    }

    /// 003 Điều 33 (tra soát): a citizen's records are found by their digests, so the key
    /// and its id are the same at every start and on every replica given the same key
    /// file, and differ for another key; the id does not reveal the key.
    #[test]
    fn key_id_names_the_key_stably_without_revealing_it() {
        let key = [7u8; 32];
        assert_eq!(key_id(&key), key_id(&key));
        assert_ne!(key_id(&key), key_id(&[8u8; 32]));
        assert_eq!(key_id(&key).len(), 16);
        assert!(!key_id(&key).contains(&crate::base::hex::encode(&key[..8])));
    }

    /// Issue 9, fix first: with the store stalled, the journal's queue fills and further
    /// appends are refused at once (back-pressure with a code), never queued without
    /// bound; `/readyz` says so; when the store recovers, the queue drains.
    #[tokio::test]
    async fn a_stalled_store_fills_the_bounded_queue_then_refuses_at_once() {
        let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
        let journal = Journal::start_with_capacity(StalledStore(gate.clone()), &[1; 32], 2);
        let id = journal.key_id().to_owned();
        // One batch taken by the writer (stalled), two waiting in the queue.
        let mut waiting = Vec::new();
        for n in 0..3 {
            let journal = journal.clone();
            let id = id.clone();
            waiting.push(tokio::spawn(async move {
                journal.append(record(&format!("m{n}"), &id)).await
            }));
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let refused = journal.append(record("m-over", &id)).await;
        assert!(
            matches!(refused, Err(JournalError::Overloaded)),
            "{refused:?}"
        );
        assert!(!journal.ready());
        assert_eq!(journal.health().queued, 2);
        gate.add_permits(10);
        for append in waiting {
            assert!(append.await.expect("task").is_ok());
        }
        assert!(journal.ready());
    }
}
