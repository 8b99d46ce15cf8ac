//! The renewal health of one certificate: consecutive failures and the last error,
//! `<state_dir>/certs/<name>/health.json`.
//!
//! Written only when it changes, for flash wear: a success after a success writes nothing, and
//! the file holds no "last success" timestamp that would change on every run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store;

/// The ACME error namespace (RFC 8555 §6.7).
const ACME_URN: &str = "urn:ietf:params:acme:error:";

/// `health.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Failed attempts in a row; 0 after a success.
    #[serde(default)]
    pub failures: u32,
    /// The last failure's message (kept after a success, as history).
    #[serde(default)]
    pub last_error: Option<String>,
    /// The last failure's ACME problem type, short form (`rateLimited`), or `other`.
    #[serde(default)]
    pub last_problem: Option<String>,
    /// When the last failure happened, Unix seconds.
    #[serde(default)]
    pub last_failure: Option<i64>,
    /// When the current run of failures began, Unix seconds (None while healthy).
    #[serde(default)]
    pub failing_since: Option<i64>,
}

impl Health {
    /// Reads `<state_dir>/certs/<name>/health.json`; absent means healthy. A file that does not
    /// parse is reported as a [`store::Error::Corrupt`] naming it.
    pub fn load(state_dir: &Path, cert_name: &str) -> Result<Health, store::Error> {
        let path = path_in(state_dir, cert_name);
        match store::read_optional(&path)? {
            None => Ok(Health::default()),
            Some(text) => serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                path,
                what: format!("not a health file: {e}"),
            }),
        }
    }
}

/// `<state_dir>/certs/<name>/health.json`.
pub fn path_in(state_dir: &Path, cert_name: &str) -> PathBuf {
    state_dir.join("certs").join(cert_name).join("health.json")
}

/// The short name of an ACME problem type: `urn:ietf:params:acme:error:rateLimited` →
/// `rateLimited` (RFC 8555 §6.7). A message that carries such a URN anywhere gives its type;
/// anything else is `other`. Only `[A-Za-z0-9]` survive, so the result is a safe label value.
pub fn problem_short(problem: &str) -> String {
    let Some(i) = problem.find(ACME_URN) else {
        return "other".into();
    };
    let short: String = problem[i + ACME_URN.len()..]
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    if short.is_empty() {
        "other".into()
    } else {
        short
    }
}

/// `msg` on one line (control characters become spaces, runs of them one), at most 512 chars,
/// so it fits a table row, a syslog line and a metric-free JSON field.
fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(512));
    let mut space = false;
    for c in msg.chars() {
        if c.is_control() || c == ' ' {
            space = true;
            continue;
        }
        if space && !out.is_empty() {
            out.push(' ');
        }
        space = false;
        out.push(c);
        if out.len() >= 512 {
            break;
        }
    }
    out
}

/// Records one renewal attempt of `cert_name`: `Ok(())` for success, `Err(problem)` with the
/// ACME problem type or error message on failure. Writes `health.json` only when it changes;
/// returns whether it wrote.
pub fn record_attempt(
    state_dir: &Path,
    cert_name: &str,
    result: Result<(), &str>,
    now: i64,
) -> Result<bool, store::Error> {
    let path = path_in(state_dir, cert_name);
    // An unreadable file is replaced rather than blocking renewal bookkeeping forever.
    let old = Health::load(state_dir, cert_name).unwrap_or_default();
    let mut new = old.clone();
    match result {
        Ok(()) => {
            new.failures = 0;
            new.failing_since = None;
        }
        Err(problem) => {
            new.failures = old.failures.saturating_add(1);
            new.last_error = Some(one_line(problem));
            new.last_problem = Some(problem_short(problem));
            new.last_failure = Some(now);
            new.failing_since = old.failing_since.or(Some(now));
        }
    }
    if new == old && path.exists() {
        return Ok(false);
    }
    if result.is_ok() && !path.exists() {
        // Healthy and never failed: nothing worth writing.
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        store::private_dir(dir)?;
    }
    let json = serde_json::to_vec_pretty(&new).map_err(|e| store::Error::Corrupt {
        path: path.clone(),
        what: format!("cannot serialise: {e}"),
    })?;
    store::write_if_changed(&path, &json, store::PUBLIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gatecert-health-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn problem_short_names() {
        assert_eq!(
            problem_short("urn:ietf:params:acme:error:rateLimited"),
            "rateLimited"
        );
        assert_eq!(
            problem_short("order failed: urn:ietf:params:acme:error:dns (no TXT)"),
            "dns"
        );
        assert_eq!(problem_short("connection refused"), "other");
        assert_eq!(problem_short("urn:ietf:params:acme:error:"), "other");
        assert_eq!(one_line("a\n    - b:  c\t"), "a - b: c");
    }

    #[test]
    fn writes_only_on_change() {
        let d = dir("change");
        let f = path_in(&d, "gw");
        assert!(!record_attempt(&d, "gw", Ok(()), 10).unwrap());
        assert!(!f.exists(), "success on a fresh cert writes nothing");
        let e = "urn:ietf:params:acme:error:rateLimited";
        assert!(record_attempt(&d, "gw", Err(e), 20).unwrap());
        assert!(record_attempt(&d, "gw", Err(e), 30).unwrap());
        let h = Health::load(&d, "gw").unwrap();
        assert_eq!(h.failures, 2);
        assert_eq!(h.failing_since, Some(20));
        assert_eq!(h.last_failure, Some(30));
        assert_eq!(h.last_problem.as_deref(), Some("rateLimited"));
        assert!(record_attempt(&d, "gw", Ok(()), 40).unwrap());
        let before = std::fs::metadata(&f).unwrap().modified().unwrap();
        assert!(!record_attempt(&d, "gw", Ok(()), 50).unwrap());
        assert_eq!(std::fs::metadata(&f).unwrap().modified().unwrap(), before);
        let h = Health::load(&d, "gw").unwrap();
        assert_eq!(h.failures, 0);
        assert_eq!(h.last_error.as_deref(), Some(e), "history kept");
    }
}
