//! Carrying out the discipline's commands on a [`Clock`].
//!
//! The discipline speaks `meridian_algo::ClockControl`; the machine's clock (or the
//! observe-only one) speaks [`Clock`]. This adapter is the only place they meet, so the
//! simulator and the daemon run the discipline through the same interface. A failed
//! adjustment (no CAP_SYS_TIME, say) is logged once per kind rather than per update.

use meridian_algo::ClockControl;
use meridian_clock::Clock;

/// A [`Clock`] seen as something the discipline can drive.
pub struct ClockDriver<'a> {
    clock: &'a mut dyn Clock,
    failures: &'a mut FailureLog,
}

/// Which adjustments have already been reported as failing.
#[derive(Debug, Default)]
pub struct FailureLog {
    step: bool,
    slew: bool,
    frequency: bool,
}

impl<'a> ClockDriver<'a> {
    /// Drive `clock`, reporting failures through `failures`.
    pub fn new(clock: &'a mut dyn Clock, failures: &'a mut FailureLog) -> Self {
        ClockDriver { clock, failures }
    }
}

fn report(flag: &mut bool, what: &str, e: &meridian_clock::ClockError) {
    if !*flag {
        *flag = true;
        tracing::error!("cannot {what}: {e}");
    }
}

impl ClockControl for ClockDriver<'_> {
    fn step(&mut self, offset: f64) {
        match self.clock.step(offset) {
            Ok(()) => tracing::info!("clock stepped by {offset:+.6} s"),
            Err(e) => report(&mut self.failures.step, "step the clock", &e),
        }
    }

    fn slew(&mut self, offset: f64, rate: f64) {
        // The discipline accounts for the slew at the rate it asked for, which the clock
        // honours up to MAX_SLEW_RATE (the discipline's default, checked below).
        if let Err(e) = self.clock.slew_at(offset, rate) {
            report(&mut self.failures.slew, "slew the clock", &e);
        }
    }

    fn set_frequency(&mut self, ppm: f64) {
        if let Err(e) = self.clock.set_frequency(ppm) {
            report(&mut self.failures.frequency, "set the clock frequency", &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use meridian_algo::{DisciplineConfig, MAX_SLEW_RATE_PPM};
    use meridian_clock::MAX_SLEW_RATE;

    #[test]
    fn the_discipline_slews_no_faster_than_every_clock_can() {
        assert!((MAX_SLEW_RATE_PPM * 1e-6 - MAX_SLEW_RATE).abs() < 1e-12);
        assert!(DisciplineConfig::default().slew_rate_ppm * 1e-6 <= MAX_SLEW_RATE);
    }
}
