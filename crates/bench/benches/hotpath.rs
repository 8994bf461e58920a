//! Hot-path microbenchmark: the daemon's per-packet work, piece by piece, without sockets.
//!
//! `cargo bench -p meridian-bench --bench hotpath` prints nanoseconds per operation (the
//! best of several rounds, so other load on the machine inflates it least) for:
//! the whole `respond()` decision with 64 and 100 000 clients, the client table alone, the
//! restrict lookup, the clock read the worker does per packet without a kernel stamp,
//! the per-batch `ArcSwap` load and the transmit-timestamp randomisation; and for NTS, the
//! whole sealed answer, `NtsServer::process_request` and its pieces (cookie open and seal,
//! the AES-SIV key expansion each `AeadKey` call repeats and a `SivKey` keeps, the
//! `aes-siv` crate for reference, the key-ring lock, nonces), and
//! the load generator's own cost per NTS request.
//! No dependencies beyond the workspace: a criterion-free loop with `black_box`.
#![warn(missing_docs)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use meridian_clock::TimeCorrection;
use meridian_conf::{parse_str, restrict::RestrictTable, MemorySource};
use meridian_daemon::server::ratelimit::{ClientTable, RateLimits};
use meridian_daemon::server::respond::{respond, stamp_transmit};
use meridian_daemon::state::{ServingState, SharedState};
use meridian_proto::{LeapIndicator, NtpShort, NtpTimestamp, ReferenceId, ServerState};

/// Run `op` `iters` times per round, several rounds; print and return the best ns/op.
fn bench(name: &str, iters: u64, mut op: impl FnMut(u64)) -> f64 {
    for i in 0..iters / 10 {
        op(i);
    }
    let mut best = f64::INFINITY;
    for _ in 0..7 {
        let t = Instant::now();
        for i in 0..iters {
            op(i);
        }
        best = best.min(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    println!("{name:<58} {best:>8.1} ns/op");
    best
}

fn state() -> ServingState {
    ServingState {
        server: ServerState {
            leap: LeapIndicator::NoWarning,
            stratum: 3,
            precision: -20,
            root_delay: NtpShort::from_seconds_f64(0.01),
            root_dispersion: NtpShort::from_seconds_f64(0.02),
            reference_id: ReferenceId::from_ascii(b"LOCL"),
            reference_ts: NtpTimestamp::from_unix(1_800_000_000, 0),
            min_poll: 4,
        },
        correction: TimeCorrection::IDENTITY,
        smear: None,
    }
}

fn table(conf: &str) -> RestrictTable {
    parse_str("bench.conf", conf, &MemorySource::new())
        .expect("bench config parses")
        .restrict
}

fn client(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i as u32)))
}

fn request(transmit: u64) -> [u8; 48] {
    let mut b = [0u8; 48];
    b[0] = 0x23;
    b[2] = 6;
    b[40..48].copy_from_slice(&transmit.to_be_bytes());
    b
}

fn main() {
    let st = state();
    let only_nts = std::env::args().any(|a| a == "nts");
    let open = table("restrict default\n");
    let long = table(
        &(0..20)
            .map(|i| format!("restrict 192.168.{i}.0 mask 255.255.255.0 nomodify notrap\n"))
            .chain(["restrict default\n".to_string()])
            .collect::<String>(),
    );
    let rx = NtpTimestamp::from_unix(1_800_000_100, 0);
    let keys = meridian_auth::KeyStore::new(meridian_auth::KeyFile::new(), []);
    let read_clock = || rx;
    let ctx = meridian_daemon::server::respond::ServeContext {
        state: &st,
        restrict: &open,
        keys: &keys,
        nts: None,
        read_clock: &read_clock,
    };
    let mut out = [0u8; 64];
    let req = request(0x1234_5678_9abc_def0);
    println!("per-packet pieces of the serving path (best of 7 rounds)");
    if only_nts {
        nts_pieces(&st, &open, &keys, rx);
        return;
    }

    for clients in [64u64, 100_000] {
        let mut ct = ClientTable::new(clients as usize, RateLimits::default());
        bench(
            &format!("respond(): whole decision + reply, {clients} clients"),
            2_000_000,
            |i| {
                let src = SocketAddr::new(client(i % clients), 40_000);
                let o = respond(
                    &ctx,
                    &mut ct,
                    black_box(&req),
                    src,
                    rx,
                    i as f64 * 1e-5,
                    &mut out,
                );
                black_box(o);
            },
        );
    }
    for clients in [64u64, 100_000] {
        let mut ct = ClientTable::new(clients as usize, RateLimits::default());
        bench(
            &format!("ClientTable::observe, {clients} clients"),
            2_000_000,
            |i| {
                black_box(ct.observe(client(i % clients), 123, i as f64 * 1e-5, 0x23));
            },
        );
    }
    bench(
        "RestrictTable::lookup, only the default entry",
        5_000_000,
        |i| {
            black_box(open.lookup(black_box(client(i))));
        },
    );
    bench(
        "RestrictTable::lookup, 20 entries + default (miss)",
        5_000_000,
        |i| {
            black_box(long.lookup(black_box(client(i))));
        },
    );
    bench(
        "read_realtime() (clock_gettime + NTP conversion)",
        2_000_000,
        |_| {
            black_box(meridian_os::read_realtime());
        },
    );
    bench(
        "NtpTimestamp::from_unix (kernel stamp conversion)",
        10_000_000,
        |i| {
            black_box(NtpTimestamp::from_unix(
                black_box(1_800_000_000 + i as i64),
                black_box(123_456_789),
            ));
        },
    );
    bench("TimeCorrection::apply, identity", 10_000_000, |i| {
        black_box(st.correction.apply(black_box(NtpTimestamp::from_bits(i))));
    });
    let shared = SharedState::new(st);
    bench(
        "SharedState::load() (ArcSwap load_full, once per batch)",
        5_000_000,
        |_| {
            black_box(shared.load());
        },
    );
    let mut reply = [0u8; 48];
    bench(
        "fraction_randomized + stamp_transmit (per reply)",
        10_000_000,
        |i| {
            let t = rx.fraction_randomized(black_box(i as u32), -20);
            stamp_transmit(&mut reply, t);
            black_box(&reply);
        },
    );
    nts_pieces(&st, &open, &keys, rx);
}

/// NTS: the sealed answer and its pieces, server side, then the load generator's side.
fn nts_pieces(
    st: &ServingState,
    open: &RestrictTable,
    keys: &meridian_auth::KeyStore,
    rx: NtpTimestamp,
) {
    use aes_siv::siv::Aes128Siv;
    use aes_siv::KeyInit;
    use meridian_bench::nts::{Ask, Sessions};
    use meridian_nts::{
        AeadKey, KeyRing, NtsClientState, NtsOutcome, NtsServer, SessionKeys, SharedKeyRing,
        SivKey, COOKIE_LEN, UID_LEN,
    };
    use meridian_proto::NtpHeader;

    let ring = SharedKeyRing::new(KeyRing::generate(1_800_000_000));
    let server = NtsServer::new(ring.clone());
    let session = SessionKeys {
        c2s: AeadKey::random(),
        s2c: AeadKey::random(),
    };
    let cookie = || {
        let mut c = [0u8; COOKIE_LEN];
        ring.read().seal_cookie(&session, &mut c);
        c.to_vec()
    };
    // Requests as a client with a full jar sends them: one cookie, no placeholders.
    const N: usize = 1024;
    let requests: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let mut state = NtsClientState::new(
                session.c2s.clone(),
                session.s2c.clone(),
                (0..8).map(|_| cookie()).collect(),
                String::new(),
                123,
            );
            let header = NtpHeader::decode(&request(i as u64 + 1)).expect("header");
            let mut buf = [0u8; 1024];
            let len = state
                .build_request(&header, &[i as u8; UID_LEN], &mut buf)
                .expect("request");
            buf[..len].to_vec()
        })
        .collect();
    let read_clock = || rx;
    let ctx = meridian_daemon::server::respond::ServeContext {
        state: st,
        restrict: open,
        keys,
        nts: Some(&server),
        read_clock: &read_clock,
    };
    let mut out = [0u8; 1024];
    println!(
        "NTS ({} B requests with one {} B cookie, {} B replies)",
        requests[0].len(),
        COOKIE_LEN,
        match server.process_request(
            &requests[0],
            &NtpHeader::decode(&request(1)).expect("header"),
            &mut out
        ) {
            NtsOutcome::Reply(n) => n,
            _ => 0,
        }
    );
    let mut ct = ClientTable::new(64, RateLimits::default());
    bench(
        "respond(): NTS request, whole decision + sealed reply, 64 cl.",
        200_000,
        |i| {
            let src = SocketAddr::new(client(i % 64), 40_000);
            let o = respond(
                &ctx,
                &mut ct,
                black_box(&requests[i as usize % N]),
                src,
                rx,
                i as f64 * 1e-5,
                &mut out,
            );
            black_box(o);
        },
    );
    let reply_header = NtpHeader::decode(&request(1)).expect("header");
    bench(
        "NtsServer::process_request (all of the NTS work)",
        200_000,
        |i| {
            black_box(server.process_request(
                black_box(&requests[i as usize % N]),
                &reply_header,
                &mut out,
            ));
        },
    );
    let cookies: Vec<Vec<u8>> = (0..N).map(|_| cookie()).collect();
    bench(
        "  KeyRing::open_cookie (AES-SIV open, 64 B)",
        500_000,
        |i| {
            black_box(ring.read().open_cookie(black_box(&cookies[i as usize % N])));
        },
    );
    let mut sealed = [0u8; COOKIE_LEN];
    bench(
        "  KeyRing::seal_cookie (nonce + AES-SIV seal, 64 B)",
        500_000,
        |_| {
            ring.read().seal_cookie(&session, &mut sealed);
            black_box(&sealed);
        },
    );
    let ad = [0x5au8; 188];
    let nonce = [7u8; 16];
    let mut empty: [u8; 0] = [];
    bench(
        "  AeadKey::seal_in_place, 188 B AD, no plaintext (req. auth)",
        500_000,
        |_| {
            black_box(
                session
                    .c2s
                    .seal_in_place(black_box(&ad), &nonce, &mut empty),
            );
        },
    );
    let mut body = [0x33u8; 104];
    bench(
        "  AeadKey::seal_in_place, 84 B AD, 104 B plaintext (reply)",
        500_000,
        |_| {
            black_box(
                session
                    .s2c
                    .seal_in_place(black_box(&ad[..84]), &nonce, &mut body),
            );
        },
    );
    bench(
        "  SivKey::new: expanding a key (what AeadKey does per use)",
        2_000_000,
        |_| {
            black_box(SivKey::new(black_box(&session.s2c)));
        },
    );
    let expanded = SivKey::new(&session.s2c);
    bench(
        "  same seal as above with the key expanded once (SivKey)",
        500_000,
        |_| {
            black_box(expanded.seal_in_place(black_box(&ad[..84]), &nonce, &mut body));
        },
    );
    let mut reference = Aes128Siv::new(session.s2c.as_bytes().into());
    bench(
        "  same seal, aes-siv crate with a prebuilt cipher (reference)",
        500_000,
        |_| {
            black_box(reference.encrypt_in_place_detached([&ad[..84], &nonce[..]], &mut body)).ok();
        },
    );
    {
        use aes::cipher::{BlockEncrypt, KeyInit as _};
        let aes = aes::Aes128::new((&[9u8; 16]).into());
        let mut block = aes::Block::default();
        bench(
            "  one AES-128 block, chained (aes crate; CMAC's unit of work)",
            5_000_000,
            |_| {
                aes.encrypt_block(&mut block);
                black_box(&block);
            },
        );
        let mut blocks = [aes::Block::default(); 8];
        bench(
            "  8 independent AES-128 blocks (aes crate, parallel: CTR's)",
            1_000_000,
            |_| {
                aes.encrypt_blocks(&mut blocks);
                black_box(&blocks);
            },
        );
    }
    bench(
        "  SharedKeyRing::read() (RwLock read + release)",
        5_000_000,
        |_| {
            drop(black_box(ring.read()));
        },
    );
    let mut n16 = [0u8; 16];
    bench(
        "  random_bytes(16) (thread_rng, per nonce)",
        5_000_000,
        |_| {
            meridian_nts::aead::random_bytes(&mut n16);
            black_box(&n16);
        },
    );
    // The load generator's side: build a request and check its reply, per request.
    let uid = [7u8; UID_LEN];
    let mut client_side = Sessions::from_parts(
        session.c2s.clone(),
        session.s2c.clone(),
        (0..64).map(|_| cookie()).collect(),
    );
    let mut req_buf = [0u8; 1024];
    let (len, flight) = client_side
        .build(0, 1, uid, Ask::Keep(64), &mut req_buf)
        .expect("build")
        .expect("cookie");
    let mut reply_buf = [0u8; 1024];
    let reply = match server.process_request(&req_buf[..len], &reply_header, &mut reply_buf) {
        NtsOutcome::Reply(n) => reply_buf[..n].to_vec(),
        other => panic!("server said {other:?}"),
    };
    client_side.verify(*flight, &reply).expect("reply verifies");
    bench(
        "loadgen: Sessions::build + verify per NTS request (client)",
        200_000,
        |i| {
            let (_, flight) = client_side
                .build(0, i | 1, uid, Ask::Keep(64), &mut req_buf)
                .expect("build")
                .expect("cookie");
            client_side.verify(*flight, &reply).expect("reply verifies");
        },
    );
}
