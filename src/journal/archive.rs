//! Archiving and retention: sealed batches older than the configured age leave the store
//! for compressed files that still verify; batches older than the retention period are
//! deleted, their last hash kept as the anchor the next record links to. The store never
//! grows without bound.
//!
//! Archive file, `datagate-journal-archive/1`: gzip of JSON lines. The first line is the
//! header (`format`, `chain`, `first_seq`, `last_seq`); then, for each sealed batch, one
//! `{"seal": …}` line (the seal as in a bundle) and one `{"record": …}` line per record
//! (`seq`, `chain_version`, `prev_hash`, `record_hash`, `values` in the chain's field
//! order); the last line is `{"end": {"records": N}}`, so a truncated file is detected.
//!
//! Owns: writing archive files and reading them back into a verifier; the archive index
//! (`archives` table) rows. Does not own: when to archive (the writer's maintenance tick,
//! [`super::Journal`]) or deleting rows (each store, in the same transaction that indexes
//! the file).

use super::JournalError;
use super::bundle::BundleSeal;
use super::store::{Reader, StoredRecord};
use super::verify::{ChainVerifier, Failure};
use serde::{Deserialize, Serialize};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};

/// The archive format's tag.
pub const FORMAT: &str = "datagate-journal-archive/1";

/// One archived (or expired) range of a chain, as the store indexes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// First sequence number.
    pub first_seq: i64,
    /// Last sequence number.
    pub last_seq: i64,
    /// The file's name in the archive directory (empty once expired).
    pub file: String,
    /// The hash of the range's last record: what the next record links to.
    pub head_hash: String,
    /// When its last batch was sealed (RFC 3339): what retention counts from.
    pub last_at: String,
    /// When it was archived (RFC 3339).
    pub archived_at: String,
    /// When retention deleted it (RFC 3339), if it did.
    pub expired_at: Option<String>,
}

/// The archive policy of a node.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Where archive files go; `None`: sealed batches stay in the store until retention.
    pub dir: Option<PathBuf>,
    /// Sealed batches older than this are archived.
    pub after: time::Duration,
    /// Records older than this are deleted (archive files included); `None`: kept forever.
    pub retention: Option<time::Duration>,
    /// The most records moved in one maintenance step (bounds how long the writer pauses).
    pub step_records: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    chain: String,
    first_seq: i64,
    last_seq: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArchivedRecord {
    seq: i64,
    chain_version: Option<i64>,
    prev_hash: Option<String>,
    record_hash: Option<String>,
    values: Vec<Option<String>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Line {
    Seal(BundleSeal),
    Record(ArchivedRecord),
    End { records: u64 },
}

/// The file name of a chain's range.
pub fn file_name(chain: &str, first_seq: i64, last_seq: i64) -> String {
    format!("{chain}-{first_seq:012}-{last_seq:012}.jsonl.gz")
}

/// Writes the sealed batches `batches` (each a seal and its records, in sequence) to a
/// new archive file in `dir`, durably (written, synced, renamed into place, directory
/// synced). Returns the file's name.
pub fn write(
    dir: &Path,
    chain: &str,
    batches: &[(BundleSeal, Vec<StoredRecord>)],
) -> Result<String, JournalError> {
    let io = |error: std::io::Error| JournalError::Store(format!("archive: {error}"));
    let (Some(first), Some(last)) = (batches.first(), batches.last()) else {
        return Err(JournalError::Store("archive: nothing to archive".into()));
    };
    let name = file_name(chain, first.0.first_seq, last.0.last_seq);
    std::fs::create_dir_all(dir).map_err(io)?;
    let partial = dir.join(format!(".{name}.partial"));
    let file = std::fs::File::create(&partial).map_err(io)?;
    let mut out = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    fn line(out: &mut impl std::io::Write, value: &impl Serialize) -> Result<(), JournalError> {
        serde_json::to_writer(&mut *out, value)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|error| JournalError::Store(format!("archive: {error}")))
    }
    line(
        &mut out,
        &Header {
            format: FORMAT.to_owned(),
            chain: chain.to_owned(),
            first_seq: first.0.first_seq,
            last_seq: last.0.last_seq,
        },
    )?;
    let mut count = 0u64;
    for (seal, records) in batches {
        line(&mut out, &Line::Seal(seal.clone()))?;
        for record in records {
            count += 1;
            line(
                &mut out,
                &Line::Record(ArchivedRecord {
                    seq: record.seq,
                    chain_version: record.chain_version,
                    prev_hash: record.prev_hash.clone(),
                    record_hash: record.record_hash.clone(),
                    values: record.values.clone(),
                }),
            )?;
        }
    }
    line(&mut out, &Line::End { records: count })?;
    let buffered = out.finish().map_err(io)?;
    let file = buffered.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&partial, dir.join(&name)).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(name)
}

fn archive_entry<R>(row: &R) -> ArchiveEntry
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database>,
{
    ArchiveEntry {
        first_seq: row.get(0),
        last_seq: row.get(1),
        file: row.get(2),
        head_hash: row.get(3),
        last_at: row.get(4),
        archived_at: row.get(5),
        expired_at: row.get(6),
    }
}

const ARCHIVE_COLUMNS: &str =
    "first_seq, last_seq, file, head_hash, last_at, archived_at, expired_at";

/// The archived and expired ranges of `chain`, oldest first.
pub async fn list(reader: &mut Reader, chain: &str) -> Result<Vec<ArchiveEntry>, JournalError> {
    let rows = match reader {
        Reader::Sqlite(connection) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ARCHIVE_COLUMNS} FROM archives ORDER BY first_seq"
        )))
        .fetch_all(connection)
        .await
        .map(|rows| rows.iter().map(archive_entry).collect()),
        Reader::Postgres(connection) => sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ARCHIVE_COLUMNS} FROM archives WHERE chain = $1 ORDER BY first_seq"
        )))
        .bind(chain)
        .fetch_all(connection)
        .await
        .map(|rows| rows.iter().map(archive_entry).collect()),
    };
    rows.map_err(super::store::store_error)
}

/// Why feeding an archive stopped.
#[derive(Debug)]
pub enum FeedError {
    /// The archive does not verify.
    Failure(Failure),
    /// It could not be read at all.
    Store(JournalError),
}

/// Feeds the range `entry` to `verifier`: an expired range anchors what follows; an
/// archived one is read back from its file in `dir` and checked record by record.
pub async fn feed(
    entry: &ArchiveEntry,
    dir: Option<&Path>,
    verifier: &mut ChainVerifier,
    progress: &mut (dyn FnMut(&str, i64) + Send),
) -> Result<(), FeedError> {
    let failure = |reason| {
        FeedError::Failure(Failure {
            seq: entry.first_seq,
            message_id: String::new(),
            reason,
        })
    };
    if entry.expired_at.is_some() {
        let hash = super::chain::parse_hash(&entry.head_hash)
            .ok_or_else(|| failure("an expired range's anchor is not a hash"))?;
        verifier.anchor(
            hash,
            entry.last_seq + 1,
            (entry.last_seq - entry.first_seq + 1) as u64,
        );
        return Ok(());
    }
    let Some(dir) = dir else {
        return Err(FeedError::Store(JournalError::Store(
            "the journal has archive files but no archive directory was given".into(),
        )));
    };
    let file = match std::fs::File::open(dir.join(&entry.file)) {
        Ok(file) => file,
        Err(_) => return Err(failure("an archive file is missing")),
    };
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    let mut lines = reader.lines();
    let corrupt = || failure("an archive file is truncated or corrupt");
    let header: Header = lines
        .next()
        .and_then(|line| line.ok())
        .and_then(|line| serde_json::from_str(&line).ok())
        .ok_or_else(corrupt)?;
    if header.format != FORMAT
        || header.first_seq != entry.first_seq
        || header.last_seq != entry.last_seq
    {
        return Err(failure("an archive file is not the one indexed"));
    }
    let mut count = 0u64;
    let mut ended = false;
    for line in lines {
        let line = line.map_err(|_| corrupt())?;
        if ended {
            return Err(corrupt());
        }
        match serde_json::from_str::<Line>(&line).map_err(|_| corrupt())? {
            Line::Seal(seal) => verifier.seal(seal).map_err(FeedError::Failure)?,
            Line::Record(record) => {
                count += 1;
                let record = StoredRecord {
                    seq: record.seq,
                    chain_version: record.chain_version,
                    prev_hash: record.prev_hash,
                    record_hash: record.record_hash,
                    values: record.values,
                };
                if record.values.len() != super::chain::CHAINED_FIELDS.len() {
                    return Err(corrupt());
                }
                verifier.record(&record, true).map_err(FeedError::Failure)?;
                if record.seq % 16_384 == 0 {
                    progress(&header.chain, record.seq);
                }
            }
            Line::End { records } => {
                if records != count {
                    return Err(corrupt());
                }
                ended = true;
            }
        }
    }
    if !ended || verifier.next_seq() != Some(entry.last_seq + 1) {
        return Err(corrupt());
    }
    Ok(())
}

/// What one maintenance step decided for a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Move these sealed records out of the store: to `file`, or (empty `file`) straight
    /// to expiry because the policy keeps no archive and they are past retention.
    Archive(ArchiveEntry),
    /// Delete this archived range's file: it is past retention.
    Expire(ArchiveEntry),
}

fn parse_at(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Decides (and, for archiving, writes the file of) the next maintenance step of `chain`
/// at `now`, reading through `reader`; the store applies it in one transaction.
pub async fn plan(
    reader: &mut Reader,
    chain: &str,
    policy: &Policy,
    now: time::OffsetDateTime,
) -> Result<Option<Step>, JournalError> {
    use futures_util::TryStreamExt as _;
    let expired_before = policy.retention.map(|retention| now - retention);
    let entries = list(reader, chain).await?;
    // Archive files past retention go first.
    if let Some(cutoff) = expired_before
        && let Some(entry) = entries.iter().find(|entry| {
            entry.expired_at.is_none() && parse_at(&entry.last_at).is_some_and(|at| at < cutoff)
        })
    {
        let mut entry = entry.clone();
        entry.expired_at = Some(rfc3339(now));
        return Ok(Some(Step::Expire(entry)));
    }
    let archived_upto = entries.last().map_or(0, |entry| entry.last_seq);
    let cutoff = match (&policy.dir, expired_before) {
        (Some(_), _) => now - policy.after,
        (None, Some(cutoff)) => cutoff,
        (None, None) => return Ok(None),
    };
    let mut seals = Vec::new();
    let mut count = 0i64;
    {
        let mut stream = reader.seals(chain, archived_upto);
        while let Some(seal) = stream.try_next().await? {
            let old = parse_at(&seal.sealed_at).is_some_and(|at| at < cutoff);
            let fits =
                seals.is_empty() || count + seal.last_seq - seal.first_seq < policy.step_records;
            // Only a contiguous run of old batches right after what is archived.
            let contiguous = seal.first_seq
                == seals
                    .last()
                    .map_or(archived_upto + 1, |last: &BundleSeal| last.last_seq + 1);
            if !old || !fits || !contiguous {
                break;
            }
            count += seal.last_seq - seal.first_seq + 1;
            seals.push(seal);
        }
    }
    let (Some(first), Some(last)) = (seals.first().cloned(), seals.last().cloned()) else {
        return Ok(None);
    };
    let file = match &policy.dir {
        Some(dir) => {
            let mut batches = Vec::with_capacity(seals.len());
            let mut records: Vec<StoredRecord> = reader
                .records(chain, first.first_seq - 1)
                .try_take_while(|record| std::future::ready(Ok(record.seq <= last.last_seq)))
                .try_collect()
                .await?;
            for seal in seals {
                let rest = records.split_off(
                    records
                        .iter()
                        .position(|record| record.seq > seal.last_seq)
                        .unwrap_or(records.len()),
                );
                batches.push((seal, std::mem::replace(&mut records, rest)));
            }
            let dir = dir.clone();
            let chain = chain.to_owned();
            tokio::task::spawn_blocking(move || write(&dir, &chain, &batches))
                .await
                .map_err(|_| JournalError::Store("archive: the writer task failed".into()))??
        }
        None => String::new(),
    };
    let expired = file.is_empty();
    Ok(Some(Step::Archive(ArchiveEntry {
        first_seq: first.first_seq,
        last_seq: last.last_seq,
        file,
        head_hash: last.head_hash,
        last_at: last.sealed_at,
        archived_at: rfc3339(now),
        expired_at: expired.then(|| rfc3339(now)),
    })))
}

/// Deletes an expired range's archive file (after the store marked it expired).
pub fn remove_file(dir: Option<&Path>, entry: &ArchiveEntry) {
    if let Some(dir) = dir
        && !entry.file.is_empty()
        && let Err(error) = std::fs::remove_file(dir.join(&entry.file))
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %error, "cannot delete an expired journal archive");
    }
}
