//! NTP time representations: the 64-bit timestamp ([`NtpTimestamp`]), the
//! signed 64-bit difference between two timestamps ([`NtpDuration`]) and the
//! 32-bit short format used for root delay and dispersion ([`NtpShort`]).
//!
//! Everything here is pure arithmetic: nothing reads a clock.

use core::fmt;
use core::ops::{Add, Neg, Sub};

/// Seconds from 1900-01-01 (the NTP prime epoch) to 1970-01-01 (the Unix epoch).
pub const UNIX_OFFSET: i64 = 2_208_988_800;

/// 2^32 as a float, the scale of every 32.32 fixed-point value.
const FRAC_SCALE: f64 = 4_294_967_296.0;

/// 2^16 as a float, the scale of the 16.16 short format.
const SHORT_SCALE: f64 = 65_536.0;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A 64-bit NTP timestamp: 32 bits of seconds since 1900-01-01 00:00 UTC and
/// 32 bits of binary fraction (RFC 5905 §6).
///
/// The era number is not carried on the wire, so a timestamp only names an
/// instant modulo 2^32 seconds (~136 years); [`NtpTimestamp::to_unix`]
/// resolves the era against a pivot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    /// The all-zero timestamp, which NTP uses to mean "unknown / not set".
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    /// Builds a timestamp from its 64-bit wire representation.
    pub const fn from_bits(bits: u64) -> Self {
        NtpTimestamp(bits)
    }

    /// Returns the 64-bit wire representation.
    pub const fn to_bits(self) -> u64 {
        self.0
    }

    /// Whether this is the "unset" timestamp 0.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The 32-bit seconds field (seconds within the era).
    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The 32-bit binary fraction field.
    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// Converts Unix time to an NTP timestamp. Any era is accepted: the
    /// seconds wrap modulo 2^32, exactly as on the wire. `nanos` of a
    /// billion or more carry into the seconds rather than being rejected.
    pub fn from_unix(secs: i64, nanos: u32) -> Self {
        let carry = i64::from(nanos) / NANOS_PER_SEC as i64;
        let nanos = u64::from(nanos) % NANOS_PER_SEC;
        let ntp_secs = secs.wrapping_add(carry).wrapping_add(UNIX_OFFSET);
        // Rounded to nearest; for nanos < 10^9 the result is < 2^32, so the
        // fraction can never spill into the seconds field.
        let frac = ((nanos << 32) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
        // Casting to u64 then shifting keeps the low 32 bits: the wire era.
        NtpTimestamp(((ntp_secs as u64) << 32) | frac)
    }

    /// Converts to Unix `(seconds, nanoseconds)`, choosing the era whose
    /// instant lies nearest to `pivot_unix_secs` (within ±2^31 s, ~68 years).
    /// This is what makes timestamps after the 2036 rollover come out right.
    pub fn to_unix(self, pivot_unix_secs: i64) -> (i64, u32) {
        let pivot_ntp = pivot_unix_secs.wrapping_add(UNIX_OFFSET);
        // Signed distance from the pivot within one era; wrapping i32
        // arithmetic picks the nearest representative automatically.
        let delta = self.seconds().wrapping_sub(pivot_ntp as u32) as i32;
        let secs = pivot_unix_secs.wrapping_add(i64::from(delta));
        // Rounded to nearest; the top two fractions (within 0.5 ns of the
        // next second) round up to a whole second, which is carried.
        let nanos = ((u64::from(self.fraction()) * NANOS_PER_SEC) + (1 << 31)) >> 32;
        if nanos >= NANOS_PER_SEC {
            (secs.wrapping_add(1), 0)
        } else {
            (secs, nanos as u32)
        }
    }

    /// Adds (or with a negative argument subtracts) seconds, wrapping
    /// modulo the era like the wire format. Offsets beyond ±68 years
    /// saturate; NaN adds nothing.
    pub fn add_seconds(self, s: f64) -> Self {
        self.add_duration(NtpDuration::from_seconds_f64(s))
    }

    /// Adds a signed duration, wrapping modulo the era.
    pub fn add_duration(self, d: NtpDuration) -> Self {
        NtpTimestamp(self.0.wrapping_add(d.0 as u64))
    }

    /// Signed difference `self - earlier`. Computed modulo 2^64 and read as
    /// two's complement, so it is correct across an era boundary as long as
    /// the true difference is below 2^31 s (~68 years) in magnitude.
    pub fn diff(self, earlier: NtpTimestamp) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(earlier.0) as i64)
    }

    /// Replaces the bits below the clock resolution with random bits.
    ///
    /// With precision `p` the clock only resolves 2^p seconds, so the low
    /// `32 + p` bits of the fraction carry no information. Classic ntpd
    /// fills them with noise so that the transmit timestamp is harder to
    /// predict and the rounding error is unbiased. Only the fraction is ever
    /// touched: precision ≥ 0 replaces the whole fraction, precision ≤ -32
    /// replaces nothing.
    pub fn fraction_randomized(self, random: u32, precision: i8) -> Self {
        let bits = (32 + i32::from(precision)).clamp(0, 32) as u32;
        let mask = (1u64 << bits) - 1;
        NtpTimestamp((self.0 & !mask) | (u64::from(random) & mask))
    }
}

impl fmt::Display for NtpTimestamp {
    /// Hex `seconds.fraction`, the form ntpq prints raw timestamps in.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}.{:08x}", self.seconds(), self.fraction())
    }
}

/// A signed 32.32 fixed-point number of seconds: the difference of two
/// [`NtpTimestamp`]s. Arithmetic saturates instead of overflowing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NtpDuration(i64);

impl NtpDuration {
    /// Zero seconds.
    pub const ZERO: NtpDuration = NtpDuration(0);

    /// Builds a duration from its raw 32.32 two's-complement bits.
    pub const fn from_bits(bits: i64) -> Self {
        NtpDuration(bits)
    }

    /// Returns the raw 32.32 two's-complement bits.
    pub const fn to_bits(self) -> i64 {
        self.0
    }

    /// Converts from seconds, rounding to the nearest 2^-32 s. Values
    /// beyond ±2^31 s saturate; NaN becomes zero (Rust's `as` semantics),
    /// so no input can panic.
    pub fn from_seconds_f64(s: f64) -> Self {
        NtpDuration((s * FRAC_SCALE).round() as i64)
    }

    /// Converts to seconds.
    pub fn to_seconds_f64(self) -> f64 {
        self.0 as f64 / FRAC_SCALE
    }

    /// Absolute value (saturating: the most negative value maps to the maximum).
    pub fn abs(self) -> Self {
        NtpDuration(self.0.saturating_abs())
    }
}

impl Add for NtpDuration {
    type Output = NtpDuration;
    fn add(self, rhs: NtpDuration) -> NtpDuration {
        NtpDuration(self.0.saturating_add(rhs.0))
    }
}

impl Sub for NtpDuration {
    type Output = NtpDuration;
    fn sub(self, rhs: NtpDuration) -> NtpDuration {
        NtpDuration(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for NtpDuration {
    type Output = NtpDuration;
    fn neg(self) -> NtpDuration {
        NtpDuration(self.0.saturating_neg())
    }
}

/// The unsigned 16.16 "short" format used for root delay and root
/// dispersion (RFC 5905 §6).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct NtpShort(u32);

impl NtpShort {
    /// Zero seconds.
    pub const ZERO: NtpShort = NtpShort(0);

    /// Builds a value from its 32-bit wire representation.
    pub const fn from_bits(bits: u32) -> Self {
        NtpShort(bits)
    }

    /// Returns the 32-bit wire representation.
    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// Converts from seconds, rounding to the nearest 2^-16 s. Negative
    /// values and NaN become 0; values of 65536 s or more saturate at the
    /// maximum.
    pub fn from_seconds_f64(s: f64) -> Self {
        NtpShort((s * SHORT_SCALE).round() as u32)
    }

    /// Converts to seconds.
    pub fn to_seconds_f64(self) -> f64 {
        f64::from(self.0) / SHORT_SCALE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Unix time of the NTP era 0 → 1 rollover, 2036-02-07T06:28:16Z.
    const ERA1_START_UNIX: i64 = (1i64 << 32) - UNIX_OFFSET;

    #[test]
    fn rfc5905_figure4_epochs() {
        // Rows of RFC 5905 Figure 4 (era offset = seconds field).
        // 1 Jan 1970, era 0, offset 2,208,988,800.
        assert_eq!(
            NtpTimestamp::from_unix(0, 0).to_bits(),
            2_208_988_800u64 << 32
        );
        // 1 Jan 1972, era 0, offset 2,272,060,800.
        assert_eq!(
            NtpTimestamp::from_unix(63_072_000, 0).seconds(),
            2_272_060_800
        );
        // 31 Dec 1999, era 0, offset 3,155,587,200.
        assert_eq!(
            NtpTimestamp::from_unix(946_598_400, 0).seconds(),
            3_155_587_200
        );
        // 8 Feb 2036, era 1, offset 63,104.
        let feb8_2036 = 2_086_041_600;
        assert_eq!(NtpTimestamp::from_unix(feb8_2036, 0).seconds(), 63_104);
        // 31 Dec 1899, era -1, offset 4,294,880,896.
        let dec31_1899 = -UNIX_OFFSET - 86_400;
        assert_eq!(
            NtpTimestamp::from_unix(dec31_1899, 0).seconds(),
            4_294_880_896
        );
        // 1 Jan 1900, era 0, offset 0.
        assert!(NtpTimestamp::from_unix(-UNIX_OFFSET, 0).is_zero());
    }

    #[test]
    fn era_resolution_across_2036() {
        let t = NtpTimestamp::from_bits(5u64 << 32);
        // Pivot on 2036-02-08: seconds field 5 is 5 s into era 1.
        assert_eq!(t.to_unix(2_086_041_600), (ERA1_START_UNIX + 5, 0));
        // Pivot in 1920: the same bits are 5 s after 1900-01-01 in era 0.
        assert_eq!(t.to_unix(-1_577_923_200), (-UNIX_OFFSET + 5, 0));
        // From 1990 the 2036 reading is nearer (46 years) than 1900 (90).
        assert_eq!(t.to_unix(631_152_000), (ERA1_START_UNIX + 5, 0));
        // Last second of era 0 seen from just after the rollover stays in era 0.
        let late = NtpTimestamp::from_bits(0xFFFF_FFFFu64 << 32);
        assert_eq!(late.to_unix(ERA1_START_UNIX + 10).0, ERA1_START_UNIX - 1);
        // Era -1 resolved with a pivot in 1899.
        let dec31_1899 = -UNIX_OFFSET - 86_400;
        assert_eq!(
            NtpTimestamp::from_unix(dec31_1899, 0).to_unix(dec31_1899),
            (dec31_1899, 0)
        );
    }

    #[test]
    fn fraction_conversion_known_values() {
        // Half a second is exactly 0x8000_0000.
        assert_eq!(
            NtpTimestamp::from_unix(0, 500_000_000).fraction(),
            0x8000_0000
        );
        // 1 ns = 4.294967296 units, rounded to 4.
        assert_eq!(NtpTimestamp::from_unix(0, 1).fraction(), 4);
        // The largest fraction is within 0.5 ns of the next second, so it
        // carries instead of producing an out-of-range nanosecond count.
        let max = NtpTimestamp::from_bits((2_208_988_800u64 << 32) | 0xFFFF_FFFF);
        assert_eq!(max.to_unix(0), (1, 0));
        let below = NtpTimestamp::from_bits((2_208_988_800u64 << 32) | 0xFFFF_FFFC);
        assert_eq!(below.to_unix(0), (0, 999_999_999));
        // Overlong nanos carry into the seconds.
        assert_eq!(
            NtpTimestamp::from_unix(0, 1_500_000_000),
            NtpTimestamp::from_unix(1, 500_000_000)
        );
    }

    #[test]
    fn diff_across_era_wrap() {
        let before = NtpTimestamp::from_unix(ERA1_START_UNIX - 1, 0);
        let after = NtpTimestamp::from_unix(ERA1_START_UNIX + 2, 250_000_000);
        assert_eq!(after.diff(before).to_seconds_f64(), 3.25);
        assert_eq!(before.diff(after).to_seconds_f64(), -3.25);
        assert_eq!(before.add_seconds(3.25), after);
    }

    #[test]
    fn fraction_randomized_touches_only_low_bits() {
        let t = NtpTimestamp::from_bits(0x1234_5678_9ABC_DEF0);
        // Precision -20: 12 bits below 2^-20 s are replaced.
        assert_eq!(
            t.fraction_randomized(0xFFFF_FFFF, -20).to_bits(),
            0x1234_5678_9ABC_DFFF
        );
        assert_eq!(
            t.fraction_randomized(0, -20).to_bits(),
            0x1234_5678_9ABC_D000
        );
        // Precision 0 or coarser replaces the whole fraction but never the seconds.
        assert_eq!(
            t.fraction_randomized(0xAAAA_AAAA, 3).to_bits(),
            0x1234_5678_AAAA_AAAA
        );
        // Precision finer than the format: nothing to replace.
        assert_eq!(t.fraction_randomized(0xFFFF_FFFF, -32), t);
        assert_eq!(t.fraction_randomized(0xFFFF_FFFF, i8::MIN), t);
    }

    #[test]
    fn duration_saturates_and_rounds() {
        assert_eq!(NtpDuration::from_seconds_f64(1.5).to_bits(), 3i64 << 31);
        assert_eq!(
            NtpDuration::from_seconds_f64(-0.25).to_bits(),
            -(1i64 << 30)
        );
        assert_eq!(NtpDuration::from_seconds_f64(1e30).to_bits(), i64::MAX);
        assert_eq!(NtpDuration::from_seconds_f64(-1e30).to_bits(), i64::MIN);
        assert_eq!(NtpDuration::from_seconds_f64(f64::NAN), NtpDuration::ZERO);
        let min = NtpDuration::from_bits(i64::MIN);
        assert_eq!((-min).to_bits(), i64::MAX);
        assert_eq!(min.abs().to_bits(), i64::MAX);
        assert_eq!((min - NtpDuration::from_bits(1)).to_bits(), i64::MIN);
        let a = NtpDuration::from_seconds_f64(2.0);
        let b = NtpDuration::from_seconds_f64(0.5);
        assert_eq!((a + b).to_seconds_f64(), 2.5);
        assert_eq!((b - a).to_seconds_f64(), -1.5);
        assert_eq!((b - a).abs().to_seconds_f64(), 1.5);
    }

    #[test]
    fn short_format_saturates() {
        assert_eq!(NtpShort::from_seconds_f64(1.5).to_bits(), 0x0001_8000);
        assert_eq!(NtpShort::from_seconds_f64(-3.0), NtpShort::ZERO);
        assert_eq!(NtpShort::from_seconds_f64(f64::NAN), NtpShort::ZERO);
        assert_eq!(NtpShort::from_seconds_f64(1e9).to_bits(), u32::MAX);
        assert_eq!(NtpShort::from_bits(0x0000_4000).to_seconds_f64(), 0.25);
    }

    #[test]
    fn display_is_ntpq_hex() {
        let t = NtpTimestamp::from_bits(0xE0B1_C2D3_0012_3456);
        assert_eq!(t.to_string(), "e0b1c2d3.00123456");
    }

    /// Unix seconds covering 1970-01-01 .. 2200-01-01.
    const YEAR_2200_UNIX: i64 = 7_258_118_400;

    proptest! {
        #[test]
        fn unix_round_trip(secs in 0i64..YEAR_2200_UNIX, nanos in 0u32..1_000_000_000) {
            let t = NtpTimestamp::from_unix(secs, nanos);
            // Rounding error each way is below half a unit, so it is exact.
            prop_assert_eq!(t.to_unix(secs), (secs, nanos));
        }

        #[test]
        fn diff_inverts_add_seconds(
            secs in 0i64..YEAR_2200_UNIX,
            nanos in 0u32..1_000_000_000,
            x in -2.0e9f64..2.0e9,
        ) {
            let a = NtpTimestamp::from_unix(secs, nanos);
            let d = a.add_seconds(x).diff(a).to_seconds_f64();
            // One rounding step of 2^-33 s plus f64 representation error.
            prop_assert!((d - x).abs() <= 1e-9, "x={x} d={d}");
        }

        #[test]
        fn diff_is_antisymmetric(a: u64, b: u64) {
            let (a, b) = (NtpTimestamp::from_bits(a), NtpTimestamp::from_bits(b));
            let ab = a.diff(b).to_bits();
            let ba = b.diff(a).to_bits();
            prop_assert_eq!(ab.wrapping_add(ba), 0);
        }

        #[test]
        fn randomized_stays_within_resolution(bits: u64, random: u32, precision: i8) {
            let t = NtpTimestamp::from_bits(bits);
            let r = t.fraction_randomized(random, precision);
            let resolution = if precision >= 0 { 1.0 } else { 2f64.powi(precision.into()) };
            prop_assert!(r.diff(t).to_seconds_f64().abs() < resolution);
            prop_assert_eq!(r.seconds(), t.seconds());
        }
    }
}
