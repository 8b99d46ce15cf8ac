//! The service's upkeep of the leaf inventory: the merge of an older inventory, the CRL, and
//! the revocations to send upstream.

use super::*;

impl Service {
    /// The leaf inventory's upkeep, cheap when nothing changed (one stat(2)): on the first
    /// call, merges the split rows of an older inventory (audited, `leaves.merge`); whenever
    /// `leaves.jnl` changed or the CRL is due, signs a new CRL if one is due
    /// ([`revocation::refresh_crl`]: a revocation by `gatecert leaves`, or a quarter of
    /// `crl_validity` left). Errors are logged; EST goes on.
    pub(super) fn leaf_upkeep(&mut self, now: i64) {
        let state_dir = self.cfg.main.state_dir.clone();
        let path = leaves::path_in(&state_dir);
        let stamp = store::stamp(&path);
        let crl_missing = !revocation::crl_path_in(&state_dir).exists();
        if self.leaves_seen == Some(stamp)
            && now < self.crl_due_at
            && !crl_missing
            && !self.upstream_pending
        {
            return;
        }
        if self.leaves_seen.is_none() {
            match leaves::Inventory::open_locked(&path, Some(Duration::from_secs(1))) {
                Ok(mut inv) if inv.merged() > 0 => {
                    let merged = inv.merged();
                    let audited =
                        audit::Audit::open(&audit::path_in(&state_dir), audit::DEFAULT_MAX_BYTES)
                            .and_then(|mut a| {
                                a.append(now, "leaves.merge", serde_json::json!({ "rows": merged }))
                            });
                    match audited
                        .map_err(|e| e.to_string())
                        .and_then(|()| inv.save().map_err(|e| e.to_string()))
                    {
                        Ok(()) => log::info!(
                            "leaf inventory: merged {merged} split row(s) of an older state \
                             directory into their devices"
                        ),
                        Err(e) => log::error!("leaf inventory merge not saved: {e}"),
                    }
                }
                Ok(_) => {}
                Err(e) => log::error!("{e}"),
            }
        }
        let validity = i64::try_from(self.cfg.ca.crl_validity).unwrap_or(i64::MAX / 8);
        match revocation::refresh_crl(
            &state_dir,
            &self.cfg.ca,
            self.est.ca(),
            now,
            self.crl_next,
            Duration::from_secs(1),
        ) {
            Ok(Some(crl)) => {
                log::info!(
                    "CRL #{} signed (next update {})",
                    crl.number,
                    crypto::rfc3339(crl.next_update)
                );
                self.crl_next = crl.next_update;
                self.crl_due_at = crl.next_update - validity / 4;
            }
            Ok(None) => {
                let next = leaves::Inventory::open(&path)
                    .map(|i| i.crl_next_update())
                    .unwrap_or(0)
                    .max(self.crl_next);
                self.crl_due_at = next - validity / 4;
            }
            Err(revocation::Error::Clock(why)) => {
                log::debug!("CRL waits for a trusted clock: {why}");
                self.crl_due_at = now + 60;
            }
            Err(e) => {
                log::error!("CRL: {e}: {}", causes(&e));
                self.crl_due_at = now + 60;
            }
        }
        self.queue_upstream_revocations(&path, now);
        self.leaves_seen = Some(store::stamp(&path));
    }

    /// Hands the queued upstream revocations (`leaves revoke` of a brokered leaf) to the
    /// worker, each at most once at a time, a failed one again after a backoff (5 s doubling,
    /// at most 15 min): so a revocation made while the upstream is down happens when it is back.
    pub(super) fn queue_upstream_revocations(&mut self, path: &Path, now: i64) {
        let inv = match leaves::Inventory::open(path) {
            Ok(inv) => inv,
            Err(e) => {
                log::error!("{e}");
                return;
            }
        };
        self.upstream_pending = inv.upstream_revocations().next().is_some();
        let Some(broker) = self.est.broker_mut() else {
            return;
        };
        for u in inv.upstream_revocations() {
            let due = self
                .revoke_retry
                .get(&u.serial)
                .is_none_or(|(_, at)| now >= *at);
            if !due {
                continue;
            }
            match crypto::b64_decode(u.der.as_bytes()) {
                Ok(der) => {
                    if broker.revoke(&u.serial, der, u.reason) {
                        log::info!("revoking {} of {} at the upstream CA", u.serial, u.device);
                    }
                }
                Err(_) => log::error!("queued upstream revocation {}: not base64", u.serial),
            }
        }
    }

    /// Records finished upstream revocations in the inventory (a revoked one leaves the
    /// queue, a failed one counts an attempt), each audited (`leaves.upstream-revoke`).
    pub(super) fn record_upstream_revocations(&mut self, done: Vec<(String, Result<(), String>)>) {
        let now = self.clock.now();
        let state_dir = self.cfg.main.state_dir.clone();
        let path = leaves::path_in(&state_dir);
        let mut inv = match leaves::Inventory::open_locked(&path, Some(Duration::from_secs(1))) {
            Ok(inv) => inv,
            Err(e) => {
                // Not recorded: the queue keeps them; a repeat gets alreadyRevoked.
                log::error!("{e}");
                return;
            }
        };
        for (serial, result) in done {
            let device = inv
                .upstream_revocations()
                .find(|u| u.serial == serial)
                .map(|u| u.device.clone());
            let fields = match &result {
                Ok(()) => {
                    serde_json::json!({"serial": serial, "device": device, "result": "revoked"})
                }
                Err(e) => {
                    serde_json::json!({"serial": serial, "device": device, "result": "failed", "error": e})
                }
            };
            let audited = audit::Audit::open(&audit::path_in(&state_dir), audit::DEFAULT_MAX_BYTES)
                .and_then(|mut a| a.append(now, "leaves.upstream-revoke", fields));
            if let Err(e) = audited {
                log::error!(
                    "audit log append failed; upstream revocation {serial} stays queued: {e}"
                );
                continue;
            }
            match &result {
                Ok(()) => {
                    log::info!("{serial} revoked at the upstream CA");
                    self.revoke_retry.remove(&serial);
                }
                Err(_) => {
                    let (n, _) = self.revoke_retry.get(&serial).copied().unwrap_or((0, 0));
                    let delay = (5i64 << n.min(8)).min(900);
                    self.revoke_retry
                        .insert(serial.clone(), (n + 1, now + delay));
                }
            }
            inv.upstream_revocation_result(&serial, result);
        }
        if let Err(e) = inv.save() {
            log::error!("{e}");
        }
        self.upstream_pending = inv.upstream_revocations().next().is_some();
    }
}
