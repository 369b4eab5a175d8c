//! Keys and certificates as the government CA hands them out.
//!
//! A node's identity arrives as a PKCS#12 file (`.p12`/`.pfx`, often still
//! encrypted with RC2-40/3DES) or as PEM: a private key (PKCS#8, encrypted
//! PKCS#8, SEC1 or PKCS#1) next to its certificate chain. This module reads all
//! of them, detecting the format by content, never by file name:
//!
//! - [`PrivateKey`]: one private key, whatever its container;
//! - [`Certificate`]: one X.509 certificate (DER), its SHA-256 fingerprint (the
//!   `keyid` between gateways) and its validity;
//! - [`PublicKey`]: a recipient's key, from a certificate, PEM `PUBLIC KEY` or a JWK;
//! - [`Identity`]: a private key, its certificate and the rest of the chain,
//!   checked to belong together.
//!
//! Legacy PKCS#12 (RC2-40, 3DES, as exported by older Windows and Java tools)
//! needs OpenSSL 3's `legacy` provider; it is loaded lazily, once per process,
//! and only when a modern parse has failed (see [`legacy_provider_loaded`]).
//!
//! Errors ([`KeyError`]) carry a stable code and name the file or the format,
//! never key material or a password.

mod certificate;
mod identity;
mod jwk;
mod pem;
mod pkcs12;
mod private_key;
mod public_key;

pub use certificate::Certificate;
pub use identity::Identity;
pub use pkcs12::legacy_provider_loaded;
pub use private_key::PrivateKey;
pub use public_key::PublicKey;

/// The largest key, certificate or PKCS#12 file read (1 MiB): a CA's bundle is a
/// few kilobytes; anything larger is refused before it is parsed.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// What kind of key a [`PrivateKey`] or [`PublicKey`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA / ECDH on NIST P-256 (secp256r1).
    EcP256,
    /// NIST P-384 (secp384r1). Read so that RFC 7520's examples can be decrypted;
    /// the JWE production policy does not accept it.
    EcP384,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus size in bits.
        bits: u32,
    },
    /// Ed25519 (signatures only).
    Ed25519,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::EcP256 => f.write_str("EC P-256"),
            KeyKind::EcP384 => f.write_str("EC P-384"),
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

/// Why a key, certificate or identity could not be loaded.
///
/// Messages name the file and what was wrong with it; they never contain key
/// material, a password, or OpenSSL's error text (which may quote input).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The input could not be read or is not a key/certificate in a known format.
    #[error("unreadable key material: {0}")]
    Unreadable(String),
    /// The key is encrypted and no password was given.
    #[error("the key is encrypted and no password was given: {0}")]
    PasswordRequired(String),
    /// The password does not open the key (or the PKCS#12 integrity check failed).
    #[error("wrong password: {0}")]
    PasswordWrong(String),
    /// A well-formed key of a kind or curve this node does not use.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// The private key does not match the certificate it came with.
    #[error("the private key does not match its certificate: {0}")]
    Mismatch(String),
}

impl KeyError {
    /// The stable machine code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Unreadable(_) => "key.unreadable",
            KeyError::PasswordRequired(_) => "key.password_required",
            KeyError::PasswordWrong(_) => "key.password_wrong",
            KeyError::Unsupported(_) => "key.unsupported",
            KeyError::Mismatch(_) => "key.mismatch",
        }
    }

    /// The same error, naming the file it came from.
    pub(crate) fn in_file(self, path: &std::path::Path) -> KeyError {
        let at = |m: String| format!("{}: {m}", path.display());
        match self {
            KeyError::Unreadable(m) => KeyError::Unreadable(at(m)),
            KeyError::PasswordRequired(m) => KeyError::PasswordRequired(at(m)),
            KeyError::PasswordWrong(m) => KeyError::PasswordWrong(at(m)),
            KeyError::Unsupported(m) => KeyError::Unsupported(at(m)),
            KeyError::Mismatch(m) => KeyError::Mismatch(at(m)),
        }
    }
}

/// Reads a key or certificate file, refusing one larger than [`MAX_FILE_BYTES`].
pub(crate) fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, KeyError> {
    use std::io::Read;
    let file = std::fs::File::open(path)
        .map_err(|e| KeyError::Unreadable(format!("{}: {}", path.display(), e.kind())))?;
    let mut data = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| KeyError::Unreadable(format!("{}: {}", path.display(), e.kind())))?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(KeyError::Unreadable(format!(
            "{}: larger than {MAX_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(data)
}

/// Whether `data` is PEM text (as opposed to DER, such as a PKCS#12 file).
pub(crate) fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
