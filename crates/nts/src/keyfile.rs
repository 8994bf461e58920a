//! The cookie master key file (NTPsec's `nts cookie FILE`): lets a server
//! keep its keys across restarts (so clients' cookies survive) and lets a
//! fleet of servers behind one name share keys.
//!
//! Format (text, UTF-8, mode 0600):
//!
//! ```text
//! # comments and blank lines are ignored
//! meridian-nts-keys 1
//! key <id: 8 hex digits> <created: Unix seconds> <aead id: 15> <key: 64 hex digits>
//! key ...
//! ```
//!
//! The header line comes first; then one `key` line per master key, in any
//! order: the newest `created` is current. For a fleet, one host rotates
//! (`KeyRing::rotate_if_due` + [`save_key_file`]) and the others set
//! `rotation_secs = 0` and [`load_key_file`] periodically or on SIGHUP.
//! Writes are atomic: a temporary file in the same directory, fsync,
//! rename, fsync of the directory, so readers never see a partial file.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::aead::{AeadKey, AEAD_AES_SIV_CMAC_256, KEY_LEN};
use crate::cookie::{KeyRing, MasterKey, MAX_KEYS};

/// The header line.
pub const KEY_FILE_HEADER: &str = "meridian-nts-keys 1";

/// Largest key file we read (64 keys need ~7 KiB).
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Renders `ring` in the key file format.
pub fn format_key_file(ring: &KeyRing) -> String {
    let mut s = String::from(
        "# Meridian NTS cookie master keys. SECRET: anyone holding them can\n\
         # decrypt clients' cookies. Newest `created` is current.\n",
    );
    s.push_str(KEY_FILE_HEADER);
    s.push('\n');
    for k in ring.keys().iter().rev() {
        let _ = write!(
            s,
            "key {:08x} {} {} ",
            k.id, k.created, AEAD_AES_SIV_CMAC_256
        );
        for b in k.key.as_bytes() {
            let _ = write!(s, "{b:02x}");
        }
        s.push('\n');
    }
    s
}

fn parse_hex_key(s: &str) -> Option<[u8; KEY_LEN]> {
    if s.len() != 2 * KEY_LEN || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Parses the key file format; errors name the 1-based line.
pub fn parse_key_file(text: &str) -> Result<KeyRing, String> {
    let mut header = false;
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if !header {
            if line != KEY_FILE_HEADER {
                return Err(format!("line {line_no}: expected `{KEY_FILE_HEADER}`"));
            }
            header = true;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["key", id, created, aead, key] = words[..] else {
            return Err(format!(
                "line {line_no}: expected `key ID CREATED AEAD KEY`"
            ));
        };
        let bad = |what: &str| format!("line {line_no}: bad {what}");
        let id = u32::from_str_radix(id, 16).map_err(|_| bad("key id"))?;
        let created = created.parse::<u64>().map_err(|_| bad("creation time"))?;
        if aead.parse::<u16>().ok() != Some(AEAD_AES_SIV_CMAC_256) {
            return Err(bad("AEAD id (only 15 is supported)"));
        }
        let key = parse_hex_key(key).ok_or_else(|| bad("key (64 hex digits)"))?;
        if keys.len() == MAX_KEYS {
            return Err(format!("line {line_no}: more than {MAX_KEYS} keys"));
        }
        keys.push(MasterKey {
            id,
            created,
            key: AeadKey::from_bytes(key),
        });
    }
    if !header {
        return Err(format!("missing `{KEY_FILE_HEADER}` header"));
    }
    KeyRing::from_keys(keys).ok_or_else(|| "no keys, or duplicate key ids".to_string())
}

/// Reads and parses a key file.
pub fn load_key_file(path: &Path) -> io::Result<KeyRing> {
    let meta = fs::metadata(path)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "key file too large",
        ));
    }
    let text = fs::read_to_string(path)?;
    parse_key_file(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })
}

/// The daemon's start-up step: loads `path` if it exists, otherwise
/// generates a fresh ring at `now` (Unix seconds) and saves it, so cookies
/// survive restarts from then on. A file that exists but does not parse is
/// an error (never silently replaced: other servers may share it).
pub fn load_or_create_key_file(path: &Path, now: u64) -> io::Result<KeyRing> {
    match load_key_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let ring = KeyRing::generate(now);
            save_key_file(path, &ring)?;
            Ok(ring)
        }
        other => other,
    }
}

/// Writes `ring` to `path` atomically with mode 0600.
pub fn save_key_file(path: &Path, ring: &KeyRing) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "key file path has no name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(format_key_file(ring).as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cookie::{SessionKeys, COOKIE_LEN};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_through_file_keeps_cookies_valid() {
        let dir = std::env::temp_dir().join(format!("mrdn-nts-keyfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cookie.keys");
        let mut ring = KeyRing::generate(100);
        ring.rotate(200);
        let mut cookie = [0u8; COOKIE_LEN];
        let sk = SessionKeys {
            c2s: AeadKey::random(),
            s2c: AeadKey::random(),
        };
        ring.seal_cookie(&sk, &mut cookie);
        save_key_file(&path, &ring).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Another server loading the file opens cookies this one issued.
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.keys(), ring.keys());
        assert_eq!(loaded.open_cookie(&cookie), Some(sk));
        // Overwrite in place; no temporary files left behind.
        ring.rotate(300);
        save_key_file(&path, &ring).unwrap();
        assert_eq!(load_key_file(&path).unwrap().current().created, 300);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_or_create_creates_once_then_loads() {
        let dir = std::env::temp_dir().join(format!("mrdn-nts-loc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let first = load_or_create_key_file(&path, 10).unwrap();
        let second = load_or_create_key_file(&path, 20).unwrap();
        assert_eq!(
            first.keys(),
            second.keys(),
            "second start reuses the saved keys"
        );
        fs::write(&path, "garbage").unwrap();
        assert!(
            load_or_create_key_file(&path, 30).is_err(),
            "corrupt file is not replaced"
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), "garbage");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_files_are_rejected_with_line_numbers() {
        let good = format_key_file(&KeyRing::generate(5));
        assert!(parse_key_file(&good).is_ok());
        assert!(parse_key_file("").unwrap_err().contains("header"));
        assert!(parse_key_file("meridian-nts-keys 2\n")
            .unwrap_err()
            .contains("line 1"));
        assert!(parse_key_file("meridian-nts-keys 1\n").is_err(), "no keys");
        let key = "00".repeat(32);
        let line = |l: &str| parse_key_file(&format!("# c\n{KEY_FILE_HEADER}\n{l}\n"));
        assert!(line(&format!("key 0000000a 5 15 {key}")).is_ok());
        assert!(line(&format!("key zz 5 15 {key}"))
            .unwrap_err()
            .contains("line 3"));
        assert!(line(&format!("key 1 -5 15 {key}")).is_err());
        assert!(line(&format!("key 1 5 17 {key}")).is_err());
        assert!(line(&format!("key 1 5 15 {}", &key[1..])).is_err());
        assert!(line(&format!("key 1 5 15 {key} extra")).is_err());
        assert!(
            line(&format!("key 1 5 15 {key}\nkey 1 6 15 {key}")).is_err(),
            "dup ids"
        );
    }
}
