//! Orders, authorizations, challenges and finalization (RFC 8555 §7.4, §7.5, §8.3).

use std::net::IpAddr;

use serde_json::{json, Value};

use super::account::own_account;
use super::brokered::Finalize;
use super::problem::Problem;
use super::state::{Authz, Order, Status, MAX_IDENTIFIERS, ORDER_TTL};
use super::validate::Job;
use super::{json_response, AcmeServer, Denied, Signed};
use crate::acme::types::Identifier;
use crate::broker::Broker;
use crate::ca;
use crate::crypto::{self, b64url, rfc3339};
use crate::http::Response;
use crate::token::{self, Tokens};

/// The one profile (draft-ietf-acme-profiles): short-lived leaves of the local CA.
pub const PROFILE: &str = "shortlived";

impl AcmeServer {
    /// The names the account's EAB token grants now (refused once it is revoked or replaced).
    pub(super) fn grant(&self, device: &str, kid: &str) -> Result<Vec<String>, Denied> {
        let tokens = Tokens::open(&token::path_in(&self.state_dir))
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        tokens.eab_grant(device, kid).map(|g| g.names).map_err(|d| {
            let what = format!("the account's EAB token: {d}");
            let p = if d == token::Denial::Unreadable {
                // The gateway's fault, not the client's (logged where it was found).
                Problem::new("serverInternal", 500, what)
            } else {
                Problem::unauthorized(what)
            };
            Denied::audited(p).device(device)
        })
    }

    /// The names outside `grant` or the CA's policy, as a `rejectedIdentifier` denial.
    pub(super) fn check_names(
        &self,
        device: &str,
        names: &[(String, bool)],
        grant: &[String],
    ) -> Result<(), Denied> {
        let listed: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
        let outside: Vec<(String, &'static str, String)> = names
            .iter()
            .filter(|(n, _)| !grant.iter().any(|g| g.eq_ignore_ascii_case(n)))
            .map(|(n, _)| {
                (
                    n.clone(),
                    "rejectedIdentifier",
                    format!("{n} is not granted to this device's token"),
                )
            })
            .collect();
        if !outside.is_empty() {
            let mut p = Problem::new(
                "rejectedIdentifier",
                400,
                format!(
                    "name {} is not granted to this token",
                    outside
                        .iter()
                        .map(|s| s.0.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            p.subproblems = outside;
            return Err(Denied::audited(p).device(device).names(listed));
        }
        let dns: Vec<String> = names.iter().filter(|n| !n.1).map(|n| n.0.clone()).collect();
        let ips: Vec<IpAddr> = names.iter().filter_map(|n| n.0.parse().ok()).collect();
        self.ca.check_names(&dns, &ips).map_err(|e| {
            Denied::audited(Problem::new("rejectedIdentifier", 400, e.to_string()))
                .device(device)
                .names(listed)
        })
    }

    /// newOrder (RFC 8555 §7.4).
    pub(super) fn new_order(
        &mut self,
        signed: &Signed,
        base: &str,
        now: i64,
    ) -> Result<Response, Denied> {
        let me = own_account(signed)?;
        let p: Value = serde_json::from_slice(&signed.payload)
            .map_err(|e| Problem::malformed(format!("payload is not JSON: {e}")))?;
        if p.get("notBefore").is_some() || p.get("notAfter").is_some() {
            return Err(Problem::malformed(
                "notBefore/notAfter are not supported: the profile sets the lifetime",
            )
            .into());
        }
        let profile = p.get("profile").and_then(Value::as_str).map(str::to_owned);
        if profile.as_deref().is_some_and(|pr| pr != PROFILE) {
            return Err(Problem::new(
                "invalidProfile",
                400,
                format!("the only profile is {PROFILE:?}"),
            )
            .into());
        }
        let ids: Vec<Identifier> = serde_json::from_value(p["identifiers"].clone())
            .map_err(|e| Problem::malformed(format!("identifiers: {e}")))?;
        if ids.is_empty() || ids.len() > MAX_IDENTIFIERS {
            return Err(Problem::malformed(format!(
                "an order names 1 to {MAX_IDENTIFIERS} identifiers"
            ))
            .into());
        }
        let mut names: Vec<(String, bool)> = Vec::new();
        for id in &ids {
            let n = match id {
                Identifier::Dns(d) => {
                    let d = d.to_ascii_lowercase();
                    ca::dns_host_name(&d).map_err(|why| {
                        Denied::audited(Problem::new(
                            "rejectedIdentifier",
                            400,
                            format!("{d}: {why}"),
                        ))
                        .device(&me.device)
                    })?;
                    (d, false)
                }
                Identifier::Ip(ip) => {
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| Problem::malformed(format!("{ip:?} is not an IP address")))?;
                    (ip.to_string(), true)
                }
            };
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let grant = self.grant(&me.device, &me.eab_kid)?;
        self.check_names(&me.device, &names, &grant)?;
        let replaces = match p.get("replaces") {
            Some(v) => Some(self.replaced(&me.device, v, &names, now)?),
            None => None,
        };
        self.orders.make_room(now)?;
        let expires = now + ORDER_TTL;
        let mut authz = Vec::new();
        for name in &names {
            let token = b64url(&crypto::random_bytes::<16>().map_err(Problem::internal)?);
            let id = self.orders.id();
            let pre = self.cfg.preauthorized;
            self.orders.authz.insert(
                id,
                Authz {
                    account: me.id,
                    name: name.clone(),
                    status: if pre { Status::Valid } else { Status::Pending },
                    expires,
                    token,
                    tried: None,
                    validated: pre.then_some(now),
                    error: None,
                },
            );
            authz.push(id);
        }
        let id = self.orders.id();
        self.orders.orders.insert(
            id,
            Order {
                account: me.id,
                names,
                status: Status::Pending,
                authz,
                expires,
                cert: None,
                error: None,
                profile,
                replaces,
            },
        );
        self.orders.refresh(id);
        Ok(json_response(201, &self.order_json(id, base))
            .header("Location", &format!("{base}/order/{id}")))
    }

    fn order_json(&self, id: u64, base: &str) -> Value {
        let Some(o) = self.orders.orders.get(&id) else {
            return json!({});
        };
        let mut doc = json!({
            "status": o.status.as_str(),
            "expires": rfc3339(o.expires),
            "identifiers": o.names.iter().map(|(n, ip)| json!({"type": if *ip {"ip"} else {"dns"}, "value": n})).collect::<Vec<_>>(),
            "authorizations": o.authz.iter().map(|a| format!("{base}/authz/{a}")).collect::<Vec<_>>(),
            "finalize": format!("{base}/finalize/{id}"),
            "profile": o.profile.as_deref().unwrap_or(PROFILE),
        });
        if let Some((cert_id, _)) = &o.replaces {
            doc["replaces"] = json!(cert_id);
        }
        if let Some(c) = o.cert {
            doc["certificate"] = json!(format!("{base}/cert/{c}"));
        }
        if let Some(e) = &o.error {
            doc["error"] = e.to_json();
        }
        doc
    }

    fn owned_order(&mut self, signed: &Signed, id: &str) -> Result<u64, Denied> {
        let me = own_account(signed)?;
        let id: u64 = id.parse().map_err(|_| Problem::malformed("bad order id"))?;
        match self.orders.orders.get(&id) {
            Some(o) if o.account == me.id => {
                self.orders.refresh(id);
                Ok(id)
            }
            Some(_) => {
                Err(Denied::audited(Problem::unauthorized("not your order")).device(&me.device))
            }
            None => {
                Err(Problem::new("malformed", 404, "no such order (it may have expired)").into())
            }
        }
    }

    /// The order resource (POST-as-GET).
    pub(super) fn order(
        &mut self,
        signed: &Signed,
        id: &str,
        base: &str,
    ) -> Result<Response, Denied> {
        let id = self.owned_order(signed, id)?;
        Ok(json_response(200, &self.order_json(id, base)))
    }

    fn authz_json(&self, id: u64, base: &str) -> Value {
        let Some(a) = self.orders.authz.get(&id) else {
            return json!({});
        };
        let mut challenges = Vec::new();
        // A pre-authorized name (option preauthorized) was never challenged; tls-alpn-01 is for
        // DNS names only (RFC 8738 §6 would need reverse-DNS SNI for IP addresses).
        let kinds: &[&str] = match (a.validated.is_none() || a.tried.is_some(), a.name.1) {
            (false, _) => &[],
            (true, true) => &["http-01"],
            (true, false) => &["http-01", "tls-alpn-01"],
        };
        for kind in kinds {
            let mine = a.tried.as_deref() == Some(*kind);
            let status = match (a.status, mine) {
                (Status::Pending | Status::Processing, true) => "processing",
                (_, false) => "pending",
                (s, true) => s.as_str(),
            };
            let mut c = json!({
                "type": kind,
                "url": format!("{base}/chall/{id}/{kind}"),
                "token": a.token,
                "status": status,
            });
            if mine {
                if let Some(v) = a.validated {
                    c["validated"] = json!(rfc3339(v));
                }
                if let Some(e) = &a.error {
                    c["error"] = e.to_json();
                }
            }
            challenges.push(c);
        }
        let (name, ip) = &a.name;
        json!({
            "identifier": {"type": if *ip {"ip"} else {"dns"}, "value": name},
            "status": a.status.as_str(),
            "expires": rfc3339(a.expires),
            "challenges": challenges,
        })
    }

    fn owned_authz(&self, signed: &Signed, id: &str) -> Result<u64, Denied> {
        let me = own_account(signed)?;
        let id: u64 = id
            .parse()
            .map_err(|_| Problem::malformed("bad authorization id"))?;
        match self.orders.authz.get(&id) {
            Some(a) if a.account == me.id => Ok(id),
            Some(_) => Err(
                Denied::audited(Problem::unauthorized("not your authorization")).device(&me.device),
            ),
            None => Err(Problem::new(
                "malformed",
                404,
                "no such authorization (it may have expired)",
            )
            .into()),
        }
    }

    /// The authorization resource (RFC 8555 §7.5); `{"status":"deactivated"}` is refused.
    pub(super) fn authorization(
        &mut self,
        signed: &Signed,
        id: &str,
        base: &str,
        _now: i64,
    ) -> Result<Response, Denied> {
        let id = self.owned_authz(signed, id)?;
        Ok(json_response(200, &self.authz_json(id, base)))
    }

    /// A challenge (RFC 8555 §7.5.1): a POST of `{}` asks the gateway to validate.
    pub(super) fn challenge(
        &mut self,
        signed: &Signed,
        path: &str,
        base: &str,
        _now: i64,
    ) -> Result<Response, Denied> {
        let (id, kind) = path.split_once('/').unwrap_or((path, ""));
        let id = self.owned_authz(signed, id)?;
        let is_ip = self.orders.authz.get(&id).is_some_and(|a| a.name.1);
        let tls_alpn = match kind {
            "http-01" => false,
            "tls-alpn-01" if !is_ip => true,
            _ => {
                return Err(Problem::malformed(format!(
                "no challenge {kind:?} here; http-01 and (for DNS names) tls-alpn-01 are offered"
            ))
                .into())
            }
        };
        let me = own_account(signed)?;
        let start = !signed.payload.is_empty();
        let job = match self.orders.authz.get(&id) {
            Some(a) if start && a.status == Status::Pending && a.tried.is_none() => {
                let key_auth = format!("{}.{}", a.token, me.thumbprint);
                let mapped = self
                    .cfg
                    .static_host
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(&a.name.0))
                    .map(|(_, ip)| *ip);
                Some(Job {
                    authz: id,
                    name: a.name.0.clone(),
                    token: a.token.clone(),
                    key_auth,
                    mapped,
                    port: if tls_alpn {
                        self.cfg.tls_port
                    } else {
                        self.cfg.http_port
                    },
                    tls_alpn,
                })
            }
            _ => None,
        };
        if let Some(job) = job {
            if !self.validator.start(job) {
                return Err(Problem::new(
                    "rateLimited",
                    503,
                    "too many validations running; retry",
                )
                .into());
            }
            if let Some(a) = self.orders.authz.get_mut(&id) {
                a.tried = Some(kind.to_owned());
                a.status = Status::Processing;
            }
        }
        let doc = self.authz_json(id, base);
        let chall = doc["challenges"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind))
            .cloned()
            .unwrap_or_else(|| json!({}));
        Ok(json_response(200, &chall).header("Link", &format!("<{base}/authz/{id}>;rel=\"up\"")))
    }

    /// Applies the validations that finished; forgets parked finalizes whose order expired.
    pub(super) fn collect_validations(&mut self, now: i64) {
        let orders = &self.orders.orders;
        self.parked.retain(|_, job| orders.contains_key(&job.order));
        let results = self.validator.results();
        if results.is_empty() {
            return;
        }
        for (id, r) in results {
            let Some(a) = self.orders.authz.get_mut(&id) else {
                continue;
            };
            match r {
                Ok(()) => {
                    a.status = Status::Valid;
                    a.validated = Some(now);
                }
                Err(why) => {
                    log::info!("http-01 for {} failed: {why}", a.name.0);
                    a.status = Status::Invalid;
                    let kind = if why.contains("wrong key") {
                        "incorrectResponse"
                    } else {
                        "connection"
                    };
                    a.error = Some(Problem::new(kind, 400, why));
                }
            }
        }
        // Processing authorizations are pending for the order's sake.
        let ids: Vec<u64> = self.orders.orders.keys().copied().collect();
        for id in ids {
            self.refresh_with_processing(id);
        }
    }

    fn refresh_with_processing(&mut self, id: u64) {
        self.orders.refresh(id);
    }

    /// finalize (RFC 8555 §7.4): the CSR must name exactly the order's identifiers; the grant
    /// and the CA policy are checked again, then the clock gate, then the CA issues.
    pub(super) fn finalize(
        &mut self,
        signed: &Signed,
        id: &str,
        base: &str,
        now: i64,
        client: IpAddr,
        broker: Option<&mut Broker>,
    ) -> Result<Response, Denied> {
        let id = self.owned_order(signed, id)?;
        let me = own_account(signed)?;
        let (status, names, replaces) = match self.orders.orders.get(&id) {
            Some(o) => (o.status, o.names.clone(), o.replaces.clone().map(|r| r.1)),
            None => return Err(Problem::internal("order lost").into()),
        };
        let listed: Vec<String> = names.iter().map(|n| n.0.clone()).collect();
        if status != Status::Ready {
            return Err(Problem::new(
                "orderNotReady",
                403,
                format!("the order is {}", status.as_str()),
            )
            .into());
        }
        let p: Value = serde_json::from_slice(&signed.payload)
            .map_err(|e| Problem::malformed(format!("payload is not JSON: {e}")))?;
        let der = p["csr"]
            .as_str()
            .and_then(|c| crypto::b64url_decode(c).ok())
            .ok_or_else(|| Problem::new("badCSR", 400, "'csr' must be base64url DER"))?;
        let csr = self.ca.verify_csr(&der).map_err(|e| {
            Denied::audited(Problem::new("badCSR", 400, e.to_string()))
                .device(&me.device)
                .names(listed.clone())
        })?;
        let mut want: Vec<String> = listed.clone();
        let mut got: Vec<String> = csr
            .dns
            .iter()
            .map(|d| d.to_ascii_lowercase())
            .chain(csr.ips.iter().map(IpAddr::to_string))
            .collect();
        want.sort();
        got.sort();
        got.dedup();
        if want != got {
            return Err(Denied::audited(Problem::new(
                "badCSR",
                400,
                format!("the CSR names {got:?}, the order {want:?} (RFC 8555 7.4)"),
            ))
            .device(&me.device)
            .names(listed));
        }
        let grant = self
            .grant(&me.device, &me.eab_kid)
            .map_err(|d| d.names(listed.clone()))?;
        self.check_names(&me.device, &names, &grant)?;
        // The leaf inventory's gates, as for EST: a disabled device or a compromised key gets
        // nothing (and an unreadable inventory, nothing either).
        let refused = crate::leaves::Inventory::open(&crate::leaves::path_in(&self.state_dir))
            .map_err(|e| Denied::audited(Problem::internal(&e)).device(&me.device))?
            .refuses(&me.device, &csr.spki_der)
            .map(|r| r.reason());
        if let Some(why) = refused {
            return Err(Denied::audited(Problem::new("unauthorized", 403, why))
                .device(&me.device)
                .names(listed));
        }
        let job = Finalize {
            order: id,
            account: me,
            names: listed,
            csr,
            client,
            replaces,
        };
        let resp = match self.issue(job, broker, now)? {
            true => json_response(200, &self.order_json(id, base)),
            // Parked on the upstream CA: the client polls the order (RFC 8555 7.4).
            false => json_response(200, &self.order_json(id, base)).header("Retry-After", "1"),
        };
        Ok(resp.header("Location", &format!("{base}/order/{id}")))
    }

    /// The certificate (RFC 8555 §7.4.2): the PEM chain, leaf first.
    pub(super) fn certificate(&mut self, signed: &Signed, id: &str) -> Result<Response, Denied> {
        let me = own_account(signed)?;
        let id: u64 = id
            .parse()
            .map_err(|_| Problem::malformed("bad certificate id"))?;
        match self.orders.certs.get(&id) {
            Some(c) if c.account == me.id => Ok(Response::new(200)
                .header("Content-Type", "application/pem-certificate-chain")
                .body(c.pem.clone().into_bytes())),
            Some(_) => Err(
                Denied::audited(Problem::unauthorized("not your certificate")).device(&me.device),
            ),
            None => Err(Problem::new(
                "malformed",
                404,
                "no such certificate (it may have expired)",
            )
            .into()),
        }
    }
}
