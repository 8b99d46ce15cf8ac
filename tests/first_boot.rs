//! Issue 14 item 8: first boot of `gatecert run` with an ACME certificate for a public name
//! and EST on. The service must stay up, serve EST at once on a local certificate for the
//! router's own names, and switch to the ACME certificate once it is issued (no restart).
//!
//! The host name is set in a private UTS namespace (`unshare -u`) to a fully qualified one,
//! as Yocto images often have: the router's local name then comes from its first label.

mod common;

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Pebble, Proc, TempDir};

/// The served certificate's issuer and subjectAltName, from openssl s_client.
fn served(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} </dev/null 2>/dev/null | \
             openssl x509 -noout -issuer -ext subjectAltName"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

use common::free_port;

#[test]
fn first_boot_with_an_acme_certificate_serves_est_locally_then_switches() {
    let pebble = Pebble::start();
    let tmp = TempDir::new("first-boot");
    let dir = tmp.path();
    let state = dir.join("state");
    let conf = dir.join("gatecert.conf");
    std::fs::write(
        &conf,
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory '{}'\n\toption ca_bundle '{}'\n\
             \tlist domain 'gw1.example.com'\n\toption http_listen '127.0.0.1:80'\n\n\
             config ca 'local'\n\tlist allow_suffix 'lan'\n\n\
             config est 'est'\n\toption enabled '1'\n",
            state.display(),
            common::DIRECTORY,
            pebble.https_ca.display(),
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("run.log");
    let bin = env!("CARGO_BIN_EXE_gatecert");
    let mut run = Proc(
        Command::new("unshare")
            .args([
                "-u",
                "sh",
                "-c",
                "hostname gw1.example.com && exec \"$@\"",
                "sh",
                bin,
            ])
            .arg("--config")
            .arg(&conf)
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .env("GATECERT_TICK_SECS", "1")
            .env_remove("GATECERT_FAKE_NOW")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let t = Instant::now();
    while !common::listening(("127.0.0.1", port)) {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "gatecert run exited:\n{}",
            logged()
        );
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "EST did not listen:\n{}",
            logged()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // At once: EST answers, on the local CA's certificate for the router's own name.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(state.join("ca/root.pem"))
        .args(["--resolve", &format!("gw1.lan:{port}:127.0.0.1")])
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://gw1.lan:{port}/.well-known/est/cacerts"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logged()
    );
    // Then the ACME certificate, once issued: pebble's issuer, the public name.
    let t = Instant::now();
    loop {
        let now = served(port);
        if now.contains("Pebble") {
            assert!(now.contains("DNS:gw1.example.com"), "{now}");
            break;
        }
        assert!(now.contains("DNS:gw1.lan"), "{now}\n{}", logged());
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "gatecert run exited:\n{}",
            logged()
        );
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the ACME certificate was not served:\n{now}\n{}",
            logged()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(state.join("certs/gw/live/cert.pem").exists());
    assert!(run.0.try_wait().unwrap().is_none(), "{}", logged());
}

/// The CA allows none of the router's names (its intermediate was made for `lan`, the config
/// now says `corp.example`): the service stays up without EST, says so in the log and in
/// `status`, and does not exit.
#[test]
fn no_name_the_ca_allows_keeps_running_without_est() {
    let tmp = TempDir::new("first-boot-no-est");
    let dir = tmp.path();
    let state = dir.join("state");
    let conf = dir.join("gatecert.conf");
    let write = |suffix: &str| {
        std::fs::write(
            &conf,
            format!(
                "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
                 config certificate 'gw'\n\toption directory 'https://127.0.0.1:1/dir'\n\
                 \tlist domain 'gw1.example.com'\n\n\
                 config ca 'local'\n\tlist allow_suffix '{suffix}'\n\n\
                 config est 'est'\n\toption enabled '1'\n",
                state.display(),
            ),
        )
        .unwrap();
    };
    let port = free_port();
    let start = |log: &std::path::Path| {
        Proc(
            Command::new(env!("CARGO_BIN_EXE_gatecert"))
                .arg("--config")
                .arg(&conf)
                .args(["run", "--listen", &format!("127.0.0.1:{port}")])
                .env("GATECERT_TICK_SECS", "1")
                .env_remove("GATECERT_FAKE_NOW")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    // The CA is made for `lan`.
    write("lan");
    let first = dir.join("first.log");
    let run = start(&first);
    let t = Instant::now();
    while !common::listening(("127.0.0.1", port)) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{:?}",
            std::fs::read_to_string(&first)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(run);
    // Now nothing of the router's is within both allow_suffix and the intermediate's constraints.
    write("corp.example");
    let log = dir.join("run.log");
    let mut run = start(&log);
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let t = Instant::now();
    while !logged().contains("EST listener off") {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "run exited:\n{}",
            logged()
        );
        assert!(t.elapsed() < Duration::from_secs(20), "{}", logged());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Several ticks later: still up, logged once, no listener.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        run.0.try_wait().unwrap().is_none(),
        "run exited:\n{}",
        logged()
    );
    assert_eq!(
        logged().matches("EST listener off").count(),
        1,
        "{}",
        logged()
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let out = Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(&conf)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let attention = json["attention"].to_string();
    assert!(attention.contains("EST off"), "{attention}");
}

/// A host name that is no DNS label (`my_router`): the listener's local certificate is for
/// `gatecert.<first allow_suffix>`.
#[test]
fn a_host_name_that_is_no_dns_label_falls_back_to_gatecert_under_the_suffix() {
    let tmp = TempDir::new("first-boot-fallback");
    let dir = tmp.path();
    let conf = dir.join("gatecert.conf");
    std::fs::write(
        &conf,
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config certificate 'gw'\n\toption directory 'https://127.0.0.1:1/dir'\n\
             \tlist domain 'gw1.example.com'\n\n\
             config ca 'local'\n\tlist allow_suffix 'lan'\n\tlist allow_suffix 'home.arpa'\n\n\
             config est 'est'\n\toption enabled '1'\n",
            dir.join("state").display(),
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.join("run.log");
    let mut run = Proc(
        Command::new("unshare")
            .args([
                "-u",
                "sh",
                "-c",
                "echo my_router > /proc/sys/kernel/hostname && exec \"$@\"",
                "sh",
            ])
            .arg(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&conf)
            .args(["run", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("GATECERT_FAKE_NOW")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    let t = Instant::now();
    while !common::listening(("127.0.0.1", port)) {
        assert!(
            run.0.try_wait().unwrap().is_none(),
            "run exited:\n{}",
            logged()
        );
        assert!(t.elapsed() < Duration::from_secs(20), "{}", logged());
        std::thread::sleep(Duration::from_millis(50));
    }
    let sans = served(port);
    assert!(sans.contains("DNS:gatecert.lan"), "{sans}");
    assert!(
        !sans.contains("home.arpa") && !sans.contains("my_router"),
        "{sans}"
    );
}
