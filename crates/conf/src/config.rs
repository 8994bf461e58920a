//! The typed configuration: [`Config`], the root every directive fills in.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::assoc::{FudgeConfig, SourceConfig};
use crate::diag::Diagnostic;
use crate::iface::InterfaceRule;
use crate::nts::NtsConfig;
use crate::restrict::RestrictTable;
use crate::stats::{FileGenConfig, StatsKind};
use crate::system::{Discard, Mru, SystemFlags, Tinker, Tos};

/// `driftfile PATH [minutes [tolerance]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftFile {
    /// Where the frequency offset is saved.
    pub path: PathBuf,
    /// How often to write it, in minutes (driver default if unset).
    pub minutes: Option<u32>,
    /// Wander threshold in ppm below which the file is not rewritten.
    pub tolerance: Option<f64>,
}

/// A directive Meridian recognises but does not implement (`setvar`,
/// `trap`, `broadcast`, `manycastclient`, `crypto`, ...): kept so the
/// daemon and `--check` can report it with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The directive keyword.
    pub directive: String,
    /// Its arguments, unparsed.
    pub args: Vec<String>,
    /// File it appeared in.
    pub file: PathBuf,
    /// Line it appeared on.
    pub line: usize,
}

/// A parsed ntp.conf. `Default` is the configuration of an empty file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `server`, `pool` and `peer` lines, in file order.
    pub sources: Vec<SourceConfig>,
    /// `fudge` settings per refclock address (later lines win per field).
    pub fudge: BTreeMap<Ipv4Addr, FudgeConfig>,
    /// The `restrict` table.
    pub restrict: RestrictTable,
    /// `driftfile`.
    pub driftfile: Option<DriftFile>,
    /// `keys PATH`: the symmetric key file.
    pub keys: Option<PathBuf>,
    /// `trustedkey N...`.
    pub trusted_keys: BTreeSet<u16>,
    /// `controlkey N`: key for mode 6 writes.
    pub control_key: Option<u16>,
    /// `requestkey N`: key for mode 7 (accepted; mode 7 is never answered).
    pub request_key: Option<u16>,
    /// `tos`.
    pub tos: Tos,
    /// `tinker`.
    pub tinker: Tinker,
    /// `enable` / `disable` switches.
    pub system: SystemFlags,
    /// Enabled statistics (`statistics`, `filegen ... enable`).
    pub statistics: BTreeSet<StatsKind>,
    /// `filegen` settings.
    pub filegens: BTreeMap<StatsKind, FileGenConfig>,
    /// `statsdir PATH`.
    pub statsdir: Option<PathBuf>,
    /// `leapfile PATH`.
    pub leapfile: Option<PathBuf>,
    /// `leapsmearinterval N` seconds.
    pub leapsmear_interval: Option<u32>,
    /// `interface` / `nic` rules, in order (later rules take precedence).
    pub interfaces: Vec<InterfaceRule>,
    /// `logfile PATH`.
    pub logfile: Option<PathBuf>,
    /// `logconfig` words, raw (e.g. `=syncall`, `+clockall`).
    pub logconfig: Vec<String>,
    /// `pidfile PATH`.
    pub pidfile: Option<PathBuf>,
    /// `discard`.
    pub discard: Discard,
    /// `mru`.
    pub mru: Mru,
    /// `broadcastdelay` seconds (default 0.004).
    pub broadcastdelay: f64,
    /// `nts` server settings.
    pub nts: NtsConfig,
    /// `metrics ADDR:PORT` (Meridian extension).
    pub metrics: Option<SocketAddr>,
    /// Recognised but unimplemented directives.
    pub unsupported: Vec<Unsupported>,
    /// Files read through `includefile`, in order.
    pub included_files: Vec<PathBuf>,
    /// Warnings found while parsing.
    pub warnings: Vec<Diagnostic>,
}

/// Default `broadcastdelay` (ntpd: 4 ms).
pub(crate) const DEFAULT_BROADCASTDELAY: f64 = 0.004;

impl Default for Config {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            fudge: BTreeMap::new(),
            restrict: RestrictTable::default(),
            driftfile: None,
            keys: None,
            trusted_keys: BTreeSet::new(),
            control_key: None,
            request_key: None,
            tos: Tos::default(),
            tinker: Tinker::default(),
            system: SystemFlags::default(),
            statistics: BTreeSet::new(),
            filegens: BTreeMap::new(),
            statsdir: None,
            leapfile: None,
            leapsmear_interval: None,
            interfaces: Vec::new(),
            logfile: None,
            logconfig: Vec::new(),
            pidfile: None,
            discard: Discard::default(),
            mru: Mru::default(),
            broadcastdelay: DEFAULT_BROADCASTDELAY,
            nts: NtsConfig::default(),
            metrics: None,
            unsupported: Vec::new(),
            included_files: Vec::new(),
            warnings: Vec::new(),
        }
    }
}
