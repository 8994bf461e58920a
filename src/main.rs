//! `meridian`: one binary for the whole NTP suite.
//!
//! Run as `meridian SUBCOMMAND …`, or installed under a classic name (`ntpd`, `ntpdate`,
//! `ntpq`, `ntpstat`) through a link, in which case the name it was called by decides.
#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str = "\
usage: meridian <command> [options]

commands:
  ntpd      the NTP daemon (classic ntpd flags; --observe never adjusts the clock)
  ntpdate   query servers once and set the clock (classic ntpdate flags)
  ntpq      query a daemon over mode 6 (classic ntpq commands: -p, -c rv, ...)
  ntpstat   show whether the local daemon is synchronised
  status    the local daemon's state and sources, like chronyc tracking + sources
            (--json for scripts; --port P; a host other than 127.0.0.1)
  keygen    write a symmetric key file (ntp.keys format) to standard output
  nts-certs DIR NAME...  make a test CA and an NTS server certificate

Installed as links named ntpd, ntpdate, ntpq or ntpstat, the binary behaves as that program.
";

fn run_tool(name: &str, args: Vec<OsString>) -> Option<ExitCode> {
    match name {
        "ntpd" => Some(meridian_daemon::main(args)),
        "ntpdate" => Some(meridian_tools::ntpdate::main(args)),
        "ntpq" => Some(meridian_tools::ntpq::main(args)),
        "ntpstat" => Some(meridian_tools::ntpstat::main(args)),
        "status" => Some(meridian_tools::status::main(args)),
        "keygen" => Some(meridian_tools::keygen::main(args)),
        "nts-certs" => Some(meridian_tools::ntscerts::main(args)),
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("meridian")
        .to_owned();
    if let Some(code) = run_tool(&invoked_as, args.clone()) {
        return code;
    }
    let Some(sub) = args.get(1).and_then(|s| s.to_str()) else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    match sub {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        "-V" | "--version" | "version" => {
            println!("meridian {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            // The subcommand's own name stands in for argv[0], so its usage reads naturally.
            let rest: Vec<OsString> = args[1..].to_vec();
            run_tool(sub, rest).unwrap_or_else(|| {
                eprintln!("meridian: unknown command '{sub}'\n\n{USAGE}");
                ExitCode::from(2)
            })
        }
    }
}
