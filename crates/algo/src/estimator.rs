//! Two-state (phase, frequency) Kalman estimator of the local clock error.
//!
//! The clock error is modelled as the standard oscillator model: white
//! phase measurement noise on top of a phase that integrates a frequency
//! error, which itself random-walks ("wander"). Under that model a Kalman
//! filter gives the minimum-variance estimate of both phase and frequency,
//! and — unlike a fixed-length regression — it weights every sample by its
//! own noise, so one low-delay exchange can outweigh many queued ones.
//!
//! Sign convention: `offset` is reference − local (NTP's), `rate` is its
//! time derivative (s/s) with the current frequency correction applied.

/// Kalman state and covariance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimator {
    /// Estimated offset at `time` (s).
    pub offset: f64,
    /// Estimated rate of change of the offset (s/s).
    pub rate: f64,
    /// Covariance [[phase, cross], [cross, frequency]].
    pub p: [[f64; 2]; 2],
    /// Local time of the estimate (s).
    pub time: f64,
}

/// Outcome of one measurement update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Innovation {
    /// Measurement minus prediction (s).
    pub residual: f64,
    /// Predicted variance of the residual (s²).
    pub variance: f64,
}

impl Estimator {
    /// New estimate from a first measurement with variance `r`, and a
    /// prior on the rate with standard deviation `rate_sigma` (s/s).
    pub fn new(time: f64, offset: f64, r: f64, rate_sigma: f64) -> Self {
        Self {
            offset,
            rate: 0.0,
            p: [[r, 0.0], [0.0, rate_sigma * rate_sigma]],
            time,
        }
    }

    /// Propagate to `time`. `q` is the frequency random-walk spectral
    /// density (s²/s³ = (s/s)²/s); `applied` is the phase correction the
    /// clock absorbed meanwhile (s, positive = clock advanced).
    pub fn predict(&mut self, time: f64, q: f64, applied: f64) {
        let dt = (time - self.time).max(0.0);
        self.offset += self.rate * dt - applied;
        let [[p00, p01], [_, p11]] = self.p;
        let n00 = p00 + 2.0 * dt * p01 + dt * dt * p11 + q * dt.powi(3) / 3.0;
        let n01 = p01 + dt * p11 + q * dt * dt / 2.0;
        let n11 = p11 + q * dt;
        self.p = [[n00, n01], [n01, n11]];
        self.time = time;
    }

    /// Innovation of a measurement `z` with variance `r`, without updating.
    pub fn innovation(&self, z: f64, r: f64) -> Innovation {
        Innovation {
            residual: z - self.offset,
            variance: self.p[0][0] + r,
        }
    }

    /// Fold in measurement `z` (offset, s) with variance `r` (s²).
    pub fn update(&mut self, z: f64, r: f64) -> Innovation {
        let inn = self.innovation(z, r);
        let [[p00, p01], [_, p11]] = self.p;
        let k0 = p00 / inn.variance;
        let k1 = p01 / inn.variance;
        self.offset += k0 * inn.residual;
        self.rate += k1 * inn.residual;
        // Joseph-free form is fine for a 2x2 with r > 0; keep symmetric.
        let n00 = (1.0 - k0) * p00;
        let n01 = (1.0 - k0) * p01;
        let n11 = p11 - k1 * p01;
        self.p = [[n00, n01], [n01, n11.max(0.0)]];
        inn
    }

    /// The clock was corrected: phase by `phase` (s, clock advanced, so the
    /// offset falls) and frequency by `rate` (s/s, clock sped up).
    pub fn corrected(&mut self, phase: f64, rate: f64) {
        self.offset -= phase;
        self.rate -= rate;
    }

    /// Forget the phase (after a step) but keep the frequency knowledge.
    pub fn forget_phase(&mut self, variance: f64) {
        self.offset = 0.0;
        self.p[0][0] = variance;
        self.p[0][1] = 0.0;
    }
}

/// Predicted time-averaged RMS clock error in steady state when polling
/// every `interval` s with measurement variance `r` and wander `q`, if the
/// full estimate is corrected at every update. Used to choose the poll.
pub fn steady_state_rms(interval: f64, r: f64, q: f64) -> f64 {
    let mut e = Estimator::new(0.0, 0.0, r, 1e-4);
    let mut t = 0.0;
    for _ in 0..400 {
        t += interval;
        e.predict(t, q, 0.0);
        e.update(0.0, r);
    }
    let [[p00, p01], [_, p11]] = e.p;
    let tau = interval;
    // Mean of the error variance as it grows over one interval.
    let mean = p00 + p01 * tau + p11 * tau * tau / 3.0 + q * tau.powi(3) / 12.0;
    mean.max(0.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_rate_from_noiseless_ramp() {
        let mut e = Estimator::new(0.0, 0.0, 1e-12, 1e-4);
        for i in 1..20 {
            let t = f64::from(i) * 16.0;
            e.predict(t, 1e-20, 0.0);
            e.update(50e-6 * t, 1e-12);
        }
        assert!((e.rate - 50e-6).abs() < 1e-8, "{}", e.rate);
        assert!((e.offset - 50e-6 * 19.0 * 16.0).abs() < 1e-6);
    }

    #[test]
    fn applied_correction_moves_prediction() {
        let mut e = Estimator::new(0.0, 0.01, 1e-10, 1e-6);
        e.predict(10.0, 0.0, 0.004);
        assert!((e.offset - 0.006).abs() < 1e-12);
        e.corrected(0.006, 0.0);
        assert!(e.offset.abs() < 1e-12);
    }

    #[test]
    fn steady_state_error_grows_with_interval_and_noise() {
        let q = 1e-18;
        let a = steady_state_rms(64.0, 1e-10, q);
        let b = steady_state_rms(1024.0, 1e-10, q);
        let c = steady_state_rms(64.0, 1e-6, q);
        assert!(a < b && a < c, "{a} {b} {c}");
        assert!(a > 1e-7 && a < 1e-4, "{a}");
    }
}
