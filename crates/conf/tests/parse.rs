//! The ntp.conf grammar: every directive's typed result, diagnostics,
//! includes, and robustness against arbitrary input.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use meridian_conf::{
    parse_config, parse_str, AddrFamily, Config, ConfigErrors, FileGenType, InterfaceAction,
    InterfaceTarget, MemorySource, MruSize, RestrictFlags, Severity, SourceKind, StatsKind,
};

fn ok(text: &str) -> Config {
    parse_str("/etc/ntp.conf", text, &MemorySource::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ConfigErrors {
    parse_str("/etc/ntp.conf", text, &MemorySource::new()).expect_err(text)
}

/// The messages of all error diagnostics.
fn errors(text: &str) -> Vec<String> {
    err(text).errors().map(|d| d.message.clone()).collect()
}

#[test]
fn empty_file_is_the_default_config() {
    let cfg = ok("# nothing\n\n   \n");
    assert_eq!(cfg, Config::default());
    assert_eq!(cfg.tinker.step, 0.128);
    assert_eq!(cfg.tinker.stepout, 900.0);
    assert_eq!(cfg.tos.maxdist, 1.5);
    assert_eq!(cfg.discard.average, 3);
    assert_eq!(cfg.broadcastdelay, 0.004);
}

#[test]
fn everything_corpus_parses_to_the_expected_values() {
    let cfg = ok(include_str!("corpus/everything.conf"));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    let d = cfg.driftfile.as_ref().unwrap();
    assert_eq!(d.path, PathBuf::from("/var/lib/ntp/drift file"));
    assert_eq!((d.minutes, d.tolerance), (Some(60), Some(0.5)));
    assert_eq!(
        cfg.trusted_keys.iter().copied().collect::<Vec<_>>(),
        [1, 2, 15]
    );
    assert_eq!((cfg.control_key, cfg.request_key), (Some(15), Some(2)));

    let s = &cfg.sources[0];
    assert_eq!(
        (s.kind, s.family, s.address.as_str()),
        (SourceKind::Server, Some(AddrFamily::V4), "time.example.com")
    );
    assert!(s.iburst && s.burst && s.prefer && !s.noselect);
    assert_eq!(
        (s.minpoll, s.maxpoll, s.version, s.key, s.port),
        (4, 12, 3, Some(1), Some(10123))
    );
    let p = &cfg.sources[1];
    assert_eq!(
        (p.kind, p.family, p.minpoll, p.maxpoll, p.version),
        (SourceKind::Pool, Some(AddrFamily::V6), 6, 10, 4)
    );
    assert!(p.preempt);
    let peer = &cfg.sources[2];
    assert_eq!(peer.kind, SourceKind::Peer);
    assert!(peer.xleave && peer.noselect && peer.true_chimer && peer.autokey);
    let nts = &cfg.sources[3];
    assert!(nts.nts && nts.noval);
    assert_eq!(nts.ca, Some(PathBuf::from("/etc/ssl/ca.pem")));
    let gps = &cfg.sources[4];
    assert!(gps.is_refclock() && !gps.is_local_clock());
    assert_eq!((gps.mode, gps.ttl, gps.minpoll), (Some(17), Some(1), 4));

    let local = &cfg.fudge[&Ipv4Addr::new(127, 127, 1, 0)];
    assert_eq!(
        (local.stratum, local.refid.as_deref()),
        (Some(10), Some("LOCL"))
    );
    let g = &cfg.fudge[&Ipv4Addr::new(127, 127, 20, 0)];
    assert_eq!((g.time1, g.time2), (Some(0.0042), Some(-0.5)));
    assert_eq!(g.flags, [Some(true), None, None, Some(false)]);

    let t = &cfg.tos;
    assert_eq!(
        (t.minsane, t.minclock, t.maxclock, t.orphan, t.orphanwait),
        (2, 4, 12, 10, 60)
    );
    assert_eq!(
        (t.maxdist, t.mindist, t.ceiling, t.floor, t.cohort, t.beacon),
        (2.0, 0.002, 15, 2, 1, 600)
    );
    let k = &cfg.tinker;
    assert_eq!(
        (k.step, k.stepout, k.panic, k.dispersion, k.allan),
        (0.5, 300.0, 0.0, 20.0, 12)
    );
    assert_eq!(
        (k.huffpuff, k.freq, k.stepback, k.stepfwd),
        (Some(7200.0), Some(-12.5), Some(1.0), Some(2.0))
    );

    assert!(
        cfg.system.calibrate && cfg.system.bclient && !cfg.system.monitor && !cfg.system.kernel
    );
    assert!(cfg.system.ntp && !cfg.system.mode7);

    let stats: Vec<StatsKind> = cfg.statistics.iter().copied().collect();
    assert_eq!(
        stats,
        [
            StatsKind::Loopstats,
            StatsKind::Peerstats,
            StatsKind::Clockstats
        ]
    );
    let loops = &cfg.filegens[&StatsKind::Loopstats];
    assert_eq!(
        (loops.file.as_deref(), loops.gen_type, loops.link),
        (Some("loops"), FileGenType::Week, false)
    );
    assert_eq!(
        cfg.filegens[&StatsKind::Rawstats].gen_type,
        FileGenType::Pid
    );
    assert_eq!(cfg.statsdir, Some(PathBuf::from("/var/log/ntpstats/")));
    assert_eq!(cfg.leapfile, Some(PathBuf::from("/etc/ntp.leapseconds")));
    assert_eq!(cfg.leapsmear_interval, Some(86400));

    assert_eq!(cfg.interfaces.len(), 4);
    assert_eq!(
        cfg.interfaces[0].target,
        InterfaceTarget::Name("eth0".into())
    );
    assert_eq!(
        (cfg.interfaces[1].action, &cfg.interfaces[1].target),
        (InterfaceAction::Ignore, &InterfaceTarget::Ipv6)
    );
    assert_eq!(
        cfg.interfaces[2].target,
        InterfaceTarget::Addr {
            addr: "192.168.1.0".parse().unwrap(),
            prefix: Some(24)
        }
    );
    assert_eq!(cfg.interfaces[2].action, InterfaceAction::Drop);
    assert_eq!(cfg.interfaces[3].target, InterfaceTarget::Wildcard);

    assert_eq!(cfg.logfile, Some(PathBuf::from("/var/log/ntp.log")));
    assert_eq!(cfg.logconfig, ["=syncall", "+clockall"]);
    assert_eq!(cfg.pidfile, Some(PathBuf::from("/run/ntpd.pid")));
    assert_eq!(
        (
            cfg.discard.average,
            cfg.discard.minimum,
            cfg.discard.monitor
        ),
        (4, 2, 1000)
    );
    assert_eq!(cfg.mru.max, MruSize::Entries(8192));
    assert_eq!((cfg.mru.mindepth, cfg.mru.maxage), (300, 128));
    assert_eq!(
        (cfg.mru.init, cfg.mru.inc),
        (MruSize::Entries(100), MruSize::KiB(8))
    );
    assert_eq!(cfg.broadcastdelay, 0.008);
    assert!(cfg.nts.enabled);
    assert_eq!(cfg.nts.cert, Some(PathBuf::from("/etc/ntp/cert.pem")));
    assert_eq!(cfg.nts.key, Some(PathBuf::from("/etc/ntp/key.pem")));
    assert_eq!(cfg.nts.cookie, Some(PathBuf::from("/var/lib/ntp/cookies")));
    assert_eq!(
        (
            cfg.nts.mintls.as_deref(),
            cfg.nts.aead.as_deref(),
            cfg.nts.port
        ),
        (Some("TLS1.3"), Some("AES_SIV_CMAC_256"), Some(4461))
    );
    assert_eq!(cfg.metrics, Some("127.0.0.1:9975".parse().unwrap()));

    let r = &cfg.restrict;
    let ip = |s: &str| s.parse().unwrap();
    assert!(r
        .lookup(ip("203.0.113.1"))
        .contains(RestrictFlags::LIMITED | RestrictFlags::KOD));
    assert!(r.lookup(ip("2001:db9::1")).contains(RestrictFlags::IGNORE));
    assert_eq!(r.lookup(ip("10.2.3.4")), RestrictFlags::NOSERVE);
    assert_eq!(
        r.lookup(ip("10.1.3.4")),
        RestrictFlags::VERSION | RestrictFlags::SERVERRESPONSE_FUZZ
    );
    assert_eq!(
        r.lookup(ip("2001:db8::5")),
        RestrictFlags::NOMRULIST | RestrictFlags::LOWPRIOTRAP
    );
    assert_eq!(
        r.unresolved_hosts().collect::<Vec<_>>(),
        ["ntp.example.com"]
    );
    assert_eq!(r.source_template().unwrap().ippeerlimit, Some(3));
    // unrestrict removed the /24, so the default applies again.
    assert!(!r.lookup(ip("198.51.100.5")).contains(RestrictFlags::IGNORE));
    // ntpport entries only match packets from port 123.
    assert!(r
        .lookup_match(ip("192.0.2.1"), Some(123))
        .flags
        .contains(RestrictFlags::NOTRUST));
    assert!(!r
        .lookup_match(ip("192.0.2.1"), Some(40000))
        .flags
        .contains(RestrictFlags::NOTRUST));
}

#[test]
fn diagnostics_are_located_and_formatted() {
    let e = err("server a.example iburst\nserver b.example minpoll 2\n");
    assert_eq!(e.0.len(), 1);
    let d = &e.0[0];
    assert_eq!(
        (d.line, d.severity, d.file.clone()),
        (2, Severity::Error, PathBuf::from("/etc/ntp.conf"))
    );
    assert_eq!(
        d.to_string(),
        "/etc/ntp.conf:2: error: '2': minpoll must be in 3..17"
    );
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let e = err("server x version 5\nbogus directive\ntos minclock zero\nrestrict default frobnicate\nkeys\n");
    let lines: Vec<(usize, Severity)> = e.0.iter().map(|d| (d.line, d.severity)).collect();
    assert_eq!(
        lines,
        [
            (1, Severity::Error),
            (2, Severity::Warning),
            (3, Severity::Error),
            (4, Severity::Error),
            (5, Severity::Error)
        ]
    );
    let text = e.to_string();
    assert_eq!(text.lines().count(), 5);
    assert!(
        text.lines()
            .nth(3)
            .unwrap()
            .contains("'frobnicate': unknown restrict flag"),
        "{text}"
    );
}

#[test]
fn unknown_directive_is_a_warning_and_unsupported_ones_say_so() {
    let cfg = ok("frobnicate 1 2\nsetvar foo = bar\ntrap 10.0.0.1\nbroadcast 10.255.255.255\nmanycastclient 239.1.1.1\ncrypto pw x\n");
    assert_eq!(cfg.warnings.len(), 6);
    assert!(cfg.warnings[0].message.contains("unknown directive"));
    for w in &cfg.warnings[1..] {
        assert!(w.message.contains("not implemented"), "{w}");
        assert!(!w.message.contains("unknown"), "{w}");
    }
    let names: Vec<&str> = cfg
        .unsupported
        .iter()
        .map(|u| u.directive.as_str())
        .collect();
    assert_eq!(
        names,
        ["setvar", "trap", "broadcast", "manycastclient", "crypto"]
    );
    assert_eq!(cfg.unsupported[0].args, ["foo", "=", "bar"]);
    assert_eq!(cfg.unsupported[4].line, 6);
}

#[test]
fn source_option_ranges() {
    for (line, word) in [
        ("server a.example minpoll 18", "'18'"),
        ("server a.example maxpoll 2", "'2'"),
        ("server a.example version 0", "'0'"),
        ("server a.example key 0", "'0'"),
        ("server a.example key 65536", "'65536'"),
        ("server a.example port 0", "'0'"),
        ("server a.example minpoll", "'minpoll'"),
        ("server a.example wibble", "'wibble'"),
        ("server", "'server'"),
        ("server -6 192.0.2.1", "'192.0.2.1'"),
        ("server -4 ::1", "'::1'"),
        ("peer 127.127.1.0", "'127.127.1.0'"),
        ("pool 127.127.1.0", "'127.127.1.0'"),
        ("server bad!name", "'bad!name'"),
        ("server a.example ttl 256", "'256'"),
    ] {
        let errs = errors(line);
        assert!(errs.iter().any(|m| m.starts_with(word)), "{line}: {errs:?}");
    }
    for (opt, lo, hi) in [("minpoll", 3, 17), ("maxpoll", 3, 17), ("version", 1, 4)] {
        let c = ok(&format!(
            "server a.example {opt} {lo}\nserver b.example {opt} {hi}"
        ));
        assert_eq!(c.sources.len(), 2, "{opt}");
    }
    let c = ok("server fe80::1%eth0\nserver -6 ::1 key 65535\nserver ntp_1.example");
    assert_eq!(c.sources[1].key, Some(65535));
}

#[test]
fn minpoll_above_maxpoll_is_adjusted_with_a_warning() {
    let c = ok("server a.example minpoll 12");
    assert_eq!((c.sources[0].minpoll, c.sources[0].maxpoll), (12, 12));
    assert_eq!(c.warnings.len(), 1);
    let c = ok("server a.example maxpoll 4");
    assert_eq!((c.sources[0].minpoll, c.sources[0].maxpoll), (4, 4));
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn fudge_lines_merge_per_field_and_validate() {
    let c = ok("fudge 127.127.1.0 stratum 10\nfudge 127.127.1.0 refid GPS flag2 1\nfudge 127.127.1.0 stratum 8");
    let f = &c.fudge[&Ipv4Addr::new(127, 127, 1, 0)];
    assert_eq!(
        (f.stratum, f.refid.as_deref(), f.flags[1]),
        (Some(8), Some("GPS"), Some(true))
    );
    for (line, word) in [
        ("fudge 10.0.0.1 stratum 1", "'10.0.0.1'"),
        ("fudge 127.127.1.0 stratum 16", "'16'"),
        ("fudge 127.127.1.0 refid TOOLONG", "'TOOLONG'"),
        ("fudge 127.127.1.0 flag3 2", "'2'"),
        ("fudge 127.127.1.0 time1 nan", "'nan'"),
        ("fudge 127.127.1.0 time5 1", "'time5'"),
        ("fudge", "'fudge'"),
    ] {
        let errs = errors(line);
        assert!(errs.iter().any(|m| m.starts_with(word)), "{line}: {errs:?}");
    }
}

#[test]
fn system_directive_errors() {
    for (line, word) in [
        ("tos minclock 5 maxclock 4", "'minclock'"),
        ("tos floor 5 ceiling 4", "'floor'"),
        ("tos maxdist inf", "'inf'"),
        ("tos wobble 1", "'wobble'"),
        ("tos", "'tos'"),
        ("tinker step -1", "'-1'"),
        ("tinker freq 600", "'600'"),
        ("tinker jiggle 1", "'jiggle'"),
        ("enable frobs", "'frobs'"),
        ("disable", "'disable'"),
        ("discard average 18", "'18'"),
        ("discard maximum 1", "'maximum'"),
        ("mru maxdepth -1", "'-1'"),
        ("mru size 1", "'size'"),
        ("statistics loopstats bogostats", "'bogostats'"),
        ("filegen bogostats", "'bogostats'"),
        ("filegen loopstats type hourly", "'hourly'"),
        ("filegen loopstats file", "'file'"),
        ("interface listen", "'interface'"),
        ("interface open eth0", "'open'"),
        ("interface listen 10.0.0.0/33", "'33'"),
        ("nts frob", "'frob'"),
        ("nts cert", "'cert'"),
        ("metrics localhost", "'localhost'"),
        ("driftfile", "'driftfile'"),
        ("driftfile /x 0", "'0'"),
        ("driftfile /x 5 1 extra", "'extra'"),
        ("keys /a /b", "'/b'"),
        ("trustedkey 1 0", "'0'"),
        ("controlkey x", "'x'"),
        ("leapsmearinterval -5", "'-5'"),
        ("broadcastdelay 2", "'2'"),
        (
            "logfile \"/var/log/unterminated",
            "'\"/var/log/unterminated'",
        ),
    ] {
        let errs = errors(line);
        assert!(errs.iter().any(|m| m.starts_with(word)), "{line}: {errs:?}");
    }
}

#[test]
fn filegen_enable_and_disable_track_statistics() {
    let c =
        ok("statistics loopstats peerstats\nfilegen peerstats disable\nfilegen sysstats enable");
    let s: Vec<StatsKind> = c.statistics.iter().copied().collect();
    assert_eq!(s, [StatsKind::Loopstats, StatsKind::Sysstats]);
}

#[test]
fn unrestrict_of_a_missing_entry_warns() {
    let c = ok("unrestrict 10.0.0.1");
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].message.contains("no matching restrict entry"));
    let c = ok("restrict 10.0.0.1 noquery\ndelrestrict 10.0.0.1");
    assert!(c.warnings.is_empty());
    assert_eq!(
        c.restrict.lookup("10.0.0.1".parse().unwrap()),
        RestrictFlags::empty()
    );
}

#[test]
fn includes_resolve_relative_to_the_including_file() {
    let src = MemorySource::new()
        .with(
            "/etc/ntp.conf",
            "includefile conf.d/a.conf\nserver main.example\n",
        )
        .with(
            "/etc/conf.d/a.conf",
            "server a.example\nincludefile sub/b.conf\n",
        )
        .with("/etc/conf.d/sub/b.conf", "server b.example\n");
    let c = parse_config("/etc/ntp.conf".as_ref(), &src).unwrap();
    let names: Vec<(&str, PathBuf, usize)> = c
        .sources
        .iter()
        .map(|s| (s.address.as_str(), s.file.clone(), s.line))
        .collect();
    assert_eq!(
        names,
        [
            ("a.example", PathBuf::from("/etc/conf.d/a.conf"), 1),
            ("b.example", PathBuf::from("/etc/conf.d/sub/b.conf"), 1),
            ("main.example", PathBuf::from("/etc/ntp.conf"), 2),
        ]
    );
    assert_eq!(c.included_files.len(), 2);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn includes_nest_five_deep_but_not_six() {
    // /c0 includes /c1 ... each file also configures one server.
    let chain = |levels: usize| {
        let mut src = MemorySource::new();
        for i in 0..=levels {
            let mut text = format!("server s{i}.example\n");
            if i < levels {
                text.push_str(&format!("includefile /c{}\n", i + 1));
            }
            src.insert(format!("/c{i}"), text);
        }
        src
    };
    let c = parse_config("/c0".as_ref(), &chain(5)).unwrap();
    assert_eq!(c.sources.len(), 6);
    let e = parse_config("/c0".as_ref(), &chain(6)).unwrap_err();
    let errs: Vec<_> = e.errors().collect();
    assert_eq!(errs.len(), 1);
    assert_eq!(
        (errs[0].file.clone(), errs[0].line),
        (PathBuf::from("/c5"), 2)
    );
    assert!(errs[0].message.contains("deeper than 5"));
    // A file including itself stops at the same limit instead of looping.
    let src = MemorySource::new().with("/loop", "includefile /loop\n");
    assert!(parse_config("/loop".as_ref(), &src).is_err());
}

#[test]
fn include_errors_keep_their_own_file_and_line() {
    let src = MemorySource::new().with("/etc/inc.conf", "\n\nserver x minpoll 99\n");
    let e = parse_str("/etc/ntp.conf", "includefile inc.conf\n", &src).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/inc.conf:3: error: '99': minpoll must be in 3..17"
    );
}

#[test]
fn unreadable_main_file_is_an_error() {
    let e = parse_config("/nope.conf".as_ref(), &MemorySource::new()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].line, 0);
    assert!(e
        .to_string()
        .starts_with("/nope.conf: error: '/nope.conf': cannot read"));
}

mod robustness {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "server",
        "pool",
        "peer",
        "fudge",
        "restrict",
        "unrestrict",
        "tos",
        "tinker",
        "enable",
        "disable",
        "discard",
        "mru",
        "filegen",
        "statistics",
        "interface",
        "nts",
        "includefile",
        "driftfile",
        "metrics",
        "mask",
        "default",
        "source",
        "-4",
        "-6",
        "minpoll",
        "iburst",
        "127.127.1.0",
        "10.0.0.0/8",
        "::ffff:1.2.3.4",
        "255.255.0.0",
        "fe80::1%",
        "\"",
        "#",
        "1",
        "-1",
        "99999999999999999999",
        "nan",
        "0.5",
        "stratum",
        "refid",
        "flag1",
        "ignore",
        "ippeerlimit",
        "serverresponse",
        "fuzz",
        "/",
        "x",
    ];

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let src = MemorySource::new().with("/inc", text.clone());
            let _ = parse_str("/etc/ntp.conf", &text, &src);
        }

        #[test]
        fn arbitrary_word_soup_never_panics(lines in proptest::collection::vec(
            proptest::collection::vec(proptest::sample::select(WORDS), 0..8), 0..12)) {
            let text: String = lines.iter().map(|l| l.join(" ") + "\n").collect();
            let src = MemorySource::new().with("/etc/x", text.clone());
            if let Ok(cfg) = parse_str("/etc/ntp.conf", &text, &src) {
                // Whatever parsed must print and re-parse without errors.
                let again = parse_str("/etc/ntp.conf", &cfg.to_effective_text(), &MemorySource::new());
                prop_assert!(again.is_ok(), "{:?}", again);
            }
        }
    }
}
