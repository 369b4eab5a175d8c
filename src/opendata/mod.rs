//! Open data (issue 11): datasets a member publishes, with the metadata data-portal
//! tooling reads, served from a table (`contracts/datasets/*.yaml`).
//!
//! Owns: the dataset file's grammar ([`RawDataset`]) and its complete validation
//! ([`compile`]: only classification `open`; every metadata field the regulations ask for:
//! publisher, licence, update frequency, retention period (004 Điều 24 k3a), provenance
//! (004 Điều 21), attribution (000 Điều 4 k6); fields with types; a key that orders the
//! table), and the tables themselves ([`store`]: an SQLite file, a CSV file or an upstream
//! REST service's answer imported into one, or a PostgreSQL table; queried with bound
//! parameters only).
//!
//! Does not own: who may read (the public listener's per-IP limits, the consumer listener's
//! members: `gateway::opendata`), or the wire formats (CKAN, DCAT, CSV: the gateway).

pub mod store;

use crate::base::diagnostics::ConfigError;
use crate::identity::MemberId;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The largest page a search answers.
pub const MAX_PAGE_ROWS: u32 = 1000;

/// Who a dataset is published to (000 Điều 3 k10–11): both tiers are `open` data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Everyone, on the public listener, anonymously.
    Public,
    /// Authenticated members, on the consumer listener.
    Members,
}

/// Where the data came from (004 Điều 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Collected by a survey or census.
    Survey,
    /// Digitised from paper records.
    Digitised,
    /// Collected while handling administrative procedures.
    Procedure,
    /// Derived from other data.
    Derived,
    /// Received from another agency's database.
    AgencyDatabase,
}

impl Provenance {
    /// A Vietnamese label.
    pub fn label_vi(self) -> &'static str {
        match self {
            Provenance::Survey => "Điều tra, thống kê",
            Provenance::Digitised => "Số hóa từ hồ sơ giấy",
            Provenance::Procedure => "Thu thập khi giải quyết thủ tục hành chính",
            Provenance::Derived => "Tổng hợp, phân tích từ dữ liệu khác",
            Provenance::AgencyDatabase => "Từ cơ sở dữ liệu của cơ quan khác",
        }
    }
}

/// How often the data changes (the DCAT frequency vocabulary's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every quarter.
    Quarterly,
    /// Every year.
    Annual,
    /// Irregularly.
    Irregular,
    /// Never updated.
    Never,
}

impl Frequency {
    /// The EU vocabulary's code (`http://publications.europa.eu/resource/authority/frequency/…`).
    pub fn eu_code(self) -> &'static str {
        match self {
            Frequency::Daily => "DAILY",
            Frequency::Weekly => "WEEKLY",
            Frequency::Monthly => "MONTHLY",
            Frequency::Quarterly => "QUARTERLY",
            Frequency::Annual => "ANNUAL",
            Frequency::Irregular => "IRREG",
            Frequency::Never => "NEVER",
        }
    }
}

/// A field's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text.
    Text,
    /// A whole number.
    Integer,
    /// A decimal number.
    Number,
    /// `YYYY-MM-DD`.
    Date,
}

impl FieldType {
    /// The CKAN datastore type name.
    pub fn ckan(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Integer => "int",
            FieldType::Number => "numeric",
            FieldType::Date => "date",
        }
    }
}

/// One field (column) of a dataset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    /// Its name: 1-64 of `a-z 0-9 _`, starting with a letter; the column's name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Its title (Vietnamese).
    pub title: String,
    /// Its description, optional.
    #[serde(default)]
    pub description: Option<String>,
}

/// A licence.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Licence {
    /// Its id (`cc-by-4.0`, `odc-by`, …).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Where its text is.
    pub url: String,
}

/// Where a dataset's rows are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum RawSource {
    /// A table of an SQLite file.
    Sqlite {
        /// The file (relative to the datasets folder).
        path: PathBuf,
        /// The table.
        table: String,
    },
    /// A CSV file (UTF-8, a header row naming the fields), imported once into an
    /// SQLite file of the node's open-data state folder and re-imported when it changes.
    Csv {
        /// The file (relative to the datasets folder).
        path: PathBuf,
    },
    /// A table or view of the node's open-data PostgreSQL database (`[datasets]
    /// postgres_url`), read live.
    Postgres {
        /// The schema.
        schema: String,
        /// The table or view.
        table: String,
    },
    /// An upstream REST service answering the whole dataset (a JSON array of objects keyed
    /// by field name, or CSV), fetched by the gateway at start and every `refresh_minutes`,
    /// imported into an SQLite file of the state folder; served from the last good import
    /// while the upstream is down.
    Rest {
        /// `https://…` (or `http://` to a loopback address).
        url: String,
        /// `json` or `csv`.
        format: RestFormat,
        /// Minutes between fetches (default 60; at least 1).
        #[serde(default)]
        refresh_minutes: Option<u32>,
        /// The largest answer accepted, in bytes (default 64 MiB; at most 1 GiB).
        #[serde(default)]
        max_bytes: Option<u64>,
    },
}

/// What an upstream REST source answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RestFormat {
    /// A JSON array of objects (or `{"records": [...]}`).
    Json,
    /// CSV with a header row.
    Csv,
}

/// Per-client-IP limits on the public listener for one dataset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Requests per second per client (an IPv4 address or an IPv6 /64).
    pub per_second: u32,
    /// Burst.
    pub burst: u32,
}

/// A dataset file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDataset {
    /// Id: 2-100 of `a-z 0-9 - _` (CKAN's package name rules).
    pub id: String,
    /// Title (Vietnamese).
    pub title: String,
    /// Title in English, optional.
    #[serde(default)]
    pub title_en: Option<String>,
    /// Description (Vietnamese).
    pub description: String,
    /// Description in English, optional.
    #[serde(default)]
    pub description_en: Option<String>,
    /// The publishing member.
    pub publisher: String,
    /// The publisher's name.
    pub publisher_name: String,
    /// The licence.
    pub licence: Licence,
    /// How often the data is updated.
    pub update_frequency: Frequency,
    /// How long each version is kept and stays legally valid, in months (004 Điều 24 k3a).
    pub retention_months: u32,
    /// Where the data came from (004 Điều 21).
    pub provenance: Provenance,
    /// What reusers must credit (000 Điều 4 k6).
    pub attribution: String,
    /// Must be `open`: anything else (`internal`, `sensitive`, `secret`) is refused.
    pub classification: String,
    /// Who it is published to.
    pub audience: Audience,
    /// Keywords.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The fields.
    pub fields: Vec<Field>,
    /// The field that orders the table (unique, never empty): pagination seeks on it.
    pub key: String,
    /// The rows.
    pub source: RawSource,
    /// Per-client limits on the public listener (default 10/s, burst 20).
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
}

/// A validated dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The file as written (its metadata is what the catalogues publish).
    pub raw: RawDataset,
    /// The publisher.
    pub publisher: MemberId,
    /// The key's index in `raw.fields`.
    pub key: usize,
    /// Where the rows are, resolved.
    pub source: Source,
    /// Requests per second and burst per client on the public listener.
    pub rate: (u32, u32),
}

/// Where a dataset's rows are, with paths resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A table of an SQLite file.
    Sqlite {
        /// The file.
        path: PathBuf,
        /// The table.
        table: String,
    },
    /// A CSV file.
    Csv {
        /// The file.
        path: PathBuf,
    },
    /// A table of the node's open-data PostgreSQL database.
    Postgres {
        /// The schema.
        schema: String,
        /// The table or view.
        table: String,
    },
    /// An upstream REST service, imported.
    Rest {
        /// Its URL.
        url: url::Url,
        /// What it answers.
        format: store::UpstreamFormat,
        /// Time between fetches.
        refresh: std::time::Duration,
        /// The largest answer accepted, in bytes.
        max_bytes: u64,
    },
}

impl Dataset {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.raw.id
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.raw.fields.iter().find(|field| field.name == name)
    }
}

fn identifier(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Validates one dataset file completely (every problem named by path, never a value).
pub fn compile(raw: &RawDataset, file: &Path, dir: &Path) -> Result<Dataset, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut error = |path: &str, message: &str| {
        errors.push(ConfigError::new(file, path, message.to_owned()));
    };
    let id_ok = (2..=100).contains(&raw.id.len())
        && raw
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !id_ok {
        error("id", "must be 2-100 characters of a-z 0-9 - _");
    }
    if raw.classification != "open" {
        error(
            "classification",
            "only open data may be published: a dataset must be classification open",
        );
    }
    for (path, text) in [
        ("title", &raw.title),
        ("description", &raw.description),
        ("publisher_name", &raw.publisher_name),
        ("attribution", &raw.attribution),
        ("licence.id", &raw.licence.id),
        ("licence.title", &raw.licence.title),
    ] {
        if text.trim().is_empty() {
            error(path, "must not be empty");
        }
    }
    if !raw.licence.url.starts_with("https://") {
        error("licence.url", "must be an https URL");
    }
    if raw.retention_months == 0 {
        error("retention_months", "must be at least 1");
    }
    let publisher = raw
        .publisher
        .parse::<MemberId>()
        .map_err(|_| error("publisher", "must be a member id"))
        .ok();
    if raw.fields.is_empty() {
        error("fields", "a dataset needs at least one field");
    }
    let mut names = HashSet::new();
    for (i, field) in raw.fields.iter().enumerate() {
        if !identifier(&field.name) {
            error(
                &format!("fields[{i}].name"),
                "must be 1-64 of a-z 0-9 _, starting with a letter",
            );
        }
        if !names.insert(field.name.as_str()) {
            error(
                &format!("fields[{i}].name"),
                "another field has the same name",
            );
        }
        if field.title.trim().is_empty() {
            error(&format!("fields[{i}].title"), "must not be empty");
        }
    }
    let key = raw.fields.iter().position(|field| field.name == raw.key);
    if key.is_none() {
        error("key", "must name one of the fields");
    }
    let rate = match &raw.rate_limit {
        Some(limit) if limit.per_second == 0 || limit.burst == 0 => {
            error("rate_limit", "per_second and burst must be at least 1");
            (1, 1)
        }
        Some(limit) => (limit.per_second, limit.burst),
        None => (10, 20),
    };
    let resolve = |path: &Path| {
        if path.is_absolute() {
            path.to_owned()
        } else {
            dir.join(path)
        }
    };
    let source = match &raw.source {
        RawSource::Sqlite { path, table } => {
            if !identifier(table) {
                error(
                    "source.table",
                    "must be 1-64 of a-z 0-9 _, starting with a letter",
                );
            }
            let path = resolve(path);
            if !path.is_file() {
                error("source.path", "no such file");
            }
            Source::Sqlite {
                path,
                table: table.clone(),
            }
        }
        RawSource::Csv { path } => {
            let path = resolve(path);
            if !path.is_file() {
                error("source.path", "no such file");
            }
            Source::Csv { path }
        }
        RawSource::Postgres { schema, table } => {
            for (path, name) in [("source.schema", schema), ("source.table", table)] {
                if !identifier(name) {
                    error(path, "must be 1-64 of a-z 0-9 _, starting with a letter");
                }
            }
            Source::Postgres {
                schema: schema.clone(),
                table: table.clone(),
            }
        }
        RawSource::Rest {
            url,
            format,
            refresh_minutes,
            max_bytes,
        } => {
            let parsed = url::Url::parse(url).ok().filter(|url| match url.scheme() {
                "https" => url.host().is_some(),
                "http" => match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(name)) => name == "localhost",
                    None => false,
                },
                _ => false,
            });
            if parsed.as_ref().is_none_or(|url| {
                !url.username().is_empty() || url.password().is_some() || url.fragment().is_some()
            }) {
                error(
                    "source.url",
                    "must be an https URL (http only to a loopback address), without credentials or fragment",
                );
            }
            let minutes = refresh_minutes.unwrap_or(60);
            if minutes == 0 || minutes > 60 * 24 * 366 {
                error("source.refresh_minutes", "must be 1 to 527040");
            }
            let max_bytes = max_bytes.unwrap_or(64 * 1024 * 1024);
            if max_bytes == 0 || max_bytes > 1024 * 1024 * 1024 {
                error("source.max_bytes", "must be 1 byte to 1 GiB");
            }
            Source::Rest {
                url: parsed.unwrap_or_else(|| {
                    url::Url::parse("https://invalid.invalid/").expect("a constant URL parses")
                }),
                format: match format {
                    RestFormat::Json => store::UpstreamFormat::Json,
                    RestFormat::Csv => store::UpstreamFormat::Csv,
                },
                refresh: std::time::Duration::from_secs(u64::from(minutes) * 60),
                max_bytes,
            }
        }
    };
    match (publisher, key) {
        (Some(publisher), Some(key)) if errors.is_empty() => Ok(Dataset {
            raw: raw.clone(),
            publisher,
            key,
            source,
            rate,
        }),
        _ => Err(errors),
    }
}
