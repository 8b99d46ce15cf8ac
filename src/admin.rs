//! The operator's commands for the leaf side: `ca`, `token`, `audit` and `leaves`.
//!
//! Each takes the typed [`Config`] and the arguments after the command word, and returns the
//! exit code (0 done, 2 error). Errors go through [`errchain::print_error`]; secrets are printed only
//! where the operator asked for them (`token add` prints the new token once).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::audit::{self, Audit};
use crate::bundle::{self, Bundle};
use crate::ca::{self, IssueRequest, LocalCa};
use crate::clock;
use crate::config::Config;
use crate::crypto::{self, CertInfo, Subtree};
use crate::errchain;
use crate::leaves::{self, Inventory, Leaf, Source};
use crate::store;
use crate::token::{self, Tokens};
use crate::trust::ClockTrust;

mod audit_cmd;
mod lifecycle;
mod rotate;

pub use audit_cmd::cmd_audit;

pub use lifecycle::cmd_leaves;

/// A usage or argument error, printed like any other error.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

type Res = Result<(), Box<dyn std::error::Error>>;

fn usage(msg: impl Into<String>) -> Box<dyn std::error::Error> {
    Box::new(Usage(msg.into()))
}

fn finish(r: Res) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            errchain::print_error(e.as_ref());
            2
        }
    }
}

/// `gatecert ca init|csr|install|show|sign`.
pub fn cmd_ca(cfg: &Config, args: &[String]) -> i32 {
    let now = clock::from_env().now();
    let state = &cfg.main.state_dir;
    let dir = LocalCa::dir_in(state);
    let rest = args.get(1..).unwrap_or_default();
    finish(match args.first().map(String::as_str) {
        Some("init") => ca_init(cfg, &dir, now),
        Some("csr") => ca_csr(cfg, &dir, rest, now),
        Some("install") => ca_install(cfg, &dir, rest, now),
        Some("show") => ca_show(cfg, &dir),
        Some("sign") => ca_sign(cfg, &dir, rest, now),
        Some("rotate") => rotate::ca_rotate(cfg, rest, now),
        _ => Err(usage(
            "usage: gatecert ca init | csr [--out FILE] | install CERT | show | rotate | \
             sign --csr FILE [--days N | --lifetime 24h] [--server-auth] [--out FILE]",
        )),
    })
}

/// The audit gate: nothing is created or changed when its audit line could not follow (a broken
/// chain, an unreadable log).
fn audit_ready(cfg: &Config) -> Res {
    Audit::open(
        &audit::path_in(&cfg.main.state_dir),
        audit::DEFAULT_MAX_BYTES,
    )?;
    Ok(())
}

fn audit_event(cfg: &Config, now: i64, event: &str, fields: serde_json::Value) -> Res {
    let path = audit::path_in(&cfg.main.state_dir);
    Audit::open(&path, audit::DEFAULT_MAX_BYTES)?.append(now, event, fields)?;
    Ok(())
}

fn ca_init(cfg: &Config, dir: &Path, now: i64) -> Res {
    let trusted = ClockTrust::load(&cfg.main.state_dir, None).check(now)?;
    store::private_dir(&cfg.main.state_dir)?;
    audit_ready(cfg)?;
    let ca = LocalCa::init(dir, &cfg.ca, trusted)?;
    let root = &ca.chain_der()[ca.chain_der().len() - 1];
    let fp = fingerprint(root);
    audit_event(
        cfg,
        now,
        "ca-init",
        serde_json::json!({"root_sha256": fp, "allow_suffix": cfg.ca.allow_suffix}),
    )?;
    println!("local CA created in {}", dir.display());
    println!("root SHA-256 fingerprint: {fp}");
    println!(
        "distribute {} to the sensors as their trust anchor",
        dir.join("root.pem").display()
    );
    Ok(())
}

fn ca_csr(cfg: &Config, dir: &Path, args: &[String], now: i64) -> Res {
    let mut out: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" | "-o" => {
                out = Some(it.next().ok_or_else(|| usage("--out needs a FILE"))?.into())
            }
            other => return Err(usage(format!("ca csr: unexpected argument {other:?}"))),
        }
    }
    if let Some(path) = &out {
        store::check_output_path(path)?;
    }
    let trusted = ClockTrust::load(&cfg.main.state_dir, None).check(now)?;
    store::private_dir(&cfg.main.state_dir)?;
    let pem = LocalCa::pending_csr(dir, &cfg.ca, trusted)?;
    match out {
        Some(path) => {
            store::write_atomic(&path, pem.as_bytes(), store::PUBLIC)?;
            eprintln!("CSR written to {}", path.display());
        }
        None => print!("{pem}"),
    }
    eprintln!(
        "have your root sign it as a CA with pathlen 0 and nameConstraints permitting {:?}, \
         then run `gatecert ca install CERT` (CERT = the intermediate followed by your root)",
        cfg.ca.allow_suffix
    );
    Ok(())
}

fn ca_install(cfg: &Config, dir: &Path, args: &[String], now: i64) -> Res {
    let [file] = args else {
        return Err(usage("usage: gatecert ca install CERT"));
    };
    let trusted = ClockTrust::load(&cfg.main.state_dir, None).check(now)?;
    let pem = store::read(Path::new(file))?;
    audit_ready(cfg)?;
    let ca = LocalCa::install(dir, &cfg.ca, &pem, trusted)?;
    let fp = fingerprint(&ca.intermediate().der);
    audit_event(
        cfg,
        now,
        "ca-install",
        serde_json::json!({"intermediate_sha256": fp}),
    )?;
    println!("intermediate installed: {}", ca.intermediate().subject);
    Ok(())
}

fn ca_show(cfg: &Config, dir: &Path) -> Res {
    let ca = LocalCa::open(dir, &cfg.ca)?;
    let chain = ca.chain_der();
    for (label, der) in ["intermediate", "root"].iter().zip(chain.iter()) {
        let info = CertInfo::from_der(der)?;
        println!("{label}:");
        println!("  subject:     {}", info.subject);
        println!("  issuer:      {}", info.issuer);
        println!("  serial:      {}", info.serial_hex());
        println!(
            "  validity:    {} .. {}",
            crypto::rfc3339(info.not_before),
            crypto::rfc3339(info.not_after)
        );
        println!("  SHA-256:     {}", fingerprint(der));
        if let Some(n) = crypto::path_len(der) {
            println!("  pathlen:     {n}");
        }
        if let Some(nc) = crypto::name_constraints(der)? {
            println!("  permitted:   {}", subtrees(&nc.permitted));
            println!("  excluded:    {}", subtrees(&nc.excluded));
        }
    }
    for g in ca.previous() {
        println!("replaced intermediate (kept for verification, `ca rotate`):");
        println!("  serial:      {}", g.info.serial_hex());
        println!("  replaced:    {}", crypto::rfc3339(g.rotated_at));
        println!("  retired:     after {}", crypto::rfc3339(g.retire_after));
        println!("  SHA-256:     {}", fingerprint(&g.info.der));
    }
    Ok(())
}

fn ca_sign(cfg: &Config, dir: &Path, args: &[String], now: i64) -> Res {
    let mut csr_file = None;
    let mut out: Option<PathBuf> = None;
    let mut lifetime = None;
    let mut server_auth = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--csr" => csr_file = Some(PathBuf::from(val("--csr")?)),
            "--out" | "-o" => out = Some(PathBuf::from(val("--out")?)),
            "--days" | "--lifetime" if lifetime.is_some() => {
                return Err(usage(
                    "ca sign: give --days or --lifetime, not both (or one twice)",
                ))
            }
            "--days" => {
                let d: u64 = val("--days")?
                    .parse()
                    .map_err(|_| usage("--days needs a whole number"))?;
                lifetime = Some(d.saturating_mul(86_400));
            }
            "--lifetime" => {
                let v = val("--lifetime")?;
                lifetime = Some(
                    token::parse_duration(&v)
                        .ok_or_else(|| usage(format!("--lifetime {v:?}: use e.g. 24h or 7d")))?,
                );
            }
            "--server-auth" => server_auth = true,
            other => return Err(usage(format!("ca sign: unexpected argument {other:?}"))),
        }
    }
    let csr_file = csr_file.ok_or_else(|| usage("ca sign needs --csr FILE"))?;
    // Before anything is signed: a device, FIFO, directory or symlink is never an output.
    if let Some(path) = &out {
        store::check_output_path(path)?;
    }
    let raw = std::fs::read(&csr_file).map_err(store::io_err("read", &csr_file))?;
    let der = csr_der(&raw).ok_or_else(|| {
        usage(format!(
            "{}: neither a PEM CERTIFICATE REQUEST nor DER",
            csr_file.display()
        ))
    })?;
    let ca = LocalCa::open(dir, &cfg.ca)?;
    // Before anything is written (not even a deny line): a leaf dated by a wrong clock is
    // worse than none.
    let trusted =
        ClockTrust::load(&cfg.main.state_dir, Some(ca.intermediate().not_before)).check(now)?;
    let csr = ca.verify_csr(&der)?;
    let names = names_of(&csr.dns, &csr.ips);
    // The same identity rules as EST: the device that holds exactly these names (else one
    // named by the first name), never a disabled device or a key revoked for keyCompromise.
    // The lock is held until the issuance is recorded.
    let mut inv = Inventory::open_locked(&leaves::path_in(&cfg.main.state_dir), None)?;
    let key = crypto::hex(&crypto::sha256(&csr.spki_der));
    let device = inv
        .device_for_names(&names)
        .map(|l| l.device.clone())
        .or_else(|| csr.dns.first().cloned())
        .or_else(|| csr.ips.first().map(IpAddr::to_string))
        .unwrap_or_default();
    let refused = match inv.by_device(&device) {
        Some(l) if l.state == leaves::DeviceState::Disabled => Some(format!(
            "device {device} is disabled (gatecert leaves enable {device} first)"
        )),
        _ if inv.key_compromised(&key) => Some(
            "the CSR's public key belongs to a certificate revoked for keyCompromise".to_owned(),
        ),
        _ => None,
    };
    if let Some(reason) = refused {
        let _ = audit_event(
            cfg,
            now,
            "deny",
            serde_json::json!({"via": "cli", "device": device, "names": names, "reason": reason}),
        );
        return Err(usage(format!("ca sign refused: {reason}")));
    }
    let req = IssueRequest {
        csr,
        lifetime,
        server_auth,
    };
    // One step for every other process (the service, another `ca sign`): the chain is read,
    // the line appended and the inventory row written under the audit lock. A broken chain
    // stops here, before anything is signed.
    let mut log = Audit::open_locked(
        &audit::path_in(&cfg.main.state_dir),
        audit::DEFAULT_MAX_BYTES,
    )?;
    // Re-read under the locks: a `ca rotate` that went live meanwhile is what signs.
    let ca = match ca.changed_on_disk() {
        true => LocalCa::open(dir, &cfg.ca)?,
        false => ca,
    };
    let issued = match ca.issue(&req, trusted) {
        Ok(i) => i,
        Err(e) => {
            let _ = log.append(
                now,
                "deny",
                serde_json::json!({"via": "cli", "device": device, "names": names, "reason": e.to_string()}),
            );
            return Err(e.into());
        }
    };
    log.append(
        now,
        "issue",
        serde_json::json!({"via": "cli", "device": device, "names": names,
            "serial": issued.serial_hex, "not_after": issued.not_after}),
    )?;
    let superseded = inv.record(Leaf {
        key: Some(key),
        ..Leaf::new(
            &device,
            names,
            &issued.serial_hex,
            issued.not_after,
            Source::Local,
            now,
        )
    })?;
    if !superseded.is_empty() {
        // The device's oldest certificates beyond leaves::MAX_EARLIER, revoked by this one.
        log.append(
            now,
            "leaves.supersede",
            serde_json::json!({"device": device, "by": issued.serial_hex,
                "serials": superseded.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>()}),
        )?;
    }
    drop(log);
    let pem = crypto::certs_to_pem(issued.chain_der.iter().map(Vec::as_slice));
    match out {
        Some(path) => {
            store::write_atomic(&path, pem.as_bytes(), store::PUBLIC)?;
            eprintln!(
                "certificate {} written to {}",
                issued.serial_hex,
                path.display()
            );
        }
        None => print!("{pem}"),
    }
    Ok(())
}

/// `gatecert token add DEVICE --name N [--name ..] [--ttl 7d] [--uses 1] [--acme] | list | revoke DEVICE`.
/// `--acme` prints an ACME External Account Binding (`eab_kid=`, `eab_hmac=`) instead of a token.
pub fn cmd_token(cfg: &Config, args: &[String]) -> i32 {
    let now = clock::from_env().now();
    let rest = args.get(1..).unwrap_or_default();
    finish(match args.first().map(String::as_str) {
        Some("add") => token_add(cfg, rest, now),
        Some("list") => match rest {
            [] => token_list(cfg, now, false),
            [j] if j == "--json" => token_list(cfg, now, true),
            _ => Err(usage("usage: gatecert token list [--json]")),
        },
        Some("revoke") => token_revoke(cfg, rest, now),
        _ => Err(usage(
            "usage: gatecert token add DEVICE --name N [--name N..] [--ttl 7d] [--uses 1] [--acme] | list | revoke DEVICE",
        )),
    })
}

fn token_add(cfg: &Config, args: &[String], now: i64) -> Res {
    let mut device = None;
    let mut names = Vec::new();
    let mut ttl = 7 * 86_400;
    let mut uses = 1u32;
    let mut output = TokenOutput::Token;
    let mut acme = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| usage(format!("{name} needs a value")))
        };
        match a.as_str() {
            "--name" => names.push(val("--name")?.to_ascii_lowercase()),
            "--ttl" => {
                let v = val("--ttl")?;
                ttl = token::parse_duration(&v)
                    .ok_or_else(|| usage(format!("--ttl {v:?}: use e.g. 1h or 7d")))?;
            }
            "--uses" => {
                uses = val("--uses")?
                    .parse()
                    .map_err(|_| usage("--uses needs a whole number"))?;
            }
            "--bundle" | "--json" | "--qr" | "--qr-matrix" if output != TokenOutput::Token => {
                return Err(usage(
                    "token add: give one of --bundle, --qr and --qr-matrix",
                ))
            }
            "--bundle" | "--json" => output = TokenOutput::Bundle,
            "--qr" => output = TokenOutput::Qr,
            "--qr-matrix" => output = TokenOutput::QrMatrix,
            "--acme" => acme = true,
            s if s.starts_with('-') => {
                return Err(usage(format!("token add: unknown option {s:?}")))
            }
            s if device.is_none() => device = Some(s.to_string()),
            s => return Err(usage(format!("token add: unexpected argument {s:?}"))),
        }
    }
    let device = device.ok_or_else(|| usage("token add needs a DEVICE"))?;
    if acme && output != TokenOutput::Token {
        return Err(usage(
            "token add: --acme prints an EAB key id and key, not a bundle or QR code",
        ));
    }
    if names.is_empty() {
        return Err(usage("token add needs at least one --name"));
    }
    for n in &names {
        let allowed = match n.parse::<IpAddr>() {
            Ok(ip) => cfg
                .ca
                .allow_ip
                .iter()
                .any(|(net, len)| ca::ip_in_subnet(ip, *net, *len)),
            Err(_) => {
                ca::dns_host_name(n)
                    .map_err(|why| usage(format!("--name {n:?}: the CA would refuse it: {why}")))?;
                cfg.ca.allow_suffix.iter().any(|s| ca::dns_in_subtree(n, s))
            }
        };
        if !allowed {
            return Err(usage(format!(
                "--name {n:?} is outside allow_suffix {:?} / allow_ip; the CA would refuse it",
                cfg.ca.allow_suffix
            )));
        }
    }
    // A token's expiry read off a wrong clock is wrong: refuse before anything is written.
    let ca_not_before = LocalCa::open(&LocalCa::dir_in(&cfg.main.state_dir), &cfg.ca)
        .ok()
        .map(|ca| ca.intermediate().not_before);
    ClockTrust::load(&cfg.main.state_dir, ca_not_before).check(now)?;
    let expires = now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX));
    // Everything the bundle needs is checked before the token exists.
    let mut bundle = match output {
        TokenOutput::Token => None,
        _ => Some(Bundle::new(cfg, &device, "", &names, expires)?),
    };
    if let Some(b) = bundle.as_ref().filter(|_| output >= TokenOutput::Qr) {
        // The same JSON with a token longer than any real one (43 characters: base64url of
        // 32 bytes) must fit in a QR code.
        let probe = Bundle {
            token: "x".repeat(64),
            ..b.clone()
        };
        bundle::qr_matrix(&probe.to_json())?;
    }
    store::private_dir(&cfg.main.state_dir)?;
    audit_ready(cfg)?;
    let path = token::path_in(&cfg.main.state_dir);
    let (kid, tok) = if acme {
        // The EAB MAC key is derived from the kid (see acme_server::eab); only its hash is kept.
        let secret = crate::acme_server::eab::ensure_secret(&cfg.main.state_dir)?;
        let derive = |kid: &str| crate::acme_server::eab::mac_key(&secret, kid);
        token::add_to(&path, &device, &names, ttl, uses, now, Some(&derive))?
    } else {
        token::add_to(&path, &device, &names, ttl, uses, now, None)?
    };
    audit_event(
        cfg,
        now,
        "token-add",
        serde_json::json!({"device": device, "names": names, "expires": expires, "uses": uses, "eab_kid": kid}),
    )?;
    if let Some(kid) = kid {
        eprintln!(
            "ACME External Account Binding for {device} (expires {}, {uses} account(s)); the key is shown only now:",
            crypto::rfc3339(expires)
        );
        println!("eab_kid={kid}");
        println!("eab_hmac={tok}");
        return Ok(());
    }
    eprintln!(
        "token for {device} (expires {}, {uses} use(s)); it is shown only now:",
        crypto::rfc3339(expires)
    );
    // The token goes to stdout once, never to a log (the audit line above carries no secret).
    match bundle.as_mut() {
        None => println!("{tok}"),
        Some(b) => {
            b.token = tok;
            let json = b.to_json();
            match output {
                TokenOutput::Qr => {
                    let qr = bundle::qr_terminal(&json)?;
                    let width = qr.lines().next().map_or(0, |l| l.chars().count());
                    eprintln!("(the code is {width} columns wide: widen the terminal if it wraps)");
                    print!("{qr}");
                    println!("{json}");
                }
                TokenOutput::QrMatrix => {
                    let doc = serde_json::json!({"bundle": b, "qr": bundle::qr_rows(&json)?});
                    println!("{doc}");
                }
                _ => println!("{}", serde_json::to_string_pretty(b).unwrap_or(json)),
            }
        }
    }
    Ok(())
}

/// What `token add` prints: the token alone, the bundle (`--bundle`), the bundle as a QR code
/// and its JSON (`--qr`), or the bundle with its QR matrix as JSON (`--qr-matrix`, for LuCI).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TokenOutput {
    Token,
    Bundle,
    Qr,
    QrMatrix,
}

fn token_list(cfg: &Config, now: i64, json: bool) -> Res {
    let tokens = Tokens::open(&token::path_in(&cfg.main.state_dir))?;
    if json {
        // No secrets: the stored hash and salt stay out.
        let list: Vec<serde_json::Value> = tokens
            .list()?
            .iter()
            .map(|t| {
                serde_json::json!({"device": t.device, "names": t.names, "expires": t.expires,
                    "uses_left": t.uses_left,
                    "state": token_state(t.revoked, t.expires, t.uses_left, now)})
            })
            .collect();
        println!("{}", serde_json::json!({ "tokens": list }));
        return Ok(());
    }
    let rows: Vec<[String; 5]> = tokens
        .list()?
        .iter()
        .map(|t| {
            [
                t.device.clone(),
                crypto::rfc3339(t.expires),
                t.uses_left.to_string(),
                token_state(t.revoked, t.expires, t.uses_left, now).to_owned(),
                t.names.join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["DEVICE", "EXPIRES", "USES", "STATE", "NAMES"], &rows)
    );
    Ok(())
}

/// A token's state in the words `gatecert status` counts them by: revoked, else expired, else
/// exhausted (no uses left), else active.
pub fn token_state(revoked: bool, expires: i64, uses_left: u32, now: i64) -> &'static str {
    if revoked {
        "revoked"
    } else if now >= expires {
        "expired"
    } else if uses_left == 0 {
        "exhausted"
    } else {
        "active"
    }
}

/// A table whose columns are as wide as their widest cell (the last one is not padded).
fn table<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(width[i] - c.chars().count() + 2));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(head.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn token_revoke(cfg: &Config, args: &[String], now: i64) -> Res {
    let [device] = args else {
        return Err(usage("usage: gatecert token revoke DEVICE"));
    };
    let mut tokens = Tokens::open_locked(&token::path_in(&cfg.main.state_dir))?;
    if !tokens.revoke(device)? {
        return Err(usage(format!("no token for device {device:?}")));
    }
    audit_event(
        cfg,
        now,
        "token-revoke",
        serde_json::json!({"device": device}),
    )?;
    println!("token for {device} revoked");
    Ok(())
}

fn fingerprint(der: &[u8]) -> String {
    crypto::hex(&crypto::sha256(der))
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

fn subtrees(list: &[Subtree]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(|t| match t {
            Subtree::Dns(d) => format!("DNS:{d}"),
            Subtree::Ip(ip, len) => format!("IP:{ip}/{len}"),
            Subtree::Other(o) => o.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn names_of(dns: &[String], ips: &[IpAddr]) -> Vec<String> {
    dns.iter()
        .cloned()
        .chain(ips.iter().map(IpAddr::to_string))
        .collect()
}

/// A CSR from a file: PEM `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`) or raw DER.
fn csr_der(raw: &[u8]) -> Option<Vec<u8>> {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Some(raw.to_vec());
    };
    if !text.contains("-----BEGIN") {
        return Some(raw.to_vec());
    }
    let body: String = text
        .lines()
        .skip_while(|l| !l.contains("CERTIFICATE REQUEST-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    crypto::b64_decode(body.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(name: &str) -> Config {
        let d = std::env::temp_dir().join(format!("gatecert-admin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let mut cfg = Config::standalone(d);
        cfg.ca.allow_suffix = vec!["sensors.local".into()];
        cfg
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ca_init_sign_and_inventory() {
        let cfg = setup("sign");
        assert_eq!(cmd_ca(&cfg, &s(&["init"])), 0);
        assert_eq!(cmd_ca(&cfg, &s(&["init"])), 2, "init must not overwrite");
        assert_eq!(cmd_ca(&cfg, &s(&["show"])), 0);
        let k = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
        let csr = k.csr(&s(&["t1.sensors.local"]), &[]).unwrap();
        let csr_path = cfg.main.state_dir.join("t1.csr");
        std::fs::write(&csr_path, crypto::pem_block("CERTIFICATE REQUEST", &csr)).unwrap();
        let out = cfg.main.state_dir.join("t1.crt");
        let csr_arg = csr_path.to_str().unwrap();
        let out_arg = out.to_str().unwrap();
        assert_eq!(
            cmd_ca(
                &cfg,
                &s(&["sign", "--csr", csr_arg, "--days", "8", "--out", out_arg])
            ),
            2,
            "8 days is over max_lifetime"
        );
        assert_eq!(
            cmd_ca(
                &cfg,
                &s(&[
                    "sign",
                    "--csr",
                    csr_arg,
                    "--lifetime",
                    "2h",
                    "--out",
                    out_arg
                ])
            ),
            0
        );
        let info = CertInfo::from_pem(&std::fs::read_to_string(&out).unwrap()).unwrap();
        assert_eq!(info.lifetime(), 2 * 3600 + ca::BACKDATE);
        let inv = Inventory::open(&leaves::path_in(&cfg.main.state_dir)).unwrap();
        assert_eq!(
            inv.by_device("t1.sensors.local").unwrap().serial,
            info.serial_hex()
        );
        assert_eq!(cmd_leaves(&cfg, &[]), 0);
        let report = Audit::verify(&audit::path_in(&cfg.main.state_dir)).unwrap();
        assert!(report.ok());
        assert_eq!(report.lines, 3); // ca-init, deny, issue
        assert_eq!(cmd_audit(&cfg, &s(&["verify"])), 0);

        // ca sign passes the same gates as EST: a second certificate for these names goes to
        // the same device row; after `leaves revoke --reason keyCompromise` the key is refused,
        // and after `leaves disable` the device is.
        let sign = |csr_arg: &str| {
            cmd_ca(
                &cfg,
                &s(&[
                    "sign",
                    "--csr",
                    csr_arg,
                    "--lifetime",
                    "2h",
                    "--out",
                    out_arg,
                ]),
            )
        };
        assert_eq!(sign(csr_arg), 0);
        let inv = Inventory::open(&leaves::path_in(&cfg.main.state_dir)).unwrap();
        assert_eq!(inv.list().collect::<Vec<_>>().len(), 1);
        assert_eq!(inv.by_device("t1.sensors.local").unwrap().earlier.len(), 1);
        assert_eq!(
            cmd_leaves(
                &cfg,
                &s(&["revoke", "t1.sensors.local", "--reason", "keyCompromise"])
            ),
            0
        );
        assert_eq!(sign(csr_arg), 2, "a key revoked for keyCompromise");
        let k2 = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
        let csr2 = k2.csr(&s(&["t1.sensors.local"]), &[]).unwrap();
        let csr2_path = cfg.main.state_dir.join("t2.csr");
        std::fs::write(&csr2_path, crypto::pem_block("CERTIFICATE REQUEST", &csr2)).unwrap();
        let csr2_arg = csr2_path.to_str().unwrap();
        assert_eq!(sign(csr2_arg), 0, "a fresh key for a revoked device");
        assert_eq!(cmd_leaves(&cfg, &s(&["disable", "t1.sensors.local"])), 0);
        assert_eq!(sign(csr2_arg), 2, "a disabled device");
        let log = std::fs::read_to_string(audit::path_in(&cfg.main.state_dir)).unwrap();
        assert!(
            log.contains("keyCompromise") && log.contains("is disabled"),
            "{log}"
        );
        assert!(std::fs::metadata(cfg.main.state_dir.join("crl.der")).is_ok());
    }

    #[test]
    fn token_commands() {
        let cfg = setup("token");
        assert_eq!(
            cmd_token(&cfg, &s(&["add", "s1", "--name", "s1.example.org"])),
            2,
            "name outside allow_suffix"
        );
        assert_eq!(
            cmd_token(
                &cfg,
                &s(&[
                    "add",
                    "s1",
                    "--name",
                    "s1.sensors.local",
                    "--ttl",
                    "1h",
                    "--uses",
                    "2"
                ])
            ),
            0
        );
        let t = Tokens::open(&token::path_in(&cfg.main.state_dir)).unwrap();
        assert_eq!(t.list().unwrap()[0].uses_left, 2);
        assert_eq!(cmd_token(&cfg, &s(&["list"])), 0);
        assert_eq!(cmd_token(&cfg, &s(&["revoke", "s1"])), 0);
        assert_eq!(cmd_token(&cfg, &s(&["revoke", "nobody"])), 2);
        assert!(
            Tokens::open(&token::path_in(&cfg.main.state_dir))
                .unwrap()
                .list()
                .unwrap()[0]
                .revoked
        );
        let log = std::fs::read_to_string(audit::path_in(&cfg.main.state_dir)).unwrap();
        assert!(log.contains("token-add") && log.contains("token-revoke"));
    }

    #[test]
    fn ca_sign_refuses_days_with_lifetime() {
        let cfg = setup("daysboth");
        assert_eq!(cmd_ca(&cfg, &s(&["init"])), 0);
        let k = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
        let csr = k.csr(&s(&["t2.sensors.local"]), &[]).unwrap();
        let csr_path = cfg.main.state_dir.join("t2.csr");
        std::fs::write(&csr_path, crypto::pem_block("CERTIFICATE REQUEST", &csr)).unwrap();
        let out = cfg.main.state_dir.join("t2.crt");
        let (c, o) = (csr_path.to_str().unwrap(), out.to_str().unwrap());
        for args in [
            [
                "sign",
                "--csr",
                c,
                "--days",
                "1",
                "--lifetime",
                "2h",
                "--out",
                o,
            ],
            [
                "sign",
                "--csr",
                c,
                "--lifetime",
                "2h",
                "--days",
                "1",
                "--out",
                o,
            ],
        ] {
            assert_eq!(cmd_ca(&cfg, &s(&args)), 2, "{args:?}");
        }
        assert!(!out.exists(), "nothing issued");
        let inv = Inventory::open(&leaves::path_in(&cfg.main.state_dir)).unwrap();
        assert!(inv.list().collect::<Vec<_>>().is_empty());
    }

    #[test]
    fn token_states_use_the_words_status_counts_by() {
        assert_eq!(token_state(true, 10, 1, 0), "revoked");
        assert_eq!(token_state(false, 10, 1, 10), "expired");
        assert_eq!(token_state(false, 10, 0, 0), "exhausted");
        assert_eq!(token_state(false, 10, 1, 0), "active");
        let rows = [["a-very-long-device-name-indeed".to_string(), "x".into()]];
        let t = table(&["DEVICE", "STATE"], &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].find("STATE"), lines[1].find('x'), "{t}");
    }

    #[test]
    fn serials_print_as_openssl_prints_them() {
        let mut p = rcgen::CertificateParams::new(vec!["a.local".to_string()]).unwrap();
        // Top bit set: DER carries a leading 00 octet, openssl does not print it.
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&[0xD9, 0x2A, 0xEC, 0xCB]));
        let k = rcgen::KeyPair::generate().unwrap();
        let cert = p.self_signed(&k).unwrap();
        let info = CertInfo::from_der(cert.der()).unwrap();
        assert_eq!(info.serial_hex(), "D92AECCB");
        let path = std::env::temp_dir().join(format!("gatecert-serial-{}.pem", std::process::id()));
        std::fs::write(&path, cert.pem()).unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-serial", "-in"])
            .arg(&path)
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "serial=D92AECCB"
        );
        // An inventory written with the 00 still finds the certificate.
        assert!(crypto::same_serial("00d92aeccb", &info.serial_hex()));
        assert_eq!(crypto::serial_display("00D92AECCB"), "D92AECCB");
        assert_eq!(crypto::serial_display("00"), "00");
    }

    #[test]
    fn token_add_refuses_an_untrusted_clock_and_writes_nothing() {
        let cfg = setup("tokclock");
        assert_eq!(cmd_ca(&cfg, &s(&["init"])), 0);
        let tokens = token::path_in(&cfg.main.state_dir);
        let log = audit::path_in(&cfg.main.state_dir);
        let log_before = std::fs::read(&log).unwrap();
        let r = token_add(&cfg, &s(&["s9", "--name", "s9.sensors.local"]), 86_400);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("clock"), "{e}");
        assert!(!tokens.exists(), "a token was stored");
        assert_eq!(std::fs::read(&log).unwrap(), log_before);
    }

    #[test]
    fn a_bundle_needs_the_ca_and_carries_the_listener_names() {
        let cfg = setup("bundle");
        let now = clock::from_env().now();
        let names = s(&["b1.sensors.local"]);
        let e = Bundle::new(&cfg, "b1", "", &names, now).unwrap_err();
        assert!(e.to_string().contains("trust anchor"), "{e}");
        assert_eq!(cmd_ca(&cfg, &s(&["init"])), 0);
        let b = Bundle::new(&cfg, "b1", "tok", &names, now).unwrap();
        // No listener certificate yet: the configured names (gateway.local), EST's port.
        assert_eq!(b.est_urls, ["https://gateway.local:8443/.well-known/est/"]);
        assert_eq!(b.est_tls, "trust_anchor");
        let root =
            std::fs::read_to_string(LocalCa::dir_in(&cfg.main.state_dir).join("root.pem")).unwrap();
        assert_eq!(b.trust_anchor.pem.trim(), root.trim());
        assert_eq!(b.trust_anchor.sha256.len(), 32 * 3 - 1);
        // An ACME certificate installed for the listener: its names, and the public roots.
        let mut acme = cfg.clone();
        acme.certificates[0].directory = Some("https://127.0.0.1:1/dir".into());
        let ca = LocalCa::open(&LocalCa::dir_in(&cfg.main.state_dir), &cfg.ca).unwrap();
        let (key, issued) = ca
            .issue_with_new_key(
                &s(&["gw.sensors.local"]),
                &[],
                None,
                true,
                crate::trust::TrustedNow::for_tests(now),
            )
            .unwrap();
        crate::store::SetDir::new(cfg.main.state_dir.join("certs/gateway"))
            .install(&crate::store::CertSet {
                key_pem: key.to_pem(),
                cert_pem: crypto::pem_block("CERTIFICATE", &issued.leaf_der),
                chain_pem: String::new(),
            })
            .unwrap();
        let b = Bundle::new(&acme, "b1", "tok", &names, now).unwrap();
        assert_eq!(
            b.est_urls,
            ["https://gw.sensors.local:8443/.well-known/est/"]
        );
        assert_eq!(b.est_tls, "public");
        let mut off = cfg.clone();
        off.est.enabled = false;
        assert!(Bundle::new(&off, "b1", "", &names, now).is_err());
    }

    #[test]
    fn csr_files_in_pem_or_der() {
        let der = vec![0x30, 0x03, 1, 2, 3];
        assert_eq!(csr_der(&der), Some(der.clone()));
        let pem = crypto::pem_block("CERTIFICATE REQUEST", &der);
        assert_eq!(csr_der(pem.as_bytes()), Some(der.clone()));
        let pem = crypto::pem_block("NEW CERTIFICATE REQUEST", &der);
        assert_eq!(csr_der(pem.as_bytes()), Some(der));
    }
}
