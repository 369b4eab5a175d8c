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
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_consumer: HashMap<ClientId, usize>,
}

/// The node's in-flight exchanges.
#[derive(Debug, Default)]
pub struct Admission {
    counts: Mutex<Counts>,
}

/// One admitted exchange; dropping it frees its place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    consumer: ClientId,
}

impl Admission {
    /// A new, empty count.
    pub fn new() -> Arc<Self> {
        Arc::new(Admission::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one exchange of `consumer` (an authenticated identity: the map
    /// is bounded by the registry) or refuses it at once.
    pub fn admit(
        self: &Arc<Self>,
        consumer: &ClientId,
        limits: &Limits,
    ) -> Result<Ticket, GatewayError> {
        let mut counts = self.lock();
        if counts.total >= limits.max_concurrent_requests {
            return Err(GatewayError::new(
                ErrorCode::GatewayOverloaded,
                "too many exchanges in flight; try again shortly",
            ));
        }
        let mine = counts.per_consumer.get(consumer).copied().unwrap_or(0);
        if mine >= limits.max_in_flight_per_consumer {
            return Err(GatewayError::new(
                ErrorCode::InFlightShareExceeded,
                "this client already has its share of the node's exchanges in flight",
            )
            .with_retry_after(Duration::from_secs(1)));
        }
        counts.total += 1;
        *counts.per_consumer.entry(consumer.clone()).or_insert(0) += 1;
        Ok(Ticket {
            admission: self.clone(),
            consumer: consumer.clone(),
        })
    }

    /// Exchanges in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admission.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_consumer.get_mut(&self.consumer) {
            *count -= 1;
            if *count == 0 {
                counts.per_consumer.remove(&self.consumer);
            }
        }
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
}
