//! The `renew`, `revoke` and `account rollover` commands (uacme's exit codes, for cron).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::{
    account_dir, cert_dir, existing_account, Error, Outcome, State, EXIT_DONE, EXIT_ERROR,
    EXIT_NOTHING,
};
use crate::acme::types::RevocationReason;
use crate::acme::{self, transport, Client};
use crate::clock::{self, SystemClock};
use crate::config::{Certificate, Config, LogTarget};
use crate::crypto::{self, CertInfo, PrivateKey};
use crate::schedule;
use crate::store::{self, SetDir};

/// A configured certificate with a directory, by name (`None` = the first).
fn pick<'c>(cfg: &'c Config, name: Option<&str>) -> Result<&'c Certificate, String> {
    let mut acme = cfg.certificates.iter().filter(|c| c.directory.is_some());
    match name {
        Some(n) => acme.find(|c| c.name == n).ok_or_else(|| {
            format!(
                "no certificate '{n}' with a directory in {}",
                cfg.source.display()
            )
        }),
        None => acme.next().ok_or_else(|| {
            format!(
                "no certificate section with a directory in {}",
                cfg.source.display()
            )
        }),
    }
}

pub(super) struct Flags {
    pub(super) force: bool,
    pub(super) verbose: bool,
    pub(super) cert: Option<String>,
    pub(super) issuer: Option<String>,
    pub(super) reason: Option<RevocationReason>,
    pub(super) rest: Vec<String>,
}

pub(super) fn flags(args: &[String], allowed: &[&str]) -> Result<Flags, String> {
    let mut f = Flags {
        force: false,
        verbose: false,
        cert: None,
        issuer: None,
        reason: None,
        rest: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (a.as_str(), None),
        };
        if name.starts_with('-') && !allowed.contains(&name) {
            return Err(format!("unknown option {name}"));
        }
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs {what}"))
        };
        match name {
            "--force" | "-f" | "--now" => f.force = true,
            "--issuer" => f.issuer = Some(value("a NAME")?),
            "-v" | "--verbose" => f.verbose = true,
            "--cert" => f.cert = Some(value("a NAME")?),
            "--reason" => {
                let r = value("a REASON")?;
                f.reason = Some(RevocationReason::parse(&r).ok_or_else(|| {
                    format!("unknown revocation reason {r:?} (e.g. keyCompromise, superseded, 4)")
                })?);
            }
            _ => f.rest.push(a.clone()),
        }
    }
    Ok(f)
}

fn init_logging(verbose: bool) {
    let level = if verbose {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    };
    crate::logging::init(LogTarget::Stderr, level);
}

/// A failure named with its certificate, for the `caused by:` chain.
#[derive(Debug)]
struct Failed<'a> {
    what: &'static str,
    name: &'a str,
    source: Error,
}

impl fmt::Display for Failed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} certificate '{}': {}",
            self.what, self.name, self.source
        )
    }
}

impl std::error::Error for Failed<'_> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.source)
    }
}

fn transport_for(cert: &Certificate) -> Result<transport::UreqTransport, transport::Error> {
    transport::UreqTransport::new(
        cert.ca_bundle.as_deref(),
        Duration::from_secs(cert.timeout.max(1)),
    )
}

/// `gatecert renew [--force] [-v] [--cert NAME]`: 0 renewed, 1 nothing due, 2 error.
/// `gatecert renew --now --issuer NAME [CERT]`: re-issue at once from the issuer NAME (every
/// certificate that lists it, or CERT).
pub fn cmd_renew(cfg: &Config, args: &[String]) -> i32 {
    let allowed = [
        "--force",
        "-f",
        "--now",
        "-v",
        "--verbose",
        "--cert",
        "--issuer",
    ];
    let mut f = match flags(args, &allowed) {
        Ok(f) => f,
        Err(m) => return usage(&m),
    };
    // `renew --now --issuer NAME CERT`: the certificate may also be named without --cert.
    if f.issuer.is_some() && f.cert.is_none() && f.rest.len() == 1 {
        f.cert = f.rest.pop();
    }
    if let Some(a) = f.rest.first() {
        return usage(&format!("unexpected argument {a:?}"));
    }
    if let Some(name) = &f.issuer {
        if let Err(m) = check_issuer(cfg, name, f.force, f.cert.as_deref()) {
            return usage(&m);
        }
    }
    init_logging(f.verbose);
    let clock = clock::from_env();
    let state_dir = &cfg.main.state_dir;
    // A running service holds the lock: it does the renewal and says how it went.
    let req = crate::control::Request {
        force: f.force,
        cert: f.cert.clone(),
        issuer: f.issuer.clone(),
    };
    match crate::control::request(state_dir, &req) {
        Ok(Some((code, message))) => {
            for line in message.lines() {
                log::error!("{line}");
            }
            return code;
        }
        Ok(None) => {}
        Err(e) => {
            crate::errchain::print_error(&e);
            return EXIT_ERROR;
        }
    }
    let _lock = match store::Lock::acquire(state_dir) {
        Ok(l) => l,
        Err(e) => {
            crate::errchain::print_error(&e);
            return EXIT_ERROR;
        }
    };
    let mut trust = crate::trust::ClockTrust::load(state_dir, None);
    if let Err(e) = trust.check(clock.now()) {
        crate::errchain::print_error(&e);
        return EXIT_ERROR;
    }
    let certs: Vec<&Certificate> = match &f.cert {
        Some(n) => match cfg.certificates.iter().find(|c| &c.name == n) {
            Some(c) => vec![c],
            None => match pick(cfg, Some(n)) {
                Ok(c) => vec![c],
                Err(m) => return usage(&m),
            },
        },
        // `--issuer NAME` alone: every certificate that lists it.
        None => match &f.issuer {
            Some(i) => cfg
                .certificates
                .iter()
                .filter(|c| c.issuers.iter().any(|x| x.name == *i))
                .collect(),
            None => cfg.certificates.iter().collect(),
        },
    };
    if certs.is_empty() {
        log::info!("no certificate section; nothing to renew");
        return EXIT_NOTHING;
    }
    let (mut renewed, mut failed) = (false, false);
    for cert in certs {
        if cert.directory.is_none() {
            // Standalone: from the local CA, as the service does (created here if need be).
            match super::standalone::keep_now(cfg, cert, clock.now()) {
                Ok(kept) => {
                    if let Some(w) = kept.waiting {
                        log::warn!("{}: waiting for a trusted clock to issue: {w}", cert.name);
                    }
                    if let Some(not_after) = kept.renewed {
                        log::info!(
                            "{}: issued from the local CA, valid until {}",
                            cert.name,
                            crypto::rfc3339(not_after)
                        );
                        renewed = true;
                    }
                }
                Err(source) => {
                    crate::errchain::print_error(&Failed {
                        what: "renewing",
                        name: &cert.name,
                        source,
                    });
                    failed = true;
                }
            }
            continue;
        }
        if !f.force {
            if let Some((failures, until)) = backing_off(state_dir, &cert.name, clock.now()) {
                // Still failing: no new order before the backoff the service would apply.
                eprintln!(
                    "gatecert: renewing certificate '{}': the last {failures} attempts failed; \
                     backing off until {} (--force tries now)",
                    cert.name,
                    crypto::rfc3339(until)
                );
                failed = true;
                continue;
            }
        }
        let make = |c: &Certificate| {
            transport_for(c).map(|t| Box::new(t) as Box<dyn transport::Transport>)
        };
        let ctx = super::issuers::Ctx {
            state_dir,
            clock: clock.as_ref(),
            sleep: &acme::thread_sleep,
            remember_polls: true,
            transport: &make,
        };
        let result = super::issuers::renew(&ctx, cert, f.force, f.issuer.as_deref());
        match result {
            Ok(Outcome::Renewed { not_after }) => {
                record_health(state_dir, &cert.name, Ok(()), clock.now());
                log::info!(
                    "{}: renewed, valid until {}",
                    cert.name,
                    crypto::rfc3339(not_after)
                );
                renewed = true;
            }
            Ok(Outcome::NotDue(_)) => {}
            Err(source) => {
                let msg = crate::errchain::one_line(&source);
                record_health(state_dir, &cert.name, Err(&msg), clock.now());
                crate::errchain::print_error(&Failed {
                    what: "renewing",
                    name: &cert.name,
                    source,
                });
                failed = true;
            }
        }
    }
    if failed {
        EXIT_ERROR
    } else if renewed {
        EXIT_DONE
    } else {
        EXIT_NOTHING
    }
}

/// `cert` as ordered from the issuer that issued its live certificate (`list issuer`, as
/// `state.json` records it); `cert` itself with one issuer.
fn issuing(state_dir: &Path, cert: &Certificate) -> Result<Certificate, Error> {
    let active = State::load(state_dir, &cert.name)?
        .issuer
        .and_then(|r| r.active);
    Ok(
        match active.and_then(|a| cert.issuers.iter().find(|i| i.name == a)) {
            Some(i) => cert.via(i),
            None => cert.clone(),
        },
    )
}

/// `--issuer NAME`: needs `--now`, an issuer section of that name, and (with a certificate
/// named) that certificate's `list issuer` to hold it.
fn check_issuer(cfg: &Config, name: &str, now: bool, cert: Option<&str>) -> Result<(), String> {
    if !now {
        return Err(format!(
            "--issuer {name} re-issues at once: give --now as well (renew --now --issuer {name})"
        ));
    }
    if !cfg.issuers.iter().any(|i| i.name == name) {
        let known: Vec<&str> = cfg.issuers.iter().map(|i| i.name.as_str()).collect();
        return Err(format!(
            "no issuer '{name}' in {} (issuer sections: {})",
            cfg.source.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    let listed = |c: &Certificate| c.issuers.iter().any(|i| i.name == name);
    match cert {
        Some(n) => match cfg.certificates.iter().find(|c| c.name == n) {
            Some(c) if listed(c) => Ok(()),
            Some(_) => Err(format!(
                "certificate '{n}' does not list issuer '{name}' (add `list issuer '{name}'` to it)"
            )),
            None => Err(format!("no certificate '{n}' in {}", cfg.source.display())),
        },
        None if cfg.certificates.iter().any(listed) => Ok(()),
        None => Err(format!("no certificate lists issuer '{name}'")),
    }
}

/// The service's failure backoff ([`schedule::backoff_base`]) for a cron run: after
/// `failures` consecutive failures recorded in `health.json`, no new attempt before the last
/// failure plus the backoff. `Some((failures, until))` while backing off.
fn backing_off(state_dir: &Path, name: &str, now: i64) -> Option<(u32, i64)> {
    let health = crate::report::health::Health::load(state_dir, name).ok()?;
    let last = health.last_failure.filter(|_| health.failures > 0)?;
    let not_after = SetDir::new(cert_dir(state_dir, name))
        .read_live()
        .ok()
        .flatten()
        .and_then(|(fullchain, _)| CertInfo::from_pem(&fullchain).ok())
        .map(|i| i.not_after);
    let until = last + schedule::backoff_base(health.failures, last, not_after);
    (now < until).then_some((health.failures, until))
}

/// Updates `certs/<name>/health.json` for `gatecert status`; a failure to write it is logged,
/// never fatal to renewal.
fn record_health(state_dir: &Path, name: &str, result: Result<(), &str>, now: i64) {
    if let Err(e) = crate::report::record_attempt(state_dir, name, result, now) {
        log::warn!("{name}: cannot record renewal health: {e}");
    }
}

/// `gatecert revoke [--reason R] [--cert NAME] [-v]`: revokes the live certificate, signed by
/// the account key (RFC 8555 §7.6).
pub fn cmd_revoke(cfg: &Config, args: &[String]) -> i32 {
    let f = match flags(args, &["--reason", "--cert", "-v", "--verbose"]) {
        Ok(f) if f.rest.is_empty() => f,
        Ok(f) => return usage(&format!("unexpected argument {:?}", f.rest[0])),
        Err(m) => return usage(&m),
    };
    init_logging(f.verbose);
    let cert = match pick(cfg, f.cert.as_deref()) {
        Ok(c) => c,
        Err(m) => return usage(&m),
    };
    let result = (|| -> Result<(), Error> {
        // Only the CA that issued it can revoke it, with our account there.
        let issuing = issuing(&cfg.main.state_dir, cert)?;
        let cert = &issuing;
        let dir = SetDir::new(cert_dir(&cfg.main.state_dir, &cert.name));
        let (fullchain, _) = dir.read_live()?.ok_or(Error::NoCertificate(dir.live()))?;
        let info = CertInfo::from_pem(&fullchain)?;
        let t = transport_for(cert)?;
        let clock = SystemClock;
        let client = Client::new(
            &t,
            &clock,
            &acme::thread_sleep,
            cert.directory.as_deref().unwrap_or_default(),
        )?;
        let login = existing_account(&client, &cfg.main.state_dir, cert)?;
        client.revoke(&client.account_signer(&login), &info.der, f.reason)?;
        log::info!("{}: revoked serial {}", cert.name, info.serial_hex());
        // The next `renew` replaces it, due or not.
        let mut state = State::load(&cfg.main.state_dir, &cert.name)?;
        state.revoked = Some(info.serial_hex());
        state.save(&cfg.main.state_dir, &cert.name)?;
        println!(
            "{}: revoked certificate serial {} ({}) at {}; the next `gatecert renew` replaces it",
            cert.name,
            info.serial_hex(),
            info.dns_names
                .iter()
                .cloned()
                .chain(info.ips.iter().map(|ip| ip.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
            cert.directory.as_deref().unwrap_or_default()
        );
        Ok(())
    })();
    match result {
        Ok(()) => EXIT_DONE,
        Err(source) => {
            crate::errchain::print_error(&Failed {
                what: "revoking",
                name: &cert.name,
                source,
            });
            EXIT_ERROR
        }
    }
}

/// `gatecert account rollover [--cert NAME] [-v]`: replaces the account key (RFC 8555 §7.3.5).
/// The new key is written to `key.pem.next` first, the server told, then `key.pem` replaced
/// atomically; after a crash in between, the next run settles it (`finish_rollover`).
pub fn cmd_account(cfg: &Config, args: &[String]) -> i32 {
    let f = match flags(args, &["--cert", "-v", "--verbose"]) {
        Ok(f) => f,
        Err(m) => return usage(&m),
    };
    if f.rest.first().map(String::as_str) != Some("rollover") || f.rest.len() != 1 {
        return usage("usage: gatecert account rollover [--cert NAME] [-v]");
    }
    init_logging(f.verbose);
    let cert = match pick(cfg, f.cert.as_deref()) {
        Ok(c) => c,
        Err(m) => return usage(&m),
    };
    let state_dir = &cfg.main.state_dir;
    let result = (|| -> Result<(), Error> {
        super::account_key::refuse_token_rollover(cert)?;
        let t = transport_for(cert)?;
        let clock = SystemClock;
        let client = Client::new(
            &t,
            &clock,
            &acme::thread_sleep,
            cert.directory.as_deref().unwrap_or_default(),
        )?;
        let _lock = store::Lock::acquire(state_dir)?;
        let login = existing_account(&client, state_dir, cert)?;
        let dir = account_dir(state_dir, &client.url);
        let new_key = PrivateKey::generate(login.key.kind())?;
        let next = dir.join("key.pem.next");
        store::write_atomic(&next, new_key.to_pem().as_bytes(), store::SECRET)?;
        log::info!("{}: key change {}", cert.name, client.directory.key_change);
        client.key_change(&login, &new_key)?;
        store::write_atomic(
            &dir.join("key.pem"),
            new_key.to_pem().as_bytes(),
            store::SECRET,
        )?;
        let _ = std::fs::remove_file(&next);
        log::info!("{}: account key replaced", cert.name);
        Ok(())
    })();
    match result {
        Ok(()) => EXIT_DONE,
        Err(source) => {
            crate::errchain::print_error(&Failed {
                what: "rolling over the account key for",
                name: &cert.name,
                source,
            });
            EXIT_ERROR
        }
    }
}

fn usage(msg: &str) -> i32 {
    eprintln!("gatecert: error: {msg}");
    EXIT_ERROR
}
