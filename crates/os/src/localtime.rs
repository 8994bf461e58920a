//! Local calendar time, for the classic log prefix (`29 Sep 22:59:31 ntpdate[5323]: …`).

use meridian_proto::calendar::MONTHS;

/// Format a Unix time in the local time zone as ntpd's log prefix does:
/// day of month padded to two columns, month abbreviation, and `HH:MM:SS`.
pub fn human_log_time(unix_secs: i64) -> String {
    // SAFETY: `tm` is a plain C struct (all-zero is valid); localtime_r only writes it
    // and is thread-safe, unlike localtime.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let t: libc::time_t = unix_secs as libc::time_t;
        if libc::localtime_r(&t, &mut tm).is_null() {
            return format!("{unix_secs}");
        }
        tm
    };
    format!(
        "{:2} {} {:02}:{:02}:{:02}",
        tm.tm_mday,
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_has_classic_shape() {
        let s = human_log_time(1_700_000_000);
        let parts: Vec<&str> = s.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{s}");
        assert!(MONTHS.contains(&parts[1]));
        assert_eq!(parts[2].len(), 8);
        assert_eq!(s.len(), 15, "day is padded to two columns: {s:?}");
    }
}
