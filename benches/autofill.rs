//! Once-only autofill (issue 10): `POST /autofill/v1/{form}` of a 15-field form from three
//! sources, **cold** (a fresh citizen each request: every source is called) and **warm** (the
//! same citizen: every source is answered from the answer cache, and still journaled as leg
//! `cache`), **in-process** (the consumer router through `tower::ServiceExt::oneshot`, no
//! socket, the portal's certificate attached as a `PeerCertificate`) and **over mTLS**
//! (reqwest presenting the portal's certificate to the node's consumer listener), at fixed
//! offered rates: an open loop, each request's latency counted from its *scheduled*
//! instant, so a stall is charged to every request it delayed.
//!
//! Beside the fills, in the same run and at the same rates: the journal's own commit
//! latency (three records appended at once into a fresh embedded journal, as a warm fill
//! journals its three source requests), the same warm fills on a node with
//! `[dangerous] disable_journal`, the direct call to the slowest source, and the answer
//! cache's memory when many distinct citizens are filled through a node with a small
//! `[cache] max_bytes`.
//!
//! The three sources are axum servers on 127.0.0.1 answering any citizen after a fixed
//! `tokio::time::sleep` (2, 5 and 10 ms; tokio's timer rounds each up to the next
//! millisecond tick, which is why the slowest source's latency is measured, not assumed).
//!
//! `taskset -c 1 cargo bench --bench autofill --features dev -- [--quick] [--rates 100,200]
//! [--seconds N] [--memory-fills N]`. `--quick` (2 s per run) finishes in about a minute; the
//! default is 10 s per run. Everything (load generator, node, sources, SQLite's worker) runs
//! in this one process, so `taskset -c 1` puts all of it on one core.
//! Figures and method: docs/BENCHMARKS.md, "(e) Once-only autofill (issue 10)".

// A benchmark measures real time and reads its own local servers' answers whole.
#![allow(clippy::disallowed_methods)]

#[path = "common/node_thread.rs"]
mod node_thread;
#[path = "common/proc_self.rs"]
mod proc_self;

use anyhow::Context as _;
use axum::body::Body;
use datagate::gateway::Gateway;
use datagate::journal::{ExchangeRecord, Journal};
use datagate::pki::{CertificateAuthority, IssuedCertificate, LeafSpec};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tower::ServiceExt as _;

/// The node's member.
const NODE_MEMBER: &str = "VN/GOV/000.00.00.G10";
/// The portal (`X-Road-Client`) and its member.
const PORTAL: &str = "VN/GOV/000.00.00.H29/dvc-portal";
const PORTAL_MEMBER: &str = "VN/GOV/000.00.00.H29";
/// The form measured.
const FORM: &str = "bench-household-business";
const PURPOSE: &str = "HOUSEHOLD-REGISTRATION";
const ISSUER: &str = "https://vneid.bench";
/// The warm fills' citizen.
const WARM_SUBJECT: &str = "079099000123";
/// Deadline of one request, and how long the run waits for stragglers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests in flight above which the open loop stops sending (counted as errors).
const MAX_IN_FLIGHT: usize = 5_000;
/// The small cache of the memory run.
const SMALL_CACHE_BYTES: u64 = 1024 * 1024;

/// One source of the form: its register, service, backend path and fixed latency.
#[derive(Debug, Clone, Copy)]
struct Source {
    name: &'static str,
    service: &'static str,
    backend_prefix: &'static str,
    latency: Duration,
    allowed_fields: &'static str,
}

const SOURCES: [Source; 3] = [
    Source {
        name: "citizen",
        service: "VN/GOV/000.00.00.G10/population-db/citizen",
        backend_prefix: "citizens",
        latency: Duration::from_millis(2),
        allowed_fields: "[/citizen_id, /full_name, /date_of_birth, /sex, /nationality, /permanent_address]",
    },
    Source {
        name: "insurance",
        service: "VN/GOV/000.00.00.G22/insurance-db/participant",
        backend_prefix: "participants",
        latency: Duration::from_millis(5),
        allowed_fields: "[/social_insurance_number, /status, /employer/name, /health_card/hospital]",
    },
    Source {
        name: "enterprise",
        service: "VN/GOV/000.00.00.G06/enterprise-db/representative",
        backend_prefix: "representatives",
        latency: Duration::from_millis(10),
        allowed_fields: "[/enterprises, /business_households]",
    },
];

/// The 15 fields: 7 from the citizen register, 4 from each of the others.
const FIELDS: &str = r#"fields:
  - { name: citizen_id, label: Số định danh cá nhân, source: citizen, pointer: /citizen_id }
  - { name: full_name, label: Họ và tên, source: citizen, pointer: /full_name }
  - { name: date_of_birth, label: Ngày sinh, source: citizen, pointer: /date_of_birth, transform: date_dmy }
  - { name: sex, label: Giới tính, source: citizen, pointer: /sex }
  - { name: nationality, label: Quốc tịch, source: citizen, pointer: /nationality }
  - { name: province, label: Tỉnh thường trú, source: citizen, pointer: /permanent_address/province }
  - { name: address, label: Địa chỉ thường trú, source: citizen, join: [/permanent_address/street, /permanent_address/ward, /permanent_address/district, /permanent_address/province], separator: ", " }
  - { name: insurance_number, label: Mã số BHXH, source: insurance, pointer: /social_insurance_number }
  - { name: insurance_status, label: Tình trạng tham gia, source: insurance, pointer: /status }
  - { name: employer, label: Đơn vị công tác, source: insurance, pointer: /employer/name }
  - { name: hospital, label: Nơi khám chữa bệnh ban đầu, source: insurance, pointer: /health_card/hospital }
  - { name: enterprises, label: Số doanh nghiệp đại diện, source: enterprise, pointer: /enterprises, transform: count }
  - { name: first_enterprise, label: Doanh nghiệp, source: enterprise, pointer: /enterprises/0/name }
  - { name: first_tax_code, label: Mã số thuế, source: enterprise, pointer: /enterprises/0/tax_code }
  - { name: household_business, label: Hộ kinh doanh, source: enterprise, pointer: /business_households/0/name }
"#;

/// A register's synthetic record for `id` (every citizen exists; all data is invented).
fn record(source: &str, id: &str) -> Value {
    match source {
        "citizen" => json!({
            "citizen_id": id, "full_name": "Trần Thị Thử Nghiệm", "date_of_birth": "1990-01-01",
            "sex": "F", "nationality": "VN", "ethnicity": "Kinh",
            "permanent_address": {"province": "Hà Nội", "district": "Quận Ba Đình",
                                  "ward": "Phường Điện Biên", "street": "Số 12 Hoàng Diệu"},
            "phone": "0900000000"
        }),
        "insurance" => json!({
            "social_insurance_number": "7912345678", "status": "active",
            "employer": {"name": "Công ty Thử Nghiệm", "tax_code": "0312345678"},
            "health_card": {"number": "DN4797912345678", "hospital": "Bệnh viện Thử Nghiệm"},
            "salary_vnd": 12000000
        }),
        _ => json!({
            "enterprises": [{"tax_code": "0312345678", "name": "Công ty Thử Nghiệm"},
                            {"tax_code": "0312345679", "name": "Công ty Thử Nghiệm 2"}],
            "business_households": [{"name": "Hộ kinh doanh Thử Nghiệm", "registered": "2021-05-01"}]
        }),
    }
}

// ---------------------------------------------------------------------------
// Runtimes, sources, PKI, identity provider, node
// ---------------------------------------------------------------------------

/// A current-thread runtime driven by a thread of its own until dropped.
struct Background {
    handle: Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn start(name: &str) -> anyhow::Result<Background> {
        let (ready, handle) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(_) => return,
                };
                let _ = ready.send(runtime.handle().clone());
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Background {
            handle: handle.recv().context("the runtime thread did not start")?,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a source on `runtime`: any `GET /{prefix}/{id}` answered after its latency.
fn start_source(runtime: &Handle, source: Source) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    runtime.spawn(async move {
        let router = axum::Router::new().fallback(move |uri: axum::http::Uri| async move {
            tokio::time::sleep(source.latency).await;
            let id = uri.path().rsplit('/').next().unwrap_or_default();
            axum::Json(record(source.name, id))
        });
        if let Ok(listener) = tokio::net::TcpListener::from_std(listener) {
            let _ = axum::serve(listener, router).await;
        }
    });
    Ok(addr)
}

/// The dev PKI: a CA, the node's server certificate, the portal's client certificate.
struct Pki {
    ca: CertificateAuthority,
    server: IssuedCertificate,
    portal: IssuedCertificate,
}

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let ca = CertificateAuthority::new("datagate autofill-bench CA (throw-away)")?;
        let server = ca.issue(&LeafSpec::server(
            "autofill-bench",
            &["localhost"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ))?;
        let portal = ca.issue(&LeafSpec::client("dvc-portal", "000.00.00.H29"))?;
        Ok(Pki { ca, server, portal })
    }
}

/// An ES256 identity provider: its key and JWKS (`kid` = hex SHA-256 of the SPKI DER).
struct Idp {
    key_pem: String,
    jwks: String,
}

impl Idp {
    fn new() -> anyhow::Result<Idp> {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
        let private = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
        let key_pem = String::from_utf8(private.private_key_to_pem_pkcs8()?)?;
        let public = datagate::keystore::PrivateKey::from_pem(key_pem.as_bytes(), None)
            .and_then(|key| key.public_key())
            .map_err(|e| anyhow::anyhow!("identity provider key: {e}"))?;
        let kid = datagate::base::hex::encode(&openssl::sha::sha256(public.spki_der()));
        let jwk = public
            .to_jwk(Some(&kid))
            .map_err(|e| anyhow::anyhow!("identity provider JWK: {e}"))?;
        Ok(Idp {
            key_pem,
            jwks: json!({ "keys": [jwk] }).to_string(),
        })
    }

    /// The citizen's assertion for the portal, at level medium, consenting to the form
    /// and its three services, valid for 50 minutes.
    fn assertion(&self, citizen: &str) -> anyhow::Result<String> {
        let iat =
            datagate::base::clock::Clock::now(&datagate::base::clock::SystemClock).unix_timestamp();
        let claims = json!({
            "iss": ISSUER, "sub": citizen, "aud": PORTAL, "iat": iat, "exp": iat + 3000,
            "acr": "medium",
            "consent": {"form": FORM, "services": SOURCES.map(|s| s.service)},
        });
        datagate::trust::global::sign(
            claims.to_string().as_bytes(),
            &self.key_pem,
            datagate::trust::global::SigningAlg::Es256,
        )
        .map_err(|e| anyhow::anyhow!("signing an assertion: {e}"))
    }
}

/// How a node is configured.
#[derive(Debug, Clone, Copy)]
struct NodeOptions {
    journal: bool,
    cache_max_bytes: Option<u64>,
}

fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Writes a node's configuration in `dir`: PKI, registry, identity provider, three REST
/// adapters and their contracts (cacheable for 300 s), the form; returns the node file.
fn write_node(
    dir: &Path,
    pki: &Pki,
    idp: &Idp,
    sources: &[SocketAddr],
    options: NodeOptions,
) -> anyhow::Result<std::path::PathBuf> {
    let contracts = dir.join("contracts");
    let adapters = dir.join("adapters");
    std::fs::create_dir_all(contracts.join("forms"))?;
    std::fs::create_dir_all(&adapters)?;
    std::fs::write(dir.join("ca.pem"), pki.ca.cert_pem())?;
    std::fs::write(dir.join("server.pem"), &pki.server.cert_pem)?;
    std::fs::write(dir.join("server-key.pem"), &pki.server.key_pem)?;
    std::fs::write(dir.join("jwks.json"), &idp.jwks)?;
    datagate::journal::load_or_create_key(&dir.join("journal.key"))?;
    std::fs::write(
        dir.join("registry.toml"),
        format!(
            "[[information_systems]]\nmember = \"{PORTAL_MEMBER}\"\nname = \"dvc-portal\"\n\
             subsystems = [\"dvc-portal\"]\nfingerprint_sha256 = \"{}\"\n",
            pki.portal.fingerprint_sha256
        ),
    )?;
    let mut services = String::new();
    let mut form_sources = String::new();
    for (source, addr) in SOURCES.iter().zip(sources) {
        let name = source.name;
        std::fs::write(
            adapters.join(format!("{name}.toml")),
            format!(
                "name = \"{name}\"\nkind = \"rest\"\naddress = \"http://{addr}\"\n\
                 timeout_ms = 5000\nmax_in_flight = 4096\n\n\
                 [[operations]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/{{citizen_id}}\"\n\n\
                 [operations.rest]\npath = \"/{}/{{citizen_id}}\"\n",
                source.backend_prefix
            ),
        )?;
        std::fs::write(
            contracts.join(format!("portal-{name}.yaml")),
            format!(
                "id: portal-{name}\nversion: 1\nconsumer: {PORTAL}\nservice: {service}\n\
                 operations:\n  - {{ method: GET, path: \"/{{citizen_id}}\" }}\n\
                 purposes: [{PURPOSE}]\nlegal_basis: autofill benchmark (synthetic)\n\
                 classification: sensitive\nallowed_fields: {fields}\n\
                 valid_from: 2020-01-01T00:00:00+07:00\nvalid_until: 2099-12-31T23:59:59+07:00\n\
                 subject: path:citizen_id\nassurance_level: medium\n\
                 cache: {{ allowed: true, ttl_seconds: 300 }}\napproved_by: autofill benchmark\n",
                service = source.service,
                fields = source.allowed_fields,
            ),
        )?;
        services.push_str(&format!(
            "[[services]]\nid = \"{}\"\nadapter = \"{name}\"\n\n",
            source.service
        ));
        form_sources.push_str(&format!(
            "  {name}: {{ service: {}, path: \"/{{subject}}\", timeout_ms: 1000 }}\n",
            source.service
        ));
    }
    std::fs::write(
        contracts.join("forms/bench.yaml"),
        format!(
            "id: {FORM}\ntitle: Đăng ký thành lập hộ kinh doanh (benchmark)\n\
             procedure: \"2.000575\"\nlegal_basis: Nghị định 01/2021/NĐ-CP (benchmark)\n\
             purpose: {PURPOSE}\nassurance_level: medium\nconsumers: [{PORTAL}]\n\
             deadline_ms: 3000\nsources:\n{form_sources}{FIELDS}"
        ),
    )?;
    let file = dir.join("datagate.toml");
    std::fs::write(
        &file,
        format!(
            "[node]\nmember = \"{NODE_MEMBER}\"\nname = \"autofill-bench\"\n\n\
             [listeners]\nconsumer = \"127.0.0.1:0\"\nops = \"127.0.0.1:0\"\n\n\
             [tls]\ncertificate = {cert}\nkey = {key}\ntrusted_cas = [{ca}]\n\n\
             [registry]\nfile = {registry}\n\n\
             [contracts]\ndir = {contracts}\n\n[adapters]\ndir = {adapters}\n\n\
             [journal]\npath = {journal}\nhmac_key_file = {journal_key}\n\n\
             [limits]\nmax_concurrent_requests = 8192\nmax_in_flight_per_consumer = 8192\n\
             max_connections = 4096\nmax_connections_per_ip = 4096\n\
             max_connections_per_certificate = 4096\n\
             max_new_connections_per_ip_per_second = 0\nmax_pending_handshakes = 4096\n\
             idle_timeout_ms = 300000\nshutdown_grace_ms = 1000\n\n\
             {cache}{services}{dangerous}\
             [[identity_providers]]\nissuer = \"{ISSUER}\"\njwks_file = {jwks}\n",
            cert = toml_path(&dir.join("server.pem")),
            key = toml_path(&dir.join("server-key.pem")),
            ca = toml_path(&dir.join("ca.pem")),
            registry = toml_path(&dir.join("registry.toml")),
            contracts = toml_path(&contracts),
            adapters = toml_path(&adapters),
            journal = toml_path(&dir.join("journal.sqlite")),
            journal_key = toml_path(&dir.join("journal.key")),
            jwks = toml_path(&dir.join("jwks.json")),
            cache = options
                .cache_max_bytes
                .map_or(String::new(), |bytes| format!(
                    "[cache]\nmax_bytes = {bytes}\n\n"
                )),
            dangerous = if options.journal {
                ""
            } else {
                "[dangerous]\ndisable_journal = true\n\n"
            },
        ),
    )?;
    Ok(file)
}

/// A running node, on a thread and current-thread runtime of its own.
struct BenchNode {
    gateway: Arc<Gateway>,
    consumer: SocketAddr,
    runtime: Handle,
    _node: node_thread::NodeThread<(Arc<Gateway>, SocketAddr, Handle)>,
    _dir: tempfile::TempDir,
}

impl BenchNode {
    fn start(
        pki: &Pki,
        idp: &Idp,
        sources: &[SocketAddr],
        options: NodeOptions,
    ) -> anyhow::Result<BenchNode> {
        let dir = tempfile::tempdir()?;
        let file = write_node(dir.path(), pki, idp, sources, options)?;
        let node = node_thread::start(&file, "autofill-node", |node| {
            Ok((
                node.gateway().clone(),
                node.consumer_addr(),
                Handle::current(),
            ))
        })?;
        let (gateway, consumer, runtime) = node.ready.clone();
        Ok(BenchNode {
            gateway,
            consumer,
            runtime,
            _node: node,
            _dir: dir,
        })
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Which answer a fill must have to count: every field filled, every source `cached`
/// (warm) or `live` (cold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Warm,
    Cold,
}

fn check_answer(status: u16, body: &[u8], expect: Expect) -> Result<(), String> {
    let text = String::from_utf8_lossy(body);
    if status != 200 {
        return Err(format!("status {status}: {text}"));
    }
    if !text.contains("\"complete\":true") {
        return Err(format!("incomplete fill: {text}"));
    }
    let wrong = match expect {
        Expect::Warm => "\"mode\":\"live\"",
        Expect::Cold => "\"mode\":\"cached\"",
    };
    if text.contains(wrong) {
        return Err(format!("expected every source {expect:?}, got {wrong}"));
    }
    Ok(())
}

fn fill_body(subject: &str) -> Vec<u8> {
    json!({ "subject": subject }).to_string().into_bytes()
}

/// A fill through the consumer router, no socket.
async fn fill_in_process(
    router: axum::Router,
    fingerprint: String,
    subject: String,
    assertion: Arc<str>,
    expect: Expect,
) -> Result<(), String> {
    let mut request = axum::http::Request::post(format!("/autofill/v1/{FORM}"))
        .header("x-road-client", PORTAL)
        .header("x-citizen-assertion", &*assertion)
        .header("content-type", "application/json")
        .body(Body::from(fill_body(&subject)))
        .map_err(|e| e.to_string())?;
    request
        .extensions_mut()
        .insert(datagate::trust::PeerCertificate {
            fingerprint_sha256: fingerprint,
        });
    let response = router.oneshot(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    check_answer(status, &body, expect)
}

/// A fill over mTLS.
async fn fill_over_tls(
    client: reqwest::Client,
    url: Arc<str>,
    subject: String,
    assertion: Arc<str>,
    expect: Expect,
) -> Result<(), String> {
    let response = client
        .post(&*url)
        .header("x-road-client", PORTAL)
        .header("x-citizen-assertion", &*assertion)
        .header("content-type", "application/json")
        .body(fill_body(&subject))
        .send()
        .await
        .map_err(|e| format!("{e:#}"))?;
    let status = response.status().as_u16();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    check_answer(status, &body, expect)
}

fn tls_client(pki: &Pki) -> anyhow::Result<reqwest::Client> {
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", pki.portal.cert_pem, pki.portal.key_pem).as_bytes(),
    )?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            pki.ca.cert_pem().as_bytes(),
        )?])
        .identity(identity)
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(300))
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// A journal record like a source request's (about 300 bytes).
fn journal_record(n: usize, key_id: &str) -> ExchangeRecord {
    let at = time::macros::datetime!(2026-12-01 09:00 UTC);
    ExchangeRecord {
        message_id: format!("autofill-bench-{n:012}"),
        client: Some(PORTAL.into()),
        service: Some(SOURCES[n % 3].service.into()),
        method: "GET".into(),
        operation: Some("get".into()),
        purpose: Some(PURPOSE.into()),
        contract_id: Some("portal-citizen".into()),
        peer_fingerprint: Some("ab".repeat(32)),
        status: 200,
        error_code: None,
        request_in_at: at,
        request_out_at: None,
        response_in_at: None,
        response_out_at: at,
        request_bytes: 0,
        response_bytes: 300,
        request_digest: "cd".repeat(32),
        response_digest: Some("ef".repeat(32)),
        subject_digest: Some("12".repeat(32)),
        leg: "cache",
        signature_digest: None,
        remote_key_id: None,
        key_id: key_id.to_owned(),
    }
}

// ---------------------------------------------------------------------------
// The open loop and its figures
// ---------------------------------------------------------------------------

/// What one run observed.
#[derive(Debug, Default)]
struct Observed {
    latencies_us: Vec<u64>,
    errors: usize,
    first_error: Option<String>,
    wall: Duration,
    /// CPU time of the whole process (load generator, node, sources, SQLite's worker).
    cpu: Duration,
}

impl Observed {
    /// The `q` quantile in milliseconds (nearest rank).
    fn ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize).max(1);
        self.latencies_us[rank.min(self.latencies_us.len()) - 1] as f64 / 1000.0
    }
}

/// Sends `count` requests at `rate` per second: request `i` is made by `fire(i)` and
/// spawned on `runtime` at `start + i / rate`, whatever happened to the earlier ones
/// (this thread sleeps to each instant); its latency runs from that instant to the end
/// of its answer.
fn open_loop<F, Fut>(runtime: &Handle, rate: f64, count: usize, fire: F) -> Observed
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let (done, results) = std::sync::mpsc::channel::<Result<u64, String>>();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let cpu = proc_self::cpu();
    let started = Instant::now();
    let start = started + Duration::from_millis(5);
    for i in 0..count {
        let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if scheduled > now {
            std::thread::sleep(scheduled - now);
        }
        if in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
            let _ = done.send(Err("not sent: too many requests in flight".into()));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let request = fire(i);
        let done = done.clone();
        let in_flight = in_flight.clone();
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, request).await {
                Ok(Ok(())) => Ok(scheduled.elapsed().as_micros() as u64),
                Ok(Err(error)) => Err(error),
                Err(_) => Err("timed out".into()),
            };
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = done.send(outcome);
        });
    }
    drop(done);
    let mut observed = Observed::default();
    let drain_until = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(1);
    for _ in 0..count {
        let wait = drain_until.saturating_duration_since(Instant::now());
        match results.recv_timeout(wait) {
            Ok(Ok(micros)) => observed.latencies_us.push(micros),
            Ok(Err(error)) => {
                observed.errors += 1;
                observed.first_error.get_or_insert(error);
            }
            Err(_) => {
                observed.errors += 1;
                observed
                    .first_error
                    .get_or_insert_with(|| "no answer when the run ended".into());
            }
        }
    }
    observed.wall = started.elapsed();
    observed.cpu = proc_self::cpu().saturating_sub(cpu);
    observed.latencies_us.sort_unstable();
    observed
}

/// One measured row of the report.
struct Row {
    what: String,
    rate: f64,
    observed: Observed,
}

impl Row {
    fn print(&self) {
        let o = &self.observed;
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            self.what,
            self.rate,
            o.latencies_us.len(),
            o.errors,
            o.ms(0.50),
            o.ms(0.90),
            o.ms(0.99),
            o.ms(1.0),
            o.cpu.as_micros() as f64 / (o.latencies_us.len() + o.errors).max(1) as f64,
        );
        if let Some(error) = &o.first_error {
            let error: String = error.chars().take(160).collect();
            println!(
                "|   first error: {} | | | | | | | | |",
                error.replace('|', "/")
            );
        }
    }
}

/// Citizens (12-digit ids) with their signed assertions.
type Pool = Arc<Vec<(String, Arc<str>)>>;

/// The fresh citizens of the cold runs, each with a pre-signed assertion (signing is not
/// part of what is measured).
struct Citizens {
    pool: Vec<(String, Arc<str>)>,
    next: usize,
}

impl Citizens {
    fn new(idp: &Idp, count: usize) -> anyhow::Result<Citizens> {
        let pool = (0..count)
            .map(|n| {
                let id = format!("{:012}", 790_000_000_000u64 + n as u64);
                let assertion = idp.assertion(&id)?;
                Ok((id, Arc::from(assertion)))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Citizens { pool, next: 0 })
    }

    /// The next `count` unused citizens.
    fn take(&mut self, count: usize) -> Pool {
        let end = (self.next + count).min(self.pool.len());
        let taken = self.pool[self.next..end].to_vec();
        self.next = end;
        Arc::new(taken)
    }
}

/// How a fill reaches the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    InProcess,
    Mtls,
}

/// Everything a run needs to send fills to one node.
struct Target<'a> {
    node: &'a BenchNode,
    router: axum::Router,
    fingerprint: String,
    client: reqwest::Client,
    client_runtime: Handle,
    url: Arc<str>,
}

impl<'a> Target<'a> {
    fn new(node: &'a BenchNode, pki: &Pki, client_runtime: &Handle) -> anyhow::Result<Self> {
        Ok(Target {
            node,
            router: datagate::gateway::server::consumer_router(node.gateway.clone()),
            fingerprint: pki.portal.fingerprint_sha256.clone(),
            client: tls_client(pki)?,
            client_runtime: client_runtime.clone(),
            url: Arc::from(
                format!(
                    "https://127.0.0.1:{}/autofill/v1/{FORM}",
                    node.consumer.port()
                )
                .as_str(),
            ),
        })
    }

    /// `count` fills at `rate`: of `citizens[i]` (cold), or of the warm citizen.
    fn run(
        &self,
        transport: Transport,
        rate: f64,
        count: usize,
        citizens: Option<Pool>,
        warm_assertion: &Arc<str>,
    ) -> Observed {
        let expect = if citizens.is_some() {
            Expect::Cold
        } else {
            Expect::Warm
        };
        let subject = |i: usize| match &citizens {
            Some(citizens) => citizens
                .get(i)
                .cloned()
                .unwrap_or_else(|| (WARM_SUBJECT.to_owned(), warm_assertion.clone())),
            None => (WARM_SUBJECT.to_owned(), warm_assertion.clone()),
        };
        match transport {
            Transport::InProcess => open_loop(&self.node.runtime, rate, count, |i| {
                let (id, assertion) = subject(i);
                fill_in_process(
                    self.router.clone(),
                    self.fingerprint.clone(),
                    id,
                    assertion,
                    expect,
                )
            }),
            Transport::Mtls => open_loop(&self.client_runtime, rate, count, |i| {
                let (id, assertion) = subject(i);
                fill_over_tls(self.client.clone(), self.url.clone(), id, assertion, expect)
            }),
        }
    }
}

/// The issue's latency targets, from the rows of the same run.
fn targets(rows: &[Row], rates: &[f64]) {
    let find = |what: &str, rate: f64| {
        rows.iter()
            .find(|row| row.rate == rate && row.what.starts_with(what))
            .map(|row| &row.observed)
    };
    let verdict = |met: bool| if met { "met" } else { "**missed**" };
    println!("\n### targets\n");
    println!("| target | rate /s | measured | limit | verdict |");
    println!("|---|---:|---:|---:|---|");
    let nominal = SOURCES.iter().map(|s| s.latency).max().unwrap_or_default();
    let nominal_ms = nominal.as_secs_f64() * 1000.0;
    for &rate in rates {
        let (Some(journal), Some(direct)) = (
            find("journal alone", rate),
            find("slowest source direct", rate),
        ) else {
            continue;
        };
        for transport in ["InProcess", "Mtls"] {
            let (Some(on), Some(off), Some(cold)) = (
                find(&format!("warm, {transport}, journal on"), rate),
                find(&format!("warm, {transport}, journal off"), rate),
                find(&format!("cold, {transport}, journal on"), rate),
            ) else {
                continue;
            };
            let added = on.ms(0.99) - journal.ms(0.99);
            println!(
                "| warm − journal alone, {transport} (p50; p99) | {rate:.0} | {:.2} − {:.2} = {:.2}; {:.2} − {:.2} = {added:.2} ms | 0.5 ms (p99) | {} |",
                on.ms(0.5),
                journal.ms(0.5),
                on.ms(0.5) - journal.ms(0.5),
                on.ms(0.99),
                journal.ms(0.99),
                verdict(added <= 0.5)
            );
            println!(
                "| (warm, journal on − journal off), {transport} (p50; p99) | {rate:.0} | {:.2}; {:.2} ms | — | the journal's share |",
                on.ms(0.5) - off.ms(0.5),
                on.ms(0.99) - off.ms(0.99)
            );
            let over = cold.ms(0.99) - nominal_ms;
            println!(
                "| cold − {nominal_ms:.0} ms (p50 / p99), {transport} | {rate:.0} | {:.2} / {over:.2} ms | 2 ms | {} |",
                cold.ms(0.5) - nominal_ms,
                verdict(over <= 2.0)
            );
            println!(
                "| (cold − slowest source measured directly, p50 / p99), {transport} | {rate:.0} | {:.2} / {:.2} ms | 2 ms | {} |",
                cold.ms(0.5) - direct.ms(0.5),
                cold.ms(0.99) - direct.ms(0.99),
                verdict(cold.ms(0.99) - direct.ms(0.99) <= 2.0)
            );
        }
    }
}

struct Settings {
    rates: Vec<f64>,
    seconds: f64,
    warmup_seconds: f64,
    memory_fills: usize,
    memory_concurrency: usize,
}

fn settings() -> Settings {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Settings {
        rates: value("--rates")
            .map(|rates| rates.split(',').filter_map(|r| r.parse().ok()).collect())
            .unwrap_or_else(|| vec![100.0, 200.0]),
        seconds: value("--seconds")
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick { 2.0 } else { 10.0 }),
        warmup_seconds: if quick { 0.3 } else { 1.0 },
        memory_fills: value("--memory-fills")
            .and_then(|s| s.parse().ok())
            .unwrap_or(if quick { 2_000 } else { 6_000 }),
        memory_concurrency: 32,
    }
}

fn main() -> anyhow::Result<()> {
    datagate::install_crypto_provider();
    let settings = settings();
    let count = |rate: f64, seconds: f64| ((rate * seconds).round() as usize).max(1);
    let cold_needed: usize = settings
        .rates
        .iter()
        .map(|&rate| 2 * (count(rate, settings.seconds) + count(rate, settings.warmup_seconds)))
        .sum();

    let pki = Pki::new()?;
    let idp = Idp::new()?;
    let upstreams = Background::start("autofill-sources")?;
    let clients = Background::start("autofill-clients")?;
    let journal_runtime = Background::start("autofill-journal")?;
    let sources = SOURCES
        .iter()
        .map(|source| start_source(&upstreams.handle, *source))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let with_journal = BenchNode::start(
        &pki,
        &idp,
        &sources,
        NodeOptions {
            journal: true,
            cache_max_bytes: None,
        },
    )?;
    let without_journal = BenchNode::start(
        &pki,
        &idp,
        &sources,
        NodeOptions {
            journal: false,
            cache_max_bytes: None,
        },
    )?;
    let signing = Instant::now();
    let mut citizens = Citizens::new(&idp, cold_needed.max(settings.memory_fills))?;
    let warm_assertion: Arc<str> = Arc::from(idp.assertion(WARM_SUBJECT)?);
    eprintln!(
        "signed {} assertions in {:.1} s",
        citizens.pool.len() + 1,
        signing.elapsed().as_secs_f64()
    );

    // The journal alone: a fresh embedded journal on the same disk, three records at once.
    let journal_dir = tempfile::tempdir()?;
    let journal_path = journal_dir.path().join("journal.sqlite");
    // Opened on the journal's runtime (its writer task lives there); `Handle::block_on`
    // because the open future is not `Send`, and the runtime's own thread drives its I/O.
    let journal = journal_runtime.handle.block_on(async move {
        let store = datagate::journal::sqlite::SqliteJournal::open(&journal_path)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the bench journal: {e}"))?;
        let ca = CertificateAuthority::new("journal bench CA")?;
        let leaf = ca.issue(&LeafSpec::server("bench", &["localhost"], &[]))?;
        let sealer = datagate::journal::chain::Sealer {
            key: datagate::msgsig::SigningKey::from_pem(&leaf.key_pem, None)
                .map_err(|e| anyhow::anyhow!("seal key: {e}"))?,
            certificate: leaf.cert_der,
        };
        anyhow::Ok(Journal::start(
            store.with_sealer(sealer).with_min_free_bytes(0),
            &[7; 32],
        ))
    })?;
    let journal_key = journal.key_id().to_owned();

    let direct = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?;
    let slowest = SOURCES
        .iter()
        .zip(&sources)
        .max_by_key(|(source, _)| source.latency)
        .map(|(source, addr)| format!("http://{addr}/{}/", source.backend_prefix))
        .unwrap_or_default();

    let on = Target::new(&with_journal, &pki, &clients.handle)?;
    let off = Target::new(&without_journal, &pki, &clients.handle)?;

    println!(
        "\n## autofill bench: {} s per run (after {} s of warm-up), rates {:?} fills/s, open loop\n",
        settings.seconds, settings.warmup_seconds, settings.rates
    );
    println!(
        "| run | offered /s | ok | errors | p50 ms | p90 ms | p99 ms | max ms | process CPU µs/request |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &rate in &settings.rates {
        let n = count(rate, settings.seconds);
        let warmup = count(rate, settings.warmup_seconds);
        let mut record = |what: String, observed: Observed| {
            let row = Row {
                what,
                rate,
                observed,
            };
            row.print();
            rows.push(row);
        };

        let fire_direct = |i: usize| {
            let client = direct.clone();
            let url = format!("{slowest}{:012}", i);
            async move {
                let response = client.get(url).send().await.map_err(|e| e.to_string())?;
                let status = response.status();
                response.bytes().await.map_err(|e| e.to_string())?;
                status
                    .is_success()
                    .then_some(())
                    .ok_or_else(|| format!("status {status}"))
            }
        };
        open_loop(&clients.handle, rate, warmup, fire_direct);
        record(
            "slowest source direct (10 ms, plain HTTP)".into(),
            open_loop(&clients.handle, rate, n, fire_direct),
        );

        let fire_journal = |i: usize| {
            let journal = journal.clone();
            let key = journal_key.clone();
            async move {
                let (a, b, c) = tokio::join!(
                    journal.append(journal_record(3 * i, &key)),
                    journal.append(journal_record(3 * i + 1, &key)),
                    journal.append(journal_record(3 * i + 2, &key)),
                );
                a.and(b).and(c).map_err(|e| e.to_string())
            }
        };
        open_loop(&journal_runtime.handle, rate, warmup, fire_journal);
        record(
            "journal alone: 3 records appended at once, until durable".into(),
            open_loop(&journal_runtime.handle, rate, n, fire_journal),
        );

        for (target, journal_label) in [(&on, "journal on"), (&off, "journal off")] {
            for transport in [Transport::InProcess, Transport::Mtls] {
                // Primes the cache (and the connections), then measures.
                target.run(transport, rate, warmup, None, &warm_assertion);
                record(
                    format!("warm, {transport:?}, {journal_label}"),
                    target.run(transport, rate, n, None, &warm_assertion),
                );
            }
        }
        for transport in [Transport::InProcess, Transport::Mtls] {
            on.run(
                transport,
                rate,
                warmup,
                Some(citizens.take(warmup)),
                &warm_assertion,
            );
            record(
                format!("cold, {transport:?}, journal on"),
                on.run(transport, rate, n, Some(citizens.take(n)), &warm_assertion),
            );
        }
    }
    targets(&rows, &settings.rates);
    drop(on);
    drop(off);
    drop(with_journal);
    drop(without_journal);

    // Memory: many distinct citizens through a node with a small cache, closed loop.
    let small = BenchNode::start(
        &pki,
        &idp,
        &sources,
        NodeOptions {
            journal: false,
            cache_max_bytes: Some(SMALL_CACHE_BYTES),
        },
    )?;
    let rss_before = proc_self::rss_kib();
    let router = datagate::gateway::server::consumer_router(small.gateway.clone());
    let pool = Arc::new(citizens.pool[..settings.memory_fills.min(citizens.pool.len())].to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let filling = Instant::now();
    let filling_cpu = proc_self::cpu();
    for _ in 0..settings.memory_concurrency {
        let (router, pool, next, failures, done) = (
            router.clone(),
            pool.clone(),
            next.clone(),
            failures.clone(),
            done.clone(),
        );
        let fingerprint = pki.portal.fingerprint_sha256.clone();
        small.runtime.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, assertion)) = pool.get(i).cloned() else {
                    break;
                };
                let outcome = fill_in_process(
                    router.clone(),
                    fingerprint.clone(),
                    id,
                    assertion,
                    Expect::Cold,
                )
                .await;
                if outcome.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(done);
        });
    }
    drop(done);
    // Samples the cache's usage while it fills: the bound must hold throughout.
    let (mut peak_entries, mut peak_bytes, mut peak_rss) = (0, 0, rss_before);
    let usage = |gateway: Arc<Gateway>| {
        let (sender, receiver) = std::sync::mpsc::channel();
        small.runtime.spawn(async move {
            let _ = sender.send(gateway.cache().usage().await);
        });
        receiver.recv().unwrap_or((0, 0))
    };
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
        finished.recv_timeout(Duration::from_millis(200))
    {
        let (entries, bytes) = usage(small.gateway.clone());
        peak_entries = peak_entries.max(entries);
        peak_bytes = peak_bytes.max(bytes);
        peak_rss = peak_rss.max(proc_self::rss_kib());
    }
    let filled_in = filling.elapsed();
    let fill_cpu = proc_self::cpu().saturating_sub(filling_cpu);
    let (entries, bytes) = usage(small.gateway.clone());
    let rss_after = proc_self::rss_kib();
    println!(
        "\n### cache memory: {} distinct citizens filled in-process ({} concurrent, {:.1} s: {:.0} cold fills/s, {:.0} µs of process CPU per fill, journal off; {} failed) through a node with [cache] max_bytes = {SMALL_CACHE_BYTES}\n",
        pool.len(),
        settings.memory_concurrency,
        filled_in.as_secs_f64(),
        pool.len() as f64 / filled_in.as_secs_f64(),
        fill_cpu.as_micros() as f64 / pool.len().max(1) as f64,
        failures.load(Ordering::Relaxed),
    );
    println!("| | entries | weighted bytes | bound | process RSS |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| peak while filling (sampled every 200 ms) | {peak_entries} | {peak_bytes} | {} | {:.1} MiB (+{:.1}) |",
        if peak_bytes <= SMALL_CACHE_BYTES {
            "held"
        } else {
            "EXCEEDED"
        },
        peak_rss as f64 / 1024.0,
        peak_rss.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!(
        "| after the last fill | {entries} | {bytes} | {} | {:.1} MiB (+{:.1}; before: {:.1}) |",
        if bytes <= SMALL_CACHE_BYTES {
            "held"
        } else {
            "EXCEEDED"
        },
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0,
        rss_before as f64 / 1024.0,
    );
    println!(
        "| answers fetched (3 per citizen), were nothing evicted | {} | | | |",
        3 * pool.len()
    );
    drop(small);
    Ok(())
}
