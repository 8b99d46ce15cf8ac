//! The real binary against a real ACME server (Debian's pebble) on 127.0.0.1. http-01 needs
//! port 80 and tls-alpn-01 port 443, so the cases run in order inside one #[test].

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run, Pebble, Proc, TempDir};

struct Case<'a> {
    pebble: &'a Pebble,
    dir: TempDir,
}

impl<'a> Case<'a> {
    fn new(pebble: &'a Pebble, tag: &str) -> Case<'a> {
        Case {
            pebble,
            dir: TempDir::new(tag),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes the UCI config: one `certificate 'gw'` section with `options` added.
    fn config(&self, options: &str) -> PathBuf {
        let path = self.dir.path().join("gatecert.conf");
        let text = format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory '{}'\n\toption ca_bundle '{}'\n{options}",
            self.state().display(),
            common::DIRECTORY,
            self.pebble.https_ca.display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn gatecert(&self, args: &[&str]) -> Output {
        let conf = self.dir.path().join("gatecert.conf");
        let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&conf)
            .args(args)
            .env_remove("GATECERT_FAKE_NOW")
            .output()
            .unwrap();
        common::keep_output("acme_pebble", "gatecert", &out);
        out
    }

    fn live(&self) -> PathBuf {
        self.state().join("certs/gw/live")
    }

    /// The live chain verifies to pebble's root and the key matches the certificate.
    fn check_live(&self) {
        let live = self.live();
        let root = self.pebble.root();
        let f = |n: &str| live.join(n).to_str().unwrap().to_owned();
        let out = run(Command::new("openssl").args([
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            &f("chain.pem"),
            &f("cert.pem"),
        ]));
        assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
        let a = run(Command::new("openssl").args(["pkey", "-pubout", "-in", &f("key.pem")]));
        let b =
            run(Command::new("openssl").args(["x509", "-pubkey", "-noout", "-in", &f("cert.pem")]));
        assert_eq!(a.stdout, b.stdout, "key matches cert");
        let mode = std::fs::metadata(live.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn serial(&self) -> String {
        let out = run(Command::new("openssl").args([
            "x509",
            "-noout",
            "-serial",
            "-in",
            self.live().join("cert.pem").to_str().unwrap(),
        ]));
        let s = String::from_utf8_lossy(&out.stdout);
        s.trim().trim_start_matches("serial=").to_owned()
    }

    fn sans(&self) -> String {
        let out = run(Command::new("openssl").args([
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            self.live().join("cert.pem").to_str().unwrap(),
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
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

fn http01_standalone(p: &Pebble) {
    let c = Case::new(p, "http01");
    // ACME only: no EST, so no local CA is needed.
    c.config("\tlist domain 'gw1.example.com'\n\tlist domain 'www.gw1.example.com'\n\toption http_listen '127.0.0.1:80'\n\nconfig est 'est'\n\toption enabled '0'\n");
    let out = c.gatecert(&["renew", "-v"]);
    expect(&out, 0);
    // Healthy: no "local CA missing", no "upstream: unknown" (nothing brokers leaves).
    let st = c.gatecert(&["status"]);
    let table = String::from_utf8_lossy(&st.stdout).into_owned();
    expect(&st, 0);
    assert!(table.contains("local CA: not used"), "{table}");
    assert!(table.contains("upstream: n/a"), "{table}");
    assert!(table.contains("status: healthy"), "{table}");
    let log = stderr(&out);
    assert!(
        log.contains("gw: new order https://127.0.0.1:14000/"),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"));
    c.check_live();
    assert!(c.sans().contains("DNS:www.gw1.example.com"));
    // Quiet on success without -v, and nothing is due with a fresh certificate.
    let again = c.gatecert(&["renew"]);
    expect(&again, 1);
    assert_eq!(stderr(&again), "");
    // --force renews regardless, with a fresh key.
    let key_before = std::fs::read(c.live().join("key.pem")).unwrap();
    let serial_before = c.serial();
    let forced = c.gatecert(&["renew", "--force"]);
    expect(&forced, 0);
    assert_eq!(stderr(&forced), "");
    assert_ne!(c.serial(), serial_before);
    assert_ne!(std::fs::read(c.live().join("key.pem")).unwrap(), key_before);
    c.check_live();

    // Revocation of the live certificate.
    let serial = c.serial();
    let out = c.gatecert(&["revoke", "--reason", "superseded"]);
    expect(&out, 0);
    // It says what it did, with the serial as openssl prints it.
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.starts_with(&format!("gw: revoked certificate serial {serial} ")),
        "{said}"
    );
    let status = p.cert_status(&serial);
    assert!(status.contains("Revoked"), "{status}");
    // status shows it: state revoked, exit 1, the serial.
    let st = c.gatecert(&["status", "--json"]);
    expect(&st, 1);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["certificates"][0]["state"], "revoked", "{v}");
    assert_eq!(v["certificates"][0]["serial"], serial.as_str(), "{v}");

    // Account key rollover, then a renewal signed with the new key.
    let acct = std::fs::read_dir(c.state().join("accounts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let old = std::fs::read(acct.join("key.pem")).unwrap();
    let out = c.gatecert(&["account", "rollover", "-v"]);
    expect(&out, 0);
    let new = std::fs::read(acct.join("key.pem")).unwrap();
    assert_ne!(old, new);
    let mode = std::fs::metadata(acct.join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    expect(&c.gatecert(&["renew", "--force"]), 0);
    c.check_live();

    // A rollover interrupted before the server changed the key: a stray key.pem.next that the
    // server doesn't know is dropped, and the old key goes on working.
    let stray = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(acct.join("key.pem.next"), &stray).unwrap();
    let out = c.gatecert(&["renew", "--force"]);
    expect(&out, 0);
    assert!(!acct.join("key.pem.next").exists());
    assert_eq!(std::fs::read(acct.join("key.pem")).unwrap(), new);
    // Interrupted after the server changed the key: key.pem.next is the key the server knows,
    // key.pem is stale. The next run adopts the new key.
    std::fs::write(acct.join("key.pem.next"), &new).unwrap();
    std::fs::write(acct.join("key.pem"), &stray).unwrap();
    let out = c.gatecert(&["renew", "--force"]);
    expect(&out, 0);
    assert!(!acct.join("key.pem.next").exists());
    assert_eq!(std::fs::read(acct.join("key.pem")).unwrap(), new);

    // A failing deploy hook: exit 2, the previous certificate is live again, and the hook ran
    // twice (once for the new set, once for the restored one).
    let before = c.serial();
    let marker = c.dir.path().join("hook.log");
    c.config(&format!(
        "\tlist domain 'gw1.example.com'\n\tlist domain 'www.gw1.example.com'\n\toption http_listen '127.0.0.1:80'\n\
         \toption deploy_hook 'echo $GATECERT_CERT_NAME >> {}; exit 3'\n",
        marker.display()
    ));
    let out = c.gatecert(&["renew", "--force"]);
    expect(&out, 2);
    assert!(stderr(&out).contains("deploy_hook"), "{}", stderr(&out));
    assert!(stderr(&out).contains("restored"), "{}", stderr(&out));
    assert_eq!(c.serial(), before);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "gw\ngw\n");
    c.check_live();
}

fn webroot(p: &Pebble) {
    let c = Case::new(p, "webroot");
    let root = c.dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let _server = Proc(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "80",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    common::wait_for_port("127.0.0.1:80");
    c.config(&format!(
        "\tlist domain 'web.example.com'\n\toption http_mode 'webroot'\n\toption webroot '{}'\n",
        root.display()
    ));
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    let left = root.join(".well-known/acme-challenge");
    assert!(!left.exists() || std::fs::read_dir(&left).unwrap().next().is_none());
    drop(_server);
    common::wait_for_port_free("127.0.0.1:80");
}

fn tls_alpn(p: &Pebble) {
    let c = Case::new(p, "alpn");
    c.config("\tlist domain 'alpn.example.com'\n\toption challenge 'tls-alpn-01'\n\toption tls_alpn_listen '127.0.0.1:443'\n\toption key_type 'ec384'\n");
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
}

fn ip_identifier(p: &Pebble) {
    let c = Case::new(p, "ip");
    c.config("\tlist ip '127.0.0.1'\n\toption http_listen '127.0.0.1:80'\n");
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    assert!(c.sans().contains("IP Address:127.0.0.1"), "{}", c.sans());
}

fn dns01(p: &Pebble) {
    let c = Case::new(p, "dns");
    let (hook, log) = common::dns_hook(c.dir.path(), common::CHALLTESTSRV);
    c.config(&format!(
        "\tlist domain '*.dns.example.com'\n\tlist domain 'dns.example.com'\n\toption challenge 'dns-01'\n\toption dns_hook '{}'\n",
        hook.display()
    ));
    expect(&c.gatecert(&["renew"]), 0);
    c.check_live();
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.matches("add _acme-challenge.dns.example.com").count(),
        2,
        "{calls}"
    );
    assert_eq!(
        calls.matches("del _acme-challenge.dns.example.com").count(),
        2,
        "{calls}"
    );
    assert!(c.sans().contains("DNS:*.dns.example.com"));
}

fn problems(p: &Pebble) {
    // Validation fails (nothing answers on port 80): the server's problem type and detail reach
    // the user, with the authorization named.
    let c = Case::new(p, "problem");
    c.config("\tlist domain 'refused.example.com'\n\toption http_listen '127.0.0.1:8081'\n");
    let out = c.gatecert(&["renew"]);
    expect(&out, 2);
    let err = stderr(&out);
    eprintln!("--- failed validation, as the user sees it:\n{err}");
    assert!(err.contains("renewing certificate 'gw'"), "{err}");
    assert!(
        err.contains("authorization for dns:refused.example.com is Invalid"),
        "{err}"
    );
    assert!(
        err.contains("urn:ietf:params:acme:error:connection"),
        "{err}"
    );

    // An unreachable directory is named.
    let c = Case::new(p, "unreachable");
    std::fs::write(
        c.dir.path().join("gatecert.conf"),
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\n\
             config certificate 'gw'\n\toption directory 'https://127.0.0.1:9/dir'\n\
             \toption ca_bundle '{}'\n\tlist domain 'x.example.com'\n\toption timeout '5'\n",
            c.state().display(),
            p.https_ca.display()
        ),
    )
    .unwrap();
    let out = c.gatecert(&["renew"]);
    expect(&out, 2);
    assert!(
        stderr(&out).contains("https://127.0.0.1:9/dir"),
        "{}",
        stderr(&out)
    );
}

fn eab(p: &mut Pebble) {
    p.restart(true);
    let c = Case::new(p, "eab");
    // Without EAB the server refuses the account, clearly.
    c.config("\tlist domain 'eab.example.com'\n\toption http_listen '127.0.0.1:80'\n");
    let out = c.gatecert(&["renew"]);
    expect(&out, 2);
    assert!(
        stderr(&out).contains("externalAccountRequired"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(c.state());
    c.config(&format!(
        "\tlist domain 'eab.example.com'\n\toption http_listen '127.0.0.1:80'\n\
         \toption eab_kid '{}'\n\toption eab_hmac_key '{}'\n",
        common::EAB_KID,
        common::EAB_KEY
    ));
    let out = c.gatecert(&["renew", "-v"]);
    expect(&out, 0);
    assert!(!stderr(&out).contains(common::EAB_KEY));
    c.check_live();
    p.restart(false);
}

#[test]
fn pebble_end_to_end() {
    if Command::new("pebble").arg("-help").output().is_err() {
        eprintln!("pebble not installed; skipping");
        return;
    }
    let mut p = Pebble::start();
    http01_standalone(&p);
    webroot(&p);
    tls_alpn(&p);
    ip_identifier(&p);
    dns01(&p);
    problems(&p);
    eab(&mut p);
    let _ = Path::new("");
}
