use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::report::fixture::{Fixture, DAY};

fn find<'a>(lines: &'a [CheckLine], name: &str) -> &'a CheckLine {
    lines
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {lines:#?}"))
}

/// Serves `body` once per connection on 127.0.0.1, `n` times, over plain HTTP.
fn serve(body: &'static str, n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for _ in 0..n {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

#[test]
fn standalone_passes_and_says_na() {
    let f = Fixture::new("check-ok");
    let mut cfg = f.cfg.clone();
    cfg.est.listen = "127.0.0.1:0".parse().unwrap();
    let lines = preflight(&cfg, f.t0 + DAY);
    assert!(
        lines.iter().all(|l| l.outcome != Outcome::Fail),
        "{lines:#?}"
    );
    assert_eq!(
        find(&lines, "acme directory gateway").outcome,
        Outcome::NotApplicable
    );
    assert!(find(&lines, "config")
        .detail
        .contains("parses (1 certificate(s))"));
    assert!(find(&lines, "state dir space").detail.contains("KiB free"));
    assert!(find(&lines, "port est listen")
        .detail
        .ends_with("can be bound"));
    assert_eq!(
        verdict(&lines),
        format!("check: all {} checks passed", lines.len())
    );
    let leftovers: Vec<_> = std::fs::read_dir(f.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".check-"))
        .collect();
    assert!(leftovers.is_empty(), "the write probe is removed");
}

#[test]
fn clock_and_state_dir_failures() {
    let f = Fixture::new("check-clock");
    let lines = preflight(&f.cfg, f.t0 - DAY);
    let c = find(&lines, "clock");
    assert_eq!(c.outcome, Outcome::Fail);
    assert!(c.to_string().starts_with("FAIL clock: untrusted: "), "{c}");
    assert!(c.detail.contains("notBefore"), "{c}");

    let mut cfg = f.cfg.clone();
    cfg.main.state_dir = f.state_dir().join("new").join("deeper");
    let lines = check_state_dir(&cfg.main.state_dir);
    assert!(lines[0].detail.ends_with("created (0700)"), "{lines:?}");
    let file = f.state_dir().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let lines = check_state_dir(&file);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].outcome, Outcome::Fail);
}

#[test]
// qemu-user before 8.1 hands the host's SO_ERROR (111) to a MIPS guest untranslated, so a refused
// connect under emulation is not ECONNREFUSED (146 on MIPS). Real MIPS hardware is not affected;
// x86_64 and ARM (also under qemu) run this test.
#[cfg_attr(
    target_arch = "mips",
    ignore = "qemu-user < 8.1 does not translate SO_ERROR for MIPS guests"
)]
fn acme_directory_reachable_or_not() {
    let f = Fixture::new("check-dir");
    let dir = serve(
        r#"{"newNonce":"http://x/n","newAccount":"http://x/a","newOrder":"http://x/o"}"#,
        1,
    );
    let bad = serve(r#"{"hello":"world"}"#, 1);
    let mut cfg = f.cfg.clone();
    let bundle = f.state_dir().join("ca").join("root.pem");
    let mut c = cfg.certificates[0].clone();
    c.ca_bundle = Some(bundle.clone());
    c.directory = Some(format!("http://{dir}/dir"));
    c.challenge = ChallengeKind::Dns01;
    cfg.certificates = vec![c.clone()];
    c.name = "refused".into();
    c.directory = Some("http://127.0.0.1:1/dir".into());
    cfg.certificates.push(c.clone());
    c.name = "notacme".into();
    c.directory = Some(format!("http://{bad}/dir"));
    cfg.certificates.push(c.clone());
    c.name = "nobundle".into();
    c.ca_bundle = Some(f.state_dir().join("missing.pem"));
    cfg.certificates.push(c);
    assert_eq!(check_directory(&cfg.certificates[0]).outcome, Outcome::Ok);
    let r = check_directory(&cfg.certificates[1]);
    assert_eq!(r.outcome, Outcome::Fail);
    assert!(r.detail.starts_with("GET http://127.0.0.1:1/dir "), "{r}");
    assert!(r.detail.contains("Connection refused"), "{r}");
    let r = check_directory(&cfg.certificates[2]);
    assert!(
        r.detail
            .ends_with("not an ACME directory (no newNonce, newAccount, newOrder)"),
        "{r}"
    );
    let r = check_directory(&cfg.certificates[3]);
    assert!(
        r.detail.starts_with("ca_bundle (trust bundle) ") && r.detail.contains("missing.pem"),
        "{r}"
    );
    // With `list issuer`, each issuer's directory is checked with its own trust.
    let issuer = |name: &str, directory: &str| crate::config::Issuer {
        name: name.into(),
        line: 1,
        directory: directory.into(),
        ca_bundle: Some(bundle.clone()),
        email: None,
        eab: None,
        profile: None,
    };
    let mut gw = cfg.certificates[0].clone();
    let up = serve(
        r#"{"newNonce":"http://x/n","newAccount":"http://x/a","newOrder":"http://x/o"}"#,
        1,
    );
    gw.issuers = vec![
        issuer("primary", "http://127.0.0.1:1/dir"),
        issuer("backup", &format!("http://{up}/dir")),
    ];
    cfg.certificates = vec![gw];
    cfg.est.listen = "127.0.0.1:0".parse().unwrap();
    let lines = preflight(&cfg, f.t0 + DAY);
    let p = find(&lines, "acme directory gateway issuer primary");
    assert_eq!(p.outcome, Outcome::Fail, "{p}");
    let b = find(&lines, "acme directory gateway issuer backup");
    assert_eq!(b.outcome, Outcome::Ok, "{b}");
}

#[test]
fn ports_in_use_and_the_daemon() {
    let f = Fixture::new("check-ports");
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = f.cfg.clone();
    cfg.est.listen = held.local_addr().unwrap();
    let lines = check_ports(&cfg);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].outcome, Outcome::Fail);
    assert!(
        lines[0].detail.ends_with("is in use by another program"),
        "{lines:?}"
    );
    let _lock = store::Lock::acquire(f.state_dir()).unwrap();
    let lines = check_ports(&cfg);
    assert_eq!(lines[0].outcome, Outcome::Ok);
    assert!(
        lines[0]
            .detail
            .contains("held by the running `gatecert run`"),
        "{lines:?}"
    );

    // http-01 standalone and tls-alpn-01 ports count only for ACME certificates.
    let mut c = cfg.certificates[0].clone();
    c.directory = Some("http://127.0.0.1:1/".into());
    c.http = HttpMode::Standalone("127.0.0.1:0".parse().unwrap());
    cfg.certificates.push(c.clone());
    c.name = "alpn".into();
    c.challenge = ChallengeKind::TlsAlpn01;
    c.tls_alpn_listen = "127.0.0.1:1".parse().unwrap();
    cfg.certificates.push(c);
    let what: Vec<String> = listen_addrs(&cfg).into_iter().map(|(_, w)| w).collect();
    assert_eq!(
        what,
        vec![
            "http_listen (gateway)",
            "tls_alpn_listen (alpn)",
            "est listen"
        ]
    );
}

#[test]
fn hooks_exist_and_are_executable() {
    let f = Fixture::new("check-hooks");
    let run = f.state_dir().join("hook.sh");
    let noexec = f.state_dir().join("noexec.sh");
    for p in [&run, &noexec] {
        std::fs::write(p, "#!/bin/sh\nexit 0\n").unwrap();
    }
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cfg = f.cfg.clone();
    let mut c = cfg.certificates[0].clone();
    c.dns_hook = Some(run.clone());
    c.deploy_hook = Some(format!("{} --reload", noexec.display()));
    cfg.certificates = vec![c.clone()];
    c.name = "relative".into();
    c.dns_hook = Some(f.state_dir().join("absent.sh"));
    c.deploy_hook = Some("service uhttpd reload".into());
    cfg.certificates.push(c);
    let lines = check_hooks(&cfg);
    assert_eq!(
        lines.len(),
        3,
        "a relative deploy_hook is not checked: {lines:#?}"
    );
    assert_eq!(find(&lines, "hook dns_hook (gateway)").outcome, Outcome::Ok);
    let l = find(&lines, "hook deploy_hook (gateway)");
    assert!(l.detail.ends_with("noexec.sh is not executable"), "{l}");
    let l = find(&lines, "hook dns_hook (relative)");
    assert_eq!(l.outcome, Outcome::Fail);
    assert!(l.detail.contains("absent.sh"), "{l}");
}

#[test]
fn a_missing_or_expired_ca_fails_when_the_config_needs_one() {
    let f = Fixture::new("check-ca");
    let cfg = f.cfg.clone();
    let ok = preflight(&cfg, f.t0 + DAY);
    assert_eq!(find(&ok, "local CA").outcome, Outcome::Ok, "{ok:#?}");
    // Expired (the intermediate's notAfter has passed).
    let int_na = LocalCa::open(&LocalCa::dir_in(f.state_dir()), &cfg.ca)
        .unwrap()
        .intermediate()
        .not_after;
    let l = check_ca(&cfg, int_na + 1);
    assert_eq!(l.outcome, Outcome::Fail, "{l}");
    assert!(l.detail.contains("expired"), "{l}");
    // Fresh state directory: none yet is fine.
    std::fs::rename(f.state_dir().join("ca"), f.state_dir().join("ca.away")).unwrap();
    let l = check_ca(&cfg, f.t0 + DAY);
    assert_eq!(l.outcome, Outcome::Ok, "{l}");
    assert!(l.detail.contains("none yet"), "{l}");
    // A used state directory (it has an audit log) without its CA: missing.
    std::fs::write(crate::audit::path_in(f.state_dir()), "").unwrap();
    let l = check_ca(&cfg, f.t0 + DAY);
    assert_eq!(l.outcome, Outcome::Fail, "{l}");
    assert!(l.detail.contains("missing"), "{l}");
    // An ACME-only config does not need one.
    let mut acme = cfg.clone();
    acme.certificates[0].directory = Some("https://127.0.0.1:1/dir".into());
    acme.est.enabled = false;
    assert_eq!(check_ca(&acme, f.t0 + DAY).outcome, Outcome::NotApplicable);
}
