//! `meridian keygen`: write a classic `ntp.keys` file of random keys to standard output,
//! as `ntp-keygen -M` or chrony's `keygen` do, for `keys`/`trustedkey` and `ntpdate -a`.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use meridian_auth::{generate_keys_file, KeyType};

/// Command line of `meridian keygen`.
#[derive(Debug, Parser)]
#[command(
    name = "keygen",
    about = "Generate a symmetric key file (ntp.keys format) on standard output"
)]
pub struct Args {
    /// Key type: AES128CMAC (recommended, RFC 8573), AES256CMAC, SHA1 or MD5.
    #[arg(short = 't', long = "type", default_value = "AES128CMAC")]
    pub key_type: String,
    /// Number of keys (ids 1..=N).
    #[arg(short = 'n', long = "count", default_value_t = 10,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub count: u16,
}

/// Run `keygen` with these arguments (the first is the program name).
pub fn main<I, T>(argv: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Args = match crate::cli::parse(argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match KeyType::from_name(&args.key_type) {
        Ok(key_type) => {
            print!("{}", generate_keys_file(key_type, args.count));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("keygen: {e}");
            ExitCode::from(2)
        }
    }
}
