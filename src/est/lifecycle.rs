//! The leaf lifecycle on EST: who may still enroll (a disabled device, a revoked certificate,
//! a public key revoked for keyCompromise may not), the inventory row each issuance updates,
//! the alert on repeated refused re-enrollments, and `GET /crl` (RFC 5280 §5, served as
//! `application/pkix-crl`, RFC 2585 §4.2).
//!
//! The inventory is opened per request: the process keeps its parsed journal between opens and
//! catches up with what other processes appended (one stat(2) when nothing was; see
//! [`crate::journal::Kept`]), so `gatecert leaves revoke` takes effect at the next request and a
//! request's cost does not grow with the number of devices.

use std::time::Duration;

use super::{Denial, Est, Granted};
use crate::crypto;
use crate::http::Response;
use crate::leaves::{self, Inventory, Leaf, Source, Standing};
use crate::revocation;
use crate::store;

/// How long an issuance waits for `leaves.jnl.lock` (held briefly by `gatecert leaves`).
const INVENTORY_LOCK_WAIT: Duration = Duration::from_secs(1);

/// At most this many devices are tracked for refused re-enrollments (memory bound).
const MAX_TRACKED: usize = 10_000;

/// The served CRL and the stamp of the file it was read from.
#[derive(Debug, Default)]
pub(super) struct Cache {
    crl: Option<(store::FileStamp, Vec<u8>)>,
}

impl Est {
    /// The inventory as it is now (caught up with other processes' changes).
    pub(super) fn inventory(&self) -> Result<Inventory, Denial> {
        Inventory::open(&leaves::path_in(&self.state_dir)).map_err(|e| {
            log::error!("{e}");
            Denial::new(500, "leaf inventory unreadable")
        })
    }

    /// The device whose current certificate (or previous one, in its grace window) has
    /// `serial`; 403 with the reason when it is superseded, revoked, of a disabled device, or
    /// no device holds it.
    pub(super) fn current_holder(&mut self, serial: &str, now: i64) -> Result<String, Denial> {
        holder(&self.inventory()?, serial, now)
    }

    /// The inventory, locked for a commit (waiting at most [`INVENTORY_LOCK_WAIT`] for a CLI):
    /// 503 + `Retry-After` when it stays busy.
    pub(super) fn inventory_locked(&self) -> Result<Inventory, Denial> {
        match Inventory::open_locked(&leaves::path_in(&self.state_dir), Some(INVENTORY_LOCK_WAIT)) {
            Ok(inv) => Ok(inv),
            Err(store::Error::Locked(p)) => {
                log::warn!("{} is held by another process; 503", p.display());
                let mut d = Denial::new(503, "leaf inventory busy; retry");
                d.retry_after = Some(2);
                Err(d)
            }
            Err(e) => {
                log::error!("{e}");
                Err(Denial::new(500, "leaf inventory unreadable"))
            }
        }
    }
    /// Counts a refused re-enrollment with a device's certificate; at `reenroll_alert` in a row
    /// it raises the alert (syslog error and `gatecert_leaf_reenroll_alerts_total`). A granted
    /// one resets the count.
    pub(super) fn note_reenroll(&mut self, outcome: &Result<Granted, Denial>) {
        match outcome {
            Ok(g) => {
                self.reenroll_failures.remove(&g.device);
            }
            Err(d) if d.status == 403 => {
                let Some(device) = &d.device else { return };
                if self.reenroll_failures.len() >= MAX_TRACKED
                    && !self.reenroll_failures.contains_key(device)
                {
                    return;
                }
                let n = self.reenroll_failures.entry(device.clone()).or_insert(0);
                *n = n.saturating_add(1);
                if *n == self.reenroll_alert {
                    log::error!(
                        "ALERT: {n} refused re-enrollments in a row with certificates of device \
                         {device} (last: {}); consider `gatecert leaves revoke {device} --reason \
                         keyCompromise`",
                        d.reason
                    );
                    if let Some(c) = &self.counters {
                        c.reenroll_alert();
                    }
                }
            }
            Err(_) => {}
        }
    }

    /// `GET /crl`: the CRL as DER (`application/pkix-crl`), re-read only when the file changed;
    /// 503 while none was signed yet (the clock is untrusted).
    pub(super) fn crl(&mut self) -> Response {
        let path = revocation::crl_path_in(&self.state_dir);
        let Some(stamp) = store::stamp(&path) else {
            return Response::text(503, "no CRL signed yet (the clock is not trusted yet)")
                .header("Retry-After", "60");
        };
        let fresh = matches!(&self.cache.crl, Some((s, _)) if *s == stamp);
        if !fresh {
            match std::fs::read(&path) {
                Ok(der) => self.cache.crl = Some((stamp, der)),
                Err(e) => {
                    log::error!("cannot read {}: {e}", path.display());
                    return Response::text(500, "CRL unreadable; see the gateway's log");
                }
            }
        }
        let der = self
            .cache
            .crl
            .as_ref()
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        Response {
            status: 200,
            headers: vec![("Content-Type".into(), "application/pkix-crl".into())],
            body: der,
        }
    }
}

/// The end of a granted request `g`, on the inventory as it is now (`inv`, locked by the
/// caller until the row is written): every inventory check again (the client certificate still
/// stands, the device is not disabled, the key not compromised, and the device was not revoked
/// after the request was authorized). The device's new row when all pass; a request that fails
/// here gets no certificate.
pub(super) fn leaf_row(inv: &Inventory, g: &Granted, now: i64) -> Result<Leaf, Denial> {
    let deny = |d: Denial| {
        let d = match d.device {
            Some(_) => d,
            None => d.device(&g.device),
        };
        d.names(g.names.clone())
    };
    if let Some(serial) = &g.renews {
        holder(inv, serial, now).map_err(deny)?;
    }
    let spki = crypto::CertInfo::from_der(&g.issued.leaf_der)
        .map(|i| i.spki_der)
        .unwrap_or_default();
    may_hold(inv, &g.device, &spki).map_err(deny)?;
    if let Some(l) = inv.by_device(&g.device) {
        if l.cuts != g.cuts {
            return Err(deny(Denial::new(
                403,
                format!(
                    "device {} was revoked or disabled while this request was in progress; it \
                     needs a new bootstrap token",
                    g.device
                ),
            )));
        }
    }
    let source = g.origin.source();
    let previous = g
        .renews
        .as_ref()
        .and_then(|r| inv.previous_for(&g.device, r, now));
    Ok(Leaf {
        key: Some(crypto::hex(&crypto::sha256(&spki))),
        der: (source == Source::Upstream).then(|| crypto::b64(&g.issued.leaf_der)),
        previous,
        ..Leaf::new(
            &g.device,
            g.names.clone(),
            &g.issued.serial_hex,
            g.issued.not_after,
            source,
            now,
        )
    })
}

/// See [`Est::current_holder`].
fn holder(inv: &Inventory, serial: &str, now: i64) -> Result<String, Denial> {
    match inv.standing(serial, now) {
        Standing::Current(l) | Standing::Grace(l) => Ok(l.device.clone()),
        Standing::Superseded(l) => Err(Denial::new(
            403,
            format!(
                "client certificate {serial} was superseded by a re-enrollment; only the \
                 device's current certificate may re-enroll (grace {}s is over)",
                leaves::GRACE
            ),
        )
        .device(&l.device)),
        Standing::Disabled(l) => Err(disabled(l)),
        Standing::Revoked(r) => Err(Denial::new(
            403,
            format!(
                "client certificate {serial} was revoked ({}) at {}; device {} needs a new \
                 bootstrap token",
                leaves::reason_name(r.reason),
                crypto::rfc3339(r.revoked_at),
                r.device
            ),
        )
        .device(&r.device)),
        Standing::Unknown => Err(Denial::new(
            403,
            format!(
                "client certificate {serial} is not the current certificate of any enrolled \
                 device (superseded)"
            ),
        )),
    }
}

/// The checks every issuance for `device` with the public key `spki_der` passes: the device
/// is not disabled, and the key was not revoked for keyCompromise.
pub(super) fn may_hold(inv: &Inventory, device: &str, spki_der: &[u8]) -> Result<(), Denial> {
    match inv.refuses(device, spki_der) {
        None => Ok(()),
        Some(leaves::Refusal::Disabled(l)) => Err(disabled(*l)),
        Some(r) => Err(Denial::new(403, r.reason()).device(device)),
    }
}

fn disabled(l: Leaf) -> Denial {
    let device = l.device.clone();
    Denial::new(403, leaves::Refusal::Disabled(Box::new(l)).reason()).device(&device)
}
