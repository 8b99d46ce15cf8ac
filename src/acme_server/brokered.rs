//! Issuing a finalized order: from the local CA, or, with a `broker` section, brokered to the
//! upstream ACME CA with the leaf's CSR (the same [`Broker`] as EST's). While the upstream
//! works the order is `processing` and the client polls it (RFC 8555 §7.4); when the upstream is
//! down, or has not answered within `upstream_wait`, the leaf gets a local interim certificate
//! (`interim_lifetime`, at most the section's `lifetime`) and the order is simply valid.

use std::net::IpAddr;

use serde_json::json;

use super::problem::Problem;
use super::state::{Account, Cert, Status, CERT_TTL};
use super::{AcmeServer, Denied};
use crate::broker::{Broker, Decision, LeafKey, Resolution};
use crate::ca::{Csr, IssueRequest, Issued};
use crate::crypto::{self, CertInfo};
use crate::leaves::{self, Inventory, Leaf, Source};
use crate::trust::ClockTrust;

/// A finalize that passed every gate, to be issued.
pub struct Finalize {
    /// The order id.
    pub order: u64,
    /// Who ordered it.
    pub account: Account,
    /// The order's names.
    pub names: Vec<String>,
    /// The verified CSR.
    pub csr: Csr,
    /// The client's address, for the audit line.
    pub client: IpAddr,
    /// The serial of the certificate this order replaces (RFC 9773 §5), for the audit line.
    pub replaces: Option<String>,
}

impl AcmeServer {
    /// Issues `job` now (true) or parks it on the upstream worker (false).
    pub(super) fn issue(
        &mut self,
        job: Finalize,
        broker: Option<&mut Broker>,
        now: i64,
    ) -> Result<bool, Denied> {
        let Some(b) = broker.filter(|b| b.config().is_some()) else {
            let issued = self.issue_local(&job, self.cfg.lifetime, now)?;
            self.deliver(&job, &issued, Source::Local, now);
            return Ok(true);
        };
        let key = LeafKey::new(&job.account.device, &job.csr.spki_der);
        match b.decide(&key, &job.csr.dns, &job.csr.ips, &job.csr.der) {
            Decision::Cached(chain_pem) => match upstream_chain(&job, &chain_pem) {
                Ok(issued) => {
                    b.remember(&issued.leaf_der, issued.not_after);
                    b.remember_issuers(issued.chain_der.get(1..).unwrap_or_default());
                    self.deliver(&job, &issued, Source::Upstream, now);
                    Ok(true)
                }
                Err(why) => self.interim(job, b, &why, now).map(|()| true),
            },
            Decision::Interim(reason) => self.interim(job, b, reason, now).map(|()| true),
            Decision::Wait(id) => {
                log::info!(
                    "ACME finalize for {}: parked on the upstream CA (request {id})",
                    job.account.device
                );
                if let Some(o) = self.orders.orders.get_mut(&job.order) {
                    o.status = Status::Processing;
                }
                self.parked.insert(id, job);
                Ok(false)
            }
        }
    }

    /// Ends the parked finalizes the broker resolved (`resolutions` are those EST did not
    /// claim): an upstream chain, or an interim certificate.
    pub fn resolve(&mut self, resolutions: Vec<Resolution>, mut broker: Option<&mut Broker>) {
        let now = self.clock.now();
        for r in resolutions {
            let Some(job) = self.parked.remove(&r.id()) else {
                continue;
            };
            let order = job.order;
            // Parked for up to upstream_wait: the account or its token may have been revoked
            // meanwhile. Checked again before anything is signed or handed out.
            if let Err(d) = self.recheck(&job) {
                self.audit_denial("finalize", job.client, &d, now);
                if let Some(o) = self.orders.orders.get_mut(&order) {
                    o.status = Status::Invalid;
                    o.error = Some(d.problem);
                }
                continue;
            }
            let done = match (r, broker.as_deref_mut()) {
                (Resolution::Issued { chain_pem, .. }, Some(b)) => {
                    match upstream_chain(&job, &chain_pem) {
                        Ok(issued) => {
                            b.remember(&issued.leaf_der, issued.not_after);
                            b.remember_issuers(issued.chain_der.get(1..).unwrap_or_default());
                            self.deliver(&job, &issued, Source::Upstream, now);
                            Ok(())
                        }
                        Err(why) => self.interim(job, b, &why, now),
                    }
                }
                (Resolution::Interim { reason, .. }, Some(b)) => self.interim(job, b, &reason, now),
                // ACME clients wait by polling; an upstream slower than upstream_wait means an
                // interim certificate now, as for a down one.
                (Resolution::Retry { .. }, Some(b)) => {
                    self.interim(job, b, "the upstream CA is slow", now)
                }
                (_, None) => Err(Problem::internal("the upstream worker went away").into()),
            };
            if let Err(d) = done {
                if let Some(o) = self.orders.orders.get_mut(&order) {
                    o.status = Status::Invalid;
                    o.error = Some(d.problem);
                }
            }
        }
    }

    /// The account still valid, its token still granting the order's names.
    fn recheck(&self, job: &Finalize) -> Result<(), Denied> {
        let device = &job.account.device;
        match self.accounts.get(job.account.id) {
            Some(a) if a.status == "valid" => {}
            _ => {
                return Err(Denied::audited(Problem::unauthorized(
                    "the account was deactivated while the order was processing",
                ))
                .device(device)
                .names(job.names.clone()))
            }
        }
        let grant = self
            .grant(device, &job.account.eab_kid)
            .map_err(|d| d.names(job.names.clone()))?;
        let names: Vec<(String, bool)> = job
            .names
            .iter()
            .map(|n| (n.clone(), n.parse::<IpAddr>().is_ok()))
            .collect();
        self.check_names(device, &names, &grant)
    }

    /// A local interim certificate for `job`.
    fn interim(
        &mut self,
        job: Finalize,
        broker: &Broker,
        reason: &str,
        now: i64,
    ) -> Result<(), Denied> {
        log::info!("interim certificate for {}: {reason}", job.account.device);
        let lifetime = broker
            .config()
            .map_or(6 * 3600, |b| b.interim_lifetime)
            .min(self.cfg.lifetime);
        let issued = self.issue_local(&job, lifetime, now)?;
        self.deliver(&job, &issued, Source::Interim, now);
        Ok(())
    }

    /// The local CA signs, at a trusted time only (the clock gate).
    fn issue_local(&self, job: &Finalize, lifetime: u64, now: i64) -> Result<Issued, Denied> {
        let device = &job.account.device;
        let mut trust = ClockTrust::load(&self.state_dir, Some(self.ca.intermediate().not_before));
        let trusted = trust.check(now).map_err(|e| {
            Denied::audited(Problem::new(
                "serverInternal",
                503,
                format!("clock untrusted: {e}"),
            ))
            .device(device)
            .names(job.names.clone())
        })?;
        self.ca
            .issue(
                &IssueRequest {
                    csr: job.csr.clone(),
                    lifetime: Some(lifetime),
                    server_auth: self.ca.allows_server_auth(),
                },
                trusted,
            )
            .map_err(|e| {
                let p = if e.http_status() >= 500 {
                    Problem::internal(&e)
                } else {
                    Problem::new("rejectedIdentifier", 400, e.to_string())
                };
                Denied::audited(p).device(device).names(job.names.clone())
            })
    }

    /// Hands `issued` to the order: the certificate resource, the audit line, the counters and
    /// the inventory row.
    fn deliver(&mut self, job: &Finalize, issued: &Issued, source: Source, now: i64) {
        let pem = crypto::certs_to_pem(issued.chain_der.iter().map(Vec::as_slice));
        let cert_id = self.orders.id();
        self.orders.certs.insert(
            cert_id,
            Cert {
                account: job.account.id,
                pem,
                expires: now + CERT_TTL,
            },
        );
        if let Some(o) = self.orders.orders.get_mut(&job.order) {
            o.status = Status::Valid;
            o.cert = Some(cert_id);
            o.expires = o.expires.max(now + CERT_TTL);
        }
        self.audit(
            "acme.issue",
            json!({
                "op": "finalize",
                "device": job.account.device,
                "names": job.names,
                "serial": issued.serial_hex,
                "not_after": issued.not_after,
                "source": source.as_str(),
                "replaces": job.replaces,
                "client": job.client.to_string(),
            }),
        );
        if let Some(c) = &self.counters {
            c.leaf_issued(source);
        }
        // Under the inventory lock, as every writer (`gatecert leaves`, EST) takes it.
        let path = leaves::path_in(&self.state_dir);
        let recorded = Inventory::open_locked(&path, Some(std::time::Duration::from_millis(250)))
            .and_then(|mut i| {
                i.record(Leaf {
                    key: Some(crypto::hex(&crypto::sha256(&job.csr.spki_der))),
                    der: (source == Source::Upstream).then(|| crypto::b64(&issued.leaf_der)),
                    ..Leaf::new(
                        &job.account.device,
                        job.names.clone(),
                        &issued.serial_hex,
                        issued.not_after,
                        source,
                        now,
                    )
                })
            });
        match recorded {
            Err(e) => log::error!("leaf inventory write failed: {e}"),
            Ok(superseded) if !superseded.is_empty() => self.audit(
                // The device's oldest certificates beyond leaves::MAX_EARLIER, revoked by this one.
                "leaves.supersede",
                json!({
                    "device": job.account.device,
                    "by": issued.serial_hex,
                    "serials": superseded.iter().map(|r| r.serial.as_str()).collect::<Vec<_>>(),
                }),
            ),
            Ok(_) => {}
        }
    }
}

/// The upstream's chain, parsed, when its leaf carries the CSR's key.
fn upstream_chain(job: &Finalize, chain_pem: &str) -> Result<Issued, String> {
    let chain_der: Vec<Vec<u8>> = crypto::certs_from_pem(chain_pem)
        .map_err(|e| format!("upstream chain: {e}"))?
        .into_iter()
        .map(|c| c.as_ref().to_vec())
        .collect();
    let leaf_der = chain_der
        .first()
        .cloned()
        .ok_or("upstream chain is empty")?;
    let info = CertInfo::from_der(&leaf_der).map_err(|e| format!("upstream leaf: {e}"))?;
    if info.spki_der != job.csr.spki_der {
        return Err("the upstream leaf's key is not the CSR's".into());
    }
    Ok(Issued {
        leaf_der,
        chain_der,
        serial_hex: info.serial_hex(),
        not_after: info.not_after,
    })
}
