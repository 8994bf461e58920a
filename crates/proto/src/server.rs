//! Building server replies and kiss-o'-death packets from a request. Pure,
//! allocation-free functions for the daemon's hot path: the caller supplies
//! the timestamps and the system state.

use crate::packet::{LeapIndicator, Mode, NtpHeader};
use crate::refid::ReferenceId;
use crate::timestamp::{NtpShort, NtpTimestamp};

/// Classic ntpd's default minimum poll exponent (NTP_MINPOLL, 8 s).
pub const DEFAULT_MIN_POLL: i8 = 3;

/// Stratum meaning "unsynchronized" inside the system (RFC 5905 §7.3);
/// it goes out on the wire as 0.
pub const STRATUM_UNSYNCHRONIZED: u8 = 16;

/// The system variables a server copies into every reply.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ServerState {
    /// Leap indicator to advertise.
    pub leap: LeapIndicator,
    /// System stratum, 1..=15, or 16 for unsynchronized (sent as 0).
    pub stratum: u8,
    /// Our clock precision exponent.
    pub precision: i8,
    /// Root delay to the reference clock.
    pub root_delay: NtpShort,
    /// Root dispersion to the reference clock.
    pub root_dispersion: NtpShort,
    /// Reference identifier of the system peer.
    pub reference_id: ReferenceId,
    /// When the clock was last set.
    pub reference_ts: NtpTimestamp,
    /// Our minimum poll exponent; replies never advertise less.
    pub min_poll: i8,
}

impl ServerState {
    /// The state of a server that has not synchronized yet.
    ///
    /// This mirrors classic ntpd at start-up (`init_proto`): leap
    /// "unsynchronized", stratum 16 (STRATUM_UNSPEC) and refid `INIT`.
    /// [`build_server_reply`] maps stratum 16 to 0 on the wire like ntpd's
    /// `STRATUM_TO_PKT`, so clients see stratum 0 + `INIT`, which RFC 5905
    /// §7.4 lists as the kiss code for "not yet synchronized".
    pub fn unsynchronized(precision: i8) -> Self {
        ServerState {
            leap: LeapIndicator::Unsynchronized,
            stratum: STRATUM_UNSYNCHRONIZED,
            precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: ReferenceId::INIT,
            reference_ts: NtpTimestamp::ZERO,
            min_poll: DEFAULT_MIN_POLL,
        }
    }
}

/// The version to answer with: the client's, limited to 1..=4.
///
/// The daemon should drop other versions before getting here; clamping
/// keeps the reply well-formed regardless, and answering a newer version
/// with 4 is what an NTPv4-only server is expected to do.
fn reply_version(request: &NtpHeader) -> u8 {
    request.version.clamp(1, 4)
}

/// Stratum as it goes on the wire: "unsynchronized" (≥ 16) is sent as 0.
fn wire_stratum(stratum: u8) -> u8 {
    if stratum >= STRATUM_UNSYNCHRONIZED {
        0
    } else {
        stratum
    }
}

/// Builds the mode-4 reply to a client request (RFC 5905 §9.2
/// `fast_xmit`).
///
/// `receive_ts` is when the request arrived (T2) and `transmit_ts` when the
/// reply leaves (T3); the client's transmit timestamp is echoed as origin.
/// The poll is `max(request.poll, state.min_poll)` as in classic ntpd, so a
/// client is told not to poll faster than we allow.
pub fn build_server_reply(
    request: &NtpHeader,
    state: &ServerState,
    receive_ts: NtpTimestamp,
    transmit_ts: NtpTimestamp,
) -> NtpHeader {
    NtpHeader {
        leap: state.leap,
        version: reply_version(request),
        mode: Mode::Server,
        stratum: wire_stratum(state.stratum),
        poll: request.poll.max(state.min_poll),
        precision: state.precision,
        root_delay: state.root_delay,
        root_dispersion: state.root_dispersion,
        reference_id: state.reference_id,
        reference_ts: state.reference_ts,
        origin_ts: request.transmit_ts,
        receive_ts,
        transmit_ts,
    }
}

/// Builds a kiss-o'-death reply carrying `code` (e.g. [`ReferenceId::RATE`]).
///
/// Mirrors classic ntpd's KoD from `fast_xmit`: LI = 3, stratum 0, the
/// code as refid, and the client's own values echoed back — precision,
/// root delay/dispersion and reference time from the request, and its
/// transmit timestamp in origin, receive and transmit. Echoing means the
/// KoD reveals nothing about our clock and costs no clock read, while the
/// matching origin lets a genuine client believe it. The poll is
/// `max(request.poll, DEFAULT_MIN_POLL)`.
pub fn build_kod(request: &NtpHeader, code: ReferenceId) -> NtpHeader {
    NtpHeader {
        leap: LeapIndicator::Unsynchronized,
        version: reply_version(request),
        mode: Mode::Server,
        stratum: 0,
        poll: request.poll.max(DEFAULT_MIN_POLL),
        precision: request.precision,
        root_delay: request.root_delay,
        root_dispersion: request.root_dispersion,
        reference_id: code,
        reference_ts: request.reference_ts,
        origin_ts: request.transmit_ts,
        receive_ts: request.transmit_ts,
        transmit_ts: request.transmit_ts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::refid::KissCode;

    fn request(version: u8, poll: i8) -> NtpHeader {
        NtpHeader {
            leap: LeapIndicator::Unsynchronized,
            version,
            mode: Mode::Client,
            poll,
            precision: -18,
            root_delay: NtpShort::from_bits(0x10),
            root_dispersion: NtpShort::from_bits(0x20),
            reference_ts: NtpTimestamp::from_bits(0x30),
            transmit_ts: NtpTimestamp::from_bits(0xDEAD_BEEF_0BAD_F00D),
            ..NtpHeader::default()
        }
    }

    fn state() -> ServerState {
        ServerState {
            leap: LeapIndicator::InsertSecond,
            stratum: 1,
            precision: -23,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::from_seconds_f64(0.001),
            reference_id: ReferenceId::from_ascii(b"GPS"),
            reference_ts: NtpTimestamp::from_bits(0xE000_0000_0000_0000),
            min_poll: 4,
        }
    }

    #[test]
    fn reply_copies_state_and_echoes_transmit() {
        let req = request(4, 6);
        let t2 = NtpTimestamp::from_bits(0xE000_0001_0000_0000);
        let t3 = NtpTimestamp::from_bits(0xE000_0001_0001_0000);
        let r = build_server_reply(&req, &state(), t2, t3);
        assert_eq!(r.mode, Mode::Server);
        assert_eq!(r.version, 4);
        assert_eq!(r.leap, LeapIndicator::InsertSecond);
        assert_eq!(r.stratum, 1);
        assert_eq!(r.precision, -23);
        assert_eq!(r.reference_id, ReferenceId::from_ascii(b"GPS"));
        assert_eq!(r.reference_ts, state().reference_ts);
        assert_eq!(r.root_dispersion, state().root_dispersion);
        assert_eq!(r.origin_ts, req.transmit_ts);
        assert_eq!((r.receive_ts, r.transmit_ts), (t2, t3));
        // Wire check: 0x64 is LI 1 | VN 4 | mode 4.
        let mut wire = [0u8; 48];
        r.encode(&mut wire);
        assert_eq!(wire[0], 0x64);
    }

    #[test]
    fn reply_version_is_echoed_and_clamped() {
        let t = NtpTimestamp::from_bits(1);
        for (asked, answered) in [(1, 1), (3, 3), (4, 4), (0, 1), (5, 4), (7, 4)] {
            assert_eq!(
                build_server_reply(&request(asked, 6), &state(), t, t).version,
                answered
            );
            assert_eq!(
                build_kod(&request(asked, 6), ReferenceId::RATE).version,
                answered
            );
        }
    }

    #[test]
    fn reply_poll_is_at_least_min_poll() {
        let t = NtpTimestamp::from_bits(1);
        assert_eq!(build_server_reply(&request(4, 10), &state(), t, t).poll, 10);
        assert_eq!(build_server_reply(&request(4, 2), &state(), t, t).poll, 4);
        assert_eq!(build_server_reply(&request(4, -3), &state(), t, t).poll, 4);
    }

    #[test]
    fn unsynchronized_server_sends_stratum_zero_init() {
        let t = NtpTimestamp::from_bits(1);
        let s = ServerState::unsynchronized(-20);
        assert_eq!(s.stratum, 16);
        let r = build_server_reply(&request(4, 6), &s, t, t);
        assert_eq!(r.leap, LeapIndicator::Unsynchronized);
        assert_eq!(r.stratum, 0);
        assert_eq!(r.reference_id, ReferenceId::INIT);
        assert_eq!(r.precision, -20);
        assert_eq!(r.poll, 6);
        assert_eq!(r.kiss_code(), Some(KissCode::Other(*b"INIT")));
    }

    #[test]
    fn kod_mirrors_classic_ntpd() {
        let req = request(3, 1);
        let k = build_kod(&req, ReferenceId::RATE);
        assert_eq!(k.leap, LeapIndicator::Unsynchronized);
        assert_eq!(k.mode, Mode::Server);
        assert_eq!(k.version, 3);
        assert_eq!(k.stratum, 0);
        assert_eq!(k.poll, DEFAULT_MIN_POLL);
        assert_eq!(k.kiss_code(), Some(KissCode::Rate));
        assert_eq!(k.precision, req.precision);
        assert_eq!(k.root_delay, req.root_delay);
        assert_eq!(k.root_dispersion, req.root_dispersion);
        assert_eq!(k.reference_ts, req.reference_ts);
        assert_eq!(k.origin_ts, req.transmit_ts);
        assert_eq!(k.receive_ts, req.transmit_ts);
        assert_eq!(k.transmit_ts, req.transmit_ts);
        assert_eq!(build_kod(&request(4, 9), ReferenceId::DENY).poll, 9);
        // Wire check: 0xDC is LI 3 | VN 3 | mode 4.
        let mut wire = [0u8; 48];
        k.encode(&mut wire);
        assert_eq!(wire[0], 0xDC);
        assert_eq!(&wire[12..16], b"RATE");
    }
}
