//! Commands the discipline issues to the system clock, and the trait a
//! clock implements to obey them. The daemon's kernel clock and the
//! simulator's clock both go through [`ClockCommand::apply`], so both run
//! exactly the same control path.

/// A clock the discipline can drive.
pub trait ClockControl {
    /// Step the clock by `offset` s (positive = advance).
    fn step(&mut self, offset: f64);
    /// Replace any outstanding slew with `offset` s (positive = advance),
    /// absorbed at `rate` s/s on top of the frequency correction, like
    /// `adjtime()` replaces the previous adjustment.
    fn slew(&mut self, offset: f64, rate: f64);
    /// Set the absolute frequency correction in ppm (positive = faster).
    fn set_frequency(&mut self, ppm: f64);
}

/// Why the discipline produced a command; for logging and statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisciplineEvent {
    /// Nothing happened (sample ignored as invalid).
    Idle,
    /// First sample: estimator initialised.
    Initialised,
    /// Normal update.
    Updated,
    /// Sample rejected as an outlier by the innovation gate.
    Outlier,
    /// Offset beyond the step threshold, ignored until stepout expires.
    SpikeIgnored,
    /// The clock was stepped.
    Stepped,
    /// Offset beyond the panic threshold: the daemon should exit.
    Panic,
}

/// What to do to the clock after an update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockCommand {
    /// Step by this many seconds (positive = advance) before anything else.
    pub step: Option<f64>,
    /// New phase correction to slew (replacing any outstanding one).
    pub slew: Option<f64>,
    /// Slew rate for `slew`, s/s.
    pub slew_rate: f64,
    /// Absolute frequency correction, ppm.
    pub frequency_ppm: f64,
    /// Reason, for logs.
    pub event: DisciplineEvent,
}

impl ClockCommand {
    /// A command that keeps the frequency and touches nothing else.
    pub fn hold(frequency_ppm: f64, event: DisciplineEvent) -> Self {
        Self {
            step: None,
            slew: None,
            slew_rate: 0.0,
            frequency_ppm,
            event,
        }
    }

    /// Apply to `clock`: step, then frequency, then slew.
    pub fn apply<C: ClockControl + ?Sized>(&self, clock: &mut C) {
        if self.event == DisciplineEvent::Panic {
            return;
        }
        if let Some(s) = self.step {
            clock.step(s);
        }
        clock.set_frequency(self.frequency_ppm);
        if let Some(s) = self.slew {
            clock.slew(s, self.slew_rate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);
    impl ClockControl for Log {
        fn step(&mut self, o: f64) {
            self.0.push(format!("step {o}"));
        }
        fn slew(&mut self, o: f64, r: f64) {
            self.0.push(format!("slew {o} {r}"));
        }
        fn set_frequency(&mut self, p: f64) {
            self.0.push(format!("freq {p}"));
        }
    }

    #[test]
    fn apply_orders_step_freq_slew_and_panic_does_nothing() {
        let mut log = Log::default();
        let c = ClockCommand {
            step: Some(1.5),
            slew: Some(0.25),
            slew_rate: 0.5,
            frequency_ppm: -3.0,
            event: DisciplineEvent::Stepped,
        };
        c.apply(&mut log);
        assert_eq!(log.0, ["step 1.5", "freq -3", "slew 0.25 0.5"]);
        let mut log = Log::default();
        ClockCommand {
            event: DisciplineEvent::Panic,
            ..c
        }
        .apply(&mut log);
        assert!(log.0.is_empty());
    }
}
