//! The control protocol's variables: what the daemon publishes ([`ControlSnapshot`]) and
//! how each variable is spelled on the wire, with classic ntpd 4.2.8's names, order and
//! number formats (so that `ntpq`, `ntpstat` and their scripts read Meridian unchanged).
//!
//! Units in the structs are SI (seconds, and ppm for frequencies); the wire shows
//! milliseconds with three decimals (six for the system offset and jitter, as
//! ntpd 4.2.8p15 does), timestamps as `0xSSSSSSSS.FFFFFFFF` and the reach register in
//! hex.

use std::net::{IpAddr, Ipv4Addr};

use meridian_proto::control::format_timestamp;
use meridian_proto::{NtpTimestamp, PeerStatus, ReferenceId, SystemStatus, VarWriter};

/// Everything mode 6 answers from, published by the daemon's main loop.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlSnapshot {
    /// System variables (association 0).
    pub system: SystemVariables,
    /// One entry per association, in association-id order.
    pub peers: Vec<PeerVariables>,
}

impl ControlSnapshot {
    /// The association with this id.
    pub fn peer(&self, assoc_id: u16) -> Option<&PeerVariables> {
        self.peers.iter().find(|p| p.assoc_id == assoc_id)
    }
}

/// System variables (`ntpq -c rv`).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemVariables {
    /// System status word.
    pub status: SystemStatus,
    /// `version`: the daemon's version string.
    pub version: String,
    /// `processor`: machine architecture.
    pub processor: String,
    /// `system`: operating system and release.
    pub system: String,
    /// `leap`: leap indicator (3: unsynchronised).
    pub leap: u8,
    /// `stratum`.
    pub stratum: u8,
    /// `precision`: log2 seconds.
    pub precision: i8,
    /// `rootdelay`, seconds.
    pub root_delay: f64,
    /// `rootdisp`, seconds.
    pub root_dispersion: f64,
    /// `refid`.
    pub refid: ReferenceId,
    /// `reftime`.
    pub reftime: NtpTimestamp,
    /// `peer`: association id of the system peer (0: none).
    pub peer: u16,
    /// `tc`: time constant (log2 s), the system poll interval.
    pub tc: i8,
    /// `mintc`: minimum time constant.
    pub mintc: i8,
    /// `offset`: last clock offset, seconds.
    pub offset: f64,
    /// `frequency`: frequency correction, ppm.
    pub frequency: f64,
    /// `sys_jitter`: combined source jitter, seconds.
    pub sys_jitter: f64,
    /// `clk_jitter`: clock jitter, seconds.
    pub clk_jitter: f64,
    /// `clk_wander`: frequency wander, ppm.
    pub clk_wander: f64,
    /// `tai`: TAI−UTC offset, when a leap file is loaded.
    pub tai: Option<u16>,
    /// `leapsec`: NTP seconds of the last leap in the leap file.
    pub leapsec: Option<u32>,
    /// `expire`: NTP seconds when the leap file expires.
    pub expire: Option<u32>,
}

/// Per-association variables (`ntpq -c "rv ASSOC"`, and `ntpq -p`).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerVariables {
    /// Association id (nonzero).
    pub assoc_id: u16,
    /// Peer status word.
    pub status: PeerStatus,
    /// `srcadr`: the remote's address (127.127.t.u for reference clocks).
    pub srcadr: IpAddr,
    /// `srcport`.
    pub srcport: u16,
    /// `srchost`: the configured name (reference clocks: their name, `LOCAL(0)`), which
    /// NTPsec's ntpq shows for reference clocks.
    pub srchost: Option<String>,
    /// `dstadr`: our address for this association.
    pub dstadr: IpAddr,
    /// `dstport`.
    pub dstport: u16,
    /// `leap`.
    pub leap: u8,
    /// `stratum`.
    pub stratum: u8,
    /// `precision`.
    pub precision: i8,
    /// `rootdelay`, seconds.
    pub root_delay: f64,
    /// `rootdisp`, seconds.
    pub root_dispersion: f64,
    /// `refid`.
    pub refid: ReferenceId,
    /// `reftime`.
    pub reftime: NtpTimestamp,
    /// `rec`: when the last valid sample arrived (ntpq's `when`).
    pub rec: NtpTimestamp,
    /// `reach`: the reach shift register.
    pub reach: u8,
    /// `unreach`: polls without reply.
    pub unreach: u32,
    /// `hmode`: our mode (3 client, 1 active…).
    pub hmode: u8,
    /// `pmode`: the remote's mode.
    pub pmode: u8,
    /// `hpoll`: our poll exponent.
    pub hpoll: i8,
    /// `ppoll`: the remote's poll exponent.
    pub ppoll: i8,
    /// `headway`: rate-limit headway.
    pub headway: u32,
    /// `flash`: packet test failure bits (0: ok).
    pub flash: u16,
    /// `keyid`: authentication key (0: none).
    pub keyid: u32,
    /// `offset`, seconds.
    pub offset: f64,
    /// `delay`, seconds.
    pub delay: f64,
    /// `dispersion`, seconds.
    pub dispersion: f64,
    /// `jitter`, seconds.
    pub jitter: f64,
    /// Clock filter stages, newest first: (delay, offset, dispersion) in seconds.
    pub filter: Vec<(f64, f64, f64)>,
}

impl PeerVariables {
    /// Whether this association is a reference clock (127.127.t.u).
    pub fn is_refclock(&self) -> bool {
        matches!(self.srcadr, IpAddr::V4(a) if a.octets()[0] == 127 && a.octets()[1] == 127)
    }
}

/// The system variables in the order ntpd sends them for a bare `rv`.
pub const SYSTEM_DEFAULT: &[&str] = &[
    "version",
    "processor",
    "system",
    "leap",
    "stratum",
    "precision",
    "rootdelay",
    "rootdisp",
    "refid",
    "reftime",
    "clock",
    "peer",
    "tc",
    "mintc",
    "offset",
    "frequency",
    "sys_jitter",
    "clk_jitter",
    "clk_wander",
    "tai",
    "leapsec",
    "expire",
];

/// The peer variables in the order ntpd sends them for a bare `rv ASSOC`.
pub const PEER_DEFAULT: &[&str] = &[
    "srcadr",
    "srcport",
    "srchost",
    "dstadr",
    "dstport",
    "leap",
    "stratum",
    "precision",
    "rootdelay",
    "rootdisp",
    "refid",
    "reftime",
    "rec",
    "reach",
    "unreach",
    "hmode",
    "pmode",
    "hpoll",
    "ppoll",
    "headway",
    "flash",
    "keyid",
    "offset",
    "delay",
    "dispersion",
    "jitter",
    "filtdelay",
    "filtoffset",
    "filtdisp",
];

/// Milliseconds with three decimals (ntpd's `ctl_putdbl`).
fn ms3(seconds: f64) -> String {
    format!("{:.3}", seconds * 1e3)
}

/// Milliseconds with six decimals (ntpd's `ctl_putdbl6`).
fn ms6(seconds: f64) -> String {
    format!("{:.6}", seconds * 1e3)
}

/// A refid as ntpd writes it: text (up to four printable characters) for strata 0, 1
/// and 16 and for reference clocks, a dotted quad otherwise.
pub fn refid_text(refid: ReferenceId, as_text: bool) -> String {
    if as_text {
        refid
            .0
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
            .collect()
    } else {
        Ipv4Addr::from(refid.0).to_string()
    }
}

/// Whether ntpd would show a refid at this stratum as text (its `REFID_ISTEXT`).
pub fn refid_is_text(stratum: u8) -> bool {
    stratum <= 1 || stratum >= 16
}

/// An NTP-seconds date as ntpd's `ctl_putfs` writes it: `YYYYMMDDhhmm`.
fn ntp_date(ntp_seconds: u32) -> String {
    let unix = i64::from(ntp_seconds) - meridian_proto::UNIX_OFFSET;
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = meridian_proto::calendar::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60
    )
}

/// Why a variable could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownVariable;

impl SystemVariables {
    /// The wire value of one variable: `Ok(None)` for a known variable with nothing to
    /// say (no leap file), `Err` for an unknown name. `now` is the `clock` variable.
    pub fn value(&self, name: &str, now: NtpTimestamp) -> Result<Option<String>, UnknownVariable> {
        let v = match name {
            "version" => format!("\"{}\"", self.version),
            "processor" => format!("\"{}\"", self.processor),
            "system" => format!("\"{}\"", self.system),
            "leap" => self.leap.to_string(),
            "stratum" => self.stratum.to_string(),
            "precision" => self.precision.to_string(),
            "rootdelay" => ms3(self.root_delay),
            "rootdisp" => ms3(self.root_dispersion),
            "refid" => refid_text(self.refid, refid_is_text(self.stratum)),
            "reftime" => format_timestamp(self.reftime.to_bits()),
            "clock" => format_timestamp(now.to_bits()),
            "peer" => self.peer.to_string(),
            "tc" => self.tc.to_string(),
            "mintc" => self.mintc.to_string(),
            "offset" => ms6(self.offset),
            "frequency" => format!("{:.3}", self.frequency),
            "sys_jitter" => ms6(self.sys_jitter),
            "clk_jitter" => ms3(self.clk_jitter),
            "clk_wander" => format!("{:.3}", self.clk_wander),
            "tai" => return Ok(self.tai.map(|t| t.to_string())),
            "leapsec" => return Ok(self.leapsec.map(ntp_date)),
            "expire" => return Ok(self.expire.map(ntp_date)),
            _ => return Err(UnknownVariable),
        };
        Ok(Some(v))
    }
}

impl PeerVariables {
    /// The wire value of one variable, or `Err` for an unknown name.
    pub fn value(&self, name: &str) -> Result<Option<String>, UnknownVariable> {
        let filt = |pick: fn(&(f64, f64, f64)) -> f64| {
            self.filter
                .iter()
                .map(|f| format!(" {:.2}", pick(f) * 1e3))
                .collect::<String>()
        };
        let v = match name {
            "srcadr" => self.srcadr.to_string(),
            "srcport" => self.srcport.to_string(),
            "srchost" => return Ok(self.srchost.as_ref().map(|h| format!("\"{h}\""))),
            "dstadr" => self.dstadr.to_string(),
            "dstport" => self.dstport.to_string(),
            "leap" => self.leap.to_string(),
            "stratum" => self.stratum.to_string(),
            "precision" => self.precision.to_string(),
            "rootdelay" => ms3(self.root_delay),
            "rootdisp" => ms3(self.root_dispersion),
            "refid" => refid_text(
                self.refid,
                self.is_refclock() || refid_is_text(self.stratum),
            ),
            "reftime" => format_timestamp(self.reftime.to_bits()),
            "rec" => format_timestamp(self.rec.to_bits()),
            "reach" => format!("0x{:x}", self.reach),
            "unreach" => self.unreach.to_string(),
            "hmode" => self.hmode.to_string(),
            "pmode" => self.pmode.to_string(),
            "hpoll" => self.hpoll.to_string(),
            "ppoll" => self.ppoll.to_string(),
            "headway" => self.headway.to_string(),
            "flash" => format!("0x{:x}", self.flash),
            "keyid" => self.keyid.to_string(),
            "offset" => ms3(self.offset),
            "delay" => ms3(self.delay),
            "dispersion" => ms3(self.dispersion),
            "jitter" => ms3(self.jitter),
            "filtdelay" => filt(|f| f.0),
            "filtoffset" => filt(|f| f.1),
            "filtdisp" => filt(|f| f.2),
            _ => return Err(UnknownVariable),
        };
        Ok(Some(v))
    }
}

/// Write `names` (or the defaults) from `lookup` into a variable list; `Err` on the
/// first unknown name, as ntpd answers "unknown variable".
pub fn write_vars<'n>(
    names: impl Iterator<Item = &'n str>,
    lookup: impl Fn(&str) -> Result<Option<String>, UnknownVariable>,
) -> Result<String, UnknownVariable> {
    let mut w = VarWriter::new();
    for name in names {
        if let Some(value) = lookup(name)? {
            w.put(name, &value);
        }
    }
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_proto::control::VarList;

    pub(crate) fn sample_system() -> SystemVariables {
        SystemVariables {
            status: SystemStatus::from_word(0x0615),
            version: "meridian 0.1.0".into(),
            processor: "x86_64".into(),
            system: "Linux/6.1.0".into(),
            leap: 0,
            stratum: 3,
            precision: -23,
            root_delay: 0.001234,
            root_dispersion: 0.025123,
            refid: ReferenceId::from_ipv4(Ipv4Addr::new(192, 168, 1, 1)),
            reftime: NtpTimestamp::from_bits(0xe2b9_6e9c_d1c5_e6a1),
            peer: 51621,
            tc: 8,
            mintc: 3,
            offset: -0.000_116_185,
            frequency: -11.469,
            sys_jitter: 0.000_252_154,
            clk_jitter: 0.000_254,
            clk_wander: 0.014,
            tai: Some(37),
            leapsec: Some(3_692_217_600),
            expire: None,
        }
    }

    #[test]
    fn system_values_use_ntpd_formats() {
        let s = sample_system();
        let now = NtpTimestamp::from_bits(0xe2b9_6f76_5d4d_3ab7);
        let text = write_vars(SYSTEM_DEFAULT.iter().copied(), |n| s.value(n, now)).unwrap();
        assert!(
            text.starts_with("version=\"meridian 0.1.0\", processor=\"x86_64\","),
            "{text}"
        );
        for expected in [
            "leap=0",
            "stratum=3",
            "precision=-23",
            "rootdelay=1.234",
            "rootdisp=25.123",
            "refid=192.168.1.1",
            "reftime=0xe2b96e9c.d1c5e6a1",
            "clock=0xe2b96f76.5d4d3ab7",
            "peer=51621",
            "tc=8",
            "offset=-0.116185",
            "frequency=-11.469",
            "sys_jitter=0.252154",
            "clk_jitter=0.254",
            "clk_wander=0.014",
            "tai=37",
            "leapsec=201701010000",
        ] {
            assert!(
                VarList::new(&text)
                    .any(|i| format!("{}={}", i.name, i.value.unwrap_or("")) == expected),
                "{expected} missing from {text}"
            );
        }
        assert!(!text.contains("expire"), "absent leap file: no expire");
        assert_eq!(s.value("nonesuch", now), Err(UnknownVariable));
        assert!(write_vars(["stratum", "bogus"].into_iter(), |n| s.value(n, now)).is_err());
    }

    #[test]
    fn refids_are_text_only_where_ntpd_makes_them_text() {
        assert_eq!(refid_text(ReferenceId::LOCL, true), "LOCL");
        assert_eq!(refid_text(ReferenceId::from_ascii(b"GPS"), true), "GPS");
        assert_eq!(refid_text(ReferenceId([b'A', 1, b'B', 0]), true), "A.B");
        assert_eq!(
            refid_text(ReferenceId::from_ipv4(Ipv4Addr::new(127, 127, 1, 0)), false),
            "127.127.1.0"
        );
        assert!(refid_is_text(1) && refid_is_text(16) && refid_is_text(0) && !refid_is_text(2));
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(ntp_date(3_692_217_600), "201701010000");
        assert_eq!(
            ntp_date(2_208_988_800 + 86_400 * 59 + 3_660),
            "197003010101"
        );
    }
}
