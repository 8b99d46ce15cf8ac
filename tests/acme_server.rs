//! The local ACME server (RFC 8555, issue 16) against the real `gatecert run` binary on
//! 127.0.0.1, with real ACME clients as leaves: lego and certbot register with External Account
//! Binding (`gatecert token add --acme`), obtain (http-01 served by the client, validated by the
//! gateway through `static_host` and `http_port`; or pre-authorized), renew and revoke; every
//! chain verifies against the gateway's root with `openssl verify`. The refusals (no EAB, a
//! reused or revoked token, a name outside the token, a replayed nonce, a wrong-key JWS) are in
//! tests/acme_server/refusals.rs.

#[path = "acme_server/broker.rs"]
mod broker;
mod common;
#[path = "acme_server/outage.rs"]
mod outage;
#[path = "acme_server/refusals.rs"]
mod refusals;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::free_port;

/// A `gatecert run` child with its own state dir, serving EST and ACME on 127.0.0.1.
pub struct Gatecert {
    child: Child,
    pub dir: PathBuf,
    pub port: u16,
    /// The port the gateway validates http-01 on (`http_port`); leaves serve there.
    pub http_port: u16,
    /// The name clients use for the gateway (resolved to 127.0.0.1).
    pub host: String,
}

impl Gatecert {
    /// `acme` is the body of the `config acme_server` section after `option enabled '1'`.
    pub fn start(tag: &str, acme: &str) -> Gatecert {
        Gatecert::start_with(
            tag,
            acme,
            "config certificate 'gateway'\n\tlist domain 'gateway.local'\n\tlist ip '127.0.0.1'\n\n\
             config ca 'local'\n\tlist allow_suffix 'local'\n\tlist allow_ip '127.0.0.1/32'\n",
        )
    }

    /// Like [`Gatecert::start`] with `sections` (certificate, ca, broker) instead of the
    /// standalone gateway and CA.
    pub fn start_with(tag: &str, acme: &str, sections: &str) -> Gatecert {
        let dir = std::env::temp_dir().join(format!("gatecert-acmed-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let http_port = free_port();
        let conf = dir.join("gatecert.uci");
        std::fs::write(
            &conf,
            format!(
                "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log stderr\n\n\
                 {sections}\n\
                 config acme_server 'acme'\n\toption enabled '1'\n\toption http_port '{http_port}'\n{acme}",
                state = dir.join("state").display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&conf)
            .arg("run")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(common::log_file("acme_server", "run"))
            .stderr(common::log_file("acme_server", "run"))
            .spawn()
            .unwrap();
        let g = Gatecert {
            child,
            dir,
            port,
            http_port,
            host: "127.0.0.1".into(),
        };
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

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn directory(&self) -> String {
        format!("https://{}:{}/acme/directory", self.host, self.port)
    }

    /// `gatecert [--config] ARGS`, with its output kept for tests/secrets.sh.
    pub fn cli(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.uci"))
            .args(args)
            .output()
            .unwrap();
        common::keep_output("acme_server", "cli", &out);
        out
    }

    /// `gatecert token add DEVICE --name N.. --acme`: (eab_kid, eab_hmac).
    pub fn eab(&self, device: &str, names: &[&str]) -> (String, String) {
        let mut args = vec!["token", "add", device, "--acme"];
        for n in names {
            args.extend(["--name", n]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.path("gatecert.uci"))
            .args(&args)
            .output()
            .unwrap();
        // stdout is the binding itself, shown once by design: only stderr goes to the kept logs.
        let mut kept = out.clone();
        kept.stdout.clear();
        common::keep_output("acme_server", "cli", &kept);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k}= in {text}"))
                .to_owned()
        };
        let (kid, hmac) = (field("eab_kid"), field("eab_hmac"));
        common::keep_secret(&hmac);
        (kid, hmac)
    }

    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.state().join("audit.log")).unwrap_or_default()
    }

    /// Asserts an audit line with `event` mentioning all of `needles`.
    pub fn assert_audit(&self, event: &str, needles: &[&str]) {
        let log = self.audit();
        let hit = log.lines().any(|l| {
            l.contains(&format!("\"event\":\"{event}\"")) && needles.iter().all(|n| l.contains(n))
        });
        assert!(hit, "no {event} audit line with {needles:?} in:\n{log}");
    }

    pub fn count_audit(&self, event: &str) -> usize {
        self.audit()
            .lines()
            .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
            .count()
    }

    /// `GET /PATH` over the gateway's TLS with curl (which must succeed): the body is saved in
    /// `<tag>.body`; returns (that path, the response headers).
    pub fn get(&self, path: &str, tag: &str) -> (PathBuf, String) {
        let (body, headers) = (
            self.path(&format!("{tag}.body")),
            self.path(&format!("{tag}.headers")),
        );
        common::run(
            Command::new("curl")
                .args(["-sS", "--fail", "--max-time", "10", "--cacert"])
                .arg(self.path("root.pem"))
                .arg("-o")
                .arg(&body)
                .arg("-D")
                .arg(&headers)
                .arg(format!("https://{}:{}/{path}", self.host, self.port)),
        );
        (body, std::fs::read_to_string(&headers).unwrap_or_default())
    }

    /// The CRL served at `GET /crl` (RFC 5280 §5), converted by `openssl crl`: (PEM path,
    /// `openssl crl -text` output).
    pub fn crl(&self, tag: &str) -> (PathBuf, String) {
        let (der, _) = self.get("crl", tag);
        common::crl_to_pem(&self.dir, tag, &std::fs::read(&der).unwrap())
    }

    /// `openssl verify -crl_check` of `leaf` against the root, the local intermediate and `crl`.
    pub fn verify_with_crl(&self, leaf: &Path, crl: &Path) -> (bool, String) {
        common::verify_with_crl(
            &self.path("root.pem"),
            &self.state().join("ca/intermediate.pem"),
            crl,
            leaf,
        )
    }

    /// `openssl verify` of `cert` (leaf) with `chain` (intermediates) against the gateway root.
    pub fn verify(&self, cert: &Path, chain: &Path) {
        common::verify_chain(&self.path("root.pem"), chain, cert);
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

/// The `certificate 'gw'`, `ca` and `broker` sections of a gateway that brokers to the ACME
/// CA at `directory` (HTTPS trusted through `ca_bundle`): names under `suffix` and 127.0.0.1,
/// the gateway's own http-01 on `http`, each upstream call bounded by `timeout` seconds.
pub fn broker_sections(
    directory: &str,
    ca_bundle: &Path,
    suffix: &str,
    http: u16,
    timeout: u64,
    upstream_wait: u64,
) -> String {
    format!(
        "config certificate 'gw'\n\toption directory '{directory}'\n\
         \toption ca_bundle '{ca}'\n\tlist domain 'gw.{suffix}'\n\tlist ip '127.0.0.1'\n\
         \toption challenge 'http-01'\n\toption http_listen '127.0.0.1:{http}'\n\
         \toption timeout '{timeout}'\n\n\
         config ca 'local'\n\tlist allow_suffix '{suffix}'\n\tlist allow_ip '127.0.0.1/32'\n\n\
         config broker 'upstream'\n\toption certificate 'gw'\n\
         \toption upstream_wait '{upstream_wait}'\n\toption interim_lifetime '1h'\n",
        ca = ca_bundle.display(),
    )
}

/// `openssl x509 -serial` of a PEM file: the upper-case hex serial.
pub fn serial_of(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_owned()
}

/// lego with the gateway's root trusted; `args` go before the command's own.
pub fn lego(g: &Gatecert, home: &str, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg("lego")
        .env("LEGO_CA_CERTIFICATES", g.path("root.pem"))
        .arg("--path")
        .arg(g.path(home))
        .arg("--server")
        .arg(g.directory())
        .args(["--accept-tos", "--email", "leaf@sensors.local"])
        .args(args)
        .output()
        .unwrap();
    common::keep_output("acme_server", "lego", &out);
    out
}

/// `lego ARGS renew` now (`--days` past any lifetime: lego has no ARI), no random sleep.
pub fn lego_renew(g: &Gatecert, home: &str, args: &[&str]) -> Output {
    lego(
        g,
        home,
        &[args, &["renew", "--days", "9999", "--no-random-sleep"]].concat(),
    )
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lego_registers_obtains_renews_and_revokes_over_http01() {
    let g = Gatecert::start("lego", "\tlist static_host 'cam1.local=127.0.0.1'\n");
    let (kid, hmac) = g.eab("cam1", &["cam1.local"]);
    let http = format!("127.0.0.1:{}", g.http_port);
    let common_args = [
        "--eab",
        "--kid",
        &kid,
        "--hmac",
        &hmac,
        "--domains",
        "cam1.local",
        "--http",
        "--http.port",
        &http,
        "--key-type",
        "ec256",
    ];
    let run = lego(&g, "lego", &[&common_args[..], &["run"]].concat());
    ok(&run, "lego run");
    let certs = g.path("lego/certificates");
    let (crt, issuer) = (
        certs.join("cam1.local.crt"),
        certs.join("cam1.local.issuer.crt"),
    );
    g.verify(&crt, &issuer);
    let first = serial_of(&crt);
    g.assert_audit("acme.account", &["\"device\":\"cam1\""]);
    g.assert_audit("acme.issue", &["\"device\":\"cam1\"", "cam1.local", &first]);
    // The inventory has the device's row.
    let leaves = String::from_utf8(g.cli(&["leaves"]).stdout).unwrap();
    assert!(
        leaves.contains("cam1") && leaves.contains(&first),
        "{leaves}"
    );

    // Renew: the same account (no EAB needed again; the token was one use), a new certificate.
    let renew = lego_renew(&g, "lego", &common_args);
    ok(&renew, "lego renew");
    let second = serial_of(&crt);
    assert_ne!(first, second, "renewal gave the same certificate");
    g.verify(&crt, &issuer);
    assert_eq!(g.count_audit("acme.issue"), 2);

    // Revoke by the account.
    let revoke = lego(
        &g,
        "lego",
        &[&common_args[..], &["revoke", "--keep", "--reason", "4"]].concat(),
    );
    ok(&revoke, "lego revoke");
    // One revocation path with `gatecert leaves revoke`: the CRL served at /crl lists it (and
    // not the first, which was renewed, not revoked), `openssl verify -crl_check` refuses it.
    let (crl, text) = g.crl("after-revoke");
    assert!(text.contains(&second), "{text}");
    assert!(text.contains("Superseded"), "{text}");
    assert!(!text.contains(&first), "{text}");
    let (passed, why) = g.verify_with_crl(&crt, &crl);
    assert!(!passed && why.contains("certificate revoked"), "{why}");
    // The inventory lists it as revoked; the device itself is not cut off.
    let leaves = String::from_utf8(g.cli(&["leaves"]).stdout).unwrap();
    assert!(leaves.contains("revoked certificates"), "{leaves}");
    assert!(
        leaves
            .lines()
            .any(|l| l.starts_with("cam1 ") && l.contains(" active ")),
        "{leaves}"
    );
    g.assert_audit(
        "acme.revoke",
        &[
            &second,
            "\"by\":\"account\"",
            "\"reason\":\"superseded\"",
            "\"device\":\"cam1\"",
        ],
    );
    // Revoking it again: alreadyRevoked, and audited once only.
    let again = lego(&g, "lego", &[&common_args[..], &["revoke"]].concat());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("alreadyRevoked"));
    assert_eq!(g.count_audit("acme.revoke"), 1, "{}", g.audit());
}

#[test]
fn lego_preauthorized_names_need_no_challenge() {
    // Nothing listens on http_port: any validation attempt would fail the order.
    let g = Gatecert::start("preauth", "\toption preauthorized '1'\n");
    let (kid, hmac) = g.eab("cam3", &["cam3.local"]);
    let http = format!("127.0.0.1:{}", free_port());
    let run = lego(
        &g,
        "lego",
        &[
            "--eab",
            "--kid",
            &kid,
            "--hmac",
            &hmac,
            "--domains",
            "cam3.local",
            "--http",
            "--http.port",
            &http,
            "run",
        ],
    );
    ok(&run, "lego run (pre-authorized)");
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(!text.contains("Trying to solve HTTP-01"), "{text}");
    let certs = g.path("lego/certificates");
    g.verify(
        &certs.join("cam3.local.crt"),
        &certs.join("cam3.local.issuer.crt"),
    );
    g.assert_audit("acme.issue", &["\"device\":\"cam3\"", "cam3.local"]);
}

#[test]
fn certbot_registers_obtains_renews_and_revokes_over_http01() {
    let g = Gatecert::start("certbot", "\tlist static_host 'cam2.local=127.0.0.1'\n");
    let (kid, hmac) = g.eab("cam2", &["cam2.local"]);
    let dirs = |cmd: &mut Command| {
        cmd.env("REQUESTS_CA_BUNDLE", g.path("root.pem"))
            .arg("--config-dir")
            .arg(g.path("certbot/c"))
            .arg("--work-dir")
            .arg(g.path("certbot/w"))
            .arg("--logs-dir")
            .arg(g.path("certbot/l"))
            .arg("--non-interactive");
    };
    let certbot = |args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "certbot"]).args(args);
        dirs(&mut cmd);
        let out = cmd.output().unwrap();
        common::keep_output("acme_server", "certbot", &out);
        out
    };
    let port = g.http_port.to_string();
    let dir = g.directory();
    let obtain = certbot(&[
        "certonly",
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        &port,
        "--server",
        &dir,
        "--eab-kid",
        &kid,
        "--eab-hmac-key",
        &hmac,
        "-d",
        "cam2.local",
        "--agree-tos",
        "--register-unsafely-without-email",
    ]);
    ok(&obtain, "certbot certonly");
    // certbot's account key is RSA: the account's requests were RS256 JWS.
    let accounts = std::fs::read_to_string(g.state().join("acme/accounts.json")).unwrap();
    assert!(accounts.contains("\"kty\": \"RSA\""), "{accounts}");
    let live = g.path("certbot/c/live/cam2.local");
    g.verify(&live.join("cert.pem"), &live.join("chain.pem"));
    let first = serial_of(&live.join("cert.pem"));
    g.assert_audit("acme.issue", &["\"device\":\"cam2\"", &first]);

    let renew = certbot(&["renew", "--force-renewal", "--no-random-sleep-on-renew"]);
    ok(&renew, "certbot renew");
    let second = serial_of(&live.join("cert.pem"));
    assert_ne!(first, second);
    g.verify(&live.join("cert.pem"), &live.join("chain.pem"));

    // Revoke signed by the certificate's own key (RFC 8555 7.6), not the account.
    let cert = live.join("cert.pem");
    let key = live.join("privkey.pem");
    let revoke = certbot(&[
        "revoke",
        "--server",
        &dir,
        "--cert-path",
        cert.to_str().unwrap(),
        "--key-path",
        key.to_str().unwrap(),
        "--no-delete-after-revoke",
    ]);
    ok(&revoke, "certbot revoke");
    g.assert_audit("acme.revoke", &[&second, "\"by\":\"certificate key\""]);
}

#[test]
fn lego_obtains_over_tls_alpn01() {
    let tls_port = free_port();
    let g = Gatecert::start(
        "tlsalpn",
        &format!("\tlist static_host 'cam6.local=127.0.0.1'\n\toption tls_port '{tls_port}'\n"),
    );
    let (kid, hmac) = g.eab("cam6", &["cam6.local"]);
    let (kid, hmac) = (format!("--kid={kid}"), format!("--hmac={hmac}"));
    let tls = format!("--tls.port=127.0.0.1:{tls_port}");
    let run = lego(
        &g,
        "lego",
        &[
            "--eab",
            &kid,
            &hmac,
            "--domains",
            "cam6.local",
            "--tls",
            &tls,
            "run",
        ],
    );
    ok(&run, "lego run (tls-alpn-01)");
    assert!(String::from_utf8_lossy(&run.stderr).contains("TLS-ALPN-01"));
    let certs = g.path("lego/certificates");
    g.verify(
        &certs.join("cam6.local.crt"),
        &certs.join("cam6.local.issuer.crt"),
    );
    g.assert_audit("acme.issue", &["\"device\":\"cam6\"", "cam6.local"]);
}

/// uacme (libcurl with GnuTLS) reads only the system trust store: it runs in a private mount
/// namespace where the gateway's root is bind-mounted over the system bundle.
fn uacme(g: &Gatecert, args: &[&str]) -> Output {
    let bundle = g.path("bundle.pem");
    if !bundle.exists() {
        std::fs::copy(g.path("root.pem"), &bundle).unwrap();
    }
    let out = Command::new("timeout")
        .args(["120", "unshare", "-m", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/ssl/certs/ca-certificates.crt && exec uacme \"$@\"")
        .arg(&bundle)
        .arg("-v")
        .arg("-c")
        .arg(g.path("uacme"))
        .arg("-a")
        .arg(g.directory())
        .args(args)
        .env(
            "UACME_CHALLENGE_PATH",
            g.path("www/.well-known/acme-challenge"),
        )
        .output()
        .unwrap();
    common::keep_output("acme_server", "uacme", &out);
    out
}

#[test]
fn uacme_registers_obtains_renews_and_revokes_over_http01() {
    let g = Gatecert::start("uacme", "\tlist static_host 'cam7.local=127.0.0.1'\n");
    let (kid, hmac) = g.eab("cam7", &["cam7.local"]);
    std::fs::create_dir_all(g.path("www/.well-known/acme-challenge")).unwrap();
    // The leaf's web server for http-01.
    let _www = common::Proc(
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(g.path("www"))
            .arg(g.http_port.to_string())
            .stdout(common::log_file("acme_server", "www"))
            .stderr(common::log_file("acme_server", "www"))
            .spawn()
            .unwrap(),
    );
    common::wait_for_port(&format!("127.0.0.1:{}", g.http_port));
    let eab = format!("{kid}:{hmac}");
    ok(
        &uacme(&g, &["-y", "-t", "EC", "-e", &eab, "new"]),
        "uacme new",
    );
    let hook = "/usr/share/uacme/uacme.sh";
    ok(
        &uacme(&g, &["-t", "EC", "-h", hook, "issue", "cam7.local"]),
        "uacme issue",
    );
    let cert = g.path("uacme/cam7.local/cert.pem");
    // uacme's cert.pem is the chain, leaf first.
    g.verify(&cert, &cert);
    let first = serial_of(&cert);
    g.assert_audit("acme.issue", &["\"device\":\"cam7\"", &first]);
    ok(
        &uacme(&g, &["-t", "EC", "-f", "-h", hook, "issue", "cam7.local"]),
        "uacme renew",
    );
    let second = serial_of(&cert);
    assert_ne!(first, second);
    g.verify(&cert, &cert);
    ok(
        &uacme(&g, &["revoke", cert.to_str().unwrap()]),
        "uacme revoke",
    );
    g.assert_audit("acme.revoke", &[&second]);
}
