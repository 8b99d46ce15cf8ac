//! When to leave an upstream ACME CA for the next one in `list issuer` (README, "Backup
//! issuers"): pure functions over the time they are given, so the whole policy is unit-tested
//! with a fixed clock. The renew code ([`crate::renew::issuers`]) and the broker apply it.
//!
//! A failure moves on to the next issuer only when it will not clear soon:
//! - the CA is unreachable, or answers `serverInternal` (RFC 8555 §6.7) or another 5xx, for
//!   [`OUTAGE_FAILURES`] attempts in a row spanning at least [`OUTAGE_SPAN`] — or at once when
//!   the renewal deadline ([`deadline`]) has passed (no certificate yet, or too little left);
//! - `rateLimited` with a Retry-After (RFC 8555 §6.6) ending after the renewal deadline;
//! - an account or External Account Binding refusal (`unauthorized`, `accountDoesNotExist`,
//!   `externalAccountRequired`, RFC 8555 §7.3) or a CAA refusal (`caa`, RFC 8555 §6.7: a fact
//!   about this CA): at once.
//!
//! Anything else, above all a client-side error (`malformed`, `rejectedIdentifier`, `badCSR`,
//! a bad config, a challenge that could not be set up), never moves: another CA would refuse
//! it too, and an order placed there for nothing counts against its limits.
//!
//! An issuer left behind is held: not asked again before [`hold_until`] (an hour, doubling with
//! every failover from it, at most a day, and never before its Retry-After). The next renewal
//! starts with the most preferred issuer not on hold, so the primary is preferred again as soon
//! as it is healthy.

use serde::{Deserialize, Serialize};

use crate::acme;
use crate::renew;

/// Outage failures in a row before an issuer is left.
pub const OUTAGE_FAILURES: u32 = 3;
/// The shortest span of those failures, seconds (30 minutes).
pub const OUTAGE_SPAN: i64 = 30 * 60;
/// The first hold of an issuer that was left, seconds (1 hour); doubles with each failover.
pub const HOLD_MIN: i64 = 3600;
/// The longest hold, seconds (1 day).
pub const HOLD_MAX: i64 = 86_400;

/// `<state_dir>/upstream-issuer.json`: the broker's [`Record`] (its `list issuer`).
pub const BROKER_RECORD: &str = "upstream-issuer.json";

/// How one failed attempt bears on the choice of issuer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection, a timeout, a TLS failure: the CA could not be reached.
    Unreachable,
    /// `serverInternal` or another 5xx answer.
    ServerError,
    /// `rateLimited`, with the Retry-After (seconds from now) when given.
    RateLimited(Option<i64>),
    /// An account or EAB refusal: the problem type.
    Account(String),
    /// `caa`: the domain's CAA records do not allow this CA.
    Caa,
    /// A client-side error (or anything not listed above): never fails over.
    Stay,
}

/// Why an issuer was left (or chosen), as persisted in `state.json` and shown by `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// [`Failure::Unreachable`] past the threshold.
    Unreachable,
    /// [`Failure::ServerError`] past the threshold.
    ServerError,
    /// [`Failure::RateLimited`] beyond the deadline.
    RateLimited,
    /// [`Failure::Account`].
    Account,
    /// [`Failure::Caa`].
    Caa,
    /// `gatecert renew --now --issuer NAME`.
    Operator,
}

impl Reason {
    /// The spelling in `state.json`, `status` and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unreachable => "unreachable",
            Reason::ServerError => "server-error",
            Reason::RateLimited => "rate-limited",
            Reason::Account => "account",
            Reason::Caa => "caa",
            Reason::Operator => "operator",
        }
    }
}

/// One issuer's recent failures, persisted per certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// The issuer's name.
    pub name: String,
    /// Outage failures in a row.
    #[serde(default)]
    pub failures: u32,
    /// When the first of them happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Not asked again before this time (it was left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_until: Option<i64>,
    /// Failovers from it in a row (the hold doubles with each).
    #[serde(default)]
    pub holds: u32,
}

/// The issuer in use for one certificate and why: `state.json`'s `issuer`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The issuer that issued the live certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// Why it is not the first in the list (`None` when it is, or by plain preference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The issuer left behind for `reason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// When `active` was chosen, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// Issuers with failures or on hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streaks: Vec<Streak>,
}

impl Record {
    /// The streak of `name`, created if new.
    pub fn streak(&mut self, name: &str) -> &mut Streak {
        if let Some(i) = self.streaks.iter().position(|s| s.name == name) {
            return &mut self.streaks[i];
        }
        self.streaks.push(Streak {
            name: name.to_string(),
            ..Streak::default()
        });
        let last = self.streaks.len() - 1;
        &mut self.streaks[last]
    }

    /// True when `name` is on hold at `now`.
    pub fn held(&self, name: &str, now: i64) -> bool {
        self.streaks
            .iter()
            .any(|s| s.name == name && s.hold_until.is_some_and(|t| now < t))
    }
}

/// How a renewal error bears on the choice of issuer.
pub fn classify(e: &renew::Error) -> Failure {
    let a = match e {
        renew::Error::Transport(_) => return Failure::Unreachable,
        renew::Error::Acme(a) => a,
        _ => return Failure::Stay,
    };
    match a {
        acme::Error::Transport(_) | acme::Error::Timeout { .. } => Failure::Unreachable,
        acme::Error::Problem {
            problem,
            retry_after,
            ..
        } => {
            if problem.is("rateLimited") {
                Failure::RateLimited(*retry_after)
            } else if problem.is("caa") {
                Failure::Caa
            } else if [
                "unauthorized",
                "accountDoesNotExist",
                "externalAccountRequired",
            ]
            .iter()
            .any(|t| problem.is(t))
            {
                let kind = problem.kind.as_deref().unwrap_or_default();
                Failure::Account(kind.rsplit(':').next().unwrap_or(kind).to_string())
            } else if problem.is("serverInternal") || problem.status.is_some_and(|s| s >= 500) {
                Failure::ServerError
            } else {
                Failure::Stay
            }
        }
        // A CAA refusal comes back as a failed authorization (RFC 8555 §7.1.4).
        acme::Error::Failed {
            problem: Some(p), ..
        } if p.is("caa") || p.subproblems.iter().any(|s| is_caa(s.kind.as_deref())) => Failure::Caa,
        _ => Failure::Stay,
    }
}

fn is_caa(kind: Option<&str>) -> bool {
    kind == Some("urn:ietf:params:acme:error:caa")
}

/// The latest time a renewal may still be waited for: `not_after` minus a sixth of the
/// lifetime (15 days of a 90-day certificate, 1 day of a 6-day one); `now` when there is no
/// certificate yet. A CA that cannot serve us before then is left.
pub fn deadline(live: Option<(i64, i64)>, now: i64) -> i64 {
    match live {
        Some((not_before, not_after)) => not_after - (not_after - not_before).max(0) / 6,
        None => now,
    }
}

/// Records `failure` of the issuer `streak` at `now` and says whether to leave it, and why.
pub fn judge(failure: &Failure, streak: &mut Streak, now: i64, deadline: i64) -> Option<Reason> {
    let outage = |streak: &mut Streak, reason| {
        streak.failures = streak.failures.saturating_add(1);
        let since = *streak.since.get_or_insert(now);
        let lasting = streak.failures >= OUTAGE_FAILURES && now - since >= OUTAGE_SPAN;
        (lasting || now >= deadline).then_some(reason)
    };
    match failure {
        Failure::Unreachable => outage(streak, Reason::Unreachable),
        Failure::ServerError => outage(streak, Reason::ServerError),
        Failure::RateLimited(retry_after) => {
            let clears = now.saturating_add(retry_after.unwrap_or(0).max(0));
            (clears > deadline).then_some(Reason::RateLimited)
        }
        Failure::Account(_) => Some(Reason::Account),
        Failure::Caa => Some(Reason::Caa),
        Failure::Stay => None,
    }
}

/// Why [`judge`] kept the issuer, for the log.
pub fn staying(failure: &Failure, streak: &Streak) -> String {
    match failure {
        Failure::Unreachable | Failure::ServerError => format!(
            "failure {} in a row; it is left after {OUTAGE_FAILURES} spanning {} minutes",
            streak.failures,
            OUTAGE_SPAN / 60
        ),
        Failure::RateLimited(_) => "the rate limit ends before the renewal deadline".into(),
        _ => "another CA would refuse it too".into(),
    }
}

/// Puts the issuer `streak` on hold after it was left at `now`: [`HOLD_MIN`] doubling with
/// each failover in a row, at most [`HOLD_MAX`], and never before `retry_after` ends.
pub fn hold_until(streak: &mut Streak, now: i64, retry_after: Option<i64>) -> i64 {
    let backoff = (HOLD_MIN << streak.holds.min(8)).min(HOLD_MAX);
    streak.holds = streak.holds.saturating_add(1);
    let until = now.saturating_add(backoff.max(retry_after.unwrap_or(0)));
    streak.hold_until = Some(until);
    until
}

/// A success of the issuer `streak`: its failures and hold are forgotten.
pub fn healthy(streak: &mut Streak) {
    *streak = Streak {
        name: std::mem::take(&mut streak.name),
        ..Streak::default()
    };
}

/// The order in which to try `names` (most preferred first) at `now`: those not on hold, in
/// preference order; when every one is on hold, all of them, in preference order.
pub fn order<'a>(names: &[&'a str], record: &Record, now: i64) -> Vec<&'a str> {
    let free: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !record.held(n, now))
        .collect();
    if free.is_empty() {
        names.to_vec()
    } else {
        free
    }
}

/// `status`'s view of a certificate's issuers (doc/status-schema.md, `issuers`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct View {
    /// The issuer in use: the one that issued the live certificate (the first when none yet).
    pub active: String,
    /// `list issuer`, most preferred first.
    pub order: Vec<String>,
    /// Why `active` is not the first: `unreachable`, `server-error`, `rate-limited`,
    /// `account`, `caa` or `operator`; `null` when it is the first.
    pub reason: Option<&'static str>,
    /// The issuer left for `reason`.
    pub from: Option<String>,
    /// When `active` was chosen, Unix seconds.
    pub since: Option<i64>,
    /// Issuers not asked again before a time (they were left).
    pub held: Vec<Held>,
}

/// An issuer on hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Held {
    /// Its name.
    pub name: String,
    /// Not asked again before this time, Unix seconds.
    pub until: i64,
}

/// The view of `names` (`list issuer`) with the certificate's `record` at `now`.
pub fn view(names: &[&str], record: Option<&Record>, now: i64) -> View {
    let empty = Record::default();
    let r = record.unwrap_or(&empty);
    let active = r
        .active
        .clone()
        .filter(|a| names.contains(&a.as_str()))
        .unwrap_or_else(|| names.first().map_or_else(String::new, |n| n.to_string()));
    let first = names.first().is_some_and(|n| *n == active);
    View {
        reason: r.reason.filter(|_| !first).map(Reason::as_str),
        from: r.from.clone().filter(|_| !first),
        since: r.at,
        held: r
            .streaks
            .iter()
            .filter_map(|s| {
                let until = s.hold_until.filter(|&t| now < t)?;
                Some(Held {
                    name: s.name.clone(),
                    until,
                })
            })
            .collect(),
        order: names.iter().map(|n| n.to_string()).collect(),
        active,
    }
}

impl View {
    /// One line for `gatecert status`'s table.
    pub fn line(&self) -> String {
        let mut s = format!("issuer: {}", self.active);
        if let (Some(reason), Some(from)) = (self.reason, &self.from) {
            s.push_str(&format!(" (failed over from {from}: {reason}"));
            if let Some(t) = self.since {
                s.push_str(&format!(", {}", crate::crypto::rfc3339(t)));
            }
            s.push(')');
        } else if let Some(reason) = self.reason {
            s.push_str(&format!(" ({reason})"));
        }
        s.push_str(&format!("; order: {}", self.order.join(", ")));
        for h in &self.held {
            s.push_str(&format!(
                "; {} retried after {}",
                h.name,
                crate::crypto::rfc3339(h.until)
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests;
