//! Renewing a certificate with `list issuer`: ask the CA that issued the live certificate
//! whether it is due, then order from the most preferred issuer not on hold, moving on to the
//! next one when [`crate::failover`] says a failure will not clear soon. The choice and the
//! reason are persisted in `state.json` (`issuer`), every failover is audited
//! (`issuer.failover`), and `gatecert renew --now --issuer NAME` forces a re-issue from one
//! issuer (`issuer.reissue`).

use std::path::Path;
use std::time::Duration;

use super::{cert_dir, Due, Env, Error, Outcome, State};
use crate::acme::{self, transport};
use crate::clock::Clock;
use crate::config::{Certificate, Issuer};
use crate::crypto::CertInfo;
use crate::failover::{self, Failure, Reason, Record};
use crate::store::SetDir;

/// Makes the transport for one issuer (its `ca_bundle`, the certificate's `timeout`).
pub type MakeTransport<'a> =
    dyn Fn(&Certificate) -> Result<Box<dyn transport::Transport + 'a>, transport::Error> + 'a;

/// What [`renew`] needs besides the certificate: [`Env`] with a transport per issuer.
pub struct Ctx<'a> {
    /// `state_dir`.
    pub state_dir: &'a Path,
    /// The clock for renewal decisions and the failover policy.
    pub clock: &'a dyn Clock,
    /// How to wait.
    pub sleep: &'a dyn Fn(Duration),
    /// As [`Env::remember_polls`].
    pub remember_polls: bool,
    /// The transport for a certificate as ordered from one issuer.
    pub transport: &'a MakeTransport<'a>,
}

impl<'a> Ctx<'a> {
    fn env<'b>(&'b self, transport: &'b dyn transport::Transport) -> Env<'b> {
        Env {
            state_dir: self.state_dir,
            clock: self.clock,
            transport,
            sleep: self.sleep,
            remember_polls: self.remember_polls,
        }
    }
}

/// Renews `cert` if due (or `force`). With `list issuer`, fails over as [`crate::failover`]
/// says; `pin` (`renew --now --issuer NAME`) re-issues from that issuer at once, due or not.
pub fn renew(
    ctx: &Ctx,
    cert: &Certificate,
    force: bool,
    pin: Option<&str>,
) -> Result<Outcome, Error> {
    if cert.issuers.is_empty() {
        if let Some(p) = pin {
            return Err(Error::Config(format!(
                "certificate '{}' has no `list issuer`, so there is no issuer '{p}' to choose",
                cert.name
            )));
        }
        let t = (ctx.transport)(cert)?;
        return super::renew_one(&ctx.env(t.as_ref()), cert, force);
    }
    if let Some(p) = pin {
        let issuer = find(cert, p)?;
        return super::notified(ctx.state_dir, cert, || reissue(ctx, cert, issuer));
    }
    super::notified(ctx.state_dir, cert, || with_failover(ctx, cert, force))
}

/// `cert`'s issuer `name`, or an error naming the ones it has.
pub fn find<'c>(cert: &'c Certificate, name: &str) -> Result<&'c Issuer, Error> {
    cert.issuers.iter().find(|i| i.name == name).ok_or_else(|| {
        let names: Vec<&str> = cert.issuers.iter().map(|i| i.name.as_str()).collect();
        Error::Config(format!(
            "certificate '{}' has no issuer '{name}' (its `list issuer`: {})",
            cert.name,
            names.join(", ")
        ))
    })
}

/// `renew --now --issuer NAME`: audited first, then ordered from that issuer alone.
fn reissue(ctx: &Ctx, cert: &Certificate, issuer: &Issuer) -> Result<Outcome, Error> {
    let mut record = load(ctx.state_dir, &cert.name)?;
    let now = ctx.clock.now();
    audit(
        ctx.state_dir,
        now,
        "issuer.reissue",
        serde_json::json!({"cert": cert.name, "issuer": issuer.name,
            "directory": issuer.directory, "previous": record.active}),
    )?;
    log::warn!(
        "{}: re-issuing from issuer '{}' on request",
        cert.name,
        issuer.name
    );
    let out = attempt(ctx, cert, issuer, None)?;
    failover::healthy(record.streak(&issuer.name));
    record.from = record.active.take().filter(|a| *a != issuer.name);
    record.active = Some(issuer.name.clone());
    record.reason = Some(Reason::Operator);
    record.at = Some(now);
    store(ctx.state_dir, &cert.name, record);
    Ok(out)
}

fn with_failover(ctx: &Ctx, cert: &Certificate, force: bool) -> Result<Outcome, Error> {
    let mut record = load(ctx.state_dir, &cert.name)?;
    let Some(first) = cert.issuers.first() else {
        return Err(Error::Config(format!(
            "certificate '{}' lists no issuer",
            cert.name
        )));
    };
    let live = record
        .active
        .as_deref()
        .and_then(|a| cert.issuers.iter().find(|i| i.name == a))
        .unwrap_or(first);
    // Due? Asked of the CA that issued the live certificate; when it cannot be reached, by
    // the lifetime rule alone, so that its outage never holds up a renewal elsewhere.
    let via = cert.via(live);
    let due = match (ctx.transport)(&via).map_err(Error::from).and_then(|t| {
        let env = ctx.env(t.as_ref());
        super::due(&env, &via, force)
    }) {
        Ok(d) => d,
        Err(e) if failover::classify(&e) != Failure::Stay => {
            log::warn!(
                "{}: issuer '{}' cannot say whether renewal is due ({}); using the lifetime rule",
                cert.name,
                live.name,
                crate::errchain::one_line(&e)
            );
            super::due_offline(ctx.clock.now(), ctx.state_dir, cert, force)?
        }
        Err(e) => return Err(e),
    };
    let replaces = match due {
        Due::Not(d) => return Ok(Outcome::NotDue(d)),
        Due::Now { replaces } => replaces,
    };
    let now = ctx.clock.now();
    let deadline = failover::deadline(validity(ctx.state_dir, &cert.name), now);
    let live_name = live.name.clone();
    let result = try_in_order(
        ctx.state_dir,
        ctx.clock,
        &cert.name,
        &cert.issuers,
        &mut record,
        deadline,
        |issuer| {
            // `replaces` names a certificate of the CA that issued the live one (RFC 9773 §5).
            let replaces = (issuer.name == live_name)
                .then(|| replaces.clone())
                .flatten();
            attempt(ctx, cert, issuer, replaces)
        },
    );
    store(ctx.state_dir, &cert.name, record);
    result
}

/// Orders with `attempt` from the most preferred of `issuers` not on hold, moving on to the
/// next when [`failover::judge`] says the failure will not clear before `deadline`; every move
/// is audited first (`issuer.failover`, `subject` names the certificate or `broker`). Updates
/// `record` (the caller persists it). The last error is returned when no issuer succeeds.
pub fn try_in_order<T>(
    state_dir: &Path,
    clock: &dyn Clock,
    subject: &str,
    issuers: &[Issuer],
    record: &mut Record,
    deadline: i64,
    mut attempt: impl FnMut(&Issuer) -> Result<T, Error>,
) -> Result<T, Error> {
    let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
    let order = failover::order(&names, record, clock.now());
    let mut left: Option<(String, Reason)> = None;
    let mut last = None;
    for (k, name) in order.iter().copied().enumerate() {
        let Some(issuer) = issuers.iter().find(|i| i.name == name) else {
            continue;
        };
        if let Some((from, reason)) = &left {
            // Nothing is ordered from a backup without its audit line.
            let fields = serde_json::json!({"cert": subject, "from": from, "to": name,
                "reason": reason.as_str(), "directory": issuer.directory});
            audit(state_dir, clock.now(), "issuer.failover", fields)?;
        }
        let e = match attempt(issuer) {
            Ok(out) => {
                failover::healthy(record.streak(name));
                if names.first() == Some(&name) {
                    record.reason = None;
                    record.from = None;
                } else if let Some((from, reason)) = left {
                    record.reason = Some(reason);
                    record.from = Some(from);
                }
                if record.active.as_deref() != Some(name) {
                    log::info!("{subject}: issuer '{name}' is in use now");
                    record.at = Some(clock.now());
                }
                record.active = Some(name.to_string());
                return Ok(out);
            }
            Err(e) => e,
        };
        let f = failover::classify(&e);
        let now = clock.now();
        let why = crate::errchain::one_line(&e);
        match failover::judge(&f, record.streak(name), now, deadline) {
            Some(reason) if k + 1 < order.len() => {
                let retry_after = match f {
                    Failure::RateLimited(ra) => ra,
                    _ => None,
                };
                let until = failover::hold_until(record.streak(name), now, retry_after);
                log::warn!(
                    "{subject}: leaving issuer '{name}' ({}: {why}); trying '{}', '{name}' again \
                     after {}",
                    reason.as_str(),
                    order[k + 1],
                    crate::crypto::rfc3339(until)
                );
                left = Some((name.to_string(), reason));
                last = Some(e);
            }
            Some(_) => {
                log::warn!("{subject}: issuer '{name}', the last to try, failed: {why}");
                return Err(e);
            }
            None => {
                let staying = failover::staying(&f, record.streak(name));
                log::warn!("{subject}: issuer '{name}' failed, staying with it ({staying}): {why}");
                return Err(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Config(format!("{subject}: no issuer to order from"))))
}

/// One order from `issuer`; an account the CA no longer knows is looked up again once.
fn attempt(
    ctx: &Ctx,
    cert: &Certificate,
    issuer: &Issuer,
    replaces: Option<String>,
) -> Result<Outcome, Error> {
    let via = cert.via(issuer);
    let t = (ctx.transport)(&via)?;
    let env = ctx.env(t.as_ref());
    match super::order_and_install(&env, &via, replaces.clone()) {
        Err(e) if forget_stale_account(&e, ctx.state_dir, &issuer.directory) => {
            super::order_and_install(&env, &via, replaces)
        }
        other => other,
    }
}

/// After an upstream reset (a test CA restarted, a private CA rebuilt) the stored account URL
/// is unknown to it (RFC 8555 §6.7 `accountDoesNotExist`): forget the URL, keep the key, so the
/// next attempt finds or re-creates the account. True when it did.
pub fn forget_stale_account(e: &Error, state_dir: &Path, directory: &str) -> bool {
    let Error::Acme(acme::Error::Problem { problem, .. }) = e else {
        return false;
    };
    if !problem.is("accountDoesNotExist") {
        return false;
    }
    let path = super::account_dir(state_dir, directory).join("account.json");
    log::warn!("{directory} no longer knows our account; looking it up again");
    std::fs::remove_file(path).is_ok()
}

/// notBefore and notAfter of the live certificate.
fn validity(state_dir: &Path, name: &str) -> Option<(i64, i64)> {
    let (fullchain, _) = SetDir::new(cert_dir(state_dir, name)).read_live().ok()??;
    let info = CertInfo::from_pem(&fullchain).ok()?;
    Some((info.not_before, info.not_after))
}

/// A [`Record`] kept in a file of its own (the broker's); missing or unreadable = empty.
pub fn load_record(path: &Path) -> Record {
    crate::store::read_optional(path)
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Writes `record` to `path` atomically, only when it changed; a failure is logged.
pub fn store_record(path: &Path, record: &Record) {
    let text = serde_json::to_string(record).unwrap_or_default();
    if let Err(e) = crate::store::write_if_changed(path, text.as_bytes(), crate::store::PUBLIC) {
        log::error!("cannot record the issuer in use: {e}");
    }
}

fn load(state_dir: &Path, name: &str) -> Result<Record, Error> {
    Ok(State::load(state_dir, name)?.issuer.unwrap_or_default())
}

/// Writes `record` into `state.json` (re-read first: the due check may have written ARI
/// fields), atomically. A failure is logged: the certificate is installed either way.
fn store(state_dir: &Path, name: &str, record: Record) {
    let saved = State::load(state_dir, name).and_then(|mut s| {
        s.issuer = Some(record);
        s.save(state_dir, name)
    });
    if let Err(e) = saved {
        log::error!("{name}: cannot record the issuer in use: {e}");
    }
}

fn audit(state_dir: &Path, now: i64, event: &str, fields: serde_json::Value) -> Result<(), Error> {
    crate::audit::Audit::open(
        &crate::audit::path_in(state_dir),
        crate::audit::DEFAULT_MAX_BYTES,
    )
    .and_then(|mut a| a.append(now, event, fields))
    .map_err(Error::Audit)
}

#[cfg(test)]
#[path = "issuers_tests.rs"]
mod tests;
