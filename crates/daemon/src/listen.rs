//! Opening the serving sockets, honouring `interface` lines.
//!
//! By default the daemon listens on the IPv4 and IPv6 wildcard addresses and learns each
//! request's destination from `IP_PKTINFO`, so a reply always leaves from the address the
//! request reached (what ntpd achieves with one socket per address). `interface listen
//! ADDR` opens a socket on that address only, and `interface ignore wildcard` (or `ipv4`,
//! `ipv6`, `all`) closes the wildcard ones. Every socket is opened with `SO_REUSEPORT`
//! once per worker, so the kernel spreads clients over the workers.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use meridian_conf::{InterfaceAction, InterfaceRule, InterfaceTarget};
use socket2::{Domain, Protocol, Socket, Type};

/// The addresses to bind, from the `interface` rules (later rules win, as in ntpd).
pub fn bind_addresses(rules: &[InterfaceRule], port: u16) -> Vec<SocketAddr> {
    let mut wildcard_v4 = true;
    let mut wildcard_v6 = true;
    let mut explicit: Vec<IpAddr> = Vec::new();
    for rule in rules {
        let listen = rule.action == InterfaceAction::Listen;
        match &rule.target {
            InterfaceTarget::All => {
                wildcard_v4 = listen;
                wildcard_v6 = listen;
            }
            InterfaceTarget::Wildcard => {
                wildcard_v4 = listen;
                wildcard_v6 = listen;
            }
            InterfaceTarget::Ipv4 => wildcard_v4 = listen,
            InterfaceTarget::Ipv6 => wildcard_v6 = listen,
            InterfaceTarget::Addr { addr, prefix: None } => {
                explicit.retain(|a| a != addr);
                if listen {
                    explicit.push(*addr);
                }
            }
            // Interface names and prefixes need the interface list; they are matched
            // against the wildcard socket's destination addresses instead.
            InterfaceTarget::Name(_) | InterfaceTarget::Addr { .. } => {}
        }
    }
    // A specific address and the wildcard of its family can't both be bound to the same
    // port on Linux without SO_REUSEADDR games; an explicit listen list means "only these".
    if explicit.iter().any(IpAddr::is_ipv4) {
        wildcard_v4 = false;
    }
    if explicit.iter().any(IpAddr::is_ipv6) {
        wildcard_v6 = false;
    }
    let mut out = Vec::new();
    if wildcard_v4 {
        out.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
    }
    if wildcard_v6 {
        out.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
    }
    out.extend(explicit.into_iter().map(|ip| SocketAddr::new(ip, port)));
    out
}

/// Make sure nobody else serves on `addr` before our workers share it.
///
/// `SO_REUSEPORT` would happily let a second daemon (of the same user) bind the same
/// port and silently split the traffic with the first; a plain bind without it fails if
/// anyone holds the port, which is the error an administrator expects.
pub fn check_free(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!("{addr} is already in use (is another ntpd running?)"),
            )
        } else {
            e
        }
    })
}

/// Open one serving socket on `addr`, shareable by several workers.
pub fn open_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_port(true)?;
    // The receive buffer starts at the kernel's default; each worker then sizes it to
    // the rate it serves (server::rcvbuf), so that a queue never holds more than a few
    // milliseconds of requests.
    socket.bind(&addr.into())?;
    meridian_os::udp::enable_rx_metadata(&socket, addr.is_ipv6(), addr.ip().is_unspecified())?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: InterfaceAction, target: InterfaceTarget) -> InterfaceRule {
        InterfaceRule { action, target }
    }

    #[test]
    fn default_is_both_wildcards() {
        let a = bind_addresses(&[], 123);
        assert_eq!(
            a,
            vec!["0.0.0.0:123".parse().unwrap(), "[::]:123".parse().unwrap()]
        );
    }

    #[test]
    fn explicit_listen_replaces_that_family_wildcard() {
        let a = bind_addresses(
            &[rule(
                InterfaceAction::Listen,
                InterfaceTarget::Addr {
                    addr: "127.0.0.1".parse().unwrap(),
                    prefix: None,
                },
            )],
            4123,
        );
        assert_eq!(
            a,
            vec![
                "[::]:4123".parse().unwrap(),
                "127.0.0.1:4123".parse().unwrap()
            ]
        );
    }

    #[test]
    fn ignore_ipv6_drops_v6_wildcard() {
        let a = bind_addresses(&[rule(InterfaceAction::Ignore, InterfaceTarget::Ipv6)], 123);
        assert_eq!(a, vec!["0.0.0.0:123".parse().unwrap()]);
    }

    #[test]
    fn a_port_held_by_another_process_is_reported_busy() {
        let first = open_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = first.local_addr().unwrap().as_socket().unwrap();
        let err = check_free(addr).expect_err("port is held");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        assert!(check_free(addr).is_ok());
    }

    #[test]
    fn two_sockets_share_a_port_for_two_workers() {
        let first = open_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = first.local_addr().unwrap().as_socket().unwrap().port();
        let second = open_socket(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
        assert!(
            second.is_ok(),
            "SO_REUSEPORT lets a second worker bind: {second:?}"
        );
    }
}
