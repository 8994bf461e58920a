//! Control variables for network associations, from the synchronisation core.
//!
//! Builds on the local-reference snapshot ([`super::local::local_snapshot`]): adds one
//! peer per association with its selection status (the tally `ntpq -p` shows), and when
//! a network source is the system peer, fills the system variables from the discipline
//! (offset, frequency, jitter, wander, poll) the way ntpd reports them.
//!
//! `dstadr`, the local address of an association, is the one the kernel sends from to
//! that server ([`LocalAddresses`]): the client socket is bound to the wildcard
//! address, so that is the address the server sees.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// How long a looked-up local address is trusted before asking the kernel again (routes
/// and addresses change, rarely).
const LOCAL_ADDRESS_TTL: Duration = Duration::from_secs(300);

/// The local address the kernel picks to reach each remote, looked up by connecting a
/// fresh UDP socket (which sends nothing) and cached per remote address.
#[derive(Debug, Default)]
pub struct LocalAddresses {
    cache: Mutex<HashMap<IpAddr, (Option<IpAddr>, Instant)>>,
}

impl LocalAddresses {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The local address for `remote`, `None` when there is no route.
    pub fn lookup(&self, remote: SocketAddr) -> Option<IpAddr> {
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((local, at)) = cache.get(&remote.ip()) {
            if now.duration_since(*at) < LOCAL_ADDRESS_TTL {
                return *local;
            }
        }
        let local = route_source(remote);
        // Bounded: only configured and pool associations are looked up.
        if cache.len() > 1024 {
            cache.clear();
        }
        cache.insert(remote.ip(), (local, now));
        local
    }
}

fn route_source(remote: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if remote.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(remote).ok()?;
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_unspecified())
}

/// The peer variables of one association (`dstadr` unspecified: [`add_network`] fills
/// it in).
pub fn association_variables(a: &Association, status: SelectStatus) -> PeerVariables {
    let s = &a.source;
    let info = s.info();
    let out = s.filter_output();
    let reach = s.reach();
    let symmetric = s.options().symmetric;
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
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
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
        // ntpq's type column reads these: `s` for a `peer` line, `u` for the rest.
        hmode: if symmetric { 1 } else { 3 },
        pmode: if symmetric { 2 } else { 4 },
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
pub fn add_network(snapshot: &mut ControlSnapshot, core: &SyncCore, locals: &LocalAddresses) {
    let sys = core.system();
    for a in core.associations() {
        let mut vars = association_variables(a, core.status_of(a.id));
        if let Some(local) = locals.lookup(a.addr) {
            vars.dstadr = local;
        }
        snapshot.peers.push(vars);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_address_is_the_routes_source() {
        let locals = LocalAddresses::new();
        let lo: SocketAddr = "127.0.0.1:123".parse().unwrap();
        assert_eq!(locals.lookup(lo), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // Cached: the same answer without asking again.
        assert_eq!(locals.lookup(lo), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(locals.cache.lock().unwrap().len(), 1);
    }
}
