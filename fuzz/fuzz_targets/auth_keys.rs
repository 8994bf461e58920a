//! `meridian_auth::parse_keys`: the classic ntp.keys file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meridian_auth::{parse_keys, KeyStore};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_keys(text, "fuzz.keys");
    for d in &parsed.diagnostics {
        let _ = d.to_string();
    }
    let ids: Vec<u16> = parsed.keys.ids().collect();
    let store = KeyStore::new(parsed.keys, ids.iter().copied());
    let mut buf = [0u8; 48 + 24];
    buf[0] = 0x23;
    for id in ids {
        let len = store
            .sign_in_place(&mut buf, 48, u32::from(id))
            .expect("a parsed, trusted key signs");
        assert_eq!(
            store.verify(&buf[..len]),
            meridian_auth::Verification::Valid {
                key_id: u32::from(id)
            }
        );
    }
});
