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
    assert!(stdout.contains("upstream: n/a (no leaf broker"), "{stdout}");
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

/// `token add` refuses, naming the name and why, every name the CA would refuse (wildcards,
/// spaces, empty labels, a trailing dot, names outside allow_suffix / allow_ip) and device
/// names with ':' (HTTP Basic splits user:password at the first colon, RFC 7617 §2). Nothing
/// is written for a refused token.
#[test]
fn token_add_refuses_what_the_ca_or_http_basic_would_refuse() {
    let env = Env::new("tokenadd");
    let t = now();
    for (name, why) in [
        ("*.sensor.local", "wildcard"),
        ("a b.local", "only letters, digits"),
        ("x..local", "empty label"),
        ("s1.local.", "ends with a dot"),
        ("s1.example.org", "outside allow_suffix"),
        ("192.0.2.1", "outside allow_suffix"),
    ] {
        let out = env.run(t, &["token", "add", "dev1", "--name", name]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(&format!("{name:?}")), "{name}: {err}");
        assert!(err.contains(why), "{name}: {err}");
        assert!(out.stdout.is_empty(), "{name}: a token was printed");
    }
    let out = env.run(t, &["token", "add", "dev:1", "--name", "s1.local"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("\"dev:1\"") && err.contains("':'"), "{err}");
    assert!(!env.state().join("tokens.json").exists());
    // A good name still works.
    let out = env.run(t, &["token", "add", "dev1", "--name", "s1.local"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
