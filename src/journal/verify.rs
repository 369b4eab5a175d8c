//! Offline verification of a journal, whichever the backend and however much of it sits
//! in archive files: every record's hash against its content, its link to the record
//! before it, every seal's Merkle root and signature. Streams: memory holds one sealed
//! batch's leaves at most, so ten million records verify in bounded memory.
//!
//! Owns: [`ChainVerifier`] (the state machine fed seals and records in sequence) and
//! [`verify`] (a whole journal: archives, then the store). Does not own: reading
//! ([`super::store`], [`super::archive`]) or the encodings ([`super::chain`]).

use super::JournalError;
use super::bundle::BundleSeal;
use super::chain;
use super::store::{Locator, Reader, StoredRecord};
use futures_util::TryStreamExt as _;

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every chained record links to the one before and its hash matches its content.
    Intact(Summary),
    /// The first record that does not verify.
    Broken {
        /// Its chain.
        chain: String,
        /// Its sequence number.
        seq: i64,
        /// Its `X-Road-Id` (empty when the record itself is gone).
        message_id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Counts of an intact journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Chains checked.
    pub chains: u64,
    /// Records checked.
    pub chained: u64,
    /// Seals checked (each a batch's Merkle root signed by the node).
    pub seals: u64,
    /// Chained records after the last seal (written without a sealer).
    pub unsealed: u64,
    /// Records written before the chain existed (a prefix, not covered).
    pub unchained: u64,
    /// Records read back from archive files.
    pub archived: u64,
    /// Records gone by retention (their last hash anchors what follows).
    pub expired: u64,
    /// Seals carrying an RFC 3161 time-stamp token.
    pub timestamped: u64,
    /// The last record's hash (lowercase hex) of the last chain, or `None` when empty.
    pub head: Option<String>,
}

/// Why a record or seal failed, before the chain name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Sequence number.
    pub seq: i64,
    /// `X-Road-Id`.
    pub message_id: String,
    /// What is wrong.
    pub reason: &'static str,
}

struct OpenSeal {
    seal: BundleSeal,
    leaves: Vec<[u8; 32]>,
    first_message_id: String,
    reported: bool,
}

/// Checks one chain fed in sequence: a batch's seal before its records.
#[derive(Default)]
pub struct ChainVerifier {
    range: Option<(String, String)>,
    head: Option<[u8; 32]>,
    next_seq: Option<i64>,
    open: Option<OpenSeal>,
    /// A batch found incomplete when the next seal came: reported at the next record
    /// unless that record's own check names the damage more precisely.
    lost: Option<Failure>,
    /// The TSA roots time-stamp tokens must chain to (`None`: only their imprint is
    /// checked).
    tsa_roots: Option<Vec<Vec<u8>>>,
    summary: Summary,
}

impl ChainVerifier {
    /// A verifier reporting records received in `[from, to)` only (all when `None`).
    pub fn new(range: Option<(String, String)>) -> Self {
        ChainVerifier {
            range,
            ..ChainVerifier::default()
        }
    }

    /// Checks time-stamp tokens fully: signature and chain to `roots`, not only their
    /// imprint.
    pub fn with_tsa_roots(mut self, roots: Option<Vec<Vec<u8>>>) -> Self {
        self.tsa_roots = roots;
        self
    }

    /// Continues after records gone by retention: the next record must link to `hash`
    /// and carry `next_seq`.
    pub fn anchor(&mut self, hash: [u8; 32], next_seq: i64, expired: u64) {
        self.head = Some(hash);
        self.next_seq = Some(next_seq);
        self.summary.expired += expired;
    }

    fn in_range(&self, record: &StoredRecord) -> bool {
        self.range.as_ref().is_none_or(|(from, to)| {
            record.received() >= from.as_str() && record.received() < to.as_str()
        })
    }

    /// Takes the seal of the next batch.
    pub fn seal(&mut self, seal: BundleSeal) -> Result<(), Failure> {
        if let Some(lost) = self.lost.take() {
            return Err(lost);
        }
        if let Some(open) = &self.open {
            self.lost = Some(Failure {
                seq: open.seal.first_seq,
                message_id: open.first_message_id.clone(),
                reason: "a sealed batch lost records (removed from the journal)",
            });
        }
        self.open = Some(OpenSeal {
            seal,
            leaves: Vec::new(),
            first_message_id: String::new(),
            reported: false,
        });
        Ok(())
    }

    /// Takes the next record.
    pub fn record(&mut self, record: &StoredRecord, archived: bool) -> Result<(), Failure> {
        let in_range = self.in_range(record);
        let failure = |reason| Failure {
            seq: record.seq,
            message_id: record.message_id().to_owned(),
            reason,
        };
        if let Some(expected) = self.next_seq
            && record.seq != expected
            && in_range
        {
            return Err(failure(
                "its sequence number does not follow the record before it (records were removed)",
            ));
        }
        self.next_seq = Some(record.seq + 1);
        let stored = record.record_hash.as_deref().and_then(chain::parse_hash);
        let checked = (|| {
            let (Some(prev), Some(hash)) = (record.prev_hash.as_deref(), stored) else {
                return Err(if record.record_hash.is_none() {
                    "an unchained record after the chain began"
                } else {
                    "a stored hash is not a hash"
                });
            };
            if record.chain_version != Some(chain::CHAIN_VERSION) {
                return Err("unknown chain version");
            }
            let prev = chain::parse_hash(prev).ok_or("a stored hash is not a hash")?;
            if prev != self.head.unwrap_or(chain::GENESIS) {
                return Err(
                    "it does not link to the record before it (a record was removed, inserted or reordered)",
                );
            }
            let values: Vec<Option<&str>> = record.values.iter().map(Option::as_deref).collect();
            if chain::link(&prev, &chain::encode(&values)) != hash {
                return Err("its content does not match its hash (it was changed)");
            }
            Ok(hash)
        })();
        let hash = match checked {
            // Rows written before the chain began: an unchained prefix.
            Err(_)
                if self.head.is_none()
                    && record.prev_hash.is_none()
                    && record.record_hash.is_none() =>
            {
                self.summary.unchained += 1;
                return Ok(());
            }
            Err(reason) if in_range => return Err(failure(reason)),
            // Outside the range: not vouched for; its stored hash carries the chain on.
            Err(_) => match stored {
                Some(stored) => stored,
                None => return Ok(()),
            },
            Ok(hash) => {
                if let Some(lost) = self.lost.take() {
                    return Err(lost);
                }
                if in_range {
                    self.summary.chained += 1;
                    if archived {
                        self.summary.archived += 1;
                    }
                }
                hash
            }
        };
        self.head = Some(hash);
        match &mut self.open {
            Some(open) if record.seq >= open.seal.first_seq && record.seq <= open.seal.last_seq => {
                if record.seq != open.seal.first_seq + open.leaves.len() as i64 {
                    return Err(Failure {
                        seq: open.seal.first_seq,
                        message_id: open.first_message_id.clone(),
                        reason: "a sealed batch lost records (removed from the journal)",
                    });
                }
                if open.leaves.is_empty() {
                    open.first_message_id = record.message_id().to_owned();
                }
                open.leaves.push(hash);
                open.reported |= in_range;
                if record.seq == open.seal.last_seq {
                    self.close_seal()?;
                }
            }
            Some(open) if record.seq > open.seal.last_seq || record.seq < open.seal.first_seq => {
                return Err(Failure {
                    seq: open.seal.first_seq,
                    message_id: open.first_message_id.clone(),
                    reason: "a sealed batch lost records (removed from the journal)",
                });
            }
            _ => {
                if in_range {
                    self.summary.unsealed += 1;
                }
            }
        }
        Ok(())
    }

    fn close_seal(&mut self) -> Result<(), Failure> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        if !open.reported {
            return Ok(());
        }
        let seal = &open.seal;
        let failure = |reason| Failure {
            seq: seal.first_seq,
            message_id: open.first_message_id.clone(),
            reason,
        };
        let root = chain::merkle_root(&open.leaves);
        let last = open.leaves[open.leaves.len() - 1];
        if chain::parse_hash(&seal.merkle_root) != Some(root)
            || chain::parse_hash(&seal.head_hash) != Some(last)
        {
            return Err(failure(
                "a sealed batch's records do not match its Merkle root",
            ));
        }
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let signature = b64.decode(&seal.signature).unwrap_or_default();
        let certificate = b64.decode(&seal.certificate).unwrap_or_default();
        let payload = chain::seal_payload(
            seal.first_seq,
            seal.last_seq,
            &root,
            &last,
            &seal.sealed_at,
            &certificate,
        );
        let verified = seal
            .algorithm
            .parse::<crate::msgsig::Algorithm>()
            .ok()
            .is_some_and(|algorithm| {
                crate::msgsig::VerifyingKey::from_certificate_der(&certificate, Some(algorithm))
                    .and_then(|key| key.verify(algorithm, &payload, &signature))
                    .is_ok()
            });
        if !verified {
            return Err(failure("a seal's signature does not verify"));
        }
        if let Some(token) = &seal.timestamp {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &payload).as_ref(),
            );
            let token = b64.decode(token).unwrap_or_default();
            let matches = match &self.tsa_roots {
                Some(roots) => super::tsa::verify_token(&token, &digest, roots).is_ok(),
                None => super::tsa::token_digest_and_time(&token)
                    .is_ok_and(|(imprint, _)| imprint == digest),
            };
            if !matches {
                return Err(failure(
                    "a seal's time-stamp token does not verify over this seal",
                ));
            }
            self.summary.timestamped += 1;
        }
        self.summary.seals += 1;
        Ok(())
    }

    /// Ends the chain: a seal whose records never came means records were removed.
    pub fn finish(mut self) -> Result<Summary, Failure> {
        if let Some(lost) = self.lost.take() {
            return Err(lost);
        }
        if let Some(open) = &self.open {
            return Err(Failure {
                seq: open.seal.first_seq,
                message_id: open.first_message_id.clone(),
                reason: "a sealed batch lost records (removed from the journal)",
            });
        }
        self.summary.head = self.head.map(|h| crate::base::hex::encode(&h));
        self.summary.chains = 1;
        Ok(std::mem::take(&mut self.summary))
    }

    /// The sequence number the next record must carry, if known.
    pub fn next_seq(&self) -> Option<i64> {
        self.next_seq
    }
}

/// Checks the whole journal at `locator` (every chain, its archive files first), or the
/// records received in `range`. `progress` is told each record's sequence number now and
/// then.
pub async fn verify(
    locator: &Locator,
    range: Option<(String, String)>,
    archive_dir: Option<&std::path::Path>,
    tsa_roots: Option<&[Vec<u8>]>,
    progress: &mut (dyn FnMut(&str, i64) + Send),
) -> Result<Verification, JournalError> {
    let mut records_reader = Reader::open(locator).await?;
    let mut seals_reader = Reader::open(locator).await?;
    let mut total = Summary::default();
    for chain_name in records_reader.chains().await? {
        let broken = |failure: Failure| Verification::Broken {
            chain: chain_name.clone(),
            seq: failure.seq,
            message_id: failure.message_id,
            reason: failure.reason,
        };
        let mut verifier =
            ChainVerifier::new(range.clone()).with_tsa_roots(tsa_roots.map(<[_]>::to_vec));
        // Archived (or expired) batches first.
        let archives = super::archive::list(&mut records_reader, &chain_name).await?;
        for entry in &archives {
            match super::archive::feed(entry, archive_dir, &mut verifier, progress).await {
                Ok(()) => {}
                Err(super::archive::FeedError::Failure(failure)) => return Ok(broken(failure)),
                Err(super::archive::FeedError::Store(error)) => return Err(error),
            }
        }
        let after = verifier.next_seq().map_or(0, |next| next - 1);
        let mut records = records_reader.records(&chain_name, after);
        let mut seals = seals_reader.seals(&chain_name, after);
        let mut next_seal = seals.try_next().await?;
        while let Some(record) = records.try_next().await? {
            while let Some(seal) = next_seal.take_if(|seal| seal.first_seq <= record.seq) {
                if let Err(failure) = verifier.seal(seal) {
                    return Ok(broken(failure));
                }
                next_seal = seals.try_next().await?;
            }
            if let Err(failure) = verifier.record(&record, false) {
                return Ok(broken(failure));
            }
            if record.seq % 16_384 == 0 {
                progress(&chain_name, record.seq);
            }
        }
        // A seal over records that are gone (the journal's tail removed).
        if let Some(seal) = next_seal
            && let Err(failure) = verifier.seal(seal)
        {
            return Ok(broken(failure));
        }
        drop(records);
        drop(seals);
        let summary = match verifier.finish() {
            Ok(summary) => summary,
            Err(failure) => return Ok(broken(failure)),
        };
        total.chains += 1;
        total.chained += summary.chained;
        total.seals += summary.seals;
        total.unsealed += summary.unsealed;
        total.unchained += summary.unchained;
        total.archived += summary.archived;
        total.expired += summary.expired;
        total.timestamped += summary.timestamped;
        total.head = summary.head.or(total.head);
    }
    Ok(Verification::Intact(total))
}
