//! `gatecert run`: the service loop, and `gatecert demo`: the whole job in a temp dir.
//!
//! One thread, one `poll(2)` loop ([`http::Server::poll_once`]): EST connections, a signal pipe
//! (SIGHUP reloads config and certificates; SIGTERM/SIGINT stop cleanly) and a periodic tick for
//! certificate upkeep and, once the ACME side lands, the renewal scheduler.
//!
//! Embedded default: with no CA yet, the local CA is initialised in `<state_dir>/ca`; every
//! standalone certificate (a `certificate` section without `directory`) is issued from it into
//! `<state_dir>/certs/<name>` and reissued in the last third of its life.

use std::fmt;
use std::io::{self, Read as _};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::Broker;
use crate::ca::{self, LocalCa};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::est::{self, Est};
use crate::http::{self, ClientAuth, Limits, Server};
use crate::store;

mod demo;

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
    /// The upstream worker thread could not be started.
    Worker(io::Error),
    /// A standalone certificate could not be issued or installed.
    Standalone {
        /// The certificate section's name.
        name: String,
        /// The cause.
        source: est::Error,
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
            Error::Worker(_) => f.write_str("starting the upstream worker thread"),
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
            Error::Est(e) | Error::Standalone { source: e, .. } => Some(e),
            Error::Http(e) => Some(e),
            Error::Config(e) => Some(e),
            Error::Signals(e) | Error::Worker(e) => Some(e),
        }
    }
}

/// The running service: the local CA behind the EST handler, and the EST listener.
pub struct Service {
    cfg: Config,
    clock: Arc<dyn Clock>,
    est: Est,
    server: Option<Server>,
    /// notAfter of the certificate the listener serves, to notice when it changes.
    served: Option<(String, i64)>,
    /// Event counters for metrics (EST requests are counted in [`Service::step`]).
    counters: Arc<crate::report::Counters>,
}

impl Service {
    /// Opens (or initialises) the local CA, issues what standalone certificates need issuing,
    /// and binds the EST listener.
    pub fn start(cfg: Config, clock: Arc<dyn Clock>) -> Result<Service, Error> {
        let state_dir = cfg.main.state_dir.clone();
        store::private_dir(&state_dir).map_err(Error::Lock)?;
        // open_or_init logs the one line when it creates the CA.
        let ca_dir = LocalCa::dir_in(&state_dir);
        let ca = LocalCa::open_or_init(&ca_dir, &cfg.ca, clock.now()).map_err(Error::Ca)?;
        let counters = Arc::new(crate::report::Counters::new());
        let mut est = Est::new(&state_dir, ca, clock.clone());
        est.set_broker(Broker::start(&cfg, clock.clone()).map_err(Error::Worker)?);
        est.set_counters(counters.clone());
        let mut svc = Service {
            cfg,
            clock,
            est,
            server: None,
            served: None,
            counters,
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

    /// Issues due standalone certificates and makes sure the listener serves the right
    /// certificate on the right address. Called at start, on each tick and on reload.
    pub fn upkeep(&mut self) -> Result<(), Error> {
        let now = self.clock.now();
        let certs_dir = self.cfg.main.state_dir.join("certs");
        for c in self
            .cfg
            .certificates
            .iter()
            .filter(|c| c.directory.is_none())
        {
            let names = (c.domains.clone(), c.ips.clone());
            let lifetime = Some(self.cfg.ca.max_lifetime);
            est::ensure_local_set(
                &certs_dir.join(&c.name),
                self.est.ca(),
                &names,
                now,
                lifetime,
            )
            .map_err(|source| Error::Standalone {
                name: c.name.clone(),
                source,
            })?;
        }
        if !self.cfg.est.enabled {
            if self.server.take().is_some() {
                log::info!("EST listener closed (est.enabled is off)");
            }
            return Ok(());
        }
        let id = est::listener_identity(&self.cfg, self.est.ca(), now).map_err(Error::Est)?;
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
        let tls = http::tls_config(&id.chain_pem, &id.key_pem, ClientAuth::Deferred)
            .map_err(Error::Http)?;
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

    /// Applies a new config: a new CA policy, new certificates, perhaps a new listen address.
    /// On error the old service keeps running.
    pub fn reload(&mut self, cfg: Config) -> Result<(), Error> {
        let ca_dir = LocalCa::dir_in(&cfg.main.state_dir);
        let ca = LocalCa::open_or_init(&ca_dir, &cfg.ca, self.clock.now()).map_err(Error::Ca)?;
        let old = std::mem::replace(&mut self.cfg, cfg);
        let mut old_est = std::mem::replace(
            &mut self.est,
            Est::new(&self.cfg.main.state_dir, ca, self.clock.clone()),
        );
        self.est.adopt(&mut old_est);
        self.served = None;
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
        let timeout = match self.est.next_deadline() {
            Some(d) => timeout.min(d.saturating_duration_since(Instant::now())),
            None => timeout,
        };
        let wake = self.est.wake().and_then(|w| w.try_clone().ok());
        let mut fds: Vec<BorrowedFd<'_>> = extra.to_vec();
        if let Some(w) = &wake {
            fds.push(w.as_fd());
        }
        let mut ready = match self.server.as_mut() {
            Some(s) => {
                let mut counted = crate::report::Counted {
                    inner: &mut self.est,
                    counters: &self.counters,
                };
                s.poll_once(&mut counted, &fds, timeout)
                    .map_err(Error::Http)?
            }
            None => wait_readable(&fds, timeout).map_err(Error::Http)?,
        };
        ready.truncate(extra.len());
        let answers = match &self.server {
            Some(s) => self.est.resolve(&|id| s.is_parked(id)),
            None => self.est.resolve(&|_| false),
        };
        if let Some(s) = self.server.as_mut() {
            for (id, op, resp) in answers {
                self.counters.est_request(&op, resp.status);
                if !s.complete(id, &resp) {
                    log::debug!("parked request {id}: the client has gone");
                }
            }
        }
        if self.est.renewed() {
            self.served = None;
            if let Err(e) = self.upkeep() {
                log::error!("{e}: {}", causes(&e));
            }
        }
        Ok(ready)
    }
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
    let mut svc = Service::start(cfg, clock)?;
    log::info!(
        "started (state {}, pid {})",
        svc.cfg.main.state_dir.display(),
        std::process::id()
    );
    let mut monitor = crate::report::Monitor::new(svc.counters());
    if let Some(addr) = svc.cfg.metrics.listen {
        serve_metrics(addr, &svc, monitor.counters().clone());
    }
    monitor.tick(&svc.cfg, svc.clock.now());
    let tick = tick();
    let mut next_tick = Instant::now() + tick;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let ready = svc.step(&[signals.wake.as_fd()], wait)?;
        if ready.first() == Some(&true) {
            signals.drain();
        }
        if signals.term.swap(false, Ordering::SeqCst) {
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
            if let Err(e) = svc.upkeep() {
                log::error!("{e}: {}", causes(&e));
            }
            monitor.tick(&svc.cfg, svc.clock.now());
            // Renewal of certificates with a `directory` runs on the upstream worker thread
            // (crate::broker::worker), on its own queue; `step` picks a renewed certificate up.
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
    Ok(overrides.apply(cfg))
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
