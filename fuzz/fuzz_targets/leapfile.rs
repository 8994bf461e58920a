//! `meridian_conf::leapfile::parse_leapfile`: the IERS/NIST
//! leap-seconds.list, and the queries the daemon makes of a table that
//! verified. The file's `#h` line is an unkeyed SHA-1 of its numbers, which
//! libFuzzer cannot compute: when a file fails only its hash, the target
//! writes the right one and parses again, so the code past the check is
//! fuzzed too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_conf::leapfile::{parse_leapfile, LeapFileError};
use sha1::{Digest, Sha1};

/// The numbers the hash covers, read as the parser reads them.
fn rehash(text: &str) -> Option<String> {
    let mut sha = Sha1::new();
    let (mut updated, mut expires) = (None, None);
    let mut body = String::new();
    for raw in text.lines() {
        if let Some(rest) = raw.strip_prefix("#$") {
            updated = rest.split_whitespace().next().map(str::to_string);
        } else if let Some(rest) = raw.strip_prefix("#@") {
            expires = rest.split_whitespace().next().map(str::to_string);
        } else if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        } else {
            let data = raw.split('#').next().unwrap_or("");
            let mut w = data.split_whitespace();
            let t: u64 = w.next()?.parse().ok()?;
            let o: i32 = w.next()?.parse().ok()?;
            body.push_str(&t.to_string());
            body.push_str(&o.to_string());
        }
    }
    sha.update(updated?.parse::<u64>().ok()?.to_string());
    sha.update(expires?.parse::<u64>().ok()?.to_string());
    sha.update(body);
    let d = sha.finalize();
    let words: Vec<String> = d
        .chunks(4)
        .map(|c| format!("{:x}", u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let mut out: String = text
        .lines()
        .filter(|l| !l.starts_with("#h"))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("#h {}\n", words.join(" ")));
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let table = match parse_leapfile(text) {
        Ok(t) => t,
        Err(LeapFileError::HashMismatch) => {
            let Some(fixed) = rehash(text) else { return };
            match parse_leapfile(&fixed) {
                Ok(t) => t,
                Err(_) => return,
            }
        }
        Err(_) => return,
    };
    // What the daemon asks, at times it can see (1970 .. 2106).
    for now in [
        0i64,
        1_483_228_799,
        1_483_228_800,
        1_800_000_000,
        4_294_967_295,
    ] {
        let _ = table.is_expired(now);
        let _ = table.tai_offset(now);
        let _ = table.leap_at_end_of_day(now);
    }
});
