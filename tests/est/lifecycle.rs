//! The leaf lifecycle (issue 12) against the real binary with curl and openssl: one inventory
//! row per device, `gatecert leaves revoke|disable|enable` while `gatecert run` serves, the CRL
//! at `GET /crl` checked by `openssl crl` and `openssl verify -crl_check`, the keyCompromise
//! key block, the alert after refused re-enrollments, and the merge of an older split inventory.

use super::*;

/// The config: state dir, stderr logging, a metrics listener, a CRL Distribution Point, and an
/// alert after 3 refused re-enrollments.
fn uci(metrics: u16, crl_file: &Path) -> String {
    format!(
        "config gatecert 'main'\n\toption state_dir '@STATE@'\n\toption log 'stderr'\n\
         config certificate 'gateway'\n\tlist domain 'gateway.local'\n\
         config ca 'local'\n\tlist allow_suffix 'local'\n\
         \toption crl_url 'http://gateway.local/crl'\n\toption crl_validity '2h'\n\
         \toption crl_file '{}'\n\
         config est 'est'\n\toption reenroll_alert '3'\n\
         config metrics 'metrics'\n\toption listen '127.0.0.1:{metrics}'\n",
        crl_file.display()
    )
}

impl Gatecert {
    /// `gatecert --config <its config> ARGS` (the CLI beside the running service).
    pub(super) fn cli(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.uci"))
            .args(args)
            .output()
            .unwrap();
        common::keep_output("est", "cli", &out);
        out
    }

    /// A token made with `gatecert token add` (as an operator would), `uses` uses.
    fn cli_token(&self, device: &str, name: &str, uses: &str) -> String {
        let mut out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.uci"))
            .args(["token", "add", device, "--name", name, "--uses", uses])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(std::mem::take(&mut out.stdout))
            .unwrap()
            .trim()
            .to_owned();
        // The token is printed once, by design; the kept log gets only stderr.
        common::keep_output("est", "cli", &out);
        common::keep_secret(&token);
        token
    }

    /// `GET path` (a full path on the listener) with curl: (status, headers, body).
    fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        let body = self.path("get.body");
        let headers = self.path("get.headers");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.path("root.pem"))
            .arg("--resolve")
            .arg(format!("gateway.local:{}:127.0.0.1", self.port))
            .arg("-o")
            .arg(&body)
            .arg("-D")
            .arg(&headers)
            .args(["-w", "%{http_code}"])
            .arg(format!("https://gateway.local:{}{path}", self.port))
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0),
            std::fs::read_to_string(&headers).unwrap_or_default(),
            std::fs::read(&body).unwrap_or_default(),
        )
    }

    /// The CRL served at `/crl`, converted to PEM by `openssl crl` (which fails on a bad CRL);
    /// returns (PEM path, `openssl crl -text` output).
    fn fetch_crl(&self, tag: &str) -> (PathBuf, String) {
        let (code, headers, der) = self.get("/crl");
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&der));
        assert!(
            headers
                .to_ascii_lowercase()
                .contains("content-type: application/pkix-crl"),
            "{headers}"
        );
        common::crl_to_pem(&self.dir, tag, &der)
    }

    /// `openssl verify -crl_check` of `leaf` against the root, the intermediate and `crl`.
    fn verify_with_crl(&self, leaf: &Path, crl: &Path) -> (bool, String) {
        common::verify_with_crl(
            &self.path("root.pem"),
            &self.state().join("ca/intermediate.pem"),
            crl,
            leaf,
        )
    }
}

pub(super) fn reenroll(g: &Gatecert, cert: &Path, key: &Path, csr: &Path) -> (u16, String) {
    let data = format!("@{}", csr.display());
    let (code, _, body) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    (code, String::from_utf8_lossy(&body).into_owned())
}

/// The one certificate of a 200 enrollment answer, as `<tag>.pem`.
pub(super) fn issued(g: &Gatecert, tag: &str, code: u16, body: &[u8]) -> PathBuf {
    assert_eq!(code, 200, "{tag}: {}", String::from_utf8_lossy(body));
    let pem = first_cert(&p7_to_pem(&g.dir, tag, body));
    let path = g.path(&format!("{tag}.pem"));
    std::fs::write(&path, pem).unwrap();
    path
}

fn serial_of(cert: &Path) -> String {
    let out = openssl(&["x509", "-noout", "-serial", "-in", cert.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

/// A CSR for `name` with an existing key (openssl), base64, as `<tag>.csr.b64`.
fn csr_with_key(g: &Gatecert, tag: &str, key: &Path, name: &str) -> PathBuf {
    let der = g.path(&format!("{tag}.csr.der"));
    openssl(&[
        "req",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        &format!("subjectAltName=DNS:{name}"),
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let b64 = g.path(&format!("{tag}.csr.b64"));
    std::fs::write(&b64, b64_encode(&std::fs::read(&der).unwrap())).unwrap();
    b64
}

/// Enroll, re-enroll (one row), `leaves revoke` by serial while the service runs: every
/// certificate of the device is in the CRL that `GET /crl` serves, `openssl verify -crl_check`
/// refuses them and accepts another device's; re-enrollment is refused (403) with the old key
/// and with a fresh one; the old token no longer works; a keyCompromise key is never certified
/// again, and only a new token brings the device back.
#[test]
fn revoked_device_is_cut_off_and_its_certificates_listed_in_the_crl() {
    let metrics = free_port();
    let crl_file = std::env::temp_dir().join(format!("gatecert-crl-{}.der", std::process::id()));
    let g = Gatecert::start_with("revoke", Some(&uci(metrics, &crl_file)));
    let d = &g.dir;
    let name = "sensor-1.sensors.local";
    // Three uses: one is left after the first enrollment, for the "old token" check below.
    let old_token = g.cli_token("sensor-1", name, "3");
    let (k1, csr) = make_csr(d, "c1", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-1", &old_token, &csr);
    let c1 = issued(&g, "c1", code, &body);
    let text = String::from_utf8_lossy(
        &openssl(&["x509", "-noout", "-text", "-in", c1.to_str().unwrap()]).stdout,
    )
    .into_owned();
    assert!(
        text.contains("CRL Distribution Points") && text.contains("URI:http://gateway.local/crl"),
        "{text}"
    );
    let (k2, csr) = make_csr(d, "c2", "ec:P-256", name, &[name]);
    let (code, body) = reenroll(&g, &c1, &k1, &csr);
    let c2 = issued(&g, "c2", code, body.as_bytes());
    // The other device.
    let other = "sensor-2.sensors.local";
    let t2 = g.cli_token("sensor-2", other, "1");
    let (_, csr) = make_csr(d, "o1", "ec:P-256", other, &[other]);
    let (code, _, body) = g.enroll("sensor-2", &t2, &csr);
    let o1 = issued(&g, "o1", code, &body);

    // One row per device; sensor-1 keeps c1 as an earlier certificate.
    let out = g.cli(&["leaves"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        table.lines().filter(|l| l.starts_with("sensor-1 ")).count(),
        1,
        "{table}"
    );
    assert!(!table.contains(&format!("\n{name} ")), "{table}");
    let inv = gatecert::leaves::Inventory::open(&g.state().join("leaves.jnl")).unwrap();
    assert_eq!(inv.len(), 2, "{:?}", inv.list().collect::<Vec<_>>());

    // The CRL before: signed by the intermediate, empty, and every leaf verifies with it.
    let (crl, text) = g.fetch_crl("before");
    assert!(
        text.contains("Issuing CA") && text.contains("No Revoked Certificates"),
        "{text}"
    );
    assert!(g.verify_with_crl(&c2, &crl).0);
    let (code, _, same) = g.get(&format!("{EST}/crl"));
    assert_eq!(code, 200);
    assert_eq!(same, std::fs::read(g.path("before.crl.der")).unwrap());

    // Revoke by the serial of the current certificate: the whole device.
    let out = g.cli(&[
        "leaves",
        "revoke",
        &serial_of(&c2),
        "--reason",
        "keyCompromise",
    ]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("device sensor-1 revoked (keyCompromise): 2 certificate(s)"),
        "{said}"
    );

    // Re-enrollment is refused with the current certificate (old key, fresh key) and the
    // earlier one.
    let (_, fresh) = make_csr(d, "fresh", "ec:P-256", name, &[name]);
    let same_key = csr_with_key(&g, "samekey", &k2, name);
    for (cert, key, csr) in [
        (&c2, &k2, &fresh),
        (&c2, &k2, &same_key),
        (&c1, &k1, &fresh),
    ] {
        let (code, text) = reenroll(&g, cert, key, csr);
        assert_eq!(code, 403, "{text}");
        assert!(text.contains("was revoked (keyCompromise)"), "{text}");
    }
    g.assert_audit(
        "est.deny",
        &["simplereenroll", "sensor-1", "was revoked", "403"],
    );
    // The old token (one use left) is revoked with the device.
    let (code, headers, body) = g.enroll("sensor-1", &old_token, &fresh);
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains("WWW-Authenticate"));

    // The CRL after: both certificates, keyCompromise; verify fails for them, passes for o1.
    let (crl, text) = g.fetch_crl("after");
    for c in [&c1, &c2] {
        assert!(text.contains(&serial_of(c)), "{text}");
        let (ok, why) = g.verify_with_crl(c, &crl);
        assert!(!ok && why.contains("certificate revoked"), "{why}");
    }
    assert!(text.contains("Key Compromise"), "{text}");
    let (ok, why) = g.verify_with_crl(&o1, &crl);
    assert!(ok, "{why}");
    // crl_file holds the same CRL.
    assert_eq!(
        std::fs::read(&crl_file).unwrap(),
        std::fs::read(g.path("after.crl.der")).unwrap()
    );
    let _ = std::fs::remove_file(&crl_file);
    g.assert_audit(
        "leaves.revoke",
        &[
            "sensor-1",
            "keyCompromise",
            &serial_of(&c1),
            &serial_of(&c2),
        ],
    );
    g.assert_audit("crl.issue", &["\"entries\":2"]);

    // status and status --json name the revoked device.
    let out = g.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leaves"]["revoked"], serde_json::json!(["sensor-1"]));
    assert_eq!(json["leaves"]["revoked_certificates"], 2);
    assert!(json["leaves"]["crl_next_update"].as_i64().unwrap() > now());
    let out = g.cli(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked: sensor-1"));

    // A new token: the compromised key is refused, a fresh key enrolls the device again.
    let new_token = g.cli_token("sensor-1", name, "1");
    let (code, _, body) = g.enroll("sensor-1", &new_token, &same_key);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("keyCompromise"), "{text}");
    let (code, _, body) = g.enroll("sensor-1", &new_token, &fresh);
    issued(&g, "c3", code, &body);
}

/// `leaves disable`: the device's re-enrollment gets 403 with the reason, audited; three in a
/// row raise the alert (log and metric); a new token does not help until `leaves enable`.
#[test]
fn disabled_device_gets_403_raises_the_alert_and_comes_back_when_enabled() {
    let metrics = free_port();
    let crl_file = std::env::temp_dir().join(format!("gatecert-crl-d-{}.der", std::process::id()));
    let g = Gatecert::start_with("disable", Some(&uci(metrics, &crl_file)));
    let d = &g.dir;
    let name = "sensor-d.sensors.local";
    let token = g.cli_token("sensor-d", name, "1");
    let (k1, csr) = make_csr(d, "d1", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-d", &token, &csr);
    let c1 = issued(&g, "d1", code, &body);

    let out = g.cli(&["leaves", "disable", "sensor-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..3 {
        let (_, csr) = make_csr(d, &format!("r{i}"), "ec:P-256", name, &[name]);
        let (code, text) = reenroll(&g, &c1, &k1, &csr);
        assert_eq!(code, 403, "{text}");
        assert!(text.contains("device sensor-d is disabled"), "{text}");
    }
    g.assert_audit("est.deny", &["sensor-d", "is disabled", "403"]);
    g.assert_audit("leaves.disable", &["sensor-d", "cessationOfOperation"]);
    let scrape = Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .arg(format!("http://127.0.0.1:{metrics}/metrics"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&scrape.stdout);
    assert!(
        text.contains("gatecert_leaf_reenroll_alerts_total 1\n"),
        "{text}"
    );
    let log = std::fs::read_to_string(common::log_dir("est").join("run-disable.log")).unwrap();
    assert!(
        log.contains(
            "ALERT: 3 refused re-enrollments in a row with certificates of device sensor-d"
        ),
        "{log}"
    );

    // A new token while disabled: 403; after `leaves enable`, it enrolls.
    let token = g.cli_token("sensor-d", name, "1");
    let (_, csr) = make_csr(d, "d2", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-d", &token, &csr);
    assert_eq!(code, 403, "{}", String::from_utf8_lossy(&body));
    let out = g.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leaves"]["disabled"], serde_json::json!(["sensor-d"]));
    let out = g.cli(&["leaves", "enable", "sensor-d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    g.assert_audit("leaves.enable", &["sensor-d"]);
    let (code, _, body) = g.enroll("sensor-d", &token, &csr);
    issued(&g, "d2", code, &body);
    // Bad input is named.
    let out = g.cli(&["leaves", "revoke", "nobody"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("no device and no certificate serial \"nobody\""));
    let out = g.cli(&["leaves", "revoke", "sensor-d", "--reason", "bored"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown revocation reason \"bored\""));
}

/// A state dir whose inventory the code before one identity per device wrote (the token's
/// device name row and the CN row of its re-enrollment): `gatecert run` merges them on its first
/// start, audited; `leaves` shows one row with the earlier certificate.
#[test]
fn split_rows_of_an_older_state_dir_are_merged_on_first_start() {
    let fixture = include_str!("../fixtures/leaves-split-v1.json");
    let g = Gatecert::start_seeded(
        "merge",
        Some("config gatecert 'main'\n\toption state_dir '@STATE@'\n\toption log 'stderr'\n"),
        &|state| std::fs::write(state.join("leaves.json"), fixture).unwrap(),
        &[],
    );
    let t = Instant::now();
    while !g.audit().contains("\"event\":\"leaves.merge\"") {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no merge: {}",
            g.audit()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    g.assert_audit("leaves.merge", &["\"rows\":1"]);
    // The merge was written as the journal, and the older file is gone.
    assert!(!g.state().join("leaves.json").exists());
    let inv = gatecert::leaves::Inventory::open(&g.state().join("leaves.jnl")).unwrap();
    assert!(inv.by_device("s1.sensors.local").is_none());
    assert_eq!(inv.by_device("s1").unwrap().earlier.len(), 1);
    let out = g.cli(&["leaves"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = table.lines().find(|l| l.starts_with("s1 ")).unwrap();
    assert!(
        row.contains("6B1C7D2E3F405162738495A6B7C8D9EA")
            && row.contains(" active ")
            && row.contains(" 1 "),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .filter(|l| l.contains("s1.sensors.local"))
            .count(),
        1,
        "{table}"
    );
}

/// Signing the CRL passes the clock gate: `leaves revoke` on a 1970 clock cuts the device off at
/// once (403) but signs no CRL, says so and exits 2; the service, on a trusted clock, signs it at
/// its next upkeep (here forced by SIGHUP), audited.
#[test]
fn revoke_on_an_untrusted_clock_cuts_off_and_the_service_signs_the_crl_later() {
    let metrics = free_port();
    let crl_file = std::env::temp_dir().join(format!("gatecert-crl-c-{}.der", std::process::id()));
    let g = Gatecert::start_with("untrusted", Some(&uci(metrics, &crl_file)));
    let d = &g.dir;
    let name = "sensor-c.sensors.local";
    let token = g.cli_token("sensor-c", name, "1");
    let (k1, csr) = make_csr(d, "u1", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-c", &token, &csr);
    let c1 = issued(&g, "u1", code, &body);
    let crl_before = std::fs::read(g.state().join("crl.der")).unwrap();
    let signed_before = g.audit().matches("\"event\":\"crl.issue\"").count();

    let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(g.path("gatecert.uci"))
        .args(["leaves", "revoke", "sensor-c"])
        .env("GATECERT_FAKE_NOW", "100")
        .output()
        .unwrap();
    common::keep_output("est", "cli", &out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("CRL not signed: the clock is untrusted"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(g.state().join("crl.der")).unwrap(),
        crl_before
    );
    assert_eq!(
        g.audit().matches("\"event\":\"crl.issue\"").count(),
        signed_before
    );
    g.assert_audit("leaves.revoke", &["sensor-c", &serial_of(&c1)]);
    let (_, csr) = make_csr(d, "u2", "ec:P-256", name, &[name]);
    let (code, text) = reenroll(&g, &c1, &k1, &csr);
    assert_eq!(code, 403, "{text}");
    let out = g.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leaves"]["crl_pending"], true, "{json}");
    assert!(
        json["attention"]
            .to_string()
            .contains("not in the published CRL yet"),
        "{json}"
    );
    assert_eq!(out.status.code(), Some(1));

    // The service's clock is trusted: its next upkeep signs the CRL with the revocation.
    run(Command::new("kill").args(["-HUP", &g.child.id().to_string()]));
    let t = Instant::now();
    while g.audit().matches("\"event\":\"crl.issue\"").count() == signed_before {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no CRL signed: {}",
            g.audit()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (crl, text) = g.fetch_crl("later");
    let out = g.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["leaves"]["crl_pending"], false, "{json}");
    assert!(text.contains(&serial_of(&c1)), "{text}");
    let (ok, why) = g.verify_with_crl(&c1, &crl);
    assert!(!ok && why.contains("certificate revoked"), "{why}");
    let _ = std::fs::remove_file(&crl_file);
}

/// The CRL is signed again before its nextUpdate: with `crl_validity` 1h, moving the service's
/// clock 50 minutes on (a quarter is left) makes it sign a new CRL by itself, numbered higher,
/// listing the same revocation, audited.
#[test]
fn the_service_signs_the_crl_again_before_its_next_update() {
    let clock = std::env::temp_dir().join(format!("gatecert-crl-clock-{}", std::process::id()));
    std::fs::write(&clock, now().to_string()).unwrap();
    let uci = "config gatecert 'main'\n\toption state_dir '@STATE@'\n\toption log 'stderr'\n\
               config ca 'local'\n\tlist allow_suffix 'local'\n\toption crl_validity '1h'\n";
    let clock_env = clock.to_str().unwrap().to_owned();
    let g = Gatecert::start_seeded(
        "recrl",
        Some(uci),
        &|_| {},
        &[
            ("GATECERT_FAKE_NOW_FILE", clock_env.as_str()),
            ("GATECERT_TICK_SECS", "1"),
        ],
    );
    let d = &g.dir;
    let name = "sensor-r.sensors.local";
    let token = g.cli_token("sensor-r", name, "1");
    let (_, csr) = make_csr(d, "r1", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-r", &token, &csr);
    let c1 = issued(&g, "r1", code, &body);
    let out = g.cli(&["leaves", "revoke", "sensor-r"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, text) = g.fetch_crl("first");
    let first =
        gatecert::crypto::CrlInfo::from_der(&std::fs::read(g.path("first.crl.der")).unwrap())
            .unwrap();
    assert!(text.contains(&serial_of(&c1)), "{text}");
    let signed = g.audit().matches("\"event\":\"crl.issue\"").count();
    // Ticks with a quarter of the validity still ahead sign nothing.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(g.audit().matches("\"event\":\"crl.issue\"").count(), signed);
    std::fs::write(&clock, (now() + 50 * 60).to_string()).unwrap();
    let t = Instant::now();
    while g.audit().matches("\"event\":\"crl.issue\"").count() == signed {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no new CRL: {}",
            g.audit()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, text) = g.fetch_crl("second");
    let second =
        gatecert::crypto::CrlInfo::from_der(&std::fs::read(g.path("second.crl.der")).unwrap())
            .unwrap();
    assert!(text.contains(&serial_of(&c1)), "{text}");
    assert!(second.number > first.number, "{second:?} {first:?}");
    assert!(
        second.next_update > first.next_update,
        "{second:?} {first:?}"
    );
    let _ = std::fs::remove_file(&clock);
}

/// `leaves revoke|disable|enable` while `gatecert run` serves is handed to the service over the
/// control socket (it keeps the inventory open: one row's work at any fleet size); with no
/// service (here killed, its socket file left behind) the command does it itself. Both print
/// the same, audit the same, and the CRL lists both.
#[test]
fn leaves_commands_go_through_the_service_and_print_the_same_without_it() {
    let metrics = free_port();
    let crl_file =
        std::env::temp_dir().join(format!("gatecert-crl-via-{}.der", std::process::id()));
    let mut g = Gatecert::start_with("via", Some(&uci(metrics, &crl_file)));
    let d = g.dir.clone();
    let mut certs = Vec::new();
    for dev in ["via-a", "via-b"] {
        let name = format!("{dev}.sensors.local");
        let token = g.cli_token(dev, &name, "1");
        let (_, csr) = make_csr(&d, dev, "ec:P-256", &name, &[&name]);
        let (code, _, body) = g.enroll(dev, &token, &csr);
        certs.push(issued(&g, dev, code, &body));
    }
    let expect = |out: &Output, dev: &str, cert: &Path| {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[0],
            format!("device {dev} revoked (unspecified): 1 certificate(s) revoked")
        );
        assert_eq!(lines[1], format!("  {} (local)", serial_of(cert)));
        assert!(
            lines[2].starts_with("  its bootstrap token is revoked"),
            "{text}"
        );
        assert!(lines[3].starts_with("CRL #"), "{text}");
        assert!(lines[3].contains(" published: "), "{text}");
    };
    let log = || std::fs::read_to_string(common::log_dir("est").join("run-via.log")).unwrap();

    let out = g.cli(&["leaves", "revoke", "via-a"]);
    expect(&out, "via-a", &certs[0]);
    assert!(
        log().contains("leaves revoke via-a over the control socket: exit 0"),
        "{}",
        log()
    );
    // An error comes back the same way, with the exit code.
    let out = g.cli(&["leaves", "enable", "via-b"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gatecert: error: device \"via-b\" is not disabled\n"
    );
    assert!(log().contains("leaves enable via-b over the control socket: exit 2"));
    // The inventory's lock held by another process: the service does not wait past a second;
    // the command does the change itself, once the lock is free.
    let lock = g.state().join("leaves.jnl.lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "3"])
        .spawn()
        .unwrap();
    let held = Instant::now();
    while Command::new("flock")
        .arg("-n")
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(
            held.elapsed() < Duration::from_secs(5),
            "flock never took the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = g.cli(&["leaves", "enable", "via-a"]);
    let waited = held.elapsed();
    let _ = holder.wait();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gatecert: error: device \"via-a\" is not disabled\n"
    );
    assert!(waited >= Duration::from_secs(3), "{waited:?}");
    assert!(
        log().contains("leaves enable via-a over the control socket: busy ("),
        "{}",
        log()
    );
    assert!(!log().contains("leaves enable via-a over the control socket: exit"));

    // No service: the socket file is left behind by SIGKILL, nobody answers on it.
    let _ = g.child.kill();
    let _ = g.child.wait();
    assert!(g.state().join("control.sock").exists());
    let out = g.cli(&["leaves", "revoke", "via-b"]);
    expect(&out, "via-b", &certs[1]);
    assert!(!log().contains("leaves revoke via-b"), "{}", log());
    let out = g.cli(&["leaves", "enable", "via-b"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "gatecert: error: device \"via-b\" is not disabled\n"
    );

    g.assert_audit("leaves.revoke", &["via-a", &serial_of(&certs[0])]);
    g.assert_audit("leaves.revoke", &["via-b", &serial_of(&certs[1])]);
    let crl = g.state().join("crl.der");
    let out = openssl(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        crl.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    for c in &certs {
        assert!(text.contains(&serial_of(c)), "{text}");
    }
    let _ = std::fs::remove_file(&crl_file);
}
