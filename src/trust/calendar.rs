//! Vietnamese working days: Monday to Friday, less the public holidays the
//! configuration lists (Tết and the other holidays move every year, so they are
//! data, not code).

use std::collections::BTreeSet;
use time::{Date, Duration, Weekday};

/// A working-day calendar.
#[derive(Debug, Clone, Default)]
pub struct WorkingCalendar {
    holidays: BTreeSet<Date>,
}

impl WorkingCalendar {
    /// A calendar with the given public holidays.
    pub fn new(holidays: impl IntoIterator<Item = Date>) -> Self {
        WorkingCalendar {
            holidays: holidays.into_iter().collect(),
        }
    }

    /// Whether `day` is a working day.
    pub fn is_working_day(&self, day: Date) -> bool {
        !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday)
            && !self.holidays.contains(&day)
    }

    /// The `n`-th working day after `day` (not counting `day` itself).
    pub fn add_working_days(&self, day: Date, n: u32) -> Date {
        let mut current = day;
        let mut left = n;
        while left > 0 {
            current = current.saturating_add(Duration::days(1));
            if self.is_working_day(current) {
                left -= 1;
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    /// 003 Điều 50 khoản 2: working days, for the notice rule, skip weekends.
    #[test]
    fn skips_weekends() {
        let cal = WorkingCalendar::default();
        // Monday + 3 working days = Thursday; Friday + 3 = Wednesday.
        assert_eq!(
            cal.add_working_days(date!(2026 - 11 - 16), 3),
            date!(2026 - 11 - 19)
        );
        assert_eq!(
            cal.add_working_days(date!(2026 - 11 - 20), 3),
            date!(2026 - 11 - 25)
        );
        // Submitted on a Saturday: Monday, Tuesday, Wednesday.
        assert_eq!(
            cal.add_working_days(date!(2026 - 11 - 21), 3),
            date!(2026 - 11 - 25)
        );
    }

    /// 003 Điều 50 khoản 2: working days skip the configured public holidays.
    #[test]
    fn skips_configured_holidays() {
        // National Day holiday 2026: 1-2 September (Tuesday, Wednesday).
        let cal = WorkingCalendar::new([date!(2026 - 09 - 01), date!(2026 - 09 - 02)]);
        assert!(!cal.is_working_day(date!(2026 - 09 - 01)));
        assert_eq!(
            cal.add_working_days(date!(2026 - 08 - 31), 3),
            date!(2026 - 09 - 07)
        );
    }
}
