//! Public keys (anchors, encryption keys, identity providers' keys) and the JWS
//! primitives, kept behind our own types: nothing of `josekit` or `openssl` leaks out.
//!
//! Owns: parsing keys from PEM and JWK (EC P-256 or RSA of at least 2048 bits, public
//! only), their SPKI fingerprint, and signing and verifying one JWS signing input.
//! Does not own: the JWS compact structure and the choice of algorithm, which
//! [`super::verify`](super) decides before any key is touched.

use super::GlobalConfError;
use super::json::{Object, Problems, as_string, index_path, parse_strict};
use crate::base::hex;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jws::{ES256, JwsSigner, JwsVerifier, RS256};
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Public};
use openssl::rsa::Rsa;
use openssl::x509::X509;
use serde_json::{Map, Value};

/// Smallest RSA modulus accepted anywhere, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// The kind of a public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256 (`ES256`, `ECDH-ES`).
    EcP256,
    /// RSA with a modulus of `bits` bits (at least 2048).
    Rsa {
        /// Modulus length in bits.
        bits: u32,
    },
}

/// A validated public key: its kind and its DER SubjectPublicKeyInfo, and the JWS verifier
/// built from it on first use and kept (decoding the key costs more than a verification).
#[derive(Clone)]
struct KeyMaterial {
    kind: KeyKind,
    spki_der: Vec<u8>,
    verifier: std::sync::Arc<std::sync::OnceLock<Option<Box<dyn JwsVerifier>>>>,
}

impl PartialEq for KeyMaterial {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.spki_der == other.spki_der
    }
}

impl Eq for KeyMaterial {}

impl std::hash::Hash for KeyMaterial {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.spki_der.hash(state);
    }
}

impl KeyMaterial {
    /// Checks kind and size of an OpenSSL public key.
    fn from_pkey(key: &PKey<Public>) -> Result<Self, &'static str> {
        let kind = match key.id() {
            Id::EC => {
                let curve = key
                    .ec_key()
                    .map_err(|_| "unreadable EC key")?
                    .group()
                    .curve_name();
                if curve != Some(Nid::X9_62_PRIME256V1) {
                    return Err("EC keys must be on curve P-256");
                }
                KeyKind::EcP256
            }
            Id::RSA => {
                let bits = key.bits();
                if bits < MIN_RSA_BITS {
                    return Err("RSA keys must have at least 2048 bits");
                }
                KeyKind::Rsa { bits }
            }
            _ => return Err("the key must be EC P-256 or RSA"),
        };
        let spki_der = key
            .public_key_to_der()
            .map_err(|_| "the key cannot be encoded")?;
        Ok(KeyMaterial {
            kind,
            spki_der,
            verifier: Default::default(),
        })
    }

    fn fingerprint(&self) -> String {
        hex::encode(&openssl::sha::sha256(&self.spki_der))
    }

    /// Whether `signature` over `signing_input` verifies with this key under `alg`.
    /// A key of the wrong kind for `alg` never verifies.
    fn verifies(&self, alg: SigningAlg, signing_input: &[u8], signature: &[u8]) -> bool {
        let matches = matches!(
            (alg, self.kind),
            (SigningAlg::Es256, KeyKind::EcP256) | (SigningAlg::Rs256, KeyKind::Rsa { .. })
        );
        if !matches {
            return false;
        }
        // The key's kind fixes its algorithm, so one verifier per key serves every call.
        let verifier = self.verifier.get_or_init(|| match self.kind {
            KeyKind::EcP256 => ES256
                .verifier_from_der(&self.spki_der)
                .ok()
                .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
            KeyKind::Rsa { .. } => RS256
                .verifier_from_der(&self.spki_der)
                .ok()
                .map(|v| Box::new(v) as Box<dyn JwsVerifier>),
        });
        verifier
            .as_ref()
            .is_some_and(|verifier| verifier.verify(signing_input, signature).is_ok())
    }
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// The JWS algorithms of the global configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
}

impl SigningAlg {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::Rs256 => "RS256",
        }
    }

    /// The algorithm an `alg` header names, if it is one of ours. Everything else
    /// (`none`, `HS256`, `PS256`, `ES384`, …) is `None`.
    pub fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "ES256" => Some(SigningAlg::Es256),
            "RS256" => Some(SigningAlg::Rs256),
            _ => None,
        }
    }
}

/// The central authority's public key, against which the global configuration is
/// verified: EC P-256 or RSA of at least 2048 bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Anchor {
    key: KeyMaterial,
}

impl Anchor {
    /// An anchor from PEM: a `PUBLIC KEY` (SubjectPublicKeyInfo) or a `CERTIFICATE`
    /// (its public key; the certificate's dates and issuer are not checked: the
    /// anchor is configured out of band, as a key).
    pub fn from_pem(pem: &str) -> Result<Self, GlobalConfError> {
        let invalid = |reason: &'static str| GlobalConfError::KeyInvalid { reason };
        let label = pem_label(pem).ok_or(invalid("not a PEM block"))?;
        let key = match label {
            "PUBLIC KEY" => PKey::public_key_from_pem(pem.as_bytes())
                .map_err(|_| invalid("unreadable PUBLIC KEY"))?,
            "CERTIFICATE" => X509::from_pem(pem.as_bytes())
                .and_then(|certificate| certificate.public_key())
                .map_err(|_| invalid("unreadable CERTIFICATE"))?,
            _ => return Err(invalid("expected a PUBLIC KEY or CERTIFICATE PEM block")),
        };
        KeyMaterial::from_pkey(&key)
            .map(|key| Anchor { key })
            .map_err(invalid)
    }

    /// An anchor from a public JWK (JSON text).
    pub fn from_jwk(jwk_json: &[u8]) -> Result<Self, GlobalConfError> {
        let invalid = |reason: &'static str| GlobalConfError::KeyInvalid { reason };
        let value = parse_strict(jwk_json).map_err(|_| invalid("the JWK is not JSON"))?;
        let mut problems = Problems::default();
        match PublicJwk::parse(&value, "", false, &mut problems) {
            Some(jwk) if problems.is_empty() => Ok(jwk.anchor()),
            _ => Err(invalid(
                "the JWK is not a public EC P-256 or RSA (at least 2048 bits) key",
            )),
        }
    }

    /// Lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo, for logs and for
    /// comparing anchors.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.key.kind
    }

    /// The key as a `PUBLIC KEY` PEM block, to persist an anchor after a rotation.
    pub fn to_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(&self.key.spki_der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    pub(super) fn verifies(&self, alg: SigningAlg, signing_input: &[u8], signature: &[u8]) -> bool {
        self.key.verifies(alg, signing_input, signature)
    }
}

/// The label of the first PEM block (`PUBLIC KEY`, `CERTIFICATE`, …).
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

/// A public JWK from the global configuration (a secure server's encryption key,
/// an identity provider's signing key, the next anchor), validated: EC P-256 or
/// RSA of at least 2048 bits, no private members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    kid: Option<String>,
    key: KeyMaterial,
    jwk: Map<String, Value>,
}

/// JWK members we accept (RFC 7517 §4, RFC 7518 §6.2.1, §6.3.1).
const EC_MEMBERS: &[&str] = &["kty", "kid", "use", "alg", "key_ops", "crv", "x", "y"];
const RSA_MEMBERS: &[&str] = &["kty", "kid", "use", "alg", "key_ops", "n", "e"];
/// Members that only a private or symmetric key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl PublicJwk {
    /// Validates a JWK at `path`, reporting every problem there.
    pub(super) fn parse(
        value: &Value,
        path: &str,
        require_kid: bool,
        problems: &mut Problems,
    ) -> Option<Self> {
        let before = problems.0.len();
        let Value::Object(map) = value else {
            problems.push(path, "must be a JWK object");
            return None;
        };
        if PRIVATE_MEMBERS
            .iter()
            .any(|member| map.contains_key(*member))
        {
            problems.push(
                path,
                "holds private key members: publish only the public key",
            );
            return None;
        }
        let kty_path = super::json::field_path(path, "kty");
        let kty = match map.get("kty") {
            Some(value) => as_string(value, &kty_path, problems)?,
            None => {
                problems.push(kty_path, "required");
                return None;
            }
        };
        let allowed = match kty {
            "EC" => EC_MEMBERS,
            "RSA" => RSA_MEMBERS,
            _ => {
                problems.push(kty_path, "must be EC or RSA");
                return None;
            }
        };
        let object = Object::read(value, path, allowed, problems)?;
        let kid = match object.optional("kid") {
            Some(kid) => as_string(kid, &object.at("kid"), problems).map(str::to_owned),
            None => {
                if require_kid {
                    problems.push(object.at("kid"), "required");
                }
                None
            }
        };
        for member in ["use", "alg"] {
            if let Some(value) = object.optional(member) {
                as_string(value, &object.at(member), problems);
            }
        }
        if let Some(ops) = object.optional("key_ops") {
            match ops {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        as_string(item, &index_path(&object.at("key_ops"), i), problems);
                    }
                }
                _ => problems.push(object.at("key_ops"), "must be an array of strings"),
            }
        }
        let key = match kty {
            "EC" => ec_key(&object, problems),
            _ => rsa_key(&object, problems),
        };
        let key = key.and_then(|key| match KeyMaterial::from_pkey(&key) {
            Ok(key) => Some(key),
            Err(reason) => {
                problems.push(path, reason);
                None
            }
        })?;
        (problems.0.len() == before).then(|| PublicJwk {
            kid,
            key,
            jwk: map.clone(),
        })
    }

    /// A public JWK (JSON text) with its `kid`: an identity provider's key in tests and
    /// in the demo's dev identity provider.
    pub fn from_json(jwk_json: &[u8]) -> Result<Self, GlobalConfError> {
        let invalid = |reason: &'static str| GlobalConfError::KeyInvalid { reason };
        let value = parse_strict(jwk_json).map_err(|_| invalid("the JWK is not JSON"))?;
        let mut problems = Problems::default();
        match PublicJwk::parse(&value, "", false, &mut problems) {
            Some(jwk) if problems.is_empty() => Ok(jwk),
            _ => Err(invalid(
                "the JWK is not a public EC P-256 or RSA (at least 2048 bits) key",
            )),
        }
    }

    /// Whether `signature` over `signing_input` verifies with this key under `alg` (a key
    /// of the wrong kind for `alg` never does).
    pub fn verifies(&self, alg: SigningAlg, signing_input: &[u8], signature: &[u8]) -> bool {
        self.key.verifies(alg, signing_input, signature)
    }

    /// The key id (`kid`), if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's kind.
    pub fn kind(&self) -> KeyKind {
        self.key.kind
    }

    /// The key's DER SubjectPublicKeyInfo (for building an encrypter or verifier).
    pub fn spki_der(&self) -> &[u8] {
        &self.key.spki_der
    }

    /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
    }

    /// The JWK's members as published (public members only).
    pub fn jwk(&self) -> &Map<String, Value> {
        &self.jwk
    }

    /// The same key as an [`Anchor`] (for `anchor_rotation.next_anchor`).
    pub fn anchor(&self) -> Anchor {
        Anchor {
            key: self.key.clone(),
        }
    }
}

/// A base64url (unpadded) member decoded to bytes.
fn member_bytes(object: &Object<'_>, name: &str, problems: &mut Problems) -> Option<Vec<u8>> {
    let text = as_string(object.required(name, problems)?, &object.at(name), problems)?;
    let bytes = URL_SAFE_NO_PAD.decode(text).ok();
    if bytes.is_none() {
        problems.push(object.at(name), "must be unpadded base64url");
    }
    bytes
}

fn ec_key(object: &Object<'_>, problems: &mut Problems) -> Option<PKey<Public>> {
    let crv = object
        .required("crv", problems)
        .and_then(|crv| as_string(crv, &object.at("crv"), problems));
    if crv.is_some_and(|crv| crv != "P-256") {
        problems.push(object.at("crv"), "must be P-256");
    }
    let x = member_bytes(object, "x", problems);
    let y = member_bytes(object, "y", problems);
    let (crv, x, y) = (crv?, x?, y?);
    if crv != "P-256" {
        return None;
    }
    for (name, coordinate) in [("x", &x), ("y", &y)] {
        if coordinate.len() != 32 {
            problems.push(object.at(name), "must be 32 bytes for P-256");
            return None;
        }
    }
    // `from_public_key_affine_coordinates` refuses a point that is not on the curve.
    let key = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)
        .and_then(|group| {
            let x = BigNum::from_slice(&x)?;
            let y = BigNum::from_slice(&y)?;
            EcKey::from_public_key_affine_coordinates(&group, &x, &y)
        })
        .and_then(PKey::from_ec_key)
        .ok();
    if key.is_none() {
        problems.push(object.at("x"), "x and y are not a point on P-256");
    }
    key
}

fn rsa_key(object: &Object<'_>, problems: &mut Problems) -> Option<PKey<Public>> {
    let n = member_bytes(object, "n", problems);
    let e = member_bytes(object, "e", problems);
    let (n, e) = (n?, e?);
    let n = BigNum::from_slice(&n).ok()?;
    let e = BigNum::from_slice(&e).ok()?;
    if n.num_bits() < MIN_RSA_BITS as i32 {
        problems.push(object.at("n"), "RSA keys must have at least 2048 bits");
        return None;
    }
    if e.num_bits() < 2 || !e.is_bit_set(0) || e.num_bits() > 32 {
        problems.push(object.at("e"), "must be an odd exponent of at least 3");
        return None;
    }
    Rsa::from_public_components(n, e)
        .and_then(PKey::from_rsa)
        .ok()
}

/// Maximum size of a signed global configuration (compact JWS), in bytes.
pub const MAX_SIGNED_BYTES: usize = 4 * 1024 * 1024;

/// Signs `payload_json` as a JWS compact serialisation with the private key in
/// `key_pem` (PKCS#8 `PRIVATE KEY`, or a traditional `EC PRIVATE KEY` /
/// `RSA PRIVATE KEY`): EC P-256 for [`SigningAlg::Es256`], RSA of at least 2048 bits
/// for [`SigningAlg::Rs256`]. The protected header is `{"alg", "kid"}`, `kid`
/// being the key's SPKI fingerprint ([`Anchor::fingerprint`]).
///
/// For the central authority, tests and the demo. It does not validate the payload:
/// run [`GlobalConfiguration::parse_unverified`](super::GlobalConfiguration::parse_unverified)
/// on it first.
pub fn sign(
    payload_json: &[u8],
    key_pem: &str,
    alg: SigningAlg,
) -> Result<String, GlobalConfError> {
    let invalid = |reason: &'static str| GlobalConfError::KeyInvalid { reason };
    let private = PKey::private_key_from_pem(key_pem.as_bytes())
        .map_err(|_| invalid("unreadable private key PEM"))?;
    let public = PKey::public_key_from_der(
        &private
            .public_key_to_der()
            .map_err(|_| invalid("unreadable private key PEM"))?,
    )
    .map_err(|_| invalid("unreadable private key PEM"))?;
    let material = KeyMaterial::from_pkey(&public).map_err(invalid)?;
    let pkcs8 = private
        .private_key_to_pkcs8()
        .map_err(|_| invalid("unreadable private key PEM"))?;
    let signer: Box<dyn JwsSigner> = match (alg, material.kind) {
        (SigningAlg::Es256, KeyKind::EcP256) => Box::new(
            ES256
                .signer_from_der(&pkcs8)
                .map_err(|_| invalid("unusable EC P-256 key"))?,
        ),
        (SigningAlg::Rs256, KeyKind::Rsa { .. }) => Box::new(
            RS256
                .signer_from_der(&pkcs8)
                .map_err(|_| invalid("unusable RSA key"))?,
        ),
        (SigningAlg::Es256, _) => return Err(invalid("ES256 needs an EC P-256 key")),
        (SigningAlg::Rs256, _) => return Err(invalid("RS256 needs an RSA key")),
    };
    let header = serde_json::json!({ "alg": alg.as_str(), "kid": material.fingerprint() });
    let mut compact = URL_SAFE_NO_PAD.encode(header.to_string());
    compact.push('.');
    compact.push_str(&URL_SAFE_NO_PAD.encode(payload_json));
    let signature = signer
        .sign(compact.as_bytes())
        .map_err(|_| invalid("the key could not sign"))?;
    compact.push('.');
    compact.push_str(&URL_SAFE_NO_PAD.encode(signature));
    if compact.len() > MAX_SIGNED_BYTES {
        return Err(GlobalConfError::Malformed {
            reason: "the signed configuration would exceed 4 MiB".into(),
        });
    }
    Ok(compact)
}
