//! Shared harness for Meridian's integration and real-software interop tests.
//!
//! Test files pull this in with `mod support;`. It deliberately depends on no
//! workspace crate, so it checks Meridian from the outside, the way other NTP
//! software sees it:
//!
//! * [`require_root_and_tools`]: skip (or, when `CI` is set, fail) when the
//!   test cannot run here.
//! * [`Netns`], [`VethPair`], [`Lan`]: network namespaces the test itself
//!   creates (addresses in 10.123.0.0/24 exist only inside them), removed on
//!   drop.
//! * [`Daemon`]: a long-running process started under
//!   `setpriv --bounding-set -sys_time --`, so the kernel refuses every clock
//!   change; killed by PID and reaped on drop, its log dumped when the test
//!   fails.
//! * [`chrony_server`], [`chrony_query`], [`meridian_server`], ntpsec client
//!   wrappers ([`ntpdig`], [`ntpsec_ntpdate_query`]) and their output parsers.
//! * A raw NTP client ([`ntp_probe`], [`ntp_burst`]) with its own tiny packet
//!   parser.
//! * [`relay`]: a user-space UDP relay adding delay and jitter.
//! * [`dns`]: a tiny DNS server and a per-namespace resolv.conf.
//! * [`sync`]: helpers for syncing and fault tests (a lying server, RSS).
//!
//! Safety rules: nothing here can change the system clock (every spawned
//! program runs without `CAP_SYS_TIME`; chronyd always with `-x`; ntpsec's
//! ntpdate always with `-q`; ntpdig never with `-s`/`-S`), and traffic only
//! goes to loopback or to namespaces created by the test.
#![allow(dead_code)]

pub mod attacks;
pub mod auth;
pub mod control;
pub mod dns;
pub mod ops;
pub mod relay;
pub mod sync;

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Prefix of every namespace this harness creates (used for stale cleanup).
const NETNS_PREFIX: &str = "mrdt-";

/// Seconds between the NTP era-0 epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Path of the Meridian binary built by cargo for this test run, unless
/// `MERIDIAN_BIN` names another build (e.g. a release binary) to test.
pub fn meridian_bin() -> PathBuf {
    match std::env::var_os("MERIDIAN_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_meridian")),
    }
}

/// Directory holding the unpacked ntpsec package (`usr/sbin/ntpd`,
/// `usr/bin/ntpq`), as laid out by `scripts/install-test-deps.sh`.
/// Overridable with `MERIDIAN_NTPSEC_DIR`.
pub fn ntpsec_dir() -> PathBuf {
    match std::env::var_os("MERIDIAN_NTPSEC_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ntpsec"),
    }
}

/// Locate a tool. Names of the form `ntpsec:ntpd` / `ntpsec:ntpq` refer to
/// the unpacked ntpsec package; anything else is looked up in `PATH` plus the
/// sbin directories.
pub fn find_tool(name: &str) -> Option<PathBuf> {
    if let Some(rest) = name.strip_prefix("ntpsec:") {
        let dir = ntpsec_dir();
        return ["usr/sbin", "usr/bin"]
            .iter()
            .map(|d| dir.join(d).join(rest))
            .find(|p| p.is_file());
    }
    let p = Path::new(name);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Returns true when the test can run: we are root and every tool exists
/// (`ip` and `setpriv` are always required). Otherwise prints
/// `SKIP: <reason>` to stderr and returns false — unless the `CI`
/// environment variable is set, in which case it panics: CI runs as root with
/// the dependencies installed and must not silently skip.
pub fn require_root_and_tools(tools: &[&str]) -> bool {
    let mut reasons = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        reasons.push("not running as root".to_string());
    }
    for tool in ["ip", "setpriv"].iter().chain(tools.iter()) {
        if find_tool(tool).is_none() {
            reasons.push(format!(
                "tool `{tool}` not found (run scripts/install-test-deps.sh)"
            ));
        }
    }
    if reasons.is_empty() {
        return true;
    }
    let reason = reasons.join("; ");
    if std::env::var_os("CI").is_some() {
        panic!("CI is set, so this test must run, but: {reason}");
    }
    eprintln!("SKIP: {reason}");
    false
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A uniquely named temporary directory, removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create `$TMPDIR/meridian-test-<pid>-<n>-<tag>`.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!(
            "meridian-test-{}-{}-{}",
            std::process::id(),
            next_id(),
            tag
        ));
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` inside the directory, returning its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::write(&p, contents).expect("write temp file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn next_id() -> u32 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// Run `cmd` (stdin closed), capturing its output; kill it if it is still
/// running after `timeout`. Panics only if the program cannot be started.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    run_bounded_with_pid(cmd, timeout).1
}

/// [`run_bounded`], also returning the child's PID (which is the PID of the
/// final program when the command is [`sandboxed`], as `ip netns exec` and
/// `setpriv` exec it).
pub fn run_bounded_with_pid(cmd: &mut Command, timeout: Duration) -> (u32, Output) {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("try_wait") {
            Some(s) => break s,
            None if Instant::now() >= deadline => {
                eprintln!("timeout after {timeout:?}, killing {desc}");
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    let pid = child.id();
    (
        pid,
        Output {
            status,
            stdout: out_t.join().unwrap_or_default(),
            stderr: err_t.join().unwrap_or_default(),
        },
    )
}

/// A command for `program` run without `CAP_SYS_TIME` (and inside `netns`
/// when given): `[ip netns exec NS] setpriv --bounding-set -sys_time -- program`.
pub fn sandboxed(netns: Option<&Netns>, program: impl AsRef<OsStr>) -> Command {
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns.name(), "setpriv"]);
            c
        }
        None => Command::new("setpriv"),
    };
    cmd.args(["--bounding-set", "-sys_time", "--"]).arg(program);
    cmd
}

/// Render an [`Output`] for assertion messages.
pub fn describe_output(o: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

// ---------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------

fn ip(args: &[&str]) {
    let out = run_bounded(Command::new("ip").args(args), Duration::from_secs(10));
    assert!(
        out.status.success(),
        "ip {} failed:\n{}",
        args.join(" "),
        describe_output(&out)
    );
}

/// Remove namespaces left by earlier, killed runs of this harness (their
/// owning PID is gone).
fn cleanup_stale_netns() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NETNS_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A network namespace owned by the test; `lo` is up. Deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create `mrdt-<pid>-<n>-<tag>` and bring up its loopback.
    pub fn new(tag: &str) -> Netns {
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(cleanup_stale_netns);
        let name = format!("{NETNS_PREFIX}{}-{}-{tag}", std::process::id(), next_id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", ns.name(), "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name, as known to `ip netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program` (no privilege reduction; see
    /// [`sandboxed`] for daemons and NTP clients).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Run `ip -n NAME args...`, panicking on failure.
    pub fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// Run `f` on a fresh thread that has entered this namespace. Sockets
    /// created by `f` live in the namespace (and keep doing so when used from
    /// other threads later).
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/run/netns/{}", self.name);
        thread::spawn(move || {
            enter_netns(&path);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Path of the namespace handle (for [`enter_netns`]).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

/// Move the *calling thread* into the network namespace at `path`.
pub fn enter_netns(path: &str) {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: valid fd; CLONE_NEWNET only affects the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

impl fmt::Debug for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Netns({})", self.name)
    }
}

/// A veth pair between two namespaces, each end with an address (CIDR, e.g.
/// `10.123.1.1/24`, or `None`). The pair disappears with its namespaces.
pub struct VethPair {
    /// Interface name in the first namespace.
    pub a_if: String,
    /// Interface name in the second namespace.
    pub b_if: String,
}

impl VethPair {
    /// Create the pair and bring both ends up.
    pub fn new(
        a: &Netns,
        a_if: &str,
        a_cidr: Option<&str>,
        b: &Netns,
        b_if: &str,
        b_cidr: Option<&str>,
    ) -> VethPair {
        ip(&[
            "link",
            "add",
            "name",
            a_if,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            b_if,
            "netns",
            b.name(),
        ]);
        for (ns, ifname, cidr) in [(a, a_if, a_cidr), (b, b_if, b_cidr)] {
            if let Some(c) = cidr {
                ns.ip(&["addr", "add", c, "dev", ifname]);
            }
            ns.ip(&["link", "set", ifname, "up"]);
        }
        VethPair {
            a_if: a_if.to_string(),
            b_if: b_if.to_string(),
        }
    }
}

/// A small "LAN": one server namespace holding a bridge with `server_addr`
/// (10.123.0.1/24) and one namespace per client, each wired to the bridge
/// with its own source address 10.123.0.N.
///
/// Fields drop clients first, then the server.
pub struct Lan {
    /// Client namespaces and their addresses, in the order requested.
    pub clients: Vec<(Netns, Ipv4Addr)>,
    /// The server's namespace.
    pub server: Netns,
    /// The server's address on the LAN.
    pub server_addr: Ipv4Addr,
}

impl Lan {
    /// Build the topology; `hosts` are the last octets of the client
    /// addresses (2..=254, not 1).
    pub fn new(tag: &str, hosts: &[u8]) -> Lan {
        let server = Netns::new(&format!("{tag}-srv"));
        let server_addr = Ipv4Addr::new(10, 123, 0, 1);
        server.ip(&["link", "add", "br0", "type", "bridge"]);
        server.ip(&["addr", "add", "10.123.0.1/24", "dev", "br0"]);
        server.ip(&["link", "set", "br0", "up"]);
        let mut clients = Vec::new();
        for &h in hosts {
            assert!(h > 1 && h < 255, "client host octet {h} out of range");
            let ns = Netns::new(&format!("{tag}-c{h}"));
            let port_if = format!("p{h}");
            let cidr = format!("10.123.0.{h}/24");
            VethPair::new(&server, &port_if, None, &ns, "eth0", Some(&cidr));
            server.ip(&["link", "set", &port_if, "master", "br0"]);
            clients.push((ns, Ipv4Addr::new(10, 123, 0, h)));
        }
        Lan {
            clients,
            server,
            server_addr,
        }
    }

    /// The client namespace with address 10.123.0.`host`.
    pub fn client(&self, host: u8) -> &Netns {
        &self
            .clients
            .iter()
            .find(|(_, a)| a.octets()[3] == host)
            .unwrap_or_else(|| panic!("no client 10.123.0.{host}"))
            .0
    }
}

// ---------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------

/// A long-running process started without `CAP_SYS_TIME`, optionally inside
/// a namespace. Both `ip netns exec` and `setpriv` exec the target, so the
/// child PID is the daemon's own PID. On drop it is sent SIGTERM (SIGKILL
/// after 3 s) and reaped; when the test is failing, its log is printed.
pub struct Daemon {
    name: String,
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
    exited: Option<ExitStatus>,
}

impl Daemon {
    /// Spawn `program args...` with stdout/stderr captured in `log_dir`.
    pub fn spawn<S: AsRef<OsStr>>(
        name: &str,
        netns: Option<&Netns>,
        program: impl AsRef<OsStr>,
        args: &[S],
        log_dir: &Path,
    ) -> Daemon {
        let stdout = log_dir.join(format!("{name}.stdout"));
        let stderr = log_dir.join(format!("{name}.stderr"));
        let mut cmd = sandboxed(netns, program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("create stdout log"))
            .stderr(fs::File::create(&stderr).expect("create stderr log"));
        let desc = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        eprintln!("started {name} (pid {}): {desc}", child.id());
        Daemon {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            exited: None,
        }
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited.is_none()
    }

    /// Its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_running();
        self.exited
    }

    /// Captured stdout and stderr so far.
    pub fn logs(&self) -> String {
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            self.name,
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Captured stderr only.
    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Send `signal` to the daemon (by its PID).
    pub fn signal(&mut self, signal: i32) {
        if self.is_running() {
            // SAFETY: plain kill(2) on our own, not yet reaped child.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// SIGTERM, wait up to 3 s, then SIGKILL; returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(s);
                return s;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let s = self.child.wait().expect("wait");
        self.exited = Some(s);
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

// ---------------------------------------------------------------------------
// chrony
// ---------------------------------------------------------------------------

/// Options for [`chrony_server`].
#[derive(Clone, Debug)]
pub struct ChronyServerOpts {
    /// UDP port to serve on (123 only inside a namespace).
    pub port: u16,
    /// Address to bind (default 127.0.0.1 without a namespace, any with one).
    pub bind: Option<IpAddr>,
    /// `allow` subnets; empty means `allow all` (otherwise 127.0.0.1 is
    /// allowed too, for the readiness probe).
    pub allow: Vec<String>,
    /// `local stratum N`.
    pub stratum: u8,
    /// Extra raw chrony.conf lines.
    pub extra: Vec<String>,
}

impl Default for ChronyServerOpts {
    fn default() -> Self {
        ChronyServerOpts {
            port: 123,
            bind: None,
            allow: Vec::new(),
            stratum: 3,
            extra: Vec::new(),
        }
    }
}

/// A running `chronyd -x` serving its local clock. Drops the daemon first.
pub struct ChronyServer {
    /// The daemon.
    pub daemon: Daemon,
    /// Where to reach it (from inside its namespace, if any).
    pub addr: SocketAddr,
    /// Its config/pid/drift directory.
    pub dir: TempDir,
}

/// Start `chronyd -x -d -u root -f CONF` (never touches the clock, runs
/// without CAP_SYS_TIME) serving `local stratum N`, and wait (≤ 10 s) until it
/// answers an NTP request with that stratum.
pub fn chrony_server(netns: Option<&Netns>, opts: &ChronyServerOpts) -> ChronyServer {
    let dir = TempDir::new("chronyd");
    let d = dir.path().display();
    let bind = opts.bind.unwrap_or(match netns {
        Some(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    });
    let mut conf = format!(
        "local stratum {}\nport {}\nbindaddress {bind}\ncmdport 0\nbindcmdaddress /\n\
         pidfile {d}/chronyd.pid\ndriftfile {d}/chrony.drift\n",
        opts.stratum, opts.port
    );
    if opts.allow.is_empty() {
        conf.push_str("allow all\n");
    } else {
        // The readiness probe comes from inside the namespace via loopback.
        conf.push_str("allow 127.0.0.1\n");
    }
    for a in &opts.allow {
        conf.push_str(&format!("allow {a}\n"));
    }
    for e in &opts.extra {
        conf.push_str(e);
        conf.push('\n');
    }
    let conf_path = dir.write("chrony.conf", &conf);
    let conf_arg = conf_path.to_string_lossy().into_owned();
    let mut daemon = Daemon::spawn(
        "chronyd",
        netns,
        "chronyd",
        &["-x", "-d", "-u", "root", "-f", &conf_arg],
        dir.path(),
    );
    let probe_ip = if bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        bind
    };
    let addr = SocketAddr::new(probe_ip, opts.port);
    wait_for_stratum(
        &mut daemon,
        netns,
        addr,
        opts.stratum,
        Duration::from_secs(10),
    );
    ChronyServer { daemon, addr, dir }
}

/// Poll `addr` with raw NTP requests until a reply with `stratum` arrives;
/// panics (with the daemon's log) if the daemon dies or `limit` passes.
pub fn wait_for_stratum(
    daemon: &mut Daemon,
    netns: Option<&Netns>,
    addr: SocketAddr,
    stratum: u8,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut last = String::from("no reply");
    while Instant::now() < deadline {
        if !daemon.is_running() {
            let status = daemon.exit_status();
            panic!(
                "{} exited early ({status:?}) before answering on {addr}",
                daemon.name
            );
        }
        match ntp_probe_maybe_in(netns, addr, Duration::from_millis(250)) {
            Ok(p) if p.reply.stratum == stratum => return,
            Ok(p) => last = format!("reply with stratum {}", p.reply.stratum),
            Err(e) => last = e.to_string(),
        }
        thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{} did not serve stratum {stratum} on {addr} within {limit:?} (last: {last})",
        daemon.name
    );
}

/// One measurement line of chronyd's `measurements.log`.
#[derive(Clone, Debug, PartialEq)]
pub struct ChronyMeasurement {
    /// Source address.
    pub ip: String,
    /// Leap status letter (N, +, -, ?).
    pub leap: char,
    /// Stratum of the source.
    pub stratum: u8,
    /// chrony's packet test flags, e.g. `111 111 1111` (all passed).
    pub tests: String,
    /// Offset in seconds (positive: source ahead of local clock).
    pub offset: f64,
    /// Round-trip delay in seconds.
    pub peer_delay: f64,
    /// Refid as hex.
    pub refid: String,
}

/// Result of a `chronyd -Q` query.
#[derive(Clone, Debug)]
pub struct ChronyQuery {
    /// Value from `System clock wrong by X seconds (ignored)`.
    pub clock_wrong_by: f64,
    /// Parsed `measurements.log` lines.
    pub measurements: Vec<ChronyMeasurement>,
    /// Everything chronyd printed.
    pub output: String,
}

/// Parse the data lines of chronyd's measurements.log (header lines are
/// skipped). Format (chrony 4.x):
/// `2026-11-25 17:43:22 127.0.0.1       N  3 111 111 1111   6  6 0.00 -2.066e-06  7.476e-06  2.334e-07  0.000e+00  0.000e+00 7F7F0101 4B K K`
pub fn parse_chrony_measurements(text: &str) -> Vec<ChronyMeasurement> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 17 || !f[0].starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            Some(ChronyMeasurement {
                ip: f[2].to_string(),
                leap: f[3].chars().next()?,
                stratum: f[4].parse().ok()?,
                tests: format!("{} {} {}", f[5], f[6], f[7]),
                offset: f[11].parse().ok()?,
                peer_delay: f[12].parse().ok()?,
                refid: f[16].to_string(),
            })
        })
        .collect()
}

/// Run chrony's query-only mode, `chronyd -x -Q 'server IP port P iburst'`,
/// without CAP_SYS_TIME, optionally in `netns`, with `log measurements`
/// enabled so the test can see stratum/offset/delay of every sample.
/// Returns Err(output) when chronyd fails (e.g. `Timeout reached`).
pub fn chrony_query(
    netns: Option<&Netns>,
    server: IpAddr,
    port: u16,
    timeout_s: u32,
) -> Result<ChronyQuery, String> {
    let dir = TempDir::new("chronyq");
    let d = dir.path().display();
    let mut cmd = sandboxed(netns, "chronyd");
    cmd.args(["-x", "-u", "root", "-Q", "-t", &timeout_s.to_string()])
        .arg(format!("server {server} port {port} iburst"))
        .arg(format!("pidfile {d}/chronyd.pid"))
        .arg(format!("logdir {d}"))
        .arg("log measurements");
    let out = run_bounded(&mut cmd, Duration::from_secs(u64::from(timeout_s) + 10));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let measurements = parse_chrony_measurements(
        &fs::read_to_string(dir.path().join("measurements.log")).unwrap_or_default(),
    );
    if !out.status.success() {
        return Err(format!("chronyd -Q failed ({}):\n{output}", out.status));
    }
    let clock_wrong_by = output
        .lines()
        .find_map(|l| {
            let rest = l.split("System clock wrong by ").nth(1)?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .ok_or_else(|| format!("no `System clock wrong by` line in:\n{output}"))?;
    Ok(ChronyQuery {
        clock_wrong_by,
        measurements,
        output,
    })
}

// ---------------------------------------------------------------------------
// ntpsec clients
// ---------------------------------------------------------------------------

/// One result line of ntpsec's `ntpdig` (and of ntpsec's `ntpdate` shim):
/// `2026-11-25 17:43:31.626934 (+0000) +0.000082 +/- 0.000235 127.0.0.1 s3 no-leap`
/// (with a hostname, the resolved address follows it).
#[derive(Clone, Debug, PartialEq)]
pub struct NtpdigLine {
    /// Offset in seconds.
    pub offset: f64,
    /// Synchronization distance (`+/-`) in seconds.
    pub error: f64,
    /// Host as given on the command line.
    pub host: String,
    /// Stratum (`sN`).
    pub stratum: u8,
    /// Leap status word, e.g. `no-leap`.
    pub leap: String,
}

/// Parse one ntpdig result line; None if it does not have that shape.
pub fn parse_ntpdig_line(line: &str) -> Option<NtpdigLine> {
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 9 || f[4] != "+/-" {
        return None;
    }
    let date_ok = f[0].len() == 10 && f[0].as_bytes()[4] == b'-' && f[0].as_bytes()[7] == b'-';
    let tz_ok = f[2].starts_with("(+") || f[2].starts_with("(-");
    if !date_ok || !tz_ok || !f[1].contains(':') {
        return None;
    }
    let n = f.len();
    Some(NtpdigLine {
        offset: f[3].parse().ok()?,
        error: f[5].parse().ok()?,
        host: f[6].to_string(),
        stratum: f[n - 2].strip_prefix('s')?.parse().ok()?,
        leap: f[n - 1].to_string(),
    })
}

/// Run `ntpdig -t T -p SAMPLES HOST` (query only: never `-s`/`-S`) without
/// CAP_SYS_TIME, optionally inside `netns`. ntpdig always uses port 123.
pub fn ntpdig(netns: Option<&Netns>, host: &str, samples: u32, timeout_s: u32) -> Output {
    let mut cmd = sandboxed(netns, "ntpdig");
    cmd.args([
        "-t",
        &timeout_s.to_string(),
        "-p",
        &samples.to_string(),
        host,
    ]);
    run_bounded(
        &mut cmd,
        Duration::from_secs(u64::from(timeout_s * samples) + 15),
    )
}

/// Run ntpsec's `ntpdate -q -t T HOST` (always `-q`: query only) without
/// CAP_SYS_TIME, optionally inside `netns`. It is a shim around ntpdig and
/// prints the same line format.
pub fn ntpsec_ntpdate_query(netns: Option<&Netns>, host: &str, timeout_s: u32) -> Output {
    let mut cmd = sandboxed(netns, "ntpdate");
    cmd.args(["-q", "-t", &timeout_s.to_string(), host]);
    run_bounded(&mut cmd, Duration::from_secs(u64::from(timeout_s) + 15))
}

// ---------------------------------------------------------------------------
// Meridian
// ---------------------------------------------------------------------------

/// Config serving the local clock: fudge stratum 2, so Meridian serves 3.
pub const LOCAL_CLOCK_CONF: &str =
    "server 127.127.1.0\nfudge 127.127.1.0 stratum 2\nrestrict default\n";

/// A running `meridian ntpd -n --observe`.
pub struct MeridianServer {
    /// The daemon.
    pub daemon: Daemon,
    /// Where to reach it (from inside its namespace, if any).
    pub addr: SocketAddr,
    /// The pid file passed with `-p`.
    pub pidfile: PathBuf,
    /// Config, pid file and logs.
    pub dir: TempDir,
}

/// Write `conf` into a fresh directory tagged `tag` and start `meridian ntpd -n -c CONF
/// --port PORT --observe -p PIDFILE` there (without CAP_SYS_TIME, optionally in
/// `netns`), without waiting for anything.
pub fn spawn_observe_daemon(
    netns: Option<&Netns>,
    conf: &str,
    port: u16,
    tag: &str,
) -> (Daemon, PathBuf, TempDir) {
    let dir = TempDir::new(tag);
    let conf_path = dir.write("ntp.conf", conf);
    let pidfile = dir.path().join("ntpd.pid");
    let args: Vec<String> = vec![
        "ntpd".into(),
        "-n".into(),
        "-c".into(),
        conf_path.to_string_lossy().into_owned(),
        "--port".into(),
        port.to_string(),
        "--observe".into(),
        "-p".into(),
        pidfile.to_string_lossy().into_owned(),
    ];
    let daemon = Daemon::spawn("meridian-ntpd", netns, meridian_bin(), &args, dir.path());
    (daemon, pidfile, dir)
}

/// Start `meridian ntpd -n -c CONF --port PORT --observe -p PIDFILE` (without
/// CAP_SYS_TIME, optionally in `netns`) and wait until it serves
/// `expect_stratum` on `probe_addr` (≤ 30 s: a local-clock source must be
/// selected first).
pub fn meridian_server(
    netns: Option<&Netns>,
    conf: &str,
    port: u16,
    probe_ip: IpAddr,
    expect_stratum: u8,
) -> MeridianServer {
    let (mut daemon, pidfile, dir) = spawn_observe_daemon(netns, conf, port, "meridian");
    let addr = SocketAddr::new(probe_ip, port);
    wait_for_stratum(
        &mut daemon,
        netns,
        addr,
        expect_stratum,
        Duration::from_secs(30),
    );
    MeridianServer {
        daemon,
        addr,
        pidfile,
        dir,
    }
}

// ---------------------------------------------------------------------------
// Raw NTP
// ---------------------------------------------------------------------------

/// A minimally parsed 48-byte NTP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NtpPacket {
    /// Leap indicator (0..=3).
    pub li: u8,
    /// Version number.
    pub vn: u8,
    /// Mode (3 client, 4 server).
    pub mode: u8,
    /// Stratum (0 = unspecified/KoD).
    pub stratum: u8,
    /// Poll exponent.
    pub poll: i8,
    /// Precision exponent.
    pub precision: i8,
    /// Root delay, NTP short format.
    pub root_delay: u32,
    /// Root dispersion, NTP short format.
    pub root_dispersion: u32,
    /// Reference ID (or KoD code).
    pub refid: [u8; 4],
    /// Reference timestamp.
    pub reference: u64,
    /// Origin timestamp.
    pub origin: u64,
    /// Receive timestamp.
    pub receive: u64,
    /// Transmit timestamp.
    pub transmit: u64,
}

impl NtpPacket {
    /// Parse the first 48 bytes; None if shorter.
    pub fn parse(b: &[u8]) -> Option<NtpPacket> {
        if b.len() < 48 {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Some(NtpPacket {
            li: b[0] >> 6,
            vn: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            stratum: b[1],
            poll: b[2] as i8,
            precision: b[3] as i8,
            root_delay: u32_at(4),
            root_dispersion: u32_at(8),
            refid: [b[12], b[13], b[14], b[15]],
            reference: u64_at(16),
            origin: u64_at(24),
            receive: u64_at(32),
            transmit: u64_at(40),
        })
    }

    /// A client (mode 3) request with the given transmit timestamp.
    pub fn request_bytes(version: u8, transmit: u64) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0] = (version << 3) | 3;
        b[40..48].copy_from_slice(&transmit.to_be_bytes());
        b
    }

    /// The refid as text (KoD codes, local refids like `LOCL`).
    pub fn refid_ascii(&self) -> String {
        String::from_utf8_lossy(&self.refid)
            .trim_end_matches('\0')
            .to_string()
    }

    /// True for a Kiss-o'-Death packet (stratum 0).
    pub fn is_kod(&self) -> bool {
        self.stratum == 0
    }
}

/// Current time as a 64-bit NTP timestamp (era 0).
pub fn ntp_now() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let secs = (d.as_secs() + NTP_UNIX_OFFSET) & 0xffff_ffff;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// `a - b` in seconds, for NTP timestamps close to each other (wraps).
pub fn ntp_diff(a: u64, b: u64) -> f64 {
    (a.wrapping_sub(b) as i64) as f64 / 4_294_967_296.0
}

/// A reply to one raw request, with our own send/receive times.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The parsed reply.
    pub reply: NtpPacket,
    /// The (random) transmit timestamp we put in the request.
    pub sent_xmt: u64,
    /// Our clock when sending (T1).
    pub t1: u64,
    /// Our clock when the reply arrived (T4).
    pub t4: u64,
}

impl Probe {
    /// Clock offset θ = ((T2 − T1) + (T3 − T4)) / 2, seconds.
    pub fn offset(&self) -> f64 {
        (ntp_diff(self.reply.receive, self.t1) + ntp_diff(self.reply.transmit, self.t4)) / 2.0
    }

    /// Round-trip delay δ = (T4 − T1) − (T3 − T2), seconds.
    pub fn delay(&self) -> f64 {
        ntp_diff(self.t4, self.t1) - ntp_diff(self.reply.transmit, self.reply.receive)
    }
}

/// Send one NTPv4 client request with a random transmit timestamp from a
/// fresh socket and wait up to `timeout` for the reply whose origin matches.
/// `Err(TimedOut)` when nothing matching arrives.
pub fn ntp_probe(server: SocketAddr, timeout: Duration) -> io::Result<Probe> {
    let sock = UdpSocket::bind(unspecified_for(server))?;
    probe_on(&sock, server, timeout)
}

/// [`ntp_probe`] from inside `netns` (or the current namespace for None).
pub fn ntp_probe_maybe_in(
    netns: Option<&Netns>,
    server: SocketAddr,
    timeout: Duration,
) -> io::Result<Probe> {
    match netns {
        Some(ns) => ns.run(move || ntp_probe(server, timeout)),
        None => ntp_probe(server, timeout),
    }
}

fn unspecified_for(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("addr"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("addr"),
    }
}

/// One probe on an existing socket (see [`ntp_probe`]).
pub fn probe_on(sock: &UdpSocket, server: SocketAddr, timeout: Duration) -> io::Result<Probe> {
    let sent_xmt: u64 = rand::random();
    let req = NtpPacket::request_bytes(4, sent_xmt);
    let t1 = ntp_now();
    sock.send_to(&req, server)?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no NTP reply from {server} within {timeout:?}"),
            ));
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                let t4 = ntp_now();
                if from != server {
                    continue;
                }
                if let Some(reply) = NtpPacket::parse(&buf[..n]) {
                    if reply.origin == sent_xmt {
                        return Ok(Probe {
                            reply,
                            sent_xmt,
                            t1,
                            t4,
                        });
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            // A previous ICMP port-unreachable surfaces as ECONNREFUSED on
            // Linux; keep waiting for the deadline.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Send `count` requests back to back (each `gap` apart, each with its own
/// random transmit timestamp) from one socket, then collect replies until
/// `collect` has passed. Returns every reply that matches one of our
/// requests, as (our transmit timestamp, reply).
pub fn ntp_burst(
    server: SocketAddr,
    count: usize,
    gap: Duration,
    collect: Duration,
) -> io::Result<Vec<(u64, NtpPacket)>> {
    let sock = UdpSocket::bind(unspecified_for(server))?;
    let mut sent = Vec::with_capacity(count);
    for _ in 0..count {
        let xmt: u64 = rand::random();
        sock.send_to(&NtpPacket::request_bytes(4, xmt), server)?;
        sent.push(xmt);
        if !gap.is_zero() {
            thread::sleep(gap);
        }
    }
    let deadline = Instant::now() + collect;
    let mut replies = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from == server => {
                if let Some(p) = NtpPacket::parse(&buf[..n]) {
                    if sent.contains(&p.origin) {
                        replies.push((p.origin, p));
                    }
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionRefused
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(replies)
}

/// [`ntp_burst`] from inside `netns`.
pub fn ntp_burst_in(
    netns: &Netns,
    server: SocketAddr,
    count: usize,
    gap: Duration,
    collect: Duration,
) -> io::Result<Vec<(u64, NtpPacket)>> {
    netns.run(move || ntp_burst(server, count, gap, collect))
}

// ---------------------------------------------------------------------------
// Time formatting
// ---------------------------------------------------------------------------

extern "C" {
    fn tzset();
}

/// Format Unix time `secs` in local time with strftime `fmt` (C locale).
pub fn format_local_time(secs: i64, fmt: &str) -> String {
    let fmt_c = std::ffi::CString::new(fmt).expect("format without NUL");
    let t = secs as libc::time_t;
    // SAFETY: tzset/localtime_r/strftime get valid pointers; tm is fully
    // initialized by localtime_r before use, and buf is large enough (n is
    // bounded by its length).
    unsafe {
        tzset();
        let mut tm: libc::tm = std::mem::zeroed();
        assert!(!libc::localtime_r(&t, &mut tm).is_null(), "localtime_r");
        let mut buf = [0u8; 128];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt_c.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Current Unix time in whole seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Offset check for two programs sharing one clock. The true offset is 0, so
/// a correct measurement is off only by path asymmetry, which is bounded by
/// half the round-trip delay (`bound`: delay/2, or a tool's own error
/// estimate). Accept |offset| < 1 ms; on a loaded machine (slow Python
/// clients, shared cores) also accept |offset| ≤ bound when that bound is
/// itself below 5 ms. A server serving the wrong time fails either way.
pub fn offset_ok(offset: f64, bound: f64) -> bool {
    offset.abs() < 0.001 || (bound < 0.005 && offset.abs() <= bound + 0.000_1)
}
