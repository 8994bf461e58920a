//! Wall-clock time in nanoseconds, on the scale of the kernel's receive timestamps.

use meridian_proto::NtpTimestamp;

/// Unix second the era of a timestamp is chosen around (2033): good from 1965 to 2101.
const PIVOT: i64 = 2_000_000_000;

/// Nanoseconds since the Unix epoch of `t` (rounded to the nanosecond).
pub fn unix_ns(t: NtpTimestamp) -> u64 {
    let (secs, nanos) = t.to_unix(PIVOT);
    u64::try_from(secs).unwrap_or(0) * 1_000_000_000 + u64::from(nanos)
}

/// CLOCK_REALTIME now, in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    unix_ns(meridian_os::read_realtime())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_unix_time_to_the_nanosecond() {
        let t = NtpTimestamp::from_unix(1_800_000_000, 123_456_789);
        assert_eq!(unix_ns(t), 1_800_000_000_123_456_789);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(realtime_ns().abs_diff(now) < 1_000_000_000);
    }
}
