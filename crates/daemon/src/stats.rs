//! Statistics files, as classic ntpd writes them, so existing plotting scripts keep
//! working: `statsdir`, `statistics loopstats peerstats`, and `filegen NAME file F type T
//! link|nolink enable|disable`.
//!
//! Line formats (ntpd 4.2.8):
//! - loopstats: `MJD seconds offset(s) frequency(ppm) jitter(s) wander(ppm) poll(log2 s)`
//! - peerstats: `MJD seconds address status(hex) offset(s) delay(s) dispersion(s) jitter(s)`
//!
//! Files rotate by the filegen type (a day's file is `loopstats.20261125`) and, with
//! `link`, a symbolic link named after the base file points at the current one. A write
//! that fails (disk full, read-only) is logged once and never stops the daemon.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use meridian_conf::{Config, FileGenConfig, FileGenType, StatsKind};
use meridian_proto::calendar::civil_from_days;

/// Modified Julian Day of the Unix epoch.
const MJD_UNIX_EPOCH: i64 = 40_587;

/// Split Unix seconds into (MJD, seconds past midnight).
pub fn mjd(unix: f64) -> (i64, f64) {
    let day = (unix / 86_400.0).floor();
    (day as i64 + MJD_UNIX_EPOCH, unix - day * 86_400.0)
}

/// The loopstats line for one clock update.
pub fn loopstats_line(
    unix: f64,
    offset: f64,
    freq_ppm: f64,
    jitter: f64,
    wander_ppm: f64,
    poll: i8,
) -> String {
    let (day, secs) = mjd(unix);
    format!("{day} {secs:.3} {offset:.9} {freq_ppm:.3} {jitter:.9} {wander_ppm:.6} {poll}")
}

/// The peerstats line for one accepted sample.
#[allow(clippy::too_many_arguments)]
pub fn peerstats_line(
    unix: f64,
    addr: IpAddr,
    status: u16,
    offset: f64,
    delay: f64,
    dispersion: f64,
    jitter: f64,
) -> String {
    let (day, secs) = mjd(unix);
    format!("{day} {secs:.3} {addr} {status:x} {offset:.9} {delay:.9} {dispersion:.9} {jitter:.9}")
}

/// The suffix ntpd's filegen appends for `gen_type` at Unix time `unix`.
pub fn filegen_suffix(gen_type: FileGenType, unix: f64, started_unix: f64) -> String {
    let days = (unix / 86_400.0).floor() as i64;
    let (y, m, d) = civil_from_days(days);
    match gen_type {
        FileGenType::None => String::new(),
        FileGenType::Pid => format!(".{}", std::process::id()),
        FileGenType::Day => format!(".{y:04}{m:02}{d:02}"),
        FileGenType::Week => format!(".{y:04}W{:02}", (day_of_year(y, m, d) - 1) / 7),
        FileGenType::Month => format!(".{y:04}{m:02}"),
        FileGenType::Year => format!(".{y:04}"),
        FileGenType::Age => format!(
            ".a{:08}",
            ((unix - started_unix) / 86_400.0).floor().max(0.0) as i64
        ),
    }
}

fn day_of_year(y: i64, m: u32, d: u32) -> u32 {
    const CUMULATIVE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    CUMULATIVE[(m - 1) as usize] + d + u32::from(leap && m > 2)
}

struct OpenFile {
    name: PathBuf,
    file: File,
}

/// Writes the enabled statistics files.
pub struct StatsWriter {
    dir: PathBuf,
    enabled: HashMap<StatsKind, FileGenConfig>,
    open: HashMap<StatsKind, OpenFile>,
    started_unix: f64,
    reported_failure: bool,
}

impl StatsWriter {
    /// Set up from the configuration; nothing is opened until the first record.
    pub fn new(config: &Config, started_unix: f64) -> Self {
        let enabled = config
            .statistics
            .iter()
            .map(|k| (*k, config.filegens.get(k).cloned().unwrap_or_default()))
            .collect();
        StatsWriter {
            dir: config
                .statsdir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/log/ntpstats")),
            enabled,
            open: HashMap::new(),
            started_unix,
            reported_failure: false,
        }
    }

    /// Whether `kind` is being recorded.
    pub fn is_enabled(&self, kind: StatsKind) -> bool {
        self.enabled.contains_key(&kind)
    }

    /// Append `line` to the current file of `kind` (no-op if not enabled).
    pub fn record(&mut self, kind: StatsKind, unix: f64, line: &str) {
        let Some(gen) = self.enabled.get(&kind) else {
            return;
        };
        let base = gen.file.clone().unwrap_or_else(|| kind.name().to_string());
        let name = self.dir.join(format!(
            "{base}{}",
            filegen_suffix(gen.gen_type, unix, self.started_unix)
        ));
        let link = gen.link && gen.gen_type != FileGenType::None;
        let result = self.write_to(kind, &name, link.then(|| self.dir.join(&base)), line);
        if let Err(e) = result {
            if !self.reported_failure {
                self.reported_failure = true;
                tracing::error!("cannot write statistics file {}: {e}", name.display());
            }
        } else {
            self.reported_failure = false;
        }
    }

    fn write_to(
        &mut self,
        kind: StatsKind,
        name: &Path,
        link: Option<PathBuf>,
        line: &str,
    ) -> std::io::Result<()> {
        let current = self.open.get(&kind).is_some_and(|o| o.name == name);
        if !current {
            let file = OpenOptions::new().create(true).append(true).open(name)?;
            if let Some(link) = link {
                let _ = std::fs::remove_file(&link);
                if let Some(target) = name.file_name() {
                    let _ = std::os::unix::fs::symlink(target, &link);
                }
            }
            self.open.insert(
                kind,
                OpenFile {
                    name: name.to_path_buf(),
                    file,
                },
            );
        }
        let open = self.open.get_mut(&kind).expect("opened above");
        let result = writeln!(open.file, "{line}");
        if result.is_err() {
            // Reopen next time: the file may have been rotated away or the disk fixed.
            self.open.remove(&kind);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_conf::{parse_str, MemorySource};

    #[test]
    fn mjd_of_known_dates() {
        // 2026-11-25 00:00:00 UTC = Unix 1795564800 = MJD 61369 (checked with Python's datetime).
        assert_eq!(mjd(1_795_564_800.0), (61_369, 0.0));
        let (d, s) = mjd(1_795_564_800.0 + 75_440.031);
        assert_eq!(d, 61_369);
        assert!((s - 75_440.031).abs() < 1e-6);
    }

    #[test]
    fn lines_match_classic_formats() {
        assert_eq!(
            loopstats_line(
                1_795_564_800.0 + 75_440.031,
                0.000006019,
                13.77819,
                0.000351733,
                0.01338,
                6
            ),
            "61369 75440.031 0.000006019 13.778 0.000351733 0.013380 6"
        );
        assert_eq!(
            peerstats_line(
                1_795_564_800.0 + 10_847.65,
                "192.0.2.1".parse().unwrap(),
                0x9614,
                -0.001605376,
                0.0,
                0.001424877,
                0.000958674
            ),
            "61369 10847.650 192.0.2.1 9614 -0.001605376 0.000000000 0.001424877 0.000958674"
        );
    }

    #[test]
    fn filegen_suffixes() {
        let t = 1_795_564_800.0 + 3600.0; // 2026-11-25
        assert_eq!(filegen_suffix(FileGenType::Day, t, t), ".20261125");
        assert_eq!(filegen_suffix(FileGenType::Month, t, t), ".202611");
        assert_eq!(filegen_suffix(FileGenType::Year, t, t), ".2026");
        assert_eq!(filegen_suffix(FileGenType::None, t, t), "");
        assert_eq!(
            filegen_suffix(FileGenType::Age, t + 2.5 * 86_400.0, t),
            ".a00000002"
        );
    }

    #[test]
    fn writer_appends_to_dated_file_with_link() {
        let dir = std::env::temp_dir().join(format!(
            "meridian-stats-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!("statsdir {}/\nstatistics loopstats\nfilegen loopstats file loops type day link enable\n", dir.display());
        let config = parse_str("t.conf", &text, &MemorySource::new()).unwrap();
        let mut w = StatsWriter::new(&config, 0.0);
        assert!(w.is_enabled(StatsKind::Loopstats));
        assert!(!w.is_enabled(StatsKind::Peerstats));
        let t = 1_795_564_800.0 + 100.0;
        w.record(StatsKind::Loopstats, t, "a");
        w.record(StatsKind::Loopstats, t + 1.0, "b");
        w.record(StatsKind::Peerstats, t, "ignored");
        assert_eq!(
            std::fs::read_to_string(dir.join("loops.20261125")).unwrap(),
            "a\nb\n"
        );
        assert_eq!(
            std::fs::read_link(dir.join("loops")).unwrap(),
            PathBuf::from("loops.20261125")
        );
        // Next day: a new file, and the link follows.
        w.record(StatsKind::Loopstats, t + 86_400.0, "c");
        assert_eq!(
            std::fs::read_to_string(dir.join("loops.20261126")).unwrap(),
            "c\n"
        );
        assert_eq!(
            std::fs::read_link(dir.join("loops")).unwrap(),
            PathBuf::from("loops.20261126")
        );
    }

    #[test]
    fn unwritable_directory_is_survived() {
        let config = parse_str(
            "t.conf",
            "statsdir /proc/no-such-dir/\nstatistics loopstats\n",
            &MemorySource::new(),
        )
        .unwrap();
        let mut w = StatsWriter::new(&config, 0.0);
        w.record(StatsKind::Loopstats, 1_795_564_800.0, "x");
        w.record(StatsKind::Loopstats, 1_795_564_801.0, "y");
        assert!(w.reported_failure);
    }
}
