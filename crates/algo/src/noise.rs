//! Measurement-noise model from round-trip delay.
//!
//! An NTP offset is wrong by at most half of the queueing delay the
//! exchange suffered on top of the path's minimum delay (the unknowable
//! constant asymmetry aside). When the two directions queue independently,
//! the error is close to uniform within that ±excess/2 bound, so its
//! variance is excess²/12. Tracking the minimum delay over a window and
//! using that variance lets the estimator trust uncongested exchanges far
//! more than queued ones — the main source of accuracy at high jitter.

use std::collections::VecDeque;

/// Tracks the minimum delay and turns a sample's delay into a variance.
#[derive(Clone, Debug)]
pub struct DelayNoise {
    window: usize,
    delays: VecDeque<f64>,
    /// Exponential average of the excess delay, to size how uncertain the
    /// minimum itself is (the true floor lies somewhat below it).
    mean_excess: f64,
    floor: f64,
}

impl DelayNoise {
    /// `window`: samples over which the minimum is taken (route changes
    /// are followed after that many); `floor`: standard deviation (s)
    /// below which no sample is trusted (timestamp precision).
    pub fn new(window: usize, floor: f64) -> Self {
        Self {
            window: window.max(1),
            delays: VecDeque::new(),
            mean_excess: 0.0,
            floor,
        }
    }

    /// Forget history, e.g. when the reference source changes.
    pub fn reset(&mut self) {
        self.delays.clear();
        self.mean_excess = 0.0;
    }

    /// Minimum delay in the window, if any sample was seen.
    pub fn min_delay(&self) -> Option<f64> {
        self.delays.iter().copied().reduce(f64::min)
    }

    /// Record a sample and return its offset variance (s²). `dispersion`
    /// (s) is treated as a further uniform error bound.
    pub fn observe(&mut self, delay: f64, dispersion: f64) -> f64 {
        let delay = delay.max(0.0);
        self.delays.push_back(delay);
        if self.delays.len() > self.window {
            self.delays.pop_front();
        }
        let min = self.min_delay().unwrap_or(delay);
        let excess = delay - min;
        let n = self.delays.len() as f64;
        let alpha = (1.0 / n).max(1.0 / 32.0);
        self.mean_excess += alpha * (excess - self.mean_excess);
        // The minimum over n samples still sits above the true floor by a
        // fraction of the typical excess, shrinking as the window fills:
        // for exponential queueing each way the expected gap is about
        // 0.6/√n of the mean excess; the minimum of a short window scatters
        // widely around that, so err on the safe side (an overconfident
        // start-up estimate rejects the very samples that would correct it).
        // With few samples the minimum may itself be a queued exchange: fall
        // back towards the hard bound (error ≤ delay/2) until it is known.
        let floor_gap = (self.mean_excess * (1.0 / n.sqrt()).max(0.06)).max(min / n);
        let bound = excess + floor_gap;
        self.floor * self.floor + bound * bound / 12.0 + dispersion * dispersion / 12.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn high_delay_means_high_variance() {
        let mut n = DelayNoise::new(64, 1e-7);
        for i in 0..64 {
            n.observe(0.001 + f64::from(i % 8) * 1e-4, 0.0);
        }
        let low = n.observe(0.001, 0.0);
        let high = n.observe(0.003, 0.0);
        assert!(high > 100.0 * low, "{low} {high}");
        // Bounded by the (excess/2)² worst case plus the floor terms.
        assert!(high < (0.002f64 / 2.0).powi(2), "{high}");
        assert_eq!(n.min_delay(), Some(0.001));
    }

    #[test]
    fn window_forgets_old_minimum() {
        let mut n = DelayNoise::new(4, 1e-7);
        n.observe(0.001, 0.0);
        for _ in 0..4 {
            n.observe(0.005, 0.0);
        }
        assert_eq!(n.min_delay(), Some(0.005));
    }
}
