//! The service's side of the control socket ([`crate::control`]): `gatecert renew`,
//! `gatecert status` and `gatecert leaves revoke|disable|enable` while `gatecert run` holds the
//! state directory.

use super::*;

impl Service {
    /// `gatecert status` asked for the leaf and token counts as of `now`: from the stores kept
    /// open (one `stat` of each, their summaries in memory), after the group in flight.
    pub fn counts_request(&mut self, client: crate::control::Client, now: i64) {
        self.settle();
        let counts = crate::report::status::StoreCounts::read(&self.cfg.main.state_dir, now);
        match counts.to_json() {
            Ok(json) => client.answer(0, &json),
            Err(e) => client.answer(2, &format!("counts: {e}")),
        }
    }

    /// `gatecert leaves revoke|disable|enable` handed over the control socket, at the
    /// command's `now`: carried out on the inventory this process keeps open (one row read,
    /// not every row), with the CA it holds signing the CRL, after the group in flight. The
    /// locks are waited for at most [`crate::control::LEAVES_LOCK_WAIT`]; when one is still
    /// held, the command is told to do it itself.
    pub fn leaves_request(
        &mut self,
        client: crate::control::Client,
        change: crate::revocation::Change,
        now: i64,
    ) {
        self.settle();
        let site = crate::revocation::Site {
            state_dir: &self.cfg.main.state_dir,
            cfg: &self.cfg.ca,
            ca: Some(self.est.ca()),
            wait: Some(crate::control::LEAVES_LOCK_WAIT),
        };
        match change.carry_out(&site, now) {
            Ok(printed) => {
                log::info!(
                    "leaves {} {} over the control socket: exit {}",
                    change.op.as_str(),
                    change.who,
                    printed.code
                );
                client.answer(printed.code, &printed.to_json());
            }
            // Not JSON: the command carries the change out itself and waits for the lock,
            // while this loop goes on serving.
            Err(crate::revocation::Busy(what)) => {
                log::info!(
                    "leaves {} {} over the control socket: busy ({what}); left to the command",
                    change.op.as_str(),
                    change.who
                );
                client.answer(2, &format!("busy ({what}); the command does it itself"));
            }
        }
    }

    /// `gatecert renew` handed over the control socket: standalone certificates are kept here
    /// (as at each tick), ACME ones renewed on the upstream worker, which orders one at a time;
    /// the client gets the combined exit code (0 renewed, 1 nothing due, 2 error).
    pub fn renew_request(&mut self, client: crate::control::Client, req: crate::control::Request) {
        use crate::control::ANSWER_TIMEOUT;
        let wanted = |c: &config::Certificate| req.cert.as_ref().is_none_or(|n| *n == c.name);
        if let Some(n) = &req.cert {
            if !self.cfg.certificates.iter().any(|c| c.name == *n) {
                client.answer(2, &format!("no certificate '{n}' in the config"));
                return;
            }
        }
        let now = self.clock.now();
        let state_dir = self.cfg.main.state_dir.clone();
        let mut trust = ClockTrust::load(&state_dir, Some(self.est.ca().intermediate().not_before));
        let (mut code, mut message) = (1, String::new());
        for c in self
            .cfg
            .certificates
            .iter()
            // `--issuer` names an upstream CA: the local CA's certificates are not meant.
            .filter(|c| c.directory.is_none() && wanted(c) && req.issuer.is_none())
        {
            match self.keep_standalone(c, now, &mut trust) {
                Ok(k) if k.renewed.is_some() => code = combine(code, 0),
                Ok(k) => {
                    if let Some(w) = k.waiting {
                        message.push_str(&format!("{}: {w}\n", c.name));
                    }
                }
                Err(e) => {
                    code = 2;
                    message.push_str(&format!("{}: {}\n", c.name, crate::errchain::one_line(&e)));
                }
            }
        }
        let acme = self
            .cfg
            .certificates
            .iter()
            .any(|c| c.directory.is_some() && wanted(c));
        let pending = match self.est.broker() {
            Some(b) if acme => b.renew(req.force, req.cert.clone(), req.issuer.clone()),
            _ => None,
        };
        let Some(answer) = pending else {
            if acme {
                code = 2;
                message.push_str("the upstream worker is not running\n");
            }
            client.answer(code, &message);
            return;
        };
        // The worker may take a while (an ACME order): the answer is sent from a thread so the
        // service goes on serving; the socket takes no other client until then.
        let spawned = std::thread::Builder::new()
            .name("gatecert-control".into())
            .spawn(move || {
                let (c, m) = answer
                    .recv_timeout(ANSWER_TIMEOUT)
                    .unwrap_or((2, "no answer from the upstream worker in time".into()));
                message.push_str(&m);
                client.answer(combine(code, c), &message);
            });
        if let Err(e) = spawned {
            log::error!("cannot answer the renew request: {e}");
        }
    }
}

/// Two renewal exit codes as one: an error wins, then a renewal, then nothing due.
fn combine(a: i32, b: i32) -> i32 {
    if a == 2 || b == 2 {
        2
    } else {
        a.min(b)
    }
}
