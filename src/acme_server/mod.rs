//! A local ACME server ([RFC 8555]) for leaves that ship an ACME client (lego, certbot, ...),
//! served on the EST listener under `/acme/` when `config acme_server` is enabled.
//!
//! | resource | RFC 8555 | here |
//! |---|---|---|
//! | `GET /acme/directory` | §7.1.1 | `externalAccountRequired: true` |
//! | `HEAD/GET /acme/new-nonce` | §7.2 | single-use, `state::MAX_NONCES`, `state::NONCE_TTL` |
//! | `POST /acme/new-acct` | §7.3 | EAB required (§7.3.4), `onlyReturnExisting` |
//! | `POST /acme/acct/<id>` | §7.3.2, §7.3.6 | update contact, deactivate |
//! | `POST /acme/key-change` | §7.3.5 | |
//! | `POST /acme/new-order` | §7.4, RFC 9773 §5 | names within the EAB token's grant and the CA policy; `replaces` |
//! | `POST /acme/authz/<id>`, `/acme/chall/<id>/<type>` | §7.5, §8.3 | http-01 by the gateway |
//! | `POST /acme/finalize/<id>`, `/acme/cert/<id>` | §7.4 | PEM chain, leaf first |
//! | `POST /acme/revoke-cert` | §7.6 | by the account or the certificate's key; into the CRL ([`crate::revocation`]) or queued upstream |
//! | `GET /acme/renewal-info/<certID>` | RFC 9773 | a window spread over the last third |
//!
//! **Admission.** An account needs an External Account Binding whose key is an `--acme`
//! bootstrap token ([`eab`]). Admission claims and commits one use of the token under the
//! token lock ([`crate::token`]), so a used, revoked, replaced or expired token admits nobody.
//! The account is bound to the token's device; its orders may name only the token's names
//! (and only while the token is not revoked or replaced), within the CA's policy.
//!
//! **Same gates as EST.** Issuance goes through [`LocalCa::issue`] at a [`TrustedNow`] (the
//! clock gate), with the CA's name policy checked again at finalize, an audit line for every
//! issuance and denial (`acme.issue`, `acme.deny`: device, names, reason, client; never a key)
//! and a row in the leaf inventory.
//!
//! **Bounded.** Nonces, orders, authorizations and certificates are in memory with caps and
//! expiry; validations run at most `validate::MAX_INFLIGHT` at once. A request that is not
//! signed by a known account or a valid EAB writes nothing but its audit line.
//!
//! [RFC 8555]: https://www.rfc-editor.org/rfc/rfc8555
//! [`TrustedNow`]: crate::trust::TrustedNow

// A refusal (`Denied`) is built once per refused request and carries what its audit line needs;
// boxing it would only move the allocation.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::audit::{self, Audit, DEFAULT_MAX_BYTES};
use crate::ca::LocalCa;
use crate::clock::Clock;
use crate::config;
use crate::http::{Handler, PeerInfo, Request, Response};
use crate::report::Counters;

mod account;
mod ari;
mod brokered;
pub mod eab;
mod jws;
mod orders;
mod problem;
mod state;
mod tlsalpn;
mod validate;

use jws::{Jws, KeyRef};
pub use problem::Problem;
use state::{Account, Accounts, Nonces, Orders};

/// The path prefix.
pub const PREFIX: &str = "/acme/";

/// Audit lines a minute for refusals of requests nobody authenticated.
pub const ANON_AUDIT_PER_MINUTE: u32 = 30;

/// An error setting the ACME server up.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `<state_dir>/acme/accounts.json` could not be read.
    Store(crate::store::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Store(_) => f.write_str("ACME server accounts"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Store(e) => Some(e),
        }
    }
}

/// The ACME request handler.
pub struct AcmeServer {
    cfg: config::AcmeServer,
    ca: LocalCa,
    /// The local CA's settings: the CRL a revocation signs ([`crate::revocation`]).
    ca_cfg: config::Ca,
    state_dir: PathBuf,
    clock: Arc<dyn Clock>,
    nonces: Nonces,
    accounts: Accounts,
    orders: Orders,
    validator: validate::Validator,
    counters: Option<Arc<Counters>>,
    /// (minute, audited) for refusals that name no device.
    anon_audit: (i64, u32),
    /// Such refusals left out of the audit log since the last line.
    anon_suppressed: u64,
    /// Finalizes parked on the upstream CA, by the broker's id.
    parked: HashMap<u64, brokered::Finalize>,
    /// A revokeCert queued a brokered certificate for the upstream's revokeCert since the
    /// service last looked ([`AcmeServer::take_upstream_queued`]).
    upstream_queued: bool,
}

/// A verified request: who signed it and what it says.
struct Signed {
    /// The account, for `kid` requests.
    account: Option<Account>,
    /// The key, for `jwk` requests.
    jwk: Option<Value>,
    /// The payload; empty for POST-as-GET.
    payload: Vec<u8>,
    /// The request URL, as signed.
    url: String,
}

/// A refusal to audit: the problem and who/what it was about.
pub(crate) struct Denied {
    problem: Problem,
    device: Option<String>,
    names: Vec<String>,
    /// Audit it (policy and authentication refusals); plain malformed requests are not.
    audit: bool,
}

impl From<Problem> for Denied {
    fn from(problem: Problem) -> Self {
        Denied {
            problem,
            device: None,
            names: Vec::new(),
            audit: false,
        }
    }
}

impl Denied {
    fn audited(problem: Problem) -> Denied {
        Denied {
            audit: true,
            ..Denied::from(problem)
        }
    }

    fn device(mut self, device: &str) -> Denied {
        self.device = Some(device.to_owned());
        self
    }

    fn names(mut self, names: Vec<String>) -> Denied {
        self.names = names;
        self
    }
}

impl AcmeServer {
    /// The handler for `ca` (configured by `ca_cfg`) with the settings `cfg`, keeping accounts
    /// in `<state_dir>/acme/`.
    pub fn new(
        cfg: config::AcmeServer,
        state_dir: &Path,
        ca: LocalCa,
        ca_cfg: config::Ca,
        clock: Arc<dyn Clock>,
    ) -> Result<AcmeServer, Error> {
        let accounts = Accounts::open(&eab::dir_in(state_dir)).map_err(Error::Store)?;
        let mut server = AcmeServer {
            orders: Orders::new(cfg.max_orders),
            cfg,
            ca,
            ca_cfg,
            state_dir: state_dir.to_path_buf(),
            clock,
            nonces: Nonces::default(),
            accounts,
            validator: validate::Validator::default(),
            counters: None,
            anon_audit: (0, 0),
            anon_suppressed: 0,
            parked: HashMap::new(),
            upstream_queued: false,
        };
        server.migrate_revoked_json();
        Ok(server)
    }

    /// Counts issuances in `counters`.
    pub fn set_counters(&mut self, counters: Arc<Counters>) {
        self.counters = Some(counters);
    }

    /// True once after a revokeCert queued a brokered certificate's revocation for the
    /// upstream CA: the service hands the queue to its upstream worker now, not at its next tick.
    pub fn take_upstream_queued(&mut self) -> bool {
        std::mem::take(&mut self.upstream_queued)
    }

    /// Keeps the in-memory state (nonces, orders, validations) of `old` across a reload.
    pub fn adopt(&mut self, old: AcmeServer) {
        self.nonces = old.nonces;
        self.orders = old.orders;
        self.validator = old.validator;
        self.counters = old.counters;
        self.parked = old.parked;
        self.upstream_queued |= old.upstream_queued;
    }

    fn base(req: &Request) -> Result<String, Problem> {
        let host = req
            .header("host")
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| Problem::malformed("the request has no Host header"))?;
        Ok(format!("https://{host}/acme"))
    }

    fn directory(&self, base: &str) -> Response {
        let doc = json!({
            "newNonce": format!("{base}/new-nonce"),
            "newAccount": format!("{base}/new-acct"),
            "newOrder": format!("{base}/new-order"),
            "revokeCert": format!("{base}/revoke-cert"),
            "keyChange": format!("{base}/key-change"),
            "renewalInfo": format!("{base}/renewal-info"),
            "meta": {
                "externalAccountRequired": true,
                "profiles": {
                    orders::PROFILE: format!(
                        "short-lived leaves from the gateway's local CA ({}s)",
                        self.cfg.lifetime
                    ),
                },
            },
        });
        json_response(200, &doc)
    }

    /// Parses and checks a POST's JWS (RFC 8555 §6.2-§6.5): nonce, URL, key and signature.
    fn verify(&mut self, req: &Request, base: &str, now: i64) -> Result<Signed, Denied> {
        let ct = req.header("content-type").unwrap_or_default();
        if !ct.trim().eq_ignore_ascii_case("application/jose+json") {
            return Err(Problem::new(
                "malformed",
                415,
                "Content-Type must be application/jose+json (RFC 8555 6.2)",
            )
            .into());
        }
        let jws = Jws::parse(&req.body)?;
        let url = format!("{base}{}", &req.path[PREFIX.len() - 1..]);
        let nonce = jws.str("nonce").unwrap_or_default().to_owned();
        if !self.nonces.spend(&nonce, now) {
            return Err(Denied::audited(Problem::new(
                "badNonce",
                400,
                "the nonce is unknown, used or expired (RFC 8555 6.5)",
            )));
        }
        if jws.str("url") != Some(url.as_str()) {
            return Err(Problem::unauthorized(format!(
                "the JWS 'url' is not the request URL {url} (RFC 8555 6.4)"
            ))
            .into());
        }
        let key_ref = jws.key_ref()?;
        let payload = jws.payload.clone();
        match key_ref {
            KeyRef::Jwk(jwk) => {
                if !url.ends_with("/new-acct") && !url.ends_with("/revoke-cert") {
                    return Err(Problem::malformed(
                        "this request must name its account with 'kid' (RFC 8555 6.2)",
                    )
                    .into());
                }
                jws::thumbprint(&jwk)?;
                jws.verify(&jwk).map_err(Denied::audited)?;
                Ok(Signed {
                    account: None,
                    jwk: Some(jwk),
                    payload,
                    url,
                })
            }
            KeyRef::Kid(kid) => {
                let account = kid
                    .strip_prefix(&format!("{base}/acct/"))
                    .and_then(|id| id.parse().ok())
                    .and_then(|id| self.accounts.get(id))
                    .cloned()
                    .ok_or_else(|| {
                        Denied::audited(Problem::new(
                            "accountDoesNotExist",
                            400,
                            "the 'kid' is not an account URL of this server",
                        ))
                    })?;
                jws.verify(&account.jwk).map_err(|p| {
                    Denied::audited(Problem::unauthorized(format!(
                        "the JWS is not signed by the account's key: {}",
                        p.detail
                    )))
                    .device(&account.device)
                })?;
                if account.status != "valid" {
                    return Err(Denied::audited(Problem::unauthorized(format!(
                        "account is {}",
                        account.status
                    )))
                    .device(&account.device));
                }
                Ok(Signed {
                    account: Some(account),
                    jwk: None,
                    payload,
                    url,
                })
            }
        }
    }

    fn dispatch(
        &mut self,
        req: &Request,
        peer: &PeerInfo,
        base: &str,
        now: i64,
        broker: Option<&mut crate::broker::Broker>,
    ) -> Result<Response, Denied> {
        let rest = &req.path[PREFIX.len()..];
        match (req.method.as_str(), rest) {
            ("GET", "directory") => return Ok(self.directory(base)),
            ("HEAD" | "GET", "new-nonce") => {
                let status = if req.method == "HEAD" { 200 } else { 204 };
                return Ok(Response::new(status).header("Cache-Control", "no-store"));
            }
            ("GET", r) if r.starts_with("renewal-info/") => {
                let brokered = broker.is_some_and(|b| b.config().is_some());
                return self
                    .renewal_info(&r["renewal-info/".len()..], brokered)
                    .map_err(Denied::from);
            }
            ("POST", _) => {}
            (_, "directory") => return Err(method_not_allowed("GET")),
            (_, "new-nonce") => return Err(method_not_allowed("GET, HEAD")),
            _ if is_known(rest) => return Err(method_not_allowed("POST")),
            _ => return Err(Problem::malformed(format!("no ACME resource {}", req.path)).into()),
        }
        if !is_known(rest) {
            return Err(Problem::malformed(format!("no ACME resource {}", req.path)).into());
        }
        let signed = self.verify(req, base, now)?;
        let client = peer.addr.ip();
        let (head, id) = rest.split_once('/').unwrap_or((rest, ""));
        match head {
            "new-acct" => self.new_account(&signed, base, now),
            "acct" => self.account(&signed, id, base),
            "key-change" => self.key_change(&signed, base),
            "new-order" => self.new_order(&signed, base, now),
            "order" => self.order(&signed, id, base),
            "authz" => self.authorization(&signed, id, base, now),
            "chall" => self.challenge(&signed, id, base, now),
            "finalize" => self.finalize(&signed, id, base, now, client, broker),
            "cert" => self.certificate(&signed, id),
            "revoke-cert" => self.revoke(&signed, now, client),
            _ => Err(Problem::malformed("no such ACME resource").into()),
        }
    }

    /// Appends `acme.<what>` to the audit log.
    fn audit(&self, event: &str, fields: Value) {
        let now = self.clock.now();
        let appended = Audit::open(&audit::path_in(&self.state_dir), DEFAULT_MAX_BYTES)
            .and_then(|mut a| a.append(now, event, fields));
        if let Err(e) = appended {
            log::error!("audit log append failed: {e}");
        }
    }

    /// Audits a refusal. Refusals that name no device (nobody authenticated) are audited at
    /// most [`ANON_AUDIT_PER_MINUTE`] a minute: a flood of forged requests must not rotate the
    /// audit log's history away or wear the flash. The next line written says how many were
    /// left out.
    pub(super) fn audit_denial(&mut self, op: &str, client: IpAddr, d: &Denied, now: i64) {
        if d.device.is_none() {
            let minute = now.div_euclid(60);
            if self.anon_audit.0 != minute {
                self.anon_audit = (minute, 0);
            }
            if self.anon_audit.1 >= ANON_AUDIT_PER_MINUTE {
                self.anon_suppressed += 1;
                return;
            }
            self.anon_audit.1 += 1;
        }
        let mut fields = json!({
            "op": op,
            "status": d.problem.status,
            "type": d.problem.kind,
            "device": d.device,
            "names": d.names,
            "reason": d.problem.detail,
            "client": client.to_string(),
        });
        if self.anon_suppressed > 0 {
            fields["suppressed"] = json!(std::mem::take(&mut self.anon_suppressed));
        }
        self.audit("acme.deny", fields);
    }
}

fn is_known(rest: &str) -> bool {
    let head = rest.split('/').next().unwrap_or_default();
    matches!(
        head,
        "new-acct"
            | "acct"
            | "key-change"
            | "new-order"
            | "order"
            | "authz"
            | "chall"
            | "finalize"
            | "cert"
            | "revoke-cert"
    )
}

fn method_not_allowed(allow: &str) -> Denied {
    Problem::new("malformed", 405, format!("use {allow}")).into()
}

/// A JSON answer.
fn json_response(status: u16, doc: &Value) -> Response {
    Response::new(status)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec_pretty(doc).unwrap_or_default())
}

impl Handler for AcmeServer {
    /// Answers from the local CA alone (no broker): see [`AcmeServer::handle_with`].
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response {
        self.handle_with(req, peer, None)
    }
}

impl AcmeServer {
    /// Answers `req`; a finalize goes through `broker` when it is configured.
    pub fn handle_with(
        &mut self,
        req: &Request,
        peer: &PeerInfo,
        broker: Option<&mut crate::broker::Broker>,
    ) -> Response {
        let now = self.clock.now();
        self.collect_validations(now);
        if !req.path.starts_with(PREFIX) {
            return Problem::new("malformed", 404, "not an ACME path").response();
        }
        let base = match Self::base(req) {
            Ok(b) => b,
            Err(p) => return p.response(),
        };
        let op = req.path[PREFIX.len()..]
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut resp = match self.dispatch(req, peer, &base, now, broker) {
            Ok(r) => r,
            Err(d) => {
                if d.audit {
                    self.audit_denial(&op, peer.addr.ip(), &d, now);
                }
                let mut r = d.problem.response();
                if d.problem.status == 405 {
                    let allow = d.problem.detail.trim_start_matches("use ").to_owned();
                    r = r.header("Allow", &allow);
                }
                r
            }
        };
        if op != "directory" {
            match self.nonces.fresh(now) {
                Ok(n) => resp = resp.header("Replay-Nonce", &n),
                Err(p) => return p.response(),
            }
        }
        resp.header("Link", &format!("<{base}/directory>;rel=\"index\""))
    }
}

/// The service's handler: `/acme/` to the ACME server when it is on, everything else to EST.
/// ACME finalizes are brokered through EST's upstream worker, when there is one.
pub struct Routed<'a> {
    /// The EST handler (and the broker it owns).
    pub est: &'a mut crate::est::Est,
    /// The ACME server, when enabled.
    pub acme: Option<&'a mut AcmeServer>,
}

impl Handler for Routed<'_> {
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response {
        match &mut self.acme {
            Some(a) if req.path.starts_with(PREFIX) => {
                a.handle_with(req, peer, self.est.broker_mut())
            }
            _ => self.est.handle(req, peer),
        }
    }

    /// While an EST group commits, every request waits for it ([`crate::est::Est::defer`]):
    /// ACME and EST requests alike read and lock the stores the commit thread holds.
    fn answer(&mut self, req: &Request, peer: &PeerInfo) -> crate::http::Answer {
        if self.est.committing() {
            return self.est.defer(req, peer);
        }
        match &mut self.acme {
            Some(a) if req.path.starts_with(PREFIX) => {
                crate::http::Answer::Now(a.handle_with(req, peer, self.est.broker_mut()))
            }
            _ => self.est.answer(req, peer),
        }
    }

    fn rejected(&mut self, status: u16, reason: &str, peer: &PeerInfo) {
        self.est.rejected(status, reason, peer);
    }
}

#[cfg(test)]
mod tests;
