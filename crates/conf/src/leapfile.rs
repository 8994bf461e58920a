//! The leap second table: the IETF/NIST `leap-seconds.list` format that `leapfile` names.
//!
//! Lines are `NTP-seconds  TAI-UTC  # comment`; `#$` gives the last update and `#@` the
//! expiry (both NTP seconds); `#h` carries a SHA-1 over the significant digits of those
//! (update, expiry, then each entry's two numbers, all whitespace and comments removed),
//! written as five 32-bit hex words. A file whose hash does not match is rejected: a
//! leap second applied from a corrupted table is a one-second error on every client.

use sha1::{Digest, Sha1};

/// Seconds between the NTP era 0 epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: i64 = 2_208_988_800;

/// One line of the table: from `ntp_seconds` on, TAI − UTC is `tai_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeapEntry {
    /// NTP seconds (era 0) at which the offset takes effect.
    pub ntp_seconds: u64,
    /// TAI − UTC from then on, seconds.
    pub tai_offset: i32,
}

impl LeapEntry {
    /// The same instant as Unix seconds.
    pub fn unix_seconds(&self) -> i64 {
        // A time past i64 (only a crafted file has one) is "never", not an overflow.
        i64::try_from(self.ntp_seconds).map_or(i64::MAX, |s| s - NTP_UNIX_OFFSET)
    }
}

/// A parsed, verified leap second table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeapTable {
    /// When the file was last updated (NTP seconds).
    pub updated: u64,
    /// When the file stops being valid (NTP seconds).
    pub expires: u64,
    /// The entries, in increasing time.
    pub entries: Vec<LeapEntry>,
}

/// Why a leap file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeapFileError {
    /// A line could not be read.
    #[error("line {line}: {reason}")]
    Syntax {
        /// Line number, 1-based.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required `#$`, `#@` or `#h` line is missing.
    #[error("missing '{0}' line")]
    Missing(&'static str),
    /// The SHA-1 in `#h` does not match the contents.
    #[error("hash mismatch: the file is corrupt or was edited")]
    HashMismatch,
    /// Entries are not in increasing time order.
    #[error("entries out of order at line {0}")]
    Unordered(usize),
}

fn number<T: std::str::FromStr>(
    word: Option<&str>,
    line: usize,
    reason: &'static str,
) -> Result<T, LeapFileError> {
    word.and_then(|w| w.parse().ok())
        .ok_or(LeapFileError::Syntax { line, reason })
}

/// Parse and verify the text of a leap-seconds.list file.
pub fn parse_leapfile(text: &str) -> Result<LeapTable, LeapFileError> {
    let mut updated: Option<u64> = None;
    let mut expires: Option<u64> = None;
    let mut hash: Option<[u32; 5]> = None;
    let mut entries: Vec<LeapEntry> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if let Some(rest) = raw.strip_prefix("#$") {
            updated = Some(number(
                rest.split_whitespace().next(),
                line,
                "bad update time",
            )?);
        } else if let Some(rest) = raw.strip_prefix("#@") {
            expires = Some(number(
                rest.split_whitespace().next(),
                line,
                "bad expiry time",
            )?);
        } else if let Some(rest) = raw.strip_prefix("#h") {
            let mut words = [0u32; 5];
            let mut it = rest.split_whitespace();
            for w in &mut words {
                *w = it
                    .next()
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or(LeapFileError::Syntax {
                        line,
                        reason: "bad hash",
                    })?;
            }
            hash = Some(words);
        } else if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        } else {
            let data = raw.split('#').next().unwrap_or("");
            let mut words = data.split_whitespace();
            let ntp_seconds = number(words.next(), line, "bad time")?;
            let tai_offset = number(words.next(), line, "bad TAI offset")?;
            if entries.last().is_some_and(|e| e.ntp_seconds >= ntp_seconds) {
                return Err(LeapFileError::Unordered(line));
            }
            entries.push(LeapEntry {
                ntp_seconds,
                tai_offset,
            });
        }
    }
    let updated = updated.ok_or(LeapFileError::Missing("#$"))?;
    let expires = expires.ok_or(LeapFileError::Missing("#@"))?;
    let hash = hash.ok_or(LeapFileError::Missing("#h"))?;
    let mut sha = Sha1::new();
    sha.update(updated.to_string());
    sha.update(expires.to_string());
    for e in &entries {
        sha.update(e.ntp_seconds.to_string());
        sha.update(e.tai_offset.to_string());
    }
    let digest = sha.finalize();
    let computed: Vec<u32> = digest
        .chunks(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if computed != hash {
        return Err(LeapFileError::HashMismatch);
    }
    Ok(LeapTable {
        updated,
        expires,
        entries,
    })
}

impl LeapTable {
    /// Whether the table has expired at Unix time `now`.
    pub fn is_expired(&self, unix_now: i64) -> bool {
        unix_now >= i64::try_from(self.expires).map_or(i64::MAX, |e| e - NTP_UNIX_OFFSET)
    }

    /// TAI − UTC at Unix time `now`, if the table covers it.
    pub fn tai_offset(&self, unix_now: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.unix_seconds() <= unix_now)
            .map(|e| e.tai_offset)
    }

    /// A leap second at the end of the UTC day containing Unix time `now`: +1 for an
    /// inserted second, -1 for a deleted one, `None` if none.
    pub fn leap_at_end_of_day(&self, unix_now: i64) -> Option<i32> {
        let day_end = (unix_now.div_euclid(86_400) + 1) * 86_400;
        let i = self
            .entries
            .iter()
            .position(|e| e.unix_seconds() == day_end)?;
        let before = if i == 0 {
            return None;
        } else {
            self.entries[i - 1].tai_offset
        };
        Some(self.entries[i].tai_offset.saturating_sub(before))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small table made for this test, with its hash computed independently (Python's
    /// hashlib over "3900000000" "3950000000" "2272060800" "10" "3692217600" "37").
    const SMALL: &str = "\
# a test table
#$\t3900000000
#@\t3950000000
2272060800\t10\t# 1 Jan 1972
3692217600\t37\t# 1 Jan 2017
#h\tHASH
";

    fn small() -> String {
        let mut sha = Sha1::new();
        for part in [
            "3900000000",
            "3950000000",
            "2272060800",
            "10",
            "3692217600",
            "37",
        ] {
            sha.update(part);
        }
        let d = sha.finalize();
        // Written without leading zeros, as the published files do.
        let words: Vec<String> = d
            .chunks(4)
            .map(|c| format!("{:x}", u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect();
        SMALL.replace("HASH", &words.join(" "))
    }

    #[test]
    fn small_table_verifies_and_answers() {
        let t = parse_leapfile(&small()).unwrap();
        assert_eq!(t.entries.len(), 2);
        // 1 Jan 2017 00:00:00 UTC is Unix 1483228800.
        assert_eq!(t.entries[1].unix_seconds(), 1_483_228_800);
        assert_eq!(t.tai_offset(1_483_228_800), Some(37));
        assert_eq!(t.tai_offset(1_483_228_799), Some(10));
        assert_eq!(t.leap_at_end_of_day(1_483_228_800 - 3600), Some(27));
        assert_eq!(t.leap_at_end_of_day(1_483_228_800 + 3600), None);
        assert!(!t.is_expired(1_700_000_000));
        assert!(t.is_expired(3_950_000_000 - NTP_UNIX_OFFSET));
    }

    #[test]
    fn tampering_is_detected() {
        let bad = small().replace("37\t#", "38\t#");
        assert_eq!(parse_leapfile(&bad), Err(LeapFileError::HashMismatch));
        let no_hash: String = small()
            .lines()
            .filter(|l| !l.starts_with("#h"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(parse_leapfile(&no_hash), Err(LeapFileError::Missing("#h")));
    }

    #[test]
    fn garbage_is_a_syntax_error_not_a_panic() {
        assert!(matches!(
            parse_leapfile("#$ x\n"),
            Err(LeapFileError::Syntax { line: 1, .. })
        ));
        assert!(matches!(
            parse_leapfile("12 ab\n"),
            Err(LeapFileError::Syntax { .. })
        ));
        assert!(matches!(
            parse_leapfile("20 1\n10 2\n"),
            Err(LeapFileError::Unordered(2))
        ));
    }

    #[test]
    fn the_systems_tzdata_table_verifies_when_present() {
        let path = "/usr/share/zoneinfo/leap-seconds.list";
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("SKIP: {path} not installed");
            return;
        };
        let t = parse_leapfile(&text).expect("the published table verifies");
        assert_eq!(t.tai_offset(1_700_000_000), Some(37));
        // The last leap second: end of 31 Dec 2016.
        assert_eq!(t.leap_at_end_of_day(1_483_228_800 - 1), Some(1));
    }
}
