//! The hash chain of a node's journal: each record, in a canonical and versioned byte
//! encoding, is linked to the one before it, so a record changed, removed or inserted
//! after the fact breaks every link that follows and [`verify`](super::sqlite::verify)
//! names the first bad record.
//!
//! Encoding, version 1 (`datagate-journal/1`): the ASCII tag and a newline, then for each
//! of [`CHAINED_FIELDS`] in that order: the field name's length (one byte) and bytes,
//! then `0x00` for an absent value or `0x01`, the value's length (4 bytes, big-endian)
//! and its UTF-8 bytes. Values are the stored text forms (integers in decimal,
//! timestamps in RFC 3339 as written), so the encoding can be rebuilt from the store
//! alone. The link is `SHA-256(previous record's hash ‖ encoding)`; the first record of a
//! chain links to 32 zero bytes.

/// The version of the encoding, stored with each record.
pub const CHAIN_VERSION: i64 = 1;
/// The encoding's tag.
const TAG: &[u8] = b"datagate-journal/1\n";
/// What the first record of a chain links to.
pub const GENESIS: [u8; 32] = [0; 32];

/// The fields a record's hash covers, in order: every column but the sequence number
/// and the chain's own.
pub const CHAINED_FIELDS: [&str; 23] = [
    "message_id",
    "client",
    "service",
    "method",
    "operation",
    "purpose",
    "contract_id",
    "peer_fingerprint",
    "status",
    "error_code",
    "request_in_at",
    "request_out_at",
    "response_in_at",
    "response_out_at",
    "request_bytes",
    "response_bytes",
    "request_digest",
    "response_digest",
    "subject_digest",
    "leg",
    "signature_digest",
    "remote_key_id",
    "key_id",
];

/// The canonical encoding of a record given its stored values, in [`CHAINED_FIELDS`] order.
pub fn encode(values: &[Option<&str>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(TAG);
    for (name, value) in CHAINED_FIELDS.iter().zip(values) {
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        match value {
            None => out.push(0),
            Some(text) => {
                out.push(1);
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    out
}

/// The hash of a record linked to `previous`.
pub fn link(previous: &[u8; 32], encoding: &[u8]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(previous);
    context.update(encoding);
    let digest = context.finish();
    let mut hash = [0u8; 32];
    hash.copy_from_slice(digest.as_ref());
    hash
}

/// Parses a stored hash (64 hex digits).
pub fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        hash[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding tells an absent value from an empty one, and shifts nothing between
    /// fields: moving bytes from one field to the next changes it.
    #[test]
    fn encoding_is_unambiguous() {
        let mut a = vec![Some("x"); CHAINED_FIELDS.len()];
        let mut b = a.clone();
        b[1] = Some("");
        assert_ne!(encode(&a), encode(&b));
        b[1] = None;
        assert_ne!(encode(&a), encode(&b));
        a[0] = Some("ab");
        a[1] = Some("c");
        let mut c = a.clone();
        c[0] = Some("a");
        c[1] = Some("bc");
        assert_ne!(encode(&a), encode(&c));
    }

    #[test]
    fn hashes_round_trip_through_hex() {
        let hash = link(&GENESIS, b"record");
        assert_eq!(parse_hash(&crate::base::hex::encode(&hash)), Some(hash));
        assert_eq!(parse_hash("zz"), None);
    }
}
