//! The server's decision for one datagram: answer, kiss, or drop.
//!
//! This is the whole receive→reply path minus the sockets, so it can be tested and fuzzed
//! directly: it takes the bytes, the sender, the kernel receive time and the shared
//! state, and writes the reply (if any) into a caller-owned buffer. It never allocates and
//! never panics, whatever the bytes.

use std::net::{IpAddr, SocketAddr};

use meridian_conf::restrict::{decide, Decision, PacketMode, RestrictTable};
use meridian_proto::{build_kod, build_server_reply, parse_packet, Mode, NtpHeader, NtpTimestamp, ReferenceId, HEADER_LEN};

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
            !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || (o[0] == 127 && o[1] == 127))
        }
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Decide about one datagram and, if it is answered, write the reply into `out`.
///
/// `now` is a monotonic time in seconds for the rate limiter; `rx` is the receive time
/// already on the served clock's scale.
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
    match decide(flags, PacketMode::from_bits(mode_bits), request.version, rate_limited, authenticated) {
        Decision::Drop => {
            return Outcome::Drop(if rate_limited && flags.contains(meridian_conf::restrict::RestrictFlags::LIMITED) {
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
            return write(&kod, out).map_or(Outcome::Drop(DropReason::Malformed), |len| Outcome::Kod { len });
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
    write(&reply, out).map_or(Outcome::Drop(DropReason::Malformed), |len| Outcome::Reply { len })
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
