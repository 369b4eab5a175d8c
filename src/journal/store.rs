//! Where a journal lives and how it is read back, whichever the backend: the embedded
//! SQLite file (one chain) or a PostgreSQL schema shared by a node's replicas (one chain
//! per writing process).
//!
//! Owns: [`Locator`] (a journal's address), [`Reader`] (read-only access: chains, records
//! in sequence, seals, one exchange's records, filtered scans) and the SQL dialect
//! differences between the two backends. Does not own: writing ([`super::sqlite`],
//! [`super::postgres`]), checking ([`super::verify`]) or what the reads mean.

use super::JournalError;
use super::bundle::BundleSeal;
use super::chain;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::{ConnectOptions as _, Row as _};
use std::path::PathBuf;

/// The name of the one chain of an embedded journal.
pub const SQLITE_CHAIN: &str = "local";

/// Where a journal lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// The embedded journal: a SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL schema.
    Postgres(PgLocation),
}

/// A PostgreSQL journal: server, schema, and (when writing) this process's chain.
#[derive(Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// `postgres://…` URL.
    pub url: String,
    /// The schema holding the journal's tables.
    pub schema: String,
    /// The chain this process writes; readers may leave it empty to read every chain.
    pub chain: Option<String>,
}

impl std::fmt::Debug for PgLocation {
    // The URL may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLocation")
            .field("schema", &self.schema)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl PgLocation {
    /// Connection options: the URL with the schema first on the search path.
    pub fn options(&self) -> Result<sqlx::postgres::PgConnectOptions, JournalError> {
        let options: sqlx::postgres::PgConnectOptions = self.url.parse().map_err(|_| {
            JournalError::Store("the journal's PostgreSQL URL does not parse".into())
        })?;
        Ok(options
            .options([("search_path", self.schema.as_str())])
            .application_name("datagate-journal"))
    }
}

/// Whether `name` is a schema name the journal accepts (unquoted SQL identifier).
pub fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

/// Whether `name` is a chain name the journal accepts.
pub fn valid_chain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

pub(super) fn store_error(error: sqlx::Error) -> JournalError {
    JournalError::Store(error.to_string())
}

/// One record as stored: what verification and export read.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    /// Its sequence number in its chain.
    pub seq: i64,
    /// The chain's encoding version (`None`: written before the chain existed).
    pub chain_version: Option<i64>,
    /// The previous record's hash (hex).
    pub prev_hash: Option<String>,
    /// Its hash (hex).
    pub record_hash: Option<String>,
    /// Its values in [`chain::CHAINED_FIELDS`] order, as text.
    pub values: Vec<Option<String>>,
}

impl StoredRecord {
    /// Its `X-Road-Id`.
    pub fn message_id(&self) -> &str {
        self.values[0].as_deref().unwrap_or_default()
    }

    /// When it was received (`request_in_at`, RFC 3339 text).
    pub fn received(&self) -> &str {
        self.values[10].as_deref().unwrap_or_default()
    }
}

fn stored_record<R>(row: &R) -> StoredRecord
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
    String: sqlx::Type<R::Database>,
{
    StoredRecord {
        seq: row.get(0),
        chain_version: row.get(1),
        prev_hash: row.get(2),
        record_hash: row.get(3),
        values: (0..chain::CHAINED_FIELDS.len())
            .map(|i| row.get::<Option<String>, _>(4 + i))
            .collect(),
    }
}

fn stored_seal<R>(row: &R) -> BundleSeal
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
{
    BundleSeal {
        first_seq: row.get(0),
        last_seq: row.get(1),
        merkle_root: row.get(2),
        head_hash: row.get(3),
        sealed_at: row.get(4),
        algorithm: row.get(5),
        signature: row.get(6),
        certificate: row.get(7),
        timestamp: row.get(8),
    }
}

const SEAL_COLUMNS: &str = "first_seq, last_seq, merkle_root, head_hash, sealed_at, algorithm, \
                            signature, certificate, timestamp_token";

/// Filters of a journal query (the admin API); every one optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Received at or after (RFC 3339, UTC).
    pub from: Option<String>,
    /// Received before (RFC 3339, UTC).
    pub to: Option<String>,
    /// The calling subsystem.
    pub consumer: Option<String>,
    /// The provider: a member or subsystem id, matched as a prefix of the service id.
    pub provider: Option<String>,
    /// The service id.
    pub service: Option<String>,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// The contract that allowed the exchange.
    pub contract: Option<String>,
    /// The keyed digest of a data subject (who accessed my data).
    #[serde(skip)]
    pub subject_digest: Option<String>,
}

impl Filter {
    /// The WHERE clause (`TRUE` when empty) and its text arguments, with placeholders
    /// written by `placeholder(n)` (n from 1).
    fn clause(&self, placeholder: impl Fn(usize) -> String) -> (String, Vec<String>) {
        let mut terms = Vec::new();
        let mut args = Vec::new();
        let mut push = |term: &str, arg: String| {
            args.push(arg);
            terms.push(term.replace('?', &placeholder(args.len())));
        };
        if let Some(from) = &self.from {
            push("request_in_at >= ?", from.clone());
        }
        if let Some(to) = &self.to {
            push("request_in_at < ?", to.clone());
        }
        if let Some(consumer) = &self.consumer {
            push("client = ?", consumer.clone());
        }
        if let Some(provider) = &self.provider {
            // A member id matches its subsystems' services: `VN/GOV/M` then `/`.
            let escaped = provider
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            push("service LIKE ? ESCAPE '\\'", format!("{escaped}/%"));
        }
        if let Some(service) = &self.service {
            push("service = ?", service.clone());
        }
        if let Some(status) = self.status {
            push("CAST(status AS TEXT) = ?", status.to_string());
        }
        if let Some(contract) = &self.contract {
            push("contract_id = ?", contract.clone());
        }
        if let Some(subject) = &self.subject_digest {
            push("subject_digest = ?", subject.clone());
        }
        if terms.is_empty() {
            ("TRUE".to_owned(), args)
        } else {
            (terms.join(" AND "), args)
        }
    }
}

/// Read-only access to a journal.
#[derive(Debug)]
pub enum Reader {
    /// The embedded journal.
    Sqlite(sqlx::SqliteConnection),
    /// A PostgreSQL journal.
    Postgres(sqlx::PgConnection),
}

impl Reader {
    /// Opens `locator` for reading (a SQLite file read-only; nothing is created).
    pub async fn open(locator: &Locator) -> Result<Self, JournalError> {
        match locator {
            Locator::Sqlite(path) => {
                if !path.exists() {
                    return Err(JournalError::Store(format!(
                        "{} does not exist",
                        path.display()
                    )));
                }
                let connection = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(path)
                    .read_only(true)
                    .connect()
                    .await
                    .map_err(store_error)?;
                Ok(Reader::Sqlite(connection))
            }
            Locator::Postgres(location) => {
                let connection = location.options()?.connect().await.map_err(store_error)?;
                Ok(Reader::Postgres(connection))
            }
        }
    }

    /// The chains this journal holds, by name.
    pub async fn chains(&mut self) -> Result<Vec<String>, JournalError> {
        match self {
            Reader::Sqlite(_) => Ok(vec![SQLITE_CHAIN.to_owned()]),
            Reader::Postgres(connection) => {
                sqlx::query_scalar("SELECT name FROM chains ORDER BY name")
                    .fetch_all(connection)
                    .await
                    .map_err(store_error)
            }
        }
    }

    /// The highest sequence number of `chain` (0 when empty), for progress.
    pub async fn last_seq(&mut self, chain: &str) -> Result<i64, JournalError> {
        let last: Option<i64> = match self {
            Reader::Sqlite(connection) => sqlx::query_scalar("SELECT MAX(seq) FROM exchanges")
                .fetch_one(connection)
                .await
                .map_err(store_error)?,
            Reader::Postgres(connection) => {
                sqlx::query_scalar("SELECT MAX(seq) FROM exchanges WHERE chain = $1")
                    .bind(chain)
                    .fetch_one(connection)
                    .await
                    .map_err(store_error)?
            }
        };
        Ok(last.unwrap_or(0))
    }

    /// Every record of `chain` from `after_seq` (exclusive), in sequence, streamed.
    pub fn records<'a>(
        &'a mut self,
        chain: &'a str,
        after_seq: i64,
    ) -> BoxStream<'a, Result<StoredRecord, JournalError>> {
        let columns = chain::chained_columns_sql();
        match self {
            Reader::Sqlite(connection) => {
                // The column names are the chain's own constants, never input.
                let query = format!(
                    "SELECT seq, chain_version, prev_hash, record_hash, {columns} FROM exchanges \
                     WHERE seq > ? ORDER BY seq"
                );
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .bind(after_seq)
                    .fetch(connection)
                    .map_ok(|row| stored_record(&row))
                    .map_err(store_error)
                    .boxed()
            }
            Reader::Postgres(connection) => {
                let query = format!(
                    "SELECT seq, chain_version, prev_hash, record_hash, {columns} FROM exchanges \
                     WHERE chain = $1 AND seq > $2 ORDER BY seq"
                );
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .bind(chain)
                    .bind(after_seq)
                    .fetch(connection)
                    .map_ok(|row| stored_record(&row))
                    .map_err(store_error)
                    .boxed()
            }
        }
    }

    /// The seals of `chain` over records after `after_seq`, in sequence, streamed.
    pub fn seals<'a>(
        &'a mut self,
        chain: &'a str,
        after_seq: i64,
    ) -> BoxStream<'a, Result<BundleSeal, JournalError>> {
        match self {
            Reader::Sqlite(connection) => {
                let query = format!(
                    "SELECT {SEAL_COLUMNS} FROM seals WHERE last_seq > ? ORDER BY first_seq"
                );
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .bind(after_seq)
                    .fetch(connection)
                    .map_ok(|row| stored_seal(&row))
                    .map_err(store_error)
                    .boxed()
            }
            Reader::Postgres(connection) => {
                let query = format!(
                    "SELECT {SEAL_COLUMNS} FROM seals WHERE chain = $1 AND last_seq > $2 \
                     ORDER BY first_seq"
                );
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .bind(chain)
                    .bind(after_seq)
                    .fetch(connection)
                    .map_ok(|row| stored_seal(&row))
                    .map_err(store_error)
                    .boxed()
            }
        }
    }

    /// The seal of `chain` covering `seq`, if any.
    pub async fn seal_covering(
        &mut self,
        chain: &str,
        seq: i64,
    ) -> Result<Option<BundleSeal>, JournalError> {
        match self {
            Reader::Sqlite(connection) => {
                let query = format!(
                    "SELECT {SEAL_COLUMNS} FROM seals WHERE first_seq <= ? AND last_seq >= ? LIMIT 1"
                );
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .bind(seq)
                    .bind(seq)
                    .fetch_optional(connection)
                    .await
                    .map(|row| row.map(|row| stored_seal(&row)))
            }
            Reader::Postgres(connection) => {
                let query = format!(
                    "SELECT {SEAL_COLUMNS} FROM seals WHERE chain = $1 AND first_seq <= $2 \
                     AND last_seq >= $2 LIMIT 1"
                );
                sqlx::query(sqlx::AssertSqlSafe(query))
                    .bind(chain)
                    .bind(seq)
                    .fetch_optional(connection)
                    .await
                    .map(|row| row.map(|row| stored_seal(&row)))
            }
        }
        .map_err(store_error)
    }

    /// The record hashes of `chain` from `first` to `last` (a sealed batch's leaves).
    pub async fn record_hashes(
        &mut self,
        chain: &str,
        first: i64,
        last: i64,
    ) -> Result<Vec<String>, JournalError> {
        match self {
            Reader::Sqlite(connection) => {
                sqlx::query_scalar(
                    "SELECT record_hash FROM exchanges WHERE seq >= ? AND seq <= ? ORDER BY seq",
                )
                .bind(first)
                .bind(last)
                .fetch_all(connection)
                .await
            }
            Reader::Postgres(connection) => sqlx::query_scalar(
                "SELECT record_hash FROM exchanges WHERE chain = $1 AND seq >= $2 AND seq <= $3 \
                 ORDER BY seq",
            )
            .bind(chain)
            .bind(first)
            .bind(last)
            .fetch_all(connection)
            .await,
        }
        .map_err(store_error)
    }

    /// The chained records of every chain matching `filter`, oldest first, at most `limit`,
    /// with their chain's name.
    pub async fn select(
        &mut self,
        filter: &Filter,
        message_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, StoredRecord)>, JournalError> {
        let columns = chain::chained_columns_sql();
        match self {
            Reader::Sqlite(connection) => {
                let (mut clause, mut args) = filter.clause(|_| "?".to_owned());
                if let Some(id) = message_id {
                    clause.push_str(" AND message_id = ?");
                    args.push(id.to_owned());
                }
                let query = format!(
                    "SELECT seq, chain_version, prev_hash, record_hash, {columns} FROM exchanges \
                     WHERE record_hash IS NOT NULL AND {clause} ORDER BY seq LIMIT {limit}"
                );
                let mut statement = sqlx::query(sqlx::AssertSqlSafe(query));
                for arg in args {
                    statement = statement.bind(arg);
                }
                let rows = statement.fetch_all(connection).await.map_err(store_error)?;
                Ok(rows
                    .iter()
                    .map(|row| (SQLITE_CHAIN.to_owned(), stored_record(row)))
                    .collect())
            }
            Reader::Postgres(connection) => {
                let (mut clause, mut args) = filter.clause(|n| format!("${n}"));
                if let Some(id) = message_id {
                    args.push(id.to_owned());
                    clause.push_str(&format!(" AND message_id = ${}", args.len()));
                }
                let query = format!(
                    "SELECT seq, chain_version, prev_hash, record_hash, {columns}, chain \
                     FROM exchanges WHERE record_hash IS NOT NULL AND {clause} \
                     ORDER BY request_in_at, chain, seq LIMIT {limit}"
                );
                let mut statement = sqlx::query(sqlx::AssertSqlSafe(query));
                for arg in args {
                    statement = statement.bind(arg);
                }
                let rows = statement.fetch_all(connection).await.map_err(store_error)?;
                let chain_column = 4 + chain::CHAINED_FIELDS.len();
                Ok(rows
                    .iter()
                    .map(|row| (row.get::<String, _>(chain_column), stored_record(row)))
                    .collect())
            }
        }
    }

    /// Every record matching `filter`, streamed in no particular order (summaries).
    pub fn scan<'a>(
        &'a mut self,
        filter: &Filter,
    ) -> BoxStream<'a, Result<StoredRecord, JournalError>> {
        let columns = chain::chained_columns_sql();
        match self {
            Reader::Sqlite(connection) => {
                let (clause, args) = filter.clause(|_| "?".to_owned());
                let query = format!(
                    "SELECT seq, chain_version, prev_hash, record_hash, {columns} FROM exchanges \
                     WHERE {clause}"
                );
                let mut statement = sqlx::query(sqlx::AssertSqlSafe(query));
                for arg in args {
                    statement = statement.bind(arg);
                }
                statement
                    .fetch(connection)
                    .map_ok(|row| stored_record(&row))
                    .map_err(store_error)
                    .boxed()
            }
            Reader::Postgres(connection) => {
                let (clause, args) = filter.clause(|n| format!("${n}"));
                let query = format!(
                    "SELECT seq, chain_version, prev_hash, record_hash, {columns} FROM exchanges \
                     WHERE {clause}"
                );
                let mut statement = sqlx::query(sqlx::AssertSqlSafe(query));
                for arg in args {
                    statement = statement.bind(arg);
                }
                statement
                    .fetch(connection)
                    .map_ok(|row| stored_record(&row))
                    .map_err(store_error)
                    .boxed()
            }
        }
    }
}

/// A record as the ops and admin APIs show it: identifiers and digests, never payloads.
pub fn record_json(chain: &str, record: &StoredRecord) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    object.insert("chain".into(), chain.into());
    object.insert("seq".into(), record.seq.into());
    for (name, value) in chain::CHAINED_FIELDS.iter().zip(&record.values) {
        let value = match (*name, value) {
            ("status" | "request_bytes" | "response_bytes", Some(text)) => text
                .parse::<i64>()
                .map(serde_json::Value::from)
                .unwrap_or_else(|_| text.clone().into()),
            (_, Some(text)) => text.clone().into(),
            (_, None) => serde_json::Value::Null,
        };
        object.insert((*name).to_owned(), value);
    }
    serde_json::Value::Object(object)
}

/// The columns a record is inserted with, in [`bind_record`]'s order (`seq` first).
pub(super) const INSERT_COLUMNS: &str = "seq, message_id, client, service, method, operation, \
    purpose, contract_id, peer_fingerprint, status, error_code, request_in_at, request_out_at, \
    response_in_at, response_out_at, request_bytes, response_bytes, request_digest, \
    response_digest, subject_digest, leg, signature_digest, remote_key_id, key_id, \
    chain_version, prev_hash, record_hash";

/// Binds one chained record's values in [`INSERT_COLUMNS`] order, for either backend.
pub(super) fn bind_record<DB, Sep>(
    row: &mut sqlx::query_builder::Separated<'_, DB, Sep>,
    record: &super::ExchangeRecord,
    link: &chain::ChainedRow,
) where
    DB: sqlx::Database,
    Sep: std::fmt::Display,
    for<'t> i64: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> String: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> Option<String>: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    for<'t> &'static str: sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    let r = record;
    row.push_bind(link.seq)
        .push_bind(r.message_id.clone())
        .push_bind(r.client.clone())
        .push_bind(r.service.clone())
        .push_bind(r.method.clone())
        .push_bind(r.operation.clone())
        .push_bind(r.purpose.clone())
        .push_bind(r.contract_id.clone())
        .push_bind(r.peer_fingerprint.clone())
        .push_bind(i64::from(r.status))
        .push_bind(r.error_code.clone())
        .push_bind(link.values[10].clone())
        .push_bind(link.values[11].clone())
        .push_bind(link.values[12].clone())
        .push_bind(link.values[13].clone())
        .push_bind(r.request_bytes as i64)
        .push_bind(r.response_bytes as i64)
        .push_bind(r.request_digest.clone())
        .push_bind(r.response_digest.clone())
        .push_bind(r.subject_digest.clone())
        .push_bind(r.leg)
        .push_bind(r.signature_digest.clone())
        .push_bind(r.remote_key_id.clone())
        .push_bind(r.key_id.clone())
        .push_bind(chain::CHAIN_VERSION)
        .push_bind(link.prev_hash.clone())
        .push_bind(link.record_hash.clone());
}
