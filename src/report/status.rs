//! `gatecert status [--json]`: every certificate gatecert looks after, the clock, the upstream,
//! the leaves and the bootstrap tokens, for a person (a table) or a program (`--json`, schema
//! `gatecert.status/1`, documented field by field in `doc/status-schema.md`).
//!
//! Exit status: 0 healthy, 1 something needs attention (a certificate expired, inside its alert
//! window, missing or unreadable; renewal failing; upstream down; clock untrusted; no local CA;
//! an audit log whose end does not match its head),
//! 2 on error (bad arguments, config).
//!
//! [`Status::gather`] only reads: it never writes the state directory, so running `status` from
//! cron costs no flash writes.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ca::{self, LocalCa};
use crate::clock;
use crate::config::{Certificate, Config};
use crate::crypto::{self, CertInfo};
use crate::schedule::{self, AriChoice};
use crate::store::{self, SetDir};
use crate::trust::{ClockTrust, Untrusted};

use super::health::Health;

mod counts;
mod upstream;
pub use counts::{LeafCounts, StoreCounts, TokenCounts};
use upstream::upstream_status;
pub use upstream::Upstream;

/// The JSON schema name and version. Bump the number on any incompatible change.
pub const SCHEMA: &str = "gatecert.status/1";

/// The set directory the EST listener uses for its own certificate when no ACME certificate
/// is installed (the est branch's `est::LOCAL_SET`).
pub const EST_LOCAL_SET: &str = "est-local";

const DAY: i64 = 86_400;

/// Everything `gatecert status` reports, as of [`Status::now`].
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The time the status was taken at, Unix seconds.
    pub now: i64,
    /// False when anything needs attention (then `attention` says what).
    pub healthy: bool,
    /// One sentence per problem, most serious first.
    pub attention: Vec<String>,
    /// Whether the clock may be believed.
    pub clock: ClockStatus,
    /// The upstream ACME CA's health.
    pub upstream: Upstream,
    /// Gateway certificates (config order), then the EST listener's, then the local CA's.
    pub certificates: Vec<CertStatus>,
    /// The local CA.
    pub ca: CaStatus,
    /// Leaf inventory counts.
    pub leaves: LeafCounts,
    /// Bootstrap token counts.
    pub tokens: TokenCounts,
    /// The audit history against `audit_retention`, `audit_max_bytes` and the archive.
    pub audit: crate::audit::History,
    /// Config sections skipped or ignored, each with the reason (`FILE:LINE: section 'S':
    /// skipped: ...`), e.g. an `/etc/config/acme` section gatecert cannot serve.
    pub config_notes: Vec<String>,
}

/// Clock trust ([`crate::trust`]).
#[derive(Clone, Debug, Serialize)]
pub struct ClockStatus {
    /// True when now is at or after the floor, or NTP has said it is synchronised.
    pub trusted: bool,
    /// Why not, when not trusted.
    pub reason: Option<String>,
    /// The floor the clock must not be below, Unix seconds.
    pub floor: i64,
    /// True when [`crate::trust::NTP_FLAG`] exists.
    pub ntp_synced: bool,
}

/// What kind of certificate a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A `config certificate` section: the gateway's own identity.
    Gateway,
    /// The EST listener's certificate from the local CA (`certs/est-local`).
    Est,
    /// The local CA's issuing intermediate.
    CaIntermediate,
    /// The local CA's root.
    CaRoot,
}

impl Kind {
    /// The spelling in tables, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Est => "est",
            Kind::CaIntermediate => "ca-intermediate",
            Kind::CaRoot => "ca-root",
        }
    }
}

/// One certificate's condition, most serious first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertState {
    /// The certificate files exist but could not be read or parsed.
    Unreadable,
    /// No certificate is installed.
    Missing,
    /// notAfter has passed.
    Expired,
    /// Revoked with `gatecert revoke`; the next `gatecert renew` replaces it.
    Revoked,
    /// notBefore is still to come (issued while the clock ran ahead): TLS peers reject it.
    NotYetValid,
    /// Renewal has failed `alert_failures` times in a row (or more).
    Failing,
    /// Inside the alert window: less than `alert_days` (or 1/3 of the lifetime) left.
    Alert,
    /// Renewal time has come; the next renewal run will try.
    RenewalDue,
    /// Nothing to do.
    Ok,
}

impl CertState {
    /// The spelling in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            CertState::Unreadable => "unreadable",
            CertState::Missing => "missing",
            CertState::Expired => "expired",
            CertState::Revoked => "revoked",
            CertState::NotYetValid => "not-yet-valid",
            CertState::Failing => "failing",
            CertState::Alert => "alert",
            CertState::RenewalDue => "renewal-due",
            CertState::Ok => "ok",
        }
    }

    /// True for the states that make `status` exit 1.
    pub fn needs_attention(self) -> bool {
        self <= CertState::Alert
    }
}

/// One certificate row.
#[derive(Clone, Debug, Serialize)]
pub struct CertStatus {
    /// The config section name, `est-local`, `ca-intermediate` or `ca-root`.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Its condition.
    pub state: CertState,
    /// Subject DN, when installed.
    pub subject: Option<String>,
    /// Issuer DN, when installed.
    pub issuer: Option<String>,
    /// Serial, upper-case hex.
    pub serial: Option<String>,
    /// notBefore, Unix seconds.
    pub not_before: Option<i64>,
    /// notAfter, Unix seconds.
    pub not_after: Option<i64>,
    /// notAfter − now (negative once expired).
    pub seconds_left: Option<i64>,
    /// When the alert window opens, Unix seconds.
    pub alert_at: Option<i64>,
    /// When renewal is due, Unix seconds; None for the CA's own certificates (renewed by hand).
    pub next_renewal: Option<i64>,
    /// Why then: `lifetime rule`, `ARI window`, `expired`, `no certificate installed`.
    pub renewal_reason: Option<String>,
    /// Failed renewal attempts in a row.
    pub failures: u32,
    /// The last renewal error (kept after a later success, as history).
    pub last_error: Option<String>,
    /// The last error's ACME problem type, short form (`rateLimited`) or `other`.
    pub last_problem: Option<String>,
    /// When the last failure happened, Unix seconds.
    pub last_failure: Option<i64>,
    /// Why the row could not be read (state `unreadable`).
    pub error: Option<String>,
    /// Gateway rows: the file the certificate's settings came from (`/etc/config/gatecert`,
    /// `/etc/config/acme`, or `<built-in defaults>`).
    pub config_file: Option<String>,
    /// Gateway rows: the section there, as `uci show` names it (`gateway`, `@certificate[0]`).
    pub config_section: Option<String>,
    /// Gateway rows with `list issuer`: the issuer in use and why (failover).
    pub issuers: Option<crate::failover::View>,
}

/// The local CA.
#[derive(Clone, Debug, Serialize)]
pub struct CaStatus {
    /// True when the config uses the local CA: EST is enabled, a certificate section has no
    /// `directory` (the local CA issues it), or leaves are brokered. A CA that is not needed
    /// and not there is no problem.
    pub needed: bool,
    /// True when the CA opened (certificate and key present and matching).
    pub present: bool,
    /// Why not.
    pub error: Option<String>,
    /// Why the audit log may not be appended to (its end does not match `audit.log.head`, or
    /// it cannot be read): every issuance is refused until `gatecert audit verify --repair`.
    pub audit_error: Option<String>,
}

/// With `key_uri` in `config ca`, why the CA's issuing key cannot be used now (the module, the
/// token, the PIN, or the key object removed): issuance answers 503 until it can, and `status`
/// (attention) and the service's alerts say so. Never names the PIN.
#[cfg(feature = "pkcs11")]
fn ca_key_error(cfg: &Config) -> Option<String> {
    let uri = cfg.ca.key_uri.as_ref()?;
    match crate::crypto::token_report(uri) {
        Ok(r) if r.key.is_some() => None,
        Ok(r) => Some(format!(
            "the CA's issuing key {:?} is not in token {} (removed?); issuance answers 503",
            uri.object, r.token
        )),
        Err(e) => Some(format!(
            "the CA's issuing key is unavailable ({e}); issuance answers 503"
        )),
    }
}

#[cfg(not(feature = "pkcs11"))]
fn ca_key_error(_: &Config) -> Option<String> {
    None
}

impl Status {
    /// Reads the state directory of `cfg` as of `now`. Never writes; problems reading a file
    /// become rows or fields that say so, not an error.
    pub fn gather(cfg: &Config, now: i64) -> Status {
        Status::gather_with(cfg, now, StoreCounts::read)
    }

    /// [`Status::gather`], with the store counts from `counts` (`gatecert status`: asked of the
    /// service, [`StoreCounts::ask`]).
    pub fn gather_with(
        cfg: &Config,
        now: i64,
        counts: impl FnOnce(&Path, i64) -> StoreCounts,
    ) -> Status {
        let state_dir = &cfg.main.state_dir;
        let mut certificates = Vec::new();
        for cert in &cfg.certificates {
            certificates.push(gateway_row(cfg, cert, now));
        }
        let est_dir = state_dir.join("certs").join(EST_LOCAL_SET);
        if SetDir::new(&est_dir).live().exists() {
            let seed = format!("{}/{EST_LOCAL_SET}", hostname());
            let mut row = set_row(EST_LOCAL_SET, Kind::Est, &est_dir, cfg, now);
            schedule_row(&mut row, None, &seed, now);
            certificates.push(row);
        }
        let mut est_off = None;
        let (ca, ca_not_before) = match LocalCa::open(&LocalCa::dir_in(state_dir), &cfg.ca) {
            Ok(local) => {
                if cfg.est.enabled
                    && !crate::est::listener_has_names(cfg, &local)
                    && !acme_live(cfg)
                {
                    est_off = Some(
                        "EST off: no ACME certificate is installed and the local CA may issue \
                         for none of the router's names (allow_suffix/allow_ip)"
                            .to_string(),
                    );
                }
                let int = local.intermediate().clone();
                certificates.push(info_row(
                    "ca-intermediate",
                    Kind::CaIntermediate,
                    &int,
                    cfg,
                    now,
                ));
                // `ca rotate`: the replaced intermediates kept until their leaves expire, each
                // under its own name (one metrics series each).
                for g in local.previous() {
                    certificates.push(info_row(
                        &format!("ca-intermediate-replaced-{}", g.info.serial_hex()),
                        Kind::CaIntermediate,
                        &g.info,
                        cfg,
                        now,
                    ));
                }
                let chain = local.chain_der();
                if chain.len() > 1 {
                    if let Some(root) = chain.last().and_then(|d| CertInfo::from_der(d).ok()) {
                        certificates.push(info_row("ca-root", Kind::CaRoot, &root, cfg, now));
                    }
                }
                (
                    CaStatus {
                        needed: needs_local_ca(cfg),
                        present: true,
                        error: ca_key_error(cfg),
                        audit_error: None,
                    },
                    Some(int.not_before),
                )
            }
            // Not there and not needed: nothing to say.
            Err(ca::Error::NotInitialized(_)) if !needs_local_ca(cfg) => (
                CaStatus {
                    needed: false,
                    present: false,
                    error: None,
                    audit_error: None,
                },
                None,
            ),
            Err(e) => (
                CaStatus {
                    needed: needs_local_ca(cfg),
                    present: false,
                    error: Some(e.to_string()),
                    audit_error: None,
                },
                None,
            ),
        };
        let mut ca = ca;
        ca.audit_error = crate::audit::Audit::check(&crate::audit::path_in(state_dir))
            .err()
            .map(|e| crate::errchain::one_line(&e));
        let clock = clock_status(state_dir, ca_not_before, now);
        let ca_dir_exists = LocalCa::exists(&LocalCa::dir_in(state_dir));
        let upstream = upstream_status(cfg, now);
        let StoreCounts { leaves, tokens } = counts(state_dir, now);

        let mut attention = Vec::new();
        if let Some(reason) = &clock.reason {
            attention.push(format!("clock untrusted: {reason}"));
        }
        if let Some(e) = &ca.error {
            if clock.reason.is_some() && !ca_dir_exists {
                attention.push(
                    "local CA missing: `gatecert run` creates it once the clock is trusted".into(),
                );
            } else {
                attention.push(format!("local CA missing: {e}"));
            }
        }
        if let Some(e) = &ca.audit_error {
            attention.push(format!("audit log broken, issuance refused: {e}"));
        }
        let audit =
            crate::audit::History::of(&crate::audit::path_in(state_dir), &cfg.audit_policy());
        attention.extend(audit.attention());
        attention.extend(est_off);
        let mut rows: Vec<&CertStatus> = certificates
            .iter()
            .filter(|c| c.state.needs_attention())
            .collect();
        rows.sort_by_key(|c| c.state);
        for c in rows {
            attention.push(attention_line(c, cfg.main.alert_failures, now));
        }
        if leaves.upstream_revocations_pending > 0 {
            attention.push(format!(
                "{} upstream certificate revocation(s) pending (queued; retried until the \
                 upstream CA confirms)",
                leaves.upstream_revocations_pending
            ));
        }
        if leaves.crl_pending {
            attention.push(
                "a revocation is not in the published CRL yet (the service signs a new CRL \
                 once the clock is trusted)"
                    .into(),
            );
        }
        if upstream.state == "down" {
            attention.push(format!(
                "upstream down{}",
                upstream
                    .last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        }
        Status {
            schema: SCHEMA,
            now,
            healthy: attention.is_empty(),
            attention,
            clock,
            upstream,
            certificates,
            ca,
            leaves,
            tokens,
            audit,
            config_notes: cfg.notes.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// The exit status: 0 healthy, 1 something needs attention.
    pub fn exit_code(&self) -> i32 {
        if self.healthy {
            0
        } else {
            1
        }
    }

    /// The JSON document (`gatecert.status/1`), pretty-printed, with a final newline.
    pub fn to_json(&self) -> String {
        // Serialising plain structs of strings and integers cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// The table for a person.
    pub fn render_table(&self) -> String {
        let now = self.now;
        let mut out = String::new();
        let clock = match &self.clock.reason {
            None if self.clock.ntp_synced => "trusted (NTP synchronised)".to_owned(),
            None => "trusted".to_owned(),
            Some(r) => format!("untrusted ({r})"),
        };
        let _ = writeln!(out, "clock:    {clock}");
        let upstream = match self.upstream.state.as_str() {
            "n/a" => "n/a (no leaf broker; each certificate's renewals are in its row)".to_owned(),
            s => {
                let mut line = s.to_owned();
                if let Some(t) = self.upstream.since {
                    let _ = write!(line, " since {}", crypto::rfc3339(t));
                }
                if let Some(e) = &self.upstream.last_error {
                    let _ = write!(line, " (last error: {e})");
                }
                if let Some(v) = &self.upstream.issuers {
                    let _ = write!(line, "; leaves' {}", v.line());
                }
                line
            }
        };
        let _ = writeln!(out, "upstream: {upstream}");
        let ca = match &self.ca.error {
            None if !self.ca.present => "not used (no EST, no standalone certificate)".to_owned(),
            None => "present".to_owned(),
            Some(e) => format!("MISSING: {e}"),
        };
        let _ = writeln!(out, "local CA: {ca}");
        if let Some(e) = &self.ca.audit_error {
            let _ = writeln!(out, "audit log: BROKEN: {e}");
        }
        let _ = writeln!(out);
        // The name column fits the longest name (a section name may be long).
        let nw = self
            .certificates
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(0)
            .max(15);
        let _ = writeln!(
            out,
            "{:<nw$} {:<15} {:<13} {:<20} {:>9}  {:<36} LAST ERROR",
            "NAME", "KIND", "STATE", "NOT AFTER", "LEFT", "NEXT RENEWAL"
        );
        for c in &self.certificates {
            let not_after = c.not_after.map(crypto::rfc3339).unwrap_or("-".into());
            let left = c
                .not_after
                .map(|na| duration(na - now))
                .unwrap_or("-".into());
            let next = match (c.next_renewal, &c.renewal_reason) {
                (Some(t), Some(r)) if t <= now => format!("now ({r})"),
                (Some(t), Some(r)) => format!("{} ({r})", crypto::rfc3339(t)),
                (Some(t), None) => crypto::rfc3339(t),
                (None, _) => "manual".into(),
            };
            let last = match (&c.last_error, c.failures) {
                (Some(e), n) if n > 0 => format!("{n}x: {e}"),
                (Some(e), _) => format!("recovered; was: {e}"),
                (None, _) => "-".into(),
            };
            let _ = writeln!(
                out,
                "{:<nw$} {:<15} {:<13} {:<20} {:>9}  {:<36} {last}",
                c.name,
                c.kind.as_str(),
                c.state.as_str(),
                not_after,
                left,
                next
            );
            match (&c.subject, &c.issuer, &c.error) {
                (_, _, Some(e)) => {
                    let _ = writeln!(out, "    error: {e}");
                }
                (Some(s), Some(i), None) => {
                    let serial = c.serial.as_deref().unwrap_or("-");
                    let _ = writeln!(out, "    subject: {s}; issuer: {i}; serial: {serial}");
                }
                _ => {}
            }
            if let (Some(f), Some(sec)) = (&c.config_file, &c.config_section) {
                let _ = writeln!(out, "    config: {f}, section '{sec}'");
            }
            if let Some(v) = &c.issuers {
                let _ = writeln!(out, "    {}", v.line());
            }
        }
        if !self.config_notes.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "config notes:");
            for n in &self.config_notes {
                let _ = writeln!(out, "  - {n}");
            }
        }
        let _ = writeln!(out);
        let l = &self.leaves;
        let _ = write!(
            out,
            "leaves:   {} (local {}, interim {}, upstream {}); expired {}",
            l.total, l.local, l.interim, l.upstream, l.expired
        );
        if let Some(e) = &l.error {
            let _ = write!(out, "; error: {e}");
        }
        let _ = writeln!(out);
        if !l.disabled.is_empty() {
            let _ = writeln!(out, "          disabled: {}", l.disabled.join(", "));
        }
        if !l.revoked.is_empty() {
            let _ = writeln!(out, "          revoked: {}", l.revoked.join(", "));
        }
        let _ = write!(
            out,
            "          revoked certificates {}, upstream revocations pending {}, CRL next update {}",
            l.revoked_certificates,
            l.upstream_revocations_pending,
            l.crl_next_update
                .map_or_else(|| "none yet".into(), crypto::rfc3339)
        );
        let _ = writeln!(out);
        let t = &self.tokens;
        let _ = write!(
            out,
            "tokens:   active {}, expired {}, exhausted {}, revoked {}",
            t.active, t.expired, t.exhausted, t.revoked
        );
        if let Some(e) = &t.error {
            let _ = write!(out, "; error: {e}");
        }
        let _ = writeln!(out);
        let _ = writeln!(out);
        if self.attention.is_empty() {
            let _ = writeln!(out, "status: healthy");
        } else {
            let _ = writeln!(out, "status: NEEDS ATTENTION");
            for a in &self.attention {
                let _ = writeln!(out, "  - {a}");
            }
        }
        out
    }
}

/// `gatecert status [--json]`. Returns the exit code (0 healthy, 1 attention, 2 error).
pub fn cmd_status(cfg: &Config, args: &[String]) -> i32 {
    let mut json = false;
    let mut cfg = cfg.clone();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--state-dir" => match it.next() {
                Some(d) if Path::new(d).is_dir() => cfg.main.state_dir = d.into(),
                Some(d) => {
                    eprintln!("gatecert: error: status: --state-dir {d}: no such directory");
                    return 2;
                }
                None => {
                    eprintln!("gatecert: error: status: --state-dir needs a DIR");
                    return 2;
                }
            },
            other => {
                eprintln!(
                    "gatecert: error: status: unexpected argument {other:?} \
                     (usage: gatecert status [--json] [--state-dir DIR])"
                );
                return 2;
            }
        }
    }
    let status = Status::gather_with(&cfg, clock::from_env().now(), StoreCounts::ask);
    if json {
        print!("{}", status.to_json());
    } else {
        print!("{}", status.render_table());
    }
    status.exit_code()
}

/// The alert window for a certificate: `alert_days`, or 1/3 of the lifetime when that is
/// shorter (short-lived certificates would otherwise be "alerting" all their life).
pub fn alert_window(alert_days: u32, not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    (i64::from(alert_days) * DAY).min(lifetime / 3)
}

fn attention_line(c: &CertStatus, alert_failures: u32, now: i64) -> String {
    let who = format!("{} ({})", c.name, c.kind.as_str());
    match c.state {
        CertState::Unreadable => format!(
            "{who} unreadable: {}",
            c.error.as_deref().unwrap_or("unknown error")
        ),
        CertState::Missing => format!("{who}: no certificate installed"),
        CertState::Expired => format!(
            "{who} expired {} ago",
            duration(now - c.not_after.unwrap_or(now))
        ),
        CertState::Revoked => format!(
            "{who} serial {} was revoked; `gatecert renew` replaces it",
            c.serial.as_deref().unwrap_or("-")
        ),
        CertState::NotYetValid => format!(
            "{who} is not valid yet (until {}; TLS peers reject it)",
            c.not_before.map(crypto::rfc3339).unwrap_or_default()
        ),
        CertState::Failing => format!(
            "{who}: renewal failed {} times in a row (alert after {alert_failures}): {}",
            c.failures,
            c.last_error.as_deref().unwrap_or("-")
        ),
        CertState::Alert => format!(
            "{who} expires in {}",
            duration(c.not_after.unwrap_or(now) - now)
        ),
        CertState::RenewalDue | CertState::Ok => format!("{who}: {}", c.state.as_str()),
    }
}

fn empty_row(name: &str, kind: Kind, state: CertState) -> CertStatus {
    CertStatus {
        name: name.to_owned(),
        kind,
        state,
        subject: None,
        issuer: None,
        serial: None,
        not_before: None,
        not_after: None,
        seconds_left: None,
        alert_at: None,
        next_renewal: None,
        renewal_reason: None,
        failures: 0,
        last_error: None,
        last_problem: None,
        last_failure: None,
        error: None,
        config_file: None,
        config_section: None,
        issuers: None,
    }
}

/// A row from a parsed certificate: dates, alert window and the expired/alert/ok state.
fn info_row(name: &str, kind: Kind, info: &CertInfo, cfg: &Config, now: i64) -> CertStatus {
    let alert_at =
        info.not_after - alert_window(cfg.main.alert_days, info.not_before, info.not_after);
    let state = if now >= info.not_after {
        CertState::Expired
    } else if now < info.not_before {
        CertState::NotYetValid
    } else if now >= alert_at {
        CertState::Alert
    } else {
        CertState::Ok
    };
    CertStatus {
        subject: Some(info.subject.clone()),
        issuer: Some(info.issuer.clone()),
        serial: Some(info.serial_hex()),
        not_before: Some(info.not_before),
        not_after: Some(info.not_after),
        seconds_left: Some(info.not_after - now),
        alert_at: Some(alert_at),
        ..empty_row(name, kind, state)
    }
}

/// A row from an installed set directory's `live/cert.pem`.
fn set_row(name: &str, kind: Kind, dir: &Path, cfg: &Config, now: i64) -> CertStatus {
    let path = SetDir::new(dir).live().join(store::CERT);
    match store::read_optional(&path) {
        Ok(None) => {
            let mut row = empty_row(name, kind, CertState::Missing);
            row.next_renewal = Some(now);
            row.renewal_reason = Some(schedule::Reason::Missing.as_str().to_owned());
            row
        }
        Ok(Some(pem)) => match CertInfo::from_pem(&pem) {
            Ok(info) => info_row(name, kind, &info, cfg, now),
            Err(e) => {
                let mut row = empty_row(name, kind, CertState::Unreadable);
                row.error = Some(format!("{}: {e}", path.display()));
                row
            }
        },
        Err(e) => {
            let mut row = empty_row(name, kind, CertState::Unreadable);
            row.error = Some(e.to_string());
            row
        }
    }
}

/// Fills in the next renewal (ARI pick when a current one is stored, else the lifetime rule
/// with this device's jitter) and moves an `ok` row to `renewal-due` when the time has come.
fn schedule_row(row: &mut CertStatus, ari: Option<AriChoice>, seed: &str, now: i64) {
    let (Some(nb), Some(na)) = (row.not_before, row.not_after) else {
        return;
    };
    // A stored pick whose window ended before this certificate began belongs to its
    // predecessor; the renew code replaces it on its next ARI fetch.
    let decision = match ari.filter(|c| c.window.end > nb) {
        Some(choice) => schedule::decide_with_ari(nb, na, now, &choice),
        None => schedule::decide(nb, na, now, seed.as_bytes()),
    };
    row.next_renewal = Some(decision.at);
    row.renewal_reason = Some(decision.reason.as_str().to_owned());
    if row.state == CertState::Ok && decision.due(now) {
        row.state = CertState::RenewalDue;
    }
}

/// A gateway certificate: its set, its ARI pick (`state.json`, the renew code's format) and
/// its health (`health.json`).
fn gateway_row(cfg: &Config, cert: &Certificate, now: i64) -> CertStatus {
    let dir = cfg.main.state_dir.join("certs").join(&cert.name);
    let mut row = set_row(&cert.name, Kind::Gateway, &dir, cfg, now);
    let state = store::read_optional(&dir.join("state.json"))
        .ok()
        .flatten()
        .and_then(|t| serde_json::from_str::<AriState>(&t).ok())
        .unwrap_or_default();
    let ari = state.ari;
    let seed = format!(
        "{}/{}/{}",
        hostname(),
        cert.name,
        row.serial.as_deref().unwrap_or_default()
    );
    schedule_row(&mut row, ari, &seed, now);
    // acme-common's `days` brings the renewal forward, as the renew code does.
    if let (Some(days), Some(nb), Some(next)) = (cert.renew_days, row.not_before, row.next_renewal)
    {
        let at = nb.saturating_add(i64::from(days) * DAY);
        if at < next {
            row.next_renewal = Some(at);
            row.renewal_reason = Some(format!("days ({days})"));
            if row.state == CertState::Ok && at <= now {
                row.state = CertState::RenewalDue;
            }
        }
    }
    row.config_file = Some(cert.origin.file.display().to_string());
    row.config_section = Some(cert.origin.section.clone());
    if !cert.issuers.is_empty() {
        let names: Vec<&str> = cert.issuers.iter().map(|i| i.name.as_str()).collect();
        row.issuers = Some(crate::failover::view(&names, state.issuer.as_ref(), now));
    }
    if let (Some(serial), Some(revoked)) = (&row.serial, &state.revoked) {
        if crypto::same_serial(serial, revoked) && row.state > CertState::Revoked {
            row.state = CertState::Revoked;
            // The next renewal run replaces it, due or not (the renew code's rule).
            row.next_renewal = Some(now);
            row.renewal_reason = Some(schedule::Reason::Revoked.as_str().to_owned());
        }
    }
    match Health::load(&cfg.main.state_dir, &cert.name) {
        Ok(h) => {
            row.failures = h.failures;
            row.last_error = h.last_error;
            row.last_problem = h.last_problem;
            row.last_failure = h.last_failure;
            if h.failures >= cfg.main.alert_failures.max(1) && row.state > CertState::Failing {
                row.state = CertState::Failing;
            }
        }
        Err(e) => {
            if row.error.is_none() {
                row.error = Some(e.to_string());
            }
        }
    }
    row
}

/// The part of the renew code's `certs/<name>/state.json` that status reads.
#[derive(Default, Deserialize)]
struct AriState {
    #[serde(default)]
    ari: Option<AriChoice>,
    /// The serial `gatecert revoke` revoked.
    #[serde(default)]
    revoked: Option<String>,
    /// The issuer in use (`list issuer`).
    #[serde(default)]
    issuer: Option<crate::failover::Record>,
}

/// True when some ACME certificate has a live set the EST listener could serve.
fn acme_live(cfg: &Config) -> bool {
    let certs = cfg.main.state_dir.join("certs");
    cfg.certificates
        .iter()
        .filter(|c| c.directory.is_some())
        .any(|c| {
            SetDir::new(certs.join(&c.name))
                .live()
                .join("cert.pem")
                .exists()
        })
}

/// True when the config uses the local CA (see [`CaStatus::needed`]).
pub fn needs_local_ca(cfg: &Config) -> bool {
    cfg.est.enabled
        || cfg.broker.is_some()
        || cfg.certificates.iter().any(|c| c.directory.is_none())
}

pub(crate) fn clock_status(state_dir: &Path, ca_not_before: Option<i64>, now: i64) -> ClockStatus {
    let trust = ClockTrust::load(state_dir, ca_not_before);
    let (floor, source) = trust.floor();
    let ntp_synced = trust.ntp_synced();
    let trusted = now >= floor || ntp_synced;
    ClockStatus {
        trusted,
        reason: (!trusted).then(|| Untrusted { now, floor, source }.to_string()),
        floor,
        ntp_synced,
    }
}

/// `89d 23h`, `5h 3m`, `42s`; negative durations read as `-2d 1h`.
pub fn duration(secs: i64) -> String {
    let sign = if secs < 0 { "-" } else { "" };
    let s = secs.unsigned_abs();
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    if d > 0 {
        format!("{sign}{d}d {h}h")
    } else if h > 0 {
        format!("{sign}{h}h {m}m")
    } else if m > 0 {
        format!("{sign}{m}m {}s", s % 60)
    } else {
        format!("{sign}{s}s")
    }
}

/// The node name, part of the per-device jitter seed (as the renew code builds it).
fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
