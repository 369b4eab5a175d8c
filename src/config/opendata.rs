//! `[listeners] public`, `[public]` and `[datasets]`: open data, validated completely.
//!
//! Owns: the public listener's settings (TLS or plain, the proxies whose `X-Forwarded-For`
//! is believed, the PROXY protocol from those proxies, the limits of routes that name no
//! dataset) and loading every dataset file (`opendata::compile`). Refuses a public dataset on
//! a node without a public listener (it could never be served), a `[public]` section without
//! one, `proxy_protocol` without `trusted_proxies`, and a PostgreSQL dataset on a node
//! without an open-data database.
//!
//! Does not own: opening the tables (I/O at start: `gateway::opendata`).

use super::ConfigError;
use super::raw::RawNodeConfig;
use crate::opendata::store::Databases;
use crate::opendata::{self, Audience, Dataset, RawDataset};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// An address block: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `a.b.c.d`, `a.b.c.d/n`, `x::y` or `x::y/n`.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr.parse::<IpAddr>().ok()?, prefix.parse::<u8>().ok()?),
            None => {
                let addr = text.parse::<IpAddr>().ok()?;
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> (u128, u32) {
            match ip {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ip = match (self.addr, ip) {
            (IpAddr::V6(_), IpAddr::V4(v4)) => IpAddr::V6(v4.to_ipv6_mapped()),
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        let ((net, width), (candidate, _)) = (bits(self.addr), bits(ip));
        let prefix = u32::from(self.prefix);
        if prefix == 0 {
            return true;
        }
        let shift = width - prefix;
        (net >> shift) == (candidate >> shift)
    }
}

/// `[public]`, validated.
#[derive(Debug, Clone, Default)]
pub struct PublicSettings {
    /// Serve TLS (server-only).
    pub tls: bool,
    /// Proxies whose `X-Forwarded-For` is believed, and the only peers whose PROXY header is
    /// (with `proxy_protocol`).
    pub trusted_proxies: Vec<Cidr>,
    /// Every connection must begin with a PROXY protocol v2 header from a trusted proxy,
    /// whose source address is the client (default false). Taken at start.
    pub proxy_protocol: bool,
    /// Requests per second per client on routes that name no dataset.
    pub per_second: u32,
    /// Their burst.
    pub burst: u32,
    /// The listener's public URL, without a trailing `/` (absent: from the `Host` header).
    pub base_url: Option<url::Url>,
}

/// `[public] base_url`: an `http` or `https` URL with a host, no credentials, query or
/// fragment; a trailing `/` is dropped so paths append to it.
pub fn parse_base_url(text: &str) -> Result<url::Url, &'static str> {
    let url = url::Url::parse(text).map_err(|_| "must be an http:// or https:// URL")?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err("must be an http:// or https:// URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment");
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// Open data as configured.
#[derive(Debug, Clone, Default)]
pub struct OpenDataSettings {
    /// The public listener's settings.
    pub public: PublicSettings,
    /// The datasets, by id order.
    pub datasets: Vec<Dataset>,
    /// Where CSV sources are imported.
    pub state_dir: PathBuf,
    /// The databases of datasets that are not files.
    pub databases: Databases,
}

/// Reads and compiles every dataset in `dir` (`*.yaml`, `*.yml`).
fn load_datasets(dir: &Path, errors: &mut Vec<ConfigError>) -> Vec<Dataset> {
    let mut datasets: Vec<Dataset> = Vec::new();
    for file in super::files_with_extensions(dir, &["yaml", "yml"], errors) {
        let Some(text) = super::read_text(&file, errors) else {
            continue;
        };
        match yaml_serde::from_str::<RawDataset>(&text) {
            Ok(raw) => match opendata::compile(&raw, &file, dir) {
                Ok(dataset) => {
                    if datasets.iter().any(|d| d.id() == dataset.id()) {
                        errors.push(ConfigError::new(
                            &file,
                            "id",
                            "another dataset has the same id".into(),
                        ));
                    } else {
                        datasets.push(dataset);
                    }
                }
                Err(mut problems) => errors.append(&mut problems),
            },
            Err(e) => errors.push(ConfigError::new(&file, "", e.to_string())),
        }
    }
    datasets.sort_by(|a, b| a.id().cmp(b.id()));
    datasets
}

/// Validates `[listeners] public`, `[public]` and `[datasets]`.
pub fn build(
    raw: &RawNodeConfig,
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<ConfigError>,
) -> OpenDataSettings {
    let section = raw.public.clone().unwrap_or_default();
    if raw.public.is_some() && raw.listeners.public.is_none() {
        errors.push(ConfigError::new(
            file,
            "public",
            "[public] needs a public listener ([listeners] public)".into(),
        ));
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in section.trusted_proxies.iter().enumerate() {
        match Cidr::parse(text) {
            Some(cidr) => trusted_proxies.push(cidr),
            None => errors.push(ConfigError::new(
                file,
                &format!("public.trusted_proxies[{i}]"),
                "must be an IP address or a CIDR block".into(),
            )),
        }
    }
    if section.proxy_protocol && section.trusted_proxies.is_empty() {
        // Believing a header from anyone would let any client choose its own address (and
        // budget); refusing everyone would shut the listener: neither is what was meant.
        errors.push(ConfigError::new(
            file,
            "public.proxy_protocol",
            "needs public.trusted_proxies: the load balancers whose PROXY header is believed"
                .into(),
        ));
    }
    let per_second = section.per_second.unwrap_or(20);
    let burst = section.burst.unwrap_or(40);
    if per_second == 0 || burst == 0 {
        errors.push(ConfigError::new(
            file,
            "public",
            "per_second and burst must be at least 1".into(),
        ));
    }
    let base_url = section
        .base_url
        .as_deref()
        .and_then(|text| match parse_base_url(text) {
            Ok(url) => Some(url),
            Err(message) => {
                errors.push(ConfigError::new(
                    file,
                    "public.base_url",
                    message.to_owned(),
                ));
                None
            }
        });
    let dir = match &raw.datasets {
        Some(datasets) => Some(resolve(&datasets.dir)),
        None => Some(resolve(&raw.contracts.dir).join("datasets")).filter(|dir| dir.is_dir()),
    };
    let datasets = dir
        .map(|dir| load_datasets(&dir, errors))
        .unwrap_or_default();
    if raw.listeners.public.is_none()
        && let Some(dataset) = datasets.iter().find(|d| d.raw.audience == Audience::Public)
    {
        errors.push(ConfigError::new(
            file,
            "listeners.public",
            format!(
                "dataset {} is published to the public, but this node has no public listener",
                dataset.id()
            ),
        ));
    }
    let mut databases = Databases::default();
    if let Some(url) = raw
        .datasets
        .as_ref()
        .and_then(|d| d.postgres_url.as_deref())
    {
        match url.parse::<sqlx::postgres::PgConnectOptions>() {
            Ok(options) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                databases.postgres = Some(options);
            }
            _ => errors.push(ConfigError::new(
                file,
                "datasets.postgres_url",
                "must be a postgres:// URL".into(),
            )),
        }
    }
    if databases.postgres.is_none()
        && let Some(dataset) = datasets
            .iter()
            .find(|d| matches!(d.source, opendata::Source::Postgres { .. }))
    {
        errors.push(ConfigError::new(
            file,
            "datasets.postgres_url",
            format!(
                "dataset {} is read from PostgreSQL, but this node has no open-data database",
                dataset.id()
            ),
        ));
    }
    let state_dir = raw
        .datasets
        .as_ref()
        .and_then(|d| d.state_dir.as_deref())
        .map_or_else(|| resolve(Path::new("opendata")), resolve);
    OpenDataSettings {
        public: PublicSettings {
            tls: section.tls,
            trusted_proxies,
            proxy_protocol: section.proxy_protocol,
            per_second,
            burst,
            base_url,
        },
        datasets,
        state_dir,
        databases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_contain_their_addresses_only() {
        let block = Cidr::parse("10.1.0.0/16").expect("v4 block");
        assert!(block.contains("10.1.200.3".parse().expect("ip")));
        assert!(!block.contains("10.2.0.1".parse().expect("ip")));
        assert!(block.contains("::ffff:10.1.0.9".parse().expect("mapped")));
        let v6 = Cidr::parse("2001:db8::/32").expect("v6 block");
        assert!(v6.contains("2001:db8:1::5".parse().expect("ip")));
        assert!(!v6.contains("2001:db9::5".parse().expect("ip")));
        assert!(
            Cidr::parse("127.0.0.1")
                .expect("host")
                .contains("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(Cidr::parse("10.0.0.0/33"), None);
        assert_eq!(Cidr::parse("example.org"), None);
    }

    #[test]
    fn base_url_is_an_http_url_without_query_and_trailing_slash() {
        let url = parse_base_url("https://data.example.gov.vn/open/").expect("https");
        assert_eq!(url.as_str(), "https://data.example.gov.vn/open");
        let root = parse_base_url("http://127.0.0.1:8080/").expect("http");
        assert_eq!(root.as_str().trim_end_matches('/'), "http://127.0.0.1:8080");
        for refused in [
            "ftp://data.example.gov.vn",
            "data.example.gov.vn",
            "https://user:pw@data.example.gov.vn",
            "https://data.example.gov.vn/?a=1",
            "https://data.example.gov.vn/#x",
            "file:///etc/passwd",
        ] {
            assert!(parse_base_url(refused).is_err(), "{refused}");
        }
    }
}
