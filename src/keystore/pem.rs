//! A small PEM reader (RFC 7468): the blocks of a file, in order.
//!
//! Text outside the blocks (the `Bag Attributes` lines `openssl pkcs12` writes,
//! comments) is ignored. A block with RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`,
//! the traditional encryption of SEC1/PKCS#1 keys) is kept whole so OpenSSL can
//! decrypt it.

use super::KeyError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// One `-----BEGIN LABEL-----` … `-----END LABEL-----` block.
pub(crate) struct Block {
    /// The label, such as `PRIVATE KEY` or `CERTIFICATE`.
    pub label: String,
    /// The block's body, base64-decoded.
    pub der: Vec<u8>,
    /// Whether the block carries RFC 1421 headers (traditional PEM encryption).
    pub has_headers: bool,
    /// The block as text, armour included (for OpenSSL's own PEM reader).
    pub text: String,
}

impl Drop for Block {
    fn drop(&mut self) {
        // Best effort: the decoded bytes may be an unencrypted private key.
        self.der.fill(0);
        std::hint::black_box(&self.der);
    }
}

/// The PEM blocks of `data`, in order. Fails on an unterminated block or a body
/// that is not base64; returns an empty list for text without blocks.
pub(crate) fn blocks(data: &[u8]) -> Result<Vec<Block>, KeyError> {
    let text = std::str::from_utf8(data)
        .map_err(|_| KeyError::Unreadable("PEM: not UTF-8 text".to_owned()))?;
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    let mut body = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        let Some(block) = open.as_mut() else {
            if let Some(label) = armour(trimmed, "-----BEGIN ") {
                open = Some(Block {
                    label: label.to_owned(),
                    der: Vec::new(),
                    has_headers: false,
                    text: format!("{trimmed}\n"),
                });
                body.clear();
            }
            continue;
        };
        block.text.push_str(trimmed);
        block.text.push('\n');
        if let Some(end) = armour(trimmed, "-----END ") {
            if end != block.label {
                return Err(KeyError::Unreadable(format!(
                    "PEM: block {} ends as {end}",
                    block.label
                )));
            }
            block.der = STANDARD.decode(body.as_bytes()).map_err(|_| {
                KeyError::Unreadable(format!("PEM: block {} is not base64", block.label))
            })?;
            body.clear();
            if let Some(done) = open.take() {
                out.push(done);
            }
        } else if trimmed.contains(':') {
            block.has_headers = true;
        } else {
            body.push_str(trimmed);
        }
    }
    if let Some(block) = open {
        return Err(KeyError::Unreadable(format!(
            "PEM: block {} is not terminated",
            block.label
        )));
    }
    Ok(out)
}

/// The label of an armour line `-----BEGIN LABEL-----` (or END).
fn armour<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_blocks_and_skips_text_around_them() {
        let pem = b"Bag Attributes\n    localKeyID: 01\n-----BEGIN CERTIFICATE-----\nAAEC\nAw==\n-----END CERTIFICATE-----\nnoise\n-----BEGIN PRIVATE KEY-----\nBAU=\n-----END PRIVATE KEY-----\n";
        let got = blocks(pem).expect("valid PEM");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].label, "CERTIFICATE");
        assert_eq!(got[0].der, vec![0, 1, 2, 3]);
        assert_eq!(got[1].label, "PRIVATE KEY");
        assert!(!got[1].has_headers);
    }

    #[test]
    fn refuses_unterminated_and_mislabelled_blocks() {
        assert!(blocks(b"-----BEGIN CERTIFICATE-----\nAAEC\n").is_err());
        assert!(blocks(b"-----BEGIN CERTIFICATE-----\nAAEC\n-----END X-----\n").is_err());
        assert!(blocks(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err());
    }
}
