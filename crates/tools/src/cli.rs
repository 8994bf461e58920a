//! Command-line parsing shared by the tools: clap, with the classic exit codes.

use std::ffi::OsString;
use std::process::ExitCode;

/// Parse `argv` into `A`; on `--help`/`--version` print and give exit 0, on a usage error
/// print it and give exit 2, as classic tools do.
pub fn parse<A, I, T>(argv: I) -> Result<A, ExitCode>
where
    A: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    A::try_parse_from(argv).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        }
    })
}
