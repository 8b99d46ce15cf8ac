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
//!   hash-chained audit log; [`leaves`]: the leaf inventory; [`pkcs7`]: EST's certs-only CMS;
//! - [`http`]: the small HTTP/1.1 server layer; [`est`]: the EST server (RFC 7030);
//!   [`daemon`]: `gatecert run` and `gatecert demo`;
//! - [`acme`]: the RFC 8555 client; [`challenge`]: http-01, tls-alpn-01 and dns-01 solvers;
//!   [`renew`]: `gatecert renew`, `revoke` and `account rollover`;
//! - [`report`]: `gatecert status`, metrics, alerts and `gatecert check`.
#![forbid(unsafe_code)]

pub mod acme;
pub mod acme_server;
pub mod admin;
pub mod audit;
pub mod broker;
pub mod bundle;
pub mod ca;
pub mod challenge;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod crypto;
pub mod daemon;
pub mod errchain;
pub mod est;
pub mod failover;
pub mod hook;
pub mod http;
pub mod journal;
pub mod leaves;
pub mod logging;
pub mod pkcs7;
pub mod renew;
pub mod report;
pub mod revocation;
pub mod schedule;
pub mod store;
pub mod token;
pub mod trust;
