//! Key types (the second column of a keys file): which MAC a key computes,
//! how long its digest and its secret are, and the many spellings of each
//! name that ntpd 4.2.8, NTPsec and chrony users write.

use std::fmt;

/// The MAC algorithm a symmetric key is used with.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum KeyType {
    /// Classic `MD5(key || packet)`, 16-octet digest (RFC 5905 §7.3).
    Md5,
    /// Classic `SHA1(key || packet)`, 20-octet digest (ntpd's OpenSSL keys).
    Sha1,
    /// AES-128-CMAC over the packet, 16-octet MAC (RFC 8573).
    Aes128Cmac,
    /// AES-192-CMAC (NTPsec `AES-192`), 16-octet MAC.
    Aes192Cmac,
    /// AES-256-CMAC (chrony `AES256`, NTPsec `AES-256`), 16-octet MAC.
    Aes256Cmac,
}

/// Every key type (backs [`KeyType::ALL`]).
const ALL: [KeyType; 5] = [
    KeyType::Md5,
    KeyType::Sha1,
    KeyType::Aes128Cmac,
    KeyType::Aes192Cmac,
    KeyType::Aes256Cmac,
];

/// Why a key-type name was not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KeyTypeError {
    /// A name some NTP implementation knows but Meridian does not support.
    Unsupported(&'static str),
    /// Not a key type at all.
    Unknown,
}

impl fmt::Display for KeyTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyTypeError::Unsupported(why) => f.write_str(why),
            KeyTypeError::Unknown => f.write_str(
                "unknown key type (expected MD5, SHA1, AES128CMAC, AES192CMAC or AES256CMAC)",
            ),
        }
    }
}

impl KeyType {
    /// Every supported key type.
    pub const ALL: [KeyType; 5] = ALL;

    /// Parses a key-type name, case-insensitively.
    ///
    /// Dashes and underscores are ignored, so `SHA-1`, `AES-128-CMAC` and
    /// `aes_128` all work. Accepted: `M`/`MD5`; `SHA1`; `AES`, `AES128`,
    /// `AES128CMAC` (ntpd 4.2.8's name); `AES192[CMAC]`; `AES256[CMAC]`. Unlike ntpd, an unknown name beginning with `M` is
    /// not silently taken as MD5: a typo should not pick the weakest MAC.
    pub fn from_name(name: &str) -> Result<KeyType, KeyTypeError> {
        let norm: String = name
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        match norm.as_str() {
            "M" | "MD5" => Ok(KeyType::Md5),
            "SHA1" => Ok(KeyType::Sha1),
            "AES" | "AES128" | "AES128CMAC" => Ok(KeyType::Aes128Cmac),
            "AES192" | "AES192CMAC" => Ok(KeyType::Aes192Cmac),
            "AES256" | "AES256CMAC" => Ok(KeyType::Aes256Cmac),
            // OpenSSL's "SHA" is SHA-0, which ntpd would accept: say so
            // rather than guess SHA-1, which would not interoperate.
            "SHA" => Err(KeyTypeError::Unsupported(
                "SHA-0 is not supported (for SHA-1 write SHA1)",
            )),
            "SHA224" | "SHA256" | "SHA384" | "SHA512" | "SHA3224" | "SHA3256" | "SHA3384"
            | "SHA3512" | "RMD160" | "RIPEMD160" => Err(KeyTypeError::Unsupported(
                "truncated SHA-2/SHA-3/RIPEMD digests are not supported (use SHA1 or AES128CMAC)",
            )),
            "A" | "N" | "DES" => Err(KeyTypeError::Unsupported(
                "DES keys were removed from NTP (use AES128CMAC)",
            )),
            _ => Err(KeyTypeError::Unknown),
        }
    }

    /// The name written in generated keys files: the spelling ntpd 4.2.8
    /// accepts for the types it has (`MD5`, `SHA1`, `AES128CMAC`).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Md5 => "MD5",
            KeyType::Sha1 => "SHA1",
            KeyType::Aes128Cmac => "AES128CMAC",
            KeyType::Aes192Cmac => "AES192CMAC",
            KeyType::Aes256Cmac => "AES256CMAC",
        }
    }

    /// Length of the digest in the MAC trailer (after the 4-octet key id).
    pub fn digest_len(self) -> usize {
        match self {
            KeyType::Sha1 => 20,
            KeyType::Md5 | KeyType::Aes128Cmac | KeyType::Aes192Cmac | KeyType::Aes256Cmac => 16,
        }
    }

    /// Length of the whole MAC trailer: key id plus digest.
    pub fn mac_len(self) -> usize {
        4 + self.digest_len()
    }

    /// The exact secret length the cipher needs, for CMAC types; `None`
    /// for the digest types, which take any length.
    pub fn required_key_len(self) -> Option<usize> {
        match self {
            KeyType::Md5 | KeyType::Sha1 => None,
            KeyType::Aes128Cmac => Some(16),
            KeyType::Aes192Cmac => Some(24),
            KeyType::Aes256Cmac => Some(32),
        }
    }

    /// The secret length `keygen` writes: the cipher's, or 20 octets (160
    /// bits, as ntp-keygen and chrony use) for the digest types.
    pub fn generated_key_len(self) -> usize {
        self.required_key_len().unwrap_or(20)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_spellings_of_ntpd_ntpsec_and_chrony() {
        for (names, want) in [
            (&["M", "m", "MD5", "md5", "Md5"][..], KeyType::Md5),
            (&["SHA1", "sha1", "SHA-1", "sha_1"][..], KeyType::Sha1),
            (
                &[
                    "AES128CMAC",
                    "aes128cmac",
                    "AES-128-CMAC",
                    "AES-128",
                    "AES128",
                    "AES",
                    "aes",
                ][..],
                KeyType::Aes128Cmac,
            ),
            (&["AES-192", "AES192CMAC"][..], KeyType::Aes192Cmac),
            (
                &["AES256CMAC", "AES-256", "aes256", "AES-256-CMAC"][..],
                KeyType::Aes256Cmac,
            ),
        ] {
            for name in names {
                assert_eq!(KeyType::from_name(name), Ok(want), "{name}");
            }
        }
    }

    #[test]
    fn rejects_unknown_and_unsupported_names() {
        assert_eq!(KeyType::from_name("MUMBLE"), Err(KeyTypeError::Unknown));
        assert_eq!(KeyType::from_name(""), Err(KeyTypeError::Unknown));
        assert!(matches!(
            KeyType::from_name("SHA"),
            Err(KeyTypeError::Unsupported(_))
        ));
        assert!(matches!(
            KeyType::from_name("sha256"),
            Err(KeyTypeError::Unsupported(_))
        ));
        assert!(matches!(
            KeyType::from_name("A"),
            Err(KeyTypeError::Unsupported(_))
        ));
    }

    #[test]
    fn generated_names_parse_back() {
        for t in KeyType::ALL {
            assert_eq!(KeyType::from_name(t.name()), Ok(t));
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(KeyType::Md5.mac_len(), 20);
        assert_eq!(KeyType::Sha1.mac_len(), 24);
        assert_eq!(KeyType::Aes128Cmac.mac_len(), 20);
        assert_eq!(KeyType::Aes256Cmac.required_key_len(), Some(32));
        assert_eq!(KeyType::Sha1.generated_key_len(), 20);
    }
}
