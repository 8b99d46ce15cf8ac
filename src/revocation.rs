//! Cutting a sensor off: `gatecert leaves revoke|disable|enable`, ACME revokeCert of one
//! certificate (RFC 8555 §7.6), and the CRL (RFC 5280 §5).
//!
//! One place changes the inventory for revocations ([`cut_off`] for a device, [`revoke_one`]
//! for one certificate; both commit through the same audit, save and CRL step), under
//! `leaves.jnl.lock`
//! ([`Inventory::open_locked`]), so the command line and `gatecert run` never lose each other's
//! changes; the service sees them without a restart (it stats `leaves.jnl` and reads what was appended
//! only when it changed). Every step is audited before it is saved, and the CRL is signed only
//! on a trusted clock ([`crate::trust`]): on an untrusted one the revocation still takes effect
//! on EST at once, and the service signs the CRL once the clock is trusted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::audit::{self, Audit};
use crate::ca::crl::{Crl, Entry};
use crate::ca::{self, LocalCa};
use crate::config;
use crate::leaves::{self, CutOff, DeviceState, Held, Inventory, Revoked};
use crate::store;
use crate::token::{self, Tokens};
use crate::trust::ClockTrust;

mod command;

pub use command::{Busy, Change, Op, Printed};

/// An error revoking or publishing.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The inventory (or a command naming a device it does not hold).
    Inventory(leaves::Error),
    /// The token store.
    Token(token::Error),
    /// The local CA (opening it, or signing the CRL).
    Ca(ca::Error),
    /// The audit line could not be written: nothing was saved.
    Audit(audit::Error),
    /// The clock is not trusted: the CRL was not signed.
    Clock(String),
    /// The certificate with this serial is revoked already: nothing was written.
    AlreadyRevoked(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The inventory's own error says what it is about.
            Error::Inventory(e) => fmt::Display::fmt(e, f),
            Error::Token(_) => f.write_str("token store"),
            Error::Ca(_) => f.write_str("local CA"),
            Error::Audit(_) => f.write_str("audit log (nothing was saved)"),
            Error::Clock(why) => write!(f, "CRL not signed: the clock is untrusted: {why}"),
            Error::AlreadyRevoked(serial) => write!(f, "certificate {serial} is already revoked"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Inventory(e) => e.source(),
            Error::Token(e) => Some(e),
            Error::Ca(e) => Some(e),
            Error::Audit(e) => Some(e),
            Error::Clock(_) | Error::AlreadyRevoked(_) => None,
        }
    }
}

impl Error {
    /// A lock was still held by another process after the wait asked for: nothing was
    /// changed.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Error::Inventory(leaves::Error::Store(store::Error::Locked(_)))
                | Error::Token(token::Error::Busy(_))
        )
    }
}

impl From<leaves::Error> for Error {
    fn from(e: leaves::Error) -> Self {
        Error::Inventory(e)
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Inventory(leaves::Error::Store(e))
    }
}

impl From<token::Error> for Error {
    fn from(e: token::Error) -> Self {
        Error::Token(e)
    }
}

impl From<ca::Error> for Error {
    fn from(e: ca::Error) -> Self {
        Error::Ca(e)
    }
}

impl From<audit::Error> for Error {
    fn from(e: audit::Error) -> Self {
        Error::Audit(e)
    }
}

/// `<state_dir>/crl.der`: the CRL the EST listener serves at `GET /crl`.
pub fn crl_path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("crl.der")
}

/// What [`cut_off`] did.
#[derive(Debug)]
pub struct Outcome {
    /// The device and its newly revoked certificates.
    pub cut: CutOff,
    /// The device's bootstrap token was revoked (an old token cannot bring it back).
    pub token_revoked: bool,
    /// The CRL published, or why not (the revocation stands either way).
    pub crl: Result<Crl, Error>,
}

fn append(state_dir: &Path, now: i64, event: &str, fields: serde_json::Value) -> Result<(), Error> {
    Audit::open(&audit::path_in(state_dir), audit::DEFAULT_MAX_BYTES)?
        .append(now, event, fields)?;
    Ok(())
}

/// Where a revocation is carried out: the state directory, the CA's settings, the CA itself
/// when the caller has it open (the service: its key may be in a token it holds a session
/// with), and how long to wait for the inventory's and the token store's locks (`None`: as
/// long as it takes, as the command line does).
#[derive(Clone, Copy)]
pub struct Site<'a> {
    /// The state directory.
    pub state_dir: &'a Path,
    /// The CA's settings (CRL validity and copy).
    pub cfg: &'a config::Ca,
    /// The CA, when the caller has it open.
    pub ca: Option<&'a LocalCa>,
    /// How long to wait for `leaves.jnl.lock`, then for `tokens.jnl.lock`.
    pub wait: Option<Duration>,
}

impl<'a> Site<'a> {
    /// The command line's: the CA opened when the CRL is signed, the lock waited for.
    pub fn cli(state_dir: &'a Path, cfg: &'a config::Ca) -> Site<'a> {
        Site {
            state_dir,
            cfg,
            ca: None,
            wait: None,
        }
    }

    /// The inventory, locked, or [`leaves::Error::NoSuchDevice`] for `who` when nothing was
    /// ever enrolled here (or the state dir is elsewhere): nothing to lock.
    fn inventory(&self, who: &str) -> Result<Inventory, Error> {
        let path = leaves::path_in(self.state_dir);
        if !leaves::exists(&path) {
            return Err(leaves::Error::NoSuchDevice(who.to_owned()).into());
        }
        Ok(Inventory::open_locked(&path, self.wait)?)
    }
}

/// `leaves revoke` (`state` = Revoked) and `leaves disable` (`Disabled`): `who` is a device or
/// the serial of a certificate it holds. Every unexpired certificate of the device is revoked
/// with `reason` (RFC 5280 §5.3.1), upstream ones are queued for ACME revokeCert, its bootstrap
/// token is revoked, all of it audited (`leaves.revoke` / `leaves.disable`), then the CRL is
/// signed and published.
pub fn cut_off(
    site: &Site<'_>,
    who: &str,
    state: DeviceState,
    reason: u8,
    note: Option<&str>,
    now: i64,
) -> Result<Outcome, Error> {
    let mut inv = site.inventory(who)?;
    let cut = inv.cut_off(who, state, reason, note, now)?;
    let tpath = token::path_in(site.state_dir);
    let tokens = match site.wait {
        Some(wait) => Tokens::open_locked_within(&tpath, wait)?,
        None => Tokens::open_locked(&tpath)?,
    };
    let event = match state {
        DeviceState::Disabled => "leaves.disable",
        _ => "leaves.revoke",
    };
    let fields = json!({
        "device": cut.device,
        "reason": leaves::reason_name(reason),
        "note": note,
        "serials": cut.revoked.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
        "upstream_queued": cut.queued_upstream,
    });
    let mut token_revoked = false;
    let crl = commit(
        site.state_dir,
        site.cfg,
        site.ca,
        &mut inv,
        event,
        fields,
        now,
        || {
            // Taken by value: the token lock is released before the inventory is saved.
            let mut tokens = tokens;
            token_revoked = tokens.revoke(&cut.device)?;
            Ok(())
        },
    )?;
    Ok(Outcome {
        cut,
        token_revoked,
        crl,
    })
}

/// What [`revoke_one`] did.
#[derive(Debug)]
pub struct OneRevoked {
    /// The certificate's entry (its device, or none when no inventory row holds it).
    pub revoked: Revoked,
    /// The CRL published, or why not (the revocation stands either way).
    pub crl: Result<Crl, Error>,
}

/// ACME revokeCert (RFC 8555 §7.6) of one certificate of the local CA, `cert` as presented,
/// in `inv` which the caller holds locked (and has authorized the request under): recorded in
/// the inventory like a `leaves revoke` of that serial, without cutting its device off,
/// audited once as `event` (`fields` plus the serial, device and reason), saved, then the CRL
/// signed and published. [`Error::AlreadyRevoked`] writes nothing.
#[allow(clippy::too_many_arguments)]
pub fn revoke_one(
    state_dir: &Path,
    cfg: &config::Ca,
    ca: Option<&LocalCa>,
    inv: &mut Inventory,
    cert: Held,
    reason: u8,
    event: &str,
    mut fields: serde_json::Value,
    now: i64,
) -> Result<OneRevoked, Error> {
    let serial = cert.serial.clone();
    let revoked = inv
        .revoke_one(cert, reason, now)
        .ok_or(Error::AlreadyRevoked(serial))?;
    fields["serial"] = json!(revoked.serial);
    fields["device"] = json!((!revoked.device.is_empty()).then_some(&revoked.device));
    fields["reason"] = json!(leaves::reason_name(reason));
    let crl = commit(state_dir, cfg, ca, inv, event, fields, now, || Ok(()))?;
    Ok(OneRevoked { revoked, crl })
}

/// The one way a revocation is committed: audited (`event`, `fields`) before anything is
/// saved, then `then` (the token, for a device), the inventory saved, and the CRL published
/// (its own result: the revocation stands when only the CRL failed).
#[allow(clippy::too_many_arguments)]
fn commit(
    state_dir: &Path,
    cfg: &config::Ca,
    ca: Option<&LocalCa>,
    inv: &mut Inventory,
    event: &str,
    fields: serde_json::Value,
    now: i64,
    then: impl FnOnce() -> Result<(), Error>,
) -> Result<Result<Crl, Error>, Error> {
    append(state_dir, now, event, fields)?;
    then()?;
    inv.save()?;
    Ok(publish_crl(state_dir, cfg, ca, inv, now))
}

/// `leaves enable DEVICE`: a disabled device may enroll again, with a new token. Audited.
/// Returns false when it was not disabled.
pub fn enable(site: &Site<'_>, device: &str, now: i64) -> Result<bool, Error> {
    let mut inv = site.inventory(device)?;
    if !inv.enable(device, now)? {
        return Ok(false);
    }
    append(
        site.state_dir,
        now,
        "leaves.enable",
        json!({ "device": device }),
    )?;
    inv.save()?;
    Ok(true)
}

/// Signs the CRL of every unexpired revoked local certificate, with the next CRL number and
/// `crl_validity`, at a trusted `now`; audits it (`crl.issue`), writes it atomically to
/// `<state_dir>/crl.der` and `crl_file`, and records it in `inv` (which the caller holds
/// locked). `ca`: the CA if the caller has it open.
pub fn publish_crl(
    state_dir: &Path,
    cfg: &config::Ca,
    ca: Option<&LocalCa>,
    inv: &mut Inventory,
    now: i64,
) -> Result<Crl, Error> {
    let opened;
    let ca = match ca {
        Some(ca) => ca,
        None => {
            opened = LocalCa::open(&LocalCa::dir_in(state_dir), cfg)?;
            &opened
        }
    };
    let trusted = ClockTrust::load(state_dir, Some(ca.intermediate().not_before))
        .check(now)
        .map_err(|e| Error::Clock(e.to_string()))?;
    // The CRL's number and nextUpdate are saved with it (one small record): a restart then
    // knows the CRL is not due, and the inventory, with nothing left unsaved, is kept between
    // opens (an unsaved change made every later open read the whole journal again).
    inv.prune_revoked(now);
    let entries: Vec<Entry> = inv
        .crl_entries(now)
        .map(|r| Entry {
            serial: r.serial.clone(),
            revoked_at: r.revoked_at,
            reason: r.reason,
        })
        .collect();
    let number = inv.next_crl_number(now);
    let crl = ca.sign_crl(&entries, number, cfg.crl_validity, trusted)?;
    append(
        state_dir,
        now,
        "crl.issue",
        json!({
            "number": number,
            "entries": entries.len(),
            "this_update": crl.this_update,
            "next_update": crl.next_update,
        }),
    )?;
    store::write_atomic(&crl_path_in(state_dir), &crl.der, store::PUBLIC)?;
    if let Some(path) = &cfg.crl_file {
        store::write_atomic(path, &crl.der, store::PUBLIC)?;
    }
    inv.crl_published(number, crl.next_update);
    inv.save()?;
    Ok(crl)
}

/// The service's check: signs a new CRL when one is due ([`Inventory::crl_due`]; `known_next`
/// is the nextUpdate of the last CRL the caller signed). `Ok(None)`: nothing due. The lock is
/// waited for at most `wait`.
pub fn refresh_crl(
    state_dir: &Path,
    cfg: &config::Ca,
    ca: &LocalCa,
    now: i64,
    known_next: i64,
    wait: Duration,
) -> Result<Option<Crl>, Error> {
    let mut inv = Inventory::open_locked(&leaves::path_in(state_dir), Some(wait))?;
    if !inv.crl_due(now, cfg.crl_validity, known_next) && crl_path_in(state_dir).exists() {
        return Ok(None);
    }
    publish_crl(state_dir, cfg, Some(ca), &mut inv, now).map(Some)
}
