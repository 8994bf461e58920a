//! Simulated reference time and NTP servers.
//!
//! [`Timescale`] is UTC as a function of true (physical) time: it can
//! contain an inserted leap second and steps (e.g. the whole reference
//! being moved). A [`SimServer`] serves that UTC, possibly with its own
//! constant error (a falseticker), at a given precision.

use crate::rng::SimRng;

/// UTC as a function of true time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timescale {
    /// True time at which a leap second is inserted (a UTC midnight).
    pub leap_insert_at: Option<f64>,
    /// `(true time, amount)`: from then on UTC is `amount` s later.
    pub steps: Vec<(f64, f64)>,
}

impl Timescale {
    /// UTC at true time `t`.
    pub fn utc(&self, t: f64) -> f64 {
        let leap = match self.leap_insert_at {
            Some(l) if t >= l => -1.0,
            _ => 0.0,
        };
        let step: f64 = self.steps.iter().filter(|s| t >= s.0).map(|s| s.1).sum();
        t + leap + step
    }

    /// Leap indicator a correct server announces at true time `t`: 1 during
    /// the UTC day that ends with the inserted second.
    pub fn leap_indicator(&self, t: f64) -> u8 {
        match self.leap_insert_at {
            Some(l) if t < l && l - t <= meridian_algo::leap::DAY => 1,
            _ => 0,
        }
    }
}

/// One simulated NTP server.
#[derive(Clone, Debug, PartialEq)]
pub struct SimServer {
    /// Stratum announced.
    pub stratum: u8,
    /// Constant error added to its time (s); non-zero makes a falseticker.
    pub offset: f64,
    /// Timestamp precision (s): readings get uniform noise of this size.
    pub precision: f64,
    /// Time between receive and transmit (s).
    pub processing: f64,
    /// Root delay it reports (s).
    pub root_delay: f64,
    /// Root dispersion it reports (s).
    pub root_dispersion: f64,
}

impl SimServer {
    /// A good stratum-1 server with 1 µs... well, 2⁻²⁰ s precision.
    pub fn good() -> Self {
        Self {
            stratum: 1,
            offset: 0.0,
            precision: 2f64.powi(-20),
            processing: 10e-6,
            root_delay: 0.0,
            root_dispersion: 1e-5,
        }
    }

    /// The server's timestamp at true time `t`.
    pub fn timestamp(&self, scale: &Timescale, t: f64, rng: &mut SimRng) -> f64 {
        scale.utc(t) + self.offset + self.precision * rng.uniform()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_and_steps_shape_utc() {
        let ts = Timescale {
            leap_insert_at: Some(86_400.0),
            steps: vec![(1000.0, 0.5)],
        };
        assert_eq!(ts.utc(10.0), 10.0);
        assert_eq!(ts.utc(2000.0), 2000.5);
        assert_eq!(ts.utc(86_400.0), 86_399.5);
        assert_eq!(ts.leap_indicator(100.0), 1);
        assert_eq!(ts.leap_indicator(86_401.0), 0);
    }
}
