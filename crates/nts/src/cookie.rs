//! Server cookies (RFC 8915 §6, the recommended format) and the ring of
//! master keys that seals them.
//!
//! A cookie is `key id (4) || nonce (16) || SIV tag (16) || E(C2S || S2C)`
//! where `E` is AES-SIV-CMAC-256 under the master key named by the id, with
//! the key id and AEAD id as associated data, so a cookie cannot be
//! re-labelled to another key or algorithm. The server thereby stays
//! stateless: everything it needs to answer a client is in the cookie.
//!
//! Master keys rotate on a schedule (default daily); the previous few are
//! kept so cookies issued before a rotation still work. Sealing and opening
//! are allocation-free, for the NTP hot path.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::aead::{
    random_bytes, AeadKey, SivKey, AEAD_AES_SIV_CMAC_256, KEY_LEN, NONCE_LEN, TAG_LEN,
};

/// Length of every cookie we issue.
pub const COOKIE_LEN: usize = 4 + NONCE_LEN + TAG_LEN + 2 * KEY_LEN;

/// Default rotation interval: one day.
pub const DEFAULT_ROTATION_SECS: u64 = 86_400;

/// Default number of previous keys kept for validation: cookies stay valid
/// for at least this many rotation intervals.
pub const DEFAULT_RETAIN: usize = 3;

/// Upper bound on keys held (and loaded from a file).
pub const MAX_KEYS: usize = 64;

/// One cookie master key.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MasterKey {
    /// Identifier carried in cookies.
    pub id: u32,
    /// When it became current (Unix seconds).
    pub created: u64,
    /// The AES-SIV-CMAC-256 key.
    pub key: AeadKey,
}

/// The client's session keys recovered from a cookie.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SessionKeys {
    /// Client-to-server key (verifies requests).
    pub c2s: AeadKey,
    /// Server-to-client key (seals responses).
    pub s2c: AeadKey,
}

/// Current and previous master keys, newest first.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct KeyRing {
    keys: Vec<MasterKey>,
    /// `keys`, expanded once: every NTS request opens and seals a cookie.
    ciphers: Ciphers,
    /// Seconds between rotations; 0 disables rotation (keys managed
    /// externally, e.g. a fleet reading one shared file).
    pub rotation_secs: u64,
    /// Previous keys kept after a rotation.
    pub retain: usize,
}

/// Current Unix time in seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The master keys expanded, in the ring's order. Derived from the keys, so
/// it takes no part in comparisons and shows nothing when printed.
#[derive(Clone, Default)]
struct Ciphers(Vec<SivKey>);

impl Ciphers {
    fn of(keys: &[MasterKey]) -> Self {
        Ciphers(keys.iter().map(|k| SivKey::new(&k.key)).collect())
    }
}

impl PartialEq for Ciphers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Ciphers {}

impl std::fmt::Debug for Ciphers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} expanded", self.0.len())
    }
}

fn cookie_ad(id: u32) -> [u8; 6] {
    let mut ad = [0u8; 6];
    ad[..4].copy_from_slice(&id.to_be_bytes());
    ad[4..].copy_from_slice(&AEAD_AES_SIV_CMAC_256.to_be_bytes());
    ad
}

impl KeyRing {
    /// A ring with one fresh random key created at `now` (Unix seconds).
    pub fn generate(now: u64) -> Self {
        let mut id = [0u8; 4];
        random_bytes(&mut id);
        let keys = vec![MasterKey {
            id: u32::from_be_bytes(id),
            created: now,
            key: AeadKey::random(),
        }];
        KeyRing {
            ciphers: Ciphers::of(&keys),
            keys,
            rotation_secs: DEFAULT_ROTATION_SECS,
            retain: DEFAULT_RETAIN,
        }
    }

    /// A ring from existing keys (any order; the newest `created` becomes
    /// current). Returns `None` if `keys` is empty, holds duplicate ids, or
    /// more than [`MAX_KEYS`].
    pub fn from_keys(mut keys: Vec<MasterKey>) -> Option<Self> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return None;
        }
        keys.sort_by_key(|k| std::cmp::Reverse(k.created));
        let mut ids: Vec<u32> = keys.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != keys.len() {
            return None;
        }
        Some(KeyRing {
            ciphers: Ciphers::of(&keys),
            keys,
            rotation_secs: DEFAULT_ROTATION_SECS,
            retain: DEFAULT_RETAIN,
        })
    }

    /// All keys, newest (current) first.
    pub fn keys(&self) -> &[MasterKey] {
        &self.keys
    }

    /// The key new cookies are sealed with.
    pub fn current(&self) -> &MasterKey {
        // `keys` is never empty: every constructor guarantees one key and
        // rotation only adds before trimming.
        &self.keys[0]
    }

    /// Makes a fresh key current at `now` and drops keys beyond `retain`
    /// previous ones. The new id follows the current one, so ids never
    /// repeat within a ring's lifetime.
    pub fn rotate(&mut self, now: u64) {
        let id = self.current().id.wrapping_add(1);
        self.keys.insert(
            0,
            MasterKey {
                id,
                created: now,
                key: AeadKey::random(),
            },
        );
        self.keys.truncate((self.retain + 1).min(MAX_KEYS));
        self.ciphers = Ciphers::of(&self.keys);
    }

    /// Rotates if the current key is `rotation_secs` old (never when
    /// rotation is disabled). Returns whether it rotated.
    pub fn rotate_if_due(&mut self, now: u64) -> bool {
        let due = self.rotation_secs != 0
            && now.saturating_sub(self.current().created) >= self.rotation_secs;
        if due {
            self.rotate(now);
        }
        due
    }

    /// Seals `keys` into a new cookie with the current master key.
    pub fn seal_cookie(&self, keys: &SessionKeys, out: &mut [u8; COOKIE_LEN]) {
        let master = self.current();
        let (id, rest) = out.split_at_mut(4);
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        let (tag, body) = rest.split_at_mut(TAG_LEN);
        id.copy_from_slice(&master.id.to_be_bytes());
        random_bytes(nonce);
        body[..KEY_LEN].copy_from_slice(keys.c2s.as_bytes());
        body[KEY_LEN..].copy_from_slice(keys.s2c.as_bytes());
        let t = self.ciphers.0[0].seal_in_place(&cookie_ad(master.id), nonce, body);
        tag.copy_from_slice(&t);
    }

    /// Opens a cookie sealed by any key in the ring; `None` if its length
    /// is wrong, its key is unknown (expired) or it fails authentication.
    pub fn open_cookie(&self, cookie: &[u8]) -> Option<SessionKeys> {
        let cookie: &[u8; COOKIE_LEN] = cookie.try_into().ok()?;
        let (id, rest) = cookie.split_first_chunk::<4>()?;
        let (nonce, rest) = rest.split_first_chunk::<NONCE_LEN>()?;
        let (tag, ct) = rest.split_first_chunk::<TAG_LEN>()?;
        let id = u32::from_be_bytes(*id);
        let at = self.keys.iter().position(|k| k.id == id)?;
        let mut body = [0u8; 2 * KEY_LEN];
        body.copy_from_slice(ct);
        if !self.ciphers.0[at].open_in_place(&cookie_ad(id), nonce, tag, &mut body) {
            return None;
        }
        let (c2s, s2c) = body.split_first_chunk::<KEY_LEN>()?;
        let s2c: &[u8; KEY_LEN] = s2c.try_into().ok()?;
        let keys = SessionKeys {
            c2s: AeadKey::from_bytes(*c2s),
            s2c: AeadKey::from_bytes(*s2c),
        };
        body.fill(0);
        Some(keys)
    }
}

/// A [`KeyRing`] shared between the NTS-KE server (issuing cookies) and
/// the NTP server (opening them). Cloning shares the same ring.
#[derive(Clone, Debug)]
pub struct SharedKeyRing(Arc<RwLock<KeyRing>>);

impl SharedKeyRing {
    /// Shares `ring`.
    pub fn new(ring: KeyRing) -> Self {
        SharedKeyRing(Arc::new(RwLock::new(ring)))
    }

    /// Read access for sealing/opening. A poisoned lock (a panic while
    /// rotating) still holds a consistent ring, so it is used anyway.
    pub fn read(&self) -> RwLockReadGuard<'_, KeyRing> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the ring (e.g. after reloading the shared key file).
    pub fn replace(&self, ring: KeyRing) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = ring;
    }

    /// [`KeyRing::rotate_if_due`] under the write lock; returns a copy of
    /// the new ring if it rotated (so the caller can save it).
    pub fn rotate_if_due(&self, now: u64) -> Option<KeyRing> {
        let mut ring = self.0.write().unwrap_or_else(|e| e.into_inner());
        ring.rotate_if_due(now).then(|| ring.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionKeys {
        SessionKeys {
            c2s: AeadKey::random(),
            s2c: AeadKey::random(),
        }
    }

    #[test]
    fn cookie_round_trip_and_layout() {
        let ring = KeyRing::generate(1000);
        let keys = session();
        let mut c = [0u8; COOKIE_LEN];
        ring.seal_cookie(&keys, &mut c);
        assert_eq!(COOKIE_LEN, 100);
        assert_eq!(&c[..4], &ring.current().id.to_be_bytes());
        // The keys do not appear in clear.
        assert!(!c.windows(32).any(|w| w == keys.c2s.as_bytes()));
        assert_eq!(ring.open_cookie(&c), Some(keys.clone()));
        // Two cookies for the same keys differ (fresh nonce): unlinkable.
        let mut c2 = [0u8; COOKIE_LEN];
        ring.seal_cookie(&keys, &mut c2);
        assert_ne!(c, c2);
    }

    #[test]
    fn tampered_truncated_or_foreign_cookies_fail() {
        let ring = KeyRing::generate(1000);
        let mut c = [0u8; COOKIE_LEN];
        ring.seal_cookie(&session(), &mut c);
        for i in 0..COOKIE_LEN {
            let mut t = c;
            t[i] ^= 0x01;
            assert_eq!(ring.open_cookie(&t), None, "flipped octet {i}");
        }
        assert_eq!(ring.open_cookie(&c[..99]), None);
        assert_eq!(ring.open_cookie(&[]), None);
        let mut long = [0u8; 101];
        long[..100].copy_from_slice(&c);
        assert_eq!(ring.open_cookie(&long), None);
        // Another server's ring, even with the same key id.
        let mut other = KeyRing::generate(1000);
        other.keys[0].id = ring.current().id;
        assert_eq!(other.open_cookie(&c), None);
    }

    #[test]
    fn rotation_keeps_previous_keys_then_expires_them() {
        let mut ring = KeyRing::generate(0);
        ring.retain = 2;
        let keys = session();
        let mut old = [0u8; COOKIE_LEN];
        ring.seal_cookie(&keys, &mut old);
        assert!(!ring.rotate_if_due(DEFAULT_ROTATION_SECS - 1));
        assert!(ring.rotate_if_due(DEFAULT_ROTATION_SECS));
        assert_eq!(
            ring.open_cookie(&old),
            Some(keys.clone()),
            "previous key still valid"
        );
        ring.rotate(2 * DEFAULT_ROTATION_SECS);
        assert_eq!(ring.keys().len(), 3);
        assert!(ring.open_cookie(&old).is_some());
        ring.rotate(3 * DEFAULT_ROTATION_SECS);
        assert_eq!(ring.keys().len(), 3);
        assert_eq!(
            ring.open_cookie(&old),
            None,
            "expired after `retain` rotations"
        );
        // Rotation disabled.
        ring.rotation_secs = 0;
        assert!(!ring.rotate_if_due(u64::MAX));
    }

    #[test]
    fn from_keys_orders_and_validates() {
        let k = |id, created| MasterKey {
            id,
            created,
            key: AeadKey::random(),
        };
        let ring = KeyRing::from_keys(vec![k(1, 10), k(3, 30), k(2, 20)]).unwrap();
        assert_eq!(ring.current().id, 3);
        assert!(KeyRing::from_keys(vec![]).is_none());
        assert!(KeyRing::from_keys(vec![k(1, 10), k(1, 20)]).is_none());
    }

    #[test]
    fn shared_ring_rotates_for_all_holders() {
        let shared = SharedKeyRing::new(KeyRing::generate(0));
        let other = shared.clone();
        let before = shared.read().current().id;
        assert!(shared.rotate_if_due(10).is_none());
        let rotated = shared.rotate_if_due(DEFAULT_ROTATION_SECS).unwrap();
        assert_eq!(other.read().current().id, before.wrapping_add(1));
        assert_eq!(rotated.current().id, before.wrapping_add(1));
    }
}
