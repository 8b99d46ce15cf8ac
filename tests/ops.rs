//! `gatecert status`, `check` and the clock-trust refusal, at the binary level, with
//! `GATECERT_FAKE_NOW` driving the clock.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DAY: i64 = 86_400;

struct Env {
    dir: PathBuf,
    config: PathBuf,
}

impl Env {
    fn new(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("gatecert-ops-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("gatecert.conf");
        let state = dir.join("state");
        // A free loopback port for EST, so `check` can bind it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            &config,
            format!(
                "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\
                 config certificate 'gateway'\n\tlist domain 'gateway.local'\n\
                 config ca 'local'\n\tlist allow_suffix 'local'\n\
                 config est 'est'\n\toption listen '127.0.0.1:{port}'\n",
                state.display()
            ),
        )
        .unwrap();
        Env { dir, config }
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn run(&self, now: i64, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_gatecert"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("GATECERT_FAKE_NOW", now.to_string())
            .output()
            .unwrap()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every file and symlink under `dir`: path → (mode, sha-less content or link target).
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let body = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).unwrap()
            };
            out.insert(p, (m.permissions().mode(), body));
        }
    }
    out
}

fn openssl_csr(dir: &Path, cn: &str) -> PathBuf {
    let csr = dir.join(format!("{cn}.csr"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(dir.join(format!("{cn}.key")))
        .arg("-out")
        .arg(&csr)
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    csr
}

#[test]
fn clock_untrusted_refuses_issuance_and_changes_nothing() {
    let env = Env::new("clock");
    let t = now();
    let out = env.run(t, &["ca", "init"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = env.run(0, &["check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("FAIL clock: untrusted: the system clock (1970-01-01T00:00:00Z)"),
        "{stdout}"
    );
    assert!(
        stdout.lines().last().unwrap().contains("FAILED"),
        "{stdout}"
    );

    let csr = openssl_csr(&env.dir, "t1.local");
    let leaf = env.dir.join("t1.crt");
    let before = tree(&env.state());
    // One day before the CA's notBefore (which is backdated 5 minutes from `t`).
    let out = env.run(
        t - 300 - DAY,
        &[
            "ca",
            "sign",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            leaf.to_str().unwrap(),
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to issue or renew until the clock is set"),
        "{stderr}"
    );
    assert!(!leaf.exists());
    assert_eq!(tree(&env.state()), before, "nothing on disk changed");

    // The same request with a sane clock goes through.
    let out = env.run(
        t + 60,
        &[
            "ca",
            "sign",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            leaf.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(leaf.exists());

    let out = env.run(t + 60, &["check"]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ok   clock: trusted"), "{stdout}");
    assert!(
        stdout.contains("n/a  acme directory gateway: standalone"),
        "{stdout}"
    );
}

#[test]
fn status_exit_codes_and_json() {
    let env = Env::new("status");
    let t = now();
    // No CA yet, no gateway certificate: attention.
    let out = env.run(t, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("local CA: MISSING"), "{stdout}");
    assert!(stdout.contains("upstream: n/a (standalone)"), "{stdout}");
    assert!(env.run(t, &["ca", "init"]).status.success());

    let out = env.run(t, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "gateway set still missing");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], "gatecert.status/1");
    assert_eq!(v["certificates"][0]["state"], "missing");
    assert_eq!(v["ca"]["present"], true);
    assert_eq!(v["clock"]["trusted"], true);

    assert_eq!(env.run(t, &["status", "--bogus"]).status.code(), Some(2));
    let out = env.run(0, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clock"]["trusted"], false);
}

#[test]
fn check_reports_a_bad_config_by_name() {
    let env = Env::new("badcfg");
    std::fs::write(
        &env.config,
        "config gatecert 'main'\n\toption alert_days 'soon'\n",
    )
    .unwrap();
    let out = env.run(now(), &["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("FAIL config: "), "{stdout}");
    assert!(
        stdout.contains(&format!("{}:2", env.config.display())),
        "{stdout}"
    );
}

/// A config over 1 MiB (here: a valid one padded with comments to 2 MiB) is refused by name
/// and limit, before it is parsed, by every command that reads it.
#[test]
fn an_oversized_config_is_refused_by_name_and_limit() {
    let env = Env::new("bigcfg");
    let mut cfg = std::fs::read_to_string(&env.config).unwrap();
    let pad = format!("# {}\n", "x".repeat(1021));
    while cfg.len() < 2 << 20 {
        cfg.push_str(&pad);
    }
    std::fs::write(&env.config, &cfg).unwrap();
    for args in [&["check"][..], &["status"], &["token", "list"]] {
        let out = env.run(now(), args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(
            all.contains(&format!(
                "config {} is larger than 1048576 bytes",
                env.config.display()
            )),
            "{args:?}: {all}"
        );
    }
}
