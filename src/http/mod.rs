//! The small HTTP/1.1 server layer under gatecert's listeners (EST over TLS, metrics in plain
//! text on loopback).
//!
//! One thread and one `poll(2)` loop multiplex every connection, so an idle, slow or hostile
//! client never stalls the others. Each connection is non-blocking; TLS is rustls 0.23 driven by
//! hand (`read_tls` / `process_new_packets` / `write_tls`). Hard limits, all from
//! [`Limits`]:
//! - connection count: beyond `max_connections`, clients wait in the listen backlog (the server
//!   stops accepting; nobody is reset mid-handshake). A waiting client may displace a
//!   connection that is still short of a whole request and has left the server waiting for
//!   its next step (handshake flight, request) for [`displace_after`], never one whose
//!   bytes wait unread: trickling a byte at a time is not a step, so a slowloris flood cannot
//!   lock real clients out, and the address holding the most stalled connections pays first;
//! - header bytes (431), body bytes (413, checked against `Content-Length` before the body is
//!   read, or against each chunk size of a chunked body, RFC 9112 §7.1, whose framing is
//!   bounded as well);
//! - one deadline per connection, from accept to the last byte of the answer, TLS handshake
//!   included.
//!
//! Every response carries `Date` (RFC 9110 §6.6.1) unless the clock reads earlier than the
//! build time (then it is not accurate and must not); a `HEAD` request gets the head of the
//! answer without its content. TLS offers ALPN `http/1.1` and `http/1.0`.
//!
//! One request per connection: every response carries `Connection: close` (RFC 9112 §9.6).
//! TLS client certificates are optional: [`tls_config`] builds a verifier that accepts, but
//! does not require, a chain to the given roots, and the handler sees it in [`PeerInfo`].

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::config;

mod chunked;
mod parse;
mod response;
mod server;
#[cfg(test)]
mod tests;
mod tls;

pub use parse::{parse_request, Parsed};
pub use response::Response;
pub use server::{displace_after, Server};
pub use tls::{tls_config, ClientAuth};

/// An error from the server layer.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The listening socket could not be bound or configured.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// `poll(2)` failed (other than EINTR, which is retried by the caller's loop).
    Poll(io::Error),
    /// The TLS configuration could not be built: a bad certificate, key or client root.
    Tls(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
            Error::Poll(_) => f.write_str("poll failed"),
            Error::Tls(m) => write!(f, "TLS configuration: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. } | Error::Poll(source) => Some(source),
            Error::Tls(_) => None,
        }
    }
}

/// The hard limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Request line + headers, bytes.
    pub max_header_bytes: usize,
    /// Request body, bytes.
    pub max_body_bytes: usize,
    /// From accept to the last byte of the answer.
    pub request_timeout: Duration,
}

impl From<&config::Est> for Limits {
    fn from(est: &config::Est) -> Self {
        Limits {
            max_connections: est.max_connections.max(1),
            max_header_bytes: est.max_header_bytes,
            max_body_bytes: est.max_body_bytes,
            request_timeout: Duration::from_secs(est.request_timeout.max(1)),
        }
    }
}

/// A parsed request with its whole body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target's path, without the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// Header names and values in arrival order (values lossily decoded).
    pub headers: Vec<(String, String)>,
    /// The body, exactly `Content-Length` bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Content-Type` media type without its parameters, lowercased (type and subtype are
    /// case-insensitive, RFC 9110 §8.3.1): `Application/PKCS10; x=y` → `application/pkcs10`.
    /// `None` when the request has no `Content-Type`.
    pub fn media_type(&self) -> Option<String> {
        let v = self.header("content-type")?;
        let essence = v.split(';').next().unwrap_or("").trim();
        Some(essence.to_ascii_lowercase())
    }
}

/// Who is asking.
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The remote address.
    pub addr: SocketAddr,
    /// True on a TLS listener.
    pub tls: bool,
    /// The client's certificate chain, end-entity first, when it presented one that chains to the
    /// listener's client roots. Empty otherwise.
    pub certs: Vec<CertificateDer<'static>>,
}

/// A handler's answer: now, or later through [`Server::complete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send this response.
    Now(Response),
    /// Park the connection under this id (chosen by the handler, unique among parked ones);
    /// the handler promises a [`Server::complete`] call with it, before the connection's
    /// deadline, which parking extends by [`PARK_GRACE`] past the handler's own wait.
    Later(u64),
}

/// How much longer than the request deadline a parked connection may stay open, so a
/// handler that answers at its own deadline (EST's `upstream_wait`) still gets through.
pub const PARK_GRACE: Duration = Duration::from_secs(120);

/// Answers requests. Called on the loop's thread, so it must not block for long.
pub trait Handler {
    /// The response to `req` from `peer`.
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response;

    /// The answer to `req`: [`Handler::handle`]'s response by default. A handler that needs
    /// a blocking call (the upstream CA) returns [`Answer::Later`] and hands the work to a
    /// helper thread instead.
    fn answer(&mut self, req: &Request, peer: &PeerInfo) -> Answer {
        Answer::Now(self.handle(req, peer))
    }

    /// Told when the server layer itself refused a request (431, 413, 400, 501) before
    /// [`Handler::handle`] saw it, for audit trails. Does nothing by default.
    fn rejected(&mut self, status: u16, reason: &str, peer: &PeerInfo) {
        let _ = (status, reason, peer);
    }
}

impl<F: FnMut(&Request, &PeerInfo) -> Response> Handler for F {
    fn handle(&mut self, req: &Request, peer: &PeerInfo) -> Response {
        self(req, peer)
    }
}
