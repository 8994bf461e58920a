//! The restrict engine: the decision table (every flag × every mode),
//! specificity, OR-merging, defaults, mapped IPv6, templates and helpers.

use std::net::IpAddr;

use meridian_conf::{
    decide, parse_str, AddrFamily, Decision, KodKind, MemorySource, PacketMode, RestrictDirective,
    RestrictFlags, RestrictTable, RestrictTarget,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn table(text: &str) -> RestrictTable {
    parse_str("t.conf", text, &MemorySource::new())
        .unwrap_or_else(|e| panic!("{e}"))
        .restrict
}

/// Decisions for modes 0..=7 as a string: A = answer, D = drop, K = KoD.
fn row(flags: RestrictFlags, version: u8, rate_limited: bool, authenticated: bool) -> String {
    PacketMode::ALL
        .iter()
        .map(
            |&m| match decide(flags, m, version, rate_limited, authenticated) {
                Decision::Answer => 'A',
                Decision::Drop => 'D',
                Decision::Kod(KodKind::Rate) => 'K',
            },
        )
        .collect()
}

#[test]
fn every_flag_against_every_mode() {
    // Modes:            0 1 2 3 4 5 6 7
    const BASE: &str = "DAAAAAAD";
    const NO_TIME: &str = "DDDDDDAD";
    let expected = [
        ("ignore", "DDDDDDDD"),
        ("noquery", "DAAAAADD"),
        ("nomodify", BASE),
        ("notrap", BASE),
        ("notrust", NO_TIME),
        ("nopeer", BASE),
        ("noserve", NO_TIME),
        ("limited", BASE),
        ("kod", BASE),
        ("version", BASE),
        ("lowpriotrap", BASE),
        ("noepeer", BASE),
        ("nomrulist", BASE),
        ("ntpport", BASE),
        ("interface", BASE),
        ("serverresponse fuzz", BASE),
        ("mssntp", BASE),
    ];
    assert_eq!(
        expected.len(),
        RestrictFlags::NAMED.len(),
        "a flag is missing from the table"
    );
    assert_eq!(row(RestrictFlags::empty(), 4, false, false), BASE);
    for ((name, flag), (exp_name, exp)) in RestrictFlags::NAMED.iter().zip(expected) {
        assert_eq!(*name, exp_name);
        assert_eq!(row(*flag, 4, false, false), exp, "flag {name}");
    }
}

#[test]
fn decisions_that_depend_on_the_packet() {
    let f = |names: &[&str]| {
        names.iter().fold(RestrictFlags::empty(), |acc, n| {
            acc | RestrictFlags::from_name(n).unwrap()
        })
    };
    // (flags, version, rate_limited, authenticated, modes 0..=7)
    let cases: &[(&[&str], u8, bool, bool, &str)] = &[
        (&[], 4, true, false, "DAAAAAAD"), // rate verdict ignored without `limited`
        (&["limited"], 4, true, false, "DDDDDDAD"),
        (&["limited", "kod"], 4, true, false, "DDDKDDAD"), // only clients are kissed
        (&["kod"], 4, true, false, "DAAAAAAD"),
        (&["notrust"], 4, false, true, "DAAAAAAD"),
        (&["notrust", "limited", "kod"], 4, true, true, "DDDKDDAD"),
        (&["version"], 3, false, false, "DDDDDDAD"),
        (&["version"], 4, false, false, "DAAAAAAD"),
        (&[], 3, false, false, "DAAAAAAD"),
        (&[], 1, false, false, "DAAAAAAD"),
        (&[], 0, false, false, "DDDDDDAD"),
        (&[], 5, false, false, "DDDDDDAD"),
        (&["noquery"], 5, false, false, "DDDDDDDD"),
        (&["ignore"], 4, false, true, "DDDDDDDD"),
    ];
    for (names, version, limited, auth, exp) in cases {
        assert_eq!(
            row(f(names), *version, *limited, *auth),
            *exp,
            "{names:?} v{version} rl={limited} auth={auth}"
        );
    }
}

#[test]
fn control_and_mobilization_helpers() {
    type Check = fn(RestrictFlags) -> bool;
    let checks: [(&str, Check); 5] = [
        ("query", RestrictFlags::allows_query),
        ("modify", RestrictFlags::allows_modify),
        ("trap", RestrictFlags::allows_trap),
        ("mrulist", RestrictFlags::allows_mrulist),
        ("peer", |f| f.allows_peer_mobilization(false)),
    ];
    // Which helpers each flag turns off (in the order above).
    let expected: &[(RestrictFlags, [bool; 5])] = &[
        (RestrictFlags::empty(), [true, true, true, true, true]),
        (RestrictFlags::IGNORE, [false, false, false, false, false]),
        (RestrictFlags::NOQUERY, [false, false, false, false, true]),
        (RestrictFlags::NOMODIFY, [true, false, true, true, true]),
        (RestrictFlags::NOTRAP, [true, true, false, true, true]),
        (RestrictFlags::NOMRULIST, [true, true, true, false, true]),
        (RestrictFlags::NOPEER, [true, true, true, true, false]),
        (RestrictFlags::NOEPEER, [true, true, true, true, false]),
        (RestrictFlags::NOSERVE, [true, true, true, true, true]),
        (RestrictFlags::LOWPRIOTRAP, [true, true, true, true, true]),
    ];
    for (flags, want) in expected {
        let got: Vec<bool> = checks.iter().map(|(_, c)| c(*flags)).collect();
        assert_eq!(got, want, "{flags}");
    }
    assert!(
        RestrictFlags::NOPEER.allows_peer_mobilization(true),
        "authenticated peers may mobilise"
    );
    assert!(
        !RestrictFlags::NOEPEER.allows_peer_mobilization(true),
        "noepeer refuses even authenticated"
    );
}

#[test]
fn packet_mode_conversions() {
    for n in 0..=7u8 {
        assert_eq!(PacketMode::from_u8(n).unwrap().as_u8(), n);
        assert_eq!(PacketMode::from_bits(n | 0b1110_0000).as_u8(), n);
    }
    assert_eq!(PacketMode::from_u8(8), None);
    assert_eq!(KodKind::Rate.code(), *b"RATE");
}

#[test]
fn most_specific_entry_wins_regardless_of_order() {
    let forwards = "restrict 10.0.0.0 mask 255.0.0.0 noquery\nrestrict 10.1.0.0 mask 255.255.0.0 nomodify\nrestrict 10.1.2.3 notrap\n";
    let backwards: String = forwards.lines().rev().map(|l| format!("{l}\n")).collect();
    for text in [forwards, backwards.as_str()] {
        let t = table(text);
        assert_eq!(t.lookup(ip("10.1.2.3")), RestrictFlags::NOTRAP);
        assert_eq!(t.lookup(ip("10.1.2.4")), RestrictFlags::NOMODIFY);
        assert_eq!(t.lookup(ip("10.2.0.1")), RestrictFlags::NOQUERY);
        assert_eq!(t.lookup(ip("11.0.0.1")), RestrictFlags::empty());
    }
}

#[test]
fn same_address_and_mask_or_their_flags() {
    let t = table("restrict 10.0.0.0/8 noquery\nrestrict 10.9.9.9 mask 255.0.0.0 nomodify ippeerlimit 4\nrestrict 10.0.0.0/16 notrap\n");
    let m = t.lookup_match(ip("10.5.5.5"), None);
    assert_eq!(m.flags, RestrictFlags::NOQUERY | RestrictFlags::NOMODIFY);
    assert_eq!(m.ippeerlimit, Some(4));
    // The /16 is a different entry, not merged.
    assert_eq!(t.lookup(ip("10.0.5.5")), RestrictFlags::NOTRAP);
    // Two entries plus the IPv4 and IPv6 defaults.
    assert_eq!(t.entries().count(), 4);
}

#[test]
fn defaults_per_family() {
    let none = table("");
    assert_eq!(none.lookup(ip("192.0.2.1")), RestrictFlags::empty());
    assert_eq!(none.lookup(ip("2001:db8::1")), RestrictFlags::empty());

    let both = table("restrict default noquery");
    assert_eq!(both.lookup(ip("192.0.2.1")), RestrictFlags::NOQUERY);
    assert_eq!(both.lookup(ip("2001:db8::1")), RestrictFlags::NOQUERY);

    let v4 = table("restrict -4 default ignore");
    assert_eq!(v4.lookup(ip("192.0.2.1")), RestrictFlags::IGNORE);
    assert_eq!(v4.lookup(ip("2001:db8::1")), RestrictFlags::empty());

    let v6 = table("restrict -6 default ignore\nrestrict default noquery");
    assert_eq!(v6.lookup(ip("192.0.2.1")), RestrictFlags::NOQUERY);
    assert_eq!(
        v6.lookup(ip("2001:db8::1")),
        RestrictFlags::IGNORE | RestrictFlags::NOQUERY
    );

    let removed = table("restrict default noquery\nunrestrict -6 default");
    assert_eq!(removed.lookup(ip("192.0.2.1")), RestrictFlags::NOQUERY);
    assert_eq!(removed.lookup(ip("2001:db8::1")), RestrictFlags::empty());
}

#[test]
fn ipv6_prefixes_and_mapped_addresses() {
    let t = table("restrict default ignore\nrestrict 2001:db8::/32 noquery\nrestrict -6 2001:db8:1:: mask ffff:ffff:ffff:: nomodify\nrestrict 192.0.2.0/24 notrap\n");
    assert_eq!(t.lookup(ip("2001:db8::1")), RestrictFlags::NOQUERY);
    assert_eq!(t.lookup(ip("2001:db8:1::7")), RestrictFlags::NOMODIFY);
    assert_eq!(t.lookup(ip("2001:db9::1")), RestrictFlags::IGNORE);
    assert_eq!(t.lookup(ip("::ffff:192.0.2.9")), RestrictFlags::NOTRAP);
    assert_eq!(t.lookup(ip("::ffff:198.51.100.1")), RestrictFlags::IGNORE);
    // An IPv4-compatible (not mapped) address stays in the IPv6 list.
    assert_eq!(t.lookup(ip("::192.0.2.9")), RestrictFlags::IGNORE);
}

#[test]
fn ntpport_entries_match_only_port_123() {
    let t = table("restrict 192.0.2.0/24 noquery\nrestrict 192.0.2.1 ntpport nomodify\n");
    assert_eq!(
        t.lookup_match(ip("192.0.2.1"), Some(123)).flags,
        RestrictFlags::NTPPORT | RestrictFlags::NOMODIFY
    );
    assert_eq!(
        t.lookup_match(ip("192.0.2.1"), Some(50123)).flags,
        RestrictFlags::NOQUERY
    );
    assert_eq!(t.lookup(ip("192.0.2.1")), RestrictFlags::NOQUERY);
}

#[test]
fn source_template_applies_to_server_addresses() {
    let mut t = table("restrict default ignore\nrestrict source nomodify notrap\n");
    assert_eq!(t.lookup(ip("203.0.113.5")), RestrictFlags::IGNORE);
    assert!(t.add_source_address(ip("203.0.113.5")));
    assert!(t.add_source_address(ip("::ffff:198.51.100.7")));
    assert!(t.add_source_address(ip("2001:db8::123")));
    let want = RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP;
    assert_eq!(t.lookup(ip("203.0.113.5")), want);
    assert_eq!(t.lookup(ip("198.51.100.7")), want);
    assert_eq!(t.lookup(ip("2001:db8::123")), want);
    assert_eq!(t.lookup(ip("203.0.113.6")), RestrictFlags::IGNORE);

    let mut no_template = table("restrict default ignore");
    assert!(!no_template.add_source_address(ip("203.0.113.5")));
    assert_eq!(no_template.lookup(ip("203.0.113.5")), RestrictFlags::IGNORE);
}

#[test]
fn host_names_wait_for_the_daemon_to_resolve_them() {
    let mut t = table("restrict default ignore\nrestrict ntp.example.com noquery\nrestrict lan.example.com mask 255.255.255.0 nomodify\n");
    assert_eq!(
        t.unresolved_hosts().collect::<Vec<_>>(),
        ["ntp.example.com", "lan.example.com"]
    );
    assert_eq!(
        t.resolve_host("ntp.example.com", &[ip("192.0.2.10"), ip("2001:db8::10")]),
        2
    );
    assert_eq!(t.lookup(ip("192.0.2.10")), RestrictFlags::NOQUERY);
    assert_eq!(t.lookup(ip("2001:db8::10")), RestrictFlags::NOQUERY);
    // An IPv4 mask cannot apply to an IPv6 address.
    assert_eq!(
        t.resolve_host(
            "lan.example.com",
            &[ip("198.51.100.20"), ip("2001:db8::20")]
        ),
        1
    );
    assert_eq!(t.lookup(ip("198.51.100.99")), RestrictFlags::NOMODIFY);
    assert_eq!(t.resolve_host("unknown.example.com", &[ip("192.0.2.1")]), 0);
}

#[test]
fn programmatic_apply_and_remove() {
    let mut t = RestrictTable::new();
    let d = RestrictDirective {
        target: RestrictTarget::Addr(ip("10.0.0.0")),
        mask: Some(ip("ffff::")),
        flags: RestrictFlags::IGNORE,
        ippeerlimit: None,
    };
    assert!(!t.apply(&d), "mixed-family mask is refused");
    assert_eq!(t, RestrictTable::new());
    let d = RestrictDirective {
        target: RestrictTarget::Default(Some(AddrFamily::V4)),
        mask: None,
        flags: RestrictFlags::KOD,
        ippeerlimit: None,
    };
    assert!(t.apply(&d));
    assert_eq!(t.lookup(ip("1.2.3.4")), RestrictFlags::KOD);
    // Default entries always exist (as in ntpd): removing resets them.
    assert!(t.remove(&d.target, None));
    assert_eq!(t.lookup(ip("1.2.3.4")), RestrictFlags::empty());
    assert_eq!(t, RestrictTable::new());
    let host = RestrictTarget::Addr(ip("10.0.0.1"));
    assert!(!t.remove(&host, None), "nothing to remove");
}
