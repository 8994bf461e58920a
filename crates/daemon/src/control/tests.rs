//! Tests of the mode 6 handler against the requests ntpq and ntpstat send, and against
//! every malformed case we can think of.

use std::net::{IpAddr, SocketAddr};

use meridian_conf::restrict::RestrictFlags;
use meridian_conf::{parse_str, MemorySource};
use meridian_proto::control::{
    mac_offset, opcode, ControlHeader, ErrorCode, VarList, HEADER_LEN, MAX_FRAGMENT_LEN,
};
use meridian_proto::{NtpTimestamp, PeerStatus, Reassembly, SystemStatus};

use meridian_auth::{parse_keys, KeyStore};

use super::auth::MAX_SIGNED_FRAGMENT_LEN;
use super::handler::{
    CONFIG_NOMODIFY, CONFIG_UNSUPPORTED, MAX_UNVERIFIED_FRAGMENTS, SAVECONFIG_NO_DIR,
};
use super::*;
use crate::reference::LocalReference;

const ASSOC: u16 = 40123;

fn now() -> NtpTimestamp {
    NtpTimestamp::from_unix(1_800_000_000, 0)
}

fn snapshot() -> ControlSnapshot {
    let conf = "server 127.127.1.0\nfudge 127.127.1.0 stratum 10\n";
    let r = LocalReference::from_config(&parse_str("t.conf", conf, &MemorySource::new()).unwrap());
    let server = r.server_state(now(), -20, 3);
    local_snapshot(
        &r,
        &server,
        now().add_seconds(-1000.0),
        ASSOC,
        &HostInfo::detect(),
    )
}

fn clients() -> Vec<MruEntry> {
    (1..=40u8)
        .map(|i| MruEntry {
            addr: IpAddr::from([10, 0, 0, i]),
            port: 0,
            first: now().add_seconds(-100.0 - f64::from(i)),
            last: now().add_seconds(-f64::from(i)),
            count: u64::from(i),
            mode_version: 0x23,
            restrict: if i % 2 == 0 {
                RestrictFlags::LIMITED | RestrictFlags::KOD
            } else {
                RestrictFlags::empty()
            },
        })
        .collect()
}

fn request(op: u8, assoc: u16, data: &str) -> Vec<u8> {
    let mut b = vec![0u8; HEADER_LEN];
    ControlHeader::request(op, 77, assoc, data.len() as u16)
        .encode((&mut b[..HEADER_LEN]).try_into().unwrap());
    b.extend_from_slice(data.as_bytes());
    while b.len() & 3 != 0 {
        b.push(0);
    }
    b
}

struct Answer {
    outcome: ControlOutcome,
    fragments: Vec<Vec<u8>>,
}

impl Answer {
    fn header(&self) -> ControlHeader {
        ControlHeader::decode(&self.fragments[0]).unwrap()
    }

    fn data(&self) -> Vec<u8> {
        let mut r = Reassembly::new();
        let mut done = false;
        for f in &self.fragments {
            let h = ControlHeader::decode(f).unwrap();
            done = r.add(&h, &f[HEADER_LEN..HEADER_LEN + usize::from(h.count)]);
        }
        assert!(done, "incomplete response");
        r.into_data()
    }

    fn text(&self) -> String {
        String::from_utf8(self.data()).unwrap()
    }

    fn var(&self, name: &str) -> Option<String> {
        let text = self.text();
        let v = VarList::new(&text)
            .find(|i| i.name == name)?
            .value
            .map(str::to_string);
        v
    }
}

fn ask_with(
    data: &[u8],
    from: &str,
    flags: RestrictFlags,
    mru: &[MruEntry],
    key: &NonceKey,
) -> Answer {
    ask_keyed(data, from, flags, mru, key, &KeyStore::default(), None)
}

fn ask_keyed(
    data: &[u8],
    from: &str,
    flags: RestrictFlags,
    mru: &[MruEntry],
    key: &NonceKey,
    keys: &KeyStore,
    control_key: Option<u16>,
) -> Answer {
    let snap = snapshot();
    let mru = mru.to_vec();
    let restrict = parse_str(
        "t.conf",
        "restrict default nomodify notrap\nrestrict 10.0.0.0 mask 255.255.255.0 kod limited\n\
         restrict -6 default noquery\n",
        &MemorySource::new(),
    )
    .unwrap()
    .restrict;
    let env = ControlEnv {
        restrict: &restrict,
        flags,
        snapshot: &snap,
        mru: &mru,
        nonce: key,
        now: now(),
        keys,
        control_key,
    };
    let mut fragments = Vec::new();
    let source: SocketAddr = from.parse().unwrap();
    let outcome = handle_request(data, source, &env, &mut |f| fragments.push(f.to_vec()));
    for f in &fragments {
        assert!(
            f.len() <= MAX_SIGNED_FRAGMENT_LEN && f.len() % 4 == 0,
            "fragment of {} octets",
            f.len()
        );
    }
    Answer { outcome, fragments }
}

fn ask(data: &[u8]) -> Answer {
    ask_with(
        data,
        "127.0.0.1:40000",
        RestrictFlags::empty(),
        &[],
        &NonceKey::new(),
    )
}

#[test]
fn readstat_lists_associations_with_status() {
    let a = ask(&request(opcode::READSTAT, 0, ""));
    let h = a.header();
    assert!(h.response && !h.error && !h.more);
    assert_eq!((h.sequence, h.opcode), (77, opcode::READSTAT));
    assert_eq!(
        SystemStatus::from_word(h.status).describe(),
        "leap_none, sync_local, 1 event, clock_sync"
    );
    let d = a.data();
    assert_eq!(d.len(), 4);
    assert_eq!(u16::from_be_bytes([d[0], d[1]]), ASSOC);
    assert_eq!(
        PeerStatus::from_word(u16::from_be_bytes([d[2], d[3]]))
            .select
            .tally(),
        '*'
    );
}

#[test]
fn readvar_system_defaults_in_ntpd_order() {
    let a = ask(&request(opcode::READVAR, 0, ""));
    let text = a.text();
    let names: Vec<_> = VarList::new(&text).map(|i| i.name.to_string()).collect();
    assert_eq!(
        &names[..5],
        ["version", "processor", "system", "leap", "stratum"]
    );
    assert_eq!(a.var("stratum").as_deref(), Some("11"));
    assert_eq!(a.var("refid").as_deref(), Some("127.127.1.0"));
    assert_eq!(a.var("peer"), Some(ASSOC.to_string()));
    assert_eq!(a.var("tc").as_deref(), Some("6"));
    assert!(text.ends_with("\r\n"));
    assert!(text.split("\r\n").all(|l| l.len() <= 72), "{text}");
}

#[test]
fn ntpstat_request_is_answered_with_what_it_parses() {
    // ntpstat: version 2, READVAR, count 0, its whole 576-octet struct.
    let mut b = vec![0u8; 576];
    b[0] = 0x16;
    b[1] = 2;
    b[3] = 1;
    let a = ask(&b);
    let h = a.header();
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(&a.fragments[0][..HEADER_LEN]);
    assert_eq!(raw[0] & 0x3f, 0x16, "version and mode echoed");
    assert_eq!(raw[1] & !0x20, 0x82);
    assert_eq!(h.status >> 14, 0, "not unsynchronised");
    assert_eq!((h.status >> 8) & 0x3f, 5, "local net");
    for name in ["stratum", "rootdelay", "rootdisp", "tc", "refid"] {
        assert!(a.var(name).is_some(), "{name}");
    }
}

#[test]
fn readvar_named_and_peer_variables() {
    let a = ask(&request(opcode::READVAR, 0, "stratum, rootdisp,tc"));
    assert_eq!(a.text().split(", ").count(), 3);
    let a = ask(&request(opcode::READVAR, ASSOC, ""));
    assert_eq!(PeerStatus::from_word(a.header().status).to_word(), 0x963a);
    assert_eq!(a.var("srcadr").as_deref(), Some("127.127.1.0"));
    assert_eq!(a.var("refid").as_deref(), Some("LOCL"));
    assert_eq!(a.var("stratum").as_deref(), Some("10"));
    assert_eq!(a.var("hmode").as_deref(), Some("3"));
    assert!(a.var("reach").unwrap().starts_with("0x"));
    assert_eq!(a.var("filtdelay").unwrap().split_whitespace().count(), 8);
    // READSTAT on one association: its variables, as ntpd does.
    let b = ask(&request(opcode::READSTAT, ASSOC, ""));
    assert_eq!(b.var("srcadr"), a.var("srcadr"));
}

#[test]
fn errors_are_the_classic_codes() {
    let code = |a: Answer| {
        let h = a.header();
        assert!(h.response && h.error && a.fragments.len() == 1 && h.count == 0);
        h.error_code()
    };
    assert_eq!(
        code(ask(&request(opcode::READVAR, 0, "stratum,nonesuch"))),
        ErrorCode::UnknownVariable
    );
    assert_eq!(
        code(ask(&request(opcode::READVAR, 0, &"x".repeat(400)))),
        ErrorCode::UnknownVariable
    );
    assert_eq!(
        code(ask(&request(opcode::READVAR, 999, ""))),
        ErrorCode::BadAssociation
    );
    assert_eq!(
        code(ask(&request(opcode::READSTAT, 999, ""))),
        ErrorCode::BadAssociation
    );
    assert_eq!(
        code(ask(&request(opcode::WRITEVAR, 0, "stratum=1"))),
        ErrorCode::Permission
    );
    assert_eq!(
        code(ask(&request(opcode::CONFIGURE, 0, "server 10.0.0.1"))),
        ErrorCode::Permission
    );
    assert_eq!(
        code(ask(&request(opcode::SETTRAP, 0, ""))),
        ErrorCode::Permission
    );
    assert_eq!(
        code(ask(&request(opcode::UNSETTRAP, 0, ""))),
        ErrorCode::BadAssociation
    );
    assert_eq!(
        code(ask(&request(opcode::READ_ORDLIST_A, 0, ""))),
        ErrorCode::Permission
    );
    assert_eq!(code(ask(&request(20, 0, ""))), ErrorCode::BadOpcode);
    assert_eq!(
        code(ask(&request(opcode::ASYNCMSG, 0, ""))),
        ErrorCode::BadOpcode
    );
    assert_eq!(
        code(ask(&request(opcode::READCLOCK, 999, ""))),
        ErrorCode::BadAssociation
    );
    // Count beyond the datagram: "invalid format".
    let mut b = request(opcode::READVAR, 0, "stratum");
    b[11] = 200;
    assert_eq!(code(ask(&b)), ErrorCode::BadFormat);
    // Binary garbage as a variable list.
    let mut b = request(opcode::READVAR, 0, "abcd");
    b[12] = 0xff;
    assert_eq!(code(ask(&b)), ErrorCode::UnknownVariable);
}

#[test]
fn readclock_describes_the_local_driver() {
    let a = ask(&request(opcode::READCLOCK, ASSOC, ""));
    assert!(!a.header().error);
    assert_eq!(
        a.var("device").as_deref(),
        Some("\"Undisciplined local clock\"")
    );
}

#[test]
fn restrict_flags_gate_requests() {
    let key = NonceKey::new();
    let a = ask_with(
        &request(opcode::READVAR, 0, ""),
        "10.0.0.9:1",
        RestrictFlags::NOQUERY,
        &[],
        &key,
    );
    assert_eq!((a.outcome, a.fragments.len()), (ControlOutcome::Dropped, 0));
    let a = ask_with(
        &request(opcode::READVAR, 0, ""),
        "10.0.0.9:1",
        RestrictFlags::IGNORE,
        &[],
        &key,
    );
    assert_eq!(a.outcome, ControlOutcome::Dropped);
    let a = ask_with(
        &request(opcode::UNSETTRAP, 0, ""),
        "10.0.0.9:1",
        RestrictFlags::NOTRAP,
        &[],
        &key,
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    let a = ask_with(
        &request(opcode::WRITEVAR, 0, "x=1"),
        "10.0.0.9:1",
        RestrictFlags::NOMODIFY,
        &[],
        &key,
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    let a = ask_with(
        &request(opcode::READ_MRU, 0, ""),
        "10.0.0.9:1",
        RestrictFlags::NOMRULIST,
        &[],
        &key,
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    // nomodify and notrap still allow reads.
    let a = ask_with(
        &request(opcode::READVAR, 0, "stratum"),
        "10.0.0.9:1",
        RestrictFlags::NOMODIFY | RestrictFlags::NOTRAP,
        &[],
        &key,
    );
    assert_eq!(a.outcome, ControlOutcome::Answered { fragments: 1 });
}

#[test]
fn responses_and_bad_headers_are_never_answered() {
    for second in [0x80 | 2, 0x40 | 2, 0x20 | 2] {
        let mut b = request(opcode::READVAR, 0, "");
        b[1] = second;
        assert_eq!(ask(&b).outcome, ControlOutcome::Dropped, "{second:#x}");
    }
    assert_eq!(
        ask(&request(opcode::READVAR, 0, "")[..8]).outcome,
        ControlOutcome::Dropped
    );
    let mut b = request(opcode::READVAR, 0, "");
    b[9] = 1;
    assert_eq!(ask(&b).outcome, ControlOutcome::Dropped, "nonzero offset");
    b = request(opcode::READVAR, 0, "");
    b[0] = 0x3e; // version 7
    assert_eq!(ask(&b).outcome, ControlOutcome::Dropped);
}

fn nonce_for(from: &str, key: &NonceKey) -> String {
    let a = ask_with(
        &request(opcode::REQ_NONCE, 0, ""),
        from,
        RestrictFlags::empty(),
        &[],
        key,
    );
    let text = a.text();
    assert!(
        text.starts_with("nonce=") && text.ends_with("\r\n"),
        "{text:?}"
    );
    text.trim().to_string()
}

#[test]
fn mru_needs_a_nonce_bound_to_the_address() {
    let key = NonceKey::new();
    let mru = clients();
    let from = "10.9.9.9:5000";
    let none = ask_with(
        &request(opcode::READ_MRU, 0, "frags=32"),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(
        (none.outcome, none.fragments.len()),
        (ControlOutcome::Dropped, 0)
    );
    let other = nonce_for("10.9.9.8:5000", &key);
    let spoofed = ask_with(
        &request(opcode::READ_MRU, 0, &format!("{other}, frags=32")),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(spoofed.outcome, ControlOutcome::Dropped);
    let bogus = ask_with(
        &request(
            opcode::READ_MRU,
            0,
            "nonce=00000000000000000000000000000000, frags=32",
        ),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(bogus.outcome, ControlOutcome::Dropped);

    let nonce = nonce_for(from, &key);
    let a = ask_with(
        &request(opcode::READ_MRU, 0, &format!("{nonce}, frags=32")),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    let text = a.text();
    assert!(a.var("now").is_some(), "complete list: {text}");
    assert_eq!(
        a.var("addr.0").as_deref(),
        Some("10.0.0.40:0"),
        "oldest first"
    );
    assert_eq!(a.var("addr.39").as_deref(), Some("10.0.0.1:0"));
    assert_eq!(a.var("ct.0").as_deref(), Some("40"));
    assert_eq!(
        a.var("rs.0").as_deref(),
        Some("0x420"),
        "limited|kod in ntpd bits"
    );
    assert_eq!(a.var("last.newest"), a.var("last.39"));
    assert!(a.var("nonce").is_some(), "a fresh nonce to continue with");
}

#[test]
fn mru_pages_and_resumes() {
    let key = NonceKey::new();
    let mru = clients();
    let from = "10.9.9.9:5000";
    let nonce = nonce_for(from, &key);
    let first = ask_with(
        &request(opcode::READ_MRU, 0, &format!("{nonce}, limit=5")),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert!(first.var("now").is_none(), "more to come");
    assert!(first.var("addr.4").is_some() && first.var("addr.5").is_none());
    let resume = format!(
        "{nonce}, limit=100, last.0={}, addr.0={}",
        first.var("last.4").unwrap(),
        first.var("addr.4").unwrap()
    );
    let rest = ask_with(
        &request(opcode::READ_MRU, 0, &resume),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(rest.var("addr.older"), first.var("addr.4"));
    assert_eq!(rest.var("addr.0").as_deref(), Some("10.0.0.35:0"));
    assert!(rest.var("now").is_some());
    // A starting point the server no longer has: "unknown variable", ntpq restarts.
    let stale = format!("{nonce}, limit=100, last.0=0x00000001.00000000, addr.0=10.0.0.1:0");
    let e = ask_with(
        &request(opcode::READ_MRU, 0, &stale),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(
        e.outcome,
        ControlOutcome::Refused(ErrorCode::UnknownVariable)
    );
    // frags bounds the reply.
    let small = ask_with(
        &request(opcode::READ_MRU, 0, &format!("{nonce}, frags=1")),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(small.fragments.len(), 1);
    assert!(small.var("now").is_none());
    let filtered = ask_with(
        &request(
            opcode::READ_MRU,
            0,
            &format!("{nonce}, frags=32, mincount=39"),
        ),
        from,
        RestrictFlags::empty(),
        &mru,
        &key,
    );
    assert_eq!(filtered.var("ct.0").as_deref(), Some("40"));
    assert_eq!(filtered.var("ct.1").as_deref(), Some("39"));
    assert!(filtered.var("addr.2").is_none());
}

#[test]
fn oversized_variable_lists_are_refused_not_amplified() {
    let list = vec!["version"; 55].join(",");
    let a = ask(&request(opcode::READVAR, 0, &list));
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Unspecified));
    assert_eq!(a.fragments.len(), 1);
}

/// Keys 1 (MD5) and 2 (SHA-1) trusted, 3 (MD5) defined but not trusted.
fn test_keys() -> KeyStore {
    let parsed = parse_keys(
        "1 MD5 controlpw\n2 SHA1 0123456789abcdef0123456789abcdef01234567\n3 MD5 other\n",
        "k",
    );
    KeyStore::new(parsed.into_result().unwrap(), [1, 2])
}

/// A request signed as ntpq signs it: padded to eight octets, then key id and digest.
fn signed(keys: &KeyStore, key: u32, op: u8, assoc: u16, data: &str) -> Vec<u8> {
    let mut b = request(op, assoc, data);
    let len = mac_offset(b.len());
    b.resize(len + 24, 0);
    let n = keys.sign_in_place(&mut b, len, key).unwrap();
    b.truncate(n);
    b
}

/// Ask with [`test_keys`], `controlkey 1`, from 127.0.0.1.
fn ask_auth(data: &[u8], flags: RestrictFlags) -> Answer {
    ask_keyed(
        data,
        "127.0.0.1:40000",
        flags,
        &[],
        &NonceKey::new(),
        &test_keys(),
        Some(1),
    )
}

/// The key id of a fragment's MAC, after checking its digest covers everything before
/// it: the header alone for errors, header and data padded to eight otherwise.
fn mac_key(keys: &KeyStore, fragment: &[u8]) -> Option<u32> {
    let h = ControlHeader::decode(fragment).unwrap();
    let body = if h.error {
        HEADER_LEN
    } else {
        mac_offset(HEADER_LEN + usize::from(h.count))
    };
    let mac = fragment.get(body..).filter(|m| !m.is_empty())?;
    let key = u32::from_be_bytes(mac[..4].try_into().unwrap());
    let mut expected = [0u8; 24];
    let n = keys.sign(&fragment[..body], key, &mut expected).unwrap();
    assert_eq!(mac, &expected[..n], "MAC of a fragment");
    Some(key)
}

#[test]
fn writes_need_the_control_key() {
    let keys = test_keys();
    let leap = |key: u32| signed(&keys, key, opcode::WRITEVAR, 0, "leap=0");
    // Unauthenticated: permission, unsigned.
    let a = ask_auth(
        &request(opcode::WRITEVAR, 0, "leap=0"),
        RestrictFlags::empty(),
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    assert_eq!(a.fragments[0].len(), HEADER_LEN);
    // A trusted key that is not the controlkey: permission, signed with that key.
    let a = ask_auth(&leap(2), RestrictFlags::empty());
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    assert_eq!(mac_key(&keys, &a.fragments[0]), Some(2));
    // A forged MAC for the controlkey, or an untrusted key: permission, unsigned.
    let mut forged = leap(1);
    forged[13] ^= 1;
    let other = KeyStore::new(parse_keys("3 MD5 other\n", "k").into_result().unwrap(), [3]);
    for bad in [forged, signed(&other, 3, opcode::WRITEVAR, 0, "leap=0")] {
        let a = ask_auth(&bad, RestrictFlags::empty());
        assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
        assert_eq!(a.fragments[0].len(), HEADER_LEN, "unsigned");
    }
    // The controlkey from a nomodify host, or with no controlkey configured.
    let a = ask_auth(&leap(1), RestrictFlags::NOMODIFY);
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    assert_eq!(mac_key(&keys, &a.fragments[0]), Some(1));
    let a = ask_keyed(
        &leap(1),
        "127.0.0.1:1",
        RestrictFlags::empty(),
        &[],
        &NonceKey::new(),
        &keys,
        None,
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
}

#[test]
fn authorized_writes_get_ntpds_answers() {
    let keys = test_keys();
    let write = |assoc: u16, data: &str| {
        let a = ask_auth(
            &signed(&keys, 1, opcode::WRITEVAR, assoc, data),
            RestrictFlags::empty(),
        );
        assert_eq!(mac_key(&keys, &a.fragments[0]), Some(1), "{data}");
        a.outcome
    };
    let refused = ControlOutcome::Refused;
    assert_eq!(write(0, "leap=0"), refused(ErrorCode::Unspecified));
    assert_eq!(write(0, "leap=3"), refused(ErrorCode::Unspecified));
    assert_eq!(write(0, "leap=4"), refused(ErrorCode::BadValue));
    assert_eq!(write(0, "leap"), refused(ErrorCode::BadFormat));
    assert_eq!(write(0, "leap=x"), refused(ErrorCode::BadFormat));
    assert_eq!(write(0, "stratum=1"), refused(ErrorCode::Permission));
    assert_eq!(write(0, "nonesuch=1"), refused(ErrorCode::UnknownVariable));
    assert_eq!(
        write(0, "nonesuch=1,leap=0"),
        refused(ErrorCode::UnknownVariable)
    );
    assert_eq!(write(ASSOC, "hpoll=4"), refused(ErrorCode::Permission));
    // Nothing to write: success, with the system status.
    assert_eq!(write(0, ""), ControlOutcome::Answered { fragments: 1 });
    let a = ask_auth(
        &signed(&keys, 1, opcode::WRITEVAR, 0, ""),
        RestrictFlags::empty(),
    );
    assert_eq!(
        SystemStatus::from_word(a.header().status).describe(),
        "leap_none, sync_local, 1 event, clock_sync"
    );
    // Clock variables are never writable.
    let a = ask_auth(
        &signed(&keys, 1, opcode::WRITECLOCK, ASSOC, "x=1"),
        RestrictFlags::empty(),
    );
    assert_eq!(a.outcome, refused(ErrorCode::Permission));
}

#[test]
fn config_and_saveconfig_answer_in_text_like_ntpd() {
    let keys = test_keys();
    let config = signed(&keys, 1, opcode::CONFIGURE, 0, "restrict 10.0.0.1");
    let a = ask_auth(&config, RestrictFlags::empty());
    assert_eq!(a.text(), format!("{CONFIG_UNSUPPORTED}\r\n"));
    assert_eq!(mac_key(&keys, &a.fragments[0]), Some(1));
    let a = ask_auth(&config, RestrictFlags::NOMODIFY);
    assert_eq!(a.text(), format!("{CONFIG_NOMODIFY}\r\n"));
    let a = ask_auth(
        &signed(&keys, 1, opcode::CONFIGURE, ASSOC, "x"),
        RestrictFlags::empty(),
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::BadValue));
    let a = ask_auth(
        &request(opcode::CONFIGURE, 0, "restrict 10.0.0.1"),
        RestrictFlags::empty(),
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    let a = ask_auth(
        &signed(&keys, 1, opcode::SAVECONFIG, 0, "x.conf"),
        RestrictFlags::empty(),
    );
    assert_eq!(a.text(), format!("{SAVECONFIG_NO_DIR}\r\n"));
    // Ordered lists: the restrict table to the controlkey; no interface list.
    let a = ask_auth(
        &signed(&keys, 1, opcode::READ_ORDLIST_A, 0, "addr_restrictions"),
        RestrictFlags::empty(),
    );
    assert_eq!(
        a.text(),
        // `restrict default` covers both families; `-6 default` adds to it, as in ntpd.
        "addr.0=10.0.0.0, mask.0=255.255.255.0, flags.0=limited kod,\r\n\
         addr.1=0.0.0.0, mask.1=0.0.0.0, flags.1=nomodify notrap, addr.2=::,\r\n\
         mask.2=::, flags.2=noquery nomodify notrap\r\n"
    );
    assert_eq!(mac_key(&keys, &a.fragments[0]), Some(1));
    for list in ["ifstats", ""] {
        let a = ask_auth(
            &signed(&keys, 1, opcode::READ_ORDLIST_A, 0, list),
            RestrictFlags::empty(),
        );
        assert_eq!(
            a.outcome,
            ControlOutcome::Refused(ErrorCode::UnknownVariable)
        );
    }
    let a = ask_auth(
        &signed(&keys, 2, opcode::READ_ORDLIST_A, 0, "addr_restrictions"),
        RestrictFlags::empty(),
    );
    assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
}

#[test]
fn traps_are_refused_even_with_the_control_key() {
    let keys = test_keys();
    for flags in [RestrictFlags::empty(), RestrictFlags::NOTRAP] {
        let a = ask_auth(&signed(&keys, 1, opcode::SETTRAP, 0, ""), flags);
        assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
        let a = ask_auth(&request(opcode::SETTRAP, 0, ""), flags);
        assert_eq!(a.outcome, ControlOutcome::Refused(ErrorCode::Permission));
    }
}

#[test]
fn every_fragment_of_an_authenticated_read_is_signed() {
    let keys = test_keys();
    // Any trusted key may read; the answer comes signed with it.
    let a = ask_auth(
        &signed(&keys, 2, opcode::READVAR, ASSOC, ""),
        RestrictFlags::empty(),
    );
    assert!(
        a.fragments.len() >= 2,
        "want a multi-fragment answer, got {}",
        a.fragments.len()
    );
    for f in &a.fragments {
        assert_eq!(mac_key(&keys, f), Some(2));
        let h = ControlHeader::decode(f).unwrap();
        assert_eq!(f.len(), mac_offset(HEADER_LEN + usize::from(h.count)) + 24);
    }
    let unsigned = ask_auth(&request(opcode::READVAR, ASSOC, ""), RestrictFlags::empty());
    assert_eq!(a.text(), unsigned.text());
    assert!(unsigned
        .fragments
        .iter()
        .all(|f| mac_key(&keys, f).is_none()));
    // A failed MAC still gets its (unsigned) answer to a read, as from ntpd.
    let mut bad = signed(&keys, 2, opcode::READVAR, 0, "stratum");
    *bad.last_mut().unwrap() ^= 1;
    let a = ask_auth(&bad, RestrictFlags::empty());
    assert_eq!(a.var("stratum").as_deref(), Some("11"));
    assert_eq!(mac_key(&keys, &a.fragments[0]), None);
}

proptest::proptest! {
    #[test]
    fn any_datagram_is_handled_without_panic_or_amplification(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        op in 0u8..32,
        assoc in proptest::prop_oneof![proptest::strategy::Just(0u16), proptest::strategy::Just(ASSOC), proptest::prelude::any::<u16>()],
    ) {
        let key = NonceKey::new();
        let mru = clients();
        // Raw bytes, and the same bytes as the data of a well-formed request.
        let mut framed = request(op, assoc, "");
        let body: Vec<u8> = data.iter().copied().take(468).collect();
        framed[10..12].copy_from_slice(&(body.len() as u16).to_be_bytes());
        framed.extend_from_slice(&body);
        while framed.len() & 3 != 0 { framed.push(0); }
        for datagram in [&data, &framed] {
            let a = ask_with(datagram, "10.1.1.1:999", RestrictFlags::empty(), &mru, &key);
            let total: usize = a.fragments.iter().map(Vec::len).sum();
            proptest::prop_assert!(total <= MAX_UNVERIFIED_FRAGMENTS * MAX_FRAGMENT_LEN);
            for f in &a.fragments {
                let h = ControlHeader::decode(f).unwrap();
                proptest::prop_assert!(h.response);
            }
        }
    }
}
