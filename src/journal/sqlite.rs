//! The embedded journal store: one SQLite file in WAL mode with
//! `synchronous = FULL`, so a committed batch survives a power cut.

use super::{ExchangeRecord, JournalError, JournalStore};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, SqliteConnection};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS exchanges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    client TEXT,
    service TEXT,
    method TEXT NOT NULL,
    operation TEXT,
    purpose TEXT,
    contract_id TEXT,
    peer_fingerprint TEXT,
    status INTEGER NOT NULL,
    error_code TEXT,
    request_in_at TEXT NOT NULL,
    request_out_at TEXT,
    response_in_at TEXT,
    response_out_at TEXT NOT NULL,
    request_bytes INTEGER NOT NULL,
    response_bytes INTEGER NOT NULL,
    request_digest TEXT NOT NULL,
    response_digest TEXT,
    subject_digest TEXT,
    leg TEXT NOT NULL DEFAULT 'local',
    signature_digest TEXT,
    remote_key_id TEXT,
    key_id TEXT,
    chain_version INTEGER,
    prev_hash TEXT,
    record_hash TEXT
);
CREATE TABLE IF NOT EXISTS seals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    merkle_root TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    sealed_at TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    signature TEXT NOT NULL,
    certificate TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_subject ON exchanges(subject_digest);
CREATE INDEX IF NOT EXISTS exchanges_message ON exchanges(message_id);";

/// A SQLite journal.
#[derive(Debug)]
pub struct SqliteJournal {
    connection: SqliteConnection,
    /// The hash of the last chained record (the chain's head).
    head: [u8; 32],
    /// Signs each batch's Merkle root (none: batches are chained but not sealed).
    sealer: Option<super::chain::Sealer>,
}

fn store_error(error: sqlx::Error) -> JournalError {
    JournalError::Store(error.to_string())
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl SqliteJournal {
    /// Opens (creating when missing) the journal database at `path`.
    pub async fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| JournalError::Store(e.to_string()))?;
        }
        let mut connection = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .connect()
            .await
            .map_err(store_error)?;
        sqlx::raw_sql(SCHEMA)
            .execute(&mut connection)
            .await
            .map_err(store_error)?;
        // Journals written before the federation lack the leg columns: add them.
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info('exchanges')")
                .fetch_all(&mut connection)
                .await
                .map_err(store_error)?;
        for (column, statement) in [
            (
                "leg",
                "ALTER TABLE exchanges ADD COLUMN leg TEXT NOT NULL DEFAULT 'local'",
            ),
            (
                "signature_digest",
                "ALTER TABLE exchanges ADD COLUMN signature_digest TEXT",
            ),
            (
                "remote_key_id",
                "ALTER TABLE exchanges ADD COLUMN remote_key_id TEXT",
            ),
            ("key_id", "ALTER TABLE exchanges ADD COLUMN key_id TEXT"),
            (
                "chain_version",
                "ALTER TABLE exchanges ADD COLUMN chain_version INTEGER",
            ),
            (
                "prev_hash",
                "ALTER TABLE exchanges ADD COLUMN prev_hash TEXT",
            ),
            (
                "record_hash",
                "ALTER TABLE exchanges ADD COLUMN record_hash TEXT",
            ),
        ] {
            if !columns.iter().any(|name| name == column) {
                sqlx::raw_sql(statement)
                    .execute(&mut connection)
                    .await
                    .map_err(store_error)?;
            }
        }
        // The chain continues from the last chained record (a journal written before the
        // chain existed starts its chain after its old records).
        let last: Option<String> = sqlx::query_scalar(
            "SELECT record_hash FROM exchanges WHERE record_hash IS NOT NULL ORDER BY seq DESC LIMIT 1",
        )
        .fetch_optional(&mut connection)
        .await
        .map_err(store_error)?;
        let head = match last {
            None => super::chain::GENESIS,
            Some(text) => super::chain::parse_hash(&text).ok_or_else(|| {
                JournalError::Store("the journal's last record hash is not a hash".into())
            })?,
        };
        Ok(SqliteJournal {
            connection,
            head,
            sealer: None,
        })
    }

    /// Seals every batch from now on: its Merkle root signed with the node's key.
    pub fn with_sealer(mut self, sealer: super::chain::Sealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Number of records (for tests and status).
    pub async fn count(&mut self) -> Result<i64, JournalError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM exchanges")
            .fetch_one(&mut self.connection)
            .await
            .map_err(store_error)
    }

    /// Inserts the batch with one multi-row statement: one round trip to SQLite's
    /// worker thread and one durable commit (fsync) per batch, not per record.
    async fn insert(&mut self, records: &[ExchangeRecord]) -> Result<(), JournalError> {
        let mut statement = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO exchanges (message_id, client, service, method, operation, purpose,
             contract_id, peer_fingerprint, status, error_code, request_in_at, request_out_at,
             response_in_at, response_out_at, request_bytes, response_bytes, request_digest,
             response_digest, subject_digest, leg, signature_digest, remote_key_id, key_id,
             chain_version, prev_hash, record_hash) ",
        );
        // Each record linked to the one before, in the order they are inserted (the
        // sequence numbers follow that order within the transaction).
        let mut head = self.head;
        let links: Vec<(String, String)> = records
            .iter()
            .map(|record| {
                let values = record.stored_values();
                let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
                let hash = super::chain::link(&head, &super::chain::encode(&values));
                let link = (
                    crate::base::hex::encode(&head),
                    crate::base::hex::encode(&hash),
                );
                head = hash;
                link
            })
            .collect();
        statement.push_values(records.iter().zip(&links), |mut row, (r, (prev, hash))| {
            row.push_bind(r.message_id.clone())
                .push_bind(r.client.clone())
                .push_bind(r.service.clone())
                .push_bind(r.method.clone())
                .push_bind(r.operation.clone())
                .push_bind(r.purpose.clone())
                .push_bind(r.contract_id.clone())
                .push_bind(r.peer_fingerprint.clone())
                .push_bind(i64::from(r.status))
                .push_bind(r.error_code.clone())
                .push_bind(rfc3339(r.request_in_at))
                .push_bind(r.request_out_at.map(rfc3339))
                .push_bind(r.response_in_at.map(rfc3339))
                .push_bind(rfc3339(r.response_out_at))
                .push_bind(r.request_bytes as i64)
                .push_bind(r.response_bytes as i64)
                .push_bind(r.request_digest.clone())
                .push_bind(r.response_digest.clone())
                .push_bind(r.subject_digest.clone())
                .push_bind(r.leg)
                .push_bind(r.signature_digest.clone())
                .push_bind(r.remote_key_id.clone())
                .push_bind(r.key_id.clone())
                .push_bind(super::chain::CHAIN_VERSION)
                .push_bind(prev.clone())
                .push_bind(hash.clone());
        });
        // The batch and its seal commit together: a sealed batch is never half there.
        let mut transaction = sqlx::Connection::begin(&mut self.connection)
            .await
            .map_err(store_error)?;
        let inserted = statement
            .build()
            // Small batches recur and are worth a cached prepared statement; large ones are rare.
            .persistent(records.len() <= 16)
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        if let Some(sealer) = &self.sealer {
            // One multi-row INSERT takes consecutive sequence numbers.
            let last_seq = inserted.last_insert_rowid();
            let first_seq = last_seq - records.len() as i64 + 1;
            let leaves: Vec<[u8; 32]> = links
                .iter()
                .filter_map(|(_, hash)| super::chain::parse_hash(hash))
                .collect();
            let root = super::chain::merkle_root(&leaves);
            let sealed_at = records
                .last()
                .map(|record| rfc3339(record.response_out_at))
                .unwrap_or_default();
            let payload = super::chain::seal_payload(
                first_seq,
                last_seq,
                &root,
                &head,
                &sealed_at,
                &sealer.certificate,
            );
            let signature = sealer.key.sign(&payload).map_err(|error| {
                JournalError::Store(format!("cannot sign the seal: {}", error.code()))
            })?;
            use base64::Engine as _;
            let b64 = &base64::engine::general_purpose::STANDARD;
            sqlx::query(
                "INSERT INTO seals (first_seq, last_seq, merkle_root, head_hash, sealed_at,
                 algorithm, signature, certificate) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(first_seq)
            .bind(last_seq)
            .bind(crate::base::hex::encode(&root))
            .bind(crate::base::hex::encode(&head))
            .bind(sealed_at)
            .bind(sealer.key.algorithm().as_str())
            .bind(b64.encode(signature))
            .bind(b64.encode(&sealer.certificate))
            .execute(&mut *transaction)
            .await
            .map_err(store_error)?;
        }
        transaction.commit().await.map_err(store_error)?;
        self.head = head;
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every chained record links to the one before and its hash matches its content.
    Intact {
        /// Records checked.
        chained: u64,
        /// Seals checked (each a batch's Merkle root signed by the node).
        seals: u64,
        /// Chained records after the last seal (a batch written without a sealer).
        unsealed: u64,
        /// Records written before the chain existed (a prefix, not covered).
        unchained: u64,
        /// The last record's hash (lowercase hex), or `None` for an empty chain.
        head: Option<String>,
    },
    /// The first record that does not verify.
    Broken {
        /// Its sequence number.
        seq: i64,
        /// Its `X-Road-Id`.
        message_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Checks the whole chain of the journal file at `path`, read-only: each record's hash
/// against its content, and its link to the record before; names the first bad record.
pub async fn verify(path: &Path) -> Result<Verification, JournalError> {
    verify_range(path, None).await
}

/// [`verify`], reporting only records whose `request_in_at` (stored RFC 3339 UTC text)
/// falls in `[from, to)` and the seals over them: a record outside the range that does
/// not verify is passed over (its stored hash carries the chain on), so a range can be
/// checked without vouching for the rest.
pub async fn verify_range(
    path: &Path,
    range: Option<(&str, &str)>,
) -> Result<Verification, JournalError> {
    use sqlx::Row as _;
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(store_error)?;
    let columns = super::chain::chained_columns_sql();
    // The column names are the chain's own constants, never input.
    let query = format!(
        "SELECT seq, chain_version, prev_hash, record_hash, {columns} FROM exchanges ORDER BY seq"
    );
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(query)).fetch(&mut connection);
    let mut head: Option<[u8; 32]> = None;
    let (mut chained, mut unchained) = (0u64, 0u64);
    let mut hashes: std::collections::BTreeMap<i64, ([u8; 32], String)> = Default::default();
    let mut reported: std::collections::BTreeSet<i64> = Default::default();
    use futures_util::TryStreamExt as _;
    while let Some(row) = rows.try_next().await.map_err(store_error)? {
        let seq: i64 = row.get(0);
        let version: Option<i64> = row.get(1);
        let prev: Option<String> = row.get(2);
        let hash: Option<String> = row.get(3);
        let values: Vec<Option<String>> = (0..super::chain::CHAINED_FIELDS.len())
            .map(|i| row.get::<Option<String>, _>(4 + i))
            .collect();
        let message_id = values[0].clone().unwrap_or_default();
        // `request_in_at` is the 11th chained field.
        let in_range = range.is_none_or(|(from, to)| {
            values[10]
                .as_deref()
                .is_some_and(|at| at >= from && at < to)
        });
        let broken = |reason| Verification::Broken {
            seq,
            message_id: message_id.clone(),
            reason,
        };
        let stored = hash.as_deref().and_then(super::chain::parse_hash);
        let checked = (|| {
            let (Some(prev), Some(hash)) = (prev.as_deref(), stored) else {
                return Err(if hash.is_none() {
                    "an unchained record after the chain began"
                } else {
                    "a stored hash is not a hash"
                });
            };
            if version != Some(super::chain::CHAIN_VERSION) {
                return Err("unknown chain version");
            }
            let prev = super::chain::parse_hash(prev).ok_or("a stored hash is not a hash")?;
            if prev != head.unwrap_or(super::chain::GENESIS) {
                return Err(
                    "it does not link to the record before it (a record was removed, inserted or reordered)",
                );
            }
            let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
            if super::chain::link(&prev, &super::chain::encode(&values)) != hash {
                return Err("its content does not match its hash (it was changed)");
            }
            Ok(hash)
        })();
        match checked {
            // Rows written before the chain began: an unchained prefix.
            Err(_) if head.is_none() && prev.is_none() && hash.is_none() => {
                unchained += 1;
                continue;
            }
            Err(reason) if in_range => return Ok(broken(reason)),
            // Outside the range: not vouched for; its stored hash carries the chain on.
            Err(_) => {
                if let Some(stored) = stored {
                    head = Some(stored);
                    hashes.insert(seq, (stored, message_id.clone()));
                }
            }
            Ok(hash) => {
                head = Some(hash);
                hashes.insert(seq, (hash, message_id.clone()));
                if in_range {
                    chained += 1;
                    reported.insert(seq);
                }
            }
        }
    }
    drop(rows);

    // The seals: each batch's Merkle root over its records' hashes, and the node's
    // signature over it, with the certificate stored beside it.
    let seals = sqlx::query(
        "SELECT first_seq, last_seq, merkle_root, head_hash, sealed_at, algorithm, signature,
                certificate FROM seals ORDER BY id",
    )
    .fetch_all(&mut connection)
    .await
    .map_err(store_error)?;
    let mut last_sealed: Option<i64> = None;
    let mut checked_seals = 0u64;
    for seal in &seals {
        let first: i64 = seal.get(0);
        let last: i64 = seal.get(1);
        // Only the seals over records the range reports.
        if range.is_some() && reported.range(first..=last.max(first)).next().is_none() {
            last_sealed = Some(last_sealed.map_or(last, |seen: i64| seen.max(last)));
            continue;
        }
        checked_seals += 1;
        let id = |seq: i64| {
            hashes
                .get(&seq)
                .map(|(_, id)| id.clone())
                .unwrap_or_default()
        };
        let broken = |reason| Verification::Broken {
            seq: first,
            message_id: id(first),
            reason,
        };
        let leaves: Vec<[u8; 32]> = (first..=last)
            .filter_map(|seq| hashes.get(&seq).map(|(hash, _)| *hash))
            .collect();
        if last < first || leaves.len() as i64 != last - first + 1 {
            return Ok(broken(
                "a sealed batch lost records (removed from the journal)",
            ));
        }
        let root = super::chain::merkle_root(&leaves);
        let stored_root = super::chain::parse_hash(&seal.get::<String, _>(2));
        let stored_head = super::chain::parse_hash(&seal.get::<String, _>(3));
        if stored_root != Some(root) || stored_head != Some(leaves[leaves.len() - 1]) {
            return Ok(broken(
                "a sealed batch's records do not match its Merkle root",
            ));
        }
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let signature = b64.decode(seal.get::<String, _>(6)).unwrap_or_default();
        let certificate = b64.decode(seal.get::<String, _>(7)).unwrap_or_default();
        let algorithm = seal
            .get::<String, _>(5)
            .parse::<crate::msgsig::Algorithm>()
            .ok();
        let payload = super::chain::seal_payload(
            first,
            last,
            &root,
            &leaves[leaves.len() - 1],
            &seal.get::<String, _>(4),
            &certificate,
        );
        let verified = algorithm.is_some_and(|algorithm| {
            crate::msgsig::VerifyingKey::from_certificate_der(&certificate, Some(algorithm))
                .and_then(|key| key.verify(algorithm, &payload, &signature))
                .is_ok()
        });
        if !verified {
            return Ok(broken("a seal's signature does not verify"));
        }
        last_sealed = Some(last_sealed.map_or(last, |seen: i64| seen.max(last)));
    }
    let unsealed = reported
        .iter()
        .filter(|seq| last_sealed.is_none_or(|last| **seq > last))
        .count() as u64;
    Ok(Verification::Intact {
        chained,
        seals: checked_seals,
        unsealed,
        unchained,
        head: head.map(|h| crate::base::hex::encode(&h)),
    })
}

/// The records of `message_id` in the journal file at `path`, read-only.
pub async fn find(path: &Path, message_id: &str) -> Result<Vec<serde_json::Value>, JournalError> {
    use sqlx::Row as _;
    let mut connection = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(store_error)?;
    let rows = sqlx::query(
        "SELECT seq, message_id, leg, client, service, method, status, error_code, contract_id,
                signature_digest, remote_key_id, request_in_at, response_out_at
         FROM exchanges WHERE message_id = ? ORDER BY seq LIMIT 100",
    )
    .bind(message_id)
    .fetch_all(&mut connection)
    .await
    .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|row| {
            serde_json::json!({
                "seq": row.get::<i64, _>(0),
                "message_id": row.get::<String, _>(1),
                "leg": row.get::<String, _>(2),
                "client": row.get::<Option<String>, _>(3),
                "service": row.get::<Option<String>, _>(4),
                "method": row.get::<String, _>(5),
                "status": row.get::<i64, _>(6),
                "error_code": row.get::<Option<String>, _>(7),
                "contract_id": row.get::<Option<String>, _>(8),
                "signature_digest": row.get::<Option<String>, _>(9),
                "remote_key_id": row.get::<Option<String>, _>(10),
                "request_in_at": row.get::<String, _>(11),
                "response_out_at": row.get::<String, _>(12),
            })
        })
        .collect())
}

impl JournalStore for SqliteJournal {
    fn append_batch<'a>(
        &'a mut self,
        records: &'a [ExchangeRecord],
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>> {
        Box::pin(self.insert(records))
    }
}
