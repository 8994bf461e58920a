//! Small facts about the host and the calling thread, for tools (the load generator):
//! CPU pinning and the clock tick of `/proc` CPU times.

use std::io;
use std::mem::{size_of, zeroed};

/// Pin the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: cpu_set_t is a plain bit array (all-zero is the empty set); `cpu` is within
    // the set's size (checked above); the set outlives the call and its size is exact.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's clock tick rate (`_SC_CLK_TCK`), the unit of CPU times in `/proc/PID/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant and has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_rate_is_plausible_and_a_bad_cpu_is_refused() {
        assert!((1..=10_000).contains(&clock_ticks_per_second()));
        assert!(pin_to_cpu(1 << 20).is_err());
    }
}
