//! Simulated network path between the client and one server.
//!
//! Each direction takes the base delay (split by the asymmetry) plus an
//! independent random queueing delay. Packets can be lost at random or
//! during outage windows.

use crate::rng::SimRng;

/// Distribution of the queueing delay added in each direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// No queueing.
    None,
    /// Exponentially distributed with this mean (s).
    Exponential(f64),
    /// Uniform in [0, max) (s).
    Uniform(f64),
}

/// One client–server path.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Base one-way delay (s) when symmetric.
    pub base_delay: f64,
    /// Queueing jitter per direction.
    pub jitter: Jitter,
    /// Asymmetry: the outbound leg takes `base·(1 + a)`, return `base·(1 − a)`.
    pub asymmetry: f64,
    /// Probability that an exchange is lost.
    pub loss: f64,
    /// True-time windows `[start, end)` during which nothing gets through.
    pub outages: Vec<(f64, f64)>,
}

impl Network {
    /// Symmetric path with base one-way delay and jitter, no loss.
    pub fn new(base_delay: f64, jitter: Jitter) -> Self {
        Self {
            base_delay,
            jitter,
            asymmetry: 0.0,
            loss: 0.0,
            outages: Vec::new(),
        }
    }

    fn queue(&self, rng: &mut SimRng) -> f64 {
        match self.jitter {
            Jitter::None => 0.0,
            Jitter::Exponential(m) => rng.exponential(m),
            Jitter::Uniform(m) => m * rng.uniform(),
        }
    }

    /// Outbound and return delays for an exchange starting at true time
    /// `t`, or `None` if it is lost.
    pub fn exchange(&self, t: f64, rng: &mut SimRng) -> Option<(f64, f64)> {
        // Draw randomness unconditionally so outages do not shift the
        // random stream of later exchanges (keeps scenarios comparable).
        let lost = rng.uniform() < self.loss;
        let out = self.base_delay * (1.0 + self.asymmetry) + self.queue(rng);
        let back = self.base_delay * (1.0 - self.asymmetry) + self.queue(rng);
        let down = self.outages.iter().any(|&(a, b)| t >= a && t < b);
        (!lost && !down).then_some((out, back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_loss_and_outages() {
        let mut rng = SimRng::new(3);
        let mut n = Network::new(1e-4, Jitter::Exponential(1e-3));
        n.asymmetry = 0.5;
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let (a, b) = n.exchange(0.0, &mut rng).unwrap();
            assert!(a >= 1.5e-4 && b >= 0.5e-4);
            sum += a + b;
        }
        assert!((sum / 10_000.0 - 2.2e-3).abs() < 1e-4);
        n.outages.push((10.0, 20.0));
        assert!(n.exchange(15.0, &mut rng).is_none());
        n.loss = 1.0;
        assert!(n.exchange(0.0, &mut rng).is_none());
    }
}
