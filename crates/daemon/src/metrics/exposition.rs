//! `/metrics`: the Prometheus text exposition format, version 0.0.4.
//!
//! Names follow Prometheus conventions: `ntp_` for what any NTP daemon has (system,
//! sources, server), `meridian_` for this implementation; base units (seconds, and a
//! ratio for frequencies: 1 ppm is 1e-6), `_total` on counters, a `# HELP` and
//! `# TYPE` line before every family. Per-source series carry `source` (the address,
//! with `:port` when not 123) and `name` (the configured host name, `LOCAL(0)` for the
//! local clock). A source's selection is a state set: one series per state, the
//! current one at 1, so alerts can match `selection="falseticker"` without series
//! appearing and disappearing.
//!
//! | family | type | from |
//! | --- | --- | --- |
//! | `ntp_system_synchronized` | gauge | leap ≠ 3 and stratum 1–15 |
//! | `ntp_system_offset_seconds` | gauge | `offset` |
//! | `ntp_system_frequency_ratio` | gauge | `frequency` (ppm × 1e-6) |
//! | `ntp_system_jitter_seconds` | gauge | `sys_jitter` |
//! | `ntp_system_stratum`, `…_leap_indicator` | gauge | `stratum`, `leap` |
//! | `ntp_system_root_{delay,dispersion}_seconds` | gauge | `rootdelay`, `rootdisp` |
//! | `ntp_source_{offset,delay,jitter,dispersion}_seconds` | gauge | per peer |
//! | `ntp_source_reach`, `ntp_source_selection` | gauge | per peer |
//! | `ntp_server_{received_packets,responses,kod_responses,dropped_packets,rate_limited_packets}_total` | counter | workers |
//! | `ntp_server_rate_limit_clients` | gauge | client tables |

use std::fmt::Write as _;

use crate::control::vars::{refid_is_text, refid_text};
use crate::control::{ControlSnapshot, PeerVariables as P};

use super::{is_synchronised, source_key, source_name, ServerStats, SELECTIONS};

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Goes up and down.
    Gauge,
    /// Only goes up (names end in `_total`).
    Counter,
}

/// Builds an exposition, one family at a time.
#[derive(Debug, Default)]
pub struct Writer {
    out: String,
}

impl Writer {
    /// Start a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(is_metric_name(name), "{name}");
        debug_assert_eq!(kind == Kind::Counter, name.ends_with("_total"), "{name}");
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let kind = match kind {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&format_value(value));
        self.out.push('\n');
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Whether `name` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A sample value as the format spells it (`NaN`, `+Inf`, `-Inf`, or a float).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // Rust's shortest round-trip representation, which Go's ParseFloat reads.
        format!("{v}")
    }
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The name of the system's clock source (`sync_ntp` → `ntp`), for a label.
fn sync_source(source: u8) -> &'static str {
    use meridian_proto::control::source;
    match source {
        source::NTP => "ntp",
        source::LOCAL => "local",
        source::PPS => "pps",
        source::UNSPEC => "none",
        _ => "other",
    }
}

/// A timestamp as Unix seconds (0 for "never"), in the era nearest to `now`.
pub fn unix_seconds(ts: meridian_proto::NtpTimestamp, now: f64) -> f64 {
    if ts.is_zero() {
        return 0.0;
    }
    let (s, ns) = ts.to_unix(now as i64);
    s as f64 + f64::from(ns) * 1e-9
}

/// Render the whole exposition. `started` is when the daemon started (Unix seconds).
pub fn render(snapshot: &ControlSnapshot, stats: &ServerStats, started: f64) -> String {
    let mut w = Writer::default();
    let sys = &snapshot.system;
    let now = super::unix_now();
    use Kind::{Counter, Gauge};

    w.family(
        "meridian_build_info",
        Gauge,
        "Meridian's version; always 1.",
    );
    w.sample(
        "meridian_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    w.single(
        "meridian_start_time_seconds",
        Gauge,
        "When the daemon started, in seconds since the Unix epoch.",
        started,
    );

    // System.
    w.single(
        "ntp_system_synchronized",
        Gauge,
        "1 when the daemon is synchronised (leap indicator not 3 and stratum 1-15), else 0.",
        bool_value(is_synchronised(snapshot)),
    );
    w.family(
        "ntp_system_sync_info",
        Gauge,
        "What the daemon is synchronised to: its clock source, reference id and system peer; always 1.",
    );
    let peer = snapshot
        .peer(sys.peer)
        .filter(|_| sys.peer != 0)
        .map(source_key)
        .unwrap_or_default();
    let refid = refid_text(sys.refid, refid_is_text(sys.stratum));
    w.sample(
        "ntp_system_sync_info",
        &[
            ("sync_source", sync_source(sys.status.source)),
            ("refid", &refid),
            ("system_peer", &peer),
        ],
        1.0,
    );
    w.single(
        "ntp_system_leap_indicator",
        Gauge,
        "Leap indicator: 0 none, 1 insert a second, 2 delete a second, 3 unsynchronised.",
        f64::from(sys.leap),
    );
    w.single(
        "ntp_system_stratum",
        Gauge,
        "Stratum the daemon serves (16: unsynchronised).",
        f64::from(sys.stratum),
    );
    w.single(
        "ntp_system_offset_seconds",
        Gauge,
        "Last offset of the local clock from the combined sources, in seconds.",
        sys.offset,
    );
    w.single(
        "ntp_system_frequency_ratio",
        Gauge,
        "Frequency correction of the local clock as a ratio (ppm times 1e-6).",
        sys.frequency * 1e-6,
    );
    w.single(
        "ntp_system_jitter_seconds",
        Gauge,
        "Combined jitter of the selected sources (sys_jitter), in seconds.",
        sys.sys_jitter,
    );
    w.single(
        "ntp_system_clock_jitter_seconds",
        Gauge,
        "Jitter of the local clock's offsets (clk_jitter), in seconds.",
        sys.clk_jitter,
    );
    w.single(
        "ntp_system_clock_wander_ratio",
        Gauge,
        "Frequency wander of the local clock (clk_wander) as a ratio (ppm times 1e-6).",
        sys.clk_wander * 1e-6,
    );
    w.single(
        "ntp_system_root_delay_seconds",
        Gauge,
        "Round-trip delay to the primary reference, in seconds.",
        sys.root_delay,
    );
    w.single(
        "ntp_system_root_dispersion_seconds",
        Gauge,
        "Dispersion to the primary reference, in seconds.",
        sys.root_dispersion,
    );
    w.single(
        "ntp_system_poll_interval_seconds",
        Gauge,
        "System poll interval (2^tc), in seconds.",
        2f64.powi(i32::from(sys.tc)),
    );
    w.single(
        "ntp_system_precision_seconds",
        Gauge,
        "Precision of the local clock (2^precision), in seconds.",
        2f64.powi(i32::from(sys.precision)),
    );
    w.single(
        "ntp_system_reference_timestamp_seconds",
        Gauge,
        "When the system clock was last set or corrected (reftime), in seconds since the Unix epoch; 0 if never.",
        unix_seconds(sys.reftime, now),
    );
    if let Some(tai) = sys.tai {
        w.single(
            "ntp_system_tai_offset_seconds",
            Gauge,
            "TAI minus UTC from the leap second file, in seconds.",
            f64::from(tai),
        );
    }

    // Sources.
    let peers: Vec<(String, String, &P)> = snapshot
        .peers
        .iter()
        .map(|p| (source_key(p), source_name(p), p))
        .collect();
    let per_source = |w: &mut Writer, name: &str, help: &str, f: &dyn Fn(&P) -> f64| {
        w.family(name, Gauge, help);
        for (key, host, p) in &peers {
            w.sample(name, &[("source", key), ("name", host)], f(p));
        }
    };
    per_source(
        &mut w,
        "ntp_source_offset_seconds",
        "Offset of the source's clock from the local clock (clock filter output), in seconds.",
        &|p: &P| p.offset,
    );
    per_source(
        &mut w,
        "ntp_source_delay_seconds",
        "Round-trip delay to the source (clock filter output), in seconds.",
        &|p: &P| p.delay,
    );
    per_source(
        &mut w,
        "ntp_source_jitter_seconds",
        "Jitter of the source's offsets, in seconds.",
        &|p: &P| p.jitter,
    );
    per_source(
        &mut w,
        "ntp_source_dispersion_seconds",
        "Dispersion of the source's samples, in seconds.",
        &|p: &P| p.dispersion,
    );
    per_source(
        &mut w,
        "ntp_source_reach",
        "Reachability register of the last eight polls (0-255; 255: all answered).",
        &|p: &P| f64::from(p.reach),
    );
    per_source(
        &mut w,
        "ntp_source_stratum",
        "Stratum the source reports (16: unsynchronised or not yet heard).",
        &|p: &P| f64::from(p.stratum),
    );
    per_source(
        &mut w,
        "ntp_source_poll_interval_seconds",
        "Interval at which the source is polled, in seconds.",
        &|p: &P| 2f64.powi(i32::from(p.hpoll)),
    );
    per_source(
        &mut w,
        "ntp_source_last_sample_timestamp_seconds",
        "When the last valid sample from the source arrived, in seconds since the Unix epoch; 0 if never.",
        &|p: &P| unix_seconds(p.rec, now),
    );
    w.family(
        "ntp_source_selection",
        Gauge,
        "Selection state of the source: 1 for its current state, 0 for the others.",
    );
    for (key, host, p) in &peers {
        for s in SELECTIONS {
            w.sample(
                "ntp_source_selection",
                &[
                    ("source", key),
                    ("name", host),
                    ("selection", s.snake_name()),
                ],
                bool_value(p.status.select == s),
            );
        }
    }

    // Server.
    w.single(
        "ntp_server_received_packets_total",
        Counter,
        "Datagrams received on the serving sockets.",
        stats.received as f64,
    );
    w.single(
        "ntp_server_responses_total",
        Counter,
        "Requests answered: time replies and mode 6 response datagrams (KoDs not included).",
        stats.replied as f64,
    );
    w.single(
        "ntp_server_kod_responses_total",
        Counter,
        "Kiss-o'-Death replies sent (rate limiting, access denied).",
        stats.kods as f64,
    );
    w.single(
        "ntp_server_dropped_packets_total",
        Counter,
        "Datagrams dropped without a reply, for any reason (malformed, restricted, rate limited).",
        stats.dropped as f64,
    );
    w.single(
        "ntp_server_rate_limited_packets_total",
        Counter,
        "Datagrams dropped by rate limiting (part of ntp_server_dropped_packets_total).",
        stats.rate_limited as f64,
    );
    w.single(
        "ntp_server_rate_limit_clients",
        Gauge,
        "Client addresses held in the rate-limit (MRU) tables, over all workers.",
        stats.clients as f64,
    );
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::testdata;

    #[test]
    fn every_sample_belongs_to_a_family_with_help_and_type() {
        let stats = ServerStats {
            received: 10,
            replied: 7,
            kods: 1,
            dropped: 2,
            rate_limited: 1,
            clients: 3,
        };
        let text = render(&testdata::snapshot(), &stats, 1_800_000_000.0);
        let mut family = String::new();
        let mut typed = std::collections::HashSet::new();
        let mut series = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                family = rest.split(' ').next().unwrap().to_string();
                assert!(is_metric_name(&family));
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(name, family);
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
                assert!(typed.insert(name.to_string()), "{name} typed twice");
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with(&family), "{line} outside {family}");
            value.parse::<f64>().unwrap();
            assert!(series.insert(name.to_string()), "duplicate series {name}");
        }
        assert!(text.contains("ntp_system_stratum 3\n"), "{text}");
        assert!(text.contains("ntp_system_synchronized 1\n"));
        assert!(
            text.contains("ntp_system_frequency_ratio -0.0000115\n"),
            "{text}"
        );
        assert!(text.contains(
            "ntp_source_offset_seconds{source=\"192.0.2.1\",name=\"ntp1.example\"} -0.000116\n"
        ));
        // The second source on the same address differs by its port.
        assert!(text.contains(
            "ntp_source_selection{source=\"192.0.2.1:10123\",name=\"192.0.2.1\",selection=\"falseticker\"} 1\n"
        ));
        assert!(text.contains("ntp_source_reach{source=\"127.127.1.0\",name=\"LOCAL(0)\"} 255\n"));
        assert!(text.contains("ntp_server_responses_total 7\n"));
        assert!(text.contains("ntp_server_rate_limit_clients 3\n"));
        assert!(text.contains(
            "ntp_system_sync_info{sync_source=\"ntp\",refid=\"192.0.2.1\",system_peer=\"192.0.2.1\"} 1\n"
        ));
    }

    #[test]
    fn values_and_labels_are_escaped() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(1e-9), "0.000000001");
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert!(is_metric_name("ntp_x:y_1") && !is_metric_name("1x") && !is_metric_name("a-b"));
    }
}
