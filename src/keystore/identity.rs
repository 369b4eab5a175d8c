//! A node's identity: private key, certificate, chain.

use super::pkcs12;
use super::{Certificate, KeyError, PrivateKey, looks_like_pem, pem, read_bounded};
use std::path::Path;

/// A private key with its certificate and the rest of the chain (leaf first
/// excluded: `chain` holds the intermediates and roots as the file gave them).
#[derive(Debug, Clone)]
pub struct Identity {
    key: PrivateKey,
    certificate: Certificate,
    chain: Vec<Certificate>,
}

impl Identity {
    /// Reads an identity file: a PKCS#12 (DER, modern or legacy-encrypted) or a
    /// PEM text with one private key and its certificate(s), told apart by
    /// content. The certificate whose public key matches the private key is the
    /// leaf; the other certificates form the chain, in file order.
    ///
    /// Errors: [`KeyError::Mismatch`] when no certificate matches the key,
    /// [`KeyError::PasswordRequired`]/[`KeyError::PasswordWrong`] for encrypted
    /// input, [`KeyError::Unreadable`] when the key or certificate is missing.
    pub fn load(path: impl AsRef<Path>, password: Option<&str>) -> Result<Identity, KeyError> {
        let path = path.as_ref();
        let data = read_bounded(path)?;
        Self::from_bytes(&data, password).map_err(|e| e.in_file(path))
    }

    /// Like [`Identity::load`], from the file's bytes.
    pub fn from_bytes(data: &[u8], password: Option<&str>) -> Result<Identity, KeyError> {
        if looks_like_pem(data) {
            Self::from_pem(data, password)
        } else {
            Self::from_pkcs12_der(data, password)
        }
    }

    /// A PKCS#12 file's bytes.
    pub fn from_pkcs12_der(data: &[u8], password: Option<&str>) -> Result<Identity, KeyError> {
        let (key, certificate, chain) = from_pkcs12(data, password, true)?;
        let certificate = certificate
            .ok_or_else(|| KeyError::Unreadable("PKCS#12 has no certificate".to_owned()))?;
        Ok(Identity {
            key,
            certificate,
            chain,
        })
    }

    /// A PEM text: one private key (any supported form) and certificates.
    pub fn from_pem(data: &[u8], password: Option<&str>) -> Result<Identity, KeyError> {
        let key = PrivateKey::from_pem(data, password)?;
        let blocks = pem::blocks(data)?;
        let certificates = blocks
            .iter()
            .filter(|b| b.label == "CERTIFICATE")
            .map(|b| Certificate::from_der(&b.der))
            .collect::<Result<Vec<_>, _>>()?;
        let (certificate, chain) = pick_leaf(&key, certificates, "PEM")?;
        Ok(Identity {
            key,
            certificate,
            chain,
        })
    }

    /// The private key.
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The certificate of the private key.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The other certificates (intermediates, root), as the file gave them.
    pub fn chain(&self) -> &[Certificate] {
        &self.chain
    }

    /// The parts.
    pub fn into_parts(self) -> (PrivateKey, Certificate, Vec<Certificate>) {
        (self.key, self.certificate, self.chain)
    }
}

/// Splits `certificates` into the one matching `key` and the rest. With no
/// certificates: unreadable; with some but none matching: mismatch.
fn pick_leaf(
    key: &PrivateKey,
    mut certificates: Vec<Certificate>,
    what: &str,
) -> Result<(Certificate, Vec<Certificate>), KeyError> {
    if certificates.is_empty() {
        return Err(KeyError::Unreadable(format!("{what} has no certificate")));
    }
    let Some(at) = certificates
        .iter()
        .position(|c| key.matches(c.public_key_spki_der()))
    else {
        return Err(KeyError::Mismatch(what.to_owned()));
    };
    let leaf = certificates.remove(at);
    Ok((leaf, certificates))
}

/// Opens a PKCS#12: the key, the certificate matching it (if the file has
/// certificates at all) and the other certificates. `need_certificate` makes a
/// file without certificates an error.
pub(crate) fn from_pkcs12(
    data: &[u8],
    password: Option<&str>,
    need_certificate: bool,
) -> Result<(PrivateKey, Option<Certificate>, Vec<Certificate>), KeyError> {
    let parsed = pkcs12::open(data, password)?;
    let pkey = parsed
        .pkey
        .ok_or_else(|| KeyError::Unreadable("PKCS#12 has no private key".to_owned()))?;
    let key = PrivateKey::from_pkey(pkey)?;
    // OpenSSL pairs key and certificate by localKeyID; whatever it decided,
    // the match is checked on the keys themselves.
    let mut certificates = Vec::new();
    if let Some(cert) = parsed.cert {
        certificates.push(Certificate::from_x509(cert)?);
    }
    if let Some(ca) = parsed.ca {
        for cert in ca {
            certificates.push(Certificate::from_x509(cert)?);
        }
    }
    if certificates.is_empty() && !need_certificate {
        return Ok((key, None, Vec::new()));
    }
    let (leaf, chain) = pick_leaf(&key, certificates, "PKCS#12")?;
    Ok((key, Some(leaf), chain))
}
