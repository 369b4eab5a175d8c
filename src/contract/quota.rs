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
use std::sync::Mutex;
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

/// (the local day counted, requests that day); no day before the first request.
type DailyCount = (Option<Date>, u64);

/// The runtime limits of one contract.
#[derive(Debug)]
pub struct ContractQuota {
    settings: QuotaSettings,
    limiter: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware>>,
    /// The daily limit and its count.
    daily: Option<(u64, Mutex<DailyCount>)>,
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
        let daily = daily.map(|limit| (limit, Mutex::new((None, 0))));
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
            let mut guard = state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if guard.0 != Some(local.date()) {
                *guard = (Some(local.date()), 0);
            }
            if guard.1 >= *limit {
                let midnight = local.date().next_day().map_or(local, |d| {
                    d.with_hms(0, 0, 0)
                        .map_or(local, |dt| dt.assume_offset(local.offset()))
                });
                let wait = (midnight - local)
                    .try_into()
                    .unwrap_or(Duration::from_secs(60));
                return Err(QuotaRefusal::Daily(wait));
            }
            guard.1 += 1;
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
}
