//! Associations: `server`, `pool`, `peer` and the refclock `fudge` line.
//!
//! Owns [`SourceConfig`] (one configured time source with all its options)
//! and [`FudgeConfig`] (per-refclock calibration), and their parsers.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use crate::args::{Args, Ctx};

/// The directive that configured a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `server`: a client association with one server (or a refclock).
    Server,
    /// `pool`: a name that resolves to several servers.
    Pool,
    /// `peer`: a symmetric active association.
    Peer,
}

impl SourceKind {
    /// The directive keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            SourceKind::Server => "server",
            SourceKind::Pool => "pool",
            SourceKind::Peer => "peer",
        }
    }
}

/// The `-4` / `-6` address-family qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrFamily {
    /// `-4`: IPv4 only.
    V4,
    /// `-6`: IPv6 only.
    V6,
}

impl AddrFamily {
    /// The qualifier as written in ntp.conf.
    pub fn flag(self) -> &'static str {
        match self {
            AddrFamily::V4 => "-4",
            AddrFamily::V6 => "-6",
        }
    }

    /// Whether `ip` belongs to this family.
    pub fn matches(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (AddrFamily::V4, IpAddr::V4(_)) | (AddrFamily::V6, IpAddr::V6(_))
        )
    }
}

/// What a source address designates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssociationKind {
    /// A host name or IP address reached over the network.
    Network,
    /// A reference clock, written `127.127.t.u`.
    Refclock {
        /// Driver type `t` (1 = local clock driver).
        driver: u8,
        /// Unit number `u`.
        unit: u8,
    },
}

/// One `server`, `pool` or `peer` line.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Which directive configured it.
    pub kind: SourceKind,
    /// Host name, IP literal or `127.127.t.u`, as written.
    pub address: String,
    /// `-4` / `-6`, if given.
    pub family: Option<AddrFamily>,
    /// `iburst`: burst of packets when the server is unreachable.
    pub iburst: bool,
    /// `burst`: burst of packets at every poll.
    pub burst: bool,
    /// `minpoll N` (log2 s), default 6.
    pub minpoll: i8,
    /// `maxpoll N` (log2 s), default 10.
    pub maxpoll: i8,
    /// `prefer`.
    pub prefer: bool,
    /// `noselect`: monitor only, never select.
    pub noselect: bool,
    /// `true`: always consider a truechimer.
    pub true_chimer: bool,
    /// `version N`, 1..=4, default 4.
    pub version: u8,
    /// `key N`: symmetric key id.
    pub key: Option<u16>,
    /// `mode N`: driver-specific mode (refclocks) or packet mode option.
    pub mode: Option<u32>,
    /// `ttl N`: TTL (manycast) or driver option (refclocks).
    pub ttl: Option<u8>,
    /// `preempt`: association may be demobilised.
    pub preempt: bool,
    /// `xleave`: interleaved mode.
    pub xleave: bool,
    /// `autokey`: public-key authentication (accepted, not implemented).
    pub autokey: bool,
    /// `nts`: use Network Time Security.
    pub nts: bool,
    /// `ca FILE`: trust anchors for NTS-KE.
    pub ca: Option<PathBuf>,
    /// `noval`: do not validate the NTS-KE server certificate.
    pub noval: bool,
    /// `port N`: Meridian extension, non-standard server port (tests).
    pub port: Option<u16>,
    /// Line the source was configured on.
    pub line: usize,
    /// File the source was configured in.
    pub file: PathBuf,
}

/// Default `minpoll` (NTP_MINDPOLL).
pub(crate) const DEFAULT_MINPOLL: i8 = 6;
/// Default `maxpoll` (NTP_MAXDPOLL).
pub(crate) const DEFAULT_MAXPOLL: i8 = 10;

impl SourceConfig {
    /// A source with every option at its default.
    pub fn new(kind: SourceKind, address: impl Into<String>) -> Self {
        Self {
            kind,
            address: address.into(),
            family: None,
            iburst: false,
            burst: false,
            minpoll: DEFAULT_MINPOLL,
            maxpoll: DEFAULT_MAXPOLL,
            prefer: false,
            noselect: false,
            true_chimer: false,
            version: 4,
            key: None,
            mode: None,
            ttl: None,
            preempt: false,
            xleave: false,
            autokey: false,
            nts: false,
            ca: None,
            noval: false,
            port: None,
            line: 0,
            file: PathBuf::new(),
        }
    }

    /// Network host or refclock.
    pub fn association(&self) -> AssociationKind {
        refclock_of(&self.address)
            .map(|(driver, unit)| AssociationKind::Refclock { driver, unit })
            .unwrap_or(AssociationKind::Network)
    }

    /// Whether this is the local clock driver (`127.127.1.u`).
    pub fn is_local_clock(&self) -> bool {
        matches!(
            self.association(),
            AssociationKind::Refclock { driver: 1, .. }
        )
    }

    /// Whether this is a reference clock of any type.
    pub fn is_refclock(&self) -> bool {
        matches!(self.association(), AssociationKind::Refclock { .. })
    }
}

/// `(driver, unit)` if `addr` is a `127.127.t.u` refclock address.
pub(crate) fn refclock_of(addr: &str) -> Option<(u8, u8)> {
    let ip: Ipv4Addr = addr.parse().ok()?;
    refclock_ip(ip)
}

fn refclock_ip(ip: Ipv4Addr) -> Option<(u8, u8)> {
    let [a, b, t, u] = ip.octets();
    (a == 127 && b == 127).then_some((t, u))
}

/// Whether `s` is a plausible DNS name (letters, digits, `-`, `_`, `.`).
pub(crate) fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with(['-', '.'])
        && s.split('.').all(|l| l.len() <= 63)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

/// Parse an IP literal, allowing an IPv6 zone suffix (`fe80::1%eth0`).
pub(crate) fn parse_ip_literal(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    let (addr, zone) = s.split_once('%')?;
    let ok_zone = !zone.is_empty()
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    match addr.parse::<std::net::Ipv6Addr>() {
        Ok(v6) if ok_zone => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

/// Parse a `server|pool|peer` line (the words after the keyword).
pub(crate) fn parse_source(
    ctx: &mut Ctx<'_>,
    kind: SourceKind,
    words: &[String],
) -> Option<SourceConfig> {
    let mut args = Args::new(words);
    let mut family = None;
    let address = loop {
        match args.next_word() {
            Some("-4") => family = Some(AddrFamily::V4),
            Some("-6") => family = Some(AddrFamily::V6),
            Some(a) => break a,
            None => {
                ctx.error(kind.keyword(), "missing address");
                return None;
            }
        }
    };
    let mut ok = check_address(ctx, kind, address, family);
    let mut src = SourceConfig::new(kind, address);
    src.family = family;
    src.line = ctx.line;
    src.file = ctx.file.to_path_buf();
    let (mut saw_min, mut saw_max) = (false, false);
    while let Some(opt) = args.next_word() {
        let parsed = match opt {
            "iburst" => set(&mut src.iburst),
            "burst" => set(&mut src.burst),
            "prefer" => set(&mut src.prefer),
            "noselect" => set(&mut src.noselect),
            "true" => set(&mut src.true_chimer),
            "preempt" => set(&mut src.preempt),
            "xleave" => set(&mut src.xleave),
            "autokey" => set(&mut src.autokey),
            "nts" => set(&mut src.nts),
            "noval" => set(&mut src.noval),
            "minpoll" => args.int(ctx, opt, 3i8, 17).map(|v| {
                saw_min = true;
                src.minpoll = v;
            }),
            "maxpoll" => args.int(ctx, opt, 3i8, 17).map(|v| {
                saw_max = true;
                src.maxpoll = v;
            }),
            "version" => args.int(ctx, opt, 1u8, 4).map(|v| src.version = v),
            "key" => args
                .int(ctx, opt, 1u16, u16::MAX)
                .map(|v| src.key = Some(v)),
            "mode" => args
                .int(ctx, opt, 0u32, u32::MAX)
                .map(|v| src.mode = Some(v)),
            "ttl" => args.int(ctx, opt, 0u8, u8::MAX).map(|v| src.ttl = Some(v)),
            "port" => args
                .int(ctx, opt, 1u16, u16::MAX)
                .map(|v| src.port = Some(v)),
            "ca" => args
                .value(ctx, opt)
                .map(|v| src.ca = Some(PathBuf::from(v))),
            _ => {
                ctx.error(opt, &format!("unknown {} option", kind.keyword()));
                None
            }
        };
        ok &= parsed.is_some();
    }
    if src.minpoll > src.maxpoll {
        // ntpd's newpeer() lowers minpoll to maxpoll rather than failing;
        // keep that, but tell the operator which one was adjusted.
        if saw_max && !saw_min {
            ctx.warn(
                "maxpoll",
                &format!(
                    "below default minpoll {}; minpoll lowered to {}",
                    src.minpoll, src.maxpoll
                ),
            );
            src.minpoll = src.maxpoll;
        } else {
            ctx.warn(
                "minpoll",
                &format!(
                    "{} exceeds maxpoll {}; maxpoll raised to match",
                    src.minpoll, src.maxpoll
                ),
            );
            src.maxpoll = src.minpoll;
        }
    }
    ok.then_some(src)
}

fn set(flag: &mut bool) -> Option<()> {
    *flag = true;
    Some(())
}

/// Validate the address of a source line; records an error and returns false.
fn check_address(
    ctx: &mut Ctx<'_>,
    kind: SourceKind,
    address: &str,
    family: Option<AddrFamily>,
) -> bool {
    if let Some(ip) = parse_ip_literal(address) {
        if let Some(f) = family {
            if !f.matches(ip) {
                ctx.error(address, &format!("address does not match {}", f.flag()));
                return false;
            }
        }
        if let IpAddr::V4(v4) = ip {
            if refclock_ip(v4).is_some() && kind != SourceKind::Server {
                ctx.error(
                    address,
                    &format!(
                        "reference clocks are configured with 'server', not '{}'",
                        kind.keyword()
                    ),
                );
                return false;
            }
        }
        return true;
    }
    if is_host_name(address) {
        return true;
    }
    ctx.error(address, "not a host name or IP address");
    false
}

/// `fudge 127.127.t.u ...`: calibration of one reference clock.
///
/// Every field is optional; unset fields keep the driver's default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FudgeConfig {
    /// `stratum N`, 0..=15.
    pub stratum: Option<u8>,
    /// `refid XXXX`, 1 to 4 characters.
    pub refid: Option<String>,
    /// `time1 f` seconds.
    pub time1: Option<f64>,
    /// `time2 f` seconds.
    pub time2: Option<f64>,
    /// `flag1`..`flag4` 0|1, index 0 = flag1.
    pub flags: [Option<bool>; 4],
}

impl FudgeConfig {
    /// Overlay the options set in `other` (a later `fudge` line wins per field).
    pub fn merge(&mut self, other: &FudgeConfig) {
        if other.stratum.is_some() {
            self.stratum = other.stratum;
        }
        if other.refid.is_some() {
            self.refid.clone_from(&other.refid);
        }
        if other.time1.is_some() {
            self.time1 = other.time1;
        }
        if other.time2.is_some() {
            self.time2 = other.time2;
        }
        for (mine, theirs) in self.flags.iter_mut().zip(other.flags) {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
    }
}

impl fmt::Display for FudgeConfig {
    /// The options in ntp.conf syntax, without the `fudge ADDR` prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.stratum {
            write!(f, " stratum {s}")?;
        }
        if let Some(r) = &self.refid {
            write!(f, " refid {}", crate::nts::quote(r))?;
        }
        if let Some(t) = self.time1 {
            write!(f, " time1 {t}")?;
        }
        if let Some(t) = self.time2 {
            write!(f, " time2 {t}")?;
        }
        for (i, v) in self.flags.iter().enumerate() {
            if let Some(v) = v {
                write!(f, " flag{} {}", i + 1, u8::from(*v))?;
            }
        }
        Ok(())
    }
}

/// Parse a `fudge` line.
pub(crate) fn parse_fudge(ctx: &mut Ctx<'_>, words: &[String]) -> Option<(Ipv4Addr, FudgeConfig)> {
    let mut args = Args::new(words);
    let Some(addr) = args.next_word() else {
        ctx.error("fudge", "missing refclock address");
        return None;
    };
    let ip = match addr.parse::<Ipv4Addr>() {
        Ok(ip) if refclock_ip(ip).is_some() => Some(ip),
        _ => {
            ctx.error(addr, "fudge needs a refclock address 127.127.t.u");
            None
        }
    };
    let mut fudge = FudgeConfig::default();
    let mut ok = ip.is_some();
    while let Some(opt) = args.next_word() {
        let parsed = match opt {
            "stratum" => args.int(ctx, opt, 0u8, 15).map(|v| fudge.stratum = Some(v)),
            "refid" => args.value(ctx, opt).and_then(|v| {
                if (1..=4).contains(&v.len()) && v.is_ascii() {
                    fudge.refid = Some(v.to_string());
                    Some(())
                } else {
                    ctx.error(v, "refid must be 1 to 4 ASCII characters");
                    None
                }
            }),
            "time1" => args
                .float(ctx, opt, -1e6, 1e6)
                .map(|v| fudge.time1 = Some(v)),
            "time2" => args
                .float(ctx, opt, -1e6, 1e6)
                .map(|v| fudge.time2 = Some(v)),
            "flag1" | "flag2" | "flag3" | "flag4" => {
                let idx = usize::from(opt.as_bytes()[4] - b'1');
                args.int(ctx, opt, 0u8, 1)
                    .map(|v| fudge.flags[idx] = Some(v == 1))
            }
            _ => {
                ctx.error(opt, "unknown fudge option");
                None
            }
        };
        ok &= parsed.is_some();
    }
    if ok {
        ip.map(|ip| (ip, fudge))
    } else {
        None
    }
}
