//! Helpers for the operations tests (`tests/metrics.rs`, `tests/web_status.rs`,
//! `tests/service.rs`): the HTTP endpoints, the status tool and the service files.
//!
//! * [`OpsDaemon`]: `meridian ntpd -n --observe` without CAP_SYS_TIME, with extra
//!   arguments and environment (e.g. `--metrics`, `NOTIFY_SOCKET`), killed by PID on drop.
//! * [`local_upstream`] and [`synced_client`]: a local-clock Meridian server and a
//!   Meridian client following it through two loopback addresses, i.e. two sources.
//! * [`http_get`] / [`http_raw`]: a tiny HTTP/1.1 client that checks framing.
//! * [`parse_exposition`]: a strict parser of the Prometheus text format 0.0.4.
//! * [`Json`]: a small strict JSON parser (the workspace has no JSON dependency).
//! * [`free_udp_port`], [`free_tcp_port`]: high ports the kernel just handed out.
//!
//! Everything talks to loopback only; nothing here can change the system clock.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{enter_netns, meridian_bin, ntp_probe, sandboxed, Netns, TempDir};

/// 127.0.0.1.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A UDP port on 127.0.0.1 that was free a moment ago (the kernel's pick).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral UDP port")
        .port()
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind an ephemeral TCP port")
        .port()
}

// ---------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------

/// Run `f` in the network namespace at `netns` (a path), or here for `None`.
pub fn run_in<R: Send + 'static>(netns: Option<&str>, f: impl FnOnce() -> R + Send + 'static) -> R {
    match netns {
        None => f(),
        Some(path) => {
            let path = path.to_string();
            thread::spawn(move || {
                enter_netns(&path);
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        }
    }
}

/// A `meridian ntpd` started by a test, with its own directory and logs.
pub struct OpsDaemon {
    child: Child,
    /// Config, logs.
    pub dir: TempDir,
    /// Its NTP port (on every address).
    pub port: u16,
    /// The namespace it runs in (path), if any.
    pub netns: Option<String>,
    exited: Option<std::process::ExitStatus>,
}

impl OpsDaemon {
    /// Start `meridian ntpd -n -c CONF --port PORT --observe ARGS...` under
    /// `setpriv --bounding-set -sys_time` (inside `netns` if given) with `env` added
    /// to the environment.
    pub fn start(
        netns: Option<&Netns>,
        conf: &str,
        port: u16,
        args: &[String],
        env: &[(&str, String)],
    ) -> OpsDaemon {
        let dir = TempDir::new("ops");
        let conf_path = dir.write("ntp.conf", conf);
        let mut cmd = sandboxed(netns, meridian_bin());
        cmd.args(["ntpd", "-n", "--observe", "-c"])
            .arg(&conf_path)
            .args(["--port", &port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("stdout")).expect("stdout log"))
            .stderr(fs::File::create(dir.path().join("stderr")).expect("stderr log"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let desc = format!("{cmd:?}");
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        eprintln!("started meridian (pid {}): {desc}", child.id());
        OpsDaemon {
            child,
            dir,
            port,
            netns: netns.map(Netns::path),
            exited: None,
        }
    }

    /// `GET path` from `addr`, from inside the daemon's namespace.
    pub fn http_get(&self, addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
        let path = path.to_string();
        run_in(self.netns.as_deref(), move || http_get(addr, &path))
    }

    /// Its PID (setpriv execs, so this is the daemon's own).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited.is_none()
    }

    /// Its stderr so far.
    pub fn logs(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Panic with the logs unless it still runs.
    pub fn assert_running(&mut self) {
        if !self.is_running() {
            panic!(
                "meridian exited early ({:?}):\n{}",
                self.exited,
                self.logs()
            );
        }
    }

    /// The NTP address on loopback.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(LOOPBACK, self.port)
    }

    /// Wait (≤ `limit`) until it answers with `stratum` (any stratum for `None`);
    /// returns the stratum it served.
    pub fn wait_serving(&mut self, stratum: Option<u8>, limit: Duration) -> u8 {
        let deadline = Instant::now() + limit;
        let mut last = String::from("no reply");
        while Instant::now() < deadline {
            self.assert_running();
            let addr = self.addr();
            match run_in(self.netns.as_deref(), move || {
                ntp_probe(addr, Duration::from_millis(300))
            }) {
                Ok(p) if stratum.is_none() || stratum == Some(p.reply.stratum) => {
                    return p.reply.stratum
                }
                Ok(p) => last = format!("stratum {}", p.reply.stratum),
                Err(e) => last = e.to_string(),
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "meridian on {} did not serve stratum {stratum:?} within {limit:?} (last: {last}):\n{}",
            self.addr(),
            self.logs()
        );
    }

    /// Send `signal` to the daemon (by its PID) while it runs.
    pub fn signal(&mut self, signal: i32) {
        if self.exited.is_none() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        }
    }

    /// SIGTERM, then wait (≤ 5 s, SIGKILL after); returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        if let Some(s) = self.exited {
            return s;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
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

impl Drop for OpsDaemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            eprintln!(
                "--- meridian (port {}) stderr ---\n{}",
                self.port,
                self.logs()
            );
        }
    }
}

/// The local clock at fudge stratum 10 (served at 11), open to all.
pub const LOCAL10: &str = "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\nrestrict default\n";

/// A Meridian server of its local clock (stratum 11), ready: on a free port, or on
/// port 1123 inside `netns`.
pub fn local_upstream(netns: Option<&Netns>) -> OpsDaemon {
    let port = if netns.is_some() {
        1123
    } else {
        free_udp_port()
    };
    let mut d = OpsDaemon::start(netns, LOCAL10, port, &[], &[]);
    d.wait_serving(Some(11), Duration::from_secs(30));
    d
}

/// A Meridian client of `upstream` through 127.0.0.1 and 127.0.0.2 (two sources, as
/// the upstream listens on every address), serving on its own port with `--metrics`
/// (free ports, or 2123 and 9975 inside `netns`); returns it once it serves stratum
/// 12, and the metrics address.
pub fn synced_client(
    netns: Option<&Netns>,
    upstream: &OpsDaemon,
    extra_conf: &str,
) -> (OpsDaemon, SocketAddr) {
    let conf = format!(
        "server 127.0.0.1 port {p} iburst minpoll 4\nserver 127.0.0.2 port {p} iburst minpoll 4\n\
         restrict default\n{extra_conf}",
        p = upstream.port
    );
    let (port, metrics_port) = match netns {
        Some(_) => (2123, 9975),
        None => (free_udp_port(), free_tcp_port()),
    };
    let metrics = SocketAddr::new(LOOPBACK, metrics_port);
    let mut d = OpsDaemon::start(
        netns,
        &conf,
        port,
        &["--metrics".into(), metrics.to_string()],
        &[],
    );
    d.wait_serving(Some(12), Duration::from_secs(60));
    (d, metrics)
}

/// Run `meridian ARGS...` (a tool, not the daemon), returning (exit code, stdout, stderr).
pub fn meridian_tool(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(meridian_bin());
    cmd.args(args);
    let out = super::run_bounded(&mut cmd, Duration::from_secs(30));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Poll `f` every 200 ms until it returns `Some` or `limit` passes.
pub fn poll_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// A response: status, headers (names lower-cased), body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers by lower-case name.
    pub headers: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// Send `raw` as the whole request and parse the response (the server closes the
/// connection after it). Checks the framing: status line, headers, Content-Length.
pub fn http_raw(addr: SocketAddr, raw: &[u8], head_only: bool) -> Result<HttpResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    s.write_all(raw).map_err(|e| e.to_string())?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).map_err(|e| format!("read: {e}"))?;
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&all[..end]).map_err(|_| "non-UTF-8 head")?;
    let body = all[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HashMap::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header {line:?}"))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or("no Content-Length")?;
    let expected = if head_only { 0 } else { length };
    if body.len() != expected {
        return Err(format!(
            "body has {} bytes, Content-Length says {length}",
            body.len()
        ));
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// `GET path`.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<HttpResponse, String> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: meridian-test\r\n\r\n");
    http_raw(addr, req.as_bytes(), false)
}

// ---------------------------------------------------------------------------
// Prometheus text exposition format 0.0.4
// ---------------------------------------------------------------------------

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in order.
    pub labels: Vec<(String, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// `# HELP` text by family.
    pub help: HashMap<String, String>,
    /// `# TYPE` by family.
    pub types: HashMap<String, String>,
    /// Samples in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Samples named `name`.
    pub fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The value of the only sample named `name` (panics otherwise).
    pub fn value(&self, name: &str) -> f64 {
        let v = self.all(name);
        assert_eq!(v.len(), 1, "expected one sample of {name}, got {v:?}");
        v[0].value
    }

    /// The value of `name` with `labels` (panics if absent).
    pub fn value_with(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .unwrap_or_else(|| panic!("no {name}{labels:?}"))
            .value
    }
}

fn is_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars()
            .skip(1)
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !n.starts_with("__")
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => Ok(f64::NAN),
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ if v
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
            && !v.is_empty() =>
        {
            v.parse().map_err(|_| format!("bad value {v:?}"))
        }
        _ => Err(format!("bad value {v:?}")),
    }
}

/// The family a sample belongs to (histogram and summary suffixes removed when the
/// base is typed so).
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// Parse `text` strictly: valid names and labels, numeric values, every sample's
/// family has `# HELP` and `# TYPE` (before its samples, once each), families are not
/// interleaved, no duplicate series, counters end in `_total`, text ends in a newline.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut e = Exposition::default();
    if !text.ends_with('\n') {
        return Err("exposition does not end with a newline".into());
    }
    let mut seen_families: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut series = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |msg: String| format!("line {}: {msg}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            let mut words = rest.splitn(3, ' ');
            // Other comments are allowed.
            if let Some(kw @ ("HELP" | "TYPE")) = words.next() {
                let name = words.next().ok_or_else(|| at("no metric name".into()))?;
                let arg = words.next().unwrap_or("");
                if !is_metric_name(name) {
                    return Err(at(format!("invalid metric name {name}")));
                }
                let map = if kw == "HELP" {
                    &mut e.help
                } else {
                    &mut e.types
                };
                if map.insert(name.to_string(), arg.to_string()).is_some() {
                    return Err(at(format!("second {kw} for {name}")));
                }
                if kw == "TYPE" {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&arg) {
                        return Err(at(format!("unknown type {arg}")));
                    }
                    if seen_families.iter().any(|f| f == name) {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                    if arg == "counter" && !name.ends_with("_total") {
                        return Err(at(format!("counter {name} does not end in _total")));
                    }
                }
            }
            continue;
        }
        // name{labels} value [timestamp]
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => line.split_at(i),
            None => return Err(at("no value".into())),
        };
        if !is_metric_name(name) {
            return Err(at(format!("invalid metric name {name}")));
        }
        let mut labels = Vec::new();
        let mut rest = rest;
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let mut end = None;
            loop {
                // label name
                let start = match chars.peek() {
                    Some(&(_, '}')) => {
                        end = Some(chars.next().unwrap().0);
                        break;
                    }
                    Some(&(i, _)) => i,
                    None => break,
                };
                let eq = body[start..]
                    .find('=')
                    .ok_or_else(|| at("label without =".into()))?
                    + start;
                let lname = &body[start..eq];
                if !is_label_name(lname) {
                    return Err(at(format!("invalid label name {lname:?}")));
                }
                while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(at("label value not quoted".into()));
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(at("bad escape in label value".into())),
                        },
                        Some((_, '"')) => break,
                        Some((_, c)) => value.push(c),
                        None => return Err(at("unterminated label value".into())),
                    }
                }
                if labels.iter().any(|(k, _): &(String, String)| k == lname) {
                    return Err(at(format!("label {lname} twice")));
                }
                labels.push((lname.to_string(), value));
                match chars.next() {
                    Some((_, ',')) => continue,
                    Some((i, '}')) => {
                        end = Some(i);
                        break;
                    }
                    _ => return Err(at("expected , or } after a label".into())),
                }
            }
            let end = end.ok_or_else(|| at("unterminated label set".into()))?;
            rest = &body[end + 1..];
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| at(format!("bad timestamp {ts}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &e.types).to_string();
        if !e.help.contains_key(&family) {
            return Err(at(format!("no HELP for {family}")));
        }
        let kind = e
            .types
            .get(&family)
            .ok_or_else(|| at(format!("no TYPE for {family}")))?;
        if kind == "counter" && (value < 0.0 || value.is_nan()) {
            return Err(at("negative counter".into()));
        }
        if current.as_deref() != Some(family.as_str()) {
            if seen_families.contains(&family) {
                return Err(at(format!("samples of {family} are not together")));
            }
            seen_families.push(family.clone());
            current = Some(family);
        }
        let key = format!("{name}{labels:?}");
        if !series.insert(key) {
            return Err(at("duplicate series".into()));
        }
        e.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(e)
}

// ---------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object, keys in order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parse `text` (one value, surrounding whitespace allowed), strictly.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    /// A member of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A member that must exist (panics with the document otherwise).
    pub fn at(&self, key: &str) -> &Json {
        self.get(key)
            .unwrap_or_else(|| panic!("no \"{key}\" in {self:?}"))
    }

    /// As a number.
    pub fn num(&self) -> f64 {
        match self {
            Json::Num(n) => *n,
            other => panic!("not a number: {other:?}"),
        }
    }

    /// As a string.
    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    /// As a bool.
    pub fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            other => panic!("not a bool: {other:?}"),
        }
    }

    /// As an array.
    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            other => panic!("not an array: {other:?}"),
        }
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && b" \t\r\n".contains(&self.s[self.i]) {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.i))
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 64 {
            return self.err("too deep");
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'n') => self.lit("null", Json::Null),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return self.err("expected , or ]"),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut m: Vec<(String, Json)> = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return self.err("expected a key");
                    }
                    let k = self.string()?;
                    if m.iter().any(|(x, _)| *x == k) {
                        return self.err("duplicate key");
                    }
                    self.ws();
                    if self.s.get(self.i) != Some(&b':') {
                        return self.err("expected :");
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    m.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return self.err("expected , or }"),
                    }
                }
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while self.i < self.s.len() && b"+-.eE0123456789".contains(&self.s[self.i]) {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                let lead = t.strip_prefix('-').unwrap_or(t);
                if lead.len() > 1 && lead.starts_with('0') && lead.as_bytes()[1].is_ascii_digit() {
                    return self.err("leading zero");
                }
                t.parse::<f64>()
                    .map(Json::Num)
                    .or_else(|_| self.err("bad number"))
            }
            _ => self.err("unexpected character"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out = String::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return self.err("unterminated string");
            };
            self.i += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err("bad escape");
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                            let Some(c) = hex.and_then(char::from_u32) else {
                                return self.err("bad \\u escape");
                            };
                            self.i += 4;
                            out.push(c);
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                b if b < 0x20 => return self.err("control character in string"),
                _ => {
                    // Copy the whole UTF-8 sequence.
                    let start = self.i - 1;
                    let len = match b {
                        0xc0..=0xdf => 2,
                        0xe0..=0xef => 3,
                        0xf0..=0xf7 => 4,
                        _ => 1,
                    };
                    let Some(seq) = self.s.get(start..start + len) else {
                        return self.err("truncated UTF-8");
                    };
                    out.push_str(std::str::from_utf8(seq).or_else(|_| self.err("bad UTF-8"))?);
                    self.i = start + len;
                }
            }
        }
    }
}

/// Whether `path` is a symbolic link whose target is exactly `target`.
pub fn is_symlink_to(path: &Path, target: &str) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && fs::read_link(path).is_ok_and(|t| t == Path::new(target))
}
