use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::*;
use crate::ca::LocalCa;
use crate::clock::SystemClock;
use crate::config::{Certificate, Config};

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gatecert-broker-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A config with one ACME certificate at `directory` and the broker on.
fn config(state: &Path, directory: &str, timeout: u64, wait: u64) -> Config {
    let mut cfg = Config::standalone(state.to_path_buf());
    let mut gw = Certificate::standalone("gw", vec!["gw.sensors.test".into()]);
    gw.directory = Some(directory.into());
    gw.timeout = timeout;
    cfg.certificates = vec![gw];
    cfg.broker = Some(config::Broker {
        certificate: "gw".into(),
        challenge: config::ChallengeKind::Http01,
        dns_hook: None,
        upstream_wait: wait,
        interim_lifetime: 3600,
        issuers: Vec::new(),
    });
    cfg
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(15), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn key(device: &str) -> LeafKey {
    LeafKey::new(device, device.as_bytes())
}

#[test]
// qemu-user before 8.1 hands the host's SO_ERROR (111) to a MIPS guest untranslated, so a refused
// connect under emulation is not ECONNREFUSED (146 on MIPS). Real MIPS hardware is not affected;
// x86_64 and ARM (also under qemu) run this test.
#[cfg_attr(
    target_arch = "mips",
    ignore = "qemu-user < 8.1 does not translate SO_ERROR for MIPS guests"
)]
fn refused_upstream_is_down_and_leaves_get_interim_at_once() {
    let state = temp("refused");
    let cfg = config(&state, "https://127.0.0.1:1/dir", 5, 5);
    let mut b = Broker::start(&cfg, Arc::new(SystemClock)).unwrap().unwrap();
    wait_for("down", || b.state() == State::Down);
    let saved = std::fs::read_to_string(health::path_in(&state)).unwrap();
    assert!(saved.contains("\"state\": \"down\""), "{saved}");
    assert!(
        saved.contains("127.0.0.1:1"),
        "last_error names the URL: {saved}"
    );
    let t = Instant::now();
    assert_eq!(
        b.decide(&key("a"), &["a.sensors.test".into()], &[], b"csr"),
        Decision::Interim("the upstream CA is down")
    );
    // Without touching the network: a decide that tried the upstream would wait on its 5 s
    // timeout. 1 s of margin for a loaded machine under qemu.
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(b.next_deadline(), None);
    drop(b);
    let _ = std::fs::remove_dir_all(&state); // the dropped worker may still be writing there
}

#[test]
// qemu-user before 8.1 hands the host's SO_ERROR (111) to a MIPS guest untranslated, so a refused
// connect under emulation is not ECONNREFUSED (146 on MIPS). Real MIPS hardware is not affected;
// x86_64 and ARM (also under qemu) run this test.
#[cfg_attr(
    target_arch = "mips",
    ignore = "qemu-user < 8.1 does not translate SO_ERROR for MIPS guests"
)]
fn a_kept_chain_is_handed_out_once_and_upstream_leaves_are_remembered() {
    let state = temp("cache");
    let cfg = config(&state, "https://127.0.0.1:1/dir", 5, 5);
    let now = SystemClock.now();
    let ca = LocalCa::init(
        &state.join("ca"),
        &cfg.ca,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap();
    let (_, issued) = ca
        .issue_with_new_key(
            &["a.local".into()],
            &[],
            None,
            false,
            crate::trust::TrustedNow::for_tests(now),
        )
        .unwrap();
    let pem = crypto::certs_to_pem(issued.chain_der.iter().map(Vec::as_slice));
    let mut b = Broker::start(&cfg, Arc::new(SystemClock)).unwrap().unwrap();
    b.keep(key("a"), &pem);
    let file = std::fs::read_to_string(path_in(&state)).unwrap();
    assert!(file.contains(&key("a").spki), "{file}");
    // Another device's key does not match.
    wait_for("down", || b.state() == State::Down);
    assert!(matches!(
        b.decide(&key("b"), &[], &[], b""),
        Decision::Interim(_)
    ));
    assert_eq!(b.decide(&key("a"), &[], &[], b""), Decision::Cached(pem));
    assert!(matches!(
        b.decide(&key("a"), &[], &[], b""),
        Decision::Interim(_)
    ));
    assert!(!std::fs::read_to_string(path_in(&state))
        .unwrap()
        .contains(&key("a").spki));

    assert!(!b.is_upstream_leaf(&issued.leaf_der));
    b.remember(&issued.leaf_der, issued.not_after);
    assert!(b.is_upstream_leaf(&issued.leaf_der));
    assert!(!b.is_upstream_leaf(&issued.chain_der[1]));
    drop(b);
    let _ = std::fs::remove_dir_all(&state); // the dropped worker may still be writing there
}

#[test]
fn a_parked_request_on_a_silent_upstream_falls_back_at_its_deadline() {
    let state = temp("silent");
    let hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hole.local_addr().unwrap().port();
    // The kernel completes the handshakes; nobody ever reads or answers.
    let cfg = config(&state, &format!("https://127.0.0.1:{port}/dir"), 30, 1);
    let mut b = Broker::start(&cfg, Arc::new(SystemClock)).unwrap().unwrap();
    let t = Instant::now();
    let Decision::Wait(id) = b.decide(&key("a"), &["a.sensors.test".into()], &[], b"csr") else {
        panic!("expected the request to be parked");
    };
    assert!(b.next_deadline().is_some());
    let mut got = Vec::new();
    wait_for("the deadline", || {
        got = b.poll();
        !got.is_empty()
    });
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "{waited:?} {got:?}"
    );
    assert!(
        matches!(&got[..], [Resolution::Interim { id: i, .. }] if *i == id),
        "{got:?}"
    );
    // The worker is still stuck and has heard nothing: no more waiting.
    assert!(matches!(
        b.decide(&key("b"), &["b.sensors.test".into()], &[], b"csr"),
        Decision::Interim(_)
    ));
    drop(b);
    drop(hole);
    let _ = std::fs::remove_dir_all(&state); // the dropped worker may still be writing there
}

/// `/cacerts` with a broker: the issuers above delivered upstream leaves (and the broker
/// certificate's own chain), each once, kept across restarts until they expire.
#[test]
fn upstream_issuers_are_kept_for_cacerts_until_they_expire() {
    let state = temp("issuers");
    let cfg = config(&state, "https://127.0.0.1:1/dir", 5, 5);
    let now = SystemClock.now();
    let ca = LocalCa::init(
        &state.join("ca"),
        &cfg.ca,
        crate::trust::TrustedNow::for_tests(now),
    )
    .unwrap();
    let clock = Arc::new(crate::clock::FixedClock::new(now));
    let mut b = Broker::start(&cfg, clock.clone()).unwrap().unwrap();
    assert!(b.upstream_issuers().is_empty());
    let [int, root] = [ca.chain_der()[0].clone(), ca.chain_der()[1].clone()];
    b.remember_issuers(std::slice::from_ref(&int));
    b.remember_issuers(std::slice::from_ref(&int));
    assert_eq!(b.upstream_issuers(), vec![int.clone()]);
    drop(b);
    // The broker certificate's own chain (the gateway's ACME set) counts too.
    let live = state.join("certs/gw/live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(
        live.join("chain.pem"),
        crypto::pem_block("CERTIFICATE", &root),
    )
    .unwrap();
    let b = Broker::start(&cfg, clock.clone()).unwrap().unwrap();
    // A set: the order is not part of the promise (cacerts DER-sorts it anyway).
    let mut got = b.upstream_issuers();
    got.sort();
    let mut want = vec![root.clone(), int.clone()];
    want.sort();
    assert_eq!(got, want);
    clock.set(ca.intermediate().not_after + 1);
    assert_eq!(b.upstream_issuers(), vec![root]);
    drop(b);
    let _ = std::fs::remove_dir_all(&state); // the dropped worker may still be writing there
}
