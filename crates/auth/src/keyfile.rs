//! The classic keys file (`ntp.keys(5)`): one `KEYID TYPE KEY` per line,
//! `#` comments, parsed from a string (the caller reads the file).
//!
//! Like ntpd, a bad line is reported and skipped and the other keys still
//! load; callers that want all-or-nothing use [`ParsedKeys::into_result`].
//! The key rules are ntpd 4.2.8's and NTPsec's: a key of at most 20
//! characters is the ASCII text itself, a longer one is hex; secrets are at
//! most 32 octets. chrony's explicit `HEX:` and `ASCII:` prefixes are
//! accepted too, so a key copied from a chrony keyfile means the same here.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use crate::diag::{KeyDiagnostic, KeyFileErrors, Severity};
use crate::hex;
use crate::keytype::KeyType;
use crate::mac::MacKey;

/// Keys of at most this many characters are ASCII text, longer ones hex.
pub const MAX_ASCII_KEY_CHARS: usize = 20;
/// The longest secret, in octets (ntpd's and NTPsec's `keystr[32]`).
pub const MAX_KEY_OCTETS: usize = 32;
/// The highest symmetric key id (`NTP_MAXKEY`); higher ids are Autokey's.
pub const MAX_KEY_ID: u32 = 65535;

/// The keys of a keys file, by key id. Secrets are kept only inside
/// [`MacKey`]s, whose `Debug` hides them.
#[derive(Clone, Debug, Default)]
pub struct KeyFile {
    keys: BTreeMap<u16, MacKey>,
}

impl KeyFile {
    /// An empty key set.
    pub fn new() -> KeyFile {
        KeyFile::default()
    }

    /// Adds or replaces key `id` (for keys that come from elsewhere than a
    /// file, and for tests). Returns the key it replaced.
    pub fn insert(&mut self, id: u16, key: MacKey) -> Option<MacKey> {
        self.keys.insert(id, key)
    }

    /// Key `id`, if the file defines it.
    pub fn get(&self, id: u16) -> Option<&MacKey> {
        self.keys.get(&id)
    }

    /// The defined key ids, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.keys.keys().copied()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is defined.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn into_map(self) -> BTreeMap<u16, MacKey> {
        self.keys
    }
}

/// The result of reading a keys file: the keys of every good line, and a
/// diagnostic for every bad one.
#[derive(Debug, Clone)]
pub struct ParsedKeys {
    /// The keys that were read.
    pub keys: KeyFile,
    /// Problems, in line order.
    pub diagnostics: Vec<KeyDiagnostic>,
}

impl ParsedKeys {
    /// Whether any line was rejected.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The keys if no line was rejected, else every diagnostic.
    pub fn into_result(self) -> Result<KeyFile, KeyFileErrors> {
        if self.has_errors() {
            Err(KeyFileErrors(self.diagnostics))
        } else {
            Ok(self.keys)
        }
    }
}

/// Parses the text of a keys file; `name` is used in diagnostics only.
pub fn parse_keys(text: &str, name: &str) -> ParsedKeys {
    let mut parser = Parser {
        name,
        diagnostics: Vec::new(),
    };
    let mut keys = BTreeMap::new();
    let mut defined_at: BTreeMap<u16, usize> = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let Some((id, key)) = parser.line(line, raw) else {
            continue;
        };
        if let Entry::Occupied(first) = defined_at.entry(id) {
            // ntpd lets the later line win; so do we, but say so, since two
            // definitions of one key are usually an editing mistake.
            let reason = format!(
                "key {id} is defined again: this line replaces line {}",
                first.get()
            );
            parser.report(line, Severity::Warning, &id.to_string(), reason);
        }
        defined_at.insert(id, line);
        keys.insert(id, key);
    }
    ParsedKeys {
        keys: KeyFile { keys },
        diagnostics: parser.diagnostics,
    }
}

struct Parser<'a> {
    name: &'a str,
    diagnostics: Vec<KeyDiagnostic>,
}

impl Parser<'_> {
    fn report(&mut self, line: usize, severity: Severity, word: &str, reason: String) {
        self.diagnostics.push(KeyDiagnostic {
            file: self.name.to_owned(),
            line,
            severity,
            word: word.to_owned(),
            reason,
        });
    }

    /// One line: `None` for blank lines, comments and rejected lines.
    fn line(&mut self, line: usize, raw: &str) -> Option<(u16, MacKey)> {
        // '#' can never be part of a key (ntp.keys(5)), so it always starts a comment.
        let content = raw.split('#').next().unwrap_or_default();
        let mut words = content.split_ascii_whitespace();
        let id_word = words.next()?;
        let id = match parse_key_id(id_word) {
            Ok(id) => id,
            Err(reason) => {
                self.report(line, Severity::Error, id_word, reason);
                return None;
            }
        };
        let Some(type_word) = words.next() else {
            let reason = "no key type: a key line is 'KEYID TYPE KEY'".to_owned();
            self.report(line, Severity::Error, id_word, reason);
            return None;
        };
        let key_type = match KeyType::from_name(type_word) {
            Ok(t) => t,
            Err(e) => {
                self.report(line, Severity::Error, type_word, e.to_string());
                return None;
            }
        };
        let Some(key_word) = words.next() else {
            let reason = format!("no key for key {id}: a key line is 'KEYID TYPE KEY'");
            self.report(line, Severity::Error, id_word, reason);
            return None;
        };
        for extra in words {
            let reason = "ignored: a key line is 'KEYID TYPE KEY' (keys cannot contain spaces)";
            self.report(line, Severity::Warning, extra, reason.to_owned());
        }
        // Problems with the key itself name the key id, never the secret.
        let key = decode_secret(key_word)
            .and_then(|secret| MacKey::new(key_type, &secret).map_err(|e| e.to_string()));
        match key {
            Ok(key) => Some((id, key)),
            Err(reason) => {
                self.report(
                    line,
                    Severity::Error,
                    id_word,
                    format!("key {id}: {reason}"),
                );
                None
            }
        }
    }
}

fn parse_key_id(word: &str) -> Result<u16, String> {
    let range = "key ids are 1 to 65535";
    if word.is_empty() || !word.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("not a key id ({range})"));
    }
    match word.parse::<u32>() {
        Ok(0) => Err("key 0 is reserved (it means 'no key')".to_owned()),
        Ok(id) if id <= MAX_KEY_ID => Ok(id as u16),
        _ => Err(format!("too large ({range}; larger ids are Autokey's)")),
    }
}

/// The secret octets a key word stands for.
fn decode_secret(word: &str) -> Result<Vec<u8>, String> {
    let secret = if let Some(digits) = word.strip_prefix("HEX:") {
        hex::decode(digits).ok_or("'HEX:' must be followed by an even number of hex digits")?
    } else if let Some(text) = word.strip_prefix("ASCII:") {
        ascii(text)?
    } else if word.len() <= MAX_ASCII_KEY_CHARS {
        ascii(word)?
    } else {
        hex::decode(word).ok_or(
            "keys longer than 20 characters must be hex (an even number of 0-9, a-f digits)",
        )?
    };
    if secret.is_empty() {
        return Err("the key is empty".to_owned());
    }
    if secret.len() > MAX_KEY_OCTETS {
        return Err(format!(
            "keys are at most {MAX_KEY_OCTETS} octets ({} hex digits), this one is {}",
            MAX_KEY_OCTETS * 2,
            secret.len()
        ));
    }
    Ok(secret)
}

fn ascii(text: &str) -> Result<Vec<u8>, String> {
    if text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.as_bytes().to_vec())
    } else {
        Err("ASCII keys must be printable ASCII characters".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::tests::unhex;

    fn parse(text: &str) -> ParsedKeys {
        parse_keys(text, "ntp.keys")
    }

    fn messages(p: &ParsedKeys) -> Vec<String> {
        p.diagnostics.iter().map(ToString::to_string).collect()
    }

    /// The MAC of a fixed message under a key, to tell which secret was read.
    fn mac_of(k: &MacKey) -> Vec<u8> {
        k.compute(b"ijklmnopqrstuvwx").as_bytes().to_vec()
    }

    #[test]
    fn reads_the_classic_forms() {
        let p = parse(
            "# ntp-keygen output\n\
             \n\
             1 M abcdefgh  # an ASCII MD5 key\n\
             2 MD5 abcdefgh\n\
             \t3\tSHA1\t0123456789abcdef0123456789ABCDEF01234567\r\n\
             4 AES128CMAC 0123456789abcdef\n\
             5 aes-128-cmac 30313233343536373839616263646566\n\
             6 AES256CMAC 603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4\n\
             7 SHA-1 HEX:0123\n\
             8 md5 ASCII:abcdefgh\n\
             65535 M x#comment right after the key\n",
        );
        assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
        let k = &p.keys;
        assert_eq!(k.ids().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 8, 65535]);
        assert_eq!(
            mac_of(k.get(1).unwrap()),
            unhex("0c0e84cf0bb7a8688e5238dbbc1c3953")
        );
        assert_eq!(mac_of(k.get(2).unwrap()), mac_of(k.get(1).unwrap()));
        assert_eq!(mac_of(k.get(8).unwrap()), mac_of(k.get(1).unwrap()));
        assert_eq!(k.get(3).unwrap().key_type(), KeyType::Sha1);
        // The same AES key written as 16 ASCII characters and as 32 hex digits.
        assert_eq!(
            mac_of(k.get(4).unwrap()),
            unhex("b0a1cfd27f690c43a75d6c55914b1514")
        );
        assert_eq!(mac_of(k.get(5).unwrap()), mac_of(k.get(4).unwrap()));
        assert_eq!(k.get(6).unwrap().key_type(), KeyType::Aes256Cmac);
        assert_eq!(k.get(7).unwrap().key_type(), KeyType::Sha1);
        let x = MacKey::new(KeyType::Md5, b"x").unwrap();
        assert_eq!(mac_of(k.get(65535).unwrap()), mac_of(&x));
    }

    #[test]
    fn twenty_characters_are_ascii_twenty_one_are_hex() {
        let p = parse("1 SHA1 abcdefghijklmnopqrst\n2 SHA1 abcdefghijklmnopqrstu\n");
        assert!(p.keys.get(1).is_some());
        assert_eq!(
            messages(&p),
            [
                "ntp.keys:2: error: '2': key 2: keys longer than 20 characters must be hex \
              (an even number of 0-9, a-f digits)"
            ]
        );
    }

    #[test]
    fn every_bad_line_is_reported_with_file_line_and_word() {
        let p = parse(
            "0 MD5 abc\n\
             65536 MD5 abc\n\
             x1 MD5 abc\n\
             4\n\
             5 MD5\n\
             6 MUMBLE abc\n\
             7 SHA abc\n\
             8 AES128CMAC short\n\
             9 AES256CMAC 0123456789abcdef0123456789abcdef\n\
             10 SHA1 0123456789abcdef0123456789abcdef0123456\n\
             11 SHA1 HEX:zz\n\
             12 MD5 ASCII:\n\
             13 MD5 abcdéf\n\
             14 SHA1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef00\n",
        );
        assert_eq!(
            messages(&p),
            [
                "ntp.keys:1: error: '0': key 0 is reserved (it means 'no key')",
                "ntp.keys:2: error: '65536': too large (key ids are 1 to 65535; larger ids are Autokey's)",
                "ntp.keys:3: error: 'x1': not a key id (key ids are 1 to 65535)",
                "ntp.keys:4: error: '4': no key type: a key line is 'KEYID TYPE KEY'",
                "ntp.keys:5: error: '5': no key for key 5: a key line is 'KEYID TYPE KEY'",
                "ntp.keys:6: error: 'MUMBLE': unknown key type (expected MD5, SHA1, AES128CMAC, AES192CMAC or AES256CMAC)",
                "ntp.keys:7: error: 'SHA': SHA-0 is not supported (for SHA-1 write SHA1)",
                "ntp.keys:8: error: '8': key 8: AES128CMAC keys are 16 octets (32 hex digits), this one is 5",
                "ntp.keys:9: error: '9': key 9: AES256CMAC keys are 32 octets (64 hex digits), this one is 16",
                "ntp.keys:10: error: '10': key 10: keys longer than 20 characters must be hex (an even number of 0-9, a-f digits)",
                "ntp.keys:11: error: '11': key 11: 'HEX:' must be followed by an even number of hex digits",
                "ntp.keys:12: error: '12': key 12: the key is empty",
                "ntp.keys:13: error: '13': key 13: ASCII keys must be printable ASCII characters",
                "ntp.keys:14: error: '14': key 14: keys are at most 32 octets (64 hex digits), this one is 33",
            ]
        );
        assert!(p.keys.is_empty());
        assert!(p.has_errors());
        assert_eq!(p.into_result().unwrap_err().0.len(), 14);
    }

    #[test]
    fn secrets_never_appear_in_diagnostics() {
        let p = parse("8 AES128CMAC sekrit\n9 SHA1 sekritsekritsekritsekrit\n");
        assert_eq!(p.diagnostics.len(), 2);
        for d in &p.diagnostics {
            assert!(!d.to_string().contains("sekrit"), "{d}");
        }
    }

    #[test]
    fn good_lines_survive_bad_ones_and_warnings_do_not_fail() {
        let p = parse("1 MD5 abc extra\n2 BOGUS abc\n3 MD5 abc\n3 SHA1 def\n");
        assert_eq!(p.keys.ids().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            p.keys.get(3).unwrap().key_type(),
            KeyType::Sha1,
            "the later line wins"
        );
        assert_eq!(
            messages(&p),
            [
                "ntp.keys:1: warning: 'extra': ignored: a key line is 'KEYID TYPE KEY' (keys cannot contain spaces)",
                "ntp.keys:2: error: 'BOGUS': unknown key type (expected MD5, SHA1, AES128CMAC, AES192CMAC or AES256CMAC)",
                "ntp.keys:4: warning: '3': key 3 is defined again: this line replaces line 3",
            ]
        );
        assert!(p.clone().into_result().is_err());
        let ok = parse("1 MD5 abc extra\n").into_result().unwrap();
        assert_eq!(ok.len(), 1);
    }
}
