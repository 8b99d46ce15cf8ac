//! The EST server: Enrollment over Secure Transport, [RFC 7030], under `/.well-known/est/`.
//!
//! | operation | auth | answer |
//! |---|---|---|
//! | `GET cacerts` (§4.1) | none | the CA chain (and the upstream's intermediates), certs-only PKCS#7 |
//! | `POST simpleenroll` (§4.2.1) | HTTP Basic: device + bootstrap token | the new leaf alone |
//! | `POST simplereenroll` (§4.2.2) | the device's current TLS client certificate | the new leaf alone |
//! | `GET csrattrs` (§4.5) | none | P-256 with ECDSA-SHA256 |
//! | `POST serverkeygen` (§4.4) | like simpleenroll | key (PKCS#8) + leaf, multipart |
//!
//! Every operation also answers under a label, `/.well-known/est/<label>/<op>` (§3.2.2): a
//! `config label` section, a named profile of the local CA with its own lifetime, allowed
//! suffixes and serverAuth; an unknown label is 404.
//!
//! Bodies are base64 DER, as §4 requires ("Content-Transfer-Encoding: base64"). Enrollment
//! replies carry only the issued certificate (§4.2.3); the chain is `/cacerts`' job. Malformed
//! input gets 400 with a reason; missing or refused credentials (no, wrong, unknown, used,
//! expired or revoked token) 401 with `WWW-Authenticate: Basic` (RFC 7235 §3.1, RFC 7030
//! §3.2.3); an authenticated client that may not do this 403 (a name outside its grant, a client
//! certificate that is foreign, expired or superseded: RFC 7030 §3.7 leaves authorization to
//! the server, and re-enrollment has no HTTP credential a 401 could ask for). Every issuance and
//! every denial is audited (device, names, serial, reason, client address; never the token):
//! issuances in the audit log before the certificate leaves (503 and no certificate when that
//! cannot be done), denials in the denial stream, cut to size and rate-limited (see
//! `est/record.rs`). Every issuance is recorded in the leaf inventory. A request without
//! credentials, the first half of the RFC 7235 challenge round-trip, is not a denial: it is
//! counted (`gatecert_est_auth_challenges_total`), not audited.
//!
//! [RFC 7030]: https://www.rfc-editor.org/rfc/rfc7030

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::audit::Audit;
use crate::broker::{Broker, Origin};
use crate::ca::{Csr, IssueRequest, Issued, LocalCa};
use crate::clock::Clock;
use crate::config;
use crate::crypto::{self, CertInfo};
use crate::http::{Answer, Handler, PeerInfo, Request, Response};
use crate::leaves::Standing;
use crate::report::Counters;
use crate::store;
use crate::token::Claims;
use crate::trust::{ClockTrust, TrustedNow};
use crate::{audit, ca, leaves, token};

mod brokered;
mod held;
mod record;
mod reply;
mod sets;

use reply::{certs_only_response, csrattrs_response, serverkeygen_response};
#[cfg(test)]
use reply::{BOUNDARY, CSR_ATTRS};
pub use sets::{ensure_local_set, listener_identity, ListenerIdentity, LocalSet};

/// The well-known prefix, RFC 7030 §3.2.2.
pub const PREFIX: &str = "/.well-known/est/";

/// What a client is told when its certificate cannot be audited.
const AUDIT_DOWN: &str = "the audit log cannot record issuances; nothing is issued until an \
                          operator repairs it";

/// The realm in `WWW-Authenticate`.
pub const REALM: &str = "gatecert";

/// The set directory of the EST listener's own certificate when no ACME certificate is installed.
pub const LOCAL_SET: &str = "est-local";

/// An error setting up the EST service (request-time failures become HTTP answers instead).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The local CA could not be opened or could not issue the listener's certificate.
    Ca(ca::Error),
    /// Reading or installing a certificate set failed.
    Store(store::Error),
    /// No configured name is one the local CA may issue for, and no ACME certificate is
    /// installed: the listener has no certificate to serve.
    NoListenerNames,
    /// The audit line of a certificate issued for the gateway could not be written, so the
    /// certificate was not installed.
    Audit(audit::Error),
    /// A certificate about to go live is not valid now; it was not installed.
    NotValidNow(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Ca(_) => f.write_str("local CA"),
            Error::Store(_) => f.write_str("certificate store"),
            Error::Audit(_) => f.write_str("audit log (the new certificate was not installed)"),
            Error::NotValidNow(m) => write!(f, "refusing to make live a set not valid now: {m}"),
            Error::NoListenerNames => f.write_str(
                "no certificate for the EST listener: no ACME certificate is installed and no \
                 configured domain/ip is within the local CA's allow_suffix/allow_ip",
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Ca(e) => Some(e),
            Error::Store(e) => Some(e),
            Error::Audit(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ca::Error> for Error {
    fn from(e: ca::Error) -> Self {
        Error::Ca(e)
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        Error::Store(e)
    }
}

/// The EST request handler.
///
/// The token store and the inventory are journals kept open ([`held::Held`]): each request
/// catches up with what `gatecert token add` and other commands appended meanwhile.
pub struct Est {
    ca: LocalCa,
    state_dir: PathBuf,
    clock: Arc<dyn Clock>,
    /// The upstream worker and brokering state, when the config has an upstream.
    broker: Option<Broker>,
    /// Requests parked on the broker ([`Answer::Later`]), by id.
    parked: HashMap<u64, brokered::Parked>,
    /// The bootstrap-token uses held by enrollments in progress (see [`crate::token`]).
    claims: Claims,
    /// The token store and leaf inventory, kept open.
    held: held::Held,
    /// Where issuances are counted for metrics, when the service keeps counters.
    counters: Option<Arc<Counters>>,
    /// `config label` sections: the profiles served under `/.well-known/est/<label>/`.
    labels: Vec<config::Label>,
    /// Denials of the current minute, for the denial stream's rate limit.
    denials: record::DenyWindow,
}

/// A refused request: what the client is told and what the audit log records.
struct Denial {
    status: u16,
    reason: String,
    device: Option<String>,
    names: Vec<String>,
    /// `Retry-After` seconds, for a 503 that will pass.
    retry_after: Option<u64>,
    /// A request that sent no credentials at all: the RFC 7235 challenge, counted, not audited.
    challenge: bool,
}

impl Denial {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Denial {
            status,
            reason: reason.into(),
            device: None,
            names: Vec::new(),
            retry_after: None,
            challenge: false,
        }
    }

    /// 401 for a request without credentials, or with an `Authorization` that is not HTTP Basic
    /// with a user and a password (that one is a refusal, and audited).
    fn no_credentials(req: &Request) -> Self {
        match req.header("authorization") {
            None => Denial {
                challenge: true,
                ..Denial::new(401, "no credentials")
            },
            Some(_) => Denial::new(
                401,
                "Authorization is not HTTP Basic with a device name and a token",
            ),
        }
    }

    fn device(mut self, device: &str) -> Self {
        self.device = Some(device.into());
        self
    }

    fn names(mut self, names: Vec<String>) -> Self {
        self.names = names;
        self
    }
}

/// A granted request.
struct Granted {
    device: String,
    names: Vec<String>,
    issued: Issued,
    /// serverkeygen: the new key as PKCS#8 PEM.
    key_pem: Option<String>,
    /// Who issued it.
    origin: Origin,
    /// simplereenroll: the serial of the client certificate it replaces.
    renews: Option<String>,
}

/// A request that passed authentication and policy, not yet issued.
struct Authorized {
    device: String,
    names: Vec<String>,
    csr: Csr,
    /// simpleenroll and serverkeygen: the claim on the bootstrap token, committed when the
    /// certificate goes out and released when none does.
    claim: Option<u64>,
    /// simplereenroll: the serial of the client certificate presented.
    renews: Option<String>,
    /// The label's lifetime (`None`: the CA's).
    lifetime: Option<u64>,
    /// Ask for EKU serverAuth (the CA's `server_auth`, or the label's).
    server_auth: bool,
}

/// How long the service's loop waits for `tokens.jnl.lock` before it answers 503: a held lock
/// (a stuck `gatecert token add`) must not stall every other client.
const TOKEN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// `Retry-After` when the token store was busy, seconds.
const TOKEN_BUSY_RETRY: u64 = 2;

impl Est {
    /// The handler for `ca`, keeping tokens, audit log and inventory in `state_dir`.
    pub fn new(state_dir: &Path, ca: LocalCa, clock: Arc<dyn Clock>) -> Est {
        Est {
            ca,
            state_dir: state_dir.to_path_buf(),
            clock,
            broker: None,
            parked: HashMap::new(),
            claims: Claims::new(),
            held: held::Held::default(),
            counters: None,
            labels: Vec::new(),
            denials: record::DenyWindow::default(),
        }
    }

    /// Serves these `config label` profiles (RFC 7030 §3.2.2) beside the default path.
    pub fn set_labels(&mut self, labels: Vec<config::Label>) {
        self.labels = labels;
    }

    /// Counts every leaf issuance, by source, in `counters` (the service's metrics).
    pub fn set_counters(&mut self, counters: Arc<Counters>) {
        self.counters = Some(counters);
    }

    /// The CA behind this handler.
    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// RFC 7030 §4.1.3: the local CA's intermediate and root and, with a broker, the upstream
    /// intermediates this gateway has delivered leaves under, so that a client holding only the
    /// issued certificate (§4.2.3) can build either chain. The upstream root is not among them
    /// when the ACME CA does not send it: the client must already trust it (§4.1.3's explicit
    /// trust anchor).
    fn cacerts(&self) -> Response {
        let mut certs = self.ca.chain_der();
        if let Some(b) = &self.broker {
            for c in b.upstream_issuers() {
                if !certs.contains(&c) {
                    certs.push(c);
                }
            }
        }
        certs_only_response(&certs)
    }

    /// The authorization for `op` (RFC 7030 §3.3.2 and §3.2.3), then the label's policy.
    fn authorize(
        &mut self,
        op: &str,
        label: Option<usize>,
        req: &Request,
        peer: &PeerInfo,
    ) -> Result<Authorized, Denial> {
        let mut auth = if op == "simplereenroll" {
            self.authorize_reenroll(req, peer)?
        } else {
            self.authorize_enroll(req)?
        };
        let Some(label) = label.and_then(|i| self.labels.get(i)) else {
            return Ok(auth);
        };
        if !label.allow_suffix.is_empty() {
            let outside = auth
                .csr
                .dns
                .iter()
                .find(|d| !label.allow_suffix.iter().any(|s| ca::dns_in_subtree(d, s)));
            if let Some(d) = outside {
                let denial = Denial::new(
                    403,
                    format!(
                        "refused by label '{}' policy: DNS name {d:?} is outside its allow_suffix {:?}",
                        label.name, label.allow_suffix
                    ),
                )
                .device(&auth.device)
                .names(auth.names.clone());
                // Refused before anything is issued or parked: the token's claim goes back.
                return self.settle(&auth, Err(denial));
            }
        }
        auth.lifetime = label.lifetime;
        auth.server_auth = label.server_auth;
        Ok(auth)
    }

    /// `simpleenroll` and `serverkeygen`: HTTP Basic with the device's bootstrap token.
    fn enroll(
        &mut self,
        req: &Request,
        peer: &PeerInfo,
        keygen: bool,
        label: Option<usize>,
    ) -> Result<Granted, Denial> {
        let op = if keygen {
            "serverkeygen"
        } else {
            "simpleenroll"
        };
        let auth = self.authorize(op, label, req, peer)?;
        if !keygen {
            return self.grant_local(auth, None, Origin::Local);
        }
        let server_auth = auth.server_auth && self.ca.allows_server_auth();
        let made = self.trusted_now(&auth).and_then(|now| {
            self.ca
                .issue_with_new_key(
                    &auth.csr.dns,
                    &auth.csr.ips,
                    auth.lifetime,
                    server_auth,
                    now,
                )
                .map_err(|e| ca_denial(&e).device(&auth.device).names(auth.names.clone()))
        });
        let (key, issued) = self.settle(&auth, made)?;
        Ok(Granted {
            device: auth.device,
            names: auth.names,
            issued,
            key_pem: Some(key.to_pem()),
            origin: Origin::Local,
            renews: None,
        })
    }

    /// HTTP Basic with the device's bootstrap token, the CSR's names granted to it and within
    /// the local CA's policy; then one use of the token claimed ([`Tokens::claim`]) before
    /// anything is issued, parked or sent upstream.
    fn authorize_enroll(&mut self, req: &Request) -> Result<Authorized, Denial> {
        let (device, token) = basic_auth(req).ok_or_else(|| Denial::no_credentials(req))?;
        let csr = self.read_csr(req).map_err(|d| d.device(&device))?;
        let names = csr_names(&csr);
        let now = self.clock.now();
        let tokens = self.held.tokens(&self.state_dir).map_err(|e| {
            log::error!("{}", crate::errchain::one_line(&e));
            Denial::new(500, "token store unreadable").device(&device)
        })?;
        // Refused credentials: 401, so the client asks again (RFC 7235 §3.1, RFC 7030 §3.2.3);
        // a token whose every use is held by an enrollment in progress: 403.
        let denied = |d: token::Denial| {
            Denial::new(token_denial_status(d), d.to_string())
                .device(&device)
                .names(names.clone())
        };
        let grant = tokens.check(&device, &token, now).map_err(denied)?;
        if let Some(name) = names
            .iter()
            .find(|n| !grant.names.iter().any(|g| g.eq_ignore_ascii_case(n)))
        {
            return Err(
                Denial::new(403, format!("name {name} is not granted to this token"))
                    .device(&device)
                    .names(names),
            );
        }
        self.ca
            .check_names(&csr.dns, &csr.ips)
            .map_err(|e| ca_denial(&e).device(&device).names(names.clone()))?;
        let key = crypto::hex(&crypto::sha256(&csr.spki_der));
        let (claim, _) = tokens
            .claim(&mut self.claims, &device, &token, &key, now)
            .map_err(denied)?;
        Ok(Authorized {
            device,
            names,
            csr,
            claim: Some(claim),
            renews: None,
            lifetime: None,
            server_auth: true,
        })
    }

    /// Ends `auth`'s claim with the outcome of its issuance: released when `made` failed,
    /// committed (every token check repeated, under the token lock) when it succeeded. A commit
    /// the token no longer allows (revoked, replaced, expired while the request waited) turns
    /// the certificate into a denial: it never goes out.
    fn settle<T>(&mut self, auth: &Authorized, made: Result<T, Denial>) -> Result<T, Denial> {
        let Some(id) = auth.claim else {
            return made;
        };
        // Taken out either way: a failed issuance releases the claim here.
        let claim = self.claims.take(id);
        let made = made?;
        let Some(claim) = claim else {
            // Only this handler takes claims, and each request ends its own once.
            log::error!("the token claim of {} was lost", auth.device);
            return Err(Denial::new(500, "token claim lost")
                .device(&auth.device)
                .names(auth.names.clone()));
        };
        let now = self.clock.now();
        let committed = self.held.tokens(&self.state_dir).and_then(|t| {
            t.lock_within(TOKEN_LOCK_WAIT)?;
            let spent = t.commit(&claim, now);
            // Compaction (rare) prunes used-up and expired tokens; its failure loses nothing.
            if let Err(e) = spent.as_ref().map(|()| t.maintain(now)) {
                log::warn!(
                    "token journal compaction: {}",
                    crate::errchain::one_line(&e)
                );
            }
            let unlocked = t.unlock();
            spent.and(unlocked)
        });
        let denial = match committed {
            Ok(()) => return Ok(made),
            Err(token::Error::Denied(d)) => Denial::new(token_denial_status(d), d.to_string()),
            Err(token::Error::Busy(p)) => {
                log::warn!(
                    "{} is held by another process; 503 for {}",
                    p.display(),
                    auth.device
                );
                let mut d = Denial::new(503, "token store busy; retry");
                d.retry_after = Some(TOKEN_BUSY_RETRY);
                d
            }
            Err(e) => {
                log::error!("cannot spend the token of {}: {e}", auth.device);
                Denial::new(500, "token store write failed")
            }
        };
        Err(denial.device(&auth.device).names(auth.names.clone()))
    }

    /// Releases `auth`'s claim: its enrollment ends without a certificate.
    fn release(&mut self, auth: &Authorized) {
        if let Some(id) = auth.claim {
            self.claims.take(id);
        }
    }

    /// The time to issue at, if the clock may be believed (see [`crate::trust`]): never issue on
    /// a clock before the build time, the last trusted time or the CA's notBefore. 503 tells the
    /// device to come back; nothing is written.
    fn trusted_now(&self, auth: &Authorized) -> Result<TrustedNow, Denial> {
        let now = self.clock.now();
        let mut trust = ClockTrust::load(&self.state_dir, Some(self.ca.intermediate().not_before));
        let trusted = trust.check(now).map_err(|e| {
            Denial::new(503, format!("clock untrusted: {e}"))
                .device(&auth.device)
                .names(auth.names.clone())
        })?;
        // No issuance without its audit line: a broken or unreadable log stops it here,
        // before anything is signed or a token burnt. Read only, no lock: never waits.
        Audit::check(&audit::path_in(&self.state_dir)).map_err(|e| {
            log::error!("{}", crate::errchain::one_line(&e));
            Denial::new(503, AUDIT_DOWN)
                .device(&auth.device)
                .names(auth.names.clone())
        })?;
        Ok(trusted)
    }

    /// Issues from the local CA (`lifetime: None` = the label's, else the CA's; an interim
    /// lifetime is capped by the label's).
    fn grant_local(
        &mut self,
        auth: Authorized,
        lifetime: Option<u64>,
        origin: Origin,
    ) -> Result<Granted, Denial> {
        let lifetime = match (lifetime, auth.lifetime) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let made = self.trusted_now(&auth).and_then(|now| {
            self.ca
                .issue(
                    &IssueRequest {
                        csr: auth.csr.clone(),
                        lifetime,
                        server_auth: auth.server_auth,
                    },
                    now,
                )
                .map_err(|e| ca_denial(&e).device(&auth.device).names(auth.names.clone()))
        });
        let issued = self.settle(&auth, made)?;
        Ok(Granted {
            device: auth.device,
            names: auth.names,
            issued,
            key_pem: None,
            origin,
            renews: auth.renews,
        })
    }

    /// `simplereenroll`: the client's current certificate, from this CA (or an upstream leaf
    /// this gateway brokered), unexpired, and the device's current one in the inventory (or the
    /// one it replaced, inside [`leaves::GRACE`]), and a CSR whose subject and SANs are identical
    /// to it (RFC 7030 §4.2.2). The device is the inventory's.
    fn authorize_reenroll(&mut self, req: &Request, peer: &PeerInfo) -> Result<Authorized, Denial> {
        let Some(leaf) = peer.certs.first() else {
            return Err(Denial::new(
                403,
                "re-enrollment needs a TLS client certificate",
            ));
        };
        let current = CertInfo::from_der(leaf.as_ref())
            .map_err(|e| Denial::new(403, format!("client certificate: {e}")))?;
        let device = current
            .subject_cn
            .clone()
            .or_else(|| current.dns_names.first().cloned())
            .unwrap_or_else(|| current.serial_hex());
        let cur_names = names_of(&current.dns_names, &current.ips);
        let upstream = self
            .broker
            .as_ref()
            .is_some_and(|b| b.is_upstream_leaf(leaf.as_ref()));
        if !upstream && !self.ca.issued_by_me(leaf.as_ref()) {
            return Err(
                Denial::new(403, "client certificate was not issued by this CA")
                    .device(&device)
                    .names(cur_names),
            );
        }
        let now = self.clock.now();
        if current.not_after <= now || current.not_before > now {
            return Err(
                Denial::new(403, "client certificate is expired or not yet valid")
                    .device(&device)
                    .names(cur_names),
            );
        }
        let serial = current.serial_hex();
        let device = self
            .current_holder(&serial, now)
            .map_err(|d| match d.device {
                Some(_) => d.names(cur_names.clone()),
                None => d.device(&device).names(cur_names.clone()),
            })?;
        let csr = self.read_csr(req).map_err(|d| d.device(&device))?;
        let names = csr_names(&csr);
        // An upstream CA may leave the subject empty; then the SANs alone must match.
        let same_subject =
            csr.subject_cn == current.subject_cn || (upstream && current.subject_cn.is_none());
        if !same_set(&names, &cur_names) || !same_subject {
            return Err(Denial::new(
                403,
                "CSR subject/SANs differ from the current certificate (RFC 7030 4.2.2)",
            )
            .device(&device)
            .names(names));
        }
        self.ca
            .check_names(&csr.dns, &csr.ips)
            .map_err(|e| ca_denial(&e).device(&device).names(names.clone()))?;
        Ok(Authorized {
            device,
            names,
            csr,
            claim: None,
            renews: Some(serial),
            lifetime: None,
            server_auth: true,
        })
    }

    /// The device whose current certificate (or previous one, in its grace window) has
    /// `serial`; 403 with the reason when it is superseded or no device holds it.
    fn current_holder(&mut self, serial: &str, now: i64) -> Result<String, Denial> {
        let inv = self.held.inventory(&self.state_dir).map_err(|e| {
            log::error!("{}", crate::errchain::one_line(&e));
            Denial::new(500, "leaf inventory unreadable")
        })?;
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
            Standing::Unknown => Err(Denial::new(
                403,
                format!(
                    "client certificate {serial} is not the current certificate of any enrolled \
                     device (superseded)"
                ),
            )),
        }
    }

    fn read_csr(&self, req: &Request) -> Result<Csr, Denial> {
        let der = crypto::b64_decode(&req.body)
            .map_err(|_| Denial::new(400, "body is not base64 (RFC 7030 4.2.1)"))?;
        self.ca.verify_csr(&der).map_err(|e| ca_denial(&e))
    }
}

impl Est {
    /// The EST operation `req` asks for and its label (an index into `labels`), or the answer
    /// refusing it (404, 405, 415) or, for the two GETs (and HEADs), answering it. RFC 7030
    /// §3.2.2: the path is `/.well-known/est/<op>` or `/.well-known/est/<label>/<op>`.
    fn route<'r>(&self, req: &'r Request) -> Result<(&'r str, Option<usize>), Response> {
        let Some(rest) = req.path.strip_prefix(PREFIX) else {
            return Err(Response::text(404, "not found"));
        };
        let (label, op) = match rest.split_once('/') {
            None => (None, rest),
            Some((label, op)) => match self.labels.iter().position(|l| l.name == label) {
                Some(i) => (Some(i), op),
                None if config::is_label_name(label) => {
                    return Err(Response::text(
                        404,
                        &format!("unknown EST label '{label}' (RFC 7030 3.2.2)"),
                    ))
                }
                None => return Err(Response::text(404, "unknown EST label")),
            },
        };
        let method = match op {
            "cacerts" | "csrattrs" => "GET",
            "simpleenroll" | "simplereenroll" | "serverkeygen" => "POST",
            _ => return Err(Response::text(404, "unknown EST operation")),
        };
        // HEAD wherever GET (RFC 9110 §9.3.2); the server layer sends it without content.
        let allow = if method == "GET" { "GET, HEAD" } else { method };
        if req.method != method && !(method == "GET" && req.method == "HEAD") {
            return Err(Response::text(405, &format!("{op} takes {allow}")).header("Allow", allow));
        }
        // RFC 7030 §4.2.1, §4.4.1: every EST POST carries application/pkcs10. A missing
        // Content-Type is taken as that (the body must still be a base64 PKCS#10); a wrong one
        // is refused before any credential is looked at.
        match req.media_type() {
            Some(t) if method == "POST" && t != "application/pkcs10" => {
                return Err(Response::text(
                    415,
                    &format!("{op} takes Content-Type application/pkcs10, not {t:?}"),
                )
                .header("Accept-Post", "application/pkcs10"));
            }
            _ => {}
        }
        match op {
            "cacerts" => Err(self.cacerts()),
            "csrattrs" => Err(csrattrs_response()),
            _ => Ok((op, label)),
        }
    }

    /// Records `outcome` in the audit log and inventory and turns it into the answer. A
    /// re-enrollment is checked again here, when its certificate is about to go out: if another
    /// re-enrollment superseded the client certificate meanwhile (a parked request), it is
    /// refused and the new certificate is never delivered. An issuance whose audit line cannot
    /// be written is not handed out: 503 (fail closed).
    fn finish(&mut self, op: &str, client: IpAddr, outcome: Result<Granted, Denial>) -> Response {
        let outcome = outcome.and_then(|g| match &g.renews {
            Some(serial) => {
                let now = self.clock.now();
                self.current_holder(serial, now)
                    .map_err(|d| d.names(g.names.clone()))?;
                Ok(g)
            }
            None => Ok(g),
        });
        if let Err(e) = self.record(op, client, &outcome) {
            log::error!(
                "{}; the certificate is withheld",
                crate::errchain::one_line(&e)
            );
            let d = Denial::new(503, AUDIT_DOWN);
            let d = match &outcome {
                Ok(g) => d.device(&g.device).names(g.names.clone()),
                Err(_) => d,
            };
            self.record_denial(self.clock.now(), op, client, &d);
            return Response::text(503, AUDIT_DOWN).header("Retry-After", "60");
        }
        match outcome {
            // RFC 7030 §4.2.3: "containing only the certificate that was issued".
            Ok(g) => match g.key_pem {
                Some(key_pem) => serverkeygen_response(&key_pem, &g.issued),
                None => certs_only_response(std::slice::from_ref(&g.issued.leaf_der)),
            },
            Err(d) if d.status == 401 => Response::text(401, &d.reason)
                .header("WWW-Authenticate", &format!("Basic realm=\"{REALM}\"")),
            Err(Denial {
                status,
                reason,
                retry_after: Some(after),
                ..
            }) => Response::text(status, &reason).header("Retry-After", &after.to_string()),
            Err(d) => Response::text(d.status, &d.reason),
        }
    }
}

impl Handler for Est {
    /// Answers at once, from the local CA (no brokering: see [`Handler::answer`]).
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response {
        let (op, label) = match self.route(req) {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let outcome = match op {
            "simplereenroll" => self
                .authorize(op, label, req, peer)
                .and_then(|a| self.grant_local(a, None, Origin::Local)),
            _ => self.enroll(req, peer, op == "serverkeygen", label),
        };
        self.finish(op, peer.addr.ip(), outcome)
    }

    /// With a broker, `simpleenroll` and `simplereenroll` go through it (and may be parked);
    /// everything else is [`Handler::handle`].
    fn answer(&mut self, req: &Request, peer: &PeerInfo) -> Answer {
        let brokered = self.broker.as_ref().is_some_and(|b| b.config().is_some());
        match self.route(req) {
            Ok((op @ ("simpleenroll" | "simplereenroll"), label)) if brokered => {
                let op = op.to_owned();
                self.answer_brokered(&op, label, req, peer)
            }
            _ => Answer::Now(self.handle(req, peer)),
        }
    }

    fn rejected(&mut self, status: u16, reason: &str, peer: &PeerInfo) {
        let now = self.clock.now();
        self.record_denial(now, "http", peer.addr.ip(), &Denial::new(status, reason));
    }
}

/// The status for a refused token: 401 for refused credentials (RFC 7235 §3.1, RFC 7030
/// §3.2.3), so the client may ask again; 403 while every use is held by an enrollment in progress.
fn token_denial_status(d: token::Denial) -> u16 {
    match d {
        token::Denial::InUse => 403,
        _ => 401,
    }
}

fn ca_denial(e: &ca::Error) -> Denial {
    let status = e.http_status();
    if status >= 500 {
        log::error!("local CA: {e}");
        return Denial::new(status, "the CA failed; see the gateway's log");
    }
    Denial::new(status, e.to_string())
}

/// `Authorization: Basic` (RFC 7617): (user-id, password). The password is the bootstrap token
/// and never leaves this function except into the token check.
fn basic_auth(req: &Request) -> Option<(String, String)> {
    let value = req.header("authorization")?;
    let (scheme, creds) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = crypto::b64_decode(creds.trim().as_bytes()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    if user.is_empty() || pass.is_empty() {
        return None;
    }
    Some((user.to_owned(), pass.to_owned()))
}

fn names_of(dns: &[String], ips: &[IpAddr]) -> Vec<String> {
    dns.iter()
        .map(|d| d.to_ascii_lowercase())
        .chain(ips.iter().map(IpAddr::to_string))
        .collect()
}

fn csr_names(csr: &Csr) -> Vec<String> {
    names_of(&csr.dns, &csr.ips)
}

fn same_set(a: &[String], b: &[String]) -> bool {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort();
    a.dedup();
    b.sort();
    b.dedup();
    a == b
}

#[cfg(test)]
mod reenroll_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::config::Config;
    use crate::pkcs7;

    #[test]
    fn basic_auth_parses_rfc7617_example() {
        // RFC 7617 §2: "Aladdin" / "open sesame".
        let mut req = Request {
            method: "POST".into(),
            path: "/".into(),
            query: None,
            headers: vec![(
                "Authorization".into(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into(),
            )],
            body: Vec::new(),
        };
        assert_eq!(
            basic_auth(&req),
            Some(("Aladdin".into(), "open sesame".into()))
        );
        req.headers[0].1 = "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into();
        assert_eq!(basic_auth(&req), None);
        req.headers[0].1 = format!("Basic {}", crypto::b64(b"nopassword"));
        assert_eq!(basic_auth(&req), None);
    }

    #[test]
    fn csr_attrs_is_well_formed_der() {
        assert_eq!(CSR_ATTRS[1] as usize, CSR_ATTRS.len() - 2);
        assert_eq!(CSR_ATTRS[13] as usize, CSR_ATTRS.len() - 14);
        assert_eq!(CSR_ATTRS[24] as usize, CSR_ATTRS.len() - 25);
    }

    pub(super) fn setup(tag: &str) -> (PathBuf, Est, Arc<FixedClock>) {
        let dir =
            std::env::temp_dir().join(format!("gatecert-est-unit-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cfg = Config::standalone(dir.clone());
        let clock = Arc::new(FixedClock::new(1_800_000_000));
        let ca = LocalCa::init(
            &LocalCa::dir_in(&dir),
            &cfg.ca,
            crate::trust::TrustedNow::for_tests(clock.now()),
        )
        .unwrap();
        let est = Est::new(&dir, ca, clock.clone());
        (dir, est, clock)
    }

    /// A one-use token for `device` bound to `name`, valid `ttl` s from `now`, and a P-256 CSR
    /// for `name`.
    pub(super) fn token_and_csr(
        dir: &Path,
        device: &str,
        name: &str,
        ttl: u64,
        now: i64,
    ) -> (String, Vec<u8>) {
        let names = [name.to_string()];
        let token = crate::token::Tokens::open(&token::path_in(dir))
            .unwrap()
            .add(device, &names, ttl, 1, now)
            .unwrap();
        let key = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
        (token, key.csr(&names, &[]).unwrap())
    }

    pub(super) fn enroll_req(device: &str, token: &str, csr: &[u8]) -> Request {
        Request {
            method: "POST".into(),
            path: format!("{PREFIX}simpleenroll"),
            query: None,
            headers: vec![(
                "Authorization".into(),
                format!(
                    "Basic {}",
                    crypto::b64(format!("{device}:{token}").as_bytes())
                ),
            )],
            body: crypto::b64(csr).into_bytes(),
        }
    }

    pub(super) fn peer() -> PeerInfo {
        PeerInfo {
            addr: "192.0.2.7:5000".parse().unwrap(),
            tls: true,
            certs: Vec::new(),
        }
    }

    #[test]
    fn token_expires_on_the_injected_clock() {
        let (dir, mut est, clock) = setup("clock");
        let name = "s.sensors.local".to_string();
        let (token, csr) = token_and_csr(&dir, "s", &name, 60, clock.now());
        clock.advance(61);
        let resp = est.handle(&enroll_req("s", &token, &csr), &peer());
        assert_eq!(resp.status, 401);
        assert!(resp.headers.contains(&(
            "WWW-Authenticate".into(),
            format!("Basic realm=\"{REALM}\"")
        )));
        assert!(String::from_utf8_lossy(&resp.body).contains("expired"));
        let log = std::fs::read_to_string(audit::deny_path_in(&dir)).unwrap();
        assert!(log.contains("token expired") && log.contains("192.0.2.7"));
        assert!(!log.contains(&token));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A clock before the CA's notBefore (a router that booted without RTC): no issuance, 503,
    /// the token is not burnt, nothing goes into the inventory; once the clock is right, it works.
    #[test]
    fn untrusted_clock_refuses_without_burning_the_token() {
        let (dir, mut est, clock) = setup("untrusted");
        let name = "u.sensors.local".to_string();
        let (token, csr) = token_and_csr(&dir, "u", &name, 7 * 86_400, clock.now());
        let good = clock.now();
        clock.set(good - 2 * 86_400);
        let resp = est.handle(&enroll_req("u", &token, &csr), &peer());
        assert_eq!(resp.status, 503);
        assert!(String::from_utf8_lossy(&resp.body).contains("clock untrusted"));
        assert!(!crate::leaves::path_in(&dir).exists());
        clock.set(good);
        let resp = est.handle(&enroll_req("u", &token, &csr), &peer());
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn issuances_are_counted_by_source() {
        let (dir, mut est, clock) = setup("counted");
        let counters = Arc::new(Counters::new());
        est.set_counters(counters.clone());
        let name = "c.sensors.local".to_string();
        let (token, csr) = token_and_csr(&dir, "c", &name, 600, clock.now());
        assert_eq!(
            est.handle(&enroll_req("c", &token, &csr), &peer()).status,
            200
        );
        let cfg = Config::standalone(dir.clone());
        let text = crate::report::metrics::render_metrics(
            &crate::report::Status::gather(&cfg, clock.now()),
            &counters,
        );
        assert!(
            text.contains("gatecert_leaf_issuances_total{source=\"local\"} 1\n"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn routing_answers_404_and_405() {
        let (dir, mut est, _) = setup("routes");
        let mut req = enroll_req("x", "y", b"");
        req.method = "GET".into();
        let resp = est.handle(&req, &peer());
        assert_eq!(resp.status, 405);
        assert!(resp.headers.contains(&("Allow".into(), "POST".into())));
        req.path = format!("{PREFIX}fullcmc");
        assert_eq!(est.handle(&req, &peer()).status, 404);
        req.path = "/elsewhere".into();
        assert_eq!(est.handle(&req, &peer()).status, 404);
        req.path = format!("{PREFIX}cacerts");
        let resp = est.handle(&req, &peer());
        assert_eq!(resp.status, 200);
        let der = crypto::b64_decode(&resp.body).unwrap();
        let mut got = pkcs7::parse_certs_only(&der).unwrap();
        let mut want = est.ca().chain_der();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn serverkeygen_answer_is_rfc7030_multipart() {
        let (dir, est, clock) = setup("keygen");
        let (key, issued) = est
            .ca()
            .issue_with_new_key(
                &["k.sensors.local".into()],
                &[],
                None,
                false,
                crate::trust::TrustedNow::for_tests(clock.now()),
            )
            .unwrap();
        let resp = serverkeygen_response(&key.to_pem(), &issued);
        let ct = &resp.headers[0].1;
        assert_eq!(ct, &format!("multipart/mixed; boundary={BOUNDARY}"));
        let body = String::from_utf8(resp.body).unwrap();
        let parts: Vec<&str> = body.split(&format!("--{BOUNDARY}")).collect();
        assert_eq!(parts.len(), 4);
        assert!(parts[1].starts_with("\r\nContent-Type: application/pkcs8\r\n"));
        assert!(parts[2].contains("smime-type=certs-only"));
        assert_eq!(parts[3], "--\r\n");
        let pkcs8 = parts[1].split("\r\n\r\n").nth(1).unwrap();
        let pem = crypto::pem_block(
            "PRIVATE KEY",
            &crypto::b64_decode(pkcs8.as_bytes()).unwrap(),
        );
        let back = crypto::PrivateKey::from_pem(&pem).unwrap();
        assert!(back.matches(&CertInfo::from_der(&issued.leaf_der).unwrap()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
