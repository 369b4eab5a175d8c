//! `[federation]`: this node as a secure server of the federation, validated
//! completely at load (keys open, the anchor parses, the source is a file or an
//! `https` URL) so a node never starts with a federation it cannot use.

use super::ConfigError;
use super::raw::RawFederation;
use crate::keystore::{Certificate, Identity, PrivateKey};
use crate::msgsig::{Algorithm, SigningKey};
use crate::trust::global::Anchor;
use crate::trust::tls::TlsFiles;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the signed global configuration comes from.
#[derive(Debug, Clone)]
pub enum GlobalSource {
    /// Fetched over mTLS from a central server (or a hub that serves it).
    Url(url::Url),
    /// Read from a file (the central authority's own node, tests).
    File(PathBuf),
}

/// The validated `[federation]` section.
#[derive(Clone)]
pub struct FederationSettings {
    /// The federation instance.
    pub instance: String,
    /// The trust anchor of the global configuration.
    pub anchor: Anchor,
    /// The anchor's file: a rotated anchor is written back to it.
    pub anchor_path: PathBuf,
    /// Where the global configuration comes from.
    pub source: GlobalSource,
    /// How often it is polled.
    pub refresh: Duration,
    /// This node's secure-server name in the global configuration.
    pub server_name: String,
    /// The key that signs this node's messages.
    pub signing_key: std::sync::Arc<SigningKey>,
    /// The certificate of that key (its SHA-256 is the `keyid`).
    pub certificate: Certificate,
    /// The key payloads addressed to this node are encrypted to.
    pub encryption_key: PrivateKey,
    /// The oldest `created` accepted.
    pub max_signature_age: Duration,
    /// Tolerated clock difference.
    pub max_clock_skew: Duration,
    /// Nonces remembered.
    pub nonce_memory: usize,
    /// Whether this node relays as a hub.
    pub hub: bool,
    /// Central mode: the signed global configuration this node serves.
    pub serve_global_configuration: Option<PathBuf>,
}

impl std::fmt::Debug for FederationSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationSettings")
            .field("instance", &self.instance)
            .field("server_name", &self.server_name)
            .field("key_id", &self.certificate.fingerprint_hex())
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

/// Validates `[federation]`; every problem goes to `errors` with its path.
pub fn build(
    raw: &RawFederation,
    tls: &TlsFiles,
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<ConfigError>,
) -> Option<FederationSettings> {
    let mut fail = |path: &str, message: String| {
        errors.push(ConfigError::new(
            file,
            &format!("federation.{path}"),
            message,
        ));
    };
    if raw.instance.is_empty()
        || !raw
            .instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        fail("instance", "must be letters, digits or '-'".into());
    }
    let anchor = std::fs::read_to_string(resolve(&raw.anchor))
        .map_err(|e| format!("cannot read: {e}"))
        .and_then(|pem| Anchor::from_pem(&pem).map_err(|e| e.to_string()))
        .map_err(|message| fail("anchor", message))
        .ok();
    let source = if raw.global_configuration.starts_with("https://") {
        url::Url::parse(&raw.global_configuration)
            .map(GlobalSource::Url)
            .map_err(|e| fail("global_configuration", format!("not a URL: {e}")))
            .ok()
    } else if raw.global_configuration.contains("://") {
        fail(
            "global_configuration",
            "must be an https:// URL or a file path".into(),
        );
        None
    } else {
        Some(GlobalSource::File(resolve(Path::new(
            &raw.global_configuration,
        ))))
    };
    if !(1..=86_400).contains(&raw.refresh_seconds) {
        fail("refresh_seconds", "must be between 1 and 86400".into());
    }
    if !(10..=3_600).contains(&raw.max_signature_age_seconds) {
        fail(
            "max_signature_age_seconds",
            "must be between 10 and 3600".into(),
        );
    }
    if raw.max_clock_skew_seconds > 300 {
        fail("max_clock_skew_seconds", "must be at most 300".into());
    }
    if !(1_000..=10_000_000).contains(&raw.nonce_memory) {
        fail("nonce_memory", "must be between 1000 and 10000000".into());
    }
    let password = match &raw.identity_password_env {
        Some(var) => match std::env::var(var) {
            Ok(value) => Some(value),
            Err(_) => {
                fail(
                    "identity_password_env",
                    format!("the environment variable {var} is not set"),
                );
                None
            }
        },
        None => None,
    };
    let identity = match &raw.identity {
        Some(path) => Identity::load(resolve(path), password.as_deref())
            .map_err(|e| fail("identity", format!("{} ({})", e, e.code()))),
        None => {
            // The [tls] certificate and key: the registered secure-server certificate.
            let mut bundle = std::fs::read(&tls.key).unwrap_or_default();
            bundle.push(b'\n');
            bundle.extend(std::fs::read(&tls.certificate).unwrap_or_default());
            Identity::from_bytes(&bundle, None)
                .map_err(|e| fail("identity", format!("the [tls] key and certificate: {e}")))
        }
    }
    .ok();
    let algorithm = match raw.signature_algorithm.as_deref() {
        None => None,
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) => Some(alg),
            Err(_) => {
                fail(
                    "signature_algorithm",
                    "must be ecdsa-p256-sha256, rsa-pss-sha512, rsa-v1_5-sha256 or ed25519".into(),
                );
                None
            }
        },
    };
    let signing = identity.as_ref().and_then(|identity| {
        SigningKey::from_pkcs8_der(&identity.key().to_pkcs8_der(), algorithm)
            .map_err(|e| {
                fail(
                    "signature_algorithm",
                    format!("the identity's key cannot sign with it ({})", e.code()),
                )
            })
            .ok()
            .map(|key| (key, identity.certificate().clone()))
    });
    // The TLS certificate is what peers authenticate and what must equal the signer.
    if let (Some((_, certificate)), Ok(tls_chain)) = (
        signing.as_ref(),
        crate::trust::tls::load_certificates(&tls.certificate),
    ) && tls_chain
        .first()
        .is_none_or(|leaf| crate::trust::fingerprint_sha256(leaf) != certificate.fingerprint_hex())
    {
        fail(
            "identity",
            "must hold the [tls] certificate: peers require the TLS certificate to be the signer's"
                .into(),
        );
    }
    let encryption_password = match &raw.encryption_key_password_env {
        Some(var) => match std::env::var(var) {
            Ok(value) => Some(value),
            Err(_) => {
                fail(
                    "encryption_key_password_env",
                    format!("the environment variable {var} is not set"),
                );
                None
            }
        },
        None => None,
    };
    let encryption_key =
        PrivateKey::load(resolve(&raw.encryption_key), encryption_password.as_deref())
            .map_err(|e| fail("encryption_key", format!("{} ({})", e, e.code())))
            .ok();
    let serve = raw.serve_global_configuration.as_deref().map(resolve);
    if let Some(path) = &serve
        && std::fs::metadata(path).is_err()
    {
        fail(
            "serve_global_configuration",
            format!("cannot read {}", path.display()),
        );
    }
    let (signing_key, certificate) = signing?;
    Some(FederationSettings {
        instance: raw.instance.clone(),
        anchor: anchor?,
        anchor_path: resolve(&raw.anchor),
        source: source?,
        refresh: Duration::from_secs(raw.refresh_seconds),
        server_name: raw.server_name.clone(),
        signing_key: std::sync::Arc::new(signing_key),
        certificate,
        encryption_key: encryption_key?,
        max_signature_age: Duration::from_secs(raw.max_signature_age_seconds),
        max_clock_skew: Duration::from_secs(raw.max_clock_skew_seconds),
        nonce_memory: raw.nonce_memory,
        hub: raw.hub,
        serve_global_configuration: serve,
    })
}
