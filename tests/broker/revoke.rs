//! Revoking a brokered (upstream) leaf (issue 12): `gatecert leaves revoke` queues it, the
//! upstream worker revokes it at pebble with the gateway's account (pebble's management port
//! shows it revoked), and a revocation made while the upstream is unreachable happens once it
//! is back. "Unreachable" is a TCP relay in front of pebble that stops listening (connection
//! refused) and listens again: pebble keeps its state, as a real CA would across an outage.

use super::*;

const REVOKE_PORTS: Ports = Ports {
    acme: 14400,
    management: 15400,
    dns: 8453,
    challtestsrv: 8455,
    http01: 5380,
    tls_alpn: 5743,
};

/// The relay's fixed port: the gateway's directory URL points here.
const RELAY: u16 = 14410;

/// A TCP relay 127.0.0.1:`RELAY` -> pebble that can be switched off (nothing listens) and on.
struct Relay {
    target: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    fn new(target: u16) -> Relay {
        let mut r = Relay {
            target,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        r.on();
        r
    }

    fn on(&mut self) {
        common::wait_for_port_free(&format!("127.0.0.1:{RELAY}"));
        let l = TcpListener::bind(("127.0.0.1", RELAY)).unwrap();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let target = self.target;
        self.stop = stop;
        self.thread = Some(std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
            // The listener drops here: connections are refused from now on.
        }));
    }

    fn off(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.off();
    }
}

/// The hex serial of the upstream leaf in an enrollment answer.
fn enroll_upstream(g: &Gatecert, pebble: &Pebble, name: &str) -> String {
    let csr = g.csr(name, name);
    let (code, _, body, _) = g.enroll(name, &csr);
    assert_eq!(code, 200, "enroll {name}:\n{}", g.log());
    let certs = g.certs(&body, &format!("{name}-cert"));
    let leaf = Gatecert::leaf(&certs);
    let pebble_int = CertInfo::from_pem(&pebble.intermediate()).unwrap();
    assert_eq!(leaf.issuer, pebble_int.subject, "{name}: not from pebble");
    leaf.serial_hex()
}

/// pebble's management API says `serial` is revoked.
fn revoked_at_pebble(pebble: &Pebble, serial: &str) -> bool {
    let status = pebble.cert_status(&serial.to_ascii_lowercase());
    status.contains("\"Status\": \"Revoked\"") || status.contains("\"Status\":\"Revoked\"")
}

fn upstream_revoke_lines(g: &Gatecert, serial: &str) -> Vec<String> {
    g.audit()
        .lines()
        .filter(|l| l.contains("\"event\":\"leaves.upstream-revoke\"") && l.contains(serial))
        .map(str::to_owned)
        .collect()
}

#[test]
fn revoking_a_brokered_leaf_revokes_it_upstream_even_after_an_outage() {
    let pebble = Pebble::start_with(REVOKE_PORTS, "revoke-pebble");
    let mut relay = Relay::new(REVOKE_PORTS.acme);
    let directory = format!("https://127.0.0.1:{RELAY}/dir");
    let g = Gatecert::start_env(
        "revoke-gw",
        &directory,
        &pebble.https_ca,
        5,
        ROOMY_WAIT,
        REVOKE_PORTS.http01,
        &[("GATECERT_TICK_SECS", "1")],
    );
    g.wait_gateway_cert();
    let s1 = enroll_upstream(&g, &pebble, "rv1.sensors.test");
    let s2 = enroll_upstream(&g, &pebble, "rv2.sensors.test");
    assert!(
        !revoked_at_pebble(&pebble, &s1),
        "{}",
        pebble.cert_status(&s1)
    );

    // Upstream up: the revocation reaches pebble within a few ticks.
    let out = g.cli(&[
        "leaves",
        "revoke",
        "rv1.sensors.test",
        "--reason",
        "keyCompromise",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("1 upstream one(s) queued"), "{said}");
    wait_until("rv1 revoked at pebble", Duration::from_secs(60), || {
        revoked_at_pebble(&pebble, &s1)
    });
    wait_until("rv1's audit line", Duration::from_secs(10), || {
        upstream_revoke_lines(&g, &s1)
            .iter()
            .any(|l| l.contains("\"result\":\"revoked\""))
    });
    // Its re-enrollment with the upstream certificate is refused.
    let csr = g.csr("rv1.sensors.test", "rv1b");
    let (code, _, body, _) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            g.path("rv1.sensors.test-cert.pem").to_str().unwrap(),
            "--key",
            g.path("rv1.sensors.test.key").to_str().unwrap(),
            "--data-binary",
            &format!("@{}", csr.display()),
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));

    // Upstream unreachable at the time of revocation: queued, attempted, failed, kept.
    relay.off();
    let out = g.cli(&["leaves", "revoke", "rv2.sensors.test"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("a failed attempt for rv2", Duration::from_secs(60), || {
        upstream_revoke_lines(&g, &s2)
            .iter()
            .any(|l| l.contains("\"result\":\"failed\""))
    });
    let out = g.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leaves"]["upstream_revocations_pending"], 1, "{json}");
    assert!(g
        .leaves()
        .contains(&format!("upstream revocation pending: {s2}")));
    assert!(!revoked_at_pebble(&pebble, &s2));

    // The upstream is back: the queued revocation goes through.
    relay.on();
    wait_until("rv2 revoked at pebble", Duration::from_secs(120), || {
        revoked_at_pebble(&pebble, &s2)
    });
    wait_until("the queue to empty", Duration::from_secs(10), || {
        let out = g.cli(&["status", "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|j| j["leaves"]["upstream_revocations_pending"] == 0)
    });
    assert!(upstream_revoke_lines(&g, &s2)
        .iter()
        .any(|l| l.contains("\"result\":\"revoked\"")));
}
