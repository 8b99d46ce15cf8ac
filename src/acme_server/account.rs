//! Accounts: newAccount with External Account Binding (RFC 8555 §7.3, §7.3.4), account
//! update and deactivation (§7.3.2, §7.3.6), key rollover (§7.3.5) and revocation (§7.6).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::jws::{self, Jws, KeyRef};
use super::problem::Problem;
use super::state::Account;
use super::{eab, json_response, AcmeServer, Denied, Signed};
use crate::acme::types::RevocationReason;
use crate::crypto::{self, CertInfo};
use crate::http::Response;
use crate::leaves::{self, Held, Inventory, Source};
use crate::revocation;
use crate::store;
use crate::token::{self, Claims, Tokens};

/// How long the service's loop waits for `tokens.jnl.lock` (as EST does).
const TOKEN_LOCK_WAIT: Duration = Duration::from_millis(50);

/// How long a revocation waits for `leaves.jnl.lock` (as a brokered issuance does).
const INVENTORY_LOCK_WAIT: Duration = Duration::from_millis(250);

fn payload_json(signed: &Signed) -> Result<Value, Problem> {
    if signed.payload.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&signed.payload)
        .map_err(|e| Problem::malformed(format!("payload is not JSON: {e}")))
}

fn token_problem(d: token::Denial) -> Problem {
    if d == token::Denial::Unreadable {
        // The gateway's fault, not the client's (logged where it was found).
        return Problem::new("serverInternal", 500, format!("EAB token refused: {d}"));
    }
    Problem::unauthorized(format!("EAB token refused: {d}"))
}

impl AcmeServer {
    fn account_json(&self, a: &Account, base: &str) -> Value {
        json!({
            "status": a.status,
            "contact": a.contact,
            "orders": format!("{base}/acct/{}/orders", a.id),
        })
    }

    fn account_response(&self, status: u16, a: &Account, base: &str) -> Response {
        json_response(status, &self.account_json(a, base))
            .header("Location", &format!("{base}/acct/{}", a.id))
    }

    /// newAccount (RFC 8555 §7.3): an existing key gets its account back; a new one needs a
    /// valid EAB (§7.3.4) with an unspent `--acme` token, one use of which it spends.
    pub(super) fn new_account(
        &mut self,
        signed: &Signed,
        base: &str,
        now: i64,
    ) -> Result<Response, Denied> {
        let Some(jwk) = &signed.jwk else {
            return Err(Problem::malformed("newAccount must carry 'jwk' (RFC 8555 7.3)").into());
        };
        let thumb = jws::thumbprint(jwk)?;
        let p = payload_json(signed)?;
        if let Some(a) = self.accounts.by_thumbprint(&thumb) {
            return Ok(self.account_response(200, &a.clone(), base));
        }
        if p["onlyReturnExisting"] == json!(true) {
            return Err(Problem::new(
                "accountDoesNotExist",
                400,
                "no account has this key (onlyReturnExisting)",
            )
            .into());
        }
        let Some(binding) = p.get("externalAccountBinding") else {
            return Err(Denied::audited(Problem::new(
                "externalAccountRequired",
                403,
                "this server admits accounts only with an External Account Binding: \
                 gatecert token add DEVICE --name ... --acme gives eab_kid and eab_hmac",
            )));
        };
        let binding = Jws::parse(&serde_json::to_vec(binding).unwrap_or_default())?;
        let kid = binding.str("kid").unwrap_or_default().to_owned();
        if binding.str("url") != Some(signed.url.as_str()) || binding.header.get("nonce").is_some()
        {
            return Err(Denied::audited(Problem::unauthorized(
                "externalAccountBinding must name the newAccount URL and carry no nonce \
                 (RFC 8555 7.3.4)",
            )));
        }
        let bound: Option<Value> = serde_json::from_slice(&binding.payload).ok();
        if bound.as_ref() != Some(jwk) {
            return Err(Denied::audited(Problem::unauthorized(
                "externalAccountBinding does not bind this account's key (RFC 8555 7.3.4)",
            )));
        }
        let path = token::path_in(&self.state_dir);
        let tokens = Tokens::open_locked_within(&path, TOKEN_LOCK_WAIT).map_err(|e| match e {
            token::Error::Busy(_) => {
                Problem::new("rateLimited", 503, "token store busy; retry").into()
            }
            e => Denied::from(Problem::internal(e)),
        })?;
        let unknown = || Denied::audited(Problem::unauthorized("unknown EAB key id"));
        let device = tokens
            .device_of_eab_kid(&kid)
            .map_err(|e| Denied::from(Problem::internal(e)))?
            .ok_or_else(unknown)?;
        let secret = eab::read_secret(&self.state_dir)
            .map_err(|e| Denied::from(Problem::internal(e)))?
            .ok_or_else(unknown)?;
        let mac = eab::mac_key(&secret, &kid);
        let key = crypto::b64url_decode(&mac).map_err(Problem::internal)?;
        binding
            .verify_hs256(&key)
            .map_err(|p| Denied::audited(p).device(&device))?;
        if self.accounts.len() >= self.cfg.max_accounts {
            // Full: accounts that can never order again expire now (deactivated, or their
            // binding void: the device's token revoked, replaced or removed). Decided under the
            // token lock held since it was opened.
            let gone = self
                .accounts
                // A token that can't be read back says nothing: its account stays.
                .prune(|a| {
                    a.status != "valid"
                        || matches!(tokens.eab_grant(&a.device, &a.eab_kid),
                            Err(d) if d != token::Denial::Unreadable)
                })
                .map_err(|e| Denied::from(Problem::internal(e)))?;
            if !gone.is_empty() {
                self.audit("acme.accounts-expire", json!({ "accounts": gone }));
            }
        }
        if self.accounts.len() >= self.cfg.max_accounts {
            return Err(Denied::audited(Problem::new(
                "rateLimited",
                429,
                format!(
                    "the gateway holds its maximum of {} accounts, all of them live",
                    self.cfg.max_accounts
                ),
            ))
            .device(&device));
        }
        // Check and claim under the token lock held since it was opened, then commit.
        let mut claims = Claims::new();
        let (claim, grant) = tokens
            .claim(&mut claims, &device, &mac, &thumb, now)
            .map_err(|d| Denied::audited(token_problem(d)).device(&device))?;
        let mut tokens = tokens;
        let account = Account {
            id: 0,
            jwk: jwk.clone(),
            thumbprint: thumb,
            device: device.clone(),
            eab_kid: kid,
            status: "valid".into(),
            contact: contacts(&p)?,
        };
        let id = self
            .accounts
            .add(account)
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        let committed = match claims.take(claim) {
            Some(c) => tokens.commit(&c, now),
            None => Err(token::Error::Denied(token::Denial::InUse)),
        };
        if let Err(e) = committed {
            self.accounts.remove(id);
            return Err(match e {
                token::Error::Denied(d) => Denied::audited(token_problem(d)).device(&device),
                e => Problem::internal(e).into(),
            });
        }
        drop(tokens);
        self.audit(
            "acme.account",
            json!({"device": device, "account": id, "names": grant.names}),
        );
        let a = self
            .accounts
            .get(id)
            .cloned()
            .ok_or_else(|| Problem::internal("account lost"))?;
        Ok(self.account_response(201, &a, base))
    }

    /// The account resource (RFC 8555 §7.3.2): read, update `contact`, or deactivate (§7.3.6).
    pub(super) fn account(
        &mut self,
        signed: &Signed,
        id: &str,
        base: &str,
    ) -> Result<Response, Denied> {
        let me = own_account(signed)?;
        if id.parse::<u64>().ok() != Some(me.id) {
            return Err(
                Denied::audited(Problem::unauthorized("not your account")).device(&me.device)
            );
        }
        let p = payload_json(signed)?;
        let status = match p.get("status").and_then(Value::as_str) {
            None => None,
            Some("deactivated") => Some("deactivated"),
            Some(s) => return Err(Problem::malformed(format!("cannot set status {s:?}")).into()),
        };
        let contact = match p.get("contact") {
            Some(_) => Some(contacts(&p)?),
            None => None,
        };
        if status.is_some() || contact.is_some() {
            self.accounts
                .update(me.id, |a| {
                    if let Some(s) = status {
                        a.status = s.into();
                    }
                    if let Some(c) = contact {
                        a.contact = c;
                    }
                })
                .map_err(|e| Denied::from(Problem::internal(e)))?;
            if status.is_some() {
                self.audit(
                    "acme.deactivate",
                    json!({"device": me.device, "account": me.id}),
                );
            }
        }
        let a = self
            .accounts
            .get(me.id)
            .cloned()
            .ok_or_else(|| Problem::internal("account lost"))?;
        Ok(self.account_response(200, &a, base))
    }

    /// keyChange (RFC 8555 §7.3.5): the inner JWS, signed by the new key, names the account
    /// and its old key.
    pub(super) fn key_change(&mut self, signed: &Signed, base: &str) -> Result<Response, Denied> {
        let me = own_account(signed)?;
        let inner = Jws::parse(&signed.payload)?;
        let KeyRef::Jwk(new_key) = inner.key_ref()? else {
            return Err(
                Problem::malformed("the inner JWS must carry 'jwk' (RFC 8555 7.3.5)").into(),
            );
        };
        if inner.str("url") != Some(signed.url.as_str()) || inner.header.get("nonce").is_some() {
            return Err(Problem::malformed(
                "the inner JWS must name the keyChange URL and carry no nonce",
            )
            .into());
        }
        inner.verify(&new_key).map_err(Denied::audited)?;
        let body: Value = serde_json::from_slice(&inner.payload)
            .map_err(|_| Problem::malformed("inner payload is not JSON"))?;
        let url = format!("{base}/acct/{}", me.id);
        if body["account"] != json!(url) || body["oldKey"] != me.jwk {
            return Err(Denied::audited(Problem::unauthorized(
                "the inner payload must name this account and its current key",
            ))
            .device(&me.device));
        }
        let thumb = jws::thumbprint(&new_key)?;
        if let Some(other) = self.accounts.by_thumbprint(&thumb) {
            let loc = format!("{base}/acct/{}", other.id);
            return Ok(
                Problem::new("conflict", 409, "another account has this key")
                    .response()
                    .header("Location", &loc),
            );
        }
        self.accounts
            .update(me.id, |a| {
                a.jwk = new_key;
                a.thumbprint = thumb;
            })
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        self.audit(
            "acme.key-change",
            json!({"device": me.device, "account": me.id}),
        );
        let a = self
            .accounts
            .get(me.id)
            .cloned()
            .ok_or_else(|| Problem::internal("account lost"))?;
        Ok(self.account_response(200, &a, base))
    }

    /// revokeCert (RFC 8555 §7.6) of a certificate of the local CA or one brokered from the
    /// upstream (queued for its revokeCert): by the account that holds the certificate's device,
    /// or signed by the certificate's own key. One revocation path with `gatecert leaves revoke`
    /// ([`revocation::revoke_one`]): recorded in the leaf inventory, audited once
    /// (`acme.revoke`), and the CRL served at `/crl` signed again at once.
    pub(super) fn revoke(
        &mut self,
        signed: &Signed,
        now: i64,
        client: IpAddr,
    ) -> Result<Response, Denied> {
        let p = payload_json(signed)?;
        let der = p["certificate"]
            .as_str()
            .and_then(|c| crypto::b64url_decode(c).ok())
            .ok_or_else(|| Problem::malformed("'certificate' must be base64url DER"))?;
        let reason = match p.get("reason") {
            None => 0,
            Some(r) => r
                .as_u64()
                .and_then(|n| RevocationReason::parse(&n.to_string()))
                .map(|r| r.0)
                .ok_or_else(|| Problem::new("badRevocationReason", 400, "unknown reason code"))?,
        };
        let cert = CertInfo::from_der(&der)
            .map_err(|e| Problem::malformed(format!("certificate: {e}")))?;
        let serial = cert.serial_hex();
        let inv = Inventory::open(&leaves::path_in(&self.state_dir))
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        // A brokered leaf: the inventory holds this very certificate as an upstream one. Its
        // revocation is queued for the upstream CA (RFC 8555 §7.6), as `leaves revoke` does.
        let b64 = crypto::b64(&der);
        let brokered = inv
            .device_of_serial(&serial)
            .and_then(|d| inv.by_device(&d))
            .is_some_and(|l| {
                l.certs().any(|h| {
                    h.source == Source::Upstream
                        && crypto::same_serial(&h.serial, &serial)
                        && h.der.as_deref() == Some(b64.as_str())
                })
            });
        if !brokered && !self.ca.issued_by_me(&der) {
            return Err(Problem::unauthorized(
                "this certificate was neither issued nor brokered by this gateway",
            )
            .into());
        }
        let names: Vec<String> = cert
            .dns_names
            .iter()
            .cloned()
            .chain(cert.ips.iter().map(IpAddr::to_string))
            .collect();
        let authorize = |holder: Option<&str>| match (&signed.account, &signed.jwk) {
            (Some(a), _) if holder == Some(a.device.as_str()) => Ok("account"),
            (_, Some(jwk)) if jws::matches_spki(jwk, &cert.spki_der) => Ok("certificate key"),
            (a, _) => {
                let d = Denied::audited(Problem::unauthorized(
                    "neither the certificate's device's account nor its key signed this",
                ))
                .names(names.clone());
                Err(match a {
                    Some(a) => d.device(&a.device),
                    None => d,
                })
            }
        };
        // A stranger is refused before anything is locked or written; the check is made again
        // under the inventory lock, where the revocation is recorded, as every revocation is
        // (`gatecert leaves revoke`, EST): two revocations of one serial cannot both pass.
        authorize(inv.device_of_serial(&serial).as_deref())?;
        drop(inv);
        let mut inv =
            Inventory::open_locked(&leaves::path_in(&self.state_dir), Some(INVENTORY_LOCK_WAIT))
                .map_err(|e| Denied::from(Problem::internal(e)))?;
        let by = authorize(inv.device_of_serial(&serial).as_deref())?;
        let presented = Held {
            serial: serial.clone(),
            not_after: cert.not_after,
            source: if brokered {
                Source::Upstream
            } else {
                Source::Local
            },
            key: Some(crypto::hex(&crypto::sha256(&cert.spki_der))),
            der: brokered.then_some(b64),
        };
        let fields = json!({"names": names, "by": by, "client": client.to_string(), "at": now});
        let done = revocation::revoke_one(
            &self.state_dir,
            &self.ca_cfg,
            Some(&self.ca),
            &mut inv,
            presented,
            reason,
            "acme.revoke",
            fields,
            now,
        )
        .map_err(|e| match e {
            revocation::Error::AlreadyRevoked(_) => {
                Denied::from(Problem::new("alreadyRevoked", 400, e.to_string()))
            }
            e => Denied::from(Problem::internal(crate::errchain::one_line(&e))),
        })?;
        drop(inv);
        self.upstream_queued |= done.revoked.source == Source::Upstream;
        if let Err(e) = done.crl {
            // The revocation stands (refused at once on EST and ACME); the service signs the
            // CRL at its next tick once the clock is trusted.
            log::warn!(
                "CRL after revoking {serial}: {}",
                crate::errchain::one_line(&e)
            );
        }
        Ok(Response::new(200))
    }
}

impl AcmeServer {
    /// Folds `<state_dir>/acme/revoked.json`, where an earlier version recorded revokeCert's
    /// serials (and nothing else looked), into the one revocation path: each serial revoked
    /// in the inventory (reason unspecified; a serial no row holds any more is listed until the
    /// CA's `max_lifetime` from now, which bounds its notAfter), audited, the CRL signed; then
    /// the file is removed. On any failure it stays, for the next start.
    pub(super) fn migrate_revoked_json(&mut self) {
        let path = super::eab::dir_in(&self.state_dir).join("revoked.json");
        let serials: Vec<String> = match store::read_optional(&path) {
            Ok(None) => return,
            Ok(Some(text)) => match serde_json::from_str(&text) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("{}: not a list of serials: {e}", path.display());
                    return;
                }
            },
            Err(e) => {
                log::error!("{e}");
                return;
            }
        };
        let now = self.clock.now();
        let migrated = Inventory::open_locked(
            &leaves::path_in(&self.state_dir),
            Some(Duration::from_secs(1)),
        )
        .map_err(|e| e.to_string())
        .and_then(|mut inv| {
            for serial in &serials {
                let held = inv
                    .list()
                    .flat_map(leaves::Leaf::into_certs)
                    .find(|h| crypto::same_serial(&h.serial, serial))
                    .unwrap_or(Held {
                        serial: crypto::serial_display(serial),
                        not_after: now
                            .saturating_add(i64::try_from(self.ca.max_lifetime()).unwrap_or(0)),
                        source: Source::Local,
                        key: None,
                        der: None,
                    });
                let fields = json!({"by": "migrated", "from": "acme/revoked.json", "at": now});
                match revocation::revoke_one(
                    &self.state_dir,
                    &self.ca_cfg,
                    Some(&self.ca),
                    &mut inv,
                    held,
                    0,
                    "acme.revoke",
                    fields,
                    now,
                ) {
                    Ok(_) | Err(revocation::Error::AlreadyRevoked(_)) => {}
                    Err(e) => return Err(crate::errchain::one_line(&e)),
                }
            }
            Ok(())
        });
        match migrated.and_then(|()| std::fs::remove_file(&path).map_err(|e| e.to_string())) {
            Ok(()) => log::info!(
                "{} ACME revocation(s) of acme/revoked.json moved to the leaf inventory and CRL",
                serials.len()
            ),
            Err(e) => log::error!("{}: not migrated: {e}", path.display()),
        }
    }
}

/// The account a `kid` request was signed by.
pub(super) fn own_account(signed: &Signed) -> Result<Account, Denied> {
    signed.account.clone().ok_or_else(|| {
        Problem::malformed("this request must be signed with the account's 'kid'").into()
    })
}

fn contacts(p: &Value) -> Result<Vec<String>, Problem> {
    let Some(list) = p.get("contact") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| Problem::malformed("'contact' must be an array"))?;
    if list.len() > 4 {
        return Err(Problem::malformed("at most 4 contacts"));
    }
    list.iter()
        .map(|c| {
            c.as_str()
                .filter(|c| c.starts_with("mailto:") && c.len() <= 256 && !c.contains(','))
                .map(str::to_owned)
                .ok_or_else(|| {
                    Problem::new(
                        "unsupportedContact",
                        400,
                        "contacts must be single mailto: URLs",
                    )
                })
        })
        .collect()
}
