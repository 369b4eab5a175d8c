//! JSON Web Keys (RFC 7517, RFC 7518 §6): EC P-256/P-384 and RSA.

use super::{KeyError, KeyKind};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private, Public};
use openssl::rsa::{Rsa, RsaPrivateKeyBuilder};
use serde_json::{Map, Value};

/// The parameters of a private JWK that a public one must not carry.
const PRIVATE_PARAMETERS: [&str; 6] = ["d", "p", "q", "dp", "dq", "qi"];

fn object(jwk: &Value) -> Result<&Map<String, Value>, KeyError> {
    jwk.as_object()
        .ok_or_else(|| KeyError::Unreadable("JWK: not a JSON object".to_owned()))
}

fn text<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, KeyError> {
    match map.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(KeyError::Unreadable(format!("JWK: {name} is not a string"))),
        None => Err(KeyError::Unreadable(format!("JWK: {name} is missing"))),
    }
}

/// A base64url (unpadded) member, decoded.
fn bytes(map: &Map<String, Value>, name: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(text(map, name)?)
        .map_err(|_| KeyError::Unreadable(format!("JWK: {name} is not base64url")))
}

fn bignum(map: &Map<String, Value>, name: &str) -> Result<BigNum, KeyError> {
    let raw = bytes(map, name)?;
    if raw.is_empty() {
        return Err(KeyError::Unreadable(format!("JWK: {name} is empty")));
    }
    BigNum::from_slice(&raw).map_err(|_| KeyError::Unreadable(format!("JWK: {name}")))
}

/// A coordinate or scalar of exactly the curve's size (RFC 7518 §6.2.1.2).
fn fixed(map: &Map<String, Value>, name: &str, len: usize) -> Result<BigNum, KeyError> {
    let raw = bytes(map, name)?;
    if raw.len() != len {
        return Err(KeyError::Unreadable(format!(
            "JWK: {name} must be {len} bytes"
        )));
    }
    BigNum::from_slice(&raw).map_err(|_| KeyError::Unreadable(format!("JWK: {name}")))
}

/// The curve of an EC JWK: its OpenSSL group and field size in bytes.
fn curve(map: &Map<String, Value>) -> Result<(EcGroup, usize), KeyError> {
    let (nid, len) = match text(map, "crv")? {
        "P-256" => (Nid::X9_62_PRIME256V1, 32),
        "P-384" => (Nid::SECP384R1, 48),
        other => {
            return Err(KeyError::Unsupported(format!(
                "JWK curve {}",
                printable(other)
            )));
        }
    };
    let group = EcGroup::from_curve_name(nid)
        .map_err(|_| KeyError::Unsupported("EC curve unavailable".to_owned()))?;
    Ok((group, len))
}

fn ec_public(map: &Map<String, Value>) -> Result<EcKey<Public>, KeyError> {
    let (group, len) = curve(map)?;
    let x = fixed(map, "x", len)?;
    let y = fixed(map, "y", len)?;
    // Also checks that the point is on the curve.
    EcKey::from_public_key_affine_coordinates(&group, &x, &y)
        .map_err(|_| KeyError::Unreadable("JWK: EC point is not on the curve".to_owned()))
}

/// A public key from a JWK. A JWK that carries private parameters is refused:
/// a recipient's key is configured without its secret half.
pub(crate) fn public_from_jwk(jwk: &Value) -> Result<PKey<Public>, KeyError> {
    let map = object(jwk)?;
    if PRIVATE_PARAMETERS.iter().any(|p| map.contains_key(*p)) {
        return Err(KeyError::Unreadable(
            "JWK: a public key must not carry private parameters".to_owned(),
        ));
    }
    let pkey = match text(map, "kty")? {
        "EC" => PKey::from_ec_key(ec_public(map)?),
        "RSA" => {
            let rsa = Rsa::from_public_components(bignum(map, "n")?, bignum(map, "e")?)
                .map_err(|_| KeyError::Unreadable("JWK: RSA key".to_owned()))?;
            PKey::from_rsa(rsa)
        }
        "OKP" if text(map, "crv")? == "Ed25519" => {
            let x = bytes(map, "x")?;
            if x.len() != 32 {
                return Err(KeyError::Unreadable("JWK: x must be 32 bytes".to_owned()));
            }
            PKey::public_key_from_raw_bytes(&x, Id::ED25519)
        }
        other => {
            return Err(KeyError::Unsupported(format!(
                "JWK key type {}",
                printable(other)
            )));
        }
    };
    pkey.map_err(|_| KeyError::Unreadable("JWK".to_owned()))
}

/// A private key from a JWK (consistency is checked by the caller).
pub(crate) fn private_from_jwk(jwk: &Value) -> Result<PKey<Private>, KeyError> {
    let map = object(jwk)?;
    match text(map, "kty")? {
        "EC" => {
            let public = ec_public(map)?;
            let (group, len) = curve(map)?;
            let d = fixed(map, "d", len)?;
            let key = EcKey::from_private_components(&group, &d, public.public_key())
                .map_err(|_| KeyError::Unreadable("JWK: EC key".to_owned()))?;
            key.check_key()
                .map_err(|_| KeyError::Unreadable("JWK: inconsistent EC key".to_owned()))?;
            PKey::from_ec_key(key).map_err(|_| KeyError::Unreadable("JWK".to_owned()))
        }
        "RSA" => {
            if !map.contains_key("p") {
                return Err(KeyError::Unsupported(
                    "RSA JWK without its primes (p, q, dp, dq, qi)".to_owned(),
                ));
            }
            let bad = |_| KeyError::Unreadable("JWK: RSA key".to_owned());
            let rsa =
                RsaPrivateKeyBuilder::new(bignum(map, "n")?, bignum(map, "e")?, bignum(map, "d")?)
                    .map_err(bad)?
                    .set_factors(bignum(map, "p")?, bignum(map, "q")?)
                    .map_err(bad)?
                    .set_crt_params(bignum(map, "dp")?, bignum(map, "dq")?, bignum(map, "qi")?)
                    .map_err(bad)?
                    .build();
            PKey::from_rsa(rsa).map_err(bad)
        }
        other => Err(KeyError::Unsupported(format!(
            "JWK key type {}",
            printable(other)
        ))),
    }
}

/// The public JWK of a key, members in RFC 7638 order, with `kid` if given.
pub(crate) fn to_jwk(
    pkey: &PKey<Public>,
    kind: KeyKind,
    kid: Option<&str>,
) -> Result<Value, KeyError> {
    let failed = |_| KeyError::Unreadable("key cannot be written as a JWK".to_owned());
    let b64 = |b: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(b));
    let mut out = Map::new();
    match kind {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            let ec = pkey.ec_key().map_err(failed)?;
            let len = if kind == KeyKind::EcP256 { 32 } else { 48 };
            let mut ctx = BigNumContext::new().map_err(failed)?;
            let point: &openssl::ec::EcPointRef = ec.public_key();
            let raw = point
                .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
                .map_err(failed)?;
            // 0x04 ‖ x ‖ y, each of the field's size.
            if raw.len() != 1 + 2 * len {
                return Err(KeyError::Unreadable("EC point encoding".to_owned()));
            }
            let crv = if kind == KeyKind::EcP256 {
                "P-256"
            } else {
                "P-384"
            };
            out.insert("crv".to_owned(), Value::String(crv.to_owned()));
            out.insert("kty".to_owned(), Value::String("EC".to_owned()));
            out.insert("x".to_owned(), b64(&raw[1..=len]));
            out.insert("y".to_owned(), b64(&raw[1 + len..]));
        }
        KeyKind::Rsa { .. } => {
            let rsa = pkey.rsa().map_err(failed)?;
            out.insert("e".to_owned(), b64(&rsa.e().to_vec()));
            out.insert("kty".to_owned(), Value::String("RSA".to_owned()));
            out.insert("n".to_owned(), b64(&rsa.n().to_vec()));
        }
        KeyKind::Ed25519 => {
            let raw = pkey.raw_public_key().map_err(failed)?;
            out.insert("crv".to_owned(), Value::String("Ed25519".to_owned()));
            out.insert("kty".to_owned(), Value::String("OKP".to_owned()));
            out.insert("x".to_owned(), b64(&raw));
        }
    }
    if let Some(kid) = kid {
        out.insert("kid".to_owned(), Value::String(kid.to_owned()));
    }
    Ok(Value::Object(out))
}

/// An untrusted name, for an error message: itself if short and plain.
pub(crate) fn printable(s: &str) -> &str {
    if s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c))
    {
        s
    } else {
        "(not shown)"
    }
}
