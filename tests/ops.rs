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
    assert!(!env.state().join("tokens.jnl").exists());
    // A good name still works.
    let out = env.run(t, &["token", "add", "dev1", "--name", "s1.local"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn sign(env: &Env, t: i64, csr: &Path, out: &Path) -> Output {
    env.run(
        t,
        &[
            "ca",
            "sign",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

fn issue_lines(env: &Env) -> usize {
    std::fs::read_to_string(env.state().join("audit.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"event\":\"issue\""))
        .count()
}

/// Issue 10 item 4: `ca sign --out` a device node (here a private copy of /dev/null made with
/// mknod; a FIFO when not root) or a symlink is refused before anything is signed, and the node
/// stays what it was. A new path and an existing regular file are fine.
#[test]
fn ca_sign_out_refuses_a_device_node_or_a_symlink() {
    use std::os::unix::fs::FileTypeExt as _;
    let env = Env::new("devout");
    let t = now();
    assert!(env.run(t, &["ca", "init"]).status.success());
    let csr = openssl_csr(&env.dir, "dev.local");
    let node = env.dir.join("null");
    let made = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    let is_device = made.success();
    if !is_device {
        assert!(Command::new("mkfifo")
            .arg(&node)
            .status()
            .unwrap()
            .success());
    }
    let kind_ok = |p: &Path| {
        let ft = std::fs::symlink_metadata(p).unwrap().file_type();
        if is_device {
            ft.is_char_device()
        } else {
            ft.is_fifo()
        }
    };
    let out = sign(&env, t, &csr, &node);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("not a regular file or a new path"),
        "{stderr}"
    );
    assert!(kind_ok(&node), "the node was replaced");
    assert_eq!(
        issue_lines(&env),
        0,
        "signed although the output was refused"
    );

    let victim = env.dir.join("victim.pem");
    std::fs::write(&victim, "keep\n").unwrap();
    let link = env.dir.join("link.pem");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let out = sign(&env, t, &csr, &link);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a symlink"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");

    let fresh = env.dir.join("fresh.pem");
    assert!(sign(&env, t, &csr, &fresh).status.success());
    assert!(
        sign(&env, t, &csr, &fresh).status.success(),
        "a regular file is replaced"
    );
    assert!(std::fs::read_to_string(&fresh)
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
}

/// Issue 10 item 5e: parallel `ca sign` runs serialise on the audit lock: the chain verifies
/// and every issuance has its audit line and its inventory row.
#[test]
fn parallel_ca_sign_keep_one_chain_and_every_inventory_row() {
    const N: usize = 8;
    let env = Env::new("parallel");
    let t = now();
    assert!(env.run(t, &["ca", "init"]).status.success());
    let csrs: Vec<PathBuf> = (0..N)
        .map(|i| openssl_csr(&env.dir, &format!("p{i}.local")))
        .collect();
    let children: Vec<_> = csrs
        .iter()
        .enumerate()
        .map(|(i, csr)| {
            Command::new(env!("CARGO_BIN_EXE_gatecert"))
                .arg("--config")
                .arg(&env.config)
                .args(["ca", "sign", "--csr"])
                .arg(csr)
                .arg("--out")
                .arg(env.dir.join(format!("p{i}.crt")))
                .env("GATECERT_FAKE_NOW", t.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let out = env.run(t, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert_eq!(issue_lines(&env), N);
    let inv = gatecert::leaves::Inventory::open(&env.state().join("leaves.jnl")).unwrap();
    assert_eq!(inv.len(), N);
}

/// Issue 10 item 5b: a last line deleted or edited, or the log truncated, is not laundered by
/// the next issuance: `ca sign` refuses (nothing signed, nothing appended), `audit verify`
/// fails, and `audit verify --repair` records a repair line after which issuance resumes.
#[test]
fn a_cut_or_edited_audit_tail_stops_issuance_until_repaired() {
    /// A way to damage the log's text, by name.
    type Tamper = (&'static str, fn(&str) -> String);
    let tampers: [Tamper; 3] = [
        ("delete-last", |s| {
            let mut l: Vec<&str> = s.lines().collect();
            l.pop();
            l.iter().map(|x| format!("{x}\n")).collect()
        }),
        ("edit-last", |s| {
            let mut l: Vec<String> = s.lines().map(str::to_owned).collect();
            let n = l.len() - 1;
            l[n] = l[n].replace("e1.local", "e9.local");
            l.iter().map(|x| format!("{x}\n")).collect()
        }),
        ("truncate", |_| String::new()),
    ];
    for (tag, tamper) in tampers {
        let env = Env::new(&format!("tail-{tag}"));
        let t = now();
        assert!(env.run(t, &["ca", "init"]).status.success());
        let c1 = openssl_csr(&env.dir, "e1.local");
        assert!(sign(&env, t, &c1, &env.dir.join("e1.crt")).status.success());
        let log = env.state().join("audit.log");
        let tampered = tamper(&std::fs::read_to_string(&log).unwrap());
        std::fs::write(&log, &tampered).unwrap();

        let c2 = openssl_csr(&env.dir, "e2.local");
        let out = sign(&env, t, &c2, &env.dir.join("e2.crt"));
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{tag}: issued on a broken chain"
        );
        assert!(stderr.contains("audit chain broken"), "{tag}: {stderr}");
        assert!(!env.dir.join("e2.crt").exists(), "{tag}");
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            tampered,
            "{tag}: laundered"
        );
        let out = env.run(t, &["audit", "verify"]);
        assert_eq!(out.status.code(), Some(2), "{tag}: {}", text(&out.stdout));
        // Nothing else that is audited goes ahead either.
        let out = env.run(t, &["token", "add", "e3", "--name", "e3.local"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{tag}: token add on a broken chain"
        );
        assert!(!env.state().join("tokens.jnl").exists(), "{tag}");

        let out = env.run(t, &["audit", "verify", "--repair"]);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{tag}: {stdout}{}", text(&out.stderr));
        assert!(stdout.contains("recorded a repair"), "{tag}: {stdout}");
        assert!(
            sign(&env, t, &c2, &env.dir.join("e2.crt")).status.success(),
            "{tag}"
        );
        assert!(env.run(t, &["audit", "verify"]).status.success(), "{tag}");
        let text_log = std::fs::read_to_string(&log).unwrap();
        assert!(text_log.contains("\"event\":\"repair\""), "{tag}");
        assert!(text_log.contains("\"head_was\""), "{tag}");
    }
}

/// Issue 10 item 4 at the binary: whoever can write the metrics textfile directory (commonly
/// the prometheus user) plants a symlink at the name the old code used for its temp file
/// (`.gatecert.prom.tmp<pid>`; `exec` keeps the shell's pid) pointing at a root-owned 0600
/// file. `gatecert run` writes its textfile without touching the victim.
#[test]
fn a_planted_symlink_in_the_textfile_directory_does_not_redirect_the_write() {
    use std::os::unix::fs::PermissionsExt as _;
    let env = Env::new("textfile");
    let text_dir = env.dir.join("textfile");
    std::fs::create_dir(&text_dir).unwrap();
    std::fs::set_permissions(&text_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let prom = text_dir.join("gatecert.prom");
    let mut conf = std::fs::read_to_string(&env.config).unwrap();
    conf.push_str(&format!(
        "config metrics 'metrics'\n\toption textfile '{}'\n",
        prom.display()
    ));
    std::fs::write(&env.config, conf).unwrap();
    let victim = env.dir.join("victim");
    std::fs::write(&victim, "root secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();

    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ln -s \"$1\" \"$2/.gatecert.prom.tmp$$\" && exec \"$3\" --config \"$4\" run")
        .arg("sh")
        .arg(&victim)
        .arg(&text_dir)
        .arg(env!("CARGO_BIN_EXE_gatecert"))
        .arg(&env.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let planted = text_dir.join(format!(".gatecert.prom.tmp{}", child.id()));
    let t = std::time::Instant::now();
    while !prom.exists() && t.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(prom.exists(), "gatecert run wrote no textfile");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root secret\n");
    let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the victim was chmod'ed");
    assert!(
        std::fs::symlink_metadata(&planted)
            .unwrap()
            .file_type()
            .is_symlink(),
        "the planted link is gone: the test did not exercise the old name"
    );
    assert!(std::fs::read_to_string(&prom)
        .unwrap()
        .contains("gatecert_healthy"));
}

/// Issue 10 item 5c for the CLI: an audit log that cannot be written stops `ca sign` before
/// anything is signed.
#[test]
fn ca_sign_fails_closed_when_the_audit_log_is_unwritable() {
    let env = Env::new("auditdir");
    let t = now();
    assert!(env.run(t, &["ca", "init"]).status.success());
    let log = env.state().join("audit.log");
    std::fs::remove_file(&log).unwrap();
    std::fs::remove_file(env.state().join("audit.log.head")).unwrap();
    // A directory where the log should be: unwritable even for root.
    std::fs::create_dir(&log).unwrap();
    let csr = openssl_csr(&env.dir, "w.local");
    let out = sign(&env, t, &csr, &env.dir.join("w.crt"));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!env.dir.join("w.crt").exists());
    assert!(!env.state().join("leaves.jnl").exists());
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

/// Issue 13 items 1-3 at the binary level: rotated files that an unavailable archive directory
/// has not taken are kept although past `audit_retention` and `status` says so; once the
/// directory is there, the binary's next rotation copies them all and prunes what is past the
/// retention, `audit verify` accepts the recorded start and `audit verify --dir` checks the
/// archive from the first line ever.
#[test]
fn audit_archive_and_retention_through_the_binary() {
    use gatecert::audit::{self, Audit, Policy};
    let env = Env::new("archive");
    let usb = env.dir.join("usb");
    let cfg = std::fs::read_to_string(&env.config).unwrap().replace(
        "\toption log 'stderr'\n",
        &format!(
            "\toption log 'stderr'\n\toption audit_retention '1d'\n\toption audit_max_bytes '8M'\n\
             \toption audit_archive_dir '{}'\n",
            usb.display()
        ),
    );
    std::fs::write(&env.config, cfg).unwrap();
    let t = now();
    assert!(env.run(t, &["ca", "init"]).status.success());
    // Three days ago: three 1 MiB files of history, written as the binary would with this
    // config (same policy), the stick absent.
    let state = env.state();
    let policy = Policy {
        retention: DAY,
        budget: 8 << 20,
        archive_dir: Some(usb.clone()),
        syslog: None,
    };
    audit::configure(&state, policy.clone());
    let path = audit::path_in(&state);
    let mut log = Audit::open(&path, policy.file_bytes()).unwrap();
    let mut i = 0;
    while std::fs::read_dir(&state)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("audit.log.") && n.to_string_lossy().len() == 11
        })
        .count()
        < 3
    {
        i += 1;
        log.append(
            t - 3 * DAY + i / 100,
            "token-add",
            serde_json::json!({"device": format!("s{i}"), "names": [format!("s{i}.local")],
                "note": "n".repeat(2000)}),
        )
        .unwrap();
    }
    // Fill the current file to within 100 bytes of its size: the binary's next line rotates.
    let size = std::fs::metadata(&path).unwrap().len();
    let pad = (1u64 << 20) - size - 100 - 120;
    log.append(
        t - 3 * DAY + i / 100,
        "note",
        serde_json::json!({"pad": "x".repeat(pad as usize)}),
    )
    .unwrap();
    drop(log);
    assert!(std::fs::metadata(&path).unwrap().len() > (1 << 20) - 200);

    let out = env.run(t, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["audit"]["unarchived_files"], 3, "{}", s["audit"]);
    let attention = s["attention"].to_string();
    assert!(attention.contains("not archived to"), "{attention}");

    // The stick is back: the binary's rotation archives everything, then prunes.
    std::fs::create_dir(&usb).unwrap();
    let out = env.run(t, &["token", "add", "late", "--name", "late.local"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let first = std::fs::read_to_string(&path).unwrap();
    let rotate: serde_json::Value = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(rotate["event"], "rotate", "{rotate}");
    assert_eq!(rotate["dropped_files"], 2, "{rotate}");
    assert_eq!(rotate["pruned"][0]["archived"], true, "{rotate}");
    assert_eq!(std::fs::read_dir(&usb).unwrap().count(), 4);

    let out = env.run(t, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("after files pruned as recorded"),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(t, &["audit", "verify", "--dir", usb.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("history begins at the first line ever written"),
        "{}",
        text(&out.stdout)
    );
    let out = env.run(t, &["status", "--json"]);
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["audit"]["unarchived_files"], 0, "{}", s["audit"]);
    // The archive edited afterwards: `--dir` says where.
    let victim = std::fs::read_dir(&usb)
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let edited =
        std::fs::read_to_string(&victim)
            .unwrap()
            .replacen("\"token-add\"", "\"token-adX\"", 1);
    std::fs::write(&victim, edited).unwrap();
    let out = env.run(t, &["audit", "verify", "--dir", usb.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(&*victim.to_string_lossy()),
        "{}",
        text(&out.stdout)
    );
}
