//! A dataset's table: searched a page at a time, or streamed whole, in the embedded SQLite.
//!
//! Owns: opening a dataset's table (an SQLite file, read-only; or a CSV file imported once
//! into an SQLite file of the state folder, again whenever the CSV changes), checking that
//! every declared field is a column, and the queries. **Every value reaches SQL as a bound
//! parameter; identifiers come only from the dataset's declared fields** (validated names,
//! quoted). The natural order is the table's row order (a CSV's line order); pages in it seek
//! by row id when the row ids are dense (always for an imported CSV), so a page at offset
//! 900,000 costs what a page at offset 0 does; downloads walk the table in batches by row id.
//!
//! Does not own: the query's grammar on the wire (CKAN's `filters`, `q`, `sort`: the
//! gateway parses them into a [`Query`]), or who may read.

use super::{Dataset, FieldType, Source};
use futures_util::Stream;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Column, Row};
use std::path::{Path, PathBuf};

/// Rows fetched per batch of a download.
const BATCH_ROWS: i64 = 1000;

/// Why a table could not be opened or read. Messages name files and fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The source file or table is missing or unreadable.
    #[error("{0}")]
    Unavailable(String),
    /// The source does not have a declared field, or a value does not fit its type.
    #[error("{0}")]
    Mismatch(String),
}

fn sql_error(error: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("the dataset's table cannot be read: {error}"))
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

/// A dataset's table.
#[derive(Debug, Clone)]
pub struct Table {
    /// What identifies the data's version (for `ETag`): the source file's length and
    /// modification time.
    pub version: String,
    pool: SqlitePool,
    table: String,
    columns: Vec<(String, FieldType)>,
    /// Row ids are exactly 1..=count: a page of the natural order seeks.
    dense: bool,
    rows: u64,
}

fn quoted(identifier: &str) -> String {
    // Identifiers are validated (a-z 0-9 _) before they get here; quoting is belt and braces.
    format!("\"{}\"", identifier.replace('"', ""))
}

async fn pool(path: &Path, read_only: bool) -> Result<SqlitePool, StoreError> {
    let mut options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .create_if_missing(!read_only);
    if read_only {
        // Pages read through a memory map rather than read(2) into SQLite's cache: ~5x the
        // pages per second for SQLite alone here; through datagate the per-row costs around
        // it still dominate (docs/BENCHMARKS.md (f)).
        options = options.pragma("mmap_size", "268435456");
    }
    SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|e| sql_error(&e))
}

impl Table {
    /// Opens `dataset`'s table; a CSV source is imported into `state_dir` first when it is
    /// new or changed.
    pub async fn open(dataset: &Dataset, state_dir: &Path) -> Result<Table, StoreError> {
        let columns: Vec<(String, FieldType)> = dataset
            .raw
            .fields
            .iter()
            .map(|field| (field.name.clone(), field.kind))
            .collect();
        let version = match &dataset.source {
            Source::Sqlite { path, .. } | Source::Csv { path } => fingerprint(path)?,
        };
        let (path, table) = match &dataset.source {
            Source::Sqlite { path, table } => (path.clone(), table.clone()),
            Source::Csv { path } => (
                import_csv(dataset, path, state_dir).await?,
                "rows".to_owned(),
            ),
        };
        let pool = pool(&path, true).await?;
        let present: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT name FROM pragma_table_info({})",
            quoted_literal(&table)
        )))
        .fetch_all(&pool)
        .await
        .map_err(|e| sql_error(&e))?
        .iter()
        .filter_map(|row| row.try_get::<String, _>(0).ok())
        .collect();
        if present.is_empty() {
            return Err(StoreError::Mismatch(format!(
                "dataset {}: no table {table}",
                dataset.id()
            )));
        }
        for (name, _) in &columns {
            if !present.contains(name) {
                return Err(StoreError::Mismatch(format!(
                    "dataset {}: the table has no column {name}",
                    dataset.id()
                )));
            }
        }
        let (rows, max): (i64, Option<i64>) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT count(*), max(rowid) FROM {}",
            quoted(&table)
        )))
        .fetch_one(&pool)
        .await
        .map_err(|e| sql_error(&e))?;
        Ok(Table {
            version,
            pool,
            table: quoted(&table),
            columns,
            dense: max.unwrap_or(0) == rows,
            rows: u64::try_from(rows).unwrap_or(0),
        })
    }

    /// The number of rows.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The declared fields, in order.
    pub fn columns(&self) -> &[(String, FieldType)] {
        &self.columns
    }

    fn select_list(&self, fields: &[usize]) -> String {
        let chosen: Vec<usize> = if fields.is_empty() {
            (0..self.columns.len()).collect()
        } else {
            fields.to_vec()
        };
        chosen
            .iter()
            .map(|&i| quoted(&self.columns[i].0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `WHERE` clause and its bound values.
    fn conditions(&self, query: &Query) -> (String, Vec<Value>) {
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        for (field, accepted) in &query.filters {
            if accepted.is_empty() {
                clauses.push("0".to_owned());
                continue;
            }
            clauses.push(format!(
                "{} IN ({})",
                quoted(&self.columns[*field].0),
                vec!["?"; accepted.len()].join(", ")
            ));
            values.extend(accepted.iter().cloned());
        }
        if let Some(q) = &query.q {
            let text: Vec<String> = self
                .columns
                .iter()
                .filter(|(_, kind)| *kind == FieldType::Text)
                .map(|(name, _)| format!("{} LIKE ? ESCAPE '\\'", quoted(name)))
                .collect();
            if text.is_empty() {
                clauses.push("0".to_owned());
            } else {
                let pattern = format!(
                    "%{}%",
                    q.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                for _ in &text {
                    values.push(Value::String(pattern.clone()));
                }
                clauses.push(format!("({})", text.join(" OR ")));
            }
        }
        if clauses.is_empty() {
            (String::new(), values)
        } else {
            (format!(" WHERE {}", clauses.join(" AND ")), values)
        }
    }

    fn order(&self, query: &Query) -> String {
        let mut keys: Vec<String> = query
            .sort
            .iter()
            .map(|key| {
                format!(
                    "{} {}",
                    quoted(&self.columns[key.field].0),
                    if key.descending { "DESC" } else { "ASC" }
                )
            })
            .collect();
        keys.push("rowid ASC".to_owned());
        format!(" ORDER BY {}", keys.join(", "))
    }

    /// One page of `query`'s rows, as JSON objects of the chosen fields.
    pub async fn search(&self, query: &Query) -> Result<Vec<Map<String, Value>>, StoreError> {
        let select = self.select_list(&query.fields);
        let (sql, values) = if query.natural() && self.dense {
            // Seek: the row ids are 1..=rows, so the offset is a row id.
            (
                format!(
                    "SELECT {select} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    self.table
                ),
                vec![Value::from(query.offset), Value::from(query.limit)],
            )
        } else {
            let (conditions, mut values) = self.conditions(query);
            values.push(Value::from(query.limit));
            values.push(Value::from(query.offset));
            (
                format!(
                    "SELECT {select} FROM {}{conditions}{} LIMIT ? OFFSET ?",
                    self.table,
                    self.order(query)
                ),
                values,
            )
        };
        let rows = bind(sqlx::query(sqlx::AssertSqlSafe(sql)), &values)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
        Ok(rows.iter().map(|row| self.to_json(row)).collect())
    }

    /// How many rows match `query` (its page ignored).
    pub async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        if query.filters.is_empty() && query.q.is_none() {
            return Ok(self.rows);
        }
        let (conditions, values) = self.conditions(query);
        let sql = format!("SELECT count(*) FROM {}{conditions}", self.table);
        let row = bind(sqlx::query(sqlx::AssertSqlSafe(sql)), &values)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
        Ok(u64::try_from(row.try_get::<i64, _>(0).unwrap_or(0)).unwrap_or(0))
    }

    /// Every row in the natural order, in batches of [`BATCH_ROWS`] fetched by row id: a
    /// download never holds more than one batch.
    pub fn stream(
        &self,
    ) -> impl Stream<Item = Result<Vec<Map<String, Value>>, StoreError>> + use<> {
        let table = self.clone();
        futures_util::stream::unfold(Some(0i64), move |after| {
            let table = table.clone();
            async move {
                let after = after?;
                let sql = format!(
                    "SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    table.select_list(&[]),
                    table.table
                );
                let batch = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(after)
                    .bind(BATCH_ROWS)
                    .fetch_all(&table.pool)
                    .await;
                match batch {
                    Err(error) => Some((Err(sql_error(&error)), None)),
                    Ok(rows) if rows.is_empty() => None,
                    Ok(rows) => {
                        let last = rows
                            .last()
                            .and_then(|row| row.try_get::<i64, _>(0).ok())
                            .unwrap_or(i64::MAX);
                        let next = (rows.len() as i64 == BATCH_ROWS).then_some(last);
                        let page = rows.iter().map(|row| table.to_json(row)).collect();
                        Some((Ok(page), next))
                    }
                }
            }
        })
    }

    fn to_json(&self, row: &SqliteRow) -> Map<String, Value> {
        let mut object = Map::new();
        for column in row.columns() {
            let name = column.name();
            let Some((_, kind)) = self.columns.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let index = column.ordinal();
            let value = match kind {
                FieldType::Integer => row
                    .try_get::<Option<i64>, _>(index)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, Value::from),
                FieldType::Number => row
                    .try_get::<Option<f64>, _>(index)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, Value::from),
                FieldType::Text | FieldType::Date => row
                    .try_get::<Option<String>, _>(index)
                    .ok()
                    .flatten()
                    .map_or(Value::Null, Value::String),
            };
            object.insert(name.to_owned(), value);
        }
        object
    }
}

/// `'text'` as an SQL string literal (for `pragma_table_info`, whose argument cannot be bound
/// in every SQLite version); the text is a validated identifier.
fn quoted_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', ""))
}

fn bind<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    values: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for value in values {
        query = match value {
            Value::Null => query.bind(None::<String>),
            Value::Bool(b) => query.bind(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => query.bind(i),
                None => query.bind(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => query.bind(s.as_str()),
            other => query.bind(other.to_string()),
        };
    }
    query
}

/// The SQLite file a CSV is imported into, and the marker of what was imported.
fn imported_paths(state_dir: &Path, id: &str) -> (PathBuf, PathBuf) {
    let dir = state_dir.join("opendata");
    (
        dir.join(format!("{id}.sqlite")),
        dir.join(format!("{id}.source")),
    )
}

/// What identifies a CSV's content cheaply: its length and modification time.
fn fingerprint(path: &Path) -> Result<String, StoreError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!("{}:{modified}", meta.len()))
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
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
    }
    let partial = target.with_extension("sqlite.partial");
    let _ = std::fs::remove_file(&partial);
    let pool = pool(&partial, false).await?;
    let columns: Vec<String> = dataset
        .raw
        .fields
        .iter()
        .map(|field| {
            let kind = match field.kind {
                FieldType::Integer => "INTEGER",
                FieldType::Number => "REAL",
                FieldType::Text | FieldType::Date => "TEXT",
            };
            format!("{} {kind}", quoted(&field.name))
        })
        .collect();
    let key = quoted(&dataset.raw.fields[dataset.key].name);
    for statement in [
        "PRAGMA journal_mode = OFF".to_owned(),
        "PRAGMA synchronous = OFF".to_owned(),
        format!("CREATE TABLE rows ({})", columns.join(", ")),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .map_err(|e| sql_error(&e))?;
    }
    let file = std::fs::File::open(csv)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", csv.display())))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file);
    let headers = reader
        .headers()
        .map_err(|e| StoreError::Mismatch(format!("{}: {e}", csv.display())))?
        .clone();
    let positions: Vec<usize> = dataset
        .raw
        .fields
        .iter()
        .map(|field| {
            headers
                .iter()
                .position(|h| h.trim() == field.name)
                .ok_or_else(|| {
                    StoreError::Mismatch(format!(
                        "{}: no column {} in the header",
                        csv.display(),
                        field.name
                    ))
                })
        })
        .collect::<Result<_, _>>()?;
    let insert = format!(
        "INSERT INTO rows VALUES ({})",
        vec!["?"; positions.len()].join(", ")
    );
    let mut transaction = pool.begin().await.map_err(|e| sql_error(&e))?;
    for (line, record) in reader.records().enumerate() {
        let record = record.map_err(|e| {
            StoreError::Mismatch(format!("{}: line {}: {e}", csv.display(), line + 2))
        })?;
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
        for (field, &position) in dataset.raw.fields.iter().zip(&positions) {
            let text = record.get(position).unwrap_or("").trim();
            statement = match (field.kind, text.is_empty()) {
                (_, true) => statement.bind(None::<String>),
                (FieldType::Integer, false) => {
                    statement.bind(text.parse::<i64>().map_err(|_| {
                        StoreError::Mismatch(format!(
                            "{}: line {}: field {} is not an integer",
                            csv.display(),
                            line + 2,
                            field.name
                        ))
                    })?)
                }
                (FieldType::Number, false) => {
                    statement.bind(text.parse::<f64>().map_err(|_| {
                        StoreError::Mismatch(format!(
                            "{}: line {}: field {} is not a number",
                            csv.display(),
                            line + 2,
                            field.name
                        ))
                    })?)
                }
                (FieldType::Text | FieldType::Date, false) => statement.bind(text.to_owned()),
            };
        }
        statement
            .execute(&mut *transaction)
            .await
            .map_err(|e| sql_error(&e))?;
    }
    transaction.commit().await.map_err(|e| sql_error(&e))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX rows_key ON rows ({key})"
    )))
    .execute(&pool)
    .await
    .map_err(|e| sql_error(&e))?;
    pool.close().await;
    std::fs::rename(&partial, &target)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", target.display())))?;
    std::fs::write(&marker, print)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", marker.display())))?;
    Ok(target)
}
