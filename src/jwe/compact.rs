//! Structure and header of a compact JWE, checked before any key operation.

use super::policy::MAX_HEADER_BYTES;
use super::{ContentEncryption, JweError, JweHeader, KeyManagement, MIN_RSA_BITS};
use crate::keystore::{KeyKind, PrivateKey};

/// An untrusted header value for an error message: itself if short and plain.
fn printable(s: &str) -> &str {
    if s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c))
    {
        s
    } else {
        "(not shown)"
    }
}
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// AES-GCM's IV (96 bits) and tag (128 bits), the only sizes accepted: OpenSSL
/// would check a shorter tag as given, so truncated tags are refused here.
const IV_BYTES: usize = 12;
const TAG_BYTES: usize = 16;

/// The curve of an ECDH-ES ephemeral key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

/// A compact JWE whose structure and header have been checked.
#[derive(Debug)]
pub(super) struct Parsed {
    pub header: JweHeader,
    pub epk_curve: Option<Curve>,
    pub encrypted_key_len: usize,
}

/// Splits, bounds and decodes a compact JWE and checks its header.
pub(super) fn parse(compact: &str, max_bytes: usize) -> Result<Parsed, JweError> {
    if compact.len() > max_bytes {
        return Err(JweError::TooLarge {
            len: compact.len(),
            max: max_bytes,
        });
    }
    let parts = split(compact)?;
    let (header, epk_curve) = check_header(parts[0])?;
    let encrypted_key = decode(parts[1], "encrypted key")?;
    let iv = decode(parts[2], "IV")?;
    // Decoded only to check it; the ciphertext may be empty (empty plaintext).
    let ciphertext_ok = decode(parts[3], "ciphertext").is_ok();
    if !ciphertext_ok {
        return Err(JweError::Malformed(
            "ciphertext is not base64url".to_owned(),
        ));
    }
    let tag = decode(parts[4], "tag")?;
    if iv.len() != IV_BYTES {
        return Err(JweError::Malformed(format!("IV must be {IV_BYTES} bytes")));
    }
    if tag.len() != TAG_BYTES {
        return Err(JweError::Malformed(format!(
            "authentication tag must be {TAG_BYTES} bytes"
        )));
    }
    let wrapped = match header.alg {
        // AES key wrap output: the content key plus 8 bytes.
        KeyManagement::EcdhEsA256kw | KeyManagement::EcdhEsA128kw => Some(match header.enc {
            ContentEncryption::A256gcm => 40,
            ContentEncryption::A128gcm => 24,
        }),
        KeyManagement::RsaOaep256 | KeyManagement::RsaOaep => None,
    };
    if let Some(len) = wrapped {
        if encrypted_key.len() != len {
            return Err(JweError::Malformed(format!(
                "wrapped key must be {len} bytes"
            )));
        }
    } else if encrypted_key.is_empty() {
        return Err(JweError::Malformed("encrypted key is empty".to_owned()));
    }
    Ok(Parsed {
        header,
        epk_curve,
        encrypted_key_len: encrypted_key.len(),
    })
}

/// The header alone: structure (five parts) and header checks, no total bound.
pub(super) fn parse_header_only(compact: &str) -> Result<Parsed, JweError> {
    let parts = split(compact)?;
    let (header, epk_curve) = check_header(parts[0])?;
    Ok(Parsed {
        header,
        epk_curve,
        encrypted_key_len: 0,
    })
}

/// Refuses a key that cannot serve the JWE's algorithm. A key of the right
/// type that cannot be the recipient (another RSA size, another curve) is a
/// wrong key: `jwe.decryption_failed`, like any other wrong key.
pub(super) fn check_key(parsed: &Parsed, key: &PrivateKey) -> Result<(), JweError> {
    let alg = parsed.header.alg;
    match (alg, key.kind()) {
        (KeyManagement::RsaOaep256 | KeyManagement::RsaOaep, KeyKind::Rsa { bits }) => {
            if bits < MIN_RSA_BITS {
                return Err(JweError::KeyUnsupported(format!(
                    "RSA key of {bits} bits (at least {MIN_RSA_BITS})"
                )));
            }
            if parsed.encrypted_key_len != (bits as usize).div_ceil(8) {
                return Err(JweError::DecryptionFailed);
            }
            Ok(())
        }
        (
            KeyManagement::EcdhEsA256kw | KeyManagement::EcdhEsA128kw,
            kind @ (KeyKind::EcP256 | KeyKind::EcP384),
        ) => {
            let key_curve = if kind == KeyKind::EcP256 {
                Curve::P256
            } else {
                Curve::P384
            };
            if parsed.epk_curve != Some(key_curve) {
                return Err(JweError::DecryptionFailed);
            }
            Ok(())
        }
        (alg, kind) => Err(JweError::KeyUnsupported(format!(
            "a {kind} key cannot decrypt {}",
            alg.name()
        ))),
    }
}

fn split(compact: &str) -> Result<[&str; 5], JweError> {
    let mut parts = compact.split('.');
    let mut out = [""; 5];
    for slot in &mut out {
        *slot = parts
            .next()
            .ok_or_else(|| JweError::Malformed("not five parts".to_owned()))?;
    }
    if parts.next().is_some() {
        return Err(JweError::Malformed("not five parts".to_owned()));
    }
    Ok(out)
}

/// Strict base64url without padding (non-canonical trailing bits refused, so
/// that one encoding means one byte string).
fn decode(part: &str, what: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JweError::Malformed(format!("{what} is not base64url")))
}

/// Decodes and checks the protected header.
fn check_header(part: &str) -> Result<(JweHeader, Option<Curve>), JweError> {
    if part.is_empty() {
        return Err(JweError::Malformed("empty protected header".to_owned()));
    }
    if part.len() > MAX_HEADER_BYTES {
        return Err(JweError::Malformed(format!(
            "protected header longer than {MAX_HEADER_BYTES} bytes"
        )));
    }
    let raw = decode(part, "protected header")?;
    let UniqueObject(map) = serde_json::from_slice(&raw).map_err(|_| {
        JweError::Malformed("protected header is not a JSON object with unique members".to_owned())
    })?;

    let alg_name = required_text(&map, "alg")?;
    let enc_name = required_text(&map, "enc")?;
    let alg = KeyManagement::from_name(alg_name)
        .ok_or_else(|| JweError::AlgorithmUnsupported(format!("alg {}", printable(alg_name))))?;
    let enc = ContentEncryption::from_name(enc_name)
        .ok_or_else(|| JweError::AlgorithmUnsupported(format!("enc {}", printable(enc_name))))?;
    if map.contains_key("zip") {
        return Err(JweError::AlgorithmUnsupported(
            "compression (zip) is not accepted".to_owned(),
        ));
    }
    if map.contains_key("crit") {
        return Err(JweError::AlgorithmUnsupported(
            "critical header extensions (crit) are not understood".to_owned(),
        ));
    }
    let kid = optional_text(&map, "kid")?;
    let cty = optional_text(&map, "cty")?;
    let epk_curve = if alg.is_ecdh() {
        Some(check_epk(map.get("epk"))?)
    } else {
        None
    };
    Ok((JweHeader { alg, enc, kid, cty }, epk_curve))
}

fn required_text<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, JweError> {
    match map.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(JweError::Malformed(format!("{name} is not a string"))),
        None => Err(JweError::Malformed(format!("{name} is missing"))),
    }
}

fn optional_text(map: &Map<String, Value>, name: &str) -> Result<Option<String>, JweError> {
    match map.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JweError::Malformed(format!("{name} is not a string"))),
        None => Ok(None),
    }
}

/// The ephemeral public key of ECDH-ES: an EC JWK with coordinates of the
/// curve's size (the point itself is checked by OpenSSL when it is used).
fn check_epk(epk: Option<&Value>) -> Result<Curve, JweError> {
    let Some(Value::Object(epk)) = epk else {
        return Err(JweError::Malformed(
            "epk is missing or not an object".to_owned(),
        ));
    };
    if required_text(epk, "kty")? != "EC" {
        return Err(JweError::Malformed("epk kty must be EC".to_owned()));
    }
    let (curve, len) = match required_text(epk, "crv")? {
        "P-256" => (Curve::P256, 32),
        "P-384" => (Curve::P384, 48),
        other => {
            return Err(JweError::AlgorithmUnsupported(format!(
                "epk curve {}",
                printable(other)
            )));
        }
    };
    for coordinate in ["x", "y"] {
        let raw = decode(required_text(epk, coordinate)?, "epk coordinate")?;
        if raw.len() != len {
            return Err(JweError::Malformed(format!(
                "epk {coordinate} must be {len} bytes"
            )));
        }
    }
    if epk.contains_key("d") {
        return Err(JweError::Malformed("epk carries a private key".to_owned()));
    }
    Ok(curve)
}

/// A JSON object that refuses repeated member names (RFC 7516 §4: a header
/// with duplicates must be rejected or read as its last; rejecting leaves no
/// doubt about what was authenticated).
struct UniqueObject(Map<String, Value>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = UniqueObject;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    if map.contains_key(&name) {
                        return Err(de::Error::custom("duplicate member"));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(name, value);
                }
                Ok(UniqueObject(map))
            }
        }
        deserializer.deserialize_map(Members)
    }
}
