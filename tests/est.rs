//! EST (RFC 7030) against the real `gatecert run` binary on 127.0.0.1, with curl and openssl as
//! the clients, as EST is tested by hand.
//!
//! The service runs on the built-in standalone defaults (gateway `gateway.local`, leaves under
//! `.local`) with `--state-dir` and `--listen` overrides, or on a UCI config (labels). The
//! issue-11 interop cases (one certificate per reply, 401 vs 403, labels, superseded
//! certificates, the Python client) are in tests/est/interop.rs.

mod common;
#[path = "est/interop.rs"]
mod interop;
#[path = "est/lifecycle.rs"]
mod lifecycle;
#[path = "est/rotate.rs"]
mod rotate;

// HTTP-layer behaviour at the EST listener (chunked bodies, HEAD, Date, ALPN, Content-Type,
// the connection cap), with this file's harness.
#[path = "est/http.rs"]
mod http;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gatecert::token::Tokens;

const EST: &str = "/.well-known/est";

use common::now;

use common::free_port;

/// A `gatecert run` child, killed and reaped on drop, with its own temp state dir.
struct Gatecert {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Gatecert {
    fn start(tag: &str) -> Gatecert {
        Gatecert::start_with(tag, None)
    }

    /// With `uci` as the config file (else none: the built-in defaults).
    fn start_with(tag: &str, uci: Option<&str>) -> Gatecert {
        Gatecert::start_seeded(tag, uci, &|_| {}, &[])
    }

    /// Like [`Gatecert::start_with`], with `@STATE@` in `uci` replaced by the state directory,
    /// `seed` called on that (empty) directory before the service starts, and `env` added to
    /// the service's environment.
    fn start_seeded(
        tag: &str,
        uci: Option<&str>,
        seed: &dyn Fn(&Path),
        env: &[(&str, &str)],
    ) -> Gatecert {
        let dir = std::env::temp_dir().join(format!("gatecert-est-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        seed(&dir.join("state"));
        let port = free_port();
        let conf = dir.join("gatecert.uci");
        // An empty file: the built-in defaults.
        let state = dir.join("state");
        let uci = uci
            .unwrap_or("")
            .replace("@STATE@", state.to_str().unwrap());
        std::fs::write(&conf, uci).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .stdout(common::log_file("est", &format!("run-{tag}")))
            .stderr(common::log_file("est", &format!("run-{tag}")))
            .spawn()
            .unwrap();
        let g = Gatecert { child, dir, port };
        let t = Instant::now();
        while !common::listening(("127.0.0.1", port)) {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "gatecert run did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::copy(g.state().join("ca/root.pem"), g.path("root.pem")).unwrap();
        g
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn url(&self, op: &str) -> String {
        format!("https://gateway.local:{}{EST}/{op}", self.port)
    }

    fn token(&self, device: &str, names: &[&str]) -> String {
        self.token_at(device, names, 3600, now())
    }

    fn token_at(&self, device: &str, names: &[&str], ttl: u64, at: i64) -> String {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let token = Tokens::open(&self.state().join("tokens.jnl"))
            .unwrap()
            .add(device, &names, ttl, 1, at)
            .unwrap();
        common::keep_secret(&token);
        token
    }

    /// curl with the local root as trust. Returns (status, headers, body).
    fn curl(&self, op: &str, args: &[&str]) -> (u16, String, Vec<u8>) {
        let body = self.path("curl.body");
        let headers = self.path("curl.headers");
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
            .args(args)
            .arg(self.url(op))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (
            code,
            std::fs::read_to_string(&headers).unwrap_or_default(),
            std::fs::read(&body).unwrap_or_default(),
        )
    }

    fn enroll(&self, device: &str, token: &str, csr_b64: &Path) -> (u16, String, Vec<u8>) {
        let user = format!("{device}:{token}");
        let data = format!("@{}", csr_b64.display());
        self.curl(
            "simpleenroll",
            &[
                "-u",
                &user,
                "--data-binary",
                &data,
                "-H",
                "Content-Type: application/pkcs10",
            ],
        )
    }

    /// Both streams: `audit.log` (issuances) and `audit-deny.log` (denials).
    fn audit(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.state().join(f)).unwrap_or_default();
        read("audit.log") + &read("audit-deny.log")
    }

    /// Asserts the audit log has a line with `event` mentioning every one of `needles`, and that
    /// no token ever reached it.
    fn assert_audit(&self, event: &str, needles: &[&str]) {
        let log = self.audit();
        let hit = log.lines().any(|l| {
            l.contains(&format!("\"event\":\"{event}\"")) && needles.iter().all(|n| l.contains(n))
        });
        assert!(hit, "no {event} audit line with {needles:?} in:\n{log}");
    }
}

impl Drop for Gatecert {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        common::keep_secrets(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl(args: &[&str]) -> Output {
    run(Command::new("openssl").args(args))
}

/// A key and a base64 CSR made by openssl. `key_spec` like `ec:P-256` or `rsa:1024`.
fn make_csr(dir: &Path, tag: &str, key_spec: &str, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{tag}.key"));
    let der = dir.join(format!("{tag}.csr.der"));
    let b64 = dir.join(format!("{tag}.csr.b64"));
    let (alg, param) = key_spec.split_once(':').unwrap();
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-new", "-nodes", "-newkey", alg, "-pkeyopt"]);
    if alg == "ec" {
        cmd.arg(format!("ec_paramgen_curve:{param}"));
    } else {
        cmd.arg(format!("rsa_keygen_bits:{param}"));
    }
    cmd.arg("-keyout")
        .arg(&key)
        .args(["-subj", &format!("/CN={cn}")]);
    if !sans.is_empty() {
        let list: Vec<String> = sans.iter().map(|s| format!("DNS:{s}")).collect();
        cmd.args(["-addext", &format!("subjectAltName={}", list.join(","))]);
    }
    cmd.args(["-outform", "DER", "-out"]).arg(&der);
    run(&mut cmd);
    let der_bytes = std::fs::read(&der).unwrap();
    std::fs::write(&b64, b64_encode(&der_bytes)).unwrap();
    (key, b64)
}

fn b64_encode(data: &[u8]) -> String {
    gatecert::crypto::b64(data)
}

/// Writes a certs-only PKCS#7 answer (base64) to PEM certificates via `openssl pkcs7`.
fn p7_to_pem(dir: &Path, tag: &str, body: &[u8]) -> String {
    let der = gatecert::crypto::b64_decode(body).expect("answer is base64");
    let p7 = dir.join(format!("{tag}.p7"));
    std::fs::write(&p7, der).unwrap();
    let out = openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-print_certs",
        "-in",
        p7.to_str().unwrap(),
    ]);
    // The SET is DER-sorted: put the leaf (not a CA) first, as a chain file has it, keeping
    // openssl's subject/issuer lines with each certificate.
    let text = String::from_utf8(out.stdout).unwrap();
    let is_ca = |block: &&str| {
        let der = gatecert::crypto::certs_from_pem(block).unwrap();
        gatecert::crypto::CertInfo::from_der(der[0].as_ref())
            .unwrap()
            .is_ca
    };
    let blocks: Vec<&str> = text
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .collect();
    let (cas, leaves): (Vec<&str>, Vec<&str>) = blocks.into_iter().partition(is_ca);
    leaves.into_iter().chain(cas).collect()
}

/// How many PEM certificates `pem` holds (`openssl pkcs7 -print_certs` output).
fn cert_count(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

/// The leaf of `pem` (the certificate that is not a CA), as PEM: a certs-only answer is a
/// DER-sorted SET, not a chain in order.
fn first_cert(pem: &str) -> String {
    let certs = gatecert::crypto::certs_from_pem(pem).unwrap();
    let leaf = certs
        .iter()
        .find(|c| {
            !gatecert::crypto::CertInfo::from_der(c.as_ref())
                .unwrap()
                .is_ca
        })
        .expect("a leaf in the answer");
    gatecert::crypto::certs_to_pem(std::iter::once(leaf.as_ref()))
}

#[test]
fn enroll_verify_mutual_tls_reenroll_and_serverkeygen() {
    let g = Gatecert::start("happy");
    let d = &g.dir;

    // cacerts: a certs-only PKCS#7 with the intermediate and the root.
    let (code, headers, body) = g.curl("cacerts", &[]);
    assert_eq!(code, 200);
    assert!(headers
        .to_ascii_lowercase()
        .contains("content-type: application/pkcs7-mime"));
    let cacerts = p7_to_pem(d, "cacerts", &body);
    assert_eq!(cacerts.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(
        cacerts.contains("Issuing CA") && cacerts.contains("Root CA"),
        "{cacerts}"
    );
    std::fs::write(g.path("cacerts.pem"), &cacerts).unwrap();

    // csrattrs: DER that openssl can parse, naming P-256.
    let (code, _, body) = g.curl("csrattrs", &[]);
    assert_eq!(code, 200);
    std::fs::write(
        g.path("attrs.der"),
        gatecert::crypto::b64_decode(&body).unwrap(),
    )
    .unwrap();
    let asn1 = openssl(&[
        "asn1parse",
        "-inform",
        "DER",
        "-in",
        g.path("attrs.der").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&asn1.stdout).contains("prime256v1"));

    // simpleenroll with a bootstrap token.
    let name = "sensor-1.sensors.local";
    let token = g.token("sensor-1", &[name]);
    let (key, csr) = make_csr(d, "s1", "ec:P-256", name, &[name]);
    let (code, headers, body) = g.enroll("sensor-1", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains("smime-type=certs-only"));
    let chain = p7_to_pem(d, "s1", &body);
    assert_eq!(
        cert_count(&chain),
        1,
        "only the issued certificate: {chain}"
    );
    let leaf = first_cert(&chain);
    std::fs::write(g.path("leaf.pem"), &leaf).unwrap();
    std::fs::write(g.path("chain.pem"), &chain).unwrap();
    let v = openssl(&[
        "verify",
        "-CAfile",
        g.path("root.pem").to_str().unwrap(),
        "-untrusted",
        g.path("cacerts.pem").to_str().unwrap(),
        g.path("leaf.pem").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&v.stdout).contains(": OK"));
    g.assert_audit(
        "est.issue",
        &["sensor-1", name, "simpleenroll", "127.0.0.1"],
    );
    assert!(
        !g.audit().contains(&token),
        "the token reached the audit log"
    );
    let inv = gatecert::leaves::Inventory::open(&g.state().join("leaves.jnl")).unwrap();
    let found = inv
        .list()
        .into_iter()
        .find(|l| l.names.iter().any(|n| n == name));
    assert!(
        found.is_some_and(|l| l.source == gatecert::leaves::Source::Local),
        "{:?}",
        inv.list().collect::<Vec<_>>()
    );

    // Mutual TLS with the issued leaf: openssl s_server (gateway cert) requiring a client
    // certificate, openssl s_client presenting the leaf.
    mutual_tls(&g, &key);

    // simplereenroll with the leaf as the TLS client certificate; a new key, same names.
    let (_, csr2) = make_csr(d, "s1b", "ec:P-256", name, &[name]);
    let data = format!("@{}", csr2.display());
    let (code, _, body) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            g.path("chain.pem").to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let renewed = p7_to_pem(d, "s1b", &body);
    assert_eq!(
        cert_count(&renewed),
        1,
        "only the issued certificate: {renewed}"
    );
    let renewed = first_cert(&renewed);
    assert_ne!(renewed, leaf);
    g.assert_audit("est.issue", &["simplereenroll", name]);

    // serverkeygen: the key and the certificate, multipart.
    let name2 = "sensor-2.sensors.local";
    let token2 = g.token("sensor-2", &[name2]);
    let (_, csr3) = make_csr(d, "s2", "ec:P-256", name2, &[name2]);
    let user = format!("sensor-2:{token2}");
    let data = format!("@{}", csr3.display());
    let (code, headers, body) = g.curl(
        "serverkeygen",
        &[
            "-u",
            &user,
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(headers.contains("multipart/mixed; boundary="));
    let text = String::from_utf8(body).unwrap();
    let parts: Vec<&str> = text.split("--gatecert-est-boundary").collect();
    assert_eq!(parts.len(), 4, "{text}");
    assert!(parts[1].contains("application/pkcs8"));
    assert!(parts[2].contains("application/pkcs7-mime"));
    let key_b64 = parts[1].split("\r\n\r\n").nth(1).unwrap();
    std::fs::write(
        g.path("kg.key.der"),
        gatecert::crypto::b64_decode(key_b64.as_bytes()).unwrap(),
    )
    .unwrap();
    let kg = p7_to_pem(
        d,
        "kg",
        parts[2].split("\r\n\r\n").nth(1).unwrap().as_bytes(),
    );
    assert_eq!(cert_count(&kg), 1, "only the issued certificate: {kg}");
    let cert_pem = first_cert(&kg);
    std::fs::write(g.path("kg.pem"), cert_pem).unwrap();
    // The key belongs to the certificate.
    let pk = openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        g.path("kg.key.der").to_str().unwrap(),
        "-pubout",
    ]);
    let cpk = openssl(&[
        "x509",
        "-in",
        g.path("kg.pem").to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    assert_eq!(pk.stdout, cpk.stdout);
}

fn mutual_tls(g: &Gatecert, leaf_key: &Path) {
    let gw = g.state().join("certs/gateway/live");
    let port = free_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &port.to_string(),
            "-Verify",
            "2",
            "-verify_return_error",
        ])
        .arg("-cert")
        .arg(gw.join("cert.pem"))
        .arg("-cert_chain")
        .arg(gw.join("chain.pem"))
        .arg("-key")
        .arg(gw.join("key.pem"))
        .arg("-CAfile")
        .arg(g.path("root.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !common::listening(("127.0.0.1", port)) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "gateway.local",
        ])
        .args(["-verify_return_error", "-verify_hostname", "gateway.local"])
        .arg("-CAfile")
        .arg(g.path("root.pem"))
        .arg("-cert")
        .arg(g.path("leaf.pem"))
        .arg("-cert_chain")
        .arg(g.path("cacerts.pem"))
        .arg("-key")
        .arg(leaf_key)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = server.kill();
    let mut out = String::new();
    let _ = server.stdout.take().unwrap().read_to_string(&mut out);
    let mut err = String::new();
    let _ = server.stderr.take().unwrap().read_to_string(&mut err);
    let _ = server.wait();
    let cout = String::from_utf8_lossy(&client.stdout);
    assert!(
        cout.contains("Verify return code: 0 (ok)"),
        "client: {cout}\nserver: {out}{err}"
    );
    assert!(
        out.contains("sensor-1.sensors.local"),
        "server saw no client cert: {out}{err}"
    );
}

/// Every refusal: the status code the client sees AND the audit line the operator sees.
#[test]
fn denial_matrix() {
    let g = Gatecert::start("deny");
    let d = &g.dir;
    let ct = "Content-Type: application/pkcs10";

    // Reused token: the first enrollment works, the second is refused.
    let a = "sensor-a.sensors.local";
    let token = g.token("sensor-a", &[a]);
    let (key_a, csr_a) = make_csr(d, "a", "ec:P-256", a, &[a]);
    let (code, _, body) = g.enroll("sensor-a", &token, &csr_a);
    assert_eq!(code, 200);
    let chain_a = p7_to_pem(d, "a", &body);
    std::fs::write(g.path("a.chain.pem"), &chain_a).unwrap();
    let (code, headers, _) = g.enroll("sensor-a", &token, &csr_a);
    assert_refused_credentials(code, &headers);
    g.assert_audit("est.deny", &["sensor-a", "token already used", "401"]);

    // Expired token: made two hours ago, good for one.
    let e = "sensor-e.sensors.local";
    let token = g.token_at("sensor-e", &[e], 3600, now() - 7200);
    let (_, csr) = make_csr(d, "e", "ec:P-256", e, &[e]);
    let (code, headers, _) = g.enroll("sensor-e", &token, &csr);
    assert_refused_credentials(code, &headers);
    g.assert_audit("est.deny", &["sensor-e", "token expired", "401"]);

    // Revoked token.
    let r = "sensor-r.sensors.local";
    let token = g.token("sensor-r", &[r]);
    assert!(Tokens::open(&g.state().join("tokens.jnl"))
        .unwrap()
        .revoke("sensor-r")
        .unwrap());
    let (_, csr) = make_csr(d, "r", "ec:P-256", r, &[r]);
    let (code, headers, _) = g.enroll("sensor-r", &token, &csr);
    assert_refused_credentials(code, &headers);
    g.assert_audit("est.deny", &["sensor-r", "token revoked", "401"]);

    // Wrong device: sensor-w1's token presented as sensor-w2.
    let w1 = "sensor-w1.sensors.local";
    let token_w1 = g.token("sensor-w1", &[w1]);
    let _ = g.token("sensor-w2", &["sensor-w2.sensors.local"]);
    let (_, csr) = make_csr(d, "w", "ec:P-256", w1, &[w1]);
    let (code, headers, _) = g.enroll("sensor-w2", &token_w1, &csr);
    assert_refused_credentials(code, &headers);
    g.assert_audit("est.deny", &["sensor-w2", "wrong token", "401"]);

    // A device with no token at all.
    let (code, headers, _) = g.enroll("sensor-nobody", &token_w1, &csr);
    assert_refused_credentials(code, &headers);
    g.assert_audit("est.deny", &["sensor-nobody", "401"]);

    // A name the token does not grant.
    let token = g.token("sensor-n", &["sensor-n.sensors.local"]);
    let (_, csr) = make_csr(
        d,
        "n",
        "ec:P-256",
        "other.sensors.local",
        &["other.sensors.local"],
    );
    let (code, headers, _) = g.enroll("sensor-n", &token, &csr);
    assert_eq!(
        code, 403,
        "a name outside the grant is forbidden, not unauthenticated"
    );
    assert!(
        !headers.to_ascii_lowercase().contains("www-authenticate"),
        "{headers}"
    );
    g.assert_audit(
        "est.deny",
        &["sensor-n", "other.sensors.local", "not granted"],
    );

    // A name the token grants but the CA's constraints do not allow.
    let token = g.token("sensor-x", &["evil.example.com"]);
    let (_, csr) = make_csr(
        d,
        "x",
        "ec:P-256",
        "evil.example.com",
        &["evil.example.com"],
    );
    assert_eq!(g.enroll("sensor-x", &token, &csr).0, 403);
    g.assert_audit("est.deny", &["sensor-x", "evil.example.com", "policy"]);

    // A CSR whose signature does not verify (last byte of the signature flipped).
    let b = "sensor-b.sensors.local";
    let token = g.token("sensor-b", &[b]);
    let (_, _) = make_csr(d, "b", "ec:P-256", b, &[b]);
    let mut der = std::fs::read(g.path("b.csr.der")).unwrap();
    *der.last_mut().unwrap() ^= 0x01;
    std::fs::write(g.path("b.bad.b64"), b64_encode(&der)).unwrap();
    let (code, _, body) = g.enroll("sensor-b", &token, &g.path("b.bad.b64"));
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    g.assert_audit("est.deny", &["sensor-b", "bad CSR", "400"]);

    // An RSA-1024 key.
    let (_, csr) = make_csr(d, "rsa", "rsa:1024", b, &[b]);
    let (code, _, body) = g.enroll("sensor-b", &token, &csr);
    assert_eq!(code, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("1024"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    g.assert_audit("est.deny", &["sensor-b", "1024"]);

    // Re-enrollment with a certificate from a foreign CA.
    let fkey = g.path("foreign.key");
    let fcert = g.path("foreign.pem");
    run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-subj",
            &format!("/CN={a}"),
            "-addext",
            &format!("subjectAltName=DNS:{a}"),
        ])
        .args(["-days", "1", "-keyout"])
        .arg(&fkey)
        .arg("-out")
        .arg(&fcert));
    let (_, csr) = make_csr(d, "f", "ec:P-256", a, &[a]);
    let data = format!("@{}", csr.display());
    let (code, _, _) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            fcert.to_str().unwrap(),
            "--key",
            fkey.to_str().unwrap(),
            "--data-binary",
            &data,
            "-H",
            ct,
        ],
    );
    assert_eq!(code, 403);
    g.assert_audit("est.deny", &["simplereenroll", "not issued by this CA"]);

    // Re-enrollment asking for different names than the current certificate.
    let (_, csr) = make_csr(
        d,
        "a2",
        "ec:P-256",
        "sensor-z.sensors.local",
        &["sensor-z.sensors.local"],
    );
    let data = format!("@{}", csr.display());
    let (code, _, _) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            g.path("a.chain.pem").to_str().unwrap(),
            "--key",
            key_a.to_str().unwrap(),
            "--data-binary",
            &data,
            "-H",
            ct,
        ],
    );
    assert_eq!(code, 403);
    g.assert_audit(
        "est.deny",
        &["simplereenroll", "sensor-z.sensors.local", "differ"],
    );

    // Re-enrollment without a client certificate.
    let (code, _, _) = g.curl("simplereenroll", &["--data-binary", &data, "-H", ct]);
    assert_eq!(code, 403);
    g.assert_audit(
        "est.deny",
        &["simplereenroll", "needs a TLS client certificate"],
    );

    // No credentials: 401 with the challenge, which is not a denial (not audited).
    let (_, csr) = make_csr(d, "u", "ec:P-256", a, &[a]);
    let data = format!("@{}", csr.display());
    let (code, headers, _) = g.curl("simpleenroll", &["--data-binary", &data, "-H", ct]);
    assert_refused_credentials(code, &headers);
    assert!(!g.audit().contains("no credentials"), "{}", g.audit());

    // Malformed base64.
    let token = g.token("sensor-m", &["sensor-m.sensors.local"]);
    let user = format!("sensor-m:{token}");
    let (code, _, _) = g.curl(
        "simpleenroll",
        &["-u", &user, "--data-binary", "!!not*base64!!", "-H", ct],
    );
    assert_eq!(code, 400);
    g.assert_audit("est.deny", &["sensor-m", "not base64"]);

    // An oversized body, refused from Content-Length before it is read.
    std::fs::write(g.path("big"), "A".repeat(20_000)).unwrap();
    let data = format!("@{}", g.path("big").display());
    let (code, _, _) = g.curl(
        "simpleenroll",
        &["-u", &user, "--data-binary", &data, "-H", ct],
    );
    assert_eq!(code, 413);
    g.assert_audit("est.deny", &["413", "body larger than"]);

    // The token never reached the log, and the hash chain verifies.
    assert!(!g.audit().contains(&token));
    let report = gatecert::audit::Audit::verify(&g.state().join("audit.log")).unwrap();
    assert!(report.ok(), "{report:?}");
}

/// 401 with `WWW-Authenticate: Basic realm="gatecert"` (RFC 7235 §3.1, RFC 7030 §3.2.3).
fn assert_refused_credentials(code: u16, headers: &str) {
    assert_eq!(code, 401, "{headers}");
    assert!(
        headers.contains("WWW-Authenticate: Basic realm=\"gatecert\""),
        "{headers}"
    );
}

/// Issue 10 item 5a: 400 unauthenticated requests with a 5.5 KB user name and a CSR of 200
/// SANs (the largest that pass the default header and body limits) never push the issuance
/// history out of `audit.log`: denials go to their own stream, cut to size and at most
/// `DENY_LINES_PER_WINDOW` a minute; both chains verify.
#[test]
fn a_denial_flood_leaves_the_issuance_history_intact() {
    let g = Gatecert::start("flood");
    let name = "sensor-h.sensors.local";
    let token = g.token("sensor-h", &[name]);
    let (_, csr) = make_csr(&g.dir, "h", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("sensor-h", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    g.assert_audit("est.issue", &["sensor-h"]);
    let history = std::fs::read_to_string(g.state().join("audit.log")).unwrap();

    let sans: Vec<String> = (0..200).map(|i| format!("f{i:03}.sensors.local")).collect();
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    let (_, big) = make_csr(&g.dir, "flood", "ec:P-256", "f000.sensors.local", &sans);
    let big = std::fs::read(big).unwrap();
    let user = "u".repeat(5500);
    let auth = format!("Basic {}", b64_encode(format!("{user}:wrong").as_bytes()));
    let root = std::fs::read_to_string(g.path("root.pem")).unwrap();
    let root = gatecert::crypto::certs_from_pem(&root).unwrap();
    let agent = gatecert::daemon::est_client(root[0].as_ref(), Duration::from_secs(10));
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..400 {
        let status = agent
            .post(&g.url("simpleenroll"))
            .header("Authorization", &auth)
            .header("Content-Type", "application/pkcs10")
            .send(&big[..])
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&401), Some(&400), "{statuses:?}");

    let now_log = std::fs::read_to_string(g.state().join("audit.log")).unwrap();
    assert!(
        now_log.starts_with(&history),
        "the issuance history changed"
    );
    assert!(
        !g.state().join("audit.log.1").exists(),
        "audit.log was rotated by denials"
    );
    let deny = std::fs::read_to_string(g.state().join("audit-deny.log")).unwrap();
    assert!(
        deny.len() < 64 * 1024,
        "denial stream grew {} bytes",
        deny.len()
    );
    assert!(deny.contains("(cut, 5500 bytes)"), "user name not cut");
    assert!(!deny.contains("wrong"), "the token reached the log");
    for f in ["audit.log", "audit-deny.log"] {
        let r = gatecert::audit::Audit::verify(&g.state().join(f)).unwrap();
        assert!(r.ok(), "{f}: {r:?}");
    }
}

/// Issue 10 item 5c: when the audit log cannot be written, enrollment fails closed: 503, no
/// certificate in the answer, nothing in the inventory, the token not burnt.
#[test]
fn an_unwritable_audit_log_fails_enrollment_closed() {
    let g = Gatecert::start("auditdown");
    let name = "sensor-u.sensors.local";
    let token = g.token("sensor-u", &[name]);
    let (_, csr) = make_csr(&g.dir, "u", "ec:P-256", name, &[name]);
    let log = g.state().join("audit.log");
    let saved = g.state().join("audit.log.saved");
    // A directory where the log should be: unwritable even for root. The log itself is kept
    // aside and put back, so its chain stays whole (a removed log is tampering, not an outage).
    if log.exists() {
        std::fs::rename(&log, &saved).unwrap();
    }
    std::fs::create_dir(&log).unwrap();
    let (code, _, body) = g.enroll("sensor-u", &token, &csr);
    let text = String::from_utf8_lossy(&body);
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("audit log"), "{text}");
    let inv = gatecert::leaves::Inventory::open(&gatecert::leaves::path_in(&g.state())).unwrap();
    assert!(
        inv.by_device("sensor-u").is_none() && inv.is_empty(),
        "an unaudited leaf was recorded"
    );
    drop(inv);
    std::fs::remove_dir(&log).unwrap();
    if saved.exists() {
        std::fs::rename(&saved, &log).unwrap();
    }
    let (code, _, body) = g.enroll("sensor-u", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    g.assert_audit("est.issue", &["sensor-u"]);
}

/// 200 idle TCP connections (three times `max_connections`) while curl enrolls.
#[test]
fn idle_connections_do_not_stall_enrollment() {
    let g = Gatecert::start("slow");
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", g.port)).ok())
        .collect();
    assert!(idle.len() >= 150, "only {} connections opened", idle.len());
    // Some of them half a request, byte by byte (slowloris).
    for mut s in idle.iter().take(20) {
        let _ = s.write_all(b"POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: x\r\n");
    }
    let name = "sensor-s.sensors.local";
    let token = g.token("sensor-s", &[name]);
    let (_, csr) = make_csr(&g.dir, "s", "ec:P-256", name, &[name]);
    let t = Instant::now();
    let (code, _, body) = g.enroll("sensor-s", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    drop(idle);
}

/// SIGHUP reloads and keeps serving; SIGTERM stops with exit 0.
#[test]
fn sighup_reloads_and_sigterm_exits_zero() {
    let mut g = Gatecert::start("signals");
    let pid = g.child.id().to_string();
    run(Command::new("kill").args(["-HUP", &pid]));
    std::thread::sleep(Duration::from_millis(200));
    let (code, _, _) = g.curl("cacerts", &[]);
    assert_eq!(code, 200);
    run(Command::new("kill").args(["-TERM", &pid]));
    let t = Instant::now();
    let status = loop {
        if let Some(s) = g.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

/// README's first command: quick, exit 0, and a table naming the enrolled leaf.
#[test]
fn demo_enrolls_a_sensor_quickly() {
    let t = Instant::now();
    let out = run(Command::new(env!("CARGO_BIN_EXE_gatecert")).arg("demo"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "demo took {:?}",
        t.elapsed()
    );
    for want in [
        "root CA",
        "gateway cert",
        "EST listener",
        "sensor-1.sensors.local",
        "local",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
}

/// A held `tokens.jnl.lock` (a stuck `gatecert token add`) does not stall the service: an
/// enrollment that needs the lock gets 503 + Retry-After within the lock's bounded wait, other
/// clients' `cacerts` are answered meanwhile, and the claim of the failed enrollment is released,
/// so the same one-use token works once the lock is free (and only once).
#[test]
fn held_token_lock_answers_503_and_does_not_stall_others() {
    let g = Gatecert::start("tokenlock");
    let name = "sensor-l.sensors.local";
    let token = g.token("sensor-l", &[name]);
    let (_, csr) = make_csr(&g.dir, "l", "ec:P-256", name, &[name]);
    let held = Tokens::open_locked(&g.state().join("tokens.jnl")).unwrap();

    let (code, headers, body) = g.enroll("sensor-l", &token, &csr);
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    assert!(
        headers.to_ascii_lowercase().contains("retry-after:"),
        "{headers}"
    );
    for _ in 0..3 {
        let (code, _, _) = g.curl("cacerts", &[]);
        assert_eq!(code, 200, "cacerts while the token lock is held");
    }
    g.assert_audit("est.deny", &["\"status\":503", "sensor-l"]);
    assert!(!g.audit().contains("est.issue"));

    drop(held);
    let (code, _, body) = g.enroll("sensor-l", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let (code, _, body) = g.enroll("sensor-l", &token, &csr);
    assert_eq!(code, 401, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("token already used"));
}
