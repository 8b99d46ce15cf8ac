//! Syslog alerts, one line per state change: the daemon calls [`Alerter::tick`] each loop with
//! a fresh [`Status`].
//!
//! - a certificate inside its alert window (`alert_days`, or 1/3 of the lifetime when shorter):
//!   a warning on entering, then once a day while it stays there; an expired one likewise, as
//!   an error;
//! - renewal failed `alert_failures` times in a row: one error; a later success: one notice;
//! - the clock turned untrusted, the local CA went missing, the audit log's end stopped matching
//!   its head (issuance refused), the upstream went down: one line each way.
//!
//! The last-alerted state and the once-a-day timestamps live in memory only: a restart repeats
//! at most one line per problem, and nothing is written to flash.

use std::collections::HashMap;

use log::Level;

use super::status::{CertStatus, Status};

const DAY: i64 = 86_400;

/// One alert line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Warn, Error or Info (recoveries).
    pub level: Level,
    /// The text logged.
    pub line: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Window {
    #[default]
    Clear,
    Alert,
    Expired,
}

#[derive(Debug, Default)]
struct CertMemory {
    window: Window,
    /// When the window line was last logged.
    window_logged: i64,
    failing: bool,
}

/// Remembers what was last said, so each problem is logged once (or once a day).
#[derive(Debug, Default)]
pub struct Alerter {
    certs: HashMap<String, CertMemory>,
    clock_untrusted: bool,
    ca_missing: bool,
    audit_broken: bool,
    /// The audit history's attention lines last logged.
    audit_history: Vec<String>,
    upstream_down: bool,
}

impl Alerter {
    /// Nothing alerted yet.
    pub fn new() -> Alerter {
        Alerter::default()
    }

    /// Compares `status` (taken at `now`) with what was last alerted, logs the changes through
    /// the `log` crate (warnings and errors go to syslog) and returns them.
    /// `alert_failures` is `cfg.main.alert_failures`.
    pub fn tick(&mut self, status: &Status, alert_failures: u32, now: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut say = |level: Level, line: String| {
            log::log!(level, "{line}");
            out.push(Alert { level, line });
        };

        let untrusted = !status.clock.trusted;
        if untrusted != self.clock_untrusted {
            self.clock_untrusted = untrusted;
            match &status.clock.reason {
                Some(r) if untrusted => say(Level::Error, format!("clock untrusted: {r}")),
                _ => say(Level::Info, "clock trusted again".into()),
            }
        }
        // Missing only matters when the config needs a CA (then `error` says why).
        let ca_missing = status.ca.error.is_some();
        if ca_missing != self.ca_missing {
            self.ca_missing = ca_missing;
            match &status.ca.error {
                Some(e) if ca_missing => say(Level::Error, format!("local CA missing: {e}")),
                _ => say(Level::Info, "local CA present again".into()),
            }
        }
        let audit_broken = status.ca.audit_error.is_some();
        if audit_broken != self.audit_broken {
            self.audit_broken = audit_broken;
            match &status.ca.audit_error {
                Some(e) => say(
                    Level::Error,
                    format!("audit log broken, issuance refused: {e}"),
                ),
                None => say(
                    Level::Info,
                    "audit log intact again; issuance resumes".into(),
                ),
            }
        }
        let audit = status.audit.attention();
        if audit != self.audit_history {
            for a in audit.iter().filter(|a| !self.audit_history.contains(a)) {
                say(Level::Error, a.clone());
            }
            if audit.is_empty() {
                say(Level::Info, "audit history within its policy again".into());
            }
            self.audit_history = audit;
        }
        let down = status.upstream.state == "down";
        if down != self.upstream_down {
            self.upstream_down = down;
            if down {
                let why = status.upstream.last_error.as_deref().unwrap_or("no detail");
                say(Level::Warn, format!("upstream ACME CA down: {why}"));
            } else {
                say(
                    Level::Info,
                    format!("upstream ACME CA {}", status.upstream.state),
                );
            }
        }

        for c in &status.certificates {
            let mem = self.certs.entry(c.name.clone()).or_default();
            let window = window_of(c, now);
            let due_daily = now - mem.window_logged >= DAY;
            if window != mem.window || (window != Window::Clear && due_daily) {
                match window {
                    Window::Alert => say(
                        Level::Warn,
                        format!(
                            "{} ({}) expires in {} ({})",
                            c.name,
                            c.kind.as_str(),
                            super::status::duration(c.not_after.unwrap_or(now) - now),
                            c.not_after.map(crate::crypto::rfc3339).unwrap_or_default()
                        ),
                    ),
                    Window::Expired => say(
                        Level::Error,
                        format!(
                            "{} ({}) EXPIRED {} ago",
                            c.name,
                            c.kind.as_str(),
                            super::status::duration(now - c.not_after.unwrap_or(now))
                        ),
                    ),
                    Window::Clear => say(
                        Level::Info,
                        format!(
                            "{} ({}) is out of its alert window",
                            c.name,
                            c.kind.as_str()
                        ),
                    ),
                }
                mem.window = window;
                mem.window_logged = now;
            }
            let failing = c.failures >= alert_failures.max(1);
            if failing != mem.failing {
                mem.failing = failing;
                if failing {
                    say(
                        Level::Error,
                        format!(
                            "{}: renewal failed {} times in a row: {}",
                            c.name,
                            c.failures,
                            c.last_error.as_deref().unwrap_or("no detail")
                        ),
                    );
                } else {
                    say(Level::Info, format!("{}: renewal succeeded again", c.name));
                }
            }
        }
        out
    }
}

fn window_of(c: &CertStatus, now: i64) -> Window {
    match (c.not_after, c.alert_at) {
        (Some(na), _) if now >= na => Window::Expired,
        (_, Some(at)) if now >= at => Window::Alert,
        _ => Window::Clear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture::Fixture;
    use crate::report::record_attempt;

    fn lines(a: &[Alert]) -> Vec<(Level, &str)> {
        a.iter().map(|a| (a.level, a.line.as_str())).collect()
    }

    #[test]
    fn once_per_state_change_and_once_a_day() {
        let f = Fixture::new("alerts");
        let mut al = Alerter::new();
        let tick = |al: &mut Alerter, now| al.tick(&Status::gather(&f.cfg, now), 3, now);

        let healthy = f.t0 + DAY;
        assert!(tick(&mut al, healthy).is_empty(), "quiet when healthy");
        assert!(tick(&mut al, healthy + 60).is_empty());

        let t = f.not_after - 5 * DAY;
        let a = tick(&mut al, t);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].level, Level::Warn);
        assert!(
            a[0].line.starts_with("gateway (gateway) expires in 5d 0h"),
            "{a:?}"
        );
        assert!(tick(&mut al, t + 60).is_empty(), "not one per loop");
        assert!(tick(&mut al, t + DAY - 1).is_empty());
        let a = tick(&mut al, t + DAY);
        assert_eq!(a.len(), 1, "once a day: {a:?}");
        assert!(a[0].line.contains("expires in 4d 0h"));

        let e = "urn:ietf:params:acme:error:serverInternal";
        for _ in 0..2 {
            record_attempt(f.state_dir(), "gateway", Err(e), t).unwrap();
            assert!(
                tick(&mut al, t + DAY + 10).is_empty(),
                "under the threshold"
            );
        }
        record_attempt(f.state_dir(), "gateway", Err(e), t).unwrap();
        let a = tick(&mut al, t + DAY + 20);
        assert_eq!(
            lines(&a),
            vec![(
                Level::Error,
                "gateway: renewal failed 3 times in a row: urn:ietf:params:acme:error:serverInternal"
            )]
        );
        record_attempt(f.state_dir(), "gateway", Err(e), t).unwrap();
        assert!(
            tick(&mut al, t + DAY + 30).is_empty(),
            "4th failure: same state"
        );
        record_attempt(f.state_dir(), "gateway", Ok(()), t).unwrap();
        let a = tick(&mut al, t + DAY + 40);
        assert_eq!(
            lines(&a),
            vec![(Level::Info, "gateway: renewal succeeded again")]
        );

        let a = tick(&mut al, f.not_after + 1);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].level, Level::Error);
        assert!(a[0].line.starts_with("gateway (gateway) EXPIRED"), "{a:?}");
    }

    #[test]
    fn clock_ca_and_upstream_changes() {
        let f = Fixture::new("alerts2");
        let mut cfg = f.cfg.clone();
        cfg.certificates[0].directory = Some("https://127.0.0.1:1/dir".into());
        let mut al = Alerter::new();
        let now = f.t0 + DAY;
        let a = al.tick(&Status::gather(&cfg, f.t0 - DAY), 3, f.t0 - DAY);
        assert_eq!(a.len(), 1, "{a:?}");
        assert!(a[0].line.starts_with("clock untrusted: "));
        let a = al.tick(&Status::gather(&cfg, now), 3, now);
        assert_eq!(lines(&a), vec![(Level::Info, "clock trusted again")]);
        let up = f.state_dir().join("upstream.json");
        std::fs::write(&up, r#"{"state":"down","last_error":"timeout"}"#).unwrap();
        let a = al.tick(&Status::gather(&cfg, now), 3, now);
        assert_eq!(
            lines(&a),
            vec![(Level::Warn, "upstream ACME CA down: timeout")]
        );
        assert!(al.tick(&Status::gather(&cfg, now), 3, now).is_empty());
        std::fs::write(&up, r#"{"state":"up"}"#).unwrap();
        let a = al.tick(&Status::gather(&cfg, now), 3, now);
        assert_eq!(lines(&a), vec![(Level::Info, "upstream ACME CA up")]);
        std::fs::rename(f.state_dir().join("ca"), f.state_dir().join("ca.gone")).unwrap();
        let a = al.tick(&Status::gather(&cfg, now), 3, now);
        assert_eq!(a[0].level, Level::Error);
        assert!(a[0].line.starts_with("local CA missing: "), "{a:?}");
        assert!(al.tick(&Status::gather(&cfg, now), 3, now).is_empty());
    }

    /// Issue 10 item 5b: a log whose end no longer matches its head makes `status` unhealthy
    /// (issuance refused) and alerts once; `audit verify --repair` clears it.
    #[test]
    fn a_broken_audit_log_is_reported_and_alerted() {
        use crate::audit::{self, Audit};
        let f = Fixture::new("alerts-audit");
        let now = f.t0 + DAY;
        let path = audit::path_in(f.state_dir());
        let mut log = Audit::open(&path, audit::DEFAULT_MAX_BYTES).unwrap();
        for i in 0..3 {
            log.append(now, "issue", serde_json::json!({ "i": i }))
                .unwrap();
        }
        let mut al = Alerter::new();
        let s = Status::gather(&f.cfg, now);
        assert!(s.healthy, "{:?}", s.attention);
        assert!(al.tick(&s, 3, now).is_empty());
        std::fs::write(&path, "").unwrap();
        let s = Status::gather(&f.cfg, now);
        assert!(!s.healthy);
        assert!(s.ca.audit_error.is_some());
        assert!(
            s.attention[0].starts_with("audit log broken, issuance refused: "),
            "{:?}",
            s.attention
        );
        assert!(s.render_table().contains("audit log: BROKEN: "));
        let a = al.tick(&s, 3, now);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].level, Level::Error);
        assert!(al.tick(&Status::gather(&f.cfg, now), 3, now).is_empty());
        Audit::repair_head(&path, now).unwrap();
        let a = al.tick(&Status::gather(&f.cfg, now), 3, now);
        assert_eq!(
            lines(&a),
            vec![(Level::Info, "audit log intact again; issuance resumes")]
        );
    }

    /// Issue 13: rotated audit files an unavailable archive has not taken make `status`
    /// unhealthy, are alerted once and show in the metrics; archived again, the alert clears.
    #[test]
    fn an_unavailable_audit_archive_is_reported_alerted_and_cleared() {
        use crate::audit::{self, Audit};
        let f = Fixture::new("alerts-archive");
        let now = f.t0 + DAY;
        let mut cfg = f.cfg.clone();
        let usb = f.state_dir().join("usb");
        cfg.main.audit_archive_dir = Some(usb.clone());
        let path = audit::path_in(f.state_dir());
        let append = |n: i64| {
            let mut log = Audit::open(&path, 1024)
                .unwrap()
                .with_policy(cfg.audit_policy());
            for i in 0..n {
                log.append(now, "issue", serde_json::json!({ "i": i }))
                    .unwrap();
            }
        };
        append(30);
        let mut al = Alerter::new();
        let s = Status::gather(&cfg, now);
        assert!(!s.healthy);
        assert!(s.audit.unarchived_files > 0, "{:?}", s.audit);
        let metrics = crate::report::metrics::render_metrics(&s, &Default::default());
        assert!(
            metrics.contains(&format!(
                "gatecert_audit_unarchived_files {}",
                s.audit.unarchived_files
            )),
            "{metrics}"
        );
        let a = al.tick(&s, 3, now);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].level, Level::Error);
        assert!(a[0].line.contains("not archived to"), "{a:?}");
        assert!(al.tick(&Status::gather(&cfg, now), 3, now).is_empty());
        std::fs::create_dir(&usb).unwrap();
        append(10);
        let s = Status::gather(&cfg, now);
        assert_eq!(s.audit.unarchived_files, 0, "{:?}", s.audit);
        assert!(s.healthy, "{:?}", s.attention);
        let a = al.tick(&s, 3, now);
        assert_eq!(
            lines(&a),
            vec![(Level::Info, "audit history within its policy again")]
        );
    }

    #[test]
    fn an_acme_only_setup_without_a_ca_is_quiet() {
        let f = Fixture::new("alerts-acme");
        let mut cfg = f.cfg.clone();
        cfg.certificates[0].directory = Some("https://127.0.0.1:1/dir".into());
        cfg.est.enabled = false;
        std::fs::remove_dir_all(f.state_dir().join("ca")).unwrap();
        let mut al = Alerter::new();
        let now = f.t0 + DAY;
        let a = al.tick(&Status::gather(&cfg, now), 3, now);
        assert!(a.is_empty(), "{a:?}");
    }
}
