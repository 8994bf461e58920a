//! The kernel's CLOCK_REALTIME behind the [`Clock`] trait.
//!
//! Reads use `clock_gettime`; adjustments use `clock_adjtime`: `ADJ_SETOFFSET` to step,
//! `ADJ_OFFSET_SINGLESHOT` to slew (what `adjtime(3)` does), `ADJ_FREQUENCY`, and the
//! status bits for leap seconds and synchronisation. Tests only ever call the read-only
//! paths ([`read_realtime`], [`read_kernel_state`]) and the pure arithmetic of fast slews
//! ([`RateSetting`], [`FastSlew`]); every daemon they start runs without CAP_SYS_TIME, so
//! the kernel refuses the rest.
//!
//! Fast slews ([`Clock::slew_at`]) go beyond `adjtime`'s fixed 500 ppm the way chrony's
//! do: for the slew's duration the clock runs fast or slow by the slew rate on top of the
//! frequency correction, through the tick length (`ADJ_TICK`, ±10 %) plus
//! `ADJ_FREQUENCY` (±500 ppm) for the fine part. A worker thread restores both when the
//! duration is up and hands whatever its wake-up was late by (a few µs of offset) to
//! `adjtime`, so the correction comes out exact.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use meridian_clock::{Clock, ClockError, ClockStatus, LeapAction, MAX_SLEW_RATE};
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
    // The smallest power of two not below the tick (ceil of log2, without libm).
    (-30..=0).find(|&k| 2f64.powi(k) >= tick).unwrap_or(0) as i8
}

/// `adjtime`'s fixed slew rate, s/s.
const ADJTIME_RATE: f64 = 500e-6;
/// The kernel's limit on `ADJ_FREQUENCY`, ppm.
const MAX_FREQ_PPM: f64 = 500.0;

/// How the kernel is told to run the clock `ppm` fast: a tick length and a frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSetting {
    /// Microseconds the clock advances per tick of `1/USER_HZ` s (`timex.tick`).
    pub tick_us: i64,
    /// The rest of the rate, within ±500 ppm (`ADJ_FREQUENCY`).
    pub freq_ppm: f64,
}

impl RateSetting {
    /// The setting for a total rate of `ppm` (frequency correction plus any slew) with
    /// `user_hz` ticks a second, or `None` beyond what the kernel allows: a tick within
    /// ±10 % of nominal (9000..=11000 µs at USER_HZ 100, 100 ppm per µs) plus 500 ppm.
    pub fn for_rate(ppm: f64, user_hz: i64) -> Option<RateSetting> {
        if !ppm.is_finite() || user_hz <= 0 {
            return None;
        }
        let nominal = 1_000_000 / user_hz;
        let ppm_per_us = 1e6 / nominal as f64;
        // The tick takes the coarse part, the frequency the remainder (|rest| ≤ half a
        // tick step), so both stay well inside their limits.
        let steps = (ppm / ppm_per_us).round();
        let tick_us = nominal + steps as i64;
        let freq_ppm = ppm - steps * ppm_per_us;
        let tick_ok = (nominal * 9 / 10..=nominal * 11 / 10).contains(&tick_us);
        (tick_ok && freq_ppm.abs() <= MAX_FREQ_PPM).then_some(RateSetting { tick_us, freq_ppm })
    }

    /// The total rate this setting makes the clock run fast, ppm.
    pub fn ppm(&self, user_hz: i64) -> f64 {
        let nominal = 1_000_000 / user_hz;
        (self.tick_us - nominal) as f64 * 1e6 / nominal as f64 + self.freq_ppm
    }
}

/// A fast slew: `offset` s corrected at `rate` s/s (signed like the offset).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FastSlew {
    /// Seconds to correct (positive: advance the clock).
    pub offset: f64,
    /// Slew rate on top of the frequency correction, s/s, with the offset's sign.
    pub rate: f64,
}

impl FastSlew {
    /// Plan the correction of `offset` at `rate` (clamped to [`MAX_SLEW_RATE`]), or
    /// `None` when `adjtime` finishes it within a second anyway (|offset| ≤ 500 µs) or the
    /// rate is no faster than `adjtime`'s: no timer is worth it then.
    pub fn plan(offset: f64, rate: f64) -> Option<FastSlew> {
        let rate = rate.min(MAX_SLEW_RATE);
        (offset.is_finite() && offset.abs() > ADJTIME_RATE && rate > ADJTIME_RATE).then(|| {
            FastSlew {
                offset,
                rate: rate.copysign(offset),
            }
        })
    }

    /// How long the clock must run at the slew rate, seconds.
    pub fn duration(&self) -> f64 {
        self.offset / self.rate
    }

    /// The total rate (ppm) to run at during the slew, with frequency correction `base_ppm`.
    pub fn total_ppm(&self, base_ppm: f64) -> f64 {
        base_ppm + self.rate * 1e6
    }

    /// What is left to correct after running at the slew rate for `elapsed` seconds:
    /// negative if the timer woke late and the slew overshot.
    pub fn remainder(&self, elapsed: f64) -> f64 {
        self.offset - self.rate * elapsed.max(0.0)
    }
}

/// Ticks per second, the unit of `timex.tick`.
fn user_hz() -> i64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as i64
    } else {
        100
    }
}

/// The state shared with the worker that ends fast slews.
#[derive(Debug, Default)]
struct Slewing {
    /// The frequency correction the discipline asked for, ppm.
    base_ppm: f64,
    /// The fast slew in progress and when it started.
    active: Option<(FastSlew, Instant)>,
    /// The clock is being dropped: end the slew and stop.
    shutdown: bool,
}

type Shared = Arc<(Mutex<Slewing>, Condvar)>;

fn lock(shared: &Shared) -> MutexGuard<'_, Slewing> {
    shared.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the clock at `ppm` (tick and frequency), without touching any `adjtime` slew.
fn set_rate(ppm: f64, user_hz: i64) -> io::Result<()> {
    let setting = RateSetting::for_rate(ppm, user_hz)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "rate beyond ADJ_TICK"))?;
    adjtime(libc::ADJ_TICK | libc::ADJ_FREQUENCY, |tx| {
        tx.tick = setting.tick_us as libc::c_long;
        tx.freq = (setting.freq_ppm * 65536.0).round() as libc::c_long;
    })
    .map(drop)
}

fn singleshot(offset: f64) -> io::Result<()> {
    let micros = (offset * 1e6).round() as libc::c_long;
    adjtime(libc::ADJ_OFFSET_SINGLESHOT, |tx| tx.offset = micros).map(drop)
}

/// End the fast slew in progress, if any: back to the plain frequency correction, and
/// whatever the slew did not correct (or overshot) goes to `adjtime`.
fn finish(state: &mut Slewing, user_hz: i64) -> io::Result<()> {
    let Some((slew, started)) = state.active.take() else {
        return Ok(());
    };
    set_rate(state.base_ppm, user_hz)?;
    let remainder = slew.remainder(started.elapsed().as_secs_f64());
    singleshot(remainder)
}

/// The worker: sleeps until the fast slew in progress is due to end, and ends it.
fn run_worker(shared: Shared, user_hz: i64) {
    let mut state = lock(&shared);
    loop {
        if state.shutdown {
            let _ = finish(&mut state, user_hz);
            return;
        }
        state = match state.active {
            None => shared.1.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some((slew, started)) => {
                let end = started + Duration::from_secs_f64(slew.duration());
                match end.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => {
                        shared
                            .1
                            .wait_timeout(state, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                    // Nothing to report to: a failure here means the start failed too.
                    _ => {
                        let _ = finish(&mut state, user_hz);
                        state
                    }
                }
            }
        };
    }
}

/// The kernel clock. Adjusting it needs CAP_SYS_TIME.
#[derive(Debug)]
pub struct KernelClock {
    precision: i8,
    user_hz: i64,
    slewing: Shared,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl KernelClock {
    /// Open the kernel clock, measuring its precision once.
    pub fn new() -> Self {
        KernelClock {
            precision: measure_precision(),
            user_hz: user_hz(),
            slewing: Arc::default(),
            worker: None,
        }
    }

    /// Start the worker that ends fast slews, on first use (tools that only read the
    /// clock never need it).
    fn ensure_worker(&mut self) -> io::Result<()> {
        if self.worker.is_none() {
            let shared = Arc::clone(&self.slewing);
            let hz = self.user_hz;
            self.worker = Some(
                std::thread::Builder::new()
                    .name("meridian-slew".into())
                    .spawn(move || run_worker(shared, hz))?,
            );
        }
        Ok(())
    }

    /// Stop any fast slew, leaving its remainder to `adjtime` (which the caller may then
    /// replace) and the clock at its plain frequency correction.
    fn cancel_fast_slew(&mut self) -> io::Result<()> {
        let mut state = lock(&self.slewing);
        let result = finish(&mut state, self.user_hz);
        self.slewing.1.notify_all();
        result
    }
}

impl Drop for KernelClock {
    fn drop(&mut self) {
        // Never leave the tick changed behind us.
        lock(&self.slewing).shutdown = true;
        self.slewing.1.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
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
        self.cancel_fast_slew().map_err(os_error("step"))?;
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
        self.cancel_fast_slew().map_err(os_error("slew"))?;
        singleshot(offset).map_err(os_error("slew"))
    }

    fn slew_at(&mut self, offset: f64, rate: f64) -> Result<(), ClockError> {
        let Some(plan) = FastSlew::plan(offset, rate) else {
            return self.slew(offset);
        };
        self.ensure_worker()
            .map_err(os_error("start slew worker"))?;
        let mut state = lock(&self.slewing);
        // Replace, like adjtime: drop any slew in progress, pending adjtime one included.
        let _ = finish(&mut state, self.user_hz);
        singleshot(0.0).map_err(os_error("slew"))?;
        set_rate(plan.total_ppm(state.base_ppm), self.user_hz).map_err(os_error("slew"))?;
        state.active = Some((plan, Instant::now()));
        self.slewing.1.notify_all();
        Ok(())
    }

    fn set_frequency(&mut self, ppm: f64) -> Result<(), ClockError> {
        let ppm = ppm.clamp(-MAX_FREQ_PPM, MAX_FREQ_PPM);
        let mut state = lock(&self.slewing);
        state.base_ppm = ppm;
        // During a fast slew the new frequency applies under it.
        let total = state.active.map_or(ppm, |(slew, _)| slew.total_ppm(ppm));
        set_rate(total, self.user_hz).map_err(os_error("set_frequency"))
    }

    fn frequency(&self) -> Result<f64, ClockError> {
        let state = lock(&self.slewing);
        if state.active.is_some() {
            // The kernel's value includes the slew; the correction is the base.
            return Ok(state.base_ppm);
        }
        drop(state);
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
    fn rates_split_into_tick_and_frequency_within_kernel_limits() {
        // USER_HZ 100: a 10000 µs tick, 100 ppm per µs of tick.
        let s = RateSetting::for_rate(0.0, 100).unwrap();
        assert_eq!(
            s,
            RateSetting {
                tick_us: 10_000,
                freq_ppm: 0.0
            }
        );
        let s = RateSetting::for_rate(83_333.3 - 37.2, 100).unwrap();
        assert_eq!(s.tick_us, 10_833);
        assert!(s.freq_ppm.abs() <= 50.0, "{s:?}");
        assert!((s.ppm(100) - (83_333.3 - 37.2)).abs() < 1e-6);
        let s = RateSetting::for_rate(-83_333.3 + 480.0, 100).unwrap();
        assert_eq!(s.tick_us, 9_171);
        assert!((s.ppm(100) - (-83_333.3 + 480.0)).abs() < 1e-6);
        // The ends of the tick range, and beyond.
        assert_eq!(
            RateSetting::for_rate(100_000.0, 100).unwrap().tick_us,
            11_000
        );
        assert_eq!(
            RateSetting::for_rate(-100_000.0, 100).unwrap().tick_us,
            9_000
        );
        assert_eq!(RateSetting::for_rate(100_200.0, 100), None);
        assert_eq!(RateSetting::for_rate(f64::NAN, 100), None);
        // Another USER_HZ: 1000 µs ticks, 1000 ppm per µs.
        let s = RateSetting::for_rate(-50_400.0, 1000).unwrap();
        assert_eq!(s.tick_us, 950);
        assert!((s.freq_ppm + 400.0).abs() < 1e-9);
    }

    #[test]
    fn the_fastest_slew_is_reachable_at_any_frequency_correction() {
        for base in [-500.0, 0.0, 500.0] {
            for offset in [-0.1, 0.1] {
                let plan = FastSlew::plan(offset, MAX_SLEW_RATE).unwrap();
                let total = plan.total_ppm(base);
                let s = RateSetting::for_rate(total, 100).expect("within ADJ_TICK");
                assert!((s.ppm(100) - total).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn fast_slew_plan_and_remainder() {
        let plan = FastSlew::plan(-0.1, 1.0).unwrap();
        assert_eq!(plan.rate, -MAX_SLEW_RATE);
        assert!((plan.duration() - 1.2).abs() < 1e-9);
        assert!(plan.remainder(plan.duration()).abs() < 1e-12);
        // Woken 2 ms late: the overshoot is handed back.
        let over = plan.remainder(plan.duration() + 0.002);
        assert!((over - 0.002 * MAX_SLEW_RATE).abs() < 1e-12, "{over}");
        // Small offsets and slow rates are left to adjtime.
        assert_eq!(FastSlew::plan(400e-6, MAX_SLEW_RATE), None);
        assert_eq!(FastSlew::plan(0.1, 500e-6), None);
        assert!(FastSlew::plan(0.1, 0.01).is_some());
    }

    #[test]
    fn precision_is_plausible() {
        let p = measure_precision();
        // Somewhere between a nanosecond and a millisecond on any real machine.
        assert!((-30..=-10).contains(&p), "precision {p}");
    }
}
