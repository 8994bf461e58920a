//! `nts`: server-side Network Time Security settings (NTPsec syntax).
//!
//! Options may be spread over several `nts` lines; later values win.

use std::fmt;
use std::path::PathBuf;

use crate::args::{Args, Ctx};

/// Server-side NTS configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NtsConfig {
    /// `enable` / `disable`: run the NTS-KE server (default off).
    pub enabled: bool,
    /// `cert FILE`: certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `key FILE`: private key (PEM).
    pub key: Option<PathBuf>,
    /// `cookie FILE`: where cookie master keys are kept.
    pub cookie: Option<PathBuf>,
    /// `ca PATH`: trust anchors for client-side NTS.
    pub ca: Option<PathBuf>,
    /// `mintls VERSION`, e.g. `TLS1.3`.
    pub mintls: Option<String>,
    /// `maxtls VERSION`.
    pub maxtls: Option<String>,
    /// `tlsciphers LIST` (TLS 1.2 cipher list).
    pub tlsciphers: Option<String>,
    /// `tlsciphersuites LIST` (TLS 1.3 suites).
    pub tlsciphersuites: Option<String>,
    /// `aead NAME`: preferred AEAD algorithm.
    pub aead: Option<String>,
    /// `port N`: NTS-KE listening port (default 4460).
    pub port: Option<u16>,
}

impl fmt::Display for NtsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.enabled {
            "nts enable"
        } else {
            "nts disable"
        })?;
        let paths = [
            ("cert", &self.cert),
            ("key", &self.key),
            ("cookie", &self.cookie),
            ("ca", &self.ca),
        ];
        for (name, p) in paths {
            if let Some(p) = p {
                write!(f, " {name} {}", quote(&p.display().to_string()))?;
            }
        }
        let strings = [
            ("mintls", &self.mintls),
            ("maxtls", &self.maxtls),
            ("tlsciphers", &self.tlsciphers),
            ("tlsciphersuites", &self.tlsciphersuites),
            ("aead", &self.aead),
        ];
        for (name, s) in strings {
            if let Some(s) = s {
                write!(f, " {name} {}", quote(s))?;
            }
        }
        if let Some(p) = self.port {
            write!(f, " port {p}")?;
        }
        Ok(())
    }
}

/// Quote a word that would not survive the lexer unquoted.
pub(crate) fn quote(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '#') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// Parse an `nts` line onto `nts`.
pub(crate) fn parse_nts(ctx: &mut Ctx<'_>, nts: &mut NtsConfig, words: &[String]) {
    let mut args = Args::new(words);
    if args.is_empty() {
        ctx.error("nts", "missing option");
    }
    while let Some(opt) = args.next_word() {
        match opt {
            "enable" => nts.enabled = true,
            "disable" => nts.enabled = false,
            "cert" | "key" | "cookie" | "ca" => {
                if let Some(v) = args.value(ctx, opt) {
                    let slot = match opt {
                        "cert" => &mut nts.cert,
                        "key" => &mut nts.key,
                        "cookie" => &mut nts.cookie,
                        _ => &mut nts.ca,
                    };
                    *slot = Some(PathBuf::from(v));
                }
            }
            "mintls" | "maxtls" | "tlsciphers" | "tlsciphersuites" | "aead" => {
                if let Some(v) = args.value(ctx, opt) {
                    let slot = match opt {
                        "mintls" => &mut nts.mintls,
                        "maxtls" => &mut nts.maxtls,
                        "tlsciphers" => &mut nts.tlsciphers,
                        "tlsciphersuites" => &mut nts.tlsciphersuites,
                        _ => &mut nts.aead,
                    };
                    *slot = Some(v.to_string());
                }
            }
            "port" => {
                if let Some(p) = args.int(ctx, opt, 1u16, u16::MAX) {
                    nts.port = Some(p);
                }
            }
            _ => ctx.error(opt, "unknown nts option"),
        }
    }
}
