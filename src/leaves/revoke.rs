//! Revocation in the inventory: cutting a device off (revoke, disable, enable), the CA's
//! revocation list and its bookkeeping, and the upstream revocations still to send.

use super::*;

impl Inventory {
    /// Cuts `who` (a device name, or the serial of any certificate it holds) off at `now`:
    /// every unexpired certificate of the device is revoked with `reason` (listed in the CRL,
    /// or queued for upstream revocation), a keyCompromise reason blocks their public keys for
    /// good, and the device's state becomes `state` (`Revoked` or `Disabled`). Not saved: call
    /// [`Inventory::save`] (after regenerating the CRL, under the same lock).
    pub fn cut_off(
        &mut self,
        who: &str,
        state: DeviceState,
        reason: u8,
        note: Option<&str>,
        now: i64,
    ) -> Result<CutOff, Error> {
        let device = match self.by_device(who) {
            Some(l) => l.device,
            None => self
                .device_of_serial(who)
                .ok_or_else(|| Error::NoSuchDevice(who.to_owned()))?,
        };
        let mut out = CutOff {
            device: device.clone(),
            ..CutOff::default()
        };
        let Some(mut row) = self.by_device(&device) else {
            // Known only from the revocation list: already cut off, nothing held.
            return Ok(out);
        };
        self.discard = true; // until saved
        row.state = state;
        row.state_since = Some(now);
        row.cuts = row.cuts.saturating_add(1);
        row.state_reason = Some(note.map_or_else(|| reason_name(reason).to_owned(), str::to_owned));
        let held: Vec<Held> = row.certs().filter(|h| h.not_after > now).collect();
        row.previous = None;
        self.core.set_row(row)?;
        for h in held {
            let upstream = h.source == Source::Upstream && h.der.is_some();
            if let Some(r) = self.revoke_held(&device, h, reason, now)? {
                out.queued_upstream += usize::from(upstream);
                out.revoked.push(r);
            }
        }
        self.discard = false;
        Ok(out)
    }

    /// Revokes the one certificate `held` of `device` (RFC 5280 §5.3.1 `reason`), unless it
    /// already is: a keyCompromise bans its key, an upstream one (with its DER) is queued for
    /// ACME revokeCert, and the CRL is marked pending. Not saved.
    pub(super) fn revoke_held(
        &mut self,
        device: &str,
        h: Held,
        reason: u8,
        now: i64,
    ) -> Result<Option<Revoked>, store::Error> {
        if self.core.revoked(&h.serial).is_some() {
            return Ok(None);
        }
        let r = Revoked {
            serial: h.serial.clone(),
            device: device.to_owned(),
            not_after: h.not_after,
            revoked_at: now,
            reason,
            source: h.source,
        };
        if reason == KEY_COMPROMISE {
            if let Some(k) = &h.key {
                self.core.stage(&compromised_key(k), Some(Rec::Key))?;
            }
        }
        if h.source == Source::Upstream {
            if let Some(der) = h.der {
                self.core.stage(
                    &upstream_key(&h.serial),
                    Some(Rec::Upstream(UpstreamRevocation {
                        serial: h.serial.clone(),
                        device: device.to_owned(),
                        der,
                        reason,
                        queued_at: now,
                        attempts: 0,
                        last_error: None,
                    })),
                )?;
            }
        }
        self.core
            .stage(&revoked_key(&r.serial), Some(Rec::Revoked(r.clone())))?;
        let mut m = self.core.crl();
        m.pending = true;
        self.core.set_crl(m)?;
        Ok(Some(r))
    }

    /// Revokes one certificate (ACME revokeCert, RFC 8555 §7.6) without cutting its device
    /// off: the device keeps its state and may be issued another. `cert` describes it as
    /// presented (its serial, notAfter and key); the device that holds it in the inventory is
    /// recorded, or none for a certificate no row holds any more. `None`: already revoked (or
    /// the change could not be staged: then nothing is saved). Not saved.
    pub fn revoke_one(&mut self, cert: Held, reason: u8, now: i64) -> Option<Revoked> {
        let held = self.core.holder(&cert.serial).and_then(|l| {
            l.certs()
                .find(|h| crypto::same_serial(&h.serial, &cert.serial))
                .map(|h| (l.device.clone(), h))
        });
        let (device, h) = match held {
            Some((device, h)) => (
                device,
                Held {
                    key: h.key.or(cert.key.clone()),
                    ..h
                },
            ),
            None => (String::new(), cert),
        };
        match self.revoke_held(&device, h, reason, now) {
            Ok(r) => r,
            Err(e) => {
                log::error!("leaf inventory: {e}");
                self.discard = true;
                None
            }
        }
    }

    /// `leaves enable`: a disabled device may enroll again (with a new token). Returns false
    /// when it was not disabled. Not saved.
    pub fn enable(&mut self, device: &str, now: i64) -> Result<bool, Error> {
        let mut row = self
            .by_device(device)
            .ok_or_else(|| Error::NoSuchDevice(device.to_owned()))?;
        if row.state != DeviceState::Disabled {
            return Ok(false);
        }
        row.state = DeviceState::Revoked;
        row.state_since = Some(now);
        row.state_reason = Some("enabled again; needs a new token".into());
        self.core.set_row(row)?;
        Ok(true)
    }

    /// The revoked certificates of the local CA that have not expired at `now`: the CRL's
    /// entries (RFC 5280 §5.1.2.6). Upstream certificates are the upstream CA's to list.
    pub fn crl_entries(&self, now: i64) -> impl Iterator<Item = Revoked> + '_ {
        self.revoked()
            .filter(move |r| r.source != Source::Upstream && r.not_after > now)
    }

    /// Every revoked certificate still recorded.
    pub fn revoked(&self) -> impl Iterator<Item = Revoked> + '_ {
        self.core.read_range("r/").filter_map(|r| match r {
            Rec::Revoked(r) => Some(r),
            _ => None,
        })
    }

    /// The next CRL number (RFC 5280 §5.2.3): above the last one recorded, and at least `now`
    /// (Unix seconds), so that numbers keep increasing even if a publication was never saved
    /// (a crash between signing and saving). Not saved.
    pub fn next_crl_number(&mut self, now: i64) -> u64 {
        let now = u64::try_from(now).unwrap_or(0);
        let mut m = self.core.crl();
        m.number = m.number.saturating_add(1).max(now);
        // Only in memory until a save; a reader (no lock) keeps it there.
        if (self.core.journal.is_locked() || self.core.migrating) && self.core.set_crl(m).is_err() {
            self.discard = true;
        }
        m.number
    }

    /// True when the CRL must be signed again at `now`: a revocation since the last one, none
    /// published yet, or less than a quarter of `validity` left before its nextUpdate (the
    /// later of the recorded one and `known_next`, what the caller published since).
    pub fn crl_due(&self, now: i64, validity: u64, known_next: i64) -> bool {
        let quarter = i64::try_from(validity / 4).unwrap_or(i64::MAX);
        let m = self.core.crl();
        let next = m.next_update.max(known_next);
        m.pending || next == 0 || now >= next.saturating_sub(quarter)
    }

    /// A revocation is waiting for the CRL.
    pub fn crl_pending(&self) -> bool {
        self.core.crl().pending
    }

    /// The CRL numbered `number` with this nextUpdate was published. Not saved.
    pub fn crl_published(&mut self, number: u64, next_update: i64) {
        let mut m = self.core.crl();
        m.number = m.number.max(number);
        m.next_update = next_update;
        m.pending = false;
        if self.core.set_crl(m).is_err() {
            self.discard = true;
        }
    }

    /// nextUpdate of the CRL last published (0: none yet).
    pub fn crl_next_update(&self) -> i64 {
        self.core.crl().next_update
    }

    /// Drops revoked entries that expired more than a day before `now` (RFC 5280 §3.3: an
    /// expired certificate may leave the CRL); true when it dropped any. Not saved.
    pub fn prune_revoked(&mut self, now: i64) -> bool {
        let gone: Vec<String> = self
            .revoked()
            .filter(|r| r.not_after + 86_400 <= now)
            .map(|r| revoked_key(&r.serial))
            .collect();
        for k in &gone {
            if self.core.stage(k, None).is_err() {
                self.discard = true;
            }
        }
        !gone.is_empty()
    }

    /// Upstream certificates still to be revoked.
    pub fn upstream_revocations(&self) -> impl Iterator<Item = UpstreamRevocation> + '_ {
        self.core.read_range("u/").filter_map(|r| match r {
            Rec::Upstream(u) => Some(u),
            _ => None,
        })
    }

    /// Ends the upstream revocation of `serial`: done (`Ok`) removes it from the queue, a
    /// failure counts the attempt and keeps it. Not saved.
    pub fn upstream_revocation_result(&mut self, serial: &str, result: Result<(), String>) {
        let key = upstream_key(serial);
        let staged = match result {
            Ok(()) => self.core.stage(&key, None),
            Err(e) => match self.core.read(&key) {
                Some(Rec::Upstream(mut u)) => {
                    u.attempts = u.attempts.saturating_add(1);
                    u.last_error = Some(e);
                    self.core.stage(&key, Some(Rec::Upstream(u)))
                }
                _ => Ok(()),
            },
        };
        if staged.is_err() {
            self.discard = true;
        }
    }
}
