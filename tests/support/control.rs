//! Helpers for the control-protocol interop tests: NTPsec's `ntpq` and `ntpd`, Debian's
//! `ntpstat`, and parsers for `ntpq -p` tables.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use super::{find_tool, run_bounded, sandboxed, Daemon, Netns};

/// Run NTPsec's `ntpq ARGS` (a Python script, run with the system Python that has the
/// `ntp` module) inside `netns`, without CAP_SYS_TIME.
pub fn ntpsec_ntpq(netns: &Netns, args: &[&str]) -> Output {
    let ntpq = find_tool("ntpsec:ntpq").expect("ntpsec ntpq");
    let mut cmd = sandboxed(Some(netns), "/usr/bin/python3");
    cmd.arg(ntpq).args(args);
    run_bounded(&mut cmd, Duration::from_secs(30))
}

/// Run Meridian's `ntpq ARGS` inside `netns`.
pub fn meridian_ntpq(netns: &Netns, args: &[&str]) -> Output {
    let mut cmd = sandboxed(Some(netns), super::meridian_bin());
    cmd.arg("ntpq").args(args);
    run_bounded(&mut cmd, Duration::from_secs(30))
}

/// Run Debian's `/usr/bin/ntpstat` (which only talks to 127.0.0.1:123) inside `netns`.
pub fn debian_ntpstat(netns: &Netns) -> Output {
    let mut cmd: Command = sandboxed(Some(netns), "/usr/bin/ntpstat");
    run_bounded(&mut cmd, Duration::from_secs(30))
}

/// Start NTPsec's `ntpd -n` with `conf` inside `netns` (port 123 there), logging into
/// `dir`. Without CAP_SYS_TIME its clock adjustments fail, which it only logs.
pub fn ntpsec_ntpd(netns: &Netns, conf: &str, dir: &Path) -> Daemon {
    let ntpd = find_tool("ntpsec:ntpd").expect("ntpsec ntpd");
    let conf_path = dir.join("ntpsec.conf");
    std::fs::write(&conf_path, conf).expect("write ntpsec.conf");
    let log = dir.join("ntpsec.log");
    let args = [
        "-n".to_string(),
        "-c".into(),
        conf_path.to_string_lossy().into_owned(),
        "-l".into(),
        log.to_string_lossy().into_owned(),
    ];
    Daemon::spawn("ntpsec-ntpd", Some(netns), ntpd, &args, dir)
}

/// One row of an `ntpq -p` table, split into its columns.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRow {
    /// The tally character (` `, `*`, `+`, …).
    pub tally: char,
    /// The remote column.
    pub remote: String,
    /// The refid column.
    pub refid: String,
    /// Stratum.
    pub stratum: String,
    /// Type (`u`, `l`, …).
    pub kind: String,
    /// When (seconds, or `-`, `5m`…).
    pub when: String,
    /// Poll interval.
    pub poll: String,
    /// Reach, octal.
    pub reach: String,
    /// Delay, offset, jitter in ms.
    pub delay: f64,
    /// Offset, ms.
    pub offset: f64,
    /// Jitter, ms.
    pub jitter: f64,
}

/// Parse the rows of an `ntpq -p` table (the lines after the `====` rule).
pub fn parse_peers(text: &str) -> Vec<PeerRow> {
    text.lines()
        .skip_while(|l| !l.starts_with("===="))
        .skip(1)
        .filter_map(|line| {
            let tally = line.chars().next()?;
            let f: Vec<&str> = line.get(1..)?.split_whitespace().collect();
            if f.len() != 10 {
                return None;
            }
            let num = |s: &str| s.parse::<f64>().ok();
            Some(PeerRow {
                tally,
                remote: f[0].into(),
                refid: f[1].into(),
                stratum: f[2].into(),
                kind: f[3].into(),
                when: f[4].into(),
                poll: f[5].into(),
                reach: f[6].into(),
                delay: num(f[7])?,
                offset: num(f[8])?,
                jitter: num(f[9])?,
            })
        })
        .collect()
}

/// `name=value` pairs of an `ntpq -c rv` output (values as printed).
pub fn parse_rv(text: &str) -> Vec<(String, String)> {
    let body: String = text.lines().skip(1).collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut rest = body.as_str();
    while let Some(eq) = rest.find('=') {
        let name = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 1..];
        let end = if let Some(quoted) = after.strip_prefix('"') {
            quoted.find('"').map_or(after.len(), |i| i + 2)
        } else {
            // A value ends at the ", " before the next `name=`.
            let mut end = after.len();
            let mut search = 0;
            while let Some(c) = after[search..].find(", ") {
                let at = search + c;
                let next = &after[at + 2..];
                if next
                    .split(['=', ' ', ','])
                    .next()
                    .is_some_and(|n| next[n.len()..].starts_with('='))
                {
                    end = at;
                    break;
                }
                search = at + 2;
            }
            end
        };
        out.push((name, after[..end].trim().trim_end_matches(',').to_string()));
        rest = &after[end..];
    }
    out
}
