//! Evidence bundles: the records of one exchange (or of a time range), each with the
//! Merkle proof of its inclusion in its batch, the batch's signed seal and the signing
//! certificate: everything a third party needs to check them on another machine, with
//! nothing else ([`verify_bundle`]). Records stay as the journal holds them: digests and
//! identifiers, never payloads.

use super::JournalError;
use super::chain::{self, CHAINED_FIELDS};
use super::store::{Filter, Locator, Reader};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The bundle format's tag.
pub const FORMAT: &str = "datagate-journal-bundle/1";

/// One record in a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleRecord {
    /// Its sequence number in the node's journal.
    pub seq: i64,
    /// Its stored values, by field name (the fields of the chain, all of them).
    pub values: BTreeMap<String, Option<String>>,
    /// The chain's encoding version.
    pub chain_version: i64,
    /// The previous record's hash (hex).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub record_hash: String,
    /// Index of its seal in [`Bundle::seals`].
    pub seal: usize,
    /// Its position in the sealed batch.
    pub leaf_index: u64,
    /// The batch's size.
    pub tree_size: u64,
    /// The audit path (hex hashes) from its leaf to the batch's Merkle root.
    pub proof: Vec<String>,
}

/// A seal as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BundleSeal {
    /// First sequence number of the batch.
    pub first_seq: i64,
    /// Last sequence number of the batch.
    pub last_seq: i64,
    /// The batch's Merkle root (hex).
    pub merkle_root: String,
    /// The batch's last record hash (hex).
    pub head_hash: String,
    /// When it was sealed (RFC 3339, as stored).
    pub sealed_at: String,
    /// The signature algorithm (RFC 9421 name).
    pub algorithm: String,
    /// The signature (base64).
    pub signature: String,
    /// The signing certificate (base64 DER).
    pub certificate: String,
    /// An RFC 3161 time-stamp token over the seal's payload (base64 DER), when the node
    /// has a time-stamping authority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// An evidence bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: String,
    /// The records.
    pub records: Vec<BundleRecord>,
    /// Their seals.
    pub seals: Vec<BundleSeal>,
}

/// Which records to export.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Every record of one `X-Road-Id` (each leg this node played).
    MessageId(String),
    /// Every record whose `request_in_at` falls in `[from, to)` (RFC 3339 text compare on
    /// the stored UTC form).
    Range {
        /// Start, inclusive.
        from: String,
        /// End, exclusive.
        to: String,
    },
}

/// The most records one bundle holds.
pub const MAX_RECORDS: i64 = 100_000;

/// Builds the bundle of `selection` from the journal at `locator` (read-only).
pub async fn export(locator: &Locator, selection: &Selection) -> Result<Bundle, JournalError> {
    let mut reader = Reader::open(locator).await?;
    let (filter, message_id) = match selection {
        Selection::MessageId(id) => (Filter::default(), Some(id.as_str())),
        Selection::Range { from, to } => (
            Filter {
                from: Some(from.clone()),
                to: Some(to.clone()),
                ..Filter::default()
            },
            None,
        ),
    };
    let rows = reader.select(&filter, message_id, MAX_RECORDS + 1).await?;
    if rows.len() as i64 > MAX_RECORDS {
        // Never a partial bundle that looks whole.
        return Err(JournalError::Store(format!(
            "more than {MAX_RECORDS} records match: narrow the range (a bundle is evidence of \
             what it holds, and stays small enough to check anywhere)"
        )));
    }
    let mut bundle = Bundle {
        format: FORMAT.to_owned(),
        records: Vec::new(),
        seals: Vec::new(),
    };
    // (chain, first_seq) → (index in the bundle, the batch's leaves).
    type Batch = (usize, Vec<[u8; 32]>);
    let mut seal_index: BTreeMap<(String, i64), Batch> = BTreeMap::new();
    for (chain_name, record) in rows {
        let seq = record.seq;
        let known = seal_index
            .iter()
            .find(|((chain, first), (index, _))| {
                *chain == chain_name && *first <= seq && bundle.seals[*index].last_seq >= seq
            })
            .map(|(key, _)| key.clone());
        let key = match known {
            Some(key) => key,
            None => {
                let seal = reader
                    .seal_covering(&chain_name, seq)
                    .await?
                    .ok_or_else(|| {
                        JournalError::Store(format!("record {seq} is not sealed yet"))
                    })?;
                let hashes = reader
                    .record_hashes(&chain_name, seal.first_seq, seal.last_seq)
                    .await?;
                let leaves: Vec<[u8; 32]> =
                    hashes.iter().filter_map(|h| chain::parse_hash(h)).collect();
                let key = (chain_name.clone(), seal.first_seq);
                bundle.seals.push(seal);
                seal_index.insert(key.clone(), (bundle.seals.len() - 1, leaves));
                key
            }
        };
        let (index, leaves) = &seal_index[&key];
        let first = bundle.seals[*index].first_seq;
        let leaf_index = (seq - first) as usize;
        let values: BTreeMap<String, Option<String>> = CHAINED_FIELDS
            .iter()
            .zip(record.values)
            .map(|(name, value)| ((*name).to_owned(), value))
            .collect();
        bundle.records.push(BundleRecord {
            seq,
            values,
            chain_version: record.chain_version.unwrap_or_default(),
            prev_hash: record.prev_hash.unwrap_or_default(),
            record_hash: record.record_hash.unwrap_or_default(),
            seal: *index,
            leaf_index: leaf_index as u64,
            tree_size: leaves.len() as u64,
            proof: chain::audit_path(leaves, leaf_index)
                .iter()
                .map(|h| crate::base::hex::encode(h))
                .collect(),
        });
    }
    Ok(bundle)
}

/// Where a bundle fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle.
    #[error("not an evidence bundle: {0}")]
    Malformed(String),
    /// A record does not verify.
    #[error("record {index} (seq {seq}, X-Road-Id {message_id}): {reason}")]
    Record {
        /// Its index in the bundle.
        index: usize,
        /// Its sequence number.
        seq: i64,
        /// Its `X-Road-Id`.
        message_id: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A seal does not verify.
    #[error("seal {index} (seq {first_seq}–{last_seq}): {reason}")]
    Seal {
        /// Its index in the bundle.
        index: usize,
        /// Its first sequence number.
        first_seq: i64,
        /// Its last.
        last_seq: i64,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Checks a bundle with nothing else: every seal's signature with the certificate it
/// carries, every record's hash against its values, and its inclusion in its seal's
/// Merkle root. Returns the number of records checked.
pub fn verify_bundle(bytes: &[u8]) -> Result<usize, BundleError> {
    use base64::Engine as _;
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| BundleError::Malformed(e.to_string()))?;
    if bundle.format != FORMAT {
        return Err(BundleError::Malformed("unknown format".into()));
    }
    let b64 = &base64::engine::general_purpose::STANDARD;
    for (index, seal) in bundle.seals.iter().enumerate() {
        let fail = |reason| BundleError::Seal {
            index,
            first_seq: seal.first_seq,
            last_seq: seal.last_seq,
            reason,
        };
        let (Some(root), Some(head)) = (
            chain::parse_hash(&seal.merkle_root),
            chain::parse_hash(&seal.head_hash),
        ) else {
            return Err(fail("a hash is not a hash"));
        };
        let signature = b64
            .decode(&seal.signature)
            .map_err(|_| fail("bad base64"))?;
        let certificate = b64
            .decode(&seal.certificate)
            .map_err(|_| fail("bad base64"))?;
        let payload = chain::seal_payload(
            seal.first_seq,
            seal.last_seq,
            &root,
            &head,
            &seal.sealed_at,
            &certificate,
        );
        let algorithm = seal
            .algorithm
            .parse::<crate::msgsig::Algorithm>()
            .map_err(|_| fail("unknown algorithm"))?;
        crate::msgsig::VerifyingKey::from_certificate_der(&certificate, Some(algorithm))
            .and_then(|key| key.verify(algorithm, &payload, &signature))
            .map_err(|_| fail("its signature does not verify"))?;
        // A time-stamp token must be over this seal's payload (its signature and chain
        // need the TSA's roots: `journal verify` with `--tsa-ca`).
        if let Some(token) = &seal.timestamp {
            let token = b64.decode(token).map_err(|_| fail("bad base64"))?;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &payload);
            let over = super::tsa::token_digest_and_time(&token)
                .is_ok_and(|(imprint, _)| imprint.as_slice() == digest.as_ref());
            if !over {
                return Err(fail("its time-stamp token is not over this seal"));
            }
        }
    }
    for (index, record) in bundle.records.iter().enumerate() {
        let message_id = record
            .values
            .get("message_id")
            .cloned()
            .flatten()
            .unwrap_or_default();
        let fail = |reason| BundleError::Record {
            index,
            seq: record.seq,
            message_id: message_id.clone(),
            reason,
        };
        if record.chain_version != chain::CHAIN_VERSION
            || record.values.len() != CHAINED_FIELDS.len()
        {
            return Err(fail("unknown chain version or fields"));
        }
        let values: Vec<Option<&str>> = CHAINED_FIELDS
            .iter()
            .map(|name| record.values.get(*name).and_then(|v| v.as_deref()))
            .collect();
        let (Some(prev), Some(hash)) = (
            chain::parse_hash(&record.prev_hash),
            chain::parse_hash(&record.record_hash),
        ) else {
            return Err(fail("a hash is not a hash"));
        };
        if chain::link(&prev, &chain::encode(&values)) != hash {
            return Err(fail("its values do not match its hash (changed)"));
        }
        let seal = bundle
            .seals
            .get(record.seal)
            .ok_or_else(|| fail("its seal is missing"))?;
        let root = chain::parse_hash(&seal.merkle_root).ok_or_else(|| fail("bad seal"))?;
        let path: Option<Vec<[u8; 32]>> =
            record.proof.iter().map(|h| chain::parse_hash(h)).collect();
        let path = path.ok_or_else(|| fail("its proof is not hashes"))?;
        let expected_size = seal.last_seq - seal.first_seq + 1;
        if record.tree_size as i64 != expected_size
            || record.seq != seal.first_seq + record.leaf_index as i64
            || !chain::verify_inclusion(&hash, record.leaf_index, record.tree_size, &path, &root)
        {
            return Err(fail("it is not included in its seal's Merkle root"));
        }
    }
    Ok(bundle.records.len())
}
