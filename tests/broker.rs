//! The broker (issue 4) against a real upstream on 127.0.0.1: Debian's pebble, with
//! challtestsrv answering every name with 127.0.0.1 (the "DNS" that points leaf names at the
//! gateway, whose http-01 listener then answers for them). EST clients are curl and openssl.
//!
//! One #[test], cases in order: they share pebble, its ports and the http-01 port.
//! 1. enroll: the chain comes from pebble and carries the CSR's key;
//! 2. pebble stopped: an interim certificate from the local CA within 1 s;
//! 3. upstream blackholed: an answer within upstream_wait + 1 s, then no waiting at all;
//! 4. pebble back: re-enrollment with the interim certificate gets an upstream one;
//! 5. a slow upstream (a delaying proxy): 202 + Retry-After, then the certificate, cached.

mod common;
#[path = "broker/failover.rs"]
mod failover;
#[path = "broker/revoke.rs"]
mod revoke;

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{run, Blackhole, Pebble, Ports, Proc, TempDir};
use gatecert::crypto::{self, CertInfo};
use gatecert::token::Tokens;

/// Our own ports, so this can run beside tests/acme_pebble.rs.
const PORTS: Ports = Ports {
    acme: 14100,
    management: 15100,
    dns: 8153,
    challtestsrv: 8155,
    http01: 5080,
    tls_alpn: 5443,
};

/// `upstream_wait` where the case measures it; the plain enroll case gets a roomy one (a debug
/// build on a shared machine takes a few seconds for a whole order).
const WAIT: u64 = 2;
const ROOMY_WAIT: u64 = 20;

use common::now;

use common::free_port;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `gatecert run` with a UCI config, killed and reaped on drop.
struct Gatecert {
    proc: Option<Proc>,
    dir: TempDir,
    port: u16,
    /// Extra environment for `gatecert run`.
    env: Vec<(&'static str, &'static str)>,
}

impl Gatecert {
    fn start(tag: &str, directory: &str, https_ca: &Path, timeout: u64, wait: u64) -> Gatecert {
        Gatecert::start_on(tag, directory, https_ca, timeout, wait, PORTS.http01)
    }

    /// Like `start`, with the http-01 listener on `http01`.
    fn start_on(
        tag: &str,
        directory: &str,
        https_ca: &Path,
        timeout: u64,
        wait: u64,
        http01: u16,
    ) -> Gatecert {
        Gatecert::start_env(tag, directory, https_ca, timeout, wait, http01, &[])
    }

    /// Like `start_on`, with extra environment for `gatecert run`.
    fn start_env(
        tag: &str,
        directory: &str,
        https_ca: &Path,
        timeout: u64,
        wait: u64,
        http01: u16,
        env: &[(&'static str, &'static str)],
    ) -> Gatecert {
        let config = |state: &Path| {
            format!(
                "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log 'stderr'\n\n\
                 config certificate 'gw'\n\toption directory '{directory}'\n\
                 \toption ca_bundle '{ca}'\n\tlist domain 'gw.sensors.test'\n\
                 \toption challenge 'http-01'\n\toption http_listen '127.0.0.1:{http}'\n\
                 \toption timeout '{timeout}'\n\n\
                 config ca 'local'\n\tlist allow_suffix 'sensors.test'\n\n\
                 config est 'est'\n\toption listen '127.0.0.1:1'\n\n\
                 config broker 'upstream'\n\toption certificate 'gw'\n\
                 \toption upstream_wait '{wait}'\n\toption interim_lifetime '1h'\n",
                state = state.display(),
                ca = https_ca.display(),
                http = http01,
            )
        };
        Gatecert::start_config(tag, config, env)
    }

    /// `gatecert run` with the config `config(state_dir)`.
    fn start_config(
        tag: &str,
        config: impl FnOnce(&Path) -> String,
        env: &[(&'static str, &'static str)],
    ) -> Gatecert {
        let dir = TempDir::new(tag);
        let state = dir.path().join("state");
        std::fs::write(dir.path().join("gatecert.conf"), config(&state)).unwrap();
        let mut g = Gatecert {
            proc: None,
            dir,
            port: 0,
            env: env.to_vec(),
        };
        g.spawn();
        g
    }

    /// Starts `gatecert run` on this directory and a fresh port (appending to its log).
    fn spawn(&mut self) {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("gatecert.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.conf"))
            .arg("run")
            .arg("--state-dir")
            .arg(self.state())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("GATECERT_FAKE_NOW")
            .envs(self.env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.proc = Some(Proc(child));
        self.port = port;
        wait_until("gatecert run to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    /// SIGKILL (a crash or power cut), then a fresh start on the same state directory.
    fn kill_and_restart(&mut self) {
        self.proc = None;
        self.spawn();
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("gatecert.log")).unwrap_or_default()
    }

    /// Both streams: `audit.log` (issuances) and `audit-deny.log` (denials).
    fn audit(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.state().join(f)).unwrap_or_default();
        read("audit.log") + &read("audit-deny.log")
    }

    fn upstream_state(&self) -> String {
        let text = std::fs::read_to_string(self.state().join("upstream.json")).unwrap_or_default();
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Waits for the gateway's own certificate from the upstream (the worker is idle after).
    fn wait_gateway_cert(&self) {
        let live = self.state().join("certs/gw/live/cert.pem");
        wait_until("the gateway certificate", Duration::from_secs(90), || {
            live.exists()
        });
    }

    fn token(&self, device: &str) -> String {
        Tokens::open(&self.state().join("tokens.jnl"))
            .unwrap()
            .add(device, &[device.to_owned()], 3600, 1, now())
            .unwrap()
    }

    /// A P-256 key `<name>.key` and its CSR for `name`, base64 DER in `<name>.b64`.
    fn csr(&self, name: &str, tag: &str) -> PathBuf {
        let d = self.dir.path();
        run(Command::new("openssl").current_dir(d).args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{tag}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
            "-outform",
            "DER",
            "-out",
            &format!("{tag}.csr"),
        ]));
        let der = std::fs::read(d.join(format!("{tag}.csr"))).unwrap();
        let b64 = d.join(format!("{tag}.b64"));
        std::fs::write(&b64, crypto::b64(&der)).unwrap();
        b64
    }

    /// curl: (status, headers, body, curl's time_total).
    fn curl(&self, op: &str, args: &[&str]) -> (u16, String, Vec<u8>, Duration) {
        let body = self.path("curl.body");
        let headers = self.path("curl.headers");
        let _ = std::fs::remove_file(&body);
        // -k: the listener's certificate switches from the local CA to the upstream one while
        // the service runs; server identity is tests/est.rs's subject.
        let out = Command::new("curl")
            .args(["-sS", "-k", "--max-time", "30", "-o"])
            .arg(&body)
            .arg("-D")
            .arg(&headers)
            .args(["-w", "%{http_code} %{time_total}"])
            .args(args)
            .arg(format!(
                "https://127.0.0.1:{}/.well-known/est/{op}",
                self.port
            ))
            .output()
            .unwrap();
        let w = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut it = w.split_whitespace();
        let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let secs: f64 = it.next().and_then(|c| c.parse().ok()).unwrap_or(99.0);
        (
            code,
            std::fs::read_to_string(&headers).unwrap_or_default(),
            std::fs::read(&body).unwrap_or_default(),
            Duration::from_secs_f64(secs),
        )
    }

    fn enroll(&self, device: &str, csr: &Path) -> (u16, String, Vec<u8>, Duration) {
        let token = self.token(device);
        self.enroll_with(device, &token, csr)
    }

    fn enroll_with(
        &self,
        device: &str,
        token: &str,
        csr: &Path,
    ) -> (u16, String, Vec<u8>, Duration) {
        self.curl(
            "simpleenroll",
            &[
                "-u",
                &format!("{device}:{token}"),
                "--data-binary",
                &format!("@{}", csr.display()),
                "-H",
                "Content-Type: application/pkcs10",
            ],
        )
    }

    /// The certificates of a certs-only PKCS#7 answer, leaf first, also written as PEM.
    fn certs(&self, body: &[u8], tag: &str) -> Vec<CertInfo> {
        let der = crypto::b64_decode(body).expect("base64 body");
        let p7 = self.path(&format!("{tag}.p7"));
        std::fs::write(&p7, der).unwrap();
        let out = run(Command::new("openssl").args([
            "pkcs7",
            "-inform",
            "DER",
            "-print_certs",
            "-in",
            p7.to_str().unwrap(),
        ]));
        let pem = String::from_utf8_lossy(&out.stdout).into_owned();
        // The SET is DER-sorted: the file has the leaf (not a CA) first, as a chain file does.
        let ders = crypto::certs_from_pem(&pem).unwrap();
        let (cas, leaves): (Vec<_>, Vec<_>) = ders
            .iter()
            .partition(|d| CertInfo::from_der(d.as_ref()).unwrap().is_ca);
        let ordered: Vec<_> = leaves.into_iter().chain(cas).collect();
        let pem = crypto::certs_to_pem(ordered.iter().map(|d| d.as_ref()));
        std::fs::write(self.path(&format!("{tag}.pem")), &pem).unwrap();
        ordered
            .iter()
            .map(|d| CertInfo::from_der(d.as_ref()).unwrap())
            .collect()
    }

    /// The leaf among `certs`: the one that is not a CA.
    fn leaf(certs: &[CertInfo]) -> &CertInfo {
        certs.iter().find(|c| !c.is_ca).expect("a leaf")
    }

    fn key_spki(&self, tag: &str) -> Vec<u8> {
        let out = run(Command::new("openssl").args([
            "pkey",
            "-in",
            self.path(&format!("{tag}.key")).to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]));
        out.stdout
    }

    fn local_intermediate(&self) -> CertInfo {
        let pem = std::fs::read_to_string(self.state().join("ca/intermediate.pem")).unwrap();
        CertInfo::from_pem(&pem).unwrap()
    }

    fn audit_has(&self, device: &str, source: &str) -> bool {
        self.audit().lines().any(|l| {
            l.contains("est.issue")
                && l.contains(&format!("\"device\":\"{device}\""))
                && l.contains(&format!("\"source\":\"{source}\""))
        })
    }

    /// `gatecert ARGS` on this config.
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.conf"))
            .args(args)
            .output()
            .unwrap()
    }

    /// `csrs.len()` simpleenroll requests at once with one device and token, each with its own
    /// CSR: (status, body) of each.
    fn enroll_at_once(&self, device: &str, token: &str, csrs: &[PathBuf]) -> Vec<(u16, Vec<u8>)> {
        std::thread::scope(|s| {
            let runs: Vec<_> = csrs
                .iter()
                .enumerate()
                .map(|(i, csr)| {
                    s.spawn(move || {
                        let body = self.path(&format!("many{i}.body"));
                        let out = Command::new("curl")
                            .args(["-sS", "-k", "--max-time", "60", "-o"])
                            .arg(&body)
                            .args(["-w", "%{http_code}", "-u", &format!("{device}:{token}")])
                            .args(["-H", "Content-Type: application/pkcs10", "--data-binary"])
                            .arg(format!("@{}", csr.display()))
                            .arg(format!(
                                "https://127.0.0.1:{}/.well-known/est/simpleenroll",
                                self.port
                            ))
                            .output()
                            .unwrap();
                        let code = String::from_utf8_lossy(&out.stdout).trim().parse();
                        (code.unwrap_or(0), std::fs::read(&body).unwrap_or_default())
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    /// The audit log's `est.issue` lines.
    fn issue_lines(&self) -> Vec<String> {
        self.audit()
            .lines()
            .filter(|l| l.contains("\"event\":\"est.issue\""))
            .map(str::to_owned)
            .collect()
    }

    fn leaves(&self) -> String {
        let out = run(Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.conf"))
            .arg("leaves"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A self-signed certificate for `ca_bundle` where no TLS handshake ever happens (a blackhole).
fn unused_ca(dir: &Path) -> PathBuf {
    let pem = dir.join("unused-ca.pem");
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "unused-ca.key",
        "-subj",
        "/CN=unused",
        "-days",
        "1",
        "-out",
        "unused-ca.pem",
    ]));
    pem
}

/// A TCP proxy to `target` that holds every chunk from the client for `delay`: a slow link.
struct SlowProxy {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SlowProxy {
    fn start(target: u16, delay: Duration) -> SlowProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
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
                // Both directions end when either side closes; the threads are short-lived.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    while let Ok(n) = c_in.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        std::thread::sleep(delay);
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_out.shutdown(Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s_in, &mut c_out);
                    let _ = c_out.shutdown(Shutdown::Both);
                });
            }
        });
        SlowProxy {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn broker_end_to_end() {
    let mut pebble = Pebble::start_with(PORTS, "broker-pebble");
    let directory = pebble.directory();

    // ---- 1. enroll: brokered to the upstream --------------------------------------------
    let g = Gatecert::start("broker-a", &directory, &pebble.https_ca, 3, ROOMY_WAIT);
    g.wait_gateway_cert();
    let csr = g.csr("leaf1.sensors.test", "leaf1");
    let (code, _, body, took) = g.enroll("leaf1.sensors.test", &csr);
    assert_eq!(code, 200, "enroll via the upstream:\n{}", g.log());
    let certs = g.certs(&body, "leaf1-cert");
    let leaf = Gatecert::leaf(&certs);
    let pebble_int = CertInfo::from_pem(&pebble.intermediate()).unwrap();
    assert_eq!(
        leaf.issuer, pebble_int.subject,
        "issued by pebble's intermediate"
    );
    assert_eq!(leaf.spki_der, g.key_spki("leaf1"), "the CSR's public key");
    assert_eq!(leaf.dns_names, vec!["leaf1.sensors.test".to_owned()]);
    assert!(
        g.audit_has("leaf1.sensors.test", "upstream"),
        "{}",
        g.audit()
    );
    // The reply is the issued certificate alone (RFC 7030 §4.2.3); /cacerts carries the
    // upstream intermediate beside the local CA, so the client can build the upstream chain.
    assert_eq!(certs.len(), 1, "only the issued certificate");
    let (code, _, body, _) = g.curl("cacerts", &[]);
    assert_eq!(code, 200);
    let cacerts = g.certs(&body, "cacerts");
    assert!(
        cacerts.iter().any(|c| c.der == pebble_int.der),
        "pebble's intermediate is not in /cacerts"
    );
    assert!(cacerts.iter().any(|c| c.der == g.local_intermediate().der));
    let v = run(Command::new("openssl").args([
        "verify",
        "-CAfile",
        pebble.root().to_str().unwrap(),
        "-untrusted",
        g.path("cacerts.pem").to_str().unwrap(),
        g.path("leaf1-cert.pem").to_str().unwrap(),
    ]));
    assert!(String::from_utf8_lossy(&v.stdout).contains(": OK"));
    eprintln!("case 1: upstream enroll took {took:?}");
    // Re-enrollment with the upstream certificate itself (the gateway brokered it).
    let csr = g.csr("leaf1.sensors.test", "leaf1b");
    let (code, _, body, _) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            g.path("leaf1-cert.pem").to_str().unwrap(),
            "--key",
            g.path("leaf1.key").to_str().unwrap(),
            "--data-binary",
            &format!("@{}", csr.display()),
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    assert_eq!(
        code,
        200,
        "re-enroll with an upstream certificate:\n{}",
        g.log()
    );
    let leaf = Gatecert::leaf(&g.certs(&body, "leaf1b-cert")).clone();
    assert_eq!(leaf.issuer, pebble_int.subject);
    assert_eq!(leaf.spki_der, g.key_spki("leaf1b"));

    // ---- 2. upstream stopped: interim at once --------------------------------------------
    pebble.stop();
    let csr = g.csr("leaf2.sensors.test", "leaf2");
    let (code, _, body, took) = g.enroll("leaf2.sensors.test", &csr);
    assert_eq!(code, 200, "interim enroll:\n{}", g.log());
    assert!(took < Duration::from_secs(1), "interim took {took:?}");
    let certs = g.certs(&body, "leaf2-cert");
    let leaf = Gatecert::leaf(&certs);
    assert_eq!(
        leaf.issuer,
        g.local_intermediate().subject,
        "issued by the local CA"
    );
    assert!(
        leaf.not_after - now() <= 3600,
        "lifetime within interim_lifetime"
    );
    assert_eq!(leaf.spki_der, g.key_spki("leaf2"));
    assert!(
        g.audit_has("leaf2.sensors.test", "interim"),
        "{}",
        g.audit()
    );
    wait_until("upstream.json down", Duration::from_secs(5), || {
        g.upstream_state() == "down"
    });
    let leaves = g.leaves();
    assert!(
        leaves
            .lines()
            .any(|l| l.starts_with("leaf2.sensors.test") && l.contains("interim")),
        "{leaves}"
    );
    let status = Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(g.path("gatecert.conf"))
        .arg("status")
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("upstream: down"), "{status}");
    eprintln!("case 2: interim enroll took {took:?}");

    // ---- 4. upstream back: re-enrollment upgrades the interim certificate ----------------
    pebble.restart(false);
    wait_until("upstream.json up", Duration::from_secs(60), || {
        g.upstream_state() == "up"
    });
    let csr = g.csr("leaf2.sensors.test", "leaf2b");
    let (code, _, body, took) = g.curl(
        "simplereenroll",
        &[
            "--cert",
            g.path("leaf2-cert.pem").to_str().unwrap(),
            "--key",
            g.path("leaf2.key").to_str().unwrap(),
            "--data-binary",
            &format!("@{}", csr.display()),
            "-H",
            "Content-Type: application/pkcs10",
        ],
    );
    assert_eq!(code, 200, "re-enroll:\n{}", g.log());
    let certs = g.certs(&body, "leaf2b-cert");
    let leaf = Gatecert::leaf(&certs);
    let pebble_int = CertInfo::from_pem(&pebble.intermediate()).unwrap();
    assert_eq!(
        leaf.issuer, pebble_int.subject,
        "upgraded to an upstream certificate"
    );
    assert_eq!(leaf.spki_der, g.key_spki("leaf2b"));
    assert!(
        g.audit_has("leaf2.sensors.test", "upstream"),
        "{}",
        g.audit()
    );
    let leaves = g.leaves();
    assert!(
        leaves
            .lines()
            .any(|l| l.starts_with("leaf2.sensors.test") && l.contains("upstream")),
        "{leaves}"
    );
    eprintln!("case 4: re-enroll upgrade took {took:?}");
    drop(g);

    // ---- 3. blackholed upstream: bounded wait, then none ---------------------------------
    let hole = Blackhole::start();
    let g = Gatecert::start(
        "broker-b",
        &format!("https://127.0.0.1:{}/dir", hole.port),
        &pebble.https_ca,
        3,
        WAIT,
    );
    let csr = g.csr("leaf3.sensors.test", "leaf3");
    let (code, _, body, took) = g.enroll("leaf3.sensors.test", &csr);
    assert_eq!(code, 200, "blackholed enroll:\n{}", g.log());
    assert!(
        took <= Duration::from_secs(WAIT + 1),
        "first answer took {took:?}"
    );
    let leaf = Gatecert::leaf(&g.certs(&body, "leaf3-cert")).clone();
    assert_eq!(leaf.issuer, g.local_intermediate().subject);
    wait_until("upstream.json down", Duration::from_secs(15), || {
        g.upstream_state() == "down"
    });
    let mut slowest = Duration::ZERO;
    for i in 0..5 {
        let csr = g.csr(&format!("h{i}.sensors.test"), &format!("h{i}"));
        let (code, _, _, took) = g.enroll(&format!("h{i}.sensors.test"), &csr);
        assert_eq!(code, 200);
        slowest = slowest.max(took);
    }
    assert!(slowest < Duration::from_millis(200), "slowest {slowest:?}");
    eprintln!("case 3: first {took:?}, then slowest of 5 {slowest:?}");
    drop(g);
    drop(hole);

    // ---- 5. slow upstream: 202 + Retry-After, then the cached certificate ---------------
    let proxy = SlowProxy::start(PORTS.acme, Duration::from_millis(300));
    let g = Gatecert::start(
        "broker-c",
        &format!("https://127.0.0.1:{}/dir", proxy.port),
        &pebble.https_ca,
        20,
        WAIT,
    );
    g.wait_gateway_cert();
    let csr = g.csr("leaf5.sensors.test", "leaf5");
    let token = g.token("leaf5.sensors.test");
    let (code, headers, _, took) = g.enroll_with("leaf5.sensors.test", &token, &csr);
    assert_eq!(code, 202, "slow upstream:\n{}", g.log());
    assert!(took <= Duration::from_secs(WAIT + 1), "202 took {took:?}");
    let retry_after: u64 = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("retry-after")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after));
    let cache = g.state().join("broker.json");
    wait_until(
        "the order to finish in the background",
        Duration::from_secs(90),
        || std::fs::read_to_string(&cache).is_ok_and(|t| t.contains("leaf5.sensors.test")),
    );
    let (code, _, body, _) = g.enroll_with("leaf5.sensors.test", &token, &csr);
    assert_eq!(code, 200, "retry:\n{}", g.log());
    let leaf = Gatecert::leaf(&g.certs(&body, "leaf5-cert")).clone();
    let pebble_int = CertInfo::from_pem(&pebble.intermediate()).unwrap();
    assert_eq!(leaf.issuer, pebble_int.subject);
    assert_eq!(leaf.spki_der, g.key_spki("leaf5"));
    assert!(g.audit_has("leaf5.sensors.test", "cached"), "{}", g.audit());
    // The token was burnt by the delivery, not by the 202: a used token is refused
    // credentials, 401 (RFC 7235 §3.1).
    let (code, _, _, _) = g.enroll_with("leaf5.sensors.test", &token, &csr);
    assert_eq!(code, 401);
    drop(g);
    drop(proxy);
}

/// Ports for the one-time-token cases against pebble, apart from `broker_end_to_end`'s.
const RACE_PORTS: Ports = Ports {
    acme: 14200,
    management: 15200,
    dns: 8253,
    challtestsrv: 8255,
    http01: 5180,
    tls_alpn: 5543,
};

/// `upstream_wait` for the blackhole cases: long enough that 20 requests sent right after
/// start are all parked (the worker is stuck on the blackhole from the start), and the
/// upstream `timeout` longer still, so nothing is judged down meanwhile.
const HOLE_WAIT: u64 = 10;
const HOLE_TIMEOUT: u64 = 120;

/// How many answers are 2xx, and the one 200's body.
fn successes(answers: &[(u16, Vec<u8>)]) -> (usize, Option<&[u8]>) {
    let ok = answers
        .iter()
        .filter(|(c, _)| (200..300).contains(c))
        .count();
    let body = answers.iter().find(|(c, _)| *c == 200).map(|(_, b)| &b[..]);
    (ok, body)
}

/// Issue 10 item 1: 20 concurrent simpleenroll with one `--uses 1` token, the upstream a
/// blackhole (requests parked on it): exactly one certificate and one `est.issue` line; the
/// other 19 are refused at once, before anything is parked.
#[test]
fn one_use_token_issues_once_with_a_blackholed_upstream() {
    let hole = Blackhole::start();
    let scratch = TempDir::new("race-hole-ca");
    let g = Gatecert::start(
        "race-hole",
        &format!("https://127.0.0.1:{}/dir", hole.port),
        &unused_ca(scratch.path()),
        HOLE_TIMEOUT,
        HOLE_WAIT,
    );
    let device = "race.sensors.test";
    let token = g.token(device);
    let csrs: Vec<PathBuf> = (0..20).map(|i| g.csr(device, &format!("r{i}"))).collect();
    let answers = g.enroll_at_once(device, &token, &csrs);
    let codes: Vec<u16> = answers.iter().map(|(c, _)| *c).collect();
    let (ok, body) = successes(&answers);
    assert_eq!(ok, 1, "2xx answers: {codes:?}\n{}", g.log());
    assert_eq!(
        codes.iter().filter(|c| matches!(**c, 401 | 403)).count(),
        19,
        "{codes:?}"
    );
    let leaf = Gatecert::leaf(&g.certs(body.unwrap(), "race-cert")).clone();
    assert_eq!(
        leaf.issuer,
        g.local_intermediate().subject,
        "an interim leaf"
    );
    assert_eq!(g.issue_lines().len(), 1, "{}", g.audit());
    assert!(g
        .audit()
        .contains("token in use by an enrollment in progress"));
    drop(g);
    drop(hole);
}

/// The same against a real upstream (pebble): one publicly chained certificate, not 20.
#[test]
fn one_use_token_issues_once_with_a_pebble_upstream() {
    let pebble = Pebble::start_with(RACE_PORTS, "race-pebble");
    let g = Gatecert::start_on(
        "race-pebble-gw",
        &pebble.directory(),
        &pebble.https_ca,
        20,
        ROOMY_WAIT,
        RACE_PORTS.http01,
    );
    g.wait_gateway_cert();
    let device = "racep.sensors.test";
    let token = g.token(device);
    let csrs: Vec<PathBuf> = (0..20).map(|i| g.csr(device, &format!("p{i}"))).collect();
    let answers = g.enroll_at_once(device, &token, &csrs);
    let codes: Vec<u16> = answers.iter().map(|(c, _)| *c).collect();
    let (ok, body) = successes(&answers);
    assert_eq!(ok, 1, "2xx answers: {codes:?}\n{}", g.log());
    assert_eq!(
        codes.iter().filter(|c| matches!(**c, 401 | 403)).count(),
        19,
        "{codes:?}"
    );
    let leaf = Gatecert::leaf(&g.certs(body.unwrap(), "racep-cert")).clone();
    let pebble_int = CertInfo::from_pem(&pebble.intermediate()).unwrap();
    assert_eq!(leaf.issuer, pebble_int.subject, "issued by the upstream");
    let issues = g.issue_lines();
    assert_eq!(issues.len(), 1, "{}", g.audit());
    assert!(
        issues[0].contains("\"source\":\"upstream\""),
        "{}",
        issues[0]
    );
}

/// A claim left by a killed service is neither a lost use nor an extra one: the cert never
/// went out, so after a restart the token still has its one use. And a token revoked while its
/// request is parked on the upstream yields no certificate.
#[test]
fn killed_claim_is_not_lost_and_revoked_while_parked_yields_nothing() {
    let hole = Blackhole::start();
    let scratch = TempDir::new("revoke-hole-ca");
    let mut g = Gatecert::start(
        "revoke-hole",
        &format!("https://127.0.0.1:{}/dir", hole.port),
        &unused_ca(scratch.path()),
        HOLE_TIMEOUT,
        HOLE_WAIT,
    );
    let device = "rv.sensors.test";
    let token = g.token(device);
    let parked = |g: &Gatecert, n: usize| {
        wait_until("the request to be parked", Duration::from_secs(20), || {
            g.log()
                .matches(&format!("simpleenroll for {device}: parked"))
                .count()
                >= n
        });
    };

    // Parked, then the service is killed: the client gets nothing.
    let csr = g.csr(device, "rv1");
    std::thread::scope(|s| {
        let client = s.spawn(|| g.enroll_at_once(device, &token, std::slice::from_ref(&csr)));
        parked(&g, 1);
        let pid = g.proc.as_ref().unwrap().0.id().to_string();
        run(Command::new("kill").args(["-KILL", &pid]));
        let answers = client.join().unwrap();
        assert_eq!(answers[0].0, 0, "no answer from a killed service");
    });
    g.kill_and_restart();
    let list = g.cli(&["token", "list"]);
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let row = list.lines().find(|l| l.starts_with(device)).unwrap();
    assert!(row.contains(" 1 ") && row.contains(" active "), "{list}");

    // Parked again (the restarted service), revoked meanwhile: no certificate.
    let csr = g.csr(device, "rv2");
    let answers = std::thread::scope(|s| {
        let client = s.spawn(|| g.enroll_at_once(device, &token, std::slice::from_ref(&csr)));
        parked(&g, 2);
        let out = g.cli(&["token", "revoke", device]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        client.join().unwrap()
    });
    let (code, body) = &answers[0];
    assert_eq!(*code, 401, "{}\n{}", String::from_utf8_lossy(body), g.log());
    assert!(String::from_utf8_lossy(body).contains("token revoked"));
    assert!(g.issue_lines().is_empty(), "{}", g.audit());
    drop(g);
    drop(hole);
}

/// Issue 10 item 7: in broker mode the local policy comes first. A name the token grants but
/// the local CA refuses (outside allow_suffix) is refused at once, before anything is parked
/// or sent upstream: pebble would have issued it.
#[test]
fn broker_checks_local_policy_before_the_upstream() {
    let ports = Ports {
        acme: 14300,
        management: 15300,
        dns: 8353,
        challtestsrv: 8355,
        http01: 5280,
        tls_alpn: 5643,
    };
    let pebble = Pebble::start_with(ports, "policy-pebble");
    let g = Gatecert::start_on(
        "policy-pebble-gw",
        &pebble.directory(),
        &pebble.https_ca,
        20,
        ROOMY_WAIT,
        ports.http01,
    );
    g.wait_gateway_cert();
    let outside = "leaf.example.org";
    let csr = g.csr(outside, "outside");
    let (code, _, body, _) = g.enroll(outside, &csr);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(code, 403, "{body}\n{}", g.log());
    assert!(body.contains("outside allow_suffix"), "{body}");
    assert!(g.issue_lines().is_empty(), "{}", g.audit());
}
