//! Simulated reference time and NTP servers.
//!
//! [`Timescale`] is UTC as a function of true (physical) time: it can
//! contain an inserted leap second and steps (e.g. the whole reference
//! being moved). A [`SimServer`] serves that UTC, possibly with its own
//! constant error (a falseticker), at a given precision. [`SimServer::answer`]
//! turns a request datagram into the reply datagram a real server would send,
//! through `meridian_proto`'s own reply builder.

use meridian_proto::{
    build_server_reply, LeapIndicator, NtpHeader, NtpShort, NtpTimestamp, ReferenceId, ServerState,
    DEFAULT_MIN_POLL, HEADER_LEN,
};

use crate::rng::SimRng;

/// The simulator's UTC origin as Unix seconds: 2026-01-01T00:00:00Z. Simulated
/// UTC (and simulated clock readings) count seconds from it, so it being a UTC
/// midnight puts leap seconds at multiples of a day, as in real UTC.
pub const EPOCH_UNIX: i64 = 1_767_225_600;

/// NTP timestamp of simulated UTC (or clock reading) `secs`.
pub fn ntp_time(secs: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(EPOCH_UNIX, 0).add_seconds(secs)
}

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

    /// The reply to the request datagram `request` that reached the server at true
    /// time `t`: receive timestamp at `t`, transmit timestamp `processing` later,
    /// both read from the server's clock. `None` for a datagram a server would drop
    /// (not a decodable header).
    pub fn answer(
        &self,
        request: &[u8; HEADER_LEN],
        scale: &Timescale,
        t: f64,
        rng: &mut SimRng,
    ) -> Option<[u8; HEADER_LEN]> {
        let request = NtpHeader::decode(request).ok()?;
        let t2 = self.timestamp(scale, t, rng);
        let t3 = self.timestamp(scale, t + self.processing, rng);
        let state = ServerState {
            leap: LeapIndicator::from_bits(scale.leap_indicator(t)),
            stratum: self.stratum,
            // The wire carries a power of two.
            precision: self.precision.log2().round().clamp(-128.0, 0.0) as i8,
            root_delay: NtpShort::from_seconds_f64(self.root_delay),
            root_dispersion: NtpShort::from_seconds_f64(self.root_dispersion),
            reference_id: ReferenceId::from_ascii(b"GPS"),
            // A stratum-1 server updates its clock every second or so.
            reference_ts: ntp_time((t2 - 1.0).floor()),
            min_poll: DEFAULT_MIN_POLL,
        };
        let reply = build_server_reply(&request, &state, ntp_time(t2), ntp_time(t3));
        let mut bytes = [0u8; HEADER_LEN];
        reply.encode(&mut bytes);
        Some(bytes)
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
