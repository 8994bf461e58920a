//! Signing and verifying whole packets through the public API: trailer
//! layout, independently computed packet MACs, every `Verification`
//! outcome, the server's reply finishing, and property tests that
//! `verify` never panics and that no single-bit flip survives.

use meridian_auth::{
    parse_keys, server_action, KeyStore, KeyType, ServerAuthAction, SignError, Verification,
    MAX_MAC_LEN,
};
use meridian_proto::{parse_packet, write_extension_field, HEADER_LEN};
use proptest::prelude::*;

const KEYS: &str = "\
1 MD5 abcdefgh
2 SHA1 0123456789abcdef0123456789abcdef01234567
3 AES128CMAC 0123456789abcdef
4 AES256CMAC 603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
5 MD5 untrusted
";

/// Keys 1–4 trusted, key 5 defined but not trusted.
fn store() -> KeyStore {
    let keys = parse_keys(KEYS, "test.keys").into_result().unwrap();
    KeyStore::new(keys, [1, 2, 3, 4, 99])
}

/// A 48-octet client request: 0x23 then 1, 2, …, 47.
fn header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    for (i, b) in h.iter_mut().enumerate() {
        *b = i as u8;
    }
    h[0] = 0x23;
    h
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Header plus the trailer for `key_id`.
fn signed(key_id: u32) -> Vec<u8> {
    let mut buf = [0u8; HEADER_LEN + MAX_MAC_LEN];
    buf[..HEADER_LEN].copy_from_slice(&header());
    let len = store().sign_in_place(&mut buf, HEADER_LEN, key_id).unwrap();
    buf[..len].to_vec()
}

#[test]
fn trailers_match_independently_computed_macs() {
    // python3: hashlib.md5(b'abcdefgh' + pkt), hashlib.sha1(key + pkt), and
    // cryptography's CMAC(AES(b'0123456789abcdef')) over the same 48 octets.
    for (key_id, digest) in [
        (1, "2558f199f9b9aaa695037fb9362e6979"),
        (2, "c223da365a67638e628b00ce32ad5342f17a1143"),
        (3, "e828cb717c8f8f94aba6097315be166f"),
    ] {
        let pkt = signed(key_id);
        assert_eq!(&pkt[..HEADER_LEN], &header());
        assert_eq!(&pkt[HEADER_LEN..HEADER_LEN + 4], &key_id.to_be_bytes());
        assert_eq!(&pkt[HEADER_LEN + 4..], &unhex(digest)[..], "key {key_id}");
        assert_eq!(store().verify(&pkt), Verification::Valid { key_id });
    }
}

/// Requests captured from NTPsec 1.2.2's `ntpdig -a N -k KEYS` (keys 1–3 of
/// `KEYS`): its MACs verify here, so the two agree on the wire format.
#[test]
fn ntpsec_ntpdig_requests_verify() {
    let zeros = "00".repeat(39);
    for (key_id, tail) in [
        (
            1,
            "eeb1a220a1d750000000000135549e3e6ec520d2ae53bd90d4d87f5e",
        ),
        (
            2,
            "eeb1a221b06aa800000000023af823467bfb040fcaa9962cd25f6e1725d4f97e",
        ),
        (
            3,
            "eeb1a222c0e1d00000000003cba90793f1ef0a3aa8f9311b65096223",
        ),
    ] {
        let mut pkt = unhex(&format!("e3{zeros}{tail}"));
        assert_eq!(
            store().verify(&pkt),
            Verification::Valid { key_id },
            "key {key_id}"
        );
        pkt[47] ^= 1;
        assert_eq!(store().verify(&pkt), Verification::Invalid { key_id });
    }
}

/// chrony 4.3's replies to those requests, with the same keys written in
/// its keyfile syntax (`2 SHA1 HEX:…`, `3 AES128 HEX:…`).
#[test]
fn chrony_replies_verify() {
    for (key_id, hex) in [
        (1, "240800e600000000000000007f7f0101eeb1a232685d2016eeb1a220a1d75000eeb1a233f08d23adeeb1a233f095d4d800000001d29adebb483856227372b36b636c4947"),
        (2, "240800e600000000000000007f7f0101eeb1a232685d2016eeb1a221b06aa800eeb1a233f0a25545eeb1a233f0a7c9b20000000230014b8ab62f324a062d379c483e4da2b26edb3f"),
        (3, "240800e600000000000000007f7f0101eeb1a232685d2016eeb1a222c0e1d000eeb1a233f0b00de9eeb1a233f0b3e538000000033b2f40a31aa91a1e48a8278a09859f8a"),
    ] {
        let mut pkt = unhex(hex);
        assert_eq!(store().verify(&pkt), Verification::Valid { key_id }, "key {key_id}");
        pkt[1] ^= 0x40;
        assert_eq!(store().verify(&pkt), Verification::Invalid { key_id });
    }
}

#[test]
fn trailer_lengths_follow_the_key_type() {
    let s = store();
    assert_eq!(s.mac_len(1), Some(20));
    assert_eq!(s.mac_len(2), Some(24));
    assert_eq!(s.mac_len(3), Some(20));
    assert_eq!(s.mac_len(4), Some(20));
    assert_eq!(s.mac_len(5), None, "untrusted keys do not sign");
    assert_eq!(signed(4).len(), HEADER_LEN + 20);
    assert_eq!(
        store().verify(&signed(4)),
        Verification::Valid { key_id: 4 }
    );
}

#[test]
fn macs_cover_extension_fields() {
    let mut buf = [0u8; 256];
    buf[..HEADER_LEN].copy_from_slice(&header());
    let ext = write_extension_field(&mut buf[HEADER_LEN..], 0x0104, &[7u8; 20], 28).unwrap();
    let body = HEADER_LEN + ext;
    let s = store();
    let len = s.sign_in_place(&mut buf, body, 2).unwrap();
    let pkt = &buf[..len];
    assert_eq!(parse_packet(pkt).unwrap().extensions.len(), ext);
    assert_eq!(s.verify(pkt), Verification::Valid { key_id: 2 });
    let mut tampered = pkt.to_vec();
    tampered[HEADER_LEN + 10] ^= 0x01;
    assert_eq!(s.verify(&tampered), Verification::Invalid { key_id: 2 });
}

#[test]
fn every_outcome() {
    let s = store();
    let h = header();
    assert_eq!(s.verify(&h), Verification::Unauthenticated);
    assert_eq!(s.verify(&h[..47]), Verification::Malformed);
    // 12 octets after the header: neither a MAC nor an extension field.
    assert_eq!(
        s.verify(&[&h[..], &[0u8; 12]].concat()),
        Verification::Malformed
    );
    assert_eq!(
        s.verify(&[&h[..], &[0, 0, 0, 0]].concat()),
        Verification::CryptoNak { key_id: 0 }
    );
    // A MAC for key 5 that is correct, but key 5 is not trusted.
    let mut for5 = signed(1);
    let untrusted = KeyStore::new(parse_keys(KEYS, "k").keys, [5]);
    let n = untrusted.sign_in_place(&mut for5, HEADER_LEN, 5).unwrap();
    assert_eq!(
        untrusted.verify(&for5[..n]),
        Verification::Valid { key_id: 5 }
    );
    assert_eq!(s.verify(&for5[..n]), Verification::Untrusted { key_id: 5 });
    for id in [0u32, 6, 99, 65536, u32::MAX] {
        let mut pkt = signed(1);
        pkt[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&id.to_be_bytes());
        assert_eq!(
            s.verify(&pkt),
            Verification::UnknownKey { key_id: id },
            "id {id}"
        );
    }
}

#[test]
fn a_digest_of_the_wrong_length_for_the_key_type_is_invalid() {
    let s = store();
    // The correct SHA-1 digest of key 2, cut to 16 octets, in an MD5-sized trailer.
    let sha1 = signed(2);
    let short = &sha1[..HEADER_LEN + 20];
    assert_eq!(s.verify(short), Verification::Invalid { key_id: 2 });
    // An MD5 key's digest padded to SHA-1 length.
    let mut long = signed(1);
    long.extend_from_slice(&[0; 4]);
    assert_eq!(s.verify(&long), Verification::Invalid { key_id: 1 });
    // The same for CMAC.
    let mut long = signed(3);
    long.extend_from_slice(&[0; 4]);
    assert_eq!(s.verify(&long), Verification::Invalid { key_id: 3 });
}

#[test]
fn signing_errors() {
    let s = store();
    let h = header();
    let mut out = [0u8; 24];
    assert_eq!(s.sign(&h, 6, &mut out), Err(SignError::UnknownKey(6)));
    assert_eq!(
        s.sign(&h, 70000, &mut out),
        Err(SignError::UnknownKey(70000))
    );
    assert_eq!(s.sign(&h, 5, &mut out), Err(SignError::Untrusted(5)));
    assert_eq!(
        s.sign(&h, 2, &mut out[..23]),
        Err(SignError::BufferTooSmall)
    );
    assert_eq!(s.sign(&h, 1, &mut out[..20]), Ok(20));
    let mut buf = [0u8; HEADER_LEN + 10];
    assert_eq!(
        s.sign_in_place(&mut buf, HEADER_LEN, 1),
        Err(SignError::BufferTooSmall)
    );
    assert_eq!(
        s.sign_in_place(&mut buf, HEADER_LEN + 11, 1),
        Err(SignError::BufferTooSmall)
    );
    assert!(!KeyStore::default().is_trusted(1));
}

#[test]
fn the_server_answers_a_signed_request_with_the_same_key() {
    let s = store();
    for key_id in [1, 2, 3, 4] {
        let request = signed(key_id);
        let action = server_action(s.verify(&request), true);
        assert_eq!(
            action,
            ServerAuthAction::Reply {
                key_id: Some(key_id)
            }
        );
        let mut reply = [0u8; HEADER_LEN + MAX_MAC_LEN];
        reply[..HEADER_LEN].copy_from_slice(&header());
        reply[0] = 0x24;
        let len = s
            .finish_reply(action, &mut reply, HEADER_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(len, HEADER_LEN + s.mac_len(key_id).unwrap());
        assert_eq!(s.verify(&reply[..len]), Verification::Valid { key_id });
    }
}

#[test]
fn the_server_naks_bad_requests_and_notrust_drops_unauthenticated_ones() {
    let s = store();
    let mut bad = signed(3);
    bad[5] ^= 0x80;
    let action = server_action(s.verify(&bad), false);
    assert_eq!(action, ServerAuthAction::CryptoNak);
    let mut reply = [0xFFu8; HEADER_LEN + MAX_MAC_LEN];
    let len = s
        .finish_reply(action, &mut reply, HEADER_LEN)
        .unwrap()
        .unwrap();
    assert_eq!(len, HEADER_LEN + 4);
    assert_eq!(&reply[HEADER_LEN..len], &[0, 0, 0, 0]);
    assert_eq!(
        s.verify(&reply[..len]),
        Verification::CryptoNak { key_id: 0 }
    );

    let plain = server_action(s.verify(&header()), false);
    assert_eq!(
        s.finish_reply(plain, &mut reply, HEADER_LEN),
        Ok(Some(HEADER_LEN))
    );
    let notrust = server_action(s.verify(&header()), true);
    assert_eq!(s.finish_reply(notrust, &mut reply, HEADER_LEN), Ok(None));
    assert_eq!(
        s.finish_reply(
            ServerAuthAction::CryptoNak,
            &mut reply[..HEADER_LEN + 3],
            HEADER_LEN
        ),
        Err(SignError::BufferTooSmall)
    );
}

#[test]
fn key_types_in_the_store_are_the_files() {
    let keys = parse_keys(KEYS, "k").keys;
    assert_eq!(keys.get(4).unwrap().key_type(), KeyType::Aes256Cmac);
}

proptest! {
    #[test]
    fn verify_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = store().verify(&bytes);
    }

    #[test]
    fn verify_never_panics_on_packets_that_end_like_a_mac(
        head in proptest::collection::vec(any::<u8>(), 48..49),
        key_id in prop_oneof![Just(1u32), Just(2), Just(3), Just(5), any::<u32>()],
        digest in proptest::collection::vec(any::<u8>(), 0..21),
    ) {
        let mut pkt = head;
        pkt.extend_from_slice(&key_id.to_be_bytes());
        pkt.extend_from_slice(&digest);
        prop_assert!(!store().verify(&pkt).is_valid());
    }

    /// Any single-bit flip in the header or digest makes the MAC wrong
    /// (`Invalid`); one in the key id names another key, which is unknown,
    /// untrusted, or has a different secret: never `Valid`.
    #[test]
    fn any_single_bit_flip_breaks_a_signed_packet(
        key_id in 1u32..=4,
        head in proptest::collection::vec(any::<u8>(), 48..49),
        bit in 0usize..(HEADER_LEN + MAX_MAC_LEN) * 8,
    ) {
        let s = store();
        let mut buf = [0u8; HEADER_LEN + MAX_MAC_LEN];
        buf[..HEADER_LEN].copy_from_slice(&head);
        let len = s.sign_in_place(&mut buf, HEADER_LEN, key_id).unwrap();
        prop_assert_eq!(s.verify(&buf[..len]), Verification::Valid { key_id });
        let bit = bit % (len * 8);
        buf[bit / 8] ^= 1 << (bit % 8);
        let v = s.verify(&buf[..len]);
        let in_key_id = (HEADER_LEN..HEADER_LEN + 4).contains(&(bit / 8));
        if in_key_id {
            prop_assert!(!v.is_valid(), "{:?}", v);
        } else {
            prop_assert_eq!(v, Verification::Invalid { key_id });
        }
    }
}
