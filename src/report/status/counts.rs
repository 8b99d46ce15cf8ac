//! `status`'s `leaves` and `tokens`: the leaf inventory's and the token store's counts, read
//! here or asked of the running service.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::crypto;
use crate::leaves::{self, Inventory};
use crate::token::{self, Tokens};

/// Leaf counts by source ([`leaves::Counts`], its fields at this level in JSON), and the CRL.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LeafCounts {
    /// Devices by source, expired, disabled, revoked; revoked certificates and upstream
    /// revocations pending.
    #[serde(flatten)]
    pub counts: leaves::Counts,
    /// nextUpdate of the published CRL, Unix seconds; `None` before the first.
    pub crl_next_update: Option<i64>,
    /// A revocation is not in the published CRL yet (it was made on an untrusted clock).
    pub crl_pending: bool,
    /// Why the inventory could not be read.
    pub error: Option<String>,
}

impl std::ops::Deref for LeafCounts {
    type Target = leaves::Counts;
    fn deref(&self) -> &leaves::Counts {
        &self.counts
    }
}

/// Bootstrap token counts. Each token is counted once: revoked, else expired, else exhausted,
/// else active.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Usable now.
    pub active: usize,
    /// Past their expiry.
    pub expired: usize,
    /// No uses left.
    pub exhausted: usize,
    /// Revoked with `token revoke`.
    pub revoked: usize,
    /// Why the token file could not be read.
    pub error: Option<String>,
}

/// The leaf inventory's and the token store's counts: what `status` takes from the service
/// when it runs (`counts` on the control socket: from what it keeps in memory), instead of
/// reading both journals whole.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StoreCounts {
    /// The inventory's.
    pub leaves: LeafCounts,
    /// The token store's.
    pub tokens: TokenCounts,
}

/// [`StoreCounts`] as the service sends them: flat, since deserialising `LeafCounts`'s
/// `serde(flatten)` would take code the size of a small module.
#[derive(Serialize, Deserialize)]
struct Wire {
    leaves: leaves::Counts,
    crl_next_update: Option<i64>,
    crl_pending: bool,
    leaves_error: Option<String>,
    tokens: TokenCounts,
}

impl StoreCounts {
    /// Counted here, from the stores this process opens (kept between opens: the service's
    /// cost is one `stat` of each and a walk of their summaries in memory).
    pub fn read(state_dir: &Path, now: i64) -> StoreCounts {
        StoreCounts {
            leaves: leaf_counts(state_dir, now),
            tokens: token_counts(state_dir, now),
        }
    }

    /// From the service running on `state_dir` when it answers, else [`StoreCounts::read`].
    pub fn ask(state_dir: &Path, now: i64) -> StoreCounts {
        crate::control::counts(state_dir, now)
            .and_then(|json| StoreCounts::from_json(&json))
            .unwrap_or_else(|| StoreCounts::read(state_dir, now))
    }

    /// What the service answers to `counts`.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let StoreCounts { leaves, tokens } = self.clone();
        serde_json::to_string(&Wire {
            leaves: leaves.counts,
            crl_next_update: leaves.crl_next_update,
            crl_pending: leaves.crl_pending,
            leaves_error: leaves.error,
            tokens,
        })
    }

    /// The counts in the service's answer; `None` when it is not counts.
    pub fn from_json(json: &str) -> Option<StoreCounts> {
        let w: Wire = serde_json::from_str(json).ok()?;
        Some(StoreCounts {
            leaves: LeafCounts {
                counts: w.leaves,
                crl_next_update: w.crl_next_update,
                crl_pending: w.crl_pending,
                error: w.leaves_error,
            },
            tokens: w.tokens,
        })
    }
}

fn leaf_counts(state_dir: &Path, now: i64) -> LeafCounts {
    let inv = match Inventory::open(&leaves::path_in(state_dir)) {
        Ok(inv) => inv,
        Err(e) => {
            return LeafCounts {
                error: Some(e.to_string()),
                ..LeafCounts::default()
            }
        }
    };
    // Counted from what the inventory keeps in memory: no row is read.
    let c = inv.counts(now);
    // The CRL itself says when it is next updated (as published, whoever signed it); the
    // inventory's record when it can't be read.
    let next = std::fs::read(crate::revocation::crl_path_in(state_dir))
        .ok()
        .and_then(|der| crypto::CrlInfo::from_der(&der).ok())
        .and_then(|c| c.next_update)
        .unwrap_or_else(|| inv.crl_next_update());
    LeafCounts {
        counts: c,
        crl_next_update: (next > 0).then_some(next),
        crl_pending: inv.crl_pending(),
        error: None,
    }
}

fn token_counts(state_dir: &Path, now: i64) -> TokenCounts {
    let tokens = match Tokens::open(&token::path_in(state_dir)) {
        Ok(t) => t,
        Err(e) => {
            return TokenCounts {
                error: Some(e.to_string()),
                ..TokenCounts::default()
            }
        }
    };
    // Counted from what the store keeps in memory of each token: no record is read.
    let c = tokens.counts(now);
    TokenCounts {
        active: c.active,
        expired: c.expired,
        exhausted: c.exhausted,
        revoked: c.revoked,
        error: None,
    }
}
