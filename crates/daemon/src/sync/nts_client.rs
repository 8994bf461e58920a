//! Key exchanges for the daemon's NTS associations (`server HOST nts [ca FILE] [noval]`).
//!
//! NTS-KE is a TLS handshake and a few records: too slow for the sync loop, so each runs
//! on a short-lived thread of its own and reports back over a channel. A failed exchange
//! is retried with a growing pause, so an unreachable or misconfigured server is not
//! hammered.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use meridian_nts::{key_exchange, NtsClientState, TrustAnchors};
use meridian_sync::SyncCore;

/// How long one key exchange may take.
pub const KE_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause after a failed exchange; doubles up to [`KE_MAX_BACKOFF`].
pub const KE_BACKOFF: f64 = 16.0;
/// Longest pause between attempts.
pub const KE_MAX_BACKOFF: f64 = 1024.0;

/// Where and how to run the key exchange of one association.
#[derive(Debug, Clone)]
pub struct NtsTarget {
    /// The server's name, checked against its certificate.
    pub name: String,
    /// The NTS-KE server's address.
    pub ke_addr: SocketAddr,
    /// How to authenticate it.
    pub trust: TrustAnchors,
}

struct Tracked {
    target: NtsTarget,
    next_try: f64,
    backoff: f64,
    in_flight: bool,
}

type Outcome = (u16, Result<(NtsClientState, SocketAddr), String>);

/// The key exchanges of all NTS associations.
pub struct KeyExchanges {
    tracked: HashMap<u16, Tracked>,
    results: Receiver<Outcome>,
    sender: Sender<Outcome>,
}

impl Default for KeyExchanges {
    fn default() -> Self {
        let (sender, results) = mpsc::channel();
        KeyExchanges {
            tracked: HashMap::new(),
            results,
            sender,
        }
    }
}

fn exchange(target: &NtsTarget) -> Result<(NtsClientState, SocketAddr), String> {
    let state = key_exchange(&target.name, target.ke_addr, &target.trust, KE_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let ntp_addr = ntp_address(target, &state)?;
    Ok((state, ntp_addr))
}

/// Where the NTP packets of an association go after its key exchange: the port the
/// NTS-KE server named (else 123) on the host it named. Without a Server Negotiation
/// record (which the key exchange reports as our own name for the host), that is the
/// NTS-KE server's own address (RFC 8915 §4.1.7): resolving the name again could give
/// another of its addresses, i.e. another host of a round-robin name, which cannot open
/// the cookies this one issued. A named host is resolved, preferring the KE address's
/// family.
fn ntp_address(target: &NtsTarget, state: &NtsClientState) -> Result<SocketAddr, String> {
    if state.server == target.name {
        return Ok(SocketAddr::new(target.ke_addr.ip(), state.port));
    }
    let addrs: Vec<SocketAddr> = (state.server.as_str(), state.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve NTP server {}: {e}", state.server))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4() == target.ke_addr.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("no address for NTP server {}", state.server))
}

impl KeyExchanges {
    /// Track association `id`.
    pub fn add(&mut self, id: u16, target: NtsTarget, now: f64) {
        self.tracked.insert(
            id,
            Tracked {
                target,
                next_try: now,
                backoff: KE_BACKOFF,
                in_flight: false,
            },
        );
    }

    /// Forget associations that no longer exist.
    pub fn retain(&mut self, core: &SyncCore) {
        self.tracked
            .retain(|id, _| core.associations().iter().any(|a| a.id == *id));
    }

    /// Start the exchanges the core needs and install the ones that finished.
    pub fn drive(&mut self, core: &mut SyncCore, now: f64) {
        while let Ok((id, result)) = self.results.try_recv() {
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            t.in_flight = false;
            match result {
                Ok((state, ntp_addr)) => {
                    tracing::info!(
                        "NTS key exchange with {} done: {} cookies, NTP at {ntp_addr}",
                        t.target.name,
                        state.cookies.len()
                    );
                    t.backoff = KE_BACKOFF;
                    core.install_nts(id, state, ntp_addr);
                }
                Err(e) => {
                    tracing::warn!(
                        "NTS key exchange with {} failed: {e}; retrying in {} s",
                        t.target.name,
                        t.backoff
                    );
                    t.next_try = now + t.backoff;
                    t.backoff = (t.backoff * 2.0).min(KE_MAX_BACKOFF);
                }
            }
        }
        for id in core.nts_key_exchange_needed() {
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            if t.in_flight || t.next_try > now {
                continue;
            }
            t.in_flight = true;
            // Until it answers, don't retry sooner than the backoff either.
            t.next_try = now + t.backoff;
            let target = t.target.clone();
            let sender = self.sender.clone();
            let spawned = std::thread::Builder::new()
                .name("nts-ke-client".into())
                .spawn(move || {
                    let _ = sender.send((id, exchange(&target)));
                });
            if let Err(e) = spawned {
                tracing::error!("cannot start an NTS key exchange: {e}");
                t.in_flight = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_nts::AeadKey;

    fn target(ke_addr: &str) -> NtsTarget {
        NtsTarget {
            name: "ntp.example".into(),
            ke_addr: ke_addr.parse().unwrap(),
            trust: TrustAnchors::NoVerification,
        }
    }

    fn state(server: &str, port: u16) -> NtsClientState {
        let key = AeadKey::from_bytes([7; 32]);
        NtsClientState::new(key.clone(), key, vec![vec![1; 100]], server.into(), port)
    }

    #[test]
    fn without_a_server_record_ntp_goes_to_the_ke_servers_address() {
        // The name is not resolvable here: it must not be looked up at all.
        let t = target("192.0.2.7:4460");
        let addr = ntp_address(&t, &state("ntp.example", 123)).unwrap();
        assert_eq!(addr, "192.0.2.7:123".parse().unwrap());
        let t = target("[2001:db8::7]:4460");
        let addr = ntp_address(&t, &state("ntp.example", 10123)).unwrap();
        assert_eq!(addr, "[2001:db8::7]:10123".parse().unwrap());
    }

    #[test]
    fn a_named_server_is_resolved_in_either_family() {
        let t = target("[::1]:4460");
        let addr = ntp_address(&t, &state("127.0.0.2", 10123)).unwrap();
        assert_eq!(addr, "127.0.0.2:10123".parse().unwrap());
        let t = target("127.0.0.1:4460");
        let addr = ntp_address(&t, &state("::1", 123)).unwrap();
        assert_eq!(addr, "[::1]:123".parse().unwrap());
    }
}
