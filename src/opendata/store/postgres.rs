//! The PostgreSQL backend: a table or view of the node's open-data database, read live
//! through `sqlx`.
//!
//! Owns: the SQL of a search, a count and a batch against PostgreSQL. Every column is read
//! through a cast to the declared type's wire type (`int8`, `float8`, `text`), so a table's
//! own column types (`int4`, `numeric`, `varchar`, `date`) decode uniformly. The natural
//! order is the key's; a download seeks on the key. Does not own: the query's grammar.

use super::{BATCH_ROWS, Cell, Page, Query, StoreError, quoted};
use crate::opendata::{Dataset, FieldType};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments, Row};
use std::sync::Arc;

fn sql_error(error: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("the dataset's database cannot be read: {error}"))
}

/// A dataset's table in PostgreSQL.
#[derive(Debug, Clone)]
pub(super) struct PgTable {
    pool: PgPool,
    relation: String,
    columns: Arc<[(String, FieldType)]>,
    key: usize,
    rows: u64,
}

/// Bound values, numbered `$1…` in order.
#[derive(Default)]
struct Binds {
    arguments: sqlx::postgres::PgArguments,
    count: usize,
}

impl Binds {
    /// Binds `value` (already of `kind`) and returns its placeholder.
    fn push(&mut self, value: &Value, kind: FieldType) -> String {
        self.count += 1;
        let bound = match (value, kind) {
            (Value::Number(n), FieldType::Integer) => {
                self.arguments.add(n.as_i64().unwrap_or_default())
            }
            (Value::Number(n), _) => self.arguments.add(n.as_f64().unwrap_or_default()),
            (Value::String(s), _) => self.arguments.add(s.clone()),
            (Value::Null, _) => self.arguments.add(None::<String>),
            (other, _) => self.arguments.add(other.to_string()),
        };
        // Adding a plain value to PgArguments cannot fail; an error would mean a value too
        // large for the protocol, which the gateway's bounds on values exclude.
        let _ = bound;
        format!("${}", self.count)
    }

    fn push_cell(&mut self, cell: &Cell) -> String {
        self.count += 1;
        let _ = match cell {
            Cell::Integer(i) => self.arguments.add(*i),
            Cell::Number(n) => self.arguments.add(*n),
            Cell::Text(t) => self.arguments.add(t.clone()),
            Cell::Null => self.arguments.add(None::<String>),
        };
        format!("${}", self.count)
    }
}

/// A column as the declared type's wire type.
fn read_as(name: &str, kind: FieldType) -> String {
    match kind {
        FieldType::Integer => format!("{}::int8", quoted(name)),
        FieldType::Number => format!("{}::float8", quoted(name)),
        FieldType::Text | FieldType::Date => format!("{}::text", quoted(name)),
    }
}

fn cell(row: &PgRow, index: usize, kind: FieldType) -> Cell {
    match kind {
        FieldType::Integer => row
            .try_get::<Option<i64>, _>(index)
            .ok()
            .flatten()
            .map_or(Cell::Null, Cell::Integer),
        FieldType::Number => row
            .try_get::<Option<f64>, _>(index)
            .ok()
            .flatten()
            .map_or(Cell::Null, Cell::Number),
        FieldType::Text | FieldType::Date => row
            .try_get::<Option<String>, _>(index)
            .ok()
            .flatten()
            .map_or(Cell::Null, Cell::Text),
    }
}

impl PgTable {
    /// Opens `schema.table` and checks it has every declared column.
    pub(super) async fn open(
        dataset: &Dataset,
        options: PgConnectOptions,
        schema: &str,
        table: &str,
    ) -> Result<PgTable, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with(options.application_name("datagate-opendata"))
            .await
            .map_err(|e| sql_error(&e))?;
        let present: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = $1 AND table_name = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(&pool)
        .await
        .map_err(|e| sql_error(&e))?;
        if present.is_empty() {
            return Err(StoreError::Mismatch(format!(
                "dataset {}: no table {schema}.{table}",
                dataset.id()
            )));
        }
        if let Some(missing) = dataset
            .raw
            .fields
            .iter()
            .find(|field| !present.contains(&field.name))
        {
            return Err(StoreError::Mismatch(format!(
                "dataset {}: the table has no column {}",
                dataset.id(),
                missing.name
            )));
        }
        let relation = format!("{}.{}", quoted(schema), quoted(table));
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {relation}"
        )))
        .fetch_one(&pool)
        .await
        .map_err(|e| sql_error(&e))?;
        Ok(PgTable {
            pool,
            relation,
            columns: dataset
                .raw
                .fields
                .iter()
                .map(|field| (field.name.clone(), field.kind))
                .collect(),
            key: dataset.key,
            rows: u64::try_from(rows).unwrap_or(0),
        })
    }

    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    fn select_list(&self, fields: &[usize]) -> String {
        fields
            .iter()
            .map(|&i| read_as(&self.columns[i].0, self.columns[i].1))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn conditions(&self, query: &Query, binds: &mut Binds) -> String {
        let mut clauses = Vec::new();
        for (field, accepted) in &query.filters {
            if accepted.is_empty() {
                clauses.push("false".to_owned());
                continue;
            }
            let (name, kind) = &self.columns[*field];
            // Dates compare as text, whatever the column's own type.
            let column = if *kind == FieldType::Date {
                format!("{}::text", quoted(name))
            } else {
                quoted(name)
            };
            let placeholders: Vec<String> = accepted.iter().map(|v| binds.push(v, *kind)).collect();
            clauses.push(format!("{column} IN ({})", placeholders.join(", ")));
        }
        if let Some(q) = &query.q {
            let pattern = Value::String(super::like_pattern(q));
            let text: Vec<String> = self
                .columns
                .iter()
                .filter(|(_, kind)| *kind == FieldType::Text)
                .map(|(name, _)| {
                    format!(
                        "{}::text ILIKE {} ESCAPE '\\'",
                        quoted(name),
                        binds.push(&pattern, FieldType::Text)
                    )
                })
                .collect();
            clauses.push(if text.is_empty() {
                "false".to_owned()
            } else {
                format!("({})", text.join(" OR "))
            });
        }
        if clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", clauses.join(" AND "))
        }
    }

    fn order(&self, query: &Query) -> String {
        super::order_by(query, &self.columns, &quoted(&self.columns[self.key].0))
    }

    fn page(&self, rows: &[PgRow], fields: Vec<usize>) -> Page {
        let mut page = Page::new(fields, rows.len() * self.columns.len());
        for row in rows {
            for (index, &field) in page.fields.iter().enumerate() {
                page.cells.push(cell(row, index, self.columns[field].1));
            }
        }
        page
    }

    pub(super) async fn search(
        &self,
        query: &Query,
        fields: Vec<usize>,
    ) -> Result<Page, StoreError> {
        let mut binds = Binds::default();
        let conditions = self.conditions(query, &mut binds);
        let limit = binds.push(&Value::from(query.limit), FieldType::Integer);
        let offset = binds.push(
            &Value::from(i64::try_from(query.offset).unwrap_or(i64::MAX)),
            FieldType::Integer,
        );
        let sql = format!(
            "SELECT {} FROM {}{conditions}{} LIMIT {limit} OFFSET {offset}",
            self.select_list(&fields),
            self.relation,
            self.order(query)
        );
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), binds.arguments)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
        Ok(self.page(&rows, fields))
    }

    pub(super) async fn count(&self, query: &Query) -> Result<u64, StoreError> {
        let mut binds = Binds::default();
        let conditions = self.conditions(query, &mut binds);
        let sql = format!("SELECT count(*) FROM {}{conditions}", self.relation);
        let count: i64 = sqlx::query_scalar_with(sqlx::AssertSqlSafe(sql), binds.arguments)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The batch after key `after` (none: from the start), and the key to continue from.
    pub(super) async fn batch(
        &self,
        after: Option<Cell>,
    ) -> Result<(Page, Option<Cell>), StoreError> {
        let fields: Vec<usize> = (0..self.columns.len()).collect();
        let (key_name, key_kind) = &self.columns[self.key];
        let key_column = if *key_kind == FieldType::Date {
            format!("{}::text", quoted(key_name))
        } else {
            quoted(key_name)
        };
        let mut binds = Binds::default();
        let seek = match &after {
            Some(cell) => format!(" WHERE {key_column} > {}", binds.push_cell(cell)),
            None => String::new(),
        };
        let sql = format!(
            "SELECT {} FROM {}{seek} ORDER BY {key_column} ASC LIMIT {BATCH_ROWS}",
            self.select_list(&fields),
            self.relation,
        );
        let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), binds.arguments)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| sql_error(&e))?;
        let page = self.page(&rows, fields);
        let next = if rows.len() as i64 == BATCH_ROWS {
            page.rows()
                .last()
                .map(|row| row[self.key].clone())
                .filter(|cell| *cell != Cell::Null)
        } else {
            None
        };
        Ok((page, next))
    }
}
