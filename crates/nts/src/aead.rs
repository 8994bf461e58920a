//! AEAD_AES_SIV_CMAC_256 (RFC 5297), the one algorithm every NTS
//! implementation must support (RFC 8915 §5.1), wrapped for the two ways NTS
//! uses it: sealing/opening in place inside a caller buffer (packets and
//! cookies), with the nonce as the last S2V component as RFC 5297 §3
//! specifies for nonce-based use.
//!
//! SIV is built here from the AES block cipher (RustCrypto's `aes`, with
//! AES-NI where the CPU has it): CMAC (RFC 4493), S2V and CTR are a few
//! lines each, and doing them here lets a key's expanded form be built once
//! and kept ([`SivKey`]): a cookie master key seals and opens a cookie for
//! every NTS request, and redoing its key schedules per packet, plus copying
//! the large cipher states the generic crates pass around by value, was most
//! of the cost of serving NTS. A session key ([`AeadKey`]) is expanded per
//! use, and only the half it needs (the request key never encrypts anything,
//! its plaintext being empty). The `aes-siv` crate is the reference the
//! tests check every path of this against.
//!
//! Nothing here allocates; keys are wiped on drop.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128Enc;
use dbl::Dbl;
use subtle::ConstantTimeEq;

/// IANA AEAD identifier of AEAD_AES_SIV_CMAC_256.
pub const AEAD_AES_SIV_CMAC_256: u16 = 15;

/// Key length of AEAD_AES_SIV_CMAC_256 in octets (two AES-128 keys).
pub const KEY_LEN: usize = 32;

/// Length of the SIV tag that precedes every ciphertext.
pub const TAG_LEN: usize = 16;

/// Nonce length we generate (RFC 8915 §5.6 asks for at least 16 octets).
pub const NONCE_LEN: usize = 16;

type Block = aes::Block;

/// CTR blocks encrypted together (the AES-NI backend pipelines 8).
const CTR_PAR: usize = 8;

/// The MAC half of an expanded key: the AES key schedule, CMAC's two
/// subkeys, and S2V's first value (CMAC of the zero block), which depends on
/// the key alone.
#[derive(Clone)]
struct MacHalf {
    aes: Aes128Enc,
    k1: Block,
    k2: Block,
    d0: Block,
}

impl MacHalf {
    fn new(key: &[u8]) -> Self {
        let aes = Aes128Enc::new(key.into());
        let mut l = Block::default();
        aes.encrypt_block(&mut l);
        let k1 = l.dbl();
        let k2 = k1.dbl();
        let mut half = MacHalf {
            aes,
            k1,
            k2,
            d0: Block::default(),
        };
        let mut zero = half.cmac();
        zero.update(&[0; 16]);
        half.d0 = zero.finish();
        half
    }

    fn cmac(&self) -> Cmac<'_> {
        Cmac {
            key: self,
            x: Block::default(),
            buf: Block::default(),
            len: 0,
        }
    }
}

/// One CMAC computation (RFC 4493) in progress. The last block is held back
/// until [`Cmac::finish`], which must know whether it is complete.
struct Cmac<'k> {
    key: &'k MacHalf,
    x: Block,
    buf: Block,
    len: usize,
}

impl Cmac<'_> {
    fn update(&mut self, mut data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.len > 0 {
            // Top up the pending block; process it only once more data follows.
            let take = (TAG_LEN - self.len).min(data.len());
            self.buf[self.len..self.len + take].copy_from_slice(&data[..take]);
            self.len += take;
            data = &data[take..];
            if data.is_empty() {
                return;
            }
            let pending = self.buf;
            self.absorb(&pending);
        }
        // Whole blocks straight from `data`, keeping the last one back.
        while data.len() > TAG_LEN {
            let (block, rest) = data.split_at(TAG_LEN);
            self.absorb(block.into());
            data = rest;
        }
        self.buf[..data.len()].copy_from_slice(data);
        self.len = data.len();
    }

    fn absorb(&mut self, block: &Block) {
        xor_block(&mut self.x, block);
        self.key.aes.encrypt_block(&mut self.x);
    }

    fn finish(mut self) -> Block {
        if self.len == TAG_LEN {
            xor_block(&mut self.buf, &self.key.k1);
        } else {
            self.buf[self.len] = 0x80;
            self.buf[self.len + 1..].fill(0);
            xor_block(&mut self.buf, &self.key.k2);
        }
        let last = self.buf;
        self.absorb(&last);
        self.x
    }
}

/// A 256-bit AES-SIV-CMAC key: a C2S or S2C key, or a cookie master key.
///
/// Just the key octets, small enough to pass around by value: each seal or
/// open expands it afresh, which suits a session key, used once or twice. A
/// key used for many packets (a cookie master key) is better expanded once,
/// into a [`SivKey`].
#[derive(Clone)]
pub struct AeadKey([u8; KEY_LEN]);

impl PartialEq for AeadKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for AeadKey {}

impl AeadKey {
    /// Wraps raw key octets.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        AeadKey(bytes)
    }

    /// A fresh random key from the thread-local CSPRNG.
    pub fn random() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut k);
        AeadKey(k)
    }

    /// The raw key octets (for cookies and the key file).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    // RFC 5297: the first half of the key is the MAC key, the second the CTR key.
    fn mac_half(&self) -> MacHalf {
        MacHalf::new(&self.0[..KEY_LEN / 2])
    }

    fn ctr_half(&self) -> Aes128Enc {
        Aes128Enc::new((&self.0[KEY_LEN / 2..]).into())
    }

    /// Encrypts `buf` in place and returns the SIV tag, which goes on the
    /// wire before the ciphertext. `ad` and `nonce` are authenticated, not
    /// encrypted.
    pub fn seal_in_place(&self, ad: &[u8], nonce: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = s2v(&self.mac_half(), ad, nonce, buf);
        if !buf.is_empty() {
            // Only expanded when there is something to encrypt.
            xor_keystream(&self.ctr_half(), &tag, buf);
        }
        tag.into()
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds
    /// the ciphertext again and `false` is returned.
    pub fn open_in_place(
        &self,
        ad: &[u8],
        nonce: &[u8],
        tag: &[u8; TAG_LEN],
        buf: &mut [u8],
    ) -> bool {
        let ctr = (!buf.is_empty()).then(|| self.ctr_half());
        open(&self.mac_half(), ctr.as_ref(), ad, nonce, tag, buf)
    }
}

/// An [`AeadKey`] expanded once for many uses: both AES key schedules and
/// the CMAC subkeys (about 1.5 KiB).
#[derive(Clone)]
pub struct SivKey {
    mac: MacHalf,
    ctr: Aes128Enc,
}

impl SivKey {
    /// Expands `key`.
    pub fn new(key: &AeadKey) -> Self {
        SivKey {
            mac: key.mac_half(),
            ctr: key.ctr_half(),
        }
    }

    /// [`AeadKey::seal_in_place`] with the expanded key.
    pub fn seal_in_place(&self, ad: &[u8], nonce: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = s2v(&self.mac, ad, nonce, buf);
        xor_keystream(&self.ctr, &tag, buf);
        tag.into()
    }

    /// [`AeadKey::open_in_place`] with the expanded key.
    pub fn open_in_place(
        &self,
        ad: &[u8],
        nonce: &[u8],
        tag: &[u8; TAG_LEN],
        buf: &mut [u8],
    ) -> bool {
        open(&self.mac, Some(&self.ctr), ad, nonce, tag, buf)
    }
}

impl std::fmt::Debug for SivKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SivKey(..)")
    }
}

/// S2V (RFC 5297 §2.4) over `ad`, `nonce` and the plaintext `message`.
fn s2v(key: &MacHalf, ad: &[u8], nonce: &[u8], message: &[u8]) -> Block {
    let mut d = key.d0;
    for header in [ad, nonce] {
        let mut mac = key.cmac();
        mac.update(header);
        d = d.dbl();
        xor_block(&mut d, &mac.finish());
    }
    let mut mac = key.cmac();
    if message.len() >= TAG_LEN {
        // T = message xorend D
        let (head, end) = message.split_at(message.len() - TAG_LEN);
        mac.update(head);
        xor(&mut d, end);
    } else {
        // T = dbl(D) xor pad(message)
        d = d.dbl();
        xor(&mut d, message);
        d[message.len()] ^= 0x80;
    }
    mac.update(&d);
    mac.finish()
}

/// CTR mode with the SIV (its two marked bits cleared, RFC 5297 §2.5) as
/// the initial 128-bit big-endian counter.
fn xor_keystream(aes: &Aes128Enc, siv: &Block, buf: &mut [u8]) {
    let mut iv = *siv;
    iv[8] &= 0x7f;
    iv[12] &= 0x7f;
    let mut counter = u128::from_be_bytes(iv.into());
    let mut stream = [Block::default(); CTR_PAR];
    for chunk in buf.chunks_mut(CTR_PAR * TAG_LEN) {
        let blocks = chunk.len().div_ceil(TAG_LEN);
        for block in &mut stream[..blocks] {
            *block = counter.to_be_bytes().into();
            counter = counter.wrapping_add(1);
        }
        aes.encrypt_blocks(&mut stream[..blocks]);
        for (bytes, block) in chunk.chunks_mut(TAG_LEN).zip(&stream) {
            for (b, k) in bytes.iter_mut().zip(block) {
                *b ^= k;
            }
        }
    }
}

/// Decrypt, then check the tag over the plaintext; `ctr` may be `None` only
/// for an empty `buf`.
fn open(
    mac: &MacHalf,
    ctr: Option<&Aes128Enc>,
    ad: &[u8],
    nonce: &[u8],
    tag: &[u8; TAG_LEN],
    buf: &mut [u8],
) -> bool {
    let tag = Block::from(*tag);
    let crypt = |buf: &mut [u8]| {
        if let Some(ctr) = ctr {
            xor_keystream(ctr, &tag, buf);
        }
    };
    crypt(buf);
    let computed = s2v(mac, ad, nonce, buf);
    if bool::from(computed.ct_eq(&tag)) {
        true
    } else {
        // Re-encrypt, so a forged packet never leaves plaintext behind.
        crypt(buf);
        false
    }
}

/// XOR of two whole blocks, as two words rather than sixteen bytes.
fn xor_block(dst: &mut Block, src: &Block) {
    let x = u128::from_ne_bytes((*dst).into()) ^ u128::from_ne_bytes((*src).into());
    *dst = x.to_ne_bytes().into();
}

fn xor(dst: &mut Block, src: &[u8]) {
    for (a, b) in dst.iter_mut().zip(src) {
        *a ^= *b;
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material, even in debug logs.
        f.write_str("AeadKey(..)")
    }
}

impl Drop for AeadKey {
    fn drop(&mut self) {
        // Best effort wipe; without `unsafe` volatile writes this may be
        // optimised away, but costs nothing to try.
        self.0.fill(0);
    }
}

/// Fills `out` with random octets from the thread-local CSPRNG (nonces,
/// unique identifiers).
pub fn random_bytes(out: &mut [u8]) {
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_siv::siv::Aes128Siv;
    use proptest::prelude::*;

    /// RFC 5297 Appendix A.2 (nonce-based AEAD): AD1, AD2, nonce, plaintext.
    /// Our API takes one AD and the nonce, so it is checked through the raw
    /// cipher for the vector and through the wrapper for round trips.
    #[test]
    fn rfc5297_deterministic_vector() {
        // A.1: key, AD, plaintext; no nonce.
        let key: [u8; 32] = hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let ad = hex::<24>("101112131415161718191a1b1c1d1e1f2021222324252627");
        let mut pt = hex::<14>("112233445566778899aabbccddee");
        let tag = Aes128Siv::new((&key).into())
            .encrypt_in_place_detached([&ad[..]], &mut pt)
            .unwrap();
        assert_eq!(
            tag.as_slice(),
            hex::<16>("85632d07c6e8f37f950acd320a2ecc93")
        );
        assert_eq!(pt, hex::<14>("40c02b9690c4dc04daef7f6afe5c"));
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let k = AeadKey::random();
        let mut buf = *b"cookie plaintext";
        let tag = k.seal_in_place(b"header", b"nonce-0123456789", &mut buf);
        assert_ne!(&buf, b"cookie plaintext");
        let mut copy = buf;
        assert!(k.open_in_place(b"header", b"nonce-0123456789", &tag, &mut copy));
        assert_eq!(&copy, b"cookie plaintext");
        // Wrong AD, nonce, tag or key: rejected, buffer left encrypted.
        let mut copy = buf;
        assert!(!k.open_in_place(b"headeR", b"nonce-0123456789", &tag, &mut copy));
        assert_eq!(copy, buf);
        assert!(!k.open_in_place(b"header", b"nonce-0123456780", &tag, &mut buf.clone()));
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert!(!k.open_in_place(b"header", b"nonce-0123456789", &bad_tag, &mut buf.clone()));
        assert!(!AeadKey::random().open_in_place(b"header", b"nonce-0123456789", &tag, &mut buf));
        assert_eq!(format!("{k:?}"), "AeadKey(..)");
    }

    proptest! {
        /// Same tags and ciphertexts as the `aes-siv` crate for any key,
        /// associated data, nonce and plaintext (empty, short, one block,
        /// several and partial blocks: every S2V branch; more than one batch
        /// of CTR blocks), and back again.
        #[test]
        fn matches_the_aes_siv_crate(
            key in any::<[u8; KEY_LEN]>(),
            ad in proptest::collection::vec(any::<u8>(), 0..200),
            nonce in proptest::collection::vec(any::<u8>(), 0..40),
            plain in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut reference = plain.clone();
            let want = Aes128Siv::new((&key).into())
                .encrypt_in_place_detached([&ad[..], &nonce[..]], &mut reference)
                .unwrap();
            let k = AeadKey::from_bytes(key);
            let mut ours = plain.clone();
            let tag = k.seal_in_place(&ad, &nonce, &mut ours);
            prop_assert_eq!(&tag[..], want.as_slice());
            prop_assert_eq!(&ours, &reference);
            // The same through the expanded key, used twice.
            let siv = SivKey::new(&k);
            for _ in 0..2 {
                let mut again = plain.clone();
                prop_assert_eq!(siv.seal_in_place(&ad, &nonce, &mut again), tag);
                prop_assert_eq!(&again, &reference);
                prop_assert!(siv.open_in_place(&ad, &nonce, &tag, &mut again));
                prop_assert_eq!(&again, &plain);
            }
            prop_assert!(k.open_in_place(&ad, &nonce, &tag, &mut ours));
            prop_assert_eq!(&ours, &plain);
            // A wrong tag: rejected by both, the ciphertext left in place.
            let mut bad = tag;
            bad[15] ^= 1;
            let mut sealed = reference.clone();
            prop_assert!(!k.open_in_place(&ad, &nonce, &bad, &mut sealed));
            prop_assert!(!siv.open_in_place(&ad, &nonce, &bad, &mut sealed));
            prop_assert_eq!(&sealed, &reference);
        }
    }

    pub(crate) fn hex<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
