//! Scenario (c): a signed and encrypted exchange between gateways. LGSP A (the
//! portal's gateway, consumer side), LGSP B (in front of the stub upstream, provider
//! side) and, for the second path, the NDXP hub run as processes of their own with
//! `[federation]` sections and one global configuration signed by a throw-away
//! authority (file source), as `src/demo/federation.rs` builds the demo's.
//!
//! Two services of B's member select the path: `…/bench-db/record` goes A → B
//! directly, `…/bench-db/record-via-hub` goes A → hub → B (the global configuration
//! routes it through the hub). The same three processes serve both, and the harness
//! measures one path at a time, so each round's CPU belongs to its path.
//!
//! Every node runs like gateway (a): pass-through contract (on B), no journal, caps as
//! wide as nginx's; so what (c) adds over (a) is the federation's own work.
//!
//! Also here: the role floors of this run ([`measure_floors`]), with the same library
//! calls as `benches/crypto_floor.rs` (`benches/common/federation_crypto.rs`).

use crate::federation_crypto::{Exchange, KeyType, Role, Shape};
use crate::procs::{self, Proc};
use crate::setup::{self, GatewayLimits, GatewayProfile, Pki};
use crate::{Harness, stub};
use anyhow::Context as _;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The service reached directly (A → B).
pub const DIRECT_SERVICE: &str = setup::SERVICE;
/// The service the global configuration routes through the hub (A → hub → B).
pub const HUB_SERVICE: &str = "VN/GOV/000.00.00.G10/bench-db/record-via-hub";
/// Secure-server names in the global configuration.
const A_SERVER: &str = "lgsp-a";
const B_SERVER: &str = "lgsp-b";
const HUB_NAME: &str = "ndxp";
const HUB_MEMBER: &str = "VN/GOV/000.00.00.G01";

/// One process of the federation, as the report names it.
#[derive(Debug, Clone)]
pub struct RoleProcess {
    /// What the report calls it (`LGSP A (consumer side)`).
    pub label: String,
    /// The floor it is compared with.
    pub role: Role,
    /// Its process id.
    pub pid: u32,
}

/// The running federation: its processes, stopped when dropped.
pub struct Running {
    /// LGSP A.
    pub a: Proc,
    /// LGSP B.
    pub b: Proc,
    /// The hub, when a path through it is measured.
    pub hub: Option<Proc>,
    /// A's consumer listener (the portal's side), where the load goes.
    pub a_consumer_port: u16,
}

impl Running {
    /// The processes on the path of `target` (`fed-direct` or `fed-hub`), in path order.
    pub fn roles(&self, target: &str) -> Vec<RoleProcess> {
        let a = RoleProcess {
            label: "LGSP A (consumer side)".into(),
            role: Role::Consumer,
            pid: self.a.pid(),
        };
        match (target, &self.hub) {
            ("fed-hub", Some(hub)) => vec![
                a,
                RoleProcess {
                    label: "NDXP hub".into(),
                    role: Role::Hub,
                    pid: hub.pid(),
                },
                RoleProcess {
                    label: "LGSP B (provider side)".into(),
                    role: Role::ProviderViaHub,
                    pid: self.b.pid(),
                },
            ],
            _ => vec![
                a,
                RoleProcess {
                    label: "LGSP B (provider side)".into(),
                    role: Role::Provider,
                    pid: self.b.pid(),
                },
            ],
        }
    }

    /// The path each target asks for.
    pub fn path(target: &str) -> String {
        setup::service_path(if target == "fed-hub" {
            HUB_SERVICE
        } else {
            DIRECT_SERVICE
        })
    }

    /// A note for each process that exited during the run.
    pub fn exits(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut procs = vec![("LGSP A", &mut self.a), ("LGSP B", &mut self.b)];
        if let Some(hub) = self.hub.as_mut() {
            procs.push(("the hub", hub));
        }
        for (name, proc) in procs {
            if let Some(status) = proc.exited() {
                notes.push(format!(
                    "{name} exited during the run ({status}): {}",
                    proc.log_tail()
                ));
            }
        }
        notes
    }

    /// Stops every process.
    pub fn stop(&mut self) {
        self.a.stop();
        self.b.stop();
        if let Some(hub) = self.hub.as_mut() {
            hub.stop();
        }
    }
}

/// Where one node listens.
#[derive(Debug, Clone, Copy)]
struct Ports {
    consumer: u16,
    ops: u16,
    exchange: u16,
}

impl Ports {
    fn free() -> anyhow::Result<Self> {
        Ok(Ports {
            consumer: procs::free_port()?,
            ops: procs::free_port()?,
            exchange: procs::free_port()?,
        })
    }
}

/// A fresh EC P-256 key: (PKCS#8 PEM, public JWK with `kid`).
fn ec_key(kid: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8()?)?;
    let jwk = datagate::keystore::PrivateKey::from_pem(pem.as_bytes(), None)
        .and_then(|key| key.public_key())
        .and_then(|public| public.to_jwk(Some(kid)))
        .map_err(|e| anyhow::anyhow!("encryption key: {e}"))?;
    Ok((pem, jwk))
}

fn rfc3339(at: time::OffsetDateTime) -> anyhow::Result<String> {
    Ok(at.format(&time::format_description::well_known::Rfc3339)?)
}

/// One node's files.
struct Node<'a> {
    id: &'static str,
    member: &'a str,
    server_name: &'static str,
    certificate: &'a datagate::pki::IssuedCertificate,
    ports: Ports,
    hub: bool,
}

/// Writes the keys, the signed global configuration and the three nodes'
/// configurations, then starts B, the hub (when `with_hub`) and A, pinned like the
/// other targets.
pub fn start(harness: &Harness, with_hub: bool) -> anyhow::Result<Running> {
    let dir = harness.dir.join("federation");
    std::fs::create_dir_all(&dir)?;
    let pki = &harness.pki;
    let now = time::OffsetDateTime::now_utc();
    let [a_cert, b_cert, hub_cert] = &pki.gateways;
    let a = Node {
        id: "lgsp-a",
        member: setup::CLIENT_MEMBER,
        server_name: A_SERVER,
        certificate: a_cert,
        ports: Ports::free()?,
        hub: false,
    };
    let b = Node {
        id: "lgsp-b",
        member: setup::PROVIDER_MEMBER,
        server_name: B_SERVER,
        certificate: b_cert,
        ports: Ports::free()?,
        hub: false,
    };
    let hub = Node {
        id: "ndxp",
        member: HUB_MEMBER,
        server_name: HUB_NAME,
        certificate: hub_cert,
        ports: Ports::free()?,
        hub: true,
    };

    // The authority and its signed global configuration.
    let (authority_key, _) = ec_key("authority")?;
    let anchor = dir.join("anchor.pem");
    std::fs::write(
        &anchor,
        openssl::pkey::PKey::private_key_from_pem(authority_key.as_bytes())?.public_key_to_pem()?,
    )?;
    let mut encryption = Vec::new();
    for node in [&a, &b, &hub] {
        let (pem, jwk) = ec_key(&format!("{}-enc", node.server_name))?;
        let path = dir.join(format!("{}-encryption-key.pem", node.id));
        std::fs::write(&path, pem)?;
        encryption.push((path, jwk));
    }
    let registered = |cert: &datagate::pki::IssuedCertificate| -> anyhow::Result<_> {
        Ok(serde_json::json!([{
            "sha256": cert.fingerprint_sha256,
            "submitted_at": rfc3339(now - time::Duration::days(30))?,
            "effective_from": rfc3339(now - time::Duration::days(20))?,
        }]))
    };
    let address = |node: &Node| format!("https://127.0.0.1:{}", node.ports.exchange);
    let mut services = vec![serde_json::json!({ "id": DIRECT_SERVICE, "hubs": [] })];
    let mut hubs = Vec::new();
    if with_hub {
        services.push(serde_json::json!({ "id": HUB_SERVICE, "hubs": [HUB_NAME] }));
        hubs.push(serde_json::json!({
            "name": HUB_NAME, "member": HUB_MEMBER, "address": address(&hub),
            "certificates": registered(hub.certificate)?,
        }));
    }
    let client_subsystems: Vec<&str> = [setup::CLIENT, setup::VICTIM]
        .iter()
        .filter_map(|c| c.rsplit('/').next())
        .collect();
    let document = serde_json::json!({
        "format": "datagate-global-configuration/1",
        "instance": "VN",
        "version": now.unix_timestamp(),
        "issued_at": rfc3339(now - time::Duration::minutes(1))?,
        "expires_at": rfc3339(now + time::Duration::days(1))?,
        "trusted_cas": [std::fs::read_to_string(&pki.ca_cert)?],
        "members": [
            { "id": setup::CLIENT_MEMBER, "name": "bench consumer (synthetic)", "subsystems": client_subsystems },
            { "id": setup::PROVIDER_MEMBER, "name": "bench provider (synthetic)", "subsystems": ["bench-db"] },
            { "id": HUB_MEMBER, "name": "bench hub operator (synthetic)", "subsystems": [] },
        ],
        "secure_servers": [
            {
                "member": a.member, "name": a.server_name, "address": address(&a),
                "certificates": registered(a.certificate)?, "encryption_key": encryption[0].1,
            },
            {
                "member": b.member, "name": b.server_name, "address": address(&b),
                "certificates": registered(b.certificate)?, "encryption_key": encryption[1].1,
            },
        ],
        "services": services,
        "hubs": hubs,
        "holidays": [],
    });
    let signed = datagate::trust::global::sign(
        document.to_string().as_bytes(),
        &authority_key,
        datagate::trust::global::SigningAlg::Es256,
    )
    .map_err(|e| anyhow::anyhow!("cannot sign the global configuration: {e}"))?;
    let global = dir.join("global.jws");
    std::fs::write(&global, signed)?;

    let limits = GatewayLimits::Wide {
        connections: harness.options.idle + harness.options.saturation_concurrency,
    };
    let write = |node: &Node, encryption_key: &Path, registry: String, services: &[&str]| {
        write_node(
            &dir.join(node.id),
            node,
            pki,
            limits,
            &anchor,
            &global,
            encryption_key,
            registry,
            services,
            harness.stub_port,
        )
    };
    // B: the owner, in front of the stub, with a pass-through contract for each path.
    let b_config = write(
        &b,
        &encryption[1].0,
        String::new(),
        &[DIRECT_SERVICE, HUB_SERVICE],
    )?;
    // A: the portal's gateway, the consumers registered, no service of its own.
    let a_config = write(&a, &encryption[0].0, setup::registry(pki), &[])?;
    let hub_config = write(&hub, &encryption[2].0, String::new(), &[])?;

    let b_proc = spawn(harness, &b, &b_config)?;
    let hub_proc = if with_hub {
        Some(spawn(harness, &hub, &hub_config)?)
    } else {
        None
    };
    let a_proc = spawn(harness, &a, &a_config)?;
    Ok(Running {
        a: a_proc,
        b: b_proc,
        hub: hub_proc,
        a_consumer_port: a.ports.consumer,
    })
}

#[allow(clippy::too_many_arguments)]
fn write_node(
    dir: &Path,
    node: &Node,
    pki: &Pki,
    limits: GatewayLimits,
    anchor: &Path,
    global: &Path,
    encryption_key: &Path,
    registry: String,
    services: &[&str],
    stub_port: u16,
) -> anyhow::Result<PathBuf> {
    let contracts = dir.join("contracts");
    let adapters = dir.join("adapters");
    std::fs::create_dir_all(&contracts)?;
    std::fs::create_dir_all(&adapters)?;
    let mut service_lines = String::new();
    if !services.is_empty() {
        setup::write_adapter(&adapters, stub_port)?;
        for (index, service) in services.iter().enumerate() {
            std::fs::write(
                contracts.join(format!("bench-{index}.yaml")),
                setup::contract_for(GatewayProfile::PassThrough, setup::CLIENT, service),
            )?;
            service_lines.push_str(&format!(
                "[[services]]\nid = \"{service}\"\nadapter = \"bench-db\"\n\n"
            ));
        }
    }
    let cert = dir.join("certificate.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &node.certificate.cert_pem)?;
    std::fs::write(&key, &node.certificate.key_pem)?;
    let registry_file = dir.join("registry.toml");
    std::fs::write(&registry_file, registry)?;
    // The node's journal key, as `datagate certs` writes it (a node never makes its own).
    datagate::journal::load_or_create_key(&dir.join("journal.key"))?;
    let file = dir.join("datagate.toml");
    let p = |path: &Path| setup::toml_path(path);
    std::fs::write(
        &file,
        format!(
            "[node]\nmember = \"{member}\"\nname = \"load-bench-{id}\"\n\n\
             [listeners]\nconsumer = \"127.0.0.1:{consumer}\"\nops = \"127.0.0.1:{ops}\"\n\
             exchange = \"127.0.0.1:{exchange}\"\n\n\
             [tls]\ncertificate = {cert}\nkey = {key}\ntrusted_cas = [{ca}]\n\n\
             [registry]\nfile = {registry}\n\n\
             [contracts]\ndir = {contracts}\n\n[adapters]\ndir = {adapters}\n\n\
             [journal]\npath = {journal}\nhmac_key_file = {journal_key}\n\n\
             [limits]\n{limits}\n\
             {service_lines}\
             [dangerous]\ndisable_journal = true\n\n\
             [federation]\ninstance = \"VN\"\nanchor = {anchor}\nglobal_configuration = {global}\n\
             refresh_seconds = 3600\nserver_name = \"{server}\"\nencryption_key = {encryption}\n\
             hub = {hub}\n",
            member = node.member,
            id = node.id,
            consumer = node.ports.consumer,
            ops = node.ports.ops,
            exchange = node.ports.exchange,
            cert = p(&cert),
            key = p(&key),
            ca = p(&pki.ca_cert),
            registry = p(&registry_file),
            contracts = p(&contracts),
            adapters = p(&adapters),
            journal = p(&dir.join("journal.sqlite")),
            journal_key = p(&dir.join("journal.key")),
            limits = limits.toml(),
            anchor = p(anchor),
            global = p(global),
            server = node.server_name,
            encryption = p(encryption_key),
            hub = node.hub,
        ),
    )?;
    Ok(file)
}

fn spawn(harness: &Harness, node: &Node, config: &Path) -> anyhow::Result<Proc> {
    let dir = config.parent().context("a node's folder")?;
    let mut command = procs::pinned(harness.pinning.target, &harness.options.datagate);
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .env_remove("DATAGATE_CONFIG");
    let mut proc = Proc::spawn(node.id, command, &dir.join("gateway.log"), false)?;
    procs::wait_listening(&mut proc, node.ports.exchange, Duration::from_secs(20))?;
    procs::wait_listening(&mut proc, node.ports.consumer, Duration::from_secs(20))?;
    Ok(proc)
}

/// The crypto floor of each role in this run.
#[derive(Debug, Clone, Serialize)]
pub struct Floors {
    /// Keys and algorithms.
    pub keys: String,
    /// The exchange measured.
    pub exchange: String,
    /// How it was measured.
    pub method: String,
    /// Per role: name and microseconds per exchange (the lower of the two measurements).
    pub roles: Vec<RoleFloor>,
}

/// One role's floor.
#[derive(Debug, Clone, Serialize)]
pub struct RoleFloor {
    /// `consumer`, `provider`, `provider-via-hub`, `hub`.
    pub role: String,
    /// Microseconds per exchange: the lower of the medians before and after the load.
    pub us: f64,
    /// Median before the load runs.
    pub before_us: f64,
    /// Median after them.
    pub after_us: Option<f64>,
}

impl Floors {
    /// The floor of `role`, microseconds.
    pub fn of(&self, role: Role) -> Option<f64> {
        self.roles
            .iter()
            .find(|r| r.role == role.name())
            .map(|r| r.us)
    }
}

const FLOOR_BATCHES: usize = 9;
const FLOOR_PER_BATCH: usize = 40;

/// Measures every role's floor on this thread (the load generator's core, idle at
/// that moment): EC P-256 keys as the nodes', a GET with the stub's 1 KiB record as
/// the answer, as the load runs. With `previous`, measures again and keeps the lower
/// median (noise only adds to a floor).
pub fn measure_floors(previous: Option<Floors>) -> anyhow::Result<Floors> {
    let exchange = Exchange::new(KeyType::EcdsaP256, Shape::Get, stub::record())?;
    let prepared = exchange.prepare()?;
    let mut roles = Vec::new();
    for role in Role::ALL {
        let median = crate::federation_crypto::floor_us(
            &exchange,
            &prepared,
            role,
            FLOOR_BATCHES,
            FLOOR_PER_BATCH,
        )?;
        let before = previous
            .as_ref()
            .and_then(|p| p.roles.iter().find(|r| r.role == role.name()))
            .map(|r| r.before_us);
        roles.push(match before {
            Some(before) => RoleFloor {
                role: role.name().into(),
                us: before.min(median),
                before_us: before,
                after_us: Some(median),
            },
            None => RoleFloor {
                role: role.name().into(),
                us: median,
                before_us: median,
                after_us: None,
            },
        });
    }
    Ok(Floors {
        keys: format!(
            "{} ({})",
            KeyType::EcdsaP256.name(),
            KeyType::EcdsaP256.algorithms()
        ),
        exchange: format!("GET, no body; {} B JSON answer", stub::record().len()),
        method: format!(
            "the library calls of benches/common/federation_crypto.rs, in this process on the \
             load generator's core: median of {FLOOR_BATCHES} batches of {FLOOR_PER_BATCH} \
             exchanges, before and after the load runs; the lower median counts"
        ),
        roles,
    })
}
