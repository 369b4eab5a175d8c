//! A recipient's public key.

use super::private_key::kind_of;
use super::{Certificate, KeyError, KeyKind, jwk, pem};
use openssl::pkey::{PKey, Public};

/// A public key: EC P-256 (or P-384), RSA or Ed25519, from a certificate, a
/// PEM `PUBLIC KEY`, a DER `SubjectPublicKeyInfo` or a JWK.
#[derive(Clone)]
pub struct PublicKey {
    pkey: PKey<Public>,
    kind: KeyKind,
    spki: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl Eq for PublicKey {}

impl PublicKey {
    /// The subject public key of a certificate.
    pub fn from_certificate(certificate: &Certificate) -> Result<PublicKey, KeyError> {
        Self::from_spki_der(certificate.public_key_spki_der())
    }

    /// A DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let pkey = PKey::public_key_from_der(der)
            .map_err(|_| KeyError::Unreadable("public key (SubjectPublicKeyInfo)".to_owned()))?;
        Self::from_pkey(pkey)
    }

    /// The first `PUBLIC KEY` block of a PEM text.
    pub fn from_pem(data: &[u8]) -> Result<PublicKey, KeyError> {
        let blocks = pem::blocks(data)?;
        let block = blocks
            .iter()
            .find(|b| b.label == "PUBLIC KEY")
            .ok_or_else(|| KeyError::Unreadable("PEM: no PUBLIC KEY block".to_owned()))?;
        Self::from_spki_der(&block.der)
    }

    /// A public JWK: `kty` `EC` (`crv` P-256 or P-384, `x`, `y`; the point is
    /// checked to be on the curve), `RSA` (`n`, `e`) or `OKP` Ed25519. Other
    /// members (`kid`, `use`, `alg`) are ignored; a JWK with private members
    /// (`d`…) is refused.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<PublicKey, KeyError> {
        Self::from_pkey(jwk::public_from_jwk(jwk)?)
    }

    pub(crate) fn from_pkey(pkey: PKey<Public>) -> Result<PublicKey, KeyError> {
        let kind = kind_of(pkey.id(), pkey.bits(), || {
            pkey.ec_key().ok().and_then(|k| k.group().curve_name())
        })?;
        let spki = pkey
            .public_key_to_der()
            .map_err(|_| KeyError::Unreadable("public key cannot be encoded".to_owned()))?;
        Ok(PublicKey { pkey, kind, spki })
    }

    /// The public JWK of this key (`kty` and its members), with `kid` if given.
    pub fn to_jwk(&self, kid: Option<&str>) -> Result<serde_json::Value, KeyError> {
        jwk::to_jwk(&self.pkey, self.kind, kid)
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key as a DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }
}
