//! Broker mode (issue 16): with a `broker` section, an ACME leaf's finalize is brokered to the
//! upstream ACME CA with the leaf's CSR; the order is `processing` meanwhile and the client
//! polls. Upstream up (Debian's Pebble): the leaf's chain is Pebble's. Upstream blackholed: a
//! local interim certificate within `upstream_wait` + 1 s. The client is curl with gatecert's
//! own JWS signers, so the time from finalize to a valid order is measured exactly.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gatecert::acme::jws::{self, KidSigner, Signer};
use gatecert::crypto::{self, CertInfo, KeyType, PrivateKey};
use serde_json::{json, Value};

use super::common::{self, Blackhole, Pebble, Ports, TempDir};
use super::refusals::{curl, new_account, nonce, order_for, post, url, Reply};
use super::{broker_sections, free_port, Gatecert};

/// POST-as-GET (RFC 8555 6.3).
fn fetch(g: &Gatecert, path: &str, signer: &dyn Signer) -> Reply {
    let u = url(g, path);
    let jws = jws::sign(signer, Some(&nonce(g)), &u, None).unwrap();
    let file = g.path("get.json");
    std::fs::write(&file, serde_json::to_vec(&jws).unwrap()).unwrap();
    let data = format!("@{}", file.display());
    curl(
        g,
        &u,
        &[
            "-H",
            "Content-Type: application/jose+json",
            "--data-binary",
            &data,
        ],
    )
}

fn path_of<'a>(g: &Gatecert, u: &'a str) -> &'a str {
    u.strip_prefix(&format!("https://{}:{}/acme/", g.host, g.port))
        .unwrap()
}

/// Registers `device`, orders `name` (pre-authorized), finalizes, and polls the order until it
/// is valid. Returns (seconds from the finalize to the valid order, the leaf, the chain PEM).
fn obtain(g: &Gatecert, device: &str, name: &str) -> (f64, CertInfo, String) {
    let eab = g.eab(device, &[name]);
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let r = new_account(g, &key, Some(&eab), &nonce(g));
    assert_eq!(r.status, 201, "{}", r.body);
    let account = r.header("location").unwrap();
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let r = post(g, "new-order", &signer, &nonce(g), &order_for(name));
    assert_eq!(r.body["status"], "ready", "{}", r.body);
    let order_url = r.header("location").unwrap();
    let finalize = r.body["finalize"].as_str().unwrap().to_owned();
    let leaf = PrivateKey::generate(KeyType::Ec256).unwrap();
    let csr = leaf.csr(&[name.to_owned()], &[]).unwrap();
    let t0 = Instant::now();
    let r = post(
        g,
        path_of(g, &finalize),
        &signer,
        &nonce(g),
        &json!({"csr": crypto::b64url(&csr)}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut order: Value = r.body;
    while order["status"] != "valid" {
        assert!(order["status"] == "processing", "order: {order}");
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the order stayed processing"
        );
        std::thread::sleep(Duration::from_millis(100));
        order = fetch(g, path_of(g, &order_url), &signer).body;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cert = fetch(
        g,
        path_of(g, order["certificate"].as_str().unwrap()),
        &signer,
    );
    let pem = std::fs::read_to_string(g.path("curl.body")).unwrap();
    assert_eq!(cert.status, 200);
    let chain = crypto::certs_from_pem(&pem).unwrap();
    let info = CertInfo::from_der(chain[0].as_ref()).unwrap();
    assert_eq!(
        info.spki_der,
        leaf.spki_der(),
        "the leaf carries the CSR's key"
    );
    (elapsed, info, pem)
}

fn self_signed(dir: &Path) -> std::path::PathBuf {
    let pem = dir.join("unused-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join("unused-ca.key"))
        .arg("-out")
        .arg(&pem)
        .args(["-days", "2", "-subj", "/CN=unused"])
        .output()
        .unwrap();
    assert!(out.status.success());
    pem
}

const WAIT: u64 = 2;

#[test]
fn blackholed_upstream_gives_an_interim_certificate_within_upstream_wait() {
    let hole = Blackhole::start();
    let tmp = TempDir::new("acmed-hole");
    let ca = self_signed(tmp.path());
    let sections = broker_sections(
        &format!("https://127.0.0.1:{}/dir", hole.port),
        &ca,
        "local",
        free_port(),
        30,
        WAIT,
    );
    let g = Gatecert::start_with("hole", "\toption preauthorized '1'\n", &sections);
    let (elapsed, info, pem) = obtain(&g, "cam8", "cam8.local");
    assert!(
        elapsed <= WAIT as f64 + 1.0,
        "interim after {elapsed:.2} s; upstream_wait is {WAIT} s"
    );
    assert!(info.not_after - info.not_before <= 3600 + 300);
    std::fs::write(g.path("interim.pem"), &pem).unwrap();
    g.verify(&g.path("interim.pem"), &g.path("interim.pem"));
    g.assert_audit(
        "acme.issue",
        &["\"device\":\"cam8\"", "\"source\":\"interim\""],
    );
    let leaves = String::from_utf8(g.cli(&["leaves"]).stdout).unwrap();
    assert!(
        leaves.contains("cam8") && leaves.contains("interim"),
        "{leaves}"
    );
}

/// Our own Pebble ports, apart from the other suites'.
const PORTS: Ports = Ports {
    acme: 14300,
    management: 15300,
    dns: 8353,
    challtestsrv: 8355,
    http01: 5380,
    tls_alpn: 5343,
};

#[test]
fn upstream_up_gives_a_chain_to_pebble() {
    let pebble = Pebble::start_with(PORTS, "acmed-pebble");
    let sections = broker_sections(
        &pebble.directory(),
        &pebble.https_ca,
        "sensors.test",
        PORTS.http01,
        60,
        60,
    );
    let mut g = Gatecert::start_with("pebble", "\toption preauthorized '1'\n", &sections);
    g.host = "gw.sensors.test".into();
    // The listener serves a local-CA certificate or, once renewed, Pebble's: trust both roots.
    let mut bundle = std::fs::read_to_string(g.path("root.pem")).unwrap();
    bundle.push_str(&std::fs::read_to_string(pebble.root()).unwrap());
    std::fs::write(g.path("root.pem"), bundle).unwrap();
    let (_, info, pem) = obtain(&g, "cam9", "cam9.sensors.test");
    assert!(info.issuer.contains("Pebble"), "issuer {}", info.issuer);
    std::fs::write(g.path("leaf.pem"), &pem).unwrap();
    std::fs::write(g.path("pebble-int.pem"), pebble.intermediate()).unwrap();
    common::verify_chain(
        &pebble.root(),
        &g.path("pebble-int.pem"),
        &g.path("leaf.pem"),
    );
    g.assert_audit(
        "acme.issue",
        &["\"device\":\"cam9\"", "\"source\":\"upstream\""],
    );
}
