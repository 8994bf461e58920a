//! `meridian_auth::KeyStore::verify` on arbitrary packets (MD5, SHA-1,
//! AES-CMAC, untrusted and unknown keys), and sign → verify round trips: the
//! first octet picks a key to sign the rest with; a signed packet must verify
//! with exactly that key, and with any octet flipped must not.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use meridian_auth::{server_action, KeyStore, Verification};

fn store() -> &'static KeyStore {
    static S: OnceLock<KeyStore> = OnceLock::new();
    S.get_or_init(meridian_fuzz::key_store)
}

fuzz_target!(|data: &[u8]| {
    let keys = store();
    let v = keys.verify(data);
    let _ = server_action(v, false);
    let _ = server_action(v, true);
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let key = u32::from(ctl % 5);
    let mut buf = [0u8; 2048];
    let len = rest.len().min(buf.len() - 64);
    buf[..len].copy_from_slice(&rest[..len]);
    let Ok(signed) = keys.sign_in_place(&mut buf, len, key) else {
        assert!(!keys.is_trusted(key));
        return;
    };
    assert_eq!(Some(signed - len), keys.mac_len(key));
    let v = keys.verify(&buf[..signed]);
    // A packet whose body does not frame as header + extension fields is
    // Malformed whatever its MAC; one that frames must verify.
    if meridian_proto::parse_packet(&buf[..signed]).is_ok_and(|p| p.mac.is_some())
        && meridian_proto::parse_packet(&buf[..len]).is_ok_and(|p| p.mac.is_none())
    {
        assert_eq!(v, Verification::Valid { key_id: key }, "own signature");
        let flip = usize::from(ctl) % signed;
        buf[flip] ^= 0x01;
        assert_ne!(
            keys.verify(&buf[..signed]),
            Verification::Valid { key_id: key },
            "flipped octet {flip} still verifies"
        );
    }
});
