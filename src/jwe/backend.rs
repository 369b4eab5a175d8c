//! The one place that uses the JOSE library (josekit). Inputs reach it only
//! after `compact` has checked structure, header, lengths and policy.

use super::{ContentEncryption, JweError, KeyManagement};
use crate::keystore::{PrivateKey, PublicKey};
use josekit::jwe::alg::ecdh_es::{EcdhEsJweDecrypter, EcdhEsJweEncrypter};
use josekit::jwe::alg::rsaes::{RsaesJweDecrypter, RsaesJweEncrypter};
use josekit::jwe::{self, ECDH_ES_A128KW, ECDH_ES_A256KW, JweHeader, RSA_OAEP, RSA_OAEP_256};

/// A recipient's key made ready once, for many encryptions (parsing a key costs far
/// more than one key agreement).
pub(super) enum PreparedEncrypter {
    EcdhEs(EcdhEsJweEncrypter),
    Rsa(RsaesJweEncrypter),
}

impl PreparedEncrypter {
    pub(super) fn new(recipient: &PublicKey, alg: KeyManagement) -> Result<Self, JweError> {
        let spki = recipient.spki_der();
        let unusable = |_| JweError::KeyUnsupported("recipient key not usable".to_owned());
        match alg {
            KeyManagement::EcdhEsA256kw => Ok(PreparedEncrypter::EcdhEs(
                ECDH_ES_A256KW.encrypter_from_der(spki).map_err(unusable)?,
            )),
            KeyManagement::RsaOaep256 => Ok(PreparedEncrypter::Rsa(
                RSA_OAEP_256.encrypter_from_der(spki).map_err(unusable)?,
            )),
            KeyManagement::RsaOaep | KeyManagement::EcdhEsA128kw => Err(
                JweError::AlgorithmUnsupported(format!("{} is not produced", alg.name())),
            ),
        }
    }

    pub(super) fn encrypt(
        &self,
        plaintext: &[u8],
        enc: ContentEncryption,
        kid: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<String, JweError> {
        let mut header = JweHeader::new();
        header.set_content_encryption(enc.name());
        if let Some(kid) = kid {
            header.set_key_id(kid);
        }
        if let Some(cty) = content_type {
            header.set_content_type(cty);
        }
        match self {
            PreparedEncrypter::EcdhEs(e) => jwe::serialize_compact(plaintext, &header, e),
            PreparedEncrypter::Rsa(e) => jwe::serialize_compact(plaintext, &header, e),
        }
        .map_err(|_| JweError::EncryptionFailed)
    }
}

/// A private key made ready once for one key-management algorithm (the policy, checked
/// before, decides which algorithms may reach it).
pub(super) enum PreparedDecrypter {
    EcdhEs(EcdhEsJweDecrypter),
    Rsa(RsaesJweDecrypter),
}

impl PreparedDecrypter {
    pub(super) fn new(key: &PrivateKey, alg: KeyManagement) -> Result<Self, JweError> {
        let pkcs8 = Pkcs8(key.to_pkcs8_der());
        let unusable = |_| JweError::KeyUnsupported(format!("key not usable for {}", alg.name()));
        match alg {
            KeyManagement::EcdhEsA256kw => Ok(PreparedDecrypter::EcdhEs(
                ECDH_ES_A256KW
                    .decrypter_from_der(&pkcs8.0)
                    .map_err(unusable)?,
            )),
            KeyManagement::EcdhEsA128kw => Ok(PreparedDecrypter::EcdhEs(
                ECDH_ES_A128KW
                    .decrypter_from_der(&pkcs8.0)
                    .map_err(unusable)?,
            )),
            KeyManagement::RsaOaep256 => Ok(PreparedDecrypter::Rsa(
                RSA_OAEP_256
                    .decrypter_from_der(&pkcs8.0)
                    .map_err(unusable)?,
            )),
            KeyManagement::RsaOaep => Ok(PreparedDecrypter::Rsa(
                RSA_OAEP.decrypter_from_der(&pkcs8.0).map_err(unusable)?,
            )),
        }
    }

    pub(super) fn decrypt(&self, compact: &str) -> Result<Vec<u8>, JweError> {
        match self {
            PreparedDecrypter::EcdhEs(d) => jwe::deserialize_compact(compact, d),
            PreparedDecrypter::Rsa(d) => jwe::deserialize_compact(compact, d),
        }
        // One code for every cryptographic failure: no oracle.
        .map(|(plaintext, _)| plaintext)
        .map_err(|_| JweError::DecryptionFailed)
    }
}

/// A PKCS#8 copy, cleared when dropped.
struct Pkcs8(Vec<u8>);

impl Drop for Pkcs8 {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}
