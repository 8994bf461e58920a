//! RFC 7822 extension fields: iterating over them in a received packet and
//! writing them into an outgoing buffer. Both directions are allocation-free.

use crate::packet::PacketError;

/// Size of an extension field's type + length header.
const FIELD_HEADER_LEN: usize = 4;

/// Smallest legal extension field (RFC 7822 §3).
pub const MIN_EXTENSION_LEN: usize = 16;

/// One extension field borrowed from a packet buffer.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExtensionField<'a> {
    /// The 16-bit field type.
    pub field_type: u16,
    /// Everything after the 4-octet header up to the field's length,
    /// including any padding: the wire format does not record the unpadded
    /// size, so protocols that care (e.g. NTS) encode it inside the value.
    pub value: &'a [u8],
}

/// Iterator over the extension fields of a buffer; see [`extension_fields`].
///
/// Yields `Err(PacketError::Malformed)` once for a field that breaks the
/// RFC 7822 framing rules and then stops, since nothing after a bad length
/// can be trusted.
#[derive(Clone, Debug)]
pub struct ExtensionIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates over a region that should consist only of extension fields
/// (e.g. [`crate::Packet::extensions`]). Each field must be at least 16
/// octets, a multiple of 4 and lie within the buffer.
pub fn extension_fields(buf: &[u8]) -> ExtensionIter<'_> {
    ExtensionIter {
        rest: buf,
        failed: false,
    }
}

/// Reads the field at the start of `buf`, returning it and its total length.
pub(crate) fn split_field(buf: &[u8]) -> Result<(ExtensionField<'_>, usize), PacketError> {
    let [t0, t1, l0, l1, ..] = *buf else {
        return Err(PacketError::Malformed);
    };
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    if len < MIN_EXTENSION_LEN || len % 4 != 0 || len > buf.len() {
        return Err(PacketError::Malformed);
    }
    let value = buf
        .get(FIELD_HEADER_LEN..len)
        .ok_or(PacketError::Malformed)?;
    let field = ExtensionField {
        field_type: u16::from_be_bytes([t0, t1]),
        value,
    };
    Ok((field, len))
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = Result<ExtensionField<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        match split_field(self.rest) {
            Ok((field, len)) => {
                self.rest = self.rest.get(len..).unwrap_or_default();
                Some(Ok(field))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Writes one extension field at the start of `out` and returns the number
/// of octets written.
///
/// The field is zero-padded to a multiple of 4 and to at least `min_len`
/// octets, and never below the RFC 7822 minimum of 16 (so that every field
/// written here is accepted by [`extension_fields`]). Returns
/// `BufferTooSmall` if `out` cannot hold it and `Malformed` if the padded
/// length does not fit the 16-bit length field.
pub fn write_extension_field(
    out: &mut [u8],
    field_type: u16,
    value: &[u8],
    min_len: usize,
) -> Result<usize, PacketError> {
    let len = FIELD_HEADER_LEN
        .checked_add(value.len())
        .map(|n| n.max(min_len).max(MIN_EXTENSION_LEN))
        .and_then(|n| n.checked_next_multiple_of(4))
        .ok_or(PacketError::Malformed)?;
    let wire_len = u16::try_from(len).map_err(|_| PacketError::Malformed)?;
    let field = out.get_mut(..len).ok_or(PacketError::BufferTooSmall)?;
    let (header, body) = field.split_at_mut(FIELD_HEADER_LEN);
    header[..2].copy_from_slice(&field_type.to_be_bytes());
    header[2..].copy_from_slice(&wire_len.to_be_bytes());
    let (payload, padding) = body.split_at_mut(value.len());
    payload.copy_from_slice(value);
    padding.fill(0);
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn writes_padded_field() {
        let mut buf = [0xAAu8; 32];
        let n = write_extension_field(&mut buf, 0x0104, &[1, 2, 3, 4, 5], 0).unwrap();
        assert_eq!(n, 16);
        assert_eq!(
            &buf[..16],
            &[1, 4, 0, 16, 1, 2, 3, 4, 5, 0, 0, 0, 0, 0, 0, 0]
        );
        // Bytes beyond the field are untouched.
        assert_eq!(buf[16], 0xAA);
        // min_len pads further and is rounded up to a multiple of 4.
        let n = write_extension_field(&mut buf, 1, &[9; 13], 27).unwrap();
        assert_eq!(n, 28);
        assert_eq!(&buf[2..4], &[0, 28]);
    }

    #[test]
    fn write_rejects_small_buffer_and_huge_fields() {
        let mut small = [0u8; 15];
        assert_eq!(
            write_extension_field(&mut small, 1, &[], 0),
            Err(PacketError::BufferTooSmall)
        );
        let mut buf = [0u8; 16];
        assert_eq!(
            write_extension_field(&mut buf, 1, &[], usize::MAX),
            Err(PacketError::Malformed)
        );
        assert_eq!(
            write_extension_field(&mut buf, 1, &[], 70_000),
            Err(PacketError::Malformed)
        );
    }

    #[test]
    fn iterates_fields_and_stops_on_bad_length() {
        let mut buf = [0u8; 64];
        let a = write_extension_field(&mut buf, 0x0104, b"unique-id-value!", 0).unwrap();
        let b = write_extension_field(&mut buf[a..], 0x0204, b"cookie", 0).unwrap();
        let fields: Vec<_> = extension_fields(&buf[..a + b]).collect();
        assert_eq!(fields.len(), 2);
        let first = fields[0].unwrap();
        assert_eq!(first.field_type, 0x0104);
        assert_eq!(first.value, b"unique-id-value!");
        let second = fields[1].unwrap();
        assert_eq!(second.field_type, 0x0204);
        assert_eq!(&second.value[..6], b"cookie");
        assert_eq!(second.value.len(), 12);

        // Length 18 is not a multiple of 4.
        let bad = [0, 1, 0, 18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut it = extension_fields(&bad);
        assert_eq!(it.next(), Some(Err(PacketError::Malformed)));
        assert_eq!(it.next(), None);
        // Length 12 is below the minimum; length 20 overruns a 16-byte buffer.
        assert!(extension_fields(&[0, 1, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]).any(|f| f.is_err()));
        assert!(
            extension_fields(&[0, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
                .any(|f| f.is_err())
        );
        // A truncated header.
        assert!(extension_fields(&[0, 1]).any(|f| f.is_err()));
        assert_eq!(extension_fields(&[]).count(), 0);
    }

    proptest! {
        #[test]
        fn write_then_read_round_trips(
            field_type: u16,
            value in proptest::collection::vec(any::<u8>(), 0..200),
            min_len in 0usize..300,
        ) {
            let mut buf = [0u8; 512];
            let n = write_extension_field(&mut buf, field_type, &value, min_len).unwrap();
            prop_assert!(n & 3 == 0 && n >= min_len && n >= 16 && n >= value.len() + 4);
            let fields: Vec<_> = extension_fields(&buf[..n]).collect();
            prop_assert_eq!(fields.len(), 1);
            let field = fields[0].unwrap();
            prop_assert_eq!(field.field_type, field_type);
            prop_assert_eq!(&field.value[..value.len()], &value[..]);
            prop_assert!(field.value[value.len()..].iter().all(|&b| b == 0));
        }

        #[test]
        fn iterator_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut consumed = 0;
            for field in extension_fields(&buf) {
                match field {
                    Ok(f) => consumed += f.value.len() + 4,
                    Err(_) => break,
                }
            }
            prop_assert!(consumed <= buf.len());
        }
    }
}
