//! gatecert: keeps an IoT gateway's TLS identity valid over ACME (RFC 8555), and serves leaf
//! sensors over EST (RFC 7030) from a local issuing CA that covers upstream outages.
//!
//! Modules, by responsibility:
//! - [`config`]: the UCI lexer (raw sections) and the typed [`config::Config`] on top;
//! - [`crypto`]: the one narrow door to keys, signatures, digests and X.509 parsing;
//! - [`store`]: atomic writes, permissions, locking, the state directory's layout;
//! - [`clock`]: the injectable clock.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod logging;
pub mod schedule;
pub mod store;
pub mod trust;
