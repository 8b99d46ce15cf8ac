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
use crate::leaves::{self, Inventory};
use crate::store;
use crate::token::{self, Claims, Tokens};

/// How long the service's loop waits for `tokens.jnl.lock` (as EST does).
const TOKEN_LOCK_WAIT: Duration = Duration::from_millis(50);

fn payload_json(signed: &Signed) -> Result<Value, Problem> {
    if signed.payload.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(&signed.payload)
        .map_err(|e| Problem::malformed(format!("payload is not JSON: {e}")))
}

fn token_problem(d: token::Denial) -> Problem {
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
            .ok_or_else(unknown)?
            .to_owned();
        let secret = eab::read_secret(&self.state_dir)
            .map_err(|e| Denied::from(Problem::internal(e)))?
            .ok_or_else(unknown)?;
        let mac = eab::mac_key(&secret, &kid);
        let key = crypto::b64url_decode(&mac).map_err(Problem::internal)?;
        binding
            .verify_hs256(&key)
            .map_err(|p| Denied::audited(p).device(&device))?;
        if self.accounts.len() >= self.cfg.max_accounts {
            return Err(Denied::audited(Problem::new(
                "rateLimited",
                429,
                format!(
                    "the gateway holds its maximum of {} accounts",
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

    /// revokeCert (RFC 8555 §7.6): by the account that holds the certificate's device, or signed
    /// by the certificate's own key. Recorded in `<state_dir>/acme/revoked.json` and audited.
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
        if !self.ca.issued_by_me(&der) {
            return Err(Problem::unauthorized("this certificate was not issued by this CA").into());
        }
        let serial = cert.serial_hex();
        let names: Vec<String> = cert
            .dns_names
            .iter()
            .cloned()
            .chain(cert.ips.iter().map(IpAddr::to_string))
            .collect();
        let inv = Inventory::open(&leaves::path_in(&self.state_dir))
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        let holder = inv.by_serial(&serial).map(|l| l.device.clone());
        let by = match (&signed.account, &signed.jwk) {
            (Some(a), _) if holder.as_deref() == Some(a.device.as_str()) => "account",
            (_, Some(jwk)) if jws::matches_spki(jwk, &cert.spki_der) => "certificate key",
            (a, _) => {
                let d = Denied::audited(Problem::unauthorized(
                    "neither the certificate's device's account nor its key signed this",
                ))
                .names(names);
                return Err(match a {
                    Some(a) => d.device(&a.device),
                    None => d,
                });
            }
        };
        let path = super::eab::dir_in(&self.state_dir).join("revoked.json");
        let mut revoked: Vec<String> = store::read_optional(&path)
            .map_err(|e| Denied::from(Problem::internal(e)))?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        if revoked.contains(&serial) {
            return Err(Problem::new(
                "alreadyRevoked",
                400,
                format!("{serial} is already revoked"),
            )
            .into());
        }
        revoked.push(serial.clone());
        store::private_dir(&super::eab::dir_in(&self.state_dir))
            .and_then(|()| {
                store::write_atomic(
                    &path,
                    &serde_json::to_vec(&revoked).unwrap_or_default(),
                    store::SECRET,
                )
            })
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        self.audit(
            "acme.revoke",
            json!({"device": holder, "names": names, "serial": serial, "reason": reason,
                   "by": by, "client": client.to_string(), "at": now}),
        );
        Ok(Response::new(200))
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
