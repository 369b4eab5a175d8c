//! One X.509 certificate.

use super::{KeyError, PublicKey, hex, pem};
use openssl::asn1::Asn1Time;
use openssl::hash::{MessageDigest, hash};
use openssl::x509::X509;

/// An X.509 certificate, kept as its DER encoding.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    x509: X509,
    spki: Vec<u8>,
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("sha256", &self.fingerprint_hex())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Eq for Certificate {}

impl Certificate {
    /// A DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Certificate, KeyError> {
        let x509 = X509::from_der(der)
            .map_err(|_| KeyError::Unreadable("certificate (DER)".to_owned()))?;
        Self::from_x509(x509)
    }

    /// The first `CERTIFICATE` block of a PEM text.
    pub fn from_pem(data: &[u8]) -> Result<Certificate, KeyError> {
        Self::chain_from_pem(data)?
            .into_iter()
            .next()
            .ok_or_else(|| KeyError::Unreadable("PEM: no CERTIFICATE block".to_owned()))
    }

    /// Every `CERTIFICATE` block of a PEM text, in order (may be empty).
    pub fn chain_from_pem(data: &[u8]) -> Result<Vec<Certificate>, KeyError> {
        pem::blocks(data)?
            .iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| Self::from_der(&b.der))
            .collect()
    }

    pub(crate) fn from_x509(x509: X509) -> Result<Certificate, KeyError> {
        let der = x509
            .to_der()
            .map_err(|_| KeyError::Unreadable("certificate cannot be encoded".to_owned()))?;
        let spki = x509
            .public_key()
            .and_then(|k| k.public_key_to_der())
            .map_err(|_| KeyError::Unreadable("certificate public key".to_owned()))?;
        let digest = hash(MessageDigest::sha256(), &der)
            .map_err(|_| KeyError::Unreadable("SHA-256 unavailable".to_owned()))?;
        let fingerprint: [u8; 32] = digest
            .as_ref()
            .try_into()
            .map_err(|_| KeyError::Unreadable("SHA-256 digest length".to_owned()))?;
        Ok(Certificate {
            der,
            x509,
            spki,
            fingerprint,
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of the DER encoding.
    pub fn sha256_fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The SHA-256 fingerprint in lowercase hex: the `keyid` gateways use for
    /// each other's certificates.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.sha256_fingerprint())
    }

    /// The subject public key as a DER `SubjectPublicKeyInfo`.
    pub fn public_key_spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The subject public key.
    pub fn public_key(&self) -> Result<PublicKey, KeyError> {
        PublicKey::from_certificate(self)
    }

    /// The end of the validity period, in seconds since the Unix epoch.
    pub fn not_after_unix(&self) -> Result<i64, KeyError> {
        unix(self.x509.not_after())
    }

    /// The start of the validity period, in seconds since the Unix epoch.
    pub fn not_before_unix(&self) -> Result<i64, KeyError> {
        unix(self.x509.not_before())
    }
}

fn unix(time: &openssl::asn1::Asn1TimeRef) -> Result<i64, KeyError> {
    let bad = |_| KeyError::Unreadable("certificate validity time".to_owned());
    let epoch = Asn1Time::from_unix(0).map_err(bad)?;
    let diff = epoch.diff(time).map_err(bad)?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}
