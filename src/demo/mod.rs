//! `datagate demo`: a complete local federation on 127.0.0.1 in one process.
//!
//! - two synthetic national databases ([`registers`]): the population register
//!   speaking SOAP/XML on `127.0.0.1:18081`, the enterprise register speaking
//!   REST/JSON on `127.0.0.1:18082`;
//! - the provider gateway in front of them, with the repository's `adapters/`
//!   and `contracts/`, its mTLS consumer listener on `127.0.0.1:8443` and its ops
//!   listener on `127.0.0.1:9090`;
//! - a dev PKI and a registry in which the provincial portal's system
//!   (`VN/GOV/000.00.00.H29/dvc-portal`) and a ministry's (`VN/GOV/000.00.00.G12/land-registry`)
//!   are registered as information systems, each certificate bound to its subsystem;
//! - the federation ([`federation`]): the province's LGSP (`127.0.0.1:8444`, the portal's
//!   own gateway) and the NDXP hub (`127.0.0.1:8645`, which also serves the signed global
//!   configuration) beside the provider gateway (the ministry's LGSP, exchange listener
//!   `127.0.0.1:8643`): a lookup sent to the province's gateway travels signed and
//!   encrypted through the hub to the ministry's and back;
//! - `demo.json` listing every endpoint, certificate and key path, and ready-to-run `curl` commands.
//!
//! Everything it writes goes under the state directory. Nothing here is for production.

pub mod federation;
pub mod identity;
pub mod opendata;
pub mod portal;
pub mod registers;

use crate::pki::{self, DevPki};
use anyhow::Context;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the population register (SOAP) listens; must match `adapters/population-db.toml`.
pub const POPULATION_ADDR: &str = "127.0.0.1:18081";
/// Where the enterprise register (REST) listens; must match `adapters/enterprise-db.toml`.
pub const ENTERPRISE_ADDR: &str = "127.0.0.1:18082";
/// Where the social insurance register (REST) listens; must match `adapters/insurance-db.toml`.
pub const INSURANCE_ADDR: &str = "127.0.0.1:18083";
/// The gateway's consumer listener.
pub const CONSUMER_ADDR: &str = "127.0.0.1:8443";
/// The gateway's ops listener.
pub const OPS_ADDR: &str = "127.0.0.1:9090";

/// The portal's client id.
pub const PORTAL_CLIENT: &str = "VN/GOV/000.00.00.H29/dvc-portal";
/// The ministry's client id.
pub const MINISTRY_CLIENT: &str = "VN/GOV/000.00.00.G12/land-registry";
/// The citizen service.
pub const CITIZEN_SERVICE: &str = "VN/GOV/000.00.00.G10/population-db/citizen";
/// The enterprise service.
pub const ENTERPRISE_SERVICE: &str = "VN/GOV/000.00.00.G06/enterprise-db/enterprise";
/// The social insurance service.
pub const INSURANCE_SERVICE: &str = "VN/GOV/000.00.00.G22/insurance-db/participant";
/// The demo's once-only form (`contracts/forms/social-allowance.yaml`).
pub const FORM: &str = "social-allowance";

/// What `demo.json` says.
#[derive(Debug, Serialize)]
pub struct DemoManifest {
    /// Base URL of the consumer listener (mTLS).
    pub consumer_url: String,
    /// Base URL of the ops listener.
    pub ops_url: String,
    /// The synthetic backends.
    pub backends: serde_json::Value,
    /// The dev CA every client must trust.
    pub ca_certificate: PathBuf,
    /// Client identities: client id, certificate, key.
    pub clients: Vec<serde_json::Value>,
    /// Services and the contracts' purpose codes.
    pub services: serde_json::Value,
    /// Synthetic ids that exist in the registers.
    pub sample_citizen_ids: Vec<String>,
    /// Synthetic tax codes that exist in the registers.
    pub sample_tax_codes: Vec<String>,
    /// Once-only autofill: the endpoint, the demo's form, citizens to fill it for.
    pub autofill: serde_json::Value,
    /// The dev identity provider: where assertions are issued, its issuer and keys.
    pub identity_provider: serde_json::Value,
    /// The demo portal's page (filled form with provenance).
    pub portal_url: String,
    /// Open data: the public listener, its CKAN API, the datasets.
    pub open_data: serde_json::Value,
    /// The node configuration the demo generated.
    pub node_config: PathBuf,
    /// The journal database.
    pub journal: PathBuf,
    /// Ready-to-run commands.
    pub curl: Vec<serde_json::Value>,
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()?.join(path)
    })
}

fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

/// Writes the registry: each client certificate registered as an information system
/// bound to its own subsystem (information systems need no notice period).
fn write_registry(path: &Path, pki: &DevPki) -> anyhow::Result<()> {
    let mut text = String::from(
        "# Registry (dev). An information system's certificate is bound to the subsystems it\n\
         # may claim in X-Road-Client; secure servers ([[secure_servers]]) are registered with\n\
         # 3 working days' notice and call the exchange listener, not this one.\n",
    );
    for client in &pki.clients {
        let (member, subsystem) = match client.name.as_str() {
            "portal" => ("VN/GOV/000.00.00.H29", "dvc-portal"),
            "ministry" => ("VN/GOV/000.00.00.G12", "land-registry"),
            _ => continue,
        };
        text.push_str(&format!(
            "\n[[information_systems]]\nmember = \"{member}\"\nname = \"{}\"\nsubsystems = [\"{subsystem}\"]\nfingerprint_sha256 = \"{}\"\n",
            client.name, client.fingerprint_sha256,
        ));
    }
    std::fs::write(path, text)?;
    Ok(())
}

/// The public holidays of the demo's working-day calendar (2026).
const HOLIDAYS: [&str; 11] = [
    "2026-01-01",
    "2026-02-16",
    "2026-02-17",
    "2026-02-18",
    "2026-02-19",
    "2026-02-20",
    "2026-04-27",
    "2026-04-30",
    "2026-05-01",
    "2026-09-01",
    "2026-09-02",
];

/// The `[federation]` section of one of the demo's gateways.
fn federation_section(
    federation: &federation::DemoFederation,
    files: &federation::GatewayFiles,
    server_name: &str,
    hub: bool,
) -> String {
    let source = if hub {
        // The hub is the central server: it reads the document it serves.
        format!(
            "global_configuration = {}\nserve_global_configuration = {}\n",
            toml_path(&federation.global_configuration),
            toml_path(&federation.global_configuration)
        )
    } else {
        format!(
            "global_configuration = \"https://{}/exchange/v1/globalconf\"\n",
            federation::HUB_EXCHANGE_ADDR
        )
    };
    format!(
        "[federation]\ninstance = \"VN\"\nanchor = {}\n{source}refresh_seconds = 60\n\
         server_name = \"{server_name}\"\nencryption_key = {}\nhub = {hub}\n",
        toml_path(&federation.anchor),
        toml_path(&files.encryption_key),
    )
}

/// Writes the configuration of the province's LGSP or of the hub: no services of
/// their own, the portal registered at the province's.
fn write_peer_config(
    dir: &Path,
    pki: &DevPki,
    federation: &federation::DemoFederation,
    hub: bool,
) -> anyhow::Result<PathBuf> {
    use federation::*;
    std::fs::create_dir_all(dir.join("contracts"))?;
    std::fs::create_dir_all(dir.join("adapters"))?;
    let (member, name, consumer, exchange, ops, files) = if hub {
        (
            HUB_MEMBER,
            HUB_NAME,
            HUB_CONSUMER_ADDR,
            HUB_EXCHANGE_ADDR,
            HUB_OPS_ADDR,
            &federation.hub,
        )
    } else {
        (
            PROVINCE_MEMBER,
            PROVINCE_SERVER,
            PROVINCE_CONSUMER_ADDR,
            PROVINCE_EXCHANGE_ADDR,
            PROVINCE_OPS_ADDR,
            &federation.province,
        )
    };
    let registry = dir.join("registry.toml");
    if hub {
        std::fs::write(&registry, "# The hub serves no information system.\n")?;
    } else {
        write_registry(&registry, pki)?;
    }
    let file = dir.join("datagate.toml");
    let text = format!(
        "# Generated by `datagate demo`: {name}.\n[node]\nmember = \"{member}\"\nname = \"{name}\"\n\n\
         [listeners]\nconsumer = \"{consumer}\"\nexchange = \"{exchange}\"\nops = \"{ops}\"\n\n\
         [tls]\ncertificate = {cert}\nkey = {key}\ntrusted_cas = [{ca}]\n\n\
         [registry]\nfile = {registry}\n\n[contracts]\ndir = {contracts}\n\n[adapters]\ndir = {adapters}\n\n\
         [journal]\npath = {journal}\nhmac_key_file = {journal_key}\n\n{federation}",
        cert = toml_path(&files.certificate),
        key = toml_path(&files.key),
        ca = toml_path(&pki.ca_cert),
        registry = toml_path(&registry),
        contracts = toml_path(&dir.join("contracts")),
        adapters = toml_path(&dir.join("adapters")),
        journal = toml_path(&dir.join("journal.sqlite")),
        journal_key = toml_path(&dir.join("journal.key")),
        federation = federation_section(federation, files, name, hub),
    );
    std::fs::write(&file, text)?;
    Ok(file)
}

fn write_node_config(
    state: &Path,
    project: &Path,
    pki: &DevPki,
    federation: &federation::DemoFederation,
) -> anyhow::Result<PathBuf> {
    let file = state.join("datagate.toml");
    let text = format!(
        r#"# Generated by `datagate demo`. Paths are absolute so the file can be reused with
# `datagate serve --config {config}` and `datagate check --config {config}`.
[node]
member = "VN/GOV/000.00.00.G10"
name = "demo-provider-gateway"

[listeners]
consumer = "{consumer}"
ops = "{ops}"
exchange = "{exchange}"
public = "{public}"

# Open data for everyone (plain HTTP on loopback; put TLS in front, or set tls = true).
[public]
per_second = 50
burst = 100

[datasets]
dir = {datasets}
state_dir = {opendata_state}

[tls]
certificate = {cert}
key = {key}
trusted_cas = [{ca}]

[registry]
file = {registry}

[calendar]
holidays = ["2026-01-01", "2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20",
            "2026-04-27", "2026-04-30", "2026-05-01", "2026-09-01", "2026-09-02"]

[contracts]
dir = {contracts}

[adapters]
dir = {adapters}

[journal]
path = {journal}
hmac_key_file = {journal_key}

[[services]]
id = "{citizen}"
adapter = "population-db"

[[services]]
id = "{enterprise}"
adapter = "enterprise-db"

[[services]]
id = "{insurance}"
adapter = "insurance-db"

{federation}"#,
        config = file.display(),
        consumer = CONSUMER_ADDR,
        ops = OPS_ADDR,
        cert = toml_path(&pki.gateway_cert),
        key = toml_path(&pki.gateway_key),
        ca = toml_path(&pki.ca_cert),
        registry = toml_path(&state.join("registry.toml")),
        contracts = toml_path(&project.join("contracts")),
        adapters = toml_path(&project.join("adapters")),
        journal = toml_path(&state.join("journal.sqlite")),
        journal_key = toml_path(&state.join("journal.key")),
        citizen = CITIZEN_SERVICE,
        enterprise = ENTERPRISE_SERVICE,
        insurance = INSURANCE_SERVICE,
        exchange = federation::PROVIDER_EXCHANGE_ADDR,
        public = opendata::PUBLIC_ADDR,
        datasets = toml_path(&state.join("datasets")),
        opendata_state = toml_path(&state.join("opendata")),
        federation = federation_section(
            federation,
            &federation.provider,
            federation::PROVIDER_SERVER,
            false
        ),
    );
    std::fs::write(&file, text)?;
    Ok(file)
}

fn curl(pki: &DevPki, client: &str, who: &str, extra: &str, url: &str) -> String {
    let identity = pki.clients.iter().find(|c| c.name == who);
    let (cert, key) = identity
        .map(|c| (c.cert.display().to_string(), c.key.display().to_string()))
        .unwrap_or_default();
    format!(
        "curl -sS --cacert {} --cert {cert} --key {key} -H 'X-Road-Client: {client}'{extra} {url}",
        pki.ca_cert.display()
    )
}

async fn serve_register(addr: &str, router: axum::Router) -> anyhow::Result<()> {
    let address: SocketAddr = addr.parse()?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("cannot bind the demo register on {addr} (is another demo running?)")
        })?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(error = %error, "demo register stopped");
        }
    });
    Ok(())
}

/// Citizens to fill the demo's form for: three known to every register, one who
/// represents no enterprise, one the insurance register does not know (its fields are
/// left to the citizen); each with what the registers hold.
fn autofill_samples(
    population: &registers::PopulationRegister,
    enterprises: &registers::EnterpriseRegister,
    insurance: &registers::InsuranceRegister,
) -> Vec<(String, &'static str)> {
    let mut samples: Vec<(String, &'static str)> = enterprises
        .sample_representatives(200)
        .into_iter()
        .filter(|id| insurance.insures(id))
        .take(3)
        .map(|id| (id, "population, insurance, enterprises"))
        .collect();
    let others = population.sample_citizen_ids(100);
    if let Some(id) = others
        .iter()
        .find(|id| insurance.insures(id) && !enterprises.represents(id))
    {
        samples.push((id.clone(), "population, insurance"));
    }
    if let Some(id) = others.iter().find(|id| !insurance.insures(id)) {
        samples.push((id.clone(), "population only"));
    }
    samples
}

/// Runs the demo until SIGINT/SIGTERM; SIGHUP reloads its configuration.
pub async fn run(project_dir: &Path, state_dir: &Path) -> anyhow::Result<()> {
    let project = absolute(project_dir)?;
    for needed in ["contracts", "adapters"] {
        anyhow::ensure!(
            project.join(needed).is_dir(),
            "{} has no {needed}/ folder: run the demo from the repository root or pass --project-dir",
            project.display()
        );
    }
    let state = absolute(state_dir)?;
    let certs = state.join("certs");
    std::fs::create_dir_all(&certs)?;
    let pki = match pki::load_dev_pki(&certs)? {
        Some(pki) => pki,
        None => pki::write_dev_pki(&certs)?,
    };
    write_registry(&state.join("registry.toml"), &pki)?;
    #[allow(clippy::disallowed_methods)] // The demo's documents are dated when it starts.
    let now = time::OffsetDateTime::now_utc();
    let idp = Arc::new(identity::DevIdentityProvider::load_or_create(&state)?);
    let federation = federation::prepare(&state, &pki, &HOLIDAYS, idp.global_entry(), now)?;
    let enterprises = Arc::new(registers::EnterpriseRegister::synthetic());
    opendata::prepare(&state, &enterprises).await?;
    let config_file = write_node_config(&state, &project, &pki, &federation)?;
    let province_file = write_peer_config(&state.join("lgsp-hcm"), &pki, &federation, false)?;
    let hub_file = write_peer_config(&state.join("ndxp"), &pki, &federation, true)?;
    // Each node's journal key, made once and kept across demo runs, as `datagate certs`
    // makes one for a real node (a node never makes its own).
    for dir in [state.clone(), state.join("lgsp-hcm"), state.join("ndxp")] {
        crate::journal::load_or_create_key(&dir.join("journal.key"))?;
    }
    let load = |file: &Path| {
        crate::config::load(file).map_err(|errors| {
            anyhow::anyhow!(
                "the demo configuration {} is invalid:\n{}",
                file.display(),
                errors
                    .iter()
                    .map(|e| format!("  {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    };
    let config = load(&config_file)?;
    let province_config = load(&province_file)?;
    let hub_config = load(&hub_file)?;

    let population = Arc::new(registers::PopulationRegister::synthetic());
    let insurance = Arc::new(registers::InsuranceRegister::synthetic());
    let citizen_ids = population.sample_citizen_ids(5);
    let tax_codes = enterprises.sample_tax_codes(5);
    let autofill_citizens = autofill_samples(&population, &enterprises, &insurance);
    serve_register(POPULATION_ADDR, population.router()).await?;
    serve_register(ENTERPRISE_ADDR, enterprises.router()).await?;
    serve_register(INSURANCE_ADDR, insurance.router()).await?;
    serve_register(identity::ADDR, idp.clone().router()).await?;

    // The hub first: it serves the global configuration the other two fetch.
    let hub = crate::gateway::server::start(hub_config).await?;
    let node = crate::gateway::server::start(config).await?;
    let province = crate::gateway::server::start(province_config).await?;
    let portal_identity = pki
        .clients
        .iter()
        .find(|c| c.name == "portal")
        .context("the dev PKI has no portal client")?;
    let portal = Arc::new(portal::Portal::new(
        format!("https://{CONSUMER_ADDR}"),
        format!(
            "{}{}",
            std::fs::read_to_string(&portal_identity.cert)?,
            std::fs::read_to_string(&portal_identity.key)?
        )
        .as_bytes(),
        &std::fs::read(&pki.ca_cert)?,
        idp.clone(),
        autofill_citizens.iter().map(|(id, _)| id.clone()).collect(),
        vec![(
            FORM.to_owned(),
            "Tờ khai đề nghị trợ cấp xã hội hàng tháng".to_owned(),
        )],
    )?);
    serve_register(portal::ADDR, portal.router()).await?;
    let base = format!("https://{CONSUMER_ADDR}/r1");
    let citizen = citizen_ids.first().cloned().unwrap_or_default();
    let tax_code = tax_codes.first().cloned().unwrap_or_default();
    let assertion = |subject: &str, level: &str, form: &str| {
        let form = if form.is_empty() {
            String::new()
        } else {
            format!(" -d form={form}")
        };
        format!(
            "A=$(curl -sS -d subject={subject} -d level={level}{form} http://{}/assertions) && ",
            identity::ADDR
        )
    };
    let with_assertion = " -H \"X-Citizen-Assertion: $A\"";
    let (full, _) = autofill_citizens.first().cloned().unwrap_or_default();
    let fill = |level: &str| {
        format!(
            "{}{} -H 'Content-Type: application/json' -d '{{\"subject\":\"{full}\"}}' https://{CONSUMER_ADDR}/autofill/v1/{FORM}",
            assertion(&full, level, FORM),
            curl(&pki, PORTAL_CLIENT, "portal", with_assertion, "").trim_end(),
        )
    };
    let commands = vec![
        serde_json::json!({"what": "citizen lookup through SOAP, with the citizen's assertion from the dev identity provider (200, allowed fields only)",
            "command": format!("{}{}", assertion(&citizen, "medium", ""), curl(&pki, PORTAL_CLIENT, "portal", &format!(" -H 'X-Purpose: HOUSEHOLD-REGISTRATION'{with_assertion}"), &format!("{base}/{CITIZEN_SERVICE}/{citizen}")))}),
        serde_json::json!({"what": "citizen lookup without the citizen's assertion (401 citizen.assertion_missing)",
            "command": curl(&pki, PORTAL_CLIENT, "portal", " -H 'X-Purpose: HOUSEHOLD-REGISTRATION'", &format!("{base}/{CITIZEN_SERVICE}/{citizen}"))}),
        serde_json::json!({"what": "enterprise lookup through REST (200)",
            "command": curl(&pki, PORTAL_CLIENT, "portal", " -H 'X-Purpose: BUSINESS-LICENSING'", &format!("{base}/{ENTERPRISE_SERVICE}/{tax_code}"))}),
        serde_json::json!({"what": "denied: purpose not in the contract (403 contract.purpose_not_allowed)",
            "command": curl(&pki, PORTAL_CLIENT, "portal", " -H 'X-Purpose: MARKETING'", &format!("{base}/{CITIZEN_SERVICE}/{citizen}"))}),
        serde_json::json!({"what": "denied: contract expired (403 contract.outside_validity)",
            "command": curl(&pki, MINISTRY_CLIENT, "ministry", " -H 'X-Purpose: LAND-TITLE'", &format!("{base}/{CITIZEN_SERVICE}/{citizen}"))}),
        serde_json::json!({"what": "schema error: malformed tax code (422 request.schema_invalid)",
            "command": curl(&pki, PORTAL_CLIENT, "portal", " -H 'X-Purpose: BUSINESS-LICENSING'", &format!("{base}/{ENTERPRISE_SERVICE}/12345"))}),
        serde_json::json!({"what": "autofill preview: which fields and sources the form uses, and the consent to ask for (no data)",
            "command": curl(&pki, PORTAL_CLIENT, "portal", "", &format!("https://{CONSUMER_ADDR}/autofill/v1/{FORM}"))}),
        serde_json::json!({"what": "autofill: the citizen signed in at level high and consented; every field with its provenance (200)",
            "command": fill("high")}),
        serde_json::json!({"what": "autofill step-up: signed in at medium, the form needs high (401 citizen.step_up_required, requiredLevel)",
            "command": fill("medium")}),
        serde_json::json!({"what": "who accessed my data: the citizen's view through the portal (200)",
            "command": format!("{}{}", assertion(&full, "medium", ""), curl(&pki, PORTAL_CLIENT, "portal", with_assertion, &format!("https://{CONSUMER_ADDR}/citizen/v1/access")))}),
        serde_json::json!({"what": "the demo portal's page: the filled form with each field's provenance",
            "command": format!("open http://{}/", portal::ADDR)}),
        serde_json::json!({"what": "readiness and metrics", "command": format!("curl -sS http://{OPS_ADDR}/readyz && curl -sS http://{OPS_ADDR}/metrics | grep datagate_requests_total")}),
        serde_json::json!({"what": "federated: the portal asks its own gateway (the province's LGSP); it travels signed and encrypted through the NDXP hub to the ministry's LGSP (200)",
            "command": format!("{}{}", assertion(&citizen, "medium", ""), curl(&pki, PORTAL_CLIENT, "portal", &format!(" -H 'X-Purpose: HOUSEHOLD-REGISTRATION' -H 'X-Road-Id: demo-federated-1'{with_assertion}"), &format!("https://{}/r1/{CITIZEN_SERVICE}/{citizen}", federation::PROVINCE_CONSUMER_ADDR)))}),
        serde_json::json!({"what": "the same X-Road-Id in the three journals (province, hub, ministry)",
            "command": format!("for ops in {} {} {OPS_ADDR}; do curl -sS http://$ops/status/v1/journal/demo-federated-1; echo; done", federation::PROVINCE_OPS_ADDR, federation::HUB_OPS_ADDR)}),
    ];
    let manifest = DemoManifest {
        consumer_url: format!("https://{CONSUMER_ADDR}"),
        ops_url: format!("http://{OPS_ADDR}"),
        backends: serde_json::json!({
            "population-db": {"kind": "soap", "url": format!("http://{POPULATION_ADDR}/soap")},
            "enterprise-db": {"kind": "rest", "url": format!("http://{ENTERPRISE_ADDR}/api/v1/enterprises/{{tax_code}}")},
            "insurance-db": {"kind": "rest", "url": format!("http://{INSURANCE_ADDR}/api/v1/participants/{{citizen_id}}")},
        }),
        ca_certificate: pki.ca_cert.clone(),
        clients: pki
            .clients
            .iter()
            .map(|c| {
                let id = if c.name == "portal" { PORTAL_CLIENT } else { MINISTRY_CLIENT };
                serde_json::json!({"client": id, "certificate": c.cert, "key": c.key, "fingerprint_sha256": c.fingerprint_sha256})
            })
            .collect(),
        services: serde_json::json!({
            CITIZEN_SERVICE: {"operations": ["GET /{citizen_id}"], "purposes": ["HOUSEHOLD-REGISTRATION", "SOCIAL-ALLOWANCE"]},
            ENTERPRISE_SERVICE: {"operations": ["GET /{tax_code}", "GET /by-representative/{citizen_id}"], "purposes": ["BUSINESS-LICENSING", "SOCIAL-ALLOWANCE"]},
            INSURANCE_SERVICE: {"operations": ["GET /{citizen_id}"], "purposes": ["SOCIAL-ALLOWANCE"]},
        }),
        sample_citizen_ids: citizen_ids,
        autofill: serde_json::json!({
            "url": format!("https://{CONSUMER_ADDR}/autofill/v1/{{form}}"),
            "forms": [FORM],
            "citizen_access": format!("https://{CONSUMER_ADDR}/citizen/v1/access"),
            "sample_citizens": autofill_citizens
                .iter()
                .map(|(id, what)| serde_json::json!({"citizen_id": id, "has": what}))
                .collect::<Vec<_>>(),
        }),
        identity_provider: serde_json::json!({
            "issue": format!("http://{}/assertions", identity::ADDR),
            "jwks": format!("http://{}/jwks.json", identity::ADDR),
            "issuer": identity::ISSUER,
            "parameters": "subject (12 digits), level (medium|high), audience, form, services (comma-separated), lifetime_seconds",
        }),
        portal_url: format!("http://{}/", portal::ADDR),
        open_data: serde_json::json!({
            "public_url": format!("http://{}", opendata::PUBLIC_ADDR),
            "ckan_api": format!("http://{}/api/3/action/", opendata::PUBLIC_ADDR),
            "datasets": ["administrative-units", "licensed-enterprises", "public-service-statistics"],
            "downloads": format!("http://{}/dataset/{{id}}.csv", opendata::PUBLIC_ADDR),
        }),
        sample_tax_codes: tax_codes,
        node_config: config_file,
        journal: state.join("journal.sqlite"),
        curl: commands.clone(),
    };
    let manifest_path = state.join("demo.json");
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)?;

    println!("\ndatagate demo: a local federation with synthetic data (nothing here is real)\n");
    println!(
        "  provider gateway (mTLS)   https://{CONSUMER_ADDR}  (the ministry's LGSP; exchange https://{})",
        federation::PROVIDER_EXCHANGE_ADDR
    );
    println!(
        "  province gateway (mTLS)   https://{}  (the portal's own LGSP; ops http://{})",
        federation::PROVINCE_CONSUMER_ADDR,
        federation::PROVINCE_OPS_ADDR
    );
    println!(
        "  NDXP hub                  https://{}  (relays; serves the global configuration; ops http://{})",
        federation::HUB_EXCHANGE_ADDR,
        federation::HUB_OPS_ADDR
    );
    println!("  ops                       http://{OPS_ADDR}/healthz  /readyz  /metrics");
    println!("  population register SOAP  http://{POPULATION_ADDR}/soap");
    println!(
        "  enterprise register REST  http://{ENTERPRISE_ADDR}/api/v1/enterprises/{{tax_code}}"
    );
    println!(
        "  social insurance REST     http://{INSURANCE_ADDR}/api/v1/participants/{{citizen_id}}"
    );
    println!(
        "  dev identity provider     http://{}/assertions  (issues citizen assertions; dev only)",
        identity::ADDR
    );
    println!(
        "  portal page               http://{}/  (a form filled once-only, with provenance)",
        portal::ADDR
    );
    println!(
        "  open data (CKAN API)      http://{}/api/3/action/package_list  (public listener)",
        opendata::PUBLIC_ADDR
    );
    println!("  everything a client needs {}\n", manifest_path.display());
    for command in &commands {
        println!("# {}", command["what"].as_str().unwrap_or_default());
        println!("{}\n", command["command"].as_str().unwrap_or_default());
    }
    println!("Press Ctrl-C to stop.");

    // Same signals as `serve`: SIGHUP reloads (contracts, adapters, registry), SIGINT and
    // SIGTERM drain and stop.
    crate::gateway::server::run_all_until_signalled(vec![hub, node, province]).await
}
