//! The proleptic Gregorian calendar, for the dates NTP tools print (ntpq's reference
//! times, chronyc-style status, statistics file names): no time zones, no clock reads.

/// Month abbreviations as classic tools print them.
pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Weekday abbreviations, starting with Thursday: 1970-01-01 (day 0) was a Thursday, so
/// `WEEKDAYS_FROM_EPOCH[days.rem_euclid(7)]` names the weekday of a day number.
pub const WEEKDAYS_FROM_EPOCH: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];

/// Civil date (year, month 1–12, day 1–31) of a day number since 1970-01-01
/// (Howard Hinnant's days-to-civil algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        // 2026-11-25 (checked with Python's datetime): 20 782 days after the epoch.
        assert_eq!(civil_from_days(20_782), (2026, 11, 25));
        assert_eq!(WEEKDAYS_FROM_EPOCH[20_782 % 7], "Wed");
    }
}
