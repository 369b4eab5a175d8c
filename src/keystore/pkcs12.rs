//! PKCS#12 (`.p12`/`.pfx`), modern and legacy, and OpenSSL's `legacy` provider.
//!
//! OpenSSL 3 moved RC2, single DES and other old ciphers into a separate
//! `legacy` provider that is not loaded by default, so a PKCS#12 encrypted the
//! way older Windows and Java tools (and many CAs) still do it — certificates
//! under RC2-40, key under 3DES, SHA-1 MAC — fails to open with the default
//! provider alone. [`ensure_legacy_provider`] loads `legacy` together with
//! `default` (so that every algorithm that worked before still works), once per
//! process, and only after a modern parse has failed for a reason other than a
//! wrong password. The providers stay loaded for the life of the process.

use super::KeyError;
use openssl::error::ErrorStack;
use openssl::pkcs12::{ParsedPkcs12_2, Pkcs12};
use openssl::provider::Provider;
use std::sync::OnceLock;

/// The `default` and `legacy` providers, kept loaded once loaded.
struct LegacyProviders {
    _default: Provider,
    _legacy: Provider,
}

static LEGACY: OnceLock<Option<LegacyProviders>> = OnceLock::new();

/// Loads OpenSSL's `legacy` provider (and keeps `default`) in the default
/// library context, once. Returns whether it is available.
pub(crate) fn ensure_legacy_provider() -> bool {
    LEGACY
        .get_or_init(|| {
            // `default` first and explicitly: loading any provider by name turns
            // off the implicit fallback to `default` unless it is retained.
            let default = Provider::try_load(None, "default", true).ok()?;
            let legacy = Provider::try_load(None, "legacy", true).ok()?;
            Some(LegacyProviders {
                _default: default,
                _legacy: legacy,
            })
        })
        .is_some()
}

/// Whether this process has loaded OpenSSL's `legacy` provider (through
/// reading a legacy PKCS#12 or encrypted key). For logs and tests.
pub fn legacy_provider_loaded() -> bool {
    matches!(LEGACY.get(), Some(Some(_)))
}

/// Whether `data` parses as a PKCS#12 structure (before any decryption).
pub(crate) fn is_pkcs12(data: &[u8]) -> bool {
    data.first() == Some(&0x30) && Pkcs12::from_der(data).is_ok()
}

/// Why OpenSSL failed, as far as the caller must tell them apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The integrity MAC did not verify, or decryption produced garbage: the
    /// password is wrong.
    Password,
    /// An algorithm is not available (RC2, DES… without the legacy provider).
    Unsupported,
    /// Anything else.
    Other,
}

/// Classifies an OpenSSL error stack by its reason codes (never by the text
/// of messages, which can change between versions).
pub(crate) fn classify(errors: &ErrorStack) -> Failure {
    // ERR_LIB_PKCS12 = 35: PKCS12_R_MAC_VERIFY_FAILURE = 113,
    // PKCS12_R_PKCS12_CIPHERFINAL_ERROR = 116, PKCS12_R_DECODE_ERROR = 101.
    // ERR_LIB_EVP = 6: EVP_R_BAD_DECRYPT = 100, EVP_R_UNSUPPORTED_ALGORITHM…
    // ERR_R_UNSUPPORTED = 0x8010C (reason 268 with the "common" flag): fetch failed.
    let mut saw_unsupported = false;
    for e in errors.errors() {
        let lib = e.library_code();
        let reason = e.reason_code();
        match (lib, reason) {
            (35, 113) | (35, 116) | (6, 100) => return Failure::Password,
            _ => {}
        }
        if reason & 0x3ffff == 268 || e.reason() == Some("unsupported") {
            saw_unsupported = true;
        }
    }
    if saw_unsupported {
        Failure::Unsupported
    } else {
        Failure::Other
    }
}

/// Parses and decrypts a PKCS#12 file. With no password, the empty password is
/// tried (PKCS#12 files without one exist); if it does not open the file, the
/// answer is [`KeyError::PasswordRequired`].
pub(crate) fn open(data: &[u8], password: Option<&str>) -> Result<ParsedPkcs12_2, KeyError> {
    let pkcs12 = Pkcs12::from_der(data)
        .map_err(|_| KeyError::Unreadable("not a PKCS#12 structure".to_owned()))?;
    let pass = password.unwrap_or("");
    // `parse2` turns the password into a C string; one with a NUL cannot be right.
    if pass.contains('\0') {
        return Err(wrong(password));
    }
    let first = match pkcs12.parse2(pass) {
        Ok(parsed) => return Ok(parsed),
        Err(e) => classify(&e),
    };
    if first == Failure::Password {
        return Err(wrong(password));
    }
    // Not a password failure: most likely RC2-40/3DES, which OpenSSL 3 only has
    // in its legacy provider. Load it (once) and try again.
    if !ensure_legacy_provider() {
        return Err(KeyError::Unsupported(
            "PKCS#12 uses a legacy cipher and OpenSSL's legacy provider is not available"
                .to_owned(),
        ));
    }
    match pkcs12.parse2(pass) {
        Ok(parsed) => Ok(parsed),
        Err(e) => match classify(&e) {
            Failure::Password => Err(wrong(password)),
            Failure::Unsupported => Err(KeyError::Unsupported(
                "PKCS#12 uses an algorithm OpenSSL does not provide".to_owned(),
            )),
            Failure::Other => Err(KeyError::Unreadable(
                "PKCS#12 could not be decrypted".to_owned(),
            )),
        },
    }
}

fn wrong(password: Option<&str>) -> KeyError {
    match password {
        None => KeyError::PasswordRequired("PKCS#12".to_owned()),
        Some(_) => KeyError::PasswordWrong("PKCS#12".to_owned()),
    }
}
