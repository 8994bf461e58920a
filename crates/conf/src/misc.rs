//! The simple directives: file paths, keys, leap smearing, broadcast delay,
//! logging and the `metrics` endpoint. Each takes a fixed, small argument
//! list and sets one field of [`Config`].

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::args::{float_in, int_in, Args, Ctx};
use crate::config::{Config, DriftFile};

/// Parse `name words...` if it is one of the simple directives; returns
/// `false` if `name` is not handled here.
pub(crate) fn parse_simple(
    ctx: &mut Ctx<'_>,
    config: &mut Config,
    name: &str,
    words: &[String],
) -> bool {
    match name {
        "driftfile" => config.driftfile = parse_driftfile(ctx, words).or(config.driftfile.take()),
        "keys" => set_path(ctx, name, words, &mut config.keys),
        "statsdir" => set_path(ctx, name, words, &mut config.statsdir),
        "leapfile" => set_path(ctx, name, words, &mut config.leapfile),
        "logfile" => set_path(ctx, name, words, &mut config.logfile),
        "pidfile" => set_path(ctx, name, words, &mut config.pidfile),
        "trustedkey" => {
            if words.is_empty() {
                ctx.error(name, "missing key id");
            }
            for w in words {
                if let Some(k) = int_in(ctx, "key id", w, 1u16, u16::MAX) {
                    config.trusted_keys.insert(k);
                }
            }
        }
        "controlkey" => {
            if let Some(k) =
                single(ctx, name, words).and_then(|w| int_in(ctx, "key id", w, 1u16, u16::MAX))
            {
                config.control_key = Some(k);
            }
        }
        "requestkey" => {
            if let Some(k) =
                single(ctx, name, words).and_then(|w| int_in(ctx, "key id", w, 1u16, u16::MAX))
            {
                config.request_key = Some(k);
            }
        }
        "leapsmearinterval" => {
            if let Some(n) =
                single(ctx, name, words).and_then(|w| int_in(ctx, name, w, 0u32, u32::MAX))
            {
                config.leapsmear_interval = Some(n);
            }
        }
        "broadcastdelay" => {
            if let Some(d) = single(ctx, name, words).and_then(|w| float_in(ctx, name, w, 0.0, 1.0))
            {
                config.broadcastdelay = d;
            }
        }
        "logconfig" => {
            if words.is_empty() {
                ctx.error(name, "missing log class");
            }
            config.logconfig.extend(words.iter().cloned());
        }
        "metrics" => {
            if let Some(w) = single(ctx, name, words) {
                match w.parse::<SocketAddr>() {
                    Ok(a) => config.metrics = Some(a),
                    Err(_) => ctx.error(
                        w,
                        "metrics needs ADDR:PORT, e.g. 127.0.0.1:9975 or [::1]:9975",
                    ),
                }
            }
        }
        _ => return false,
    }
    true
}

/// Exactly one argument, or an error naming the directive.
fn single<'w>(ctx: &mut Ctx<'_>, name: &str, words: &'w [String]) -> Option<&'w str> {
    match words {
        [w] => Some(w.as_str()),
        [] => {
            ctx.error(name, "missing argument");
            None
        }
        [_, extra, ..] => {
            ctx.error(extra, &format!("unexpected extra argument to {name}"));
            None
        }
    }
}

fn set_path(ctx: &mut Ctx<'_>, name: &str, words: &[String], slot: &mut Option<PathBuf>) {
    if let Some(p) = single(ctx, name, words) {
        *slot = Some(PathBuf::from(p));
    }
}

fn parse_driftfile(ctx: &mut Ctx<'_>, words: &[String]) -> Option<DriftFile> {
    let mut args = Args::new(words);
    let Some(path) = args.next_word() else {
        ctx.error("driftfile", "missing path");
        return None;
    };
    let mut drift = DriftFile {
        path: PathBuf::from(path),
        minutes: None,
        tolerance: None,
    };
    if let Some(m) = args.next_word() {
        drift.minutes = Some(int_in(ctx, "driftfile minutes", m, 1u32, 10_080)?);
    }
    if let Some(t) = args.next_word() {
        drift.tolerance = Some(float_in(ctx, "driftfile tolerance", t, 0.0, 500.0)?);
    }
    if let Some(extra) = args.next_word() {
        ctx.error(extra, "unexpected extra argument to driftfile");
        return None;
    }
    Some(drift)
}
