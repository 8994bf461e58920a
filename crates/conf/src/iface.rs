//! `interface` / `nic`: which local addresses the daemon listens on.

use std::fmt;
use std::net::IpAddr;

use crate::args::{int_in, Ctx};
use crate::assoc::parse_ip_literal;

/// What to do with the matching interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterfaceAction {
    /// Open a socket and serve.
    Listen,
    /// Open no socket.
    Ignore,
    /// Open a socket but drop everything received on it.
    Drop,
}

/// Which interfaces a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceTarget {
    /// `all`.
    All,
    /// `ipv4`: every IPv4 address.
    Ipv4,
    /// `ipv6`: every IPv6 address.
    Ipv6,
    /// `wildcard`: the wildcard sockets.
    Wildcard,
    /// An interface name such as `eth0`.
    Name(String),
    /// An address or prefix; `prefix` `None` means the exact address.
    Addr {
        /// The address.
        addr: IpAddr,
        /// Prefix length, if written as `ADDR/len`.
        prefix: Option<u8>,
    },
}

/// One `interface` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceRule {
    /// listen / ignore / drop.
    pub action: InterfaceAction,
    /// Which interfaces.
    pub target: InterfaceTarget,
}

impl fmt::Display for InterfaceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            InterfaceAction::Listen => "listen",
            InterfaceAction::Ignore => "ignore",
            InterfaceAction::Drop => "drop",
        };
        write!(f, "interface {action} ")?;
        match &self.target {
            InterfaceTarget::All => f.write_str("all"),
            InterfaceTarget::Ipv4 => f.write_str("ipv4"),
            InterfaceTarget::Ipv6 => f.write_str("ipv6"),
            InterfaceTarget::Wildcard => f.write_str("wildcard"),
            InterfaceTarget::Name(n) => f.write_str(n),
            InterfaceTarget::Addr { addr, prefix: None } => write!(f, "{addr}"),
            InterfaceTarget::Addr {
                addr,
                prefix: Some(p),
            } => write!(f, "{addr}/{p}"),
        }
    }
}

/// Parse an `interface`/`nic` line (`keyword` is the one used, for messages).
pub(crate) fn parse_interface(
    ctx: &mut Ctx<'_>,
    keyword: &str,
    words: &[String],
) -> Option<InterfaceRule> {
    let [action, target] = words else {
        ctx.error(
            keyword,
            "expected: listen|ignore|drop all|ipv4|ipv6|wildcard|NAME|ADDR[/len]",
        );
        return None;
    };
    let action = match action.as_str() {
        "listen" => InterfaceAction::Listen,
        "ignore" => InterfaceAction::Ignore,
        "drop" => InterfaceAction::Drop,
        other => {
            ctx.error(other, "interface action must be listen, ignore or drop");
            return None;
        }
    };
    let target = match target.as_str() {
        "all" => InterfaceTarget::All,
        "ipv4" => InterfaceTarget::Ipv4,
        "ipv6" => InterfaceTarget::Ipv6,
        "wildcard" => InterfaceTarget::Wildcard,
        t => parse_target(ctx, t)?,
    };
    Some(InterfaceRule { action, target })
}

fn parse_target(ctx: &mut Ctx<'_>, t: &str) -> Option<InterfaceTarget> {
    if let Some((a, len)) = t.split_once('/') {
        let Some(addr) = parse_ip_literal(a) else {
            ctx.error(t, "not an address prefix");
            return None;
        };
        let max = if addr.is_ipv4() { 32u8 } else { 128 };
        let prefix = int_in(ctx, "prefix length", len, 0u8, max)?;
        return Some(InterfaceTarget::Addr {
            addr,
            prefix: Some(prefix),
        });
    }
    if let Some(addr) = parse_ip_literal(t) {
        return Some(InterfaceTarget::Addr { addr, prefix: None });
    }
    // Linux interface names: up to 15 bytes, no '/', whitespace or ':'
    // beyond alias suffixes; be permissive but reject obvious garbage.
    if !t.is_empty()
        && t.len() <= 15
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@'))
    {
        return Some(InterfaceTarget::Name(t.to_string()));
    }
    ctx.error(t, "not an interface name or address");
    None
}
