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

/// The chained fields as SQL expressions reading their stored text forms, in order
/// (`CAST(name AS TEXT), …`): what verification and export select.
pub fn chained_columns_sql() -> String {
    CHAINED_FIELDS
        .iter()
        .map(|c| format!("CAST({c} AS TEXT)"))
        .collect::<Vec<_>>()
        .join(", ")
}

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

/// The Merkle tree hash (RFC 6962 §2.1) of a batch's record hashes: leaves
/// `SHA-256(0x00 ‖ record hash)`, nodes `SHA-256(0x01 ‖ left ‖ right)`, split at the
/// largest power of two below the count. A seal signs it, so signing costs once per
/// batch, and one record's inclusion can be proven with log₂(n) hashes.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    let sha = |parts: &[&[u8]]| {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in parts {
            context.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    };
    match leaves.len() {
        0 => sha(&[]),
        1 => sha(&[&[0x00], &leaves[0]]),
        n => {
            let mut split = 1;
            while split * 2 < n {
                split *= 2;
            }
            let left = merkle_root(&leaves[..split]);
            let right = merkle_root(&leaves[split..]);
            sha(&[&[0x01], &left, &right])
        }
    }
}

/// What a seal's signature covers, version 1: the batch's range, its Merkle root and
/// head, when it was sealed, and the SHA-256 of the signing certificate (so the
/// certificate stored beside the seal cannot be swapped for another holding the same key).
pub fn seal_payload(
    first_seq: i64,
    last_seq: i64,
    root: &[u8; 32],
    head: &[u8; 32],
    sealed_at: &str,
    certificate: &[u8],
) -> Vec<u8> {
    let mut out = b"datagate-journal-seal/1\n".to_vec();
    out.extend_from_slice(&first_seq.to_be_bytes());
    out.extend_from_slice(&last_seq.to_be_bytes());
    out.extend_from_slice(root);
    out.extend_from_slice(head);
    out.extend_from_slice(&(sealed_at.len() as u32).to_be_bytes());
    out.extend_from_slice(sealed_at.as_bytes());
    out.extend_from_slice(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate).as_ref(),
    );
    out
}

/// The node's key that signs seals, with its certificate (stored with each seal so a
/// verifier on another machine needs nothing else).
pub struct Sealer {
    /// The signing key.
    pub key: crate::msgsig::SigningKey,
    /// Its certificate, DER.
    pub certificate: Vec<u8>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("algorithm", &self.key.algorithm())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod merkle_tests {
    use super::*;

    /// RFC 6962 §2.1 shapes: one leaf, two, and an unbalanced three; order matters.
    #[test]
    fn merkle_root_follows_rfc_6962() {
        let a = link(&GENESIS, b"a");
        let b = link(&a, b"b");
        let c = link(&b, b"c");
        let leaf = |h: &[u8; 32]| merkle_root(std::slice::from_ref(h));
        let node = |l: [u8; 32], r: [u8; 32]| {
            let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            context.update(&[0x01]);
            context.update(&l);
            context.update(&r);
            let mut out = [0u8; 32];
            out.copy_from_slice(context.finish().as_ref());
            out
        };
        assert_eq!(merkle_root(&[a, b]), node(leaf(&a), leaf(&b)));
        assert_eq!(
            merkle_root(&[a, b, c]),
            node(node(leaf(&a), leaf(&b)), leaf(&c))
        );
        assert_ne!(merkle_root(&[a, b]), merkle_root(&[b, a]));
    }
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    context.update(&[0x01]);
    context.update(left);
    context.update(right);
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// The leaf hash of a record hash: `SHA-256(0x00 ‖ record hash)`.
pub fn leaf_hash(record_hash: &[u8; 32]) -> [u8; 32] {
    merkle_root(std::slice::from_ref(record_hash))
}

/// The audit path (RFC 6962 §2.1.1) of leaf `index` in the tree over `leaves`.
pub fn audit_path(leaves: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let mut split = 1;
    while split * 2 < n {
        split *= 2;
    }
    if index < split {
        let mut path = audit_path(&leaves[..split], index);
        path.push(merkle_root(&leaves[split..]));
        path
    } else {
        let mut path = audit_path(&leaves[split..], index - split);
        path.push(merkle_root(&leaves[..split]));
        path
    }
}

/// Whether `path` proves the record hash at `index` of a tree of `size` leaves has the
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    record_hash: &[u8; 32],
    index: u64,
    size: u64,
    path: &[[u8; 32]],
    root: &[u8; 32],
) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf_hash(record_hash);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

#[cfg(test)]
mod proof_tests {
    use super::*;

    /// Every leaf of trees of 1 to 17 leaves is proven by its audit path, and by no
    /// other leaf's or root.
    #[test]
    fn audit_paths_prove_every_leaf_and_only_it() {
        for n in 1..=17usize {
            let leaves: Vec<[u8; 32]> = (0..n)
                .map(|i| link(&GENESIS, &(i as u64).to_be_bytes()))
                .collect();
            let root = merkle_root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let path = audit_path(&leaves, i);
                assert!(
                    verify_inclusion(leaf, i as u64, n as u64, &path, &root),
                    "{n}/{i}"
                );
                let other = link(&GENESIS, b"other");
                assert!(!verify_inclusion(&other, i as u64, n as u64, &path, &root));
                if n > 1 {
                    let wrong = (i + 1) % n;
                    assert!(!verify_inclusion(
                        leaf,
                        wrong as u64,
                        n as u64,
                        &path,
                        &root
                    ));
                }
            }
        }
    }
}

/// One record of a batch, chained: its sequence number, stored values and links.
#[derive(Debug, Clone)]
pub struct ChainedRow {
    /// Its sequence number in the chain.
    pub seq: i64,
    /// Its stored values, in [`CHAINED_FIELDS`] order.
    pub values: Vec<Option<String>>,
    /// The previous record's hash (hex).
    pub prev_hash: String,
    /// This record's hash (hex).
    pub record_hash: String,
}

/// A batch ready to store: its rows and the new head.
#[derive(Debug, Clone)]
pub struct ChainedBatch {
    /// The records, in sequence.
    pub rows: Vec<ChainedRow>,
    /// The hash of the batch's last record: the chain's head once it is stored.
    pub head: [u8; 32],
    /// The last record's `response_out_at` (stored text): a seal's time.
    pub last_at: String,
}

/// Chains `records` after `head`, numbering them from `next_seq`: the same bytes
/// whichever store keeps them.
pub fn chain_batch(
    head: [u8; 32],
    next_seq: i64,
    records: &[super::ExchangeRecord],
) -> ChainedBatch {
    let mut current = head;
    let rows: Vec<ChainedRow> = records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let values = record.stored_values();
            let borrowed: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
            let hash = link(&current, &encode(&borrowed));
            let row = ChainedRow {
                seq: next_seq + i as i64,
                values,
                prev_hash: crate::base::hex::encode(&current),
                record_hash: crate::base::hex::encode(&hash),
            };
            current = hash;
            row
        })
        .collect();
    let last_at = rows
        .last()
        .and_then(|row| row.values[13].clone())
        .unwrap_or_default();
    ChainedBatch {
        rows,
        head: current,
        last_at,
    }
}

/// The most records one seal covers.
pub const SEAL_MAX_RECORDS: usize = 4096;
/// The longest a committed record waits for its seal.
pub const SEAL_MAX_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Sealing decoupled from committing: records are durable at their commit; a seal covers
/// every record committed since the last one and is signed when [`SEAL_MAX_RECORDS`] are
/// pending or the oldest has waited [`SEAL_MAX_DELAY`]. Signing then costs once per
/// seal, whatever the commit rate (at 1 000 exchanges/s with one record per commit, one
/// signature per half second instead of one per exchange).
#[derive(Debug)]
pub struct Sealing {
    sealer: Sealer,
    first_seq: i64,
    leaves: Vec<[u8; 32]>,
    last_at: String,
    since: Option<tokio::time::Instant>,
}

impl Sealing {
    /// Nothing pending yet.
    pub fn new(sealer: Sealer) -> Self {
        Sealing {
            sealer,
            first_seq: 0,
            leaves: Vec::new(),
            last_at: String::new(),
            since: None,
        }
    }

    /// Takes back the records committed but not sealed when the store was last closed
    /// (a crash, `kill -9`): `(seq, record hash, response_out_at)` in sequence.
    pub fn restore(&mut self, tail: &[(i64, String, String)]) {
        self.leaves.clear();
        self.since = None;
        for (seq, hash, at) in tail {
            if let Some(hash) = parse_hash(hash) {
                if self.leaves.is_empty() {
                    self.first_seq = *seq;
                    self.since = Some(tokio::time::Instant::now());
                }
                self.leaves.push(hash);
                self.last_at = at.clone();
            }
        }
    }

    /// Whether a seal should be made together with `batch`'s commit.
    pub fn due_with(&self, batch: &ChainedBatch) -> bool {
        self.leaves.len() + batch.rows.len() >= SEAL_MAX_RECORDS
            || self
                .since
                .is_some_and(|since| since.elapsed() >= SEAL_MAX_DELAY)
    }

    /// When the pending records must be sealed, if any are pending.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.since.map(|since| since + SEAL_MAX_DELAY)
    }

    /// The seal over the pending records and `batch` (empty: the pending ones alone), with
    /// the SHA-256 of its payload; `None` when there is nothing to seal.
    pub fn seal(
        &self,
        batch: Option<&ChainedBatch>,
    ) -> Result<Option<(super::bundle::BundleSeal, [u8; 32])>, super::JournalError> {
        let mut leaves = self.leaves.clone();
        let mut first_seq = self.first_seq;
        let mut last_at = self.last_at.clone();
        if let Some(batch) = batch {
            if leaves.is_empty()
                && let Some(first) = batch.rows.first()
            {
                first_seq = first.seq;
            }
            leaves.extend(
                batch
                    .rows
                    .iter()
                    .filter_map(|row| parse_hash(&row.record_hash)),
            );
            if !batch.rows.is_empty() {
                last_at = batch.last_at.clone();
            }
        }
        let Some(head) = leaves.last().copied() else {
            return Ok(None);
        };
        let last_seq = first_seq + leaves.len() as i64 - 1;
        let root = merkle_root(&leaves);
        let payload = seal_payload(
            first_seq,
            last_seq,
            &root,
            &head,
            &last_at,
            &self.sealer.certificate,
        );
        let signature = self.sealer.key.sign(&payload).map_err(|error| {
            super::JournalError::Store(format!("cannot sign the seal: {}", error.code()))
        })?;
        let mut digest = [0u8; 32];
        digest.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &payload).as_ref(),
        );
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        Ok(Some((
            super::bundle::BundleSeal {
                first_seq,
                last_seq,
                merkle_root: crate::base::hex::encode(&root),
                head_hash: crate::base::hex::encode(&head),
                sealed_at: last_at,
                algorithm: self.sealer.key.algorithm().as_str().to_owned(),
                signature: b64.encode(signature),
                certificate: b64.encode(&self.sealer.certificate),
                timestamp: None,
            },
            digest,
        )))
    }

    /// After a commit: `batch` is now sealed (`sealed`) or pending.
    pub fn committed(&mut self, batch: &ChainedBatch, sealed: bool) {
        if sealed {
            self.leaves.clear();
            self.since = None;
            return;
        }
        if batch.rows.is_empty() {
            return;
        }
        if self.leaves.is_empty() {
            self.first_seq = batch.rows[0].seq;
            self.since = Some(tokio::time::Instant::now());
        }
        self.leaves.extend(
            batch
                .rows
                .iter()
                .filter_map(|row| parse_hash(&row.record_hash)),
        );
        self.last_at = batch.last_at.clone();
    }

    /// After the pending records were sealed on their own.
    pub fn sealed_pending(&mut self) {
        self.leaves.clear();
        self.since = None;
    }
}

/// A seal and the SHA-256 of its signed payload (what a time-stamp token covers).
pub type SignedSeal = (super::bundle::BundleSeal, [u8; 32]);

/// What a store's writer keeps of its chain between batches, whichever the store: the
/// head and next sequence number, the seals pending, the time-stamper. The stores run the
/// SQL; this decides what it writes.
#[derive(Debug)]
pub struct ChainState {
    head: [u8; 32],
    next_seq: i64,
    sealing: Option<Sealing>,
    /// Whether the committed but unsealed tail was taken back from the store.
    restored: bool,
    stamper: Option<super::stamper::Stamper>,
}

impl Default for ChainState {
    fn default() -> Self {
        ChainState {
            head: GENESIS,
            next_seq: 1,
            sealing: None,
            restored: false,
            stamper: None,
        }
    }
}

impl ChainState {
    /// Seals what is committed from now on with `sealer`.
    pub fn set_sealer(&mut self, sealer: Sealer) {
        self.sealing = Some(Sealing::new(sealer));
    }

    /// Time-stamps every seal from now on through `stamper`.
    pub fn set_stamper(&mut self, stamper: super::stamper::Stamper) {
        self.stamper = Some(stamper);
    }

    /// Takes the head the store holds: its last record's `(seq, hash)` (a record written
    /// before the chain existed has none) or, when it holds none, the last archived
    /// range's `(last_seq, head_hash)`. The unsealed tail is read again next
    /// ([`ChainState::needs_tail`]).
    pub fn reset(
        &mut self,
        last: Option<(i64, Option<String>)>,
        archived: Option<(i64, String)>,
    ) -> Result<(), super::JournalError> {
        let (seq, hash) = match (last, archived) {
            (Some((seq, hash)), _) => (seq, hash),
            (None, Some((seq, hash))) => (seq, Some(hash)),
            (None, None) => (0, None),
        };
        self.next_seq = seq + 1;
        self.head = match hash {
            None => GENESIS,
            Some(text) => parse_hash(&text).ok_or_else(|| {
                super::JournalError::Store("the journal's last record hash is not a hash".into())
            })?,
        };
        self.restored = false;
        Ok(())
    }

    /// Whether the store must read back the tail committed but not sealed (after a start
    /// or a reconnect) and hand it to [`ChainState::restore`].
    pub fn needs_tail(&self) -> bool {
        self.sealing.is_some() && !self.restored
    }

    /// Takes back the committed but unsealed tail: `(seq, record hash, response_out_at)`.
    pub fn restore(&mut self, tail: &[(i64, String, String)]) {
        if let Some(sealing) = &mut self.sealing {
            sealing.restore(tail);
        }
        self.restored = true;
    }

    /// `records` chained after the head, and the seal to commit with them when one is due.
    pub fn prepare(
        &self,
        records: &[super::ExchangeRecord],
    ) -> Result<(ChainedBatch, Option<SignedSeal>), super::JournalError> {
        let batch = chain_batch(self.head, self.next_seq, records);
        let seal = match &self.sealing {
            Some(sealing) if sealing.due_with(&batch) => sealing.seal(Some(&batch))?,
            _ => None,
        };
        Ok((batch, seal))
    }

    /// After `batch` (and `seal`, if any) committed: the new head, and the seal sent for
    /// time-stamping.
    pub fn committed(&mut self, batch: &ChainedBatch, seal: Option<&SignedSeal>) {
        self.head = batch.head;
        self.next_seq += batch.rows.len() as i64;
        if let Some(sealing) = &mut self.sealing {
            sealing.committed(batch, seal.is_some());
        }
        if let Some(seal) = seal {
            self.request_stamp(seal);
        }
    }

    /// The seal over the records committed since the last one, if any are pending.
    pub fn pending_seal(&self) -> Result<Option<SignedSeal>, super::JournalError> {
        match &self.sealing {
            Some(sealing) => sealing.seal(None),
            None => Ok(None),
        }
    }

    /// After [`ChainState::pending_seal`]'s seal committed on its own.
    pub fn sealed_pending(&mut self, seal: &SignedSeal) {
        if let Some(sealing) = &mut self.sealing {
            sealing.sealed_pending();
        }
        self.request_stamp(seal);
    }

    /// When the pending records must be sealed, if any are pending.
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.sealing.as_ref().and_then(Sealing::deadline)
    }

    /// The time-stamp tokens ready to attach to their seals.
    pub fn stamps(&mut self) -> Vec<super::stamper::Stamped> {
        self.stamper
            .as_mut()
            .map(super::stamper::Stamper::ready)
            .unwrap_or_default()
    }

    fn request_stamp(&self, (seal, digest): &SignedSeal) {
        if let Some(stamper) = &self.stamper {
            stamper.request(super::stamper::StampRequest {
                first_seq: seal.first_seq,
                digest: *digest,
            });
        }
    }
}
