//! `gatecert run`: the service loop, and `gatecert demo`: the whole job in a temp dir.
//!
//! One thread, one `poll(2)` loop ([`http::Server::poll_once`]): EST connections, a signal pipe
//! (SIGHUP reloads config and certificates; SIGTERM/SIGINT stop cleanly) and a periodic tick for
//! certificate upkeep and, once the ACME side lands, the renewal scheduler.
//!
//! Embedded default: with no CA yet, the local CA is initialised in `<state_dir>/ca`; every
//! standalone certificate (a `certificate` section without `directory`) is issued from it into
//! `<state_dir>/certs/<name>` and reissued in the last third of its life.
//!
//! Clock trust ([`crate::trust`]): the CA is created, and certificates issued, only at a trusted
//! time. Below the floor the service waits (serving what it has), says why in the log, and
//! goes on by itself once the clock is trusted; it never exits for it (procd would give up).

use std::fmt;
use std::io::{self, Read as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acme_server::AcmeServer;
use crate::broker::Broker;
use crate::ca::{self, LocalCa};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::est::{self, Est};
use crate::http::{self, ClientAuth, Limits, Server};
use crate::store;
use crate::trust::{ClockTrust, FloorSource, Untrusted};
use crate::{audit, crypto, leaves, revocation};

mod demo;
mod rotation;

pub use demo::{cmd_demo, est_client};

/// How often upkeep runs (standalone certificates, the listener's certificate, and the
/// renewal scheduler hook).
pub const TICK: Duration = Duration::from_secs(60);

/// The upkeep interval: [`TICK`], or `GATECERT_TICK_SECS` (at least 1) so tests can watch
/// several ticks (e.g. that a steady state writes nothing) without waiting minutes.
pub fn tick() -> Duration {
    std::env::var("GATECERT_TICK_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(TICK, |s| Duration::from_secs(s.max(1)))
}

/// An error starting or running the service.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Another gatecert holds the state directory, or it cannot be created.
    Lock(store::Error),
    /// The local CA could not be opened, initialised or asked to issue.
    Ca(ca::Error),
    /// A certificate set could not be prepared.
    Est(est::Error),
    /// The EST listener could not be set up.
    Http(http::Error),
    /// The config could not be re-read on SIGHUP.
    Config(config::Error),
    /// Signal handlers could not be installed.
    Signals(io::Error),
    /// The control socket could not be set up.
    Control(io::Error),
    /// The upstream worker thread could not be started.
    Worker(io::Error),
    /// The clock is not trusted yet, so the local CA cannot be created.
    Clock(Untrusted),
    /// SIGHUP with a different `state_dir`: the service keeps the one it holds locked.
    StateDirChanged {
        /// The state directory in use (and locked).
        old: PathBuf,
        /// The one the new config names.
        new: PathBuf,
    },
    /// The audit line of the local CA's creation could not be written; the CA was removed.
    Audit(audit::Error),
    /// The ACME server's state could not be read.
    AcmeServer(crate::acme_server::Error),
    /// A standalone certificate could not be issued or installed.
    Standalone {
        /// The certificate section's name.
        name: String,
        /// The cause.
        source: Box<crate::renew::Error>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Lock(_) => f.write_str("cannot take the state directory"),
            Error::Ca(_) => f.write_str("local CA"),
            Error::Est(_) => f.write_str("EST listener certificate"),
            Error::Http(_) => f.write_str("EST listener"),
            Error::Config(_) => f.write_str("reloading the config"),
            Error::Signals(_) => f.write_str("installing signal handlers"),
            Error::Control(_) => f.write_str("binding the control socket"),
            Error::Worker(_) => f.write_str("starting the upstream worker thread"),
            Error::Clock(_) => f.write_str("local CA not created"),
            Error::StateDirChanged { old, new } => write!(
                f,
                "state_dir changed from {} to {}: a restart is needed to move the state \
                 directory; still running on {}",
                old.display(),
                new.display(),
                old.display()
            ),
            Error::Audit(_) => f.write_str("auditing the local CA's creation"),
            Error::AcmeServer(_) => f.write_str("local ACME server"),
            Error::Standalone { name, .. } => {
                write!(f, "standalone certificate '{name}' from the local CA")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Lock(e) => Some(e),
            Error::Ca(e) => Some(e),
            Error::Est(e) => Some(e),
            Error::Standalone { source: e, .. } => Some(e.as_ref()),
            Error::Http(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::Signals(e) | Error::Worker(e) | Error::Control(e) => Some(e),
            Error::Clock(e) => Some(e),
            Error::Audit(e) => Some(e),
            Error::AcmeServer(e) => Some(e),
            Error::StateDirChanged { .. } => None,
        }
    }
}

/// The running service: the local CA behind the EST handler, and the EST listener.
pub struct Service {
    cfg: Config,
    clock: Arc<dyn Clock>,
    est: Est,
    /// The local ACME server under `/acme/` (`config acme_server`), when enabled.
    acme: Option<AcmeServer>,
    server: Option<Server>,
    /// notAfter of the certificate the listener serves, to notice when it changes.
    served: Option<(String, i64)>,
    /// Event counters for metrics (EST requests are counted in [`Service::step`]).
    counters: Arc<crate::report::Counters>,
    /// The floor issuance is waiting for (the clock is untrusted), as last logged.
    waiting: Option<(i64, FloorSource)>,
    /// `leaves.jnl` as the leaf upkeep last saw it ([`Service::leaf_upkeep`]).
    leaves_seen: Option<Option<store::FileStamp>>,
    /// When the CRL must be signed again, Unix seconds.
    crl_due_at: i64,
    /// nextUpdate of the last CRL this service signed.
    crl_next: i64,
    /// Upstream revocations were queued at the last look (then every tick looks again).
    upstream_pending: bool,
    /// Failed upstream revocations: serial -> (failures, next attempt), memory only.
    revoke_retry: std::collections::HashMap<String, (u32, i64)>,
    /// EST is on but has no certificate to serve (logged once, see [`Service::upkeep`]).
    est_off: bool,
    /// The listener's key in a PKCS#11 token could not be used (wrong PIN, token missing): the
    /// error, logged once until it changes or clears.
    listener_key_fault: Option<String>,
    /// Standalone certificates whose deploy hook failed, and when: not issued again before
    /// [`HOOK_RETRY`] has passed or the config is reloaded (else a set restored by the rollback,
    /// still due, would be reissued and the hook run at every tick).
    hook_failed: std::collections::HashMap<String, Instant>,
}

/// How long a standalone certificate whose deploy hook failed waits before the next attempt.
const HOOK_RETRY: Duration = Duration::from_secs(3600);

/// Makes sure `<state_dir>/ca` holds a CA the service may use. With none, creates one; with one
/// that gatecert made on a bad clock ([`LocalCa::made_with_bad_clock`]) and that has issued no
/// leaf, moves it aside and creates a new one. Both only at a trusted time, both audited
/// (`ca-init`, `ca-replace`). `Ok(Some(why))`: the clock is untrusted, nothing was changed.
pub fn ensure_ca(cfg: &Config, now: i64) -> Result<Option<Untrusted>, Error> {
    let state_dir = &cfg.main.state_dir;
    let dir = LocalCa::dir_in(state_dir);
    let bad = LocalCa::exists(&dir) && LocalCa::made_with_bad_clock(&dir);
    if LocalCa::exists(&dir) && !bad {
        return Ok(None);
    }
    if bad && issued_leaves(state_dir) {
        log::error!(
            "the local CA in {} was created with a wrong clock (its root begins before gatecert \
             existed) and has issued leaves, so it is not replaced automatically; move it aside \
             and restart to create a new one",
            dir.display()
        );
        return Ok(None);
    }
    let trusted = match ClockTrust::load(state_dir, None).check(now) {
        Ok(t) => t,
        Err(u) => return Ok(Some(u)),
    };
    let old = if bad {
        let root = LocalCa::open(&dir, &cfg.ca)
            .ok()
            .and_then(|ca| ca.chain_der().last().cloned())
            .unwrap_or_default();
        let not_before = crypto::CertInfo::from_der(&root).map_or(0, |i| i.not_before);
        let moved = LocalCa::retire(&dir).map_err(Error::Ca)?;
        log::warn!(
            "the local CA in {} was created with a wrong clock (root notBefore {}) and issued \
             nothing; moved it to {} and creating a new one",
            dir.display(),
            crypto::rfc3339(not_before),
            moved.display()
        );
        Some((root, not_before, moved))
    } else {
        None
    };
    let ca = LocalCa::init(&dir, &cfg.ca, trusted).map_err(Error::Ca)?;
    let root_fp = crypto::hex(&crypto::sha256(
        ca.chain_der().last().map_or(&[][..], |r| r),
    ));
    let (event, fields) = match &old {
        None => (
            "ca-init",
            serde_json::json!({"via": "run", "root_sha256": root_fp,
                "allow_suffix": cfg.ca.allow_suffix}),
        ),
        Some((root, not_before, moved)) => (
            "ca-replace",
            serde_json::json!({"via": "run", "reason": "created with a wrong clock, issued nothing",
                "old_root_sha256": crypto::hex(&crypto::sha256(root)),
                "old_not_before": not_before, "moved_to": moved.display().to_string(),
                "root_sha256": root_fp, "allow_suffix": cfg.ca.allow_suffix}),
        ),
    };
    let appended = audit::Audit::open(&audit::path_in(state_dir), audit::DEFAULT_MAX_BYTES)
        .and_then(|mut a| a.append(trusted.unix(), event, fields));
    if let Err(e) = appended {
        // No CA without its audit line: undo, and put the old one back.
        let _ = std::fs::remove_dir_all(&dir);
        if let Some((_, _, moved)) = &old {
            let _ = std::fs::rename(moved, &dir);
        }
        return Err(Error::Audit(e));
    }
    Ok(None)
}

/// True when the leaf inventory lists a leaf from the local CA (or cannot be read: then the
/// CA is treated as having issued, and kept).
fn issued_leaves(state_dir: &Path) -> bool {
    match leaves::Inventory::open(&leaves::path_in(state_dir)) {
        Ok(inv) => inv.list().any(|l| l.source != leaves::Source::Upstream),
        Err(e) => {
            log::error!("{e}");
            true
        }
    }
}

impl Service {
    /// Opens (or, at a trusted time, initialises: [`ensure_ca`]) the local CA, issues what
    /// standalone certificates need issuing, and binds the EST listener. `Err(Error::Clock)`
    /// when there is no CA and the clock is untrusted (`gatecert run` waits before calling this).
    pub fn start(cfg: Config, clock: Arc<dyn Clock>) -> Result<Service, Error> {
        let state_dir = cfg.main.state_dir.clone();
        store::private_dir(&state_dir).map_err(Error::Lock)?;
        // LocalCa::init logs the one line when it creates the CA.
        if let Some(why) = ensure_ca(&cfg, clock.now())? {
            return Err(Error::Clock(why));
        }
        let ca_dir = LocalCa::dir_in(&state_dir);
        let ca = LocalCa::open(&ca_dir, &cfg.ca).map_err(Error::Ca)?;
        let counters = Arc::new(crate::report::Counters::new());
        let mut est = Est::new(&state_dir, ca, clock.clone());
        est.set_broker(Broker::start(&cfg, clock.clone()).map_err(Error::Worker)?);
        est.set_counters(counters.clone());
        est.set_labels(cfg.labels.clone());
        est.set_reenroll_alert(cfg.est.reenroll_alert);
        let acme = acme_server(&cfg, &clock, &counters)?;
        let mut svc = Service {
            cfg,
            clock,
            est,
            acme,
            server: None,
            served: None,
            counters,
            waiting: None,
            leaves_seen: None,
            crl_due_at: 0,
            crl_next: 0,
            upstream_pending: false,
            revoke_retry: std::collections::HashMap::new(),
            est_off: false,
            listener_key_fault: None,
            hook_failed: std::collections::HashMap::new(),
        };
        svc.upkeep()?;
        Ok(svc)
    }

    /// The EST listener's address, when EST is on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The local CA.
    pub fn ca(&self) -> &LocalCa {
        self.est.ca()
    }

    /// Keeps the standalone certificate `c` (issued by the local CA this service holds) at
    /// `now`: at each tick and for `gatecert renew` handed over the control socket.
    fn keep_standalone(
        &self,
        c: &config::Certificate,
        now: i64,
        trust: &mut ClockTrust,
    ) -> Result<crate::renew::standalone::Kept, crate::renew::Error> {
        crate::renew::standalone::keep(
            &self.cfg.main.state_dir,
            c,
            self.est.ca(),
            self.cfg.ca.max_lifetime,
            now,
            trust,
        )
    }

    /// Issues due standalone certificates and makes sure the listener serves the right
    /// certificate on the right address. Called at start, on each tick and on reload.
    pub fn upkeep(&mut self) -> Result<(), Error> {
        self.settle();
        let now = self.clock.now();
        self.leaf_upkeep(now);
        let state_dir = self.cfg.main.state_dir.clone();
        let mut trust = ClockTrust::load(&state_dir, Some(self.est.ca().intermediate().not_before));
        let mut waiting: Option<Untrusted> = None;
        for c in self
            .cfg
            .certificates
            .iter()
            .filter(|c| c.directory.is_none())
        {
            if self
                .hook_failed
                .get(&c.name)
                .is_some_and(|t| t.elapsed() < HOOK_RETRY)
            {
                continue;
            }
            match self.keep_standalone(c, now, &mut trust) {
                Ok(kept) => {
                    self.hook_failed.remove(&c.name);
                    waiting = waiting.or(kept.waiting);
                }
                // The previous set is back (if there was one); the service goes on, and tries
                // again after HOOK_RETRY or a reload.
                Err(e @ crate::renew::Error::DeployHook { .. }) => {
                    log::error!(
                        "{}: {}; next attempt in {} s or on reload",
                        c.name,
                        crate::errchain::one_line(&e),
                        HOOK_RETRY.as_secs()
                    );
                    self.hook_failed.insert(c.name.clone(), Instant::now());
                }
                Err(source) => {
                    return Err(Error::Standalone {
                        name: c.name.clone(),
                        source: Box::new(source),
                    })
                }
            }
        }
        if !self.cfg.est.enabled {
            self.note_waiting(waiting);
            if self.server.take().is_some() {
                log::info!("EST listener closed (est.enabled is off)");
            }
            return Ok(());
        }
        let ensured = match est::listener_identity(&self.cfg, self.est.ca(), now, &mut trust) {
            Err(e @ est::Error::NoListenerNames) => {
                // Not fatal (procd would give up): the service goes on with its other work and
                // opens EST once an ACME certificate is installed or the policy admits a name.
                self.note_waiting(waiting);
                if !self.est_off {
                    log::error!(
                        "EST listener off: {e}; it opens once an ACME certificate is installed \
                         or allow_suffix/allow_ip admits a name of the router's"
                    );
                    self.est_off = true;
                }
                if self.server.take().is_some() {
                    log::warn!("EST listener closed: no certificate to serve");
                }
                self.served = None;
                return Ok(());
            }
            r => r.map_err(Error::Est)?,
        };
        self.est_off = false;
        self.note_waiting(waiting.or(ensured.waiting));
        let Some(id) = ensured.identity else {
            // Nothing valid to serve, and the clock forbids issuing: no listener until it may.
            if self.server.take().is_some() {
                log::warn!("EST listener closed: no certificate valid now to serve");
            }
            self.served = None;
            return Ok(());
        };
        let key = (id.source.clone(), id.not_after);
        let limits = Limits::from(&self.cfg.est);
        let listen = self.cfg.est.listen;
        let rebind = match &self.server {
            None => true,
            Some(s) => s.local_addr().ok() != Some(listen) && listen.port() != 0,
        };
        if !rebind && self.served.as_ref() == Some(&key) {
            if let Some(s) = self.server.as_mut() {
                s.set_limits(limits);
            }
            return Ok(());
        }
        let tls = match http::tls_config(&id.chain_pem, &id.key_pem, ClientAuth::Deferred) {
            Ok(tls) => tls,
            // A key in a token that can't be used now (wrong PIN, token missing) is not fatal:
            // the service goes on with its other work (and with the listener certificate it
            // already serves, if any) and tries again at each tick.
            Err(e) if store::is_token_key(&id.key_pem) => {
                let why = e.to_string();
                if self.listener_key_fault.as_ref() != Some(&why) {
                    log::error!("EST listener: {why}; trying the token again at each tick");
                    self.listener_key_fault = Some(why);
                }
                return Ok(());
            }
            Err(e) => return Err(Error::Http(e)),
        };
        if self.listener_key_fault.take().is_some() {
            log::info!("EST listener: the key in the token is usable again");
        }
        match self.server.as_mut() {
            Some(s) if !rebind => {
                s.set_tls(tls);
                s.set_limits(limits);
                log::info!("EST listener now serves the {} certificate", id.source);
            }
            _ => {
                let server = Server::bind(listen, Some(tls), limits).map_err(Error::Http)?;
                let addr = server.local_addr().unwrap_or(listen);
                log::info!("listening on {addr} (EST, {} certificate)", id.source);
                self.server = Some(server);
            }
        }
        self.served = Some(key);
        Ok(())
    }

    /// Logs once when issuance starts or stops waiting for a trusted clock (again only when
    /// the floor changes, not at every tick).
    fn note_waiting(&mut self, waiting: Option<Untrusted>) {
        let key = waiting.as_ref().map(|u| (u.floor, u.source));
        if key == self.waiting {
            return;
        }
        match &waiting {
            Some(w) => log::warn!("waiting for a trusted clock to issue: {w}"),
            None => log::info!("clock trusted: issuing again"),
        }
        self.waiting = key;
    }

    /// Applies a new config: a new CA policy, new certificates, perhaps a new listen address.
    /// On error the old service keeps running. A different `state_dir` is refused
    /// ([`Error::StateDirChanged`]): the lock is held on the old one, so moving needs a restart.
    pub fn reload(&mut self, cfg: Config) -> Result<(), Error> {
        self.settle();
        if cfg.main.state_dir != self.cfg.main.state_dir {
            return Err(Error::StateDirChanged {
                old: self.cfg.main.state_dir.clone(),
                new: cfg.main.state_dir.clone(),
            });
        }
        let ca_dir = LocalCa::dir_in(&cfg.main.state_dir);
        let ca = LocalCa::open(&ca_dir, &cfg.ca).map_err(Error::Ca)?;
        let old = std::mem::replace(&mut self.cfg, cfg);
        let mut old_est = std::mem::replace(
            &mut self.est,
            Est::new(&self.cfg.main.state_dir, ca, self.clock.clone()),
        );
        self.est.adopt(&mut old_est);
        self.est.set_labels(self.cfg.labels.clone());
        self.est.set_reenroll_alert(self.cfg.est.reenroll_alert);
        let old_acme = std::mem::take(&mut self.acme);
        match acme_server(&self.cfg, &self.clock, &self.counters) {
            Ok(mut new) => {
                if let (Some(n), Some(o)) = (new.as_mut(), old_acme) {
                    n.adopt(o);
                }
                self.acme = new;
            }
            Err(e) => {
                self.cfg = old;
                old_est.adopt(&mut self.est);
                self.est = old_est;
                return Err(e);
            }
        }
        self.served = None;
        self.hook_failed.clear();
        if let Err(e) = self.upkeep() {
            self.cfg = old;
            old_est.adopt(&mut self.est);
            self.est = old_est;
            return Err(e);
        }
        // The worker follows the new config; it starts or stops with the upstream.
        let upstream = self.cfg.broker.is_some()
            || self.cfg.certificates.iter().any(|c| c.directory.is_some());
        match (self.est.broker().is_some(), upstream) {
            (true, true) => self.est.reconfigure_broker(&self.cfg),
            (true, false) => self.est.set_broker(None),
            (false, true) => self
                .est
                .set_broker(Broker::start(&self.cfg, self.clock.clone()).map_err(Error::Worker)?),
            (false, false) => {}
        }
        Ok(())
    }

    /// The metrics counters this service bumps.
    pub fn counters(&self) -> Arc<crate::report::Counters> {
        self.counters.clone()
    }

    /// Serves for up to `timeout`; returns which of `extra` became readable. Also answers
    /// the requests parked on the upstream worker, and picks up a renewed gateway certificate.
    pub fn step(
        &mut self,
        extra: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<Vec<bool>, Error> {
        // While a group commits, the broker's deadlines wait for it (its wake ends the poll).
        let timeout = match self.est.next_deadline() {
            Some(d) if !self.est.committing() => {
                timeout.min(d.saturating_duration_since(Instant::now()))
            }
            _ => timeout,
        };
        let wake = self.est.wake().cloned();
        let committed = self.est.commit_wake().cloned();
        let mut fds: Vec<BorrowedFd<'_>> = extra.to_vec();
        if let Some(w) = &wake {
            fds.push(w.as_fd());
        }
        if let Some(w) = &committed {
            fds.push(w.as_fd());
        }
        let mut ready = match self.server.as_mut() {
            Some(s) => handling(&mut self.est, self.acme.as_mut(), &self.counters, |h| {
                s.poll_once(h, &fds, timeout)
            })
            .map_err(Error::Http)?,
            None => wait_readable(&fds, timeout).map_err(Error::Http)?,
        };
        ready.truncate(extra.len());
        // The group on the commit thread, once done. Until then the loop only serves
        // connections (requests that arrive whole are deferred): everything below reads or
        // locks the stores the commit holds.
        let mut answers = self.est.finish_commit(false);
        if self.est.committing() {
            return Ok(ready);
        }
        answers.extend(match &self.server {
            Some(s) => self.est.resolve(&|id| s.is_parked(id)),
            None => self.est.resolve(&|_| false),
        });
        if let Some(a) = self.acme.as_mut() {
            a.resolve(self.est.take_foreign(), self.est.broker_mut());
            if a.take_upstream_queued() {
                // ACME revokeCert of a brokered leaf: to the upstream worker now.
                let path = leaves::path_in(&self.cfg.main.state_dir);
                self.queue_upstream_revocations(&path, self.clock.now());
            }
        }
        self.deliver(answers);
        let revoked = self
            .est
            .broker_mut()
            .map(|b| b.take_revoked())
            .unwrap_or_default();
        if !revoked.is_empty() {
            self.record_upstream_revocations(revoked);
        }
        if self.est.renewed() {
            self.served = None;
            if let Err(e) = self.upkeep() {
                log::error!("{e}: {}", causes(&e));
            }
        }
        self.redispatch();
        // This turn's issuances (and the deferred ones), as one group on the commit thread.
        let answers = match &self.server {
            Some(s) => self.est.start_commit(&|id| s.is_parked(id)),
            None => self.est.start_commit(&|_| false),
        };
        self.deliver(answers);
        Ok(ready)
    }

    /// Sends answers to their parked connections, counting each.
    fn deliver(&mut self, answers: Vec<(u64, String, http::Response)>) {
        let Some(s) = self.server.as_mut() else {
            return;
        };
        for (id, op, resp) in answers {
            self.counters.est_request(&op, resp.status);
            if !s.complete(id, &resp) {
                log::debug!("parked request {id}: the client has gone");
            }
        }
    }

    /// Handles the requests deferred while the last group committed, as if they had just
    /// arrived: answered now, or parked again under the handler's id.
    fn redispatch(&mut self) {
        let deferred = self.est.take_deferred();
        let Some(s) = self.server.as_mut() else {
            return;
        };
        for (id, req, peer) in deferred {
            if !s.is_parked(id) {
                continue;
            }
            let answer = handling(&mut self.est, self.acme.as_mut(), &self.counters, |h| {
                h.answer(&req, &peer)
            });
            match answer {
                http::Answer::Now(resp) => {
                    s.complete(id, &resp);
                }
                http::Answer::Later(new) => {
                    s.repark(id, new);
                }
            }
        }
    }

    /// Waits for the group on the commit thread and answers it: before anything outside
    /// [`Service::step`] reads or locks the stores (upkeep, a reload, stopping).
    pub fn settle(&mut self) {
        let answers = self.est.finish_commit(true);
        self.deliver(answers);
    }
}

/// `f` with the service's request handler: EST and the ACME server by path, every answer
/// counted.
fn handling<R>(
    est: &mut Est,
    acme: Option<&mut AcmeServer>,
    counters: &crate::report::Counters,
    f: impl FnOnce(&mut dyn http::Handler) -> R,
) -> R {
    let mut routed = crate::acme_server::Routed { est, acme };
    let mut counted = crate::report::Counted {
        inner: &mut routed,
        counters,
    };
    f(&mut counted)
}

/// The ACME server `cfg` asks for, with its own handle on the local CA.
fn acme_server(
    cfg: &Config,
    clock: &Arc<dyn Clock>,
    counters: &Arc<crate::report::Counters>,
) -> Result<Option<AcmeServer>, Error> {
    let Some(acme) = &cfg.acme_server else {
        return Ok(None);
    };
    let state_dir = &cfg.main.state_dir;
    let ca = LocalCa::open(&LocalCa::dir_in(state_dir), &cfg.ca).map_err(Error::Ca)?;
    let mut server = AcmeServer::new(acme.clone(), state_dir, ca, cfg.ca.clone(), clock.clone())
        .map_err(Error::AcmeServer)?;
    server.set_counters(counters.clone());
    Ok(Some(server))
}

/// `poll(2)` on `fds` alone (the loop when EST is off).
fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Result<Vec<bool>, http::Error> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
    let ts = Timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as _,
    };
    match rustix::event::poll(&mut pfds, Some(&ts)) {
        Ok(_) => Ok(pfds.iter().map(|p| !p.revents().is_empty()).collect()),
        Err(rustix::io::Errno::INTR) => Ok(vec![false; fds.len()]),
        Err(e) => Err(http::Error::Poll(e.into())),
    }
}

/// The signals the loop reacts to, each a flag, all waking the loop through one pipe.
struct Signals {
    hup: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    fn install() -> io::Result<Signals> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let hup = Arc::new(AtomicBool::new(false));
        let term = Arc::new(AtomicBool::new(false));
        let (wake, tx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        signal_hook::flag::register(SIGHUP, hup.clone())?;
        signal_hook::flag::register(SIGTERM, term.clone())?;
        signal_hook::flag::register(SIGINT, term.clone())?;
        for sig in [SIGHUP, SIGTERM, SIGINT] {
            signal_hook::low_level::pipe::register(sig, tx.try_clone()?)?;
        }
        Ok(Signals { hup, term, wake })
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Overrides of `gatecert run` on top of the config (for tests and one-off runs).
#[derive(Clone, Debug, Default)]
struct Overrides {
    state_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
}

impl Overrides {
    fn parse(args: &[String]) -> Result<Overrides, String> {
        use lexopt::prelude::*;
        let mut o = Overrides::default();
        let mut p = lexopt::Parser::from_args(args);
        while let Some(arg) = p.next().map_err(|e| e.to_string())? {
            match arg {
                Long("state-dir") => {
                    o.state_dir = Some(p.value().map_err(|e| e.to_string())?.into())
                }
                Long("listen") => {
                    let v = p.value().map_err(|e| e.to_string())?;
                    let s = v.to_string_lossy();
                    o.listen = Some(
                        s.parse()
                            .map_err(|_| format!("--listen: bad address {s:?}"))?,
                    );
                }
                other => return Err(other.unexpected().to_string()),
            }
        }
        Ok(o)
    }

    fn apply(&self, mut cfg: Config) -> Config {
        if let Some(d) = &self.state_dir {
            cfg.main.state_dir = d.clone();
        }
        if let Some(l) = self.listen {
            cfg.est.listen = l;
        }
        cfg
    }
}

/// `gatecert run [--state-dir DIR] [--listen ADDR]`: the service, in the foreground, until
/// SIGTERM or SIGINT (exit 0). Exit 2 when it cannot start.
pub fn cmd_run(cfg: &Config, args: &[String]) -> i32 {
    let overrides = match Overrides::parse(args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("gatecert: error: run: {msg} (usage: gatecert run [--state-dir DIR] [--listen ADDR])");
            return 2;
        }
    };
    let cfg = overrides.apply(cfg.clone());
    crate::logging::init(cfg.main.log, cfg.main.log_level);
    crate::audit::configure(&cfg.main.state_dir, cfg.audit_policy());
    log_notes(&cfg);
    let cfg_log = cfg.main.log;
    match run(cfg, &overrides) {
        Ok(()) => 0,
        Err(e) => {
            // With `log 'stderr'` the log line is already on stderr: print the error once.
            if cfg_log == crate::config::LogTarget::Syslog {
                log::error!("{}", crate::errchain::one_line(&e));
            }
            crate::errchain::print_error(&e);
            2
        }
    }
}

fn run(cfg: Config, overrides: &Overrides) -> Result<(), Error> {
    let _lock = store::Lock::acquire(&cfg.main.state_dir).map_err(Error::Lock)?;
    let signals = Signals::install().map_err(Error::Signals)?;
    let clock: Arc<dyn Clock> = Arc::from(crate::clock::from_env());
    let Some(cfg) = wait_for_ca(cfg, overrides, &signals, clock.as_ref())? else {
        log::info!("stopping");
        return Ok(());
    };
    let mut svc = Service::start(cfg, clock)?;
    log::info!(
        "started (state {}, pid {})",
        svc.cfg.main.state_dir.display(),
        std::process::id()
    );
    // `gatecert renew` while the service runs hands its request over here (crate::control).
    // Not fatal: without it `gatecert renew` says the state directory is locked.
    let control = match crate::control::Listener::bind(&svc.cfg.main.state_dir) {
        Ok(l) => Some(l),
        Err(e) => {
            log::error!("{}", crate::errchain::one_line(&Error::Control(e)));
            None
        }
    };
    if let Err(e) = crate::audit::spawn_archiver(&svc.cfg.main.state_dir) {
        log::error!("audit archiver thread: {e}");
    }
    let mut monitor = crate::report::Monitor::new(svc.counters());
    if let Some(addr) = svc.cfg.metrics.listen {
        serve_metrics(addr, &svc, monitor.counters().clone());
    }
    monitor.tick(&svc.cfg, svc.clock.now());
    let tick = tick();
    let mut next_tick = Instant::now() + tick;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let mut fds = vec![signals.wake.as_fd()];
        fds.extend(control.as_ref().map(|c| c.fd()));
        let ready = svc.step(&fds, wait)?;
        if ready.first() == Some(&true) {
            signals.drain();
        }
        if ready.get(1) == Some(&true) {
            match control.as_ref().and_then(|c| c.accept()) {
                Some((client, crate::control::Ask::Renew(req))) => svc.renew_request(client, req),
                Some((client, crate::control::Ask::Counts(now))) => svc.counts_request(client, now),
                Some((client, crate::control::Ask::Leaves(change, now))) => {
                    svc.leaves_request(client, change, now)
                }
                None => {}
            }
        }
        if signals.term.swap(false, Ordering::SeqCst) {
            svc.settle();
            log::info!("stopping");
            return Ok(());
        }
        if signals.hup.swap(false, Ordering::SeqCst) {
            match reread(&svc.cfg.source, overrides) {
                Ok(new) => match svc.reload(new) {
                    Ok(()) => log::info!("reloaded"),
                    Err(e) => {
                        log::error!("reload failed, keeping the old config: {e}: {}", causes(&e))
                    }
                },
                Err(e) => log::error!("reload failed, keeping the old config: {e}"),
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + tick;
            svc.settle();
            svc.follow_ca();
            if let Err(e) = svc.upkeep() {
                log::error!("{e}: {}", causes(&e));
            }
            monitor.tick(&svc.cfg, svc.clock.now());
            // Renewal of certificates with a `directory` runs on the upstream worker thread
            // (crate::broker::worker), on its own queue; `step` picks a renewed certificate up.
        }
    }
}

/// Before the service starts: creates the local CA ([`ensure_ca`]) once the clock is trusted,
/// waiting (and answering SIGHUP and SIGTERM) until then. `None`: stopped while waiting.
fn wait_for_ca(
    mut cfg: Config,
    overrides: &Overrides,
    signals: &Signals,
    clock: &dyn Clock,
) -> Result<Option<Config>, Error> {
    let mut logged: Option<(i64, FloorSource)> = None;
    loop {
        let Some(why) = ensure_ca(&cfg, clock.now())? else {
            if logged.is_some() {
                log::info!("clock trusted: the local CA is ready");
            }
            return Ok(Some(cfg));
        };
        if logged != Some((why.floor, why.source)) {
            log::warn!("waiting for a trusted clock before creating the local CA: {why}");
            logged = Some((why.floor, why.source));
        }
        let ready = wait_readable(&[signals.wake.as_fd()], tick()).map_err(Error::Http)?;
        if ready.first() == Some(&true) {
            signals.drain();
        }
        if signals.term.swap(false, Ordering::SeqCst) {
            return Ok(None);
        }
        if signals.hup.swap(false, Ordering::SeqCst) {
            match reread(&cfg.source, overrides) {
                Ok(new) if new.main.state_dir != cfg.main.state_dir => {
                    let e = Error::StateDirChanged {
                        old: cfg.main.state_dir.clone(),
                        new: new.main.state_dir,
                    };
                    log::error!("reload refused, keeping the old config: {e}");
                }
                Ok(new) => {
                    cfg = new;
                    log::info!("reloaded");
                }
                Err(e) => log::error!("reload failed, keeping the old config: {e}"),
            }
        }
    }
}

/// Serves `/metrics` on `addr` from a helper thread (report::metrics::MetricsListener: one
/// connection at a time, 2 s timeout, 4 KiB request cap). It keeps the config it started with.
fn serve_metrics(addr: SocketAddr, svc: &Service, counters: Arc<crate::report::Counters>) {
    use crate::report::{metrics, Status};
    let (cfg, clock) = (svc.cfg.clone(), svc.clock.clone());
    let render = move || metrics::render_metrics(&Status::gather(&cfg, clock.now()), &counters);
    match metrics::MetricsListener::bind(addr).and_then(|l| l.spawn(render)) {
        Ok(_) => log::info!("metrics on http://{addr}/metrics"),
        Err(e) => log::error!("metrics listen {addr}: {e}"),
    }
}

/// Re-reads the config file for SIGHUP. Built-in defaults (no file) stay as they are.
fn reread(source: &Path, overrides: &Overrides) -> Result<Config, Error> {
    let cfg = Config::load(source).map_err(Error::Config)?;
    log_notes(&cfg);
    let cfg = overrides.apply(cfg);
    crate::audit::configure(&cfg.main.state_dir, cfg.audit_policy());
    Ok(cfg)
}

/// Every config section skipped or ignored (say, an acme-common section gatecert cannot
/// serve) goes to the log as a warning; `gatecert status` lists them too.
fn log_notes(cfg: &Config) {
    for n in &cfg.notes {
        log::warn!("config: {n}");
    }
}

/// The `caused by` chain of `e` on one line, for log lines.
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = Vec::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push(c.to_string());
        cur = c.source();
    }
    out.join(": ")
}

/// A loopback address helper for the demo and tests.
fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)
}

#[cfg(test)]
mod commit_tests;
mod control;
mod leaf_upkeep;
#[cfg(test)]
mod tests;
