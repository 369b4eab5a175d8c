//! A dataset's table: searched a page at a time, counted, or streamed whole, from one of
//! three backends.
//!
//! - **SQLite** (`source.kind: sqlite`): a table of an SQLite file, read-only
//!   ([`sqlite`], through `rusqlite` on the blocking pool: one hand-off per page).
//! - **CSV** (`csv`) and an **upstream REST service** (`rest`): imported into an SQLite file
//!   of the state folder ([`import_csv`] when the file changes; [`import_upstream`] with the
//!   bytes the gateway fetched), then read as above.
//! - **PostgreSQL** (`postgres`): a table or view of the node's open-data database
//!   ([`postgres`], through `sqlx`), read live.
//!
//! Owns: opening a table (checking every declared field is a column), the queries, and the
//! imports. **Every value reaches SQL as a bound parameter; identifiers come only from the
//! dataset's declared fields** (validated names, quoted). The natural order is the table's
//! row order (a CSV's line order; for PostgreSQL, the key's order); pages in it seek by row
//! id when the row ids are dense (always for an imported file), so a page at offset 900,000
//! costs what a page at offset 0 does; downloads walk the table in batches by row id (by key
//! for PostgreSQL).
//!
//! Does not own: the query's grammar on the wire (CKAN's `filters`, `q`, `sort`: the
//! gateway parses them into a [`Query`]), fetching an upstream (the gateway's HTTP client),
//! what a [`Cell`] becomes on the wire, or who may read.

mod postgres;
mod sqlite;

use super::{Dataset, FieldType, Source};
use futures_util::Stream;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Rows fetched per batch of a download.
const BATCH_ROWS: i64 = 1000;

/// Why a table could not be opened or read. Messages name files and fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The source file, table or database is missing or unreadable.
    #[error("{0}")]
    Unavailable(String),
    /// The source does not have a declared field, or a value does not fit its type.
    #[error("{0}")]
    Mismatch(String),
}

/// A sort key: a field's index and whether it is descending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortKey {
    /// The field's index in the dataset's fields.
    pub field: usize,
    /// Descending.
    pub descending: bool,
}

/// A search: filters (equality, by field), a free-text query over the text fields, a sort,
/// the fields to return, a page.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// `field` is one of the values, by field index (values already of the field's type).
    pub filters: Vec<(usize, Vec<Value>)>,
    /// Free text: rows with a text field containing it (case-insensitive for ASCII).
    pub q: Option<String>,
    /// Sort keys; empty: the natural order.
    pub sort: Vec<SortKey>,
    /// The fields to return, by index; empty: all.
    pub fields: Vec<usize>,
    /// Rows of the page.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
}

impl Query {
    fn natural(&self) -> bool {
        self.filters.is_empty() && self.q.is_none() && self.sort.is_empty()
    }
}

/// One value of a row, of its field's declared type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value.
    Null,
    /// A whole number.
    Integer(i64),
    /// A decimal number.
    Number(f64),
    /// Text (and dates, `YYYY-MM-DD`).
    Text(String),
}

impl serde::Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Null => serializer.serialize_unit(),
            Cell::Integer(i) => serializer.serialize_i64(*i),
            Cell::Number(n) => serializer.serialize_f64(*n),
            Cell::Text(t) => serializer.serialize_str(t),
        }
    }
}

/// Rows of chosen fields, row-major in one vector (no allocation per row).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The fields of each row, by index in the dataset's fields.
    pub fields: Vec<usize>,
    cells: Vec<Cell>,
}

impl Page {
    fn new(fields: Vec<usize>, capacity: usize) -> Page {
        Page {
            fields,
            cells: Vec::with_capacity(capacity),
        }
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.cells.len() / self.fields.len().max(1)
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// Each row's cells, in `fields`' order.
    pub fn rows(&self) -> impl Iterator<Item = &[Cell]> {
        self.cells.chunks(self.fields.len().max(1))
    }
}

fn quoted(identifier: &str) -> String {
    // Identifiers are validated (a-z 0-9 _) before they get here; quoting is belt and braces.
    format!("\"{}\"", identifier.replace('"', ""))
}

/// `%q%` for `LIKE … ESCAPE '\'`, with `q`'s own wildcards escaped.
fn like_pattern(q: &str) -> String {
    format!(
        "%{}%",
        q.replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    )
}

/// ` ORDER BY` the query's sort keys, then `tiebreak` (a unique column: pages are stable).
fn order_by(query: &Query, columns: &[(String, FieldType)], tiebreak: &str) -> String {
    let mut keys: Vec<String> = query
        .sort
        .iter()
        .map(|key| {
            format!(
                "{} {}",
                quoted(&columns[key.field].0),
                if key.descending { "DESC" } else { "ASC" }
            )
        })
        .collect();
    keys.push(format!("{tiebreak} ASC"));
    format!(" ORDER BY {}", keys.join(", "))
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteTable),
    Postgres(postgres::PgTable),
}

/// A dataset's table.
#[derive(Debug, Clone)]
pub struct Table {
    /// What identifies the data's version (for `ETag`): the source file's length and
    /// modification time, or the upstream answer's digest; none for a live database.
    pub version: Option<String>,
    columns: Vec<(String, FieldType)>,
    backend: Backend,
}

/// Where the open-data tables that are not files live: the node's PostgreSQL database
/// (`[datasets] postgres_url`), when it has one.
#[derive(Debug, Clone, Default)]
pub struct Databases {
    /// Connection options of the open-data database.
    pub postgres: Option<sqlx::postgres::PgConnectOptions>,
}

impl Table {
    /// Opens `dataset`'s table; a CSV source is imported into `state_dir` first when it is
    /// new or changed; an upstream source reads its last import ([`import_upstream`]).
    pub async fn open(
        dataset: &Dataset,
        state_dir: &Path,
        databases: &Databases,
    ) -> Result<Table, StoreError> {
        let columns: Vec<(String, FieldType)> = dataset
            .raw
            .fields
            .iter()
            .map(|field| (field.name.clone(), field.kind))
            .collect();
        let (version, backend) = match &dataset.source {
            Source::Sqlite { path, table } => (
                Some(fingerprint(path)?),
                Backend::Sqlite(sqlite::SqliteTable::open(dataset, path, table).await?),
            ),
            Source::Csv { path } => {
                let imported = import_csv(dataset, path, state_dir).await?;
                (
                    Some(fingerprint(path)?),
                    Backend::Sqlite(sqlite::SqliteTable::open(dataset, &imported, "rows").await?),
                )
            }
            Source::Rest { .. } => {
                let (target, marker) = imported_paths(state_dir, dataset.id());
                let version = std::fs::read_to_string(&marker).map_err(|_| {
                    StoreError::Unavailable(format!(
                        "dataset {}: its upstream has not been imported yet",
                        dataset.id()
                    ))
                })?;
                (
                    Some(version),
                    Backend::Sqlite(sqlite::SqliteTable::open(dataset, &target, "rows").await?),
                )
            }
            Source::Postgres { schema, table } => {
                let options = databases.postgres.clone().ok_or_else(|| {
                    StoreError::Unavailable(format!(
                        "dataset {}: the node has no open-data database ([datasets] postgres_url)",
                        dataset.id()
                    ))
                })?;
                (
                    None,
                    Backend::Postgres(
                        postgres::PgTable::open(dataset, options, schema, table).await?,
                    ),
                )
            }
        };
        Ok(Table {
            version,
            columns,
            backend,
        })
    }

    /// The number of rows (when the table was opened).
    pub fn rows(&self) -> u64 {
        match &self.backend {
            Backend::Sqlite(table) => table.rows(),
            Backend::Postgres(table) => table.rows(),
        }
    }

    /// The declared fields, in order.
    pub fn columns(&self) -> &[(String, FieldType)] {
        &self.columns
    }

    fn chosen(&self, fields: &[usize]) -> Vec<usize> {
        if fields.is_empty() {
            (0..self.columns.len()).collect()
        } else {
            fields.to_vec()
        }
    }

    /// One page of `query`'s rows, of the chosen fields.
    pub async fn search(&self, query: &Query) -> Result<Page, StoreError> {
        let fields = self.chosen(&query.fields);
        match &self.backend {
            Backend::Sqlite(table) => table.search(query, fields).await,
            Backend::Postgres(table) => table.search(query, fields).await,
        }
    }

    /// How many rows match `query` (its page ignored).
    pub async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        if query.filters.is_empty()
            && query.q.is_none()
            && let Backend::Sqlite(table) = &self.backend
        {
            return Ok(table.rows());
        }
        match &self.backend {
            Backend::Sqlite(table) => table.count(query).await,
            Backend::Postgres(table) => table.count(query).await,
        }
    }

    /// Every row in the natural order, in batches of [`BATCH_ROWS`]: a download never holds
    /// more than one batch.
    pub fn stream(&self) -> impl Stream<Item = Result<Page, StoreError>> + use<> {
        let backend = self.backend.clone();
        futures_util::stream::unfold(Some(Cursor::Start), move |cursor| {
            let backend = backend.clone();
            async move {
                let cursor = cursor?;
                let batch = match (&backend, cursor) {
                    (Backend::Sqlite(table), Cursor::Start) => table
                        .batch(0)
                        .await
                        .map(|(page, next)| (page, next.map(Cursor::RowId))),
                    (Backend::Sqlite(table), Cursor::RowId(after)) => table
                        .batch(after)
                        .await
                        .map(|(page, next)| (page, next.map(Cursor::RowId))),
                    (Backend::Postgres(table), Cursor::Start) => table
                        .batch(None)
                        .await
                        .map(|(page, next)| (page, next.map(Cursor::Key))),
                    (Backend::Postgres(table), Cursor::Key(after)) => table
                        .batch(Some(after))
                        .await
                        .map(|(page, next)| (page, next.map(Cursor::Key))),
                    (_, _) => return None,
                };
                match batch {
                    Err(error) => Some((Err(error), None)),
                    Ok((page, _)) if page.is_empty() => None,
                    Ok((page, next)) => Some((Ok(page), next)),
                }
            }
        })
    }
}

/// Where a download continues.
#[derive(Debug, Clone)]
enum Cursor {
    Start,
    RowId(i64),
    Key(Cell),
}

/// The SQLite file an imported source lives in, and the marker of what was imported.
fn imported_paths(state_dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("opendata");
    (
        dir.join(format!("{id}.sqlite")),
        dir.join(format!("{id}.source")),
    )
}

/// What identifies a file's content cheaply: its length and modification time.
fn fingerprint(path: &Path) -> Result<String, StoreError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}-{modified}", meta.len()))
}

fn create_state_dir(target: &Path) -> Result<(), StoreError> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Imports `csv` into an SQLite file of `state_dir` (a table `rows`, one column per declared
/// field, row ids in line order), unless the last import was of the same file content.
async fn import_csv(
    dataset: &Dataset,
    csv: &Path,
    state_dir: &Path,
) -> Result<PathBuf, StoreError> {
    let (target, marker) = imported_paths(state_dir, dataset.id());
    let print = fingerprint(csv)?;
    if target.is_file() && std::fs::read_to_string(&marker).ok().as_deref() == Some(print.as_str())
    {
        return Ok(target);
    }
    create_state_dir(&target)?;
    let file = std::fs::File::open(csv)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", csv.display())))?;
    let (dataset, origin, into) = (dataset.clone(), csv.display().to_string(), target.clone());
    tokio::task::spawn_blocking(move || {
        sqlite::import(&dataset, sqlite::Rows::Csv(Box::new(file)), &into, &origin)
    })
    .await
    .map_err(|_| StoreError::Unavailable("the import stopped".into()))??;
    std::fs::write(&marker, print)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", marker.display())))?;
    Ok(target)
}

/// What an upstream answered, for [`import_upstream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFormat {
    /// A JSON array of objects keyed by field name (or `{"records": [...]}`).
    Json,
    /// CSV with a header row naming the fields.
    Csv,
}

/// Imports an upstream's answer (`body`, already read whole under the gateway's cap) into
/// the dataset's SQLite file of `state_dir`, unless it is the same as the last import.
/// Returns whether anything changed. A failed import leaves the last good one in place.
pub async fn import_upstream(
    dataset: &Dataset,
    body: bytes::Bytes,
    format: UpstreamFormat,
    state_dir: &Path,
) -> Result<bool, StoreError> {
    use base64::Engine as _;
    let (target, marker) = imported_paths(state_dir, dataset.id());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
    let print = format!(
        "sha256-{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
    );
    if target.is_file() && std::fs::read_to_string(&marker).ok().as_deref() == Some(print.as_str())
    {
        return Ok(false);
    }
    let rows = match format {
        UpstreamFormat::Csv => sqlite::Rows::Csv(Box::new(std::io::Cursor::new(body))),
        UpstreamFormat::Json => {
            let value: Value = serde_json::from_slice(&body).map_err(|e| {
                StoreError::Mismatch(format!(
                    "dataset {}: the upstream's answer is not JSON ({})",
                    dataset.id(),
                    e.classify() as u8
                ))
            })?;
            let array = match value {
                Value::Array(array) => array,
                Value::Object(mut object) => match object.remove("records") {
                    Some(Value::Array(array)) => array,
                    _ => Vec::new(),
                },
                _ => Vec::new(),
            };
            let mut objects = Vec::with_capacity(array.len());
            for (i, item) in array.into_iter().enumerate() {
                match item {
                    Value::Object(object) => objects.push(object),
                    _ => {
                        return Err(StoreError::Mismatch(format!(
                            "dataset {}: the upstream's item {i} is not an object",
                            dataset.id()
                        )));
                    }
                }
            }
            sqlite::Rows::Json(objects)
        }
    };
    create_state_dir(&target)?;
    let (owned, origin, into) = (
        dataset.clone(),
        format!("dataset {}: upstream", dataset.id()),
        target.clone(),
    );
    tokio::task::spawn_blocking(move || sqlite::import(&owned, rows, &into, &origin))
        .await
        .map_err(|_| StoreError::Unavailable("the import stopped".into()))??;
    std::fs::write(&marker, print)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", marker.display())))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_the_callers_wildcards() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }

    #[test]
    fn a_page_is_rows_of_its_fields() {
        let mut page = Page::new(vec![0, 2], 4);
        page.cells.extend([
            Cell::Integer(1),
            Cell::Text("a".into()),
            Cell::Integer(2),
            Cell::Null,
        ]);
        assert_eq!(page.len(), 2);
        let rows: Vec<&[Cell]> = page.rows().collect();
        assert_eq!(rows[1], &[Cell::Integer(2), Cell::Null][..]);
        assert_eq!(
            serde_json::to_string(&rows[0]).expect("cells serialize"),
            r#"[1,"a"]"#
        );
    }
}
