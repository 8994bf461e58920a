//! System-wide tuning: `tos`, `tinker`, `enable`/`disable`, `discard`, `mru`.
//!
//! Each struct's `Default` is the classic ntpd 4.2.8 default, so the
//! effective configuration can print every value explicitly.

use std::fmt;

use crate::args::{Args, Ctx};

/// `tos`: selection and clustering thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tos {
    /// Minimum survivors for a sane selection (default 1).
    pub minsane: u8,
    /// Minimum survivors of clustering (default 3).
    pub minclock: u8,
    /// Maximum associations kept, pool included (default 10).
    pub maxclock: u8,
    /// Selection threshold: maximum root distance in seconds (default 1.5).
    pub maxdist: f64,
    /// Minimum distance used by selection, seconds (default 0.001).
    pub mindist: f64,
    /// Orphan stratum; 16 = orphan mode off (default).
    pub orphan: u8,
    /// Seconds before orphan mode may start (default 300).
    pub orphanwait: u32,
    /// Highest stratum accepted from upstream (default 16 = no limit).
    pub ceiling: u8,
    /// Lowest stratum accepted from upstream (default 1).
    pub floor: u8,
    /// Cohort switch, 0 or 1 (default 0).
    pub cohort: u8,
    /// Manycast/broadcast beacon interval in seconds (default 3600).
    pub beacon: u32,
}

impl Default for Tos {
    fn default() -> Self {
        Self {
            minsane: 1,
            minclock: 3,
            maxclock: 10,
            maxdist: 1.5,
            mindist: 0.001,
            orphan: 16,
            orphanwait: 300,
            ceiling: 16,
            floor: 1,
            cohort: 0,
            beacon: 3600,
        }
    }
}

impl fmt::Display for Tos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tos minsane {} minclock {} maxclock {} maxdist {} mindist {} orphan {} orphanwait {} ceiling {} floor {} cohort {} beacon {}",
            self.minsane, self.minclock, self.maxclock, self.maxdist, self.mindist,
            self.orphan, self.orphanwait, self.ceiling, self.floor, self.cohort, self.beacon
        )
    }
}

/// Parse a `tos` line onto `tos` (options are cumulative across lines).
pub(crate) fn parse_tos(ctx: &mut Ctx<'_>, tos: &mut Tos, words: &[String]) {
    let mut args = Args::new(words);
    if args.is_empty() {
        ctx.error("tos", "missing option");
    }
    while let Some(opt) = args.next_word() {
        match opt {
            "minsane" => args.int(ctx, opt, 0u8, 15).map(|v| tos.minsane = v),
            "minclock" => args.int(ctx, opt, 1u8, 255).map(|v| tos.minclock = v),
            "maxclock" => args.int(ctx, opt, 1u8, 255).map(|v| tos.maxclock = v),
            "maxdist" => args.float(ctx, opt, 0.001, 16.0).map(|v| tos.maxdist = v),
            "mindist" => args.float(ctx, opt, 0.0, 16.0).map(|v| tos.mindist = v),
            "orphan" => args.int(ctx, opt, 1u8, 16).map(|v| tos.orphan = v),
            "orphanwait" => args.int(ctx, opt, 0u32, 86_400).map(|v| tos.orphanwait = v),
            "ceiling" => args.int(ctx, opt, 1u8, 16).map(|v| tos.ceiling = v),
            "floor" => args.int(ctx, opt, 0u8, 16).map(|v| tos.floor = v),
            "cohort" => args.int(ctx, opt, 0u8, 1).map(|v| tos.cohort = v),
            "beacon" => args.int(ctx, opt, 1u32, 86_400 * 7).map(|v| tos.beacon = v),
            _ => {
                ctx.error(opt, "unknown tos option");
                None
            }
        };
    }
    // Cross-field checks run on the accumulated values, so they also catch
    // contradictions spread over several `tos` lines.
    if tos.minclock > tos.maxclock {
        ctx.error(
            "minclock",
            &format!(
                "minclock {} exceeds maxclock {}",
                tos.minclock, tos.maxclock
            ),
        );
    }
    if tos.floor > tos.ceiling {
        ctx.error(
            "floor",
            &format!("floor {} exceeds ceiling {}", tos.floor, tos.ceiling),
        );
    }
    if tos.mindist > tos.maxdist {
        ctx.error(
            "mindist",
            &format!("mindist {} exceeds maxdist {}", tos.mindist, tos.maxdist),
        );
    }
}

/// `tinker`: clock-discipline constants.
///
/// `stepout` defaults to 900 s, the ntpd 4.2.8 value (NTPsec uses 300 s);
/// Meridian is a drop-in for classic ntpd, so it follows 4.2.8.
#[derive(Debug, Clone, PartialEq)]
pub struct Tinker {
    /// Step threshold in seconds, 0 = never step (default 0.128).
    pub step: f64,
    /// Stepout (spike) interval in seconds (default 900).
    pub stepout: f64,
    /// Panic threshold in seconds, 0 = no panic check (default 1000).
    pub panic: f64,
    /// Dispersion increase rate PHI in ppm (default 15).
    pub dispersion: f64,
    /// Allan intercept in log2 s (default 11, 2048 s).
    pub allan: u8,
    /// Huff-n'-puff filter span in seconds; off unless set.
    pub huffpuff: Option<f64>,
    /// Initial frequency offset in ppm, overriding the drift file.
    pub freq: Option<f64>,
    /// Step threshold for backward steps; defaults to `step`.
    pub stepback: Option<f64>,
    /// Step threshold for forward steps; defaults to `step`.
    pub stepfwd: Option<f64>,
}

impl Default for Tinker {
    fn default() -> Self {
        Self {
            step: 0.128,
            stepout: 900.0,
            panic: 1000.0,
            dispersion: 15.0,
            allan: 11,
            huffpuff: None,
            freq: None,
            stepback: None,
            stepfwd: None,
        }
    }
}

impl fmt::Display for Tinker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tinker step {} stepout {} panic {} dispersion {} allan {}",
            self.step, self.stepout, self.panic, self.dispersion, self.allan
        )?;
        let optional = [
            ("huffpuff", self.huffpuff),
            ("freq", self.freq),
            ("stepback", self.stepback),
            ("stepfwd", self.stepfwd),
        ];
        for (name, value) in optional {
            if let Some(v) = value {
                write!(f, " {name} {v}")?;
            }
        }
        Ok(())
    }
}

/// Parse a `tinker` line onto `tinker`.
pub(crate) fn parse_tinker(ctx: &mut Ctx<'_>, tinker: &mut Tinker, words: &[String]) {
    let mut args = Args::new(words);
    if args.is_empty() {
        ctx.error("tinker", "missing option");
    }
    const DAY: f64 = 86_400.0;
    while let Some(opt) = args.next_word() {
        match opt {
            "step" => args.float(ctx, opt, 0.0, DAY).map(|v| tinker.step = v),
            "stepout" => args.float(ctx, opt, 0.0, DAY).map(|v| tinker.stepout = v),
            "panic" => args.float(ctx, opt, 0.0, 1e9).map(|v| tinker.panic = v),
            "dispersion" => args
                .float(ctx, opt, 0.0, 1e3)
                .map(|v| tinker.dispersion = v),
            "allan" => args.int(ctx, opt, 0u8, 30).map(|v| tinker.allan = v),
            "huffpuff" => args
                .float(ctx, opt, 0.0, DAY)
                .map(|v| tinker.huffpuff = Some(v)),
            // 500 ppm is the kernel's and ntpd's frequency tolerance.
            "freq" => args
                .float(ctx, opt, -500.0, 500.0)
                .map(|v| tinker.freq = Some(v)),
            "stepback" => args
                .float(ctx, opt, 0.0, DAY)
                .map(|v| tinker.stepback = Some(v)),
            "stepfwd" => args
                .float(ctx, opt, 0.0, DAY)
                .map(|v| tinker.stepfwd = Some(v)),
            _ => {
                ctx.error(opt, "unknown tinker option");
                None
            }
        };
    }
}

/// `enable` / `disable` switches, defaults as ntpd 4.2.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemFlags {
    /// `auth`: require authentication to mobilise peers (default on).
    pub auth: bool,
    /// `bclient`: listen for broadcasts (default off).
    pub bclient: bool,
    /// `calibrate`: refclock calibration (default off).
    pub calibrate: bool,
    /// `kernel`: use the kernel discipline (default on).
    pub kernel: bool,
    /// `mode7`: answer ntpdc queries (default off; Meridian never does).
    pub mode7: bool,
    /// `monitor`: keep the MRU list (default on).
    pub monitor: bool,
    /// `ntp`: discipline the clock (default on).
    pub ntp: bool,
    /// `stats`: write statistics files (default on).
    pub stats: bool,
    /// `peer_clear_digest_early` (default on).
    pub peer_clear_digest_early: bool,
    /// `unpeer_crypto_early` (default on).
    pub unpeer_crypto_early: bool,
    /// `unpeer_crypto_nak_early` (default on).
    pub unpeer_crypto_nak_early: bool,
    /// `unpeer_digest_early` (default on).
    pub unpeer_digest_early: bool,
}

impl Default for SystemFlags {
    fn default() -> Self {
        Self {
            auth: true,
            bclient: false,
            calibrate: false,
            kernel: true,
            mode7: false,
            monitor: true,
            ntp: true,
            stats: true,
            peer_clear_digest_early: true,
            unpeer_crypto_early: true,
            unpeer_crypto_nak_early: true,
            unpeer_digest_early: true,
        }
    }
}

impl SystemFlags {
    /// Every switch by name, in ntp.conf spelling.
    pub fn named(&self) -> [(&'static str, bool); 12] {
        [
            ("auth", self.auth),
            ("bclient", self.bclient),
            ("calibrate", self.calibrate),
            ("kernel", self.kernel),
            ("mode7", self.mode7),
            ("monitor", self.monitor),
            ("ntp", self.ntp),
            ("stats", self.stats),
            ("peer_clear_digest_early", self.peer_clear_digest_early),
            ("unpeer_crypto_early", self.unpeer_crypto_early),
            ("unpeer_crypto_nak_early", self.unpeer_crypto_nak_early),
            ("unpeer_digest_early", self.unpeer_digest_early),
        ]
    }

    fn slot(&mut self, name: &str) -> Option<&mut bool> {
        Some(match name {
            "auth" => &mut self.auth,
            "bclient" => &mut self.bclient,
            "calibrate" => &mut self.calibrate,
            "kernel" => &mut self.kernel,
            "mode7" => &mut self.mode7,
            "monitor" => &mut self.monitor,
            "ntp" => &mut self.ntp,
            "stats" => &mut self.stats,
            "peer_clear_digest_early" => &mut self.peer_clear_digest_early,
            "unpeer_crypto_early" => &mut self.unpeer_crypto_early,
            "unpeer_crypto_nak_early" => &mut self.unpeer_crypto_nak_early,
            "unpeer_digest_early" => &mut self.unpeer_digest_early,
            _ => return None,
        })
    }
}

/// Parse `enable` (`on = true`) or `disable` words onto `flags`.
pub(crate) fn parse_switches(
    ctx: &mut Ctx<'_>,
    flags: &mut SystemFlags,
    on: bool,
    words: &[String],
) {
    if words.is_empty() {
        ctx.error(if on { "enable" } else { "disable" }, "missing flag");
    }
    for w in words {
        match flags.slot(w) {
            Some(slot) => *slot = on,
            None => ctx.error(w, "unknown system flag"),
        }
    }
}

/// `discard`: rate-limit parameters used with `restrict limited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discard {
    /// Minimum average packet spacing, log2 s (default 3 = 8 s).
    pub average: u8,
    /// Minimum spacing between two packets (guard time) in seconds (default 2).
    /// ntpd's code compares it with the interval in seconds directly, as its
    /// documentation says, despite a "log2" comment on the variable.
    pub minimum: u8,
    /// MRU preemption age limit in seconds (default 3000).
    pub monitor: u32,
}

impl Default for Discard {
    fn default() -> Self {
        Self {
            average: 3,
            minimum: 2,
            monitor: 3000,
        }
    }
}

impl fmt::Display for Discard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "discard average {} minimum {} monitor {}",
            self.average, self.minimum, self.monitor
        )
    }
}

/// Parse a `discard` line onto `discard`.
pub(crate) fn parse_discard(ctx: &mut Ctx<'_>, discard: &mut Discard, words: &[String]) {
    let mut args = Args::new(words);
    if args.is_empty() {
        ctx.error("discard", "missing option");
    }
    while let Some(opt) = args.next_word() {
        match opt {
            // ntpd rejects average outside NTP_MINPOLL..NTP_MAXPOLL.
            "average" => args.int(ctx, opt, 0u8, 17).map(|v| discard.average = v),
            "minimum" => args.int(ctx, opt, 0u8, 17).map(|v| discard.minimum = v),
            "monitor" => args
                .int(ctx, opt, 0u32, u32::MAX)
                .map(|v| discard.monitor = v),
            _ => {
                ctx.error(opt, "unknown discard option");
                None
            }
        };
    }
}

/// An MRU size given either as an entry count or in KiB.
///
/// ntpd accepts both spellings (`maxdepth`/`maxmem`, ...) and the last one
/// used controls, so the unit is kept rather than converted with a guessed
/// entry size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MruSize {
    /// A number of entries.
    Entries(u32),
    /// A memory budget in KiB.
    KiB(u32),
}

/// `mru`: the monitor (client) list limits, defaults as ntpd 4.2.8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mru {
    /// Hard limit: `maxdepth` / `maxmem` (default 1024 KiB).
    pub max: MruSize,
    /// Entries kept before recycling is considered (default 600).
    pub mindepth: u32,
    /// Entries older than this many seconds are recycled (default 64).
    pub maxage: u32,
    /// Preallocation: `initalloc` / `initmem` (default 4 KiB).
    pub init: MruSize,
    /// Growth step: `incalloc` / `incmem` (default 4 KiB).
    pub inc: MruSize,
}

impl Default for Mru {
    fn default() -> Self {
        Self {
            max: MruSize::KiB(1024),
            mindepth: 600,
            maxage: 64,
            init: MruSize::KiB(4),
            inc: MruSize::KiB(4),
        }
    }
}

impl fmt::Display for Mru {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |s: MruSize, entries: &'static str, mem: &'static str| match s {
            MruSize::Entries(n) => (entries, n),
            MruSize::KiB(n) => (mem, n),
        };
        let (mk, mv) = size(self.max, "maxdepth", "maxmem");
        let (ik, iv) = size(self.init, "initalloc", "initmem");
        let (nk, nv) = size(self.inc, "incalloc", "incmem");
        write!(
            f,
            "mru {mk} {mv} mindepth {} maxage {} {ik} {iv} {nk} {nv}",
            self.mindepth, self.maxage
        )
    }
}

/// Constructor of an [`MruSize`] in one unit.
type MruUnit = fn(u32) -> MruSize;

/// Parse an `mru` line onto `mru`.
pub(crate) fn parse_mru(ctx: &mut Ctx<'_>, mru: &mut Mru, words: &[String]) {
    let mut args = Args::new(words);
    if args.is_empty() {
        ctx.error("mru", "missing option");
    }
    while let Some(opt) = args.next_word() {
        let slot_and_unit: Option<(&mut MruSize, MruUnit)> = match opt {
            "maxdepth" => Some((&mut mru.max, MruSize::Entries)),
            "maxmem" => Some((&mut mru.max, MruSize::KiB)),
            "initalloc" => Some((&mut mru.init, MruSize::Entries)),
            "initmem" => Some((&mut mru.init, MruSize::KiB)),
            "incalloc" => Some((&mut mru.inc, MruSize::Entries)),
            "incmem" => Some((&mut mru.inc, MruSize::KiB)),
            _ => None,
        };
        if let Some((slot, unit)) = slot_and_unit {
            if let Some(v) = args.int(ctx, opt, 0u32, u32::MAX) {
                *slot = unit(v);
            }
            continue;
        }
        match opt {
            "mindepth" => args.int(ctx, opt, 0u32, u32::MAX).map(|v| mru.mindepth = v),
            "maxage" => args.int(ctx, opt, 0u32, u32::MAX).map(|v| mru.maxage = v),
            _ => {
                ctx.error(opt, "unknown mru option");
                None
            }
        };
    }
}
