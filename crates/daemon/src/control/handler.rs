//! The mode 6 request handler: one datagram in, zero or more response fragments out.
//!
//! Sans-IO: the caller passes the request, who sent it, the `restrict` flags that apply,
//! the published [`ControlSnapshot`], a view of the MRU list, the nonce key and the
//! time; fragments come out through `emit`. Requests are answered as classic ntpd
//! answers them (same opcodes, errors and variable formats), with two deliberate
//! limits: nothing is ever written (no keys, so every write is refused), and no reply to
//! a request without a verified nonce exceeds [`MAX_UNVERIFIED_FRAGMENTS`], so a spoofed
//! request cannot be amplified into a flood at its victim.

use std::net::{IpAddr, SocketAddr};

use meridian_conf::restrict::RestrictFlags;
use meridian_proto::control::{
    format_timestamp, opcode, parse_request, parse_timestamp, ControlHeader, ErrorCode, Fragmenter,
    VarList, VarWriter, MAX_DATA_LEN, MAX_FRAGMENT_LEN,
};
use meridian_proto::NtpTimestamp;

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
}

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
    let request = match parse_request(datagram) {
        Ok(r) => r,
        Err(e) => {
            return match (e.reply_code(), ControlHeader::decode(datagram)) {
                (Some(code), Ok(h)) => refuse(&h, leap, code, emit),
                _ => ControlOutcome::Dropped,
            }
        }
    };
    let h = request.header;
    let reply = match h.opcode {
        opcode::UNSPEC => status_only(env, h.association_id),
        opcode::READSTAT => read_status(env, h.association_id),
        opcode::READVAR => read_vars(env, h.association_id, request.data),
        opcode::READCLOCK => read_clock(env, h.association_id),
        // Writes need a key; Meridian has none yet, so whoever asks is refused, and
        // `nomodify` hosts the same way.
        opcode::WRITEVAR
        | opcode::WRITECLOCK
        | opcode::CONFIGURE
        | opcode::SAVECONFIG
        | opcode::READ_ORDLIST_A => Err(ErrorCode::Permission),
        // No trap slots: ntpd answers "no resource", which is its permission code.
        opcode::SETTRAP => Err(ErrorCode::Permission),
        opcode::UNSETTRAP if !env.flags.allows_trap() => Err(ErrorCode::Permission),
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
                return refuse(&h, leap, ErrorCode::Unspecified, emit);
            }
            let mut fragments = Fragmenter::new(h.response_to(leap, r.status), &r.data);
            let mut buf = [0u8; MAX_FRAGMENT_LEN];
            let mut n = 0;
            while let Some(len) = fragments.next_into(&mut buf) {
                emit(&buf[..len]);
                n += 1;
            }
            ControlOutcome::Answered { fragments: n }
        }
        Err(code) => refuse(&h, leap, code, emit),
    }
}

fn refuse(
    h: &ControlHeader,
    leap: u8,
    code: ErrorCode,
    emit: &mut dyn FnMut(&[u8]),
) -> ControlOutcome {
    let mut b = [0u8; meridian_proto::control::HEADER_LEN];
    h.error_response(leap, code).encode(&mut b);
    emit(&b);
    ControlOutcome::Refused(code)
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
