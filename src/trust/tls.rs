//! The rustls configuration of the mTLS listeners.
//!
//! Defaults, set here and nowhere else:
//! - protocol versions: TLS 1.3, and TLS 1.2 only with AEAD suites (ECDHE with
//!   AES-GCM or ChaCha20-Poly1305; rustls implements no CBC suites, and the
//!   filter below states the rule rather than relying on that);
//! - a client certificate is required and must chain to one of the configured
//!   CAs; webpki checks validity dates at handshake time, and the configured
//!   CRLs are checked for the whole chain, so expired, not-yet-valid and revoked
//!   certificates end the handshake with the matching TLS alert;
//! - ALPN offers h2 and http/1.1;
//! - the crypto provider is aws-lc-rs.

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files that make up a node's TLS identity and trust.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The node's certificate chain (PEM), leaf first.
    pub certificate: PathBuf,
    /// The node's private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// CA certificates (PEM) a peer's chain must reach.
    pub trusted_cas: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER) of those CAs.
    pub crls: Vec<PathBuf>,
}

/// Why TLS material could not be loaded; names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the assembled configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The crypto provider with only AEAD suites with forward secrecy.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|suite| match suite {
        SupportedCipherSuite::Tls13(_) => true,
        SupportedCipherSuite::Tls12(suite) => {
            let name = format!("{:?}", suite.common.suite);
            name.starts_with("TLS_ECDHE_") && (name.contains("_GCM_") || name.contains("CHACHA20"))
        }
    });
    Arc::new(provider)
}

/// Reads a PEM certificate chain.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// Reads CA certificates into a root store.
pub fn load_roots(paths: &[PathBuf]) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for path in paths {
        for cert in load_certificates(path)? {
            roots.add(cert).map_err(|e| file_error(path, e))?;
        }
    }
    Ok(roots)
}

fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut crls = Vec::new();
    for path in paths {
        let bytes = std::fs::read(path).map_err(|e| file_error(path, e))?;
        if bytes.starts_with(b"-----") {
            for crl in CertificateRevocationListDer::pem_slice_iter(&bytes) {
                crls.push(crl.map_err(|e| file_error(path, e))?);
            }
        } else {
            crls.push(CertificateRevocationListDer::from(bytes));
        }
    }
    Ok(crls)
}

/// Builds the server configuration of an mTLS listener.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    server_config_with_roots(files, load_roots(&files.trusted_cas)?)
}

/// The server configuration of an mTLS listener whose clients must chain to `roots`
/// (the exchange listener: the CAs of the global configuration).
pub fn server_config_with_roots(
    files: &TlsFiles,
    roots: RootCertStore,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(load_crls(&files.crls)?)
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            load_certificates(&files.certificate)?,
            load_key(&files.key)?,
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The server configuration of the public listener: the same certificate, no client
/// certificate asked for.
pub fn public_server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            load_certificates(&files.certificate)?,
            load_key(&files.key)?,
        )
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 003 Điều 53 khoản 4: data in transit is protected by AEAD suites with forward secrecy only.
    #[test]
    fn provider_keeps_only_aead_forward_secret_suites() {
        let provider = provider();
        assert!(!provider.cipher_suites.is_empty());
        for suite in &provider.cipher_suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
            assert!(!name.contains("CBC"), "{name}");
        }
    }
}
