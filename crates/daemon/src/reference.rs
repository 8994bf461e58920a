//! Where the served time comes from while no network source is selected.
//!
//! Classic ntpd can serve its own clock in two ways, and Meridian reads both from the
//! same lines: the local clock driver (`server 127.127.1.0` with `fudge 127.127.1.0
//! stratum N`, served at stratum N+1 with the driver's address as refid, as ntpd does for
//! a refclock system peer above stratum 1) and orphan mode (`tos orphan N`, served at
//! stratum N with the loopback refid). Without either, the server says it is
//! unsynchronised.

use std::net::Ipv4Addr;

use meridian_conf::Config;
use meridian_proto::{LeapIndicator, NtpShort, NtpTimestamp, ReferenceId, ServerState};

/// The local clock driver's default stratum when no `fudge` sets one (ntpd's driver 1).
pub const LOCAL_DRIVER_STRATUM: u8 = 5;
/// The local clock driver's precision: it claims about 10 ms, as ntpd's does.
pub const LOCAL_DRIVER_PRECISION: i8 = -7;
/// How often the local "reference" is considered updated (ntpd polls the driver at 64 s).
pub const LOCAL_POLL_SECONDS: f64 = 64.0;

/// The fallback reference configured in `ntp.conf`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalReference {
    /// The local clock driver at this address and stratum.
    LocalClock {
        /// The driver's pseudo-address, 127.127.1.u.
        address: Ipv4Addr,
        /// The driver's own stratum (fudge stratum).
        stratum: u8,
    },
    /// Orphan mode at this stratum.
    Orphan {
        /// `tos orphan` stratum.
        stratum: u8,
    },
    /// Neither: unsynchronised until a network source is selected.
    None,
}

impl LocalReference {
    /// Read the fallback from the configuration; the local clock driver wins over orphan
    /// mode, as in ntpd where a reachable refclock is a real source.
    pub fn from_config(config: &Config) -> Self {
        for source in &config.sources {
            if !source.is_local_clock() {
                continue;
            }
            let Ok(address) = source.address.parse::<Ipv4Addr>() else {
                continue;
            };
            let stratum = config
                .fudge
                .get(&address)
                .and_then(|f| f.stratum)
                .unwrap_or(LOCAL_DRIVER_STRATUM);
            return LocalReference::LocalClock { address, stratum };
        }
        match config.tos.orphan {
            stratum if stratum < 16 => LocalReference::Orphan { stratum },
            _ => LocalReference::None,
        }
    }

    /// What to serve at time `now` (on the served clock's scale).
    pub fn server_state(&self, now: NtpTimestamp, precision: i8, min_poll: i8) -> ServerState {
        let mut state = ServerState::unsynchronized(precision);
        state.min_poll = min_poll;
        match *self {
            LocalReference::None => state,
            LocalReference::LocalClock { address, stratum } => {
                state.leap = LeapIndicator::NoWarning;
                state.stratum = stratum.saturating_add(1).min(15);
                state.reference_id = ReferenceId::from_ipv4(address);
                state.reference_ts = last_local_update(now);
                // The driver's own dispersion: its claimed precision, plus what ntpd's
                // clock filter adds for a single sample (2^precision each side).
                state.root_dispersion =
                    NtpShort::from_seconds_f64(2.0 * 2f64.powi(LOCAL_DRIVER_PRECISION.into()));
                state
            }
            LocalReference::Orphan { stratum } => {
                state.leap = LeapIndicator::NoWarning;
                state.stratum = stratum;
                state.reference_id = ReferenceId::from_ipv4(Ipv4Addr::LOCALHOST);
                state.reference_ts = last_local_update(now);
                state
            }
        }
    }
}

/// The reference time of a local source: the last whole local poll before `now`.
fn last_local_update(now: NtpTimestamp) -> NtpTimestamp {
    let secs = now.to_bits() >> 32;
    let poll = LOCAL_POLL_SECONDS as u64;
    NtpTimestamp::from_bits((secs - secs % poll) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_conf::{parse_str, MemorySource};

    fn reference(text: &str) -> LocalReference {
        let config = parse_str("test.conf", text, &MemorySource::new()).expect("valid config");
        LocalReference::from_config(&config)
    }

    #[test]
    fn local_clock_with_fudge_serves_one_stratum_below() {
        let r = reference("server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n");
        let now = NtpTimestamp::from_unix(1_800_000_000, 0);
        let s = r.server_state(now, -20, 3);
        assert_eq!(s.stratum, 11);
        assert_eq!(s.leap, LeapIndicator::NoWarning);
        assert_eq!(
            s.reference_id,
            ReferenceId::from_ipv4(Ipv4Addr::new(127, 127, 1, 0))
        );
        assert!(s.reference_ts <= now && now.diff(s.reference_ts).to_seconds_f64() < 64.0);
    }

    #[test]
    fn local_clock_without_fudge_uses_driver_default() {
        let r = reference("server 127.127.1.0\n");
        assert_eq!(
            r,
            LocalReference::LocalClock {
                address: Ipv4Addr::new(127, 127, 1, 0),
                stratum: 5
            }
        );
    }

    #[test]
    fn orphan_mode_serves_orphan_stratum() {
        let r = reference("tos orphan 7\n");
        let s = r.server_state(NtpTimestamp::from_unix(1_800_000_000, 0), -20, 3);
        assert_eq!((s.stratum, s.leap), (7, LeapIndicator::NoWarning));
    }

    #[test]
    fn nothing_configured_is_unsynchronised() {
        let r = reference("server 192.0.2.1 iburst\n");
        assert_eq!(r, LocalReference::None);
        let s = r.server_state(NtpTimestamp::from_unix(1_800_000_000, 0), -20, 3);
        assert_eq!(s.leap, LeapIndicator::Unsynchronized);
    }
}
