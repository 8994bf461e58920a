//! Simulated local clock.
//!
//! The clock reads true time plus an offset. The offset drifts with the
//! oscillator's native frequency error (which random-walks: "wander") plus
//! the commanded frequency correction, and absorbs slews at the commanded
//! rate. Both are held to the kernel's physical limits, like the real
//! backend (`meridian-os`'s kernel clock): the frequency correction to
//! ±500 ppm (`ADJ_FREQUENCY`), the slew on top of it to ±10 % (the tick
//! length, `ADJ_TICK`, 9000..11000 µs of a 10000 µs tick). Faster requests
//! are carried out at the limit. Steps are immediate.

use meridian_algo::ClockControl;

use crate::rng::SimRng;

/// A free-running oscillator with a controllable correction.
#[derive(Clone, Debug)]
pub struct SimClock {
    /// Reading minus true time (s).
    pub offset: f64,
    /// Native frequency error of the oscillator (ppm, positive = fast).
    pub native_ppm: f64,
    /// Random-walk frequency wander (ppb per √s).
    pub wander_ppb: f64,
    /// Frequency correction in force (ppm).
    pub freq_ppm: f64,
    /// Limit on the frequency correction (ppm), as the kernel enforces.
    pub max_freq_ppm: f64,
    /// Slew still to absorb (s).
    pub slew_left: f64,
    /// Current slew rate (s/s).
    pub slew_rate: f64,
    /// Cap on the slew rate (s/s): how far the tick length may be changed.
    pub max_slew_rate: f64,
    /// Steps applied, in order (s).
    pub steps: Vec<f64>,
}

impl SimClock {
    /// How much faster or slower than nominal the kernel lets the clock run
    /// by changing the tick length (s/s): ±10 %.
    pub const MAX_TICK_ADJUST: f64 = 0.1;

    /// Clock `offset` s off and `native_ppm` fast, wandering `wander_ppb`/√s.
    pub fn new(offset: f64, native_ppm: f64, wander_ppb: f64) -> Self {
        Self {
            offset,
            native_ppm,
            wander_ppb,
            freq_ppm: 0.0,
            max_freq_ppm: 500.0,
            slew_left: 0.0,
            slew_rate: 0.0,
            max_slew_rate: Self::MAX_TICK_ADJUST,
            steps: Vec::new(),
        }
    }

    /// Reading at true time `t`.
    pub fn read(&self, t: f64) -> f64 {
        t + self.offset
    }

    /// Residual frequency error: native plus correction (ppm).
    pub fn frequency_error_ppm(&self) -> f64 {
        self.native_ppm + self.freq_ppm
    }

    /// Let `dt` s of true time pass.
    pub fn advance(&mut self, dt: f64) {
        if dt <= 0.0 {
            return;
        }
        let s = (self.slew_rate * dt)
            .min(self.slew_left.abs())
            .copysign(self.slew_left);
        self.slew_left -= s;
        self.offset += self.frequency_error_ppm() * 1e-6 * dt + s;
    }

    /// Random-walk the native frequency over `dt` s.
    pub fn wander(&mut self, dt: f64, rng: &mut SimRng) {
        if self.wander_ppb > 0.0 {
            self.native_ppm += self.wander_ppb * 1e-3 * dt.sqrt() * rng.normal();
        }
    }
}

impl ClockControl for SimClock {
    fn step(&mut self, offset: f64) {
        self.offset += offset;
        self.steps.push(offset);
    }

    fn slew(&mut self, offset: f64, rate: f64) {
        self.slew_left = offset;
        self.slew_rate = rate.clamp(0.0, self.max_slew_rate);
    }

    fn set_frequency(&mut self, ppm: f64) {
        self.freq_ppm = ppm.clamp(-self.max_freq_ppm, self.max_freq_ppm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drifts_slews_and_steps() {
        let mut c = SimClock::new(0.0, 100.0, 0.0);
        c.advance(10.0);
        assert!((c.offset - 1e-3).abs() < 1e-12);
        c.set_frequency(-100.0);
        c.slew(-1e-3, 500e-6); // at adjtime's rate: takes 2 s
        c.advance(1.0);
        assert!((c.offset - 0.5e-3).abs() < 1e-12);
        c.advance(5.0);
        assert!(c.offset.abs() < 1e-12);
        c.step(0.25);
        assert_eq!(c.read(1.0), 1.25);
        assert_eq!(c.steps, vec![0.25]);
    }

    #[test]
    fn refuses_to_adjust_beyond_the_kernel_limits() {
        let mut c = SimClock::new(-0.1, 0.0, 0.0);
        // Asked to slew at 100 % (the whole 0.1 s in 0.1 s), it goes no
        // faster than the tick allows: 10 %, so 0.1 s takes 1 s.
        c.slew(0.1, 1.0);
        c.advance(0.5);
        assert!((c.offset + 0.05).abs() < 1e-12, "{}", c.offset);
        c.advance(0.5);
        assert!(c.offset.abs() < 1e-12, "{}", c.offset);
        // The frequency correction stops at 500 ppm.
        c.set_frequency(-2000.0);
        assert_eq!(c.freq_ppm, -500.0);
        c.advance(10.0);
        assert!((c.offset + 5e-3).abs() < 1e-12, "{}", c.offset);
    }
}
