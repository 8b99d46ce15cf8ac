//! Real peers for integration tests: Debian's `pebble` and `pebble-challtestsrv` on 127.0.0.1,
//! each spawned process killed and reaped on drop.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod softhsm;

/// pebble's ACME directory.
pub const DIRECTORY: &str = "https://127.0.0.1:14000/dir";
/// challtestsrv's management API.
pub const CHALLTESTSRV: &str = "http://127.0.0.1:8055";
/// The EAB key id and base64url MAC key pebble is configured with in EAB mode.
pub const EAB_KID: &str = "kid-gatecert";
pub const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

/// A spawned process, killed and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh temp directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("gatecert-it-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        keep_secrets(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether something listens at `addr`. A connection to a loopback port in the ephemeral range
/// that nothing listens on can connect to itself (TCP simultaneous open, when the kernel picks
/// that very port as the source); such a connection is not a listener.
pub fn listening(addr: impl std::net::ToSocketAddrs) -> bool {
    match TcpStream::connect(addr) {
        Ok(s) => s.local_addr().ok() != s.peer_addr().ok(),
        Err(_) => false,
    }
}

pub fn wait_for_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening(addr) {
        assert!(Instant::now() < deadline, "{addr} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_for_port_free(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "{addr} still in use");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The loopback ports one pebble + challtestsrv pair uses. Test binaries that may run at the
/// same time use different ones.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub acme: u16,
    pub management: u16,
    pub dns: u16,
    pub challtestsrv: u16,
    /// Where pebble's VA connects for http-01.
    pub http01: u16,
    /// Where pebble's VA connects for tls-alpn-01.
    pub tls_alpn: u16,
}

impl Ports {
    /// What tests/acme_pebble.rs uses: the real challenge ports.
    pub const DEFAULT: Ports = Ports {
        acme: 14000,
        management: 15000,
        dns: 8053,
        challtestsrv: 8055,
        http01: 80,
        tls_alpn: 443,
    };
}

/// pebble + challtestsrv with their own TLS certificate and config in a temp dir.
pub struct Pebble {
    pebble: Option<Proc>,
    _challtestsrv: Proc,
    pub dir: TempDir,
    /// pebble's HTTPS trust anchor (for `ca_bundle`).
    pub https_ca: PathBuf,
    pub ports: Ports,
    /// Names pebble refuses (`domainBlocklist`: newOrder answers `rejectedIdentifier`), read
    /// at the next (re)start.
    pub blocklist: Vec<String>,
}

impl Pebble {
    pub fn start() -> Pebble {
        Pebble::start_with(Ports::DEFAULT, "pebble")
    }

    /// The directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.ports.acme)
    }

    /// Stops pebble (challtestsrv stays).
    pub fn stop(&mut self) {
        self.pebble = None;
    }

    pub fn start_with(ports: Ports, tag: &str) -> Pebble {
        keep_secret(EAB_KEY);
        let dir = TempDir::new(tag);
        let d = dir.path();
        let ssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(d));
        ssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=pebble test CA",
        ]);
        ssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "csr.pem",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        ssl(&[
            "x509",
            "-req",
            "-in",
            "csr.pem",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "30",
            "-extfile",
            "ext",
        ]);
        let mgmt = format!("127.0.0.1:{}", ports.challtestsrv);
        wait_for_port_free(&mgmt);
        let challtestsrv = Proc(
            Command::new("pebble-challtestsrv")
                .args([
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-defaultIPv6",
                    "",
                    "-dns01",
                    &format!("127.0.0.1:{}", ports.dns),
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-management",
                    &mgmt,
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble-challtestsrv"),
        );
        wait_for_port(&mgmt);
        let https_ca = d.join("ca.pem");
        let mut p = Pebble {
            pebble: None,
            _challtestsrv: challtestsrv,
            dir,
            https_ca,
            ports,
            blocklist: Vec::new(),
        };
        p.restart(false);
        p
    }

    /// (Re)starts pebble, with External Account Binding required or not.
    pub fn restart(&mut self, eab: bool) {
        self.restart_with(eab, &[("PEBBLE_VA_NOSLEEP", "1")]);
    }

    /// (Re)starts pebble with extra environment, e.g. `PEBBLE_WFE_NONCEREJECT` or
    /// `PEBBLE_VA_SLEEPTIME` (without `PEBBLE_VA_NOSLEEP`).
    pub fn restart_with(&mut self, eab: bool, env: &[(&str, &str)]) {
        self.pebble = None;
        let ports = self.ports;
        let acme = format!("127.0.0.1:{}", ports.acme);
        let management = format!("127.0.0.1:{}", ports.management);
        wait_for_port_free(&acme);
        let d = self.dir.path();
        let config = serde_json::json!({"pebble": {
            "listenAddress": acme,
            "managementListenAddress": management,
            "certificate": d.join("cert.pem"),
            "privateKey": d.join("key.pem"),
            "httpPort": ports.http01,
            "tlsPort": ports.tls_alpn,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab,
            "externalAccountMACKeys": { EAB_KID: EAB_KEY },
            "domainBlocklist": self.blocklist,
        }});
        let path = d.join("pebble.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let log = std::fs::File::create(d.join("pebble.log")).unwrap();
        let child = Command::new("pebble")
            .args([
                "-config",
                path.to_str().unwrap(),
                "-dnsserver",
                &format!("127.0.0.1:{}", ports.dns),
            ])
            .env_remove("PEBBLE_VA_NOSLEEP")
            .env("PEBBLE_VA_ALWAYS_VALID", "0")
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble");
        self.pebble = Some(Proc(child));
        wait_for_port(&acme);
        wait_for_port(&management);
    }

    /// The root that signs pebble's issued chains (it changes on every pebble start).
    pub fn root(&self) -> PathBuf {
        let path = self.dir.path().join("root.pem");
        let out = run(Command::new("curl").args([
            "-sS",
            "--cacert",
            self.https_ca.to_str().unwrap(),
            &format!("https://127.0.0.1:{}/roots/0", self.ports.management),
        ]));
        std::fs::write(&path, out.stdout).unwrap();
        path
    }

    /// The intermediate that signs pebble's leaves (PEM).
    pub fn intermediate(&self) -> String {
        let out = run(Command::new("curl").args([
            "-sS",
            "--cacert",
            self.https_ca.to_str().unwrap(),
            &format!(
                "https://127.0.0.1:{}/intermediates/0",
                self.ports.management
            ),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// pebble's view of a serial (hex): the management API's cert-status JSON.
    pub fn cert_status(&self, serial_hex: &str) -> String {
        let out = run(Command::new("curl").args([
            "-sS",
            "--cacert",
            self.https_ca.to_str().unwrap(),
            &format!(
                "https://127.0.0.1:{}/cert-status-by-serial/{serial_hex}",
                self.ports.management
            ),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Pebble {
    /// pebble's management API says `serial_hex` is revoked.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        let status = self.cert_status(&serial_hex.to_ascii_lowercase());
        status.contains("\"Status\": \"Revoked\"") || status.contains("\"Status\":\"Revoked\"")
    }
}

/// `target/test-logs/<suite>`: where integration tests keep every gatecert invocation's stdout
/// and stderr, so tests/secrets.sh can scan them for leaked keys and tokens.
pub fn log_dir(suite: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-logs")
        .join(suite);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Appends a finished invocation's stdout and stderr to `target/test-logs/<suite>/<tag>.log`.
pub fn keep_output(suite: &str, tag: &str, out: &Output) {
    use std::io::Write as _;
    let path = log_dir(suite).join(format!("{tag}.log"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(&out.stdout).unwrap();
    f.write_all(&out.stderr).unwrap();
}

/// A file in `target/test-logs/<suite>` opened for appending, for a child's stdout/stderr.
pub fn log_file(suite: &str, tag: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir(suite).join(format!("{tag}.log")))
        .unwrap()
}

/// Records a secret a test used (a token, an EAB key) in `target/test-logs/secrets/`, so
/// tests/secrets.sh can check that no log holds it.
pub fn keep_secret(secret: &str) {
    use std::io::Write as _;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-logs/secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{}.list", std::process::id())))
        .unwrap();
    writeln!(f, "{secret}").unwrap();
}

/// Records the body lines of every private key PEM under `dir` (see [`keep_secret`]).
pub fn keep_secrets(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            keep_secrets(&path);
        } else if ft.is_file() {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut inside = false;
            for line in text.lines() {
                if line.starts_with("-----BEGIN") {
                    inside = line.contains("PRIVATE KEY");
                } else if line.starts_with("-----END") {
                    inside = false;
                } else if inside && line.len() >= 40 {
                    keep_secret(line);
                }
            }
        }
    }
}

/// Writes an executable dns-01 hook into `dir` that logs each call ("add|del FQDN") to a file
/// and sets or clears the TXT record through pebble-challtestsrv's management API at `mgmt`.
/// Returns (hook, log).
pub fn dns_hook(dir: &Path, mgmt: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt as _;
    let hook = dir.join("dns-hook.sh");
    let log = dir.join("dns.log");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$1 $2\" >> {log}\n\
             if [ \"$1\" = add ]; then\n  curl -sSf -d \"{{\\\"host\\\":\\\"$2.\\\",\\\"value\\\":\\\"$3\\\"}}\" {mgmt}/set-txt\n\
             else\n  curl -sSf -d \"{{\\\"host\\\":\\\"$2.\\\"}}\" {mgmt}/clear-txt\nfi\n",
            log = log.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    (hook, log)
}

/// A DER CRL (as `GET /crl` serves it) written under `dir` and converted to PEM by `openssl crl`
/// (which fails on a bad CRL); returns (PEM path, `openssl crl -text` output).
pub fn crl_to_pem(dir: &Path, tag: &str, der: &[u8]) -> (PathBuf, String) {
    let der_path = dir.join(format!("{tag}.crl.der"));
    std::fs::write(&der_path, der).unwrap();
    let pem = dir.join(format!("{tag}.crl.pem"));
    run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(&der_path)
        .arg("-out")
        .arg(&pem));
    let text = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&der_path));
    (pem, String::from_utf8_lossy(&text.stdout).into_owned())
}

/// `openssl verify` of `leaf` (PEM, leaf first) with `intermediates` against `root`.
pub fn verify_chain(root: &Path, intermediates: &Path, leaf: &Path) {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(intermediates)
        .arg(leaf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl verify {}: {}{}",
        leaf.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl verify -crl_check` of `leaf` against `root`, `intermediate` and `crl`:
/// (passed, what openssl said).
pub fn verify_with_crl(
    root: &Path,
    intermediate: &Path,
    crl: &Path,
    leaf: &Path,
) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(root)
        .arg("-untrusted")
        .arg(intermediate)
        .arg("-CRLfile")
        .arg(crl)
        .arg(leaf)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A listener on 127.0.0.1 that accepts and never answers: a blackholed upstream. Dropping it
/// closes the held connections and frees the port (the thread is joined).
pub struct Blackhole {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Blackhole {
    /// On a free port.
    pub fn start() -> Blackhole {
        Blackhole::on(0)
    }

    /// On `port` (0: any free one).
    pub fn on(port: u16) -> Blackhole {
        use std::sync::atomic::Ordering;
        let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) if held.len() < 64 => held.push(s),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Blackhole {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What an [`AcmeDouble`] does with newOrder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoubleMode {
    /// The directory points everything at the real pebble.
    Pass,
    /// newOrder is answered by the double: 429 `rateLimited` with `Retry-After: N` seconds.
    RateLimit(u64),
    /// Every connection is closed unanswered: the whole CA is away.
    Down,
}

/// A tiny test-only ACME front for a pebble (plain HTTP on 127.0.0.1): it serves pebble's
/// directory (fetched once at start) from its own `/dir`, with newOrder pointed at itself while
/// in [`DoubleMode::RateLimit`], where it answers 429 + Retry-After (pebble cannot be told to);
/// in [`DoubleMode::Down`] it closes every connection unanswered. Every other request goes to
/// pebble itself. One thread, one connection at a time, each
/// request capped at 64 KiB and 5 s.
pub struct AcmeDouble {
    pub addr: std::net::SocketAddr,
    mode: std::sync::Arc<std::sync::Mutex<DoubleMode>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// newOrder requests the double answered itself.
    pub refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl AcmeDouble {
    pub fn start(pebble: &Pebble) -> AcmeDouble {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        let out = run(Command::new("curl").args([
            "-sS",
            "--cacert",
            pebble.https_ca.to_str().unwrap(),
            &pebble.directory(),
        ]));
        let directory: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(Mutex::new(DoubleMode::Pass));
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let (m, st, r) = (mode.clone(), stop.clone(), refused.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                let mode = *m.lock().unwrap();
                if mode == DoubleMode::Down {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let _ = double_answer(&mut conn, &directory, addr, mode, &r);
            }
        });
        AcmeDouble {
            addr,
            mode,
            stop,
            refused,
        }
    }

    /// The double's directory URL.
    pub fn directory(&self) -> String {
        format!("http://{}/dir", self.addr)
    }

    pub fn set(&self, mode: DoubleMode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Drop for AcmeDouble {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn double_answer(
    conn: &mut TcpStream,
    directory: &serde_json::Value,
    addr: std::net::SocketAddr,
    mode: DoubleMode,
    refused: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use std::io::{Read as _, Write as _};
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 || buf.len() > 64 << 10 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(64 << 10);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, extra, ctype, body) = match (path.as_str(), mode) {
        ("/dir", _) => {
            let mut d = directory.clone();
            if let DoubleMode::RateLimit(_) = mode {
                d["newOrder"] = serde_json::Value::String(format!("http://{addr}/new-order"));
            }
            ("200 OK", String::new(), "application/json", d.to_string())
        }
        ("/new-order", DoubleMode::RateLimit(secs)) => {
            refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (
                "429 Too Many Requests",
                format!("Retry-After: {secs}\r\n"),
                "application/problem+json",
                serde_json::json!({"type": "urn:ietf:params:acme:error:rateLimited",
                    "detail": "test double: too many new orders", "status": 429})
                .to_string(),
            )
        }
        _ => (
            "404 Not Found",
            String::new(),
            "text/plain",
            "not here\n".into(),
        ),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Polls `f` every 100 ms until it holds, failing after `limit` with `what`.
pub fn eventually(what: &str, limit: Duration, f: &mut dyn FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// tests/peers/ari_double.py on 127.0.0.1: an ACME test double whose ARI window (RFC 9773) the
/// test moves while `gatecert run` is up. Killed on drop.
pub struct AriDouble {
    pub proc: Proc,
    pub dir: PathBuf,
    pub port: u16,
}

impl AriDouble {
    /// Starts it in `dir` (its work directory) with `window` as the first renewalInfo answer.
    pub fn start(dir: &Path, window: (i64, i64, i64)) -> AriDouble {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let d = AriDouble {
            proc: Proc(
                Command::new("python3")
                    .arg(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/tests/peers/ari_double.py"
                    ))
                    .arg(dir)
                    .arg(port.to_string())
                    .stdout(Stdio::null())
                    .stderr(log_file("ari_double", "server"))
                    .spawn()
                    .unwrap(),
            ),
            dir: dir.to_path_buf(),
            port,
        };
        d.set_window(window.0, window.1, window.2);
        eventually(
            "ari_double.py listens",
            Duration::from_secs(20),
            &mut || dir.join("ready").exists(),
        );
        d
    }

    /// The directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.port)
    }

    /// Its root (the `ca_bundle` for its TLS, and the issuer of what it signs).
    pub fn root(&self) -> PathBuf {
        self.dir.join("root.pem")
    }

    /// The next renewalInfo answers: `start`, `end` (Unix seconds) and `Retry-After` seconds.
    /// Written atomically: the double reads it at every request.
    pub fn set_window(&self, start: i64, end: i64, retry_after: i64) {
        self.set_window_for(None, start, end, retry_after);
    }

    /// [`AriDouble::set_window`] for the certificate `only` (a certID); any other certificate
    /// gets a window 30 days ahead.
    pub fn set_window_for(&self, only: Option<&str>, start: i64, end: i64, retry_after: i64) {
        let rfc = gatecert::crypto::rfc3339;
        let body = serde_json::json!({"start": rfc(start), "end": rfc(end),
            "retry_after": retry_after, "only": only});
        let tmp = self.dir.join("window.json.tmp");
        std::fs::write(&tmp, body.to_string()).unwrap();
        std::fs::rename(&tmp, self.dir.join("window.json")).unwrap();
    }

    /// Every request it logged: `{"t", "op": "order", "replaces"}` and
    /// `{"t", "op": "renewal-info", "id"}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// How many requests of `op` it logged.
    pub fn count(&self, op: &str) -> usize {
        self.requests().iter().filter(|r| r["op"] == op).count()
    }
}

/// The system clock, Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `gatecert --config <dir>/gatecert.conf`, without the caller's `GATECERT_FAKE_NOW`.
pub fn gatecert_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatecert"));
    c.arg("--config")
        .arg(dir.join("gatecert.conf"))
        .env_remove("GATECERT_FAKE_NOW");
    c
}

/// `gatecert run` on `<dir>/gatecert.conf` with `env` added, its stderr in `<dir>/run.log`
/// (returned with it).
pub fn spawn_run(dir: &Path, env: &[(&str, &str)]) -> (Proc, PathBuf) {
    let log = dir.join("run.log");
    let child = gatecert_in(dir)
        .arg("run")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    (Proc(child), log)
}

/// `openssl verify -CAfile ROOT -untrusted UNTRUSTED CERT`: true when it says `OK`.
pub fn openssl_verifies(root: &Path, untrusted: &Path, cert: &Path) -> bool {
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(root)
        .arg("-untrusted")
        .arg(untrusted)
        .arg(cert)
        .output()
        .unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK")
}

/// `<dir>/gatecert.conf` with one ACME certificate `gw` (gw1.example.com, http-01 on
/// 127.0.0.1:80) from `directory`, trusting `ca_bundle`, state in `<dir>/state`, EST off.
pub fn write_acme_config(dir: &Path, directory: &str, ca_bundle: &Path) {
    std::fs::write(
        dir.join("gatecert.conf"),
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory '{directory}'\n\
             \toption ca_bundle '{}'\n\tlist domain 'gw1.example.com'\n\
             \toption http_listen '127.0.0.1:80'\n\nconfig est 'est'\n\toption enabled '0'\n",
            dir.join("state").display(),
            ca_bundle.display(),
        ),
    )
    .unwrap();
}

/// A config with the main section (state dir, log to stderr) and one ACME `certificate 'gw'`
/// for `domain`, answering http-01 on `http_listen`; `extra` is appended to the section (each
/// option a `\toption ...\n` line).
pub fn acme_conf(state: &Path, p: &Pebble, domain: &str, http_listen: &str, extra: &str) -> String {
    format!(
        "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
         config certificate 'gw'\n\toption directory '{}'\n\toption ca_bundle '{}'\n\
         \tlist domain '{domain}'\n\toption http_listen '{http_listen}'\n{extra}",
        state.display(),
        p.directory(),
        p.https_ca.display(),
    )
}
