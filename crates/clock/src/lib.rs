//! The one trait through which Meridian reads and adjusts a clock.
//!
//! Everything that wants the time or wants to change it goes through [`Clock`]: the
//! daemon's discipline, `ntpdate`, and the simulator. Real backends live in
//! `meridian-os` (the kernel clock, and an observe-only wrapper that never adjusts);
//! the simulator provides its own. Keeping the trait this small is what lets the
//! algorithms be tested without touching the machine's clock.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use meridian_proto::NtpTimestamp;

/// Why a clock operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// The operating system refused the call (for example without CAP_SYS_TIME).
    #[error("clock operation `{op}` failed: {source}")]
    Os {
        /// The operation that failed, for the log.
        op: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The backend does not adjust the clock (observe-only mode).
    #[error("clock is observe-only: `{0}` not applied")]
    ObserveOnly(&'static str),
}

/// Leap second state to hand to the kernel at the end of the current UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeapAction {
    /// No leap second pending.
    #[default]
    None,
    /// Insert a second (23:59:60) at the end of the day.
    Insert,
    /// Delete second 23:59:59 at the end of the day.
    Delete,
}

/// Synchronisation status reported to the kernel, so that `adjtimex` readers
/// (and the kernel's RTC sync) know whether the clock is trustworthy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockStatus {
    /// Whether the clock is synchronised to a source.
    pub synchronized: bool,
    /// Estimated error, seconds.
    pub estimated_error: f64,
    /// Maximum error, seconds.
    pub maximum_error: f64,
}

/// The fastest slew [`Clock::slew_at`] must honour, s/s: chrony's default
/// `maxslewrate` (83 333 ppm). The kernel can lengthen or shorten its tick by 10 %
/// (`ADJ_TICK`) on top of a ±500 ppm frequency correction, so this rate is reachable
/// whatever the frequency correction in force.
pub const MAX_SLEW_RATE: f64 = 1.0 / 12.0;

/// A clock that can be read and disciplined.
///
/// Offsets are in seconds, positive meaning "the clock is behind; move it forward".
pub trait Clock {
    /// The current time of this clock.
    fn now(&self) -> Result<NtpTimestamp, ClockError>;

    /// The resolution of [`Clock::now`] as a power of two of seconds (NTP precision).
    fn precision(&self) -> i8;

    /// Jump the clock by `offset` seconds at once.
    fn step(&mut self, offset: f64) -> Result<(), ClockError>;

    /// Correct `offset` seconds gradually (like `adjtime`, at its fixed
    /// [`TimeCorrection::SLEW_RATE`]), without a jump, replacing any slew in progress.
    fn slew(&mut self, offset: f64) -> Result<(), ClockError>;

    /// Correct `offset` seconds gradually at `rate` s/s on top of the frequency
    /// correction, replacing any slew in progress. Rates up to [`MAX_SLEW_RATE`] are
    /// honoured (faster ones are carried out at it), so a caller that keeps to it knows
    /// when the correction is done: after `|offset| / rate` seconds.
    ///
    /// This is what lets a daemon correct 0.1 s in about a second, as chrony does, rather
    /// than in the 200 s that `adjtime`'s 500 ppm take. A backend may finish a correction
    /// small enough for [`Clock::slew`] to absorb within a second that way instead.
    fn slew_at(&mut self, offset: f64, rate: f64) -> Result<(), ClockError>;

    /// Set the frequency correction, parts per million.
    fn set_frequency(&mut self, ppm: f64) -> Result<(), ClockError>;

    /// The frequency correction currently in effect, parts per million.
    fn frequency(&self) -> Result<f64, ClockError>;

    /// Arm (or disarm) a leap second at the end of the current UTC day.
    fn set_leap(&mut self, leap: LeapAction) -> Result<(), ClockError>;

    /// Report the synchronisation status.
    fn set_status(&mut self, status: ClockStatus) -> Result<(), ClockError>;

    /// The correction that turns kernel timestamps (such as a socket's receive stamps)
    /// into this clock's time; identity for a clock that is the kernel clock.
    fn kernel_correction(&self) -> TimeCorrection {
        TimeCorrection::IDENTITY
    }
}

/// A correction kept in software: the clock reads as the kernel's time plus an offset
/// that grows with a frequency correction and absorbs a pending slew at a bounded rate.
///
/// The observe-only backend keeps its adjustments here instead of in the kernel, and the
/// server applies the same correction to the kernel's receive timestamps, so what it
/// serves agrees with what the discipline measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeCorrection {
    /// Kernel time at which `offset` was valid.
    pub base: NtpTimestamp,
    /// Seconds added to kernel time at `base`.
    pub offset: f64,
    /// Frequency correction, parts per million.
    pub frequency_ppm: f64,
    /// Seconds still to be slewed in after `base`.
    pub pending_slew: f64,
    /// Rate at which `pending_slew` is absorbed, s/s.
    pub slew_rate: f64,
}

impl TimeCorrection {
    /// The rate at which [`Clock::slew`] absorbs an offset, as Linux `adjtime` does
    /// (500 ppm).
    pub const SLEW_RATE: f64 = 500e-6;

    /// No correction at all.
    pub const IDENTITY: TimeCorrection = TimeCorrection {
        base: NtpTimestamp::ZERO,
        offset: 0.0,
        frequency_ppm: 0.0,
        pending_slew: 0.0,
        slew_rate: Self::SLEW_RATE,
    };

    /// Seconds to add to the kernel time `raw`.
    pub fn offset_at(&self, raw: NtpTimestamp) -> f64 {
        if self.offset == 0.0 && self.frequency_ppm == 0.0 && self.pending_slew == 0.0 {
            return 0.0;
        }
        let elapsed = raw.diff(self.base).to_seconds_f64().max(0.0);
        self.offset + self.frequency_ppm * 1e-6 * elapsed + self.slewed_after(elapsed)
    }

    /// The corrected time for kernel time `raw`.
    pub fn apply(&self, raw: NtpTimestamp) -> NtpTimestamp {
        let offset = self.offset_at(raw);
        if offset == 0.0 {
            raw
        } else {
            raw.add_seconds(offset)
        }
    }

    /// Restart the correction at `raw`, folding what has accrued into `offset`, so that a
    /// new adjustment starts from the present.
    pub fn rebased(&self, raw: NtpTimestamp) -> TimeCorrection {
        let elapsed = raw.diff(self.base).to_seconds_f64().max(0.0);
        let slewed = self.slewed_after(elapsed);
        TimeCorrection {
            base: raw,
            offset: self.offset_at(raw),
            frequency_ppm: self.frequency_ppm,
            pending_slew: self.pending_slew - slewed,
            slew_rate: self.slew_rate,
        }
    }

    fn slewed_after(&self, elapsed: f64) -> f64 {
        let limit = self.slew_rate * elapsed;
        self.pending_slew.clamp(-limit, limit)
    }
}
