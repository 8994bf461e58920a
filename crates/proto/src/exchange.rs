//! The client side of one request/response exchange (RFC 5905 §8, §9):
//! building the request, validating the reply against it, and turning the
//! four timestamps into an offset/delay/dispersion [`Sample`].

use crate::packet::{LeapIndicator, Mode, NtpHeader};
use crate::refid::{KissCode, ReferenceId};
use crate::timestamp::NtpTimestamp;

/// Frequency tolerance PHI (RFC 5905 §7.2): 15 ppm, the rate at which
/// dispersion grows with elapsed time.
pub const PHI: f64 = 15e-6;

/// A client (mode 3) request together with the transmit timestamp it carried.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ClientRequest {
    /// The header to send.
    pub header: NtpHeader,
    /// The value placed in the transmit field; a genuine reply echoes it as
    /// its origin timestamp.
    pub sent_transmit: NtpTimestamp,
}

/// Builds a mode-3 request whose transmit timestamp is `random_transmit`.
///
/// The transmit field is a nonce, not the clock: the server only echoes it,
/// and an off-path attacker who cannot guess it cannot forge a reply,
/// whereas a clock reading is predictable in all but its lowest bits. The
/// caller keeps
/// the real send time T1 separately in [`Exchange`]. Everything else is
/// zero except LI = 3 (we are a client with nothing to vouch for), version,
/// mode and poll. A zero nonce is replaced by 1, because a zero origin
/// is treated as bogus and the reply could never be accepted.
pub fn new_client_request(version: u8, poll: i8, random_transmit: u64) -> ClientRequest {
    let transmit = NtpTimestamp::from_bits(random_transmit.max(1));
    let header = NtpHeader {
        leap: LeapIndicator::Unsynchronized,
        version,
        mode: Mode::Client,
        poll,
        transmit_ts: transmit,
        ..NtpHeader::default()
    };
    ClientRequest {
        header,
        sent_transmit: transmit,
    }
}

/// Why a reply was rejected.
#[derive(thiserror::Error, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReplyError {
    /// Not a server (or symmetric passive) reply.
    #[error("reply has the wrong mode")]
    WrongMode,
    /// Version outside 1..=4.
    #[error("reply has an unsupported version")]
    BadVersion,
    /// Origin timestamp does not match our request: spoofed, stale or zero.
    #[error("reply origin timestamp does not match the request")]
    BogusOrigin,
    /// A reply to this request was already accepted.
    #[error("duplicate reply")]
    Duplicate,
    /// Receive or transmit timestamp is zero.
    #[error("reply carries a zero timestamp")]
    ZeroTimestamp,
    /// A kiss-o'-death packet (stratum 0) that really answers our request.
    #[error("kiss-o'-death {0:?}")]
    Kiss(KissCode),
    /// The server is not synchronized (LI = 3 or stratum above 15).
    #[error("server is unsynchronized")]
    Unsynchronized,
}

/// Validates `reply` against `request` (RFC 5905 §8 tests 1–3 and §7.4).
///
/// The origin check comes before the kiss-o'-death check: a KoD only counts
/// if it echoes our nonce, otherwise any off-path host could silence us
/// with a forged `DENY`.
pub fn validate_reply(request: &ClientRequest, reply: &NtpHeader) -> Result<(), ReplyError> {
    if !matches!(reply.mode, Mode::Server | Mode::SymmetricPassive) {
        return Err(ReplyError::WrongMode);
    }
    if !(1..=4).contains(&reply.version) {
        return Err(ReplyError::BadVersion);
    }
    if reply.origin_ts.is_zero() || reply.origin_ts != request.sent_transmit {
        return Err(ReplyError::BogusOrigin);
    }
    if let Some(code) = reply.kiss_code() {
        return Err(ReplyError::Kiss(code));
    }
    if reply.receive_ts.is_zero() || reply.transmit_ts.is_zero() {
        return Err(ReplyError::ZeroTimestamp);
    }
    if reply.leap == LeapIndicator::Unsynchronized || reply.stratum > 15 {
        return Err(ReplyError::Unsynchronized);
    }
    Ok(())
}

/// One clock sample from a validated exchange. Times are in seconds.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Sample {
    /// θ: how far the server's clock is ahead of ours.
    pub offset: f64,
    /// δ: round-trip delay, never below the local precision.
    pub delay: f64,
    /// ε: dispersion from both precisions plus PHI over the round trip.
    pub dispersion: f64,
    /// Local time the request was sent.
    pub t1: NtpTimestamp,
    /// Server time the request arrived.
    pub t2: NtpTimestamp,
    /// Server time the reply left.
    pub t3: NtpTimestamp,
    /// Local time the reply arrived.
    pub t4: NtpTimestamp,
    /// The server's stratum.
    pub stratum: u8,
    /// The server's leap indicator.
    pub leap: LeapIndicator,
    /// The server's root delay.
    pub root_delay: f64,
    /// The server's root dispersion.
    pub root_dispersion: f64,
    /// The server's reference identifier.
    pub reference_id: ReferenceId,
    /// The poll exponent from the reply.
    pub poll: i8,
    /// The server's precision exponent.
    pub precision: i8,
}

/// Offset θ and raw delay δ from the four timestamps (RFC 5905 §8):
/// θ = ((T2 − T1) + (T3 − T4)) / 2 and δ = (T4 − T1) − (T3 − T2).
///
/// Each difference is taken with [`NtpTimestamp::diff`], so the result is
/// right across an era rollover; the sums are done in f64 so they cannot
/// overflow. The delay is not clamped here.
pub fn offset_delay(
    t1: NtpTimestamp,
    t2: NtpTimestamp,
    t3: NtpTimestamp,
    t4: NtpTimestamp,
) -> (f64, f64) {
    let t21 = t2.diff(t1).to_seconds_f64();
    let t34 = t3.diff(t4).to_seconds_f64();
    let t41 = t4.diff(t1).to_seconds_f64();
    let t32 = t3.diff(t2).to_seconds_f64();
    ((t21 + t34) / 2.0, t41 - t32)
}

/// 2^exp as seconds, for precision exponents.
fn log2d(exp: i8) -> f64 {
    2f64.powi(i32::from(exp))
}

/// State of one outstanding request: what we sent, when, and whether it has
/// already been answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Exchange {
    request: ClientRequest,
    t1: NtpTimestamp,
    answered: bool,
}

impl Exchange {
    /// Starts tracking `request`, sent at local time `t1_local_send_time`.
    pub fn new(request: ClientRequest, t1_local_send_time: NtpTimestamp) -> Self {
        Exchange {
            request,
            t1: t1_local_send_time,
            answered: false,
        }
    }

    /// The request being tracked.
    pub fn request(&self) -> &ClientRequest {
        &self.request
    }

    /// The local send time T1.
    pub fn t1(&self) -> NtpTimestamp {
        self.t1
    }

    /// Whether a reply has already been accepted.
    pub fn is_answered(&self) -> bool {
        self.answered
    }

    /// Validates a reply received at local time `t4_local_receive` and
    /// computes the sample. `local_precision` is our clock's precision
    /// exponent.
    ///
    /// Only the first valid reply is accepted; later ones get
    /// [`ReplyError::Duplicate`] so a replayed or duplicated packet cannot
    /// feed the same measurement twice. Rejected replies leave the exchange
    /// open, so a forged packet cannot block the genuine one.
    ///
    /// Following RFC 5905 Appendix A.5.1.1, delay is floored at the local
    /// precision 2^local_precision (a non-positive round trip is
    /// measurement noise) and dispersion is
    /// ε = 2^server_precision + 2^local_precision + PHI·(T4 − T1).
    pub fn on_reply(
        &mut self,
        reply: &NtpHeader,
        t4_local_receive: NtpTimestamp,
        local_precision: i8,
    ) -> Result<Sample, ReplyError> {
        if self.answered {
            return Err(ReplyError::Duplicate);
        }
        validate_reply(&self.request, reply)?;
        self.answered = true;

        let (t1, t2, t3, t4) = (
            self.t1,
            reply.receive_ts,
            reply.transmit_ts,
            t4_local_receive,
        );
        let (offset, raw_delay) = offset_delay(t1, t2, t3, t4);
        let local_eps = log2d(local_precision);
        // A negative T4 − T1 means our clock stepped mid-exchange; it must
        // not shrink the error bound.
        let round_trip = t4.diff(t1).to_seconds_f64().max(0.0);
        Ok(Sample {
            offset,
            delay: raw_delay.max(local_eps),
            dispersion: log2d(reply.precision) + local_eps + PHI * round_trip,
            t1,
            t2,
            t3,
            t4,
            stratum: reply.stratum,
            leap: reply.leap,
            root_delay: reply.root_delay.to_seconds_f64(),
            root_dispersion: reply.root_dispersion.to_seconds_f64(),
            reference_id: reply.reference_id,
            poll: reply.poll,
            precision: reply.precision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{build_kod, build_server_reply, ServerState};
    use crate::timestamp::{NtpShort, UNIX_OFFSET};

    const NONCE: u64 = 0x9E37_79B9_7F4A_7C15;

    fn synced_server() -> ServerState {
        ServerState {
            leap: LeapIndicator::NoWarning,
            stratum: 2,
            precision: -20,
            root_delay: NtpShort::from_seconds_f64(0.015),
            root_dispersion: NtpShort::from_seconds_f64(0.03),
            reference_id: ReferenceId([192, 0, 2, 1]),
            reference_ts: NtpTimestamp::from_unix(1_700_000_000, 0),
            min_poll: 3,
        }
    }

    /// Builds an exchange where the server clock is `offset` ahead, the path
    /// is symmetric with round trip `delay`, and the server holds the
    /// request for 10 ms.
    fn run(t1: NtpTimestamp, offset: f64, delay: f64) -> (Exchange, NtpHeader, NtpTimestamp) {
        let req = new_client_request(4, 6, NONCE);
        let t2 = t1.add_seconds(delay / 2.0 + offset);
        let t3 = t2.add_seconds(0.01);
        let t4 = t3.add_seconds(-offset + delay / 2.0);
        let reply = build_server_reply(&req.header, &synced_server(), t2, t3);
        (Exchange::new(req, t1), reply, t4)
    }

    #[test]
    fn request_layout() {
        let req = new_client_request(4, 6, NONCE);
        let mut wire = [0u8; 48];
        req.header.encode(&mut wire);
        assert_eq!(wire[0], 0xE3); // LI 3, VN 4, mode 3
        assert_eq!(wire[2], 6);
        assert!(wire[1..2].iter().chain(&wire[3..40]).all(|&b| b == 0));
        assert_eq!(&wire[40..], &NONCE.to_be_bytes());
        assert_eq!(req.sent_transmit.to_bits(), NONCE);
        // A zero nonce would make every reply look bogus.
        assert_eq!(new_client_request(4, 6, 0).sent_transmit.to_bits(), 1);
    }

    #[test]
    fn rfc5905_offset_and_delay() {
        let t1 = NtpTimestamp::from_unix(1_700_000_000, 250_000_000);
        let (mut ex, reply, t4) = run(t1, 0.5, 0.1);
        let s = ex.on_reply(&reply, t4, -20).unwrap();
        assert!((s.offset - 0.5).abs() < 1e-9, "offset {}", s.offset);
        assert!((s.delay - 0.1).abs() < 1e-9, "delay {}", s.delay);
        // T4 − T1 = 0.11 s (0.1 s path + 10 ms in the server).
        let eps = 2.0 * 2f64.powi(-20) + PHI * 0.11;
        assert!((s.dispersion - eps).abs() < 1e-12);
        assert_eq!((s.t1, s.t4), (t1, t4));
        assert_eq!(s.stratum, 2);
        assert_eq!(s.reference_id, ReferenceId([192, 0, 2, 1]));
        assert!((s.root_delay - 0.015).abs() < 2f64.powi(-16));
        assert!((s.root_dispersion - 0.03).abs() < 2f64.powi(-16));
    }

    #[test]
    fn negative_offset_and_floored_delay() {
        let t1 = NtpTimestamp::from_unix(1_700_000_000, 0);
        let (mut ex, reply, t4) = run(t1, -2.25, 0.0);
        let s = ex.on_reply(&reply, t4, -10).unwrap();
        assert!((s.offset + 2.25).abs() < 1e-9);
        // Zero measured delay is floored at the local precision.
        assert_eq!(s.delay, 2f64.powi(-10));
    }

    #[test]
    fn exchange_across_2036_rollover() {
        // T1 half a second before era 1 begins; the reply lands in era 1.
        let era1 = (1i64 << 32) - UNIX_OFFSET;
        let t1 = NtpTimestamp::from_unix(era1 - 1, 500_000_000);
        let (mut ex, reply, t4) = run(t1, 0.75, 0.2);
        assert!(reply.receive_ts.seconds() < 10, "T2 must have wrapped");
        let s = ex.on_reply(&reply, t4, -20).unwrap();
        assert!((s.offset - 0.75).abs() < 1e-9);
        assert!((s.delay - 0.2).abs() < 1e-9);
        // T4 (client clock, 0.75 s behind) is still in era 0.
        assert_eq!(s.t4.to_unix(era1).0, era1 - 1);
        assert!(s.t4.seconds() > 0xFFFF_0000);
    }

    #[test]
    fn duplicate_reply_rejected() {
        let t1 = NtpTimestamp::from_unix(1_700_000_000, 0);
        let (mut ex, reply, t4) = run(t1, 0.0, 0.05);
        assert!(ex.on_reply(&reply, t4, -20).is_ok());
        assert!(ex.is_answered());
        assert_eq!(ex.on_reply(&reply, t4, -20), Err(ReplyError::Duplicate));
    }

    #[test]
    fn rejected_reply_keeps_exchange_open() {
        let t1 = NtpTimestamp::from_unix(1_700_000_000, 0);
        let (mut ex, reply, t4) = run(t1, 0.0, 0.05);
        let forged = NtpHeader {
            origin_ts: NtpTimestamp::from_bits(NONCE + 1),
            ..reply
        };
        assert_eq!(ex.on_reply(&forged, t4, -20), Err(ReplyError::BogusOrigin));
        assert!(ex.on_reply(&reply, t4, -20).is_ok());
    }

    #[test]
    fn spoofed_kod_is_bogus_origin_not_kiss() {
        let req = new_client_request(4, 6, NONCE);
        // An off-path attacker's DENY with a guessed origin.
        let mut spoof = build_kod(&req.header, ReferenceId::DENY);
        spoof.origin_ts = NtpTimestamp::from_bits(0x1234);
        assert_eq!(validate_reply(&req, &spoof), Err(ReplyError::BogusOrigin));
        // The genuine KoD echoes our nonce and is reported as such.
        let real = build_kod(&req.header, ReferenceId::DENY);
        assert_eq!(
            validate_reply(&req, &real),
            Err(ReplyError::Kiss(KissCode::Deny))
        );
        let rate = build_kod(&req.header, ReferenceId::RATE);
        assert_eq!(
            validate_reply(&req, &rate),
            Err(ReplyError::Kiss(KissCode::Rate))
        );
    }

    #[test]
    fn validation_checks_in_order() {
        let req = new_client_request(4, 6, NONCE);
        let t = NtpTimestamp::from_unix(1_700_000_000, 0);
        let good = build_server_reply(&req.header, &synced_server(), t, t.add_seconds(0.001));
        assert_eq!(validate_reply(&req, &good), Ok(()));

        let with = |f: &dyn Fn(&mut NtpHeader)| {
            let mut h = good;
            f(&mut h);
            validate_reply(&req, &h)
        };
        assert_eq!(with(&|h| h.mode = Mode::Client), Err(ReplyError::WrongMode));
        assert_eq!(
            with(&|h| h.mode = Mode::Broadcast),
            Err(ReplyError::WrongMode)
        );
        assert_eq!(with(&|h| h.mode = Mode::SymmetricPassive), Ok(()));
        assert_eq!(with(&|h| h.version = 0), Err(ReplyError::BadVersion));
        assert_eq!(with(&|h| h.version = 5), Err(ReplyError::BadVersion));
        assert_eq!(with(&|h| h.version = 1), Ok(()));
        assert_eq!(
            with(&|h| h.origin_ts = NtpTimestamp::ZERO),
            Err(ReplyError::BogusOrigin)
        );
        assert_eq!(
            with(&|h| h.receive_ts = NtpTimestamp::ZERO),
            Err(ReplyError::ZeroTimestamp)
        );
        assert_eq!(
            with(&|h| h.transmit_ts = NtpTimestamp::ZERO),
            Err(ReplyError::ZeroTimestamp)
        );
        assert_eq!(
            with(&|h| h.leap = LeapIndicator::Unsynchronized),
            Err(ReplyError::Unsynchronized)
        );
        assert_eq!(with(&|h| h.stratum = 16), Err(ReplyError::Unsynchronized));
        assert_eq!(with(&|h| h.stratum = 15), Ok(()));
        // T3 before T2 is odd but not a validation error.
        assert_eq!(with(&|h| h.transmit_ts = t.add_seconds(-1.0)), Ok(()));
        // Stratum 0 with a matching origin is a kiss code, even "INIT".
        assert_eq!(
            with(&|h| {
                h.stratum = 0;
                h.reference_id = ReferenceId::INIT;
            }),
            Err(ReplyError::Kiss(KissCode::Other(*b"INIT")))
        );
    }

    #[test]
    fn unsynchronized_server_reply_is_rejected() {
        let req = new_client_request(4, 6, NONCE);
        let t = NtpTimestamp::from_unix(1_700_000_000, 0);
        let reply = build_server_reply(&req.header, &ServerState::unsynchronized(-20), t, t);
        // Classic ntpd's unsynchronized reply has stratum 0 / INIT on the wire.
        assert_eq!(
            validate_reply(&req, &reply),
            Err(ReplyError::Kiss(KissCode::Other(*b"INIT")))
        );
    }
}
