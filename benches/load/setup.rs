//! What the harness writes before starting anything: a dev PKI, the gateway's
//! node configuration, registry, contracts and adapter (one directory per
//! gateway configuration), and nginx's configuration.

use datagate::pki::{CertificateAuthority, IssuedCertificate, LeafSpec, LeafUsage};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The node's member (provider).
pub const PROVIDER_MEMBER: &str = "VN/GOV/000.00.00.G10";
/// The benchmark service.
pub const SERVICE: &str = "VN/GOV/000.00.00.G10/bench-db/record";
/// The consumer's member.
pub const CLIENT_MEMBER: &str = "VN/GOV/000.00.00.H29";
/// The consumer subsystem (`X-Road-Client`).
pub const CLIENT: &str = "VN/GOV/000.00.00.H29/bench-client";
/// A second consumer subsystem, with a certificate of its own (the flood's bystander).
pub const VICTIM: &str = "VN/GOV/000.00.00.H29/bench-victim";
/// The purpose code the contracts allow (`X-Purpose`).
pub const PURPOSE: &str = "BENCHMARK";
/// The record id requested.
pub const RECORD_ID: &str = "001085012345";

/// The request path, the same for every target (the stub and nginx ignore it).
pub fn request_path() -> String {
    service_path(SERVICE)
}

/// The request path for the record of `service`.
pub fn service_path(service: &str) -> String {
    format!("/r1/{service}/{RECORD_ID}")
}

/// The PKI files, written in the run's temporary directory.
#[derive(Debug)]
pub struct Pki {
    /// CA certificate (PEM file).
    pub ca_cert: PathBuf,
    /// CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// Server certificate for 127.0.0.1 and localhost (PEM file).
    pub server_cert: PathBuf,
    /// Its key (PEM file).
    pub server_key: PathBuf,
    /// The consumer's client certificate.
    pub client: IssuedCertificate,
    /// The second consumer's client certificate.
    pub victim: IssuedCertificate,
    /// Secure-server certificates (server and client) of the federation's gateways,
    /// for 127.0.0.1: LGSP A, LGSP B and the hub, in that order.
    pub gateways: [IssuedCertificate; 3],
}

/// Generates a CA, a server certificate (127.0.0.1, localhost) and a client
/// certificate with `datagate::pki`, and writes the PEM files under `dir`.
pub fn write_pki(dir: &Path) -> anyhow::Result<Pki> {
    std::fs::create_dir_all(dir)?;
    let ca = CertificateAuthority::new("datagate load-bench CA (throw-away)")?;
    let server = ca.issue(&LeafSpec::server(
        "datagate load-bench server",
        &["localhost"],
        &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
    ))?;
    let client = ca.issue(&LeafSpec::client("bench-client", "000.00.00.H29"))?;
    let victim = ca.issue(&LeafSpec::client("bench-victim", "000.00.00.H29"))?;
    let gateway = |name: &str| {
        let mut spec = LeafSpec::server(name, &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        spec.usage = LeafUsage::ServerAndClient;
        ca.issue(&spec)
    };
    let gateways = [gateway("lgsp-a")?, gateway("lgsp-b")?, gateway("ndxp")?];
    let pki = Pki {
        ca_cert: dir.join("ca.pem"),
        ca_der: ca.cert_der().to_vec(),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client,
        victim,
        gateways,
    };
    std::fs::write(&pki.ca_cert, ca.cert_pem())?;
    std::fs::write(&pki.server_cert, &server.cert_pem)?;
    std::fs::write(&pki.server_key, &server.key_pem)?;
    std::fs::write(dir.join("client.pem"), &pki.client.cert_pem)?;
    std::fs::write(dir.join("client-key.pem"), &pki.client.key_pem)?;
    Ok(pki)
}

/// The gateway configurations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayProfile {
    /// (a) pass-through: no schemas, whole answer (`allowed_fields: [""]`), and no
    /// journal (`[dangerous] disable_journal`): the proxy path alone, as the issue defines it.
    PassThrough,
    /// (b) full pipeline: request and response schemas, projection to a
    /// subset of fields, subject digest, a (never reached) quota.
    Full,
    /// (b) without the journal (`[dangerous] disable_journal`): (b) minus this is what
    /// the durable journal costs per exchange.
    FullNoJournal,
}

/// A path as a TOML string.
pub fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// `[[information_systems]]`: each certificate bound to its own subsystem.
pub fn registry(pki: &Pki) -> String {
    [(&pki.client, CLIENT), (&pki.victim, VICTIM)]
        .iter()
        .map(|(cert, client)| {
            let (member, subsystem) = client.rsplit_once('/').unwrap_or((CLIENT_MEMBER, client));
            format!(
                "[[information_systems]]\nmember = \"{member}\"\nname = \"{subsystem}\"\n\
                 subsystems = [\"{subsystem}\"]\nfingerprint_sha256 = \"{}\"\n\n",
                cert.fingerprint_sha256
            )
        })
        .collect()
}

fn contract(profile: GatewayProfile, consumer: &str) -> String {
    contract_for(profile, consumer, SERVICE)
}

/// A contract of `profile` letting `consumer` read records of `service`.
pub fn contract_for(profile: GatewayProfile, consumer: &str, service: &str) -> String {
    let common = format!(
        "version: 1\nconsumer: {consumer}\nservice: {service}\n\
         operations:\n  - {{ method: GET, path: \"/{{record_id}}\" }}\n\
         purposes: [{PURPOSE}]\nlegal_basis: load benchmark (synthetic)\n\
         valid_from: 2020-01-01T00:00:00+07:00\nvalid_until: 2099-12-31T23:59:59+07:00\n\
         approved_by: load benchmark\n"
    );
    let suffix = format!(
        "{}-{}",
        service.rsplit('/').next().unwrap_or("service"),
        consumer.rsplit('/').next().unwrap_or("client")
    );
    match profile {
        GatewayProfile::PassThrough => format!(
            "id: bench-pass-through-{suffix}\n{common}classification: internal\nallowed_fields: [\"\"]\n"
        ),
        GatewayProfile::Full | GatewayProfile::FullNoJournal => format!(
            "id: bench-full-pipeline-{suffix}\n{common}classification: sensitive\n\
             allowed_fields:\n  - /record_id\n  - /full_name\n  - /date_of_birth\n  - /sex\n  \
             - /address/province\n  - /address/district\n\
             request_schema: schemas/request.json\nresponse_schema: schemas/record.json\n\
             subject: path:record_id\nquota: {{ rate: 1000000/s, burst: 1000000 }}\n"
        ),
    }
}

const REQUEST_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "path": {
      "type": "object",
      "properties": { "record_id": { "type": "string", "pattern": "^[0-9]{12}$" } },
      "required": ["record_id"]
    }
  },
  "required": ["path"]
}
"#;

const RECORD_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "properties": {
    "record_id": { "type": "string", "pattern": "^[0-9]{12}$" },
    "full_name": { "type": "string", "minLength": 1 },
    "date_of_birth": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" },
    "sex": { "enum": ["F", "M"] },
    "nationality": { "type": "string", "minLength": 2, "maxLength": 2 },
    "ethnicity": { "type": "string" },
    "phone": { "type": "string" },
    "email": { "type": "string" },
    "address": {
      "type": "object",
      "properties": {
        "province": { "type": "string" },
        "district": { "type": "string" },
        "ward": { "type": "string" },
        "street": { "type": "string" }
      },
      "required": ["province"]
    },
    "remarks": { "type": "string" }
  },
  "required": ["record_id", "full_name", "date_of_birth", "sex", "address"]
}
"#;

/// Where a gateway listens.
#[derive(Debug, Clone, Copy)]
pub struct GatewayPorts {
    /// mTLS consumer listener.
    pub consumer: u16,
    /// Ops listener.
    pub ops: u16,
}

/// The `[limits]` a gateway runs with.
#[derive(Debug, Clone, Copy)]
pub enum GatewayLimits {
    /// Connection caps and idle deadline as wide as nginx's configuration here (no
    /// per-IP or per-certificate cap below `connections`, no rate of new connections,
    /// 300 s keep-alive), so the
    /// cost comparison measures the proxy path, not the caps.
    Wide {
        /// Connections the run holds open at most.
        connections: usize,
    },
    /// The node's defaults, as an operator gets them (the flood run).
    Defaults,
    /// The overload phase: connection caps as wide as [`GatewayLimits::Wide`] (so the
    /// generator's connections are never refused), admission (`max_concurrent_requests`,
    /// `max_in_flight_per_consumer`) at the node's defaults unless given, so the node sheds.
    Overload {
        /// Connections the run holds open at most.
        connections: usize,
        /// `max_concurrent_requests`; `None`: the node's default (1 024).
        max_concurrent_requests: Option<usize>,
        /// `max_in_flight_per_consumer`; `None`: the node's default (a quarter of the above).
        max_in_flight_per_consumer: Option<usize>,
    },
}

impl GatewayLimits {
    /// The `[limits]` lines.
    pub fn toml(self) -> String {
        match self {
            GatewayLimits::Wide { connections } => {
                let connections = connections + 4096;
                format!(
                    "max_concurrent_requests = 8192\nmax_in_flight_per_consumer = 8192\n\
                     max_connections = {connections}\nmax_connections_per_ip = {connections}\n\
                     max_connections_per_certificate = {connections}\n\
                     max_new_connections_per_ip_per_second = 0\nmax_pending_handshakes = {connections}\n\
                     idle_timeout_ms = 300000\n\
                     shutdown_grace_ms = 1000\n"
                )
            }
            GatewayLimits::Defaults => "shutdown_grace_ms = 1000\n".to_owned(),
            GatewayLimits::Overload {
                connections,
                max_concurrent_requests,
                max_in_flight_per_consumer,
            } => {
                let connections = connections + 4096;
                let mut text = format!(
                    "max_connections = {connections}\nmax_connections_per_ip = {connections}\n\
                     max_connections_per_certificate = {connections}\n\
                     max_new_connections_per_ip_per_second = 0\nmax_pending_handshakes = {connections}\n\
                     idle_timeout_ms = 300000\n\
                     shutdown_grace_ms = 1000\n"
                );
                if let Some(total) = max_concurrent_requests {
                    text.push_str(&format!("max_concurrent_requests = {total}\n"));
                }
                if let Some(share) = max_in_flight_per_consumer {
                    text.push_str(&format!("max_in_flight_per_consumer = {share}\n"));
                }
                text
            }
        }
    }
}

/// Writes a gateway's configuration under `dir` and returns the node
/// configuration file.
pub fn write_gateway(
    dir: &Path,
    profile: GatewayProfile,
    limits: GatewayLimits,
    pki: &Pki,
    ports: GatewayPorts,
    stub_port: u16,
) -> anyhow::Result<PathBuf> {
    let contracts = dir.join("contracts");
    let adapters = dir.join("adapters");
    std::fs::create_dir_all(contracts.join("schemas"))?;
    std::fs::create_dir_all(&adapters)?;
    std::fs::write(contracts.join("bench.yaml"), contract(profile, CLIENT))?;
    std::fs::write(contracts.join("victim.yaml"), contract(profile, VICTIM))?;
    if profile != GatewayProfile::PassThrough {
        std::fs::write(contracts.join("schemas/request.json"), REQUEST_SCHEMA)?;
        std::fs::write(contracts.join("schemas/record.json"), RECORD_SCHEMA)?;
    }
    write_adapter(&adapters, stub_port)?;
    let registry_file = dir.join("registry.toml");
    std::fs::write(&registry_file, registry(pki))?;
    // The node's journal key, as `datagate certs` writes it (a node never makes its own).
    datagate::journal::load_or_create_key(&dir.join("journal.key"))?;
    let file = dir.join("datagate.toml");
    std::fs::write(
        &file,
        format!(
            "[node]\nmember = \"{PROVIDER_MEMBER}\"\nname = \"load-bench\"\n\n\
             [listeners]\nconsumer = \"127.0.0.1:{consumer}\"\nops = \"127.0.0.1:{ops}\"\n\n\
             [tls]\ncertificate = {cert}\nkey = {key}\ntrusted_cas = [{ca}]\n\n\
             [registry]\nfile = {registry}\n\n\
             [contracts]\ndir = {contracts}\n\n[adapters]\ndir = {adapters}\n\n\
             [journal]\npath = {journal}\nhmac_key_file = {journal_key}\n{window}\n\
             [limits]\n{limits}\n\
             [[services]]\nid = \"{SERVICE}\"\nadapter = \"bench-db\"\n\n{dangerous}",
            dangerous = if profile != GatewayProfile::Full {
                "[dangerous]\ndisable_journal = true\n"
            } else {
                ""
            },
            limits = limits.toml(),
            // `DATAGATE_BENCH_COMMIT_WINDOW_US`: the journal's commit window of (b).
            window = std::env::var("DATAGATE_BENCH_COMMIT_WINDOW_US")
                .ok()
                .and_then(|us| us.parse::<u64>().ok())
                .map_or(String::new(), |us| format!("commit_window_us = {us}\n")),
            consumer = ports.consumer,
            ops = ports.ops,
            cert = toml_path(&pki.server_cert),
            key = toml_path(&pki.server_key),
            ca = toml_path(&pki.ca_cert),
            registry = toml_path(&registry_file),
            contracts = toml_path(&contracts),
            adapters = toml_path(&adapters),
            journal = toml_path(&dir.join("journal.sqlite")),
            journal_key = toml_path(&dir.join("journal.key")),
        ),
    )?;
    Ok(file)
}

/// Writes the REST adapter `bench-db` (pointing at the stub) into `adapters`.
pub fn write_adapter(adapters: &Path, stub_port: u16) -> anyhow::Result<()> {
    std::fs::write(
        adapters.join("bench-db.toml"),
        format!(
            "name = \"bench-db\"\nkind = \"rest\"\naddress = \"http://127.0.0.1:{stub_port}\"\n\
             timeout_ms = 5000\nconnect_timeout_ms = 1000\nretries = 0\nmax_in_flight = 8192\n\n\
             [[operations]]\nname = \"get-record\"\nmethod = \"GET\"\npath = \"/{{record_id}}\"\n\n\
             [operations.rest]\nmethod = \"GET\"\npath = \"/api/v1/records/{{record_id}}\"\n"
        ),
    )?;
    Ok(())
}

/// Writes nginx's configuration under `prefix`: one worker, no master, in
/// the foreground, TLS 1.3 with a required client certificate from the CA,
/// HTTP/1.1 keep-alive to the stub, no access log.
pub fn write_nginx(
    prefix: &Path,
    pki: &Pki,
    port: u16,
    stub_port: u16,
    max_connections: usize,
) -> anyhow::Result<PathBuf> {
    for temp in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(prefix.join("temp").join(temp))?;
    }
    let p = |name: &str| prefix.join(name).display().to_string();
    let file = prefix.join("nginx.conf");
    let connections = max_connections + 1024;
    std::fs::write(
        &file,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\n\
             worker_rlimit_nofile {nofile};\npid {pid};\nerror_log {error_log} warn;\n\n\
             events {{\n    worker_connections {connections};\n}}\n\n\
             http {{\n    access_log off;\n\
             client_body_temp_path {cb};\n    proxy_temp_path {pt};\n    fastcgi_temp_path {ft};\n\
             uwsgi_temp_path {ut};\n    scgi_temp_path {st};\n\
             keepalive_timeout 300s;\n    keepalive_requests 10000000;\n\n\
             upstream stub {{\n        server 127.0.0.1:{stub_port};\n        keepalive 256;\n\
             keepalive_requests 10000000;\n        keepalive_timeout 300s;\n    }}\n\n\
             server {{\n        listen 127.0.0.1:{port} ssl;\n\
             ssl_certificate {cert};\n        ssl_certificate_key {key};\n\
             ssl_protocols TLSv1.3;\n        ssl_client_certificate {ca};\n\
             ssl_verify_client on;\n\n\
             location / {{\n            proxy_pass http://stub;\n\
             proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n\
             proxy_buffering on;\n        }}\n    }}\n}}\n",
            nofile = connections * 2 + 1024,
            pid = p("nginx.pid"),
            error_log = p("error.log"),
            cb = p("temp/client_body"),
            pt = p("temp/proxy"),
            ft = p("temp/fastcgi"),
            ut = p("temp/uwsgi"),
            st = p("temp/scgi"),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca_cert.display(),
        ),
    )?;
    Ok(file)
}
