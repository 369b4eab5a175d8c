//! The few DER steps the key readers need: walk a TLV, read the algorithm OID of a
//! PKCS#8 `PrivateKeyInfo` or an SPKI, and take the key bytes out. Bounds-checked;
//! anything unexpected is an error, never a panic.

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// 1.2.840.113549.1.1.1 rsaEncryption
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.113549.1.1.10 id-RSASSA-PSS
pub(crate) const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// 1.2.840.10045.2.1 id-ecPublicKey
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 prime256v1 (P-256)
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.101.112 id-Ed25519
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// One TLV: its tag, its contents and what follows it.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// A TLV that must carry `tag`.
pub(crate) fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = read_tlv(input)?;
    (t == tag).then_some((contents, rest))
}

/// The key type named by an `AlgorithmIdentifier`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    /// rsaEncryption or id-RSASSA-PSS.
    Rsa,
    /// id-ecPublicKey on P-256.
    EcP256,
    /// id-ecPublicKey on another curve (refused by the callers).
    EcOther,
    /// id-Ed25519.
    Ed25519,
    /// Anything else.
    Other,
}

/// Reads an `AlgorithmIdentifier` SEQUENCE's contents.
pub(crate) fn key_type(alg_id: &[u8]) -> Option<KeyType> {
    let (oid, params) = expect(alg_id, TAG_OID)?;
    Some(if oid == OID_RSA_ENCRYPTION || oid == OID_RSASSA_PSS {
        KeyType::Rsa
    } else if oid == OID_EC_PUBLIC_KEY {
        match expect(params, TAG_OID) {
            Some((curve, _)) if curve == OID_P256 => KeyType::EcP256,
            _ => KeyType::EcOther,
        }
    } else if oid == OID_ED25519 {
        KeyType::Ed25519
    } else {
        KeyType::Other
    })
}

/// PKCS#8 `PrivateKeyInfo`: the key type and the `privateKey` OCTET STRING contents.
pub(crate) fn pkcs8(der: &[u8]) -> Option<(KeyType, &[u8])> {
    let (info, _) = expect(der, TAG_SEQUENCE)?;
    let (_version, rest) = expect(info, TAG_INTEGER)?;
    let (alg_id, rest) = expect(rest, TAG_SEQUENCE)?;
    let (private_key, _) = expect(rest, TAG_OCTET_STRING)?;
    Some((key_type(alg_id)?, private_key))
}

/// SPKI: the key type and the `subjectPublicKey` bits (without the unused-bits byte).
pub(crate) fn spki(der: &[u8]) -> Option<(KeyType, &[u8])> {
    let (info, _) = expect(der, TAG_SEQUENCE)?;
    let (alg_id, rest) = expect(info, TAG_SEQUENCE)?;
    let (bits, _) = expect(rest, TAG_BIT_STRING)?;
    let (&unused, key) = bits.split_first()?;
    if unused != 0 {
        return None;
    }
    Some((key_type(alg_id)?, key))
}

/// Whether `der` is a PKCS#1 `RSAPublicKey` (SEQUENCE of two INTEGERs).
pub(crate) fn is_rsa_public_key(der: &[u8]) -> bool {
    let Some((seq, trailing)) = expect(der, TAG_SEQUENCE) else {
        return false;
    };
    let Some((modulus, rest)) = expect(seq, TAG_INTEGER) else {
        return false;
    };
    let Some((_exponent, rest)) = expect(rest, TAG_INTEGER) else {
        return false;
    };
    trailing.is_empty() && rest.is_empty() && modulus.len() >= 256
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_lengths() {
        assert_eq!(
            read_tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat_n(0u8, 0x80));
        assert_eq!(read_tlv(&long).map(|(_, c, _)| c.len()), Some(0x80));
    }

    #[test]
    fn truncated_input_is_refused() {
        assert_eq!(read_tlv(&[0x04, 0x05, 0x00]), None);
        assert_eq!(read_tlv(&[0x04, 0x85, 0, 0, 0, 0, 1]), None);
        assert_eq!(read_tlv(&[0x04]), None);
        assert_eq!(pkcs8(&[0x30, 0x00]), None);
        assert_eq!(spki(&[]), None);
    }
}
