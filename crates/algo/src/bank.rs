//! Wander adaptation by a bank of estimators (multiple-model estimation).
//!
//! How fast an oscillator's frequency wanders depends on the hardware and
//! its temperature, and a Kalman filter tuned for the wrong wander either
//! chases noise or lags real frequency changes. Instead of guessing, run
//! one estimator per wander level (a decade apart in q) on the same data
//! and follow the one whose innovations have been most likely recently.
//! This plays the role of chrony's runs test: it picks the averaging
//! length the data support.

use crate::estimator::{Estimator, Innovation};

/// Levels either side of the configured wander: q·10^k, k ∈ LOW..=HIGH.
const LOW: i32 = -4;
const HIGH: i32 = 3;
/// Memory of the log-likelihood, in updates.
const MEMORY: f64 = 512.0;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Member {
    q: f64,
    est: Estimator,
    loglik: f64,
}

/// Estimators differing only in assumed wander.
#[derive(Clone, Debug, PartialEq)]
pub struct Bank {
    members: Vec<Member>,
    best: usize,
}

impl Bank {
    /// Start every member from the same first measurement; `q` is the
    /// configured wander spectral density, favoured until data disagree.
    pub fn new(est: Estimator, q: f64) -> Self {
        let members = (LOW..=HIGH)
            .map(|k| Member {
                q: q * 10f64.powi(k),
                est,
                // A mild prior for the configured level.
                loglik: -f64::from(k.abs()),
            })
            .collect();
        Self {
            members,
            best: (-LOW) as usize,
        }
    }

    /// The currently most likely estimator.
    pub fn best(&self) -> &Estimator {
        &self.members[self.best].est
    }

    /// Wander spectral density of the most likely estimator.
    pub fn q(&self) -> f64 {
        self.members[self.best].q
    }

    /// Propagate all members (see [`Estimator::predict`]).
    pub fn predict(&mut self, time: f64, applied: f64) {
        for m in &mut self.members {
            m.est.predict(time, m.q, applied);
        }
    }

    /// Innovation of the most likely member.
    pub fn innovation(&self, z: f64, r: f64) -> Innovation {
        self.best().innovation(z, r)
    }

    /// Update all members, score them, and re-pick the best. Returns the
    /// innovation of the member that was best before the update.
    pub fn update(&mut self, z: f64, r: f64) -> Innovation {
        let mut out = None;
        for (i, m) in self.members.iter_mut().enumerate() {
            let inn = m.est.update(z, r);
            let ll = -0.5 * (libm::log(inn.variance) + inn.residual * inn.residual / inn.variance);
            // Exponential forgetting; one wild sample cannot decide alone.
            m.loglik = m.loglik * (1.0 - 1.0 / MEMORY) + ll.max(-50.0);
            if i == self.best {
                out = Some(inn);
            }
        }
        self.best = self
            .members
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.loglik.total_cmp(&b.1.loglik))
            .map_or(self.best, |(i, _)| i);
        out.unwrap_or(Innovation {
            residual: 0.0,
            variance: r,
        })
    }

    /// Shift the time base of every member (the clock was stepped).
    pub fn shift_time(&mut self, amount: f64) {
        for m in &mut self.members {
            m.est.time += amount;
        }
    }

    /// Apply the same correction to every member.
    pub fn corrected(&mut self, phase: f64, rate: f64) {
        for m in &mut self.members {
            m.est.corrected(phase, rate);
        }
    }

    /// Forget the phase in every member.
    pub fn forget_phase(&mut self, variance: f64) {
        for m in &mut self.members {
            m.est.forget_phase(variance);
        }
    }

    /// Widen every member's covariance when the data persistently
    /// disagree with the model (frequency jump, route change).
    pub fn inflate(&mut self, residual: f64, interval: f64) {
        for m in &mut self.members {
            m.est.p[0][0] += residual * residual;
            m.est.p[1][1] += (residual / interval.max(1.0)).powi(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estimator::Estimator;

    /// Deterministic pseudo-noise in [-1, 1).
    fn noise(i: u64) -> f64 {
        let x = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    fn run(freq_walk: f64) -> f64 {
        let q0 = 1e-18;
        let mut b = Bank::new(Estimator::new(0.0, 0.0, 1e-8, 1e-4), q0);
        let (mut phase, mut freq) = (0.0, 0.0);
        for i in 1..3000u64 {
            freq += freq_walk * 64f64.sqrt() * noise(2 * i) * 1.7;
            phase += freq * 64.0;
            b.predict(i as f64 * 64.0, 0.0);
            b.update(phase + 1e-4 * noise(2 * i + 1), 1e-8 / 3.0);
        }
        b.q()
    }

    #[test]
    fn picks_wander_level_from_data() {
        // Much less wander than configured: a smaller q wins...
        assert!(run(0.0) < 1e-19);
        // ...and much more: a larger q wins.
        assert!(run(1e-7) > 1e-17);
    }
}
