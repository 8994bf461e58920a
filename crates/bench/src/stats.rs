//! Measurements: latency percentiles and a watched process's CPU time and memory.
//!
//! CPU time comes from `/proc/PID/task/*/schedstat` (nanoseconds, all threads), falling
//! back to `utime + stime` of `/proc/PID/stat` (clock ticks, usually 10 ms) where
//! schedstat is missing. Memory is `VmRSS` and `VmHWM` (peak) of `/proc/PID/status`.
//! Datagrams a server's sockets dropped for lack of buffer space are the `drops` column
//! of `/proc/net/udp`.

use std::fs;

/// The `q`-quantile (0..=1) of sorted values, nearest rank; `None` when empty.
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of some values (the lower middle one for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[(v.len() - 1) / 2])
}

/// CPU time used so far by all threads of `pid`, in nanoseconds.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    schedstat_ns(pid).or_else(|| stat_cpu_ns(pid))
}

/// Time all threads of `pid` spent runnable but waiting for a CPU (the second field of
/// `schedstat`), in nanoseconds: how much other work on its CPU held it up.
pub fn process_wait_ns(pid: u32) -> Option<u64> {
    schedstat_field(pid, 1)
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    schedstat_field(pid, 0)
}

fn schedstat_field(pid: u32, field: usize) -> Option<u64> {
    let mut total = 0u64;
    let mut any = false;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().nth(field)?.parse::<u64>().ok()?;
        any = true;
    }
    any.then_some(total)
}

fn stat_cpu_ns(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields count from after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 11 and 12 here, from 0.
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 1_000_000_000 / meridian_os::host::clock_ticks_per_second())
}

/// Resident memory of `pid` in KiB: (current `VmRSS`, peak `VmHWM`).
pub fn process_memory_kib(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Datagrams dropped so far by all IPv4 UDP sockets bound to local `port` (the last
/// column of `/proc/net/udp`: receive buffer overflows and the like).
pub fn udp_port_drops(port: u16) -> Option<u64> {
    let text = fs::read_to_string("/proc/net/udp").ok()?;
    let suffix = format!(":{port:04X}");
    let mut total = 0;
    for line in text.lines().skip(1) {
        let mut cols = line.split_whitespace();
        let local = cols.nth(1)?;
        if local.ends_with(&suffix) {
            total += line.split_whitespace().last()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn median_ignores_nan() {
        assert_eq!(median(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn udp_drops_of_a_bound_port_are_readable() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        assert_eq!(udp_port_drops(port), Some(0));
    }

    #[test]
    fn own_process_is_measurable() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_ns(pid).unwrap() > 0);
        assert!(stat_cpu_ns(pid).is_some());
        let (rss, hwm) = process_memory_kib(pid).unwrap();
        assert!(rss > 0 && hwm >= rss);
    }
}
