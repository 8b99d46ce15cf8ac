//! The ACME client (RFC 8555): directory, nonces, JWS requests with retry, accounts (with EAB
//! and key rollover), orders for DNS and IP identifiers, finalize, download with alternate
//! chains, revocation, and ACME Renewal Information (RFC 9773). Blocking I/O.
//!
//! The flow that drives these calls top to bottom lives in `renew.rs`; the HTTP underneath is a
//! [`transport::Transport`], so everything here is unit-tested with an in-memory transport.

use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

use crate::clock::Clock;
use crate::crypto::{self, CertInfo, JwsKey, SigningKey};

pub mod jws;
pub mod transport;
pub mod types;

use jws::{JwkSigner, KidSigner, Signer};
use transport::{Method, Response, Transport};
use types::{
    Account, AccountStatus, Authorization, AuthorizationStatus, Directory, NewAccount, NewOrder,
    Order, OrderStatus, Problem, RenewalInfo, RevocationReason,
};

/// An ACME client error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP exchange itself failed (DNS, connect, TLS, timeout, body too large).
    Transport(transport::Error),
    /// The server answered with an RFC 7807 problem document (RFC 8555 §6.7), or with an error
    /// status and no problem document (then `problem` holds the status and the body's start).
    Problem {
        /// The request URL.
        url: String,
        /// The problem.
        problem: Box<Problem>,
        /// The response's Retry-After, seconds from then (RFC 8555 §6.6: a `rateLimited`
        /// answer says when to try again), when it was given.
        retry_after: Option<i64>,
    },
    /// A response body was not the JSON object expected.
    Json {
        /// The request URL.
        url: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A response lacked a header the protocol requires (`Location`, `Replay-Nonce`).
    MissingHeader {
        /// The request URL.
        url: String,
        /// The header name.
        header: &'static str,
    },
    /// An order or authorization did not settle before the deadline.
    Timeout {
        /// What was being waited for.
        what: String,
        /// Its URL.
        url: String,
    },
    /// An order, authorization or account ended in a failed state.
    Failed {
        /// What failed and in which state.
        what: String,
        /// Its URL.
        url: String,
        /// The server's explanation, if it gave one.
        problem: Option<Box<Problem>>,
    },
    /// The configured profile is not in the directory's `meta.profiles`.
    ProfileNotOffered {
        /// The profile asked for.
        profile: String,
        /// The profiles the directory offers.
        offered: Vec<String>,
        /// The directory URL.
        directory: String,
    },
    /// Signing failed (key or RNG).
    Crypto(crypto::Error),
}

impl Error {
    /// True for failures that may go away by themselves: network trouble, server errors, rate
    /// limits, timeouts. False for anything a retry would only repeat.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport(_) | Error::Timeout { .. } => true,
            Error::Problem { problem, .. } => {
                problem.status.is_some_and(|s| s >= 500)
                    || problem.is("rateLimited")
                    || problem.is("serverInternal")
            }
            _ => false,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Transport(e) => write!(f, "{e}"),
            Error::Problem { url, problem, .. } => write!(f, "{url}: {problem}"),
            Error::Json { url, .. } => write!(f, "{url}: unexpected response body"),
            Error::MissingHeader { url, header } => {
                write!(f, "{url}: response has no {header} header")
            }
            Error::Timeout { what, url } => write!(f, "timed out waiting for {what} {url}"),
            Error::Failed { what, url, problem } => {
                write!(f, "{what} {url}")?;
                match problem {
                    Some(p) => write!(f, ": {p}"),
                    None => Ok(()),
                }
            }
            Error::ProfileNotOffered {
                profile,
                offered,
                directory,
            } => {
                write!(f, "profile '{profile}' is not offered by {directory}; ")?;
                if offered.is_empty() {
                    f.write_str("it offers no profiles (remove the profile option)")
                } else {
                    write!(f, "it offers: {}", offered.join(", "))
                }
            }
            Error::Crypto(e) => write!(f, "signing: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Display already printed the transport error; its cause comes next.
            Error::Transport(e) => e.source(),
            Error::Json { source, .. } => Some(source),
            Error::Crypto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<transport::Error> for Error {
    fn from(e: transport::Error) -> Self {
        Error::Transport(e)
    }
}

impl From<crypto::Error> for Error {
    fn from(e: crypto::Error) -> Self {
        Error::Crypto(e)
    }
}

/// How hard the client retries.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// badNonce retries per request (RFC 8555 §6.5: "clients SHOULD retry"). Pebble rejects
    /// ~5% of nonces by default.
    pub bad_nonce_retries: u32,
    /// Seconds one request may spend waiting on 429/503 `Retry-After` before it fails.
    pub max_wait: i64,
    /// Seconds an order or authorization may take to settle.
    pub poll_deadline: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            bad_nonce_retries: 5,
            max_wait: 120,
            poll_deadline: 300,
        }
    }
}

/// The sleep gatecert uses outside tests.
pub fn thread_sleep(d: Duration) {
    std::thread::sleep(d)
}

/// An account the client can sign for: its key and its URL (the JWS `kid`).
#[derive(Debug)]
pub struct Login {
    /// The account key: a file key, or (`account_key_uri`) a key in a PKCS#11 token that signs
    /// every request there.
    pub key: SigningKey,
    /// The account URL.
    pub url: String,
}

impl Login {
    fn signer(&self) -> KidSigner<'_> {
        KidSigner {
            key: &self.key,
            kid: &self.url,
        }
    }
}

/// An ACME client bound to one directory.
pub struct Client<'a> {
    transport: &'a dyn Transport,
    clock: &'a dyn Clock,
    sleep: &'a dyn Fn(Duration),
    /// The directory URL.
    pub url: String,
    /// The directory.
    pub directory: Directory,
    nonce: RefCell<Option<String>>,
    /// Retry behaviour.
    pub policy: RetryPolicy,
}

impl<'a> Client<'a> {
    /// Fetches the directory at `url` (RFC 8555 §7.1.1).
    pub fn new(
        transport: &'a dyn Transport,
        clock: &'a dyn Clock,
        sleep: &'a dyn Fn(Duration),
        url: &str,
    ) -> Result<Self, Error> {
        let mut client = Client {
            transport,
            clock,
            sleep,
            url: url.to_owned(),
            directory: Directory {
                new_nonce: String::new(),
                new_account: String::new(),
                new_order: String::new(),
                new_authz: None,
                revoke_cert: String::new(),
                key_change: String::new(),
                renewal_info: None,
                meta: None,
            },
            nonce: RefCell::new(None),
            policy: RetryPolicy::default(),
        };
        log::info!("directory {url}");
        let resp = client.get(url)?;
        client.directory = json(url, &resp)?;
        Ok(client)
    }

    /// Looks up the account for `key` (`onlyReturnExisting`), or creates it (RFC 8555 §7.3).
    /// `eab` is `(kid, mac_key)` for External Account Binding (§7.3.4).
    pub fn account(
        &self,
        key: impl Into<SigningKey>,
        contact: &[String],
        eab: Option<(&str, &[u8])>,
        only_existing: bool,
    ) -> Result<Login, Error> {
        let key = key.into();
        let url = self.directory.new_account.clone();
        let external_account_binding = match eab {
            Some((kid, mac)) if !only_existing => Some(jws::eab(&key, kid, mac, &url)?),
            _ => None,
        };
        let payload = NewAccount {
            contact: contact.to_vec(),
            terms_of_service_agreed: !only_existing,
            only_return_existing: only_existing,
            external_account_binding,
        };
        let payload = serde_json::to_value(&payload).map_err(|source| Error::Json {
            url: url.clone(),
            source,
        })?;
        let resp = self.post(&url, &JwkSigner(&key), Some(&payload), None)?;
        let account: Account = json(&url, &resp)?;
        let location = header(&url, &resp, "Location")?;
        // A success status without a status field is taken as valid (see `Account::status`);
        // a deactivated or revoked account is refused by the server with `unauthorized`.
        if let Some(status) = account.status.filter(|s| *s != AccountStatus::Valid) {
            return Err(Error::Failed {
                what: format!("account is {status:?}"),
                url: location,
                problem: None,
            });
        }
        Ok(Login { key, url: location })
    }

    /// Replaces the account key (RFC 8555 §7.3.5): the inner JWS is signed by the new key with
    /// `jwk` and carries `{account, oldKey}`; the outer is signed by the old key with `kid`.
    pub fn key_change(&self, login: &Login, new_key: &dyn JwsKey) -> Result<(), Error> {
        let url = &self.directory.key_change;
        let inner = jws::sign(
            &JwkSigner(new_key),
            None,
            url,
            Some(&serde_json::json!({ "account": login.url, "oldKey": login.key.jwk() })),
        )?;
        self.post(url, &login.signer(), Some(&inner), None)?;
        Ok(())
    }

    /// Creates an order (RFC 8555 §7.4). Returns the order URL and the order.
    pub fn new_order(&self, login: &Login, order: &NewOrder) -> Result<(String, Order), Error> {
        if let Some(profile) = &order.profile {
            self.check_profile(profile)?;
        }
        let url = &self.directory.new_order;
        let payload = serde_json::to_value(order).map_err(|source| Error::Json {
            url: url.clone(),
            source,
        })?;
        let resp = self.post(url, &login.signer(), Some(&payload), None)?;
        let location = header(url, &resp, "Location")?;
        Ok((location, json(url, &resp)?))
    }

    /// Fails with a clear error unless the directory offers `profile`.
    pub fn check_profile(&self, profile: &str) -> Result<(), Error> {
        let offered: Vec<String> = self
            .directory
            .meta
            .as_ref()
            .map(|m| m.profiles.keys().cloned().collect())
            .unwrap_or_default();
        if offered.iter().any(|p| p == profile) {
            Ok(())
        } else {
            Err(Error::ProfileNotOffered {
                profile: profile.to_owned(),
                offered,
                directory: self.url.clone(),
            })
        }
    }

    /// Fetches an authorization (POST-as-GET).
    pub fn authorization(&self, login: &Login, url: &str) -> Result<Authorization, Error> {
        let resp = self.post(url, &login.signer(), None, None)?;
        json(url, &resp)
    }

    /// Tells the server the challenge is ready (RFC 8555 §7.5.1: POST `{}`).
    pub fn respond(&self, login: &Login, challenge_url: &str) -> Result<(), Error> {
        self.post(
            challenge_url,
            &login.signer(),
            Some(&serde_json::json!({})),
            None,
        )?;
        Ok(())
    }

    /// Polls an authorization until it leaves `pending` (RFC 8555 §7.5.1), honouring
    /// Retry-After, else backing off exponentially with jitter.
    pub fn poll_authorization(&self, login: &Login, url: &str) -> Result<Authorization, Error> {
        let deadline = self.clock.now() + self.policy.poll_deadline;
        let mut attempt = 0;
        loop {
            let resp = self.post(url, &login.signer(), None, None)?;
            let authz: Authorization = json(url, &resp)?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => return Ok(authz),
                status => {
                    let problem = authz
                        .challenges
                        .iter()
                        .find_map(|c| c.error.clone().map(Box::new));
                    return Err(Error::Failed {
                        what: format!("authorization for {} is {status:?}", authz.ordered()),
                        url: url.to_owned(),
                        problem,
                    });
                }
            }
            self.wait(&resp, attempt, deadline, "authorization", url)?;
            attempt += 1;
        }
    }

    /// Polls an order until `done(status)` or `invalid`.
    pub fn poll_order(
        &self,
        login: &Login,
        url: &str,
        done: fn(OrderStatus) -> bool,
    ) -> Result<Order, Error> {
        let deadline = self.clock.now() + self.policy.poll_deadline;
        let mut attempt = 0;
        loop {
            let resp = self.post(url, &login.signer(), None, None)?;
            let order: Order = json(url, &resp)?;
            if order.status == OrderStatus::Invalid {
                return Err(Error::Failed {
                    what: "order is invalid".into(),
                    url: url.to_owned(),
                    problem: order.error.map(Box::new),
                });
            }
            if done(order.status) {
                return Ok(order);
            }
            self.wait(&resp, attempt, deadline, "order", url)?;
            attempt += 1;
        }
    }

    /// Finalizes with a DER CSR (RFC 8555 §7.4). The finalize response is the updated order:
    /// when it is already `valid` it is used as is; when it is `processing`, the order is
    /// polled after the response's Retry-After (delay-seconds or HTTP-date, RFC 9110
    /// §10.2.3; §7.4: "the client SHOULD ... wait for the time given in the Retry-After"),
    /// else after the usual backoff, until it is valid.
    pub fn finalize(
        &self,
        login: &Login,
        order_url: &str,
        order: &Order,
        csr_der: &[u8],
    ) -> Result<Order, Error> {
        let payload = serde_json::json!({ "csr": crypto::b64url(csr_der) });
        log::info!("finalize {}", order.finalize);
        let resp = self.post(&order.finalize, &login.signer(), Some(&payload), None)?;
        // A server that answers finalize with no order body (seen in the wild) is polled.
        if let Ok(updated) = serde_json::from_slice::<Order>(&resp.body) {
            match updated.status {
                OrderStatus::Valid if updated.certificate.is_some() => return Ok(updated),
                OrderStatus::Invalid => {
                    return Err(Error::Failed {
                        what: "order is invalid after finalize".into(),
                        url: order_url.to_owned(),
                        problem: updated.error.map(Box::new),
                    })
                }
                _ => {}
            }
        }
        let deadline = self.clock.now() + self.policy.poll_deadline;
        self.wait(&resp, 0, deadline, "order", order_url)?;
        self.poll_order(login, order_url, |s| s == OrderStatus::Valid)
    }

    /// Downloads the certificate chain and its alternates (RFC 8555 §7.4.2), PEM, the default
    /// chain first.
    pub fn download(&self, login: &Login, cert_url: &str) -> Result<Vec<String>, Error> {
        const PEM_CHAIN: &str = "application/pem-certificate-chain";
        log::info!("download {cert_url}");
        let resp = self.post(cert_url, &login.signer(), None, Some(PEM_CHAIN))?;
        let mut chains = vec![String::from_utf8_lossy(&resp.body).into_owned()];
        for alt in links(&resp, "alternate") {
            let r = self.post(&alt, &login.signer(), None, Some(PEM_CHAIN))?;
            chains.push(String::from_utf8_lossy(&r.body).into_owned());
        }
        Ok(chains)
    }

    /// Revokes a certificate (RFC 8555 §7.6), signed by `signer` (the account with `kid`, or
    /// the certificate's key with `jwk`).
    pub fn revoke(
        &self,
        signer: &dyn Signer,
        cert_der: &[u8],
        reason: Option<RevocationReason>,
    ) -> Result<(), Error> {
        let mut payload = serde_json::json!({ "certificate": crypto::b64url(cert_der) });
        if let Some(r) = reason {
            payload["reason"] = serde_json::json!(r.0);
        }
        let url = &self.directory.revoke_cert;
        log::info!("revoke {url}");
        self.post(url, signer, Some(&payload), None)?;
        Ok(())
    }

    /// The account signer for revocation by the account key.
    pub fn account_signer<'l>(&self, login: &'l Login) -> KidSigner<'l> {
        login.signer()
    }

    /// Fetches ACME Renewal Information (RFC 9773 §4.1) for `cert_id`. Returns the info and the
    /// server's Retry-After (seconds from now), if given: the client should not ask again
    /// before then.
    pub fn renewal_info(&self, cert_id: &str) -> Result<Option<(RenewalInfo, Option<i64>)>, Error> {
        let Some(base) = &self.directory.renewal_info else {
            return Ok(None);
        };
        let url = format!("{}/{cert_id}", base.trim_end_matches('/'));
        log::info!("renewal info {url}");
        let resp = self.get(&url)?;
        let info = json(&url, &resp)?;
        Ok(Some((info, retry_after(&resp, self.clock.now()))))
    }

    /// A GET with 429/503 Retry-After handling.
    fn get(&self, url: &str) -> Result<Response, Error> {
        let start = self.clock.now();
        loop {
            let resp = self.transport.request(Method::Get, url, &[], None)?;
            self.save_nonce(&resp);
            if resp.status < 400 {
                return Ok(resp);
            }
            if self.retry_later(&resp, start) {
                continue;
            }
            return Err(Error::Problem {
                url: url.to_owned(),
                problem: Box::new(problem(&resp)),
                retry_after: retry_after(&resp, self.clock.now()),
            });
        }
    }

    /// A JWS POST (RFC 8555 §6.2), `payload` `None` being POST-as-GET (§6.3). Retries badNonce
    /// with the nonce from the error response (§6.5), and 429/503 after Retry-After.
    fn post(
        &self,
        url: &str,
        signer: &dyn Signer,
        payload: Option<&serde_json::Value>,
        accept: Option<&str>,
    ) -> Result<Response, Error> {
        let start = self.clock.now();
        let mut bad_nonces = 0;
        loop {
            let nonce = self.fresh_nonce()?;
            let body = jws::sign(signer, Some(&nonce), url, payload)?;
            let body = serde_json::to_vec(&body).map_err(|source| Error::Json {
                url: url.to_owned(),
                source,
            })?;
            let mut headers = vec![("Content-Type", "application/jose+json")];
            if let Some(a) = accept {
                headers.push(("Accept", a));
            }
            let resp = self
                .transport
                .request(Method::Post, url, &headers, Some(&body))?;
            self.save_nonce(&resp);
            if resp.status < 400 {
                return Ok(resp);
            }
            let problem = problem(&resp);
            if problem.is("badNonce") && bad_nonces < self.policy.bad_nonce_retries {
                bad_nonces += 1;
                log::debug!("{url}: badNonce, retrying ({bad_nonces})");
                continue;
            }
            if self.retry_later(&resp, start) {
                continue;
            }
            return Err(Error::Problem {
                url: url.to_owned(),
                problem: Box::new(problem),
                retry_after: retry_after(&resp, self.clock.now()),
            });
        }
    }

    /// For 429 and 503 with a Retry-After that ends within the policy's `max_wait` from
    /// `start`: sleeps until then and returns true.
    fn retry_later(&self, resp: &Response, start: i64) -> bool {
        if !matches!(resp.status, 429 | 503) {
            return false;
        }
        let now = self.clock.now();
        match retry_after(resp, now) {
            Some(secs) if now + secs <= start + self.policy.max_wait => {
                log::info!("server busy (HTTP {}), retrying in {secs}s", resp.status);
                (self.sleep)(Duration::from_secs(secs.max(0) as u64));
                true
            }
            _ => false,
        }
    }

    /// Sleeps before the next poll: Retry-After if the server gave one, else 1, 2, 4, ... 16 s
    /// plus up to 50% jitter. Fails when that would pass `deadline`.
    fn wait(
        &self,
        resp: &Response,
        attempt: u32,
        deadline: i64,
        what: &str,
        url: &str,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let ms = match retry_after(resp, now) {
            Some(secs) => secs.clamp(1, 3600) as u64 * 1000,
            None => {
                let base = 1000u64 << attempt.min(4);
                base + crypto::random_below(base / 2).unwrap_or(0)
            }
        };
        if now + (ms / 1000) as i64 > deadline {
            return Err(Error::Timeout {
                what: what.to_owned(),
                url: url.to_owned(),
            });
        }
        (self.sleep)(Duration::from_millis(ms));
        Ok(())
    }

    /// A nonce: the one saved from the last response, else a new one (RFC 8555 §7.2).
    fn fresh_nonce(&self) -> Result<String, Error> {
        if let Some(n) = self.nonce.borrow_mut().take() {
            return Ok(n);
        }
        let url = &self.directory.new_nonce;
        let resp = self.transport.request(Method::Head, url, &[], None)?;
        match resp.header("Replay-Nonce") {
            Some(n) => Ok(n.to_owned()),
            None if resp.status >= 400 => Err(Error::Problem {
                url: url.clone(),
                problem: Box::new(problem(&resp)),
                retry_after: retry_after(&resp, self.clock.now()),
            }),
            None => Err(Error::MissingHeader {
                url: url.clone(),
                header: "Replay-Nonce",
            }),
        }
    }

    fn save_nonce(&self, resp: &Response) {
        if let Some(n) = resp.header("Replay-Nonce") {
            *self.nonce.borrow_mut() = Some(n.to_owned());
        }
    }
}

/// The ARI certID of a certificate (RFC 9773 §4.1): base64url(AKI keyIdentifier) "."
/// base64url(serial DER content bytes). `None` when the certificate has no AKI.
pub fn cert_id(cert: &CertInfo) -> Option<String> {
    let aki = cert.aki.as_ref()?;
    Some(format!(
        "{}.{}",
        crypto::b64url(aki),
        crypto::b64url(&cert.serial)
    ))
}

/// Picks the chain whose top issuer CN is `preferred`, else one with any issuer CN equal to it,
/// else the first (the server's default).
pub fn select_chain<'c>(chains: &'c [String], preferred: Option<&str>) -> Option<&'c String> {
    let want = match preferred {
        Some(p) if !p.is_empty() => p,
        _ => return chains.first(),
    };
    let issuers = |pem: &String| -> Vec<String> {
        crypto::certs_from_pem(pem)
            .unwrap_or_default()
            .iter()
            .filter_map(|der| CertInfo::from_der(der).ok()?.issuer_cn)
            .collect()
    };
    chains
        .iter()
        .find(|c| issuers(c).last().is_some_and(|cn| cn == want))
        .or_else(|| {
            chains
                .iter()
                .find(|c| issuers(c).iter().any(|cn| cn == want))
        })
        .or(chains.first())
}

/// The problem document in an error response, or one built from the status and body.
fn problem(resp: &Response) -> Problem {
    let mut p = serde_json::from_slice::<Problem>(&resp.body)
        .ok()
        .filter(|p| p.kind.is_some() || p.detail.is_some())
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&resp.body);
            let text: String = text.trim().chars().take(200).collect();
            Problem {
                detail: (!text.is_empty()).then_some(text),
                ..Problem::default()
            }
        });
    p.status.get_or_insert(resp.status);
    p
}

fn json<T: serde::de::DeserializeOwned>(url: &str, resp: &Response) -> Result<T, Error> {
    serde_json::from_slice(&resp.body).map_err(|source| Error::Json {
        url: url.to_owned(),
        source,
    })
}

fn header(url: &str, resp: &Response, name: &'static str) -> Result<String, Error> {
    resp.header(name)
        .map(str::to_owned)
        .ok_or_else(|| Error::MissingHeader {
            url: url.to_owned(),
            header: name,
        })
}

/// The targets of `Link: <url>;rel="REL"` headers (RFC 8288). Public for the fuzz targets.
pub fn links(resp: &Response, rel: &str) -> Vec<String> {
    let mut out = Vec::new();
    for value in resp.headers_all("Link") {
        for link in value.split(',') {
            let mut parts = link.split(';');
            let Some(target) = parts.next().map(str::trim) else {
                continue;
            };
            let Some(target) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) else {
                continue;
            };
            let is_rel = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| r.trim_matches('"').split(' ').any(|r| r == rel))
                    .unwrap_or(false)
            });
            if is_rel {
                out.push(target.to_owned());
            }
        }
    }
    out
}

/// The longest wait a Retry-After can ask for; longer asks are cut to it. RFC 9110 sets no
/// bound, and callers add the delay to the clock: `Retry-After: 9223372036854775807` must not
/// overflow that sum (the `acme_json` fuzz target asserts it).
pub const MAX_RETRY_AFTER: i64 = 30 * 86_400;

/// Retry-After (RFC 9110 §10.2.3) as seconds from `now`: delay-seconds or an HTTP-date, in
/// `0..=MAX_RETRY_AFTER`.
pub fn retry_after(resp: &Response, now: i64) -> Option<i64> {
    let v = resp.header("Retry-After")?.trim();
    let secs = match v.parse::<i64>() {
        Ok(secs) => secs,
        Err(_) => http_date(v)?.saturating_sub(now),
    };
    Some(secs.clamp(0, MAX_RETRY_AFTER))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds.
fn http_date(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, hms, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = MONTHS.iter().position(|x| x == month)? as u8 + 1;
    let date = time::Date::from_calendar_date(
        year.parse().ok()?,
        time::Month::try_from(m).ok()?,
        day.parse().ok()?,
    )
    .ok()?;
    let mut t = hms.split(':').map(|x| x.parse::<u8>().ok());
    let time = time::Time::from_hms(t.next()??, t.next()??, t.next()??).ok()?;
    Some(date.with_time(time).assume_utc().unix_timestamp())
}

#[cfg(test)]
mod tests;
