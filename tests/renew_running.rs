//! Issue 14 item 3: `gatecert renew` while `gatecert run` holds the state directory hands the
//! request to the service over `<state_dir>/control.sock` and exits with the service's answer
//! (0 renewed, 1 nothing due, 2 error), never "locked".

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Pebble, Proc, TempDir};

fn gatecert(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(dir.join("gatecert.conf"))
        .args(args)
        .env_remove("GATECERT_FAKE_NOW")
        .output()
        .unwrap();
    common::keep_output("renew_running", "gatecert", &out);
    out
}

fn expect(out: &Output, want: i32) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(want), "stderr:\n{err}");
    assert!(!err.contains("locked"), "{err}");
}

fn serial(dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(dir.join("state/certs/gw/live/cert.pem"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn renew_while_the_service_runs_is_done_by_the_service() {
    let pebble = Pebble::start();
    let tmp = TempDir::new("renew-running");
    let dir = tmp.path();
    std::fs::write(
        dir.join("gatecert.conf"),
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory '{}'\n\toption ca_bundle '{}'\n\
             \tlist domain 'gw1.example.com'\n\toption http_listen '127.0.0.1:80'\n\n\
             config certificate 'local'\n\tlist domain 'gateway.local'\n\n\
             config est 'est'\n\toption enabled '0'\n",
            dir.join("state").display(),
            common::DIRECTORY,
            pebble.https_ca.display(),
        ),
    )
    .unwrap();
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
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    // The service issues both certificates by itself first.
    let t = Instant::now();
    while !dir.join("state/certs/gw/live/cert.pem").exists() {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "run exited:\n{}",
            logged()
        );
        assert!(t.elapsed() < Duration::from_secs(60), "{}", logged());
        std::thread::sleep(Duration::from_millis(100));
    }
    let sock = dir.join("state/control.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // Nothing due: 1.
    expect(&gatecert(dir, &["renew"]), 1);
    expect(&gatecert(dir, &["renew", "--cert", "local"]), 1);
    // --force: the service renews the ACME certificate: 0, a new serial.
    let before = serial(dir);
    expect(&gatecert(dir, &["renew", "--force", "--cert", "gw"]), 0);
    assert_ne!(serial(dir), before);
    assert!(logged().contains("gw: renewed on request"), "{}", logged());
    // An unknown certificate: 2, saying which.
    let out = gatecert(dir, &["renew", "--cert", "nope"]);
    expect(&out, 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("'nope'"));
    assert!(run.0.try_wait().unwrap().is_none(), "{}", logged());
}
