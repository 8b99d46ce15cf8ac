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

pub fn wait_for_port(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(addr).is_err() {
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
