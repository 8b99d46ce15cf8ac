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

use super::{Denial, Est, Granted};
use crate::audit::{self, Audit, DEFAULT_MAX_BYTES, DENY_MAX_BYTES};
use crate::leaves::Leaf;

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
            Ok(g) => {
                // A flood that has stopped still gets its summary line.
                if let Some(summary) = self.denials.roll(now) {
                    self.append_denials(now, Some(summary), None);
                }
                self.record_issue(now, op, client, g)
            }
        }
    }

    fn record_issue(
        &mut self,
        now: i64,
        op: &str,
        client: IpAddr,
        g: &Granted,
    ) -> Result<(), audit::Error> {
        let fields = json!({
            "op": op,
            "device": g.device,
            "names": g.names,
            "serial": g.issued.serial_hex,
            "not_after": g.issued.not_after,
            "source": g.origin.as_str(),
            "client": client.to_string(),
        });
        // The lock orders this line and the inventory row against `gatecert ca sign`.
        let path = audit::path_in(&self.state_dir);
        let mut log = Audit::open_locked_within(&path, DEFAULT_MAX_BYTES, LOCK_WAIT)?;
        log.append(now, "est.issue", fields)?;
        if let Some(c) = &self.counters {
            c.leaf_issued(g.origin.source());
        }
        let leaf = Leaf {
            device: g.device.clone(),
            names: g.names.clone(),
            serial: g.issued.serial_hex.clone(),
            not_after: g.issued.not_after,
            source: g.origin.source(),
            issued_at: now,
            previous: None,
        };
        let renews = g.renews.clone();
        let recorded = self.held.inventory(&self.state_dir).and_then(|i| {
            let previous = renews.and_then(|r| i.previous_for(&leaf.device, &r, now));
            i.record(Leaf { previous, ..leaf })
        });
        if let Err(e) = recorded {
            log::error!("leaf inventory write failed: {e}");
        }
        Ok(())
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
            !crate::leaves::path_in(&dir).exists(),
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
        assert!(!crate::leaves::path_in(&dir).exists());
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
        for _ in 0..400 {
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
        let rest = 400 - DENY_LINES_PER_WINDOW;
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
