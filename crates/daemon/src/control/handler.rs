//! The mode 6 request handler: one datagram in, zero or more response fragments out.
//!
//! Sans-IO: the caller passes the request, who sent it, the `restrict` flags that apply,
//! the published [`ControlSnapshot`], a view of the MRU list, the nonce key, the
//! symmetric keys with the `controlkey`, and the time; fragments come out through
//! `emit`. Requests are answered as classic ntpd answers them (same opcodes, errors and
//! variable formats), with deliberate limits:
//!
//! * **Writes** need a request authenticated with the `controlkey` ([`super::auth`])
//!   from a host without `restrict … nomodify`; otherwise "permission". Even then
//!   nothing changes the running daemon: ntpd's only writable system variable, `leap`,
//!   is refused exactly as ntpd refuses it, and runtime configuration (`:config`) and
//!   `saveconfig` answer, in text as ntpd does, that they are not done (edit `ntp.conf`
//!   and send SIGHUP). A daemon reconfigurable over UDP is one stolen key away from
//!   being someone else's time source.
//! * The authenticated ordered list `addr_restrictions` (`ntpq reslist`) is the
//!   `restrict` table, for the `controlkey` only, as in ntpd; `ifstats` is not provided.
//! * **Traps** are never set: see [`TRAPS_REFUSED`].
//! * No reply to a request without a verified nonce (or the `controlkey`) exceeds
//!   [`MAX_UNVERIFIED_FRAGMENTS`], so a spoofed request cannot be amplified into a flood
//!   at its victim.
//!
//! The response to an authenticated request is signed with its key, fragment by
//! fragment; to a request whose MAC fails, unsigned.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use meridian_conf::restrict::{RestrictFlags, RestrictTable};
use meridian_proto::control::{
    format_timestamp, opcode, parse_request, parse_timestamp, ControlHeader, ErrorCode, Fragmenter,
    VarList, VarWriter, MAX_DATA_LEN, MAX_FRAGMENT_LEN,
};
use meridian_proto::NtpTimestamp;

use meridian_auth::KeyStore;

use super::auth::{sign_fragment, ControlAuth, MAX_SIGNED_FRAGMENT_LEN};
use super::mru::{MruEntry, MruView, NonceKey};
use super::vars::{write_vars, ControlSnapshot, PEER_DEFAULT, SYSTEM_DEFAULT};

/// Most fragments in a reply to a request that did not present a valid nonce.
pub const MAX_UNVERIFIED_FRAGMENTS: usize = 3;
/// Most fragments in one MRU reply (ntpq's own maximum, `MAXFRAGS`).
pub const MAX_MRU_FRAGMENTS: usize = 32;
/// Most MRU entries in one reply when the client asks by rows (ntpd's row limit).
pub const MAX_MRU_ROWS: usize = 256;
/// Most `last.N`/`addr.N` pairs considered when resuming an MRU walk.
const MAX_RESUME_PAIRS: usize = 32;

/// What the handler is given besides the datagram.
pub struct ControlEnv<'a> {
    /// The `restrict` flags for the sender.
    pub flags: RestrictFlags,
    /// What to answer from.
    pub snapshot: &'a ControlSnapshot,
    /// The clients seen.
    pub mru: &'a dyn MruView,
    /// The nonce key.
    pub nonce: &'a NonceKey,
    /// Now, on the served clock (the `clock` variable, nonce times).
    pub now: NtpTimestamp,
    /// Symmetric keys (`keys`, `trustedkey`): authenticated requests are checked and
    /// their responses signed with these.
    pub keys: &'a KeyStore,
    /// `controlkey N`: the key that authorizes writes (none: nothing may write).
    pub control_key: Option<u16>,
    /// The `restrict` table, for `ntpq reslist`.
    pub restrict: &'a RestrictTable,
}

/// Why `SETTRAP` is always refused.
///
/// Classic ntpd keeps up to three "trap" receivers and sends each an asynchronous
/// datagram for every event; the receiver's address comes from an unauthenticated
/// request, so anyone could make the server send traffic to a victim, and NTPsec removed
/// the feature. Meridian never sets a trap: `restrict … notrap` hosts and everyone else
/// get "permission" (ntpd's code for both `notrap` and "no free trap slot"), and the
/// first refusal is logged with this reason.
pub const TRAPS_REFUSED: &str = "mode 6 traps are not supported (an unauthenticated traffic \
     amplification vector, removed from NTPsec); events are in the log and statistics files";

/// ntpd's answer to `:config` from a `nomodify` host (a text response, not an error).
pub const CONFIG_NOMODIFY: &str = "runtime configuration prohibited by restrict ... nomodify";
/// Meridian's answer to an authorized `:config`: not ntpd's "Config Succeeded", so ntpq
/// and scripts see that nothing was applied.
pub const CONFIG_UNSUPPORTED: &str = "runtime configuration failed: not supported by \
     Meridian (edit the configuration file and send SIGHUP)";
/// ntpd's answer to `saveconfig` from a `nomodify` host.
pub const SAVECONFIG_NOMODIFY: &str = "saveconfig prohibited by restrict ... nomodify";
/// ntpd's answer to `saveconfig` without `saveconfigdir` (which Meridian never has).
pub const SAVECONFIG_NO_DIR: &str = "saveconfig prohibited, no saveconfigdir configured";

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlOutcome {
    /// Answered with this many fragments.
    Answered {
        /// Fragments emitted.
        fragments: usize,
    },
    /// Answered with an error response.
    Refused(ErrorCode),
    /// Not answered at all.
    Dropped,
}

/// Sends fragments, signed when the request was authenticated.
struct Sender<'e, 'k> {
    emit: &'e mut dyn FnMut(&[u8]),
    keys: &'k KeyStore,
    key: Option<u32>,
}

impl Sender<'_, '_> {
    /// Send one fragment; `false` when it could not be signed (then nothing is sent).
    fn send(&mut self, fragment: &[u8], error: bool) -> bool {
        let Some(key) = self.key else {
            (self.emit)(fragment);
            return true;
        };
        let mut buf = [0u8; MAX_SIGNED_FRAGMENT_LEN];
        match sign_fragment(self.keys, key, fragment, error, &mut buf) {
            Some(len) => {
                (self.emit)(&buf[..len]);
                true
            }
            None => false,
        }
    }

    fn refuse(&mut self, h: &ControlHeader, leap: u8, code: ErrorCode) -> ControlOutcome {
        let mut b = [0u8; meridian_proto::control::HEADER_LEN];
        h.error_response(leap, code).encode(&mut b);
        if self.send(&b, true) {
            ControlOutcome::Refused(code)
        } else {
            ControlOutcome::Dropped
        }
    }
}

/// Handle one control datagram from `source`.
pub fn handle_request(
    datagram: &[u8],
    source: SocketAddr,
    env: &ControlEnv<'_>,
    emit: &mut dyn FnMut(&[u8]),
) -> ControlOutcome {
    if !env.flags.allows_query() {
        return ControlOutcome::Dropped;
    }
    let leap = env.snapshot.system.leap;
    let mut unsigned = Sender {
        emit,
        keys: env.keys,
        key: None,
    };
    let request = match parse_request(datagram) {
        Ok(r) => r,
        Err(e) => {
            return match (e.reply_code(), ControlHeader::decode(datagram)) {
                (Some(code), Ok(h)) => unsigned.refuse(&h, leap, code),
                _ => ControlOutcome::Dropped,
            }
        }
    };
    let auth = ControlAuth::verify(env.keys, request.mac);
    let mut out = Sender {
        key: auth.signing_key(),
        ..unsigned
    };
    let h = request.header;
    let reply = match h.opcode {
        opcode::UNSPEC => status_only(env, h.association_id),
        opcode::READSTAT => read_status(env, h.association_id),
        opcode::READVAR => read_vars(env, h.association_id, request.data),
        opcode::READCLOCK => read_clock(env, h.association_id),
        opcode::WRITEVAR | opcode::CONFIGURE | opcode::SAVECONFIG | opcode::READ_ORDLIST_A
            if !auth.authorizes(env.control_key) =>
        {
            log_unauthorized(h.opcode, source, auth);
            Err(ErrorCode::Permission)
        }
        opcode::WRITEVAR => write_system(env, h.association_id, request.data, source),
        opcode::CONFIGURE => configure(env, h.association_id, source),
        opcode::SAVECONFIG => Ok(Reply::text(
            0,
            if env.flags.allows_modify() {
                SAVECONFIG_NO_DIR
            } else {
                SAVECONFIG_NOMODIFY
            }
            .to_string(),
        )),
        opcode::READ_ORDLIST_A => ordered_list(env, request.data),
        // ntpd 4.2.8 implements no clock variable writes: always "permission".
        opcode::WRITECLOCK => Err(ErrorCode::Permission),
        opcode::SETTRAP => {
            log_trap_refusal(source);
            Err(ErrorCode::Permission)
        }
        opcode::UNSETTRAP if !env.flags.allows_trap() => Err(ErrorCode::Permission),
        // No trap is ever set, so there is none to clear (ntpd's answer for that).
        opcode::UNSETTRAP => Err(ErrorCode::BadAssociation),
        opcode::REQ_NONCE => Ok(Reply::text(
            0,
            format!("nonce={}", env.nonce.issue(source.ip(), env.now)),
        )),
        opcode::READ_MRU => {
            if !env.flags.allows_mrulist() {
                Err(ErrorCode::Permission)
            } else {
                match read_mru(env, source.ip(), request.data) {
                    Some(r) => r,
                    // No valid nonce: silence, so a spoofer learns nothing.
                    None => return ControlOutcome::Dropped,
                }
            }
        }
        _ => Err(ErrorCode::BadOpcode),
    };
    match reply {
        Ok(r) => {
            let limit = if r.verified {
                MAX_MRU_FRAGMENTS
            } else {
                MAX_UNVERIFIED_FRAGMENTS
            };
            if Fragmenter::fragment_count(r.data.len()) > limit {
                return out.refuse(&h, leap, ErrorCode::Unspecified);
            }
            let mut fragments = Fragmenter::new(h.response_to(leap, r.status), &r.data);
            let mut buf = [0u8; MAX_FRAGMENT_LEN];
            let mut n = 0;
            while let Some(len) = fragments.next_into(&mut buf) {
                if !out.send(&buf[..len], false) {
                    return ControlOutcome::Dropped;
                }
                n += 1;
            }
            ControlOutcome::Answered { fragments: n }
        }
        Err(code) => out.refuse(&h, leap, code),
    }
}

/// Log a write refused for want of the `controlkey`: at info level when the request was
/// signed with a trusted key (only a key holder can send those), at debug level
/// otherwise (anyone can send a request with no MAC or a bad one, and the log must not
/// become the flood).
fn log_unauthorized(op: u8, source: SocketAddr, auth: ControlAuth) {
    match auth {
        ControlAuth::None => {
            tracing::debug!("mode 6 opcode {op} from {source} refused: not authenticated");
        }
        ControlAuth::Valid { key_id } => {
            tracing::info!(
                "mode 6 opcode {op} from {source} refused: key {key_id} is not the controlkey"
            );
        }
        ControlAuth::Failed { key_id } => {
            tracing::debug!(
                "mode 6 opcode {op} from {source} refused: its MAC with key {key_id} does not \
                 verify (unknown or untrusted key, or wrong digest)"
            );
        }
    }
}

/// Log the first refused trap request at info level (with [`TRAPS_REFUSED`]), later
/// ones at debug level.
fn log_trap_refusal(source: SocketAddr) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if LOGGED.swap(true, Ordering::Relaxed) {
        tracing::debug!("mode 6 trap request from {source} refused");
    } else {
        tracing::info!("mode 6 trap request from {source} refused: {TRAPS_REFUSED}");
    }
}

/// `WRITEVAR` from an authorized client, checked as ntpd's `write_variables` checks
/// it, first problem wins: an association's variables are never writable
/// ("permission"); an unknown name is "unknown variable"; a read-only one
/// "permission"; `leap` (ntpd's only writable system variable) needs a number
/// ("bad format") of two bits ("bad value"), and then ntpd still refuses it
/// ("unspecified", marked "really" in its source) — as does Meridian, whose leap
/// indicator comes from its sources and leap file. An empty list succeeds.
fn write_system(env: &ControlEnv<'_>, assoc: u16, data: &[u8], source: SocketAddr) -> ReplyResult {
    if !env.flags.allows_modify() {
        tracing::info!("mode 6 write from {source} refused by restrict nomodify");
        return Err(ErrorCode::Permission);
    }
    if assoc != 0 {
        return Err(ErrorCode::Permission);
    }
    let text = std::str::from_utf8(data).map_err(|_| ErrorCode::BadFormat)?;
    let system = &env.snapshot.system;
    if let Some(item) = VarList::new(text).next() {
        if system.value(item.name, env.now).is_err() {
            return Err(ErrorCode::UnknownVariable);
        }
        if item.name != "leap" {
            return Err(ErrorCode::Permission);
        }
        let value: u32 = item
            .unquoted()
            .filter(|v| !v.is_empty())
            .and_then(|v| v.parse().ok())
            .ok_or(ErrorCode::BadFormat)?;
        if value & !3 != 0 {
            return Err(ErrorCode::BadValue);
        }
        tracing::info!("mode 6 write of leap={value} from {source} refused, as ntpd does");
        return Err(ErrorCode::Unspecified);
    }
    Ok(Reply {
        status: system.status.to_word(),
        data: Vec::new(),
        verified: false,
    })
}

/// An ordered list for an authorized client: `addr_restrictions` (`ntpq reslist`) as
/// ntpd lists it, `addr.N`, `mask.N` and `flags.N` for each entry, IPv4 then IPv6, most
/// specific first. ntpd's `hits.N` is left out: the restrict engine does not count
/// matches, and a made-up zero would mislead. `ifstats` (the default list) is not
/// provided: "unknown variable", as for any other list name.
fn ordered_list(env: &ControlEnv<'_>, data: &[u8]) -> ReplyResult {
    let name = std::str::from_utf8(data)
        .map_err(|_| ErrorCode::UnknownVariable)?
        .trim_end_matches('\0')
        .trim();
    if name != "addr_restrictions" {
        return Err(ErrorCode::UnknownVariable);
    }
    let mut w = VarWriter::new();
    for (i, e) in env.restrict.entries().enumerate() {
        w.put(&format!("addr.{i}"), &e.addr.to_string());
        w.put(&format!("mask.{i}"), &e.mask.to_string());
        let names: Vec<&str> = e.matched.flags.names().collect();
        w.put(&format!("flags.{i}"), &names.join(" "));
    }
    let mut reply = Reply::text(0, w.finish());
    // Only the controlkey's holder gets here: the reply may be long.
    reply.verified = true;
    Ok(reply)
}

/// `:config` from an authorized client: answered in text as ntpd answers, never applied.
fn configure(env: &ControlEnv<'_>, assoc: u16, source: SocketAddr) -> ReplyResult {
    if assoc != 0 {
        return Err(ErrorCode::BadValue);
    }
    let text = if env.flags.allows_modify() {
        tracing::info!("runtime configuration from {source} refused: not supported");
        CONFIG_UNSUPPORTED
    } else {
        tracing::info!("runtime configuration from {source} rejected due to nomodify restriction");
        CONFIG_NOMODIFY
    };
    Ok(Reply::text(0, text.to_string()))
}

/// A successful reply's status word and data.
struct Reply {
    status: u16,
    data: Vec<u8>,
    /// Sent to a client that proved its address with a nonce.
    verified: bool,
}

impl Reply {
    /// A text reply, ending in CR LF as ntpd's do.
    fn text(status: u16, mut text: String) -> Reply {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        Reply {
            status,
            data: text.into_bytes(),
            verified: false,
        }
    }
}

type ReplyResult = Result<Reply, ErrorCode>;

fn status_only(env: &ControlEnv<'_>, assoc: u16) -> ReplyResult {
    let status = match assoc {
        0 => env.snapshot.system.status.to_word(),
        id => env
            .snapshot
            .peer(id)
            .ok_or(ErrorCode::BadAssociation)?
            .status
            .to_word(),
    };
    Ok(Reply {
        status,
        data: Vec::new(),
        verified: false,
    })
}

fn read_status(env: &ControlEnv<'_>, assoc: u16) -> ReplyResult {
    if assoc != 0 {
        return read_vars(env, assoc, &[]);
    }
    let data = env
        .snapshot
        .peers
        .iter()
        .flat_map(|p| {
            let [a, b] = p.assoc_id.to_be_bytes();
            let [c, d] = p.status.to_word().to_be_bytes();
            [a, b, c, d]
        })
        .collect();
    Ok(Reply {
        status: env.snapshot.system.status.to_word(),
        data,
        verified: false,
    })
}

/// The names asked for, or `None` for "the defaults"; `Err` when the list is not text.
fn requested_names(data: &[u8]) -> Result<Option<Vec<&str>>, ErrorCode> {
    let text = std::str::from_utf8(data).map_err(|_| ErrorCode::UnknownVariable)?;
    let names: Vec<&str> = VarList::new(text).map(|i| i.name).collect();
    Ok(if names.is_empty() { None } else { Some(names) })
}

fn read_vars(env: &ControlEnv<'_>, assoc: u16, data: &[u8]) -> ReplyResult {
    let names = requested_names(data)?;
    let unknown = |_| ErrorCode::UnknownVariable;
    if assoc == 0 {
        let s = &env.snapshot.system;
        let list = names.unwrap_or_else(|| SYSTEM_DEFAULT.to_vec());
        let text = write_vars(list.into_iter(), |n| s.value(n, env.now)).map_err(unknown)?;
        return Ok(Reply::text(s.status.to_word(), text));
    }
    let p = env.snapshot.peer(assoc).ok_or(ErrorCode::BadAssociation)?;
    let list = names.unwrap_or_else(|| PEER_DEFAULT.to_vec());
    let text = write_vars(list.into_iter(), |n| p.value(n)).map_err(unknown)?;
    Ok(Reply::text(p.status.to_word(), text))
}

fn read_clock(env: &ControlEnv<'_>, assoc: u16) -> ReplyResult {
    let id = if assoc == 0 {
        env.snapshot.system.peer
    } else {
        assoc
    };
    let p = env.snapshot.peer(id).ok_or(ErrorCode::BadAssociation)?;
    if !p.is_refclock() {
        return Err(ErrorCode::BadAssociation);
    }
    // The local clock driver is the only reference clock: what ntpd's driver 1 reports.
    let mut w = VarWriter::new();
    w.put("device", "\"Undisciplined local clock\"");
    w.put("timecode", "\"\"");
    w.put("poll", &p.hpoll.to_string());
    for counter in ["noreply", "badformat", "baddata"] {
        w.put(counter, "0");
    }
    w.put("stratum", &p.stratum.to_string());
    w.put("refid", &super::vars::refid_text(p.refid, true));
    w.put("flags", "0");
    Ok(Reply::text(0, w.finish()))
}

/// ntpd 4.2.8's `RES_*` bits, which `rs.N` carries and ntpq decodes.
fn ntpd_restrict_bits(f: RestrictFlags) -> u32 {
    const MAP: [(RestrictFlags, u32); 13] = [
        (RestrictFlags::IGNORE, 0x0001),
        (RestrictFlags::NOSERVE, 0x0002),
        (RestrictFlags::NOTRUST, 0x0004),
        (RestrictFlags::VERSION, 0x0008),
        (RestrictFlags::NOPEER, 0x0010),
        (RestrictFlags::LIMITED, 0x0020),
        (RestrictFlags::NOQUERY, 0x0040),
        (RestrictFlags::NOMODIFY, 0x0080),
        (RestrictFlags::NOTRAP, 0x0100),
        (RestrictFlags::LOWPRIOTRAP, 0x0200),
        (RestrictFlags::KOD, 0x0400),
        (RestrictFlags::MSSNTP, 0x0800),
        (RestrictFlags::NOMRULIST, 0x2000),
    ];
    MAP.iter()
        .filter(|(r, _)| f.contains(*r))
        .fold(0, |acc, (_, b)| acc | b)
}

/// The parameters of one `READ_MRU` request.
#[derive(Default)]
struct MruQuery<'a> {
    nonce: Option<&'a str>,
    frags: Option<usize>,
    limit: Option<usize>,
    mincount: u64,
    maxlstint: Option<f64>,
    resall: u32,
    resany: u32,
    resume: Vec<(usize, Option<&'a str>, Option<u64>)>,
}

fn parse_number(v: &str) -> Option<u64> {
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn parse_mru_query(text: &str) -> Result<MruQuery<'_>, ErrorCode> {
    let mut q = MruQuery::default();
    for item in VarList::new(text) {
        let value = item.value.unwrap_or("");
        let number = || parse_number(value).ok_or(ErrorCode::BadValue);
        match item.name {
            "nonce" => q.nonce = Some(value),
            "frags" => q.frags = Some(number()? as usize),
            "limit" => q.limit = Some(number()? as usize),
            "mincount" => q.mincount = number()?,
            "maxlstint" => q.maxlstint = Some(number()? as f64),
            "resall" => q.resall = number()? as u32,
            "resany" => q.resany = number()? as u32,
            // Accepted, not acted on: local-address filtering and sort order.
            "laddr" | "sort" | "recent" => {}
            name => {
                let Some((kind, index)) = name.split_once('.') else {
                    continue;
                };
                let Ok(index) = index.parse::<usize>() else {
                    continue;
                };
                if index >= MAX_RESUME_PAIRS || !matches!(kind, "addr" | "last") {
                    continue;
                }
                let slot = match q.resume.iter_mut().position(|r| r.0 == index) {
                    Some(i) => i,
                    None => {
                        q.resume.push((index, None, None));
                        q.resume.len() - 1
                    }
                };
                if kind == "addr" {
                    q.resume[slot].1 = Some(value);
                } else {
                    q.resume[slot].2 = parse_timestamp(value);
                }
            }
        }
    }
    q.resume.sort_by_key(|r| r.0);
    Ok(q)
}

fn mru_addr(e: &MruEntry) -> String {
    SocketAddr::new(e.addr, e.port).to_string()
}

/// `None` when the nonce is missing or invalid (drop silently).
fn read_mru(env: &ControlEnv<'_>, client: IpAddr, data: &[u8]) -> Option<ReplyResult> {
    let text = std::str::from_utf8(data).ok()?;
    let q = match parse_mru_query(text) {
        Ok(q) => q,
        Err(code) => {
            // Only a client with a valid nonce learns about its bad parameters.
            let nonce = VarList::new(text).find(|i| i.name == "nonce")?.value?;
            return env
                .nonce
                .verify(nonce, client, env.now)
                .then_some(Err(code));
        }
    };
    if !env.nonce.verify(q.nonce?, client, env.now) {
        return None;
    }
    let entries = env.mru.entries();
    let mut start = 0;
    let mut w = VarWriter::new();
    w.put("nonce", &env.nonce.issue(client, env.now));
    if !q.resume.is_empty() {
        let found = q.resume.iter().find_map(|(_, addr, last)| {
            let (addr, last) = ((*addr)?, (*last)?);
            entries
                .iter()
                .position(|e| e.last.to_bits() == last && mru_addr(e) == addr)
        });
        let Some(i) = found else {
            return Some(Err(ErrorCode::UnknownVariable));
        };
        w.put("last.older", &format_timestamp(entries[i].last.to_bits()));
        w.put("addr.older", &mru_addr(&entries[i]));
        start = i + 1;
    }
    let frags = q.frags.unwrap_or(if q.limit.is_some() {
        MAX_MRU_FRAGMENTS
    } else {
        4
    });
    let room = frags.clamp(1, MAX_MRU_FRAGMENTS) * MAX_DATA_LEN;
    let limit = q.limit.unwrap_or(MAX_MRU_ROWS).clamp(1, MAX_MRU_ROWS);
    // Keep room for the closing `now=…, last.newest=…` and the CR LF.
    const TAIL: usize = 64;
    let mut sent = 0;
    let mut last_sent = None;
    let mut complete = true;
    for e in &entries[start..] {
        let rs = ntpd_restrict_bits(e.restrict);
        let age = env.now.diff(e.last).to_seconds_f64();
        if e.count < q.mincount
            || q.maxlstint.is_some_and(|m| age > m)
            || (q.resall != 0 && rs & q.resall != q.resall)
            || (q.resany != 0 && rs & q.resany == 0)
        {
            continue;
        }
        let items = [
            (format!("addr.{sent}"), mru_addr(e)),
            (format!("last.{sent}"), format_timestamp(e.last.to_bits())),
            (format!("first.{sent}"), format_timestamp(e.first.to_bits())),
            (format!("ct.{sent}"), e.count.to_string()),
            (format!("mv.{sent}"), e.mode_version.to_string()),
            (format!("rs.{sent}"), format!("0x{rs:x}")),
        ];
        let size: usize = items.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
        if sent >= limit || w.len() + size + TAIL > room {
            complete = false;
            break;
        }
        for (n, v) in &items {
            w.put(n, v);
        }
        sent += 1;
        last_sent = Some(e.last);
    }
    if complete {
        w.put("now", &format_timestamp(env.now.to_bits()));
        if let Some(last) = last_sent {
            w.put("last.newest", &format_timestamp(last.to_bits()));
        }
    }
    let mut reply = Reply::text(0, w.finish());
    reply.verified = true;
    Some(Ok(reply))
}
