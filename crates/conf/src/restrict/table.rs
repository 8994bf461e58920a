//! [`RestrictTable`]: the IPv4 and IPv6 restrict lists and their lookup.
//!
//! Each list is kept in ntpd's order — descending address, then descending
//! mask — so the first entry that matches is the most specific one (for
//! contiguous masks this is longest-prefix match) and the default entry
//! (`0/0`) is always last. As in ntpd, both lists always hold a default
//! entry; with no `restrict default` line its flag set is empty (allow all). Lookup is a linear scan of a `Vec` without
//! allocation; restrict lists are short.

use std::cmp::Reverse;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::BitAnd;

use super::flags::RestrictFlags;
use crate::assoc::AddrFamily;
use crate::nts::quote;

/// The NTP port: `ntpport` entries only match packets from it.
const NTP_PORT: u16 = 123;

/// What a `restrict` line applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestrictTarget {
    /// `default` (both families), `-4 default` or `-6 default`.
    Default(Option<AddrFamily>),
    /// `source`: template for the addresses of configured servers/pools.
    Source,
    /// An address (host match unless a mask is given).
    Addr(IpAddr),
    /// A host name, kept unresolved for the daemon to resolve.
    Host(String),
}

/// One parsed `restrict` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictDirective {
    /// What it applies to.
    pub target: RestrictTarget,
    /// `mask M` or the mask of `ADDR/len`; `None` = host (/32 or /128).
    pub mask: Option<IpAddr>,
    /// The flags.
    pub flags: RestrictFlags,
    /// `ippeerlimit N`: most associations per address (`None` = unlimited).
    pub ippeerlimit: Option<u32>,
}

/// The result of a lookup: the flags and per-entry limits that apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestrictMatch {
    /// The matching entry's flags (empty if nothing matched).
    pub flags: RestrictFlags,
    /// The matching entry's `ippeerlimit`.
    pub ippeerlimit: Option<u32>,
}

impl RestrictMatch {
    /// OR `other` into `self`, as ntpd does for a repeated address/mask.
    /// A later `ippeerlimit` replaces an earlier one.
    fn merge(&mut self, other: RestrictMatch) {
        self.flags |= other.flags;
        if other.ippeerlimit.is_some() {
            self.ippeerlimit = other.ippeerlimit;
        }
    }
}

/// An address/mask entry as listed by [`RestrictTable::entries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestrictEntry {
    /// Network address (already ANDed with the mask).
    pub addr: IpAddr,
    /// Mask (same family as `addr`).
    pub mask: IpAddr,
    /// Flags and limits.
    pub matched: RestrictMatch,
}

/// Unsigned integer view of an address family (u32 for IPv4, u128 for IPv6).
trait Bits: Copy + Ord + Eq + BitAnd<Output = Self> {}
impl Bits for u32 {}
impl Bits for u128 {}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule<B> {
    addr: B,
    mask: B,
    matched: RestrictMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    name: String,
    mask: Option<IpAddr>,
    matched: RestrictMatch,
}

/// The restrict lists of both families plus pending templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestrictTable {
    v4: Vec<Rule<u32>>,
    v6: Vec<Rule<u128>>,
    source: Option<RestrictMatch>,
    hosts: Vec<HostRule>,
}

fn sort_key<B: Bits>(r: &Rule<B>) -> (Reverse<B>, Reverse<B>) {
    (Reverse(r.addr), Reverse(r.mask))
}

fn insert_rule<B: Bits>(list: &mut Vec<Rule<B>>, addr: B, mask: B, matched: RestrictMatch) {
    let rule = Rule {
        addr: addr & mask,
        mask,
        matched,
    };
    match list.binary_search_by(|r| sort_key(r).cmp(&sort_key(&rule))) {
        Ok(i) => {
            if let Some(existing) = list.get_mut(i) {
                existing.matched.merge(matched);
            }
        }
        Err(i) => list.insert(i, rule),
    }
}

fn remove_rule<B: Bits>(list: &mut Vec<Rule<B>>, addr: B, mask: B) -> bool {
    let before = list.len();
    list.retain(|r| !(r.addr == addr & mask && r.mask == mask));
    list.len() != before
}

fn find_rule<B: Bits>(list: &[Rule<B>], ip: B, port: Option<u16>) -> RestrictMatch {
    list.iter()
        .find(|r| {
            ip & r.mask == r.addr
                && (!r.matched.flags.contains(RestrictFlags::NTPPORT) || port == Some(NTP_PORT))
        })
        .map(|r| r.matched)
        .unwrap_or_default()
}

/// Host mask of `ip`'s family.
fn host_mask(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(u128::MAX)),
    }
}

impl Default for RestrictTable {
    fn default() -> Self {
        let allow_all = RestrictMatch::default();
        Self {
            v4: vec![Rule {
                addr: 0,
                mask: 0,
                matched: allow_all,
            }],
            v6: vec![Rule {
                addr: 0,
                mask: 0,
                matched: allow_all,
            }],
            source: None,
            hosts: Vec::new(),
        }
    }
}

/// Reset the default (`0/0`, always last) entry of `list` to allow-all.
fn reset_default<B: Bits>(list: &mut [Rule<B>]) {
    if let Some(last) = list.last_mut() {
        last.matched = RestrictMatch::default();
    }
}

impl RestrictTable {
    /// A table with only the two empty default entries: everything is
    /// allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Apply one `restrict` line. Returns `false` (and changes nothing) if
    /// the mask's family differs from the address's.
    pub fn apply(&mut self, d: &RestrictDirective) -> bool {
        let matched = RestrictMatch {
            flags: d.flags,
            ippeerlimit: d.ippeerlimit,
        };
        match &d.target {
            RestrictTarget::Default(family) => {
                if family != &Some(AddrFamily::V6) {
                    insert_rule(&mut self.v4, 0, 0, matched);
                }
                if family != &Some(AddrFamily::V4) {
                    insert_rule(&mut self.v6, 0, 0, matched);
                }
                true
            }
            RestrictTarget::Source => {
                self.source
                    .get_or_insert_with(RestrictMatch::default)
                    .merge(matched);
                true
            }
            RestrictTarget::Addr(ip) => {
                self.insert_net(*ip, d.mask.unwrap_or(host_mask(*ip)), matched)
            }
            RestrictTarget::Host(name) => {
                match self
                    .hosts
                    .iter_mut()
                    .find(|h| &h.name == name && h.mask == d.mask)
                {
                    Some(h) => h.matched.merge(matched),
                    None => self.hosts.push(HostRule {
                        name: name.clone(),
                        mask: d.mask,
                        matched,
                    }),
                }
                true
            }
        }
    }

    fn insert_net(&mut self, ip: IpAddr, mask: IpAddr, matched: RestrictMatch) -> bool {
        match (ip, mask) {
            (IpAddr::V4(a), IpAddr::V4(m)) => {
                insert_rule(&mut self.v4, a.into(), m.into(), matched)
            }
            (IpAddr::V6(a), IpAddr::V6(m)) => {
                insert_rule(&mut self.v6, a.into(), m.into(), matched)
            }
            _ => return false,
        }
        true
    }

    /// Remove the entry a `restrict` line with this target and mask would
    /// have created (`unrestrict` / `delrestrict`). Returns whether anything
    /// was removed.
    pub fn remove(&mut self, target: &RestrictTarget, mask: Option<IpAddr>) -> bool {
        match target {
            // The default entries always exist (as in ntpd); removing one
            // resets it to allow-all.
            RestrictTarget::Default(family) => {
                if family != &Some(AddrFamily::V6) {
                    reset_default(&mut self.v4);
                }
                if family != &Some(AddrFamily::V4) {
                    reset_default(&mut self.v6);
                }
                true
            }
            RestrictTarget::Source => self.source.take().is_some(),
            RestrictTarget::Addr(ip) => match (*ip, mask.unwrap_or(host_mask(*ip))) {
                (IpAddr::V4(a), IpAddr::V4(m)) => remove_rule(&mut self.v4, a.into(), m.into()),
                (IpAddr::V6(a), IpAddr::V6(m)) => remove_rule(&mut self.v6, a.into(), m.into()),
                _ => false,
            },
            RestrictTarget::Host(name) => {
                let before = self.hosts.len();
                self.hosts.retain(|h| !(&h.name == name && h.mask == mask));
                self.hosts.len() != before
            }
        }
    }

    /// The `restrict source` template, if one is configured.
    pub fn source_template(&self) -> Option<RestrictMatch> {
        self.source
    }

    /// Add a host entry for the address of a configured server or pool
    /// member, using the `restrict source` template. Returns `false` (and
    /// does nothing) when no template is configured, as in ntpd.
    pub fn add_source_address(&mut self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self.source {
            Some(m) => self.insert_net(ip, host_mask(ip), m),
            None => false,
        }
    }

    /// Host names from `restrict NAME` lines, for the daemon to resolve.
    pub fn unresolved_hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.iter().map(|h| h.name.as_str())
    }

    /// Install the entries of `restrict NAME` lines for the resolved
    /// addresses of `name`. Addresses whose family differs from the line's
    /// mask are skipped. Returns how many entries were installed.
    pub fn resolve_host(&mut self, name: &str, addrs: &[IpAddr]) -> usize {
        let rules: Vec<(Option<IpAddr>, RestrictMatch)> = self
            .hosts
            .iter()
            .filter(|h| h.name == name)
            .map(|h| (h.mask, h.matched))
            .collect();
        let mut installed = 0;
        for (mask, matched) in rules {
            for &ip in addrs {
                let ip = canonical(ip);
                if self.insert_net(ip, mask.unwrap_or(host_mask(ip)), matched) {
                    installed += 1;
                }
            }
        }
        installed
    }

    /// The flags that apply to a packet from `ip` whose source port is
    /// unknown (entries marked `ntpport` do not match). Allocation-free.
    pub fn lookup(&self, ip: IpAddr) -> RestrictFlags {
        self.lookup_match(ip, None).flags
    }

    /// The entry that applies to a packet from `ip`, sent from `src_port`
    /// (`ntpport` entries match only port 123). IPv4-mapped IPv6 addresses
    /// are looked up in the IPv4 list. Allocation-free.
    pub fn lookup_match(&self, ip: IpAddr, src_port: Option<u16>) -> RestrictMatch {
        match canonical(ip) {
            IpAddr::V4(a) => find_rule(&self.v4, a.into(), src_port),
            IpAddr::V6(a) => find_rule(&self.v6, a.into(), src_port),
        }
    }

    /// Every address/mask entry, IPv4 first, each list most specific first
    /// (so each list ends with its default entry).
    pub fn entries(&self) -> impl Iterator<Item = RestrictEntry> + '_ {
        let v4 = self.v4.iter().map(|r| RestrictEntry {
            addr: IpAddr::V4(r.addr.into()),
            mask: IpAddr::V4(r.mask.into()),
            matched: r.matched,
        });
        let v6 = self.v6.iter().map(|r| RestrictEntry {
            addr: IpAddr::V6(r.addr.into()),
            mask: IpAddr::V6(r.mask.into()),
            matched: r.matched,
        });
        v4.chain(v6)
    }

    /// Write the table as `restrict` lines that rebuild it, defaults first
    /// and always explicit (an absent default is printed as an empty one,
    /// which means "allow everything").
    pub(crate) fn write_lines(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        let is_default = |e: &RestrictEntry| match e.mask {
            IpAddr::V4(m) => m.is_unspecified(),
            IpAddr::V6(m) => m.is_unspecified(),
        };
        let default_of = |v6: bool| {
            self.entries()
                .find(|e| is_default(e) && e.addr.is_ipv6() == v6)
                .map(|e| e.matched)
                .unwrap_or_default()
        };
        let (d4, d6) = (default_of(false), default_of(true));
        if d4 == d6 {
            writeln!(out, "restrict default{}", MatchText(d4))?;
        } else {
            writeln!(out, "restrict -4 default{}", MatchText(d4))?;
            writeln!(out, "restrict -6 default{}", MatchText(d6))?;
        }
        if let Some(s) = self.source {
            writeln!(out, "restrict source{}", MatchText(s))?;
        }
        for e in self.entries().filter(|e| !is_default(e)) {
            let family = if e.addr.is_ipv6() { "-6 " } else { "" };
            if e.mask == host_mask(e.addr) {
                writeln!(out, "restrict {family}{}{}", e.addr, MatchText(e.matched))?;
            } else {
                writeln!(
                    out,
                    "restrict {family}{} mask {}{}",
                    e.addr,
                    e.mask,
                    MatchText(e.matched)
                )?;
            }
        }
        for h in &self.hosts {
            match h.mask {
                Some(m) => writeln!(
                    out,
                    "restrict {} mask {m}{}",
                    quote(&h.name),
                    MatchText(h.matched)
                )?,
                None => writeln!(out, "restrict {}{}", quote(&h.name), MatchText(h.matched))?,
            }
        }
        Ok(())
    }
}

/// ` flags... [ippeerlimit N]`, with a leading space when non-empty.
struct MatchText(RestrictMatch);

impl fmt::Display for MatchText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.flags.is_empty() {
            write!(f, " {}", self.0.flags)?;
        }
        if let Some(n) = self.0.ippeerlimit {
            write!(f, " ippeerlimit {n}")?;
        }
        Ok(())
    }
}

/// Map `::ffff:a.b.c.d` to `a.b.c.d`; other addresses unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
