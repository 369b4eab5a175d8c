//! Lowercase hex encoding (fingerprints, digests, request hashes).

/// Lowercase hex of bytes.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for pair in bytes.iter().map(|&byte| digits(byte)) {
        out.push(char::from(pair[0]));
        out.push(char::from(pair[1]));
    }
    out
}

/// The two lowercase hex digits of `byte`.
fn digits(byte: u8) -> [u8; 2] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    [
        DIGITS[usize::from(byte >> 4)],
        DIGITS[usize::from(byte & 0x0f)],
    ]
}

/// A SHA-256 digest as 64 lowercase hex digits, on the stack: for a header value
/// built per request without a `String` (issue 12).
pub fn encode_digest(digest: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (pair, &byte) in out.chunks_exact_mut(2).zip(digest) {
        pair.copy_from_slice(&digits(byte));
    }
    out
}

/// Normalises a certificate fingerprint to 64 lowercase hex digits, if it is one: case
/// and `:` separators are ignored (operators paste them from `openssl x509 -fingerprint`).
pub fn normalise_fingerprint(text: &str) -> Option<String> {
    let hex: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_lowercase_two_digits_per_byte() {
        assert_eq!(super::encode(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(super::encode(&[]), "");
    }

    #[test]
    fn a_digest_on_the_stack_reads_as_its_hex_string() {
        let digest: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37));
        assert_eq!(
            std::str::from_utf8(&super::encode_digest(&digest)).expect("ASCII"),
            super::encode(&digest)
        );
    }
}
