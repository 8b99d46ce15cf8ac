//! Standalone certificates: `certificate` sections without `directory`, issued by the local
//! CA into `<state_dir>/certs/<name>`. The service's upkeep and `gatecert renew` both keep
//! them here, so both install, export (`install_dir`) and deploy (`deploy_hook`, with the
//! rollback of [`super::deploy`]) exactly as ACME certificates are.
//!
//! Issuance itself is [`crate::est::ensure_local_set`]: the clock gate (RFC 5280 §4.1.2.5
//! validity, [`crate::trust`]), the CA's policy and the audit line before a set goes live.

use std::path::Path;

use super::{cert_dir, deploy, export, Error};
use crate::ca::LocalCa;
use crate::config::Certificate;
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
