//! Clock trust in the running service (`gatecert run`, the real binary): no CA and no issuance
//! below the clock floor, a CA made at 1970 replaced, a forward clock jump never leaving a
//! not-yet-valid set live, and a SIGHUP that changes `state_dir` refused.
//!
//! The service's clock is `GATECERT_FAKE_NOW_FILE` (a file holding Unix seconds, re-read at every
//! call), so a test moves it while the service runs; `GATECERT_TICK_SECS=1` makes upkeep run every
//! second. Waits poll for a condition with a generous deadline; nothing depends on timing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A state directory, a config naming it, and the fake clock file.
struct Env {
    dir: PathBuf,
    config: PathBuf,
    clock: PathBuf,
    port: u16,
}

impl Env {
    fn new(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("gatecert-clock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let env = Env {
            config: dir.join("gatecert.conf"),
            clock: dir.join("now"),
            dir,
            port,
        };
        env.write_config(&env.state());
        env
    }

    fn write_config(&self, state: &Path) {
        std::fs::write(
            &self.config,
            format!(
                "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\
                 config certificate 'gateway'\n\tlist domain 'gateway.local'\n\
                 config ca 'local'\n\tlist allow_suffix 'local'\n\
                 config est 'est'\n\toption listen '127.0.0.1:{}'\n",
                state.display(),
                self.port
            ),
        )
        .unwrap();
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("run.log")
    }

    fn set_clock(&self, unix: i64) {
        let tmp = self.dir.join("now.tmp");
        std::fs::write(&tmp, unix.to_string()).unwrap();
        std::fs::rename(&tmp, &self.clock).unwrap();
    }

    fn start(&self) -> Run {
        let log = std::fs::File::create(self.log()).unwrap();
        Run(Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("GATECERT_FAKE_NOW_FILE", &self.clock)
            .env("GATECERT_TICK_SECS", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap())
    }

    /// A one-shot command at `now`.
    fn cmd(&self, now: i64, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("GATECERT_FAKE_NOW", now.to_string())
            .output()
            .unwrap()
    }

    fn status_json(&self, now: i64) -> (Option<i32>, serde_json::Value) {
        let out = self.cmd(now, &["status", "--json"]);
        let v = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {}", text(&out.stdout)));
        (out.status.code(), v)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.state().join("audit.log")).unwrap_or_default()
    }

    fn live_cert(&self, set: &str) -> Option<String> {
        std::fs::read_to_string(self.state().join("certs").join(set).join("live/cert.pem")).ok()
    }

    /// `cacerts` over TLS, the server certificate verified against `root` for gateway.local by
    /// curl (with the real clock: the served certificate must be valid now).
    fn curl_cacerts(&self, root: &Path) -> Output {
        Command::new("curl")
            .args(["-sS", "--fail", "--max-time", "10", "-o", "/dev/null"])
            .arg("--cacert")
            .arg(root)
            .arg("--resolve")
            .arg(format!("gateway.local:{}:127.0.0.1", self.port))
            .arg(format!(
                "https://gateway.local:{}/.well-known/est/cacerts",
                self.port
            ))
            .output()
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Run(Child);

impl Run {
    fn alive(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.0.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// SIGTERM, and the exit status.
    fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "gatecert run did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` every 100 ms for up to 30 s; panics with `what` (and the log) otherwise.
fn wait_until(env: &Env, run: &mut Run, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            run.alive(),
            "gatecert run exited while waiting for {what}:\n{}",
            env.log_text()
        );
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            env.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cert_dates(pem: &str) -> (i64, i64) {
    let der = pem_der(pem);
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    (
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    )
}

fn pem_der(pem: &str) -> Vec<u8> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    p.contents
}

fn audit_lines<'a>(audit: &'a str, event: &str) -> Vec<&'a str> {
    let tag = format!("\"event\":\"{event}\"");
    audit.lines().filter(|l| l.contains(&tag)).collect()
}

#[test]
fn run_at_1970_creates_nothing_and_starts_once_the_clock_is_trusted() {
    let env = Env::new("1970");
    env.set_clock(3600);
    let mut run = env.start();
    wait_until(&env, &mut run, "the waiting log line", || {
        env.log_text()
            .contains("waiting for a trusted clock before creating the local CA")
    });
    // A few ticks later, the clock ticking on in 1970: still running, still nothing created
    // or issued, and the reason logged once, not at every tick.
    for t in [3700, 3800, 3900] {
        env.set_clock(t);
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(
        env.log_text()
            .matches("waiting for a trusted clock before creating the local CA")
            .count(),
        1,
        "{}",
        env.log_text()
    );
    assert!(run.alive(), "run exited at 1970:\n{}", env.log_text());
    assert!(
        !env.state().join("ca").exists(),
        "a CA was created at 1970:\n{}",
        env.log_text()
    );
    assert!(!env.state().join("certs").exists(), "something was issued");
    assert!(env.log_text().contains("1970-01-01T01:00:00Z"));

    let out = env.cmd(3600, &["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("clock:    untrusted"), "{stdout}");
    assert!(
        stdout.contains("`gatecert run` creates it once the clock is trusted"),
        "{stdout}"
    );

    // NTP sets the clock: the service creates the CA and serves, without a restart.
    let t = now();
    env.set_clock(t);
    wait_until(&env, &mut run, "the gateway and est-local sets", || {
        env.live_cert("gateway").is_some() && env.live_cert("est-local").is_some()
    });
    let root = env.state().join("ca/root.pem");
    let (nb, _) = cert_dates(&std::fs::read_to_string(&root).unwrap());
    assert!(nb > t - DAY, "root notBefore {nb} is not today");
    wait_until(&env, &mut run, "EST serving over TLS", || {
        env.curl_cacerts(&root).status.success()
    });
    let (code, v) = env.status_json(t);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["ca"]["present"], true);

    // 5d: the service's own CA creation and issuances are audited.
    let audit = env.audit();
    let init = audit_lines(&audit, "ca-init");
    assert_eq!(init.len(), 1, "{audit}");
    assert!(init[0].contains("\"via\":\"run\""), "{audit}");
    let issues = audit_lines(&audit, "issue");
    for set in ["gateway", "est-local"] {
        assert!(
            issues
                .iter()
                .any(|l| l.contains(&format!("\"set\":\"{set}\""))),
            "no issue line for {set}: {audit}"
        );
    }
    let out = env.cmd(t, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(run.stop(), Some(0));
}

/// Writes a CA in gatecert's layout as an older build made it on a router at 1970: root and
/// intermediate valid from 1970-01-01T00:55Z.
fn write_1970_ca(ca_dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, GeneralSubtree, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, NameConstraints,
    };
    let at = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).unwrap();
    let ca_params = |cn: &str, years: i64| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = at(3600 - 300);
        p.not_after = at(3600 + years * 365 * DAY);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p
    };
    let root_key = KeyPair::generate().unwrap();
    let int_key = KeyPair::generate().unwrap();
    let mut root = ca_params("gatecert Root CA", 10);
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root_cert = root.self_signed(&root_key).unwrap();
    let mut int = ca_params("gatecert Issuing CA", 5);
    int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("local".into())],
        excluded_subtrees: vec![],
    });
    let issuer = Issuer::from_ca_cert_der(root_cert.der(), &root_key).unwrap();
    let int_cert = int.signed_by(&int_key, &issuer).unwrap();
    std::fs::create_dir_all(ca_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ca_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for (name, body) in [
        ("root.key", root_key.serialize_pem()),
        ("intermediate.key", int_key.serialize_pem()),
        ("root.pem", root_cert.pem()),
        ("intermediate.pem", int_cert.pem()),
    ] {
        std::fs::write(ca_dir.join(name), body).unwrap();
    }
}

#[test]
fn a_ca_made_at_1970_that_issued_nothing_is_replaced_and_audited() {
    let env = Env::new("badca");
    std::fs::create_dir_all(env.state()).unwrap();
    let ca_dir = env.state().join("ca");
    write_1970_ca(&ca_dir);
    let old_root = std::fs::read_to_string(ca_dir.join("root.pem")).unwrap();
    let t = now();
    env.set_clock(t);
    let mut run = env.start();
    wait_until(&env, &mut run, "the gateway set", || {
        env.live_cert("gateway").is_some()
    });
    let root_path = ca_dir.join("root.pem");
    let root = std::fs::read_to_string(&root_path).unwrap();
    assert_ne!(root, old_root, "the 1970 CA is still in place");
    assert!(cert_dates(&root).0 > t - DAY);
    let moved: Vec<_> = std::fs::read_dir(env.state())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ca.bad-clock-"))
        .collect();
    assert_eq!(moved.len(), 1, "the old CA is kept aside");
    assert_eq!(
        std::fs::read_to_string(moved[0].path().join("root.pem")).unwrap(),
        old_root
    );
    let audit = env.audit();
    let replaced = audit_lines(&audit, "ca-replace");
    assert_eq!(replaced.len(), 1, "{audit}");
    assert!(replaced[0].contains("\"old_not_before\":3300"), "{audit}");
    wait_until(&env, &mut run, "EST serving over TLS", || {
        env.curl_cacerts(&root_path).status.success()
    });
    assert_eq!(run.stop(), Some(0));
}

#[test]
fn a_forward_clock_jump_does_not_leave_a_not_yet_valid_set_live() {
    let env = Env::new("jump");
    let t = now();
    env.set_clock(t);
    let mut run = env.start();
    wait_until(&env, &mut run, "the first sets", || {
        env.live_cert("gateway").is_some() && env.live_cert("est-local").is_some()
    });
    let first = (env.live_cert("gateway"), env.live_cert("est-local"));
    // The clock jumps 30 days ahead: both sets have expired by it and are reissued.
    env.set_clock(t + 30 * DAY);
    wait_until(&env, &mut run, "sets issued 30 days ahead", || {
        ["gateway", "est-local"].iter().all(|s| {
            env.live_cert(s)
                .is_some_and(|pem| cert_dates(&pem).0 > t + 29 * DAY)
        })
    });
    // It comes back: no set may stay live that is not valid now.
    env.set_clock(t);
    wait_until(&env, &mut run, "sets valid now", || {
        ["gateway", "est-local"]
            .iter()
            .all(|s| env.live_cert(s).is_some_and(|pem| cert_dates(&pem).0 <= t))
    });
    assert_eq!(
        (env.live_cert("gateway"), env.live_cert("est-local")),
        first,
        "rolled back to the sets that were live before the jump"
    );
    let root = env.state().join("ca/root.pem");
    wait_until(
        &env,
        &mut run,
        "EST serving a certificate valid now",
        || env.curl_cacerts(&root).status.success(),
    );
    let (_, v) = env.status_json(t);
    for row in v["certificates"].as_array().unwrap() {
        if row["name"] == "gateway" || row["name"] == "est-local" {
            assert_eq!(row["state"], "ok", "{v}");
        }
    }
    assert!(
        audit_lines(&env.audit(), "set-rollback").len() >= 2,
        "{}",
        env.audit()
    );
    assert_eq!(run.stop(), Some(0));
}

#[test]
fn status_flags_a_live_cert_that_is_not_yet_valid() {
    let env = Env::new("nyv");
    let t = now();
    // The service ran while the clock was 30 days ahead, and stopped.
    env.set_clock(t + 30 * DAY);
    let mut run = env.start();
    wait_until(&env, &mut run, "the gateway set", || {
        env.live_cert("gateway").is_some()
    });
    assert_eq!(run.stop(), Some(0));
    let (code, v) = env.status_json(t);
    assert_eq!(code, Some(1), "{v}");
    let gw = v["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "gateway")
        .unwrap();
    assert_eq!(gw["state"], "not-yet-valid", "{v}");
    let out = env.cmd(t, &["status"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("gateway (gateway) is not valid yet"),
        "{stdout}"
    );
}

#[test]
fn sighup_with_a_changed_state_dir_is_refused() {
    let env = Env::new("hup");
    env.set_clock(now());
    let mut run = env.start();
    wait_until(&env, &mut run, "the gateway set", || {
        env.live_cert("gateway").is_some()
    });
    let root = env.state().join("ca/root.pem");
    wait_until(&env, &mut run, "EST serving", || {
        env.curl_cacerts(&root).status.success()
    });
    let other = env.dir.join("other-state");
    env.write_config(&other);
    run.signal("HUP");
    wait_until(&env, &mut run, "the refusal", || {
        env.log_text().contains("a restart is needed")
    });
    assert!(
        !other.exists(),
        "a new state dir was created:\n{}",
        env.log_text()
    );
    // Still serving from the old state dir.
    assert!(env.curl_cacerts(&root).status.success());
    assert!(run.alive());
    assert_eq!(run.stop(), Some(0));
}

#[test]
fn run_at_1970_with_a_ca_keeps_serving_what_it_has() {
    let env = Env::new("reboot");
    let t = now();
    env.set_clock(t);
    let mut run = env.start();
    wait_until(&env, &mut run, "the first sets", || {
        env.live_cert("gateway").is_some() && env.live_cert("est-local").is_some()
    });
    assert_eq!(run.stop(), Some(0));
    let sets = (env.live_cert("gateway"), env.live_cert("est-local"));
    // The router reboots without RTC: 1970 until NTP answers.
    env.set_clock(3600);
    let mut run = env.start();
    let root = env.state().join("ca/root.pem");
    wait_until(&env, &mut run, "EST serving the set it has", || {
        env.curl_cacerts(&root).status.success()
    });
    std::thread::sleep(Duration::from_millis(2500));
    assert!(run.alive(), "{}", env.log_text());
    assert_eq!(
        (env.live_cert("gateway"), env.live_cert("est-local")),
        sets,
        "nothing replaced at 1970"
    );
    let (code, v) = env.status_json(3600);
    assert_eq!(code, Some(1));
    assert_eq!(v["clock"]["trusted"], false, "{v}");
    assert_eq!(run.stop(), Some(0));
}

#[test]
fn ca_csr_and_ca_install_refuse_at_1970_and_write_nothing() {
    let env = Env::new("cacsr");
    for args in [
        &["ca", "csr"][..],
        &["ca", "install", "/nonexistent.pem"][..],
    ] {
        let out = env.cmd(3600, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refusing to issue or renew until the clock is set"),
            "{args:?}: {stderr}"
        );
        assert!(!env.state().exists(), "{args:?} wrote the state dir");
    }
}
