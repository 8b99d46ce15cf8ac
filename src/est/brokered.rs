//! EST enrollments through the [`crate::broker`]: answered from the upstream, from the cache,
//! or with an interim certificate; parked meanwhile ([`Answer::Later`]) so the loop never
//! waits on the upstream.

use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use super::{Authorized, Denial, Est, Granted};
use crate::broker::{Broker, Decision, LeafKey, Origin, Resolution};
use crate::ca::Issued;
use crate::crypto::{self, CertInfo};
use crate::http::{Answer, PeerInfo, Request, Response};

/// A request waiting on the upstream worker.
pub(super) struct Parked {
    op: String,
    client: IpAddr,
    auth: Authorized,
}

impl Est {
    /// Hands this handler the upstream worker (or takes it away). Requests parked on a worker
    /// that goes away are never answered: their token claims are released.
    pub fn set_broker(&mut self, broker: Option<Broker>) {
        for (_, p) in std::mem::take(&mut self.parked) {
            log::warn!(
                "{} for {}: dropped with the upstream worker",
                p.op,
                p.auth.device
            );
            self.release(&p.auth);
        }
        self.broker = broker;
    }

    /// Hands the worker a new config (SIGHUP).
    pub fn reconfigure_broker(&mut self, cfg: &crate::config::Config) {
        if let Some(b) = self.broker.as_mut() {
            b.reconfigure(cfg);
        }
    }

    /// The broker, if any.
    pub fn broker(&self) -> Option<&Broker> {
        self.broker.as_ref()
    }

    /// The broker, to hand it work (upstream revocations) and to park requests on it (the
    /// ACME server's finalize).
    pub fn broker_mut(&mut self) -> Option<&mut Broker> {
        self.broker.as_mut()
    }

    /// The resolutions [`Est::resolve`] found for requests it did not park.
    pub fn take_foreign(&mut self) -> Vec<Resolution> {
        std::mem::take(&mut self.foreign)
    }

    /// Moves the broker and the parked requests of `old` (the handler a reload replaces) here.
    pub fn adopt(&mut self, old: &mut Est) {
        self.broker = old.broker.take();
        self.parked = std::mem::take(&mut old.parked);
        self.claims = std::mem::take(&mut old.claims);
        self.counters = old.counters.take();
        self.reenroll_failures = std::mem::take(&mut old.reenroll_failures);
        // Issuances and requests on their way (the service settles a group before a reload,
        // so there is normally none), with the id counters their parked connections use.
        self.pending = std::mem::take(&mut old.pending);
        self.next_pending = old.next_pending;
        self.committer = old.committer.take();
        self.inflight = old.inflight.take();
        self.deferred = std::mem::take(&mut old.deferred);
        self.next_deferred = old.next_deferred;
    }

    /// The socket to poll for the worker's events, when there is a worker.
    pub fn wake(&self) -> Option<&std::sync::Arc<UnixStream>> {
        self.broker.as_ref().map(Broker::wake)
    }

    /// When the next parked request must be answered.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.broker.as_ref().and_then(Broker::next_deadline)
    }

    /// True once after the worker installed a renewed gateway certificate.
    pub fn renewed(&mut self) -> bool {
        self.broker.as_mut().is_some_and(Broker::take_renewed)
    }

    /// Answers the parked requests that can be answered now: `(id, operation, response)` for
    /// [`crate::http::Server::complete`]. `alive(id)` says whether the client still waits; an
    /// upstream certificate whose client has gone is kept for its retry, and so is the token
    /// claim of a client told `202` (RFC 7030 §4.2.3), so that its retry is the same use.
    pub fn resolve(&mut self, alive: &dyn Fn(u64) -> bool) -> Vec<(u64, String, Response)> {
        let Some(broker) = self.broker.as_mut() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for r in broker.poll() {
            let id = r.id();
            let Some(p) = self.parked.remove(&id) else {
                self.foreign.push(r);
                continue;
            };
            if !alive(id) {
                match (&r, self.broker.as_mut(), p.auth.claim) {
                    (Resolution::Issued { chain_pem, .. }, Some(b), claim) => {
                        b.keep(
                            LeafKey::new(&p.auth.device, &p.auth.csr.spki_der),
                            chain_pem,
                        );
                        if let Some(c) = claim {
                            self.claims.hold_for_retry(c, self.clock.now());
                        }
                    }
                    _ => self.release(&p.auth),
                }
                continue;
            }
            let resp = match r {
                Resolution::Issued { chain_pem, .. } => {
                    let granted = self.grant_upstream(p.auth, &chain_pem, Origin::Upstream);
                    self.finish(&p.op, p.client, granted)
                }
                Resolution::Interim { reason, .. } => {
                    log::info!("interim certificate for {}: {reason}", p.auth.device);
                    let granted = self.grant_interim(p.auth);
                    self.finish(&p.op, p.client, granted)
                }
                Resolution::Retry { after, .. } => {
                    log::info!(
                        "{} for {}: the upstream is slow; 202, retry after {after}s",
                        p.op,
                        p.auth.device
                    );
                    if let Some(c) = p.auth.claim {
                        self.claims.hold_for_retry(c, self.clock.now());
                    }
                    // RFC 7030 §4.2.3: 202 with Retry-After; the retry repeats the request.
                    Response::text(202, "the upstream CA is still working on it; retry")
                        .header("Retry-After", &after.to_string())
                }
            };
            out.push((id, p.op, resp));
        }
        out
    }

    pub(super) fn answer_brokered(
        &mut self,
        op: &str,
        label: Option<usize>,
        req: &Request,
        peer: &PeerInfo,
    ) -> Answer {
        let client = peer.addr.ip();
        let auth = match self.authorize(op, label, req, peer) {
            Ok(a) => a,
            Err(d) => return Answer::Now(self.finish(op, client, Err(d))),
        };
        let Some(broker) = self.broker.as_mut() else {
            let granted = self.grant_local(auth, None, Origin::Local);
            return Answer::Now(self.finish(op, client, granted));
        };
        let key = LeafKey::new(&auth.device, &auth.csr.spki_der);
        match broker.decide(&key, &auth.csr.dns, &auth.csr.ips, &auth.csr.der) {
            Decision::Cached(chain_pem) => {
                let granted = self.grant_upstream(auth, &chain_pem, Origin::Cached);
                Answer::Now(self.finish(op, client, granted))
            }
            Decision::Interim(reason) => {
                log::info!("interim certificate for {}: {reason}", auth.device);
                let granted = self.grant_interim(auth);
                Answer::Now(self.finish(op, client, granted))
            }
            Decision::Wait(id) => {
                log::info!(
                    "{op} for {}: parked on the upstream CA (request {id})",
                    auth.device
                );
                self.parked.insert(
                    id,
                    Parked {
                        op: op.to_owned(),
                        client,
                        auth,
                    },
                );
                Answer::Later(id)
            }
        }
    }

    /// A short-lived certificate from the local CA: `interim_lifetime`, within the CA's
    /// `max_lifetime`.
    fn grant_interim(&mut self, auth: Authorized) -> Result<Granted, Denial> {
        let lifetime = self
            .broker
            .as_ref()
            .and_then(Broker::config)
            .map_or(6 * 3600, |b| b.interim_lifetime)
            .min(self.ca.max_lifetime());
        self.grant_local(auth, Some(lifetime), Origin::Interim)
    }

    /// The upstream's chain for `auth`, after checking that it certifies the CSR's key and
    /// settling the token claim.
    fn grant_upstream(
        &mut self,
        auth: Authorized,
        chain_pem: &str,
        origin: Origin,
    ) -> Result<Granted, Denial> {
        let checked = Self::check_upstream(&auth, chain_pem);
        let issued = self.settle(&auth, checked)?;
        if let Some(b) = self.broker.as_mut() {
            b.remember(&issued.leaf_der, issued.not_after);
            b.remember_issuers(issued.chain_der.get(1..).unwrap_or_default());
        }
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

    /// The upstream's chain, parsed, when its leaf carries `auth`'s CSR key.
    fn check_upstream(auth: &Authorized, chain_pem: &str) -> Result<Issued, Denial> {
        let bad = |what: &str| {
            log::error!("upstream certificate for {}: {what}", auth.device);
            Denial::new(502, "the upstream CA's certificate was unusable")
                .device(&auth.device)
                .names(auth.names.clone())
        };
        let chain_der: Vec<Vec<u8>> = crypto::certs_from_pem(chain_pem)
            .map_err(|e| bad(&e.to_string()))?
            .into_iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        let Some(leaf_der) = chain_der.first().cloned() else {
            return Err(bad("empty chain"));
        };
        let info = CertInfo::from_der(&leaf_der).map_err(|e| bad(&e.to_string()))?;
        if info.spki_der != auth.csr.spki_der {
            return Err(bad("its public key is not the CSR's"));
        }
        Ok(Issued {
            leaf_der,
            chain_der,
            serial_hex: info.serial_hex(),
            not_after: info.not_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use crate::broker::Broker;
    use crate::clock::Clock as _;
    use crate::config::{self, Certificate};
    use crate::est::tests::{enroll_req, peer, setup, token_and_csr};
    use crate::http::{Answer, Handler as _};

    /// A request parked on a blackholed upstream holds the one use of its token: a second
    /// enrollment is refused at once, before anything is parked. A reload that drops the worker
    /// (and so the parked request) releases the claim: the token still works, once.
    #[test]
    fn a_parked_claim_holds_the_use_and_is_released_with_its_worker() {
        let (dir, mut est, clock) = setup("parkedclaim");
        let hole = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = config::Config::standalone(dir.clone());
        let mut gw = Certificate::standalone("gw", vec!["gw.sensors.local".into()]);
        gw.directory = Some(format!("https://{}/dir", hole.local_addr().unwrap()));
        gw.timeout = 120;
        cfg.certificates = vec![gw];
        cfg.broker = Some(config::Broker {
            certificate: "gw".into(),
            challenge: config::ChallengeKind::Http01,
            dns_hook: None,
            upstream_wait: 60,
            interim_lifetime: 3600,
            issuers: Vec::new(),
        });
        est.set_broker(Broker::start(&cfg, clock.clone()).unwrap());

        let name = "p.sensors.local";
        let (token, csr) = token_and_csr(&dir, "p", name, 600, clock.now());
        let key = crate::crypto::PrivateKey::generate(crate::crypto::KeyType::Ec256).unwrap();
        let csr2 = key.csr(&[name.to_string()], &[]).unwrap();
        assert!(matches!(
            est.answer(&enroll_req("p", &token, &csr), &peer()),
            Answer::Later(_)
        ));
        let Answer::Now(resp) = est.answer(&enroll_req("p", &token, &csr2), &peer()) else {
            panic!("a second enrollment on a one-use token was parked");
        };
        assert_eq!(resp.status, 403);
        assert!(String::from_utf8_lossy(&resp.body).contains("in use"));

        est.set_broker(None);
        let resp = est.handle(&enroll_req("p", &token, &csr2), &peer());
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let resp = est.handle(&enroll_req("p", &token, &csr), &peer());
        assert_eq!(resp.status, 401);
        assert!(String::from_utf8_lossy(&resp.body).contains("already used"));
        drop(hole);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
