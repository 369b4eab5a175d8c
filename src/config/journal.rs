//! `[journal]`: where the journal lives (the embedded SQLite file or a PostgreSQL schema
//! shared by a node's replicas), its digest key, its free-space reserve, archiving and
//! retention, and time-stamping of seals. Every field is enforced or refused here: a
//! setting of one backend given to the other is an error, not ignored.

use super::ConfigError;
use super::raw::{RawJournal, RawJournalBackend};
use crate::journal::archive::Policy;
use crate::journal::store::{Locator, PgLocation, valid_chain, valid_schema};
use std::path::{Path, PathBuf};

/// The journal as configured.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    /// Where the store lives.
    pub locator: Locator,
    /// The key of the keyed digests (every replica of a node shares it).
    pub key_file: PathBuf,
    /// SQLite: below this much free space, new exchanges are refused.
    pub min_free_bytes: u64,
    /// Archiving and retention, if configured.
    pub archive: Option<Policy>,
    /// How often the writer runs maintenance and checks its store.
    pub maintenance_interval: std::time::Duration,
    /// How long the writer gathers a batch before committing it.
    pub commit_window: std::time::Duration,
    /// RFC 3161 time-stamping of seals, if configured.
    pub tsa: Option<TsaSettings>,
}

/// A time-stamping authority.
#[derive(Debug, Clone)]
pub struct TsaSettings {
    /// Where time-stamp queries are POSTed (`http` or `https`).
    pub url: String,
    /// The CA certificates (PEM) the TSA's certificate must chain to.
    pub roots_file: PathBuf,
}

fn days(value: f64) -> time::Duration {
    time::Duration::seconds_f64(value * 86_400.0)
}

/// Validates `[journal]`; every problem is pushed to `errors`.
pub fn build(
    raw: &RawJournal,
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<ConfigError>,
) -> Option<JournalSettings> {
    let before = errors.len();
    let mut fail = |path: &str, message: &str| {
        errors.push(ConfigError::new(
            file,
            &format!("journal.{path}"),
            message.to_owned(),
        ));
    };
    let locator = match raw.backend {
        RawJournalBackend::Sqlite => {
            for (given, name) in [
                (raw.url.is_some(), "url"),
                (raw.schema.is_some(), "schema"),
                (raw.chain.is_some(), "chain"),
            ] {
                if given {
                    fail(name, "only with backend = \"postgres\"");
                }
            }
            match &raw.path {
                Some(path) => Some(Locator::Sqlite(resolve(path))),
                None => {
                    fail("path", "required with the embedded backend (sqlite)");
                    None
                }
            }
        }
        RawJournalBackend::Postgres => {
            if raw.path.is_some() {
                fail("path", "only with backend = \"sqlite\"");
            }
            if raw.min_free_mb.is_some() {
                fail(
                    "min_free_mb",
                    "only with backend = \"sqlite\" (the server keeps its own disk)",
                );
            }
            let schema = raw.schema.clone().unwrap_or_else(|| "datagate".to_owned());
            if !valid_schema(&schema) {
                fail("schema", "must be a lowercase SQL identifier (a-z, 0-9, _)");
            }
            let chain = match &raw.chain {
                Some(chain) if valid_chain(chain) => Some(chain.clone()),
                Some(_) => {
                    fail("chain", "must be 1–64 of A-Z a-z 0-9 . - _");
                    None
                }
                None => {
                    fail(
                        "chain",
                        "required with backend = \"postgres\": each replica writes its own chain",
                    );
                    None
                }
            };
            match &raw.url {
                Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    if url.parse::<sqlx::postgres::PgConnectOptions>().is_err() {
                        fail("url", "does not parse as a PostgreSQL URL");
                    }
                    chain.map(|chain| {
                        Locator::Postgres(PgLocation {
                            url: url.clone(),
                            schema,
                            chain: Some(chain),
                        })
                    })
                }
                Some(_) => {
                    fail("url", "must be a postgres:// URL");
                    None
                }
                None => {
                    fail("url", "required with backend = \"postgres\"");
                    None
                }
            }
        }
    };
    let positive = |value: Option<f64>| value.is_none_or(|v| v.is_finite() && v > 0.0);
    if !positive(raw.archive_after_days) {
        fail("archive_after_days", "must be a positive number of days");
    }
    if !positive(raw.retention_days) {
        fail("retention_days", "must be a positive number of days");
    }
    if raw.archive_after_days.is_some() && raw.archive_dir.is_none() {
        fail("archive_after_days", "needs archive_dir");
    }
    if let (Some(after), Some(retention)) = (raw.archive_after_days, raw.retention_days)
        && retention < after
    {
        fail(
            "retention_days",
            "must not be shorter than archive_after_days",
        );
    }
    if raw.commit_window_us.is_some_and(|us| us > 10_000) {
        fail(
            "commit_window_us",
            "must be at most 10 000 (10 ms): every exchange waits for its commit",
        );
    }
    if raw.maintenance_interval_secs == Some(0) {
        fail("maintenance_interval_secs", "must be at least 1");
    }
    let archive = (raw.archive_dir.is_some() || raw.retention_days.is_some()).then(|| Policy {
        dir: raw.archive_dir.as_deref().map(resolve),
        after: days(raw.archive_after_days.unwrap_or(30.0)),
        retention: raw.retention_days.map(days),
        step_records: 100_000,
    });
    let tsa = match (&raw.tsa_url, &raw.tsa_ca_file) {
        (None, None) => None,
        (Some(url), Some(roots)) => {
            if !(url.starts_with("http://") || url.starts_with("https://"))
                || url::Url::parse(url).is_err()
            {
                fail("tsa_url", "must be an http:// or https:// URL");
            }
            let roots = resolve(roots);
            match std::fs::read(&roots) {
                Ok(pem) if pem.windows(11).any(|w| w == b"CERTIFICATE") => {}
                _ => fail("tsa_ca_file", "cannot be read as PEM certificates"),
            }
            Some(TsaSettings {
                url: url.clone(),
                roots_file: roots,
            })
        }
        (Some(_), None) => {
            fail(
                "tsa_ca_file",
                "required with tsa_url: the TSA's answers are verified",
            );
            None
        }
        (None, Some(_)) => {
            fail("tsa_url", "required with tsa_ca_file");
            None
        }
    };
    if errors.len() > before {
        return None;
    }
    Some(JournalSettings {
        locator: locator?,
        key_file: resolve(&raw.hmac_key_file),
        min_free_bytes: raw
            .min_free_mb
            .map_or(crate::journal::sqlite::DEFAULT_MIN_FREE_BYTES, |mb| {
                mb.saturating_mul(1024 * 1024)
            }),
        archive,
        maintenance_interval: std::time::Duration::from_secs(
            raw.maintenance_interval_secs.unwrap_or(60),
        ),
        commit_window: std::time::Duration::from_micros(raw.commit_window_us.unwrap_or(0)),
        tsa,
    })
}
