//! The effective-configuration printer: defaults are written out, and the
//! output parses back to the same configuration.

use meridian_conf::{parse_str, Config, MemorySource};

fn parse(text: &str) -> Config {
    parse_str("/etc/ntp.conf", text, &MemorySource::new())
        .unwrap_or_else(|e| panic!("{e}\n---\n{text}"))
}

#[test]
fn defaults_are_explicit() {
    let text = Config::default().to_effective_text();
    for line in [
        "tos minsane 1 minclock 3 maxclock 10 maxdist 1.5 mindist 0.001 orphan 16 orphanwait 300 ceiling 16 floor 1 cohort 0 beacon 3600",
        "tinker step 0.128 stepout 900 panic 1000 dispersion 15 allan 11",
        "discard average 3 minimum 2 monitor 3000",
        "mru maxmem 1024 mindepth 600 maxage 64 initmem 4 incmem 4",
        "enable auth kernel monitor ntp stats peer_clear_digest_early unpeer_crypto_early unpeer_crypto_nak_early unpeer_digest_early",
        "disable bclient calibrate mode7",
        "broadcastdelay 0.004",
        "nts disable",
        "restrict default",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn sources_and_restrictions_are_printed_in_full() {
    let cfg = parse(include_str!("corpus/centos.conf"));
    let text = cfg.to_effective_text();
    for line in [
        "server 0.centos.pool.ntp.org iburst minpoll 6 maxpoll 10 version 4",
        "server 127.127.1.0 minpoll 6 maxpoll 10 version 4",
        "fudge 127.127.1.0 stratum 10",
        "restrict default noquery nomodify notrap nopeer",
        "restrict 192.168.44.0 mask 255.255.255.0 nomodify notrap",
        "restrict 127.0.0.1",
        "restrict -6 ::1",
        "disable bclient calibrate mode7 monitor",
        "driftfile /var/lib/ntp/drift",
        "keys /etc/ntp/keys",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn effective_text_round_trips() {
    for input in [
        include_str!("corpus/centos.conf"),
        include_str!("corpus/seed.conf"),
        include_str!("corpus/everything.conf"),
        "restrict -4 default ignore\nrestrict -6 default noquery\nserver -6 fe80::1%eth0 key 7",
    ] {
        let first = parse(input);
        let text = first.to_effective_text();
        let second = parse(&text);
        assert_eq!(second.to_effective_text(), text);
        // Everything but provenance (file/line, includes, warnings) survives.
        assert_eq!(second.restrict, first.restrict, "\n{text}");
        assert_eq!(second.tos, first.tos);
        assert_eq!(second.tinker, first.tinker);
        assert_eq!(second.fudge, first.fudge);
        assert_eq!(second.nts, first.nts);
        assert_eq!(second.mru, first.mru);
        assert_eq!(second.statistics, first.statistics);
        assert_eq!(second.driftfile, first.driftfile);
        let strip = |c: &Config| {
            c.sources
                .iter()
                .map(|s| {
                    let mut s = s.clone();
                    s.line = 0;
                    s.file = Default::default();
                    s
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&second), strip(&first));
    }
}
