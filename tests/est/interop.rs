//! EST as deployed clients expect it (issue 11), against the real binary with curl, openssl and a
//! Python client: one certificate per enrollment reply, 401 for refused credentials and 403 for
//! a forbidden request, labels, superseded certificates, the challenge round-trip not audited.

use super::*;

/// curl's `--cert`/`--key` re-enrollment of `csr` with the certificate in `cert`.
fn reenroll(g: &Gatecert, op: &str, cert: &Path, key: &Path, csr: &Path) -> (u16, Vec<u8>) {
    let data = format!("@{}", csr.display());
    let (code, _, body) = g.curl(
        op,
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
    (code, body)
}

/// The one certificate of an enrollment answer, written to `<tag>.pem`; fails on any other count.
fn single_cert(g: &Gatecert, tag: &str, body: &[u8]) -> PathBuf {
    let pem = p7_to_pem(&g.dir, tag, body);
    assert_eq!(
        cert_count(&pem),
        1,
        "{tag}: not exactly one certificate:\n{pem}"
    );
    let path = g.path(&format!("{tag}.pem"));
    std::fs::write(&path, pem).unwrap();
    path
}

fn x509_text(cert: &Path) -> String {
    let out = openssl(&["x509", "-noout", "-text", "-in", cert.to_str().unwrap()]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn lifetime_of(cert: &Path) -> i64 {
    let info =
        gatecert::crypto::CertInfo::from_pem(&std::fs::read_to_string(cert).unwrap()).unwrap();
    info.not_after - info.not_before
}

/// Only the device's current certificate re-enrolls; the one it replaced may still re-enroll
/// for a few minutes (a lost reply); anything older gets 403 with the reason, audited.
#[test]
fn superseded_certificate_gets_403() {
    let g = Gatecert::start("superseded");
    let d = &g.dir;
    let name = "sensor-s.sensors.local";
    let token = g.token("sensor-s", &[name]);
    let (k1, csr) = make_csr(d, "c1", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-s", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let c1 = single_cert(&g, "c1", &body);

    let (k2, csr) = make_csr(d, "c2", "ec:P-256", name, &[name]);
    let (code, body) = reenroll(&g, "simplereenroll", &c1, &k1, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let c2 = single_cert(&g, "c2", &body);

    let (k3, csr) = make_csr(d, "c3", "ec:P-256", name, &[name]);
    let (code, body) = reenroll(&g, "simplereenroll", &c2, &k2, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let c3 = single_cert(&g, "c3", &body);

    // c2 was just replaced by c3: inside the grace window (the reply could have been lost).
    let (_, csr) = make_csr(d, "c4", "ec:P-256", name, &[name]);
    let (code, body) = reenroll(&g, "simplereenroll", &c2, &k2, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    single_cert(&g, "c4", &body);

    // c1 (replaced twice) and c3 (replaced by c2's retry) are superseded.
    for (cert, key) in [(&c1, &k1), (&c3, &k3)] {
        let (_, csr) = make_csr(d, "late", "ec:P-256", name, &[name]);
        let (code, body) = reenroll(&g, "simplereenroll", cert, key, &csr);
        let text = String::from_utf8_lossy(&body);
        assert_eq!(code, 403, "{text}");
        assert!(text.contains("not the current certificate"), "{text}");
    }
    g.assert_audit(
        "est.deny",
        &[
            "simplereenroll",
            "sensor-s",
            "not the current certificate",
            "403",
        ],
    );
    // One device, one inventory entry, under its token's device name.
    let inv = gatecert::leaves::Inventory::open(&g.state().join("leaves.jnl")).unwrap();
    let devices: Vec<String> = inv.list().map(|l| l.device).collect();
    assert_eq!(devices, ["sensor-s"]);
}

/// curl --anyauth does the RFC 7235 round-trip (no credentials, 401, then Basic): the
/// enrollment is audited as an issuance and the challenge not as a denial.
#[test]
fn credential_less_challenge_is_not_audited() {
    let g = Gatecert::start("challenge");
    let name = "sensor-c.sensors.local";
    let token = g.token("sensor-c", &[name]);
    let (_, csr) = make_csr(&g.dir, "c", "ec:P-256", name, &[name]);
    let user = format!("sensor-c:{token}");
    let data = format!("@{}", csr.display());
    let (code, headers, body) = g.curl(
        "simpleenroll",
        &[
            "--anyauth",
            "-u",
            &user,
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.contains("HTTP/1.1 401"),
        "no challenge round-trip: {headers}"
    );
    single_cert(&g, "c", &body);
    g.assert_audit("est.issue", &["sensor-c", "simpleenroll"]);
    let log = g.audit();
    assert!(
        !log.contains("est.deny"),
        "the challenge was audited as a denial:\n{log}"
    );
}

const LABELS_UCI: &str = "\
config certificate 'gateway'
\tlist domain 'gateway.local'
config ca 'local'
\tlist allow_suffix 'local'
\toption server_auth '1'
config label 'cameras'
\toption lifetime '2h'
\tlist allow_suffix 'cameras.local'
config label 'meters'
\toption server_auth '0'
";

/// A label path serves cacerts and enrolls under that label's policy (lifetime, allowed
/// suffixes, serverAuth); an unknown label is 404 with the reason.
#[test]
fn label_path_serves_cacerts_and_enrolls_under_its_policy() {
    let g = Gatecert::start_with("labels", Some(LABELS_UCI));
    let d = &g.dir;
    let ct = "Content-Type: application/pkcs10";

    let (code, _, plain) = g.curl("cacerts", &[]);
    assert_eq!(code, 200);
    let (code, _, labelled) = g.curl("cameras/cacerts", &[]);
    assert_eq!(code, 200);
    assert_eq!(
        p7_to_pem(d, "ca-plain", &plain),
        p7_to_pem(d, "ca-cam", &labelled)
    );
    let (code, _, body) = g.curl("cameras/csrattrs", &[]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));

    let (code, _, body) = g.curl("nope/cacerts", &[]);
    assert_eq!(code, 404);
    assert!(String::from_utf8_lossy(&body).contains("unknown EST label 'nope'"));

    // cameras: 2 h, serverAuth (inherited from the ca section), only *.cameras.local.
    let cam = "cam1.cameras.local";
    let token = g.token("cam1", &[cam]);
    let (key, csr) = make_csr(d, "cam1", "ec:P-256", cam, &[cam]);
    let user = format!("cam1:{token}");
    let data = format!("@{}", csr.display());
    let args = ["-u", &user, "--data-binary", &data, "-H", ct];
    let (code, _, body) = g.curl("cameras/simpleenroll", &args);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let cert = single_cert(&g, "cam1", &body);
    assert_eq!(lifetime_of(&cert), 2 * 3600 + 300, "2 h, backdated 5 min");
    assert!(x509_text(&cert).contains("TLS Web Server Authentication"));
    g.assert_audit("est.issue", &["cam1", cam]);

    // Re-enrollment under the label keeps its policy.
    let (_, csr) = make_csr(d, "cam1b", "ec:P-256", cam, &[cam]);
    let (code, body) = reenroll(&g, "cameras/simplereenroll", &cert, &key, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        lifetime_of(&single_cert(&g, "cam1b", &body)),
        2 * 3600 + 300
    );

    // A name the token grants and the CA allows, but the label does not: 403, audited.
    let other = "meter1.sensors.local";
    let token = g.token("meter1", &[other]);
    let (_, csr) = make_csr(d, "m1", "ec:P-256", other, &[other]);
    let user = format!("meter1:{token}");
    let data = format!("@{}", csr.display());
    let (code, _, body) = g.curl(
        "cameras/simpleenroll",
        &["-u", &user, "--data-binary", &data, "-H", ct],
    );
    let text = String::from_utf8_lossy(&body);
    assert_eq!(code, 403, "{text}");
    assert!(
        text.contains("label 'cameras'") && text.contains("allow_suffix"),
        "{text}"
    );
    g.assert_audit("est.deny", &["meter1", other, "label 'cameras'"]);

    // meters: the CA's lifetime (24 h), no serverAuth; the token was not burnt by the 403.
    let (code, _, body) = g.curl(
        "meters/simpleenroll",
        &["-u", &user, "--data-binary", &data, "-H", ct],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let cert = single_cert(&g, "m1", &body);
    assert_eq!(lifetime_of(&cert), 24 * 3600 + 300);
    let text = x509_text(&cert);
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(!text.contains("TLS Web Server Authentication"), "{text}");

    // The plain path: the ca section's policy, serverAuth on.
    let plain = "plain.sensors.local";
    let token = g.token("plain", &[plain]);
    let (_, csr) = make_csr(d, "p", "ec:P-256", plain, &[plain]);
    let (code, _, body) = g.enroll("plain", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let cert = single_cert(&g, "p", &body);
    assert!(x509_text(&cert).contains("TLS Web Server Authentication"));
}

/// A Python client (ssl + http.client + cryptography) that shares no code with gatecert enrolls,
/// re-enrolls and calls serverkeygen the way client libraries do: the challenge round-trip, the
/// first certificate of the reply as the issued one, more than one refused.
#[test]
fn python_client_enrolls_reenrolls_and_serverkeygen() {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import cryptography.hazmat.primitives.serialization.pkcs7",
        ])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 with the cryptography package is missing (apt-get install python3-cryptography)"
        );
        eprintln!("skipped: python3 with the cryptography package is missing");
        return;
    }
    let g = Gatecert::start("python");
    let t1 = g.token("py1", &["py1.sensors.local"]);
    let t2 = g.token("py2", &["py2.sensors.local"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/est_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(g.port.to_string())
        .arg(g.path("root.pem"))
        .arg(&g.dir)
        .args(["py1", &t1, "py2", &t2])
        .output()
        .unwrap();
    common::keep_output("est", "python-client", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("simpleenroll: serial") && text.contains("after 1 challenge"),
        "{text}"
    );
    assert!(text.contains("cacerts: 2 certificates"), "{text}");
    // What the Python client took as "the" certificate verifies against the chain from cacerts.
    for leaf in ["py-leaf.pem", "py-reenrolled.pem", "py-keygen.pem"] {
        let v = openssl(&[
            "verify",
            "-CAfile",
            g.path("root.pem").to_str().unwrap(),
            "-untrusted",
            g.path("py-cacerts.pem").to_str().unwrap(),
            g.path(leaf).to_str().unwrap(),
        ]);
        assert!(
            String::from_utf8_lossy(&v.stdout).contains(": OK"),
            "{leaf}"
        );
    }
    g.assert_audit("est.issue", &["py1", "simplereenroll"]);
    g.assert_audit("est.issue", &["py2", "serverkeygen"]);
    assert!(!g.audit().contains("est.deny"), "{}", g.audit());
}
