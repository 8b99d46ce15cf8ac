//! Issue 14 item 7: standalone certificates (from the local CA, the embedded default's
//! `gateway`) are installed, exported to `install_dir` and deployed with `deploy_hook` the same
//! way by `gatecert renew` (cron/timer mode) and by the service, with the ACME certificates'
//! rollback when the hook fails.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, TempDir};

/// The embedded default's shape (one standalone `gateway` certificate, EST off here) with an
/// `install_dir` and a deploy hook that appends a line to `hook.log` and exits with `hook_exit`.
fn config(dir: &Path, extra_domain: &str, hook_exit: u8) -> PathBuf {
    let conf = dir.join("gatecert.conf");
    std::fs::write(
        &conf,
        format!(
            "config gatecert 'main'\n\toption state_dir '{state}'\n\toption log 'stderr'\n\n\
             config certificate 'gateway'\n\tlist domain 'gateway.local'\n{extra_domain}\
             \toption install_dir '{out}'\n\
             \toption deploy_hook 'echo \"$GATECERT_CERT_NAME\" >> {log}; exit {hook_exit}'\n\n\
             config est 'est'\n\toption enabled '0'\n",
            state = dir.join("state").display(),
            out = dir.join("out").display(),
            log = dir.join("hook.log").display(),
        ),
    )
    .unwrap();
    conf
}

fn gatecert(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(dir.join("gatecert.conf"))
        .args(args)
        .env_remove("GATECERT_FAKE_NOW")
        .output()
        .unwrap();
    common::keep_output("standalone", "gatecert", &out);
    out
}

fn hook_runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("hook.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == "gateway")
        .count()
}

/// The exported certificate verifies to the local CA's root and its key is 0600.
fn check_exported(dir: &Path) {
    let out = dir.join("out");
    let v = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(dir.join("state/ca/root.pem"))
        .arg("-untrusted")
        .arg(out.join("gateway.chain.crt"))
        .arg(out.join("gateway.crt"))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).contains(": OK"),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
    for f in ["gateway.key", "gateway.combined.crt"] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert!(out.join("gateway.fullchain.crt").exists());
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn renew_issues_exports_and_deploys_standalone_certificates() {
    let tmp = TempDir::new("standalone-renew");
    let dir = tmp.path();
    config(dir, "", 0);
    let out = gatecert(dir, &["renew"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    check_exported(dir);
    assert_eq!(hook_runs(dir), 1);
    let first = std::fs::read(dir.join("out/gateway.crt")).unwrap();
    // Nothing due: exit 1, no hook.
    let out = gatecert(dir, &["renew"]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(hook_runs(dir), 1);

    // New names make it due; the hook fails: exit 2, the previous set is back and exported,
    // and the hook ran again for it.
    config(dir, "\tlist domain 'www.gateway.local'\n", 3);
    let out = gatecert(dir, &["renew"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains("deploy_hook") && err.contains("restored"),
        "{err}"
    );
    assert_eq!(hook_runs(dir), 3);
    assert_eq!(std::fs::read(dir.join("out/gateway.crt")).unwrap(), first);
    assert_eq!(
        std::fs::read(dir.join("state/certs/gateway/live/cert.pem")).unwrap(),
        first
    );
}

#[test]
fn the_service_exports_and_deploys_standalone_certificates() {
    let tmp = TempDir::new("standalone-run");
    let dir = tmp.path();
    config(dir, "", 0);
    let log = dir.join("run.log");
    let mut run = Proc(
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(dir.join("gatecert.conf"))
            .arg("run")
            .env_remove("GATECERT_FAKE_NOW")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    while hook_runs(dir) == 0 {
        let logged = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(run.0.try_wait().unwrap().is_none(), "run exited:\n{logged}");
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no deploy hook:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    check_exported(dir);
    assert_eq!(hook_runs(dir), 1);
    // The same set is live in the state directory and exported.
    assert_eq!(
        std::fs::read(dir.join("out/gateway.crt")).unwrap(),
        std::fs::read(dir.join("state/certs/gateway/live/cert.pem")).unwrap()
    );
}

#[test]
fn a_failing_deploy_hook_is_logged_and_the_service_goes_on() {
    let tmp = TempDir::new("standalone-run-hook-fails");
    let dir = tmp.path();
    config(dir, "", 3);
    let log = dir.join("run.log");
    let mut run = Proc(
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(dir.join("gatecert.conf"))
            .arg("run")
            .env("GATECERT_TICK_SECS", "1")
            .env_remove("GATECERT_FAKE_NOW")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let t = Instant::now();
    while !logged().contains("deploy_hook") {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "run exited:\n{}",
            logged()
        );
        assert!(t.elapsed() < Duration::from_secs(20), "{}", logged());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ticks later the service still runs; with no previous set, the new one stays live.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        run.0.try_wait().unwrap().is_none(),
        "run exited:\n{}",
        logged()
    );
    check_exported(dir);
}

/// The hook fails on a renewal (new names, via SIGHUP): the previous set is put back and the
/// hook runs again for it, once; the service does not reissue at every tick.
#[test]
fn a_failing_hook_is_not_retried_at_every_tick() {
    let tmp = TempDir::new("standalone-run-no-retry-loop");
    let dir = tmp.path();
    config(dir, "", 0);
    let log = dir.join("run.log");
    let mut run = Proc(
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(dir.join("gatecert.conf"))
            .arg("run")
            .env("GATECERT_TICK_SECS", "1")
            .env_remove("GATECERT_FAKE_NOW")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let wait_for = |runs: usize| {
        let t = Instant::now();
        while hook_runs(dir) < runs {
            assert!(t.elapsed() < Duration::from_secs(20), "{}", logged());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(1);
    let first = std::fs::read(dir.join("out/gateway.crt")).unwrap();
    config(dir, "\tlist domain 'www.gateway.local'\n", 3);
    let pid = run.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    // The new set's hook fails, the old set is back and its hook runs: 3 in all.
    wait_for(3);
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(hook_runs(dir), 3, "{}", logged());
    assert_eq!(std::fs::read(dir.join("out/gateway.crt")).unwrap(), first);
    assert!(run.0.try_wait().unwrap().is_none(), "{}", logged());
}
