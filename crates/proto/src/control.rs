//! NTP control messages (mode 6, RFC 9327), sans-IO.
//!
//! * [`ControlHeader`]: the 12-octet header (LI/VN/mode, R/E/M bits and opcode,
//!   sequence, status, association id, offset, count).
//! * [`parse_request`]: validate a request as classic ntpd does, telling apart what is
//!   silently dropped from what earns an error reply ([`RequestError::reply_code`]).
//! * [`Fragmenter`]: cut response data into fragments of at most [`MAX_DATA_LEN`]
//!   octets, with the More bit and offsets, each padded to a multiple of four.
//! * [`SystemStatus`], [`PeerStatus`], [`PeerSelect`]: the status words, with classic
//!   ntpd's bit layouts and names.
//! * [`VarList`]: the `name=value, name="quoted, text"` lists both directions use.
//!
//! Parsing borrows from the input and never allocates; nothing here panics, whatever the
//! bytes.

use std::fmt;

/// Length of the control header.
pub const HEADER_LEN: usize = 12;
/// Most data octets in one fragment (ntpd's `CTL_MAX_DATA_LEN`).
pub const MAX_DATA_LEN: usize = 468;
/// Largest fragment on the wire: header plus data (already a multiple of four).
pub const MAX_FRAGMENT_LEN: usize = HEADER_LEN + MAX_DATA_LEN;
/// The NTP mode of control messages.
pub const MODE_CONTROL: u8 = 6;

/// Control opcodes, as numbered by classic ntpd's `ntp_control.h` (RFC 9327 names 1–7).
pub mod opcode {
    /// Unspecified: status only.
    pub const UNSPEC: u8 = 0;
    /// Read status (association list, or one association's variables).
    pub const READSTAT: u8 = 1;
    /// Read variables.
    pub const READVAR: u8 = 2;
    /// Write variables.
    pub const WRITEVAR: u8 = 3;
    /// Read clock variables.
    pub const READCLOCK: u8 = 4;
    /// Write clock variables.
    pub const WRITECLOCK: u8 = 5;
    /// Set trap address.
    pub const SETTRAP: u8 = 6;
    /// Asynchronous message (server to trap holder only).
    pub const ASYNCMSG: u8 = 7;
    /// Runtime configuration (`ntpq :config`).
    pub const CONFIGURE: u8 = 8;
    /// Save the configuration to a file.
    pub const SAVECONFIG: u8 = 9;
    /// Read the MRU (monitor) list.
    pub const READ_MRU: u8 = 10;
    /// Read an ordered list (`ifstats`, `reslist`).
    pub const READ_ORDLIST_A: u8 = 11;
    /// Request a nonce for [`READ_MRU`].
    pub const REQ_NONCE: u8 = 12;
    /// Clear a trap.
    pub const UNSETTRAP: u8 = 31;
}

/// Error codes of an error response, carried in the high octet of its status word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: unspecified.
    Unspecified = 0,
    /// 1: authentication failure (ntpd's `CERR_PERMISSION`, also used for "no resource").
    Permission = 1,
    /// 2: invalid message length or format.
    BadFormat = 2,
    /// 3: invalid opcode.
    BadOpcode = 3,
    /// 4: unknown association identifier.
    BadAssociation = 4,
    /// 5: unknown variable name.
    UnknownVariable = 5,
    /// 6: invalid variable value.
    BadValue = 6,
    /// 7: administratively prohibited.
    Prohibited = 7,
}

impl ErrorCode {
    /// The code for a status octet (unknown values read as [`ErrorCode::Unspecified`]).
    pub fn from_u8(v: u8) -> ErrorCode {
        match v {
            1 => ErrorCode::Permission,
            2 => ErrorCode::BadFormat,
            3 => ErrorCode::BadOpcode,
            4 => ErrorCode::BadAssociation,
            5 => ErrorCode::UnknownVariable,
            6 => ErrorCode::BadValue,
            7 => ErrorCode::Prohibited,
            _ => ErrorCode::Unspecified,
        }
    }

    /// ntpq's wording of the error.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::Unspecified => "UNSPECIFIED",
            ErrorCode::Permission => "PERMISSION",
            ErrorCode::BadFormat => "BADFMT",
            ErrorCode::BadOpcode => "BADOP",
            ErrorCode::BadAssociation => "BADASSOC",
            ErrorCode::UnknownVariable => "UNKNOWNVAR",
            ErrorCode::BadValue => "BADVALUE",
            ErrorCode::Prohibited => "RESTRICT",
        }
    }
}

/// Why a datagram is not an acceptable control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// Shorter than the header.
    TooShort,
    /// Not mode 6.
    NotControl,
    /// Version 0 or above 4.
    BadVersion,
    /// The Response, Error or More bit is set: a response, never answered (no loops).
    NotRequest,
    /// A nonzero offset: requests are never fragmented.
    NonzeroOffset,
    /// The count runs past the datagram, or the datagram is not padded to four octets.
    BadLength,
}

impl RequestError {
    /// The error to reply with, or `None` to drop silently (as ntpd does for everything
    /// that might not come from a control client).
    pub fn reply_code(self) -> Option<ErrorCode> {
        match self {
            RequestError::BadLength => Some(ErrorCode::BadFormat),
            _ => None,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::TooShort => "shorter than a control header",
            RequestError::NotControl => "not a mode 6 message",
            RequestError::BadVersion => "unsupported version",
            RequestError::NotRequest => "response bits set in a request",
            RequestError::NonzeroOffset => "nonzero offset in a request",
            RequestError::BadLength => "count beyond the datagram or length not padded",
        })
    }
}

impl std::error::Error for RequestError {}

/// The control message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControlHeader {
    /// Leap indicator (responses carry the system's).
    pub leap: u8,
    /// Version number (responses echo the request's).
    pub version: u8,
    /// R: this is a response.
    pub response: bool,
    /// E: this is an error response.
    pub error: bool,
    /// M: more fragments follow.
    pub more: bool,
    /// The opcode (5 bits).
    pub opcode: u8,
    /// Sequence number, echoed in responses.
    pub sequence: u16,
    /// Status word (system, peer or clock status; error code in errors).
    pub status: u16,
    /// Association id (0: the system).
    pub association_id: u16,
    /// Offset of this fragment's data in the whole response.
    pub offset: u16,
    /// Data octets in this fragment.
    pub count: u16,
}

impl ControlHeader {
    /// Decode a header (only the mode is checked here).
    pub fn decode(bytes: &[u8]) -> Result<ControlHeader, RequestError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(RequestError::TooShort)?;
        if b[0] & 7 != MODE_CONTROL {
            return Err(RequestError::NotControl);
        }
        let word = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        Ok(ControlHeader {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            response: b[1] & 0x80 != 0,
            error: b[1] & 0x40 != 0,
            more: b[1] & 0x20 != 0,
            opcode: b[1] & 0x1f,
            sequence: word(2),
            status: word(4),
            association_id: word(6),
            offset: word(8),
            count: word(10),
        })
    }

    /// Encode into 12 octets.
    pub fn encode(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = ((self.leap & 3) << 6) | ((self.version & 7) << 3) | MODE_CONTROL;
        out[1] = (u8::from(self.response) << 7)
            | (u8::from(self.error) << 6)
            | (u8::from(self.more) << 5)
            | (self.opcode & 0x1f);
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..6].copy_from_slice(&self.status.to_be_bytes());
        out[6..8].copy_from_slice(&self.association_id.to_be_bytes());
        out[8..10].copy_from_slice(&self.offset.to_be_bytes());
        out[10..12].copy_from_slice(&self.count.to_be_bytes());
    }

    /// A request header (version 2, as ntpq and ntpstat send).
    pub fn request(opcode: u8, sequence: u16, association_id: u16, count: u16) -> ControlHeader {
        ControlHeader {
            version: 2,
            opcode,
            sequence,
            association_id,
            count,
            ..Default::default()
        }
    }

    /// The header of the response to this request: same version, opcode, sequence and
    /// association, with the R bit and the given leap indicator and status.
    pub fn response_to(&self, leap: u8, status: u16) -> ControlHeader {
        ControlHeader {
            leap,
            version: self.version,
            response: true,
            opcode: self.opcode,
            sequence: self.sequence,
            status,
            association_id: self.association_id,
            ..Default::default()
        }
    }

    /// The (single-fragment) error response to this request.
    pub fn error_response(&self, leap: u8, code: ErrorCode) -> ControlHeader {
        ControlHeader {
            error: true,
            ..self.response_to(leap, (code as u16) << 8)
        }
    }

    /// The error code of an error response.
    pub fn error_code(&self) -> ErrorCode {
        ErrorCode::from_u8((self.status >> 8) as u8)
    }
}

/// Octets the MAC of a control message is aligned to: ntpq pads header plus data with
/// zeros to a multiple of eight before the key id, and ntpd pads its responses the same
/// way (RFC 9327 §4.1, ntpd's `ctl_flushpkt`).
pub const MAC_ALIGN: usize = 8;

/// Where the MAC starts in a control message of `len` octets (header, data and the
/// four-octet padding): `len` rounded up to [`MAC_ALIGN`]. The MAC covers everything
/// before it, padding included.
pub fn mac_offset(len: usize) -> usize {
    len.div_ceil(MAC_ALIGN) * MAC_ALIGN
}

/// The MAC trailer of an authenticated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestMac<'a> {
    /// The key id (first four octets, network order).
    pub key_id: u32,
    /// The digest after it: 16 octets (MD5, AES-CMAC) or 20 (SHA-1).
    pub digest: &'a [u8],
    /// The octets the digest covers: header, data and zero padding up to the MAC.
    pub signed: &'a [u8],
}

/// A validated request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlRequest<'a> {
    /// Its header.
    pub header: ControlHeader,
    /// The `count` data octets.
    pub data: &'a [u8],
    /// A MAC trailer (key id and digest) after the data padded to eight octets, when
    /// one of a MAC's sizes (20 or 24 octets) is there; other trailing octets are
    /// ignored, as ntpd does (ntpstat sends its whole 576-octet buffer).
    pub mac: Option<RequestMac<'a>>,
}

/// Validate a control request the way classic ntpd does.
pub fn parse_request(datagram: &[u8]) -> Result<ControlRequest<'_>, RequestError> {
    let header = ControlHeader::decode(datagram)?;
    if header.response || header.error || header.more {
        return Err(RequestError::NotRequest);
    }
    if header.offset != 0 {
        return Err(RequestError::NonzeroOffset);
    }
    if header.version == 0 || header.version > 4 {
        return Err(RequestError::BadVersion);
    }
    let count = usize::from(header.count);
    let end = HEADER_LEN + count;
    if end > datagram.len() || datagram.len() & 3 != 0 {
        return Err(RequestError::BadLength);
    }
    let data = &datagram[HEADER_LEN..end];
    // ntpq pads authenticated requests to eight octets before the MAC.
    let mac_start = mac_offset(end);
    let mac = datagram
        .get(mac_start..)
        .filter(|m| matches!(m.len(), 20 | 24))
        .map(|m| RequestMac {
            key_id: u32::from_be_bytes([m[0], m[1], m[2], m[3]]),
            digest: &m[4..],
            signed: &datagram[..mac_start],
        });
    Ok(ControlRequest { header, data, mac })
}

/// Cuts response data into fragments.
///
/// Each fragment holds at most [`MAX_DATA_LEN`] octets at its offset, the More bit set
/// on all but the last, and zero padding to a multiple of four (not counted).
#[derive(Debug, Clone)]
pub struct Fragmenter<'a> {
    template: ControlHeader,
    data: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> Fragmenter<'a> {
    /// Fragments of `data` under `template` (a response header; offset, count and More
    /// are filled in per fragment). Empty data still gives one (empty) fragment.
    pub fn new(template: ControlHeader, data: &'a [u8]) -> Self {
        Fragmenter {
            template,
            data,
            offset: 0,
            done: false,
        }
    }

    /// How many fragments the whole response takes.
    pub fn fragment_count(data_len: usize) -> usize {
        data_len.div_ceil(MAX_DATA_LEN).max(1)
    }

    /// Write the next fragment into `out`, returning its length, or `None` when all
    /// have been written.
    pub fn next_into(&mut self, out: &mut [u8; MAX_FRAGMENT_LEN]) -> Option<usize> {
        if self.done {
            return None;
        }
        // Offsets are 16 bits: data past 64 KiB cannot be expressed, so it ends there.
        let total = self.data.len().min(usize::from(u16::MAX));
        let len = (total - self.offset).min(MAX_DATA_LEN);
        let more = self.offset + len < total;
        let header = ControlHeader {
            more,
            offset: self.offset as u16,
            count: len as u16,
            ..self.template
        };
        let (head, rest) = out.split_at_mut(HEADER_LEN);
        let head: &mut [u8; HEADER_LEN] = head.try_into().ok()?;
        header.encode(head);
        rest[..len].copy_from_slice(&self.data[self.offset..self.offset + len]);
        let padded = (len + 3) & !3;
        rest[len..padded].fill(0);
        self.offset += len;
        self.done = !more;
        Some(HEADER_LEN + padded)
    }
}

/// Reassembles a fragmented response by offset, whatever order fragments arrive in.
#[derive(Debug, Default, Clone)]
pub struct Reassembly {
    pieces: Vec<(u16, Vec<u8>)>,
    last_end: Option<usize>,
    /// Status word of the last fragment.
    pub status: u16,
}

impl Reassembly {
    /// Start empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add one fragment (header already matched to the request); duplicates and overlaps
    /// are ignored. Returns whether the response is complete.
    pub fn add(&mut self, header: &ControlHeader, data: &[u8]) -> bool {
        let start = usize::from(header.offset);
        let end = start + data.len();
        let overlaps = self.pieces.iter().any(|(o, d)| {
            let (s, e) = (usize::from(*o), usize::from(*o) + d.len());
            s == start || (start < e && s < end)
        });
        if !overlaps {
            self.pieces.push((header.offset, data.to_vec()));
            self.pieces.sort_by_key(|(o, _)| *o);
        }
        if !header.more {
            self.last_end = Some(end);
            self.status = header.status;
        }
        self.is_complete()
    }

    /// Whether every octet up to the last fragment's end has arrived.
    pub fn is_complete(&self) -> bool {
        let Some(total) = self.last_end else {
            return false;
        };
        let mut at = 0;
        for (o, d) in &self.pieces {
            if usize::from(*o) != at {
                return false;
            }
            at += d.len();
        }
        at == total
    }

    /// The data, in order.
    pub fn into_data(self) -> Vec<u8> {
        self.pieces.into_iter().flat_map(|(_, d)| d).collect()
    }
}

/// Leap indicator names, as ntpq prints them.
const LEAP_NAMES: [&str; 4] = ["leap_none", "leap_add_sec", "leap_del_sec", "leap_alarm"];
/// System clock-source names (ntpd's `CTL_SST_TS_*`).
const SOURCE_NAMES: [&str; 10] = [
    "sync_unspec",
    "sync_pps",
    "sync_lf_radio",
    "sync_hf_radio",
    "sync_uhf_radio",
    "sync_local",
    "sync_ntp",
    "sync_other",
    "sync_wristwatch",
    "sync_telephone",
];
/// System event names.
const SYS_EVENTS: [&str; 16] = [
    "unspecified",
    "freq_not_set",
    "freq_set",
    "spike_detect",
    "freq_mode",
    "clock_sync",
    "restart",
    "panic_stop",
    "no_system_peer",
    "leap_armed",
    "leap_disarmed",
    "leap_event",
    "clock_step",
    "kern",
    "TAI",
    "stale leapsecond values",
];
/// Peer event names.
const PEER_EVENTS: [&str; 16] = [
    "unspecified",
    "mobilize",
    "demobilize",
    "unreachable",
    "reachable",
    "restart",
    "no_reply",
    "rate_exceeded",
    "access_denied",
    "leap_armed",
    "sys_peer",
    "clock_alarm",
    "bad_auth",
    "popcorn",
    "interleave_mode",
    "interleave_error",
];

/// Clock source codes of the system status word.
pub mod source {
    /// Unspecified or unknown.
    pub const UNSPEC: u8 = 0;
    /// Pulse per second.
    pub const PPS: u8 = 1;
    /// A local clock (the local clock driver).
    pub const LOCAL: u8 = 5;
    /// Another NTP server.
    pub const NTP: u8 = 6;
}

/// System event codes.
pub mod sys_event {
    /// The clock was synchronised.
    pub const CLOCK_SYNC: u8 = 5;
    /// The daemon (re)started.
    pub const RESTART: u8 = 6;
    /// No system peer.
    pub const NO_SYSTEM_PEER: u8 = 8;
}

/// Peer event codes.
pub mod peer_event {
    /// Association mobilised.
    pub const MOBILIZE: u8 = 1;
    /// Became unreachable.
    pub const UNREACHABLE: u8 = 3;
    /// Became reachable.
    pub const REACHABLE: u8 = 4;
    /// Became the system peer.
    pub const SYS_PEER: u8 = 10;
}

fn events_text(count: u8) -> String {
    match count {
        0 => "no events".into(),
        1 => "1 event".into(),
        n => format!("{n} events"),
    }
}

/// The system status word: leap (2 bits), clock source (6), event count (4), last event (4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemStatus {
    /// Leap indicator.
    pub leap: u8,
    /// Clock source ([`source`]).
    pub source: u8,
    /// Events since last read (saturating at 15).
    pub event_count: u8,
    /// The last event ([`sys_event`]).
    pub last_event: u8,
}

impl SystemStatus {
    /// The 16-bit word.
    pub fn to_word(self) -> u16 {
        (u16::from(self.leap & 3) << 14)
            | (u16::from(self.source & 0x3f) << 8)
            | (u16::from(self.event_count & 0xf) << 4)
            | u16::from(self.last_event & 0xf)
    }

    /// Decode a word.
    pub fn from_word(w: u16) -> Self {
        SystemStatus {
            leap: (w >> 14) as u8,
            source: ((w >> 8) & 0x3f) as u8,
            event_count: ((w >> 4) & 0xf) as u8,
            last_event: (w & 0xf) as u8,
        }
    }

    /// ntpq's decoding: `leap_none, sync_ntp, 1 event, clock_sync`.
    pub fn describe(self) -> String {
        let mut s = format!(
            "{}, {}, {}",
            LEAP_NAMES[usize::from(self.leap & 3)],
            SOURCE_NAMES
                .get(usize::from(self.source))
                .copied()
                .unwrap_or("sync_other"),
            events_text(self.event_count)
        );
        if self.event_count != 0 {
            s.push_str(", ");
            s.push_str(SYS_EVENTS[usize::from(self.last_event & 0xf)]);
        }
        s
    }
}

/// A peer's place in the selection, the low 3 bits of its status octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerSelect {
    /// Rejected (unreachable, bad stratum, loop…).
    #[default]
    Reject = 0,
    /// Discarded by the intersection algorithm.
    Falsetick = 1,
    /// Discarded by the table overflow (not among the survivors considered).
    Excess = 2,
    /// Discarded by the cluster algorithm.
    Outlier = 3,
    /// Included by the combine algorithm.
    Candidate = 4,
    /// Backup (more than `tos maxclock` survivors).
    Backup = 5,
    /// The system peer.
    SysPeer = 6,
    /// The PPS peer.
    PpsPeer = 7,
}

impl PeerSelect {
    /// From the 3-bit code.
    pub fn from_code(c: u8) -> Self {
        match c & 7 {
            1 => PeerSelect::Falsetick,
            2 => PeerSelect::Excess,
            3 => PeerSelect::Outlier,
            4 => PeerSelect::Candidate,
            5 => PeerSelect::Backup,
            6 => PeerSelect::SysPeer,
            7 => PeerSelect::PpsPeer,
            _ => PeerSelect::Reject,
        }
    }

    /// The tally character `ntpq -p` prints before the remote's name.
    pub fn tally(self) -> char {
        [' ', 'x', '.', '-', '+', '#', '*', 'o'][self as usize]
    }

    /// The state in snake case, for metric labels and JSON (`sys_peer`, `falseticker`…).
    pub fn snake_name(self) -> &'static str {
        [
            "reject",
            "falseticker",
            "excess",
            "outlier",
            "candidate",
            "backup",
            "sys_peer",
            "pps_peer",
        ][self as usize]
    }

    /// ntpq's `associations` condition column.
    pub fn condition(self) -> &'static str {
        [
            "reject",
            "falsetick",
            "excess",
            "outlier",
            "candidate",
            "backup",
            "sys.peer",
            "pps.peer",
        ][self as usize]
    }
}

/// The peer status word: flags (5 bits), select (3), event count (4), last event (4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStatus {
    /// Configured (not ephemeral).
    pub configured: bool,
    /// Authentication enabled.
    pub auth_enabled: bool,
    /// Authentication succeeded.
    pub authentic: bool,
    /// Reachable (reach register nonzero).
    pub reachable: bool,
    /// Broadcast association.
    pub broadcast: bool,
    /// Selection status.
    pub select: PeerSelect,
    /// Events since last read (saturating at 15).
    pub event_count: u8,
    /// The last event ([`peer_event`]).
    pub last_event: u8,
}

impl PeerStatus {
    /// The 16-bit word.
    pub fn to_word(self) -> u16 {
        let flags = (u16::from(self.configured) << 4)
            | (u16::from(self.auth_enabled) << 3)
            | (u16::from(self.authentic) << 2)
            | (u16::from(self.reachable) << 1)
            | u16::from(self.broadcast);
        (flags << 11)
            | ((self.select as u16) << 8)
            | (u16::from(self.event_count & 0xf) << 4)
            | u16::from(self.last_event & 0xf)
    }

    /// Decode a word.
    pub fn from_word(w: u16) -> Self {
        let bit = |n: u16| w & (1 << n) != 0;
        PeerStatus {
            configured: bit(15),
            auth_enabled: bit(14),
            authentic: bit(13),
            reachable: bit(12),
            broadcast: bit(11),
            select: PeerSelect::from_code((w >> 8) as u8),
            event_count: ((w >> 4) & 0xf) as u8,
            last_event: (w & 0xf) as u8,
        }
    }

    /// ntpq's decoding: `conf, reach, sel_sys.peer, 3 events, sys_peer`.
    pub fn describe(self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.configured {
            parts.push("conf".into());
        }
        if self.auth_enabled {
            parts.push("authenb".into());
        }
        if self.authentic {
            parts.push("auth".into());
        }
        if self.reachable {
            parts.push("reach".into());
        }
        if self.broadcast {
            parts.push("bcast".into());
        }
        parts.push(format!("sel_{}", self.select.condition()));
        parts.push(events_text(self.event_count));
        if self.event_count != 0 {
            parts.push(PEER_EVENTS[usize::from(self.last_event & 0xf)].into());
        }
        parts.join(", ")
    }

    /// Name of the last event, as ntpq's `associations` prints it.
    pub fn last_event_name(self) -> &'static str {
        if self.event_count == 0 {
            ""
        } else {
            PEER_EVENTS[usize::from(self.last_event & 0xf)]
        }
    }
}

/// One `name[=value]` item of a variable list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarItem<'a> {
    /// The name, trimmed.
    pub name: &'a str,
    /// The value as sent (quotes kept), trimmed; `None` when there was no `=`.
    pub value: Option<&'a str>,
}

impl<'a> VarItem<'a> {
    /// The value with one pair of surrounding double quotes removed.
    pub fn unquoted(&self) -> Option<&'a str> {
        self.value.map(|v| {
            v.strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v)
        })
    }
}

/// Iterates over a `name=value, name="a, b", name` list, as ntpd sends and ntpq sends.
///
/// Separators are commas (and the CR LF ntpd inserts between lines); a value in double
/// quotes may contain commas; an unterminated quote runs to the end. NULs (padding) end
/// the list.
#[derive(Debug, Clone)]
pub struct VarList<'a> {
    rest: &'a str,
}

impl<'a> VarList<'a> {
    /// Iterate over `text`.
    pub fn new(text: &'a str) -> Self {
        let end = text.find('\0').unwrap_or(text.len());
        VarList { rest: &text[..end] }
    }
}

fn is_sep(c: char) -> bool {
    c == ',' || c.is_ascii_whitespace()
}

impl<'a> Iterator for VarList<'a> {
    type Item = VarItem<'a>;

    fn next(&mut self) -> Option<VarItem<'a>> {
        let s = self.rest.trim_start_matches(is_sep);
        if s.is_empty() {
            self.rest = s;
            return None;
        }
        let name_end = s.find([',', '=']).unwrap_or(s.len());
        let name = s[..name_end].trim();
        if !s[name_end..].starts_with('=') {
            self.rest = &s[name_end..];
            return Some(VarItem { name, value: None });
        }
        let v = s[name_end + 1..].trim_start_matches([' ', '\t']);
        let mut end = 0;
        if let Some(quoted) = v.strip_prefix('"') {
            end = quoted.find('"').map_or(v.len(), |i| i + 2);
        }
        end += v[end..].find(',').unwrap_or(v.len() - end);
        let value = v[..end].trim_end();
        self.rest = &v[end..];
        Some(VarItem {
            name,
            value: Some(value),
        })
    }
}

/// Builds a variable list the way ntpd's `ctl_putdata` does: `, ` between items and a
/// CR LF instead of the space when a line would pass 72 characters.
#[derive(Debug, Default, Clone)]
pub struct VarWriter {
    text: String,
    line_len: usize,
}

/// Line length after which ntpd breaks variable lists.
const MAX_LINE: usize = 72;

impl VarWriter {
    /// Start empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append `name=value` (the value already formatted, quotes included if wanted).
    pub fn put(&mut self, name: &str, value: &str) {
        self.put_raw(&format!("{name}={value}"));
    }

    /// Append an item as is (a bare name, or `name=value`).
    pub fn put_raw(&mut self, item: &str) {
        if !self.text.is_empty() {
            self.text.push(',');
            self.line_len += 1;
            if item.len() + self.line_len + 1 >= MAX_LINE {
                self.text.push_str("\r\n");
                self.line_len = 0;
            } else {
                self.text.push(' ');
                self.line_len += 1;
            }
        }
        self.text.push_str(item);
        self.line_len += item.len();
    }

    /// Octets so far.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The text.
    pub fn finish(self) -> String {
        self.text
    }
}

/// Format a 64-bit NTP timestamp as ntpd does on the wire: `0xe8f1c2a3.12345678`.
pub fn format_timestamp(bits: u64) -> String {
    format!("0x{:08x}.{:08x}", bits >> 32, bits & 0xffff_ffff)
}

/// Parse `0xe8f1c2a3.12345678` (or without `0x`) back.
pub fn parse_timestamp(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let (hi, lo) = t.split_once('.')?;
    if hi.is_empty() || hi.len() > 8 || lo.is_empty() || lo.len() > 8 {
        return None;
    }
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// The `(association id, status word)` pairs of a READSTAT answer for association 0,
/// in id order (ntpq lists them so, whatever order the server sends).
pub fn association_list(data: &[u8]) -> Vec<(u16, u16)> {
    let mut list: Vec<(u16, u16)> = data
        .chunks_exact(4)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u16::from_be_bytes([c[2], c[3]]),
            )
        })
        .collect();
    list.sort_unstable();
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn association_list_is_in_id_order() {
        // Two entries out of order, then a truncated third that must be ignored.
        let data = [0, 9, 0x96, 0x3a, 0, 2, 0x90, 0x14, 0, 5];
        assert_eq!(association_list(&data), vec![(2, 0x9014), (9, 0x963a)]);
        assert_eq!(PeerSelect::from_code(6).snake_name(), "sys_peer");
        assert_eq!(PeerSelect::from_code(1).snake_name(), "falseticker");
    }

    fn request_bytes(first: u8, second: u8, count: u16, data: &[u8], total: usize) -> Vec<u8> {
        let mut v = vec![0u8; total];
        v[0] = first;
        v[1] = second;
        v[2..4].copy_from_slice(&7u16.to_be_bytes());
        v[10..12].copy_from_slice(&count.to_be_bytes());
        v[12..12 + data.len()].copy_from_slice(data);
        v
    }

    #[test]
    fn header_round_trips() {
        let h = ControlHeader {
            leap: 3,
            version: 4,
            response: true,
            error: false,
            more: true,
            opcode: opcode::READVAR,
            sequence: 0xbeef,
            status: 0x0615,
            association_id: 12345,
            offset: 468,
            count: 100,
        };
        let mut b = [0u8; HEADER_LEN];
        h.encode(&mut b);
        assert_eq!(b[0], 0xe6);
        assert_eq!(b[1], 0xa2);
        assert_eq!(ControlHeader::decode(&b).unwrap(), h);
    }

    #[test]
    fn ntpstat_request_with_trailing_zeros_is_accepted() {
        // ntpstat sends its whole 576-octet struct with count 0.
        let b = request_bytes(0x16, 2, 0, &[], 576);
        let r = parse_request(&b).unwrap();
        assert_eq!((r.header.version, r.header.opcode, r.data.len()), (2, 2, 0));
        assert_eq!(r.mac, None);
    }

    #[test]
    fn request_with_data_and_mac() {
        let mut b = request_bytes(0x16, 2, 5, b"peer,", 24);
        b.extend_from_slice(&[0u8; 24]);
        b[24..28].copy_from_slice(&7u32.to_be_bytes());
        b[28] = 0xaa;
        let r = parse_request(&b).unwrap();
        assert_eq!(r.data, b"peer,");
        let mac = r.mac.unwrap();
        assert_eq!((mac.key_id, mac.digest.len(), mac.digest[0]), (7, 20, 0xaa));
        assert_eq!(mac.signed.len(), 24, "header, 5 data octets, padding to 24");
        // An MD5 or AES-CMAC trailer (20 octets) after data already aligned.
        let mut b = request_bytes(0x16, 2, 4, b"peer", 16);
        b.extend_from_slice(&[0u8; 20]);
        let mac = parse_request(&b).unwrap().mac.unwrap();
        assert_eq!((mac.signed.len(), mac.digest.len()), (16, 16));
        // Padding to four but not eight, then a MAC: not where ntpq puts it.
        let mut b = request_bytes(0x16, 2, 0, &[], 12);
        b.extend_from_slice(&[0u8; 20]);
        assert_eq!(parse_request(&b).unwrap().mac, None);
        assert_eq!(
            (mac_offset(12), mac_offset(16), mac_offset(17)),
            (16, 16, 24)
        );
    }

    #[test]
    fn malformed_requests_are_classified() {
        assert_eq!(parse_request(&[0x16, 2, 0]), Err(RequestError::TooShort));
        assert_eq!(
            parse_request(&request_bytes(0x13, 2, 0, &[], 12)),
            Err(RequestError::NotControl)
        );
        for bits in [0x80, 0x40, 0x20] {
            let b = request_bytes(0x16, bits | 2, 0, &[], 12);
            assert_eq!(
                parse_request(&b),
                Err(RequestError::NotRequest),
                "bits {bits:#x}"
            );
        }
        assert_eq!(
            parse_request(&request_bytes(0x06, 2, 0, &[], 12)),
            Err(RequestError::BadVersion)
        );
        assert_eq!(
            parse_request(&request_bytes(0x2e, 2, 0, &[], 12)),
            Err(RequestError::BadVersion)
        );
        let mut b = request_bytes(0x16, 2, 0, &[], 12);
        b[9] = 4;
        assert_eq!(parse_request(&b), Err(RequestError::NonzeroOffset));
        let e = parse_request(&request_bytes(0x16, 2, 9, b"stratum", 20)).unwrap_err();
        assert_eq!(
            (e, e.reply_code()),
            (RequestError::BadLength, Some(ErrorCode::BadFormat))
        );
        // Unpadded: 13 octets.
        let e = parse_request(&request_bytes(0x16, 2, 1, b"x", 13)).unwrap_err();
        assert_eq!(e, RequestError::BadLength);
        assert_eq!(RequestError::NotRequest.reply_code(), None);
    }

    #[test]
    fn fragments_carry_offsets_more_bits_and_padding() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let template = ControlHeader::request(opcode::READVAR, 9, 0, 0).response_to(0, 0x0615);
        let mut f = Fragmenter::new(template, &data);
        let mut buf = [0u8; MAX_FRAGMENT_LEN];
        let mut got = Vec::new();
        let mut r = Reassembly::new();
        while let Some(n) = f.next_into(&mut buf) {
            assert_eq!(n % 4, 0);
            let h = ControlHeader::decode(&buf[..n]).unwrap();
            got.push((h.offset, h.count, h.more));
            r.add(&h, &buf[HEADER_LEN..HEADER_LEN + usize::from(h.count)]);
        }
        assert_eq!(
            got,
            vec![(0, 468, true), (468, 468, true), (936, 64, false)]
        );
        assert_eq!(Fragmenter::fragment_count(1000), 3);
        assert!(r.is_complete());
        assert_eq!(r.into_data(), data);
    }

    #[test]
    fn empty_response_is_one_fragment() {
        let template = ControlHeader::request(opcode::READSTAT, 1, 0, 0).response_to(0, 0);
        let mut f = Fragmenter::new(template, &[]);
        let mut buf = [0u8; MAX_FRAGMENT_LEN];
        assert_eq!(f.next_into(&mut buf), Some(HEADER_LEN));
        assert_eq!(f.next_into(&mut buf), None);
    }

    #[test]
    fn reassembly_handles_reordering_duplicates_and_holes() {
        let h = |offset: u16, more: bool| ControlHeader {
            offset,
            more,
            ..Default::default()
        };
        let mut r = Reassembly::new();
        assert!(!r.add(&h(4, false), b"5678"));
        assert!(!r.add(&h(4, false), b"5678"));
        assert!(r.add(&h(0, true), b"1234"));
        assert_eq!(r.into_data(), b"12345678");
        let mut r = Reassembly::new();
        r.add(&h(0, true), b"12");
        assert!(!r.add(&h(4, false), b"56"), "hole at 2..4");
    }

    #[test]
    fn error_response_sets_bits_and_code() {
        let req = ControlHeader::request(opcode::WRITEVAR, 3, 0, 0);
        let e = req.error_response(0, ErrorCode::Permission);
        let mut b = [0u8; HEADER_LEN];
        e.encode(&mut b);
        assert_eq!(b[1], 0xc3);
        assert_eq!(u16::from_be_bytes([b[4], b[5]]), 0x0100);
        assert_eq!(
            ControlHeader::decode(&b).unwrap().error_code(),
            ErrorCode::Permission
        );
        for c in 0..8u8 {
            assert_eq!(ErrorCode::from_u8(c) as u8, c);
        }
    }

    #[test]
    fn status_words_match_ntpd_layouts() {
        let s = SystemStatus {
            leap: 0,
            source: source::NTP,
            event_count: 1,
            last_event: sys_event::CLOCK_SYNC,
        };
        assert_eq!(s.to_word(), 0x0615);
        assert_eq!(SystemStatus::from_word(0x0615), s);
        assert_eq!(s.describe(), "leap_none, sync_ntp, 1 event, clock_sync");
        assert_eq!(
            SystemStatus::from_word(0xc000).describe(),
            "leap_alarm, sync_unspec, no events"
        );

        let p = PeerStatus {
            configured: true,
            reachable: true,
            select: PeerSelect::SysPeer,
            event_count: 3,
            last_event: peer_event::SYS_PEER,
            ..Default::default()
        };
        assert_eq!(p.to_word(), 0x963a);
        assert_eq!(PeerStatus::from_word(0x963a), p);
        assert_eq!(
            p.describe(),
            "conf, reach, sel_sys.peer, 3 events, sys_peer"
        );
        assert_eq!(PeerStatus::from_word(0x8011).select, PeerSelect::Reject);
        let tallies: String = (0..8).map(|c| PeerSelect::from_code(c).tally()).collect();
        assert_eq!(tallies, " x.-+#*o");
    }

    #[test]
    fn var_lists_parse_quotes_commas_and_line_breaks() {
        let text = "version=\"ntpd 4.2.8p15, built\", stratum=3,\r\nrefid=LOCL, peer, x = 1 ,empty=\0garbage";
        let items: Vec<_> = VarList::new(text).collect();
        let names: Vec<_> = items.iter().map(|i| i.name).collect();
        assert_eq!(names, ["version", "stratum", "refid", "peer", "x", "empty"]);
        assert_eq!(items[0].value, Some("\"ntpd 4.2.8p15, built\""));
        assert_eq!(items[0].unquoted(), Some("ntpd 4.2.8p15, built"));
        assert_eq!(items[1].value, Some("3"));
        assert_eq!(items[3].value, None);
        assert_eq!(items[4].value, Some("1"));
        assert_eq!(items[5].value, Some(""));
        let unterminated: Vec<_> = VarList::new("a=\"open, b=2").collect();
        assert_eq!(
            unterminated,
            [VarItem {
                name: "a",
                value: Some("\"open, b=2")
            }]
        );
        assert_eq!(VarList::new(" , ,").count(), 0);
    }

    #[test]
    fn var_writer_breaks_lines_like_ntpd() {
        let mut w = VarWriter::new();
        for i in 0..12 {
            w.put(&format!("name{i}"), "0.123456");
        }
        let text = w.finish();
        for line in text.split("\r\n") {
            assert!(line.len() <= MAX_LINE, "{line:?}");
        }
        assert!(text.starts_with("name0=0.123456, name1=0.123456,"));
        let back: Vec<_> = VarList::new(&text).map(|i| i.name.to_string()).collect();
        assert_eq!(back.len(), 12);
    }

    #[test]
    fn timestamps_format_and_parse() {
        let t = 0xe8f1_c2a3_1234_5678u64;
        assert_eq!(format_timestamp(t), "0xe8f1c2a3.12345678");
        assert_eq!(parse_timestamp("0xe8f1c2a3.12345678"), Some(t));
        assert_eq!(parse_timestamp("e8f1c2a3.12345678"), Some(t));
        assert_eq!(parse_timestamp("0x.1"), None);
        assert_eq!(parse_timestamp("0x123456789.0"), None);
        assert_eq!(parse_timestamp("zz.00"), None);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_request(&data);
            let text = String::from_utf8_lossy(&data);
            for item in VarList::new(&text) {
                proptest::prop_assert!(!item.name.contains(','));
            }
        }
    }
}
