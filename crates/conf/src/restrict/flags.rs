//! [`RestrictFlags`]: a small hand-rolled bit set of `restrict` flags, with
//! the single name table used by both the parser and the printer.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};

/// The flags of one `restrict` entry. The empty set allows everything.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct RestrictFlags(u32);

impl RestrictFlags {
    /// `ignore`: drop every packet.
    pub const IGNORE: Self = Self(1 << 0);
    /// `noquery`: drop mode 6 (control) queries.
    pub const NOQUERY: Self = Self(1 << 1);
    /// `nomodify`: refuse mode 6 writes.
    pub const NOMODIFY: Self = Self(1 << 2);
    /// `notrap`: refuse trap registration.
    pub const NOTRAP: Self = Self(1 << 3);
    /// `notrust`: drop unauthenticated time packets.
    pub const NOTRUST: Self = Self(1 << 4);
    /// `nopeer`: do not mobilise associations for unauthenticated peers.
    pub const NOPEER: Self = Self(1 << 5);
    /// `noserve`: drop time-service packets (control queries still allowed).
    pub const NOSERVE: Self = Self(1 << 6);
    /// `limited`: apply `discard` rate limits.
    pub const LIMITED: Self = Self(1 << 7);
    /// `kod`: send a RATE kiss-o'-death instead of dropping when limited.
    pub const KOD: Self = Self(1 << 8);
    /// `version`: drop packets not of the current NTP version (4).
    pub const VERSION: Self = Self(1 << 9);
    /// `lowpriotrap`: traps set by these hosts are low priority.
    pub const LOWPRIOTRAP: Self = Self(1 << 10);
    /// `noepeer`: never mobilise ephemeral peers, even authenticated.
    pub const NOEPEER: Self = Self(1 << 11);
    /// `nomrulist`: refuse the mode 6 MRU list query.
    pub const NOMRULIST: Self = Self(1 << 12);
    /// `ntpport`: entry matches only packets from source port 123.
    pub const NTPPORT: Self = Self(1 << 13);
    /// `interface`: entry describes a local interface address.
    pub const INTERFACE: Self = Self(1 << 14);
    /// `serverresponse fuzz`: fuzz the low bits of server timestamps.
    pub const SERVERRESPONSE_FUZZ: Self = Self(1 << 15);
    /// `mssntp`: MS-SNTP signing (accepted; Meridian has no ntp_signd).
    pub const MSSNTP: Self = Self(1 << 16);

    /// Every flag with its ntp.conf spelling (`serverresponse fuzz` is two
    /// words in the file).
    pub const NAMED: [(&'static str, RestrictFlags); 17] = [
        ("ignore", Self::IGNORE),
        ("noquery", Self::NOQUERY),
        ("nomodify", Self::NOMODIFY),
        ("notrap", Self::NOTRAP),
        ("notrust", Self::NOTRUST),
        ("nopeer", Self::NOPEER),
        ("noserve", Self::NOSERVE),
        ("limited", Self::LIMITED),
        ("kod", Self::KOD),
        ("version", Self::VERSION),
        ("lowpriotrap", Self::LOWPRIOTRAP),
        ("noepeer", Self::NOEPEER),
        ("nomrulist", Self::NOMRULIST),
        ("ntpport", Self::NTPPORT),
        ("interface", Self::INTERFACE),
        ("serverresponse fuzz", Self::SERVERRESPONSE_FUZZ),
        ("mssntp", Self::MSSNTP),
    ];

    /// The empty set (allow everything).
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Build from raw bits, dropping unknown ones.
    pub const fn from_bits_truncate(bits: u32) -> Self {
        Self(bits & ((1 << 17) - 1))
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Set the flags of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clear the flags of `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// Look a single-word flag up by name (`serverresponse fuzz` is handled
    /// by the parser as two words).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    /// The names of the set flags, in canonical order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMED
            .into_iter()
            .filter(move |(_, f)| self.contains(*f))
            .map(|(n, _)| n)
    }
}

impl BitOr for RestrictFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl BitOrAssign for RestrictFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.insert(rhs);
    }
}

impl BitAnd for RestrictFlags {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl fmt::Display for RestrictFlags {
    /// Space-separated flag names in ntp.conf syntax.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.names().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(n)?;
        }
        Ok(())
    }
}

impl fmt::Debug for RestrictFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RestrictFlags({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_bits_and_round_trip() {
        let mut all = RestrictFlags::empty();
        for (name, flag) in RestrictFlags::NAMED {
            assert_eq!(flag.bits().count_ones(), 1, "{name}");
            assert!(!all.intersects(flag), "{name} reuses a bit");
            all |= flag;
            if !name.contains(' ') {
                assert_eq!(RestrictFlags::from_name(name), Some(flag));
            }
        }
        assert_eq!(RestrictFlags::from_bits_truncate(u32::MAX), all);
        assert_eq!(all.names().count(), RestrictFlags::NAMED.len());
    }

    #[test]
    fn set_operations() {
        let mut f = RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP;
        assert!(f.contains(RestrictFlags::NOTRAP));
        assert!(!f.contains(RestrictFlags::NOTRAP | RestrictFlags::KOD));
        f.remove(RestrictFlags::NOTRAP);
        assert_eq!(f, RestrictFlags::NOMODIFY);
        assert_eq!(f.to_string(), "nomodify");
        assert_eq!(
            (RestrictFlags::KOD | RestrictFlags::LIMITED).to_string(),
            "limited kod"
        );
    }
}
