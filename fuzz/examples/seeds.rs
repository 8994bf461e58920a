//! Writes the seed corpus of every fuzz target into `fuzz/seeds/<target>/`:
//! a few valid inputs each (real packets, configurations, key files, NTS-KE
//! messages), built with Meridian's own encoders and the fixtures of
//! `src/lib.rs`, so they stay valid as the formats evolve.
//!
//! `cargo run --example seeds -- [DIR]` (DIR defaults to `fuzz/seeds`, which is
//! committed; `scripts/fuzz.sh` fuzzes from it). Existing files are kept, so
//! regression inputs added by hand stay.

use std::fs;
use std::path::{Path, PathBuf};

use meridian_nts::aead::AeadKey;
use meridian_nts::fields::{write_field, EF_COOKIE, EF_COOKIE_PLACEHOLDER};
use meridian_nts::ke::message::{server_response, KeRequest, NtpServerInfo};
use meridian_nts::{NtsClientState, NtsOutcome, NtsServer};
use meridian_proto::control::{opcode, ControlHeader};
use meridian_proto::{
    build_kod, build_server_reply, new_client_request, LeapIndicator, NtpHeader, NtpShort,
    ReferenceId, ServerState, HEADER_LEN,
};

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn put(&self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).expect("create corpus dir");
        let path = dir.join(format!("seed-{name}"));
        fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn client_request() -> [u8; HEADER_LEN] {
    let req = new_client_request(4, 6, 0x0123_4567_89ab_cdef);
    let mut b = [0u8; HEADER_LEN];
    req.header.encode(&mut b);
    b
}

fn server_state() -> ServerState {
    ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 2,
        precision: -20,
        root_delay: NtpShort::from_seconds_f64(0.01),
        root_dispersion: NtpShort::from_seconds_f64(0.01),
        reference_id: ReferenceId::from_ascii(b"GPS"),
        reference_ts: meridian_fuzz::now(),
        min_poll: 4,
    }
}

fn reply_to(req: &[u8]) -> [u8; HEADER_LEN] {
    let h = NtpHeader::decode(req).expect("request");
    let now = meridian_fuzz::now();
    let r = build_server_reply(&h, &server_state(), now, now.add_seconds(0.0001));
    let mut b = [0u8; HEADER_LEN];
    r.encode(&mut b);
    b
}

fn kod(req: &[u8], code: &[u8; 4]) -> [u8; HEADER_LEN] {
    let h = NtpHeader::decode(req).expect("request");
    let mut b = [0u8; HEADER_LEN];
    build_kod(&h, ReferenceId(*code)).encode(&mut b);
    b
}

fn signed(req: &[u8], key: u32) -> Vec<u8> {
    let mut buf = [0u8; 256];
    buf[..req.len()].copy_from_slice(req);
    let n = meridian_fuzz::key_store()
        .sign_in_place(&mut buf, req.len(), key)
        .expect("fixture key signs");
    buf[..n].to_vec()
}

fn control(op: u8, assoc: u16, data: &str) -> Vec<u8> {
    let mut b = vec![0u8; 12];
    let h = ControlHeader::request(op, 7, assoc, data.len() as u16);
    h.encode((&mut b[..12]).try_into().unwrap());
    b.extend_from_slice(data.as_bytes());
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

fn client_state() -> NtsClientState {
    let keys = meridian_fuzz::session_keys();
    NtsClientState::new(
        AeadKey::from_bytes(*keys.c2s.as_bytes()),
        AeadKey::from_bytes(*keys.s2c.as_bytes()),
        vec![meridian_fuzz::cookie().to_vec(); 3],
        "127.0.0.1".into(),
        123,
    )
}

/// A real NTS request and the server's real answer to it.
fn nts_exchange() -> (Vec<u8>, Vec<u8>) {
    let mut client = client_state();
    let req = new_client_request(4, 6, 0x0102_0304_0506_0708);
    let mut out = [0u8; 2048];
    let n = client
        .build_request(&req.header, &meridian_fuzz::UID, &mut out)
        .expect("request");
    let request = out[..n].to_vec();
    let server = NtsServer::new(meridian_fuzz::key_ring());
    let h = NtpHeader::decode(&request).unwrap();
    let now = meridian_fuzz::now();
    let reply = build_server_reply(&h, &server_state(), now, now);
    let mut resp = [0u8; 2048];
    let len = match server.process_request(&request, &reply, &mut resp) {
        NtsOutcome::Reply(len) => len,
        other => panic!("fixture request refused: {other:?}"),
    };
    (request, resp[..len].to_vec())
}

fn field(t: u16, value: &[u8]) -> Vec<u8> {
    let mut b = [0u8; 2048];
    let n = write_field(&mut b, t, value).expect("field");
    b[..n].to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn main() {
    let root = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds"));
    let s = Seeds { root };
    let req = client_request();
    let reply = reply_to(&req);
    let (nts_req, nts_resp) = nts_exchange();
    let ff: &[u8] = &[0xff, 0xff];

    // proto_packet
    s.put("proto_packet", "request", &req);
    s.put("proto_packet", "reply", &reply);
    s.put("proto_packet", "kod-rate", &kod(&req, b"RATE"));
    s.put("proto_packet", "md5", &signed(&req, 1));
    s.put("proto_packet", "sha1", &signed(&req, 2));
    s.put("proto_packet", "crypto-nak", &cat(&[&reply, &[0, 0, 0, 0]]));
    s.put("proto_packet", "nts-request", &nts_req);
    s.put("proto_packet", "nts-response", &nts_resp);

    // auth_verify: control octet (key to sign with) + packet
    for key in 0..5u8 {
        s.put("auth_verify", &format!("sign-{key}"), &cat(&[&[key], &req]));
    }
    s.put("auth_verify", "md5", &cat(&[&[0], &signed(&req, 1)]));
    s.put("auth_verify", "aes", &cat(&[&[0], &signed(&req, 3)]));
    s.put(
        "auth_verify",
        "ext-sha1",
        &cat(&[&[2], &nts_req[..48 + 36]]),
    );

    // auth_keys
    s.put("auth_keys", "fixture", meridian_fuzz::KEYS_TEXT.as_bytes());
    s.put(
        "auth_keys",
        "mixed",
        b"# ntp.keys\n1 M secret # comment\n2 SHA1 0123456789abcdef0123456789abcdef01234567 10.0.0.1,192.168.0.0/16\n65534 AES256CMAC 000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f\n7 AES192 000102030405060708090a0b0c0d0e0f0001020304050607\n\n",
    );

    // control_request
    s.put(
        "control_request",
        "readvar",
        &control(opcode::READVAR, 0, ""),
    );
    s.put(
        "control_request",
        "readvar-list",
        &control(opcode::READVAR, 0, "version,stratum,refid"),
    );
    s.put(
        "control_request",
        "readstat",
        &control(opcode::READSTAT, 0, ""),
    );
    s.put(
        "control_request",
        "mru",
        &control(opcode::READ_MRU, 0, "nonce=0123456789abcdef0123456789abcdef, frags=32, last.0=0xe0b1c2d3.12345678, addr.0=10.0.0.1:123"),
    );
    let mut frag = control(opcode::READVAR, 0, "stratum=2, refid=GPS\r\n");
    frag[1] |= 0x80;
    s.put("control_request", "response", &frag);

    // control_handler: octet 0 (restrict config % 8, bit 6 controlkey, bits 3-5 signing
    // key + 1), octet 1 (source) + datagram. 1, 0: `restrict default`, 10.1.2.3.
    let handler = [
        ("readvar", control(opcode::READVAR, 0, "")),
        ("readvar-names", control(opcode::READVAR, 0, "stratum,offset,clock,sys_jitter")),
        ("readvar-peer", control(opcode::READVAR, 40123, "")),
        ("readstat", control(opcode::READSTAT, 0, "")),
        ("readstat-peer", control(opcode::READSTAT, 40123, "")),
        ("readclock", control(opcode::READCLOCK, 0, "")),
        ("unspec", control(opcode::UNSPEC, 0, "")),
        ("nonce", control(12, 0, "")),
        ("mru", control(opcode::READ_MRU, 0, "nonce=$NONCE$, frags=32, limit=10")),
        (
            "mru-resume",
            control(
                opcode::READ_MRU,
                0,
                "nonce=$NONCE$, frags=3, mincount=2, resall=0x20, last.0=0xe0b1c2d3.12345678, addr.0=10.0.0.5:0",
            ),
        ),
        ("mru-no-nonce", control(opcode::READ_MRU, 0, "frags=32")),
        ("writevar", control(opcode::WRITEVAR, 0, "stratum=1")),
        ("settrap", control(opcode::SETTRAP, 0, "")),
        ("configure", control(opcode::CONFIGURE, 0, "server 10.0.0.1")),
        ("bad-opcode", control(31, 0, "")),
        ("reslist", control(opcode::READ_ORDLIST_A, 0, "addr_restrictions")),
        ("ifstats", control(opcode::READ_ORDLIST_A, 0, "")),
    ];
    for (name, d) in &handler {
        s.put("control_handler", name, &cat(&[&[1, 0], d]));
    }
    s.put(
        "control_handler",
        "noquery",
        &cat(&[&[0, 0], &handler[0].1]),
    );
    s.put(
        "control_handler",
        "signed-md5",
        &cat(&[&[0x51, 0], &handler[0].1]),
    );
    s.put(
        "control_handler",
        "signed-write",
        &cat(&[&[0x51, 0], &handler[11].1]),
    );
    s.put(
        "control_handler",
        "signed-sha1-mru",
        &cat(&[&[0x19, 0], &handler[8].1]),
    );

    // nts_ke
    let ke = KeRequest::ntpv4();
    s.put("nts_ke", "request", &ke.encode());
    let mut ke2 = KeRequest::ntpv4();
    ke2.server = Some("ntp.example".into());
    ke2.port = Some(4123);
    ke2.aead_algorithms = vec![17, 15];
    s.put("nts_ke", "request-server-port", &ke2.encode());
    let info = NtpServerInfo {
        server: Some("127.0.0.1".into()),
        port: Some(12345),
    };
    s.put(
        "nts_ke",
        "response",
        &server_response(&ke.encode(), &info, |_| Ok(vec![vec![0xc0; 100]; 8])),
    );

    // nts_server: 0 + datagram, or 1 + header ff ff extra ff ff plaintext
    s.put("nts_server", "request", &cat(&[&[0], &nts_req]));
    s.put("nts_server", "plain", &cat(&[&[0], &req]));
    let placeholder = field(EF_COOKIE_PLACEHOLDER, &[0; 100]);
    s.put(
        "nts_server",
        "sealed-placeholders",
        &cat(&[&[1], &req, ff, &placeholder, ff, &placeholder]),
    );
    s.put("nts_server", "sealed-empty", &cat(&[&[1], &req, ff, ff]));

    // nts_client: 0 + datagram, or 1 + header ff ff extra ff ff plaintext.
    // The live response's UID is the fixture's, so it verifies.
    s.put("nts_client", "response", &cat(&[&[0], &nts_resp]));
    let cookie_field = field(EF_COOKIE, &meridian_fuzz::cookie());
    let reply_hdr = reply_to(&nts_req[..48]);
    s.put(
        "nts_client",
        "sealed-cookies",
        &cat(&[&[1], &reply_hdr, ff, ff, &cookie_field, &cookie_field]),
    );
    s.put(
        "nts_client",
        "nak",
        &cat(&[&[0], &kod(&nts_req[..48], b"NTSN"), &nts_resp[48..48 + 36]]),
    );

    // conf_parse
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/conf/tests/corpus");
    if let Ok(dir) = fs::read_dir(&corpus) {
        for e in dir.flatten() {
            if let Ok(text) = fs::read(e.path()) {
                let name = e.file_name().to_string_lossy().into_owned();
                s.put("conf_parse", &name, &text);
            }
        }
    }
    s.put(
        "conf_parse",
        "example",
        include_bytes!("../../crates/daemon/src/example.conf"),
    );
    s.put(
        "conf_parse",
        "readme",
        b"driftfile /var/lib/ntp/drift\nrestrict default kod limited nomodify notrap nopeer noquery\nrestrict -6 default kod limited nomodify notrap nopeer noquery\nrestrict 127.0.0.1\nrestrict ::1\nrestrict 192.168.44.130 mask 255.255.255.0 nomodify notrap\nserver 127.127.1.0\nfudge 127.127.1.0 stratum 10\n",
    );
    s.put(
        "conf_parse",
        "sources",
        b"server 192.0.2.1 iburst minpoll 4 maxpoll 6 prefer key 2 version 4\npool pool.example iburst\npeer 192.0.2.9 nopeer\nserver time.example nts port 4460\nkeys /etc/ntp.keys\ntrustedkey 1 2 3\ntos minsane 2 minclock 3 maxclock 6 orphan 10\ntinker panic 0 step 0.5 stepout 300\ndiscard average 3 minimum 1\nmru maxdepth 1000\nleapfile /etc/leap-seconds.list\nincludefile /etc/ntp/other.conf\ninterface listen 127.0.0.1\nnts enable\nnts cert /etc/c.pem\nnts key /etc/k.pem\nstatsdir /var/log/ntpstats/\nstatistics loopstats peerstats\nfilegen loopstats file loopstats type day enable\n",
    );
    s.put(
        "conf_parse",
        "include-loop",
        b"includefile /etc/ntp/inc.conf\nserver 192.0.2.1\n",
    );

    // leapfile (the target fixes the hash line)
    s.put(
        "leapfile",
        "iers",
        b"#\tleap-seconds.list\n#$\t 3676924800\n#@\t 3928521600\n2272060800\t10\t# 1 Jan 1972\n2287785600\t11\t# 1 Jul 1972\n3644697600\t36\t# 1 Jul 2015\n3692217600\t37\t# 1 Jan 2017\n#h\t16edd0f0 3666784f 37db6bdd e74ced87 59af48f1\n",
    );
    s.put(
        "leapfile",
        "minimal",
        b"#$ 3676924800\n#@ 3928521600\n3692217600 37\n#h 0 0 0 0 0\n",
    );

    // respond: c0 (restrict % 6, NTS on at (c0/6)%2, mode (c0/12)%4), c1 (key, source), data
    s.put("respond", "client-default", &cat(&[&[1, 0], &req]));
    s.put("respond", "client-readme", &cat(&[&[0, 0], &req]));
    s.put("respond", "client-limited-burst", &cat(&[&[2, 200], &req]));
    s.put("respond", "client-v6", &cat(&[&[1, 3], &req]));
    s.put("respond", "signed-sha1", &cat(&[&[13, 2], &req]));
    s.put("respond", "signed-untrusted", &cat(&[&[13, 4], &req]));
    s.put("respond", "md5-request", &cat(&[&[1, 0], &signed(&req, 1)]));
    s.put("respond", "nts-live", &cat(&[&[7, 0], &nts_req]));
    s.put(
        "respond",
        "nts-sealed",
        &cat(&[&[31, 0], &req, ff, &placeholder, ff, &placeholder]),
    );
    s.put(
        "respond",
        "control",
        &cat(&[&[3, 0], &control(opcode::READVAR, 0, "")]),
    );
    let mut monlist = vec![0u8; 48];
    monlist[..4].copy_from_slice(&[0x17, 0x00, 0x03, 0x2a]);
    s.put("respond", "mode7-monlist", &cat(&[&[1, 0], &monlist]));
    let mut sym = req;
    sym[0] = (sym[0] & !7) | 1;
    s.put("respond", "symmetric-active", &cat(&[&[1, 0], &sym]));

    // sync_receive: ctl (bit0 keyed, bit1 fix origin, /4%5 key, bit7 keep MAC) + datagram
    s.put("sync_receive", "reply", &cat(&[&[2], &reply]));
    s.put("sync_receive", "reply-keyed", &cat(&[&[0x8b], &reply]));
    s.put(
        "sync_receive",
        "kod-rate",
        &cat(&[&[2], &kod(&req, b"RATE")]),
    );
    s.put(
        "sync_receive",
        "kod-deny",
        &cat(&[&[2], &kod(&req, b"DENY")]),
    );
    s.put(
        "sync_receive",
        "spoof-deny",
        &cat(&[&[0], &kod(&req, b"DENY")]),
    );
    s.put("sync_receive", "md5-reply", &cat(&[&[0x87], &reply]));
    println!("seed corpus written to {}", s.root.display());
}
