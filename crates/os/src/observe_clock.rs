//! The observe-only clock: reads the kernel clock, never adjusts it.
//!
//! Like `chronyd -x`, the daemon still measures and disciplines, but every step, slew and
//! frequency change lands in a [`TimeCorrection`] kept in memory. Reading this clock gives
//! kernel time plus that correction, so the discipline's loop closes exactly as it would
//! with the kernel clock, and the server hands out the corrected time.

use meridian_clock::{Clock, ClockError, ClockStatus, LeapAction, TimeCorrection, MAX_SLEW_RATE};
use meridian_proto::NtpTimestamp;

use crate::kernel_clock::{measure_precision, read_realtime};

/// A clock that estimates and corrects in software only.
#[derive(Debug, Clone)]
pub struct ObserveClock {
    correction: TimeCorrection,
    precision: i8,
    leap: LeapAction,
}

impl ObserveClock {
    /// Start with no correction.
    pub fn new() -> Self {
        ObserveClock {
            correction: TimeCorrection::IDENTITY,
            precision: measure_precision(),
            leap: LeapAction::None,
        }
    }

    /// The leap second last armed (kept for status reports; nothing is applied).
    pub fn leap(&self) -> LeapAction {
        self.leap
    }

    fn rebase(&mut self) -> TimeCorrection {
        self.correction.rebased(read_realtime())
    }
}

impl Default for ObserveClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ObserveClock {
    fn now(&self) -> Result<NtpTimestamp, ClockError> {
        Ok(self.correction.apply(read_realtime()))
    }

    fn precision(&self) -> i8 {
        self.precision
    }

    fn step(&mut self, offset: f64) -> Result<(), ClockError> {
        let mut c = self.rebase();
        c.offset += offset;
        c.pending_slew = 0.0;
        self.correction = c;
        Ok(())
    }

    fn slew(&mut self, offset: f64) -> Result<(), ClockError> {
        self.slew_at(offset, TimeCorrection::SLEW_RATE)
    }

    fn slew_at(&mut self, offset: f64, rate: f64) -> Result<(), ClockError> {
        // adjtime semantics: a new slew replaces whatever was still pending. The kernel
        // would refuse to go faster than MAX_SLEW_RATE, so neither does this clock.
        let mut c = self.rebase();
        c.pending_slew = offset;
        c.slew_rate = rate.clamp(0.0, MAX_SLEW_RATE);
        self.correction = c;
        Ok(())
    }

    fn set_frequency(&mut self, ppm: f64) -> Result<(), ClockError> {
        let mut c = self.rebase();
        c.frequency_ppm = ppm.clamp(-500.0, 500.0);
        self.correction = c;
        Ok(())
    }

    fn frequency(&self) -> Result<f64, ClockError> {
        Ok(self.correction.frequency_ppm)
    }

    fn set_leap(&mut self, leap: LeapAction) -> Result<(), ClockError> {
        self.leap = leap;
        Ok(())
    }

    fn set_status(&mut self, _status: ClockStatus) -> Result<(), ClockError> {
        Ok(())
    }

    fn kernel_correction(&self) -> TimeCorrection {
        self.correction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_from_kernel(clock: &ObserveClock) -> f64 {
        let raw = read_realtime();
        clock
            .kernel_correction()
            .apply(raw)
            .diff(raw)
            .to_seconds_f64()
    }

    #[test]
    fn step_moves_only_the_software_clock() {
        let mut clock = ObserveClock::new();
        assert_eq!(offset_from_kernel(&clock), 0.0);
        clock.step(2.5).unwrap();
        let off = offset_from_kernel(&clock);
        assert!((off - 2.5).abs() < 1e-6, "{off}");
        let ahead = clock.now().unwrap().diff(read_realtime()).to_seconds_f64();
        assert!((ahead - 2.5).abs() < 0.01, "{ahead}");
    }

    #[test]
    fn slew_is_absorbed_at_bounded_rate() {
        let mut clock = ObserveClock::new();
        clock.slew(1.0).unwrap();
        let c = clock.kernel_correction();
        let after_1s = c.offset_at(c.base.add_seconds(1.0));
        assert!((after_1s - 500e-6).abs() < 1e-9, "{after_1s}");
        let after_long = c.offset_at(c.base.add_seconds(10_000.0));
        assert!((after_long - 1.0).abs() < 1e-9, "{after_long}");
    }

    #[test]
    fn fast_slew_is_absorbed_at_its_rate_but_no_faster_than_the_limit() {
        let mut clock = ObserveClock::new();
        clock.slew_at(-0.1, 0.05).unwrap();
        let c = clock.kernel_correction();
        let after_1s = c.offset_at(c.base.add_seconds(1.0));
        assert!((after_1s + 0.05).abs() < 1e-9, "{after_1s}");
        assert!((c.offset_at(c.base.add_seconds(3.0)) + 0.1).abs() < 1e-9);
        // Asked for 100 %, it slews at MAX_SLEW_RATE.
        clock.slew_at(1.0, 1.0).unwrap();
        let c = clock.kernel_correction();
        let slewed = c.offset_at(c.base.add_seconds(1.0)) - c.offset;
        assert!((slewed - MAX_SLEW_RATE).abs() < 1e-9, "{slewed}");
        // A rebase keeps the rate of the slew in progress.
        let later = c.rebased(c.base.add_seconds(1.0));
        assert_eq!(later.slew_rate, MAX_SLEW_RATE);
        assert!((later.pending_slew - (1.0 - MAX_SLEW_RATE)).abs() < 1e-9);
    }

    #[test]
    fn frequency_accumulates_and_rebases_continuously() {
        let mut clock = ObserveClock::new();
        clock.set_frequency(100.0).unwrap();
        let c = clock.kernel_correction();
        let later = c.base.add_seconds(1000.0);
        assert!((c.offset_at(later) - 0.1).abs() < 1e-9);
        let rebased = c.rebased(later);
        assert!((rebased.offset_at(later) - 0.1).abs() < 1e-9);
        assert_eq!(clock.frequency().unwrap(), 100.0);
    }
}
