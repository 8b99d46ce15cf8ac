//! Crash safety under SIGKILL: `gatecert renew --force` against pebble (http-01 on
//! 127.0.0.1:80) and, at the same time, a stream of EST enrollments against `gatecert run`,
//! each process killed at a random moment drawn over its whole flow. After every kill the state
//! directory must hold only whole files under their live names, a key beside its own
//! certificate, an intact account and CA, an audit log that verifies (a torn last line is
//! detected and repaired, never accepted), and the next run must succeed.
//!
//! Ignored by default (it takes minutes); `bench/crash.sh N` runs it with N kills in all.
//! CRASH_RENEW_KILLS / CRASH_EST_KILLS set the split.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Pebble, TempDir};
use gatecert::crypto::{self, CertInfo, KeyType, PrivateKey};
use gatecert::daemon::est_client;

const SUITE: &str = "crash";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatecert"));
    c.env_remove("GATECERT_FAKE_NOW");
    c
}

fn rand_ms(max: u64) -> u64 {
    crypto::random_below(max.max(1)).unwrap()
}

#[derive(Default, Debug)]
struct Counts {
    kills: u64,
    finished_before_kill: u64,
    broken: u64,
    torn_repaired: u64,
    failed_next: u64,
    export_mismatch_after_kill: u64,
    lock_busy_next: u64,
    /// Certificates the clients received beyond the token uses spent (must be 0).
    double_used: u64,
    /// Token uses spent without an `est.issue` line (a kill between the commit and the audit).
    uses_without_issue: u64,
    /// Kills after which SoftHSM2's own file store could not be opened any more
    /// (`CKR_TOKEN_NOT_RECOGNIZED`: the killed process was inside SoftHSM2, rewriting its files).
    /// Not gatecert's state; the token variant's loop ends there.
    hsm_store_lost: u64,
}

/// Every visible file under `dir` (recursively; dot-files are temp files and skipped) parses
/// as what its name says. Returns the problems found.
fn check_files(dir: &Path, problems: &mut Vec<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            problems.push(format!("{}: dangling", path.display()));
            continue;
        };
        if meta.is_dir() {
            check_files(&path, problems);
            continue;
        }
        let text = || std::fs::read_to_string(&path).unwrap_or_default();
        let bad = if name.ends_with(".json") {
            serde_json::from_str::<serde_json::Value>(&text())
                .err()
                .map(|e| e.to_string())
        } else if name.ends_with(".pem") || name.ends_with(".crt") || name.ends_with(".key") {
            check_pem(&text()).err()
        } else {
            None
        };
        if let Some(why) = bad {
            problems.push(format!("{}: {why}", path.display()));
        }
    }
}

/// A PEM file: each block is a certificate or a private key, and there is at least one.
fn check_pem(text: &str) -> Result<(), String> {
    let keys = text.matches("PRIVATE KEY-----\n").count() / 2;
    let certs = if text.contains("CERTIFICATE-----") {
        crypto::certs_from_pem(text).map_err(|e| e.to_string())?
    } else {
        Vec::new()
    };
    for c in &certs {
        CertInfo::from_der(c).map_err(|e| e.to_string())?;
    }
    if keys > 0 {
        PrivateKey::from_pem(text).map_err(|e| e.to_string())?;
    }
    if text.matches("-----BEGIN").count() != text.matches("-----END").count()
        || (keys == 0 && certs.is_empty() && !text.is_empty())
    {
        return Err("torn PEM".into());
    }
    Ok(())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// key.pem matches cert.pem, fullchain = cert + chain, combined = key + fullchain.
fn check_set(live: &Path, problems: &mut Vec<String>) {
    let key = read(&live.join("key.pem"));
    let cert = read(&live.join("cert.pem"));
    let chain = read(&live.join("chain.pem"));
    match (PrivateKey::from_pem(&key), CertInfo::from_pem(&cert)) {
        (Ok(k), Ok(c)) if k.matches(&c) => {}
        _ => problems.push(format!("{}: key does not match cert", live.display())),
    }
    if chain.is_empty() || read(&live.join("fullchain.pem")) != format!("{cert}{chain}") {
        problems.push(format!("{}: fullchain != cert + chain", live.display()));
    }
    if read(&live.join("combined.pem")) != format!("{key}{cert}{chain}") {
        problems.push(format!("{}: combined != key + fullchain", live.display()));
    }
}

/// The exported OpenWrt pair `<name>.key` / `<name>.crt` match.
fn export_matches(out: &Path) -> bool {
    let key = PrivateKey::from_pem(&read(&out.join("gw.key")));
    let cert = CertInfo::from_pem(&read(&out.join("gw.crt")));
    matches!((key, cert), (Ok(k), Ok(c)) if k.matches(&c))
}

// ---------------------------------------------------------------------------------------------
// renew

struct Renew {
    dir: TempDir,
}

impl Renew {
    fn new(p: &Pebble) -> Renew {
        let r = Renew {
            dir: TempDir::new("crash-renew"),
        };
        std::fs::create_dir_all(r.dir.path().join("ssl")).unwrap();
        r.configure(p, 0);
        r
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        check_files(&self.state(), &mut p);
        check_files(&self.dir.path().join("ssl"), &mut p);
        let live = self.state().join("certs/gw/live");
        if !live.join("key.pem").exists() {
            p.push("live set missing".into());
        } else {
            check_set(&live, &mut p);
        }
        for acct in std::fs::read_dir(self.state().join("accounts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            // The key is written before newAccount and account.json after it, so a kill may
            // leave an empty account dir or a key alone, never account.json without its key.
            let key = acct.path().join("key.pem");
            let json = acct.path().join("account.json");
            if key.exists() && PrivateKey::from_pem(&read(&key)).is_err() {
                p.push(format!("{}: unreadable", key.display()));
            }
            if json.exists() && !key.exists() {
                p.push(format!(
                    "{}: account.json without key.pem",
                    acct.path().display()
                ));
            }
        }
        p
    }
}

/// A `gatecert renew` setup the kill loop drives: the plain one ([`Renew`]) and, with the
/// `pkcs11` feature, keys in SoftHSM2 (`token::TokenRenew`).
trait Rig {
    /// Names its log lines and its log file.
    fn tag(&self) -> &'static str;
    /// Writes the config for `round` (a new name each round: a new authorization, so every
    /// round goes through the challenge; pebble reuses valid ones).
    fn configure(&self, p: &Pebble, round: u64);
    /// `gatecert --config <its config> ARGS`.
    fn cmd(&self, args: &[&str]) -> Command;
    fn state(&self) -> PathBuf;
    /// What is wrong right after a kill.
    fn after_kill(&self, c: &mut Counts) -> Vec<String>;
    /// What is wrong after the next run, which exited with `code`.
    fn after_next(&self, code: Option<i32>) -> Vec<String>;
    /// The rig can't go on (a key store outside gatecert was lost with the kill).
    fn lost(&self) -> bool {
        false
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = self.cmd(args).output().unwrap();
        common::keep_output(SUITE, self.tag(), &out);
        out
    }

    fn spawn(&self) -> Child {
        self.cmd(&["renew", "--force"])
            .stdout(common::log_file(SUITE, self.tag()))
            .stderr(common::log_file(SUITE, self.tag()))
            .spawn()
            .unwrap()
    }
}

impl Rig for Renew {
    fn tag(&self) -> &'static str {
        "renew"
    }

    /// Writes the config with the name `gw<round>.crash.example`: a new name each round means a
    /// new authorization, so every round goes through the challenge (pebble reuses valid ones).
    fn configure(&self, p: &Pebble, round: u64) {
        let d = self.dir.path();
        let extra = format!(
            "\toption install_dir '{}'\n\
             \toption deploy_hook 'test -s \"$GATECERT_LIVE_DIR/key.pem\"'\n",
            d.join("ssl").display(),
        );
        let domain = format!("gw{round}.crash.example");
        let conf = common::acme_conf(&self.state(), p, &domain, "127.0.0.1:80", &extra);
        std::fs::write(d.join("gatecert.conf"), conf).unwrap();
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.arg("--config")
            .arg(self.dir.path().join("gatecert.conf"))
            .args(args);
        c
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn after_kill(&self, c: &mut Counts) -> Vec<String> {
        if !export_matches(&self.dir.path().join("ssl")) {
            c.export_mismatch_after_kill += 1;
        }
        self.problems()
    }
    fn after_next(&self, code: Option<i32>) -> Vec<String> {
        let mut p = self.problems();
        if !matches!(code, Some(0 | 1)) {
            p.push(format!("exit {code:?}"));
        }
        if !export_matches(&self.dir.path().join("ssl")) {
            p.push("exported key does not match the exported certificate".into());
        }
        p
    }
}

fn renew_loop(p: &Pebble, kills: u64) -> Counts {
    kill_loop(&Renew::new(p), p, kills)
}

/// `gatecert renew --force` killed at random points drawn over its measured duration, `kills`
/// times; after each kill and after each next run, the rig's checks.
fn kill_loop(r: &dyn Rig, p: &Pebble, kills: u64) -> Counts {
    let tag = r.tag();
    let first = r.run(&["renew"]);
    assert_eq!(first.status.code(), Some(0), "first renewal: {first:?}");
    // The flow's duration, measured: kill points are drawn over it.
    let mut times: Vec<u64> = (0..3)
        .map(|k| {
            r.configure(p, 1_000_000 + k);
            let t = Instant::now();
            let out = r.run(&["renew", "--force"]);
            assert_eq!(out.status.code(), Some(0), "{out:?}");
            t.elapsed().as_millis() as u64
        })
        .collect();
    times.sort();
    let span = times[0];
    eprintln!("{tag} --force takes {times:?} ms; kills drawn over 0..{span} ms");
    let mut c = Counts::default();
    let mut attempts = 0;
    while c.kills < kills && attempts < kills * 3 {
        attempts += 1;
        // Every few rounds, start from no account, so account creation is a kill point too.
        if attempts % 10 == 0 {
            let _ = std::fs::remove_dir_all(r.state().join("accounts"));
        }
        r.configure(p, attempts);
        let mut child = r.spawn();
        std::thread::sleep(Duration::from_millis(rand_ms(span)));
        if child.try_wait().unwrap().is_some() {
            c.finished_before_kill += 1;
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        c.kills += 1;
        let problems = r.after_kill(&mut c);
        if r.lost() {
            c.hsm_store_lost += 1;
            eprintln!(
                "{tag} kill {}: the key store is lost; the loop ends",
                c.kills
            );
            break;
        }
        if !problems.is_empty() {
            c.broken += 1;
            eprintln!("{tag} kill {}: BROKEN: {problems:?}", c.kills);
        }
        // The next run: a plain `renew` heals and says "not due" (1) or renews (0); every
        // fifth kill, a whole forced renewal.
        let args: &[&str] = if c.kills % 5 == 0 {
            &["renew", "--force"]
        } else {
            &["renew"]
        };
        let mut out = r.run(args);
        if String::from_utf8_lossy(&out.stderr).contains("is locked by another") {
            // The killed process's last spawn (hook, between fork and exec) can hold the
            // inherited lock for a moment; cron's next run would find it free.
            c.lock_busy_next += 1;
            std::thread::sleep(Duration::from_millis(200));
            out = r.run(args);
        }
        let problems = r.after_next(out.status.code());
        if !problems.is_empty() {
            c.failed_next += 1;
            eprintln!(
                "{tag} kill {}: next run failed ({:?}): {}\n{problems:?}",
                c.kills,
                out.status,
                String::from_utf8_lossy(&out.stderr),
            );
        }
    }
    c
}

// ---------------------------------------------------------------------------------------------
// EST

struct Est {
    dir: TempDir,
    port: u16,
}

impl Est {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("gatecert.conf")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn spawn(&self) -> Child {
        bin()
            .arg("--config")
            .arg(self.conf())
            .args(["run", "--listen", &format!("127.0.0.1:{}", self.port)])
            .stdout(common::log_file(SUITE, "run"))
            .stderr(common::log_file(SUITE, "run"))
            .spawn()
            .unwrap()
    }

    fn audit(&self, repair: bool) -> Output {
        let mut c = bin();
        c.arg("--config").arg(self.conf()).args(["audit", "verify"]);
        if repair {
            c.arg("--repair");
        }
        let out = c.output().unwrap();
        common::keep_output(SUITE, "audit", &out);
        out
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        check_files(&self.state(), &mut p);
        let cfg = gatecert::config::Config::load(&self.conf()).unwrap();
        let ca_dir = gatecert::ca::LocalCa::dir_in(&self.state());
        if let Err(e) = gatecert::ca::LocalCa::open(&ca_dir, &cfg.ca) {
            p.push(format!("CA does not open: {e}"));
        }
        p
    }
}

/// An EST client: simpleenroll with Basic auth over a fresh TLS connection.
struct Enroller {
    agent: ureq::Agent,
    url: String,
    auth: String,
    body: String,
}

impl Enroller {
    fn new(state: &Path, port: u16, token: &str) -> Enroller {
        let root = std::fs::read_to_string(state.join("ca/root.pem")).unwrap();
        let root = crypto::certs_from_pem(&root).unwrap()[0].to_vec();
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let name = "crash.sensors.local".to_string();
        Enroller {
            agent: est_client(&root, Duration::from_secs(5)),
            url: format!("https://gateway.local:{port}/.well-known/est/simpleenroll"),
            auth: format!("Basic {}", crypto::b64(format!("crash:{token}").as_bytes())),
            body: crypto::b64(&key.csr(&[name], &[]).unwrap()),
        }
    }

    fn enroll(&self) -> bool {
        let resp = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/pkcs10")
            .header("Authorization", &self.auth)
            .send(&self.body);
        match resp {
            Ok(r) if r.status().as_u16() == 200 => r.into_body().read_to_vec().is_ok(),
            _ => false,
        }
    }
}

fn wait_listening(child: &mut Child, port: u16) -> bool {
    let t = Instant::now();
    while !common::listening(("127.0.0.1", port)) {
        if t.elapsed() > Duration::from_secs(10) || child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

fn est_loop(kills: u64) -> Counts {
    let dir = TempDir::new("crash-est");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = Est { dir, port };
    std::fs::write(
        e.conf(),
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n",
            e.state().display()
        ),
    )
    .unwrap();
    // First start: the CA and the listener's certificate; then the token (once, while the
    // service is down, so the harness never races the service on tokens.jnl).
    let mut child = e.spawn();
    assert!(
        wait_listening(&mut child, port),
        "gatecert run did not start"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let token = gatecert::token::Tokens::open(&gatecert::token::path_in(&e.state()))
        .unwrap()
        .add(
            "crash",
            &["crash.sensors.local".to_string()],
            86_400,
            u32::MAX,
            gatecert::clock::from_env().now(),
        )
        .unwrap();
    common::keep_secret(&token);
    let client = Enroller::new(&e.state(), port, &token);

    // Enrollment streams from two threads, whichever process is up.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let streams: Vec<_> = (0..2)
        .map(|_| {
            let (stop, served) = (stop.clone(), served.clone());
            let c = Enroller::new(&e.state(), port, &token);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if c.enroll() {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })
        })
        .collect();

    // Kill points over start-up plus a stretch of enrollments.
    let span = 600;
    let mut c = Counts::default();
    let mut attempts = 0;
    while c.kills < kills && attempts < kills * 3 {
        attempts += 1;
        let mut child = e.spawn();
        std::thread::sleep(Duration::from_millis(rand_ms(span)));
        if child.try_wait().unwrap().is_some() {
            c.finished_before_kill += 1;
            c.failed_next += 1;
            eprintln!("run exited by itself: {:?}", child.wait());
            continue;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        c.kills += 1;
        let mut problems = e.problems();
        let out = e.audit(false);
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("torn last line") {
                let fixed = e.audit(true);
                if fixed.status.success() {
                    c.torn_repaired += 1;
                } else {
                    problems.push(format!("audit repair failed: {fixed:?}"));
                }
            } else {
                problems.push(format!("audit verify failed: {text}"));
            }
        }
        if !problems.is_empty() {
            c.broken += 1;
            eprintln!("est kill {}: BROKEN: {problems:?}", c.kills);
        }
        // The next run starts and serves an enrollment.
        let mut next = e.spawn();
        let ok = wait_listening(&mut next, port) && (0..20).any(|_| client.enroll());
        if ok {
            served.fetch_add(1, Ordering::Relaxed);
        }
        let _ = next.kill();
        let _ = next.wait();
        if !ok {
            c.failed_next += 1;
            eprintln!("est kill {}: next run failed", c.kills);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        s.join().unwrap();
    }
    eprintln!(
        "EST enrollments served during the run: {}",
        served.load(Ordering::Relaxed)
    );
    let out = e.audit(false);
    assert!(out.status.success(), "final audit verify: {out:?}");
    // Every certificate a client received spent a use of the token; every use spent has its
    // audited issuance.
    let left = gatecert::token::Tokens::open(&gatecert::token::path_in(&e.state()))
        .unwrap()
        .list()
        .unwrap()[0]
        .uses_left;
    let spent = u64::from(u32::MAX - left);
    let mut issues = 0u64;
    for f in std::fs::read_dir(e.state()).unwrap() {
        let f = f.unwrap();
        let name = f.file_name().to_string_lossy().into_owned();
        if name == "audit.log"
            || name
                .strip_prefix("audit.log.")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        {
            let text = String::from_utf8_lossy(&std::fs::read(f.path()).unwrap()).into_owned();
            issues += text.lines().filter(|l| l.contains("\"est.issue\"")).count() as u64;
        }
    }
    let served = served.load(Ordering::Relaxed);
    eprintln!("token uses spent {spent}, est.issue lines {issues}, certificates received {served}");
    c.double_used = served.saturating_sub(spent);
    c.uses_without_issue = spent.saturating_sub(issues);
    c
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "minutes of SIGKILLs; run by bench/crash.sh"]
fn sigkill_renew_and_est() {
    let renew_kills = env_u64("CRASH_RENEW_KILLS", 500);
    let est_kills = env_u64("CRASH_EST_KILLS", 500);
    let p = Pebble::start();
    let started = Instant::now();
    let est = std::thread::spawn(move || est_loop(est_kills));
    let renew = renew_loop(&p, renew_kills);
    let est = est.join().unwrap();
    let total = |f: fn(&Counts) -> u64| f(&renew) + f(&est);
    println!("crash harness ({:.0} s)", started.elapsed().as_secs_f64());
    println!("  renew: {renew:?}");
    println!("  est:   {est:?}");
    println!(
        "  total: kills {}, broken sets {}, repaired torn audit lines {}, double-used tokens {}, \
         token uses spent without an issuance {}, failed next runs {}",
        total(|c| c.kills),
        total(|c| c.broken),
        total(|c| c.torn_repaired),
        total(|c| c.double_used),
        total(|c| c.uses_without_issue),
        total(|c| c.failed_next),
    );
    assert!(total(|c| c.kills) >= renew_kills + est_kills);
    assert_eq!(total(|c| c.broken), 0, "broken sets");
    assert_eq!(total(|c| c.failed_next), 0, "failed next runs");
    assert_eq!(total(|c| c.double_used), 0, "double-used tokens");
}

// ---------------------------------------------------------------------------------------------
// renew with the certificate key (and the account key) in a PKCS#11 token

/// The most key pairs one certificate's renewals keep in its token after a kill: the live set's
/// and one other (a fresh key whose set never went live, or the replaced key not yet removed).
/// Each renewal removes the others first (README, "Keys in a TPM or HSM").
#[cfg(feature = "pkcs11")]
const TOKEN_KEY_BOUND: usize = 2;

#[cfg(feature = "pkcs11")]
mod token {
    use super::*;
    use common::softhsm::SoftHsm;

    pub struct TokenRenew {
        dir: TempDir,
        hsm: SoftHsm,
        /// The most renewal key pairs seen in the token.
        pub most: std::cell::Cell<usize>,
        /// SoftHSM2's store could no longer be opened after a kill.
        lost: std::cell::Cell<bool>,
    }

    /// `gw.<8 hex>`: the labels the certificate `gw`'s renewals make.
    fn renewal_label(label: &str) -> bool {
        label
            .strip_prefix("gw.")
            .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    impl TokenRenew {
        pub fn new(p: &Pebble) -> TokenRenew {
            let dir = TempDir::new("crash-token");
            let hsm = SoftHsm::init(dir.path());
            let r = TokenRenew {
                dir,
                hsm,
                most: Default::default(),
                lost: Default::default(),
            };
            r.configure(p, 0);
            r
        }
    }

    impl Rig for TokenRenew {
        fn tag(&self) -> &'static str {
            "token-renew"
        }

        fn cmd(&self, args: &[&str]) -> Command {
            let mut c = bin();
            self.hsm.env(&mut c);
            c.arg("--config")
                .arg(self.dir.path().join("gatecert.conf"))
                .args(args);
            c
        }

        /// The certificate's key and the account key in the token.
        fn configure(&self, p: &Pebble, round: u64) {
            let extra = format!(
                "\toption key_uri '{}'\n\toption account_key_uri '{}'\n\
                 \toption deploy_hook 'test -s \"$GATECERT_LIVE_DIR/key.uri\"'\n",
                self.hsm.uri("gw"),
                self.hsm.uri("acme"),
            );
            let domain = format!("gw{round}.token.example");
            let conf = common::acme_conf(&self.state(), p, &domain, "127.0.0.1:80", &extra);
            std::fs::write(self.dir.path().join("gatecert.conf"), conf).unwrap();
        }

        fn state(&self) -> PathBuf {
            self.dir.path().join("state")
        }

        fn after_kill(&self, _: &mut Counts) -> Vec<String> {
            self.problems().0
        }

        fn lost(&self) -> bool {
            self.lost.get()
        }

        /// After a renewal that went through, exactly one renewal key pair is left.
        fn after_next(&self, code: Option<i32>) -> Vec<String> {
            let (mut p, held) = self.problems();
            match code {
                Some(0) if held != 1 => p.push(format!("{held} renewal key pairs after a renewal")),
                Some(0 | 1) => {}
                _ => p.push(format!("exit {code:?}")),
            }
            p
        }
    }

    impl TokenRenew {
        /// What is wrong with the state dir and the token, and how many of the certificate's
        /// key pairs the token holds: whole files, no private key file anywhere, the live set's
        /// certificate carrying the public key of a key pair that is in the token, and at most
        /// [`TOKEN_KEY_BOUND`] renewal key pairs.
        fn problems(&self) -> (Vec<String>, usize) {
            let mut p = Vec::new();
            check_files(&self.state(), &mut p);
            no_private_key_file(&self.state(), &mut p);
            let labels = match self.hsm.try_objects() {
                Ok(objects) => common::softhsm::labels_of(&objects),
                // SoftHSM2 rewrites its object files in place; a process killed inside it can
                // leave its store unreadable. That is the store's own crash safety, not
                // gatecert's: counted apart, and the loop ends.
                Err(e) if e.contains("CKR_TOKEN_NOT_RECOGNIZED") => {
                    eprintln!("SoftHSM2's store is unreadable after the kill: {e}");
                    self.lost.set(true);
                    return (p, 0);
                }
                Err(e) => panic!("{e}"),
            };
            let mut ours: Vec<&str> = labels
                .iter()
                .map(|(_, l)| l.as_str())
                .filter(|l| renewal_label(l))
                .collect();
            ours.sort_unstable();
            ours.dedup();
            self.most.set(self.most.get().max(ours.len()));
            if ours.len() > TOKEN_KEY_BOUND {
                p.push(format!(
                    "{} renewal key pairs in the token (bound {TOKEN_KEY_BOUND}): {ours:?}",
                    ours.len()
                ));
            }
            let live = self.state().join("certs/gw/live");
            let uri = read(&live.join("key.uri"));
            let Ok(uri) = gatecert::crypto::KeyUri::parse(uri.trim()) else {
                p.push(format!("{}: no key.uri", live.display()));
                return (p, ours.len());
            };
            let private = labels
                .iter()
                .any(|(h, l)| h.starts_with("Private Key Object") && *l == uri.object);
            let matches = CertInfo::from_pem(&read(&live.join("cert.pem"))).is_ok_and(|c| {
                self.hsm
                    .public_point(&uri.object)
                    .is_some_and(|pt| c.spki_der.ends_with(&pt))
            });
            if !private || !matches {
                p.push(format!(
                    "live set: key {:?} (private key in the token: {private}, public key is the \
                     certificate's: {matches})",
                    uri.object
                ));
            }
            if read(&live.join("fullchain.pem"))
                != format!(
                    "{}{}",
                    read(&live.join("cert.pem")),
                    read(&live.join("chain.pem"))
                )
            {
                p.push(format!("{}: fullchain != cert + chain", live.display()));
            }
            (p, ours.len())
        }
    }

    /// No file under `dir` holds a private key (the keys are in the token).
    fn no_private_key_file(dir: &Path, problems: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                no_private_key_file(&path, problems);
            } else if e.file_name() == "key.pem" || read(&path).contains("PRIVATE KEY-----") {
                problems.push(format!("{}: a private key file", path.display()));
            }
        }
    }
}

/// The token variant; skipped with a message when SoftHSM2 is not installed (CI installs it,
/// and there a missing SoftHSM2 fails).
#[cfg(feature = "pkcs11")]
#[test]
#[ignore = "SIGKILLs with keys in SoftHSM2; run by bench/crash.sh"]
fn sigkill_renew_with_keys_in_softhsm() {
    if !common::softhsm::available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "SoftHSM2 / pkcs11-tool missing in CI"
        );
        println!("token variant skipped: SoftHSM2 or pkcs11-tool is not installed");
        return;
    }
    let kills = env_u64("CRASH_TOKEN_KILLS", 20);
    let p = Pebble::start();
    let started = Instant::now();
    // kill -9 during `gatecert renew --force` with the certificate's key (a fresh one per
    // renewal) and the account key in SoftHSM2; after each kill and each next run, the checks
    // of `token::TokenRenew::problems`; after a next run that renewed, exactly one renewal key
    // pair is left.
    let r = token::TokenRenew::new(&p);
    let c = kill_loop(&r, &p, kills);
    let most = r.most.get();
    println!(
        "crash harness, keys in SoftHSM2 ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    println!("  token: {c:?}");
    println!(
        "  token total: kills {}, broken sets {}, most renewal key pairs in the token {most} \
         (bound {TOKEN_KEY_BOUND}), SoftHSM2 store lost {}, failed next runs {}",
        c.kills, c.broken, c.hsm_store_lost, c.failed_next
    );
    assert!(c.kills >= kills || c.hsm_store_lost > 0);
    assert_eq!(c.broken, 0, "broken sets");
    assert_eq!(c.failed_next, 0, "failed next runs");
}
