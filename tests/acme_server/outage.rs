//! Broker mode with real ACME clients as leaves, through an upstream outage and back (issue 16).
//! The gateway brokers to Debian's Pebble; the upstream starts blackholed (a listener on
//! Pebble's port that never answers):
//!
//! - **lego** obtains a local interim certificate within `upstream_wait` + 1 s (the whole lego
//!   run: registration, order, finalize, polling and download);
//! - a **second `gatecert`** (its `renew`, RFC 8555 + RFC 9773 over TLS) obtains an interim
//!   certificate too; the gateway's ARI answer for it is the usual window while the upstream is
//!   away and moves to "now" once Pebble is back; the leaf's next `gatecert renew`, driven by
//!   that answer (no `--force`), orders with `replaces` and is brokered to Pebble;
//! - lego renews after the upstream is back: its chain is Pebble's; lego revokes it at the
//!   gateway, which has Pebble revoke it (the local CRL does not list it).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gatecert::crypto::{self, CertInfo};
use serde_json::Value;

use super::common::{self, Blackhole, Pebble, Ports};
use super::{broker_sections, free_port, lego, lego_renew, ok, serial_of, Gatecert};

/// Our own Pebble ports, apart from the other suites' and tests/acme_server/broker.rs's.
const PORTS: Ports = Ports {
    acme: 14320,
    management: 15320,
    dns: 8373,
    challtestsrv: 8375,
    http01: 5392,
    tls_alpn: 5355,
};

/// `upstream_wait`, seconds: long enough for Pebble to issue once it is back.
const WAIT: u64 = 8;

/// A leaf that runs `gatecert` as its ACME client against the gateway's /acme/directory.
struct Leaf {
    dir: PathBuf,
}

impl Leaf {
    fn new(g: &Gatecert, name: &str, eab: &(String, String)) -> Leaf {
        let dir = g.path("leaf");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("leaf.uci"),
            format!(
                "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log 'stderr'\n\n\
                 config certificate 'cam'\n\toption directory '{directory}'\n\
                 \toption ca_bundle '{bundle}'\n\toption eab_kid '{kid}'\n\
                 \toption eab_hmac_key '{hmac}'\n\tlist domain '{name}'\n\
                 \toption http_listen '127.0.0.1:{http}'\n\toption timeout '20'\n",
                state = dir.join("state").display(),
                directory = g.directory(),
                bundle = g.path("root.pem").display(),
                kid = eab.0,
                hmac = eab.1,
                http = free_port(),
            ),
        )
        .unwrap();
        Leaf { dir }
    }

    /// `gatecert --config leaf.uci renew`, its output kept for tests/secrets.sh.
    fn renew(&self) -> Output {
        let out = Command::new("timeout")
            .arg("120")
            .arg(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.dir.join("leaf.uci"))
            .arg("renew")
            .output()
            .unwrap();
        common::keep_output("acme_server", "leaf", &out);
        out
    }

    /// The live certificate and its chain.
    fn live(&self) -> (CertInfo, PathBuf) {
        let path = self.dir.join("state/certs/cam/live/fullchain.pem");
        let pem = std::fs::read_to_string(&path).unwrap();
        (CertInfo::from_pem(&pem).unwrap(), path)
    }
}

/// The gateway's RFC 9773 answer for `cert`: (window start, end, Retry-After).
fn renewal_info(g: &Gatecert, cert: &CertInfo) -> (i64, i64, String) {
    let id = gatecert::acme::cert_id(cert).expect("the leaf carries an AKI");
    let (body, headers) = g.get(&format!("acme/renewal-info/{id}"), "ari");
    let doc: Value = serde_json::from_slice(&std::fs::read(&body).unwrap()).unwrap();
    let at = |k: &str| crypto::parse_rfc3339(doc["suggestedWindow"][k].as_str().unwrap()).unwrap();
    let retry = headers
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (at("start"), at("end"), retry)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn leaves_get_interim_certificates_during_an_outage_and_ari_upgrades_them_after() {
    let mut pebble = Pebble::start_with(PORTS, "acmed-outage");
    pebble.stop();
    let hole = Blackhole::on(PORTS.acme);
    let sections = broker_sections(
        &pebble.directory(),
        &pebble.https_ca,
        "sensors.test",
        PORTS.http01,
        3,
        WAIT,
    );
    let g = Gatecert::start_with("outage", "\toption preauthorized '1'\n", &sections);
    let local_root = g.path("local-root.pem");
    std::fs::copy(g.path("root.pem"), &local_root).unwrap();
    let local_int = g.state().join("ca/intermediate.pem");

    // 1. Upstream blackholed: lego gets an interim certificate within upstream_wait + 1 s.
    let (kid, hmac) = g.eab("cam1", &["cam1.sensors.test"]);
    let lego_args = [
        "--eab",
        "--kid",
        &kid,
        "--hmac",
        &hmac,
        "--domains",
        "cam1.sensors.test",
        "--http",
        "--http.port",
        &format!("127.0.0.1:{}", free_port()),
        "--key-type",
        "ec256",
        // lego polls a processing order every cert.timeout/60 s: 0.25 s.
        "--cert.timeout",
        "15",
    ];
    let t0 = Instant::now();
    let run = lego(&g, "lego", &[&lego_args[..], &["run"]].concat());
    let took = t0.elapsed();
    ok(&run, "lego run (upstream blackholed)");
    eprintln!("lego run with the upstream blackholed: {took:?} (upstream_wait {WAIT} s)");
    assert!(
        took <= Duration::from_secs(WAIT + 1),
        "lego's whole run took {took:?}; upstream_wait is {WAIT} s"
    );
    let certs = g.path("lego/certificates");
    let (crt, issuer) = (
        certs.join("cam1.sensors.test.crt"),
        certs.join("cam1.sensors.test.issuer.crt"),
    );
    common::verify_chain(&local_root, &issuer, &crt);
    let interim1 = serial_of(&crt);
    g.assert_audit(
        "acme.issue",
        &["\"device\":\"cam1\"", "\"source\":\"interim\"", &interim1],
    );

    // 2. A gatecert leaf, still during the outage: an interim certificate too.
    let eab = g.eab("cam2", &["cam2.sensors.test"]);
    let leaf = Leaf::new(&g, "cam2.sensors.test", &eab);
    let out = leaf.renew();
    ok(&out, "gatecert renew (leaf, upstream blackholed)");
    let (interim, interim_pem) = leaf.live();
    common::verify_chain(&local_root, &local_int, &interim_pem);
    let interim2 = interim.serial_hex();
    g.assert_audit(
        "acme.issue",
        &["\"device\":\"cam2\"", "\"source\":\"interim\"", &interim2],
    );
    // The gateway's ARI answer while the upstream is away: the usual window (in the last third
    // of the lifetime), asked again in 5 minutes.
    let (start, _, retry) = renewal_info(&g, &interim);
    assert!(
        start > unix_now() + 600,
        "window opens at {start}, now {}",
        unix_now()
    );
    assert_eq!(retry, "300");

    // 3. The upstream comes back. Both roots are trusted from now on: the gateway may renew
    // its own listener certificate from Pebble.
    drop(hole);
    pebble.restart(false);
    let pebble_root = pebble.root();
    let mut bundle = std::fs::read_to_string(&local_root).unwrap();
    bundle.push_str(&std::fs::read_to_string(&pebble_root).unwrap());
    std::fs::write(g.path("root.pem"), bundle).unwrap();
    std::fs::write(g.path("pebble-int.pem"), pebble.intermediate()).unwrap();
    // The broker probes the directory with backoff; once it judged it up, ARI says "now": a
    // window wholly in the past, so any pick in it means renew at once (RFC 9773 §4.2).
    let limit = Instant::now() + Duration::from_secs(120);
    loop {
        let (start, end, _) = renewal_info(&g, &interim);
        let now = unix_now();
        if start <= now {
            assert!(start < end && end <= now, "window {start}..{end} at {now}");
            break;
        }
        assert!(
            Instant::now() < limit,
            "ARI never moved the interim leaf's window to now"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // 4. The leaf's next renew, driven by that answer (no --force): ordered with `replaces`,
    // brokered to Pebble.
    let out = leaf.renew();
    ok(&out, "gatecert renew (leaf, upstream back)");
    let (upgraded, upgraded_pem) = leaf.live();
    assert_ne!(upgraded.serial_hex(), interim2, "the leaf was not renewed");
    assert!(
        upgraded.issuer.contains("Pebble"),
        "issuer {}",
        upgraded.issuer
    );
    common::verify_chain(&pebble_root, &g.path("pebble-int.pem"), &upgraded_pem);
    g.assert_audit(
        "acme.issue",
        &[
            "\"device\":\"cam2\"",
            "\"source\":\"upstream\"",
            &format!("\"replaces\":\"{interim2}\""),
        ],
    );

    // 5. lego renews (it has no ARI: --days forces it) now that the upstream is up: Pebble's
    // chain.
    let renew = lego_renew(&g, "lego", &lego_args);
    ok(&renew, "lego renew (upstream back)");
    let renewed = serial_of(&crt);
    assert_ne!(renewed, interim1);
    common::verify_chain(&pebble_root, &issuer, &crt);
    g.assert_audit(
        "acme.issue",
        &["\"device\":\"cam1\"", "\"source\":\"upstream\"", &renewed],
    );

    // 6. lego revokes the brokered certificate at the gateway: queued for the upstream's
    // revokeCert at once (not at the service's next 60 s tick), Pebble lists it as revoked;
    // the local CRL does not (it is Pebble's to list).
    let revoke = lego(
        &g,
        "lego",
        &[&lego_args[..], &["revoke", "--keep"]].concat(),
    );
    ok(&revoke, "lego revoke (brokered certificate)");
    g.assert_audit("acme.revoke", &[&renewed, "\"device\":\"cam1\""]);
    let limit = Instant::now() + Duration::from_secs(30);
    while !pebble.is_revoked(&renewed) {
        assert!(
            Instant::now() < limit,
            "Pebble never saw the revocation: {}",
            pebble.cert_status(&renewed.to_ascii_lowercase())
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, crl) = g.crl("brokered");
    assert!(!crl.contains(&renewed), "{crl}");
}
