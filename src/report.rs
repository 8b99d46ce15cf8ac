//! What an operator sees: `gatecert status` ([`status`]), Prometheus metrics ([`metrics`]),
//! syslog alerts ([`alerts`]) and the `gatecert check` pre-flight ([`check`]).
//!
//! Everything takes `now` from the caller's [`crate::clock::Clock`], so tests pick the
//! renewal-due, alert-window, failed and expired states without sleeping. The one file this
//! module owns on disk is `<state_dir>/certs/<name>/health.json` ([`health`]), which the renew
//! code updates through [`record_attempt`].

pub mod alerts;
pub mod check;
pub mod health;
pub mod metrics;
pub mod monitor;
pub mod status;

pub use check::cmd_check;
pub use health::record_attempt;
pub use metrics::{render_metrics, Counters};
pub use monitor::{Counted, MetricsHandler, Monitor};
pub use status::{cmd_status, Status};

#[cfg(test)]
mod fixture;
