//! The real binary against a second real ACME server, acme2certifier (PyPI, openssl CA handler)
//! started by tests/peers/a2c-up.sh on 127.0.0.1:9543. It has what Debian's pebble 2.4 lacks:
//! ARI (RFC 9773 renewalInfo) and profiles (draft-ietf-acme-profiles); also EAB, IP identifiers,
//! revocation and key rollover. Its resolver is the script's fake DNS (every A query → 127.0.0.1,
//! TXT records via that challtestsrv's management API, here on :8056).
//!
//! http-01 needs port 80 and tls-alpn-01 port 443 (shared with tests/acme_pebble.rs, which cargo
//! runs as another test binary, one after the other), so the server cases run in order inside
//! one #[test]. The server is restarted per configuration (plain, profiles, EAB required).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;

use common::{run, TempDir};

const UP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/a2c-up.sh");
const DOWN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/a2c-down.sh");
/// Where `.ci/run` (A2C_INSTALL_ONLY=1) installs the venv; the tests reuse it.
const INSTALL_BASE: &str = "/tmp/gatecert-peers/a2c";
/// This binary's own working dir: its own PKI, config and database.
const BASE: &str = "/tmp/gatecert-peers/a2c-it";
/// This binary's own fake DNS: a2c's resolver on :53 only, and a management port of its own,
/// so that pebble's challtestsrv (8053, 8055) from tests/acme_pebble.rs never collides with it.
const FAKEDNS: [(&str, &str); 3] = [
    ("FAKEDNS_DIR", "/tmp/gatecert-peers/a2c-it/fakedns"),
    ("FAKEDNS_LISTEN", "127.0.0.1:53"),
    ("FAKEDNS_MGMT", "127.0.0.1:8056"),
];
const CHALLTESTSRV: &str = "http://127.0.0.1:8056";

/// A running acme2certifier, stopped (with the fake DNS) on drop.
struct A2c {
    directory: String,
    root: PathBuf,
    /// The launcher's record of request payloads: `neworders.log`, `revokecert.log`.
    requests: PathBuf,
    /// (kid, base64url HMAC key) in EAB mode.
    eab: Option<(String, String)>,
}

impl A2c {
    /// Installs the venv if needed; `None` (skip) when that is impossible outside CI.
    fn install() -> Option<()> {
        let venv = Path::new(INSTALL_BASE).join("venv");
        if !venv.join("bin/python").exists() {
            let out = Command::new("bash")
                .arg(UP)
                .env("A2C_INSTALL_ONLY", "1")
                .env("A2C_BASE", INSTALL_BASE)
                .output()
                .unwrap();
            if !out.status.success() {
                let msg = String::from_utf8_lossy(&out.stderr);
                assert!(
                    std::env::var_os("CI").is_none(),
                    "acme2certifier install failed: {msg}"
                );
                eprintln!("acme2certifier cannot be installed; skipping: {msg}");
                return None;
            }
        }
        std::fs::create_dir_all(BASE).unwrap();
        let link = Path::new(BASE).join("venv");
        if !link.exists() {
            std::os::unix::fs::symlink(&venv, &link).unwrap();
        }
        Some(())
    }

    /// Starts the server with the script's env knobs (`A2C_PROFILES`, `A2C_REQUIRE_EAB`).
    fn start(knobs: &[(&str, &str)]) -> A2c {
        let _ = std::fs::remove_dir_all(Path::new(BASE).join("requests"));
        let out = Command::new("bash")
            .arg(UP)
            .env("A2C_BASE", BASE)
            .envs(FAKEDNS)
            .envs(knobs.iter().copied())
            .output()
            .unwrap();
        if !out.status.success() {
            A2c::stop(false);
            panic!("a2c-up.sh failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_owned))
        };
        A2c {
            directory: var("DIRECTORY_URL").expect("DIRECTORY_URL"),
            root: var("ROOT_PEM").expect("ROOT_PEM").into(),
            requests: var("REQUESTS").expect("REQUESTS").into(),
            eab: var("EAB_KID").zip(var("EAB_HMAC")),
        }
    }

    /// Stops this binary's a2c (PID file) and, unless `keep_dns`, its fake DNS.
    /// Never panics (it runs in Drop); a2c-down.sh always exits 0.
    fn stop(keep_dns: bool) {
        let _ = Command::new("bash")
            .arg(DOWN)
            .env("A2C_BASE", BASE)
            .envs(FAKEDNS)
            .env("KEEP_FAKEDNS", if keep_dns { "1" } else { "0" })
            .output();
    }

    /// Restarts the server with other knobs, keeping the fake DNS.
    fn restart(self, knobs: &[(&str, &str)]) -> A2c {
        A2c::stop(true);
        // Not dropped: its Drop would stop the fake DNS too.
        std::mem::forget(self);
        A2c::start(knobs)
    }

    /// The newOrder payloads the server received (captured by the script's launcher).
    fn orders(&self) -> Vec<serde_json::Value> {
        self.payloads("neworders")
    }

    /// The payloads of POSTs to one endpoint, as the server received them.
    fn payloads(&self, endpoint: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.requests.join(format!("{endpoint}.log")))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// One column of a2c's own database (`$A2C_BASE/acme_srv.db`), via python3's sqlite3.
    fn db(&self, sql: &str, arg: &str) -> String {
        let out = run(Command::new("python3").args([
            "-c",
            "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(sys.argv[2],(sys.argv[3],)).fetchone(); print(r[0] if r else '')",
            &format!("{BASE}/acme_srv.db"),
            sql,
            arg,
        ]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn curl(&self, url: &str) -> String {
        let out =
            run(Command::new("curl").args(["-sSf", "--cacert", self.root.to_str().unwrap(), url]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for A2c {
    fn drop(&mut self) {
        A2c::stop(false);
    }
}

struct Case<'a> {
    a2c: &'a A2c,
    dir: TempDir,
}

impl<'a> Case<'a> {
    fn new(a2c: &'a A2c, tag: &str) -> Case<'a> {
        Case {
            a2c,
            dir: TempDir::new(&format!("a2c-{tag}")),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the UCI config: one `certificate 'gw'` section with `options` added.
    fn config(&self, options: &str) {
        let text = format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory '{}'\n\toption ca_bundle '{}'\n\
             \toption email 'ops@example.com'\n{options}",
            self.state().display(),
            self.a2c.directory,
            self.a2c.root.display(),
        );
        std::fs::write(self.dir.path().join("gatecert.conf"), text).unwrap();
    }

    fn gatecert_at(&self, args: &[&str], now: Option<i64>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatecert"));
        cmd.arg("--config")
            .arg(self.dir.path().join("gatecert.conf"))
            .args(args)
            .env_remove("GATECERT_FAKE_NOW");
        if let Some(t) = now {
            cmd.env("GATECERT_FAKE_NOW", t.to_string());
        }
        cmd.output().unwrap()
    }

    fn gatecert(&self, args: &[&str]) -> Output {
        self.gatecert_at(args, None)
    }

    fn live(&self, file: &str) -> String {
        self.state()
            .join("certs/gw/live")
            .join(file)
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn openssl(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run(Command::new("openssl").args(args)).stdout).into_owned()
    }

    /// The live chain verifies to a2c's root and the key matches the certificate.
    fn check_live(&self) {
        let out = self.openssl(&[
            "verify",
            "-CAfile",
            self.a2c.root.to_str().unwrap(),
            "-untrusted",
            &self.live("chain.pem"),
            &self.live("cert.pem"),
        ]);
        assert!(out.contains(": OK"), "{out}");
        let a = self.openssl(&["pkey", "-pubout", "-in", &self.live("key.pem")]);
        let b = self.openssl(&["x509", "-pubkey", "-noout", "-in", &self.live("cert.pem")]);
        assert_eq!(a, b, "key matches cert");
        let mode = std::fs::metadata(self.live("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// The serial as openssl prints it (upper-case hex).
    fn serial(&self) -> String {
        let s = self.openssl(&["x509", "-noout", "-serial", "-in", &self.live("cert.pem")]);
        s.trim().trim_start_matches("serial=").to_owned()
    }

    fn sans(&self) -> String {
        self.openssl(&[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            &self.live("cert.pem"),
        ])
    }

    /// RFC 9773 §4.1 certID of the live certificate, computed from openssl's output:
    /// base64url(AKI keyIdentifier) "." base64url(DER serial INTEGER contents).
    fn cert_id(&self) -> String {
        let aki = self.openssl(&[
            "x509",
            "-noout",
            "-ext",
            "authorityKeyIdentifier",
            "-in",
            &self.live("cert.pem"),
        ]);
        let keyid = aki
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap()
            .trim_start_matches("keyid:");
        let mut serial = hex(&self.serial());
        if serial[0] & 0x80 != 0 {
            serial.insert(0, 0);
        }
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}", b64.encode(hex(keyid)), b64.encode(serial))
    }

    /// The single account directory under state_dir.
    fn account_dir(&self) -> PathBuf {
        std::fs::read_dir(self.state().join("accounts"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    let s = if s.len() % 2 == 1 { format!("0{s}") } else { s };
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn expect(out: &Output, want: i32) {
    assert_eq!(code(out), want, "exit code; stderr:\n{}", stderr(out));
}

fn unix(rfc3339: &str) -> i64 {
    gatecert::crypto::parse_rfc3339(rfc3339).unwrap()
}

/// http-01 standalone, then ARI-driven renewal with `replaces`, revocation and key rollover.
fn http01_ari_revoke_rollover(a: &A2c) {
    let c = Case::new(a, "http01");
    c.config("\tlist domain 'gw1.test'\n\tlist domain 'www.gw1.test'\n\toption http_listen '127.0.0.1:80'\n");
    let out = c.gatecert(&["renew", "-v"]);
    expect(&out, 0);
    assert!(!stderr(&out).contains("PRIVATE KEY"));
    c.check_live();
    assert!(c.sans().contains("DNS:www.gw1.test"), "{}", c.sans());
    let first = &a.orders()[a.orders().len() - 1];
    assert!(first.get("replaces").is_none(), "{first}");

    // ARI: the server's window for this certificate, fetched here with its certID.
    let id = c.cert_id();
    let info: serde_json::Value = serde_json::from_str(&a.curl(&format!(
        "{}/{id}",
        a.directory.replace("/directory", "/acme/renewal-info")
    )))
    .unwrap();
    let start = unix(info["suggestedWindow"]["start"].as_str().unwrap());
    let end = unix(info["suggestedWindow"]["end"].as_str().unwrap());
    assert!(start < end, "{info}");

    // (a) Before the window: nothing due, nothing changes; the pick lies inside the window.
    let cert_before = std::fs::read(c.live("cert.pem")).unwrap();
    let serial_before = c.serial();
    let sent = a.orders().len();
    let out = c.gatecert_at(&["renew", "-v"], Some(start - 600));
    expect(&out, 1);
    assert_eq!(a.orders().len(), sent, "no order before the window");
    assert!(stderr(&out).contains("(ARI window)"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&id),
        "gatecert asked for {id}: {}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(c.live("cert.pem")).unwrap(), cert_before);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.state().join("certs/gw/state.json")).unwrap(),
    )
    .unwrap();
    let at = state["ari"]["at"].as_i64().unwrap();
    assert_eq!(state["ari"]["window"]["start"].as_i64(), Some(start));
    assert_eq!(state["ari"]["window"]["end"].as_i64(), Some(end));
    assert!((start..=end).contains(&at), "{state} vs {info}");
    // Asking again keeps the same pick.
    expect(&c.gatecert_at(&["renew"], Some(start - 600)), 1);
    let again = std::fs::read_to_string(c.state().join("certs/gw/state.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).unwrap(),
        state
    );

    // (b) Past the pick: renewed, and the order the server received replaces the old cert.
    let n = a.orders().len();
    let out = c.gatecert_at(&["renew", "-v"], Some(at + 1));
    expect(&out, 0);
    assert!(
        stderr(&out).contains(&format!("replaces {id}")),
        "{}",
        stderr(&out)
    );
    assert!(
        !stderr(&out).contains("retrying without"),
        "{}",
        stderr(&out)
    );
    let orders = a.orders();
    assert_eq!(orders.len(), n + 1, "exactly one newOrder: {orders:?}");
    assert_eq!(orders[n]["replaces"].as_str(), Some(id.as_str()));
    assert_ne!(c.serial(), serial_before);
    c.check_live();

    // Revocation: the server got reason 1 (RFC 5280 keyCompromise) for this certificate, and
    // the CRL a2c publishes lists its serial. (a2c 0.46.3's openssl handler writes no reason
    // code into the CRL and names the root as its issuer, so `openssl verify -crl_check`
    // cannot be used against it.)
    let out = c.gatecert(&["revoke", "--reason", "keyCompromise"]);
    expect(&out, 0);
    let revoked = a.payloads("revokecert");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["reason"], 1);
    let der =
        run(Command::new("openssl").args(["x509", "-outform", "DER", "-in", &c.live("cert.pem")]))
            .stdout;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert_eq!(
        revoked[0]["certificate"].as_str(),
        Some(b64.encode(&der).as_str())
    );
    let text = c.openssl(&["crl", "-noout", "-text", "-in", &format!("{BASE}/crl.pem")]);
    let serial = c.serial();
    assert!(
        text.contains(&format!("Serial Number: {serial}")),
        "{serial} in\n{text}"
    );
    // Revoking it again is the server's alreadyRevoked problem, printed.
    let out = c.gatecert(&["revoke"]);
    expect(&out, 2);
    assert!(stderr(&out).contains("alreadyRevoked"), "{}", stderr(&out));
    // The next (unforced) renew replaces the revoked certificate, though ARI says not yet.
    let out = c.gatecert(&["renew"]);
    expect(&out, 0);
    assert_ne!(c.serial(), serial);
    c.check_live();

    // Key rollover: a2c's account record now holds the new key; a renewal signed with it works.
    let acct = c.account_dir();
    let old = std::fs::read(acct.join("key.pem")).unwrap();
    let out = c.gatecert(&["account", "rollover", "-v"]);
    expect(&out, 0);
    let new = std::fs::read(acct.join("key.pem")).unwrap();
    assert_ne!(old, new);
    let url: serde_json::Value =
        serde_json::from_slice(&std::fs::read(acct.join("account.json")).unwrap()).unwrap();
    let name = url["url"].as_str().unwrap().rsplit('/').next().unwrap();
    let jwk: serde_json::Value =
        serde_json::from_str(&a.db("select jwk from account where name=?", name)).unwrap();
    let spki = run(Command::new("openssl").args([
        "pkey",
        "-pubout",
        "-outform",
        "DER",
        "-in",
        acct.join("key.pem").to_str().unwrap(),
    ]))
    .stdout;
    let x = &spki[spki.len() - 64..spki.len() - 32];
    assert_eq!(jwk["x"].as_str(), Some(b64.encode(x).as_str()), "{jwk}");
    expect(&c.gatecert(&["renew", "--force"]), 0);
    c.check_live();

    // account.json lost, key kept: newAccount with the key finds the same account (a2c answers
    // 200 with `{}` as the body), and so does revoke's onlyReturnExisting lookup.
    let url = std::fs::read(acct.join("account.json")).unwrap();
    std::fs::remove_file(acct.join("account.json")).unwrap();
    expect(&c.gatecert(&["renew", "--force"]), 0);
    assert_eq!(std::fs::read(acct.join("account.json")).unwrap(), url);
    std::fs::remove_file(acct.join("account.json")).unwrap();
    let serial = c.serial();
    expect(&c.gatecert(&["revoke"]), 0);
    let text = c.openssl(&["crl", "-noout", "-text", "-in", &format!("{BASE}/crl.pem")]);
    assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
}

fn tls_alpn(a: &A2c) {
    let c = Case::new(a, "alpn");
    let out = c.dir.path().join("etc/ssl/acme");
    c.config(&format!("\tlist domain 'alpn.test'\n\toption challenge 'tls-alpn-01'\n\toption tls_alpn_listen '127.0.0.1:443'\n\toption key_type 'ec384'\n\toption install_dir '{}'\n", out.display()));
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    assert!(c.sans().contains("DNS:alpn.test"));
    // install_dir did not exist: created, with OpenWrt's layout.
    assert_eq!(
        std::fs::read(out.join("gw.fullchain.crt")).unwrap(),
        std::fs::read(c.live("fullchain.pem")).unwrap()
    );
    assert_eq!(
        std::fs::read(out.join("gw.key")).unwrap(),
        std::fs::read(c.live("key.pem")).unwrap()
    );
}

fn dns01(a: &A2c) {
    let c = Case::new(a, "dns");
    let (hook, log) = common::dns_hook(c.dir.path(), CHALLTESTSRV);
    c.config(&format!(
        "\tlist domain '*.dns.test'\n\tlist domain 'dns.test'\n\toption challenge 'dns-01'\n\toption dns_hook '{}'\n",
        hook.display()
    ));
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    let calls = std::fs::read_to_string(&log).unwrap();
    // Two authorizations (dns.test and *.dns.test), both TXT records at the same name.
    assert_eq!(
        calls.matches("add _acme-challenge.dns.test\n").count(),
        2,
        "{calls}"
    );
    assert_eq!(
        calls.matches("del _acme-challenge.dns.test\n").count(),
        2,
        "{calls}"
    );
    assert!(c.sans().contains("DNS:*.dns.test"), "{}", c.sans());
}

/// A failed validation names the authorization as ordered (the wildcard one here: a2c's
/// authorization object says `dns.test` with `"wildcard": true`, and gives no reason).
fn failed_wildcard(a: &A2c) {
    let c = Case::new(a, "dnsfail");
    let hook = c.dir.path().join("noop-hook.sh");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    c.config(&format!(
        "\tlist domain '*.fail.test'\n\toption challenge 'dns-01'\n\toption dns_hook '{}'\n",
        hook.display()
    ));
    let out = c.gatecert(&["renew"]);
    expect(&out, 2);
    let err = stderr(&out);
    eprintln!("--- failed wildcard validation, as the user sees it:\n{err}");
    assert!(
        err.contains("authorization for dns:*.fail.test is Invalid"),
        "{err}"
    );
}

fn ip_identifier(a: &A2c) {
    let c = Case::new(a, "ip");
    c.config("\tlist ip '127.0.0.1'\n\toption http_listen '127.0.0.1:80'\n");
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    assert!(c.sans().contains("IP Address:127.0.0.1"), "{}", c.sans());
    let last = &a.orders()[a.orders().len() - 1];
    assert_eq!(last["identifiers"][0]["type"], "ip", "{last}");

    // tls-alpn-01 for an IP: the validator's SNI is the reverse-DNS name (RFC 8738 §6).
    let c = Case::new(a, "ip-alpn");
    c.config("\tlist ip '127.0.0.1'\n\toption challenge 'tls-alpn-01'\n\toption tls_alpn_listen '127.0.0.1:443'\n");
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    assert!(c.sans().contains("IP Address:127.0.0.1"), "{}", c.sans());

    // IPv6, where the machine has ::1.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let c = Case::new(a, "ip6");
        c.config("\tlist ip '::1'\n\toption http_listen '[::1]:80'\n");
        expect(&c.gatecert(&["renew"]), 0);
        c.check_live();
        assert!(
            c.sans().contains("IP Address:0:0:0:0:0:0:0:1"),
            "{}",
            c.sans()
        );
        let last = &a.orders()[a.orders().len() - 1];
        assert_eq!(last["identifiers"][0]["value"], "::1", "{last}");
    } else {
        eprintln!("no ::1 on this machine; IPv6 identifier case skipped");
    }
}

/// With `A2C_PROFILES='{"classic":...,"shortlived":...}'`.
fn profiles(a: &A2c) {
    let dir: serde_json::Value = serde_json::from_str(&a.curl(&a.directory)).unwrap();
    assert!(dir["meta"]["profiles"]["shortlived"].is_string(), "{dir}");

    let c = Case::new(a, "profile");
    c.config("\tlist domain 'short.test'\n\toption http_listen '127.0.0.1:80'\n\toption profile 'shortlived'\n");
    let out = c.gatecert(&["renew", "-v"]);
    expect(&out, 0);
    c.check_live();
    let last = &a.orders()[a.orders().len() - 1];
    assert_eq!(last["profile"], "shortlived", "{last}");
    // a2c's own record of the order.
    let log = stderr(&out);
    let order = log
        .lines()
        .find_map(|l| l.split("gw: order ").nth(1))
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_else(|| panic!("no order URL in:\n{log}"));
    assert_eq!(
        a.db("select profile from orders where name=?", order),
        "shortlived"
    );

    // No profile configured: the order names none and the CA's default applies.
    let c = Case::new(a, "defaultprofile");
    c.config("\tlist domain 'default.test'\n\toption http_listen '127.0.0.1:80'\n");
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    let last = &a.orders()[a.orders().len() - 1];
    assert!(last.get("profile").is_none(), "{last}");

    let c = Case::new(a, "noprofile");
    c.config("\tlist domain 'short.test'\n\toption http_listen '127.0.0.1:80'\n\toption profile 'nosuch'\n");
    let n = a.orders().len();
    let out = c.gatecert(&["renew"]);
    expect(&out, 2);
    let err = stderr(&out);
    eprintln!("--- unknown profile, as the user sees it:\n{err}");
    for want in ["'nosuch'", "classic", "shortlived", &a.directory] {
        assert!(err.contains(want), "{want} missing from: {err}");
    }
    assert_eq!(a.orders().len(), n, "no order was sent");
}

/// With `A2C_REQUIRE_EAB=true`.
fn eab(a: &A2c) {
    let (kid, hmac) = a.eab.clone().expect("EAB_KID/EAB_HMAC printed");
    let c = Case::new(a, "eab");
    c.config("\tlist domain 'eab.test'\n\toption http_listen '127.0.0.1:80'\n");
    let out = c.gatecert(&["renew"]);
    expect(&out, 2);
    let err = stderr(&out);
    eprintln!("--- EAB required, as the user sees it:\n{err}");
    assert!(err.contains("externalAccountRequired"), "{err}");
    // The server's problem detail is printed too, not only its type.
    assert!(
        err.to_lowercase().contains("external account binding"),
        "{err}"
    );

    let _ = std::fs::remove_dir_all(c.state());
    c.config(&format!(
        "\tlist domain 'eab.test'\n\toption http_listen '127.0.0.1:80'\n\
         \toption eab_kid '{kid}'\n\toption eab_hmac_key '{hmac}'\n"
    ));
    let out = c.gatecert(&["renew", "-v"]);
    expect(&out, 0);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(!all.contains(&hmac), "HMAC key leaked");
    c.check_live();
    let acct = c.account_dir();
    let url: serde_json::Value =
        serde_json::from_slice(&std::fs::read(acct.join("account.json")).unwrap()).unwrap();
    let name = url["url"].as_str().unwrap().rsplit('/').next().unwrap();
    assert_eq!(a.db("select eab_kid from account where name=?", name), kid);
}

#[test]
fn a2c_end_to_end() {
    if A2c::install().is_none() {
        return;
    }
    // Other test binaries (or another checkout's) may still hold the challenge ports.
    for port in ["127.0.0.1:80", "127.0.0.1:443"] {
        common::wait_for_port_free(port);
    }
    // A server left by a killed run would be reused with its old configuration.
    A2c::stop(false);
    let t0 = std::time::Instant::now();
    let a = A2c::start(&[]);
    http01_ari_revoke_rollover(&a);
    tls_alpn(&a);
    dns01(&a);
    failed_wildcard(&a);
    ip_identifier(&a);
    let a = a.restart(&[("A2C_PROFILES", r#"{"classic":"x","shortlived":"y"}"#)]);
    profiles(&a);
    let a = a.restart(&[("A2C_REQUIRE_EAB", "true")]);
    eab(&a);
    drop(a);
    eprintln!("a2c cases: {:?}", t0.elapsed());
}

/// Bad input the binary must name precisely, before any network use (no server needed).
#[test]
fn bad_config_is_named() {
    let dir = TempDir::new("a2c-badconf");
    let conf = dir.path().join("gatecert.conf");
    let gatecert = |text: &str| {
        std::fs::write(&conf, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&conf)
            .arg("renew")
            .output()
            .unwrap()
    };
    let head = "config gatecert 'main'\n\toption state_dir '/tmp/x'\n\n\
                config certificate 'gw'\n\toption directory 'https://127.0.0.1:9/dir'\n";

    // Malformed UCI: an unterminated quote on line 6.
    let out = gatecert(&format!("{head}\tlist domain 'gw.test\n"));
    expect(&out, 2);
    let err = stderr(&out);
    eprintln!("--- malformed UCI, as the user sees it:\n{err}");
    assert!(err.contains(&format!("{}:6", conf.display())), "{err}");

    // A value the option does not take: file:line, option and value named.
    let out = gatecert(&format!(
        "{head}\tlist domain 'gw.test'\n\toption challenge 'http-02'\n"
    ));
    expect(&out, 2);
    let err = stderr(&out);
    eprintln!("--- bad option value, as the user sees it:\n{err}");
    assert!(err.contains(&format!("{}:7", conf.display())), "{err}");
    assert!(err.contains("challenge"), "{err}");
    assert!(err.contains("http-02"), "{err}");
}
