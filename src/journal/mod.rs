//! The journal: every exchange, allowed or denied, is recorded durably before
//! its response leaves the node.
//!
//! [`Journal::append`] hands an [`ExchangeRecord`] to one writer task that
//! commits whatever has queued up in a single transaction (group commit) and
//! then acknowledges each record; so durability costs one fsync per batch, not
//! per request. The store is behind [`JournalStore`]: [`sqlite`] is the
//! embedded default; PostgreSQL, hash chaining and signed Merkle seals plug in
//! behind the same interface in a later change.
//!
//! Records never hold personal identifiers in clear: the subject and the
//! request/response digests are HMAC-SHA256 under the node's journal key.

pub mod sqlite;

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
}

/// A durable store of records.
pub trait JournalStore: Send + 'static {
    /// Appends a batch in one transaction; returns after it is durable.
    fn append_batch<'a>(
        &'a mut self,
        records: &'a [ExchangeRecord],
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>>;
}

type Pending = (ExchangeRecord, oneshot::Sender<Result<(), JournalError>>);

/// The most records committed in one transaction.
const MAX_BATCH: usize = 512;

/// Handle to the journal writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Journal {
    /// `None` when the journal is disabled by `[dangerous] disable_journal`.
    sender: Option<mpsc::Sender<Pending>>,
    key: std::sync::Arc<aws_lc_rs::hmac::Key>,
    /// The store's file, for read-only lookups beside the writer.
    reader: Option<std::path::PathBuf>,
}

impl Journal {
    /// Starts the writer task over `store`.
    pub fn start(mut store: impl JournalStore, key_bytes: &[u8]) -> Self {
        let (sender, mut receiver) = mpsc::channel::<Pending>(4096);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(MAX_BATCH);
            while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (records, waiters): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
                let outcome = store.append_batch(&records).await;
                if let Err(error) = &outcome {
                    tracing::error!(error = %error, records = records.len(), "journal commit failed");
                }
                metrics::histogram!("datagate_journal_batch_size").record(records.len() as f64);
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        Journal {
            sender: Some(sender),
            key: std::sync::Arc::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                key_bytes,
            )),
            reader: None,
        }
    }

    /// Lets [`Journal::find`] read the SQLite file at `path` (read-only, beside the writer).
    pub fn with_reader(mut self, path: &std::path::Path) -> Self {
        self.reader = Some(path.to_owned());
        self
    }

    /// The records of one `X-Road-Id` (reconciliation between nodes: each node's legs of
    /// one exchange), oldest first; digests and identifiers only, never payloads.
    pub async fn find(&self, message_id: &str) -> Result<Vec<serde_json::Value>, JournalError> {
        match &self.reader {
            Some(path) => sqlite::find(path, message_id).await,
            None => Ok(Vec::new()),
        }
    }

    /// A journal that records nothing (`[dangerous] disable_journal`), for benchmarks.
    pub fn disabled(key_bytes: &[u8]) -> Self {
        Journal {
            sender: None,
            key: std::sync::Arc::new(aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                key_bytes,
            )),
            reader: None,
        }
    }

    /// Whether exchanges are journaled (false only with `[dangerous] disable_journal`).
    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Appends a record and waits until it is durable.
    pub async fn append(&self, record: ExchangeRecord) -> Result<(), JournalError> {
        let Some(sender) = &self.sender else {
            return Ok(());
        };
        let (ack, done) = oneshot::channel();
        sender
            .send((record, ack))
            .await
            .map_err(|_| JournalError::Closed)?;
        done.await.map_err(|_| JournalError::Closed)?
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

/// Reads the journal key from `path`, creating a random 32-byte key when missing.
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
