//! `meridian_conf::parse_str`: the whole ntp.conf grammar, with an
//! `includefile` that includes the fuzzed text again (include loops). On
//! success the configuration is used as the daemon would (restrict lookups,
//! the local reference, the sync configuration), and its effective text
//! (`ntpd --check`) must parse again.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use meridian_conf::{parse_str, MemorySource};
use meridian_daemon::reference::LocalReference;
use meridian_daemon::sync::{sync_config, SyncFlags};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = MemorySource::new().with("/etc/ntp/inc.conf", text).with(
        "/etc/ntp/other.conf",
        "restrict 10.0.0.0 mask 255.0.0.0 nomodify\n",
    );
    let config = match parse_str("/etc/ntp.conf", text, &source) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for ip in [
        "10.1.2.3",
        "127.0.0.1",
        "::1",
        "2001:db8::1",
        "192.168.44.7",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        let _ = config.restrict.lookup(ip);
    }
    let _ = LocalReference::from_config(&config);
    let _ = sync_config(&config, SyncFlags::default(), Some(12.5));
    let effective = config.to_effective_text();
    if let Err(e) = parse_str("/etc/ntp.conf", &effective, &MemorySource::new()) {
        panic!("effective text does not parse again:\n{effective}\n--- errors:\n{e}");
    }
});
