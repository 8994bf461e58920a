//! Building a [`ControlSnapshot`] from what the daemon serves.
//!
//! Until network sync lands, the served reference is the local clock driver or orphan
//! mode ([`LocalReference`]); [`local_snapshot`] describes it the way classic ntpd does,
//! so `ntpq -p` shows
//!
//! ```text
//! *LOCAL(0)        .LOCL.          10 l   36   64  377    0.000    0.000   0.000
//! ```
//!
//! **For the sync work:** build a snapshot with [`system_variables`] (from the served
//! [`ServerState`], then set `peer`, `tc`, `offset`, `frequency`, the jitters and the
//! status word's source from the discipline) plus one [`PeerVariables`] per source, and
//! hand it to [`SharedControl::publish`](super::SharedControl::publish).

use std::net::{IpAddr, Ipv4Addr};

use meridian_proto::control::{peer_event, source, sys_event};
use meridian_proto::{
    LeapIndicator, NtpTimestamp, PeerSelect, PeerStatus, ReferenceId, ServerState, SystemStatus,
};
use meridian_sync::SyncCore;

use super::vars::{ControlSnapshot, PeerVariables, SystemVariables};
use super::SharedControl;
use crate::reference::{LocalReference, LOCAL_DRIVER_PRECISION, LOCAL_POLL_SECONDS};

/// The local clock driver's poll exponent (64 s).
const LOCAL_POLL_LOG2: i8 = 6;
/// ntpd's default minimum poll exponent (`mintc`).
const MIN_POLL_LOG2: i8 = 3;

/// What `version`, `processor` and `system` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// The daemon's version string.
    pub version: String,
    /// Machine architecture (`uname -m`).
    pub processor: String,
    /// Operating system and release (`uname -sr`, as `Linux/6.1.0`).
    pub system: String,
}

impl HostInfo {
    /// This host and this build.
    pub fn detect() -> Self {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = match std::env::consts::OS {
            "linux" => "Linux",
            other => other,
        };
        HostInfo {
            version: format!("meridian {}", env!("CARGO_PKG_VERSION")),
            processor: std::env::consts::ARCH.to_string(),
            system: format!("{os}/{}", release.trim()),
        }
    }
}

/// System variables for what the server serves, with the discipline's fields at rest
/// (zero offset and frequency, poll 2^6) and no system peer; callers that have a
/// discipline overwrite those.
pub fn system_variables(server: &ServerState, host: &HostInfo) -> SystemVariables {
    let leap = leap_bits(server.leap);
    let synced = leap != 3;
    SystemVariables {
        status: SystemStatus {
            leap,
            source: source::UNSPEC,
            event_count: 1,
            last_event: if synced {
                sys_event::CLOCK_SYNC
            } else {
                sys_event::RESTART
            },
        },
        version: host.version.clone(),
        processor: host.processor.clone(),
        system: host.system.clone(),
        leap,
        stratum: server.stratum,
        precision: server.precision,
        root_delay: server.root_delay.to_seconds_f64(),
        root_dispersion: server.root_dispersion.to_seconds_f64(),
        refid: server.reference_id,
        reftime: server.reference_ts,
        peer: 0,
        tc: LOCAL_POLL_LOG2,
        mintc: MIN_POLL_LOG2,
        offset: 0.0,
        frequency: 0.0,
        sys_jitter: 0.0,
        clk_jitter: 0.0,
        clk_wander: 0.0,
        tai: None,
        leapsec: None,
        expire: None,
    }
}

fn leap_bits(leap: LeapIndicator) -> u8 {
    match leap {
        LeapIndicator::NoWarning => 0,
        LeapIndicator::InsertSecond => 1,
        LeapIndicator::DeleteSecond => 2,
        LeapIndicator::Unsynchronized => 3,
    }
}

/// The local clock driver's reach register: one bit per 64 s poll since `started`,
/// counted at the same whole-minute boundaries as the served reference time.
pub fn local_reach(started: NtpTimestamp, reftime: NtpTimestamp) -> u8 {
    let poll = LOCAL_POLL_SECONDS as u64;
    let first = started.seconds() as u64 / poll;
    let latest = reftime.seconds() as u64 / poll;
    let polls = latest.saturating_sub(first) + 1;
    if polls >= 8 {
        0xff
    } else {
        ((1u16 << polls) - 1) as u8
    }
}

/// The snapshot for a daemon serving `reference` (started at `started`), whose served
/// state is `server`. The local clock driver is association `assoc_id`.
pub fn local_snapshot(
    reference: &LocalReference,
    server: &ServerState,
    started: NtpTimestamp,
    assoc_id: u16,
    host: &HostInfo,
) -> ControlSnapshot {
    let mut system = system_variables(server, host);
    let LocalReference::LocalClock { address, stratum } = *reference else {
        return ControlSnapshot {
            system,
            peers: Vec::new(),
        };
    };
    system.peer = assoc_id;
    system.status.source = source::LOCAL;
    let reach = local_reach(started, server.reference_ts);
    let peer = PeerVariables {
        assoc_id,
        status: PeerStatus {
            configured: true,
            reachable: reach != 0,
            select: PeerSelect::SysPeer,
            event_count: 3,
            last_event: peer_event::SYS_PEER,
            ..Default::default()
        },
        srcadr: IpAddr::V4(address),
        srcport: 123,
        srchost: Some(format!("LOCAL({})", address.octets()[3])),
        dstadr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        dstport: 123,
        leap: 0,
        stratum,
        precision: LOCAL_DRIVER_PRECISION,
        root_delay: 0.0,
        root_dispersion: 0.0,
        refid: ReferenceId::LOCL,
        reftime: server.reference_ts,
        rec: server.reference_ts,
        reach,
        unreach: 0,
        hmode: 3,
        pmode: 4,
        hpoll: LOCAL_POLL_LOG2,
        ppoll: LOCAL_POLL_LOG2,
        headway: 0,
        flash: 0,
        keyid: 0,
        offset: 0.0,
        delay: 0.0,
        dispersion: server.root_dispersion.to_seconds_f64(),
        jitter: 0.0,
        filter: vec![(0.0, 0.0, 0.0); 8],
    };
    ControlSnapshot {
        system,
        peers: vec![peer],
    }
}

/// Keeps what the published snapshot needs between updates (start time, the local
/// driver's association id, host strings) and publishes a fresh one on each turn of the
/// main loop.
pub struct ControlPublisher {
    /// The shared state handed to the workers.
    pub shared: SharedControl,
    started: NtpTimestamp,
    assoc_id: u16,
    host: HostInfo,
    locals: super::network::LocalAddresses,
}

impl ControlPublisher {
    /// Start at `now` (served clock) with an empty snapshot; call [`Self::publish`].
    pub fn new(now: NtpTimestamp) -> Self {
        let host = HostInfo::detect();
        let server = ServerState::unsynchronized(0);
        let initial = ControlSnapshot {
            system: system_variables(&server, &host),
            peers: Vec::new(),
        };
        ControlPublisher {
            shared: SharedControl::new(initial, now),
            started: now,
            assoc_id: super::random_association_id(),
            host,
            locals: super::network::LocalAddresses::new(),
        }
    }

    /// Publish the snapshot for serving `server` from `reference`, with the network
    /// associations of `core`.
    pub fn publish(&self, reference: &LocalReference, server: &ServerState, core: &SyncCore) {
        let mut snapshot =
            local_snapshot(reference, server, self.started, self.assoc_id, &self.host);
        super::network::add_network(&mut snapshot, core, &self.locals);
        self.shared.publish(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_conf::{parse_str, MemorySource};

    fn reference(text: &str) -> LocalReference {
        LocalReference::from_config(&parse_str("t.conf", text, &MemorySource::new()).unwrap())
    }

    #[test]
    fn reach_builds_up_one_bit_per_poll() {
        // A whole multiple of 64 s in both Unix and NTP seconds: a poll boundary.
        const BOUNDARY: i64 = 1_800_000_000;
        let start = NtpTimestamp::from_unix(BOUNDARY + 10, 0);
        let at = |polls: i64| NtpTimestamp::from_unix(BOUNDARY + 64 * polls, 0);
        let reaches: Vec<u8> = (0..10).map(|k| local_reach(start, at(k))).collect();
        assert_eq!(
            reaches,
            [1, 3, 7, 0o17, 0o37, 0o77, 0o177, 0o377, 0o377, 0o377]
        );
    }

    #[test]
    fn local_clock_is_the_system_peer() {
        let r = reference("server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n");
        let now = NtpTimestamp::from_unix(1_800_000_000, 0);
        let server = r.server_state(now, -20, 3);
        let host = HostInfo::detect();
        let s = local_snapshot(&r, &server, now, 40123, &host);
        assert_eq!(s.system.stratum, 11);
        assert_eq!(s.system.peer, 40123);
        assert_eq!(
            s.system.status.to_word() & 0xff00,
            0x0500,
            "leap_none, sync_local"
        );
        let p = s.peer(40123).unwrap();
        assert_eq!((p.stratum, p.status.to_word()), (10, 0x963a));
        assert_eq!(p.value("refid").unwrap().unwrap(), "LOCL");
        assert_eq!(p.value("srcadr").unwrap().unwrap(), "127.127.1.0");
        assert!(host.system.starts_with("Linux/") || !cfg!(target_os = "linux"));
    }

    #[test]
    fn unsynchronised_server_has_no_peers_and_alarm_leap() {
        let r = reference("server 192.0.2.1\n");
        let server = r.server_state(NtpTimestamp::from_unix(1_800_000_000, 0), -20, 3);
        let s = local_snapshot(&r, &server, NtpTimestamp::ZERO, 1, &HostInfo::detect());
        assert!(s.peers.is_empty());
        assert_eq!(s.system.status.to_word(), 0xc016);
        assert_eq!(s.system.leap, 3);
    }
}
