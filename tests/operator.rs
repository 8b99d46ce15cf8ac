//! The operator's day one, at the real binary: `token add --bundle/--qr` (the QR code as a
//! terminal shows it, rendered to a PNG and decoded by zbarimg back to the same JSON),
//! `token add` at 1970, `ca sign --days` with `--lifetime`, `check` without its CA, the words
//! and columns of `token list` and `leaves`, `demo --keep` then `status --state-dir`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_gatecert");

fn config_in(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("gatecert.conf");
    std::fs::write(
        &cfg,
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\n\
             config ca 'local'\n\tlist allow_suffix 'sensors.local'\n\tlist allow_suffix 'gateway.local'\n\
             \tlist allow_ip '192.0.2.0/24'\n\n\
             config certificate 'gateway'\n\tlist domain 'gateway.local'\n\tlist ip '192.0.2.1'\n{extra}",
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}

fn gatecert(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .current_dir(dir)
        .env_remove("GATECERT_FAKE_NOW")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    // `token add` prints the token (a secret) on stdout: only its stderr is kept.
    let kept = if args.contains(&"add") {
        Output {
            stdout: Vec::new(),
            ..out.clone()
        }
    } else {
        out.clone()
    };
    common::keep_output("operator", "gatecert", &kept);
    out
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Draws the terminal's text the way a terminal with light text on a dark background shows
/// it: each character cell 2 px wide and 4 px high, `█` both halves light, `▀` the top half,
/// `▄` the bottom half, a space none. Returns the PNG's path.
fn render_terminal_png(text: &str, png: &Path) {
    let script = r#"
import sys
from PIL import Image
lines = [l for l in open(sys.argv[1], encoding='utf-8').read().split('\n') if l]
S = 4  # pixels per module
w = max(len(l) for l in lines)
img = Image.new('L', (w * S, len(lines) * 2 * S), 0)
px = img.load()
for y, line in enumerate(lines):
    for x, ch in enumerate(line):
        top = ch in '\u2588\u2580'
        bottom = ch in '\u2588\u2584'
        for dy in range(S):
            for dx in range(S):
                if top: px[x * S + dx, y * 2 * S + dy] = 255
                if bottom: px[x * S + dx, y * 2 * S + S + dy] = 255
img.save(sys.argv[2])
"#;
    let txt = png.with_extension("txt");
    std::fs::write(&txt, text).unwrap();
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&txt)
        .arg(png)
        .output()
        .unwrap();
    assert!(out.status.success(), "PIL rendering: {out:?}");
}

#[test]
fn token_add_bundle_and_its_qr_code_decode_to_the_same_json() {
    let t = TempDir::new("op-bundle");
    let cfg = config_in(t.path(), "");
    let cfg = cfg.to_str().unwrap();
    // No CA yet: no trust anchor to hand out, and no token made.
    let out = gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "s1",
            "--name",
            "s1.sensors.local",
            "--bundle",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trust anchor"),
        "{out:?}"
    );
    assert!(!t.path().join("state/tokens.jnl").exists());

    ok(&gatecert(t.path(), &[], &["--config", cfg, "ca", "init"]));
    let both = gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "s1",
            "--name",
            "s1.sensors.local",
            "--bundle",
            "--qr",
        ],
    );
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    assert!(String::from_utf8_lossy(&both.stderr).contains("one of --bundle, --qr and --qr-matrix"));
    assert!(!t.path().join("state/tokens.jnl").exists());
    let json = ok(&gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "s1",
            "--name",
            "s1.sensors.local",
            "--bundle",
        ],
    ));
    let b: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(b["schema"], "gatecert.bundle/1");
    assert_eq!(b["device"], "s1");
    assert_eq!(b["names"], serde_json::json!(["s1.sensors.local"]));
    assert_eq!(
        b["est_urls"],
        serde_json::json!([
            "https://gateway.local:8443/.well-known/est/",
            "https://192.0.2.1:8443/.well-known/est/"
        ])
    );
    assert_eq!(b["est_tls"], "trust_anchor");
    let root = t.path().join("state/ca/root.pem");
    assert_eq!(
        b["trust_anchor"]["pem"].as_str().unwrap().trim(),
        std::fs::read_to_string(&root).unwrap().trim()
    );
    let fp = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&root)
        .output()
        .unwrap();
    let fp = String::from_utf8_lossy(&fp.stdout);
    assert_eq!(
        fp.trim().rsplit('=').next().unwrap(),
        b["trust_anchor"]["sha256"].as_str().unwrap()
    );
    let token = b["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 43);
    assert!(b["expires"].as_str().unwrap().ends_with('Z'));
    // The token is a secret: stdout once, nowhere in the state directory or on stderr.
    common::keep_secret(&token);
    let audit = std::fs::read_to_string(t.path().join("state/audit.log")).unwrap();
    assert!(!audit.contains(&token));
    assert!(!String::from_utf8_lossy(
        &gatecert(t.path(), &[], &["--config", cfg, "token", "list"]).stdout
    )
    .contains(&token));

    // --qr: the code as the terminal shows it, then the same JSON on one line.
    let out = gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "s2",
            "--name",
            "s2.sensors.local",
            "--qr",
        ],
    );
    let text = ok(&out);
    let (qr, json_line): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| l.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' ')));
    assert_eq!(json_line.len(), 1, "{text}");
    // As README says: 110 to 120 columns with the root inside, and stderr says how wide.
    let width = qr[0].chars().count();
    assert!((110..=120).contains(&width), "{width} columns");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("the code is {width} columns wide")),
        "{out:?}"
    );
    let printed: serde_json::Value = serde_json::from_str(json_line[0]).unwrap();
    assert_eq!(printed["device"], "s2");
    common::keep_secret(printed["token"].as_str().unwrap());
    if !have("zbarimg") || !Path::new("/usr/bin/python3").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "zbarimg (zbar-tools) and python3-pil are needed in CI"
        );
        eprintln!("SKIPPED the QR decode: zbarimg or /usr/bin/python3 (python3-pil) missing");
        return;
    }
    let png = common::log_dir("operator").join("token-add-qr.png");
    render_terminal_png(&qr.join("\n"), &png);
    let z = Command::new("zbarimg")
        .args(["--quiet", "--raw", "-Sdisable", "-Sqrcode.enable"])
        .arg(&png)
        .output()
        .unwrap();
    // The PNG holds the token: it is removed once decoded.
    let _ = std::fs::remove_file(&png);
    let _ = std::fs::remove_file(png.with_extension("txt"));
    assert!(z.status.success(), "zbarimg: {z:?}");
    let decoded = String::from_utf8_lossy(&z.stdout);
    assert_eq!(decoded.trim_end_matches('\n'), json_line[0]);

    // --qr-matrix (for LuCI): the bundle and the rows of the same code.
    let m = ok(&gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "s3",
            "--name",
            "s3.sensors.local",
            "--qr-matrix",
        ],
    ));
    let m: serde_json::Value = serde_json::from_str(&m).unwrap();
    common::keep_secret(m["bundle"]["token"].as_str().unwrap());
    let rows = m["qr"].as_array().unwrap();
    assert!(rows.len() >= 21 && rows.iter().all(|r| r.as_str().unwrap().len() == rows.len()));
}

#[test]
fn token_add_refuses_an_untrusted_clock() {
    let t = TempDir::new("op-1970");
    let cfg = config_in(t.path(), "");
    let cfg = cfg.to_str().unwrap();
    ok(&gatecert(t.path(), &[], &["--config", cfg, "ca", "init"]));
    let out = gatecert(
        t.path(),
        &[("GATECERT_FAKE_NOW", "86400")],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "s1",
            "--name",
            "s1.sensors.local",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        err.starts_with("gatecert: error: ") && err.contains("clock"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no token printed");
    assert!(
        !t.path().join("state/tokens.jnl").exists(),
        "no token stored"
    );
}

#[test]
fn ca_sign_with_days_and_lifetime_is_an_error() {
    let t = TempDir::new("op-days");
    let cfg = config_in(t.path(), "");
    let cfg = cfg.to_str().unwrap();
    ok(&gatecert(t.path(), &[], &["--config", cfg, "ca", "init"]));
    let key = t.path().join("k.pem");
    let csr = t.path().join("c.csr");
    let gen = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=x1.sensors.local",
            "-addext",
            "subjectAltName=DNS:x1.sensors.local",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .output()
        .unwrap();
    assert!(gen.status.success(), "{gen:?}");
    let out = gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "ca",
            "sign",
            "--csr",
            csr.to_str().unwrap(),
            "--days",
            "1",
            "--lifetime",
            "2h",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--days or --lifetime, not both"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(
        !t.path().join("state/leaves.jnl").exists(),
        "nothing issued"
    );
}

#[test]
fn check_notices_a_missing_ca_when_the_config_needs_one() {
    let t = TempDir::new("op-check");
    let cfg = config_in(
        t.path(),
        "\nconfig est 'est'\n\toption listen '127.0.0.1:0'\n",
    );
    let cfg = cfg.to_str().unwrap();
    ok(&gatecert(t.path(), &[], &["--config", cfg, "ca", "init"]));
    let before = ok(&gatecert(t.path(), &[], &["--config", cfg, "check"]));
    assert!(
        before.lines().any(|l| l.starts_with("ok   local CA")),
        "{before}"
    );
    std::fs::rename(t.path().join("state/ca"), t.path().join("ca.moved")).unwrap();
    let out = gatecert(t.path(), &[], &["--config", cfg, "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL local CA") && l.contains("missing")),
        "{text}"
    );
}

#[test]
fn token_list_and_leaves_speak_status_words_and_fit_long_names() {
    let t = TempDir::new("op-words");
    let cfg = config_in(t.path(), "");
    let cfg = cfg.to_str().unwrap();
    ok(&gatecert(t.path(), &[], &["--config", cfg, "ca", "init"]));
    let long = "a-sensor-with-a-rather-long-device-name-42";
    let tok = ok(&gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            long,
            "--name",
            "l1.sensors.local",
        ],
    ));
    common::keep_secret(tok.trim());
    ok(&gatecert(
        t.path(),
        &[],
        &[
            "--config",
            cfg,
            "token",
            "add",
            "r1",
            "--name",
            "r1.sensors.local",
        ],
    ));
    ok(&gatecert(
        t.path(),
        &[],
        &["--config", cfg, "token", "revoke", "r1"],
    ));
    let list = ok(&gatecert(
        t.path(),
        &[],
        &["--config", cfg, "token", "list"],
    ));
    let head = list.lines().next().unwrap();
    let row = list.lines().find(|l| l.starts_with(long)).unwrap();
    assert!(row.contains(" active "), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("r1 ") && l.contains(" revoked ")),
        "{list}"
    );
    assert_eq!(
        head.find("EXPIRES").unwrap(),
        row.find(" 20").unwrap() + 1,
        "{list}"
    );
    // --json, for LuCI: the same words, no stored hash or salt.
    let j = ok(&gatecert(
        t.path(),
        &[],
        &["--config", cfg, "token", "list", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    let states: Vec<&str> = v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 2);
    assert!(
        states.contains(&"active") && states.contains(&"revoked"),
        "{j}"
    );
    assert!(!j.contains("hash") && !j.contains("salt"), "{j}");
    let l = ok(&gatecert(
        t.path(),
        &[],
        &["--config", cfg, "leaves", "--json"],
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&l).unwrap(),
        serde_json::json!({"leaves": []})
    );
    let status = gatecert(t.path(), &[], &["--config", cfg, "status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains("tokens:   active 1, expired 0, exhausted 0, revoked 1"),
        "{status}"
    );
}

#[test]
fn demo_keep_then_status_state_dir_without_a_config() {
    let t = TempDir::new("op-demo");
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = gatecert(
        t.path(),
        &[("TMPDIR", tmp.to_str().unwrap())],
        &["demo", "--keep"],
    );
    let text = ok(&out);
    assert!(
        text.contains("`est-local` is the one the EST listener presents"),
        "{text}"
    );
    assert!(text.contains("next steps:"), "{text}");
    let kept = std::fs::read_dir(&tmp)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(text.contains(&format!("gatecert status --state-dir {}", kept.display())));
    let key = kept.join("sensor-1/key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let v = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(kept.join("ca/root.pem"))
        .arg("-untrusted")
        .arg(kept.join("ca/intermediate.pem"))
        .arg(kept.join("sensor-1/cert.pem"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{v:?}");
    let a = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap();
    let b = Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(kept.join("sensor-1/cert.pem"))
        .output()
        .unwrap();
    assert_eq!(a.stdout, b.stdout, "the kept key is the certificate's");
    // Without a --config (the default path need not exist): the kept state's table.
    let s = gatecert(
        t.path(),
        &[],
        &["status", "--state-dir", kept.to_str().unwrap()],
    );
    let st = String::from_utf8_lossy(&s.stdout);
    assert_eq!(s.status.code(), Some(0), "{s:?}");
    assert!(
        st.lines()
            .any(|l| l.starts_with("est-local ") && l.contains(" ok ")),
        "{st}"
    );
    assert!(st.contains("leaves:   1 (local 1"), "{st}");
    let bad = gatecert(
        t.path(),
        &[],
        &["status", "--state-dir", "/nonexistent/gatecert"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--state-dir /nonexistent/gatecert"));
}

#[test]
fn the_top_help_lists_every_option_of_every_command() {
    let t = TempDir::new("op-help");
    let top = ok(&gatecert(t.path(), &[], &["--help"]));
    let flags = |text: &str| -> Vec<String> {
        text.split(|c: char| c.is_whitespace() || matches!(c, '[' | ']' | '|' | '(' | ')' | ','))
            .filter(|w| w.starts_with("--") && w.len() > 2)
            .map(|w| {
                w.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect()
            })
            .collect()
    };
    let mut missing = Vec::new();
    for cmd in [
        "renew", "run", "status", "check", "revoke", "account", "ca", "token", "leaves", "audit",
        "demo",
    ] {
        let usage = ok(&gatecert(t.path(), &[], &[cmd, "--help"]));
        for f in flags(&usage) {
            if !flags(&top).contains(&f) && f != "--help" {
                missing.push(format!("{cmd} {f}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in `gatecert --help`: {missing:?}\n{top}"
    );
}
