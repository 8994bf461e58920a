//! The kernel's CLOCK_REALTIME behind the [`Clock`] trait.
//!
//! Reads use `clock_gettime`; adjustments use `clock_adjtime`: `ADJ_SETOFFSET` to step,
//! `ADJ_OFFSET_SINGLESHOT` to slew (what `adjtime(3)` does), `ADJ_FREQUENCY`, and the
//! status bits for leap seconds and synchronisation. Tests only ever call the read-only
//! paths ([`read_realtime`], [`read_kernel_state`]); every daemon they start runs without
//! CAP_SYS_TIME, so the kernel refuses the rest.

use std::io;

use meridian_clock::{Clock, ClockError, ClockStatus, LeapAction};
use meridian_proto::NtpTimestamp;

/// The kernel's realtime clock, now.
pub fn read_realtime() -> NtpTimestamp {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    NtpTimestamp::from_unix(ts.tv_sec, ts.tv_nsec as u32)
}

/// What the kernel's time-keeping state says, read without changing anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelState {
    /// Frequency correction in effect, ppm.
    pub frequency_ppm: f64,
    /// Whether the kernel considers the clock unsynchronised (STA_UNSYNC).
    pub unsynchronized: bool,
    /// Kernel estimated error, seconds.
    pub estimated_error: f64,
    /// Kernel maximum error, seconds.
    pub maximum_error: f64,
    /// The raw status word.
    pub status: i32,
}

/// Read the kernel's time-keeping state (`clock_adjtime` with no modes: changes nothing).
pub fn read_kernel_state() -> io::Result<KernelState> {
    let tx = adjtime(0, |_| {})?;
    Ok(KernelState {
        frequency_ppm: tx.freq as f64 / 65536.0,
        unsynchronized: tx.status & libc::STA_UNSYNC != 0,
        estimated_error: tx.esterror as f64 * 1e-6,
        maximum_error: tx.maxerror as f64 * 1e-6,
        status: tx.status,
    })
}

fn adjtime(modes: u32, set: impl FnOnce(&mut libc::timex)) -> io::Result<libc::timex> {
    // SAFETY: timex is a plain C struct; all-zero is valid.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = modes;
    set(&mut tx);
    // SAFETY: `tx` is a valid, initialised timex for the duration of the call.
    let rc = unsafe { libc::clock_adjtime(libc::CLOCK_REALTIME, &mut tx) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(tx)
    }
}

/// Estimate the clock's precision the way ntpd does: the log2 of the time it takes to
/// read the clock, or of its resolution if that is coarser.
pub fn measure_precision() -> i8 {
    let mut resolution = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_getres(libc::CLOCK_REALTIME, &mut resolution) };
    let mut best = f64::MAX;
    for _ in 0..64 {
        let a = read_realtime();
        let b = read_realtime();
        let d = b.diff(a).to_seconds_f64();
        if d > 0.0 && d < best {
            best = d;
        }
    }
    let res = resolution.tv_sec as f64 + resolution.tv_nsec as f64 * 1e-9;
    let tick = best.max(res).max(1e-9);
    tick.log2().ceil().clamp(-30.0, 0.0) as i8
}

/// The kernel clock. Adjusting it needs CAP_SYS_TIME.
#[derive(Debug)]
pub struct KernelClock {
    precision: i8,
}

impl KernelClock {
    /// Open the kernel clock, measuring its precision once.
    pub fn new() -> Self {
        KernelClock {
            precision: measure_precision(),
        }
    }
}

impl Default for KernelClock {
    fn default() -> Self {
        Self::new()
    }
}

fn os_error(op: &'static str) -> impl FnOnce(io::Error) -> ClockError {
    move |source| ClockError::Os { op, source }
}

impl Clock for KernelClock {
    fn now(&self) -> Result<NtpTimestamp, ClockError> {
        Ok(read_realtime())
    }

    fn precision(&self) -> i8 {
        self.precision
    }

    fn step(&mut self, offset: f64) -> Result<(), ClockError> {
        let secs = offset.floor();
        let nanos = ((offset - secs) * 1e9).round().min(999_999_999.0);
        adjtime(libc::ADJ_SETOFFSET | libc::ADJ_NANO, |tx| {
            tx.time.tv_sec = secs as libc::time_t;
            tx.time.tv_usec = nanos as libc::suseconds_t;
        })
        .map(drop)
        .map_err(os_error("step"))
    }

    fn slew(&mut self, offset: f64) -> Result<(), ClockError> {
        let micros = (offset * 1e6).round() as libc::c_long;
        adjtime(libc::ADJ_OFFSET_SINGLESHOT, |tx| tx.offset = micros)
            .map(drop)
            .map_err(os_error("slew"))
    }

    fn set_frequency(&mut self, ppm: f64) -> Result<(), ClockError> {
        let scaled = (ppm.clamp(-500.0, 500.0) * 65536.0).round() as libc::c_long;
        adjtime(libc::ADJ_FREQUENCY, |tx| tx.freq = scaled)
            .map(drop)
            .map_err(os_error("set_frequency"))
    }

    fn frequency(&self) -> Result<f64, ClockError> {
        read_kernel_state()
            .map(|s| s.frequency_ppm)
            .map_err(os_error("read frequency"))
    }

    fn set_leap(&mut self, leap: LeapAction) -> Result<(), ClockError> {
        let current = read_kernel_state().map_err(os_error("read status"))?.status;
        let cleared = current & !(libc::STA_INS | libc::STA_DEL);
        let status = match leap {
            LeapAction::None => cleared,
            LeapAction::Insert => cleared | libc::STA_INS,
            LeapAction::Delete => cleared | libc::STA_DEL,
        };
        adjtime(libc::ADJ_STATUS, |tx| tx.status = status)
            .map(drop)
            .map_err(os_error("set_leap"))
    }

    fn set_status(&mut self, status: ClockStatus) -> Result<(), ClockError> {
        let current = read_kernel_state().map_err(os_error("read status"))?.status;
        let bits = if status.synchronized {
            current & !libc::STA_UNSYNC
        } else {
            current | libc::STA_UNSYNC
        };
        adjtime(
            libc::ADJ_STATUS | libc::ADJ_ESTERROR | libc::ADJ_MAXERROR,
            |tx| {
                tx.status = bits;
                tx.esterror = (status.estimated_error * 1e6) as libc::c_long;
                tx.maxerror = (status.maximum_error * 1e6) as libc::c_long;
            },
        )
        .map(drop)
        .map_err(os_error("set_status"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Only read-only calls here: the machine's clock must never change under test.

    #[test]
    fn realtime_agrees_with_std() {
        let ours = read_realtime().to_unix(1_700_000_000);
        let std_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let diff = (ours.0 as f64 + ours.1 as f64 * 1e-9) - std_now.as_secs_f64();
        assert!(diff.abs() < 0.5, "difference {diff}");
    }

    #[test]
    fn kernel_state_reads_without_privilege_change() {
        let state = read_kernel_state().expect("clock_adjtime with modes=0 is read-only");
        assert!(state.frequency_ppm.abs() <= 512.0, "{state:?}");
        assert!(state.maximum_error >= 0.0);
    }

    #[test]
    fn precision_is_plausible() {
        let p = measure_precision();
        // Somewhere between a nanosecond and a millisecond on any real machine.
        assert!((-30..=-10).contains(&p), "precision {p}");
    }
}
