//! The upstream worker: the one helper thread (doc/design.md) that owns every blocking call to an
//! upstream ACME CA, so the main loop never waits on the network.
//!
//! It runs brokered leaf orders ([`Job::Order`]) one at a time, keeps every ACME certificate
//! of the gateway renewed (a [`Queue`] keyed on [`renew::decide`]'s time, through
//! [`renew::renew_one`]; failures back off with [`schedule::backoff`]), tracks the broker
//! upstream's [`Health`] and probes the directory while it is down. It reports through a
//! channel and a byte on a wakeup socket the main loop polls.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::health::{self, Health, Outcome, State};
use super::LeafKey;
use crate::acme::transport::{self, Failure, Method, Transport, UreqTransport};
use crate::acme::{self, Client};
use crate::clock::{Clock, SystemClock};
use crate::config::{Certificate, Config};
use crate::crypto::{self, CertInfo};
use crate::renew::{self, Env};
use crate::schedule::{self, Queue};
use crate::store::SetDir;

/// Work for the thread.
#[derive(Debug)]
pub enum Job {
    /// Order a certificate for a leaf's CSR from the broker's upstream.
    Order {
        /// Whose.
        key: LeafKey,
        /// dNSName SANs of the CSR.
        dns: Vec<String>,
        /// iPAddress SANs of the CSR.
        ips: Vec<IpAddr>,
        /// The leaf's CSR, DER: what the order is finalized with.
        csr_der: Vec<u8>,
    },
    /// Revoke an upstream certificate this gateway brokered (RFC 8555 §7.6), with the
    /// broker's account: the one that ordered it.
    Revoke {
        /// Serial, hex (how the result is matched).
        serial: String,
        /// The certificate, DER.
        der: Vec<u8>,
        /// CRLReason code (RFC 5280 §5.3.1); 0 is sent as no reason.
        reason: u8,
    },
    /// A new config (SIGHUP).
    Reconfigure(Box<Config>),
    /// `gatecert renew` handed to the service ([`crate::control`]): renew the ACME
    /// certificates (all, or `cert`) if due or `force`, here so that no certificate is ever
    /// ordered twice at once; the answer is the exit code and what to print.
    Renew {
        /// Renew even when not due.
        force: bool,
        /// Only this certificate.
        cert: Option<String>,
        /// Re-issue from this issuer (`renew --now --issuer NAME`).
        issuer: Option<String>,
        /// Where the answer goes.
        reply: Sender<(i32, String)>,
    },
    /// Finish.
    Stop,
}

/// What the thread reports.
#[derive(Debug)]
pub enum Event {
    /// A leaf order finished: the chain, PEM, leaf first.
    Issued {
        /// Whose.
        key: LeafKey,
        /// The chain.
        chain_pem: String,
    },
    /// A leaf order failed.
    Failed {
        /// Whose.
        key: LeafKey,
        /// Why, for the log.
        error: String,
    },
    /// An upstream revocation finished: `Ok` when the upstream revoked it (or had already:
    /// `alreadyRevoked`, RFC 8555 §7.6), else why not.
    Revoked {
        /// Serial, hex.
        serial: String,
        /// The outcome.
        result: Result<(), String>,
    },
    /// A gateway certificate was renewed and installed: the listener should pick it up.
    Renewed {
        /// The certificate section.
        name: String,
    },
}

/// What the main loop may read of the worker without asking it.
#[derive(Debug)]
pub struct Shared {
    state: AtomicU8,
    epoch: Instant,
    /// When the current upstream call began and when the upstream last answered. A mutex, not
    /// two `AtomicU64`s: 32-bit MIPS has no 64-bit atomics.
    stamps: Mutex<Stamps>,
}

/// Microseconds since [`Shared::epoch`] + 1, so that 0 can mean "never".
#[derive(Debug, Default, Clone, Copy)]
struct Stamps {
    /// When the current upstream call began; 0 = idle.
    busy_since: u64,
    /// The last upstream response; 0 = none yet.
    last_response: u64,
}

impl Shared {
    fn new(state: State) -> Shared {
        Shared {
            state: AtomicU8::new(state.to_u8()),
            epoch: Instant::now(),
            stamps: Mutex::new(Stamps::default()),
        }
    }

    fn stamps(&self) -> std::sync::MutexGuard<'_, Stamps> {
        // Two plain integers: a poisoned lock still holds usable values.
        self.stamps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Microseconds since `epoch`, + 1 so that 0 can mean "never".
    fn stamp(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    /// The upstream's health as the worker last judged it.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::SeqCst))
    }

    /// True when the worker has been inside upstream work for longer than `wait` without a
    /// single response: a blackholed upstream, before its timeout marks it down.
    pub fn stalled(&self, wait: Duration) -> bool {
        let st = *self.stamps();
        if st.busy_since == 0 {
            return false;
        }
        let heard = st.busy_since.max(st.last_response);
        self.stamp().saturating_sub(heard) > wait.as_micros() as u64
    }

    /// True when the worker is inside upstream work and has had no response since `since`.
    pub fn silent_since(&self, since: Instant) -> bool {
        let since = since.saturating_duration_since(self.epoch).as_micros() as u64 + 1;
        let st = *self.stamps();
        st.busy_since != 0 && st.last_response < since
    }

    fn begin(&self) {
        let now = self.stamp();
        self.stamps().busy_since = now;
    }

    fn end(&self) {
        self.stamps().busy_since = 0;
    }
}

/// The main loop's side: a job channel, an event channel and the wakeup socket.
pub struct Handle {
    jobs: Sender<Job>,
    events: Receiver<Event>,
    /// Shared, so that the loop can poll it without a `dup` per turn.
    wake: Arc<UnixStream>,
    shared: Arc<Shared>,
}

impl Handle {
    /// Starts the thread for `cfg`.
    pub fn spawn(cfg: &Config, clock: Arc<dyn Clock>) -> io::Result<Handle> {
        let (wake, wake_tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let (jobs, job_rx) = mpsc::channel();
        let (event_tx, events) = mpsc::channel();
        let health = Health::load(&cfg.main.state_dir, clock.now());
        let shared = Arc::new(Shared::new(health.state));
        let mut worker = Worker {
            cfg: cfg.clone(),
            clock,
            shared: shared.clone(),
            events: event_tx,
            wake: wake_tx,
            health,
            probe_attempt: 0,
            next_probe: None,
            queue: Queue::new(),
            renewals: HashMap::new(),
            issuers: renew::issuers::load_record(&broker_record(&cfg.main.state_dir)),
        };
        if worker.health.state == State::Down {
            worker.next_probe = Some(worker.clock.now());
        }
        std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || worker.run(job_rx))?;
        Ok(Handle {
            jobs,
            events,
            wake: Arc::new(wake),
            shared,
        })
    }

    /// Queues a job. False when the thread is gone.
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// The socket that becomes readable when events are waiting.
    pub fn wake(&self) -> &Arc<UnixStream> {
        &self.wake
    }

    /// Drains the wakeup socket and returns every waiting event.
    pub fn events(&self) -> Vec<Event> {
        let mut buf = [0u8; 64];
        while matches!(io::Read::read(&mut &*self.wake, &mut buf), Ok(n) if n > 0) {}
        self.events.try_iter().collect()
    }

    /// The shared view.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // Not joined: the thread may be inside a blocking call; it ends after it.
        let _ = self.jobs.send(Job::Stop);
    }
}

/// A transport that notes every response in [`Shared`].
struct Tracking<'a> {
    inner: UreqTransport,
    shared: &'a Shared,
}

impl Transport for Tracking<'_> {
    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<transport::Response, transport::Error> {
        let r = self.inner.request(method, url, headers, body);
        if r.is_ok() {
            let now = self.shared.stamp();
            self.shared.stamps().last_response = now;
        }
        r
    }
}

#[derive(Debug, Default)]
struct RenewState {
    failures: u32,
    warned_day: i64,
}

struct Worker {
    cfg: Config,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    events: Sender<Event>,
    wake: UnixStream,
    health: Health,
    probe_attempt: u32,
    next_probe: Option<i64>,
    queue: Queue,
    renewals: HashMap<String, RenewState>,
    /// The broker's `list issuer`: which one is in use and the others' failures.
    issuers: crate::failover::Record,
}

/// The broker's [`crate::failover::Record`] in `state_dir`.
fn broker_record(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join(crate::failover::BROKER_RECORD)
}

impl Worker {
    fn run(&mut self, jobs: Receiver<Job>) {
        self.schedule_all();
        loop {
            let now = self.clock.now();
            let next = [self.queue.next_at(), self.next_probe]
                .into_iter()
                .flatten()
                .min();
            let wait = next.map_or(3600, |t| (t - now).clamp(0, 3600)) as u64;
            match jobs.recv_timeout(Duration::from_secs(wait)) {
                Ok(Job::Order {
                    key,
                    dns,
                    ips,
                    csr_der,
                }) => self.order(key, dns, ips, &csr_der),
                Ok(Job::Revoke {
                    serial,
                    der,
                    reason,
                }) => self.revoke(serial, &der, reason),
                Ok(Job::Renew {
                    force,
                    cert,
                    issuer,
                    reply,
                }) => {
                    let _ = reply.send(self.renew_now(force, cert.as_deref(), issuer.as_deref()));
                }
                Ok(Job::Reconfigure(cfg)) => {
                    self.cfg = *cfg;
                    self.queue = Queue::new();
                    self.schedule_all();
                }
                Ok(Job::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.renew_due();
            self.probe_if_due();
        }
    }

    fn schedule_all(&mut self) {
        let now = self.clock.now();
        for c in self
            .cfg
            .certificates
            .iter()
            .filter(|c| c.directory.is_some())
        {
            self.queue.schedule(&c.name, now);
        }
    }

    fn send(&self, event: Event) {
        if self.events.send(event).is_ok() {
            let _ = (&self.wake).write(b"!");
        }
    }

    /// The broker's certificate section (directory, account, trust, challenge listeners).
    fn broker_cert(&self) -> Option<&Certificate> {
        let b = self.cfg.broker.as_ref()?;
        self.cfg
            .certificates
            .iter()
            .find(|c| c.name == b.certificate)
    }

    fn transport(&self, cert: &Certificate) -> Result<Tracking<'_>, transport::Error> {
        Ok(Tracking {
            inner: UreqTransport::new(
                cert.ca_bundle.as_deref(),
                Duration::from_secs(cert.timeout.max(1)),
            )?,
            shared: &self.shared,
        })
    }

    fn note(&mut self, outcome: &Outcome) {
        let now = self.clock.now();
        if !self.health.update(outcome, now) {
            return;
        }
        let h = &self.health;
        match h.state {
            State::Up => log::info!("upstream CA is up"),
            s => log::warn!(
                "upstream CA is {}: {}",
                s.as_str(),
                h.last_error.as_deref().unwrap_or("slow")
            ),
        }
        if let Err(e) = h.save(&self.cfg.main.state_dir) {
            log::error!("cannot record upstream health: {e}");
        }
        self.shared.state.store(h.state.to_u8(), Ordering::SeqCst);
        if h.state == State::Down {
            self.probe_attempt = 0;
            self.next_probe = Some(now + health::probe_delay(0));
        } else {
            self.next_probe = None;
        }
    }

    /// One brokered order: the broker's directory, account and challenge, finalized with the
    /// leaf's own CSR.
    fn order(&mut self, key: LeafKey, dns: Vec<String>, ips: Vec<IpAddr>, csr_der: &[u8]) {
        let (Some(b), Some(base)) = (self.cfg.broker.clone(), self.broker_cert().cloned()) else {
            self.send(Event::Failed {
                key,
                error: "brokering is off".into(),
            });
            return;
        };
        if self.health.state == State::Down {
            self.send(Event::Failed {
                key,
                error: "the upstream CA is down".into(),
            });
            return;
        }
        let leaf = Certificate {
            name: format!("leaf {}", key.device),
            domains: dns,
            ips,
            challenge: b.challenge,
            dns_hook: b.dns_hook.clone(),
            ..base
        };
        log::info!("brokering {} for {}", names(&leaf), key.device);
        let started = Instant::now();
        self.shared.begin();
        let result = if b.issuers.is_empty() {
            self.order_upstream(&leaf, csr_der, b.upstream_wait)
        } else {
            // A leaf waits on the order: any failure that fails over does so at once (the
            // deadline is now).
            let mut record = std::mem::take(&mut self.issuers);
            let state_dir = self.cfg.main.state_dir.clone();
            let r = renew::issuers::try_in_order(
                &state_dir,
                self.clock.as_ref(),
                "broker",
                &b.issuers,
                &mut record,
                self.clock.now(),
                |i| self.order_upstream(&leaf.via(i), csr_der, b.upstream_wait),
            );
            renew::issuers::store_record(&broker_record(&state_dir), &record);
            self.issuers = record;
            r
        };
        self.shared.end();
        let slow = started.elapsed() > Duration::from_secs(b.upstream_wait);
        match result {
            Ok(chain_pem) => {
                self.note(&Outcome::Ok { slow });
                self.send(Event::Issued { key, chain_pem });
            }
            Err(e) => {
                let error = crate::errchain::one_line(&e);
                log::warn!("upstream order for {} failed: {error}", key.device);
                self.note(&classify(&e).unwrap_or(Outcome::Ok { slow }));
                self.send(Event::Failed { key, error });
            }
        }
    }

    /// One upstream revocation with the broker's account (RFC 8555 §7.6.1: revocation by the
    /// account that holds the authorizations).
    fn revoke(&mut self, serial: String, der: &[u8], reason: u8) {
        let Some(cert) = self.broker_cert().cloned() else {
            self.send(Event::Revoked {
                serial,
                result: Err("no broker upstream is configured".into()),
            });
            return;
        };
        // With `list issuer` the leaf's CA is the one in use when it was ordered: the one in use
        // now first, then the others (only the CA that issued it can revoke it).
        let (first, others): (Certificate, Vec<Certificate>) = match &self.cfg.broker {
            Some(b) if !b.issuers.is_empty() => {
                let mut list: Vec<Certificate> = b.issuers.iter().map(|i| cert.via(i)).collect();
                let active = self.issuers.active.as_deref();
                let at = b
                    .issuers
                    .iter()
                    .position(|i| Some(i.name.as_str()) == active);
                // In range: `list` has one entry per issuer, and there is at least one.
                let first = list.remove(at.unwrap_or(0).min(list.len() - 1));
                (first, list)
            }
            _ => (cert.clone(), Vec::new()),
        };
        self.shared.begin();
        let mut result = self.revoke_upstream(&first, der, reason);
        for other in others {
            if result.is_ok() {
                break;
            }
            result = self.revoke_upstream(&other, der, reason);
        }
        self.shared.end();
        let result = match result {
            Ok(()) => {
                self.note(&Outcome::Ok { slow: false });
                Ok(())
            }
            Err(renew::Error::Acme(acme::Error::Problem { problem, .. }))
                if problem.is("alreadyRevoked") =>
            {
                self.note(&Outcome::Ok { slow: false });
                Ok(())
            }
            Err(e) => {
                let error = crate::errchain::one_line(&e);
                log::warn!("upstream revocation of {serial} failed: {error}");
                if let Some(o) = classify(&e) {
                    self.note(&o);
                }
                Err(error)
            }
        };
        self.send(Event::Revoked { serial, result });
    }

    fn revoke_upstream(
        &self,
        cert: &Certificate,
        der: &[u8],
        reason: u8,
    ) -> Result<(), renew::Error> {
        let directory = cert.directory.as_deref().unwrap_or_default();
        let transport = self.transport(cert)?;
        let sys = SystemClock;
        let sleep = acme::thread_sleep;
        let client = Client::new(&transport, &sys, &sleep, directory)?;
        let login = renew::account(&client, &self.cfg.main.state_dir, cert)?;
        let reason = (reason != 0).then_some(acme::types::RevocationReason(reason));
        client.revoke(&client.account_signer(&login), der, reason)?;
        Ok(())
    }

    fn order_upstream(
        &self,
        leaf: &Certificate,
        csr_der: &[u8],
        wait: u64,
    ) -> Result<String, renew::Error> {
        let directory = leaf.directory.as_deref().unwrap_or_default();
        let transport = self.transport(leaf)?;
        let sys = SystemClock;
        let sleep = acme::thread_sleep;
        let mut client = Client::new(&transport, &sys, &sleep, directory)?;
        // Rate limits beyond the leaf's wait count as down, not as something to sit out.
        client.policy.max_wait = wait.max(1) as i64;
        let env = Env {
            state_dir: &self.cfg.main.state_dir,
            clock: self.clock.as_ref(),
            transport: &transport,
            sleep: &sleep,
            remember_polls: false,
        };
        // The clock gate, as for every order (the caller's check may be stale by now).
        let trusted = crate::trust::ClockTrust::load(env.state_dir, None)
            .check(self.clock.now())
            .map_err(renew::Error::Clock)?;
        let login = renew::account(&client, env.state_dir, leaf)?;
        match renew::order_with_csr(&client, &env, &login, leaf, csr_der, trusted) {
            Err(e) if renew::issuers::forget_stale_account(&e, env.state_dir, directory) => {
                let login = renew::account(&client, env.state_dir, leaf)?;
                renew::order_with_csr(&client, &env, &login, leaf, csr_der, trusted)
            }
            other => other,
        }
    }

    /// [`Job::Renew`]: 0 renewed, 1 nothing due, 2 an error (then the message says which).
    fn renew_now(&mut self, force: bool, only: Option<&str>, pin: Option<&str>) -> (i32, String) {
        let certs: Vec<Certificate> = self
            .cfg
            .certificates
            .iter()
            .filter(|c| c.directory.is_some() && only.is_none_or(|n| n == c.name))
            // `--issuer NAME` without a certificate: every one that lists it.
            .filter(|c| only.is_some() || pin.is_none_or(|p| c.issuers.iter().any(|i| i.name == p)))
            .cloned()
            .collect();
        if let Some(p) = pin.filter(|_| certs.is_empty()) {
            return (2, format!("no certificate lists issuer '{p}'"));
        }
        let (mut renewed, mut errors) = (false, Vec::new());
        for cert in certs {
            let result = self.renew_cert(&cert, force || pin.is_some(), pin);
            let now = self.clock.now();
            let attempt = match &result {
                Ok(renew::Outcome::NotDue(_)) | Err(renew::Error::Clock(_)) => None,
                Ok(_) => Some(Ok(())),
                Err(e) => Some(Err(crate::errchain::one_line(e))),
            };
            if let Some(a) = attempt {
                let a = a.as_ref().map(|_| ()).map_err(String::as_str);
                if let Err(e) =
                    crate::report::record_attempt(&self.cfg.main.state_dir, &cert.name, a, now)
                {
                    log::warn!("{}: cannot record renewal health: {e}", cert.name);
                }
            }
            match result {
                Ok(renew::Outcome::Renewed { not_after }) => {
                    log::info!(
                        "{}: renewed on request, valid until {}",
                        cert.name,
                        crypto::rfc3339(not_after)
                    );
                    self.send(Event::Renewed {
                        name: cert.name.clone(),
                    });
                    self.queue.schedule(&cert.name, now + 60);
                    renewed = true;
                }
                Ok(renew::Outcome::NotDue(_)) => {}
                Err(e) => {
                    let line = format!("{}: {}", cert.name, crate::errchain::one_line(&e));
                    log::error!("{line}");
                    errors.push(line);
                }
            }
        }
        match (errors.is_empty(), renewed) {
            (false, _) => (2, errors.join("\n")),
            (true, true) => (0, String::new()),
            (true, false) => (1, String::new()),
        }
    }

    /// Runs due renewals of the gateway's ACME certificates.
    fn renew_due(&mut self) {
        let now = self.clock.now();
        for name in self.queue.pop_due(now) {
            let Some(cert) = self
                .cfg
                .certificates
                .iter()
                .find(|c| c.name == name && c.directory.is_some())
                .cloned()
            else {
                continue;
            };
            let feeds_health = self
                .broker_cert()
                .is_some_and(|b| b.directory == cert.directory);
            self.shared.begin();
            let directory = cert.directory.as_deref().unwrap_or_default();
            let result = match self.renew_cert(&cert, false, None) {
                Err(e)
                    if renew::issuers::forget_stale_account(
                        &e,
                        &self.cfg.main.state_dir,
                        directory,
                    ) =>
                {
                    self.renew_cert(&cert, false, None)
                }
                other => other,
            };
            self.shared.end();
            let now = self.clock.now();
            // The clock gate refused: nothing was attempted, so it is no renewal failure (no
            // health record, no backoff); look again in a minute.
            if let Err(renew::Error::Clock(why)) = &result {
                log::debug!("{name}: renewal waits for a trusted clock: {why}");
                self.queue.schedule(&name, now + 60);
                continue;
            }
            // `gatecert status` reads certs/<name>/health.json (written only on change).
            let attempt = match &result {
                Ok(renew::Outcome::NotDue(_)) => None,
                Ok(_) => Some(Ok(())),
                Err(e) => Some(Err(crate::errchain::one_line(e))),
            };
            if let Some(a) = attempt {
                let a = a.as_ref().map(|_| ()).map_err(String::as_str);
                if let Err(e) =
                    crate::report::record_attempt(&self.cfg.main.state_dir, &name, a, now)
                {
                    log::warn!("{name}: cannot record renewal health: {e}");
                }
            }
            match result {
                Ok(outcome) => {
                    self.renewals.remove(&name);
                    if feeds_health {
                        self.note(&Outcome::Ok { slow: false });
                    }
                    match outcome {
                        renew::Outcome::Renewed { not_after } => {
                            log::info!(
                                "{name}: renewed, valid until {}",
                                crypto::rfc3339(not_after)
                            );
                            self.send(Event::Renewed { name: name.clone() });
                            // Re-read the decision for the new certificate in a minute.
                            self.queue.schedule(&name, now + 60);
                        }
                        renew::Outcome::NotDue(d) => {
                            self.queue.schedule(&name, schedule::next_look(&d, now))
                        }
                    }
                }
                Err(e) => {
                    if feeds_health {
                        if let Some(o) = classify(&e) {
                            self.note(&o);
                        }
                    }
                    let not_after = live_not_after(&self.cfg.main.state_dir, &name);
                    let st = self.renewals.entry(name.clone()).or_default();
                    st.failures += 1;
                    let at = schedule::backoff(st.failures, now, not_after, server_retry_after(&e));
                    log::warn!(
                        "{name}: renewal failed ({}); the current certificate stays; next try {}",
                        crate::errchain::one_line(&e),
                        crypto::rfc3339(at)
                    );
                    let warn_before = i64::from(self.cfg.main.alert_days) * 86_400;
                    if let Some(na) = not_after {
                        let day = now.div_euclid(86_400);
                        if na - now <= warn_before && st.warned_day != day {
                            st.warned_day = day;
                            log::warn!(
                                "{name}: expires {} and renewal keeps failing ({} attempts)",
                                crypto::rfc3339(na),
                                st.failures
                            );
                        }
                    }
                    self.queue.schedule(&name, at);
                }
            }
        }
    }

    /// Renews one gateway certificate through [`renew::issuers`] (failover between its
    /// issuers; `pin` re-issues from one).
    fn renew_cert(
        &self,
        cert: &Certificate,
        force: bool,
        pin: Option<&str>,
    ) -> Result<renew::Outcome, renew::Error> {
        let sleep = acme::thread_sleep;
        let make = |c: &Certificate| {
            self.transport(c)
                .map(|t| Box::new(t) as Box<dyn Transport + '_>)
        };
        let ctx = renew::issuers::Ctx {
            state_dir: &self.cfg.main.state_dir,
            clock: self.clock.as_ref(),
            sleep: &sleep,
            remember_polls: false,
            transport: &make,
        };
        renew::issuers::renew(&ctx, cert, force, pin)
    }

    /// While down: a cheap GET of the directory, with backoff.
    fn probe_if_due(&mut self) {
        let now = self.clock.now();
        if self.next_probe.is_none_or(|t| t > now) {
            return;
        }
        let Some(mut cert) = self.broker_cert().cloned() else {
            self.next_probe = None;
            return;
        };
        if let Some(b) = &self.cfg.broker {
            // With `list issuer`: the most preferred one not on hold.
            let names: Vec<&str> = b.issuers.iter().map(|i| i.name.as_str()).collect();
            let first = crate::failover::order(&names, &self.issuers, now);
            if let Some(i) = b
                .issuers
                .iter()
                .find(|i| first.first() == Some(&i.name.as_str()))
            {
                cert = cert.via(i);
            }
        }
        let directory = cert.directory.clone().unwrap_or_default();
        let result = self.transport(&cert).and_then(|t| {
            self.shared.begin();
            let r = t.request(Method::Get, &directory, &[], None);
            self.shared.end();
            r
        });
        let outcome = match result {
            Ok(r) if r.status < 500 && r.status != 429 => Outcome::Ok { slow: false },
            Ok(r) => Outcome::Failed(format!("{directory}: HTTP {}", r.status)),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        log::debug!("probe {directory}: {outcome:?}");
        if matches!(outcome, Outcome::Ok { .. }) {
            self.note(&outcome);
        } else {
            self.probe_attempt += 1;
            self.health.last_error = match &outcome {
                Outcome::Failed(e) => Some(e.clone()),
                _ => None,
            };
            self.next_probe = Some(now + health::probe_delay(self.probe_attempt));
        }
    }
}

/// How a failure bears on upstream health. None: the upstream answered (it refused this order
/// for reasons of its own), so it is not a health matter.
fn classify(e: &renew::Error) -> Option<Outcome> {
    let acme_err = match e {
        renew::Error::Transport(t) => return Some(transport_outcome(t, e)),
        renew::Error::Acme(a) => a,
        _ => return None,
    };
    match acme_err {
        acme::Error::Transport(t) => Some(transport_outcome(t, e)),
        acme::Error::Timeout { .. } => Some(Outcome::Failed(e.to_string())),
        a if a.is_retryable() => Some(Outcome::Failed(e.to_string())),
        _ => None,
    }
}

fn transport_outcome(t: &transport::Error, e: &renew::Error) -> Outcome {
    match t.failure() {
        Failure::Timeout | Failure::Refused => Outcome::Unreachable(crate::errchain::one_line(e)),
        Failure::Other => Outcome::Failed(crate::errchain::one_line(e)),
    }
}

/// The server's Retry-After on a refusal (e.g. `rateLimited`, RFC 8555 §6.6): the backoff
/// waits at least that long rather than asking again while the limit still holds.
fn server_retry_after(e: &renew::Error) -> Option<i64> {
    match e {
        renew::Error::Acme(acme::Error::Problem { retry_after, .. }) => *retry_after,
        _ => None,
    }
}

fn names(c: &Certificate) -> String {
    c.domains
        .iter()
        .cloned()
        .chain(c.ips.iter().map(IpAddr::to_string))
        .collect::<Vec<_>>()
        .join(",")
}

/// notAfter of the installed certificate `name`, if any.
fn live_not_after(state_dir: &Path, name: &str) -> Option<i64> {
    let (fullchain, _) = SetDir::new(renew::cert_dir(state_dir, name))
        .read_live()
        .ok()??;
    CertInfo::from_pem(&fullchain).ok().map(|i| i.not_after)
}
