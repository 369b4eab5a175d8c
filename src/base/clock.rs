//! Time: Vietnam's time zone and the wall clock that deciding code takes.
//!
//! Code that decides by wall-clock time (contract validity, registrations,
//! daily quotas, journal timestamps) reads a [`Clock`] it was given, never the
//! system time directly, so tests can set the time. Deadlines and timeouts use
//! `tokio::time::Instant`, which `tokio::time::pause` controls in tests.

use std::fmt::Debug;
use std::sync::Mutex;
use time::{OffsetDateTime, UtcOffset};

/// Vietnam's time zone (UTC+7, no daylight saving), in which working days,
/// daily quotas and "today" are counted.
pub const VIETNAM_OFFSET: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

/// A source of wall-clock time.
pub trait Clock: Debug + Send + Sync {
    /// The current time in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one place that reads the system's time.
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that shows what it was set to, for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: OffsetDateTime) -> Self {
        ManualClock(Mutex::new(at))
    }

    /// Sets the time.
    pub fn set(&self, at: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the time forward.
    pub fn advance(&self, by: time::Duration) {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *guard += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = time::macros::datetime!(2026-12-01 09:00 +7);
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(time::Duration::hours(1));
        assert_eq!(clock.now(), start + time::Duration::hours(1));
    }
}
