//! Keys in a PKCS#11 token (issue 17), against SoftHSM2 (Debian `softhsm2`) with the real
//! `gatecert` binary, openssl and curl on 127.0.0.1. Each test has its own token directory
//! (`SOFTHSM2_CONF` pointing at a temp config), so tests never share a token.
//!
//! Built only with `--features pkcs11` (`cargo test --features pkcs11 --test pkcs11`).
#![cfg(feature = "pkcs11")]

mod common;
// `gatecert renew` against Pebble with keys in the token.
#[path = "pkcs11/renew.rs"]
mod renew;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use gatecert::token::Tokens;

use common::softhsm::{SoftHsm, MODULE, PIN};

const EST: &str = "/.well-known/est";

use common::now;

use common::free_port;

/// A SoftHSM2 token `gw` (user PIN [`PIN`]) in a temp dir, a PIN file, and a state dir.
struct Hsm {
    dir: PathBuf,
    token: SoftHsm,
}

impl Hsm {
    fn new(tag: &str) -> Hsm {
        let dir = std::env::temp_dir().join(format!("gatecert-p11-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let token = SoftHsm::init(&dir);
        Hsm { dir, token }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        self.token.env(cmd)
    }

    fn tool(&self, cmd: &mut Command) -> Output {
        self.token.tool(cmd)
    }

    fn objects(&self) -> String {
        self.token.objects()
    }

    fn uri(&self, object: &str) -> String {
        self.token.uri(object)
    }

    /// The leaf of an EST reply (base64 PKCS#7 certs-only) verifies with openssl against
    /// `root`, through the CA's intermediate in `ca_dir`.
    fn assert_leaf_verifies(&self, body: &[u8], tag: &str, root: &Path, ca_dir: &Path) {
        let p7 = self.path(&format!("{tag}.p7"));
        std::fs::write(&p7, gatecert::crypto::b64_decode(body).unwrap()).unwrap();
        let pem = openssl_line(&format!(
            "pkcs7 -inform DER -print_certs -in {}",
            p7.display()
        ));
        let leaf = self.path(&format!("{tag}.pem"));
        std::fs::write(&leaf, first_cert(&String::from_utf8(pem.stdout).unwrap())).unwrap();
        let out = openssl_line(&format!(
            "verify -CAfile {} -untrusted {} {}",
            root.display(),
            ca_dir.join("intermediate.pem").display(),
            leaf.display()
        ));
        assert!(text(&out).contains(": OK"), "{}", text(&out));
    }

    /// Removes the key pair labelled `label` with pkcs11-tool.
    fn delete_key(&self, label: &str) {
        for class in ["privkey", "pubkey"] {
            self.tool(Command::new("pkcs11-tool").args([
                "--module",
                MODULE,
                "--login",
                "--pin",
                PIN,
                "--delete-object",
                "--type",
                class,
                "--label",
                label,
            ]));
        }
    }

    /// Writes the config: the CA, the EST listener and the `gateway` certificate keys all in
    /// the token. `extra` goes at the end.
    fn config(&self, extra: &str) -> PathBuf {
        let conf = self.path("gatecert.uci");
        std::fs::write(
            &conf,
            format!(
                "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
                 config ca 'local'\n\toption key_uri '{}'\n\n\
                 config est 'est'\n\toption key_uri '{}'\n\n\
                 config certificate 'gateway'\n\tlist domain 'gateway.local'\n\toption key_uri '{}'\n{extra}",
                self.state().display(),
                self.uri("ca"),
                self.uri("est"),
                self.uri("gateway"),
            ),
        )
        .unwrap();
        conf
    }

    fn gatecert(&self, conf: &Path, args: &[&str]) -> Output {
        let out = self
            .env(
                Command::new(env!("CARGO_BIN_EXE_gatecert"))
                    .arg("--config")
                    .arg(conf),
            )
            .args(args)
            .output()
            .unwrap();
        // A path among the arguments must not make a directory of the log name.
        common::keep_output("pkcs11", &args[..args.len().min(2)].join("-"), &out);
        out
    }

    /// `gatecert run` on 127.0.0.1:`port`, once it listens.
    fn run(&self, conf: &Path, port: u16) -> Service {
        let s = self.spawn(conf, port, &[]);
        self.wait_listening(port);
        s
    }

    /// `gatecert run` on 127.0.0.1:`port` with extra environment, not waiting.
    fn spawn(&self, conf: &Path, port: u16, env: &[(&str, &str)]) -> Service {
        let child = self
            .env(
                Command::new(env!("CARGO_BIN_EXE_gatecert"))
                    .arg("--config")
                    .arg(conf),
            )
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("run.log")).unwrap())
            .spawn()
            .unwrap();
        Service { child, port }
    }

    fn wait_listening(&self, port: u16) {
        let t = Instant::now();
        while !common::listening(("127.0.0.1", port)) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "gatecert run did not listen: {}",
                std::fs::read_to_string(self.path("run.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn token(&self, device: &str, names: &[&str]) -> String {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let token = Tokens::open(&self.state().join("tokens.jnl"))
            .unwrap()
            .add(device, &names, 3600, 1, now())
            .unwrap();
        common::keep_secret(&token);
        token
    }

    /// curl against the service with the local root as trust: (status, body).
    fn curl(&self, port: u16, op: &str, args: &[&str]) -> (u16, Vec<u8>) {
        let body = self.path("curl.body");
        let _ = std::fs::remove_file(&body);
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "10", "--cacert"])
            .arg(self.state().join("ca/root.pem"))
            .arg("--resolve")
            .arg(format!("gateway.local:{port}:127.0.0.1"))
            .arg("-o")
            .arg(&body)
            .args(["-w", "%{http_code}"])
            .args(args)
            .arg(format!("https://gateway.local:{port}{EST}/{op}"))
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, std::fs::read(&body).unwrap_or_default())
    }

    /// An openssl P-256 key and base64 CSR for `cn` (the leaf's key is the sensor's, a file).
    fn csr(&self, cn: &str) -> PathBuf {
        let der = self.path(&format!("{cn}.csr.der"));
        openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            self.path(&format!("{cn}.key")).to_str().unwrap(),
            "-subj",
            &format!("/CN={cn}"),
            "-outform",
            "DER",
            "-out",
            der.to_str().unwrap(),
        ]);
        let b64 = self.path(&format!("{cn}.csr.b64"));
        std::fs::write(&b64, gatecert::crypto::b64(&std::fs::read(&der).unwrap())).unwrap();
        b64
    }

    fn enroll(&self, port: u16, device: &str, token: &str, csr: &Path) -> (u16, Vec<u8>) {
        self.curl(
            port,
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
}

impl Drop for Hsm {
    fn drop(&mut self) {
        common::keep_secrets(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `gatecert run` child, killed and reaped on drop.
struct Service {
    child: Child,
    port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(args: &[&str]) -> Output {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// openssl with its arguments in one line (split at blanks; the temp paths have none).
fn openssl_line(line: &str) -> Output {
    openssl(&line.split_whitespace().collect::<Vec<_>>())
}

/// `openssl s_client` to the service on `port` for `gateway.local`, verifying the chain to
/// `root` (an error fails the handshake), with `extra` arguments.
fn s_client(port: u16, root: &Path, extra: &[&str]) -> Output {
    Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args([
            "-servername",
            "gateway.local",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(root)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Writes `to` as `from` with `old` replaced by `new` (which must occur).
fn rewrite(from: &Path, to: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(from).unwrap();
    assert!(text.contains(old), "{old:?} not in {}", from.display());
    std::fs::write(to, text.replace(old, new)).unwrap();
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Walks `dir`, parses every PEM block of every file, and asserts that no private key is
/// there: no PRIVATE KEY block, and no `*.key` / `key.pem` file at all. Directories named in
/// `skip` (relative to `dir`) are not walked. Returns how many certificates it parsed (so a
/// walk that found nothing can't pass silently).
fn assert_no_private_key_file(dir: &Path, skip: &[&str]) -> usize {
    let mut certs = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let ft = std::fs::symlink_metadata(&p).unwrap().file_type();
            if ft.is_dir() {
                if !skip.iter().any(|s| p == dir.join(s)) {
                    stack.push(p);
                }
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.ends_with(".key") && name != "key.pem" && name != "combined.pem",
                "a private key file in the state dir: {}",
                p.display()
            );
            let bytes = std::fs::read(&p).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            for block in text.split("-----BEGIN ").skip(1) {
                let label = block.split("-----").next().unwrap();
                assert!(
                    !label.contains("PRIVATE KEY"),
                    "{} holds a {label} block",
                    p.display()
                );
                let end = format!("-----END {label}-----");
                assert!(
                    block.contains(&end),
                    "{}: unterminated {label}",
                    p.display()
                );
                let pem = format!(
                    "-----BEGIN {}",
                    &block[..block.find(&end).unwrap() + end.len()]
                );
                if label == "CERTIFICATE" {
                    gatecert::crypto::CertInfo::from_pem(&pem)
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    certs += 1;
                } else {
                    panic!("{}: unexpected PEM block {label}", p.display());
                }
            }
        }
    }
    certs
}

/// The first PEM certificate of an `openssl pkcs7 -print_certs` output.
fn first_cert(pem: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    let start = pem.find("-----BEGIN CERTIFICATE-----").unwrap();
    let stop = pem[start..].find(end).unwrap() + start + end.len();
    format!("{}\n", &pem[start..stop])
}

/// `ca init` makes the issuing key in the token (sensitive, never extractable) and writes no
/// key file; `gatecert run` serves EST over TLS with the listener's key in the token (openssl
/// s_client verifies the chain and the handshake signature); a sensor enrolls and its leaf,
/// signed by the token key, verifies with openssl; no private key file is in the state dir.
/// With the listener's key object then removed from the token, `check` fails naming it, and
/// the service starts all the same: a new listener certificate for a key made in the token.
#[test]
fn ca_init_enroll_and_est_tls_with_keys_in_softhsm() {
    let h = Hsm::new("flow");
    let conf = h.config("");
    let out = h.gatecert(&conf, &["ca", "init"]);
    assert!(out.status.success(), "ca init: {}", text(&out));
    let ca_dir = h.state().join("ca");
    assert!(ca_dir.join("intermediate.pem").exists());
    assert!(!ca_dir.join("intermediate.key").exists());
    assert!(!ca_dir.join("root.key").exists());
    let objects = h.objects();
    assert!(objects.contains("label:      ca"), "{objects}");
    let private = objects
        .split("Private Key Object")
        .nth(1)
        .unwrap_or_else(|| panic!("no private key object: {objects}"));
    assert!(private.contains("never extractable"), "{objects}");
    assert!(private.contains("sensitive"), "{objects}");

    // The intermediate's public key is the token's.
    let int_pem = std::fs::read_to_string(ca_dir.join("intermediate.pem")).unwrap();
    let pubkey = h.token.public_key_der("ca");
    let int = gatecert::crypto::CertInfo::from_pem(&int_pem).unwrap();
    assert_eq!(
        int.spki_der, pubkey,
        "intermediate's key is not the token's"
    );

    let port = free_port();
    let _svc = h.run(&conf, port);

    // TLS with the listener key in the token: openssl verifies chain, name and signature.
    let root = ca_dir.join("root.pem");
    let out = s_client(port, &root, &["-verify_hostname", "gateway.local"]);
    let shown = text(&out);
    assert!(out.status.success(), "s_client: {shown}");
    assert!(shown.contains("Verify return code: 0 (ok)"), "{shown}");
    assert!(
        h.objects().contains("label:      est"),
        "no est key in the token"
    );
    for tls in ["-tls1_2", "-tls1_3"] {
        let out = s_client(port, &root, &[tls]);
        assert!(out.status.success(), "s_client {tls}: {}", text(&out));
    }

    // EST enrollment: the leaf is signed by the intermediate's key in the token.
    let token = h.token("s1", &["s1.local"]);
    let csr = h.csr("s1.local");
    let (code, body) = h.enroll(port, "s1", &token, &csr);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    h.assert_leaf_verifies(&body, "s1", &ca_dir.join("root.pem"), &ca_dir);

    // `check` reports the module, the token and the key it found.
    let out = h.gatecert(&conf, &["check"]);
    let shown = text(&out);
    assert!(
        shown.contains("ok   pkcs11 key ca: module /usr/lib/softhsm/libsofthsm2.so"),
        "{shown}"
    );
    assert!(shown.contains("token \"gw\""), "{shown}");
    assert!(
        shown.contains("key \"ca\" (ec256, non-extractable)"),
        "{shown}"
    );
    assert!(!shown.contains(PIN), "{shown}");

    let certs = assert_no_private_key_file(&h.state(), &[]);
    assert!(certs >= 4, "only {certs} certificates in the state dir");

    // The EST listener's key object removed from the token: `check` names it.
    drop(_svc);
    h.delete_key("est");
    let out = h.gatecert(&conf, &["check"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("FAIL pkcs11 key est:")
            && shown.contains("no key labelled \"est\" (removed from the token?)"),
        "{shown}"
    );
    let port = free_port();
    let mut svc = h.run(&conf, port);
    let out = s_client(port, &root, &[]);
    // The service came up, issued the listener a new certificate for a key made in the token
    // again, and serves TLS with it.
    assert!(out.status.success(), "s_client: {}", text(&out));
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "the service exited"
    );
    let log = std::fs::read_to_string(h.path("run.log")).unwrap();
    assert!(log.contains("the token no longer holds its key"), "{log}");
    let listener = gatecert::crypto::CertInfo::from_pem(
        &std::fs::read_to_string(h.state().join("certs/est-local/live/cert.pem")).unwrap(),
    )
    .unwrap();
    let point = h.token.public_point("est").expect("no new est key");
    assert!(
        listener.spki_der.ends_with(&point),
        "the listener's key is not the new est key"
    );
    assert!(text(&h.gatecert(&conf, &["check"])).contains("ok   pkcs11 key est:"));
    assert_no_private_key_file(&h.state(), &[]);
}

/// The offline-root flow with the intermediate's key in the token: `ca csr` makes the key in
/// the token (no `pending.key`) and a second `ca csr` reuses it; the operator's root (openssl)
/// signs the CSR; `ca install` refuses a certificate for another key and installs the right
/// one, writing no key file; the service then issues leaves that chain to the operator's root.
#[test]
fn ca_csr_and_install_with_the_intermediate_key_in_softhsm() {
    let h = Hsm::new("offline");
    let conf = h.config("");
    let ca_dir = h.state().join("ca");
    let csr = h.path("int.csr");
    let out = h.gatecert(&conf, &["ca", "csr", "--out", csr.to_str().unwrap()]);
    assert!(out.status.success(), "ca csr: {}", text(&out));
    assert!(!ca_dir.join("pending.key").exists());
    assert!(h.objects().contains("label:      ca\n"), "{}", h.objects());
    let again = h.path("again.csr");
    let out = h.gatecert(&conf, &["ca", "csr", "--out", again.to_str().unwrap()]);
    assert!(out.status.success(), "ca csr again: {}", text(&out));
    let pubkey =
        |csr: &Path| openssl(&["req", "-in", csr.to_str().unwrap(), "-noout", "-pubkey"]).stdout;
    assert_eq!(
        pubkey(&csr),
        pubkey(&again),
        "a second ca csr made another key"
    );
    assert_eq!(h.objects().matches("label:      ca\n").count(), 2);

    // The operator's root signs it as a name-constrained CA.
    let (op_key, op_crt) = (h.path("op.key"), h.path("op.crt"));
    openssl_line(&format!(
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=OperatorRoot \
         -days 3650 -keyout {} -out {}",
        op_key.display(),
        op_crt.display()
    ));
    std::fs::write(
        h.path("ext.cnf"),
        "[v]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n\
         nameConstraints=critical,permitted;DNS:local\n",
    )
    .unwrap();
    let sign = |csr: &Path, out: &str| {
        let crt = h.path(out);
        openssl_line(&format!(
            "x509 -req -in {} -CA {} -CAkey {} -CAcreateserial -days 365 -extfile {} \
             -extensions v -out {}",
            csr.display(),
            op_crt.display(),
            op_key.display(),
            h.path("ext.cnf").display(),
            crt.display()
        ));
        let pem = h.path(&format!("{out}.chain"));
        std::fs::write(
            &pem,
            std::fs::read_to_string(&crt).unwrap() + &std::fs::read_to_string(&op_crt).unwrap(),
        )
        .unwrap();
        pem
    };
    // A certificate for another key (an openssl CSR) is refused and installs nothing.
    let other_csr = h.path("other.csr");
    openssl_line(&format!(
        "req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other \
         -keyout {} -out {}",
        h.path("other.key").display(),
        other_csr.display()
    ));
    let wrong = sign(&other_csr, "other.crt");
    let out = h.gatecert(&conf, &["ca", "install", wrong.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not the pending key's"),
        "{}",
        text(&out)
    );
    assert!(!ca_dir.join("intermediate.pem").exists());

    let good = sign(&csr, "int.crt");
    let out = h.gatecert(&conf, &["ca", "install", good.to_str().unwrap()]);
    assert!(out.status.success(), "ca install: {}", text(&out));
    for f in ["intermediate.key", "root.key", "pending.key"] {
        assert!(!ca_dir.join(f).exists(), "{f} written");
    }
    let int = gatecert::crypto::CertInfo::from_pem(
        &std::fs::read_to_string(ca_dir.join("intermediate.pem")).unwrap(),
    )
    .unwrap();
    let point = h.token.public_point("ca").expect("no ca public key");
    assert!(
        int.spki_der.ends_with(&point),
        "the intermediate's key is not the token's"
    );

    // The service issues from it: the leaf chains to the operator's root.
    let port = free_port();
    let _svc = h.run(&conf, port);
    let token = h.token("s3", &["s3.local"]);
    let (code, body) = h.enroll(port, "s3", &token, &h.csr("s3.local"));
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    h.assert_leaf_verifies(&body, "s3", &op_crt, &ca_dir);
    let certs = assert_no_private_key_file(&h.state(), &[]);
    assert!(certs >= 3, "only {certs} certificates in the state dir");
}

/// A wrong PIN, a missing token and a removed CA key object each give a clear error from
/// `check`; with the CA key removed the service still serves /cacerts and TLS, while issuance
/// answers 503 and logs an error, and it does not crash. Started with the wrong PIN, it keeps
/// running and opens EST once the PIN is right.
#[test]
fn token_faults_give_clear_errors_and_the_service_keeps_serving() {
    let h = Hsm::new("faults");
    let conf = h.config("");
    let out = h.gatecert(&conf, &["ca", "init"]);
    assert!(out.status.success(), "ca init: {}", text(&out));
    // A second init finds the CA and refuses, with no second key made.
    let out = h.gatecert(&conf, &["ca", "init"]);
    assert!(!out.status.success());
    assert_eq!(
        h.objects().matches("label:      ca").count(),
        2,
        "{}",
        h.objects()
    );

    // Wrong PIN.
    std::fs::write(h.path("pin"), "wrongQ9x\n").unwrap();
    let out = h.gatecert(&conf, &["check"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("FAIL pkcs11 key ca:"), "{shown}");
    assert!(shown.contains("refused the PIN (wrong PIN)"), "{shown}");
    assert!(!shown.contains("wrongQ9x"), "{shown}");
    std::fs::write(h.path("pin"), format!("{PIN}\n")).unwrap();

    // Missing token.
    let other = h.path("other.uci");
    rewrite(
        &conf,
        &other,
        "token=gw;object=ca?",
        "token=nope;object=ca?",
    );
    let out = h.gatecert(&other, &["check"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("no such token"), "{shown}");
    assert!(shown.contains("tokens present: \"gw\""), "{shown}");

    // The service, then the CA key object removed under it.
    let port = free_port();
    let svc = h.run(&conf, port);
    let (code, _) = h.curl(svc.port, "cacerts", &[]);
    assert_eq!(code, 200);
    h.delete_key("ca");
    let out = h.gatecert(&conf, &["check"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("FAIL pkcs11 key ca:"), "{shown}");
    assert!(
        shown.contains("no key labelled \"ca\" (removed from the token?)"),
        "{shown}"
    );
    // `status` (what the service's alerts read) says so: attention, and why.
    let out = h.gatecert(&conf, &["status"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("the CA's issuing key \"ca\" is not in token"),
        "{shown}"
    );
    assert!(!shown.contains(PIN), "the PIN in status");

    let token = h.token("s2", &["s2.local"]);
    let csr = h.csr("s2.local");
    let (code, body) = h.enroll(port, "s2", &token, &csr);
    assert_eq!(code, 503, "{}", String::from_utf8_lossy(&body));
    // Still serving: /cacerts over TLS with the listener's token key.
    let (code, _) = h.curl(port, "cacerts", &[]);
    assert_eq!(code, 200);
    let log = std::fs::read_to_string(h.path("run.log")).unwrap();
    assert!(log.contains("the CA's issuing key is unavailable"), "{log}");
    assert!(!log.contains(PIN), "the PIN in the service log");
    let mut svc = svc;
    assert!(
        svc.child.try_wait().unwrap().is_none(),
        "the service exited"
    );

    // A restart with the key gone: the service comes up and serves /cacerts all the same.
    drop(svc);
    let port = free_port();
    let _svc = h.run(&conf, port);
    let (code, _) = h.curl(port, "cacerts", &[]);
    assert_eq!(code, 200);
    let (code, _) = h.enroll(port, "s2", &token, &csr);
    assert_eq!(code, 503);
    assert_no_private_key_file(&h.state(), &[]);

    // A start with the wrong PIN: the listener's key can't be used, the service does not exit
    // (it logs why, without the PIN) and opens EST at a tick once the PIN is right.
    drop(_svc);
    std::fs::write(h.path("pin"), "wrongQ9x\n").unwrap();
    let port = free_port();
    let mut svc = h.spawn(&conf, port, &[("GATECERT_TICK_SECS", "1")]);
    let t = Instant::now();
    let log = || std::fs::read_to_string(h.path("run.log")).unwrap_or_default();
    while !log().contains("EST listener: ") && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert!(svc.child.try_wait().unwrap().is_none(), "exited: {}", log());
    assert!(
        log().contains("refused the PIN (wrong PIN); trying the token again"),
        "{}",
        log()
    );
    assert!(!log().contains("wrongQ9x"));
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    std::fs::write(h.path("pin"), format!("{PIN}\n")).unwrap();
    h.wait_listening(port);
    let (code, _) = h.curl(port, "cacerts", &[]);
    assert_eq!(code, 200);
    assert!(
        log().contains("the key in the token is usable again"),
        "{}",
        log()
    );
}
