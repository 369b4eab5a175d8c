//! The answer cache of the gateway that serves a portal: answers a contract allows to
//! be cached (`cache: { allowed, ttl_seconds }`), kept in memory only.
//!
//! Owns: the entries (`moka`, bounded by bytes, each with its contract's TTL), their key
//! (contract and its revision, service, the subject's keyed digest, the request's
//! digest), **single-flight** (concurrent misses for one key share one upstream call),
//! staleness by the gateway's clock, and dropping entries: by a provider's invalidation
//! (service and subject), and when the contract they were fetched under changes or goes.
//!
//! Also owns the invalidation endpoint of the exchange listener ([`invalidate`],
//! `POST /exchange/v1/cache/invalidate`): a provider's gateway (a secure server of the
//! member that owns the service, by its mTLS certificate in the global configuration)
//! pushes "record changed / result revoked" (000 Điều 24 k3b).
//!
//! Does not own: whether a request may be answered (every authorisation phase runs before
//! the cache is asked: [`super::exchange`]), or the journal record of a hit (the pipeline
//! writes it, leg `cache`).
//!
//! Entries hold personal data: never written to disk, never logged; the key holds the
//! subject's keyed digest, never the identifier.

use crate::contract::CompiledContract;
use crate::error::GatewayError;
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// What the cache holds per entry besides the body: the key's and bookkeeping's share
/// of the weight, so a flood of tiny answers is bounded too.
const ENTRY_OVERHEAD_BYTES: usize = 256;

/// Which answer an entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    contract: Arc<str>,
    revision: Arc<str>,
    service: Arc<str>,
    subject: Option<Arc<str>>,
    request: [u8; 32],
}

impl CacheKey {
    /// The key of a request answered under `contract`: its service, the keyed digest of
    /// its data subject (when the contract names one), and a digest of the method, the
    /// canonical target and the body.
    pub fn new(
        contract: &CompiledContract,
        subject_digest: Option<&str>,
        method: &str,
        canonical_target: &str,
        body: &[u8],
    ) -> Self {
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for part in [method.as_bytes(), canonical_target.as_bytes(), body] {
            hash.update(&(part.len() as u64).to_be_bytes());
            hash.update(part);
        }
        let mut request = [0u8; 32];
        request.copy_from_slice(hash.finish().as_ref());
        CacheKey {
            contract: Arc::from(contract.id.as_str()),
            revision: Arc::from(contract.revision.as_str()),
            service: Arc::from(contract.service.to_string()),
            subject: subject_digest.map(Arc::from),
            request,
        }
    }
}

/// A cached answer: the body as the contract projected it, and when it was fetched.
#[derive(Debug, Clone)]
pub struct CachedAnswer {
    /// The answer's body (JSON, already projected to the contract's fields).
    pub body: bytes::Bytes,
    /// When the provider's answer came back (the gateway's clock).
    pub retrieved_at: OffsetDateTime,
    ttl: Duration,
}

/// How an answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This request called the provider.
    Live,
    /// From the cache: a stored entry, or the answer of a concurrent identical request
    /// whose upstream call this one shared.
    Cached,
}

struct Ttl;

impl moka::Expiry<CacheKey, CachedAnswer> for Ttl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &CachedAnswer,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The node's answer cache (see the module doc).
pub struct AnswerCache {
    entries: moka::future::Cache<CacheKey, CachedAnswer>,
    max_bytes: u64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("max_bytes", &self.max_bytes)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl AnswerCache {
    /// A cache holding at most `max_bytes` of answers (bodies plus a fixed overhead each).
    pub fn new(max_bytes: u64) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_key: &CacheKey, value: &CachedAnswer| {
                u32::try_from(value.body.len() + ENTRY_OVERHEAD_BYTES).unwrap_or(u32::MAX)
            })
            .expire_after(Ttl)
            .support_invalidation_closures()
            .build();
        AnswerCache { entries, max_bytes }
    }

    /// The configured bound, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The answer for `key`: a stored entry younger than `ttl` by the gateway's clock
    /// (`now`), or `fetch`'s, run once however many requests miss the key at the same
    /// time (the others wait for it and get its answer). A failed fetch is not stored;
    /// every request that waited on it gets its error.
    pub async fn get_or_fetch<F>(
        &self,
        key: CacheKey,
        ttl: Duration,
        now: OffsetDateTime,
        fetch: F,
    ) -> Result<(CachedAnswer, Source), GatewayError>
    where
        F: Future<Output = Result<(bytes::Bytes, OffsetDateTime), GatewayError>>,
    {
        if let Some(entry) = self.entries.get(&key).await {
            if now - entry.retrieved_at < ttl {
                metrics::counter!("datagate_cache_lookups_total", "outcome" => "hit").increment(1);
                return Ok((entry, Source::Cached));
            }
            self.entries.invalidate(&key).await;
        }
        let entry = self
            .entries
            .entry(key)
            .or_try_insert_with(async {
                let (body, retrieved_at) = fetch.await?;
                Ok::<_, GatewayError>(CachedAnswer {
                    body,
                    retrieved_at,
                    ttl,
                })
            })
            .await
            .map_err(|shared| (*shared).clone())?;
        let source = if entry.is_fresh() {
            Source::Live
        } else {
            Source::Cached
        };
        metrics::counter!("datagate_cache_lookups_total", "outcome" => match source {
            Source::Live => "miss",
            Source::Cached => "hit",
        })
        .increment(1);
        Ok((entry.into_value(), source))
    }

    /// Drops every entry of `service` about the subject whose keyed digest is `subject`
    /// (every entry of the service when `None`): a provider's "record changed".
    pub fn invalidate(&self, service: &str, subject: Option<&str>) {
        let service: Arc<str> = Arc::from(service);
        let subject: Option<Arc<str>> = subject.map(Arc::from);
        // Only fails without `support_invalidation_closures`, which the builder sets.
        let _ = self.entries.invalidate_entries_if(move |key, _| {
            key.service == service
                && subject
                    .as_ref()
                    .is_none_or(|s| key.subject.as_ref() == Some(s))
        });
    }

    /// Drops every entry fetched under a contract that is no longer in force as it was:
    /// `current` holds the `(id, revision)` of every contract the node holds now.
    pub fn retain_contracts(&self, current: HashSet<(String, String)>) {
        let _ = self.entries.invalidate_entries_if(move |key, _| {
            !current.contains(&(key.contract.to_string(), key.revision.to_string()))
        });
    }

    /// Runs the cache's pending maintenance (evictions, invalidations) now and returns
    /// `(entries, weighted bytes)`.
    pub async fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks().await;
        (self.entries.entry_count(), self.entries.weighted_size())
    }
}

/// The body of an invalidation: the service, and the subject whose record changed
/// (absent: every cached answer of the service).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalidation {
    service: String,
    #[serde(default)]
    subject: Option<String>,
}

/// The largest invalidation body read.
const MAX_INVALIDATION_BYTES: usize = 4096;

/// `POST /exchange/v1/cache/invalidate`: drops the cached answers of a service (about one
/// subject), for a secure server of the member that owns the service.
pub async fn invalidate(
    axum::extract::State(gateway): axum::extract::State<Arc<super::Gateway>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let outcome = async {
        let service = authorised_invalidation(&gateway, &parts)?;
        let receive = tokio::time::Instant::now() + gateway.runtime().limits.request_receive_timeout;
        let bytes =
            super::exchange::read_body(&parts, body, MAX_INVALIDATION_BYTES, receive).await?;
        let invalidation: Invalidation = serde_json::from_slice(&bytes).map_err(|_| {
            GatewayError::new(
                crate::error::ErrorCode::RequestBodyInvalid,
                "the body must be {\"service\": \"…\", \"subject\": \"…\"}",
            )
        })?;
        let id = invalidation
            .service
            .parse::<crate::identity::ServiceId>()
            .map_err(|_| {
                GatewayError::new(
                    crate::error::ErrorCode::RequestBodyInvalid,
                    "service must be a service id",
                )
            })?;
        if id.provider.member != service {
            return Err(GatewayError::new(
                crate::error::ErrorCode::CacheInvalidationNotAllowed,
                "only the service owner's gateway may invalidate its answers",
            ));
        }
        let digest = invalidation
            .subject
            .as_deref()
            .map(|subject| super::exchange::subject_digest(&gateway, subject));
        gateway.cache().invalidate(&invalidation.service, digest.as_deref());
        metrics::counter!("datagate_cache_invalidations_total").increment(1);
        tracing::info!(service = %invalidation.service, whole_service = digest.is_none(), "cache invalidated");
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => (
            axum::http::StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            "{\"invalidated\":true}",
        )
            .into_response(),
        Err(error) => error.into_problem(None),
    }
}

/// The member whose secure server called (mTLS certificate registered, effective).
fn authorised_invalidation(
    gateway: &super::Gateway,
    parts: &axum::http::request::Parts,
) -> Result<crate::identity::MemberId, GatewayError> {
    use crate::error::ErrorCode;
    let federation = gateway
        .federation()
        .ok_or_else(|| GatewayError::new(ErrorCode::RequestRouteNotFound, "no such route"))?;
    let now = gateway.clock().now();
    let global = federation.global(now)?;
    let certificate = parts
        .extensions
        .get::<crate::trust::PeerCertificate>()
        .ok_or_else(|| {
            GatewayError::new(
                ErrorCode::TrustCertificateMissing,
                "a client certificate is required",
            )
        })?;
    match global.authenticate_peer(&certificate.fingerprint_sha256, now) {
        Ok(crate::trust::global::Peer::SecureServer { member, .. }) => Ok(member),
        _ => Err(GatewayError::new(
            ErrorCode::CacheInvalidationNotAllowed,
            "only a registered, effective secure server may invalidate cached answers",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn contract(revision: &str) -> CompiledContract {
        let raw: crate::contract::RawContract = yaml_serde::from_str(
            "id: c1\nversion: 1\nconsumer: VN/GOV/000.00.00.H29/portal\n\
             service: VN/GOV/000.00.00.G10/db/citizen\noperations: [{ method: GET, path: \"/{id}\" }]\n\
             purposes: [P]\nlegal_basis: L\nclassification: internal\nallowed_fields: [/a]\n\
             valid_from: 2026-01-01T00:00:00Z\nvalid_until: 2030-01-01T00:00:00Z\n\
             cache: { allowed: true, ttl_seconds: 60 }\napproved_by: A\n",
        )
        .expect("contract yaml");
        let mut compiled = crate::contract::compile(
            &raw,
            std::path::Path::new("c.yaml"),
            std::path::Path::new("."),
        )
        .expect("compiles");
        compiled.revision = revision.to_owned();
        compiled
    }

    fn at(seconds: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + seconds).expect("time")
    }

    #[tokio::test]
    async fn concurrent_misses_for_one_key_share_one_fetch() {
        let cache = Arc::new(AnswerCache::new(1 << 20));
        let calls = Arc::new(AtomicUsize::new(0));
        let key = CacheKey::new(&contract("r1"), Some("s"), "GET", "/r1/x/1", b"");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls, key) = (cache.clone(), calls.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(key, Duration::from_secs(60), at(0), async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok((bytes::Bytes::from_static(b"{}"), at(0)))
                    })
                    .await
                    .expect("answer")
                    .1
            }));
        }
        let mut live = 0;
        for task in tasks {
            if task.await.expect("task") == Source::Live {
                live += 1;
            }
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(live, 1);
    }

    #[tokio::test]
    async fn an_entry_is_stale_by_the_gateway_clock_after_its_ttl() {
        let cache = AnswerCache::new(1 << 20);
        let key = CacheKey::new(&contract("r1"), Some("s"), "GET", "/r1/x/1", b"");
        let fetch = |n: u8| async move { Ok((bytes::Bytes::from(vec![n]), at(0))) };
        let ttl = Duration::from_secs(60);
        let (_, first) = cache
            .get_or_fetch(key.clone(), ttl, at(0), fetch(1))
            .await
            .expect("a");
        let (hit, second) = cache
            .get_or_fetch(key.clone(), ttl, at(59), fetch(2))
            .await
            .expect("b");
        let (_, third) = cache
            .get_or_fetch(key, ttl, at(60), fetch(3))
            .await
            .expect("c");
        assert_eq!(
            (first, second, third),
            (Source::Live, Source::Cached, Source::Live)
        );
        assert_eq!(hit.body.as_ref(), [1]);
    }

    #[tokio::test]
    async fn a_failed_fetch_is_not_stored() {
        let cache = AnswerCache::new(1 << 20);
        let key = CacheKey::new(&contract("r1"), None, "GET", "/r1/x/1", b"");
        let ttl = Duration::from_secs(60);
        let failed = cache
            .get_or_fetch(key.clone(), ttl, at(0), async {
                Err(GatewayError::new(ErrorCode::UpstreamUnavailable, "down"))
            })
            .await;
        assert_eq!(
            failed.expect_err("fails").code(),
            ErrorCode::UpstreamUnavailable
        );
        let (_, source) = cache
            .get_or_fetch(key, ttl, at(1), async { Ok((bytes::Bytes::new(), at(1))) })
            .await
            .expect("answer");
        assert_eq!(source, Source::Live);
    }

    #[tokio::test]
    async fn invalidation_and_contract_changes_drop_entries() {
        let cache = AnswerCache::new(1 << 20);
        let ttl = Duration::from_secs(60);
        let a = CacheKey::new(&contract("r1"), Some("alice"), "GET", "/r1/x/1", b"");
        let b = CacheKey::new(&contract("r1"), Some("bob"), "GET", "/r1/x/2", b"");
        for key in [&a, &b] {
            cache
                .get_or_fetch(key.clone(), ttl, at(0), async {
                    Ok((bytes::Bytes::new(), at(0)))
                })
                .await
                .expect("stored");
        }
        assert_eq!(cache.usage().await.0, 2);
        cache.invalidate("VN/GOV/000.00.00.G10/db/citizen", Some("alice"));
        assert_eq!(cache.usage().await.0, 1);
        let mut current = HashSet::new();
        current.insert(("c1".to_owned(), "r1".to_owned()));
        cache.retain_contracts(current.clone());
        assert_eq!(cache.usage().await.0, 1);
        current.clear();
        current.insert(("c1".to_owned(), "r2".to_owned()));
        cache.retain_contracts(current);
        assert_eq!(cache.usage().await.0, 0);
    }

    #[tokio::test]
    async fn the_cache_stays_within_its_byte_bound() {
        let cache = AnswerCache::new(64 * 1024);
        let ttl = Duration::from_secs(60);
        for i in 0..200u32 {
            let key = CacheKey::new(&contract("r1"), None, "GET", &format!("/r1/x/{i}"), b"");
            cache
                .get_or_fetch(key, ttl, at(0), async {
                    Ok((bytes::Bytes::from(vec![b' '; 4096]), at(0)))
                })
                .await
                .expect("stored");
        }
        let (entries, bytes) = cache.usage().await;
        assert!(bytes <= 64 * 1024, "{bytes} bytes held");
        assert!(entries < 200 && entries > 0, "{entries} entries");
    }
}
