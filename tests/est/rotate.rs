//! `gatecert ca rotate` (issue 18) against the real binary beside a running `gatecert run`: the
//! new intermediate goes live at the service's next tick, leaves of the replaced one still
//! verify with the served `/cacerts`, new enrollments and re-enrollments get the new one, the
//! service's own certificate is re-issued, `status` and `ca show` list both generations, and
//! once the replaced one's leaves have expired it is retired, each step audited.

use super::lifecycle::{issued, reenroll};
use super::*;

fn uci() -> &'static str {
    "config gatecert 'main'\n\toption state_dir '@STATE@'\n\toption log 'stderr'\n\
     config certificate 'gateway'\n\tlist domain 'gateway.local'\n\
     config ca 'local'\n\tlist allow_suffix 'local'\n"
}

/// `openssl verify` against the gateway's root with `untrusted` as the chain.
fn verifies(g: &Gatecert, untrusted: &Path, cert: &Path) -> bool {
    common::openssl_verifies(&g.path("root.pem"), untrusted, cert)
}

/// `/cacerts` as PEM (in `<tag>.pem`), and how many certificates it holds.
fn cacerts(g: &Gatecert, tag: &str) -> (PathBuf, usize) {
    let (code, _, body) = g.curl("cacerts", &[]);
    assert_eq!(code, 200);
    let pem = p7_to_pem(&g.dir, tag, &body);
    let path = g.path(&format!("{tag}.pem"));
    std::fs::write(&path, &pem).unwrap();
    (path, cert_count(&pem))
}

/// [`common::eventually`] with 15 s.
fn eventually(what: &str, f: &mut dyn FnMut() -> bool) {
    common::eventually(what, Duration::from_secs(15), f);
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ca_rotate_keeps_old_leaves_verifying_and_moves_everyone_to_the_new_intermediate() {
    let clock = std::env::temp_dir().join(format!("gatecert-rotate-now-{}", std::process::id()));
    std::fs::write(&clock, now().to_string()).unwrap();
    let env = [
        ("GATECERT_FAKE_NOW_FILE", clock.to_str().unwrap()),
        ("GATECERT_TICK_SECS", "1"),
    ];
    let g = Gatecert::start_seeded("rotate", Some(uci()), &|_| {}, &env);
    let d = &g.dir;
    let old_int = g.path("old-int.pem");
    std::fs::copy(g.state().join("ca/intermediate.pem"), &old_int).unwrap();
    let listener = g.state().join("certs/est-local/live/cert.pem");
    assert!(verifies(&g, &old_int, &listener));
    assert!(verifies(
        &g,
        &old_int,
        &g.state().join("certs/gateway/live/cert.pem")
    ));

    // A sensor enrolled on the first intermediate.
    let name = "rot-1.sensors.local";
    let token = g.token("rot-1", &[name]);
    let (key, csr) = make_csr(d, "r1", "ec:P-256", name, &[name]);
    let (code, _, body) = g.enroll("rot-1", &token, &csr);
    let old_leaf = issued(&g, "r1", code, &body);
    assert_eq!(cacerts(&g, "cacerts-before").1, 2);

    let out = ok(&g.cli(&["ca", "rotate"]));
    assert!(
        out.contains("is live") && out.contains("kept for verification"),
        "{out}"
    );
    let new_int = g.path("new-int.pem");
    std::fs::copy(g.state().join("ca/intermediate.pem"), &new_int).unwrap();
    // The root (the sensors' trust anchor, and the provisioning bundle's) is the same file.
    assert_eq!(
        std::fs::read(g.state().join("ca/root.pem")).unwrap(),
        std::fs::read(g.path("root.pem")).unwrap()
    );
    assert_ne!(
        std::fs::read(&new_int).unwrap(),
        std::fs::read(&old_int).unwrap()
    );
    // The replaced intermediate is kept, without its key; the new key is private.
    let kept: Vec<String> = std::fs::read_dir(g.state().join("ca/previous"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(kept.iter().all(|f| !f.ends_with(".key")), "{kept:?}");
    assert_eq!(kept.len(), 2, "{kept:?}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&g.state().join("ca/intermediate.key")), 0o600);
    assert_eq!(mode(&g.state().join("ca/previous")), 0o700);

    // The service takes it at its next tick: /cacerts serves both generations, and its own
    // listener certificate is re-issued from the new one.
    let mut served = (PathBuf::new(), 0);
    eventually("/cacerts serves both intermediates", &mut || {
        served = cacerts(&g, "cacerts-after");
        served.1 == 3
    });
    eventually("the listener certificate is re-issued", &mut || {
        verifies(&g, &new_int, &listener)
    });
    // So is the standalone certificate (`config certificate 'gateway'`, no directory).
    let standalone = g.state().join("certs/gateway/live/cert.pem");
    eventually("the standalone certificate is re-issued", &mut || {
        verifies(&g, &new_int, &standalone)
    });
    let cacerts_after = served.0;
    // The old leaf verifies with what /cacerts serves, and only through the old intermediate.
    assert!(verifies(&g, &cacerts_after, &old_leaf));
    assert!(verifies(&g, &old_int, &old_leaf));
    assert!(!verifies(&g, &new_int, &old_leaf));

    // A new sensor gets the new intermediate.
    let name2 = "rot-2.sensors.local";
    let token2 = g.token("rot-2", &[name2]);
    let (_, csr2) = make_csr(d, "r2", "ec:P-256", name2, &[name2]);
    let (code, _, body) = g.enroll("rot-2", &token2, &csr2);
    let new_leaf = issued(&g, "r2", code, &body);
    assert!(verifies(&g, &new_int, &new_leaf));
    assert!(!verifies(&g, &old_int, &new_leaf));

    // The old sensor re-enrolls with its old certificate and gets the new intermediate.
    let (_, csr3) = make_csr(d, "r1b", "ec:P-256", name, &[name]);
    let (code, body) = reenroll(&g, &old_leaf, &key, &csr3);
    let moved = issued(&g, "r1b", code, body.as_bytes());
    assert!(verifies(&g, &new_int, &moved));
    assert!(!verifies(&g, &old_int, &moved));

    // Both generations in `status` and `ca show`; every step audited; the chain verifies.
    let status = ok(&g.cli(&["status", "--json"]));
    let old_serial =
        gatecert::crypto::CertInfo::from_pem(&std::fs::read_to_string(&old_int).unwrap())
            .unwrap()
            .serial_hex();
    let row = format!("\"ca-intermediate-replaced-{old_serial}\"");
    assert!(status.contains(&row), "{status}");
    let show = ok(&g.cli(&["ca", "show"]));
    assert!(show.contains("replaced intermediate"), "{show}");
    g.assert_audit(
        "ca.rotate",
        &[
            "old_serial",
            "new_serial",
            "retire_after",
            "\"leaves_to_reenroll\":1",
        ],
    );
    ok(&g.cli(&["audit", "verify"]));

    // Once every leaf of the replaced intermediate has expired, the service retires it.
    let retire_after = std::fs::read_dir(g.state().join("ca/previous"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            v["retire_after"].as_i64().unwrap()
        })
        .unwrap();
    assert!(retire_after > now());
    std::fs::write(&clock, (retire_after + 1).to_string()).unwrap();
    // (The audit line comes first, then the files go.)
    eventually("the replaced intermediate is retired", &mut || {
        g.audit().contains("\"event\":\"ca.retire\"")
            && std::fs::read_dir(g.state().join("ca/previous"))
                .unwrap()
                .next()
                .is_none()
    });
    // (The service's clock is now ahead of curl's: its re-issued listener certificate is not
    // valid yet for curl, so /cacerts is not asked again; `ca show` reads the same directory.)
    let show = ok(&g.cli(&["ca", "show"]));
    assert!(!show.contains("replaced intermediate"), "{show}");
    ok(&g.cli(&["audit", "verify"]));
    let _ = std::fs::remove_file(&clock);
}

#[test]
fn ca_rotate_refuses_without_its_audit_line_or_the_root_key_and_changes_nothing() {
    let g = Gatecert::start_seeded("rotate-refused", Some(uci()), &|_| {}, &[]);
    let before = std::fs::read(g.state().join("ca/intermediate.pem")).unwrap();
    let unchanged = || {
        assert_eq!(
            std::fs::read(g.state().join("ca/intermediate.pem")).unwrap(),
            before
        );
        assert!(!g.state().join("ca/previous").exists());
        assert!(!g.state().join("ca/next.key").exists());
    };
    // An audit log that cannot be written (a directory in its place; the log kept aside).
    let log = g.state().join("audit.log");
    let saved = g.state().join("audit.log.saved");
    std::fs::rename(&log, &saved).unwrap();
    std::fs::create_dir(&log).unwrap();
    let out = g.cli(&["ca", "rotate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit.log"), "{err}");
    unchanged();
    std::fs::remove_dir(&log).unwrap();
    std::fs::rename(&saved, &log).unwrap();

    // The root key offline.
    std::fs::remove_file(g.state().join("ca/root.key")).unwrap();
    let out = g.cli(&["ca", "rotate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("root.key") && err.contains("ca rotate needs it"),
        "{err}"
    );
    unchanged();
    assert!(!g.audit().contains("ca.rotate"));
}

/// `ca sign` opens the CA, then waits for the inventory lock: a rotation that went live
/// meanwhile (here done with the library while the test holds that lock) is what it signs with.
#[test]
fn ca_sign_waiting_for_the_lock_signs_with_the_intermediate_rotated_meanwhile() {
    use gatecert::ca::LocalCa;
    use gatecert::leaves::{self, Inventory};
    use gatecert::trust::ClockTrust;

    let g = Gatecert::start_seeded("rotate-sign", Some(uci()), &|_| {}, &[]);
    let state = g.state();
    let name = "late.sensors.local";
    make_csr(&g.dir, "late", "ec:P-256", name, &[name]);
    let held = Inventory::open_locked(&leaves::path_in(&state), None).unwrap();
    let mut sign = Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(g.path("gatecert.uci"))
        .args(["ca", "sign", "--csr"])
        .arg(g.path("late.csr.der"))
        .arg("--out")
        .arg(g.path("late.pem"))
        .stderr(common::log_file("est", "rotate-sign"))
        .spawn()
        .unwrap();
    // Blocked on the lock (a waiting flock is listed with "->" in /proc/locks).
    let pid = sign.id().to_string();
    eventually("ca sign waits for the inventory lock", &mut || {
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("->") && l.split_whitespace().any(|w| w == pid))
    });
    let cfg = gatecert::config::Config::standalone(state.clone()).ca;
    let dir = LocalCa::dir_in(&state);
    let ca = LocalCa::open(&dir, &cfg).unwrap();
    let trusted = ClockTrust::load(&state, Some(ca.intermediate().not_before))
        .check(now())
        .unwrap();
    ca.stage_rotation(trusted, 0).unwrap().commit().unwrap();
    drop(held);
    assert!(sign.wait().unwrap().success());
    let new_int = g.path("new-int.pem");
    std::fs::copy(dir.join("intermediate.pem"), &new_int).unwrap();
    assert!(verifies(&g, &new_int, &g.path("late.pem")));
}
