//! Meridian's symmetric-key NTP authentication, sans-IO (RFC 5905 §7.3,
//! RFC 8573): the classic keys file, MD5/SHA-1 digests and AES-CMAC MACs,
//! signing and verifying packets, the server's answer policy (including
//! crypto-NAKs and `restrict notrust`), and key generation.
//!
//! Nothing here reads a file or a socket: the keys file is parsed from a
//! string, packets are caller buffers. Signing and verifying never
//! allocate, and digests are compared in constant time.
//!
//! ```
//! use meridian_auth::{parse_keys, KeyStore, Verification};
//!
//! let keys = parse_keys("1 SHA1 0123456789abcdef0123456789abcdef01234567\n", "ntp.keys")
//!     .into_result()
//!     .unwrap();
//! let store = KeyStore::new(keys, [1]);
//! let mut buf = [0u8; 48 + 24];
//! buf[0] = 0x23; // NTPv4 client request
//! let len = store.sign_in_place(&mut buf, 48, 1).unwrap();
//! assert_eq!(store.verify(&buf[..len]), Verification::Valid { key_id: 1 });
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod diag;
mod hex;
mod keyfile;
mod keygen;
mod keytype;
mod mac;
mod server;
mod store;

pub use diag::{KeyDiagnostic, KeyFileErrors, Severity};
pub use keyfile::{
    parse_keys, KeyFile, ParsedKeys, MAX_ASCII_KEY_CHARS, MAX_KEY_ID, MAX_KEY_OCTETS,
};
pub use keygen::{generate_keys_file, generate_keys_file_with};
pub use keytype::{KeyType, KeyTypeError};
pub use mac::{Digest, KeyLengthError, MacKey, MAX_DIGEST_LEN};
pub use server::{server_action, write_crypto_nak, ServerAuthAction, CRYPTO_NAK};
pub use store::{KeyStore, SignError, Verification, MAX_MAC_LEN};
