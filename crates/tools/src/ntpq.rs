//! `ntpq`: the classic NTP query program, over mode 6.
//!
//! ```text
//! ntpq [-46nw] [-p] [-a KEYID] [-k KEYFILE] [-c COMMAND]... [host...] [--port P]
//! ```
//!
//! Commands: `peers` (`pe`, `lpeers`; what `-p` runs), `associations` (`as`),
//! `readvar`/`rv [ASSOC] [VAR,...]`, `mrulist`, `version`, `quit`, and the
//! authenticated ones: `writevar ASSOC name=value,...`, `:config LINE`,
//! `config-from-file FILE`, `saveconfig FILE`, with `keyid [N]`, `keytype [TYPE]`,
//! `passwd [PASSWORD]` and `authenticate [yes|no]` to set the key, as classic ntpq
//! has them; `-a KEYID -k KEYFILE` give the key as NTPsec's ntpq takes it (the keys file
//! in ntpd's format). Without `-c` or `-p` it reads commands from standard input after an
//! `ntpq> ` prompt. Output follows ntp 4.2.8's ntpq to the column, because scripts parse
//! it:
//!
//! ```text
//!      remote           refid      st t when poll reach   delay   offset  jitter
//! ==============================================================================
//! *LOCAL(0)        .LOCL.          10 l   36   64  377    0.000    0.000   0.000
//! ```
//!
//! Host names are not looked up in reverse (Meridian has no resolver for that), so
//! remotes show as the server's `srchost` (the configured name) or as addresses.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use meridian_auth::{parse_keys, KeyFile, KeyStore, KeyType};
use meridian_proto::control::{
    association_list, opcode, parse_timestamp, PeerStatus, SystemStatus, VarList,
};

use crate::mode6_client::{Mode6Client, Mode6Error, Mode6Response, SigningKey};

/// The `peers` header, 78 columns.
pub const PEERS_HEADER: &str =
    "     remote           refid      st t when poll reach   delay   offset  jitter";
/// The `associations` header.
pub const ASSOC_HEADER: &str = "ind assid status  conf reach auth condition  last_event cnt";
/// The `mrulist` header.
pub const MRU_HEADER: &str = "lstint avgint rstr r m v  count rport remote address";
/// The variables `peers` asks each association for.
const PEER_VARS: &str =
    "srcadr,srcport,srchost,dstadr,stratum,hmode,pmode,hpoll,ppoll,reach,refid,rec,reftime,\
                         delay,offset,jitter,dispersion";
/// Seconds between 1900 and 1970.
const NTP_UNIX: i64 = 2_208_988_800;
/// ntpq's output line limit for variable lists.
const MAX_OUT_LINE: usize = 72;

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// `-4`: IPv4 only.
    pub ipv4: bool,
    /// `-6`: IPv6 only.
    pub ipv6: bool,
    /// `-n`: numeric addresses.
    pub numeric: bool,
    /// `-w`: wide remote names.
    pub wide: bool,
    /// `-c` commands (and `-p` as `peers`), in order.
    pub commands: Vec<String>,
    /// Hosts to query.
    pub hosts: Vec<String>,
    /// Server port.
    pub port: u16,
    /// `-a N`: the key id for authenticated requests.
    pub keyid: Option<u32>,
    /// `-k FILE`: the keys file to find that key in.
    pub keyfile: Option<String>,
    /// `--json`: `readvar` answers as JSON ([`crate::status::readvar_json`]).
    pub json: bool,
}

/// The value of a long option `--name=V` or `--name V` (advancing `i`), or `None` when
/// `arg` is not that option.
fn long_option(
    arg: &str,
    name: &str,
    args: &[String],
    i: &mut usize,
) -> Option<Result<String, String>> {
    let rest = arg.strip_prefix("--")?.strip_prefix(name)?;
    if let Some(v) = rest.strip_prefix('=') {
        return Some(Ok(v.to_string()));
    }
    if !rest.is_empty() {
        return None;
    }
    *i += 1;
    Some(
        args.get(*i - 1)
            .cloned()
            .ok_or_else(|| format!("--{name} needs a value")),
    )
}

/// Parse ntpq's command line (getopt style: `-np`, `-c rv`, `-crv`).
pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        port: 123,
        ..Default::default()
    };
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if let Some(v) = long_option(a, "port", args, &mut i) {
            let v = v?;
            o.port = v.parse().map_err(|_| format!("bad port {v}"))?;
            continue;
        }
        if let Some(v) = long_option(a, "authentication", args, &mut i) {
            o.keyid = Some(parse_keyid(&v?)?);
            continue;
        }
        if let Some(v) = long_option(a, "keyfile", args, &mut i) {
            o.keyfile = Some(v?);
            continue;
        }
        if a == "--json" {
            o.json = true;
            continue;
        }
        if a.starts_with("--") {
            return Err(format!("unknown option {a}"));
        }
        let Some(flags) = a
            .strip_prefix('-')
            .filter(|f| !f.is_empty() && !a.starts_with("--"))
        else {
            o.hosts.push(a.clone());
            continue;
        };
        for (k, c) in flags.char_indices() {
            match c {
                '4' => o.ipv4 = true,
                '6' => o.ipv6 = true,
                'n' => o.numeric = true,
                'w' => o.wide = true,
                'p' => o.commands.push("peers".into()),
                // Debug and interactive flags: accepted, no effect.
                'd' | 'i' => {}
                'c' | 'a' | 'k' => {
                    let rest = &flags[k + 1..];
                    let value = if rest.is_empty() {
                        i += 1;
                        args.get(i - 1)
                            .cloned()
                            .ok_or(format!("-{c} needs a value"))?
                    } else {
                        rest.to_string()
                    };
                    match c {
                        'c' => o.commands.push(value),
                        'a' => o.keyid = Some(parse_keyid(&value)?),
                        _ => o.keyfile = Some(value),
                    }
                    break;
                }
                _ => return Err(format!("unknown option -{c}")),
            }
        }
    }
    if o.hosts.is_empty() {
        o.hosts.push("localhost".into());
    }
    Ok(o)
}

/// `ntpq` with its arguments (the first is the program name).
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let opts = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "ntpq: {e}\nusage: ntpq [-46nw] [-p] [-a keyid] [-k keyfile] [-c command]... \
                 [host...] [--port P]"
            );
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut failed = false;
    for host in &opts.hosts {
        let mut session = match Session::open(host, &opts) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ntpq: {host}: {e}");
                failed = true;
                continue;
            }
        };
        if opts.hosts.len() > 1 {
            let _ = writeln!(out, "server={host} ");
        }
        if opts.commands.is_empty() {
            interactive(&mut session, &mut out);
            continue;
        }
        for cmd in &opts.commands {
            if let Err(e) = session.run(cmd, &mut out) {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    let _ = out.flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn interactive(session: &mut Session, out: &mut dyn Write) {
    let stdin = io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        let _ = write!(out, "ntpq> ");
        let _ = out.flush();
        let Some(Ok(line)) = lines.next() else { break };
        let line = line.trim();
        if matches!(line, "quit" | "exit" | "q") {
            break;
        }
        if line.is_empty() {
            continue;
        }
        if let Err(e) = session.run(line, out) {
            let _ = writeln!(out, "{e}");
        }
    }
}

/// A key id as `-a` and `keyid` take it: 1 to 65535.
fn parse_keyid(v: &str) -> Result<u32, String> {
    match v.trim().parse::<u32>() {
        Ok(k) if (1..=u32::from(u16::MAX)).contains(&k) => Ok(k),
        _ => Err(format!("***Invalid key identifier {v}")),
    }
}

/// A connection to one host.
pub struct Session {
    client: Mode6Client,
    numeric: bool,
    wide: bool,
    /// `-a`/`keyid`: the key for authenticated requests.
    keyid: Option<u32>,
    /// `keytype`: the digest of a key given with `passwd`.
    keytype: KeyType,
    /// `passwd`: the key's secret, overriding the keys file.
    password: Option<String>,
    /// The keys of `-k`.
    keyfile: KeyFile,
    /// `authenticate yes`: sign every request, reads too.
    always_auth: bool,
    /// `--json`: `readvar` prints JSON.
    json: bool,
}

fn resolve(host: &str, port: u16, opts: &Options) -> Result<SocketAddr, String> {
    let candidates: Vec<SocketAddr> = if host == "localhost" {
        vec![SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)]
    } else {
        (host, port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .collect()
    };
    candidates
        .into_iter()
        .find(|a| (!opts.ipv4 || a.is_ipv4()) && (!opts.ipv6 || a.is_ipv6()))
        .ok_or_else(|| "no address of the requested family".to_string())
}

/// ntpq 4.2.8's wording of a failed request (about association `assoc`), which NTPsec's
/// ntpq keeps.
pub fn describe_error(e: Mode6Error, assoc: u16) -> String {
    use meridian_proto::control::ErrorCode as E;
    match e {
        Mode6Error::Timeout => "***Request timed out".into(),
        Mode6Error::Server(E::BadFormat) => "***Server reports a bad format request packet".into(),
        Mode6Error::Server(E::Permission) => {
            "***Server disallowed request (authentication?)".into()
        }
        Mode6Error::Server(E::BadOpcode) => "***Server reports a bad opcode in request".into(),
        Mode6Error::Server(E::BadAssociation) => {
            format!("***Association ID {assoc} unknown to server")
        }
        Mode6Error::Server(E::UnknownVariable) => {
            "***A request variable unknown to the server".into()
        }
        Mode6Error::Server(E::BadValue) => "***Server indicates a request variable was bad".into(),
        Mode6Error::Server(E::Unspecified) => "***Server returned an unspecified error".into(),
        Mode6Error::Server(code) => {
            format!("***Server returns unknown error code {}", code as u8)
        }
        Mode6Error::Sign(why) => format!("***Cannot sign the request: {why}"),
        Mode6Error::Io(e) => format!("***{e}"),
    }
}

impl Session {
    /// Connect to `host`.
    pub fn open(host: &str, opts: &Options) -> Result<Session, String> {
        let addr = resolve(host, opts.port, opts)?;
        let client = Mode6Client::connect(addr).map_err(|e| e.to_string())?;
        let keyfile = match &opts.keyfile {
            None => KeyFile::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{path} nonexistent or unreadable: {e}"))?;
                parse_keys(&text, path)
                    .into_result()
                    .map_err(|e| e.to_string())?
            }
        };
        Ok(Session {
            client,
            numeric: opts.numeric,
            wide: opts.wide,
            keyid: opts.keyid,
            keytype: KeyType::Md5,
            password: None,
            keyfile,
            always_auth: false,
            json: opts.json,
        })
    }

    /// Run one command line, writing its output.
    pub fn run(&mut self, line: &str, out: &mut dyn Write) -> Result<(), String> {
        let line = line.trim();
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let rest: Vec<&str> = words.collect();
        // The rest of the line as typed, for commands that take free text.
        let tail = line[cmd.len()..].trim();
        let text = match cmd {
            ":config" => self.config(tail)?,
            "config-from-file" => {
                let text = std::fs::read_to_string(tail)
                    .map_err(|e| format!("***Cannot read {tail}: {e}"))?;
                self.config(&text)?
            }
            "saveconfig" => self.authenticated_text(opcode::SAVECONFIG, 0, tail)?,
            "writevar" => self.writevar(&rest)?,
            "keyid" => self.keyid_command(&rest)?,
            "keytype" => self.keytype_command(&rest)?,
            "passwd" => self.passwd_command(&rest)?,
            "authenticate" => {
                match rest.first().copied() {
                    None => {}
                    Some("yes") => self.always_auth = true,
                    Some("no") => self.always_auth = false,
                    Some(_) => return Err("***What?".into()),
                }
                if self.always_auth {
                    "authenticated requests being sent\n".into()
                } else {
                    "unauthenticated requests being sent\n".into()
                }
            }
            "peers" | "pe" | "lpeers" | "lpe" | "apeers" => self.peers()?,
            "associations" | "as" | "lassociations" => self.associations()?,
            "readvar" | "rv" | "rl" | "readlist" => self.readvar(&rest)?,
            "mrulist" | "mru" => self.mrulist()?,
            "version" => format!("ntpq meridian {}\n", env!("CARGO_PKG_VERSION")),
            _ => return Err(format!("***Command `{cmd}' unknown")),
        };
        out.write_all(text.as_bytes()).map_err(|e| e.to_string())
    }

    fn query(&mut self, op: u8, assoc: u16, data: &str) -> Result<Mode6Response, String> {
        self.request(op, assoc, data, self.always_auth)
    }

    /// The key to sign with: the `passwd` secret under `keytype`, else key `keyid` of
    /// the keys file.
    fn signing_keys(&self) -> Result<(KeyStore, u32), String> {
        let keyid = self
            .keyid
            .ok_or("***Keyid must be defined (-a KEYID, or the keyid command)")?;
        let id = u16::try_from(keyid).map_err(|_| format!("***Invalid key identifier {keyid}"))?;
        let key = match &self.password {
            Some(pw) => {
                let line = format!("{keyid} {} {pw}\n", self.keytype.name());
                let file = parse_keys(&line, "passwd")
                    .into_result()
                    .map_err(|e| format!("***Invalid password: {e}"))?;
                file.get(id).cloned()
            }
            None => self.keyfile.get(id).cloned(),
        }
        .ok_or_else(|| {
            format!("***Key {keyid} not found (give the keys file with -k, or use passwd)")
        })?;
        let mut file = KeyFile::new();
        file.insert(id, key);
        Ok((KeyStore::new(file, [id]), keyid))
    }

    /// Send a request, signed when `sign`; warns when a signed request's answer does not
    /// come back signed with the same key.
    fn request(
        &mut self,
        op: u8,
        assoc: u16,
        data: &str,
        sign: bool,
    ) -> Result<Mode6Response, String> {
        let keys = if sign {
            Some(self.signing_keys()?)
        } else {
            None
        };
        let key = keys.as_ref().map(|(keys, key_id)| SigningKey {
            keys,
            key_id: *key_id,
        });
        let r = self
            .client
            .request_signed(op, assoc, data.as_bytes(), key)
            .map_err(|e| describe_error(e, assoc))?;
        if r.authentic == Some(false) {
            eprintln!("***Response not signed with our key: content untrusted");
        }
        Ok(r)
    }

    /// A request that must be authenticated, answered in text (`:config`,
    /// `saveconfig`): the text, with one newline.
    fn authenticated_text(&mut self, op: u8, assoc: u16, data: &str) -> Result<String, String> {
        let r = self.request(op, assoc, data, true)?;
        Ok(format!("{}\n", r.text().trim_end()))
    }

    /// `:config LINE`: ntpd's answer, after the line and a caret under the column of a
    /// syntax error when it reports one.
    fn config(&mut self, text: &str) -> Result<String, String> {
        let answer = self.authenticated_text(opcode::CONFIGURE, 0, text)?;
        let column = answer
            .strip_prefix("column ")
            .and_then(|r| r.split_once(" syntax error"))
            .and_then(|(c, _)| c.parse::<usize>().ok())
            .filter(|c| *c <= text.len() + 1);
        Ok(match column {
            Some(c) => format!("{text}\n{}^\n{answer}", "_".repeat(c)),
            None => answer,
        })
    }

    /// `writevar ASSOC name=value,...`.
    fn writevar(&mut self, args: &[&str]) -> Result<String, String> {
        let Some(assoc) = args.first().and_then(|a| parse_assoc(a)) else {
            return Err("***Association ID expected: writevar ASSOC name=value,...".into());
        };
        let data = args[1..].join(" ");
        let r = self.request(opcode::WRITEVAR, assoc, &data, true)?;
        if r.data.is_empty() {
            Ok("done! (no data returned)\n".into())
        } else {
            Ok(format_readvar(assoc, r.status, &r.text()))
        }
    }

    fn keyid_command(&mut self, args: &[&str]) -> Result<String, String> {
        if let Some(v) = args.first() {
            self.keyid = match parse_keyid(v) {
                Ok(k) => Some(k),
                Err(_) if v.trim() == "0" => None,
                Err(e) => return Err(e),
            };
        }
        Ok(match self.keyid {
            Some(k) => format!("keyid is {k}\n"),
            None => "no keyid defined\n".into(),
        })
    }

    fn keytype_command(&mut self, args: &[&str]) -> Result<String, String> {
        if let Some(v) = args.first() {
            self.keytype = KeyType::from_name(v).map_err(|e| format!("***{v}: {e}"))?;
        }
        Ok(format!(
            "keytype is {} with {} octet digests\n",
            self.keytype.name(),
            self.keytype.digest_len()
        ))
    }

    /// `passwd [PASSWORD]`: without an argument, read one line from standard input
    /// (which echoes; give it as an argument or in a keys file to avoid that).
    fn passwd_command(&mut self, args: &[&str]) -> Result<String, String> {
        if self.keyid.is_none() {
            return Err("Keyid must be defined".into());
        }
        let pw = match args.first() {
            Some(p) => p.to_string(),
            None => {
                eprint!("{} Password: ", self.keytype.name());
                let mut line = String::new();
                io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| format!("***{e}"))?;
                line.trim_end_matches(['\r', '\n']).to_string()
            }
        };
        if pw.is_empty() {
            return Ok("Password unchanged\n".into());
        }
        self.password = Some(pw);
        self.signing_keys()?;
        Ok(String::new())
    }

    fn association_list(&mut self) -> Result<Vec<(u16, u16)>, String> {
        let r = self.query(opcode::READSTAT, 0, "")?;
        Ok(association_list(&r.data))
    }

    fn peers(&mut self) -> Result<String, String> {
        let list = self.association_list()?;
        let mut s = format!("{PEERS_HEADER}\n{}\n", "=".repeat(PEERS_HEADER.len()));
        for (assoc, status) in list {
            let r = self.query(opcode::READVAR, assoc, PEER_VARS)?;
            let vars = var_map(&r.text());
            s.push_str(&peer_row(
                PeerStatus::from_word(status),
                &vars,
                unix_now(),
                self.numeric,
                self.wide,
            ));
        }
        Ok(s)
    }

    fn associations(&mut self) -> Result<String, String> {
        let list = self.association_list()?;
        let mut s = format!("\n{ASSOC_HEADER}\n{}\n", "=".repeat(ASSOC_HEADER.len()));
        for (i, (assoc, status)) in list.into_iter().enumerate() {
            s.push_str(&association_row(
                i + 1,
                assoc,
                PeerStatus::from_word(status),
            ));
        }
        Ok(s)
    }

    fn readvar(&mut self, args: &[&str]) -> Result<String, String> {
        let (assoc, names) = match args.first().map(|a| parse_assoc(a)) {
            Some(Some(id)) => (id, args[1..].join(" ")),
            _ => (0, args.join(" ")),
        };
        let r = self.query(opcode::READVAR, assoc, &names)?;
        if self.json {
            return Ok(crate::status::readvar_json(assoc, r.status, &r.text()));
        }
        Ok(format_readvar(assoc, r.status, &r.text()))
    }

    fn mrulist(&mut self) -> Result<String, String> {
        let nonce = self.query(opcode::REQ_NONCE, 0, "")?.text();
        let nonce = nonce.trim().to_string();
        if !nonce.starts_with("nonce=") {
            return Err("***Nonce expected".into());
        }
        let mut entries: Vec<HashMap<String, String>> = Vec::new();
        let mut now = None;
        let mut request = format!("{nonce}, frags=32");
        for _ in 0..64 {
            let text = self.query(opcode::READ_MRU, 0, &request)?.text();
            let mut nonce = nonce.clone();
            let mut batch: HashMap<usize, HashMap<String, String>> = HashMap::new();
            for item in VarList::new(&text) {
                let value = item.unquoted().unwrap_or("").to_string();
                match item.name {
                    "nonce" => nonce = format!("nonce={value}"),
                    "now" => now = parse_timestamp(&value),
                    name => {
                        if let Some((field, idx)) = name.split_once('.') {
                            if let Ok(idx) = idx.parse::<usize>() {
                                batch
                                    .entry(idx)
                                    .or_default()
                                    .insert(field.to_string(), value);
                            }
                        }
                    }
                }
            }
            let mut keys: Vec<_> = batch.keys().copied().collect();
            keys.sort_unstable();
            entries.extend(keys.into_iter().filter_map(|k| batch.remove(&k)));
            if now.is_some() {
                break;
            }
            let Some(last) = entries.last() else { break };
            request = format!(
                "{nonce}, frags=32, last.0={}, addr.0={}",
                last.get("last").cloned().unwrap_or_default(),
                last.get("addr").cloned().unwrap_or_default()
            );
        }
        let now = now.map_or_else(|| unix_now() as f64, ntp_to_unix);
        // Newest first, one row per address (a client re-seen between pages appears
        // twice in the pages; the newer row wins).
        let mut rows: Vec<&HashMap<String, String>> = Vec::new();
        for e in entries.iter().rev() {
            if !rows.iter().any(|r| r.get("addr") == e.get("addr")) {
                rows.push(e);
            }
        }
        let mut s = format!("{MRU_HEADER}\n{}\n", "=".repeat(78));
        for e in rows {
            s.push_str(&mru_row(e, now));
        }
        Ok(s)
    }
}

/// `&1`, `1` or `12345` as an association reference; `&N` (the Nth association) is
/// taken as the id N, as the list order is not known here.
fn parse_assoc(a: &str) -> Option<u16> {
    a.strip_prefix('&').unwrap_or(a).parse().ok()
}

/// Unquoted values by name.
pub fn var_map(text: &str) -> HashMap<String, String> {
    VarList::new(text)
        .map(|i| (i.name.to_string(), i.unquoted().unwrap_or("").to_string()))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn ntp_to_unix(ntp: u64) -> f64 {
    // Era-relative: pick the era that lands nearest to now.
    let secs = (ntp >> 32) as i64;
    let frac = (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
    let now = unix_now();
    let mut unix = secs - NTP_UNIX;
    while unix < now - (1 << 31) {
        unix += 1 << 32;
    }
    unix as f64 + frac
}

/// ntpq's `prettyinterval`: seconds up to 2048, then minutes, hours, days, years.
pub fn pretty_interval(diff: i64) -> String {
    if diff <= 0 {
        return "-".into();
    }
    if diff <= 2048 {
        return diff.to_string();
    }
    let m = (diff + 29) / 60;
    if m <= 300 {
        return format!("{m}m");
    }
    let h = (m + 29) / 60;
    if h <= 96 {
        return format!("{h}h");
    }
    let d = (h + 11) / 24;
    if d <= 999 {
        return format!("{d}d");
    }
    let y = (d as f64 / 365.25).round() as i64;
    if y <= 999 {
        format!("{y}y")
    } else {
        "INF".into()
    }
}

/// Reference clock driver names, by type (ntpd's `clocktypes`), for `LOCAL(0)`.
fn clock_name(kind: u8) -> Option<&'static str> {
    Some(match kind {
        1 => "LOCAL",
        4 => "SPECTRACOM",
        8 => "GENERIC",
        20 => "GPS_NMEA",
        22 => "PPS",
        28 => "SHM",
        46 => "GPSD_JSON",
        _ => return None,
    })
}

/// `127.127.t.u` as `NAME(u)`, other addresses unchanged.
pub fn refclock_name(addr: &str) -> Option<String> {
    let ip: std::net::Ipv4Addr = addr.parse().ok()?;
    let [a, b, t, u] = ip.octets();
    if (a, b) != (127, 127) {
        return None;
    }
    Some(match clock_name(t) {
        Some(name) => format!("{name}({u})"),
        None => format!("REFCLK({t},{u})"),
    })
}

fn parse_num<T: std::str::FromStr>(vars: &HashMap<String, String>, name: &str) -> Option<T> {
    vars.get(name).and_then(|v| v.trim().parse().ok())
}

fn parse_hex(vars: &HashMap<String, String>, name: &str) -> Option<u64> {
    let v = vars.get(name)?.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The peer type column: `l` local (reference clock), `u` unicast, `s` symmetric,
/// `B`/`b` broadcast server/client, `M`/`m` multicast, `p` pool, `-` unknown.
fn peer_type(srcadr: &str, hmode: u8) -> char {
    if refclock_name(srcadr).is_some() {
        return 'l';
    }
    let multicast = srcadr.parse::<IpAddr>().is_ok_and(|a| a.is_multicast());
    match hmode {
        1 | 2 => 's',
        3 if srcadr == "0.0.0.0" || srcadr == "::" => 'p',
        3 => 'u',
        5 if multicast => 'M',
        5 => 'B',
        6 if multicast => 'm',
        6 => 'b',
        _ => '-',
    }
}

/// The refid column: `.LOCL.` for text refids, an address (or `LOCAL(0)`) otherwise.
fn refid_column(refid: &str) -> String {
    if refid.parse::<IpAddr>().is_ok() {
        return refclock_name(refid).unwrap_or_else(|| refid.to_string());
    }
    if refid.is_empty() {
        return String::new();
    }
    format!(".{refid}.")
}

fn ms(vars: &HashMap<String, String>, name: &str) -> String {
    parse_num::<f64>(vars, name).map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

/// One `peers` row (with its newline), given the association's status, its variables
/// and the time now (Unix seconds) for the `when` column.
pub fn peer_row(
    status: PeerStatus,
    vars: &HashMap<String, String>,
    now_unix: i64,
    numeric: bool,
    wide: bool,
) -> String {
    let srcadr = vars.get("srcadr").map_or("", String::as_str);
    // The configured name when the server sends one (reference clocks: `SHM(0)`), as
    // ntpq 4.2.8 and NTPsec's ntpq show it.
    let remote = match (
        vars.get("srchost").filter(|h| !h.is_empty()),
        refclock_name(srcadr),
    ) {
        (Some(host), _) => host.clone(),
        (None, Some(name)) if !numeric => name,
        _ => srcadr.to_string(),
    };
    let hmode = parse_num::<u8>(vars, "hmode").unwrap_or(0);
    let stratum = parse_num::<i64>(vars, "stratum").unwrap_or(16);
    let last = ["rec", "reftime"]
        .iter()
        .filter_map(|n| vars.get(*n).and_then(|v| parse_timestamp(v)))
        .find(|t| *t >> 32 != 0);
    let when = last.map_or(0, |t| now_unix - ntp_to_unix(t) as i64);
    let when = if last.is_some() {
        pretty_interval(when)
    } else {
        "-".into()
    };
    let hpoll = parse_num::<i32>(vars, "hpoll").unwrap_or(6);
    let ppoll = parse_num::<i32>(vars, "ppoll").unwrap_or(hpoll);
    let poll = 1i64 << hpoll.min(ppoll).clamp(0, 17);
    let reach = parse_hex(vars, "reach").unwrap_or(0);
    let jitter = if vars.contains_key("jitter") {
        ms(vars, "jitter")
    } else {
        ms(vars, "dispersion")
    };
    let mut row = String::new();
    let tally = status.select.tally();
    if wide && remote.len() > 15 {
        row.push_str(&format!("{tally}{remote}\n{:16} ", ""));
    } else {
        row.push_str(&format!("{tally}{:<15.15} ", remote));
    }
    row.push_str(&format!(
        "{:<15.15} {:>2} {} {:>4.4} {:>4.4}  {:>3o}  {:>7.7} {:>8.7} {:>7.7}\n",
        refid_column(vars.get("refid").map_or("", String::as_str)),
        stratum,
        peer_type(srcadr, hmode),
        when,
        pretty_interval(poll),
        reach,
        ms(vars, "delay"),
        ms(vars, "offset"),
        jitter
    ));
    row
}

/// One `associations` row.
pub fn association_row(index: usize, assoc: u16, status: PeerStatus) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let auth = if status.auth_enabled {
        yes_no(status.authentic)
    } else {
        "none"
    };
    format!(
        "{:3} {:5}  {:04x}   {:>3.3}  {:>4}  {:>4.4} {:>9.9} {:>11} {:2}\n",
        index,
        assoc,
        status.to_word(),
        yes_no(status.configured),
        yes_no(status.reachable),
        auth,
        status.select.condition(),
        status.last_event_name(),
        status.event_count
    )
}

/// Cook a value as ntpq does for display: `leap` as two bits, timestamps with their
/// date, `reach` in octal, refids of reference clocks by name.
fn cook(name: &str, value: &str) -> String {
    match name {
        "leap" => value
            .parse::<u8>()
            .map_or(value.to_string(), |l| format!("{:02b}", l & 3)),
        "reach" | "unreach" if value.starts_with("0x") => {
            u64::from_str_radix(&value[2..], 16).map_or(value.to_string(), |r| format!("{r:o}"))
        }
        "reftime" | "clock" | "rec" | "xmt" | "org" | "dst" => match parse_timestamp(value) {
            Some(t) => format!(
                "{:08x}.{:08x}  {}",
                t >> 32,
                t & 0xffff_ffff,
                pretty_date(t)
            ),
            None => value.to_string(),
        },
        "refid" => refclock_name(value).unwrap_or_else(|| value.to_string()),
        "flash" => match value
            .strip_prefix("0x")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        {
            Some(0) => "00 ok".into(),
            Some(f) => format!("{f:02x}"),
            None => value.to_string(),
        },
        _ => value.to_string(),
    }
}

/// `Sat, Jul 18 2020 11:34:04.819`, in UTC.
fn pretty_date(ntp: u64) -> String {
    use meridian_proto::calendar::{civil_from_days, MONTHS, WEEKDAYS_FROM_EPOCH};
    let t = ntp_to_unix(ntp);
    let secs = t.floor() as i64;
    let millis = ((t - t.floor()) * 1000.0) as u32;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {} {:2} {} {:02}:{:02}:{:02}.{:03}",
        WEEKDAYS_FROM_EPOCH[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        y,
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        millis
    )
}

/// `rv` output: the status line, then `name=value` items wrapped at 72 columns.
pub fn format_readvar(assoc: u16, status: u16, text: &str) -> String {
    let describe = if assoc == 0 {
        SystemStatus::from_word(status).describe()
    } else {
        PeerStatus::from_word(status).describe()
    };
    let mut s = format!("associd={assoc} status={status:04x} {describe},\n");
    let mut line = 0;
    let mut any = false;
    for item in VarList::new(text) {
        let value = item.value.map(|v| cook(item.name, v));
        let piece = match &value {
            Some(v) => format!("{}={v}", item.name),
            None => item.name.to_string(),
        };
        if any {
            if line + piece.len() + 2 > MAX_OUT_LINE {
                s.push_str(",\n");
                line = 0;
            } else {
                s.push_str(", ");
                line += 2;
            }
        }
        s.push_str(&piece);
        line += piece.len();
        any = true;
    }
    if any {
        s.push('\n');
    }
    s
}

/// One `mrulist` row, `now` in Unix seconds.
pub fn mru_row(e: &HashMap<String, String>, now: f64) -> String {
    let ts = |n: &str| e.get(n).and_then(|v| parse_timestamp(v)).map(ntp_to_unix);
    let (first, last) = (ts("first").unwrap_or(now), ts("last").unwrap_or(now));
    let count = parse_num::<u64>(e, "ct").unwrap_or(1);
    let lstint = (now - last + 0.5).max(0.0) as i64;
    let avgint = if count > 1 {
        ((last - first) / (count - 1) as f64 + 0.5) as i64
    } else {
        0
    };
    let rs = parse_hex(e, "rs").unwrap_or(0);
    let r = if rs & 0x400 != 0 {
        'K'
    } else if rs & 0x20 != 0 {
        'L'
    } else {
        '.'
    };
    let mv = parse_num::<u8>(e, "mv").unwrap_or(0);
    let addr = e.get("addr").map_or("", String::as_str);
    let (host, port) = match addr.parse::<SocketAddr>() {
        Ok(sa) => (sa.ip().to_string(), sa.port()),
        Err(_) => (addr.to_string(), 0),
    };
    format!(
        "{lstint:6} {avgint:6} {rs:4x} {r} {} {} {count:6} {port:5} {host}\n",
        mv & 7,
        (mv >> 3) & 7
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> HashMap<String, String> {
        var_map(text)
    }

    const NOW: i64 = 1_800_000_000;

    fn ntp(unix: i64) -> String {
        format!("0x{:08x}.00000000", unix + NTP_UNIX)
    }

    #[test]
    fn header_and_rule_are_78_columns() {
        assert_eq!(PEERS_HEADER.len(), 78);
    }

    #[test]
    fn local_clock_row_matches_classic_ntpq() {
        let v = vars(&format!(
            "srcadr=127.127.1.0, srcport=123, dstadr=127.0.0.1, stratum=10, hmode=3, pmode=4, hpoll=6, \
             ppoll=6, reach=0xff, refid=LOCL, rec={}, delay=0.000, offset=0.000, jitter=0.000",
            ntp(NOW - 36)
        ));
        let status = PeerStatus::from_word(0x963a);
        assert_eq!(
            peer_row(status, &v, NOW, false, false),
            "*LOCAL(0)        .LOCL.          10 l   36   64  377    0.000    0.000   0.000\n"
        );
        assert!(peer_row(status, &v, NOW, true, false)
            .starts_with("*127.127.1.0     .LOCL.          10 l"));
        let mut named = v.clone();
        named.insert("srchost".into(), "LOCAL(0)".into());
        assert!(peer_row(status, &named, NOW, true, false).starts_with("*LOCAL(0)        .LOCL."));
    }

    #[test]
    fn unicast_server_row_matches_classic_ntpq() {
        // From a real ntpq -p: "*ntp1.example.co 131.188.3.222    2 u  223 1024  377    0.474   -0.080   0.061"
        let v = vars(&format!(
            "srcadr=192.0.2.17, stratum=2, hmode=3, hpoll=10, ppoll=10, reach=0xff, refid=131.188.3.222, \
             rec={}, delay=0.474, offset=-0.080, jitter=0.061",
            ntp(NOW - 223)
        ));
        let row = peer_row(PeerStatus::from_word(0x961a), &v, NOW, true, false);
        assert_eq!(
            row,
            "*192.0.2.17      131.188.3.222    2 u  223 1024  377    0.474   -0.080   0.061\n"
        );
        assert_eq!(row.trim_end().len(), PEERS_HEADER.len());
        // Long names are cut at 15 columns, unless -w.
        let mut v6 = v.clone();
        v6.insert("srcadr".into(), "2001:db8::1234:5678".into());
        let cut = peer_row(PeerStatus::from_word(0x9414), &v6, NOW, true, false);
        assert!(cut.starts_with("+2001:db8::1234: 131.188"), "{cut}");
        let wide = peer_row(PeerStatus::from_word(0x9414), &v6, NOW, true, true);
        assert!(
            wide.starts_with("+2001:db8::1234:5678\n                 131.188"),
            "{wide}"
        );
    }

    #[test]
    fn unreachable_peer_row() {
        let v = vars("srcadr=192.0.2.1, stratum=16, hmode=3, hpoll=6, ppoll=10, reach=0x0, refid=INIT, \
                      rec=0x00000000.00000000, reftime=0x00000000.00000000, delay=0.000, offset=0.000, jitter=0.000");
        assert_eq!(
            peer_row(PeerStatus::from_word(0x8011), &v, NOW, true, false),
            " 192.0.2.1       .INIT.          16 u    -   64    0    0.000    0.000   0.000\n"
        );
    }

    #[test]
    fn intervals_are_pretty() {
        let cases = [
            (0, "-"),
            (5, "5"),
            (2048, "2048"),
            (2049, "34m"),
            (18_000, "300m"),
            (18_100, "5h"),
            (86_400 * 3, "72h"),
            (86_400 * 5, "5d"),
            (86_400 * 2000, "5y"),
        ];
        for (secs, text) in cases {
            assert_eq!(pretty_interval(secs), text, "{secs}");
        }
    }

    #[test]
    fn readvar_output_is_cooked_and_wrapped() {
        let text = "version=\"meridian 0.1.0\", processor=\"x86_64\", system=\"Linux/6.1.0\", leap=0,\r\n\
                    stratum=11, precision=-20, rootdelay=0.000, rootdisp=15.625, refid=127.127.1.0,\r\n\
                    reftime=0xe8f1c2a3.80000000, peer=40123, tc=6\r\n";
        let out = format_readvar(0, 0x0515, text);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "associd=0 status=0515 leap_none, sync_local, 1 event, clock_sync,"
        );
        // ntpq breaks before an item that would pass 72 columns.
        assert_eq!(
            lines[1],
            "version=\"meridian 0.1.0\", processor=\"x86_64\", system=\"Linux/6.1.0\","
        );
        assert!(out.contains("leap=00, stratum=11,"), "{out}");
        assert!(out.contains("refid=LOCAL(0),"), "{out}");
        assert!(out.contains("reftime=e8f1c2a3.80000000  "), "{out}");
        // 72 columns of items; the trailing comma may be the 73rd, as with ntpq.
        assert!(
            lines
                .iter()
                .all(|l| l.trim_end_matches(',').len() <= MAX_OUT_LINE),
            "{out}"
        );
        assert!(out.ends_with("tc=6\n"));
    }

    #[test]
    fn dates_are_formatted_like_ntpq() {
        // 0xe2b96e9c = 2020-07-15 12:01:32 UTC, a Wednesday.
        assert_eq!(
            pretty_date(0xe2b9_6e9c_d1c5_e6a1),
            "Wed, Jul 15 2020 12:01:32.819"
        );
    }

    #[test]
    fn association_rows() {
        let row = association_row(1, 40123, PeerStatus::from_word(0x963a));
        assert_eq!(
            row,
            "  1 40123  963a   yes   yes  none  sys.peer    sys_peer  3\n"
        );
    }

    #[test]
    fn mru_rows() {
        let now = (NOW) as f64;
        let e = vars(&format!(
            "addr=10.0.0.5:40000, last={}, first={}, ct=11, mv=35, rs=0x420",
            ntp(NOW - 3),
            ntp(NOW - 103)
        ));
        assert_eq!(
            mru_row(&e, now),
            "     3     10  420 K 3 4     11 40000 10.0.0.5\n"
        );
        let e = vars(&format!(
            "addr=127.0.0.1:0, last={}, first={}, ct=1, mv=22, rs=0x0",
            ntp(NOW),
            ntp(NOW)
        ));
        assert_eq!(
            mru_row(&e, now),
            "     0      0    0 . 6 2      1     0 127.0.0.1\n"
        );
    }

    #[test]
    fn errors_are_worded_as_classic_ntpq() {
        use meridian_proto::control::ErrorCode as E;
        let say = |c| describe_error(Mode6Error::Server(c), 7);
        assert_eq!(
            say(E::Permission),
            "***Server disallowed request (authentication?)"
        );
        assert_eq!(
            say(E::BadAssociation),
            "***Association ID 7 unknown to server"
        );
        assert_eq!(
            say(E::BadFormat),
            "***Server reports a bad format request packet"
        );
        assert_eq!(
            say(E::BadOpcode),
            "***Server reports a bad opcode in request"
        );
        assert_eq!(say(E::Prohibited), "***Server returns unknown error code 7");
    }

    #[test]
    fn command_line_is_getopt_like() {
        let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        let o = parse_args(&s(&[
            "-np",
            "-c",
            "rv 0 stratum",
            "-crv",
            "10.0.0.1",
            "--port",
            "12300",
        ]))
        .unwrap();
        assert!(o.numeric);
        assert_eq!(o.commands, ["peers", "rv 0 stratum", "rv"]);
        assert_eq!(
            (o.hosts.clone(), o.port),
            (vec!["10.0.0.1".to_string()], 12300)
        );
        let o = parse_args(&s(&["-a", "7", "-kkeys", "-c:config x y"])).unwrap();
        assert_eq!(
            (o.keyid, o.keyfile.as_deref(), o.commands.clone()),
            (Some(7), Some("keys"), vec![":config x y".to_string()])
        );
        let o = parse_args(&s(&["--authentication=9", "--keyfile", "/k", "h"])).unwrap();
        assert_eq!((o.keyid, o.keyfile.as_deref()), (Some(9), Some("/k")));
        assert_eq!(o.hosts, ["h"]);
        assert!(parse_args(&s(&["-a", "0"])).is_err());
        assert!(parse_args(&s(&["-a", "65536"])).is_err());
        assert!(parse_args(&s(&["--bogus"])).is_err());
        let o = parse_args(&s(&["--port=5"])).unwrap();
        assert_eq!((o.hosts, o.port), (vec!["localhost".to_string()], 5));
        assert!(parse_args(&s(&["-z"])).is_err());
        assert!(parse_args(&s(&["-c"])).is_err());
    }
}
