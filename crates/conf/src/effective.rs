//! The effective configuration printer: [`Config::to_effective_text`]
//! renders every setting in ntp.conf syntax with defaults written out, for
//! `meridian ntpd --check -c FILE`. Its output parses back to the same
//! configuration.

use std::fmt;

use crate::assoc::SourceConfig;
use crate::config::Config;
use crate::nts::quote;
use crate::stats::{FileGenLine, StatsKind};

impl Config {
    /// The effective configuration in ntp.conf syntax, defaults explicit.
    pub fn to_effective_text(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "# Meridian effective configuration; defaults are written out."
        )?;
        for inc in &self.included_files {
            writeln!(f, "# included: {}", inc.display())?;
        }
        if let Some(d) = &self.driftfile {
            write!(f, "driftfile {}", quote(&d.path.display().to_string()))?;
            if let Some(m) = d.minutes {
                write!(f, " {m}")?;
                if let Some(t) = d.tolerance {
                    write!(f, " {t}")?;
                }
            }
            writeln!(f)?;
        }
        path_line(f, "keys", self.keys.as_deref())?;
        if !self.trusted_keys.is_empty() {
            f.write_str("trustedkey")?;
            for k in &self.trusted_keys {
                write!(f, " {k}")?;
            }
            writeln!(f)?;
        }
        if let Some(k) = self.control_key {
            writeln!(f, "controlkey {k}")?;
        }
        if let Some(k) = self.request_key {
            writeln!(f, "requestkey {k}")?;
        }
        for s in &self.sources {
            writeln!(f, "{}", SourceLine(s))?;
        }
        for (addr, fudge) in &self.fudge {
            writeln!(f, "fudge {addr}{fudge}")?;
        }
        writeln!(f, "{}", self.tos)?;
        writeln!(
            f,
            "# stepout 900 s is the ntpd 4.2.8 default (NTPsec uses 300 s)"
        )?;
        writeln!(f, "{}", self.tinker)?;
        let named = self.system.named();
        for (keyword, on) in [("enable", true), ("disable", false)] {
            let names: Vec<&str> = named
                .iter()
                .filter(|(_, v)| *v == on)
                .map(|(n, _)| *n)
                .collect();
            if !names.is_empty() {
                writeln!(f, "{keyword} {}", names.join(" "))?;
            }
        }
        writeln!(f, "{}", self.discard)?;
        writeln!(f, "{}", self.mru)?;
        writeln!(f, "broadcastdelay {}", self.broadcastdelay)?;
        path_line(f, "statsdir", self.statsdir.as_deref())?;
        if !self.statistics.is_empty() {
            let names: Vec<&str> = self.statistics.iter().map(|k| k.name()).collect();
            writeln!(f, "statistics {}", names.join(" "))?;
        }
        let default_gen = Default::default();
        for kind in StatsKind::ALL {
            let enabled = self.statistics.contains(&kind);
            let gen = self.filegens.get(&kind);
            if enabled || gen.is_some() {
                writeln!(
                    f,
                    "{}",
                    FileGenLine {
                        kind,
                        gen: gen.unwrap_or(&default_gen),
                        enabled
                    }
                )?;
            }
        }
        path_line(f, "leapfile", self.leapfile.as_deref())?;
        if let Some(n) = self.leapsmear_interval {
            writeln!(f, "leapsmearinterval {n}")?;
        }
        for rule in &self.interfaces {
            writeln!(f, "{rule}")?;
        }
        path_line(f, "logfile", self.logfile.as_deref())?;
        if !self.logconfig.is_empty() {
            let words: Vec<String> = self.logconfig.iter().map(|w| quote(w)).collect();
            writeln!(f, "logconfig {}", words.join(" "))?;
        }
        path_line(f, "pidfile", self.pidfile.as_deref())?;
        writeln!(f, "{}", self.nts)?;
        if let Some(m) = self.metrics {
            writeln!(f, "metrics {m}")?;
        }
        let mut restrict = String::new();
        self.restrict.write_lines(&mut restrict)?;
        f.write_str(&restrict)?;
        for u in &self.unsupported {
            writeln!(
                f,
                "# not implemented, ignored ({}:{}): {} {}",
                u.file.display(),
                u.line,
                u.directive,
                u.args.join(" ")
            )?;
        }
        Ok(())
    }
}

fn path_line(
    f: &mut fmt::Formatter<'_>,
    keyword: &str,
    path: Option<&std::path::Path>,
) -> fmt::Result {
    match path {
        Some(p) => writeln!(f, "{keyword} {}", quote(&p.display().to_string())),
        None => Ok(()),
    }
}

/// A source rendered with every option explicit.
struct SourceLine<'a>(&'a SourceConfig);

impl fmt::Display for SourceLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        f.write_str(s.kind.keyword())?;
        if let Some(fam) = s.family {
            write!(f, " {}", fam.flag())?;
        }
        write!(f, " {}", s.address)?;
        let switches = [
            ("iburst", s.iburst),
            ("burst", s.burst),
            ("prefer", s.prefer),
            ("noselect", s.noselect),
            ("true", s.true_chimer),
            ("preempt", s.preempt),
            ("xleave", s.xleave),
            ("autokey", s.autokey),
            ("nts", s.nts),
            ("noval", s.noval),
        ];
        for (name, on) in switches {
            if on {
                write!(f, " {name}")?;
            }
        }
        write!(
            f,
            " minpoll {} maxpoll {} version {}",
            s.minpoll, s.maxpoll, s.version
        )?;
        let mut opt = |name: &str, v: Option<String>| -> fmt::Result {
            match v {
                Some(v) => write!(f, " {name} {v}"),
                None => Ok(()),
            }
        };
        opt("key", s.key.map(|v| v.to_string()))?;
        opt("mode", s.mode.map(|v| v.to_string()))?;
        opt("ttl", s.ttl.map(|v| v.to_string()))?;
        opt("ca", s.ca.as_ref().map(|p| quote(&p.display().to_string())))?;
        opt("port", s.port.map(|v| v.to_string()))?;
        Ok(())
    }
}
