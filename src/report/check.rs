//! `gatecert check`: pre-flight checks, one line each, then a verdict. Exit 0 when every check
//! passed (or did not apply), 2 when any failed. [`preflight`] is the same list for the renew
//! path to call.
//!
//! The checks: the config parses; the clock is sane ([`crate::trust`]); the state directory
//! exists (or can be created), is writable and has at least 1 MiB free; each ACME directory
//! answers (GET, the configured `ca_bundle`, 10 s); each listen port can be bound (a port held
//! by a running `gatecert run` is fine); each hook exists and is executable.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::acme::transport::{Method, Transport as _, UreqTransport};
use crate::ca::LocalCa;
use crate::clock;
use crate::config::{self, ChallengeKind, Config, HttpMode};
use crate::store;

use super::status;

/// The least free space the state directory needs.
pub const MIN_FREE: u64 = 1024 * 1024;
/// How long the ACME directory may take to answer.
pub const DIRECTORY_TIMEOUT: Duration = Duration::from_secs(10);

/// How one check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Ok,
    /// Does not apply to this configuration (e.g. no ACME directory when standalone).
    NotApplicable,
    /// Failed.
    Fail,
}

/// One check's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckLine {
    /// What was checked: `config`, `clock`, `state dir`, `acme directory gateway`, ...
    pub name: String,
    /// The outcome.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.outcome {
            Outcome::Ok => "ok  ",
            Outcome::NotApplicable => "n/a ",
            Outcome::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.name, self.detail)
    }
}

fn line(name: impl Into<String>, outcome: Outcome, detail: impl Into<String>) -> CheckLine {
    CheckLine {
        name: name.into(),
        outcome,
        detail: detail.into(),
    }
}

/// Every check for `cfg` at `now`, in order. The config check is the first line (it parsed,
/// or there would be no `cfg`).
pub fn preflight(cfg: &Config, now: i64) -> Vec<CheckLine> {
    let mut out = vec![line(
        "config",
        Outcome::Ok,
        format!(
            "{} parses ({} certificate(s))",
            cfg.source.display(),
            cfg.certificates.len()
        ),
    )];
    out.push(check_clock(cfg, now));
    out.extend(check_state_dir(&cfg.main.state_dir));
    out.push(check_ca(cfg, now));
    for cert in &cfg.certificates {
        if cert.issuers.is_empty() {
            out.push(check_directory(cert));
        }
        // With `list issuer`: every one of them, each with its own trust.
        for i in &cert.issuers {
            let mut c = cert.via(i);
            c.name = format!("{} issuer {}", cert.name, i.name);
            out.push(check_directory(&c));
        }
    }
    out.extend(check_ports(cfg));
    out.extend(check_hooks(cfg));
    out.extend(check_token_keys(cfg));
    out
}

/// Each key configured in a PKCS#11 token (`key_uri`, `account_key_uri`): the module, the token
/// and the key found, or why not (module missing, token missing, wrong PIN). The CA's key must
/// exist once the CA does, an account key once its account is registered, a set's key (the
/// live set's own object) once the set is live; until then they are made at their first use.
fn check_token_keys(cfg: &Config) -> Vec<CheckLine> {
    use crate::crypto::KeyUri;
    let state_dir = &cfg.main.state_dir;
    let mut keys: Vec<(String, KeyUri, bool)> = Vec::new();
    if let Some(u) = &cfg.ca.key_uri {
        let ca_exists = LocalCa::exists(&LocalCa::dir_in(state_dir));
        keys.push(("pkcs11 key ca".into(), u.clone(), ca_exists));
    }
    // A set's key (the EST listener's, a certificate's) must exist once the set is live: the
    // one its `key.uri` records (a renewal's `<object>.<8 hex>`), with the configured PIN.
    let live_key = |set: &str, uri: &KeyUri| -> (KeyUri, bool) {
        let recorded = state_dir
            .join("certs")
            .join(set)
            .join("live")
            .join(store::KEY_URI);
        match std::fs::read_to_string(recorded)
            .ok()
            .and_then(|t| KeyUri::parse(t.trim()).ok())
        {
            Some(r) => (uri.with_object(&r.object), true),
            None => (uri.clone(), false),
        }
    };
    if let Some(u) = &cfg.est.key_uri {
        let (uri, live) = live_key(status::EST_LOCAL_SET, u);
        keys.push(("pkcs11 key est".into(), uri, live));
    }
    for c in &cfg.certificates {
        if let Some(u) = &c.key_uri {
            let (uri, live) = live_key(&c.name, u);
            keys.push((format!("pkcs11 key {}", c.name), uri, live));
        }
        // The account key must exist once an account was registered with it.
        if let (Some(u), Some(dir)) = (&c.account_key_uri, &c.directory) {
            let json = crate::renew::account_dir(state_dir, dir).join("account.json");
            let registered = std::fs::read_to_string(json)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .is_some_and(|a| a["key_uri"] == u.to_string().as_str());
            keys.push((
                format!("pkcs11 account key {}", c.name),
                u.clone(),
                registered,
            ));
        }
    }
    keys.into_iter()
        .map(|(name, uri, must_exist)| check_token_key(name, &uri, must_exist))
        .collect()
}

#[cfg(feature = "pkcs11")]
fn check_token_key(name: String, uri: &crate::crypto::KeyUri, must_exist: bool) -> CheckLine {
    match crate::crypto::token_report(uri) {
        Ok(r) => match (&r.key, must_exist) {
            (Some(k), _) => line(
                name,
                Outcome::Ok,
                format!("module {}, token {}, key {k}", r.module, r.token),
            ),
            (None, true) => line(
                name,
                Outcome::Fail,
                format!(
                    "module {}, token {}: no key labelled {:?} (removed from the token?)",
                    r.module, r.token, uri.object
                ),
            ),
            (None, false) => line(
                name,
                Outcome::Ok,
                format!(
                    "module {}, token {}: key {:?} not made yet (made at the first issuance)",
                    r.module, r.token, uri.object
                ),
            ),
        },
        Err(e) => line(name, Outcome::Fail, e.to_string()),
    }
}

#[cfg(not(feature = "pkcs11"))]
fn check_token_key(name: String, uri: &crate::crypto::KeyUri, _must_exist: bool) -> CheckLine {
    line(
        name,
        Outcome::Fail,
        format!("{uri}: this gatecert was built without PKCS#11 support"),
    )
}

/// The verdict line for `lines`.
pub fn verdict(lines: &[CheckLine]) -> String {
    let failed = lines.iter().filter(|l| l.outcome == Outcome::Fail).count();
    if failed == 0 {
        format!("check: all {} checks passed", lines.len())
    } else {
        format!("check: {failed} of {} checks FAILED", lines.len())
    }
}

/// `gatecert check`: prints each line and the verdict; 0 all ok, 2 if any failed.
pub fn cmd_check(cfg: &Config, args: &[String]) -> i32 {
    if let Some(a) = args.first() {
        eprintln!("gatecert: error: check: unexpected argument {a:?} (usage: gatecert check)");
        return 2;
    }
    let lines = preflight(cfg, clock::from_env().now());
    for l in &lines {
        println!("{l}");
    }
    println!("{}", verdict(&lines));
    if lines.iter().any(|l| l.outcome == Outcome::Fail) {
        2
    } else {
        0
    }
}

/// `gatecert check` when the config did not load: the failing config line and the verdict.
/// Returns 2.
pub fn config_failed(path: &Path, err: &config::Error) -> i32 {
    let l = line(
        "config",
        Outcome::Fail,
        format!("{} does not load: {err}", path.display()),
    );
    println!("{l}");
    println!("{}", verdict(std::slice::from_ref(&l)));
    2
}

fn check_clock(cfg: &Config, now: i64) -> CheckLine {
    let ca_not_before = LocalCa::open(&LocalCa::dir_in(&cfg.main.state_dir), &cfg.ca)
        .ok()
        .map(|ca| ca.intermediate().not_before);
    let c = status::clock_status(&cfg.main.state_dir, ca_not_before, now);
    match c.reason {
        Some(r) => line("clock", Outcome::Fail, format!("untrusted: {r}")),
        None if c.ntp_synced => line("clock", Outcome::Ok, "trusted (NTP synchronised)"),
        None => line(
            "clock",
            Outcome::Ok,
            format!(
                "trusted ({} is not before {})",
                crate::crypto::rfc3339(now),
                crate::crypto::rfc3339(c.floor)
            ),
        ),
    }
}

/// The local CA, when the config uses one: present, readable, and valid now. None yet is fine
/// on a fresh state directory (`gatecert run` creates it once the clock is trusted); gone
/// from a state directory that has been used (it has an audit log) is not.
fn check_ca(cfg: &Config, now: i64) -> CheckLine {
    let name = "local CA";
    if !status::needs_local_ca(cfg) {
        return line(
            name,
            Outcome::NotApplicable,
            "not used (no EST, no standalone certificate, no broker)",
        );
    }
    let dir = LocalCa::dir_in(&cfg.main.state_dir);
    match LocalCa::open(&dir, &cfg.ca) {
        Ok(ca) => {
            let int = ca.intermediate();
            let until = crate::crypto::rfc3339(int.not_after);
            if now >= int.not_after {
                line(name, Outcome::Fail, format!("{}: the issuing CA expired at {until}; leaves can't be issued (replace it: `gatecert ca csr` + `ca install`, or move {} aside and `gatecert ca init`)", dir.display(), dir.display()))
            } else if now < int.not_before {
                line(name, Outcome::Fail, format!("{}: the issuing CA is not valid until {}", dir.display(), crate::crypto::rfc3339(int.not_before)))
            } else {
                line(name, Outcome::Ok, format!("{} valid until {until}", dir.display()))
            }
        }
        Err(crate::ca::Error::NotInitialized(_))
            if !crate::audit::path_in(&cfg.main.state_dir).exists() =>
        {
            line(name, Outcome::Ok, format!("none yet in {}: `gatecert run` creates it once the clock is trusted (or `gatecert ca init`)", dir.display()))
        }
        Err(crate::ca::Error::NotInitialized(_)) => line(
            name,
            Outcome::Fail,
            format!(
                "missing from {}, which has been used (it has an audit log): restore it from a \
                 backup, or `gatecert ca init` a new one (sensors then need the new root)",
                dir.display()
            ),
        ),
        Err(e) => line(name, Outcome::Fail, crate::errchain::one_line(&e)),
    }
}

fn check_state_dir(dir: &Path) -> Vec<CheckLine> {
    let name = "state dir";
    let shown = dir.display();
    let mut out = Vec::new();
    if dir.is_dir() {
        out.push(line(name, Outcome::Ok, format!("{shown} exists")));
    } else if dir.exists() {
        out.push(line(
            name,
            Outcome::Fail,
            format!("{shown} is not a directory"),
        ));
        return out;
    } else {
        match store::private_dir(dir) {
            Ok(()) => out.push(line(name, Outcome::Ok, format!("{shown} created (0700)"))),
            Err(e) => {
                out.push(line(name, Outcome::Fail, format!("cannot create: {e}")));
                return out;
            }
        }
    }
    let probe = dir.join(format!(".check-{}", std::process::id()));
    let writable =
        std::fs::write(&probe, b"gatecert check\n").and_then(|()| std::fs::remove_file(&probe));
    out.push(match writable {
        Ok(()) => line("state dir writable", Outcome::Ok, format!("{shown}")),
        Err(e) => {
            let _ = std::fs::remove_file(&probe);
            line(
                "state dir writable",
                Outcome::Fail,
                format!("cannot create {}: {e}", probe.display()),
            )
        }
    });
    out.push(match rustix::fs::statvfs(dir) {
        Ok(s) => {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            let detail = format!(
                "{} KiB free in {shown} (need {} KiB)",
                free / 1024,
                MIN_FREE / 1024
            );
            if free >= MIN_FREE {
                line("state dir space", Outcome::Ok, detail)
            } else {
                line("state dir space", Outcome::Fail, detail)
            }
        }
        Err(e) => line(
            "state dir space",
            Outcome::Fail,
            format!("statvfs {shown}: {e}"),
        ),
    });
    out
}

/// GET the ACME directory (RFC 8555 §7.1.1) and look for the three URLs every client needs.
fn check_directory(cert: &config::Certificate) -> CheckLine {
    let name = format!("acme directory {}", cert.name);
    let Some(url) = &cert.directory else {
        return line(
            name,
            Outcome::NotApplicable,
            "standalone (issued by the local CA)",
        );
    };
    // The same transport the ACME client uses: same trust, same limits.
    let transport = match UreqTransport::new(cert.ca_bundle.as_deref(), DIRECTORY_TIMEOUT) {
        Ok(t) => t,
        Err(e) => return line(name, Outcome::Fail, e.to_string()),
    };
    let resp = match transport.request(Method::Get, url, &[], None) {
        Ok(r) => r,
        Err(e) => return line(name, Outcome::Fail, crate::errchain::one_line(&e)),
    };
    if resp.status != 200 {
        return line(
            name,
            Outcome::Fail,
            format!("GET {url}: HTTP {}", resp.status),
        );
    }
    let body = String::from_utf8_lossy(&resp.body);
    let dir: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return line(name, Outcome::Fail, format!("{url}: not JSON: {e}")),
    };
    let missing: Vec<&str> = ["newNonce", "newAccount", "newOrder"]
        .into_iter()
        .filter(|k| !dir[*k].is_string())
        .collect();
    if missing.is_empty() {
        line(name, Outcome::Ok, format!("{url} answers"))
    } else {
        line(
            name,
            Outcome::Fail,
            format!("{url}: not an ACME directory (no {})", missing.join(", ")),
        )
    }
}

/// The addresses gatecert will listen on, with what for.
fn listen_addrs(cfg: &Config) -> Vec<(SocketAddr, String)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut add = |addr: SocketAddr, what: String| {
        if seen.insert(addr) {
            out.push((addr, what));
        }
    };
    for cert in &cfg.certificates {
        if cert.directory.is_none() {
            continue;
        }
        match (&cert.challenge, &cert.http) {
            (ChallengeKind::Http01, HttpMode::Standalone(a)) => {
                add(*a, format!("http_listen ({})", cert.name))
            }
            (ChallengeKind::TlsAlpn01, _) => add(
                cert.tls_alpn_listen,
                format!("tls_alpn_listen ({})", cert.name),
            ),
            _ => {}
        }
    }
    if cfg.est.enabled {
        add(cfg.est.listen, "est listen".into());
    }
    out
}

fn check_ports(cfg: &Config) -> Vec<CheckLine> {
    let mut daemon: Option<bool> = None;
    listen_addrs(cfg)
        .into_iter()
        .map(|(addr, what)| {
            let name = format!("port {what}");
            match TcpListener::bind(addr) {
                Ok(l) => {
                    drop(l);
                    line(name, Outcome::Ok, format!("{addr} can be bound"))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    let running =
                        *daemon.get_or_insert_with(|| daemon_running(&cfg.main.state_dir));
                    if running {
                        line(
                            name,
                            Outcome::Ok,
                            format!("{addr} held by the running `gatecert run` (state dir locked)"),
                        )
                    } else {
                        line(
                            name,
                            Outcome::Fail,
                            format!("{addr} is in use by another program"),
                        )
                    }
                }
                Err(e) => line(name, Outcome::Fail, format!("cannot bind {addr}: {e}")),
            }
        })
        .collect()
}

/// True when another process holds the state directory's lock (`gatecert run` does).
fn daemon_running(state_dir: &Path) -> bool {
    matches!(
        store::Lock::acquire(state_dir),
        Err(store::Error::Locked(_))
    )
}

fn check_hooks(cfg: &Config) -> Vec<CheckLine> {
    let mut hooks: Vec<(String, PathBuf)> = Vec::new();
    for cert in &cfg.certificates {
        if let Some(h) = &cert.dns_hook {
            hooks.push((format!("dns_hook ({})", cert.name), h.clone()));
        }
        if let Some(cmd) = &cert.deploy_hook {
            if let Some(first) = cmd.split_whitespace().next().filter(|w| w.starts_with('/')) {
                hooks.push((format!("deploy_hook ({})", cert.name), PathBuf::from(first)));
            }
        }
    }
    if let Some(h) = cfg.broker.as_ref().and_then(|b| b.dns_hook.as_ref()) {
        hooks.push(("dns_hook (broker)".into(), h.clone()));
    }
    hooks
        .into_iter()
        .map(|(what, path)| {
            let name = format!("hook {what}");
            match std::fs::metadata(&path) {
                Ok(m) if !m.is_file() => line(
                    name,
                    Outcome::Fail,
                    format!("{} is not a file", path.display()),
                ),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => line(
                    name,
                    Outcome::Fail,
                    format!("{} is not executable", path.display()),
                ),
                Ok(_) => line(
                    name,
                    Outcome::Ok,
                    format!("{} is executable", path.display()),
                ),
                Err(e) => line(name, Outcome::Fail, format!("{}: {e}", path.display())),
            }
        })
        .collect()
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
