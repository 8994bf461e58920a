//! The server's decision for one datagram: answer, kiss, or drop.
//!
//! This is the whole receive→reply path minus the sockets, so it can be tested and fuzzed
//! directly: it takes the bytes, the sender, the kernel receive time and the shared
//! state, and writes the reply (if any) into a caller-owned buffer. It never allocates and
//! never panics, whatever the bytes.

use std::net::{IpAddr, SocketAddr};

use meridian_auth::{server_action, write_crypto_nak, KeyStore, ServerAuthAction, Verification};
use meridian_conf::restrict::{decide, Decision, PacketMode, RestrictFlags, RestrictTable};
use meridian_nts::{NtsOutcome, NtsServer};
use meridian_proto::{
    build_kod, build_server_reply, parse_packet, Mode, NtpHeader, NtpTimestamp, ReferenceId,
    HEADER_LEN,
};

use super::ratelimit::ClientTable;
use crate::state::ServingState;

/// Why a datagram got no answer; counted for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than an NTP header, or with a malformed extension/MAC area.
    Malformed,
    /// Came from source port 0, or from an address that cannot be a real client.
    BadSource,
    /// A mode this server does not answer here (server replies, broadcasts, mode 7, …).
    UnhandledMode,
    /// Refused by the `restrict` table.
    Restricted,
    /// Over its rate limit (and no KoD due).
    RateLimited,
    /// Authentication requested but not available.
    Unauthenticated,
}

/// What to do with one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A reply of `len` bytes was written; the transmit timestamp is patched in at send.
    Reply {
        /// Length of the reply in the output buffer (including room for its MAC).
        len: usize,
        /// Sign with this key after the transmit timestamp is written: the MAC must
        /// cover the final packet.
        sign: Option<u32>,
    },
    /// A reply of `len` bytes that is final as written (NTS: its transmit timestamp is
    /// inside the authenticated part, so it was taken before sealing).
    Sealed {
        /// Length of the reply in the output buffer.
        len: usize,
    },
    /// A KoD of `len` bytes was written (its timestamps are final).
    Kod {
        /// Length of the KoD in the output buffer.
        len: usize,
    },
    /// A control (mode 6) request the `restrict` table lets through: nothing was
    /// written; the caller hands it to [`crate::control::handle_request`] with these
    /// flags (outside the batch, as its reply may take several datagrams).
    Control {
        /// The `restrict` flags for the sender.
        flags: RestrictFlags,
    },
    /// No answer.
    Drop(DropReason),
}

/// Everything a worker decides with, gathered once per batch.
pub struct ServeContext<'a> {
    /// The served sync state.
    pub state: &'a ServingState,
    /// The `restrict` table.
    pub restrict: &'a RestrictTable,
    /// Symmetric keys.
    pub keys: &'a KeyStore,
    /// The NTS server, when `nts enable` is configured.
    pub nts: Option<&'a NtsServer>,
    /// Reads the served clock, for replies that must be final before they are sealed.
    pub read_clock: &'a dyn Fn() -> NtpTimestamp,
}

/// Where, in a reply, the transmit timestamp goes, so it can be written just before send.
pub const TRANSMIT_OFFSET: usize = 40;

/// Whether `ip` could be a genuine remote client: not unspecified, not multicast or
/// broadcast, and not the refclock pseudo-addresses 127.127.x.x.
fn plausible_client(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || (o[0] == 127 && o[1] == 127))
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Decide about one datagram and, if it is answered, write the reply into `out`.
///
/// `now` is a monotonic time in seconds for the rate limiter; `rx` is the receive time
/// already on the served clock's scale.
// The hot path's inputs, each borrowed from the worker: a struct would only be built and
// taken apart again for every packet.
#[allow(clippy::too_many_arguments)]
pub fn respond(
    ctx: &ServeContext<'_>,
    clients: &mut ClientTable,
    datagram: &[u8],
    source: SocketAddr,
    rx: NtpTimestamp,
    now: f64,
    out: &mut [u8],
) -> Outcome {
    let (state, restrict, keys) = (ctx.state, ctx.restrict, ctx.keys);
    if source.port() == 0 || !plausible_client(source.ip()) {
        return Outcome::Drop(DropReason::BadSource);
    }
    // Control requests are shorter than a time packet: route them before that check.
    if let Some(&first) = datagram.first() {
        if first & 7 == Mode::Control.to_bits() {
            return control(restrict, clients, first, source, now);
        }
    }
    if datagram.len() < HEADER_LEN || out.len() < HEADER_LEN {
        return Outcome::Drop(DropReason::Malformed);
    }
    let packet = match parse_packet(datagram) {
        Ok(p) => p,
        Err(_) => return Outcome::Drop(DropReason::Malformed),
    };
    let request = packet.header;
    let mode_bits = request.mode.to_bits();
    let mode_version = (request.version << 3) | mode_bits;
    let flags = restrict.lookup(source.ip());
    let verdict = clients.observe(source.ip(), source.port(), now, mode_version);
    let rate_limited = verdict.over_limit;
    let verification = keys.verify_parsed(datagram, &packet);
    if verification == Verification::Malformed {
        return Outcome::Drop(DropReason::Malformed);
    }
    // An NTS request is authenticated by its cookie and authenticator; if those turn out
    // bad it gets an NTS NAK below, never time.
    let nts_candidate = ctx.nts.is_some() && !packet.extensions.is_empty();
    // As ntpd's `RES_DONTTRUST && has_mac == 0`: `notrust` drops only requests without
    // a MAC here; a bad MAC or an unknown/untrusted key still gets its crypto-NAK from
    // `server_action` below.
    let authenticated = verification != Verification::Unauthenticated || nts_candidate;
    match decide(
        flags,
        PacketMode::from_bits(mode_bits),
        request.version,
        rate_limited,
        authenticated,
    ) {
        Decision::Drop => {
            return Outcome::Drop(if rate_limited && flags.contains(RestrictFlags::LIMITED) {
                DropReason::RateLimited
            } else {
                DropReason::Restricted
            })
        }
        Decision::Kod(kind) => {
            if !verdict.kod_allowed {
                return Outcome::Drop(DropReason::RateLimited);
            }
            let kod = build_kod(&request, ReferenceId(kind.code()));
            return write(&kod, out).map_or(Outcome::Drop(DropReason::Malformed), |len| {
                Outcome::Kod { len }
            });
        }
        Decision::Answer => {}
    }
    // A symmetric active peer gets a stateless symmetric passive answer: it can sync to
    // us, we never sync to it (no association is mobilised), and `nopeer` refuses even
    // that, as classic ntpd refuses to mobilise.
    let symmetric = request.mode == Mode::SymmetricActive;
    if symmetric && flags.contains(RestrictFlags::NOPEER) {
        return Outcome::Drop(DropReason::Restricted);
    }
    if request.mode != Mode::Client && !symmetric {
        // Symmetric modes arrive with peer support, control (mode 6) with the control
        // work; mode 7 is never answered (monlist amplification).
        return Outcome::Drop(DropReason::UnhandledMode);
    }
    if let (Some(nts), false) = (ctx.nts, packet.extensions.is_empty()) {
        // Sealed replies carry their transmit timestamp inside the authenticated part.
        let mut reply = build_server_reply(&request, &state.server, rx, (ctx.read_clock)());
        if symmetric {
            reply.mode = Mode::SymmetricPassive;
        }
        match nts.process_request(datagram, &reply, out) {
            NtsOutcome::Reply(len) | NtsOutcome::Nak(len) => return Outcome::Sealed { len },
            NtsOutcome::Drop => return Outcome::Drop(DropReason::Unauthenticated),
            NtsOutcome::NotNts => {}
        }
    }
    let action = server_action(verification, flags.contains(RestrictFlags::NOTRUST));
    if action == ServerAuthAction::Drop {
        return Outcome::Drop(DropReason::Unauthenticated);
    }
    let mut reply: NtpHeader = build_server_reply(&request, &state.server, rx, NtpTimestamp::ZERO);
    if symmetric {
        reply.mode = Mode::SymmetricPassive;
    }
    let Some(len) = write(&reply, out) else {
        return Outcome::Drop(DropReason::Malformed);
    };
    match action {
        ServerAuthAction::Reply { key_id: None } => Outcome::Reply { len, sign: None },
        ServerAuthAction::Reply { key_id: Some(key) } => match keys.mac_len(key) {
            Some(mac) if len + mac <= out.len() => Outcome::Reply {
                len: len + mac,
                sign: Some(key),
            },
            _ => Outcome::Drop(DropReason::Malformed),
        },
        // A bad MAC, or a key we don't have or trust: tell the client with a crypto-NAK
        // (header plus a zero key id), which it cannot mistake for authenticated time.
        ServerAuthAction::CryptoNak => match out.get_mut(len..).map(write_crypto_nak) {
            Some(Ok(nak)) => Outcome::Reply {
                len: len + nak,
                sign: None,
            },
            _ => Outcome::Drop(DropReason::Malformed),
        },
        ServerAuthAction::Drop => Outcome::Drop(DropReason::Unauthenticated),
    }
}

/// The restrict decision for a mode 6 request. The sender is recorded in the client
/// table like any other (so `ntpq -c mrulist` lists itself, as with ntpd), but control
/// traffic is never rate limited: `noquery` is the switch for it.
fn control(
    restrict: &RestrictTable,
    clients: &mut ClientTable,
    first: u8,
    source: SocketAddr,
    now: f64,
) -> Outcome {
    let flags = restrict.lookup(source.ip());
    if flags.contains(RestrictFlags::IGNORE) {
        return Outcome::Drop(DropReason::Restricted);
    }
    clients.observe(source.ip(), source.port(), now, first & 0x3f);
    match decide(flags, PacketMode::Control, (first >> 3) & 7, false, false) {
        Decision::Answer => Outcome::Control { flags },
        Decision::Drop | Decision::Kod(_) => Outcome::Drop(DropReason::Restricted),
    }
}

fn write(header: &NtpHeader, out: &mut [u8]) -> Option<usize> {
    let slot: &mut [u8; HEADER_LEN] = out.get_mut(..HEADER_LEN)?.try_into().ok()?;
    header.encode(slot);
    Some(HEADER_LEN)
}

/// Write the transmit timestamp into a reply produced by [`respond`].
pub fn stamp_transmit(reply: &mut [u8], transmit: NtpTimestamp) {
    if let Some(slot) = reply.get_mut(TRANSMIT_OFFSET..TRANSMIT_OFFSET + 8) {
        slot.copy_from_slice(&transmit.to_bits().to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ratelimit::RateLimits;
    use meridian_clock::TimeCorrection;
    use meridian_conf::{parse_str, MemorySource};
    use meridian_proto::{LeapIndicator, NtpShort, ServerState};

    fn state() -> ServingState {
        ServingState {
            server: ServerState {
                leap: LeapIndicator::NoWarning,
                stratum: 3,
                precision: -20,
                root_delay: NtpShort::from_seconds_f64(0.01),
                root_dispersion: NtpShort::from_seconds_f64(0.02),
                reference_id: ReferenceId::from_ascii(b"GPS"),
                reference_ts: NtpTimestamp::from_unix(1_800_000_000, 0),
                min_poll: 4,
            },
            correction: TimeCorrection::IDENTITY,
            smear: None,
        }
    }

    fn table(conf: &str) -> RestrictTable {
        parse_str("t.conf", conf, &MemorySource::new())
            .unwrap()
            .restrict
    }

    fn request(version: u8, mode: u8, transmit: u64) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0] = (version << 3) | mode;
        b[2] = 6;
        b[40..48].copy_from_slice(&transmit.to_be_bytes());
        b
    }

    fn ask(
        restrict: &RestrictTable,
        clients: &mut ClientTable,
        data: &[u8],
        from: &str,
        now: f64,
    ) -> (Outcome, [u8; 128]) {
        ask_with_keys(restrict, &no_keys(), clients, data, from, now)
    }

    fn no_keys() -> KeyStore {
        KeyStore::new(meridian_auth::KeyFile::new(), [])
    }

    fn ask_with_keys(
        restrict: &RestrictTable,
        keys: &KeyStore,
        clients: &mut ClientTable,
        data: &[u8],
        from: &str,
        now: f64,
    ) -> (Outcome, [u8; 128]) {
        let mut out = [0u8; 128];
        let rx = NtpTimestamp::from_unix(1_800_000_100, 0);
        let state = state();
        let read_clock = || NtpTimestamp::from_unix(1_800_000_101, 0);
        let ctx = ServeContext {
            state: &state,
            restrict,
            keys,
            nts: None,
            read_clock: &read_clock,
        };
        let o = respond(
            &ctx,
            clients,
            data,
            from.parse().unwrap(),
            rx,
            now,
            &mut out,
        );
        (o, out)
    }

    fn clients() -> ClientTable {
        ClientTable::new(64, RateLimits::default())
    }

    #[test]
    fn client_request_gets_a_proper_server_reply() {
        let t = table("restrict default\n");
        let (o, out) = ask(
            &t,
            &mut clients(),
            &request(4, 3, 0x1234_5678_9abc_def0),
            "10.0.0.2:40000",
            0.0,
        );
        assert_eq!(
            o,
            Outcome::Reply {
                len: 48,
                sign: None
            }
        );
        let h = NtpHeader::decode(&out).unwrap();
        assert_eq!(h.mode, Mode::Server);
        assert_eq!(h.version, 4);
        assert_eq!(h.stratum, 3);
        assert_eq!(h.leap, LeapIndicator::NoWarning);
        assert_eq!(h.poll, 6, "max(client's 6, our minimum 4)");
        assert_eq!(h.origin_ts.to_bits(), 0x1234_5678_9abc_def0);
        assert_eq!(h.receive_ts, NtpTimestamp::from_unix(1_800_000_100, 0));
        assert_eq!(h.reference_id, ReferenceId::from_ascii(b"GPS"));
        let mut reply = out;
        stamp_transmit(&mut reply[..48], NtpTimestamp::from_unix(1_800_000_101, 0));
        assert_eq!(
            NtpHeader::decode(&reply).unwrap().transmit_ts,
            NtpTimestamp::from_unix(1_800_000_101, 0)
        );
    }

    #[test]
    fn versions_one_to_four_are_echoed_and_others_dropped() {
        let t = table("");
        for v in 1..=4 {
            let (o, out) = ask(&t, &mut clients(), &request(v, 3, 1), "10.0.0.2:40000", 0.0);
            assert_eq!(
                o,
                Outcome::Reply {
                    len: 48,
                    sign: None
                },
                "version {v}"
            );
            assert_eq!(NtpHeader::decode(&out).unwrap().version, v);
        }
        for v in [0, 5, 7] {
            let (o, _) = ask(&t, &mut clients(), &request(v, 3, 1), "10.0.0.2:40000", 0.0);
            assert!(matches!(o, Outcome::Drop(_)), "version {v}");
        }
    }

    #[test]
    fn every_mode_but_client_symmetric_active_and_control_is_dropped_here() {
        let t = table("");
        for mode in [0, 2, 4, 5, 7] {
            let (o, _) = ask(
                &t,
                &mut clients(),
                &request(4, mode, 1),
                "10.0.0.2:40000",
                0.0,
            );
            assert!(
                matches!(o, Outcome::Drop(_)),
                "mode {mode} must not be answered as a client"
            );
        }
    }

    #[test]
    fn a_symmetric_active_peer_gets_a_passive_answer_unless_nopeer() {
        let open = table("");
        let (o, out) = ask(
            &open,
            &mut clients(),
            &request(4, 1, 0x77),
            "10.0.0.2:123",
            0.0,
        );
        assert_eq!(
            o,
            Outcome::Reply {
                len: 48,
                sign: None
            }
        );
        let h = NtpHeader::decode(&out).unwrap();
        assert_eq!(h.mode, Mode::SymmetricPassive);
        assert_eq!(h.origin_ts.to_bits(), 0x77);
        let closed = table("restrict default nopeer\n");
        let (o, _) = ask(
            &closed,
            &mut clients(),
            &request(4, 1, 0x77),
            "10.0.0.2:123",
            0.0,
        );
        assert!(matches!(o, Outcome::Drop(_)), "{o:?}");
        // nopeer does not stop plain clients.
        let (o, _) = ask(
            &closed,
            &mut clients(),
            &request(4, 3, 0x77),
            "10.0.0.2:123",
            0.0,
        );
        assert_eq!(
            o,
            Outcome::Reply {
                len: 48,
                sign: None
            }
        );
    }

    #[test]
    fn control_requests_are_routed_by_restrict() {
        let t = table(
            "restrict default noquery\nrestrict 127.0.0.1 nomodify\nrestrict 10.0.0.7 ignore\n",
        );
        // A 12-octet READVAR, far shorter than a time packet.
        let readvar = [0x16, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut c = clients();
        let (o, _) = ask(&t, &mut c, &readvar, "127.0.0.1:40000", 0.0);
        assert_eq!(
            o,
            Outcome::Control {
                flags: RestrictFlags::NOMODIFY
            }
        );
        assert_eq!(
            c.iter_recent().next().map(|e| e.mode_version),
            Some(0x16),
            "recorded for mrulist"
        );
        for src in ["10.0.0.2:40000", "10.0.0.7:40000"] {
            let (o, _) = ask(&t, &mut c, &readvar, src, 0.0);
            assert_eq!(o, Outcome::Drop(DropReason::Restricted), "{src}");
        }
        // Never rate limited: a burst of queries all get through.
        let t = table("restrict default limited kod\n");
        let mut c = clients();
        for i in 0..20 {
            let (o, _) = ask(&t, &mut c, &readvar, "10.0.0.2:1", f64::from(i) * 0.01);
            assert!(matches!(o, Outcome::Control { .. }), "query {i}: {o:?}");
        }
    }

    #[test]
    fn restrict_flags_decide_per_source() {
        let t = table(
            "restrict default\nrestrict 10.0.0.3 ignore\nrestrict 10.0.0.4 noserve\n\
             restrict 10.0.0.5 version\nrestrict 10.0.0.0 mask 255.255.255.0 nomodify notrap noquery\n",
        );
        let cases = [
            ("10.0.0.2:1234", 4, true),
            ("10.0.0.3:1234", 4, false),
            ("10.0.0.4:1234", 4, false),
            ("10.0.0.5:1234", 4, true),
            ("10.0.0.5:1234", 3, false),
            ("10.0.0.9:1234", 3, true),
            ("192.0.2.1:1234", 2, true),
        ];
        for (src, version, answered) in cases {
            let (o, _) = ask(&t, &mut clients(), &request(version, 3, 1), src, 0.0);
            assert_eq!(
                matches!(o, Outcome::Reply { .. }),
                answered,
                "{src} v{version}: {o:?}"
            );
        }
    }

    #[test]
    fn limited_drops_and_limited_kod_kisses_once() {
        let t = table("restrict default limited\nrestrict 10.0.0.5 limited kod\n");
        let mut c = clients();
        let outcomes: Vec<Outcome> = (0..6)
            .map(|i| ask(&t, &mut c, &request(4, 3, 7), "10.0.0.4:1", i as f64 * 0.1).0)
            .collect();
        assert_eq!(
            outcomes[0],
            Outcome::Reply {
                len: 48,
                sign: None
            }
        );
        assert!(
            outcomes[1..]
                .iter()
                .all(|o| *o == Outcome::Drop(DropReason::RateLimited)),
            "{outcomes:?}"
        );

        let mut c = clients();
        let mut kods = Vec::new();
        for i in 0..6 {
            let (o, out) = ask(
                &t,
                &mut c,
                &request(4, 3, 0xabcdef),
                "10.0.0.5:1",
                i as f64 * 0.1,
            );
            if let Outcome::Kod { .. } = o {
                kods.push(NtpHeader::decode(&out).unwrap());
            }
        }
        assert_eq!(kods.len(), 1, "KoDs are rate limited too");
        let k = kods[0];
        assert_eq!((k.leap, k.stratum), (LeapIndicator::Unsynchronized, 0));
        assert_eq!(k.reference_id, ReferenceId::RATE);
        let x = NtpTimestamp::from_bits(0xabcdef);
        assert_eq!((k.origin_ts, k.receive_ts, k.transmit_ts), (x, x, x));
    }

    #[test]
    fn bad_sources_are_dropped() {
        let t = table("");
        for src in [
            "10.0.0.2:0",
            "127.127.1.0:123",
            "224.0.0.1:123",
            "0.0.0.0:123",
            "[ff02::1]:123",
        ] {
            let (o, _) = ask(&t, &mut clients(), &request(4, 3, 1), src, 0.0);
            assert_eq!(o, Outcome::Drop(DropReason::BadSource), "{src}");
        }
    }

    #[test]
    fn short_and_malformed_datagrams_are_dropped() {
        let t = table("");
        let full = request(4, 3, 1);
        for len in [0, 1, 12, 47] {
            let (o, _) = ask(&t, &mut clients(), &full[..len], "10.0.0.2:1", 0.0);
            assert_eq!(o, Outcome::Drop(DropReason::Malformed), "length {len}");
        }
        let mut odd = [0u8; 55];
        odd[..48].copy_from_slice(&full);
        let (o, _) = ask(&t, &mut clients(), &odd, "10.0.0.2:1", 0.0);
        assert_eq!(o, Outcome::Drop(DropReason::Malformed));
    }

    fn keys(trusted: &[u16]) -> KeyStore {
        let parsed = meridian_auth::parse_keys(
            "1 MD5 abcdefgh\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n",
            "k",
        );
        KeyStore::new(parsed.into_result().unwrap(), trusted.iter().copied())
    }

    fn signed_request(store: &KeyStore, key: u32) -> Vec<u8> {
        let mut buf = [0u8; 128];
        buf[..48].copy_from_slice(&request(4, 3, 0x55));
        let len = store.sign_in_place(&mut buf, 48, key).unwrap();
        buf[..len].to_vec()
    }

    #[test]
    fn a_request_signed_with_a_trusted_key_gets_a_reply_to_sign_with_it() {
        let store = keys(&[1, 2]);
        let t = table("restrict default notrust\n");
        for (key, mac) in [(1u32, 20usize), (2, 24)] {
            let req = signed_request(&store, key);
            let (o, _) = ask_with_keys(&t, &store, &mut clients(), &req, "10.0.0.2:1", 0.0);
            assert_eq!(
                o,
                Outcome::Reply {
                    len: 48 + mac,
                    sign: Some(key)
                },
                "key {key}"
            );
        }
    }

    #[test]
    fn unknown_or_untrusted_keys_and_bad_macs_get_a_crypto_nak() {
        let store = keys(&[1]);
        let client = keys(&[1, 2]);
        let t = table("restrict default\n");
        let untrusted = signed_request(&client, 2);
        let mut tampered = signed_request(&client, 1);
        tampered[60] ^= 1;
        let mut unknown = signed_request(&client, 1);
        unknown[48..52].copy_from_slice(&9u32.to_be_bytes());
        for (name, req) in [
            ("untrusted", untrusted),
            ("tampered", tampered),
            ("unknown", unknown),
        ] {
            let (o, out) = ask_with_keys(&t, &store, &mut clients(), &req, "10.0.0.2:1", 0.0);
            assert_eq!(
                o,
                Outcome::Reply {
                    len: 52,
                    sign: None
                },
                "{name}"
            );
            assert_eq!(&out[48..52], &[0, 0, 0, 0], "{name}: crypto-NAK trailer");
            assert!(52 <= req.len(), "no amplification");
        }
    }

    #[test]
    fn notrust_still_answers_a_bad_mac_with_a_crypto_nak() {
        let store = keys(&[1]);
        let client = keys(&[1, 2]);
        let t = table("restrict default notrust\n");
        let untrusted = signed_request(&client, 2);
        let (o, out) = ask_with_keys(&t, &store, &mut clients(), &untrusted, "10.0.0.2:1", 0.0);
        assert_eq!(
            o,
            Outcome::Reply {
                len: 52,
                sign: None
            }
        );
        assert_eq!(&out[48..52], &[0, 0, 0, 0]);
    }

    #[test]
    fn notrust_drops_unauthenticated_requests() {
        let store = keys(&[1]);
        let t = table("restrict default notrust\n");
        let (o, _) = ask_with_keys(
            &t,
            &store,
            &mut clients(),
            &request(4, 3, 1),
            "10.0.0.2:1",
            0.0,
        );
        assert!(matches!(o, Outcome::Drop(_)), "{o:?}");
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_is_answered_or_dropped_without_panic(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1500),
            port in 0u16..,
            last in 0u8..,
        ) {
            let t = table("restrict default limited kod\n");
            let mut c = clients();
            let src = format!("10.1.2.{last}:{port}");
            let (o, out) = ask(&t, &mut c, &data, &src, 0.0);
            match o {
                Outcome::Reply { len, .. } | Outcome::Sealed { len } | Outcome::Kod { len } => {
                    // Never larger than the request: no amplification.
                    proptest::prop_assert!(len <= data.len());
                    let h = NtpHeader::decode(&out[..len]).unwrap();
                    proptest::prop_assert_eq!(h.mode, Mode::Server);
                }
                Outcome::Control { .. } => proptest::prop_assert_eq!(data[0] & 7, 6),
                Outcome::Drop(_) => {}
            }
        }
    }
}
