//! Backup issuers (README, "Backup issuers"): the real binary with two Debian pebbles on
//! 127.0.0.1, the primary behind a tiny test-only ACME double that can answer newOrder with 429.
//! The renewal clock is moved with `GATECERT_FAKE_NOW` (pebble's certificates live 5 years).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{run, AcmeDouble, DoubleMode, Pebble, Ports, TempDir};

/// Ports no other test binary uses.
const PRIMARY: Ports = Ports {
    acme: 14500,
    management: 15500,
    dns: 8653,
    challtestsrv: 8655,
    http01: 5480,
    tls_alpn: 5843,
};
const BACKUP: Ports = Ports {
    acme: 14510,
    management: 15510,
    dns: 8663,
    challtestsrv: 8665,
    // Both CAs validate http-01 at the same place: gatecert's standalone listener.
    http01: 5480,
    tls_alpn: 5843,
};
const DAY: i64 = 86_400;

struct Gw {
    dir: TempDir,
}

impl Gw {
    /// A config with issuers 'primary' (the double in front of `primary`) and 'backup', and
    /// certificate 'gw' listing both; `extra` is appended.
    fn new(tag: &str, double: &AcmeDouble, primary: &Pebble, backup: &Pebble, extra: &str) -> Gw {
        let dir = TempDir::new(tag);
        let text = format!(
            "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log 'stderr'\n\n\
             config est 'est'\n\toption enabled '0'\n\n\
             config issuer 'primary'\n\toption directory '{pd}'\n\toption ca_bundle '{pca}'\n\n\
             config issuer 'backup'\n\toption directory '{bd}'\n\toption ca_bundle '{bca}'\n\n\
             config certificate 'gw'\n\tlist domain 'gw.example.com'\n\
             \toption http_listen '127.0.0.1:{http}'\n\
             \tlist issuer 'primary'\n\tlist issuer 'backup'\n{extra}",
            state = dir.path().join("state").display(),
            pd = double.directory(),
            pca = primary.https_ca.display(),
            bd = backup.directory(),
            bca = backup.https_ca.display(),
            http = PRIMARY.http01,
        );
        std::fs::write(dir.path().join("gatecert.conf"), text).unwrap();
        Gw { dir }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `gatecert ARGS` with the renewal clock at `now`.
    fn gatecert(&self, now: i64, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(self.dir.path().join("gatecert.conf"))
            .args(args)
            .env("GATECERT_FAKE_NOW", now.to_string())
            .output()
            .unwrap();
        common::keep_output("failover", "gatecert", &out);
        out
    }

    fn renew(&self, now: i64, want: i32) -> String {
        self.expect(now, &["renew", "-v"], want)
    }

    /// `gatecert ARGS` at `now`, which must exit `want`; its stderr.
    fn expect(&self, now: i64, args: &[&str], want: i32) -> String {
        let out = self.gatecert(now, args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(want), "{args:?} at {now}:\n{err}");
        err
    }

    /// `status --json`'s row for `name`.
    fn row(&self, now: i64, name: &str) -> serde_json::Value {
        let out = self.gatecert(now, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap()
    }

    fn status_text(&self, now: i64) -> String {
        let out = self.gatecert(now, &["status"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn audit(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.state().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn live(&self, name: &str) -> PathBuf {
        self.state().join("certs").join(name).join("live/cert.pem")
    }
}

/// The issuer DN of a certificate file, or of the first certificate in a PEM string.
fn dn(args: &[&str], input: &Path) -> String {
    let out = run(Command::new("openssl")
        .args(["x509", "-noout", "-nameopt", "RFC2253"])
        .args(args)
        .arg("-in")
        .arg(input));
    let s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.split_once('=')
        .map_or(s.clone(), |x| x.1.to_owned())
        .trim()
        .to_owned()
}

/// True when the live certificate `name` of `gw` was issued by `intermediate` (PEM).
fn issued_by(gw: &Gw, name: &str, intermediate: &str) -> bool {
    let path = gw.dir.path().join("intermediate.pem");
    std::fs::write(&path, intermediate).unwrap();
    dn(&["-issuer"], &gw.live(name)) == dn(&["-subject"], &path)
}

fn not_before(row: &serde_json::Value) -> i64 {
    row["not_before"].as_i64().unwrap()
}

/// One run in order: both pebbles and the double are shared, and each step starts from the
/// state the one before left.
#[test]
fn issuers_fail_over_and_come_back() {
    let mut primary = Pebble::start_with(PRIMARY, "failover-primary");
    let backup = Pebble::start_with(BACKUP, "failover-backup");
    let double = AcmeDouble::start(&primary);
    let gw = Gw::new("failover", &double, &primary, &backup, "");
    let mut p_int = primary.intermediate();
    let b_int = backup.intermediate();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;

    // 1. Both up: the first certificate comes from the primary.
    gw.renew(t0, 0);
    assert!(issued_by(&gw, "gw", &p_int));
    let row = gw.row(t0, "gw");
    assert_eq!(row["issuers"]["active"], "primary", "{row}");
    assert_eq!(row["issuers"]["reason"], serde_json::Value::Null);
    assert_eq!(
        row["issuers"]["order"],
        serde_json::json!(["primary", "backup"])
    );

    // 2. The primary stopped (and its front closing connections), renewal due: one or two refused connections are not an outage
    //    (the certificate stays, nothing is ordered elsewhere); the third, 30 minutes after
    //    the first, is: the certificate comes from the backup, and status says why.
    primary.stop();
    double.set(DoubleMode::Down);
    let nb = not_before(&row);
    let t1 = nb + 4 * 365 * DAY; // past 2/3 of the 5-year lifetime, before the deadline
    let err = gw.renew(t1, 2);
    // Due or not is asked of the CA that issued the certificate; it is away: the lifetime rule.
    assert!(
        err.contains("issuer 'primary' cannot say whether renewal is due")
            && err.contains("using the lifetime rule"),
        "{err}"
    );
    assert!(
        err.contains("issuer 'primary' failed, staying with it"),
        "{err}"
    );
    gw.renew(t1 + 20 * 60, 2);
    assert!(issued_by(&gw, "gw", &p_int), "no failover on a blip");
    let err = gw.renew(t1 + 31 * 60, 0);
    assert!(
        err.contains("leaving issuer 'primary' (unreachable"),
        "{err}"
    );
    assert!(issued_by(&gw, "gw", &b_int));
    let row = gw.row(t1 + 32 * 60, "gw");
    let iss = &row["issuers"];
    assert_eq!(iss["active"], "backup", "{row}");
    assert_eq!(iss["reason"], "unreachable");
    assert_eq!(iss["from"], "primary");
    assert_eq!(iss["held"][0]["name"], "primary");
    let text = gw.status_text(t1 + 32 * 60);
    assert!(
        text.contains("issuer: backup (failed over from primary: unreachable")
            && text.contains("; order: primary, backup; primary retried after "),
        "{text}"
    );
    // Each issuer has its own account.
    assert_eq!(
        std::fs::read_dir(gw.state().join("accounts"))
            .unwrap()
            .count(),
        2
    );
    let lines = gw.audit();
    let fo: Vec<_> = lines
        .iter()
        .filter(|l| l["event"] == "issuer.failover")
        .collect();
    assert_eq!(fo.len(), 1, "{lines:?}");
    assert_eq!(fo[0]["from"], "primary");
    assert_eq!(fo[0]["to"], "backup");
    assert_eq!(fo[0]["reason"], "unreachable");
    assert_eq!(fo[0]["cert"], "gw");

    // 3. The primary back: the next renewal (due by the lifetime rule, once its hold is over)
    //    uses it again.
    primary.restart(false);
    double.set(DoubleMode::Pass);
    p_int = primary.intermediate();
    // pebble's certificates start at the real time: the renewal clock only moves on, past
    // the primary's one-hour hold.
    let t2 = t1 + 2 * 3600;
    gw.renew(t2, 0);
    assert!(issued_by(&gw, "gw", &p_int));
    let row = gw.row(t2, "gw");
    assert_eq!(row["issuers"]["active"], "primary", "{row}");
    assert_eq!(row["issuers"]["reason"], serde_json::Value::Null);

    // 4. The primary refuses newOrder with 429 and a Retry-After beyond the renewal deadline
    //    (notAfter minus a sixth of the lifetime): the backup at once.
    let na = row["not_after"].as_i64().unwrap();
    let deadline = na - (na - not_before(&row)) / 6;
    let t3 = deadline - 10 * DAY;
    double.set(DoubleMode::RateLimit(20 * DAY as u64));
    let err = gw.renew(t3, 0);
    assert!(
        err.contains("leaving issuer 'primary' (rate-limited"),
        "{err}"
    );
    assert_eq!(double.refused.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(issued_by(&gw, "gw", &b_int));
    let row = gw.row(t3, "gw");
    assert_eq!(row["issuers"]["reason"], "rate-limited", "{row}");
    // Not asked again before its Retry-After.
    assert!(row["issuers"]["held"][0]["until"].as_i64().unwrap() >= t3 + 20 * DAY);

    // 5. The limit lifted, at the next renewal the primary is preferred again.
    double.set(DoubleMode::Pass);
    let t4 = t3 + 21 * DAY;
    gw.renew(t4, 0);
    assert!(issued_by(&gw, "gw", &p_int));

    // 6. `renew --now --issuer backup`: re-issued from the backup at once, not due, audited.
    gw.expect(t4, &["renew", "--now", "--issuer", "backup", "gw"], 0);
    assert!(issued_by(&gw, "gw", &b_int));
    let row = gw.row(t4, "gw");
    assert_eq!(row["issuers"]["active"], "backup", "{row}");
    assert_eq!(row["issuers"]["reason"], "operator");
    let lines = gw.audit();
    let re = lines
        .iter()
        .find(|l| l["event"] == "issuer.reissue")
        .expect("issuer.reissue line");
    assert_eq!(re["issuer"], "backup");
    assert_eq!(re["cert"], "gw");
    assert_eq!(re["previous"], "primary");
    // `revoke` goes to the CA that issued the live certificate, with our account there.
    let out = gw.expect(t4, &["revoke", "--cert", "gw", "--reason", "superseded"], 0);
    let serial = gw.row(t4, "gw")["serial"].as_str().unwrap().to_owned();
    assert!(
        backup
            .cert_status(&serial.to_lowercase())
            .contains("Revoked"),
        "{out}"
    );
    // An unknown issuer is a clear error, and nothing is ordered.
    let err = gw.expect(t4, &["renew", "--now", "--issuer", "nope", "gw"], 2);
    assert!(
        err.contains("no issuer 'nope' in ") && err.contains("(issuer sections: primary, backup)"),
        "{err}"
    );
    // Without a certificate named: every one that lists the issuer.
    gw.expect(t4, &["renew", "--now", "--issuer", "primary"], 0);
    assert!(issued_by(&gw, "gw", &p_int));
    assert_eq!(gw.row(t4, "gw")["issuers"]["active"], "primary");
    let lines = gw.audit();
    let err = gw.expect(t4, &["renew", "--issuer", "backup"], 2);
    assert!(err.contains("give --now as well"), "{err}");
    assert_eq!(
        gw.audit().len(),
        lines.len(),
        "no line for a refused request"
    );
}

/// A client-side refusal (pebble's `rejectedIdentifier` for a blocked name) never fails over,
/// even for a certificate with none installed yet (where an outage would at once).
#[test]
fn a_rejected_identifier_does_not_fail_over() {
    let ports = |acme: u16, dns: u16| Ports {
        acme,
        management: acme + 1000,
        dns,
        challtestsrv: dns + 2,
        http01: 5481,
        tls_alpn: 5844,
    };
    let mut primary = Pebble::start_with(ports(14520, 8673), "failover-blocked-primary");
    primary.blocklist = vec!["blocked.example.com".into()];
    primary.restart(false);
    let backup = Pebble::start_with(ports(14530, 8683), "failover-blocked-backup");
    let double = AcmeDouble::start(&primary);
    let gw = Gw::new(
        "failover-blocked",
        &double,
        &primary,
        &backup,
        "\nconfig certificate 'blocked'\n\tlist domain 'blocked.example.com'\n\
         \toption http_listen '127.0.0.1:5481'\n\tlist issuer 'primary'\n\tlist issuer 'backup'\n",
    );
    let now = 1_900_000_000;
    let err = gw.expect(now, &["renew", "--cert", "blocked", "-v"], 2);
    assert!(err.contains("rejectedIdentifier"), "{err}");
    assert!(!err.contains("leaving issuer"), "{err}");
    assert!(!gw.live("blocked").exists(), "nothing from the backup");
    let row = gw.row(now, "blocked");
    assert_eq!(row["state"], "missing");
    assert_eq!(row["issuers"]["active"], "primary", "{row}");
    assert_eq!(row["issuers"]["held"], serde_json::json!([]));
    assert_eq!(row["last_problem"], "rejectedIdentifier");
    assert!(gw.audit().iter().all(|l| l["event"] != "issuer.failover"));
}
