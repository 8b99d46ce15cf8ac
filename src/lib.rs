//! gatecert: keeps an IoT gateway's TLS identity valid over ACME (RFC 8555), and serves leaf
//! sensors over EST (RFC 7030) from a local issuing CA that covers upstream outages.
//!
//! Modules, by responsibility:
//! - [`config`]: the UCI lexer (raw sections) and the typed [`config::Config`] on top;
//! - [`crypto`]: the one narrow door to keys, signatures, digests and X.509 parsing;
//! - [`store`]: atomic writes, permissions, locking, the state directory's layout;
//! - [`clock`]: the injectable clock; [`trust`]: whether that clock may be believed;
//! - [`schedule`]: when to renew (ARI, lifetime rule, jitter, backoff); [`logging`]: syslog/stderr;
//! - [`ca`]: the local issuing CA for leaves; [`token`]: bootstrap tokens; [`audit`]: the
//!   hash-chained audit log; [`leaves`]: the leaf inventory; [`pkcs7`]: EST's certs-only CMS.
#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod ca;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod leaves;
pub mod logging;
pub mod pkcs7;
pub mod report;
pub mod schedule;
pub mod store;
pub mod token;
pub mod trust;
