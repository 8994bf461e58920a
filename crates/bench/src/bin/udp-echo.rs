//! `udp-echo`: a bare, batched NTP echo responder, the physical limit of the UDP path.
//!
//! It receives up to 32 datagrams (the daemon's batch) with one `recvmmsg`, through the
//! same `meridian_os::udp` code the daemon uses, turns each request into a
//! reply that passes `loadgen`'s checks (mode 4, origin = the request's transmit) without
//! reading any clock, and sends them back with one `sendmmsg`. No timestamps, no
//! per-client state, no access control: whatever a real server costs beyond this is its
//! own work. It binds loopback addresses only and exits by itself after `--max-seconds`.
#![warn(missing_docs)]

use std::net::{SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use meridian_bench::ntp;
use meridian_os::udp::{RecvBatch, SendBatch};
use socket2::{Domain, Protocol, Socket, Type};

/// Bare batched NTP echo responder (loopback only).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on; must be in 127.0.0.0/8.
    #[arg(long, default_value = "127.0.0.1:12390")]
    bind: SocketAddrV4,
    /// Pin to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
    /// Receive buffer in bytes (generous, so that what the echo loses is the kernel path's
    /// limit, not its buffer's).
    #[arg(long, default_value_t = 4 << 20)]
    rcvbuf: usize,
    /// Exit after this many seconds, whatever happens.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.bind.ip().is_loopback() {
        eprintln!(
            "udp-echo: refusing to listen on {}: loopback (127.0.0.0/8) only",
            args.bind
        );
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-echo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    if let Some(cpu) = args.cpu {
        meridian_os::host::pin_to_cpu(cpu)?;
    }
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Like a server's socket: asked for 4 MiB, capped by rmem_max (no FORCE here).
    socket.set_recv_buffer_size(args.rcvbuf)?;
    socket.bind(&SocketAddr::V4(args.bind).into())?;
    socket.set_read_timeout(Some(Duration::from_millis(250)))?;
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let mut rx = RecvBatch::new();
    let mut tx = SendBatch::new();
    let (mut received, mut sent) = (0u64, 0u64);
    eprintln!("udp-echo: listening on {}", args.bind);
    while Instant::now() < deadline {
        let n = match rx.recv(&socket) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        received += n as u64;
        for request in (0..n).filter_map(|i| rx.get(i)) {
            // Answer from the socket's own address (no source given).
            tx.push_with(request.source, None, |buf| {
                let reply = &mut buf[..request.data.len()];
                reply.copy_from_slice(request.data);
                ntp::echo_in_place(reply);
                Some(reply.len())
            });
        }
        if let Ok(k) = tx.send(&socket) {
            sent += k as u64;
        }
    }
    eprintln!("udp-echo: {received} received, {sent} sent; time limit reached");
    Ok(())
}
