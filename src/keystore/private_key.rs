//! A private key, whatever container it came in.

use super::pkcs12::{self, Failure};
use super::{KeyError, KeyKind, PublicKey, looks_like_pem, pem, read_bounded};
use openssl::ec::EcKey;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use std::path::Path;

/// A private key: EC P-256 (or P-384), RSA or Ed25519.
///
/// Read from PEM (`PRIVATE KEY`, `ENCRYPTED PRIVATE KEY`, `EC PRIVATE KEY`,
/// `RSA PRIVATE KEY`, the last two also with traditional PEM encryption),
/// from DER PKCS#8, from PKCS#12, or from a JWK. Its `Debug` shows the kind only.
#[derive(Clone)]
pub struct PrivateKey {
    pkey: PKey<Private>,
    kind: KeyKind,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        // Best effort for our copy; OpenSSL clears its own on free.
        self.pkcs8.fill(0);
        std::hint::black_box(&self.pkcs8);
    }
}

impl PrivateKey {
    /// Reads a private key file: PEM (any of the forms above) or PKCS#12 (DER),
    /// told apart by content. `password` opens an encrypted key or a PKCS#12;
    /// it is ignored for an unencrypted PEM key.
    ///
    /// A PKCS#12 whose certificate does not match its key is refused
    /// ([`KeyError::Mismatch`]); use [`super::Identity::load`] for the certificates.
    pub fn load(path: impl AsRef<Path>, password: Option<&str>) -> Result<PrivateKey, KeyError> {
        let path = path.as_ref();
        let data = read_bounded(path)?;
        Self::from_bytes(&data, password).map_err(|e| e.in_file(path))
    }

    /// Like [`PrivateKey::load`], from the file's bytes.
    pub fn from_bytes(data: &[u8], password: Option<&str>) -> Result<PrivateKey, KeyError> {
        if looks_like_pem(data) {
            return Self::from_pem(data, password);
        }
        if pkcs12::is_pkcs12(data) {
            let identity = super::identity::from_pkcs12(data, password, false)?;
            return Ok(identity.0);
        }
        Self::from_pkcs8_der(data)
            .map_err(|_| KeyError::Unreadable("neither PEM, PKCS#12 nor PKCS#8 DER".to_owned()))
    }

    /// The one private key of a PEM text (other blocks, such as certificates,
    /// are ignored). Fails if there is none or more than one.
    pub fn from_pem(data: &[u8], password: Option<&str>) -> Result<PrivateKey, KeyError> {
        let blocks = pem::blocks(data)?;
        let mut keys = blocks.iter().filter(|b| b.label.ends_with("PRIVATE KEY"));
        let block = keys
            .next()
            .ok_or_else(|| KeyError::Unreadable("PEM: no private key".to_owned()))?;
        if keys.next().is_some() {
            return Err(KeyError::Unreadable(
                "PEM: more than one private key".to_owned(),
            ));
        }
        Self::from_pem_block(block, password)
    }

    pub(crate) fn from_pem_block(
        block: &pem::Block,
        password: Option<&str>,
    ) -> Result<PrivateKey, KeyError> {
        let unreadable = |what: &str| KeyError::Unreadable(format!("PEM {what}"));
        let pkey = match (block.label.as_str(), block.has_headers) {
            ("PRIVATE KEY", false) => {
                PKey::private_key_from_pkcs8(&block.der).map_err(|_| unreadable("PKCS#8 key"))?
            }
            ("ENCRYPTED PRIVATE KEY", false) => {
                let pass = password
                    .ok_or_else(|| KeyError::PasswordRequired("encrypted PKCS#8 key".to_owned()))?;
                let pass = without_nul(pass, "encrypted PKCS#8 key")?;
                decrypt_with_legacy_retry("encrypted PKCS#8 key", || {
                    PKey::private_key_from_pkcs8_passphrase(&block.der, pass.as_bytes())
                })?
            }
            ("EC PRIVATE KEY", false) => EcKey::private_key_from_der(&block.der)
                .and_then(PKey::from_ec_key)
                .map_err(|_| unreadable("SEC1 EC key"))?,
            ("RSA PRIVATE KEY", false) => Rsa::private_key_from_der(&block.der)
                .and_then(PKey::from_rsa)
                .map_err(|_| unreadable("PKCS#1 RSA key"))?,
            ("EC PRIVATE KEY" | "RSA PRIVATE KEY", true) => {
                let pass = password.ok_or_else(|| {
                    KeyError::PasswordRequired(format!("encrypted {}", block.label))
                })?;
                let pass = without_nul(pass, "encrypted PEM key")?;
                decrypt_with_legacy_retry("encrypted PEM key", || {
                    PKey::private_key_from_pem_passphrase(block.text.as_bytes(), pass.as_bytes())
                })?
            }
            (label, _) => {
                return Err(KeyError::Unsupported(format!("PEM block {label}")));
            }
        };
        Self::from_pkey(pkey)
    }

    /// An unencrypted PKCS#8 `PrivateKeyInfo` (DER).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
        let pkey = PKey::private_key_from_pkcs8(der)
            .map_err(|_| KeyError::Unreadable("PKCS#8 DER key".to_owned()))?;
        Self::from_pkey(pkey)
    }

    /// A private JWK (RFC 7517/7518): `kty` `EC` (P-256, P-384) with `d`, `x`,
    /// `y`, or `RSA` with `n`, `e`, `d`, `p`, `q`, `dp`, `dq`, `qi`. The key is
    /// checked for consistency.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<PrivateKey, KeyError> {
        Self::from_pkey(super::jwk::private_from_jwk(jwk)?)
    }

    pub(crate) fn from_pkey(pkey: PKey<Private>) -> Result<PrivateKey, KeyError> {
        let kind = kind_of_private(&pkey)?;
        let pkcs8 = pkey
            .private_key_to_pkcs8()
            .map_err(|_| KeyError::Unreadable("key cannot be encoded as PKCS#8".to_owned()))?;
        let spki = pkey
            .public_key_to_der()
            .map_err(|_| KeyError::Unreadable("public key cannot be encoded".to_owned()))?;
        Ok(PrivateKey {
            pkey,
            kind,
            pkcs8,
            spki,
        })
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key as an unencrypted PKCS#8 `PrivateKeyInfo` (DER), the form
    /// aws-lc-rs (`EcdsaKeyPair::from_pkcs8`, `RsaKeyPair::from_pkcs8`,
    /// `Ed25519KeyPair::from_pkcs8_maybe_unchecked`) reads. The caller owns a
    /// copy of the secret: keep it short-lived.
    pub fn to_pkcs8_der(&self) -> Vec<u8> {
        self.pkcs8.clone()
    }

    /// The public half as a DER `SubjectPublicKeyInfo`.
    pub fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The public half.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        PublicKey::from_spki_der(&self.spki)
    }

    /// Whether `public` is this key's public half.
    pub fn matches(&self, public_spki_der: &[u8]) -> bool {
        match PKey::public_key_from_der(public_spki_der) {
            Ok(other) => self.pkey.public_eq(&other),
            Err(_) => false,
        }
    }
}

/// OpenSSL takes passwords as C strings (the Rust bindings panic on a NUL): a
/// password with a NUL byte cannot be right.
fn without_nul<'a>(password: &'a str, what: &str) -> Result<&'a str, KeyError> {
    if password.contains('\0') {
        Err(KeyError::PasswordWrong(what.to_owned()))
    } else {
        Ok(password)
    }
}

/// Runs an OpenSSL decryption of a key; if it fails for lack of an algorithm,
/// loads the legacy provider once and tries again. Any other failure of a
/// decryption is a wrong password.
fn decrypt_with_legacy_retry(
    what: &str,
    decrypt: impl Fn() -> Result<PKey<Private>, openssl::error::ErrorStack>,
) -> Result<PKey<Private>, KeyError> {
    let first = match decrypt() {
        Ok(pkey) => return Ok(pkey),
        Err(e) => pkcs12::classify(&e),
    };
    if first == Failure::Unsupported && pkcs12::ensure_legacy_provider() {
        if let Ok(pkey) = decrypt() {
            return Ok(pkey);
        }
    } else if first == Failure::Unsupported {
        return Err(KeyError::Unsupported(format!(
            "{what} uses a legacy cipher and OpenSSL's legacy provider is not available"
        )));
    }
    Err(KeyError::PasswordWrong(what.to_owned()))
}

/// The kind of a private key, refusing kinds this node does not use.
fn kind_of_private(pkey: &PKey<Private>) -> Result<KeyKind, KeyError> {
    let kind = kind_of(pkey.id(), pkey.bits(), || {
        pkey.ec_key().ok().and_then(|k| k.group().curve_name())
    })?;
    // A key that contradicts itself (p·q ≠ n, point off the curve) is refused.
    let consistent = match kind {
        KeyKind::Rsa { .. } => pkey
            .rsa()
            .ok()
            .and_then(|r| r.check_key().ok())
            .unwrap_or(false),
        KeyKind::EcP256 | KeyKind::EcP384 => {
            pkey.ec_key().ok().is_some_and(|k| k.check_key().is_ok())
        }
        KeyKind::Ed25519 => true,
    };
    if !consistent {
        return Err(KeyError::Unreadable(format!("inconsistent {kind} key")));
    }
    Ok(kind)
}

/// The kind of a key from OpenSSL's description of it.
pub(crate) fn kind_of(
    id: Id,
    bits: u32,
    curve: impl FnOnce() -> Option<Nid>,
) -> Result<KeyKind, KeyError> {
    match id {
        Id::RSA => Ok(KeyKind::Rsa { bits }),
        Id::ED25519 => Ok(KeyKind::Ed25519),
        Id::EC => match curve() {
            Some(Nid::X9_62_PRIME256V1) => Ok(KeyKind::EcP256),
            Some(Nid::SECP384R1) => Ok(KeyKind::EcP384),
            Some(other) => Err(KeyError::Unsupported(format!(
                "EC curve {}",
                other.short_name().unwrap_or("(unnamed)")
            ))),
            None => Err(KeyError::Unsupported(
                "EC key with explicit curve parameters".to_owned(),
            )),
        },
        Id::RSA_PSS => Err(KeyError::Unsupported("RSA-PSS-restricted key".to_owned())),
        _ => Err(KeyError::Unsupported("key type".to_owned())),
    }
}
