//! The command line never surprises: `--help` on every subcommand only prints, a closed stdout
//! ends the process quietly, a mistyped `--config` path is an error, bare `gatecert` is a usage
//! error. Runs the real binary in an empty temp dir.

mod common;

use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_gatecert");

/// Every command and sub-command a user can type, each with `--help` appended.
const COMMANDS: &[&[&str]] = &[
    &["renew"],
    &["run"],
    &["status"],
    &["check"],
    &["revoke"],
    &["account", "rollover"],
    &["ca"],
    &["ca", "init"],
    &["ca", "csr"],
    &["ca", "install"],
    &["ca", "show"],
    &["ca", "sign"],
    &["token"],
    &["token", "add"],
    &["token", "list"],
    &["token", "revoke"],
    &["leaves"],
    &["audit", "verify"],
    &["demo"],
];

fn config_in(dir: &Path) -> PathBuf {
    let cfg = dir.join("gatecert.conf");
    std::fs::write(
        &cfg,
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n",
            dir.join("state").display()
        ),
    )
    .unwrap();
    cfg
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

fn gatecert(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env("GATECERT_TICK_SECS", "1")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn help_on_every_subcommand_prints_usage_and_acts_not() {
    let t = TempDir::new("cli-help");
    let cfg = config_in(t.path());
    let before = listing(t.path());
    let etc_existed = Path::new("/etc/gatecert").exists();
    for cmd in COMMANDS {
        for flag in ["--help", "-h"] {
            let mut args = vec!["--config", cfg.to_str().unwrap()];
            args.extend_from_slice(cmd);
            args.push(flag);
            let out = gatecert(t.path(), &args);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
            assert!(
                stdout.starts_with(&format!("usage: gatecert {}", cmd[0])),
                "{args:?} printed {stdout:?}"
            );
            assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
        }
    }
    // The default config path too (no --config): still nothing is created anywhere.
    let out = gatecert(t.path(), &["ca", "init", "--help"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(listing(t.path()), before, "a --help run created files");
    if !etc_existed {
        assert!(
            !Path::new("/etc/gatecert").exists(),
            "ca init --help created /etc/gatecert"
        );
    }
}

#[test]
fn a_closed_stdout_ends_quietly_like_a_unix_tool() {
    let t = TempDir::new("cli-pipe");
    let cfg = config_in(t.path());
    let cfg = cfg.to_str().unwrap();
    let out = gatecert(t.path(), &["--config", cfg, "ca", "init"]);
    assert!(out.status.success(), "{out:?}");
    for args in [
        &["ca", "show"][..],
        &["leaves"],
        &["token", "list"],
        &["--help"],
    ] {
        // The reading end is closed before the child starts, so its first write gets EPIPE.
        let (ours, theirs) = UnixStream::pair().unwrap();
        drop(ours);
        let out = Command::new(BIN)
            .args(["--config", cfg])
            .args(args)
            .stdout(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
        assert!(
            out.status.signal() == Some(13) || out.status.code() == Some(141),
            "{args:?}: expected death by SIGPIPE, got {:?}",
            out.status
        );
    }
}

#[test]
fn a_missing_config_path_is_an_error_and_bare_gatecert_is_a_usage_error() {
    let t = TempDir::new("cli-config");
    let missing = t.path().join("gatecert.conf.typo");
    for cmd in [&["status"][..], &["check"], &["ca", "init"], &["run"]] {
        let mut args = vec!["--config", missing.to_str().unwrap()];
        args.extend_from_slice(cmd);
        let out = gatecert(t.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {out:?}");
        assert!(
            stderr.contains("gatecert: error: --config") && stderr.contains("gatecert.conf.typo"),
            "{cmd:?}: {stderr}"
        );
    }
    assert!(
        listing(t.path()).is_empty(),
        "a missing --config created files"
    );

    let out = gatecert(t.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("usage: gatecert"));
    assert!(out.stdout.is_empty());
}

#[test]
fn a_fatal_error_is_printed_once_in_one_format() {
    let t = TempDir::new("cli-once");
    let cfg = config_in(t.path()); // log 'stderr'
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let out = gatecert(
        t.path(),
        &["--config", cfg.to_str().unwrap(), "run", "--listen", &addr],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let first = stderr
        .lines()
        .find(|l| l.starts_with("gatecert: error: "))
        .unwrap_or_else(|| panic!("no 'gatecert: error:' line in {stderr}"));
    assert_eq!(
        stderr.matches(first).count(),
        1,
        "printed more than once:\n{stderr}"
    );
    for line in stderr.lines() {
        assert!(
            line.starts_with("gatecert: ") || line.starts_with("  caused by: "),
            "a line in another format: {line:?}"
        );
    }
}
