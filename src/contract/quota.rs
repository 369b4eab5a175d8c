//! Rate limits and daily quotas of one contract.
//!
//! The rate is a GCRA limiter (governor) with a burst; a request over it is
//! refused with 429 and `Retry-After`, never queued. The daily quota counts
//! requests per calendar day in Vietnam's time zone and resets at local midnight.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use time::{Date, OffsetDateTime};

/// A parsed rate such as `10/s`, `600/min`, `5000/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub requests: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (count, unit) = text
            .split_once('/')
            .ok_or_else(|| "rate must look like 10/s, 600/min or 5000/h".to_owned())?;
        let requests = count
            .trim()
            .parse::<NonZeroU32>()
            .map_err(|_| "rate count must be a positive integer".to_owned())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err("rate unit must be s, min or h".into()),
        };
        Ok(Rate { requests, per })
    }
}

/// What a refused request is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// Over the rate: try again after the duration.
    Rate(Duration),
    /// Over the daily quota: try again after local midnight.
    Daily(Duration),
}

/// The limits as configured; two quotas with equal settings can share state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    /// Sustained rate.
    pub rate: Option<Rate>,
    /// Burst above the rate.
    pub burst: Option<NonZeroU32>,
    /// Requests per local day.
    pub daily: Option<u64>,
}

/// The daily count packed in one word, so that taking a place is one compare-and-swap
/// and no lock is shared by the threads serving one contract (issue 12): the local day
/// (its Julian day number, 24 bits) above the requests counted that day (40 bits). Zero
/// is "no request yet": Julian day 0 is in 4713 BC.
struct DailyCount(AtomicU64);

const COUNT_BITS: u32 = 40;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
const DAY_MASK: u64 = (1 << (64 - COUNT_BITS)) - 1;

impl std::fmt::Debug for DailyCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = self.0.load(Ordering::Relaxed);
        f.debug_struct("DailyCount")
            .field("day", &(word >> COUNT_BITS))
            .field("count", &(word & COUNT_MASK))
            .finish()
    }
}

impl DailyCount {
    /// Counts one request on `day` unless `limit` requests were counted that day already.
    fn take(&self, day: Date, limit: u64) -> bool {
        let day = u64::try_from(day.to_julian_day()).unwrap_or(0) & DAY_MASK;
        let mut word = self.0.load(Ordering::Acquire);
        loop {
            let count = if word >> COUNT_BITS == day {
                word & COUNT_MASK
            } else {
                0
            };
            if count >= limit {
                return false;
            }
            // A limit above 2^40 per day is never reached; the count stops there.
            let next = (day << COUNT_BITS) | (count + 1).min(COUNT_MASK);
            match self
                .0
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(current) => word = current,
            }
        }
    }
}

/// The runtime limits of one contract.
#[derive(Debug)]
pub struct ContractQuota {
    settings: QuotaSettings,
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware>>,
    /// The daily limit and its count.
    daily: Option<(u64, DailyCount)>,
}

impl ContractQuota {
    /// Builds the limits; `burst` defaults to the rate's request count.
    pub fn new(rate: Option<Rate>, burst: Option<NonZeroU32>, daily: Option<u64>) -> Self {
        let daily_limit = daily;
        let limiter = rate.map(|rate| {
            let period = rate.per / rate.requests.get();
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(rate.requests))
                .allow_burst(burst.unwrap_or(rate.requests));
            RateLimiter::direct(quota)
        });
        let daily = daily.map(|limit| (limit, DailyCount(AtomicU64::new(0))));
        ContractQuota {
            settings: QuotaSettings {
                rate,
                burst,
                daily: daily_limit,
            },
            limiter,
            daily,
        }
    }

    /// The settings this quota was built from.
    pub fn settings(&self) -> QuotaSettings {
        self.settings
    }

    /// Takes one request from the limits, or says how long to wait.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), QuotaRefusal> {
        if let Some(limiter) = &self.limiter {
            limiter.check().map_err(|not_until| {
                QuotaRefusal::Rate(not_until.wait_time_from(DefaultClock::default().now()))
            })?;
        }
        if let Some((limit, state)) = &self.daily {
            let local = now.to_offset(crate::base::clock::VIETNAM_OFFSET);
            if !state.take(local.date(), *limit) {
                let midnight = local.date().next_day().map_or(local, |d| {
                    d.with_hms(0, 0, 0)
                        .map_or(local, |dt| dt.assume_offset(local.offset()))
                });
                let wait = (midnight - local)
                    .try_into()
                    .unwrap_or(Duration::from_secs(60));
                return Err(QuotaRefusal::Daily(wait));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        let rate: Rate = "600/min".parse().expect("valid");
        assert_eq!(rate.requests.get(), 600);
        assert_eq!(rate.per, Duration::from_secs(60));
        assert!("0/s".parse::<Rate>().is_err());
        assert!("10/day".parse::<Rate>().is_err());
        assert!("ten".parse::<Rate>().is_err());
    }

    /// Design §5 (no article): over the rate and burst, a request is refused with a wait.
    #[test]
    fn refuses_over_burst_with_a_wait() {
        let quota = ContractQuota::new(
            Some("1/min".parse().expect("valid")),
            NonZeroU32::new(2),
            None,
        );
        let now = OffsetDateTime::now_utc();
        assert!(quota.check(now).is_ok());
        assert!(quota.check(now).is_ok());
        match quota.check(now) {
            Err(QuotaRefusal::Rate(wait)) => assert!(wait > Duration::from_secs(1)),
            other => panic!("expected a rate refusal, got {other:?}"),
        }
    }

    /// Design §5 (no article): the daily quota resets at Vietnam midnight.
    #[test]
    fn daily_quota_resets_at_local_midnight() {
        let quota = ContractQuota::new(None, None, Some(2));
        let evening = time::macros::datetime!(2026-11-23 23:00 +7);
        assert!(quota.check(evening).is_ok());
        assert!(quota.check(evening).is_ok());
        match quota.check(evening) {
            Err(QuotaRefusal::Daily(wait)) => assert_eq!(wait, Duration::from_secs(3600)),
            other => panic!("expected a daily refusal, got {other:?}"),
        }
        let next_morning = time::macros::datetime!(2026-11-24 00:30 +7);
        assert!(quota.check(next_morning).is_ok());
    }

    /// Design §5 (no article): threads counting one contract's day at once take exactly
    /// its daily quota, no more and no fewer.
    #[test]
    fn concurrent_requests_take_exactly_the_daily_quota() {
        let quota = ContractQuota::new(None, None, Some(1_234));
        let noon = time::macros::datetime!(2026-11-23 12:00 +7);
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        if quota.check(noon).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 1_234);
        assert!(matches!(quota.check(noon), Err(QuotaRefusal::Daily(_))));
    }
}
