//! The server's decision for one datagram: answer, kiss, or drop.
//!
//! This is the whole receive→reply path minus the sockets, so it can be tested and fuzzed
//! directly: it takes the bytes, the sender, the kernel receive time and the shared
//! state, and writes the reply (if any) into a caller-owned buffer. It never allocates and
//! never panics, whatever the bytes.

use std::net::{IpAddr, SocketAddr};

use meridian_conf::restrict::{decide, Decision, PacketMode, RestrictFlags, RestrictTable};
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
    state: &ServingState,
    restrict: &RestrictTable,
    clients: &mut ClientTable,
    datagram: &[u8],
    source: SocketAddr,
    rx: NtpTimestamp,
    now: f64,
    out: &mut [u8],
) -> Outcome {
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
    let verdict = clients.observe(source.ip(), now, mode_version);
    let rate_limited = verdict.over_limit;
    // Keys arrive with the authentication work; until then nothing is authenticated.
    let authenticated = false;
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
    if request.mode != Mode::Client {
        // Symmetric modes arrive with peer support, control (mode 6) with the control
        // work; mode 7 is never answered (monlist amplification).
        return Outcome::Drop(DropReason::UnhandledMode);
    }
    if packet.mac.is_some() {
        return Outcome::Drop(DropReason::Unauthenticated);
    }
    let reply: NtpHeader = build_server_reply(&request, &state.server, rx, NtpTimestamp::ZERO);
    write(&reply, out).map_or(Outcome::Drop(DropReason::Malformed), |len| Outcome::Reply {
        len,
    })
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
    clients.observe(source.ip(), now, first & 0x3f);
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
    ) -> (Outcome, [u8; 64]) {
        let mut out = [0u8; 64];
        let rx = NtpTimestamp::from_unix(1_800_000_100, 0);
        let o = respond(
            &state(),
            restrict,
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
        assert_eq!(o, Outcome::Reply { len: 48 });
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
            assert_eq!(o, Outcome::Reply { len: 48 }, "version {v}");
            assert_eq!(NtpHeader::decode(&out).unwrap().version, v);
        }
        for v in [0, 5, 7] {
            let (o, _) = ask(&t, &mut clients(), &request(v, 3, 1), "10.0.0.2:40000", 0.0);
            assert!(matches!(o, Outcome::Drop(_)), "version {v}");
        }
    }

    #[test]
    fn every_mode_but_client_and_control_is_dropped_here() {
        let t = table("");
        for mode in [0, 1, 2, 4, 5, 7] {
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
        assert_eq!(outcomes[0], Outcome::Reply { len: 48 });
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
                Outcome::Reply { len } | Outcome::Kod { len } => {
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
