//! The group commit on its own thread, seen from the service's loop: while a group commits the
//! loop serves connections, and every request that arrives whole waits for the group.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use super::demo::{demo_config, enroll};
use super::Service;
use crate::clock::{Clock, SystemClock};
use crate::token::Tokens;

/// A TLS client that trusts only `root_der`.
fn tls_client(root_der: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(root_der.to_vec()))
        .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(crate::crypto::tls_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One client holds a group on the commit thread (held at the test's gate): meanwhile a second
/// client completes its TLS handshake and sends a request, which gets no answer while the group
/// is held, and a third enrolls; once the gate opens the first gets its certificate, then the
/// other two are answered (the third from a second group). Both tokens are spent, each
/// issuance audited once.
#[test]
fn a_committing_group_does_not_stop_handshakes_and_requests_wait_for_it() {
    let dir = std::env::temp_dir().join(format!("gatecert-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut svc = Service::start(demo_config(&dir), clock.clone()).unwrap();
    let gate = svc.est.gate_commits();
    let port = svc.local_addr().unwrap().port();
    let root = svc.ca().chain_der().last().cloned().unwrap();
    let mut tokens = Tokens::open(&crate::token::path_in(&dir)).unwrap();
    let now = clock.now();
    let names = |d: &str| vec![format!("{d}.sensors.local")];
    let ta = tokens.add("a", &names("a"), 3600, 1, now).unwrap();
    let tc = tokens.add("c", &names("c"), 3600, 1, now).unwrap();
    drop(tokens);

    let (mut stop, stop_rx) = UnixStream::pair().unwrap();
    let service = std::thread::spawn(move || loop {
        match svc.step(&[stop_rx.as_fd()], Duration::from_secs(1)) {
            Ok(r) if r[0] => {
                svc.settle();
                return;
            }
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    });
    let enroll_as = |device: &'static str, token: String| {
        let root = root.clone();
        std::thread::spawn(move || {
            enroll(
                port,
                &root,
                device,
                &token,
                &format!("{device}.sensors.local"),
            )
        })
    };
    let a = enroll_as("a", ta);
    assert!(
        gate.reached(1, Duration::from_secs(20)),
        "a's group never reached the commit thread"
    );

    // The group is held. A new client's handshake completes all the same.
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::ClientConnection::new(
        tls_client(&root),
        rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut sock)
            .expect("handshake while a group commits");
    }
    tls.writer()
        .write_all(b"GET /.well-known/est/cacerts HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    tls.complete_io(&mut sock).unwrap();
    let c = enroll_as("c", tc);
    // Its request waits for the group: nothing comes back while the gate is shut.
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // (Only the session tickets come back.)
    let mut buf = [0u8; 1];
    loop {
        match tls.complete_io(&mut sock) {
            Ok((0, 0)) => panic!("the connection closed while the group was held"),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
        match tls.reader().read(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("an answer while the group was held: {other:?}"),
        }
    }
    assert!(
        !a.is_finished(),
        "a was answered before its group was durable"
    );
    assert!(!c.is_finished());

    gate.open();
    let (leaf_a, _, _) = a.join().unwrap().expect("a enrolls");
    let (leaf_c, _, _) = c.join().unwrap().expect("c enrolls");
    assert_eq!(leaf_a.dns_names, names("a"));
    assert_eq!(leaf_c.dns_names, names("c"));
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    loop {
        match tls.complete_io(&mut sock) {
            Ok((0, 0)) => break,
            Ok(_) => {}
            Err(e) => panic!("reading the cacerts answer: {e}"),
        }
        match tls.reader().read_to_end(&mut answer) {
            Ok(_) => break,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    stop.write_all(b"x").unwrap();
    service.join().unwrap();
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    for d in ["a", "c"] {
        let issued = log
            .lines()
            .filter(|l| l.contains("\"est.issue\"") && l.contains(&format!("\"device\":\"{d}\"")))
            .count();
        assert_eq!(issued, 1, "{d}: {log}");
    }
    let tokens = Tokens::open(&crate::token::path_in(&dir)).unwrap();
    let counts = tokens.counts(clock.now());
    assert_eq!(
        (counts.active, counts.exhausted),
        (0, 2),
        "both tokens spent"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
