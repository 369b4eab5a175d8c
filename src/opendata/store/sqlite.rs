//! The embedded backend: a table of an SQLite file, read through `rusqlite` on the blocking
//! pool, one hand-off per page (decision 0012); and the importer that turns a CSV file or an
//! upstream's JSON or CSV answer into such a file.
//!
//! Owns: the connections (read-only, memory-mapped, a few kept idle), the SQL of a search, a
//! count and a batch, and the import. Does not own: the query's grammar (the caller's
//! [`Query`]) or what a cell becomes on the wire.

use super::{BATCH_ROWS, Cell, Page, Query, StoreError, quoted};
use crate::opendata::{Dataset, FieldType};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Idle connections kept per table.
const IDLE_CONNECTIONS: usize = 4;

/// The longest one statement may run: a search past it is interrupted and answered as
/// unavailable, so a costly query (a deep page of an unindexed sort) cannot hold a reader.
const STATEMENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

fn sql_error(error: &rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("the dataset's table cannot be read: {error}"))
}

/// Read-only connections to one file: taken for one statement, put back after.
#[derive(Debug)]
struct Connections {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// [`STATEMENT_LIMIT`], shorter in tests.
    limit: std::time::Duration,
}

impl Connections {
    fn open(&self) -> Result<Connection, StoreError> {
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(&e))?;
        // Pages read through a memory map rather than read(2) into SQLite's cache.
        connection
            .pragma_update(None, "mmap_size", 268_435_456i64)
            .map_err(|e| sql_error(&e))?;
        Ok(connection)
    }

    /// Runs `work` on an idle connection (or a new one), on the blocking pool.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let idle = this.idle.lock().ok().and_then(|mut idle| idle.pop());
            let connection = match idle {
                Some(connection) => connection,
                None => this.open()?,
            };
            // Checked every 10,000 virtual-machine steps; a clock read per check is cheap.
            let deadline = tokio::time::Instant::now() + this.limit;
            connection
                .progress_handler(10_000, Some(move || tokio::time::Instant::now() > deadline))
                .map_err(|e| sql_error(&e))?;
            let outcome = work(&connection);
            connection
                .progress_handler(0, None::<fn() -> bool>)
                .map_err(|e| sql_error(&e))?;
            if let Ok(mut idle) = this.idle.lock()
                && idle.len() < IDLE_CONNECTIONS
            {
                idle.push(connection);
            }
            outcome
        })
        .await
        .map_err(|_| StoreError::Unavailable("the dataset's reader stopped".into()))?
    }
}

/// A dataset's table in an SQLite file.
#[derive(Debug, Clone)]
pub(super) struct SqliteTable {
    connections: Arc<Connections>,
    table: String,
    columns: Arc<[(String, FieldType)]>,
    /// Row ids are exactly 1..=rows: a page of the natural order seeks.
    dense: bool,
    rows: u64,
}

fn to_sql(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// A stored value as a cell of the declared type (SQLite's columns are loosely typed: an
/// integer in a text column reads as its text, a real in an integer column as nothing
/// unless it is whole).
fn cell(value: ValueRef<'_>, kind: FieldType) -> Cell {
    match (value, kind) {
        (ValueRef::Null | ValueRef::Blob(_), _) => Cell::Null,
        (ValueRef::Integer(i), FieldType::Integer) => Cell::Integer(i),
        (ValueRef::Integer(i), FieldType::Number) => Cell::Number(i as f64),
        (ValueRef::Real(r), FieldType::Number) => Cell::Number(r),
        (ValueRef::Real(r), FieldType::Integer) if r.fract() == 0.0 && r.abs() < 9.0e15 => {
            Cell::Integer(r as i64)
        }
        (ValueRef::Real(_), FieldType::Integer) => Cell::Null,
        (ValueRef::Text(t), FieldType::Integer) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map_or(Cell::Null, Cell::Integer),
        (ValueRef::Text(t), FieldType::Number) => std::str::from_utf8(t)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map_or(Cell::Null, Cell::Number),
        (ValueRef::Text(t), FieldType::Text | FieldType::Date) => {
            Cell::Text(String::from_utf8_lossy(t).into_owned())
        }
        (ValueRef::Integer(i), FieldType::Text | FieldType::Date) => Cell::Text(i.to_string()),
        (ValueRef::Real(r), FieldType::Text | FieldType::Date) => Cell::Text(r.to_string()),
    }
}

/// Runs `sql` with `values` bound and appends every row's cells to `page`; returns the last
/// row's first column when `with_rowid` (the batch's row id), else 0.
fn fill(
    connection: &Connection,
    sql: &str,
    values: &[SqlValue],
    kinds: &[FieldType],
    with_rowid: bool,
    page: &mut Page,
) -> Result<i64, StoreError> {
    let mut statement = connection.prepare_cached(sql).map_err(|e| sql_error(&e))?;
    let mut rows = statement
        .query(rusqlite::params_from_iter(values.iter()))
        .map_err(|e| sql_error(&e))?;
    let skip = usize::from(with_rowid);
    let mut last = 0;
    while let Some(row) = rows.next().map_err(|e| sql_error(&e))? {
        if with_rowid {
            last = row.get::<_, i64>(0).map_err(|e| sql_error(&e))?;
        }
        for (i, kind) in kinds.iter().enumerate() {
            let value = row.get_ref(i + skip).map_err(|e| sql_error(&e))?;
            page.cells.push(cell(value, *kind));
        }
    }
    Ok(last)
}

impl SqliteTable {
    /// Opens `table` of the SQLite file `path` and checks it has every declared column.
    pub(super) async fn open(
        dataset: &Dataset,
        path: &Path,
        table: &str,
    ) -> Result<SqliteTable, StoreError> {
        let connections = Arc::new(Connections {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            limit: STATEMENT_LIMIT,
        });
        let columns: Arc<[(String, FieldType)]> = dataset
            .raw
            .fields
            .iter()
            .map(|field| (field.name.clone(), field.kind))
            .collect();
        let (id, name, wanted) = (dataset.id().to_owned(), table.to_owned(), columns.clone());
        let (rows, max) = connections
            .run(move |connection| {
                let present: Vec<String> = connection
                    .prepare("SELECT name FROM pragma_table_info(?1)")
                    .and_then(|mut statement| {
                        statement
                            .query_map([&name], |row| row.get::<_, String>(0))?
                            .collect()
                    })
                    .map_err(|e| sql_error(&e))?;
                if present.is_empty() {
                    return Err(StoreError::Mismatch(format!(
                        "dataset {id}: no table {name}"
                    )));
                }
                if let Some((missing, _)) = wanted.iter().find(|(n, _)| !present.contains(n)) {
                    return Err(StoreError::Mismatch(format!(
                        "dataset {id}: the table has no column {missing}"
                    )));
                }
                connection
                    .query_row(
                        &format!("SELECT count(*), max(rowid) FROM {}", quoted(&name)),
                        [],
                        |row| Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?)),
                    )
                    .map_err(|e| sql_error(&e))
            })
            .await?;
        Ok(SqliteTable {
            connections,
            table: quoted(table),
            columns,
            dense: max.unwrap_or(0) == rows,
            rows: u64::try_from(rows).unwrap_or(0),
        })
    }

    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    fn kinds(&self, fields: &[usize]) -> Vec<FieldType> {
        fields.iter().map(|&i| self.columns[i].1).collect()
    }

    fn select_list(&self, fields: &[usize]) -> String {
        fields
            .iter()
            .map(|&i| quoted(&self.columns[i].0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The `WHERE` clause and its bound values.
    fn conditions(&self, query: &Query) -> (String, Vec<SqlValue>) {
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
            values.extend(accepted.iter().map(to_sql));
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
                let pattern = super::like_pattern(q);
                values.extend(text.iter().map(|_| SqlValue::Text(pattern.clone())));
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
        super::order_by(query, &self.columns, "rowid")
    }

    pub(super) async fn search(
        &self,
        query: &Query,
        fields: Vec<usize>,
    ) -> Result<Page, StoreError> {
        let select = self.select_list(&fields);
        let (sql, values) = if query.natural() && self.dense {
            // Seek: the row ids are 1..=rows, so the offset is a row id.
            (
                format!(
                    "SELECT {select} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    self.table
                ),
                vec![
                    SqlValue::Integer(i64::try_from(query.offset).unwrap_or(i64::MAX)),
                    SqlValue::Integer(i64::from(query.limit)),
                ],
            )
        } else {
            let (conditions, mut values) = self.conditions(query);
            values.push(SqlValue::Integer(i64::from(query.limit)));
            values.push(SqlValue::Integer(
                i64::try_from(query.offset).unwrap_or(i64::MAX),
            ));
            (
                format!(
                    "SELECT {select} FROM {}{conditions}{} LIMIT ? OFFSET ?",
                    self.table,
                    self.order(query)
                ),
                values,
            )
        };
        let kinds = self.kinds(&fields);
        let capacity = query.limit as usize * fields.len();
        self.connections
            .run(move |connection| {
                let mut page = Page::new(fields, capacity);
                fill(connection, &sql, &values, &kinds, false, &mut page)?;
                Ok(page)
            })
            .await
    }

    pub(super) async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        let (conditions, values) = self.conditions(query);
        let sql = format!("SELECT count(*) FROM {}{conditions}", self.table);
        self.connections
            .run(move |connection| {
                connection
                    .prepare_cached(&sql)
                    .and_then(|mut statement| {
                        statement.query_row(rusqlite::params_from_iter(values.iter()), |row| {
                            row.get::<_, i64>(0)
                        })
                    })
                    .map(|n| u64::try_from(n).unwrap_or(0))
                    .map_err(|e| sql_error(&e))
            })
            .await
    }

    /// The batch of rows after row id `after`, and the row id to continue from (none: the
    /// table's end).
    pub(super) async fn batch(&self, after: i64) -> Result<(Page, Option<i64>), StoreError> {
        let fields: Vec<usize> = (0..self.columns.len()).collect();
        let sql = format!(
            "SELECT rowid, {} FROM {} WHERE rowid > ? ORDER BY rowid LIMIT ?",
            self.select_list(&fields),
            self.table
        );
        let kinds = self.kinds(&fields);
        let capacity = BATCH_ROWS as usize * fields.len();
        self.connections
            .run(move |connection| {
                let mut page = Page::new(fields, capacity);
                let values = [SqlValue::Integer(after), SqlValue::Integer(BATCH_ROWS)];
                let last = fill(connection, &sql, &values, &kinds, true, &mut page)?;
                let next = (page.len() as i64 == BATCH_ROWS).then_some(last);
                Ok((page, next))
            })
            .await
    }
}

// ---------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------

/// Rows to import, as text cells by declared field (CSV records, or an upstream's JSON
/// objects), each checked against the field's type.
pub(super) enum Rows {
    /// A CSV document (UTF-8, a header row naming the fields).
    Csv(Box<dyn std::io::Read + Send>),
    /// A JSON array of objects keyed by field name.
    Json(Vec<serde_json::Map<String, Value>>),
}

/// Writes `rows` into a new SQLite file at `target` (a table `rows`, one column per declared
/// field, row ids in order, an index on the key), through a `.partial` file renamed at the
/// end so a failed import leaves the last good one. `origin` names the source in messages.
pub(super) fn import(
    dataset: &Dataset,
    rows: Rows,
    target: &Path,
    origin: &str,
) -> Result<(), StoreError> {
    let partial = target.with_extension("sqlite.partial");
    let _ = std::fs::remove_file(&partial);
    let written = write_import(dataset, rows, &partial, origin);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, target)
        .map_err(|e| StoreError::Unavailable(format!("{}: {e}", target.display())))
}

fn write_import(
    dataset: &Dataset,
    rows: Rows,
    partial: &Path,
    origin: &str,
) -> Result<(), StoreError> {
    let mut connection = Connection::open(partial).map_err(|e| sql_error(&e))?;
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
    connection
        .execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; CREATE TABLE rows ({});",
            columns.join(", ")
        ))
        .map_err(|e| sql_error(&e))?;
    let insert = format!(
        "INSERT INTO rows VALUES ({})",
        vec!["?"; dataset.raw.fields.len()].join(", ")
    );
    let transaction = connection.transaction().map_err(|e| sql_error(&e))?;
    {
        let mut statement = transaction.prepare(&insert).map_err(|e| sql_error(&e))?;
        let mut line_values: Vec<SqlValue> = Vec::with_capacity(dataset.raw.fields.len());
        let mut put = |line: usize, texts: &mut dyn Iterator<Item = Option<String>>| {
            line_values.clear();
            for (field, text) in dataset.raw.fields.iter().zip(texts) {
                line_values.push(typed_cell(field, text, origin, line)?);
            }
            statement
                .execute(rusqlite::params_from_iter(line_values.iter()))
                .map_err(|e| sql_error(&e))?;
            Ok::<_, StoreError>(())
        };
        match rows {
            Rows::Csv(reader) => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .from_reader(reader);
                let headers = reader
                    .headers()
                    .map_err(|e| StoreError::Mismatch(format!("{origin}: {e}")))?
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
                                    "{origin}: no column {} in the header",
                                    field.name
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?;
                for (line, record) in reader.records().enumerate() {
                    let record = record.map_err(|e| {
                        StoreError::Mismatch(format!("{origin}: line {}: {e}", line + 2))
                    })?;
                    let mut texts = positions
                        .iter()
                        .map(|&p| record.get(p).map(|t| t.trim().to_owned()));
                    put(line + 2, &mut texts)?;
                }
            }
            Rows::Json(objects) => {
                for (i, object) in objects.iter().enumerate() {
                    let mut texts =
                        dataset
                            .raw
                            .fields
                            .iter()
                            .map(|field| match object.get(&field.name) {
                                None | Some(Value::Null) => None,
                                Some(Value::String(s)) => Some(s.trim().to_owned()),
                                Some(other) => Some(other.to_string()),
                            });
                    put(i + 1, &mut texts)?;
                }
            }
        }
    }
    transaction.commit().map_err(|e| sql_error(&e))?;
    // Every declared field is indexed: filters and sorts name them, and an imported table
    // is read far more often than it is written.
    let indexes: String = dataset
        .raw
        .fields
        .iter()
        .enumerate()
        .map(|(i, field)| format!("CREATE INDEX rows_{i} ON rows ({});", quoted(&field.name)))
        .collect();
    connection
        .execute_batch(&indexes)
        .map_err(|e| sql_error(&e))?;
    Ok(())
}

/// One imported value, checked against its field's type (an empty text is nothing).
fn typed_cell(
    field: &crate::opendata::Field,
    text: Option<String>,
    origin: &str,
    line: usize,
) -> Result<SqlValue, StoreError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(SqlValue::Null);
    };
    let wrong = |what: &str| {
        StoreError::Mismatch(format!(
            "{origin}: row {line}: field {} is not {what}",
            field.name
        ))
    };
    Ok(match field.kind {
        FieldType::Integer => SqlValue::Integer(text.parse().map_err(|_| wrong("an integer"))?),
        FieldType::Number => SqlValue::Real(text.parse().map_err(|_| wrong("a number"))?),
        FieldType::Date => {
            if time::Date::parse(
                &text,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_err()
            {
                return Err(wrong("a date (YYYY-MM-DD)"));
            }
            SqlValue::Text(text)
        }
        FieldType::Text => SqlValue::Text(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statement past its time limit is interrupted and answered as unavailable, and the
    /// connection serves the next statement.
    #[tokio::test]
    async fn a_statement_past_its_limit_is_interrupted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.sqlite");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (a INTEGER);"))
            .expect("a table");
        let connections = Arc::new(Connections {
            path,
            idle: Mutex::new(Vec::new()),
            limit: std::time::Duration::from_millis(50),
        });
        let endless = connections
            .run(|connection| {
                connection
                    .query_row(
                        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n) \
                         SELECT count(*) FROM n",
                        [],
                        |row| row.get::<_, i64>(0),
                    )
                    .map_err(|e| sql_error(&e))
            })
            .await;
        match endless {
            Err(StoreError::Unavailable(message)) => {
                assert!(message.contains("interrupt"), "{message}")
            }
            other => panic!("not interrupted: {other:?}"),
        }
        let next = connections
            .run(|connection| {
                connection
                    .query_row("SELECT count(*) FROM t", [], |row| row.get::<_, i64>(0))
                    .map_err(|e| sql_error(&e))
            })
            .await
            .expect("the next statement runs");
        assert_eq!(next, 0);
    }
}
