//! The broker: for each leaf enrollment, the decision between the upstream ACME CA, a cached
//! upstream certificate and a local interim one (doc/design.md, issue 4).
//!
//! - **upstream**: the gateway orders a certificate for the leaf's names from the upstream
//!   (RFC 8555 §7.4) on the leaf's behalf and finalizes it with the leaf's own CSR, so the
//!   leaf's key never leaves it. The [`worker`] thread does the blocking part; the EST request
//!   is parked ([`crate::http::Answer::Later`]) for at most `upstream_wait`.
//! - **cached**: an order that outlived the wait finishes in the background; the leaf was told
//!   `202 Accepted` + `Retry-After` (RFC 7030 §4.2.3) and its retry (same device, same public
//!   key) gets the certificate from `<state_dir>/broker.json`.
//! - **interim**: while the upstream is down (see [`health`]), or when an order fails, or when
//!   the worker has heard nothing from the upstream for `upstream_wait`, the local CA issues a
//!   short-lived certificate (`interim_lifetime`) at once. The leaf's next re-enrollment, with
//!   the upstream back, upgrades it.
//!
//! This module is the main loop's side; it never blocks.

pub mod health;
pub mod worker;

use std::collections::HashMap;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::{self, Config};
use crate::crypto::{self, CertInfo};
use crate::leaves::Source;
use crate::store;

pub use health::State;
pub use worker::{Event, Handle, Job};

/// Whose order: the device and the SHA-256 (hex) of the public key in its CSR.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeafKey {
    /// The device (bootstrap token user, or certificate CN on re-enrollment).
    pub device: String,
    /// hex(SHA-256(SubjectPublicKeyInfo DER)).
    pub spki: String,
}

impl LeafKey {
    /// The key for `device` enrolling the public key `spki_der`.
    pub fn new(device: &str, spki_der: &[u8]) -> LeafKey {
        LeafKey {
            device: device.to_owned(),
            spki: crypto::hex(&crypto::sha256(spki_der)),
        }
    }
}

/// Where a leaf's certificate came from, as the audit log says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The local CA, by policy (no broker).
    Local,
    /// The local CA, standing in for the upstream.
    Interim,
    /// The upstream, within the request.
    Upstream,
    /// The upstream, finished after a `202` and kept for the retry.
    Cached,
}

impl Origin {
    /// The audit log's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Local => "local",
            Origin::Interim => "interim",
            Origin::Upstream => "upstream",
            Origin::Cached => "cached",
        }
    }

    /// The inventory's source.
    pub fn source(self) -> Source {
        match self {
            Origin::Local => Source::Local,
            Origin::Interim => Source::Interim,
            Origin::Upstream | Origin::Cached => Source::Upstream,
        }
    }
}

/// What to do with an enrollment right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Hand out this finished upstream chain (PEM).
    Cached(String),
    /// Issue an interim certificate now.
    Interim(&'static str),
    /// Park the request under this id; [`Broker::poll`] resolves it.
    Wait(u64),
}

/// How a parked request ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The upstream issued: the chain, PEM.
    Issued {
        /// The parked id.
        id: u64,
        /// The chain.
        chain_pem: String,
    },
    /// Fall back to an interim certificate.
    Interim {
        /// The parked id.
        id: u64,
        /// Why, for the log.
        reason: String,
    },
    /// Answer `202 Accepted` with `Retry-After` (seconds); the order goes on.
    Retry {
        /// The parked id.
        id: u64,
        /// Seconds.
        after: u64,
    },
}

impl Resolution {
    /// The parked id.
    pub fn id(&self) -> u64 {
        match self {
            Resolution::Issued { id, .. }
            | Resolution::Interim { id, .. }
            | Resolution::Retry { id, .. } => *id,
        }
    }
}

/// `<state_dir>/broker.json`: finished orders nobody has collected yet, and the fingerprints of
/// upstream leaves handed out (re-enrollment accepts them as the client certificate). Written
/// only on issuance.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    cache: Vec<Cached>,
    upstream_leaves: Vec<Delivered>,
    /// The CA certificates above the upstream leaves handed out, for `/cacerts`.
    #[serde(default)]
    upstream_issuers: Vec<IssuerCert>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IssuerCert {
    /// base64 DER.
    der: String,
    not_after: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    key: LeafKey,
    chain_pem: String,
    not_after: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Delivered {
    sha256: String,
    not_after: i64,
}

/// The main loop's broker: the worker handle, the parked requests, the cache.
pub struct Broker {
    cfg: Option<config::Broker>,
    state_dir: PathBuf,
    clock: Arc<dyn Clock>,
    worker: Handle,
    saved: Saved,
    /// Parked ids waiting on each key's order; an entry means an order is in flight.
    inflight: HashMap<LeafKey, Vec<u64>>,
    /// Parked ids: whose, and when they were parked.
    deadlines: HashMap<u64, (LeafKey, Instant)>,
    next_id: u64,
    renewed: bool,
    /// When a parked request last ran out its wait without one upstream response: until the
    /// upstream answers again, nobody else waits.
    silent_from: Option<Instant>,
    /// Upstream revocations handed to the worker, by serial, and when.
    revoking: HashMap<String, Instant>,
    /// Finished upstream revocations, for the main loop to record ([`Broker::take_revoked`]).
    revoked: Vec<(String, Result<(), String>)>,
}

/// `<state_dir>/broker.json`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("broker.json")
}

impl Broker {
    /// Starts the worker when `cfg` has anything for it: an ACME certificate to keep renewed,
    /// or a broker section. None otherwise (standalone).
    pub fn start(cfg: &Config, clock: Arc<dyn Clock>) -> io::Result<Option<Broker>> {
        if cfg.broker.is_none() && cfg.certificates.iter().all(|c| c.directory.is_none()) {
            return Ok(None);
        }
        let worker = Handle::spawn(cfg, clock.clone())?;
        let saved = store::read_optional(&path_in(&cfg.main.state_dir))
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        Ok(Some(Broker {
            cfg: cfg.broker.clone(),
            state_dir: cfg.main.state_dir.clone(),
            clock,
            worker,
            saved,
            inflight: HashMap::new(),
            deadlines: HashMap::new(),
            next_id: 1,
            renewed: false,
            silent_from: None,
            revoking: HashMap::new(),
            revoked: Vec::new(),
        }))
    }

    /// Hands a new config to the worker (SIGHUP).
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.cfg = cfg.broker.clone();
        self.worker.submit(Job::Reconfigure(Box::new(cfg.clone())));
    }

    /// Hands `gatecert renew` ([`crate::control`]) to the worker; the answer comes on the
    /// returned channel. `None` when the worker is gone.
    pub fn renew(
        &self,
        force: bool,
        cert: Option<String>,
        issuer: Option<String>,
    ) -> Option<std::sync::mpsc::Receiver<(i32, String)>> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.worker
            .submit(Job::Renew {
                force,
                cert,
                issuer,
                reply,
            })
            .then_some(answer)
    }

    /// The broker section, when leaf enrollments are brokered.
    pub fn config(&self) -> Option<&config::Broker> {
        self.cfg.as_ref()
    }

    /// The upstream's health as last judged.
    pub fn state(&self) -> State {
        self.worker.shared().state()
    }

    /// The socket the main loop polls for worker events.
    pub fn wake(&self) -> &Arc<UnixStream> {
        self.worker.wake()
    }

    /// What to do with an enrollment of `csr` (verified) for `key`.
    pub fn decide(
        &mut self,
        key: &LeafKey,
        dns: &[String],
        ips: &[std::net::IpAddr],
        csr_der: &[u8],
    ) -> Decision {
        let Some(b) = &self.cfg else {
            return Decision::Interim("brokering is off");
        };
        let wait = Duration::from_secs(b.upstream_wait);
        if let Some(i) = self.saved.cache.iter().position(|c| &c.key == key) {
            let c = self.saved.cache.remove(i);
            self.save();
            if c.not_after > self.clock.now() {
                return Decision::Cached(c.chain_pem);
            }
        }
        if self.state() == State::Down {
            return Decision::Interim("the upstream CA is down");
        }
        let shared = self.worker.shared();
        let silent = self.silent_from.is_some_and(|t| shared.silent_since(t));
        if silent || shared.stalled(wait) {
            return Decision::Interim("the upstream CA is not answering");
        }
        if !self.inflight.contains_key(key) {
            let job = Job::Order {
                key: key.clone(),
                dns: dns.to_vec(),
                ips: ips.to_vec(),
                csr_der: csr_der.to_vec(),
            };
            if !self.worker.submit(job) {
                return Decision::Interim("the upstream worker has stopped");
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.inflight.entry(key.clone()).or_default().push(id);
        self.deadlines.insert(id, (key.clone(), Instant::now()));
        Decision::Wait(id)
    }

    /// The earliest deadline of a parked request (the main loop's poll timeout).
    pub fn next_deadline(&self) -> Option<Instant> {
        let wait = Duration::from_secs(self.cfg.as_ref()?.upstream_wait);
        self.deadlines.values().map(|(_, t)| *t + wait).min()
    }

    /// True once after the worker installed a renewed gateway certificate.
    pub fn take_renewed(&mut self) -> bool {
        std::mem::take(&mut self.renewed)
    }

    /// Takes the worker's events and the passed deadlines; returns what to do with each
    /// parked request that is due.
    pub fn poll(&mut self) -> Vec<Resolution> {
        let mut out = Vec::new();
        for event in self.worker.events() {
            match event {
                Event::Issued { key, chain_pem } => {
                    let waiting = self.take_waiting(&key);
                    if waiting.is_empty() {
                        self.keep(key, &chain_pem);
                    }
                    out.extend(waiting.into_iter().map(|id| Resolution::Issued {
                        id,
                        chain_pem: chain_pem.clone(),
                    }));
                }
                Event::Failed { key, error } => {
                    out.extend(
                        self.take_waiting(&key)
                            .into_iter()
                            .map(|id| Resolution::Interim {
                                id,
                                reason: error.clone(),
                            }),
                    );
                }
                Event::Renewed { .. } => self.renewed = true,
                Event::Revoked { serial, result } => {
                    self.revoking.remove(&serial);
                    self.revoked.push((serial, result));
                }
            }
        }
        let wait = self.cfg.as_ref().map_or(5, |b| b.upstream_wait);
        let now = Instant::now();
        let due: Vec<u64> = self
            .deadlines
            .iter()
            .filter(|(_, (_, t))| *t + Duration::from_secs(wait) <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some((key, parked_at)) = self.deadlines.remove(&id) else {
                continue;
            };
            if let Some(ids) = self.inflight.get_mut(&key) {
                // The order goes on; its result goes to the cache unless someone else waits.
                ids.retain(|i| *i != id);
            }
            // Down, or not one response from the upstream while this request waited: a
            // blackhole, not a slow CA. The leaf gets an interim certificate, not a 202.
            if self.worker.shared().silent_since(parked_at) {
                self.silent_from = Some(parked_at);
            }
            if self.state() == State::Down || self.silent_from == Some(parked_at) {
                out.push(Resolution::Interim {
                    id,
                    reason: "no answer from the upstream CA within upstream_wait".into(),
                });
            } else {
                out.push(Resolution::Retry {
                    id,
                    after: wait.max(1) * 2,
                });
            }
        }
        out
    }

    /// Hands an upstream revocation to the worker unless it is already there. False when it
    /// is (or the worker is gone).
    pub fn revoke(&mut self, serial: &str, der: Vec<u8>, reason: u8) -> bool {
        if self.revoking.contains_key(serial) {
            return false;
        }
        let sent = self.worker.submit(Job::Revoke {
            serial: serial.to_owned(),
            der,
            reason,
        });
        if sent {
            self.revoking.insert(serial.to_owned(), Instant::now());
        }
        sent
    }

    /// The upstream revocations finished since the last call: (serial, outcome).
    pub fn take_revoked(&mut self) -> Vec<(String, Result<(), String>)> {
        std::mem::take(&mut self.revoked)
    }

    /// Drops a parked request (its client is gone); its order's result goes to the cache.
    pub fn forget(&mut self, id: u64) {
        if let Some((key, _)) = self.deadlines.remove(&id) {
            if let Some(ids) = self.inflight.get_mut(&key) {
                ids.retain(|i| *i != id);
            }
        }
    }

    /// Notes an upstream leaf handed out, so it is accepted for re-enrollment.
    pub fn remember(&mut self, leaf_der: &[u8], not_after: i64) {
        let now = self.clock.now();
        self.saved.upstream_leaves.retain(|d| d.not_after > now);
        self.saved.upstream_leaves.push(Delivered {
            sha256: crypto::hex(&crypto::sha256(leaf_der)),
            not_after,
        });
        self.save();
    }

    /// Notes the CA certificates above an upstream leaf handed out (its chain after the leaf),
    /// so that `/cacerts` carries them (RFC 7030 §4.1.3). Written only when one is new.
    pub fn remember_issuers(&mut self, issuers: &[Vec<u8>]) {
        let now = self.clock.now();
        let before = self.saved.upstream_issuers.len();
        self.saved.upstream_issuers.retain(|c| c.not_after > now);
        let mut changed = before != self.saved.upstream_issuers.len();
        for der in issuers {
            let b64 = crypto::b64(der);
            if self.saved.upstream_issuers.iter().any(|c| c.der == b64) {
                continue;
            }
            let Ok(info) = CertInfo::from_der(der) else {
                continue;
            };
            self.saved.upstream_issuers.push(IssuerCert {
                der: b64,
                not_after: info.not_after,
            });
            changed = true;
        }
        if changed {
            self.save();
        }
    }

    /// The upstream CA certificates for `/cacerts`: the gateway's own ACME chain from the
    /// broker's certificate (`certs/<name>/live/chain.pem`) and the issuers of the upstream leaves
    /// delivered so far, unexpired, each once.
    pub fn upstream_issuers(&self) -> Vec<Vec<u8>> {
        let now = self.clock.now();
        let mut out: Vec<Vec<u8>> = Vec::new();
        if let Some(b) = &self.cfg {
            let chain = self
                .state_dir
                .join("certs")
                .join(&b.certificate)
                .join("live/chain.pem");
            if let Ok(Some(pem)) = store::read_optional(&chain) {
                for c in crypto::certs_from_pem(&pem).unwrap_or_default() {
                    out.push(c.as_ref().to_vec());
                }
            }
        }
        for c in self
            .saved
            .upstream_issuers
            .iter()
            .filter(|c| c.not_after > now)
        {
            if let Ok(der) = crypto::b64_decode(c.der.as_bytes()) {
                if !out.contains(&der) {
                    out.push(der);
                }
            }
        }
        out
    }

    /// True when `leaf_der` is an upstream leaf this gateway brokered.
    pub fn is_upstream_leaf(&self, leaf_der: &[u8]) -> bool {
        let h = crypto::hex(&crypto::sha256(leaf_der));
        self.saved.upstream_leaves.iter().any(|d| d.sha256 == h)
    }

    fn take_waiting(&mut self, key: &LeafKey) -> Vec<u64> {
        let ids = self.inflight.remove(key).unwrap_or_default();
        ids.into_iter()
            .filter(|id| self.deadlines.remove(id).is_some())
            .collect()
    }

    /// Keeps a finished upstream chain for `key`'s retry.
    pub fn keep(&mut self, key: LeafKey, chain_pem: &str) {
        let not_after = crypto::certs_from_pem(chain_pem)
            .ok()
            .and_then(|c| c.first().and_then(|d| CertInfo::from_der(d.as_ref()).ok()))
            .map_or(0, |i| i.not_after);
        log::info!("upstream certificate for {} kept for its retry", key.device);
        let now = self.clock.now();
        self.saved
            .cache
            .retain(|c| c.key != key && c.not_after > now);
        self.saved.cache.push(Cached {
            key,
            chain_pem: chain_pem.to_owned(),
            not_after,
        });
        self.save();
    }

    fn save(&self) {
        let text = serde_json::to_string_pretty(&self.saved).unwrap_or_default();
        if let Err(e) =
            store::write_if_changed(&path_in(&self.state_dir), text.as_bytes(), store::PUBLIC)
        {
            log::error!("cannot write the broker cache: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
