//! The user-story corpus: the seed line and a stock CentOS ntp.conf must
//! load unchanged, without errors, with the access rules ntpd would apply.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use meridian_conf::{
    parse_config, parse_str, AssociationKind, FsSource, MemorySource, RestrictFlags, Severity,
    SourceKind,
};

const SEED: &str = include_str!("corpus/seed.conf");
const CENTOS: &str = include_str!("corpus/centos.conf");

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn seed_masks_the_address_and_restricts_the_whole_24() {
    let cfg = parse_str("/etc/ntp.conf", SEED, &MemorySource::new()).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let both = RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP;
    assert_eq!(cfg.restrict.lookup(ip("192.168.44.7")), both);
    assert_eq!(cfg.restrict.lookup(ip("192.168.44.130")), both);
    assert_eq!(cfg.restrict.lookup(ip("192.168.44.255")), both);
    // Outside the /24 nothing matches and the implicit default allows all.
    assert_eq!(
        cfg.restrict.lookup(ip("192.168.45.7")),
        RestrictFlags::empty()
    );
    assert!(!cfg.restrict.lookup(ip("192.168.44.7")).allows_modify());
    assert!(cfg.restrict.lookup(ip("192.168.44.7")).allows_query());
}

#[test]
fn seed_loads_from_the_filesystem_through_fs_source() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/seed.conf");
    let cfg = parse_config(&path, &FsSource).unwrap();
    assert_eq!(
        cfg.restrict.lookup(ip("192.168.44.7")),
        RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP
    );
}

#[test]
fn centos_config_loads_with_only_the_missing_include_warning() {
    let cfg = parse_str("/etc/ntp.conf", CENTOS, &MemorySource::new()).unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    let w = &cfg.warnings[0];
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.line, 12);
    assert!(w.message.starts_with("'/etc/ntp/crypto/pw'"), "{w}");

    assert_eq!(
        cfg.driftfile.as_ref().unwrap().path,
        PathBuf::from("/var/lib/ntp/drift")
    );
    assert_eq!(cfg.keys, Some(PathBuf::from("/etc/ntp/keys")));
    assert!(!cfg.system.monitor);
    assert!(cfg.system.auth, "untouched switches keep their defaults");

    let names: Vec<&str> = cfg.sources.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.centos.pool.ntp.org",
            "1.centos.pool.ntp.org",
            "2.centos.pool.ntp.org",
            "3.centos.pool.ntp.org",
            "127.127.1.0"
        ]
    );
    assert!(cfg.sources[..4]
        .iter()
        .all(|s| s.iburst && s.kind == SourceKind::Server));
    let local = &cfg.sources[4];
    assert!(local.is_local_clock());
    assert_eq!(
        local.association(),
        AssociationKind::Refclock { driver: 1, unit: 0 }
    );
    assert!(!cfg.sources[0].is_local_clock());
    assert_eq!(local.line, 10);
    assert_eq!(cfg.fudge[&"127.127.1.0".parse().unwrap()].stratum, Some(10));
}

#[test]
fn centos_restrict_rules_behave_like_ntpd() {
    let cfg = parse_str("/etc/ntp.conf", CENTOS, &MemorySource::new()).unwrap();
    let t = &cfg.restrict;
    let default = RestrictFlags::NOMODIFY
        | RestrictFlags::NOTRAP
        | RestrictFlags::NOPEER
        | RestrictFlags::NOQUERY;
    // `restrict default` covers both families.
    assert_eq!(t.lookup(ip("203.0.113.9")), default);
    assert_eq!(t.lookup(ip("2001:db8::9")), default);
    // Loopback is unrestricted in both families.
    assert_eq!(t.lookup(ip("127.0.0.1")), RestrictFlags::empty());
    assert_eq!(t.lookup(ip("::1")), RestrictFlags::empty());
    // The LAN may query but not modify.
    assert_eq!(
        t.lookup(ip("192.168.44.7")),
        RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP
    );
    // An IPv4-mapped IPv6 source is judged by the IPv4 list.
    assert_eq!(t.lookup(ip("::ffff:127.0.0.1")), RestrictFlags::empty());
    assert_eq!(
        t.lookup(ip("::ffff:192.168.44.7")),
        t.lookup(ip("192.168.44.7"))
    );
}

#[test]
fn centos_config_reads_an_include_when_present() {
    let src = MemorySource::new().with("/etc/ntp/crypto/pw", "# password file\ncrypto pw secret\n");
    let cfg = parse_str("/etc/ntp.conf", CENTOS, &src).unwrap();
    assert_eq!(cfg.included_files, [PathBuf::from("/etc/ntp/crypto/pw")]);
    assert_eq!(cfg.unsupported.len(), 1);
    assert_eq!(cfg.unsupported[0].directive, "crypto");
    assert_eq!(cfg.unsupported[0].file, PathBuf::from("/etc/ntp/crypto/pw"));
    assert_eq!(cfg.unsupported[0].line, 2);
    assert!(cfg.warnings[0].to_string().contains("not implemented"));
}
