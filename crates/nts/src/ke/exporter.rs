//! Deriving the C2S and S2C keys from the TLS session (RFC 8915 §4.2,
//! §5.1): the RFC 5705 exporter with label
//! "EXPORTER-network-time-security" and context = protocol id (0x0000,
//! NTPv4) || AEAD id || 0x00 for C2S / 0x01 for S2C.

use crate::aead::{AeadKey, KEY_LEN};
use crate::cookie::SessionKeys;
use crate::error::KeError;
use crate::ke::record::PROTOCOL_NTPV4;

/// The exporter label.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-network-time-security";

/// The exporter context for one direction (`s2c` false: C2S).
pub fn exporter_context(aead: u16, s2c: bool) -> [u8; 5] {
    let p = PROTOCOL_NTPV4.to_be_bytes();
    let a = aead.to_be_bytes();
    [p[0], p[1], a[0], a[1], u8::from(s2c)]
}

/// Exports both keys through `export(output, label, context)`, which is
/// `export_keying_material` of a client or server rustls connection.
pub fn export_keys(
    aead: u16,
    mut export: impl FnMut(&mut [u8], &[u8], &[u8]) -> Result<(), rustls::Error>,
) -> Result<SessionKeys, KeError> {
    let mut c2s = [0u8; KEY_LEN];
    let mut s2c = [0u8; KEY_LEN];
    export(&mut c2s, EXPORTER_LABEL, &exporter_context(aead, false))?;
    export(&mut s2c, EXPORTER_LABEL, &exporter_context(aead, true))?;
    Ok(SessionKeys {
        c2s: AeadKey::from_bytes(c2s),
        s2c: AeadKey::from_bytes(s2c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_layout() {
        assert_eq!(exporter_context(15, false), [0, 0, 0, 15, 0]);
        assert_eq!(exporter_context(15, true), [0, 0, 0, 15, 1]);
    }
}
