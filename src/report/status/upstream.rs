//! `status`'s `upstream`: the broker's upstream ACME CA.

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store;

/// The upstream ACME CA, from `<state_dir>/upstream.json` (written by the broker).
#[derive(Clone, Debug, Serialize)]
pub struct Upstream {
    /// `n/a` (no certificate has a directory), `unknown` (no file yet), `up`, `degraded`, `down`.
    pub state: String,
    /// Since when, Unix seconds.
    pub since: Option<i64>,
    /// The last error the broker saw.
    pub last_error: Option<String>,
    /// With the broker's `list issuer`: the issuer in use for leaves and why.
    pub issuers: Option<crate::failover::View>,
}

/// `<state_dir>/upstream.json` as the broker writes it.
#[derive(Debug, Deserialize)]
struct UpstreamFile {
    state: String,
    #[serde(default)]
    since: Option<i64>,
    #[serde(default)]
    last_error: Option<String>,
}

/// The broker's upstream health (`upstream.json`) and, with `list issuer`, the issuer in use
/// (`upstream-issuer.json`).
pub(super) fn upstream_status(cfg: &Config, now: i64) -> Upstream {
    let mut u = upstream_file(cfg);
    if let Some(b) = cfg.broker.as_ref().filter(|b| !b.issuers.is_empty()) {
        let names: Vec<&str> = b.issuers.iter().map(|i| i.name.as_str()).collect();
        let path = cfg.main.state_dir.join(crate::failover::BROKER_RECORD);
        let record = crate::renew::issuers::load_record(&path);
        u.issuers = Some(crate::failover::view(&names, Some(&record), now));
    }
    u
}

fn upstream_file(cfg: &Config) -> Upstream {
    let na = |state: &str| Upstream {
        state: state.into(),
        since: None,
        last_error: None,
        issuers: None,
    };
    if cfg.broker.is_none() && cfg.certificates.iter().all(|c| c.directory.is_none()) {
        return na("n/a");
    }
    let path = cfg.main.state_dir.join("upstream.json");
    match store::read_optional(&path) {
        // Only the broker writes upstream.json: without one, "unknown" would be forever.
        Ok(None) if cfg.broker.is_none() => na("n/a"),
        Ok(None) => na("unknown"),
        Ok(Some(text)) => match serde_json::from_str::<UpstreamFile>(&text) {
            Ok(f) if matches!(f.state.as_str(), "up" | "degraded" | "down") => Upstream {
                state: f.state,
                since: f.since,
                last_error: f.last_error,
                issuers: None,
            },
            Ok(f) => Upstream {
                last_error: Some(format!("{}: unknown state {:?}", path.display(), f.state)),
                ..na("unknown")
            },
            Err(e) => Upstream {
                last_error: Some(format!("{}: {e}", path.display())),
                ..na("unknown")
            },
        },
        Err(e) => Upstream {
            last_error: Some(e.to_string()),
            ..na("unknown")
        },
    }
}
