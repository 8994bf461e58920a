//! Error recording and summary statistics for a simulation run.
//!
//! The true time error (clock reading − UTC) and the residual frequency
//! error are recorded once per simulated second. "Synchronised" is
//! defined as: the first second at which |error| < 1 ms and after which
//! the error never leaves max(1 ms, 10 × RMS of the last half of the run).
//! RMS / max error and RMS frequency error are computed from then on.

/// Per-second record of a run.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// True time of each record (s).
    pub time: Vec<f64>,
    /// Clock error (reading − UTC) (s).
    pub error: Vec<f64>,
    /// Residual frequency error (ppm).
    pub freq_error: Vec<f64>,
}

/// Summary of a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Time to synchronise (s), `None` if never.
    pub sync_time: Option<f64>,
    /// RMS error after sync (s).
    pub rms_error: f64,
    /// Max |error| after sync (s).
    pub max_error: f64,
    /// RMS frequency error after sync (ppm).
    pub rms_freq_ppm: f64,
    /// Max |error| from one hour after sync on: the steady state, without
    /// the tail of the initial convergence (s).
    pub max_settled: f64,
}

impl Recorder {
    /// Append one record.
    pub fn record(&mut self, t: f64, error: f64, freq_error: f64) {
        self.time.push(t);
        self.error.push(error);
        self.freq_error.push(freq_error);
    }

    /// RMS of the error over indices `from..`.
    fn rms(v: &[f64]) -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
    }

    /// Summarise per the definition in the module docs.
    pub fn summary(&self) -> Summary {
        let n = self.error.len();
        let final_rms = Self::rms(&self.error[n / 2..]);
        let band = (10.0 * final_rms).max(1e-3);
        // The last excursion out of the band, then the first sub-ms second.
        let start = self
            .error
            .iter()
            .rposition(|e| e.abs() >= band || !e.is_finite())
            .map_or(0, |i| i + 1);
        let sync = (start..n).find(|&i| self.error[i].abs() < 1e-3);
        match sync {
            Some(i) => Summary {
                sync_time: Some(self.time[i]),
                rms_error: Self::rms(&self.error[i..]),
                max_error: self.error[i..].iter().fold(0.0, |m, e| m.max(e.abs())),
                rms_freq_ppm: Self::rms(&self.freq_error[i..]),
                max_settled: self
                    .time
                    .iter()
                    .zip(&self.error)
                    .filter(|(t, _)| **t >= self.time[i] + 3600.0)
                    .fold(0.0, |m, (_, e)| m.max(e.abs())),
            },
            None => Summary {
                sync_time: None,
                rms_error: f64::NAN,
                max_error: f64::NAN,
                rms_freq_ppm: f64::NAN,
                max_settled: f64::NAN,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_time_is_after_last_excursion() {
        let mut r = Recorder::default();
        for i in 0..1000 {
            let e = if i < 100 {
                0.1
            } else if i == 300 {
                0.02
            } else {
                1e-5
            };
            r.record(f64::from(i), e, 0.0);
        }
        let s = r.summary();
        assert_eq!(s.sync_time, Some(301.0));
        assert!((s.rms_error - 1e-5).abs() < 1e-12);
        assert_eq!(s.max_error, 1e-5);
    }
}
