//! The embedded journal store: one SQLite file in WAL mode with
//! `synchronous = FULL`, so a committed batch survives a power cut.

use super::{ExchangeRecord, JournalError, JournalStore};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
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
    subject_digest TEXT
);
CREATE INDEX IF NOT EXISTS exchanges_subject ON exchanges(subject_digest);
CREATE INDEX IF NOT EXISTS exchanges_message ON exchanges(message_id);";

/// A SQLite journal.
#[derive(Debug)]
pub struct SqliteJournal {
    connection: SqliteConnection,
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
        Ok(SqliteJournal { connection })
    }

    /// Number of records (for tests and status).
    pub async fn count(&mut self) -> Result<i64, JournalError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM exchanges")
            .fetch_one(&mut self.connection)
            .await
            .map_err(store_error)
    }

    async fn insert(&mut self, records: &[ExchangeRecord]) -> Result<(), JournalError> {
        let mut tx = self.connection.begin().await.map_err(store_error)?;
        for r in records {
            sqlx::query(
                "INSERT INTO exchanges (message_id, client, service, method, operation, purpose,
                 contract_id, peer_fingerprint, status, error_code, request_in_at, request_out_at,
                 response_in_at, response_out_at, request_bytes, response_bytes, request_digest,
                 response_digest, subject_digest)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&r.message_id)
            .bind(&r.client)
            .bind(&r.service)
            .bind(&r.method)
            .bind(&r.operation)
            .bind(&r.purpose)
            .bind(&r.contract_id)
            .bind(&r.peer_fingerprint)
            .bind(i64::from(r.status))
            .bind(&r.error_code)
            .bind(rfc3339(r.request_in_at))
            .bind(r.request_out_at.map(rfc3339))
            .bind(r.response_in_at.map(rfc3339))
            .bind(rfc3339(r.response_out_at))
            .bind(r.request_bytes as i64)
            .bind(r.response_bytes as i64)
            .bind(&r.request_digest)
            .bind(&r.response_digest)
            .bind(&r.subject_digest)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }
}

impl JournalStore for SqliteJournal {
    fn append_batch<'a>(
        &'a mut self,
        records: &'a [ExchangeRecord],
    ) -> Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send + 'a>> {
        Box::pin(self.insert(records))
    }
}
