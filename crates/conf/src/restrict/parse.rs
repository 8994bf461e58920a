//! Parsing of `restrict` and `unrestrict`/`delrestrict` lines.
//!
//! Grammar: `restrict [-4|-6] default|source|ADDR[/len]|HOST [mask M]
//! [flag...] [ippeerlimit N]`. An address is ANDed with its mask, as ntpd
//! does (`192.168.44.130 mask 255.255.255.0` is the /24).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::flags::RestrictFlags;
use super::table::{RestrictDirective, RestrictTarget};
use crate::args::{int_in, Args, Ctx};
use crate::assoc::{is_host_name, parse_ip_literal, AddrFamily};

/// Parse the words after `restrict` (or `unrestrict`, which uses the same
/// grammar and ignores the flags). `None` means an error was recorded.
pub(crate) fn parse_restrict(
    ctx: &mut Ctx<'_>,
    keyword: &str,
    words: &[String],
) -> Option<RestrictDirective> {
    let mut args = Args::new(words);
    let mut family = None;
    let word = loop {
        match args.next_word() {
            Some("-4") => family = Some(AddrFamily::V4),
            Some("-6") => family = Some(AddrFamily::V6),
            Some(w) => break w,
            None => {
                ctx.error(keyword, "missing address, 'default' or 'source'");
                return None;
            }
        }
    };
    let mut ok = true;
    let (target, mut mask) = match word {
        "default" => (RestrictTarget::Default(family), None),
        "source" => (RestrictTarget::Source, None),
        w => match parse_address(ctx, w, family) {
            Some(t) => t,
            None => {
                ok = false;
                (RestrictTarget::Default(family), None)
            }
        },
    };
    let mut flags = RestrictFlags::empty();
    let mut ippeerlimit = None;
    while let Some(w) = args.next_word() {
        match w {
            "mask" => {
                let m = args
                    .value(ctx, w)
                    .and_then(|m| parse_mask(ctx, &target, mask.is_some(), m));
                match m {
                    Some(m) => mask = Some(m),
                    None => ok = false,
                }
            }
            "ippeerlimit" => match args.int(ctx, w, 0u32, u32::MAX) {
                Some(n) => ippeerlimit = Some(n),
                None => ok = false,
            },
            "serverresponse" => match args.next_word() {
                Some("fuzz") => flags |= RestrictFlags::SERVERRESPONSE_FUZZ,
                other => {
                    ctx.error(other.unwrap_or(w), "expected 'serverresponse fuzz'");
                    ok = false;
                }
            },
            _ => match RestrictFlags::from_name(w) {
                Some(f) if f != RestrictFlags::SERVERRESPONSE_FUZZ => flags |= f,
                _ => {
                    ctx.error(w, &format!("unknown {keyword} flag"));
                    ok = false;
                }
            },
        }
    }
    // Canonicalise: a network address is stored ANDed with its mask.
    let target = match (target, mask) {
        (RestrictTarget::Addr(a), Some(m)) => RestrictTarget::Addr(and_mask(a, m)),
        (t, _) => t,
    };
    ok.then_some(RestrictDirective {
        target,
        mask,
        flags,
        ippeerlimit,
    })
}

/// Parse `ADDR`, `ADDR/len` or a host name.
fn parse_address(
    ctx: &mut Ctx<'_>,
    w: &str,
    family: Option<AddrFamily>,
) -> Option<(RestrictTarget, Option<IpAddr>)> {
    let (addr_text, len) = match w.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (w, None),
    };
    let Some(ip) = parse_ip_literal(addr_text) else {
        if len.is_none() && is_host_name(w) {
            return Some((RestrictTarget::Host(w.to_string()), None));
        }
        ctx.error(w, "not an address, prefix or host name");
        return None;
    };
    if let Some(f) = family {
        if !f.matches(ip) {
            ctx.error(w, &format!("address does not match {}", f.flag()));
            return None;
        }
    }
    let mask = match len {
        None => None,
        Some(l) => {
            let max = if ip.is_ipv4() { 32u8 } else { 128 };
            Some(prefix_mask(ip, int_in(ctx, "prefix length", l, 0u8, max)?))
        }
    };
    Some((RestrictTarget::Addr(ip), mask))
}

/// Parse the value of `mask`, checking it fits the target.
fn parse_mask(
    ctx: &mut Ctx<'_>,
    target: &RestrictTarget,
    have_mask: bool,
    m: &str,
) -> Option<IpAddr> {
    let Ok(mask) = m.parse::<IpAddr>() else {
        ctx.error(m, "mask must be an address such as 255.255.255.0");
        return None;
    };
    match target {
        RestrictTarget::Default(_) | RestrictTarget::Source => {
            ctx.error("mask", "not allowed with 'default' or 'source'");
            None
        }
        _ if have_mask => {
            ctx.error("mask", "given twice (or with an /len prefix)");
            None
        }
        RestrictTarget::Addr(a) if a.is_ipv4() != mask.is_ipv4() => {
            ctx.error(m, "mask family differs from the address");
            None
        }
        _ => Some(mask),
    }
}

/// The mask of a `/len` prefix in `ip`'s family.
fn prefix_mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(
            u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0),
        )),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(
            u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0),
        )),
    }
}

/// `a & m` (same family; otherwise `a` unchanged).
fn and_mask(a: IpAddr, m: IpAddr) -> IpAddr {
    match (a, m) {
        (IpAddr::V4(a), IpAddr::V4(m)) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & u32::from(m))),
        (IpAddr::V6(a), IpAddr::V6(m)) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & u128::from(m))),
        (a, _) => a,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(line: &str) -> (Option<RestrictDirective>, Vec<String>) {
        let mut diags = Vec::new();
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let mut ctx = Ctx {
            file: Path::new("t"),
            line: 1,
            diags: &mut diags,
        };
        let d = parse_restrict(&mut ctx, "restrict", &words);
        (d, diags.iter().map(|d| d.message.clone()).collect())
    }

    #[test]
    fn prefix_masks() {
        let v4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(prefix_mask(v4, 0).to_string(), "0.0.0.0");
        assert_eq!(prefix_mask(v4, 24).to_string(), "255.255.255.0");
        assert_eq!(prefix_mask(v4, 32).to_string(), "255.255.255.255");
        let v6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
        assert_eq!(prefix_mask(v6, 64).to_string(), "ffff:ffff:ffff:ffff::");
        assert_eq!(prefix_mask(v6, 0).to_string(), "::");
    }

    #[test]
    fn address_is_anded_with_mask() {
        let (d, diags) = parse("192.168.44.130 mask 255.255.255.0 nomodify notrap");
        assert!(diags.is_empty(), "{diags:?}");
        let d = d.unwrap();
        assert_eq!(
            d.target,
            RestrictTarget::Addr("192.168.44.0".parse().unwrap())
        );
        assert_eq!(d.flags, RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP);
        let (d, _) = parse("10.1.2.3/8 noquery");
        let d = d.unwrap();
        assert_eq!(d.target, RestrictTarget::Addr("10.0.0.0".parse().unwrap()));
        assert_eq!(d.mask, Some("255.0.0.0".parse().unwrap()));
    }

    #[test]
    fn grammar_errors_name_the_word() {
        for (line, word) in [
            ("default bogus", "'bogus'"),
            ("default mask 255.0.0.0", "'mask'"),
            ("-6 10.0.0.1", "'10.0.0.1'"),
            ("10.0.0.0/33", "'33'"),
            ("10.0.0.0 mask ffff::", "'ffff::'"),
            ("10.0.0.0/8 mask 255.0.0.0", "'mask'"),
            ("10.0.0.1 serverresponse", "'serverresponse'"),
            ("10.0.0.1 ippeerlimit -1", "'-1'"),
            ("-4", "'restrict'"),
            ("bad!host", "'bad!host'"),
        ] {
            let (d, diags) = parse(line);
            assert!(d.is_none(), "{line}");
            assert!(
                diags.iter().any(|m| m.starts_with(word)),
                "{line}: {diags:?}"
            );
        }
    }

    #[test]
    fn hosts_source_and_special_flags() {
        let (d, _) = parse("ntp.example.com mask 255.255.255.0 nopeer");
        let d = d.unwrap();
        assert_eq!(d.target, RestrictTarget::Host("ntp.example.com".into()));
        assert_eq!(d.mask, Some("255.255.255.0".parse().unwrap()));
        let (d, _) = parse("source limited kod serverresponse fuzz ippeerlimit 2");
        let d = d.unwrap();
        assert_eq!(d.target, RestrictTarget::Source);
        assert_eq!(
            d.flags,
            RestrictFlags::LIMITED | RestrictFlags::KOD | RestrictFlags::SERVERRESPONSE_FUZZ
        );
        assert_eq!(d.ippeerlimit, Some(2));
        let (d, _) = parse("-6 default ignore");
        assert_eq!(
            d.unwrap().target,
            RestrictTarget::Default(Some(AddrFamily::V6))
        );
    }
}
