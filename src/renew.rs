//! Keeping the gateway's certificates valid: the ACME flow top to bottom (uacme's shape:
//! directory → account → decide → order → authorize → finalize → download → install → hook),
//! and the `renew`, `revoke` and `account rollover` commands.
//!
//! Exit codes follow uacme, for cron: 0 = renewed, 1 = nothing due, 2 = error.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::acme::types::{AuthorizationStatus, Identifier, NewOrder, Order, OrderStatus};
use crate::acme::{self, cert_id, select_chain, transport, Client, Login};
use crate::challenge::{self, Pending};
use crate::clock::{Clock, SystemClock};
use crate::config::{Certificate, ChallengeKind};
use crate::crypto::{self, CertInfo, PrivateKey};
use crate::schedule::{self, AriChoice, Decision, Window};
use crate::store::{self, CertSet, SetDir};

/// Exit code: a certificate was renewed (or revoked, or the key rolled over).
pub const EXIT_DONE: i32 = 0;
/// Exit code: nothing was due.
pub const EXIT_NOTHING: i32 = 1;
/// Exit code: something failed.
pub const EXIT_ERROR: i32 = 2;

/// What happened to one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new certificate is live.
    Renewed {
        /// Its notAfter.
        not_after: i64,
    },
    /// The current certificate is still good.
    NotDue(Decision),
}

/// Everything outside the protocol a renewal needs, injectable for tests.
pub struct Env<'a> {
    /// `state_dir`.
    pub state_dir: &'a Path,
    /// The clock for renewal decisions (`GATECERT_FAKE_NOW` in integration tests).
    pub clock: &'a dyn Clock,
    /// The HTTP transport.
    pub transport: &'a dyn transport::Transport,
    /// How to wait (polls, Retry-After, dns_wait).
    pub sleep: &'a dyn Fn(Duration),
    /// Write the next ARI poll time to `state.json` (the cron `renew`, which has no memory
    /// between runs). The service keeps it in its queue instead, so a steady state writes no
    /// flash.
    pub remember_polls: bool,
}

/// Per-certificate renewal state, `certs/<name>/state.json`. Rewritten only when it changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Our pick in the current ARI window.
    #[serde(default)]
    pub ari: Option<AriChoice>,
    /// Serial (hex) of the installed certificate after `gatecert revoke`: it is due at once,
    /// whatever ARI says (a CA need not move the window of a revoked certificate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// The ARI certID (RFC 9773 §4.1) that `ari` and `ari_poll_at` belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_cert: Option<String>,
    /// renewalInfo is not fetched again before this time (its `Retry-After`, clamped by
    /// [`schedule::ari_poll_delay`]; RFC 9773 §4.3). Written by the cron `renew` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_poll_at: Option<i64>,
    /// With `list issuer`: the issuer in use, why, and the others' failures
    /// ([`crate::failover`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<crate::failover::Record>,
}

impl State {
    fn path(state_dir: &Path, name: &str) -> PathBuf {
        cert_dir(state_dir, name).join("state.json")
    }

    /// The stored state; an unreadable or malformed file counts as empty.
    fn load(state_dir: &Path, name: &str) -> Result<State, Error> {
        Ok(store::read_optional(&State::path(state_dir, name))?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default())
    }

    /// Writes the state if it changed.
    fn save(&self, state_dir: &Path, name: &str) -> Result<(), Error> {
        store::private_dir(&cert_dir(state_dir, name))?;
        let text = serde_json::to_string(self).unwrap_or_default();
        store::write_if_changed(
            &State::path(state_dir, name),
            text.as_bytes(),
            store::PUBLIC,
        )?;
        Ok(())
    }
}

/// The lifetime rule without jitter: less than 1/3 of the lifetime left (1/2 when the lifetime
/// is under 10 days). [`schedule::decide`] adds the per-device jitter on top.
pub fn renewal_due(not_before: i64, not_after: i64, now: i64) -> bool {
    let lifetime = (not_after - not_before).max(0);
    let left = if lifetime < 10 * 86_400 {
        lifetime / 2
    } else {
        lifetime / 3
    };
    now >= not_after - left
}

/// `<state_dir>/certs/<name>`.
pub fn cert_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("certs").join(name)
}

/// `<state_dir>/accounts/<short hex of sha256(directory URL)>`.
pub fn account_dir(state_dir: &Path, directory: &str) -> PathBuf {
    let id = crypto::hex(&crypto::sha256(directory.as_bytes()));
    state_dir.join("accounts").join(&id[..16])
}

#[derive(Serialize, Deserialize)]
struct AccountFile {
    url: String,
    /// The token key the account belongs to (`account_key_uri`, no PIN); absent for key.pem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_uri: Option<String>,
}

/// The stored account for `directory`, else the one the server knows for the stored key
/// (`onlyReturnExisting`), else a new one (RFC 8555 §7.3). The key is written (0600) before
/// newAccount, so a crash cannot orphan an account.
pub fn account(client: &Client, state_dir: &Path, cert: &Certificate) -> Result<Login, Error> {
    let dir = account_dir(state_dir, &client.url);
    store::private_dir(&dir)?;
    finish_rollover(client, &dir)?;
    let json_path = dir.join("account.json");
    let (key, made) = account_key::load(&dir, cert, true)?;
    if let Some(text) = store::read_optional(&json_path)? {
        if let Ok(a) = serde_json::from_str::<AccountFile>(&text) {
            // A key made just now (the old one removed from the token) has no account yet.
            if a.key_uri == account_key::record(cert) && !made {
                return Ok(Login { key, url: a.url });
            }
        }
    }
    let contact: Vec<String> = cert.email.iter().map(|e| format!("mailto:{e}")).collect();
    let eab = cert
        .eab
        .as_ref()
        .map(|e| (e.kid.as_str(), e.hmac_key.as_slice()));
    log::info!(
        "{}: new account at {}",
        cert.name,
        client.directory.new_account
    );
    let login = client.account(key, &contact, eab, false)?;
    let json = serde_json::to_string(&AccountFile {
        url: login.url.clone(),
        key_uri: account_key::record(cert),
    })
    .unwrap_or_default();
    store::write_atomic(&json_path, json.as_bytes(), store::SECRET)?;
    log::info!("{}: account {}", cert.name, login.url);
    Ok(login)
}

/// The stored account, without creating one.
fn existing_account(client: &Client, state_dir: &Path, cert: &Certificate) -> Result<Login, Error> {
    let dir = account_dir(state_dir, &client.url);
    finish_rollover(client, &dir)?;
    let (key, _) = account_key::load(&dir, cert, false)?;
    if let Some(text) = store::read_optional(&dir.join("account.json"))? {
        if let Ok(a) = serde_json::from_str::<AccountFile>(&text) {
            if a.key_uri == account_key::record(cert) {
                return Ok(Login { key, url: a.url });
            }
        }
    }
    Ok(client.account(key, &[], None, true)?)
}

/// Settles a key rollover that a crash interrupted: `key.pem.next` exists, and the server may
/// or may not have done the key change (RFC 8555 §7.3.5). Ask it with the new key
/// (`onlyReturnExisting`): if it knows the account, the change happened and the new key
/// replaces `key.pem`; if it says `accountDoesNotExist`, the change did not happen and the
/// new key is dropped. Any other answer leaves both files for the next run.
fn finish_rollover(client: &Client, dir: &Path) -> Result<(), Error> {
    let next = dir.join("key.pem.next");
    let Some(pem) = store::read_optional(&next)? else {
        return Ok(());
    };
    match client.account(PrivateKey::from_pem(&pem)?, &[], None, true) {
        Ok(_) => {
            store::write_atomic(&dir.join("key.pem"), pem.as_bytes(), store::SECRET)?;
            log::warn!("an interrupted account key rollover had completed; using the new key");
        }
        Err(acme::Error::Problem { problem, .. }) if problem.is("accountDoesNotExist") => {
            log::warn!(
                "an interrupted account key rollover had not completed; keeping the old key"
            );
        }
        Err(e) => return Err(e.into()),
    }
    let _ = std::fs::remove_file(&next);
    store::sync_dir(dir)?;
    Ok(())
}

/// When the installed certificate is due: ARI where the CA offers it (our pick persisted in
/// `state.json`), else the lifetime rule with per-device jitter.
///
/// renewalInfo is fetched again only after its `Retry-After` (clamped to 1 h .. 24 h, 6 h when
/// absent; RFC 9773 §4.3): the returned [`Decision::recheck`] says when, so the service looks
/// again then and notices a window the CA moved. An inverted or empty window, or one with
/// unparseable times, counts as no answer (§4.2 MUST): the lifetime rule applies.
pub fn decide(
    client: &Client,
    env: &Env,
    cert: &Certificate,
    info: &CertInfo,
) -> Result<Decision, Error> {
    let now = env.clock.now();
    let seed = format!("{}/{}/{}", hostname(), cert.name, info.serial_hex());
    let lifetime = || schedule::decide(info.not_before, info.not_after, now, seed.as_bytes());
    let mut state = State::load(env.state_dir, &cert.name)?;
    if let Some(d) = revoked_now(&state, info, now) {
        return Ok(d);
    }
    let Some(id) = cert_id(info).filter(|_| client.directory.renewal_info.is_some()) else {
        return Ok(lifetime());
    };
    let same_cert = state.ari_cert.as_deref() == Some(id.as_str());
    if !same_cert {
        state.ari = None;
        state.ari_poll_at = None;
    }
    // The CA asked us not to ask again before then (a cron run inside the Retry-After).
    if let Some(poll_at) = state.ari_poll_at.filter(|&t| now < t) {
        let d = schedule::decide_any(
            info.not_before,
            info.not_after,
            now,
            seed.as_bytes(),
            state.ari.as_ref(),
        );
        return Ok(Decision {
            recheck: Some(poll_at),
            ..d
        });
    }
    let (ri, retry_after) = match client.renewal_info(&id) {
        Ok(Some(answer)) => answer,
        Ok(None) => return Ok(lifetime()),
        Err(e) => {
            log::warn!(
                "{}: ARI unavailable ({e}); using the lifetime rule",
                cert.name
            );
            return Ok(Decision {
                recheck: Some(now + schedule::ARI_POLL_MIN),
                ..lifetime()
            });
        }
    };
    let poll_at = now + schedule::ari_poll_delay(retry_after);
    let w = &ri.suggested_window;
    let window = match (
        crypto::parse_rfc3339(&w.start),
        crypto::parse_rfc3339(&w.end),
    ) {
        (Some(start), Some(end)) => Some(Window { start, end }),
        _ => {
            log::warn!("{}: ARI window has unparseable times", cert.name);
            None
        }
    };
    let decision = match window {
        Some(w) if w.usable() => {
            if let Some(old) = state.ari.filter(|c| c.window != w) {
                log::info!(
                    "{}: the CA moved the ARI window from {} to {} .. {}",
                    cert.name,
                    crypto::rfc3339(old.window.start),
                    crypto::rfc3339(w.start),
                    crypto::rfc3339(w.end)
                );
            }
            let choice = schedule::ari_choice(state.ari.as_ref(), w)?;
            state.ari = Some(choice);
            if let Some(url) = &ri.explanation_url {
                log::info!("{}: ARI explanation: {url}", cert.name);
            }
            schedule::decide_with_ari(info.not_before, info.not_after, now, &choice)
        }
        Some(w) => {
            log::warn!(
                "{}: ARI window {} .. {} ends before it starts or is empty; treated as no \
                 answer (RFC 9773 §4.2), using the lifetime rule",
                cert.name,
                w.start,
                w.end
            );
            state.ari = None;
            lifetime()
        }
        None => {
            state.ari = None;
            lifetime()
        }
    };
    state.ari_cert = Some(id);
    if env.remember_polls {
        state.ari_poll_at = Some(poll_at);
    }
    state.save(env.state_dir, &cert.name)?;
    Ok(Decision {
        recheck: Some(poll_at),
        ..decision
    })
}

/// Renews `cert` if due (or `force`), installs it and runs the deploy hook; then, for a
/// certificate with `notify` (imported from acme-common), sends acme-common's event.
pub fn renew_one(env: &Env, cert: &Certificate, force: bool) -> Result<Outcome, Error> {
    notified(env.state_dir, cert, || renew_inner(env, cert, force))
}

/// Runs `renew`, then sends acme-common's event for a certificate with `notify`.
pub(crate) fn notified(
    state_dir: &Path,
    cert: &Certificate,
    renew: impl FnOnce() -> Result<Outcome, Error>,
) -> Result<Outcome, Error> {
    let Some(notify) = &cert.notify else {
        return renew();
    };
    let had_live = SetDir::new(cert_dir(state_dir, &cert.name))
        .read_live()
        .ok()
        .flatten()
        .is_some();
    let result = renew();
    // As acme-acmesh's hook.sh: renewed / renew-failed for an existing certificate,
    // issued / issue-failed for a first one; nothing when no renewal was due.
    let event = match (&result, had_live) {
        (Ok(Outcome::NotDue(_)), _) => None,
        (Ok(_), true) => Some("renewed"),
        (Ok(_), false) => Some("issued"),
        (Err(_), true) => Some("renew-failed"),
        (Err(_), false) => Some("issue-failed"),
    };
    if let Some(event) = event {
        send_event(notify, event, cert);
    }
    result
}

/// Runs `notify EVENT` with the variables acme-common's hook runs with (`main_domain`,
/// `domains`, `CERT_DIR`), so `/etc/hotplug.d/acme` scripts see the same. A failure is logged,
/// never fatal: the certificate is installed either way.
fn send_event(notify: &Path, event: &str, cert: &Certificate) {
    let mut names: Vec<String> = cert.domains.clone();
    names.extend(cert.ips.iter().map(|ip| ip.to_string()));
    let mut cmd = Command::new(notify);
    cmd.arg(event)
        .arg(&cert.name)
        .env("GATECERT_CERT_NAME", &cert.name)
        .env("main_domain", names.first().map_or("", String::as_str))
        .env("domains", names.join(" "))
        .stdin(std::process::Stdio::null());
    if let Some(dir) = &cert.install_dir {
        cmd.env("CERT_DIR", dir);
    }
    match crate::hook::run(&mut cmd, crate::hook::TIMEOUT) {
        Ok(s) if s.success() => log::info!("{}: sent acme event '{event}'", cert.name),
        Ok(s) => log::warn!("{}: {} {event} failed ({s})", cert.name, notify.display()),
        Err(e) => log::warn!("{}: cannot run {}: {e}", cert.name, notify.display()),
    }
}

fn renew_inner(env: &Env, cert: &Certificate, force: bool) -> Result<Outcome, Error> {
    let client = client_for(env, cert)?;
    match due_with(
        Some((&client, env)),
        env.clock.now(),
        env.state_dir,
        cert,
        force,
    )? {
        Due::Not(decision) => Ok(Outcome::NotDue(decision)),
        Due::Now { replaces } => order_with(&client, env, cert, replaces),
    }
}

/// Whether a certificate is due, and what a new order `replaces`.
#[derive(Debug)]
pub(crate) enum Due {
    /// Not yet.
    Not(Decision),
    /// Now.
    Now {
        /// The live certificate's ARI certID (RFC 9773 §4.1), when its CA offers ARI.
        replaces: Option<String>,
    },
}

/// The ACME client for `cert`'s `directory`, after its names and the clock gate are checked.
fn client_for<'a>(env: &'a Env, cert: &Certificate) -> Result<Client<'a>, Error> {
    static SYS: SystemClock = SystemClock;
    let directory = cert
        .directory
        .as_deref()
        .ok_or_else(|| Error::Config(format!("certificate '{}' has no directory", cert.name)))?;
    check_names(cert)?;
    // The clock gate, before any network call.
    crate::trust::ClockTrust::load(env.state_dir, None)
        .check(env.clock.now())
        .map_err(Error::Clock)?;
    Ok(Client::new(env.transport, &SYS, env.sleep, directory)?)
}

/// Decides whether `cert` is due, asking ARI of its `directory` (the CA that issued the live
/// certificate) where offered, else by the lifetime rule.
pub(crate) fn due(env: &Env, cert: &Certificate, force: bool) -> Result<Due, Error> {
    let client = client_for(env, cert)?;
    due_with(
        Some((&client, env)),
        env.clock.now(),
        env.state_dir,
        cert,
        force,
    )
}

/// [`due`] without asking the CA (it cannot be reached): the lifetime rule, `days` and
/// `gatecert revoke` decide; no `replaces`.
pub(crate) fn due_offline(
    now: i64,
    state_dir: &Path,
    cert: &Certificate,
    force: bool,
) -> Result<Due, Error> {
    due_with(None, now, state_dir, cert, force)
}

fn due_with(
    client: Option<(&Client, &Env)>,
    now: i64,
    state_dir: &Path,
    cert: &Certificate,
    force: bool,
) -> Result<Due, Error> {
    let set = SetDir::new(cert_dir(state_dir, &cert.name));
    let Some((fullchain, _)) = set.read_live()? else {
        return Ok(Due::Now { replaces: None });
    };
    let info = CertInfo::from_pem(&fullchain)?;
    let same_names = names_match(cert, &info);
    if !force && same_names {
        let decision = match client {
            Some((client, env)) => decide(client, env, cert, &info)?,
            None => offline_decision(state_dir, cert, &info, now)?,
        };
        let decision = by_days(cert, &info, decision);
        if !decision.due(now) {
            // A crash during the last export can leave the install_dir files from two
            // sets; put the live set there again (only files that differ are written).
            export(&set, cert)?;
            log::info!(
                "{}: not due until {} ({})",
                cert.name,
                crypto::rfc3339(decision.at),
                decision.reason.as_str()
            );
            return Ok(Due::Not(decision));
        }
    } else if !same_names {
        log::info!("{}: configured names changed", cert.name);
    }
    let replaces = client
        .filter(|(c, _)| c.directory.renewal_info.is_some())
        .and_then(|_| cert_id(&info));
    Ok(Due::Now { replaces })
}

/// Due now when `gatecert revoke` revoked the installed certificate, whatever ARI says (a CA
/// need not move the window of a revoked certificate).
fn revoked_now(state: &State, info: &CertInfo, now: i64) -> Option<Decision> {
    state
        .revoked
        .as_deref()
        .is_some_and(|r| crypto::same_serial(r, &info.serial_hex()))
        .then_some(Decision {
            at: now,
            reason: schedule::Reason::Revoked,
            recheck: None,
        })
}

/// [`decide`] without the CA: revoked by `gatecert revoke`, else the lifetime rule.
fn offline_decision(
    state_dir: &Path,
    cert: &Certificate,
    info: &CertInfo,
    now: i64,
) -> Result<Decision, Error> {
    if let Some(d) = revoked_now(&State::load(state_dir, &cert.name)?, info, now) {
        return Ok(d);
    }
    let seed = format!("{}/{}/{}", hostname(), cert.name, info.serial_hex());
    Ok(schedule::decide(
        info.not_before,
        info.not_after,
        now,
        seed.as_bytes(),
    ))
}

/// Orders `cert` from its `directory` (`replaces`: the live certificate's ARI certID, only
/// when this CA issued it), installs it and runs the deploy hook.
pub(crate) fn order_and_install(
    env: &Env,
    cert: &Certificate,
    replaces: Option<String>,
) -> Result<Outcome, Error> {
    order_with(&client_for(env, cert)?, env, cert, replaces)
}

fn order_with(
    client: &Client,
    env: &Env,
    cert: &Certificate,
    replaces: Option<String>,
) -> Result<Outcome, Error> {
    // The clock gate again, right before the order: every order takes the proof.
    let trusted = crate::trust::ClockTrust::load(env.state_dir, None)
        .check(env.clock.now())
        .map_err(Error::Clock)?;
    let live = SetDir::new(cert_dir(env.state_dir, &cert.name)).read_live()?;
    let login = account(client, env.state_dir, cert)?;
    if let Some(uri) = &cert.key_uri {
        return token::renew(
            client,
            env,
            &login,
            cert,
            uri,
            replaces,
            live.as_ref(),
            trusted,
        );
    }
    let old_key = match (&live, cert.reuse_key) {
        // A key left in a token by an earlier `key_uri` is not a file key to reuse.
        (Some((_, key_pem)), true) if !store::is_token_key(key_pem) => {
            Some(PrivateKey::from_pem(key_pem)?)
        }
        _ => None,
    };
    let (key, chain) = issue(client, env, &login, cert, replaces, old_key, trusted)?;
    install(env.state_dir, cert, &key, &chain)
}

/// acme-common's `days`: due once the certificate is that many days old, if the usual rule
/// (ARI, lifetime fraction) would wait longer.
fn by_days(cert: &Certificate, info: &CertInfo, decision: Decision) -> Decision {
    match cert.renew_days {
        Some(days) => {
            let at = info.not_before.saturating_add(i64::from(days) * 86_400);
            if at < decision.at {
                Decision {
                    at,
                    reason: schedule::Reason::Lifetime,
                    ..decision
                }
            } else {
                decision
            }
        }
        None => decision,
    }
}

/// Every configured name must be usable with the configured challenge.
fn check_names(cert: &Certificate) -> Result<(), Error> {
    if cert.domains.is_empty() && cert.ips.is_empty() {
        return Err(Error::Config(format!(
            "certificate '{}' has no domain and no ip",
            cert.name
        )));
    }
    if cert.challenge != ChallengeKind::Dns01 {
        if let Some(w) = cert.domains.iter().find(|d| d.starts_with("*.")) {
            return Err(Error::Config(format!(
                "certificate '{}': wildcard {w} needs challenge dns-01",
                cert.name
            )));
        }
    }
    if cert.challenge == ChallengeKind::Dns01 && !cert.ips.is_empty() {
        return Err(Error::Config(format!(
            "certificate '{}': IP identifiers cannot use dns-01 (RFC 8738 §7)",
            cert.name
        )));
    }
    Ok(())
}

fn names_match(cert: &Certificate, info: &CertInfo) -> bool {
    let mut want: Vec<String> = cert
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    let mut have: Vec<String> = info
        .dns_names
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    want.sort();
    have.sort();
    let mut want_ip: Vec<IpAddr> = cert.ips.clone();
    let mut have_ip = info.ips.clone();
    want_ip.sort();
    have_ip.sort();
    want == have && want_ip == have_ip
}

fn identifiers(cert: &Certificate) -> Vec<Identifier> {
    cert.domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .chain(cert.ips.iter().map(|ip| Identifier::Ip(ip.to_string())))
        .collect()
}

/// Order → authorize → finalize → download (RFC 8555 §7.4 – §7.4.2). Returns the new key and
/// the chosen chain (PEM, leaf first).
fn issue(
    client: &Client,
    env: &Env,
    login: &Login,
    cert: &Certificate,
    replaces: Option<String>,
    old_key: Option<PrivateKey>,
    _trusted: crate::trust::TrustedNow,
) -> Result<(PrivateKey, String), Error> {
    let (order_url, order) = authorize(client, env, login, cert, replaces)?;
    let key = match old_key {
        Some(k) if k.kind() == cert.key_type => k,
        _ => PrivateKey::generate(cert.key_type)?,
    };
    let csr = key.csr(&cert.domains, &cert.ips)?;
    let chain = finish(client, login, cert, &order_url, order, &csr)?;
    Ok((key, chain))
}

/// An order for `cert`'s names, finalized with someone else's CSR (DER): the broker's
/// enrollment on a leaf's behalf, so the leaf's key never leaves it. `cert` carries the
/// leaf's names and the broker's challenge settings. Returns the chosen chain (PEM, leaf
/// first). `_trusted` is the clock gate's proof ([`crate::trust`]), as for every order.
pub fn order_with_csr(
    client: &Client,
    env: &Env,
    login: &Login,
    cert: &Certificate,
    csr_der: &[u8],
    _trusted: crate::trust::TrustedNow,
) -> Result<String, Error> {
    check_names(cert)?;
    let (order_url, order) = authorize(client, env, login, cert, None)?;
    finish(client, login, cert, &order_url, order, csr_der)
}

/// Creates the order and gets every authorization valid (RFC 8555 §7.4, §7.5). Returns the
/// order URL and the order, `ready` or `valid`.
fn authorize(
    client: &Client,
    env: &Env,
    login: &Login,
    cert: &Certificate,
    replaces: Option<String>,
) -> Result<(String, Order), Error> {
    let mut new_order = NewOrder {
        identifiers: identifiers(cert),
        profile: cert.profile.clone().filter(|p| !p.is_empty()),
        replaces,
    };
    log::info!(
        "{}: new order {}{}{}",
        cert.name,
        client.directory.new_order,
        new_order
            .profile
            .as_deref()
            .map(|p| format!(" profile {p}"))
            .unwrap_or_default(),
        new_order
            .replaces
            .as_deref()
            .map(|r| format!(" replaces {r}"))
            .unwrap_or_default(),
    );
    let (order_url, order) = match client.new_order(login, &new_order) {
        // A CA may refuse `replaces` (already replaced, or unknown to it); ARI is advisory, so
        // the order goes ahead without it.
        Err(acme::Error::Problem { problem, .. })
            if new_order.replaces.is_some() && !problem.is("rateLimited") =>
        {
            log::warn!(
                "{}: order with replaces refused ({problem}); retrying without",
                cert.name
            );
            new_order.replaces = None;
            client.new_order(login, &new_order)?
        }
        other => other?,
    };
    log::info!("{}: order {order_url}", cert.name);

    let kind = cert.challenge;
    let mut pending = Vec::new();
    let mut to_answer = Vec::new();
    for url in &order.authorizations {
        let authz = client.authorization(login, url)?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(Error::Acme(acme::Error::Failed {
                    what: format!("authorization for {} is {other:?}", authz.ordered()),
                    url: url.clone(),
                    problem: None,
                }))
            }
        }
        let Some(ch) = authz
            .challenges
            .iter()
            .find(|c| c.kind == kind.as_str() && c.token.is_some())
        else {
            return Err(Error::NoChallenge {
                identifier: authz.ordered(),
                wanted: kind.as_str(),
                offered: authz.challenges.iter().map(|c| c.kind.clone()).collect(),
            });
        };
        let token = ch.token.clone().unwrap_or_default();
        pending.push(Pending {
            identifier: authz.identifier.clone(),
            key_authorization: challenge::key_authorization(&token, &login.key),
            token,
        });
        to_answer.push((url.clone(), ch.url.clone()));
    }
    if !pending.is_empty() {
        // Up only while validating; dropped (torn down) on every path out of this block.
        let _active = challenge::start(kind, cert, &pending, env.sleep)?;
        for (_, ch_url) in &to_answer {
            log::info!("{}: {} challenge {ch_url}", cert.name, kind.as_str());
            client.respond(login, ch_url)?;
        }
        for (authz_url, _) in &to_answer {
            let authz = client.poll_authorization(login, authz_url)?;
            log::info!("{}: {} valid", cert.name, authz.ordered());
        }
    }

    let order = client.poll_order(login, &order_url, |s| {
        matches!(s, OrderStatus::Ready | OrderStatus::Valid)
    })?;
    Ok((order_url, order))
}

/// Finalizes a `ready` order with `csr` (DER) and downloads the chain the config prefers.
fn finish(
    client: &Client,
    login: &Login,
    cert: &Certificate,
    order_url: &str,
    order: Order,
    csr: &[u8],
) -> Result<String, Error> {
    let order = if order.status == OrderStatus::Ready {
        client.finalize(login, order_url, &order, csr)?
    } else {
        order
    };
    let cert_url = order.certificate.clone().ok_or_else(|| {
        Error::Acme(acme::Error::Failed {
            what: "valid order has no certificate URL".into(),
            url: order_url.to_owned(),
            problem: None,
        })
    })?;
    let chains = client.download(login, &cert_url)?;
    Ok(select_chain(&chains, cert.preferred_chain.as_deref())
        .cloned()
        .unwrap_or_default())
}

/// Installs key + chain as a new generation, exports to `install_dir`, runs the deploy hook;
/// if the hook fails, puts the previous generation back and runs the hook again.
pub fn install(
    state_dir: &Path,
    cert: &Certificate,
    key: &PrivateKey,
    chain_pem: &str,
) -> Result<Outcome, Error> {
    install_set(
        state_dir,
        cert,
        key.to_pem(),
        &key.spki_der(),
        chain_pem,
        None,
    )
}

/// [`install`] for a key given as its record (PKCS#8 PEM, or a token key's URI without PIN)
/// and its SubjectPublicKeyInfo. `old_token_key`, a token key the new set replaces, is
/// destroyed once the new set is live and the deploy hook succeeded (a crash before that
/// leaves it, and the previous set stays usable).
fn install_set(
    state_dir: &Path,
    cert: &Certificate,
    key_record: String,
    spki_der: &[u8],
    chain_pem: &str,
    old_token_key: Option<&crypto::KeyUri>,
) -> Result<Outcome, Error> {
    let certs = crypto::certs_from_pem(chain_pem)?;
    let leaf = CertInfo::from_der(&certs[0])?;
    if leaf.spki_der != spki_der {
        return Err(Error::KeyMismatch);
    }
    let set = CertSet {
        key_pem: key_record,
        cert_pem: crypto::certs_to_pem([certs[0].as_ref()]),
        chain_pem: crypto::certs_to_pem(certs[1..].iter().map(|c| c.as_ref())),
    };
    let dir = SetDir::new(cert_dir(state_dir, &cert.name));
    let previous = dir.install(&set)?;
    log::info!(
        "{}: installed {} (serial {}, expires {})",
        cert.name,
        dir.live().display(),
        leaf.serial_hex(),
        crypto::rfc3339(leaf.not_after)
    );
    export(&dir, cert)?;
    let retire_old_key = || {
        if let Some(old) = old_token_key {
            match crypto::SigningKey::destroy_in_token(old) {
                Ok(()) => log::info!("{}: removed the replaced key {old}", cert.name),
                Err(e) => log::warn!("{}: could not remove the replaced key: {e}", cert.name),
            }
        }
    };
    deploy(&dir, cert, previous.as_deref())?;
    retire_old_key();
    Ok(Outcome::Renewed {
        not_after: leaf.not_after,
    })
}

/// Runs `cert`'s deploy hook, if any, on the set just made live in `dir`; if it fails, puts
/// `previous` (the generation live before) back, exports it and runs the hook again. Shared by
/// ACME certificates and standalone ones ([`standalone`]).
pub(crate) fn deploy(
    dir: &SetDir,
    cert: &Certificate,
    previous: Option<&str>,
) -> Result<(), Error> {
    let Some(hook) = &cert.deploy_hook else {
        return Ok(());
    };
    match run_deploy_hook(hook, cert, dir) {
        Ok(()) => Ok(()),
        Err(status) => {
            let restored = match previous {
                Some(gen) => {
                    dir.restore(gen)?;
                    export(dir, cert)?;
                    log::warn!("{}: deploy hook failed; restored {gen}", cert.name);
                    if let Err(again) = run_deploy_hook(hook, cert, dir) {
                        log::error!("{}: deploy hook failed again ({again})", cert.name);
                    }
                    true
                }
                None => false,
            };
            Err(Error::DeployHook {
                hook: hook.clone(),
                status,
                restored,
            })
        }
    }
}

/// Writes OpenWrt's `<install_dir>/<name>.{key,crt,chain.crt,fullchain.crt,combined.crt}`
/// from the live set, when `install_dir` is set.
pub(crate) fn export(dir: &SetDir, cert: &Certificate) -> Result<(), Error> {
    let Some(out) = &cert.install_dir else {
        return Ok(());
    };
    // Created if missing, as acme-common does for /etc/ssl/acme: otherwise the new set would
    // be live in state_dir but never exported, and the next run, finding it fresh, would not
    // try again.
    store::public_dir(out)?;
    let live = dir.live();
    // A key in a token has no file to export: only the certificates go out.
    let token = live.join(store::KEY_URI).exists();
    let files = [
        (store::KEY, "key", store::SECRET),
        (store::CERT, "crt", store::PUBLIC),
        (store::CHAIN, "chain.crt", store::PUBLIC),
        (store::FULLCHAIN, "fullchain.crt", store::PUBLIC),
        (store::COMBINED, "combined.crt", store::SECRET),
    ];
    for (src, ext, mode) in files {
        if token && (src == store::KEY || src == store::COMBINED) {
            continue;
        }
        let data = store::read(&live.join(src))?;
        store::write_if_changed(
            &out.join(format!("{}.{ext}", cert.name)),
            data.as_bytes(),
            mode,
        )?;
    }
    Ok(())
}

/// Runs `hook` with `/bin/sh -c`; `Err` carries the exit status.
fn run_deploy_hook(hook: &str, cert: &Certificate, dir: &SetDir) -> Result<(), String> {
    log::info!("{}: deploy hook", cert.name);
    let status = crate::hook::run(
        Command::new("/bin/sh")
            .args(["-c", hook])
            .env("GATECERT_CERT_NAME", &cert.name)
            .env("GATECERT_LIVE_DIR", dir.live())
            .stdin(std::process::Stdio::null()),
        crate::hook::TIMEOUT,
    )
    .map_err(|e| format!("cannot run /bin/sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(status.to_string())
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

mod account_key;
mod cli;
mod error;
pub mod issuers;

pub use error::Error;

pub use cli::{cmd_account, cmd_renew, cmd_revoke};

pub mod standalone;
mod token;

#[cfg(test)]
mod tests;
