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
use crate::report::Counters;
use crate::store;
use crate::token::{Claims, Tokens};
use crate::trust::{ClockTrust, TrustedNow};
use crate::{audit, ca, token};

mod brokered;
mod commit;
mod lifecycle;
mod record;
mod reply;
mod sets;

use reply::{certs_only_response, csrattrs_response, serverkeygen_response};
#[cfg(test)]
use reply::{BOUNDARY, CSR_ATTRS};
pub use sets::{
    ensure_local_set, listener_has_names, listener_identity, ListenerIdentity, LocalSet,
};

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
/// The token store, audit log and inventory are re-read for each request that needs them:
/// `gatecert token add` and other commands change them while the service runs, and the files
/// are small.
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
    /// Where issuances are counted for metrics, when the service keeps counters.
    counters: Option<Arc<Counters>>,
    /// `config label` sections: the profiles served under `/.well-known/est/<label>/`.
    labels: Vec<config::Label>,
    /// Denials of the current minute, for the denial stream's rate limit.
    denials: record::DenyWindow,
    /// The inventory and CRL as last read ([`lifecycle`]).
    cache: lifecycle::Cache,
    /// Refused re-enrollments in a row, by device (memory only).
    reenroll_failures: HashMap<String, u32>,
    /// `reenroll_alert` from `config est`.
    reenroll_alert: u32,
    /// Broker resolutions for requests parked by someone else (the ACME server).
    foreign: Vec<crate::broker::Resolution>,
    /// Issuances signed and parked for the next group commit ([`Est::commit_pending`]).
    pending: Vec<(u64, record::Issue)>,
    /// The last id given to a pending issuance (below [`PENDING_IDS`]).
    next_pending: u64,
    /// The commit thread, once the first group needed it ([`commit`]).
    committer: Option<commit::Committer>,
    /// The group on the commit thread.
    inflight: Option<commit::Inflight>,
    /// Requests that arrived while a group committed, to be handled once it is done.
    deferred: Vec<(u64, Request, PeerInfo)>,
    /// The last id given to a deferred request.
    next_deferred: u64,
    /// Tests: where the commit thread waits before each group ([`commit::Gate`]).
    #[cfg(test)]
    commit_gate: Option<Arc<commit::Gate>>,
    /// The clock trust as last read, with the stamp of `<state_dir>/clock` it was read at and
    /// the CA notBefore it was loaded with ([`Est::trusted_now`]).
    clock_trust: Option<(Option<store::FileStamp>, i64, ClockTrust)>,
}

/// The ids of issuances parked for a group commit, apart from the broker's (which count up
/// from 1).
const PENDING_IDS: u64 = 1 << 62;

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
    /// The device's cut-off count when the request was authorized ([`crate::leaves::Leaf::cuts`]):
    /// a device revoked or disabled since is refused at the end.
    cuts: u32,
    /// The token claim (simpleenroll, serverkeygen), still held: the commit spends it.
    claim: Option<u64>,
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
    /// The device's cut-off count at authorization.
    cuts: u32,
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
            counters: None,
            labels: Vec::new(),
            denials: record::DenyWindow::default(),
            cache: lifecycle::Cache::default(),
            reenroll_failures: HashMap::new(),
            reenroll_alert: 5,
            foreign: Vec::new(),
            pending: Vec::new(),
            next_pending: 0,
            committer: None,
            inflight: None,
            deferred: Vec::new(),
            next_deferred: 0,
            #[cfg(test)]
            commit_gate: None,
            clock_trust: None,
        }
    }

    /// Raises the alert after `n` refused re-enrollments in a row with one device's
    /// certificates (`reenroll_alert` in `config est`).
    pub fn set_reenroll_alert(&mut self, n: u32) {
        self.reenroll_alert = n.max(1);
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
    /// After `gatecert ca rotate`, the replaced intermediates still kept follow, so that leaves
    /// of either generation verify.
    fn cacerts(&self) -> Response {
        let mut certs = self.ca.chain_der();
        certs.extend(self.ca.previous().iter().map(|g| g.info.der.clone()));
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
            cuts: auth.cuts,
            claim: auth.claim,
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
        let tokens = Tokens::open(&token::path_in(&self.state_dir)).map_err(|e| {
            log::error!("{e}");
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
        // One read of the inventory for both: the device's cut-off count and its standing.
        let cuts = {
            let inv = self.inventory().map_err(|d| d.device(&device))?;
            lifecycle::may_hold(&inv, &device, &csr.spki_der)
                .map_err(|d| d.names(names.clone()))?;
            inv.cuts(&device)
        };
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
            cuts,
        })
    }

    /// Ends `auth`'s claim when its issuance failed (`made` is an error): the use is free
    /// again. After a success the claim stays held, and goes with the [`Granted`] to its commit
    /// ([`Est::commit_issues`]), which spends it, with every token check repeated, together with
    /// the audit line and the inventory row: a token the commit no longer allows (revoked,
    /// replaced, expired while the request waited) turns the certificate into a denial.
    fn settle<T>(&mut self, auth: &Authorized, made: Result<T, Denial>) -> Result<T, Denial> {
        if made.is_err() {
            self.release(auth);
        }
        made
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
    ///
    /// The floor is read again whenever `<state_dir>/clock` changed (another process, or this
    /// check, recorded a later trusted time); otherwise the copy in memory serves.
    fn trusted_now(&mut self, auth: &Authorized) -> Result<TrustedNow, Denial> {
        let now = self.clock.now();
        let not_before = self.ca.intermediate().not_before;
        let stamp = store::stamp(&crate::trust::clock_path_in(&self.state_dir));
        let trust = match &mut self.clock_trust {
            Some((s, nb, t)) if *s == stamp && *nb == not_before => t,
            slot => {
                let t = ClockTrust::load(&self.state_dir, Some(not_before));
                &mut slot.insert((stamp, not_before, t)).2
            }
        };
        // When `check` records `now` (once a day), the file's new stamp makes the next call read
        // it again.
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
            cuts: auth.cuts,
            claim: auth.claim,
        })
    }

    /// `simplereenroll`: the client's current certificate, from this CA (or an upstream leaf
    /// this gateway brokered), unexpired, and the device's current one in the inventory (or the
    /// one it replaced, inside [`crate::leaves::GRACE`]), and a CSR whose subject and SANs are identical
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
        // One read of the inventory for both: the device's cut-off count and its standing.
        let cuts = {
            let inv = self.inventory().map_err(|d| d.device(&device))?;
            lifecycle::may_hold(&inv, &device, &csr.spki_der)
                .map_err(|d| d.names(names.clone()))?;
            inv.cuts(&device)
        };
        Ok(Authorized {
            device,
            names,
            csr,
            claim: None,
            renews: Some(serial),
            lifetime: None,
            server_auth: true,
            cuts,
        })
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
            if req.path == "/crl" {
                return match req.method.as_str() {
                    "GET" => Ok(("crl", None)),
                    _ => Err(Response::text(405, "crl takes GET").header("Allow", "GET")),
                };
            }
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
            "cacerts" | "csrattrs" | "crl" => "GET",
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

    /// Records `outcome` in the audit log and inventory and turns it into the answer. An issuance
    /// is checked again here, when its certificate is about to go out, against the inventory as
    /// it is now (a client certificate superseded meanwhile, a device revoked or disabled, a
    /// compromised key): if that fails, or its audit line or inventory row cannot be written,
    /// the certificate is never delivered (fail closed).
    fn finish(&mut self, op: &str, client: IpAddr, outcome: Result<Granted, Denial>) -> Response {
        // Checked and recorded as one step: the inventory's gates again, the audit line, then the
        // device's row; any of them failing means no certificate (see `record::commit_issues`).
        let outcome = outcome.and_then(|g| self.commit_issue(op, client, g));
        self.respond(op, client, outcome)
    }

    /// The answer for a committed (or refused) `outcome`; a denial is recorded here.
    fn respond(&mut self, op: &str, client: IpAddr, outcome: Result<Granted, Denial>) -> Response {
        if op == "simplereenroll" {
            self.note_reenroll(&outcome);
        }
        // Issuances were recorded by their commit; denials (and the challenge) are recorded here.
        if outcome.is_err() {
            let _ = self.record(op, client, &outcome);
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

impl Est {
    /// The operation `req` asks for and its outcome before the commit (signed, not yet
    /// recorded), or the answer when there is nothing to commit (cacerts, csrattrs, the CRL,
    /// a refused route).
    fn outcome(
        &mut self,
        req: &Request,
        peer: &PeerInfo,
    ) -> Result<(&'static str, Result<Granted, Denial>), Response> {
        let (op, label) = match self.route(req) {
            Ok(("crl", _)) => return Err(self.crl()),
            Ok(r) => r,
            Err(resp) => return Err(resp),
        };
        let (op, outcome) = match op {
            "simplereenroll" => (
                "simplereenroll",
                self.authorize(op, label, req, peer)
                    .and_then(|a| self.grant_local(a, None, Origin::Local)),
            ),
            "serverkeygen" => ("serverkeygen", self.enroll(req, peer, true, label)),
            _ => ("simpleenroll", self.enroll(req, peer, false, label)),
        };
        Ok((op, outcome))
    }
}

impl Handler for Est {
    /// Answers at once, from the local CA (no brokering: see [`Handler::answer`]).
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response {
        match self.outcome(req, peer) {
            Ok((op, outcome)) => self.finish(op, peer.addr.ip(), outcome),
            Err(resp) => resp,
        }
    }

    /// With a broker, `simpleenroll` and `simplereenroll` go through it (and may be parked).
    /// Otherwise an issuance is signed at once and parked for the group commit that ends this
    /// turn of the loop ([`Est::commit_pending`]): issuances that arrive together share one
    /// sync of each store. Everything else is answered at once.
    fn answer(&mut self, req: &Request, peer: &PeerInfo) -> Answer {
        let brokered = self.broker.as_ref().is_some_and(|b| b.config().is_some());
        match self.route(req) {
            Ok((op @ ("simpleenroll" | "simplereenroll"), label)) if brokered => {
                let op = op.to_owned();
                self.answer_brokered(&op, label, req, peer)
            }
            _ => match self.outcome(req, peer) {
                Ok((op, Ok(granted))) => {
                    self.next_pending += 1;
                    let id = PENDING_IDS | self.next_pending;
                    let issue = record::Issue {
                        op: op.to_owned(),
                        client: peer.addr.ip(),
                        granted,
                    };
                    self.pending.push((id, issue));
                    Answer::Later(id)
                }
                Ok((op, Err(d))) => Answer::Now(self.respond(op, peer.addr.ip(), Err(d))),
                Err(resp) => Answer::Now(resp),
            },
        }
    }

    fn rejected(&mut self, status: u16, reason: &str, peer: &PeerInfo) {
        let now = self.clock.now();
        self.record_denial(now, "http", peer.addr.ip(), &Denial::new(status, reason));
    }
}

/// The status for a refused token: 401 for refused credentials (RFC 7235 §3.1, RFC 7030
/// §3.2.3), so the client may ask again; 403 while every use is held by an enrollment in progress;
/// 500 when the device's token could not be read back (the gateway's fault: refused, logged).
fn token_denial_status(d: token::Denial) -> u16 {
    match d {
        token::Denial::InUse => 403,
        token::Denial::Unreadable => 500,
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
mod tests;
