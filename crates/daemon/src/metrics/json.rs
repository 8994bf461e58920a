//! `/api/status` and `/api/history`: what the status page draws, as JSON.
//!
//! Written by hand (a few flat objects need no serialisation framework). Units are SI
//! (seconds) except frequencies, which are in ppm as every NTP tool shows them; times
//! are Unix seconds. Numbers that are not finite are written as `null`.
//!
//! `/api/status`:
//!
//! ```json
//! {"version":"0.1.0","time":1800000000.5,"started":1799990000.0,"synchronized":true,
//!  "leap":0,"stratum":3,"refid":"192.0.2.1","sync_source":"ntp","system_peer":"192.0.2.1",
//!  "offset":-0.000116,"frequency_ppm":-11.5,"sys_jitter":0.00025,"clk_jitter":0.0003,
//!  "clk_wander_ppm":0.014,"root_delay":0.001234,"root_dispersion":0.025123,
//!  "poll":64,"precision":-23,"reftime":1800000000.0,
//!  "sources":[{"source":"192.0.2.1","name":"ntp1.example","address":"192.0.2.1","port":123,
//!    "refclock":false,"selection":"sys_peer","tally":"*","stratum":2,"refid":"GPS",
//!    "reach":255,"poll":64,"last_sample":1800000000.0,"offset":-0.000116,
//!    "delay":0.000474,"dispersion":0.001,"jitter":0.000061}],
//!  "server":{"received":10,"responses":7,"kods":1,"dropped":2,"rate_limited":1,"clients":3}}
//! ```
//!
//! `/api/history[?since=T]`: `{"time":T,"keep":86400,"system":[[t,offset,frequency_ppm,
//! jitter,stratum,synchronized],…],"sources":[{"source":…,"name":…,"active":true,
//! "points":[[t,offset,delay,jitter],…]}]}` with points newer than `since`.

use std::fmt::Write as _;

use crate::control::vars::{refid_is_text, refid_text};
use crate::control::ControlSnapshot;

use super::exposition::unix_seconds;
use super::history::History;
use super::{is_synchronised, source_key, source_name, ServerStats};

/// The content type of both endpoints.
pub const CONTENT_TYPE: &str = "application/json";

/// Append `s` as a JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Also escape '<' so a value can never close a <script> it is embedded in.
            c if (c as u32) < 0x20 || c == '<' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Append `v` as a JSON number (`null` when not finite).
pub fn push_num(out: &mut String, v: f64) {
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

/// An object being written: `"key":value` pairs with the commas in the right places.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn new(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }
    fn key(&mut self, k: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        push_str(self.out, k);
        self.out.push(':');
        self.out
    }
    fn num(&mut self, k: &str, v: f64) {
        push_num(self.key(k), v);
    }
    fn str(&mut self, k: &str, v: &str) {
        push_str(self.key(k), v);
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k).push_str(if v { "true" } else { "false" });
    }
    fn raw(&mut self, k: &str, v: &str) {
        self.key(k).push_str(v);
    }
    fn end(self) {
        self.out.push('}');
    }
}

/// The `/api/status` document.
pub fn status(snapshot: &ControlSnapshot, stats: &ServerStats, now: f64, started: f64) -> String {
    let sys = &snapshot.system;
    let mut out = String::with_capacity(1024 + 400 * snapshot.peers.len());
    let mut o = Obj::new(&mut out);
    o.str("version", env!("CARGO_PKG_VERSION"));
    o.str("host_system", &sys.system);
    o.num("time", now);
    o.num("started", started);
    o.bool("synchronized", is_synchronised(snapshot));
    o.num("leap", f64::from(sys.leap));
    o.num("stratum", f64::from(sys.stratum));
    o.str("refid", &refid_text(sys.refid, refid_is_text(sys.stratum)));
    o.str(
        "sync_source",
        match sys.status.source {
            meridian_proto::control::source::NTP => "ntp",
            meridian_proto::control::source::LOCAL => "local",
            meridian_proto::control::source::PPS => "pps",
            meridian_proto::control::source::UNSPEC => "none",
            _ => "other",
        },
    );
    match snapshot.peer(sys.peer).filter(|_| sys.peer != 0) {
        Some(p) => o.str("system_peer", &source_key(p)),
        None => o.raw("system_peer", "null"),
    }
    o.num("offset", sys.offset);
    o.num("frequency_ppm", sys.frequency);
    o.num("sys_jitter", sys.sys_jitter);
    o.num("clk_jitter", sys.clk_jitter);
    o.num("clk_wander_ppm", sys.clk_wander);
    o.num("root_delay", sys.root_delay);
    o.num("root_dispersion", sys.root_dispersion);
    o.num("poll", 2f64.powi(i32::from(sys.tc)));
    o.num("precision", f64::from(sys.precision));
    o.num("reftime", unix_seconds(sys.reftime, now));
    let mut list = String::from("[");
    for (i, p) in snapshot.peers.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let mut s = Obj::new(&mut list);
        s.str("source", &source_key(p));
        s.str("name", &source_name(p));
        s.str("address", &p.srcadr.to_string());
        s.num("port", f64::from(p.srcport));
        s.bool("refclock", p.is_refclock());
        s.str("selection", p.status.select.snake_name());
        s.str("tally", &p.status.select.tally().to_string());
        s.num("stratum", f64::from(p.stratum));
        s.str(
            "refid",
            &refid_text(p.refid, p.is_refclock() || refid_is_text(p.stratum)),
        );
        s.num("reach", f64::from(p.reach));
        s.num("poll", 2f64.powi(i32::from(p.hpoll)));
        s.num("last_sample", unix_seconds(p.rec, now));
        s.num("offset", p.offset);
        s.num("delay", p.delay);
        s.num("dispersion", p.dispersion);
        s.num("jitter", p.jitter);
        s.end();
    }
    list.push(']');
    o.raw("sources", &list);
    let mut server = String::new();
    let mut s = Obj::new(&mut server);
    s.num("received", stats.received as f64);
    s.num("responses", stats.replied as f64);
    s.num("kods", stats.kods as f64);
    s.num("dropped", stats.dropped as f64);
    s.num("rate_limited", stats.rate_limited as f64);
    s.num("clients", stats.clients as f64);
    s.end();
    o.raw("server", &server);
    o.end();
    out
}

/// The `/api/history` document, with the points newer than `since`.
pub fn history(h: &History, now: f64, since: f64) -> String {
    let mut out = String::with_capacity(4096);
    let mut o = Obj::new(&mut out);
    o.num("time", now);
    o.num("keep", super::history::KEEP);
    let mut system = String::from("[");
    for (i, p) in h.system().iter().filter(|p| p.t > since).enumerate() {
        if i > 0 {
            system.push(',');
        }
        system.push('[');
        for (j, v) in [
            p.t,
            p.offset,
            p.frequency_ppm,
            p.jitter,
            f64::from(p.stratum),
        ]
        .into_iter()
        .enumerate()
        {
            if j > 0 {
                system.push(',');
            }
            push_num(&mut system, v);
        }
        system.push_str(if p.synchronised { ",true]" } else { ",false]" });
    }
    system.push(']');
    o.raw("system", &system);
    let mut sources = String::from("[");
    for (i, s) in h.sources().iter().enumerate() {
        if i > 0 {
            sources.push(',');
        }
        let mut points = String::from("[");
        for (j, p) in s.points.iter().filter(|p| p.t > since).enumerate() {
            if j > 0 {
                points.push(',');
            }
            points.push('[');
            for (k, v) in [p.t, p.offset, p.delay, p.jitter].into_iter().enumerate() {
                if k > 0 {
                    points.push(',');
                }
                push_num(&mut points, v);
            }
            points.push(']');
        }
        points.push(']');
        let mut e = Obj::new(&mut sources);
        e.str("source", &s.key);
        e.str("name", &s.name);
        e.bool("active", s.active);
        e.raw("points", &points);
        e.end();
    }
    sources.push(']');
    o.raw("sources", &sources);
    o.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::testdata;

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}</script>é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001\u003c/script>é""#);
        let mut n = String::new();
        push_num(&mut n, f64::NAN);
        push_num(&mut n, 0.25);
        assert_eq!(n, "null0.25");
    }

    #[test]
    fn status_has_the_system_and_every_source() {
        let text = status(
            &testdata::snapshot(),
            &ServerStats::default(),
            1_800_000_001.0,
            1_799_000_000.0,
        );
        assert!(text.starts_with("{\"version\":"), "{text}");
        assert!(text.contains("\"synchronized\":true,"), "{text}");
        assert!(text.contains("\"system_peer\":\"192.0.2.1\""), "{text}");
        assert!(text.contains("\"frequency_ppm\":-11.5,"), "{text}");
        assert!(text.contains("\"name\":\"LOCAL(0)\""), "{text}");
        assert!(text.contains("\"selection\":\"falseticker\""), "{text}");
        assert!(text.contains("\"last_sample\":1800000000,"), "{text}");
        assert!(text.ends_with("\"clients\":0}}"), "{text}");
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }

    #[test]
    fn history_filters_by_time() {
        let mut h = History::new();
        h.record(&testdata::snapshot(), 100.0);
        let all = history(&h, 101.0, f64::NEG_INFINITY);
        assert!(
            all.contains("\"system\":[[100,-0.000116,-11.5,0.00025,3,true]]"),
            "{all}"
        );
        assert!(
            all.contains("\"points\":[[100,-0.000116,0.000474,0.000061]]"),
            "{all}"
        );
        let none = history(&h, 101.0, 100.0);
        assert!(
            none.contains("\"system\":[]") && !none.contains("[100,"),
            "{none}"
        );
    }
}
