//! `meridian nts-certs DIR NAME…`: make a self-signed CA and a server certificate for the
//! given host names or addresses, for trying NTS out and for tests (`nts cert`/`nts key`
//! on the server, `ca` on the clients). Production servers should use real certificates.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line of `meridian nts-certs`.
#[derive(Debug, Parser)]
#[command(
    name = "nts-certs",
    about = "Create a test CA and an NTS server certificate"
)]
pub struct Args {
    /// Directory to write ca.pem, ca.key, server.pem and server.key into.
    pub dir: PathBuf,
    /// Names (DNS names or IP addresses) the server certificate is for.
    #[arg(required = true)]
    pub names: Vec<String>,
}

/// Run `nts-certs` with these arguments (the first is the program name).
pub fn main<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Args = match crate::cli::parse(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if let Err(e) = std::fs::create_dir_all(&args.dir) {
        eprintln!("nts-certs: {}: {e}", args.dir.display());
        return ExitCode::FAILURE;
    }
    let names: Vec<&str> = args.names.iter().map(String::as_str).collect();
    match meridian_nts::generate_test_ca_and_server_cert(&args.dir, &names) {
        Ok(paths) => {
            println!("CA certificate:     {}", paths.ca_cert.display());
            println!("CA key:             {}", paths.ca_key.display());
            println!("server certificate: {}", paths.server_cert.display());
            println!("server key:         {}", paths.server_key.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("nts-certs: {e}");
            ExitCode::FAILURE
        }
    }
}
