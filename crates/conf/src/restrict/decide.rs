//! The access decision: what the server does with one received packet,
//! given the restrict flags that matched its source.
//!
//! Modelled on ntpd 4.2.8 `receive()`, in the same order of checks:
//!
//! 1. mode 7 (private) is always dropped: Meridian never answers ntpdc;
//! 2. `ignore` drops everything;
//! 3. mode 0 (reserved) is dropped;
//! 4. mode 6 (control) is dropped with `noquery`, otherwise handed to the
//!    control layer, which asks [`RestrictFlags::allows_modify`],
//!    [`RestrictFlags::allows_trap`] and [`RestrictFlags::allows_mrulist`];
//!    the time-service checks below do not apply to it;
//! 5. version 0 or above 4 is dropped; with `version`, anything but 4 is;
//! 6. `noserve` drops all time-service modes (1–5);
//! 7. `notrust` drops unauthenticated packets;
//! 8. `limited` with the rate exceeded drops, or answers a client with a
//!    RATE kiss-o'-death when `kod` is also set.
//!
//! `nopeer`/`noepeer` do not drop: a symmetric-active packet from such a
//! host is still answered (statelessly, as ntpd's passive reply) but no
//! association is mobilised; ask
//! [`RestrictFlags::allows_peer_mobilization`].

use super::flags::RestrictFlags;

/// The NTP association mode of a packet (the 3-bit field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PacketMode {
    /// 0: reserved.
    Reserved = 0,
    /// 1: symmetric active.
    SymmetricActive = 1,
    /// 2: symmetric passive.
    SymmetricPassive = 2,
    /// 3: client.
    Client = 3,
    /// 4: server.
    Server = 4,
    /// 5: broadcast.
    Broadcast = 5,
    /// 6: control (ntpq).
    Control = 6,
    /// 7: private (ntpdc).
    Private = 7,
}

impl PacketMode {
    /// All eight modes in numeric order.
    pub const ALL: [PacketMode; 8] = [
        PacketMode::Reserved,
        PacketMode::SymmetricActive,
        PacketMode::SymmetricPassive,
        PacketMode::Client,
        PacketMode::Server,
        PacketMode::Broadcast,
        PacketMode::Control,
        PacketMode::Private,
    ];

    /// The mode of the low three bits of `bits` (total: never fails).
    pub fn from_bits(bits: u8) -> Self {
        Self::ALL[usize::from(bits & 7)]
    }

    /// The mode numbered `n`, or `None` if `n > 7`.
    pub fn from_u8(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }

    /// The numeric mode.
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Which kiss-o'-death to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KodKind {
    /// RATE: the client exceeded the `discard` rate limits.
    Rate,
}

impl KodKind {
    /// The four-character kiss code for the reference id field.
    pub fn code(self) -> [u8; 4] {
        match self {
            KodKind::Rate => *b"RATE",
        }
    }
}

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Process it normally (answer a client, hand a control query to the
    /// control layer, feed a server/peer reply to its association...).
    Answer,
    /// Drop it silently.
    Drop,
    /// Reply with a kiss-o'-death instead of time.
    Kod(KodKind),
}

/// The current NTP version; `restrict version` admits only this.
const NTP_VERSION: u8 = 4;

/// Decide what to do with a packet of `mode` and `version` from a source
/// whose restrict entry has `flags`. `rate_limited` is the daemon's
/// `discard` verdict for this source (only honoured under `limited`);
/// `authenticated` is whether the packet carried a valid MAC or NTS field.
pub fn decide(
    flags: RestrictFlags,
    mode: PacketMode,
    version: u8,
    rate_limited: bool,
    authenticated: bool,
) -> Decision {
    use PacketMode as M;
    if mode == M::Private || flags.contains(RestrictFlags::IGNORE) || mode == M::Reserved {
        return Decision::Drop;
    }
    if mode == M::Control {
        return if flags.contains(RestrictFlags::NOQUERY) {
            Decision::Drop
        } else {
            Decision::Answer
        };
    }
    if version == 0 || version > NTP_VERSION {
        return Decision::Drop;
    }
    if flags.contains(RestrictFlags::VERSION) && version != NTP_VERSION {
        return Decision::Drop;
    }
    if flags.contains(RestrictFlags::NOSERVE) {
        return Decision::Drop;
    }
    if flags.contains(RestrictFlags::NOTRUST) && !authenticated {
        return Decision::Drop;
    }
    if flags.contains(RestrictFlags::LIMITED) && rate_limited {
        // ntpd only kisses clients; replies to peers or servers are dropped.
        return if flags.contains(RestrictFlags::KOD) && mode == M::Client {
            Decision::Kod(KodKind::Rate)
        } else {
            Decision::Drop
        };
    }
    Decision::Answer
}

impl RestrictFlags {
    /// Mode 6 read queries are allowed (not `ignore`, not `noquery`).
    pub fn allows_query(self) -> bool {
        !self.intersects(RestrictFlags::IGNORE | RestrictFlags::NOQUERY)
    }

    /// Mode 6 writes (`:config`, `setvar`) are allowed: queries allowed and
    /// not `nomodify`.
    pub fn allows_modify(self) -> bool {
        self.allows_query() && !self.contains(RestrictFlags::NOMODIFY)
    }

    /// Trap registration (mode 6 opcodes 7/8) is allowed: queries allowed
    /// and not `notrap`.
    pub fn allows_trap(self) -> bool {
        self.allows_query() && !self.contains(RestrictFlags::NOTRAP)
    }

    /// The mode 6 MRU list query is allowed: queries allowed and not
    /// `nomrulist`.
    pub fn allows_mrulist(self) -> bool {
        self.allows_query() && !self.contains(RestrictFlags::NOMRULIST)
    }

    /// A packet may mobilise a new (ephemeral) association: never with
    /// `ignore` or `noepeer`; with `nopeer` only if authenticated.
    pub fn allows_peer_mobilization(self, authenticated: bool) -> bool {
        !self.intersects(RestrictFlags::IGNORE | RestrictFlags::NOEPEER)
            && (authenticated || !self.contains(RestrictFlags::NOPEER))
    }
}
