//! The demo's federation: the province's LGSP (the portal's own gateway), the NDXP
//! hub (which also serves the central global configuration) and the ministry's LGSP
//! (the provider gateway in front of the national registers), each with its own
//! certificate, encryption key, configuration and journal, trusting one global
//! configuration signed by a demo central authority.
//!
//! Nothing here is for production: the authority's key sits beside the documents
//! it signs, under the demo's state directory.

use crate::pki::{CertificateAuthority, DevPki, LeafSpec, LeafUsage};
use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// The ministry's LGSP exchange listener (the provider side).
pub const PROVIDER_EXCHANGE_ADDR: &str = "127.0.0.1:8643";
/// The province's LGSP: consumer listener (the portal calls it), exchange and ops.
pub const PROVINCE_CONSUMER_ADDR: &str = "127.0.0.1:8444";
/// The province's LGSP exchange listener.
pub const PROVINCE_EXCHANGE_ADDR: &str = "127.0.0.1:8644";
/// The province's LGSP ops listener.
pub const PROVINCE_OPS_ADDR: &str = "127.0.0.1:9091";
/// The NDXP hub's consumer listener (unused by the demo's commands).
pub const HUB_CONSUMER_ADDR: &str = "127.0.0.1:8445";
/// The NDXP hub's exchange listener: relays, and serves the global configuration.
pub const HUB_EXCHANGE_ADDR: &str = "127.0.0.1:8645";
/// The NDXP hub's ops listener.
pub const HUB_OPS_ADDR: &str = "127.0.0.1:9092";

/// The ministry's member (owner of the population register).
pub const PROVIDER_MEMBER: &str = "VN/GOV/000.00.00.G10";
/// The province's member (the portal's).
pub const PROVINCE_MEMBER: &str = "VN/GOV/000.00.00.H29";
/// The hub operator's member.
pub const HUB_MEMBER: &str = "VN/GOV/000.00.00.G01";
/// Secure-server names in the global configuration.
pub const PROVIDER_SERVER: &str = "lgsp-bca";
/// The province's secure server.
pub const PROVINCE_SERVER: &str = "lgsp-hcm";
/// The hub's name.
pub const HUB_NAME: &str = "ndxp";

/// Files of one gateway of the demo federation.
#[derive(Debug, Clone)]
pub struct GatewayFiles {
    /// Its certificate (PEM).
    pub certificate: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// Its JWE decryption key (PEM, PKCS#8).
    pub encryption_key: PathBuf,
}

/// What the demo federation wrote.
#[derive(Debug, Clone)]
pub struct DemoFederation {
    /// The authority's public key: every gateway's anchor.
    pub anchor: PathBuf,
    /// The signed global configuration the hub serves.
    pub global_configuration: PathBuf,
    /// The ministry's LGSP (uses the dev PKI's gateway certificate).
    pub provider: GatewayFiles,
    /// The province's LGSP.
    pub province: GatewayFiles,
    /// The hub.
    pub hub: GatewayFiles,
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// An EC P-256 key in `path` (PKCS#8 PEM), created when missing.
fn ec_key(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing);
    }
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)?;
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group)?)?;
    let pem = String::from_utf8(key.private_key_to_pem_pkcs8()?)?;
    write_private(path, &pem)?;
    Ok(pem)
}

/// A gateway certificate for 127.0.0.1 issued by the dev CA, created when missing.
fn gateway_certificate(
    ca: &CertificateAuthority,
    dir: &Path,
    name: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut spec = LeafSpec::server(name, &["localhost"], &[IpAddr::V4(Ipv4Addr::LOCALHOST)]);
    spec.usage = LeafUsage::ServerAndClient;
    let issued = ca.issue(&spec)?;
    std::fs::write(&cert, &issued.cert_pem)?;
    write_private(&key, &issued.key_pem)?;
    Ok((cert, key))
}

fn fingerprint(cert: &Path) -> anyhow::Result<String> {
    let pem = std::fs::read(cert)?;
    let certificate = crate::keystore::Certificate::from_pem(&pem)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    Ok(certificate.fingerprint_hex())
}

fn public_jwk(key_pem: &str, kid: &str) -> anyhow::Result<serde_json::Value> {
    let key = crate::keystore::PrivateKey::from_pem(key_pem.as_bytes(), None)
        .map_err(|e| anyhow::anyhow!("demo encryption key: {e}"))?;
    key.public_key()
        .and_then(|public| public.to_jwk(Some(kid)))
        .map_err(|e| anyhow::anyhow!("demo encryption key: {e}"))
}

fn rfc3339(at: time::OffsetDateTime) -> anyhow::Result<String> {
    Ok(at.format(&time::format_description::well_known::Rfc3339)?)
}

/// Writes the keys, certificates and a freshly signed global configuration.
pub fn prepare(
    state: &Path,
    pki: &DevPki,
    holidays: &[&str],
    identity_provider: serde_json::Value,
    now: time::OffsetDateTime,
) -> anyhow::Result<DemoFederation> {
    let dir = state.join("federation");
    std::fs::create_dir_all(&dir)?;
    let ca_cert = std::fs::read_to_string(&pki.ca_cert)?;
    let ca_key_path = pki
        .ca_cert
        .parent()
        .map(|certs| certs.join("ca-key.pem"))
        .context("the dev CA has no folder")?;
    let ca = CertificateAuthority::from_pem(&ca_cert, &std::fs::read_to_string(&ca_key_path)?)?;
    let (province_cert, province_key) = gateway_certificate(&ca, &dir, PROVINCE_SERVER)?;
    let (hub_cert, hub_key) = gateway_certificate(&ca, &dir, HUB_NAME)?;
    let key_path = |name: &str| dir.join(format!("{name}-encryption-key.pem"));
    let provider_encryption = ec_key(&key_path(PROVIDER_SERVER))?;
    let province_encryption = ec_key(&key_path(PROVINCE_SERVER))?;
    ec_key(&key_path(HUB_NAME))?;
    let authority_key = ec_key(&dir.join("authority-key.pem"))?;
    let authority =
        openssl::pkey::PKey::private_key_from_pem(authority_key.as_bytes())?.public_key_to_pem()?;
    let anchor = dir.join("anchor.pem");
    std::fs::write(&anchor, authority)?;

    // Registrations submitted a month ago: past the 3 working days' notice.
    let registered = serde_json::json!({
        "submitted_at": rfc3339(now - time::Duration::days(30))?,
        "effective_from": rfc3339(now - time::Duration::days(20))?,
    });
    let entry = |cert: &Path| -> anyhow::Result<serde_json::Value> {
        let mut entry = registered.clone();
        entry["sha256"] = serde_json::Value::String(fingerprint(cert)?);
        Ok(serde_json::json!([entry]))
    };
    let document = serde_json::json!({
        "format": "datagate-global-configuration/1",
        "instance": "VN",
        // Seconds since the epoch: every demo start issues a newer version.
        "version": now.unix_timestamp(),
        "issued_at": rfc3339(now - time::Duration::minutes(1))?,
        "expires_at": rfc3339(now + time::Duration::days(7))?,
        "trusted_cas": [ca_cert],
        "members": [
            { "id": PROVINCE_MEMBER, "name": "UBND Thành phố Hồ Chí Minh (synthetic)", "subsystems": ["dvc-portal"] },
            { "id": PROVIDER_MEMBER, "name": "Bộ Công an (synthetic)", "subsystems": ["population-db"] },
            { "id": HUB_MEMBER, "name": "NDXP operator (synthetic)", "subsystems": [] },
        ],
        "secure_servers": [
            {
                "member": PROVIDER_MEMBER, "name": PROVIDER_SERVER,
                "address": format!("https://{PROVIDER_EXCHANGE_ADDR}"),
                "certificates": entry(&pki.gateway_cert)?,
                "encryption_key": public_jwk(&provider_encryption, &format!("{PROVIDER_SERVER}-enc"))?,
            },
            {
                "member": PROVINCE_MEMBER, "name": PROVINCE_SERVER,
                "address": format!("https://{PROVINCE_EXCHANGE_ADDR}"),
                "certificates": entry(&province_cert)?,
                "encryption_key": public_jwk(&province_encryption, &format!("{PROVINCE_SERVER}-enc"))?,
            },
        ],
        "services": [
            { "id": super::CITIZEN_SERVICE, "hubs": [HUB_NAME] },
        ],
        "hubs": [
            {
                "name": HUB_NAME, "member": HUB_MEMBER,
                "address": format!("https://{HUB_EXCHANGE_ADDR}"),
                "certificates": entry(&hub_cert)?,
            },
        ],
        "identity_providers": [identity_provider],
        "holidays": holidays,
    });
    let signed = crate::trust::global::sign(
        document.to_string().as_bytes(),
        &authority_key,
        crate::trust::global::SigningAlg::Es256,
    )
    .map_err(|e| anyhow::anyhow!("cannot sign the demo global configuration: {e}"))?;
    let global_configuration = dir.join("global.jws");
    std::fs::write(&global_configuration, signed)?;
    Ok(DemoFederation {
        anchor,
        global_configuration,
        provider: GatewayFiles {
            certificate: pki.gateway_cert.clone(),
            key: pki.gateway_key.clone(),
            encryption_key: key_path(PROVIDER_SERVER),
        },
        province: GatewayFiles {
            certificate: province_cert,
            key: province_key,
            encryption_key: key_path(PROVINCE_SERVER),
        },
        hub: GatewayFiles {
            certificate: hub_cert,
            key: hub_key,
            encryption_key: key_path(HUB_NAME),
        },
    })
}
