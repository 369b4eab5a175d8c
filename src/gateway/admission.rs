//! Admission: how many exchanges run at once, in all and per consumer.
//!
//! Owns the node's in-flight count and each authenticated consumer's share of
//! it. A request is admitted only while the node is under
//! `limits.max_concurrent_requests` **and** its consumer is under
//! `limits.max_in_flight_per_consumer`, so one tenant, however slow or busy,
//! always leaves room for the others. Refusals are immediate (never a queue):
//! `gateway.overloaded` when the node is full, `ratelimit.in_flight_share_exceeded`
//! when the consumer is. The limits are read at each admission, so a reload
//! resizes them without dropping anything in flight.
//!
//! Does not own: who the consumer is (the registry authenticates it) or the
//! quotas of contracts (rate and daily, in `contract::quota`).

use crate::config::Limits;
use crate::error::{ErrorCode, GatewayError};
use crate::identity::ClientId;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each consumer's in-flight count, by its authenticated identity (shared, so that copying
/// the map to add a consumer copies pointers, not identities).
type Counts = foldhash::HashMap<Arc<ClientId>, Arc<AtomicUsize>>;

/// The node's in-flight exchanges.
///
/// No lock is held across an admission, and an admission writes only two cache lines that
/// other threads share (issue 12, scaling with cores): the node's count, and the consumer's
/// count (whose reference count sits on the same line). The consumers' counts are found in a
/// copy-on-write map read through `ArcSwap` (no shared write to read it); a consumer's first
/// admission copies the map once, under a mutex that only such first admissions take (the
/// registry bounds the consumers). A reload keeps the map, so a consumer's count carries
/// across it. A place is taken by incrementing first and checking the value it had, and
/// given back at once when over the cap, so concurrent admissions near a cap can only
/// refuse, never admit past it.
#[derive(Debug, Default)]
pub struct Admission {
    total: AtomicUsize,
    /// Authenticated consumers only (the registry bounds the keys); an entry stays when its
    /// count returns to zero, so its atomic is not re-created per exchange.
    per_consumer: ArcSwap<Counts>,
    /// Serialises the copies that add a consumer.
    adding: Mutex<()>,
}

/// One admitted exchange; dropping it frees its place. It borrows the node's count (the
/// exchange runs within the gateway's lifetime), so taking one does not touch a reference
/// count every exchange shares.
#[derive(Debug)]
pub struct Ticket<'a> {
    total: &'a AtomicUsize,
    consumer: Arc<AtomicUsize>,
}

/// Takes one place under `cap`, or leaves the count as it was.
fn take(count: &AtomicUsize, cap: usize) -> bool {
    if count.fetch_add(1, Ordering::AcqRel) < cap {
        true
    } else {
        count.fetch_sub(1, Ordering::AcqRel);
        false
    }
}

impl Admission {
    /// A new, empty count.
    pub fn new() -> Arc<Self> {
        Arc::new(Admission::default())
    }

    fn counter(&self, consumer: &ClientId) -> Arc<AtomicUsize> {
        if let Some(count) = self.per_consumer.load().get(consumer) {
            return count.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.per_consumer.load_full();
        if let Some(count) = current.get(consumer) {
            return count.clone();
        }
        let count = Arc::new(AtomicUsize::new(0));
        let mut next = Counts::clone(&current);
        next.insert(Arc::new(consumer.clone()), count.clone());
        self.per_consumer.store(Arc::new(next));
        count
    }

    /// Admits one exchange of `consumer` (an authenticated identity: the map
    /// is bounded by the registry) or refuses it at once.
    pub fn admit(&self, consumer: &ClientId, limits: &Limits) -> Result<Ticket<'_>, GatewayError> {
        if !take(&self.total, limits.max_concurrent_requests) {
            return Err(GatewayError::new(
                ErrorCode::GatewayOverloaded,
                "too many exchanges in flight; try again shortly",
            ));
        }
        let mine = self.counter(consumer);
        if !take(&mine, limits.max_in_flight_per_consumer) {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(GatewayError::new(
                ErrorCode::InFlightShareExceeded,
                "this client already has its share of the node's exchanges in flight",
            )
            .with_retry_after(Duration::from_secs(1)));
        }
        Ok(Ticket {
            total: &self.total,
            consumer: mine,
        })
    }

    /// Exchanges in flight now.
    pub fn in_flight(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.consumer.fetch_sub(1, Ordering::AcqRel);
        self.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, share: usize) -> Limits {
        let mut errors = Vec::new();
        let raw = crate::config::raw::RawLimits {
            max_concurrent_requests: total,
            max_in_flight_per_consumer: Some(share),
            ..Default::default()
        };
        let limits = Limits::build(&raw, std::path::Path::new("t"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        limits
    }

    /// Finding 2 of issue 7: one tenant at its share leaves room for the others.
    /// 003 Điều 50 khoản 1: one consumer cannot interrupt the service of the others.
    #[test]
    fn one_consumer_cannot_take_another_consumers_room() {
        let admission = Admission::new();
        let greedy: ClientId = "VN/GOV/000.00.00.H29/dvc-portal".parse().expect("id");
        let other: ClientId = "VN/GOV/000.00.00.G12/land-registry".parse().expect("id");
        let limits = limits(4, 2);
        let held: Vec<Ticket> = (0..2)
            .map(|_| admission.admit(&greedy, &limits).expect("within share"))
            .collect();
        let refusal = admission.admit(&greedy, &limits).expect_err("over share");
        assert_eq!(refusal.code(), ErrorCode::InFlightShareExceeded);
        let _a = admission
            .admit(&other, &limits)
            .expect("the other still has room");
        let _b = admission
            .admit(&other, &limits)
            .expect("the other still has room");
        assert_eq!(admission.in_flight(), 4);
        drop(held);
        assert_eq!(admission.in_flight(), 2);
        let _c = admission.admit(&greedy, &limits).expect("share freed");
    }

    /// 003 Điều 50 khoản 1: beyond the node's total, requests are shed at once, never queued.
    #[test]
    fn the_node_total_is_a_hard_cap() {
        let admission = Admission::new();
        let limits = limits(2, 2);
        let a: ClientId = "VN/GOV/000.00.00.H29/a".parse().expect("id");
        let b: ClientId = "VN/GOV/000.00.00.H29/b".parse().expect("id");
        let _one = admission.admit(&a, &limits).expect("room");
        let _two = admission.admit(&b, &limits).expect("room");
        assert_eq!(
            admission.admit(&b, &limits).expect_err("full").code(),
            ErrorCode::GatewayOverloaded
        );
        // A reload that raises the cap takes effect at the next admission.
        let bigger = self::limits(3, 2);
        let _three = admission.admit(&b, &bigger).expect("resized");
    }

    /// 003 Điều 50 khoản 1: consumers first seen at the same moment on several threads each
    /// get a count of their own, and none is lost to another's copy of the map: every one
    /// of them is held to its share afterwards.
    #[test]
    fn consumers_added_at_once_each_keep_their_count() {
        let admission = Admission::new();
        let limits = limits(1_000, 1);
        let consumers: Vec<ClientId> = (0..32)
            .map(|i| format!("VN/GOV/000.00.00.H29/c{i}").parse().expect("id"))
            .collect();
        let tickets: Vec<Ticket<'_>> = std::thread::scope(|scope| {
            let handles: Vec<_> = consumers
                .chunks(4)
                .map(|mine| {
                    let (admission, limits) = (&admission, &limits);
                    scope.spawn(move || {
                        mine.iter()
                            .map(|c| admission.admit(c, limits).expect("first of its share"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        assert_eq!(admission.in_flight(), 32);
        for consumer in &consumers {
            let refusal = admission
                .admit(consumer, &limits)
                .expect_err("its one place is held");
            assert_eq!(refusal.code(), ErrorCode::InFlightShareExceeded);
        }
        drop(tickets);
        assert_eq!(admission.in_flight(), 0);
        for consumer in &consumers {
            let _again = admission
                .admit(consumer, &limits)
                .expect("its place came back");
        }
    }

    /// 003 Điều 50 khoản 1 under contention: threads admitting at once never hold more than
    /// the node's total or one consumer's share, and every place comes back.
    #[test]
    fn concurrent_admissions_never_exceed_the_caps() {
        let admission = Admission::new();
        let limits = limits(6, 4);
        let consumers: Vec<ClientId> = ["VN/GOV/000.00.00.H29/a", "VN/GOV/000.00.00.H29/b"]
            .iter()
            .map(|id| id.parse().expect("id"))
            .collect();
        let peak = std::sync::Mutex::new((0usize, [0usize; 2]));
        // Counted by the holders themselves: the node's own count may show a refused
        // attempt's increment for an instant before it is given back.
        let held = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let held_total = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let (admission, limits, consumers, peak, held, held_total) =
                    (&admission, &limits, &consumers, &peak, &held, &held_total);
                scope.spawn(move || {
                    let which = thread % 2;
                    for _ in 0..2_000 {
                        if let Ok(ticket) = admission.admit(&consumers[which], limits) {
                            let mine = held[which].fetch_add(1, Ordering::SeqCst) + 1;
                            let total = held_total.fetch_add(1, Ordering::SeqCst) + 1;
                            let mut peak = peak.lock().expect("peak");
                            peak.0 = peak.0.max(total);
                            peak.1[which] = peak.1[which].max(mine);
                            drop(peak);
                            held[which].fetch_sub(1, Ordering::SeqCst);
                            held_total.fetch_sub(1, Ordering::SeqCst);
                            drop(ticket);
                        }
                    }
                });
            }
        });
        let (total, mine) = *peak.lock().expect("peak");
        assert!(total <= 6, "node total exceeded: {total}");
        assert!(mine.iter().all(|&m| m <= 4), "a share exceeded: {mine:?}");
        assert!(total > 0, "nothing was admitted");
        assert_eq!(admission.in_flight(), 0, "every place comes back");
    }
}
