//! Signing and verifying keys.
//!
//! Which algorithms a key may be used with follows from its type: an EC P-256 key
//! only `ecdsa-p256-sha256`, an Ed25519 key only `ed25519`, an RSA key
//! `rsa-pss-sha512` by default or `rsa-v1_5-sha256` when the caller chooses it. An
//! RSA verifying key accepts both RSA algorithms only when the caller allows it
//! ([`VerifyingKey::allow`]), so a signer cannot pick the weaker padding by itself.
//!
//! PKCS#8 keys whose algorithm is `id-RSASSA-PSS` (as RFC 9421's `test-key-rsa-pss`)
//! are read by taking their inner PKCS#1 `RSAPrivateKey`: the modulus and exponents
//! are those of a plain RSA key, and the PSS parameters are fixed by the algorithm.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::der::{self, KeyType};
use super::{Algorithm, SignatureError};

/// A private key and the one algorithm it signs with.
pub struct SigningKey {
    inner: SigningInner,
    algorithm: Algorithm,
}

enum SigningInner {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn default_algorithm(kind: KeyType) -> Result<Algorithm, SignatureError> {
    match kind {
        KeyType::Rsa => Ok(Algorithm::RsaPssSha512),
        KeyType::EcP256 => Ok(Algorithm::EcdsaP256Sha256),
        KeyType::Ed25519 => Ok(Algorithm::Ed25519),
        KeyType::EcOther => Err(SignatureError::KeyInvalid("EC keys must be on P-256")),
        KeyType::Other => Err(SignatureError::KeyInvalid("unsupported key type")),
    }
}

fn fits(kind: KeyType, alg: Algorithm) -> bool {
    match kind {
        KeyType::Rsa => alg.is_rsa(),
        KeyType::EcP256 => alg == Algorithm::EcdsaP256Sha256,
        KeyType::Ed25519 => alg == Algorithm::Ed25519,
        KeyType::EcOther | KeyType::Other => false,
    }
}

fn choose(kind: KeyType, alg: Option<Algorithm>) -> Result<Algorithm, SignatureError> {
    let default = default_algorithm(kind)?;
    match alg {
        None => Ok(default),
        Some(a) if fits(kind, a) => Ok(a),
        Some(a) => Err(SignatureError::KeyMismatch(a)),
    }
}

impl SigningKey {
    /// Reads a PKCS#8 `PrivateKeyInfo` (RSA, RSA-PSS, EC P-256 or Ed25519). `alg` picks
    /// the algorithm; `None` takes the key type's default.
    pub fn from_pkcs8_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let (kind, private_key) =
            der::pkcs8(der).ok_or(SignatureError::KeyInvalid("not a PKCS#8 private key"))?;
        let algorithm = choose(kind, alg)?;
        let inner = match kind {
            KeyType::Rsa => {
                let pair = RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(private_key))
                    .map_err(|_| SignatureError::KeyInvalid("RSA key refused"))?;
                SigningInner::Rsa(pair)
            }
            KeyType::EcP256 => SigningInner::Ecdsa(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|_| SignatureError::KeyInvalid("EC key refused"))?,
            ),
            KeyType::Ed25519 => SigningInner::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| SignatureError::KeyInvalid("Ed25519 key refused"))?,
            ),
            KeyType::EcOther | KeyType::Other => {
                return Err(SignatureError::KeyInvalid("unsupported key type"));
            }
        };
        Ok(SigningKey { inner, algorithm })
    }

    /// Reads a SEC1 / RFC 5915 `ECPrivateKey` on P-256.
    pub fn from_sec1_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let algorithm = choose(KeyType::EcP256, alg)?;
        let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| SignatureError::KeyInvalid("EC key refused"))?;
        Ok(SigningKey {
            inner: SigningInner::Ecdsa(pair),
            algorithm,
        })
    }

    /// Reads a PKCS#1 `RSAPrivateKey`.
    pub fn from_pkcs1_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let algorithm = choose(KeyType::Rsa, alg)?;
        let pair =
            RsaKeyPair::from_der(der).map_err(|_| SignatureError::KeyInvalid("RSA key refused"))?;
        Ok(SigningKey {
            inner: SigningInner::Rsa(pair),
            algorithm,
        })
    }

    /// Reads the first PEM block of `pem`: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY`
    /// (SEC1) or `RSA PRIVATE KEY` (PKCS#1).
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let (label, der) = pem_decode(pem)?;
        match label.as_str() {
            "PRIVATE KEY" => Self::from_pkcs8_der(&der, alg),
            "EC PRIVATE KEY" => Self::from_sec1_der(&der, alg),
            "RSA PRIVATE KEY" => Self::from_pkcs1_der(&der, alg),
            _ => Err(SignatureError::KeyInvalid("unsupported PEM label")),
        }
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The matching verifying key, allowing this key's algorithm.
    pub fn verifying_key(&self) -> VerifyingKey {
        let (kind, bytes) = match &self.inner {
            SigningInner::Ecdsa(p) => (PublicKind::EcP256, p.public_key().as_ref().to_vec()),
            SigningInner::Rsa(p) => (PublicKind::Rsa, p.public_key().as_ref().to_vec()),
            SigningInner::Ed25519(p) => (PublicKind::Ed25519, p.public_key().as_ref().to_vec()),
        };
        VerifyingKey {
            kind,
            bytes,
            allowed: vec![self.algorithm],
        }
    }

    /// Signs `message` (a signature base) with the key's algorithm.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        match (&self.inner, self.algorithm) {
            (SigningInner::Ecdsa(pair), Algorithm::EcdsaP256Sha256) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignatureError::SigningFailed),
            (SigningInner::Ed25519(pair), Algorithm::Ed25519) => {
                Ok(pair.sign(message).as_ref().to_vec())
            }
            (SigningInner::Rsa(pair), alg) if alg.is_rsa() => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    Algorithm::RsaV15Sha256 => &signature::RSA_PKCS1_SHA256,
                    _ => &signature::RSA_PSS_SHA512,
                };
                let mut out = vec![0u8; pair.public_modulus_len()];
                pair.sign(padding, &rng, message, &mut out)
                    .map_err(|_| SignatureError::SigningFailed)?;
                Ok(out)
            }
            (_, alg) => Err(SignatureError::KeyMismatch(alg)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PublicKind {
    /// PKCS#1 `RSAPublicKey` DER.
    Rsa,
    /// Uncompressed SEC1 point.
    EcP256,
    /// 32 raw bytes.
    Ed25519,
}

/// A public key and the algorithms it may verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    kind: PublicKind,
    bytes: Vec<u8>,
    allowed: Vec<Algorithm>,
}

impl VerifyingKey {
    fn new(kind: KeyType, key: &[u8], alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let algorithm = choose(kind, alg)?;
        let kind = match kind {
            KeyType::Rsa if der::is_rsa_public_key(key) => PublicKind::Rsa,
            KeyType::Rsa => return Err(SignatureError::KeyInvalid("bad RSA public key")),
            KeyType::EcP256 if key.len() == 65 && key.first() == Some(&0x04) => PublicKind::EcP256,
            KeyType::EcP256 => return Err(SignatureError::KeyInvalid("bad P-256 point")),
            KeyType::Ed25519 if key.len() == 32 => PublicKind::Ed25519,
            KeyType::Ed25519 => return Err(SignatureError::KeyInvalid("bad Ed25519 key")),
            KeyType::EcOther | KeyType::Other => {
                return Err(SignatureError::KeyInvalid("unsupported key type"));
            }
        };
        Ok(VerifyingKey {
            kind,
            bytes: key.to_vec(),
            allowed: vec![algorithm],
        })
    }

    /// Reads a DER `SubjectPublicKeyInfo`. `alg` picks the algorithm; `None` takes the
    /// key type's default (`rsa-pss-sha512` for RSA).
    pub fn from_spki_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let (kind, key) =
            der::spki(der).ok_or(SignatureError::KeyInvalid("not a SubjectPublicKeyInfo"))?;
        Self::new(kind, key, alg)
    }

    /// Reads a PKCS#1 `RSAPublicKey`.
    pub fn from_pkcs1_der(der: &[u8], alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        Self::new(KeyType::Rsa, der, alg)
    }

    /// Takes the SubjectPublicKeyInfo out of a DER X.509 certificate. The certificate
    /// is not validated here: chain and revocation are the trust store's business.
    pub fn from_certificate_der(
        der: &[u8],
        alg: Option<Algorithm>,
    ) -> Result<Self, SignatureError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| SignatureError::KeyInvalid("not an X.509 certificate"))?;
        Self::from_spki_der(cert.public_key().raw, alg)
    }

    /// Reads the first PEM block of `pem`: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY`
    /// (PKCS#1) or `CERTIFICATE`.
    pub fn from_pem(pem: &str, alg: Option<Algorithm>) -> Result<Self, SignatureError> {
        let (label, der) = pem_decode(pem)?;
        match label.as_str() {
            "PUBLIC KEY" => Self::from_spki_der(&der, alg),
            "RSA PUBLIC KEY" => Self::from_pkcs1_der(&der, alg),
            "CERTIFICATE" => Self::from_certificate_der(&der, alg),
            _ => Err(SignatureError::KeyInvalid("unsupported PEM label")),
        }
    }

    /// Also allows `alg` (the caller's choice: e.g. both RSA paddings for one RSA key).
    pub fn allow(mut self, alg: Algorithm) -> Result<Self, SignatureError> {
        let fits = match self.kind {
            PublicKind::Rsa => alg.is_rsa(),
            PublicKind::EcP256 => alg == Algorithm::EcdsaP256Sha256,
            PublicKind::Ed25519 => alg == Algorithm::Ed25519,
        };
        if !fits {
            return Err(SignatureError::KeyMismatch(alg));
        }
        if !self.allowed.contains(&alg) {
            self.allowed.push(alg);
        }
        Ok(self)
    }

    /// The algorithms this key verifies; the first is used when a signature has no `alg`.
    pub fn allowed_algorithms(&self) -> &[Algorithm] {
        &self.allowed
    }

    /// The algorithm to verify with: `alg` if the key allows it, else the key's first.
    pub fn algorithm_for(&self, alg: Option<Algorithm>) -> Result<Algorithm, SignatureError> {
        match alg {
            Some(a) if self.allowed.contains(&a) => Ok(a),
            Some(a) => Err(SignatureError::KeyMismatch(a)),
            None => self
                .allowed
                .first()
                .copied()
                .ok_or(SignatureError::KeyUnknown),
        }
    }

    /// Verifies `signature` over `message` with `alg` (which the key must allow).
    pub fn verify(
        &self,
        alg: Algorithm,
        message: &[u8],
        signature_bytes: &[u8],
    ) -> Result<(), SignatureError> {
        let alg = self.algorithm_for(Some(alg))?;
        let verification: &'static dyn signature::VerificationAlgorithm = match alg {
            Algorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::RsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::RsaV15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Ed25519 => &signature::ED25519,
        };
        UnparsedPublicKey::new(verification, &self.bytes)
            .verify(message, signature_bytes)
            .map_err(|_| SignatureError::InvalidSignature)
    }
}

/// The label and DER of the first PEM block in `pem`.
pub fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), SignatureError> {
    const BAD: SignatureError = SignatureError::KeyInvalid("malformed PEM");
    let mut lines = pem.lines().map(str::trim);
    let label = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("-----BEGIN ")
                .and_then(|r| r.strip_suffix("-----"))
        })
        .ok_or(BAD)?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.contains(':') {
            // RFC 1421 headers (encrypted keys) are not supported.
            return Err(SignatureError::KeyInvalid("encrypted or annotated PEM"));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(BAD);
    }
    let der = STANDARD.decode(body.as_bytes()).map_err(|_| BAD)?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n";
    const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn ed25519_private_and_public_agree() -> Result<(), SignatureError> {
        let sk = SigningKey::from_pem(ED25519_PRIVATE, None)?;
        assert_eq!(sk.algorithm(), Algorithm::Ed25519);
        let vk = VerifyingKey::from_pem(ED25519_PUBLIC, None)?;
        assert_eq!(sk.verifying_key(), vk);
        let sig = sk.sign(b"abc")?;
        vk.verify(Algorithm::Ed25519, b"abc", &sig)?;
        assert_eq!(
            vk.verify(Algorithm::Ed25519, b"abd", &sig),
            Err(SignatureError::InvalidSignature)
        );
        Ok(())
    }

    #[test]
    fn algorithm_must_fit_the_key() {
        assert_eq!(
            SigningKey::from_pem(ED25519_PRIVATE, Some(Algorithm::RsaPssSha512)).err(),
            Some(SignatureError::KeyMismatch(Algorithm::RsaPssSha512))
        );
        let vk = VerifyingKey::from_pem(ED25519_PUBLIC, None);
        assert_eq!(
            vk.and_then(|k| k.allow(Algorithm::EcdsaP256Sha256)).err(),
            Some(SignatureError::KeyMismatch(Algorithm::EcdsaP256Sha256))
        );
    }

    #[test]
    fn bad_pem_is_refused() {
        for pem in [
            "",
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----",
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAw\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----",
        ] {
            let err = SigningKey::from_pem(pem, None).err();
            assert_eq!(
                err.map(|e| e.code()),
                Some("signature.key_invalid"),
                "{pem}"
            );
        }
    }
}
