//! Upstream health: up / degraded / down, persisted to `<state_dir>/upstream.json` only when the
//! state changes (router flash wears out), so `gatecert status` can show it.
//!
//! - **up**: the last exchange succeeded in good time;
//! - **degraded**: one failure, or a success slower than `upstream_wait`;
//! - **down**: [`DOWN_AFTER`] consecutive failures, or one timeout or refused connection.
//!   While down, leaves get interim certificates at once and the worker probes the directory
//!   with backoff ([`probe_delay`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store;

/// Consecutive failures that make a degraded upstream down.
pub const DOWN_AFTER: u32 = 3;

/// The coarse state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Answering in good time.
    Up,
    /// One failure, or slow.
    Degraded,
    /// Unreachable: leaves get interim certificates without waiting.
    Down,
}

impl State {
    /// The spelling in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Degraded => "degraded",
            State::Down => "down",
        }
    }

    /// For an atomic shared with the loop's thread.
    pub fn to_u8(self) -> u8 {
        match self {
            State::Up => 0,
            State::Degraded => 1,
            State::Down => 2,
        }
    }

    /// The inverse of [`State::to_u8`] (anything unknown reads as down).
    pub fn from_u8(v: u8) -> State {
        match v {
            0 => State::Up,
            1 => State::Degraded,
            _ => State::Down,
        }
    }
}

/// How an upstream exchange went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It answered; `slow` when it took longer than `upstream_wait`.
    Ok {
        /// Slower than the wait.
        slow: bool,
    },
    /// A failure that counts towards [`DOWN_AFTER`]: 5xx, rate limits, an order that does not
    /// settle.
    Failed(String),
    /// A failure that means down at once: a timeout or a refused connection.
    Unreachable(String),
}

/// The persisted record, `upstream.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// The state.
    pub state: State,
    /// Since when (Unix seconds).
    pub since: i64,
    /// The last failure, if any since the last success.
    pub last_error: Option<String>,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

/// `<state_dir>/upstream.json`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("upstream.json")
}

impl Health {
    /// A fresh record: assumed up until an exchange says otherwise.
    pub fn new(now: i64) -> Health {
        Health {
            state: State::Up,
            since: now,
            last_error: None,
            consecutive_failures: 0,
        }
    }

    /// The record in `state_dir`, else a fresh one.
    pub fn load(state_dir: &Path, now: i64) -> Health {
        store::read_optional(&path_in(state_dir))
            .ok()
            .flatten()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| Health::new(now))
    }

    /// Applies `outcome` at `now`. Returns true when the state changed.
    pub fn update(&mut self, outcome: &Outcome, now: i64) -> bool {
        let next = match outcome {
            Outcome::Ok { slow } => {
                self.consecutive_failures = 0;
                self.last_error = None;
                if *slow {
                    State::Degraded
                } else {
                    State::Up
                }
            }
            Outcome::Failed(e) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(e.clone());
                if self.consecutive_failures >= DOWN_AFTER || self.state == State::Down {
                    State::Down
                } else {
                    State::Degraded
                }
            }
            Outcome::Unreachable(e) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.last_error = Some(e.clone());
                State::Down
            }
        };
        if next == self.state {
            return false;
        }
        self.state = next;
        self.since = now;
        true
    }

    /// Writes `upstream.json` (call on a state change only).
    pub fn save(&self, state_dir: &Path) -> Result<(), store::Error> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        store::write_atomic(&path_in(state_dir), text.as_bytes(), store::PUBLIC)
    }
}

/// Seconds to the next probe after `attempt` failed probes while down: 2, 4, 8, ... capped at
/// 5 min, plus up to 20% jitter so a fleet does not probe in step.
pub fn probe_delay(attempt: u32) -> i64 {
    let base = 2i64.saturating_mul(1 << attempt.min(8)).min(300);
    let spread = (base / 5).max(1) as u64;
    base + crate::crypto::random_below(spread).unwrap_or(0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_degrades_three_take_it_down() {
        let mut h = Health::new(0);
        assert!(h.update(&Outcome::Failed("503".into()), 1));
        assert_eq!(h.state, State::Degraded);
        assert!(!h.update(&Outcome::Failed("503".into()), 2));
        assert!(h.update(&Outcome::Failed("503".into()), 3));
        assert_eq!(
            (h.state, h.since, h.consecutive_failures),
            (State::Down, 3, 3)
        );
        assert!(h.update(&Outcome::Ok { slow: false }, 4));
        assert_eq!(
            (h.state, h.consecutive_failures, h.last_error),
            (State::Up, 0, None)
        );
    }

    #[test]
    fn a_timeout_is_down_at_once_and_slow_is_degraded() {
        let mut h = Health::new(0);
        assert!(h.update(&Outcome::Unreachable("timed out".into()), 5));
        assert_eq!(h.state, State::Down);
        assert_eq!(h.last_error.as_deref(), Some("timed out"));
        // Still down on a further ordinary failure.
        assert!(!h.update(&Outcome::Failed("503".into()), 6));
        assert!(h.update(&Outcome::Ok { slow: true }, 7));
        assert_eq!(h.state, State::Degraded);
    }

    #[test]
    fn persisted_only_as_written_and_read_back() {
        let dir = std::env::temp_dir().join(format!("gatecert-health-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Health::load(&dir, 9), Health::new(9));
        let mut h = Health::new(0);
        h.update(&Outcome::Unreachable("connection refused".into()), 10);
        h.save(&dir).unwrap();
        let text = std::fs::read_to_string(path_in(&dir)).unwrap();
        assert!(text.contains("\"state\": \"down\""), "{text}");
        assert_eq!(Health::load(&dir, 99), h);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn probe_delay_grows_and_is_capped() {
        assert!((2..=3).contains(&probe_delay(0)));
        assert!((8..=10).contains(&probe_delay(2)));
        assert!((300..=360).contains(&probe_delay(30)));
    }
}
