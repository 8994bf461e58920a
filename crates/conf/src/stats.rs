//! Statistics files: `statistics`, `filegen` (and `statsdir` is a plain
//! path in [`crate::Config`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::args::{Args, Ctx};

/// A statistics file set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StatsKind {
    /// `loopstats`: clock discipline.
    Loopstats,
    /// `peerstats`: per-peer samples.
    Peerstats,
    /// `clockstats`: refclock timecodes.
    Clockstats,
    /// `rawstats`: raw packet timestamps.
    Rawstats,
    /// `sysstats`: system counters.
    Sysstats,
    /// `cryptostats`: autokey/NTS events.
    Cryptostats,
    /// `protostats`: protocol events.
    Protostats,
    /// `timingstats`: processing time.
    Timingstats,
}

impl StatsKind {
    /// Every kind, in ntp.conf documentation order.
    pub const ALL: [StatsKind; 8] = [
        StatsKind::Loopstats,
        StatsKind::Peerstats,
        StatsKind::Clockstats,
        StatsKind::Rawstats,
        StatsKind::Sysstats,
        StatsKind::Cryptostats,
        StatsKind::Protostats,
        StatsKind::Timingstats,
    ];

    /// The ntp.conf name (also the default file name).
    pub fn name(self) -> &'static str {
        match self {
            StatsKind::Loopstats => "loopstats",
            StatsKind::Peerstats => "peerstats",
            StatsKind::Clockstats => "clockstats",
            StatsKind::Rawstats => "rawstats",
            StatsKind::Sysstats => "sysstats",
            StatsKind::Cryptostats => "cryptostats",
            StatsKind::Protostats => "protostats",
            StatsKind::Timingstats => "timingstats",
        }
    }

    /// Look a kind up by its ntp.conf name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// `filegen ... type T`: how files are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileGenType {
    /// One file, never rotated.
    None,
    /// One file per daemon process id.
    Pid,
    /// One file per day (default).
    #[default]
    Day,
    /// One file per week.
    Week,
    /// One file per month.
    Month,
    /// One file per year.
    Year,
    /// One file per 24 hours of daemon run time.
    Age,
}

impl FileGenType {
    const NAMES: [(&'static str, FileGenType); 7] = [
        ("none", FileGenType::None),
        ("pid", FileGenType::Pid),
        ("day", FileGenType::Day),
        ("week", FileGenType::Week),
        ("month", FileGenType::Month),
        ("year", FileGenType::Year),
        ("age", FileGenType::Age),
    ];

    /// The ntp.conf spelling.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("day", |(n, _)| n)
    }
}

/// Settings of one `filegen` (enabling lives in `Config::statistics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileGenConfig {
    /// `file F`: base file name; defaults to the statistics name.
    pub file: Option<String>,
    /// `type T` (default day).
    pub gen_type: FileGenType,
    /// `link` (default) / `nolink`: keep a link named after the base file.
    pub link: bool,
}

impl Default for FileGenConfig {
    fn default() -> Self {
        Self {
            file: None,
            gen_type: FileGenType::Day,
            link: true,
        }
    }
}

/// A `filegen` line rendered back, given whether it is enabled.
pub(crate) struct FileGenLine<'a> {
    pub kind: StatsKind,
    pub gen: &'a FileGenConfig,
    pub enabled: bool,
}

impl fmt::Display for FileGenLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "filegen {} file {} type {} {} {}",
            self.kind.name(),
            crate::nts::quote(self.gen.file.as_deref().unwrap_or(self.kind.name())),
            self.gen.gen_type.name(),
            if self.gen.link { "link" } else { "nolink" },
            if self.enabled { "enable" } else { "disable" }
        )
    }
}

/// Parse a `statistics` line: each word enables one kind.
pub(crate) fn parse_statistics(
    ctx: &mut Ctx<'_>,
    enabled: &mut BTreeSet<StatsKind>,
    words: &[String],
) {
    if words.is_empty() {
        ctx.error("statistics", "missing statistics name");
    }
    for w in words {
        match StatsKind::from_name(w) {
            Some(k) => {
                enabled.insert(k);
            }
            None => ctx.error(w, "unknown statistics name"),
        }
    }
}

/// Parse a `filegen` line.
pub(crate) fn parse_filegen(
    ctx: &mut Ctx<'_>,
    gens: &mut BTreeMap<StatsKind, FileGenConfig>,
    enabled: &mut BTreeSet<StatsKind>,
    words: &[String],
) {
    let mut args = Args::new(words);
    let Some(name) = args.next_word() else {
        ctx.error("filegen", "missing statistics name");
        return;
    };
    let Some(kind) = StatsKind::from_name(name) else {
        ctx.error(name, "unknown statistics name");
        return;
    };
    let mut gen = gens.get(&kind).cloned().unwrap_or_default();
    let mut enable = None;
    let mut ok = true;
    while let Some(opt) = args.next_word() {
        match opt {
            "file" => match args.value(ctx, opt) {
                Some(v) => gen.file = Some(v.to_string()),
                None => ok = false,
            },
            "type" => match args.value(ctx, opt) {
                Some(v) => match FileGenType::NAMES.iter().find(|(n, _)| *n == v) {
                    Some((_, t)) => gen.gen_type = *t,
                    None => {
                        ctx.error(v, "filegen type must be none|pid|day|week|month|year|age");
                        ok = false;
                    }
                },
                None => ok = false,
            },
            "link" => gen.link = true,
            "nolink" => gen.link = false,
            "enable" => enable = Some(true),
            "disable" => enable = Some(false),
            _ => {
                ctx.error(opt, "unknown filegen option");
                ok = false;
            }
        }
    }
    if !ok {
        return;
    }
    gens.insert(kind, gen);
    match enable {
        Some(true) => {
            enabled.insert(kind);
        }
        Some(false) => {
            enabled.remove(&kind);
        }
        None => {}
    }
}
