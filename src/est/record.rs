//! What the EST service writes about each answer.
//!
//! An issuance goes into `audit.log` and the leaf inventory under the audit lock, and must be
//! recorded before the certificate leaves: when the line cannot be written the client gets 503
//! and no certificate (fail closed). A denial goes into the separate denial stream
//! (`audit-deny.log`), with its fields cut to size ([`audit::bounded`]) and at most
//! [`DENY_LINES_PER_WINDOW`] lines per [`DENY_WINDOW`] seconds; the rest of a window is counted
//! and written as one `est.deny-summary` line when the next window starts. Whatever anyone
//! without credentials sends, the issuance history is never rotated away and the denial stream
//! grows by at most about 75 KB a minute.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::json;

use super::{lifecycle, Denial, Est, Granted};
use crate::audit::{self, Audit, DEFAULT_MAX_BYTES, DENY_MAX_BYTES};
use crate::leaves::Inventory;
use crate::token::{self, Tokens};

/// An issuance waiting for its commit ([`Est::commit_issues`]).
pub(super) struct Issue {
    /// The EST operation.
    pub(super) op: String,
    /// The client's address, for the audit line.
    pub(super) client: IpAddr,
    /// What was granted and signed.
    pub(super) granted: Granted,
}

/// A group between its staging and its answers: the issuances that passed the gates (with
/// their place in `results`) and every result so far.
pub(super) struct Group {
    passed: Vec<(usize, Issue)>,
    pub(super) results: Vec<Result<Granted, Denial>>,
}

/// A group's stores, locked, with its changes staged in memory: what [`Staged::write`] makes
/// durable, on the loop's thread or on the commit thread ([`super::commit`]). It holds the
/// locks until it is dropped.
pub(super) struct Staged {
    log: Audit,
    inv: Inventory,
    tokens: Option<Tokens>,
    lines: Vec<(&'static str, serde_json::Value)>,
    /// (operation, device) of each issuance that passed, for the `est.withheld` lines.
    withheld: Vec<(String, String)>,
    now: i64,
}

impl Staged {
    /// Makes the group durable in this order: the audit lines, the rows, the token uses, each
    /// with one sync. When the lines are in the log but the rest could not be written, the
    /// log says so (`est.withheld`) and the certificates are withheld. Drops the locks.
    pub(super) fn write(self) -> Result<(), Denial> {
        let Staged {
            mut log,
            mut inv,
            mut tokens,
            lines,
            withheld,
            now,
        } = self;
        log.append_batch(now, lines)
            .map_err(|e| audit_down(&e, "the certificates are withheld"))?;
        let stored = inv
            .save()
            .map_err(|e| {
                log::error!("leaf inventory write failed; the certificates are withheld: {e}");
                Denial::new(500, "leaf inventory write failed")
            })
            .and_then(|()| match tokens.as_mut() {
                Some(t) => t.save_staged().map_err(|e| {
                    log::error!("cannot spend the token uses; the certificates are withheld: {e}");
                    Denial::new(500, "token store write failed")
                }),
                None => Ok(()),
            });
        if let (Ok(()), Some(t)) = (&stored, tokens.as_mut()) {
            // Used-up and expired tokens are pruned here, off the loop's thread, when superseded
            // records outweigh live ones (one comparison until enough was appended since the last
            // look); the uses are durable already, so a failure only leaves the journal longer.
            if let Err(e) = t.maintain(now) {
                log::warn!(
                    "token journal compaction: {}",
                    crate::errchain::one_line(&e)
                );
            }
        }
        if let Err(d) = &stored {
            let lines = withheld
                .into_iter()
                .map(|(op, device)| {
                    (
                        "est.withheld",
                        json!({"op": op, "device": device, "reason": d.reason}),
                    )
                })
                .collect();
            let _ = log.append_batch(now, lines);
        }
        stored
    }
}

/// The audit log could not be locked or written (`e`, logged with `consequence`): 503, retry
/// in a minute.
fn audit_down(e: &audit::Error, consequence: &str) -> Denial {
    log::error!("{}; {consequence}", crate::errchain::one_line(e));
    let mut d = Denial::new(503, super::AUDIT_DOWN);
    d.retry_after = Some(60);
    d
}

/// `d` for the issuance `g`: its status, reason and `Retry-After`, with `g`'s device and names.
fn for_issue(d: &Denial, g: &Granted) -> Denial {
    let mut out = Denial::new(d.status, d.reason.clone())
        .device(&g.device)
        .names(g.names.clone());
    out.retry_after = d.retry_after;
    out
}

/// The fields of an issuance's `est.issue` audit line; `superseded`: the device's oldest
/// certificates it pushed out ([`crate::leaves::MAX_EARLIER`]), revoked with it.
fn issue_fields(it: &Issue, superseded: &[crate::leaves::Revoked]) -> serde_json::Value {
    let g = &it.granted;
    let mut fields = json!({
        "op": it.op,
        "device": g.device,
        "names": g.names,
        "serial": g.issued.serial_hex,
        "not_after": g.issued.not_after,
        "source": g.origin.as_str(),
        "client": it.client.to_string(),
    });
    if !superseded.is_empty() {
        fields["superseded"] = superseded.iter().map(|r| r.serial.as_str()).collect();
    }
    fields
}

/// What a client is told when the token store refuses or fails a commit.
fn token_error(e: &token::Error) -> Denial {
    match e {
        token::Error::Denied(d) => Denial::new(super::token_denial_status(*d), d.to_string()),
        token::Error::Busy(p) => {
            log::warn!("{} is held by another process; 503", p.display());
            let mut d = Denial::new(503, "token store busy; retry");
            d.retry_after = Some(super::TOKEN_BUSY_RETRY);
            d
        }
        e => {
            log::error!("cannot spend a token use: {e}");
            Denial::new(500, "token store write failed")
        }
    }
}

fn token_denial(e: &token::Error, g: &Granted) -> Denial {
    token_error(e).device(&g.device).names(g.names.clone())
}

/// The length of a denial window, seconds.
pub const DENY_WINDOW: i64 = 60;
/// Denial lines written per window; the rest are summarised.
pub const DENY_LINES_PER_WINDOW: u32 = 30;
/// How long the service waits for a CLI's audit lock before answering 503: the event loop
/// serves every client, so it never waits long.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
/// Client addresses named in a summary.
const SUMMARY_CLIENTS: usize = 16;

/// The denials of the current window.
#[derive(Debug, Default)]
pub(super) struct DenyWindow {
    start: i64,
    written: u32,
    suppressed: u64,
    by_status: BTreeMap<u16, u64>,
    clients: BTreeSet<String>,
    more_clients: bool,
}

impl DenyWindow {
    /// Closes the window if `now` is past it: the summary line's fields when denials were
    /// left out.
    fn roll(&mut self, now: i64) -> Option<serde_json::Value> {
        if now >= self.start && now < self.start.saturating_add(DENY_WINDOW) {
            return None;
        }
        let summary = (self.suppressed > 0).then(|| {
            json!({
                "window_start": self.start,
                "window_seconds": DENY_WINDOW,
                "written": self.written,
                "suppressed": self.suppressed,
                "by_status": self.by_status.iter()
                    .map(|(s, n)| (s.to_string(), json!(n)))
                    .collect::<serde_json::Map<_, _>>(),
                "clients": self.clients,
                "more_clients": self.more_clients,
            })
        });
        *self = DenyWindow {
            start: now,
            ..DenyWindow::default()
        };
        summary
    }

    /// Whether this denial gets its own line; otherwise it is counted for the summary.
    fn admit(&mut self, status: u16, client: &str) -> bool {
        if self.written < DENY_LINES_PER_WINDOW {
            self.written += 1;
            return true;
        }
        self.suppressed += 1;
        *self.by_status.entry(status).or_default() += 1;
        if self.clients.len() < SUMMARY_CLIENTS {
            self.clients.insert(client.to_owned());
        } else if !self.clients.contains(client) {
            self.more_clients = true;
        }
        false
    }
}

impl Est {
    /// Records `outcome`. An issuance that could not be recorded is an error: the caller must
    /// not hand the certificate out. Denials are recorded best effort (and never block).
    pub(super) fn record(
        &mut self,
        op: &str,
        client: IpAddr,
        outcome: &Result<Granted, Denial>,
    ) -> Result<(), audit::Error> {
        let now = self.clock.now();
        match outcome {
            // The first half of the RFC 7235 challenge round-trip is not a denial: counted only.
            Err(d) if d.challenge => {
                if let Some(c) = &self.counters {
                    c.est_auth_challenge(op);
                }
                Ok(())
            }
            Err(d) => {
                self.record_denial(now, op, client, d);
                Ok(())
            }
            // Issuances are recorded by `commit_issue`, with their inventory row.
            Ok(_) => Ok(()),
        }
    }

    /// Commits one issuance: [`Est::commit_issues`] of one.
    pub(super) fn commit_issue(
        &mut self,
        op: &str,
        client: IpAddr,
        g: Granted,
    ) -> Result<Granted, Denial> {
        let mut out = self.commit_issues(vec![Issue {
            op: op.to_owned(),
            client,
            granted: g,
        }]);
        out.pop()
            .unwrap_or_else(|| Err(Denial::new(500, "issuance lost")))
    }

    /// Commits issuances that arrived together (a group commit): one sync of each store for
    /// the whole group, never an answer before its own records are durable. Under the audit,
    /// inventory and token locks (in that order; the audit lock orders it against `gatecert ca
    /// sign`), each issuance's inventory gates ([`lifecycle::leaf_row`]) and token checks
    /// ([`Tokens::can_commit`]) run again; then, for those that pass, the `est.issue` lines are
    /// written and synced, then the devices' rows, then the spent token uses. A crash anywhere
    /// before the answer leaves at worst an audit line (and a row) for a certificate that never
    /// went out, and never a spent use without its audit line. A busy or broken audit log is a
    /// 503 and no certificate; a row or token use that cannot be written withholds the
    /// certificate, and the audit log says so (`est.withheld`). The results are in `items`' order.
    ///
    /// In three steps, so that the service's loop can hand the middle one to its commit thread
    /// ([`super::commit`]): [`Est::stage_issues`], [`Staged::write`], [`Est::finish_issues`].
    pub(super) fn commit_issues(&mut self, items: Vec<Issue>) -> Vec<Result<Granted, Denial>> {
        let (group, staged) = self.stage_issues(items);
        match staged {
            Some(staged) => {
                let stored = staged.write();
                self.finish_issues(group, stored)
            }
            None => group.results,
        }
    }

    /// Takes the locks and runs every gate again, staging each change in memory. `None`: nothing
    /// passed (or the locks could not be had), and the group's results are final.
    pub(super) fn stage_issues(&mut self, items: Vec<Issue>) -> (Group, Option<Staged>) {
        let now = self.clock.now();
        if let Some(summary) = self.denials.roll(now) {
            self.append_denials(now, Some(summary), None);
        }
        let mut results: Vec<Result<Granted, Denial>> = Vec::with_capacity(items.len());
        let locks = self.commit_locks(&items);
        let (log, mut inv, mut tokens) = match locks {
            Ok(l) => l,
            Err(d) => {
                for it in items {
                    self.end_claim(&it.granted);
                    results.push(Err(for_issue(&d, &it.granted)));
                }
                let passed = Vec::new();
                return (Group { passed, results }, None);
            }
        };
        // The gates, on the stores as they are now, each change staged in memory.
        let mut lines = Vec::new();
        let mut passed = Vec::new();
        for it in items {
            let staged = lifecycle::leaf_row(&inv, &it.granted, now).and_then(|row| {
                let claim = it.granted.claim.and_then(|id| self.claims.get(id));
                if let (Some(claim), Some(t)) = (claim, tokens.as_ref()) {
                    t.can_commit(claim, now)
                        .map_err(|e| token_denial(&e, &it.granted))?;
                } else if it.granted.claim.is_some() {
                    log::error!("the token claim of {} was lost", it.granted.device);
                    return Err(Denial::new(500, "token claim lost"));
                }
                let superseded = inv.stage_record(row).map_err(|e| {
                    log::error!("leaf inventory: {e}");
                    Denial::new(500, "leaf inventory write failed")
                })?;
                if let (Some(claim), Some(t)) = (claim, tokens.as_mut()) {
                    t.stage_commit(claim, now)
                        .map_err(|e| token_denial(&e, &it.granted))?;
                }
                Ok(superseded)
            });
            match staged {
                Ok(superseded) => {
                    lines.push(("est.issue", issue_fields(&it, &superseded)));
                    passed.push((results.len(), it));
                    results.push(Err(Denial::new(500, "not committed")));
                }
                Err(d) => {
                    self.end_claim(&it.granted);
                    let d = match d.device {
                        Some(_) => d,
                        None => d.device(&it.granted.device),
                    };
                    results.push(Err(d.names(it.granted.names.clone())));
                }
            }
        }
        if passed.is_empty() {
            return (Group { passed, results }, None);
        }
        let withheld = passed
            .iter()
            .map(|(_, it)| (it.op.clone(), it.granted.device.clone()))
            .collect();
        let staged = Staged {
            log,
            inv,
            tokens,
            lines,
            withheld,
            now,
        };
        (Group { passed, results }, Some(staged))
    }

    /// Ends a group once [`Staged::write`] has said how it went: the claims are released (spent
    /// or not), the issuances counted, and the results final.
    pub(super) fn finish_issues(
        &mut self,
        group: Group,
        stored: Result<(), Denial>,
    ) -> Vec<Result<Granted, Denial>> {
        let Group {
            passed,
            mut results,
        } = group;
        for (i, it) in passed {
            self.end_claim(&it.granted);
            results[i] = match &stored {
                Ok(()) => {
                    if let Some(c) = &self.counters {
                        c.leaf_issued(it.granted.origin.source());
                    }
                    Ok(it.granted)
                }
                Err(d) => Err(for_issue(d, &it.granted)),
            };
        }
        results
    }

    /// The locks of a commit, in order: the audit log, the inventory, and the token store when
    /// an issuance spends a token use.
    fn commit_locks(&self, items: &[Issue]) -> Result<(Audit, Inventory, Option<Tokens>), Denial> {
        let log = Audit::open_locked_within(
            &audit::path_in(&self.state_dir),
            DEFAULT_MAX_BYTES,
            LOCK_WAIT,
        )
        .map_err(|e| audit_down(&e, "the certificate is withheld"))?;
        let inv = self.inventory_locked()?;
        let tokens = match items.iter().any(|i| i.granted.claim.is_some()) {
            false => None,
            true => Some(
                Tokens::open_locked_within(
                    &token::path_in(&self.state_dir),
                    super::TOKEN_LOCK_WAIT,
                )
                .map_err(|e| token_error(&e))?,
            ),
        };
        Ok((log, inv, tokens))
    }

    /// Ends `g`'s token claim (committed or not: either way it is no longer held).
    fn end_claim(&mut self, g: &Granted) {
        if let Some(id) = g.claim {
            self.claims.take(id);
        }
    }

    pub(super) fn record_denial(&mut self, now: i64, op: &str, client: IpAddr, d: &Denial) {
        let client = client.to_string();
        let summary = self.denials.roll(now);
        let admitted = self.denials.admit(d.status, &client);
        if summary.is_none() && !admitted {
            return;
        }
        let fields = audit::bounded(json!({
            "op": op,
            "status": d.status,
            "device": d.device,
            "names": d.names,
            "reason": d.reason,
            "client": client,
        }));
        self.append_denials(now, summary, admitted.then_some(fields));
    }

    /// Appends a window's summary and/or one denial to the denial stream, best effort.
    fn append_denials(
        &self,
        now: i64,
        summary: Option<serde_json::Value>,
        denial: Option<serde_json::Value>,
    ) {
        let path = audit::deny_path_in(&self.state_dir);
        let appended = Audit::open_locked_within(&path, DENY_MAX_BYTES, LOCK_WAIT).and_then(|a| {
            let mut a = a.with_retention(0);
            if let Some(s) = summary {
                a.append(now, "est.deny-summary", s)?;
            }
            if let Some(d) = denial {
                a.append(now, "est.deny", d)?;
            }
            Ok(())
        });
        if let Err(e) = appended {
            log::error!("denial log append failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Audit;
    use crate::clock::Clock as _;
    use crate::est::tests::{enroll_req, peer, setup, token_and_csr};
    use crate::http::Handler as _;
    use crate::leaves;

    /// Used-up tokens are pruned when an enrollment's group commits (on the commit thread in
    /// the service; `gatecert token add` appends without reading the journal, so it can't): the
    /// journal shrinks, the live tokens stay usable.
    #[test]
    fn an_enrollment_prunes_used_up_tokens() {
        use crate::token::{self, Claims, Tokens};
        let (dir, mut est, clock) = setup("prune");
        let now = clock.now();
        let path = token::path_in(&dir);
        let (live, _) = token_and_csr(&dir, "live", "live.sensors.local", 3600, now);
        let (t, c) = token_and_csr(&dir, "e", "e.sensors.local", 3600, now);
        let names = ["d.sensors.local".to_string()];
        let mut store = Tokens::open_locked(&path).unwrap();
        store.set_batch(true).unwrap();
        let mut claims = Claims::new();
        for i in 0..1500 {
            let dev = format!("d{i}");
            let tok = store.add(&dev, &names, 3600, 1, now).unwrap();
            let (id, _) = store.claim(&mut claims, &dev, &tok, "k", now).unwrap();
            store.commit(&claims.take(id).unwrap(), now).unwrap();
        }
        store.set_batch(false).unwrap();
        store.unlock().unwrap();
        drop(store);
        let before = std::fs::metadata(&path).unwrap().len();
        assert_eq!(est.handle(&enroll_req("e", &t, &c), &peer()).status, 200);
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after < before / 100, "{before} -> {after} bytes");
        let store = Tokens::open(&path).unwrap();
        let left: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|i| i.device)
            .collect();
        assert_eq!(left, ["live"]);
        assert!(store.check("live", &live, now).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 10 item 5c: an audit log that cannot be written stops issuance (503), signs and
    /// hands out nothing, and burns no token; once it is back the same token works.
    #[test]
    fn an_unrecordable_issuance_is_refused_with_503() {
        let (dir, mut est, clock) = setup("audit-down");
        let name = "a.sensors.local";
        let (token, csr) = token_and_csr(&dir, "a", name, 600, clock.now());
        let log = audit::path_in(&dir);
        std::fs::create_dir_all(&log).unwrap();
        let resp = est.handle(&enroll_req("a", &token, &csr), &peer());
        assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
        assert!(!String::from_utf8_lossy(&resp.body).contains("CERTIFICATE"));
        assert!(
            !leaves::path_in(&dir).exists(),
            "an unaudited leaf is in the inventory"
        );
        std::fs::remove_dir(&log).unwrap();
        let resp = est.handle(&enroll_req("a", &token, &csr), &peer());
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        assert!(std::fs::read_to_string(&log).unwrap().contains("est.issue"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A CLI holding the audit lock (a stopped `ca sign`) costs the event loop at most
    /// `LOCK_WAIT`: the issuance is refused with 503 and withheld, not stalled on.
    #[test]
    fn a_held_audit_lock_gives_503_and_withholds_the_certificate() {
        let (dir, mut est, clock) = setup("audit-busy");
        let (t, c) = token_and_csr(&dir, "k", "k.sensors.local", 600, clock.now());
        let held = Audit::open_locked(&audit::path_in(&dir), DEFAULT_MAX_BYTES).unwrap();
        let resp = est.handle(&enroll_req("k", &t, &c), &peer());
        assert_eq!(resp.status, 503, "{}", String::from_utf8_lossy(&resp.body));
        assert!(!leaves::path_in(&dir).exists());
        drop(held);
        let (t2, c2) = token_and_csr(&dir, "k2", "k2.sensors.local", 600, clock.now());
        assert_eq!(est.handle(&enroll_req("k2", &t2, &c2), &peer()).status, 200);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 10 item 5b at the service: a truncated log is a broken chain; nothing is issued
    /// until `repair_head` records the gap.
    #[test]
    fn a_broken_chain_stops_issuance_until_repaired() {
        let (dir, mut est, clock) = setup("audit-broken");
        let (t1, c1) = token_and_csr(&dir, "b1", "b1.sensors.local", 600, clock.now());
        assert_eq!(est.handle(&enroll_req("b1", &t1, &c1), &peer()).status, 200);
        let log = audit::path_in(&dir);
        std::fs::write(&log, "").unwrap();
        let (t2, c2) = token_and_csr(&dir, "b2", "b2.sensors.local", 600, clock.now());
        assert_eq!(est.handle(&enroll_req("b2", &t2, &c2), &peer()).status, 503);
        assert_eq!(
            std::fs::read(&log).unwrap(),
            b"",
            "a broken chain was continued"
        );
        assert!(Audit::repair_head(&log, clock.now()).unwrap().is_some());
        assert_eq!(est.handle(&enroll_req("b2", &t2, &c2), &peer()).status, 200);
        assert!(Audit::verify(&log).unwrap().ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 10 item 5a: 400 unauthenticated requests with a 6 KB user name and 200 SANs write
    /// a bounded amount to the denial stream and nothing to `audit.log`.
    #[test]
    fn a_denial_flood_leaves_the_issuance_history_alone() {
        let (dir, mut est, clock) = setup("flood");
        let (t, c) = token_and_csr(&dir, "f", "f.sensors.local", 600, clock.now());
        assert_eq!(est.handle(&enroll_req("f", &t, &c), &peer()).status, 200);
        let log = audit::path_in(&dir);
        let before = std::fs::read(&log).unwrap();
        let names: Vec<String> = (0..200).map(|i| format!("n{i}.sensors.local")).collect();
        let key = crate::crypto::PrivateKey::generate(crate::crypto::KeyType::Ec256).unwrap();
        let csr = key.csr(&names, &[]).unwrap();
        let user = "u".repeat(6 * 1024);
        // Four windows' worth of lines (120 requests: each a 6 KB user name and 200 names; more
        // only slows the test under qemu).
        const FLOOD: u32 = 4 * DENY_LINES_PER_WINDOW;
        for _ in 0..FLOOD {
            let resp = est.handle(&enroll_req(&user, "wrong", &csr), &peer());
            assert!(resp.status >= 400);
        }
        assert_eq!(std::fs::read(&log).unwrap(), before);
        // The next window's first answer (here an issuance) writes the summary.
        clock.advance(DENY_WINDOW);
        let (t2, c2) = token_and_csr(&dir, "g", "g.sensors.local", 600, clock.now());
        assert_eq!(est.handle(&enroll_req("g", &t2, &c2), &peer()).status, 200);
        let deny = audit::deny_path_in(&dir);
        let text = std::fs::read_to_string(&deny).unwrap();
        assert_eq!(
            text.lines().count(),
            DENY_LINES_PER_WINDOW as usize + 1,
            "{text}"
        );
        assert!(text.len() < 64 * 1024, "{} bytes", text.len());
        let rest = FLOOD - DENY_LINES_PER_WINDOW;
        assert!(text.contains(&format!("\"suppressed\":{rest}")), "{text}");
        assert!(Audit::verify(&log).unwrap().ok());
        assert!(Audit::verify(&deny).unwrap().ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_window_writes_a_bounded_number_of_lines_then_summarises() {
        let mut w = DenyWindow::default();
        assert!(w.roll(1000).is_none());
        let admitted = (0..400)
            .filter(|i| w.admit(401, &format!("127.0.0.{}", i % 40)))
            .count();
        assert_eq!(admitted, DENY_LINES_PER_WINDOW as usize);
        assert!(w.roll(1000 + DENY_WINDOW - 1).is_none());
        let s = w.roll(1000 + DENY_WINDOW).unwrap();
        let rest = 400 - u64::from(DENY_LINES_PER_WINDOW);
        assert_eq!(s["suppressed"], rest);
        assert_eq!(s["by_status"]["401"], rest);
        assert_eq!(s["clients"].as_array().unwrap().len(), SUMMARY_CLIENTS);
        assert_eq!(s["more_clients"], true);
        // A quiet window writes no summary.
        assert!(w.admit(403, "127.0.0.1"));
        assert!(w.roll(1000 + 3 * DENY_WINDOW).is_none());
    }
}
