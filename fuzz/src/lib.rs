//! Fixtures shared by Meridian's fuzz targets and the seed-corpus generator
//! (`examples/seeds.rs`): fixed keys, configurations and NTS key material, so
//! that every run of a target sees the same world and a crash reproduces.
//!
//! Several targets take a first "control" octet that selects a variant
//! (restrict configuration, source address, whether the target itself signs
//! or seals the rest of the input). Signing/sealing inside the target lets
//! libFuzzer reach the code behind a MAC or an AEAD check, which it could
//! never forge.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use meridian_auth::{parse_keys, KeyStore};
use meridian_conf::restrict::RestrictTable;
use meridian_conf::{parse_str, MemorySource};
use meridian_nts::aead::AeadKey;
use meridian_nts::cookie::{KeyRing, MasterKey, SessionKeys, SharedKeyRing, COOKIE_LEN};
use meridian_nts::fields::{
    seal_authenticator, write_field, AUTH_OVERHEAD, EF_COOKIE, EF_UNIQUE_ID, UID_LEN,
};
use meridian_proto::NtpTimestamp;

/// The keys every authentication target uses: MD5 (1, trusted), SHA-1 (2,
/// trusted), AES-128-CMAC (3, trusted), MD5 (4, untrusted).
pub const KEYS_TEXT: &str = "\
1 MD5 abcdefgh
2 SHA1 0123456789abcdef0123456789abcdef01234567
3 AES128CMAC 000102030405060708090a0b0c0d0e0f
4 MD5 untrusted
";

/// The key store of [`KEYS_TEXT`] with keys 1–3 trusted.
pub fn key_store() -> KeyStore {
    let keys = parse_keys(KEYS_TEXT, "fuzz.keys")
        .into_result()
        .expect("fixture keys parse");
    KeyStore::new(keys, [1, 2, 3])
}

/// Restrict configurations a control octet chooses from: the README's
/// world-facing default, a permissive one, rate limits with KoD, queries
/// allowed from everyone, `notrust`, and `ignore`.
pub const RESTRICT_CONFS: [&str; 6] = [
    "restrict default kod limited nomodify notrap nopeer noquery\nrestrict 127.0.0.1\n",
    "restrict default\n",
    "restrict default limited kod\ndiscard average 0 minimum 0\n",
    "restrict default nomodify notrap nopeer\n",
    "restrict default notrust\n",
    "restrict default ignore\nrestrict 10.0.0.0 mask 255.0.0.0\n",
];

/// The restrict table of `RESTRICT_CONFS[i % len]`.
pub fn restrict_table(i: usize) -> RestrictTable {
    let conf = RESTRICT_CONFS[i % RESTRICT_CONFS.len()];
    parse_str("fuzz.conf", conf, &MemorySource::new())
        .expect("fixture config parses")
        .restrict
}

/// Source addresses a control octet chooses from: ordinary v4 and v6
/// clients, loopback, and the ones that must be dropped (port 0, the
/// refclock pseudo-address, multicast, broadcast, unspecified).
pub fn source(i: u8) -> SocketAddr {
    let ip: IpAddr = match i % 10 {
        0 | 1 | 2 => Ipv4Addr::new(10, 1, 2, 3).into(),
        3 => "2001:db8::7".parse::<Ipv6Addr>().unwrap().into(),
        4 => Ipv4Addr::LOCALHOST.into(),
        5 => Ipv6Addr::LOCALHOST.into(),
        6 => Ipv4Addr::new(127, 127, 1, 0).into(),
        7 => Ipv4Addr::new(224, 0, 1, 1).into(),
        8 => Ipv4Addr::BROADCAST.into(),
        _ => Ipv4Addr::UNSPECIFIED.into(),
    };
    let port = if i / 10 % 5 == 4 { 0 } else { 40_000 };
    SocketAddr::new(ip, port)
}

/// A fixed "now": 2027-01-15T08:00:00Z.
pub fn now() -> NtpTimestamp {
    NtpTimestamp::from_unix(1_800_000_000, 0)
}

/// The NTS cookie master key every NTS target uses.
pub fn key_ring() -> SharedKeyRing {
    let ring = KeyRing::from_keys(vec![MasterKey {
        id: 0x4d52_4431,
        created: 1_800_000_000,
        key: AeadKey::from_bytes([0x42; 32]),
    }])
    .expect("one key");
    SharedKeyRing::new(ring)
}

/// The session keys inside every cookie the targets make.
pub fn session_keys() -> SessionKeys {
    SessionKeys {
        c2s: AeadKey::from_bytes([0x11; 32]),
        s2c: AeadKey::from_bytes([0x22; 32]),
    }
}

/// A valid cookie for [`session_keys`] under [`key_ring`].
pub fn cookie() -> [u8; COOKIE_LEN] {
    let mut c = [0u8; COOKIE_LEN];
    key_ring().read().seal_cookie(&session_keys(), &mut c);
    c
}

/// The Unique Identifier the client targets use.
pub const UID: [u8; UID_LEN] = [0x5a; UID_LEN];

/// Split `data` at the first `sep` octet sequence.
pub fn split2<'a>(data: &'a [u8], sep: &[u8]) -> (&'a [u8], &'a [u8]) {
    match data.windows(sep.len()).position(|w| w == sep) {
        Some(i) => (&data[..i], &data[i + sep.len()..]),
        None => (data, &[]),
    }
}

/// Builds an NTS request the server will authenticate: `header` (padded or
/// cut to 48 octets), a UID, a valid cookie, `extra` (raw octets, meant to
/// be extension fields, in the associated data), then an authenticator
/// sealed under C2S over `plaintext` (padded to a multiple of 4). Returns
/// `None` when it does not fit in `out`.
pub fn sealed_request(
    header: &[u8],
    extra: &[u8],
    plaintext: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let mut n = put_header(header, out)?;
    n += write_field(out.get_mut(n..)?, EF_UNIQUE_ID, &UID).ok()?;
    n += write_field(out.get_mut(n..)?, EF_COOKIE, &cookie()).ok()?;
    n += put_raw(extra, out.get_mut(n..)?)?;
    let pt_len = seal_plaintext(plaintext, out, n)?;
    n += seal_authenticator(out, n, &session_keys().c2s, &[7; 16], pt_len).ok()?;
    Some(n)
}

/// Builds an NTS response the client will authenticate: `header`, the UID
/// [`UID`], `extra` (associated data), and an authenticator sealed under S2C
/// over `plaintext`.
pub fn sealed_response(
    header: &[u8],
    extra: &[u8],
    plaintext: &[u8],
    out: &mut [u8],
) -> Option<usize> {
    let mut n = put_header(header, out)?;
    n += write_field(out.get_mut(n..)?, EF_UNIQUE_ID, &UID).ok()?;
    n += put_raw(extra, out.get_mut(n..)?)?;
    let pt_len = seal_plaintext(plaintext, out, n)?;
    n += seal_authenticator(out, n, &session_keys().s2c, &[9; 16], pt_len).ok()?;
    Some(n)
}

fn put_header(header: &[u8], out: &mut [u8]) -> Option<usize> {
    let slot = out.get_mut(..48)?;
    slot.fill(0);
    let len = header.len().min(48);
    slot[..len].copy_from_slice(&header[..len]);
    Some(48)
}

fn put_raw(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    out.get_mut(..raw.len())?.copy_from_slice(raw);
    Some(raw.len())
}

/// Copies `plaintext`, zero-padded to a multiple of 4, where
/// `seal_authenticator` expects it for a field at `at`; returns its length.
fn seal_plaintext(plaintext: &[u8], out: &mut [u8], at: usize) -> Option<usize> {
    let len = plaintext.len().next_multiple_of(4);
    let dst = out.get_mut(at + AUTH_OVERHEAD..at + AUTH_OVERHEAD + len)?;
    dst.fill(0);
    dst[..plaintext.len()].copy_from_slice(plaintext);
    Some(len)
}
