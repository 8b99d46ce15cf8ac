//! The daemon's side of reporting: [`Monitor::tick`] once per loop (alerts, the metrics
//! textfile), and [`MetricsHandler`] to serve `/metrics` from an [`http::Server`] bound to
//! `metrics.listen` without TLS.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::http::{self, PeerInfo, Request, Response};

use super::alerts::Alerter;
use super::metrics::{self, Counters};
use super::status::Status;

/// Alert memory and the counters, kept for the life of `gatecert run`.
#[derive(Debug)]
pub struct Monitor {
    alerter: Alerter,
    counters: Arc<Counters>,
    textfile_failing: bool,
}

impl Monitor {
    /// A monitor over `counters` (the same `Arc` the EST handler and the renew code bump).
    pub fn new(counters: Arc<Counters>) -> Monitor {
        Monitor {
            alerter: Alerter::new(),
            counters,
            textfile_failing: false,
        }
    }

    /// The shared counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// One tick: gathers the status at `now`, logs alert changes, and rewrites
    /// `metrics.textfile` when its content changed. Returns the status for other uses.
    pub fn tick(&mut self, cfg: &Config, now: i64) -> Status {
        let status = Status::gather(cfg, now);
        self.alerter.tick(&status, cfg.main.alert_failures, now);
        if let Some(path) = &cfg.metrics.textfile {
            let text = metrics::render_metrics(&status, &self.counters);
            match metrics::write_textfile(path, &text) {
                Ok(_) => self.textfile_failing = false,
                // One line when it starts failing, not one per tick.
                Err(e) if !self.textfile_failing => {
                    self.textfile_failing = true;
                    log::warn!("metrics textfile: {e}");
                }
                Err(_) => {}
            }
        }
        status
    }
}

/// Serves `GET /metrics` (Prometheus text 0.0.4) for [`http::Server::poll_once`]; anything
/// else is 404/405. Each scrape gathers a fresh status.
pub struct MetricsHandler {
    cfg: Config,
    counters: Arc<Counters>,
    clock: Arc<dyn Clock>,
}

impl MetricsHandler {
    /// A handler for `cfg` (replace it on reload with [`MetricsHandler::set_config`]).
    pub fn new(cfg: Config, counters: Arc<Counters>, clock: Arc<dyn Clock>) -> MetricsHandler {
        MetricsHandler {
            cfg,
            counters,
            clock,
        }
    }

    /// Uses `cfg` from now on (SIGHUP).
    pub fn set_config(&mut self, cfg: Config) {
        self.cfg = cfg;
    }
}

impl http::Handler for MetricsHandler {
    fn handle(&mut self, req: &Request, _peer: &PeerInfo) -> Response {
        let a = metrics::answer(&req.method, &req.path, || {
            metrics::render_metrics(&Status::gather(&self.cfg, self.clock.now()), &self.counters)
        });
        Response::new(a.status)
            .header("Content-Type", a.content_type)
            .body(a.body.into_bytes())
    }
}

/// Wraps an EST [`http::Handler`] and counts each answer in
/// `gatecert_est_requests_total{endpoint,status}`: the endpoint is the last path segment
/// (`/.well-known/est[/label]/simpleenroll` → `simpleenroll`); refusals by the server layer
/// itself (413, 431, ...) count under `other`.
pub struct Counted<'a, H: http::Handler> {
    /// The EST handler.
    pub inner: &'a mut H,
    /// Where to count.
    pub counters: &'a Counters,
}

impl<H: http::Handler> http::Handler for Counted<'_, H> {
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response {
        let resp = self.inner.handle(req, peer);
        let endpoint = req.path.rsplit('/').next().unwrap_or_default();
        self.counters.est_request(endpoint, resp.status);
        resp
    }

    /// A parked answer ([`http::Answer::Later`]) is counted when the service completes it.
    fn answer(&mut self, req: &Request, peer: &PeerInfo) -> http::Answer {
        let answer = self.inner.answer(req, peer);
        if let http::Answer::Now(resp) = &answer {
            let endpoint = req.path.rsplit('/').next().unwrap_or_default();
            self.counters.est_request(endpoint, resp.status);
        }
        answer
    }

    fn rejected(&mut self, status: u16, reason: &str, peer: &PeerInfo) {
        self.counters.est_request("other", status);
        self.inner.rejected(status, reason, peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::http::Handler as _;
    use crate::report::fixture::{Fixture, DAY};

    #[test]
    fn tick_writes_the_textfile_and_the_handler_serves() {
        let f = Fixture::new("monitor");
        let mut cfg = f.cfg.clone();
        let prom = f.state_dir().join("gatecert.prom");
        cfg.metrics.textfile = Some(prom.clone());
        let counters = Arc::new(Counters::new());
        let mut m = Monitor::new(counters.clone());
        let s = m.tick(&cfg, f.t0 + DAY);
        assert!(s.healthy);
        let text = std::fs::read_to_string(&prom).unwrap();
        assert!(text.contains("gatecert_clock_trusted 1\n"), "{text}");

        counters.leaf_issued(crate::leaves::Source::Local);
        let mut h = MetricsHandler::new(cfg, counters, Arc::new(FixedClock::new(f.t0 + DAY)));
        let peer = PeerInfo {
            addr: "127.0.0.1:9".parse().unwrap(),
            tls: false,
            certs: Vec::new(),
        };
        let req = |method: &str, path: &str| Request {
            method: method.into(),
            path: path.into(),
            query: None,
            headers: Vec::new(),
            body: Vec::new(),
        };
        let r = h.handle(&req("GET", "/metrics"), &peer);
        assert_eq!(r.status, 200);
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.contains("gatecert_leaf_issuances_total{source=\"local\"} 1\n"),
            "{body}"
        );
        assert_eq!(h.handle(&req("GET", "/"), &peer).status, 404);
        assert_eq!(h.handle(&req("DELETE", "/metrics"), &peer).status, 405);

        let c = Counters::new();
        let mut est = |r: &Request, _: &PeerInfo| {
            Response::new(if r.path.ends_with("/cacerts") {
                200
            } else {
                404
            })
        };
        let mut counted = Counted {
            inner: &mut est,
            counters: &c,
        };
        counted.handle(&req("GET", "/.well-known/est/cacerts"), &peer);
        counted.handle(&req("GET", "/.well-known/est/lab/cacerts"), &peer);
        counted.handle(&req("GET", "/nope"), &peer);
        counted.rejected(413, "too big", &peer);
        let text = metrics::render_metrics(&s, &c);
        assert!(
            text.contains("gatecert_est_requests_total{endpoint=\"cacerts\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("gatecert_est_requests_total{endpoint=\"other\",status=\"404\"} 1\n"));
        assert!(text.contains("gatecert_est_requests_total{endpoint=\"other\",status=\"413\"} 1\n"));
    }
}
