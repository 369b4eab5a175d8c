//! `Content-Digest` (RFC 9530): compute it, check it against a whole body, or check
//! it as the body streams through a relay ([`DigestVerifier`]).
//!
//! Accepted algorithms are `sha-256` and `sha-512`. Unknown algorithms in a received
//! field are ignored as long as one known algorithm is present; every known one that
//! is present must match.

use aws_lc_rs::digest::{self, Context, SHA256, SHA512};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sfv::{BareItem, Dictionary, ListEntry, Parser};

use super::SignatureError;
use super::base::HttpMessage;

/// A digest algorithm of the Hash Algorithms for HTTP Digest Fields registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `sha-256`
    Sha256,
    /// `sha-512`
    Sha512,
}

impl DigestAlgorithm {
    /// The registered key (`sha-256`, `sha-512`).
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha-256",
            DigestAlgorithm::Sha512 => "sha-512",
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "sha-256" => Some(DigestAlgorithm::Sha256),
            "sha-512" => Some(DigestAlgorithm::Sha512),
            _ => None,
        }
    }

    fn ring(self) -> &'static digest::Algorithm {
        match self {
            DigestAlgorithm::Sha256 => &SHA256,
            DigestAlgorithm::Sha512 => &SHA512,
        }
    }
}

/// The `Content-Digest` field value for `body`, e.g. `sha-256=:X48E9q...=:`.
pub fn content_digest(body: &[u8], alg: DigestAlgorithm) -> String {
    let d = digest::digest(alg.ring(), body);
    format!("{}=:{}:", alg.as_str(), STANDARD.encode(d.as_ref()))
}

/// The known digests of a `Content-Digest` value, in field order.
fn expected_digests(header_value: &str) -> Result<Vec<(DigestAlgorithm, Vec<u8>)>, SignatureError> {
    let dict: Dictionary = Parser::new(header_value)
        .parse()
        .map_err(|_| SignatureError::DigestMalformed)?;
    let mut known = Vec::new();
    for (key, entry) in &dict {
        let bytes = match entry {
            ListEntry::Item(item) => match &item.bare_item {
                BareItem::ByteSequence(b) => b,
                _ => return Err(SignatureError::DigestMalformed),
            },
            ListEntry::InnerList(_) => return Err(SignatureError::DigestMalformed),
        };
        if let Some(alg) = DigestAlgorithm::from_key(key.as_str()) {
            if bytes.len() != alg.ring().output_len() {
                return Err(SignatureError::DigestMalformed);
            }
            known.push((alg, bytes.clone()));
        }
    }
    if known.is_empty() {
        return Err(SignatureError::DigestAlgorithmUnsupported);
    }
    Ok(known)
}

/// Checks a `Content-Digest` field value against the whole `body`.
pub fn verify_content_digest(header_value: &str, body: &[u8]) -> Result<(), SignatureError> {
    let mut verifier = DigestVerifier::new(header_value)?;
    verifier.update(body);
    verifier.finish()
}

/// Checks the `content-digest` field of `message` (its field lines joined) against
/// `body`; `digest.missing` when the message has none.
pub fn verify_message_content_digest(
    message: &dyn HttpMessage,
    body: &[u8],
) -> Result<(), SignatureError> {
    let lines = message.header_values("content-digest");
    if lines.is_empty() {
        return Err(SignatureError::DigestMissing);
    }
    verify_content_digest(&lines.join(", "), body)
}

/// Checks a `Content-Digest` value as the body passes through in pieces.
pub struct DigestVerifier {
    checks: Vec<(Context, Vec<u8>)>,
}

impl std::fmt::Debug for DigestVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestVerifier")
            .field("algorithms", &self.checks.len())
            .finish()
    }
}

impl DigestVerifier {
    /// Parses the field value; errors as [`verify_content_digest`] would.
    pub fn new(header_value: &str) -> Result<Self, SignatureError> {
        let checks = expected_digests(header_value)?
            .into_iter()
            .map(|(alg, expected)| (Context::new(alg.ring()), expected))
            .collect();
        Ok(DigestVerifier { checks })
    }

    /// Feeds the next piece of the body.
    pub fn update(&mut self, chunk: &[u8]) {
        for (ctx, _) in &mut self.checks {
            ctx.update(chunk);
        }
    }

    /// Compares every known digest with what was fed.
    pub fn finish(self) -> Result<(), SignatureError> {
        for (ctx, expected) in self.checks {
            if ctx.finish().as_ref() != expected.as_slice() {
                return Err(SignatureError::DigestMismatch);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9530 Appendix B, and RFC 9421 B.2's test-request.
    const HELLO: &[u8] = br#"{"hello": "world"}"#;
    const HELLO_256: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
    const HELLO_512: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";

    #[test]
    fn rfc9530_examples() {
        assert_eq!(content_digest(HELLO, DigestAlgorithm::Sha256), HELLO_256);
        assert_eq!(content_digest(HELLO, DigestAlgorithm::Sha512), HELLO_512);
        assert_eq!(verify_content_digest(HELLO_256, HELLO), Ok(()));
        assert_eq!(verify_content_digest(HELLO_512, HELLO), Ok(()));
        let both = format!("{HELLO_256}, {HELLO_512}");
        assert_eq!(verify_content_digest(&both, HELLO), Ok(()));
    }

    #[test]
    fn failures_have_their_codes() {
        let code = |v: &str, body: &[u8]| verify_content_digest(v, body).err().map(|e| e.code());
        assert_eq!(code(HELLO_256, b"{}"), Some("digest.mismatch"));
        assert_eq!(code("sha-256=(", HELLO), Some("digest.malformed"));
        assert_eq!(code("sha-256=abc", HELLO), Some("digest.malformed"));
        assert_eq!(code("sha-256=:AAAA:", HELLO), Some("digest.malformed"));
        assert_eq!(
            code("md5=:AAAA:", HELLO),
            Some("digest.algorithm_unsupported")
        );
        assert_eq!(code("", HELLO), Some("digest.algorithm_unsupported"));
        // An unknown algorithm beside a known one is ignored...
        assert_eq!(code(&format!("md5=:AAAA:, {HELLO_256}"), HELLO), None);
        // ...but every known one must match.
        let wrong512 = content_digest(b"x", DigestAlgorithm::Sha512);
        assert_eq!(
            code(&format!("{HELLO_256}, {wrong512}"), HELLO),
            Some("digest.mismatch")
        );
    }

    #[test]
    fn streaming_matches_whole_body() -> Result<(), SignatureError> {
        let mut v = DigestVerifier::new(HELLO_512)?;
        for chunk in HELLO.chunks(3) {
            v.update(chunk);
        }
        v.finish()?;
        let mut v = DigestVerifier::new(HELLO_512)?;
        v.update(&HELLO[..5]);
        assert_eq!(v.finish(), Err(SignatureError::DigestMismatch));
        Ok(())
    }
}
