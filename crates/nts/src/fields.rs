//! NTS extension fields in NTP packets (RFC 8915 §5): types, the Unique
//! Identifier, and the NTS Authenticator and Encrypted Extension Fields
//! field, which seals everything before it as associated data.
//!
//! Shared by the client and server; allocation-free.

use meridian_proto::{extension_fields, write_extension_field, ExtensionField, HEADER_LEN};

use crate::aead::{AeadKey, NONCE_LEN, TAG_LEN};
use crate::error::NtsError;

/// Unique Identifier extension field.
pub const EF_UNIQUE_ID: u16 = 0x0104;
/// NTS Cookie extension field.
pub const EF_COOKIE: u16 = 0x0204;
/// NTS Cookie Placeholder extension field.
pub const EF_COOKIE_PLACEHOLDER: u16 = 0x0304;
/// NTS Authenticator and Encrypted Extension Fields.
pub const EF_AUTHENTICATOR: u16 = 0x0404;

/// Length of the Unique Identifier we send (RFC 8915 §5.3: at least 32).
pub const UID_LEN: usize = 32;

/// Kiss code of an NTS NAK.
pub const NTS_NAK: [u8; 4] = *b"NTSN";

/// Octets between an authenticator field's start and its plaintext when
/// sealed by us: field header 4, lengths 4, nonce 16, SIV tag 16.
pub const AUTH_OVERHEAD: usize = 4 + 4 + NONCE_LEN + TAG_LEN;

/// Largest plaintext (encrypted extension fields) we decrypt: a response
/// carrying 8 cookies of up to 1 KiB would not fit in a datagram anyway.
pub const MAX_PLAINTEXT: usize = 2048;

/// A parsed authenticator field, borrowed from the packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Authenticator<'a> {
    /// The nonce (unpadded).
    pub nonce: &'a [u8],
    /// The SIV tag.
    pub tag: &'a [u8; TAG_LEN],
    /// The encrypted extension fields (unpadded, tag excluded).
    pub ciphertext: &'a [u8],
}

fn padded(n: usize) -> usize {
    n.next_multiple_of(4)
}

/// Parses the value of an authenticator field: nonce length, ciphertext
/// length, padded nonce, padded ciphertext (tag first), optional padding.
/// Like chrony, requires room for a 16-octet nonce even if a shorter one
/// is used (RFC 8915 §5.6 additional padding).
pub fn parse_authenticator(value: &[u8]) -> Result<Authenticator<'_>, NtsError> {
    let (lens, rest) = value.split_first_chunk::<4>().ok_or(NtsError::Malformed)?;
    let nonce_len = usize::from(u16::from_be_bytes([lens[0], lens[1]]));
    let ct_len = usize::from(u16::from_be_bytes([lens[2], lens[3]]));
    if nonce_len == 0 || ct_len < TAG_LEN {
        return Err(NtsError::Malformed);
    }
    let nonce_space = padded(nonce_len).max(NONCE_LEN);
    if padded(nonce_len) + padded(ct_len) > rest.len() || nonce_space + padded(ct_len) > rest.len()
    {
        return Err(NtsError::Malformed);
    }
    let nonce = rest.get(..nonce_len).ok_or(NtsError::Malformed)?;
    let ct_all = rest
        .get(padded(nonce_len)..padded(nonce_len) + ct_len)
        .ok_or(NtsError::Malformed)?;
    let (tag, ciphertext) = ct_all
        .split_first_chunk::<TAG_LEN>()
        .ok_or(NtsError::Malformed)?;
    Ok(Authenticator {
        nonce,
        tag,
        ciphertext,
    })
}

/// Seals an authenticator field at `buf[at..]` whose plaintext (already
/// written by the caller at `buf[at + AUTH_OVERHEAD..][..plaintext_len]`,
/// a whole number of extension fields) is encrypted in place; everything in
/// `buf[..at]` is the associated data. Returns the field's length.
pub fn seal_authenticator(
    buf: &mut [u8],
    at: usize,
    key: &AeadKey,
    nonce: &[u8; NONCE_LEN],
    plaintext_len: usize,
) -> Result<usize, NtsError> {
    let ct_len = TAG_LEN + plaintext_len;
    let field_len = AUTH_OVERHEAD + padded(plaintext_len);
    let (ad, field) = buf
        .split_at_mut_checked(at)
        .ok_or(NtsError::BufferTooSmall)?;
    let field = field.get_mut(..field_len).ok_or(NtsError::BufferTooSmall)?;
    let wire_len = u16::try_from(field_len).map_err(|_| NtsError::BufferTooSmall)?;
    let wire_ct = u16::try_from(ct_len).map_err(|_| NtsError::BufferTooSmall)?;
    let (head, body) = field.split_at_mut(8);
    head[..2].copy_from_slice(&EF_AUTHENTICATOR.to_be_bytes());
    head[2..4].copy_from_slice(&wire_len.to_be_bytes());
    head[4..6].copy_from_slice(&(NONCE_LEN as u16).to_be_bytes());
    head[6..8].copy_from_slice(&wire_ct.to_be_bytes());
    let (nonce_dst, rest) = body.split_at_mut(NONCE_LEN);
    nonce_dst.copy_from_slice(nonce);
    let (tag_dst, rest) = rest.split_at_mut(TAG_LEN);
    let (pt, pad) = rest.split_at_mut(plaintext_len);
    pad.fill(0);
    let tag = key.seal_in_place(ad, nonce, pt);
    tag_dst.copy_from_slice(&tag);
    Ok(field_len)
}

/// Verifies an authenticator (parsed from the field that starts at
/// `auth_at` in `packet`) and decrypts its plaintext into `out`, returning
/// the plaintext length.
pub fn open_authenticator(
    packet: &[u8],
    auth_at: usize,
    auth: &Authenticator<'_>,
    key: &AeadKey,
    out: &mut [u8],
) -> Result<usize, NtsError> {
    let ad = packet.get(..auth_at).ok_or(NtsError::Malformed)?;
    let pt = out
        .get_mut(..auth.ciphertext.len())
        .ok_or(NtsError::Malformed)?;
    pt.copy_from_slice(auth.ciphertext);
    if key.open_in_place(ad, auth.nonce, auth.tag, pt) {
        Ok(pt.len())
    } else {
        Err(NtsError::BadAuth)
    }
}

/// One extension field of a packet with its offset from the packet start.
pub type LocatedField<'a> = (usize, ExtensionField<'a>);

/// Iterates over the extension fields after the NTP header with their
/// offsets. Unlike `meridian_proto::parse_packet`, never treats a tail as
/// a legacy MAC: NTS packets carry none, and an authenticator must be
/// found where it is.
pub fn located_fields(packet: &[u8]) -> impl Iterator<Item = Result<LocatedField<'_>, NtsError>> {
    let ext = packet.get(HEADER_LEN..).unwrap_or_default();
    let mut at = HEADER_LEN;
    extension_fields(ext).map(move |f| {
        let f = f.map_err(|_| NtsError::Malformed)?;
        let here = at;
        at += 4 + f.value.len();
        Ok((here, f))
    })
}

/// Writes a field (see `meridian_proto::write_extension_field`).
pub fn write_field(out: &mut [u8], field_type: u16, value: &[u8]) -> Result<usize, NtsError> {
    write_extension_field(out, field_type, value, 0).map_err(|_| NtsError::BufferTooSmall)
}

/// Writes a field of `len` zero octets (placeholder) without a source
/// buffer.
pub fn write_zero_field(out: &mut [u8], field_type: u16, len: usize) -> Result<usize, NtsError> {
    let total = 4 + padded(len).max(12);
    let field = out.get_mut(..total).ok_or(NtsError::BufferTooSmall)?;
    let wire = u16::try_from(total).map_err(|_| NtsError::BufferTooSmall)?;
    field[..2].copy_from_slice(&field_type.to_be_bytes());
    field[2..4].copy_from_slice(&wire.to_be_bytes());
    field[4..].fill(0);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seal_then_parse_and_open() {
        let key = AeadKey::random();
        let mut buf = [0u8; 200];
        buf[..48].fill(0x23);
        let at = 48;
        // Plaintext: one 16-octet field.
        write_field(&mut buf[at + AUTH_OVERHEAD..], 0x1234, &[9; 12]).unwrap();
        let n = seal_authenticator(&mut buf, at, &key, &[7; 16], 16).unwrap();
        assert_eq!(n, AUTH_OVERHEAD + 16);
        let pkt = &buf[..at + n];
        let fields: Vec<_> = located_fields(pkt).collect::<Result<_, _>>().unwrap();
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].0, 48);
        assert_eq!(fields[0].1.field_type, EF_AUTHENTICATOR);
        let auth = parse_authenticator(fields[0].1.value).unwrap();
        assert_eq!(auth.nonce, &[7; 16]);
        assert_eq!(auth.ciphertext.len(), 16);
        let mut out = [0u8; 64];
        let len = open_authenticator(pkt, 48, &auth, &key, &mut out).unwrap();
        assert_eq!(&out[..4], &[0x12, 0x34, 0, 16]);
        assert_eq!(len, 16);
        // The header is authenticated.
        let mut tampered = pkt.to_vec();
        tampered[40] ^= 1;
        assert_eq!(
            open_authenticator(&tampered, 48, &auth, &key, &mut out),
            Err(NtsError::BadAuth)
        );
        assert_eq!(
            open_authenticator(pkt, 48, &auth, &AeadKey::random(), &mut out),
            Err(NtsError::BadAuth)
        );
    }

    #[test]
    fn authenticator_layout_checks() {
        // Nonce length 0, ciphertext shorter than a tag, lengths past the end.
        assert!(parse_authenticator(&[0, 0, 0, 16, 0, 0]).is_err());
        let mut v = vec![0, 16, 0, 8];
        v.extend([0; 24]);
        assert!(parse_authenticator(&v).is_err());
        let mut v = vec![0, 16, 0, 32];
        v.extend([0; 40]);
        assert!(parse_authenticator(&v).is_err());
        // A 4-octet nonce without the required padding to 16 is refused,
        // with it accepted.
        let mut v = vec![0, 4, 0, 16];
        v.extend([0; 20]);
        assert!(parse_authenticator(&v).is_err());
        v.extend([0; 12]);
        let a = parse_authenticator(&v).unwrap();
        assert_eq!(a.nonce.len(), 4);
        assert!(a.ciphertext.is_empty());
    }

    proptest! {
        #[test]
        fn authenticator_parser_never_panics(v in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(a) = parse_authenticator(&v) {
                prop_assert!(a.nonce.len() + a.ciphertext.len() + TAG_LEN + 4 <= v.len());
            }
        }
    }
}
