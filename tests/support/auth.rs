//! Helpers for the symmetric-key interop tests (`tests/interop_auth.rs`).
//!
//! * [`TestKeys`]: key material from `meridian keygen` (one run per key
//!   type), written out in each peer's own key-file syntax from the same
//!   secrets: the classic `ID TYPE HEX` that Meridian and NTPsec read
//!   ([`ntp_keys_file`]), and chrony's `ID TYPE HEX:HEX` ([`chrony_keyfile`],
//!   where AES-128-CMAC is spelled `AES128`).
//! * [`ntpdig_auth`]: NTPsec's `ntpdig -d -d [-k FILE -a N]` (query only),
//!   with the packets it sent and received recovered from its hex dumps.
//! * [`chrony_query_auth`]: `chronyd -x -Q` with a `keyfile` and
//!   `server … key N`, with its measurements log.
//!
//! Safety: as everywhere in the harness, every program runs without
//! CAP_SYS_TIME; chronyd only with `-x`, ntpdig never with `-s`/`-S`.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use super::{
    meridian_bin, parse_chrony_measurements, parse_ntpdig_line, run_bounded, sandboxed,
    ChronyMeasurement, Netns, NtpdigLine, TempDir,
};

/// The three MAC types every peer here supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `MD5(key || packet)`, 16-octet digest.
    Md5,
    /// `SHA1(key || packet)`, 20-octet digest.
    Sha1,
    /// AES-128-CMAC (RFC 8573), 16-octet MAC.
    Aes128Cmac,
}

impl KeyKind {
    /// Every kind, in key-id order (1, 2, 3).
    pub const ALL: [KeyKind; 3] = [KeyKind::Md5, KeyKind::Sha1, KeyKind::Aes128Cmac];

    /// The type name in a classic keys file: what `meridian keygen -t`
    /// takes and writes, and what NTPsec reads (it maps `AES128CMAC` to
    /// OpenSSL's `AES-128`).
    pub fn ntp_name(self) -> &'static str {
        match self {
            KeyKind::Md5 => "MD5",
            KeyKind::Sha1 => "SHA1",
            KeyKind::Aes128Cmac => "AES128CMAC",
        }
    }

    /// The type name in a chrony keyfile.
    pub fn chrony_name(self) -> &'static str {
        match self {
            KeyKind::Md5 => "MD5",
            KeyKind::Sha1 => "SHA1",
            KeyKind::Aes128Cmac => "AES128",
        }
    }

    /// Octets of the digest after the 4-octet key id.
    pub fn digest_len(self) -> usize {
        match self {
            KeyKind::Sha1 => 20,
            KeyKind::Md5 | KeyKind::Aes128Cmac => 16,
        }
    }

    /// Octets of the whole MAC trailer (key id + digest).
    pub fn mac_len(self) -> usize {
        4 + self.digest_len()
    }

    /// Position in [`KeyKind::ALL`] (0, 1, 2).
    pub fn index(self) -> u16 {
        match self {
            KeyKind::Md5 => 0,
            KeyKind::Sha1 => 1,
            KeyKind::Aes128Cmac => 2,
        }
    }
}

/// One symmetric key: id, type and secret (lower-case hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestKey {
    /// Key id.
    pub id: u16,
    /// MAC type.
    pub kind: KeyKind,
    /// The secret, hex.
    pub hex: String,
}

impl TestKey {
    /// The same id and type with a different secret (first hex digit
    /// changed): what a peer with a mistyped key has.
    pub fn corrupted(&self) -> TestKey {
        let mut chars: Vec<char> = self.hex.chars().collect();
        let v = chars[0].to_digit(16).expect("hex secret");
        chars[0] = std::char::from_digit(v ^ 1, 16).expect("hex digit");
        TestKey {
            id: self.id,
            kind: self.kind,
            hex: chars.into_iter().collect(),
        }
    }
}

/// Run `meridian keygen -t TYPE -n COUNT` and return its secrets, checking
/// the output's shape: `#` comment lines, then `ID TYPE HEX` with ids
/// 1..=COUNT, the requested type and secrets of 20 octets (MD5, SHA-1) or
/// 16 (AES-128).
pub fn keygen(kind: KeyKind, count: u16) -> Vec<String> {
    let out = run_bounded(
        Command::new(meridian_bin()).args([
            "keygen",
            "-t",
            kind.ntp_name(),
            "-n",
            &count.to_string(),
        ]),
        Duration::from_secs(10),
    );
    let ctx = super::describe_output(&out);
    assert!(out.status.success(), "meridian keygen failed:\n{ctx}");
    let text = String::from_utf8_lossy(&out.stdout);
    let want_len = match kind {
        KeyKind::Md5 | KeyKind::Sha1 => 40,
        KeyKind::Aes128Cmac => 32,
    };
    let mut secrets = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            f.len(),
            3,
            "keygen line {line:?} is not `ID TYPE HEX`:\n{ctx}"
        );
        assert_eq!(f[0], (secrets.len() + 1).to_string(), "{ctx}");
        assert_eq!(f[1], kind.ntp_name(), "{ctx}");
        assert!(
            f[2].len() == want_len && f[2].bytes().all(|b| b.is_ascii_hexdigit()),
            "keygen secret {:?} is not {want_len} hex digits:\n{ctx}",
            f[2]
        );
        secrets.push(f[2].to_ascii_lowercase());
    }
    assert_eq!(secrets.len(), usize::from(count), "{ctx}");
    secrets
}

/// A classic keys file (`ID TYPE HEX` per line), as Meridian's `keys`
/// and `ntpdate -k`, and NTPsec's `ntpdig -k`, read it.
pub fn ntp_keys_file(keys: &[TestKey]) -> String {
    let mut s = String::from("# generated by tests/interop_auth.rs\n");
    for k in keys {
        s.push_str(&format!("{} {} {}\n", k.id, k.kind.ntp_name(), k.hex));
    }
    s
}

/// chrony's keyfile syntax for the same keys: `ID TYPE HEX:HEX`.
pub fn chrony_keyfile(keys: &[TestKey]) -> String {
    let mut s = String::from("# generated by tests/interop_auth.rs\n");
    for k in keys {
        s.push_str(&format!(
            "{} {} HEX:{}\n",
            k.id,
            k.kind.chrony_name(),
            k.hex.to_ascii_uppercase()
        ));
    }
    s
}

/// The key material of one test, from `meridian keygen`, and its files:
///
/// * `trusted`: ids 1 (MD5), 2 (SHA1), 3 (AES128CMAC): the server's
///   `trustedkey 1 2 3`;
/// * `untrusted`: ids 11, 12, 13 of the same types, defined in the
///   server's keys file but not trusted;
/// * `unknown`: ids 21, 22, 23, only in the clients' files.
pub struct TestKeys {
    /// Ids 1, 2, 3.
    pub trusted: Vec<TestKey>,
    /// Ids 11, 12, 13.
    pub untrusted: Vec<TestKey>,
    /// Ids 21, 22, 23.
    pub unknown: Vec<TestKey>,
    /// Where the files are written.
    pub dir: TempDir,
}

impl TestKeys {
    /// Fresh keys: one `meridian keygen -t TYPE -n 3` per type.
    pub fn generate() -> TestKeys {
        let mut trusted = Vec::new();
        let mut untrusted = Vec::new();
        let mut unknown = Vec::new();
        for kind in KeyKind::ALL {
            let s = keygen(kind, 3);
            let i = kind.index();
            let key = |id: u16, hex: &String| TestKey {
                id,
                kind,
                hex: hex.clone(),
            };
            trusted.push(key(1 + i, &s[0]));
            untrusted.push(key(11 + i, &s[1]));
            unknown.push(key(21 + i, &s[2]));
        }
        TestKeys {
            trusted,
            untrusted,
            unknown,
            dir: TempDir::new("keys"),
        }
    }

    /// The trusted key of `kind`.
    pub fn trusted(&self, kind: KeyKind) -> &TestKey {
        &self.trusted[usize::from(kind.index())]
    }

    /// The untrusted key of `kind`.
    pub fn untrusted(&self, kind: KeyKind) -> &TestKey {
        &self.untrusted[usize::from(kind.index())]
    }

    /// The key of `kind` that only clients have.
    pub fn unknown(&self, kind: KeyKind) -> &TestKey {
        &self.unknown[usize::from(kind.index())]
    }

    /// `keys` + `trustedkey` lines for a Meridian ntp.conf whose keys file
    /// holds the trusted and untrusted keys (written as `server.keys`).
    pub fn server_conf_lines(&self) -> String {
        let all: Vec<TestKey> = self
            .trusted
            .iter()
            .chain(&self.untrusted)
            .cloned()
            .collect();
        let path = self.write("server.keys", &ntp_keys_file(&all));
        format!("keys {}\ntrustedkey 1 2 3\n", path.display())
    }

    /// Every key (trusted, untrusted, unknown) in the classic format:
    /// a client's file.
    pub fn client_file(&self) -> PathBuf {
        let all: Vec<TestKey> = self
            .trusted
            .iter()
            .chain(&self.untrusted)
            .chain(&self.unknown)
            .cloned()
            .collect();
        self.write("client.keys", &ntp_keys_file(&all))
    }

    /// The trusted ids with corrupted secrets, classic format.
    pub fn wrong_file(&self) -> PathBuf {
        let wrong: Vec<TestKey> = self.trusted.iter().map(TestKey::corrupted).collect();
        self.write("wrong.keys", &ntp_keys_file(&wrong))
    }

    /// Every key in chrony's syntax.
    pub fn chrony_file(&self) -> PathBuf {
        let all: Vec<TestKey> = self
            .trusted
            .iter()
            .chain(&self.untrusted)
            .chain(&self.unknown)
            .cloned()
            .collect();
        self.write("chrony.keys", &chrony_keyfile(&all))
    }

    /// Only the trusted ids (1, 2, 3) in chrony's syntax: a chrony server's
    /// keyfile.
    pub fn chrony_server_file(&self) -> PathBuf {
        self.write("chrony-server.keys", &chrony_keyfile(&self.trusted))
    }

    /// The trusted ids with corrupted secrets, chrony's syntax.
    pub fn chrony_wrong_file(&self) -> PathBuf {
        let wrong: Vec<TestKey> = self.trusted.iter().map(TestKey::corrupted).collect();
        self.write("chrony-wrong.keys", &chrony_keyfile(&wrong))
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.write(name, text);
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod key file");
        p
    }
}

// ---------------------------------------------------------------------------
// ntpdig with authentication
// ---------------------------------------------------------------------------

/// One `ntpdig -d -d` run.
#[derive(Debug)]
pub struct NtpdigAuthRun {
    /// Exit status and output.
    pub output: Output,
    /// The result line, if it printed one.
    pub line: Option<NtpdigLine>,
    /// The request it sent, from its hex dump.
    pub request: Vec<u8>,
    /// The reply it received (empty if none), from its hex dump.
    pub reply: Vec<u8>,
}

impl NtpdigAuthRun {
    /// Output and recovered packets, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\nrequest ({} octets): {}\nreply ({} octets): {}",
            super::describe_output(&self.output),
            self.request.len(),
            hex(&self.request),
            self.reply.len(),
            hex(&self.reply)
        )
    }

    /// ntpdig's stderr.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The reply is a crypto-NAK answering our request: a mode-4 header
    /// whose origin is our transmit timestamp, followed by exactly the
    /// 4-octet key id 0 (RFC 5905 §7.4).
    pub fn reply_is_crypto_nak(&self) -> bool {
        self.reply.len() == 52
            && self.reply[0] & 7 == 4
            && self.request.len() >= 48
            && self.reply[24..32] == self.request[40..48]
            && self.reply[48..] == [0, 0, 0, 0]
    }

    /// The key id of the reply's MAC, if it has one.
    pub fn reply_key_id(&self) -> Option<u32> {
        let b = self.reply.get(48..52)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The octets of every row of ntpsec's `dump_hex_printable` in `text`
/// (`xx xx … ` in the first 48 columns, the printable form after them),
/// concatenated in order. Other lines are skipped.
pub fn hex_dump_octets(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(row) = hex_dump_row(line) {
            out.extend(row);
        }
    }
    out
}

/// One dump row: 1..=16 `xx ` groups, space padding to column 48, then
/// exactly one printable character per octet.
fn hex_dump_row(line: &str) -> Option<Vec<u8>> {
    let b = line.as_bytes();
    if b.len() <= 48 {
        return None;
    }
    let mut row = Vec::new();
    for chunk in b[..48].chunks(3) {
        if chunk == b"   " {
            continue;
        }
        let hex = std::str::from_utf8(&chunk[..2]).ok()?;
        if chunk[2] != b' ' || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        row.push(u8::from_str_radix(hex, 16).ok()?);
    }
    // Padding only after the last octet.
    let used = 3 * row.len();
    if row.is_empty() || b[used..48].iter().any(|&c| c != b' ') || b.len() - 48 != row.len() {
        return None;
    }
    Some(row)
}

/// Run NTPsec's `ntpdig -d -d -t T [-k FILE -a N] HOST` (query only)
/// without CAP_SYS_TIME in `netns`; ntpdig always uses port 123. With
/// `-d -d` it dumps the request it sent and the reply it received on
/// stdout; `request_len` (48, plus the MAC when authenticating) splits
/// the two.
pub fn ntpdig_auth(
    netns: &Netns,
    host: &str,
    key: Option<(&Path, &TestKey)>,
    timeout_s: u32,
) -> NtpdigAuthRun {
    let mut cmd = sandboxed(Some(netns), "ntpdig");
    cmd.args(["-d", "-d", "-t", &timeout_s.to_string()]);
    let mut request_len = 48;
    if let Some((file, k)) = key {
        cmd.arg("-k").arg(file).args(["-a", &k.id.to_string()]);
        request_len += k.kind.mac_len();
    }
    cmd.arg(host);
    let output = run_bounded(&mut cmd, Duration::from_secs(u64::from(timeout_s) + 15));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find_map(parse_ntpdig_line);
    let mut octets = hex_dump_octets(&stdout);
    let reply = if octets.len() > request_len {
        octets.split_off(request_len)
    } else {
        Vec::new()
    };
    NtpdigAuthRun {
        output,
        line,
        request: octets,
        reply,
    }
}

// ---------------------------------------------------------------------------
// chronyd -Q with a key
// ---------------------------------------------------------------------------

/// Result of one `chronyd -Q` run with a key.
#[derive(Debug)]
pub struct ChronyAuthQuery {
    /// chronyd exited 0 (it measured the clock).
    pub success: bool,
    /// Parsed `measurements.log` lines (chrony logs only samples that
    /// passed its authentication test).
    pub measurements: Vec<ChronyMeasurement>,
    /// Everything chronyd printed.
    pub output: String,
}

/// `chronyd -x -u root -Q -t T 'keyfile FILE' 'server IP port P key N
/// iburst minpoll -4 maxpoll -4'` with `log measurements`, without
/// CAP_SYS_TIME in `netns`. The short poll (1/16 s) lets it finish in
/// well under a second when the server answers.
pub fn chrony_query_auth(
    netns: &Netns,
    server: IpAddr,
    port: u16,
    keyfile: &Path,
    key_id: u16,
    timeout_s: u32,
) -> ChronyAuthQuery {
    let dir = TempDir::new("chronyq-auth");
    let d = dir.path().display();
    let mut cmd = sandboxed(Some(netns), "chronyd");
    cmd.args(["-x", "-u", "root", "-Q", "-t", &timeout_s.to_string()])
        .arg(format!("keyfile {}", keyfile.display()))
        .arg(format!(
            "server {server} port {port} key {key_id} iburst minpoll -4 maxpoll -4"
        ))
        .arg(format!("pidfile {d}/chronyd.pid"))
        .arg(format!("logdir {d}"))
        .arg("log measurements");
    let out = run_bounded(&mut cmd, Duration::from_secs(u64::from(timeout_s) + 10));
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = fs::read_to_string(dir.path().join("measurements.log")).unwrap_or_default();
    ChronyAuthQuery {
        success: out.status.success(),
        measurements: parse_chrony_measurements(&log),
        output: format!("{output}--- measurements.log ---\n{log}"),
    }
}
