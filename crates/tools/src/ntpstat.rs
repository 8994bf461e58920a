//! `ntpstat`: is the local NTP daemon synchronised, to what, and how well?
//!
//! Asks the daemon for its system variables over mode 6 (a `READVAR` of association 0,
//! as Debian's ntpstat does) and prints, exactly as that program does,
//!
//! ```text
//! synchronised to NTP server (192.0.2.1) at stratum 3
//!    time correct to within 45 ms
//!    polling server every 128 s
//! ```
//!
//! (the first line ends in a space), or `unsynchronised`. Exit status: 0 synchronised,
//! 1 not, 2 the daemon could not be asked (`Unable to talk to NTP daemon. Is it
//! running?` when nothing listens, `timeout` when it does not answer, on standard error).

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use meridian_proto::control::{opcode, source, SystemStatus};

use crate::mode6_client::{Mode6Client, Mode6Error};
use crate::ntpq::var_map;

/// What the status word's clock source is called (RFC 1305's list, as ntpstat has it).
const SOURCE_NAMES: [&str; 10] = [
    "unspecified",
    "atomic clock",
    "VLF radio",
    "HF radio",
    "UHF radio",
    "local net",
    "NTP server",
    "UDP/TIME",
    "wristwatch",
    "modem",
];

/// The report for a daemon's status word and system variables, and the exit status.
pub fn report(status: u16, text: &str) -> (String, u8) {
    let s = SystemStatus::from_word(status);
    let vars = var_map(text);
    let mut out = String::new();
    let poll = vars
        .get("tc")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|&tc| tc < 31);
    if s.leap == 3 {
        out.push_str("unsynchronised\n");
        // Debian's ntpstat reads the last event with RFC 1305's codes, where 1 was
        // "system restart" (ntpd 4's 1 is freq_not_set, at a start without drift file).
        if s.last_event == 1 {
            out.push_str("  time server re-starting\n");
        }
        push_poll(&mut out, poll);
        return (out, 1);
    }
    out.push_str("synchronised to ");
    out.push_str(
        SOURCE_NAMES
            .get(usize::from(s.source))
            .copied()
            .unwrap_or("unknown source"),
    );
    if s.source == source::NTP {
        match vars.get("refid") {
            Some(r) if !r.is_empty() && r.len() <= 16 => out.push_str(&format!(" ({r})")),
            Some(_) => out.push_str(" <IP unreadable>"),
            None => out.push_str(" <IP unknown>"),
        }
    }
    match vars.get("stratum") {
        Some(st) if st.parse::<u8>().is_ok() => out.push_str(&format!(" at stratum {st} \n")),
        Some(_) => out.push_str(", stratum unreadable\n"),
        None => out.push_str(", stratum unknown\n"),
    }
    let number = |n: &str| vars.get(n).and_then(|v| v.trim().parse::<f64>().ok());
    match (number("rootdelay"), number("rootdisp")) {
        (Some(delay), Some(disp)) => out.push_str(&format!(
            "   time correct to within {:.0} ms\n",
            delay / 2.0 + disp
        )),
        _ => out.push_str("accuracy unknown\n"),
    }
    push_poll(&mut out, poll);
    (out, 0)
}

fn push_poll(out: &mut String, poll: Option<u32>) {
    match poll {
        Some(tc) => out.push_str(&format!("   polling server every {} s\n", 1u64 << tc)),
        None => out.push_str("poll interval unknown\n"),
    }
}

/// `ntpstat [--port P]`.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut port = 123u16;
    let mut i = 0;
    while i < args.len() {
        let value = match args[i].as_str() {
            "--port" => {
                i += 1;
                args.get(i).cloned()
            }
            a => a.strip_prefix("--port=").map(str::to_string),
        };
        match value.and_then(|v| v.parse().ok()) {
            Some(p) => port = p,
            None => {
                eprintln!("usage: ntpstat [--port PORT]");
                return ExitCode::from(2);
            }
        }
        i += 1;
    }
    let server = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    let answer = Mode6Client::connect(server)
        .map_err(Mode6Error::Io)
        .and_then(|mut c| {
            c.timeout = Duration::from_secs(1);
            c.retries = 0;
            c.request(opcode::READVAR, 0, b"")
        });
    match answer {
        Ok(r) => {
            let (text, code) = report(r.status, &r.text());
            print!("{text}");
            ExitCode::from(code)
        }
        // Debian's ntpstat words these two cases differently, on standard error.
        Err(Mode6Error::Timeout) => {
            eprintln!("timeout");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("Unable to talk to NTP daemon. Is it running?");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synchronised_to_an_ntp_server() {
        let (text, code) = report(
            0x0615,
            "refid=202.118.1.130, stratum=3, rootdelay=20.000, rootdisp=35.000, tc=7",
        );
        assert_eq!(
            text,
            "synchronised to NTP server (202.118.1.130) at stratum 3 \n   time correct to within 45 ms\n   polling server every 128 s\n"
        );
        assert_eq!(code, 0);
    }

    #[test]
    fn synchronised_to_the_local_clock() {
        let (text, code) = report(
            0x0515,
            "refid=127.127.1.0, stratum=11, rootdelay=0.000, rootdisp=15.625, tc=6",
        );
        assert_eq!(text, "synchronised to local net at stratum 11 \n   time correct to within 16 ms\n   polling server every 64 s\n");
        assert_eq!(code, 0);
    }

    #[test]
    fn unsynchronised() {
        let (text, code) = report(0xc016, "stratum=16, tc=3");
        assert_eq!(text, "unsynchronised\n   polling server every 8 s\n");
        assert_eq!(code, 1);
        let (text, _) = report(0xc011, "stratum=16, tc=3");
        assert_eq!(
            text,
            "unsynchronised\n  time server re-starting\n   polling server every 8 s\n"
        );
    }
}
