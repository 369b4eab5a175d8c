//! The shared journal store: a PostgreSQL schema that several stateless replicas of one
//! node write to. Each process writes its own chain (`[journal] chain`), and a
//! session-level advisory lock on (schema, chain) guarantees one writer per chain: a
//! second process configured with the same chain is refused at start. Nothing
//! home-made for consensus: PostgreSQL's commit is the durability point, its lock the
//! exclusion. Migrations are versioned (`sqlx::migrate!`, `migrations/postgres`).
//!
//! When the server goes away mid-run, the batch fails (its exchanges are answered 503
//! `journal.unavailable`), the connection is dropped, and the writer's probe reconnects,
//! takes the lock again and re-reads the chain's head from the store — so a commit whose
//! acknowledgement was lost is found, not duplicated or forked.
//!
//! Owns: the writer's connection and lock, the chain's head, applying maintenance steps.
//! Does not own: reading back ([`super::store::Reader`]), the encodings ([`super::chain`]).

use super::archive::{self, Step};
use super::store::{Locator, PgLocation, Reader, store_error};
use super::{ExchangeRecord, JournalError, JournalStore, StoreFuture};
use sqlx::{ConnectOptions as _, PgConnection};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A PostgreSQL journal chain, open for writing.
#[derive(Debug)]
pub struct PgJournal {
    location: PgLocation,
    chain: String,
    /// `None` after a failure, until the probe reconnects.
    connection: Option<PgConnection>,
    /// The chain's head, its pending seal, its time-stamper.
    state: super::chain::ChainState,
}

/// The advisory lock key of a chain: the first 8 bytes of SHA-256 over a label, the
/// schema and the chain.
pub fn lock_key(schema: &str, chain: &str) -> i64 {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(b"datagate journal chain\0");
    context.update(schema.as_bytes());
    context.update(b"\0");
    context.update(chain.as_bytes());
    let digest = context.finish();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_ref()[..8]);
    i64::from_be_bytes(bytes)
}

/// Creates the schema when missing and brings it to the current migration.
pub async fn migrate(location: &PgLocation) -> Result<PgConnection, JournalError> {
    if !super::store::valid_schema(&location.schema) {
        return Err(JournalError::Store(
            "the journal schema name is not valid".into(),
        ));
    }
    let mut connection = location.options()?.connect().await.map_err(store_error)?;
    // The name is checked above: lowercase letters, digits and underscores only.
    let create = format!("CREATE SCHEMA IF NOT EXISTS {}", location.schema);
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut connection)
        .await
        .map_err(store_error)?;
    MIGRATIONS
        .run(&mut connection)
        .await
        .map_err(|e| JournalError::Store(format!("journal migrations: {e}")))?;
    Ok(connection)
}

impl PgJournal {
    /// Connects, migrates, takes the chain's lock and reads its head.
    pub async fn open(location: PgLocation) -> Result<Self, JournalError> {
        let chain = location
            .chain
            .clone()
            .filter(|chain| super::store::valid_chain(chain))
            .ok_or_else(|| JournalError::Store("the journal chain name is not valid".into()))?;
        let mut journal = PgJournal {
            location,
            chain,
            connection: None,
            state: Default::default(),
        };
        // Migrations run once, at start; a reconnect only takes the lock and the head.
        drop(migrate(&journal.location).await?);
        journal.connect().await?;
        Ok(journal)
    }

    /// Seals every batch from now on.
    pub fn with_sealer(mut self, sealer: super::chain::Sealer) -> Self {
        self.state.set_sealer(sealer);
        self
    }

    /// Takes back the records of this chain committed but not sealed (a crash, or a
    /// reconnect after a lost acknowledgement).
    async fn restore_sealing(&mut self) -> Result<(), JournalError> {
        if !self.state.needs_tail() {
            return Ok(());
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(JournalError::Store("no connection to the journal".into()));
        };
        let tail: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, record_hash, response_out_at FROM exchanges
             WHERE chain = $1 AND record_hash IS NOT NULL
               AND seq > GREATEST(
                   COALESCE((SELECT MAX(last_seq) FROM seals WHERE chain = $1), 0),
                   COALESCE((SELECT MAX(last_seq) FROM archives WHERE chain = $1), 0))
             ORDER BY seq",
        )
        .bind(&self.chain)
        .fetch_all(&mut *connection)
        .await
        .map_err(store_error)?;
        self.state.restore(&tail);
        Ok(())
    }

    /// Seals the records committed since the last seal, on their own.
    async fn seal_pending(&mut self) -> Result<(), JournalError> {
        self.ensure_connected().await?;
        self.restore_sealing().await?;
        let Some(seal) = self.state.pending_seal()? else {
            return Ok(());
        };
        let Some(connection) = self.connection.as_mut() else {
            return Err(JournalError::Store("no connection to the journal".into()));
        };
        if let Err(error) = insert_seal(connection, &self.chain, &seal.0).await {
            self.connection = None;
            return Err(error);
        }
        self.state.sealed_pending(&seal);
        Ok(())
    }

    async fn connect(&mut self) -> Result<(), JournalError> {
        self.connection = None;
        let mut connection = self
            .location
            .options()?
            .connect()
            .await
            .map_err(store_error)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(lock_key(&self.location.schema, &self.chain))
            .fetch_one(&mut connection)
            .await
            .map_err(store_error)?;
        if !locked {
            return Err(JournalError::Store(format!(
                "another process writes the journal chain {:?} (one writer per chain: give \
                 each replica its own [journal] chain)",
                self.chain
            )));
        }
        let created_at = crate::base::clock::Clock::now(&crate::base::clock::SystemClock)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        sqlx::query("INSERT INTO chains (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(&self.chain)
            .bind(created_at)
            .execute(&mut connection)
            .await
            .map_err(store_error)?;
        let last: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT seq, record_hash FROM exchanges WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&self.chain)
        .fetch_optional(&mut connection)
        .await
        .map_err(store_error)?;
        let archived: Option<(i64, String)> = sqlx::query_as(
            "SELECT last_seq, head_hash FROM archives WHERE chain = $1 ORDER BY last_seq DESC LIMIT 1",
        )
        .bind(&self.chain)
        .fetch_optional(&mut connection)
        .await
        .map_err(store_error)?;
        self.state.reset(last, archived)?;
        self.connection = Some(connection);
        Ok(())
    }

    async fn ensure_connected(&mut self) -> Result<(), JournalError> {
        if self.connection.is_none() {
            self.connect().await?;
        }
        Ok(())
    }

    async fn insert(&mut self, records: &[ExchangeRecord]) -> Result<(), JournalError> {
        self.ensure_connected().await?;
        self.restore_sealing().await?;
        let (batch, seal) = self.state.prepare(records)?;
        let mut statement = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
            "INSERT INTO exchanges (chain, {}) ",
            super::store::INSERT_COLUMNS
        ));
        let chain = self.chain.clone();
        statement.push_values(records.iter().zip(&batch.rows), |mut row, (r, link)| {
            row.push_bind(chain.clone());
            super::store::bind_record(&mut row, r, link);
        });
        let Some(connection) = self.connection.as_mut() else {
            return Err(JournalError::Store("no connection to the journal".into()));
        };
        let persistent = records.len() <= 16;
        match &seal {
            // The records and their seal commit together.
            Some((seal, _)) => {
                let mut transaction = sqlx::Connection::begin(connection)
                    .await
                    .map_err(store_error)?;
                statement
                    .build()
                    .persistent(persistent)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
                insert_seal(&mut transaction, &chain, seal).await?;
                transaction.commit().await.map_err(store_error)?;
            }
            // One statement is one atomic commit.
            None => {
                statement
                    .build()
                    .persistent(persistent)
                    .execute(&mut *connection)
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
        // Taken only when connected: tokens wait in the stamper's queue meanwhile.
        if self.connection.is_none() {
            return;
        }
        let ready = self.state.stamps();
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        for stamped in ready {
            if let Err(error) = sqlx::query(
                "UPDATE seals SET timestamp_token = $1 WHERE chain = $2 AND first_seq = $3",
            )
            .bind(&stamped.token)
            .bind(&self.chain)
            .bind(stamped.first_seq)
            .execute(&mut *connection)
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
        let mut reader = Reader::open(&Locator::Postgres(self.location.clone())).await?;
        let step = archive::plan(&mut reader, &self.chain, policy, now).await?;
        drop(reader);
        if let Some(step) = &step {
            self.apply(step).await?;
            if let Step::Expire(entry) = step {
                archive::remove_file(policy.dir.as_deref(), entry);
            }
        }
        Ok(step)
    }

    async fn apply(&mut self, step: &Step) -> Result<(), JournalError> {
        let chain = self.chain.clone();
        self.ensure_connected().await?;
        let Some(connection) = self.connection.as_mut() else {
            return Err(JournalError::Store("no connection to the journal".into()));
        };
        let mut transaction = sqlx::Connection::begin(connection)
            .await
            .map_err(store_error)?;
        match step {
            Step::Archive(entry) => {
                sqlx::query(
                    "INSERT INTO archives (chain, first_seq, last_seq, file, head_hash, last_at,
                     archived_at, expired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&chain)
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
                sqlx::query("DELETE FROM exchanges WHERE chain = $1 AND seq >= $2 AND seq <= $3")
                    .bind(&chain)
                    .bind(entry.first_seq)
                    .bind(entry.last_seq)
                    .execute(&mut *transaction)
                    .await
                    .map_err(store_error)?;
                sqlx::query(
                    "DELETE FROM seals WHERE chain = $1 AND first_seq >= $2 AND last_seq <= $3",
                )
                .bind(&chain)
                .bind(entry.first_seq)
                .bind(entry.last_seq)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            }
            Step::Expire(entry) => {
                sqlx::query(
                    "UPDATE archives SET expired_at = $1 WHERE chain = $2 AND first_seq = $3",
                )
                .bind(&entry.expired_at)
                .bind(&chain)
                .bind(entry.first_seq)
                .execute(&mut *transaction)
                .await
                .map_err(store_error)?;
            }
        }
        transaction.commit().await.map_err(store_error)
    }
}

/// Inserts a seal of `chain` (in the caller's transaction, or on its own).
async fn insert_seal(
    connection: &mut PgConnection,
    chain: &str,
    seal: &super::bundle::BundleSeal,
) -> Result<(), JournalError> {
    sqlx::query(
        "INSERT INTO seals (chain, first_seq, last_seq, merkle_root, head_hash, sealed_at,
         algorithm, signature, certificate, timestamp_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(chain)
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

impl JournalStore for PgJournal {
    fn append_batch<'a>(&'a mut self, records: &'a [ExchangeRecord]) -> StoreFuture<'a> {
        Box::pin(async move {
            self.attach_stamps().await;
            let outcome = self.insert(records).await;
            if outcome.is_err() {
                // Whether the commit happened is unknown: drop the connection (and the
                // lock with it); the reconnect re-reads the head from the store.
                self.connection = None;
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
            let checked = match self.ensure_connected().await {
                Err(error) => Err(error),
                Ok(()) => match self.connection.as_mut() {
                    Some(connection) => sqlx::query("SELECT 1")
                        .execute(connection)
                        .await
                        .map(|_| ())
                        .map_err(store_error),
                    None => Err(JournalError::Store("no connection to the journal".into())),
                },
            };
            if checked.is_err() {
                self.connection = None;
            }
            checked
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
