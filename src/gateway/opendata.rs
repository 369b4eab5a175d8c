//! Open data on the edge: the public listener (anyone, no certificate) and, for datasets of
//! the `members` tier, the consumer listener (000 Điều 3 k10–11; 000 Điều 8 k6, Điều 22 k2).
//!
//! - The **CKAN Action API** subset data-portal tooling speaks (`/api/3/action/…`):
//!   `package_list`, `package_show`, `package_search`, `organization_list`,
//!   `organization_show`, `resource_show`, `datastore_search`, with CKAN's
//!   `{help, success, result}` envelope and its error objects and statuses (each error
//!   also carries our stable `code`).
//! - **Downloads**: `/dataset/{id}.csv` and `/dataset/{id}.json`, streamed batch by batch
//!   (a table of millions of rows never sits whole in memory), with `ETag` /
//!   `If-None-Match`, `Cache-Control`, `Content-Disposition`.
//! - **Per-client limits** (`governor`, keyed): the client is the connection's address (the
//!   TCP peer, or the source a trusted load balancer's PROXY header named, see
//!   `listener::RemoteAddr`), or the right-most `X-Forwarded-For` hop that is not a trusted
//!   proxy when that address is one; IPv6 clients are counted per /64. Over the limit: 429 with `Retry-After`. Anonymous reads
//!   are counted in metrics, not journaled one by one.
//!
//! Owns: the catalog of opened tables ([`Catalog`]), the routes, turning CKAN parameters
//! into a [`Query`] (identifiers only from the dataset's declared fields).
//!
//! Does not own: the tables and their SQL (`crate::opendata::store`), the metadata's
//! validation (`crate::opendata`), the listeners (`listener`).

use super::Gateway;
use super::listener::RemoteAddr;
use crate::config::opendata::{Cidr, OpenDataSettings, PublicSettings};
use crate::error::{ErrorCode, GatewayError};
use crate::opendata::store::{Cell, Databases, Page, Query, SortKey, Table};
use crate::opendata::{Audience, Dataset, FieldType, MAX_PAGE_ROWS, Source};
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

/// The most rows `datastore_search` skips (`offset`).
pub const MAX_OFFSET: u64 = 100_000_000;
/// The most rows `package_search` answers.
const MAX_SEARCH_ROWS: usize = 1000;
/// How many client keys a limiter remembers before it forgets the quiet ones.
const MAX_LIMITER_KEYS: usize = 100_000;

/// A client as the limits count it: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// The client's address: `peer` (the connection's [`RemoteAddr`], the PROXY header's source
/// when a load balancer sent one), or, when it is a trusted proxy, the
/// right-most `X-Forwarded-For` hop that is not one (a client cannot spoof past the
/// proxies it does not control). Unparseable hops end the walk at the last trusted one.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|cidr| cidr.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    return ip;
                }
            }
            Err(_) => return client,
        }
    }
    client
}

/// A per-client limiter that can start afresh when it remembers too many clients.
struct Limiter {
    current: arc_swap::ArcSwap<DefaultKeyedRateLimiter<ClientKey>>,
    per_second: u32,
    burst: u32,
}

impl Limiter {
    fn new(per_second: u32, burst: u32) -> Limiter {
        Limiter {
            current: arc_swap::ArcSwap::from_pointee(limiter(per_second, burst)),
            per_second,
            burst,
        }
    }

    fn check(&self, key: &ClientKey) -> Result<(), std::time::Duration> {
        self.current
            .load()
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets quiet clients; past [`MAX_LIMITER_KEYS`] clients, starts afresh.
    fn forget_quiet_clients(&self) {
        let current = self.current.load();
        current.retain_recent();
        current.shrink_to_fit();
        if current.len() > MAX_LIMITER_KEYS {
            self.current
                .store(Arc::new(limiter(self.per_second, self.burst)));
        }
    }
}

/// A dataset with its opened table and its per-client limiter.
pub struct Published {
    /// The dataset.
    pub dataset: Dataset,
    /// Its table: replaced whole when an upstream source's refresh imports a new version.
    table: arc_swap::ArcSwap<Table>,
    limiter: Limiter,
    /// An upstream source's last fetch (successful or not) and whether one is running.
    upstream: std::sync::Mutex<UpstreamState>,
}

#[derive(Debug, Default)]
struct UpstreamState {
    fetched_at: Option<tokio::time::Instant>,
    running: bool,
}

impl Published {
    /// Its table as of now (a download keeps the version it started with).
    pub fn table(&self) -> Arc<Table> {
        self.table.load_full()
    }
}

impl std::fmt::Debug for Published {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Published")
            .field("dataset", &self.dataset.id())
            .finish_non_exhaustive()
    }
}

fn limiter(per_second: u32, burst: u32) -> DefaultKeyedRateLimiter<ClientKey> {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

/// The opened datasets of a node.
pub struct Catalog {
    datasets: BTreeMap<String, Arc<Published>>,
    public: PublicSettings,
    /// Routes that name no dataset (lists, searches).
    general: Limiter,
    state_dir: std::path::PathBuf,
    databases: Databases,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("datasets", &self.datasets.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            datasets: BTreeMap::new(),
            public: PublicSettings::default(),
            general: Limiter::new(20, 40),
            state_dir: std::path::PathBuf::new(),
            databases: Databases::default(),
        }
    }
}

impl Catalog {
    /// Opens every dataset's table: CSV sources imported into the state folder first,
    /// upstream sources fetched and imported (their last good import used when the
    /// upstream fails; none at all refuses the catalog, which keeps the last good one on a
    /// reload).
    pub async fn open(settings: &OpenDataSettings) -> Result<Catalog, String> {
        let mut opened = BTreeMap::new();
        for dataset in &settings.datasets {
            let mut fetched_at = None;
            if let Source::Rest { .. } = &dataset.source {
                if let Err(error) = fetch_upstream(dataset, &settings.state_dir).await {
                    tracing::warn!(dataset = dataset.id(), error = %error, "upstream fetch failed; the last import is served");
                }
                fetched_at = Some(tokio::time::Instant::now());
            }
            let table = Table::open(dataset, &settings.state_dir, &settings.databases)
                .await
                .map_err(|e| format!("dataset {}: {e}", dataset.id()))?;
            let (per_second, burst) = dataset.rate;
            opened.insert(
                dataset.id().to_owned(),
                Arc::new(Published {
                    dataset: dataset.clone(),
                    table: arc_swap::ArcSwap::from_pointee(table),
                    limiter: Limiter::new(per_second, burst),
                    upstream: std::sync::Mutex::new(UpstreamState {
                        fetched_at,
                        running: false,
                    }),
                }),
            );
        }
        Ok(Catalog {
            datasets: opened,
            public: settings.public.clone(),
            general: Limiter::new(settings.public.per_second, settings.public.burst),
            state_dir: settings.state_dir.clone(),
            databases: settings.databases.clone(),
        })
    }

    /// Starts a fetch of every upstream source whose refresh interval has passed (one at a
    /// time per dataset); a changed answer is imported and its table swapped in, while
    /// requests keep reading the previous one.
    pub fn refresh_upstreams(&self) {
        let now = tokio::time::Instant::now();
        for published in self.datasets.values() {
            let Source::Rest { refresh, .. } = &published.dataset.source else {
                continue;
            };
            {
                let Ok(mut state) = published.upstream.lock() else {
                    continue;
                };
                let due = state
                    .fetched_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= *refresh);
                if state.running || !due {
                    continue;
                }
                state.running = true;
            }
            let (published, state_dir, databases) = (
                published.clone(),
                self.state_dir.clone(),
                self.databases.clone(),
            );
            tokio::spawn(async move {
                let dataset = &published.dataset;
                match fetch_upstream(dataset, &state_dir).await {
                    Ok(true) => match Table::open(dataset, &state_dir, &databases).await {
                        Ok(table) => {
                            published.table.store(Arc::new(table));
                            metrics::counter!("datagate_opendata_upstream_fetches_total", "outcome" => "changed").increment(1);
                        }
                        Err(error) => {
                            tracing::warn!(dataset = dataset.id(), error = %error, "refreshed table unreadable; the previous one is served");
                        }
                    },
                    Ok(false) => {
                        metrics::counter!("datagate_opendata_upstream_fetches_total", "outcome" => "unchanged").increment(1);
                    }
                    Err(error) => {
                        metrics::counter!("datagate_opendata_upstream_fetches_total", "outcome" => "failed").increment(1);
                        tracing::warn!(dataset = dataset.id(), error = %error, "upstream fetch failed; the last import is served");
                    }
                }
                if let Ok(mut state) = published.upstream.lock() {
                    state.fetched_at = Some(tokio::time::Instant::now());
                    state.running = false;
                }
            });
        }
    }

    /// The ids of the datasets `edge` shows.
    pub fn ids(&self, edge: Edge) -> Vec<String> {
        self.visible(edge)
            .map(|p| p.dataset.id().to_owned())
            .collect()
    }

    /// Each dataset `edge` shows, with its declared fields.
    pub fn schemas(&self, edge: Edge) -> Vec<(String, Vec<(String, FieldType)>)> {
        self.visible(edge)
            .map(|p| (p.dataset.id().to_owned(), p.table().columns().to_vec()))
            .collect()
    }

    /// The datasets the edge may show.
    pub(super) fn visible(&self, edge: Edge) -> impl Iterator<Item = &Arc<Published>> {
        self.datasets
            .values()
            .filter(move |p| edge.shows(p.dataset.raw.audience))
    }

    /// The public listener's settings (the catalog's base URL).
    pub(super) fn public_settings(&self) -> &PublicSettings {
        &self.public
    }

    fn get(&self, edge: Edge, id: &str) -> Option<&Arc<Published>> {
        self.datasets
            .get(id)
            .filter(|p| edge.shows(p.dataset.raw.audience))
    }

    /// Forgets the limiters' quiet clients, and all of them past [`MAX_LIMITER_KEYS`].
    pub fn forget_quiet_clients(&self) {
        self.general.forget_quiet_clients();
        for published in self.datasets.values() {
            published.limiter.forget_quiet_clients();
        }
    }
}

/// Which listener asks: it decides which tier is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// The public listener: `audience: public` only.
    Public,
    /// The consumer listener, for authenticated members: both tiers.
    Members,
}

impl Edge {
    fn shows(self, audience: Audience) -> bool {
        match self {
            Edge::Public => audience == Audience::Public,
            Edge::Members => true,
        }
    }
}

/// The public listener's router: open data, and its OpenAPI document.
pub fn public_router(gateway: Arc<Gateway>) -> axum::Router {
    routes(Edge::Public)
        .route(
            "/openapi.json",
            axum::routing::get(
                |State(gateway): State<Arc<Gateway>>, request: Request| async move {
                    let catalog = gateway.catalog();
                    let (head, _) = request.into_parts();
                    if let Err(error) = admit(
                        &gateway,
                        &catalog,
                        Edge::Public,
                        (&head.headers, &head.extensions),
                        None,
                    ) {
                        return problem(error);
                    }
                    axum::Json(super::openapi::open_data(&gateway, Edge::Public, ""))
                        .into_response()
                },
            ),
        )
        .layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            super::head_limits::layer,
        ))
        .with_state(gateway)
}

/// The same API for members, merged into the consumer router under `/opendata/v1`.
pub fn member_routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new().nest("/opendata/v1", routes(Edge::Members))
}

fn routes(edge: Edge) -> axum::Router<Arc<Gateway>> {
    use axum::routing::get;
    let action = move |State(gateway): State<Arc<Gateway>>,
                       Path(name): Path<String>,
                       request: Request| async move {
        action(gateway, edge, name, request).await
    };
    let download = move |State(gateway): State<Arc<Gateway>>,
                         Path(file): Path<String>,
                         request: Request| async move {
        download(gateway, edge, file, request).await
    };
    axum::Router::new()
        // CKAN serves its Action API under both spellings; ckanapi uses the second.
        .route("/api/3/action/{name}", get(action).post(action))
        .route("/api/action/{name}", get(action).post(action))
        .route("/dataset/{file}", get(download))
        .merge(super::dcat::routes(edge))
        .merge(super::opendata_page::routes(edge))
}

// ---------------------------------------------------------------------------
// Who asks, and the limits
// ---------------------------------------------------------------------------

/// Days of anonymous-read summaries kept.
const USAGE_DAYS: i64 = 31;

/// Daily summaries of open-data reads (anonymous reads are counted, never journaled one by
/// one): requests per day, dataset, action and edge. Keys are bounded: datasets only from
/// the configured catalog (`*` for routes that name none), actions from a fixed set, and
/// [`USAGE_DAYS`] days; the summaries outlive reloads (they live on the gateway).
#[derive(Debug, Default)]
pub struct Usage {
    days: std::sync::Mutex<BTreeMap<UsageKey, u64>>,
}

/// A summary's key: day, dataset, action, edge.
type UsageKey = (time::Date, String, &'static str, &'static str);

impl Usage {
    /// Counts one read of `dataset` (a catalog id, or none) by `action` on `edge` at `now`.
    pub fn record(
        &self,
        now: time::OffsetDateTime,
        dataset: Option<&str>,
        action: &'static str,
        edge: Edge,
    ) {
        let Ok(mut days) = self.days.lock() else {
            return;
        };
        let today = now.date();
        *days
            .entry((
                today,
                dataset.unwrap_or("*").to_owned(),
                action,
                edge.as_str(),
            ))
            .or_insert(0) += 1;
        let oldest = today - time::Duration::days(USAGE_DAYS - 1);
        while days
            .first_key_value()
            .is_some_and(|(key, _)| key.0 < oldest)
        {
            days.pop_first();
        }
    }

    /// The summaries, oldest day first.
    pub fn summary(&self) -> Value {
        let Ok(days) = self.days.lock() else {
            return json!({"days": []});
        };
        let rows: Vec<Value> = days
            .iter()
            .map(|((date, dataset, action, edge), requests)| {
                json!({"date": date.to_string(), "dataset": dataset, "action": action,
                       "edge": edge, "requests": requests})
            })
            .collect();
        json!({"days": rows})
    }
}

/// Fetches `dataset`'s upstream (bounded by its `max_bytes`, 60 s in all) and imports the
/// answer; `Ok(false)` when it is the same as the last import.
async fn fetch_upstream(dataset: &Dataset, state_dir: &std::path::Path) -> Result<bool, String> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let Source::Rest {
        url,
        format,
        max_bytes,
        ..
    } = &dataset.source
    else {
        return Ok(false);
    };
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("datagate/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    });
    let accept = match format {
        crate::opendata::store::UpstreamFormat::Json => "application/json",
        crate::opendata::store::UpstreamFormat::Csv => "text/csv",
    };
    let mut response = client
        .get(url.clone())
        .header(header::ACCEPT, accept)
        .send()
        .await
        .map_err(|e| format!("the upstream did not answer: {}", e.without_url()))?;
    if !response.status().is_success() {
        return Err(format!(
            "the upstream answered {}",
            response.status().as_u16()
        ));
    }
    let limit = usize::try_from(*max_bytes).unwrap_or(usize::MAX);
    let body = super::federation::read_limited(&mut response, limit)
        .await
        .map_err(|e| format!("the upstream's answer: {e}"))?;
    crate::opendata::store::import_upstream(dataset, body, *format, state_dir)
        .await
        .map_err(|e| e.to_string())
}

/// On the public listener, the client's key after the limiter of `dataset` (or the general
/// one) admitted it; on the consumer listener, the authenticated member (limits are theirs).
pub(super) fn admit(
    gateway: &Gateway,
    catalog: &Catalog,
    edge: Edge,
    (headers, extensions): (&HeaderMap, &axum::http::Extensions),
    dataset: Option<&Published>,
) -> Result<(), GatewayError> {
    match edge {
        Edge::Members => {
            let runtime = gateway.runtime();
            let certificate = extensions
                .get::<crate::trust::PeerCertificate>()
                .ok_or_else(|| {
                    GatewayError::new(
                        ErrorCode::TrustCertificateMissing,
                        "a client certificate is required",
                    )
                })?;
            let client =
                crate::protocol::parse_client(headers.get(crate::protocol::X_ROAD_CLIENT))?;
            runtime.registry.authenticate_client(
                &certificate.fingerprint_sha256,
                &client,
                gateway.clock().now(),
            )?;
            Ok(())
        }
        Edge::Public => {
            let peer = extensions
                .get::<RemoteAddr>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |remote| remote.0.ip());
            let ip = client_ip(peer, headers, &catalog.public.trusted_proxies);
            let limiter = dataset.map_or(&catalog.general, |published| &published.limiter);
            limiter.check(&ClientKey::of(ip)).map_err(|wait| {
                metrics::counter!("datagate_opendata_limited_total").increment(1);
                GatewayError::new(
                    ErrorCode::OpendataRateLimited,
                    "too many requests from this client; slow down",
                )
                .with_retry_after(wait)
            })
        }
    }
}

// ---------------------------------------------------------------------------
// CKAN's envelope
// ---------------------------------------------------------------------------

fn help(action: &str) -> String {
    format!("/api/3/action/help_show?name={action}")
}

fn ckan_ok(action: &str, result: Answer) -> Response {
    #[derive(serde::Serialize)]
    struct Envelope {
        help: String,
        success: bool,
        result: Answer,
    }
    let body = Envelope {
        help: help(action),
        success: true,
        result,
    };
    (
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response()
}

/// A CKAN error: its `__type` and status from our code, the message, and our stable code.
fn ckan_error(action: &str, error: GatewayError, field: Option<&str>) -> Response {
    let code = error.code();
    let (kind, status) = match code {
        ErrorCode::OpendataNotFound => ("Not Found Error", StatusCode::NOT_FOUND),
        ErrorCode::OpendataInvalidQuery => ("Validation Error", StatusCode::CONFLICT),
        ErrorCode::OpendataRateLimited => ("Rate Limit Error", StatusCode::TOO_MANY_REQUESTS),
        ErrorCode::OpendataUnavailable => ("Internal Error", StatusCode::SERVICE_UNAVAILABLE),
        ErrorCode::RequestBodyInvalid => ("Bad request", StatusCode::BAD_REQUEST),
        _ if code.status() == StatusCode::FORBIDDEN
            || code.status() == StatusCode::UNAUTHORIZED =>
        {
            ("Authorization Error", StatusCode::FORBIDDEN)
        }
        _ => ("Internal Error", code.status()),
    };
    let mut object = Map::new();
    object.insert("__type".into(), Value::from(kind));
    object.insert("message".into(), Value::from(error.detail()));
    if let Some(field) = field {
        object.insert(field.into(), json!([error.detail()]));
    }
    object.insert("code".into(), Value::from(code.as_str()));
    metrics::counter!("datagate_refusals_total", "code" => code.as_str()).increment(1);
    let body = json!({"help": help(action), "success": false, "error": object});
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json;charset=utf-8")],
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response();
    if let Some(wait) = error.retry_after() {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs_f64().ceil().max(1.0) as u64),
        );
    }
    response
}

/// A refused parameter: the field it names (CKAN puts validation messages under it).
struct Refusal {
    error: GatewayError,
    field: Option<&'static str>,
}

impl From<GatewayError> for Refusal {
    fn from(error: GatewayError) -> Self {
        Refusal { error, field: None }
    }
}

fn invalid(field: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        error: GatewayError::new(ErrorCode::OpendataInvalidQuery, detail),
        field: Some(field),
    }
}

fn not_found(what: &str) -> Refusal {
    Refusal {
        error: GatewayError::new(ErrorCode::OpendataNotFound, format!("{what} not found")),
        field: None,
    }
}

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

/// The action's parameters: the query string (GET), or a JSON object (POST, at most 64 KiB).
async fn parameters(
    parts: &axum::http::request::Parts,
    body: Body,
) -> Result<Map<String, Value>, Refusal> {
    let mut parameters = Map::new();
    if let Some(query) = parts.uri.query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if parameters.contains_key(name.as_ref()) {
                return Err(invalid("query", "a parameter was given twice"));
            }
            parameters.insert(name.into_owned(), Value::String(value.into_owned()));
        }
    }
    if parts.method == axum::http::Method::POST {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let bytes = super::exchange::read_body(parts, body, 64 * 1024, deadline).await?;
        if !bytes.is_empty() {
            let object: Map<String, Value> =
                serde_json::from_slice(&bytes).map_err(|_| Refusal {
                    error: GatewayError::new(
                        ErrorCode::RequestBodyInvalid,
                        "the body must be a JSON object of the action's parameters",
                    ),
                    field: None,
                })?;
            parameters.extend(object);
        }
    }
    Ok(parameters)
}

fn text<'a>(
    parameters: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, Refusal> {
    match parameters.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(invalid(name, "must be a string")),
    }
}

fn number(
    parameters: &Map<String, Value>,
    name: &'static str,
    default: u64,
    max: u64,
) -> Result<u64, Refusal> {
    let value = match parameters.get(name) {
        None | Some(Value::Null) => return Ok(default),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    match value {
        Some(value) if value <= max => Ok(value),
        Some(_) => Err(invalid(name, format!("must be at most {max}"))),
        None => Err(invalid(name, "must be a natural number")),
    }
}

fn boolean(
    parameters: &Map<String, Value>,
    name: &'static str,
    default: bool,
) -> Result<bool, Refusal> {
    match parameters.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(invalid(name, "must be true or false")),
    }
}

fn field_index(dataset: &Dataset, name: &str, parameter: &'static str) -> Result<usize, Refusal> {
    dataset
        .raw
        .fields
        .iter()
        .position(|field| field.name == name)
        .ok_or_else(|| invalid(parameter, "names a field the dataset does not have"))
}

/// A filter value as the field's type.
fn typed(kind: FieldType, value: &Value) -> Option<Value> {
    match (kind, value) {
        (FieldType::Integer, Value::Number(n)) => n.as_i64().map(Value::from),
        (FieldType::Integer, Value::String(s)) => s.trim().parse::<i64>().ok().map(Value::from),
        (FieldType::Number, Value::Number(n)) => n.as_f64().map(Value::from),
        (FieldType::Number, Value::String(s)) => s.trim().parse::<f64>().ok().map(Value::from),
        (FieldType::Text | FieldType::Date, Value::String(s)) => Some(Value::String(s.clone())),
        (FieldType::Text | FieldType::Date, Value::Number(n)) => Some(Value::String(n.to_string())),
        _ => None,
    }
}

/// `datastore_search`'s parameters as a [`Query`].
fn datastore_query(dataset: &Dataset, parameters: &Map<String, Value>) -> Result<Query, Refusal> {
    let mut query = Query {
        limit: u32::try_from(number(parameters, "limit", 100, u64::from(MAX_PAGE_ROWS))?)
            .unwrap_or(MAX_PAGE_ROWS),
        offset: number(parameters, "offset", 0, MAX_OFFSET)?,
        ..Query::default()
    };
    let filters = match parameters.get("filters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(invalid("filters", "must be a JSON object of field: value")),
        },
        Some(_) => return Err(invalid("filters", "must be a JSON object of field: value")),
    };
    if filters.len() > 16 {
        return Err(invalid("filters", "at most 16 fields"));
    }
    for (name, value) in &filters {
        let index = field_index(dataset, name, "filters")?;
        let kind = dataset.raw.fields[index].kind;
        let values: Vec<&Value> = match value {
            Value::Array(items) if items.len() <= 100 => items.iter().collect(),
            Value::Array(_) => return Err(invalid("filters", "at most 100 values per field")),
            other => vec![other],
        };
        let typed: Option<Vec<Value>> = values.iter().map(|v| typed(kind, v)).collect();
        let typed =
            typed.ok_or_else(|| invalid("filters", "a value does not fit its field's type"))?;
        query.filters.push((index, typed));
    }
    match parameters.get("q") {
        None | Some(Value::Null) => {}
        Some(Value::String(q)) if q.chars().count() <= 200 => {
            if !q.trim().is_empty() {
                query.q = Some(q.trim().to_owned());
            }
        }
        Some(Value::String(_)) => return Err(invalid("q", "at most 200 characters")),
        Some(_) => {
            return Err(invalid(
                "q",
                "must be a string (per-field search is not offered)",
            ));
        }
    }
    let fields: Vec<String> = match parameters.get("fields") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(list)) => list
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid("fields", "must be field names"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(invalid("fields", "must be a list of field names")),
    };
    for name in &fields {
        query.fields.push(field_index(dataset, name, "fields")?);
    }
    if let Some(sort) = text(parameters, "sort")? {
        for part in sort.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = part.split_whitespace();
            let name = words.next().unwrap_or_default().trim_matches('"');
            let descending = match words.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => return Err(invalid("sort", "each key is a field, then asc or desc")),
            };
            if words.next().is_some() {
                return Err(invalid("sort", "each key is a field, then asc or desc"));
            }
            query.sort.push(SortKey {
                field: field_index(dataset, name, "sort")?,
                descending,
            });
        }
        if query.sort.len() > 4 {
            return Err(invalid("sort", "at most 4 keys"));
        }
    }
    Ok(query)
}

// ---------------------------------------------------------------------------
// The actions
// ---------------------------------------------------------------------------

async fn action(gateway: Arc<Gateway>, edge: Edge, name: String, request: Request) -> Response {
    let catalog = gateway.catalog();
    let action: &'static str = match name.as_str() {
        "package_list" => "package_list",
        "package_show" => "package_show",
        "package_search" => "package_search",
        "organization_list" => "organization_list",
        "organization_show" => "organization_show",
        "resource_show" => "resource_show",
        "datastore_search" => "datastore_search",
        _ => {
            let error = GatewayError::new(
                ErrorCode::OpendataNotFound,
                "no such action (package_list, package_show, package_search, organization_list, organization_show, resource_show, datastore_search)",
            );
            return ckan_error("help", error, None);
        }
    };
    metrics::counter!("datagate_opendata_requests_total", "action" => action, "edge" => edge.as_str()).increment(1);
    let (head, body) = request.into_parts();
    // Members are authenticated before their parameters are read.
    if edge == Edge::Members
        && let Err(error) = admit(
            &gateway,
            &catalog,
            edge,
            (&head.headers, &head.extensions),
            None,
        )
    {
        return ckan_error(action, error, None);
    }
    let parameters = match parameters(&head, body).await {
        Ok(parameters) => parameters,
        Err(refusal) => return ckan_error(action, refusal.error, refusal.field),
    };
    // The dataset named, if any, decides the limiter (its own, or the general one).
    let named = ["id", "resource_id"]
        .iter()
        .find_map(|key| parameters.get(*key).and_then(Value::as_str));
    let limited = named.and_then(|id| catalog.get(edge, id)).cloned();
    if edge == Edge::Public
        && let Err(error) = admit(
            &gateway,
            &catalog,
            edge,
            (&head.headers, &head.extensions),
            limited.as_deref(),
        )
    {
        return ckan_error(action, error, None);
    }
    gateway.opendata_usage().record(
        gateway.clock().now(),
        limited.as_ref().map(|p| p.dataset.id()),
        action,
        edge,
    );
    let outcome = async {
        match action {
            "datastore_search" => datastore_search(&catalog, edge, &parameters).await,
            _ => json_action(&catalog, edge, action, &parameters).map(Answer::Json),
        }
    }
    .await;
    match outcome {
        Ok(result) => ckan_ok(action, result),
        Err(refusal) => ckan_error(action, refusal.error, refusal.field),
    }
}

/// The actions answered with plain JSON.
fn json_action(
    catalog: &Catalog,
    edge: Edge,
    action: &str,
    parameters: &Map<String, Value>,
) -> Result<Value, Refusal> {
    {
        match action {
            "package_list" => Ok(Value::from(
                catalog
                    .visible(edge)
                    .map(|p| p.dataset.id().to_owned())
                    .collect::<Vec<_>>(),
            )),
            "package_show" => {
                let id = text(parameters, "id")?.ok_or_else(|| invalid("id", "Missing value"))?;
                let published = catalog.get(edge, id).ok_or_else(|| not_found("Dataset"))?;
                Ok(package(published))
            }
            "package_search" => package_search(catalog, edge, parameters),
            "organization_list" => {
                let all = boolean(parameters, "all_fields", false)?;
                Ok(Value::from(
                    organizations(catalog, edge)
                        .into_values()
                        .map(|org| if all { org } else { org["name"].clone() })
                        .collect::<Vec<_>>(),
                ))
            }
            "organization_show" => {
                let id = text(parameters, "id")?.ok_or_else(|| invalid("id", "Missing value"))?;
                let mut organization = organizations(catalog, edge)
                    .remove(id)
                    .ok_or_else(|| not_found("Organization"))?;
                organization["packages"] = Value::from(
                    catalog
                        .visible(edge)
                        .filter(|p| organization_name(&p.dataset) == id)
                        .map(|p| package(p))
                        .collect::<Vec<_>>(),
                );
                Ok(organization)
            }
            "resource_show" => {
                let id = text(parameters, "id")?.ok_or_else(|| invalid("id", "Missing value"))?;
                let published = catalog.get(edge, id).ok_or_else(|| not_found("Resource"))?;
                Ok(resource(published))
            }
            _ => Err(not_found("Action")),
        }
    }
}

impl Edge {
    /// Its metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Edge::Public => "public",
            Edge::Members => "members",
        }
    }
}

/// CKAN's organization name for a publisher member: `vn-gov-000-00-00-g10`.
/// The CKAN organization name of a dataset's publisher.
pub(super) fn organization_name(dataset: &Dataset) -> String {
    dataset
        .publisher
        .to_string()
        .to_ascii_lowercase()
        .replace(['/', '.'], "-")
}

fn organization(dataset: &Dataset) -> Value {
    let name = organization_name(dataset);
    json!({
        "id": name, "name": name, "title": dataset.raw.publisher_name,
        "type": "organization", "state": "active", "is_organization": true,
        "description": "", "image_url": "", "approval_status": "approved",
        "member_id": dataset.publisher.to_string(),
    })
}

fn organizations(catalog: &Catalog, edge: Edge) -> BTreeMap<String, Value> {
    let mut organizations: BTreeMap<String, Value> = BTreeMap::new();
    for published in catalog.visible(edge) {
        let entry = organizations
            .entry(organization_name(&published.dataset))
            .or_insert_with(|| {
                let mut org = organization(&published.dataset);
                org["package_count"] = Value::from(0);
                org
            });
        entry["package_count"] = Value::from(entry["package_count"].as_u64().unwrap_or(0) + 1);
    }
    organizations
}

/// The resource of a dataset: its table, in the datastore and as a CSV download.
fn resource(published: &Published) -> Value {
    let dataset = &published.dataset;
    json!({
        "id": dataset.id(), "package_id": dataset.id(), "name": dataset.raw.title,
        "description": dataset.raw.description, "format": "CSV", "mimetype": "text/csv",
        "url": format!("/dataset/{}.csv", dataset.id()),
        "datastore_active": true, "state": "active", "position": 0,
        "last_modified": Value::Null, "size": Value::Null,
        "json_url": format!("/dataset/{}.json", dataset.id()),
        "rows": published.table().rows(),
    })
}

/// A dataset as CKAN's package dictionary, with the regulations' metadata in `extras`.
fn package(published: &Published) -> Value {
    let raw = &published.dataset.raw;
    let extras = [
        ("title_en", raw.title_en.clone().unwrap_or_default()),
        (
            "description_en",
            raw.description_en.clone().unwrap_or_default(),
        ),
        (
            "update_frequency",
            raw.update_frequency.eu_code().to_owned(),
        ),
        ("retention_months", raw.retention_months.to_string()),
        (
            "provenance",
            serde_json::to_value(raw.provenance)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
        ),
        ("provenance_label", raw.provenance.label_vi().to_owned()),
        ("attribution", raw.attribution.clone()),
        (
            "audience",
            if raw.audience == Audience::Public {
                "public"
            } else {
                "members"
            }
            .to_owned(),
        ),
        ("classification", raw.classification.clone()),
    ];
    json!({
        "id": raw.id, "name": raw.id, "title": raw.title, "notes": raw.description,
        "type": "dataset", "state": "active", "private": raw.audience == Audience::Members,
        "license_id": raw.licence.id, "license_title": raw.licence.title, "license_url": raw.licence.url,
        "author": raw.publisher_name, "maintainer": raw.publisher_name,
        "owner_org": organization_name(&published.dataset),
        "organization": organization(&published.dataset),
        "tags": raw.keywords.iter().map(|k| json!({"name": k, "display_name": k})).collect::<Vec<_>>(),
        "num_tags": raw.keywords.len(),
        "resources": [resource(published)],
        "num_resources": 1,
        "extras": extras.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

fn package_search(
    catalog: &Catalog,
    edge: Edge,
    parameters: &Map<String, Value>,
) -> Result<Value, Refusal> {
    let q = text(parameters, "q")?
        .map(str::to_lowercase)
        .filter(|q| !q.trim().is_empty() && q.trim() != "*:*");
    let rows =
        usize::try_from(number(parameters, "rows", 10, MAX_SEARCH_ROWS as u64)?).unwrap_or(10);
    let start = usize::try_from(number(parameters, "start", 0, MAX_OFFSET)?).unwrap_or(0);
    // fq: space-separated `field:value` terms (value optionally quoted), all must hold.
    let mut terms: Vec<(String, String)> = Vec::new();
    if let Some(fq) = text(parameters, "fq")? {
        let mut rest = fq.trim();
        while !rest.is_empty() {
            let (name, after) = rest
                .split_once(':')
                .ok_or_else(|| invalid("fq", "each term is field:value"))?;
            let name = name.trim().trim_start_matches('+');
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or_else(|| invalid("fq", "an unclosed quote"))?;
                (&quoted[..end], &quoted[end + 1..])
            } else {
                match after.find(char::is_whitespace) {
                    Some(end) => (&after[..end], &after[end..]),
                    None => (after, ""),
                }
            };
            if !matches!(
                name,
                "organization" | "owner_org" | "tags" | "license_id" | "res_format" | "name"
            ) {
                return Err(invalid(
                    "fq",
                    "fields: organization, tags, license_id, res_format, name",
                ));
            }
            terms.push((name.to_owned(), value.to_owned()));
            rest = remaining.trim();
            if terms.len() > 16 {
                return Err(invalid("fq", "at most 16 terms"));
            }
        }
    }
    let mut matched: Vec<&Arc<Published>> = catalog
        .visible(edge)
        .filter(|published| {
            let raw = &published.dataset.raw;
            let q_ok = q.as_ref().is_none_or(|q| {
                q.split_whitespace().all(|word| {
                    raw.title.to_lowercase().contains(word)
                        || raw.description.to_lowercase().contains(word)
                        || raw.id.contains(word)
                        || raw.keywords.iter().any(|k| k.to_lowercase().contains(word))
                        || raw
                            .title_en
                            .as_ref()
                            .is_some_and(|t| t.to_lowercase().contains(word))
                })
            });
            q_ok && terms.iter().all(|(name, value)| match name.as_str() {
                "organization" | "owner_org" => organization_name(&published.dataset) == *value,
                "tags" => raw.keywords.iter().any(|k| k == value),
                "license_id" => raw.licence.id == *value,
                "res_format" => value.eq_ignore_ascii_case("csv"),
                _ => raw.id == *value,
            })
        })
        .collect();
    let sort = text(parameters, "sort")?
        .unwrap_or("name asc")
        .trim()
        .to_ascii_lowercase();
    match sort.as_str() {
        "name asc" | "score desc, metadata_modified desc" | "score desc" => {
            matched.sort_by(|a, b| a.dataset.id().cmp(b.dataset.id()))
        }
        "name desc" => matched.sort_by(|a, b| b.dataset.id().cmp(a.dataset.id())),
        "title_string asc" => matched.sort_by(|a, b| a.dataset.raw.title.cmp(&b.dataset.raw.title)),
        "title_string desc" => {
            matched.sort_by(|a, b| b.dataset.raw.title.cmp(&a.dataset.raw.title))
        }
        _ => {
            return Err(invalid(
                "sort",
                "one of: name asc|desc, title_string asc|desc, score desc",
            ));
        }
    }
    let count = matched.len();
    let results: Vec<Value> = matched
        .into_iter()
        .skip(start)
        .take(rows)
        .map(|p| package(p))
        .collect();
    Ok(json!({"count": count, "results": results, "sort": sort, "facets": {}, "search_facets": {}}))
}

/// The records of a page as CKAN's list of objects, serialized straight from the cells.
struct Records<'a> {
    names: Vec<&'a str>,
    page: &'a Page,
}

impl serde::Serialize for Records<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut records = serializer.serialize_seq(Some(self.page.len()))?;
        for row in self.page.rows() {
            records.serialize_element(&RecordRow(&self.names, row))?;
        }
        records.end()
    }
}

struct RecordRow<'a>(&'a [&'a str], &'a [Cell]);

impl serde::Serialize for RecordRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut object = serializer.serialize_map(Some(self.0.len()))?;
        for (name, cell) in self.0.iter().zip(self.1) {
            object.serialize_entry(name, cell)?;
        }
        object.end()
    }
}

/// `datastore_search`'s result: the page's records are serialized from its cells, the rest
/// is JSON.
#[derive(serde::Serialize)]
struct DatastorePage {
    #[serde(flatten)]
    head: Map<String, Value>,
    #[serde(serialize_with = "serialize_records")]
    records: (Vec<String>, Page),
}

fn serialize_records<S: serde::Serializer>(
    records: &(Vec<String>, Page),
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let (names, page) = records;
    serde::Serialize::serialize(
        &Records {
            names: page.fields.iter().map(|&i| names[i].as_str()).collect(),
            page,
        },
        serializer,
    )
}

/// What an action answers: JSON, or a page of records.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum Answer {
    Json(Value),
    Page(Box<DatastorePage>),
}

async fn datastore_search(
    catalog: &Catalog,
    edge: Edge,
    parameters: &Map<String, Value>,
) -> Result<Answer, Refusal> {
    let id =
        text(parameters, "resource_id")?.ok_or_else(|| invalid("resource_id", "Missing value"))?;
    let published = catalog.get(edge, id).ok_or_else(|| not_found("Resource"))?;
    let query = datastore_query(&published.dataset, parameters)?;
    let include_total = boolean(parameters, "include_total", true)?;
    let unavailable = |e: crate::opendata::store::StoreError| {
        tracing::warn!(dataset = id, error = %e, "dataset table unreadable");
        Refusal::from(GatewayError::new(
            ErrorCode::OpendataUnavailable,
            "the dataset cannot be read now",
        ))
    };
    let table = published.table();
    let page = table.search(&query).await.map_err(unavailable)?;
    let columns = table.columns();
    let fields: Vec<Value> = page
        .fields
        .iter()
        .map(|&i| json!({"id": columns[i].0, "type": columns[i].1.ckan()}))
        .collect();
    let mut head = json!({
        "resource_id": id, "fields": fields,
        "limit": query.limit, "offset": query.offset, "include_total": include_total,
        "_links": {
            "start": format!("/api/3/action/datastore_search?resource_id={id}"),
            "next": format!("/api/3/action/datastore_search?resource_id={id}&offset={}", query.offset + u64::from(query.limit)),
        },
    });
    if include_total {
        head["total"] = Value::from(table.count(&query).await.map_err(unavailable)?);
    }
    let Value::Object(head) = head else {
        unreachable!("a JSON object literal")
    };
    let names = columns.iter().map(|(name, _)| name.clone()).collect();
    Ok(Answer::Page(Box::new(DatastorePage {
        head,
        records: (names, page),
    })))
}

// ---------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------

fn problem(error: GatewayError) -> Response {
    metrics::counter!("datagate_refusals_total", "code" => error.code().as_str()).increment(1);
    error.into_problem(None)
}

/// One batch of a CSV download: cells written as they are (numbers as JSON writes them).
fn csv_batch(page: &Page) -> std::io::Result<bytes::Bytes> {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(page.len() * 64));
    let (mut integers, mut numbers) = (itoa::Buffer::new(), ryu::Buffer::new());
    for row in page.rows() {
        for cell in row {
            match cell {
                Cell::Null => writer.write_field(b""),
                Cell::Integer(i) => writer.write_field(integers.format(*i)),
                Cell::Number(n) if n.is_finite() => writer.write_field(numbers.format_finite(*n)),
                Cell::Number(_) => writer.write_field(b""),
                Cell::Text(text) => writer.write_field(text),
            }
            .map_err(std::io::Error::other)?;
        }
        writer
            .write_record(None::<&[u8]>)
            .map_err(std::io::Error::other)?;
    }
    writer
        .into_inner()
        .map(bytes::Bytes::from)
        .map_err(|e| std::io::Error::other(e.to_string()))
}

async fn download(gateway: Arc<Gateway>, edge: Edge, file: String, request: Request) -> Response {
    let catalog = gateway.catalog();
    let (id, format) = match file.rsplit_once('.') {
        Some((id, "csv")) => (id.to_owned(), "csv"),
        Some((id, "json")) => (id.to_owned(), "json"),
        _ => {
            return problem(GatewayError::new(
                ErrorCode::OpendataNotFound,
                "downloads are /dataset/{id}.csv or .json",
            ));
        }
    };
    let Some(published) = catalog.get(edge, &id).cloned() else {
        return problem(GatewayError::new(
            ErrorCode::OpendataNotFound,
            "no such dataset",
        ));
    };
    let (head, _) = request.into_parts();
    if let Err(error) = admit(
        &gateway,
        &catalog,
        edge,
        (&head.headers, &head.extensions),
        Some(&published),
    ) {
        return problem(error);
    }
    metrics::counter!("datagate_opendata_downloads_total", "format" => format, "edge" => edge.as_str()).increment(1);
    gateway.opendata_usage().record(
        gateway.clock().now(),
        Some(published.dataset.id()),
        if format == "csv" {
            "download_csv"
        } else {
            "download_json"
        },
        edge,
    );
    let table = published.table();
    // A live database has no cheap version: its downloads carry no ETag.
    let etag = table
        .version
        .as_ref()
        .map(|version| format!("\"{id}-{version}-{format}\""));
    let cache_control = match (edge, &etag) {
        (_, None) => "no-cache",
        (Edge::Public, Some(_)) => "public, max-age=300",
        (Edge::Members, Some(_)) => "private, max-age=300",
    };
    if let Some(etag) = &etag
        && head
            .headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == etag || tag.trim() == "*")
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(value) = HeaderValue::from_str(etag) {
            response.headers_mut().insert(header::ETAG, value);
        }
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(cache_control),
        );
        return response;
    }
    let names: Vec<String> = table.columns().iter().map(|(n, _)| n.clone()).collect();
    let batches = table.stream();
    let body = match format {
        "csv" => {
            let header_line = {
                let mut writer = csv::Writer::from_writer(Vec::new());
                let _ = writer.write_record(&names);
                writer.into_inner().unwrap_or_default()
            };
            let rows = futures_util::StreamExt::map(batches, |batch| {
                csv_batch(&batch.map_err(std::io::Error::other)?)
            });
            let head = futures_util::stream::once(async move {
                Ok::<_, std::io::Error>(bytes::Bytes::from(header_line))
            });
            Body::from_stream(futures_util::StreamExt::chain(head, rows))
        }
        _ => {
            let mut first = true;
            let rows = futures_util::StreamExt::map(batches, move |batch| {
                let batch = batch.map_err(std::io::Error::other)?;
                let named: Vec<&str> = batch.fields.iter().map(|&i| names[i].as_str()).collect();
                let mut out = Vec::with_capacity(batch.len() * 96);
                for row in batch.rows() {
                    out.push(if first { b'[' } else { b',' });
                    first = false;
                    serde_json::to_writer(&mut out, &RecordRow(&named, row))
                        .map_err(std::io::Error::other)?;
                }
                Ok::<_, std::io::Error>(bytes::Bytes::from(out))
            });
            // `[` comes with the first row; an empty table is `[]`. Whether a row came is
            // known only at the end (a live table's count may have changed since it opened).
            let opened = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let seen = opened.clone();
            let rows = futures_util::StreamExt::inspect(rows, move |chunk| {
                if matches!(chunk, Ok(bytes) if !bytes.is_empty()) {
                    seen.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            });
            let tail = futures_util::stream::once(async move {
                let any = opened.load(std::sync::atomic::Ordering::Relaxed);
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(if any { b"]" } else { b"[]" }))
            });
            Body::from_stream(futures_util::StreamExt::chain(rows, tail))
        }
    };
    let content_type = if format == "csv" {
        "text/csv; charset=utf-8"
    } else {
        "application/json"
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    if let Some(value) = etag.and_then(|etag| HeaderValue::from_str(&etag).ok()) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{id}.{format}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in forwarded {
            map.append(
                "x-forwarded-for",
                HeaderValue::from_str(value).expect("header"),
            );
        }
        map
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = [Cidr::parse("10.0.0.0/8").expect("cidr")];
        let proxy: IpAddr = "10.0.0.5".parse().expect("ip");
        let stranger: IpAddr = "203.0.113.9".parse().expect("ip");
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(stranger, &headers(&["198.51.100.1"]), &proxies),
            stranger
        );
        // Through the proxy: the right-most hop that is not a proxy, whatever the client
        // wrote to the left of it.
        assert_eq!(
            client_ip(
                proxy,
                &headers(&["1.2.3.4, 198.51.100.7, 10.0.0.9"]),
                &proxies
            ),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            client_ip(proxy, &headers(&["1.2.3.4", "198.51.100.7"]), &proxies),
            "198.51.100.7".parse::<IpAddr>().expect("ip")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(client_ip(proxy, &headers(&["nonsense"]), &proxies), proxy);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &proxies), proxy);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let a = ClientKey::of("2001:db8:1:2::1".parse().expect("ip"));
        let b = ClientKey::of("2001:db8:1:2:ffff::9".parse().expect("ip"));
        let c = ClientKey::of("2001:db8:1:3::1".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            ClientKey::of("::ffff:192.0.2.1".parse().expect("ip")),
            ClientKey::of("192.0.2.1".parse().expect("ip"))
        );
    }
}
