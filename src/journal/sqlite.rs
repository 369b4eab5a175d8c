//! The embedded journal store: one SQLite file in WAL mode with `synchronous = FULL`, so
//! a committed batch survives a power cut; one chain; one writing process (an exclusive
//! lock on `FILE.lock`); migrations versioned with `sqlx::migrate!`.
//!
//! Owns: the writer's connection, the chain's head and next sequence number, the free
//! space reserve (refuses before the disk is full) and applying maintenance steps. Does
//! not own: reading back ([`super::store::Reader`]), the chain and seal encodings
//! ([`super::chain`]) or what to archive ([`super::archive`]).

use super::archive::{self, Step};
use super::store::{Locator, Reader, store_error};
use super::{ExchangeRecord, JournalError, JournalStore, StoreFuture};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, SqliteConnection};
use std::path::{Path, PathBuf};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The free space kept by default below which new exchanges are refused: 64 MiB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// A SQLite journal, open for writing.
#[derive(Debug)]
pub struct SqliteJournal {
    connection: SqliteConnection,
    path: PathBuf,
    /// The chain's head, its pending seal, its time-stamper.
    state: super::chain::ChainState,
    /// Below this much free space on the journal's file system, appends are refused.
    min_free_bytes: u64,
    /// Held while the store is open: one writing process per file.
    _lock: std::fs::File,
    /// Copies the WAL back into the database beside the writer.
    checkpointer: tokio::task::JoinHandle<()>,
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// How often the WAL is checkpointed beside the writer.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Checkpoints the WAL on a connection of its own (its own SQLite thread), `PASSIVE`: it
/// never blocks the writer, and the writer never waits for it.
async fn checkpointer(path: PathBuf) {
    let Ok(mut connection) = SqliteConnectOptions::new()
        .filename(&path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await
    else {
        tracing::warn!("the journal's checkpointer cannot open the journal");
        return;
    };
    let mut ticker = tokio::time::interval(CHECKPOINT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut connection)
            .await
        {
            tracing::debug!(error = %error, "journal checkpoint deferred");
        }
    }
}

/// Free bytes available to unprivileged writers on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(path)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

impl SqliteJournal {
    /// Opens (creating when missing) the journal database at `path`.
    pub async fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| JournalError::Store(e.to_string()))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| JournalError::Store(format!("{}: {e}", lock_path.display())))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                JournalError::Store(format!(
                    "another process writes the journal {} (one writer per chain)",
                    path.display()
                ))
            },
        )?;
        let mut connection = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Checkpoints run beside the writer (`checkpointer`), never inside a commit
            // that exchanges wait for.
            .pragma("wal_autocheckpoint", "0")
            .connect()
            .await
            .map_err(store_error)?;
        upgrade_pre_migration_journal(&mut connection).await?;
        MIGRATIONS
            .run(&mut connection)
            .await
            .map_err(|e| JournalError::Store(format!("journal migrations: {e}")))?;
        let mut journal = SqliteJournal {
            connection,
            path: path.to_owned(),
            state: Default::default(),
            min_free_bytes: DEFAULT_MIN_FREE_BYTES,
            _lock: lock,
            checkpointer: tokio::spawn(checkpointer(path.to_owned())),
        };
        journal.read_head().await?;
        Ok(journal)
    }

    /// Reads the chain's head and next sequence number back from the store.
    async fn read_head(&mut self) -> Result<(), JournalError> {
        // The chain continues from the last chained record (a journal written before the
        // chain existed starts its chain after its old records), or from the last
        // archived one when the store holds none.
        let last: Option<(i64, Option<String>)> =
            sqlx::query_as("SELECT seq, record_hash FROM exchanges ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut self.connection)
                .await
                .map_err(store_error)?;
        let archived: Option<(i64, String)> = sqlx::query_as(
            "SELECT last_seq, head_hash FROM archives ORDER BY last_seq DESC LIMIT 1",
        )
        .fetch_optional(&mut self.connection)
        .await
        .map_err(store_error)?;
        self.state.reset(last, archived)
    }

    /// Seals every batch from now on: its Merkle root signed with the node's key.
    pub fn with_sealer(mut self, sealer: super::chain::Sealer) -> Self {
        self.state.set_sealer(sealer);
        self
    }

    /// Takes back the records a previous run committed but did not seal (a crash).
    async fn restore_sealing(&mut self) -> Result<(), JournalError> {
        if !self.state.needs_tail() {
            return Ok(());
        }
        let tail: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, record_hash, response_out_at FROM exchanges
             WHERE record_hash IS NOT NULL
               AND seq > MAX(COALESCE((SELECT MAX(last_seq) FROM seals), 0),
                             COALESCE((SELECT MAX(last_seq) FROM archives), 0))
             ORDER BY seq",
        )
        .fetch_all(&mut self.connection)
        .await
        .map_err(store_error)?;
        self.state.restore(&tail);
        Ok(())
    }

    /// Seals the records committed since the last seal, on their own.
    async fn seal_pending(&mut self) -> Result<(), JournalError> {
        self.restore_sealing().await?;
        let Some(seal) = self.state.pending_seal()? else {
            return Ok(());
        };
        insert_seal(&mut self.connection, &seal.0).await?;
        self.state.sealed_pending(&seal);
        Ok(())
    }

    /// Refuses appends while the journal's file system has less than `bytes` free.
    pub fn with_min_free_bytes(mut self, bytes: u64) -> Self {
        self.min_free_bytes = bytes;
        self
    }

    /// Number of records (for tests and status).
    pub async fn count(&mut self) -> Result<i64, JournalError> {
        sqlx::query_scalar("SELECT COUNT(*) FROM exchanges")
            .fetch_one(&mut self.connection)
            .await
            .map_err(store_error)
    }

    fn check_space(&self) -> Result<(), JournalError> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match free_bytes(dir) {
            Ok(free) => {
                metrics::gauge!("datagate_journal_free_bytes").set(free as f64);
                if free < self.min_free_bytes {
                    Err(JournalError::StorageLow)
                } else {
                    Ok(())
                }
            }
            Err(error) => Err(JournalError::Store(format!("free space: {error}"))),
        }
    }

    /// Inserts the batch with one multi-row statement: one round trip to SQLite's
    /// worker thread and one durable commit (fsync) per batch, not per record. When a seal
    /// is due it commits in the same transaction; otherwise the statement commits alone.
    async fn insert(&mut self, records: &[ExchangeRecord]) -> Result<(), JournalError> {
        self.check_space()?;
        self.restore_sealing().await?;
        let (batch, seal) = self.state.prepare(records)?;
        let mut statement = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "INSERT INTO exchanges ({}) ",
            super::store::INSERT_COLUMNS
        ));
        statement.push_values(records.iter().zip(&batch.rows), |mut row, (r, link)| {
            super::store::bind_record(&mut row, r, link);
        });
        // Small batches recur and are worth a cached prepared statement; large ones are rare.
        let persistent = records.len() <= 16;
        match &seal {
            // The records and their seal commit together.
            Some((seal, _)) => {
                let mut transaction = sqlx::Connection::begin(&mut self.connection)
                    .await
                    .map_err(store_error)?;
                statement
                    .build()
                    .persistent(persistent)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
                insert_seal(&mut transaction, seal).await?;
                transaction.commit().await.map_err(store_error)?;
            }
            // One statement is one atomic, durable commit (WAL, synchronous = FULL).
            None => {
                statement
                    .build()
                    .persistent(persistent)
                    .execute(&mut self.connection)
                    .await
                    .map_err(store_error)?;
            }
        }
        self.state.committed(&batch, seal.as_ref());
        Ok(())
    }

    /// Time-stamps every seal from now on with the TSA behind `stamper`.
    pub fn with_stamper(mut self, stamper: super::stamper::Stamper) -> Self {
        self.state.set_stamper(stamper);
        self
    }

    /// Attaches the time-stamp tokens that came back since the last batch.
    async fn attach_stamps(&mut self) {
        for stamped in self.state.stamps() {
            if let Err(error) =
                sqlx::query("UPDATE seals SET timestamp_token = ? WHERE first_seq = ?")
                    .bind(&stamped.token)
                    .bind(stamped.first_seq)
                    .execute(&mut self.connection)
                    .await
            {
                tracing::warn!(error = %error, "cannot attach a seal's time-stamp token");
            }
        }
    }

    /// One maintenance step under `policy` at `now`: what it did, if anything
    /// (`datagate journal archive` runs them until none is left).
    pub async fn maintain_step(
        &mut self,
        policy: &archive::Policy,
        now: time::OffsetDateTime,
    ) -> Result<Option<Step>, JournalError> {
        let mut reader = Reader::open(&Locator::Sqlite(self.path.clone())).await?;
        let step = archive::plan(&mut reader, super::store::SQLITE_CHAIN, policy, now).await?;
        drop(reader);
        if let Some(step) = &step {
            self.apply(step).await?;
            if let Step::Expire(entry) = step {
                archive::remove_file(policy.dir.as_deref(), entry);
            }
        }
        Ok(step)
    }

    /// Applies one maintenance step decided by [`archive::plan`].
    async fn apply(&mut self, step: &Step) -> Result<(), JournalError> {
        let mut transaction = sqlx::Connection::begin(&mut self.connection)
            .await
            .map_err(store_error)?;
        match step {
            Step::Archive(entry) => {
                sqlx::query(
                    "INSERT INTO archives (first_seq, last_seq, file, head_hash, last_at,
                     archived_at, expired_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(entry.first_seq)
                .bind(entry.last_seq)
                .bind(&entry.file)
                .bind(&entry.head_hash)
                .bind(&entry.last_at)
                .bind(&entry.archived_at)
                .bind(&entry.expired_at)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
                sqlx::query("DELETE FROM exchanges WHERE seq >= ? AND seq <= ?")
                    .bind(entry.first_seq)
                    .bind(entry.last_seq)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
                sqlx::query("DELETE FROM seals WHERE first_seq >= ? AND last_seq <= ?")
                    .bind(entry.first_seq)
                    .bind(entry.last_seq)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
            }
            Step::Expire(entry) => {
                sqlx::query("UPDATE archives SET expired_at = ? WHERE first_seq = ?")
                    .bind(&entry.expired_at)
                    .bind(entry.first_seq)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
            }
        }
        transaction.commit().await.map_err(store_error)
    }
}

/// Inserts a seal (in the caller's transaction, or on its own).
async fn insert_seal(
    connection: &mut SqliteConnection,
    seal: &super::bundle::BundleSeal,
) -> Result<(), JournalError> {
    sqlx::query(
        "INSERT INTO seals (first_seq, last_seq, merkle_root, head_hash, sealed_at,
         algorithm, signature, certificate, timestamp_token)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(seal.first_seq)
    .bind(seal.last_seq)
    .bind(&seal.merkle_root)
    .bind(&seal.head_hash)
    .bind(&seal.sealed_at)
    .bind(&seal.algorithm)
    .bind(&seal.signature)
    .bind(&seal.certificate)
    .bind(&seal.timestamp)
    .execute(connection)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Journals written before the migrations existed may lack the federation's columns:
/// add them, so the first migration (`CREATE … IF NOT EXISTS`) finds today's shape.
async fn upgrade_pre_migration_journal(
    connection: &mut SqliteConnection,
) -> Result<(), JournalError> {
    let columns: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_table_info('exchanges')")
            .fetch_all(&mut *connection)
            .await
            .map_err(store_error)?;
    if columns.is_empty() {
        return Ok(());
    }
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
                .execute(&mut *connection)
                .await
                .map_err(store_error)?;
        }
    }
    Ok(())
}

impl JournalStore for SqliteJournal {
    fn append_batch<'a>(&'a mut self, records: &'a [ExchangeRecord]) -> StoreFuture<'a> {
        Box::pin(async move {
            self.attach_stamps().await;
            let outcome = self.insert(records).await;
            if outcome.is_err() {
                // The transaction rolled back; the head in memory is still the store's.
                let _ = self.read_head().await;
            }
            outcome
        })
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        self.state.deadline()
    }

    fn on_deadline(&mut self) -> StoreFuture<'_> {
        Box::pin(self.seal_pending())
    }

    fn probe(&mut self) -> StoreFuture<'_> {
        Box::pin(async move {
            self.attach_stamps().await;
            self.check_space()?;
            sqlx::query("SELECT 1")
                .execute(&mut self.connection)
                .await
                .map_err(store_error)?;
            Ok(())
        })
    }

    fn maintain<'a>(
        &'a mut self,
        policy: &'a archive::Policy,
        now: time::OffsetDateTime,
    ) -> StoreFuture<'a> {
        Box::pin(async move { self.maintain_step(policy, now).await.map(|_| ()) })
    }
}
