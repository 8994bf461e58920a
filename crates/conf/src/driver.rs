//! The file walker: reads the main file and `includefile`s through the
//! injected [`ConfigSource`], lexes them and dispatches each line to the
//! module that owns its directive.

use std::path::{Path, PathBuf};

use crate::args::Ctx;
use crate::assoc::{parse_fudge, parse_source, SourceKind};
use crate::config::{Config, Unsupported};
use crate::diag::{ConfigErrors, Diagnostic, Severity};
use crate::iface::parse_interface;
use crate::lexer::{lex, LexLine};
use crate::misc::parse_simple;
use crate::nts::parse_nts;
use crate::restrict::parse::parse_restrict;
use crate::source::ConfigSource;
use crate::stats::{parse_filegen, parse_statistics};
use crate::system::{parse_discard, parse_mru, parse_switches, parse_tinker, parse_tos};

/// Deepest include nesting accepted (ntpd's MAXINCLUDELEVEL).
pub(crate) const MAX_INCLUDE_DEPTH: usize = 5;

/// Directives of classic ntpd that Meridian recognises but does not
/// implement: a warning saying so, never "unknown directive".
const UNSUPPORTED: &[&str] = &[
    "setvar",
    "trap",
    "broadcast",
    "broadcastclient",
    "manycastclient",
    "manycastserver",
    "multicastclient",
    "crypto",
    "automax",
    "revoke",
    "keysdir",
    "ident",
    "phone",
    "rlimit",
    "saveconfigdir",
    "ttl",
    "calldelay",
    "dscp",
    "enablemode7",
];

struct Parser<'s> {
    source: &'s dyn ConfigSource,
    config: Config,
    diags: Vec<Diagnostic>,
}

/// Parse the root file `path`; `text` is its contents if already known.
pub(crate) fn parse_root(
    path: &Path,
    text: Option<&str>,
    source: &dyn ConfigSource,
) -> Result<Config, ConfigErrors> {
    let mut p = Parser {
        source,
        config: Config::default(),
        diags: Vec::new(),
    };
    match text {
        Some(t) => p.parse_text(path, t, 0),
        None => match source.read(path) {
            Ok(t) => p.parse_text(path, &t, 0),
            Err(e) => p.diags.push(Diagnostic {
                file: path.to_path_buf(),
                line: 0,
                severity: Severity::Error,
                message: format!("'{}': cannot read configuration: {e}", path.display()),
            }),
        },
    }
    if p.diags.iter().any(|d| d.severity == Severity::Error) {
        Err(ConfigErrors(p.diags))
    } else {
        p.config.warnings = p.diags;
        Ok(p.config)
    }
}

impl Parser<'_> {
    fn parse_text(&mut self, file: &Path, text: &str, depth: usize) {
        for line in lex(text) {
            match line {
                Ok(line) => self.directive(file, line, depth),
                Err(e) => {
                    let mut ctx = Ctx {
                        file,
                        line: e.number,
                        diags: &mut self.diags,
                    };
                    ctx.error(&e.word, "unterminated quoted string");
                }
            }
        }
    }

    fn directive(&mut self, file: &Path, line: LexLine, depth: usize) {
        let Some((name, words)) = line.words.split_first() else {
            return;
        };
        let name = name.as_str();
        let mut ctx = Ctx {
            file,
            line: line.number,
            diags: &mut self.diags,
        };
        let config = &mut self.config;
        match name {
            "server" | "pool" | "peer" => {
                let kind = match name {
                    "server" => SourceKind::Server,
                    "pool" => SourceKind::Pool,
                    _ => SourceKind::Peer,
                };
                if let Some(s) = parse_source(&mut ctx, kind, words) {
                    config.sources.push(s);
                }
            }
            "fudge" => {
                if let Some((addr, f)) = parse_fudge(&mut ctx, words) {
                    config.fudge.entry(addr).or_default().merge(&f);
                }
            }
            "restrict" => {
                if let Some(d) = parse_restrict(&mut ctx, name, words) {
                    config.restrict.apply(&d);
                }
            }
            "unrestrict" | "delrestrict" => {
                if let Some(d) = parse_restrict(&mut ctx, name, words) {
                    if !config.restrict.remove(&d.target, d.mask) {
                        ctx.warn(name, "no matching restrict entry to remove");
                    }
                }
            }
            "tos" => parse_tos(&mut ctx, &mut config.tos, words),
            "tinker" => parse_tinker(&mut ctx, &mut config.tinker, words),
            "enable" => parse_switches(&mut ctx, &mut config.system, true, words),
            "disable" => parse_switches(&mut ctx, &mut config.system, false, words),
            "discard" => parse_discard(&mut ctx, &mut config.discard, words),
            "mru" => parse_mru(&mut ctx, &mut config.mru, words),
            "statistics" => parse_statistics(&mut ctx, &mut config.statistics, words),
            "filegen" => parse_filegen(
                &mut ctx,
                &mut config.filegens,
                &mut config.statistics,
                words,
            ),
            "interface" | "nic" => {
                if let Some(rule) = parse_interface(&mut ctx, name, words) {
                    config.interfaces.push(rule);
                }
            }
            "nts" => parse_nts(&mut ctx, &mut config.nts, words),
            "includefile" => self.include(file, line.number, words, depth),
            _ if parse_simple(&mut ctx, config, name, words) => {}
            _ if UNSUPPORTED.contains(&name) => {
                ctx.warn(name, "recognised but not implemented by Meridian; ignored");
                config.unsupported.push(Unsupported {
                    directive: name.to_string(),
                    args: words.to_vec(),
                    file: file.to_path_buf(),
                    line: line.number,
                });
            }
            _ => ctx.warn(name, "unknown directive; ignored"),
        }
    }

    /// `includefile PATH`: parse another file in place. A file that cannot
    /// be read is a warning (ntpd logs and continues); nesting deeper than
    /// [`MAX_INCLUDE_DEPTH`] is an error (it also stops include loops).
    fn include(&mut self, file: &Path, number: usize, words: &[String], depth: usize) {
        let mut ctx = Ctx {
            file,
            line: number,
            diags: &mut self.diags,
        };
        let target = match words {
            [t] => t,
            [] => return ctx.error("includefile", "missing path"),
            [_, extra, ..] => return ctx.error(extra, "unexpected extra argument to includefile"),
        };
        if depth >= MAX_INCLUDE_DEPTH {
            return ctx.error(
                target,
                &format!("includefile nested deeper than {MAX_INCLUDE_DEPTH} levels"),
            );
        }
        let path = resolve(file, Path::new(target));
        match self.source.read(&path) {
            Ok(text) => {
                self.config.included_files.push(path.clone());
                self.parse_text(&path, &text, depth + 1);
            }
            Err(e) => ctx.warn(
                target,
                &format!("cannot read include file {}: {e}; skipped", path.display()),
            ),
        }
    }
}

/// `target` relative to the directory of the including `file`.
fn resolve(file: &Path, target: &Path) -> PathBuf {
    if target.is_absolute() {
        return target.to_path_buf();
    }
    match file.parent() {
        Some(dir) => dir.join(target),
        None => target.to_path_buf(),
    }
}
