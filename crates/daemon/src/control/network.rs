//! Control variables for network associations, from the synchronisation core.
//!
//! Builds on the local-reference snapshot ([`super::local::local_snapshot`]): adds one
//! peer per association with its selection status (the tally `ntpq -p` shows), and when
//! a network source is the system peer, fills the system variables from the discipline
//! (offset, frequency, jitter, wander, poll) the way ntpd reports them.

use std::net::{IpAddr, Ipv4Addr};

use meridian_algo::{filter::MAXDISP, SelectStatus};
use meridian_proto::control::{peer_event, source, PeerSelect, PeerStatus};
use meridian_proto::NtpTimestamp;
use meridian_sync::{Association, SyncCore};

use super::vars::{ControlSnapshot, PeerVariables};

fn peer_select(status: SelectStatus) -> PeerSelect {
    match status {
        SelectStatus::Reject => PeerSelect::Reject,
        SelectStatus::Falseticker => PeerSelect::Falsetick,
        SelectStatus::Excess => PeerSelect::Excess,
        SelectStatus::Outlier => PeerSelect::Outlier,
        SelectStatus::Backup => PeerSelect::Backup,
        SelectStatus::Candidate => PeerSelect::Candidate,
        SelectStatus::SysPeer => PeerSelect::SysPeer,
        SelectStatus::PpsPeer => PeerSelect::PpsPeer,
    }
}

/// The peer variables of one association.
pub fn association_variables(a: &Association, status: SelectStatus) -> PeerVariables {
    let s = &a.source;
    let info = s.info();
    let out = s.filter_output();
    let reach = s.reach();
    let select = peer_select(status);
    let filter = s
        .filter()
        .stages()
        .iter()
        .map(|st| st.map_or((0.0, 0.0, MAXDISP), |x| (x.delay, x.offset, x.dispersion)))
        .collect();
    PeerVariables {
        assoc_id: a.id,
        status: PeerStatus {
            configured: true,
            reachable: reach != 0,
            select,
            event_count: 1,
            last_event: if select == PeerSelect::SysPeer {
                peer_event::SYS_PEER
            } else if reach != 0 {
                peer_event::REACHABLE
            } else {
                peer_event::MOBILIZE
            },
            ..Default::default()
        },
        srcadr: a.addr.ip(),
        srcport: a.addr.port(),
        srchost: (a.name != a.addr.ip().to_string()).then(|| a.name.clone()),
        dstadr: if a.addr.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        },
        dstport: 0,
        leap: info.map_or(3, |i| i.leap.to_bits()),
        stratum: info.map_or(16, |i| i.stratum),
        precision: info.map_or(0, |i| i.precision),
        root_delay: info.map_or(0.0, |i| i.root_delay),
        root_dispersion: info.map_or(0.0, |i| i.root_dispersion),
        refid: info.map_or(meridian_proto::ReferenceId::INIT, |i| i.reference_id),
        reftime: info.map_or(NtpTimestamp::ZERO, |i| i.reference_ts),
        rec: s.last_sample().map_or(NtpTimestamp::ZERO, |x| x.t4),
        reach,
        unreach: s.unreach(),
        hmode: 3,
        pmode: 4,
        hpoll: s.poll_log2(),
        ppoll: info.map_or(s.poll_log2(), |i| i.poll),
        headway: 0,
        flash: 0,
        keyid: 0,
        offset: out.map_or(0.0, |o| o.offset),
        delay: out.map_or(0.0, |o| o.delay),
        dispersion: out.map_or(MAXDISP, |o| o.dispersion),
        jitter: out.map_or(0.0, |o| o.jitter),
        filter,
    }
}

/// Add the core's associations to `snapshot`; when a network source is the system peer,
/// it takes over the system variables' peer, source and discipline fields.
pub fn add_network(snapshot: &mut ControlSnapshot, core: &SyncCore) {
    let sys = core.system();
    for a in core.associations() {
        snapshot
            .peers
            .push(association_variables(a, core.status_of(a.id)));
    }
    let Some(peer) = sys.system_peer else { return };
    if sys.leap == meridian_proto::LeapIndicator::Unsynchronized {
        return;
    }
    // A network system peer outranks the local clock driver, which then is just a
    // candidate, as in ntpd when a real server is reachable.
    for p in &mut snapshot.peers {
        if p.is_refclock() && p.status.select == PeerSelect::SysPeer {
            p.status.select = PeerSelect::Candidate;
        }
    }
    let d = &sys.discipline;
    let system = &mut snapshot.system;
    system.peer = peer;
    system.status.source = source::NTP;
    system.offset = sys.offset;
    system.frequency = d.frequency_ppm;
    system.sys_jitter = sys.jitter;
    system.clk_jitter = d.jitter;
    system.clk_wander = d.wander_ppm;
    system.tc = sys.poll;
}
