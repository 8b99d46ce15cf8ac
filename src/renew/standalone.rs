//! Standalone certificates: `certificate` sections without `directory`, issued by the local
//! CA into `<state_dir>/certs/<name>`. The service's upkeep and `gatecert renew` both keep
//! them here, so both install, export (`install_dir`) and deploy (`deploy_hook`, with the
//! rollback of `super::deploy`) exactly as ACME certificates are.
//!
//! Issuance itself is [`crate::est::ensure_local_set`]: the clock gate (RFC 5280 §4.1.2.5
//! validity, [`crate::trust`]), the CA's policy and the audit line before a set goes live.

use std::path::Path;

use super::{cert_dir, deploy, export, Error};
use crate::ca::LocalCa;
use crate::config::{Certificate, Config};
use crate::errchain;
use crate::est;
use crate::store::SetDir;
use crate::trust::{ClockTrust, Untrusted};

/// What [`keep`] did for one standalone certificate.
pub struct Kept {
    /// notAfter of a certificate issued and deployed just now.
    pub renewed: Option<i64>,
    /// Set when a new certificate was due but the clock is not trusted.
    pub waiting: Option<Untrusted>,
}

/// Issues `cert` from `ca` when due (last third of its life, names changed, none yet), then
/// exports and deploys it; when nothing was due, makes sure `install_dir` holds the live set
/// (only files that differ are written, so a steady state writes nothing).
pub fn keep(
    state_dir: &Path,
    cert: &Certificate,
    ca: &LocalCa,
    max_lifetime: u64,
    now: i64,
    trust: &mut ClockTrust,
) -> Result<Kept, Error> {
    let set = est::LocalSet {
        state_dir,
        name: &cert.name,
        names: (cert.domains.clone(), cert.ips.clone()),
        lifetime: Some(max_lifetime),
        key_uri: cert.key_uri.as_ref(),
    };
    let ensured = est::ensure_local_set(&set, ca, now, trust).map_err(Error::Local)?;
    let dir = SetDir::new(cert_dir(state_dir, &cert.name));
    let renewed = match &ensured.installed {
        Some(previous) => {
            export(&dir, cert)?;
            deploy(&dir, cert, previous.as_deref())?;
            ensured.identity.as_ref().map(|id| id.not_after)
        }
        None => {
            if dir.live().exists() {
                export(&dir, cert)?;
            }
            None
        }
    };
    Ok(Kept {
        renewed,
        waiting: ensured.waiting,
    })
}

/// [`keep`] for `gatecert renew` (the caller holds the state directory's lock): creates the
/// local CA first when there is none ([`crate::daemon::ensure_ca`], clock-gated and audited).
pub fn keep_now(cfg: &Config, cert: &Certificate, now: i64) -> Result<Kept, Error> {
    let state_dir = &cfg.main.state_dir;
    if let Some(why) =
        crate::daemon::ensure_ca(cfg, now).map_err(|e| Error::Config(errchain::one_line(&e)))?
    {
        return Err(Error::Clock(why));
    }
    let ca =
        LocalCa::open(&LocalCa::dir_in(state_dir), &cfg.ca).map_err(|e| Error::Local(e.into()))?;
    let mut trust = ClockTrust::load(state_dir, Some(ca.intermediate().not_before));
    keep(state_dir, cert, &ca, cfg.ca.max_lifetime, now, &mut trust)
}
