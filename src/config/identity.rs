//! `[[identity_providers]]`: the identity providers whose citizen assertions this node
//! accepts, each an issuer and its published keys (a JWKS file, every key with a `kid`,
//! EC P-256 or RSA of at least 2048 bits, public members only). The global configuration
//! lists more for federated nodes; both are used.

use super::ConfigError;
use super::raw::RawIdentityProvider;
use crate::trust::global::{IdentityProvider, PublicJwk};
use std::path::{Path, PathBuf};

/// Validates every `[[identity_providers]]`; problems go to `errors`, naming the path.
pub fn build(
    raw: &[RawIdentityProvider],
    file: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    errors: &mut Vec<ConfigError>,
) -> Vec<IdentityProvider> {
    let mut providers: Vec<IdentityProvider> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let at = |field: &str| format!("identity_providers[{i}].{field}");
        let mut fail = |field: &str, message: &str| {
            errors.push(ConfigError::new(file, &at(field), message.to_owned()));
        };
        if !entry.issuer.starts_with("https://") || url::Url::parse(&entry.issuer).is_err() {
            fail(
                "issuer",
                "must be an https URL, exactly as assertions write it",
            );
        }
        if providers.iter().any(|p| p.issuer == entry.issuer) {
            fail("issuer", "is listed twice");
        }
        let path = resolve(&entry.jwks_file);
        let jwks: Option<serde_json::Value> = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let Some(keys) = jwks
            .as_ref()
            .and_then(|jwks| jwks.get("keys"))
            .and_then(serde_json::Value::as_array)
            .filter(|keys| !keys.is_empty())
        else {
            fail(
                "jwks_file",
                "cannot be read as a JWKS with at least one key",
            );
            continue;
        };
        let mut parsed = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            match PublicJwk::from_json(key.to_string().as_bytes()) {
                Ok(jwk) if jwk.kid().is_some() => {
                    if parsed.iter().any(|p: &PublicJwk| p.kid() == jwk.kid()) {
                        fail("jwks_file", &format!("keys[{k}]: a kid is listed twice"));
                    }
                    parsed.push(jwk);
                }
                Ok(_) => fail("jwks_file", &format!("keys[{k}]: has no kid")),
                Err(_) => fail(
                    "jwks_file",
                    &format!("keys[{k}]: not a public EC P-256 or RSA (≥ 2048 bits) key"),
                ),
            }
        }
        providers.push(IdentityProvider {
            issuer: entry.issuer.clone(),
            keys: parsed,
        });
    }
    providers
}
