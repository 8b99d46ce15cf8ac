//! The small HTTP/1.1 server layer under gatecert's listeners (EST over TLS, metrics in plain
//! text on loopback).
//!
//! One thread and one `poll(2)` loop multiplex every connection, so an idle, slow or hostile
//! client never stalls the others. Each connection is non-blocking; TLS is rustls 0.23 driven by
//! hand (`read_tls` / `process_new_packets` / `write_tls`). Hard limits, all from
//! [`Limits`]:
//! - connection count: at capacity, the oldest connection that has not yet sent a whole request
//!   is dropped to make room (a slowloris flood cannot lock real clients out); if every
//!   connection is already being answered, the new one is closed at once;
//! - header bytes (431), body bytes (413, checked against `Content-Length` before the body is
//!   read), chunked request bodies (411: EST bodies are small and sized);
//! - one deadline per connection, from accept to the last byte of the answer.
//!
//! One request per connection: every response carries `Connection: close` (RFC 9112 §9.6).
//! TLS client certificates are optional: [`tls_config`] builds a verifier that accepts, but
//! does not require, a chain to the given roots, and the handler sees it in [`PeerInfo`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, ServerConnection,
    SignatureScheme,
};

use crate::config;

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

/// A response. `Content-Length` and `Connection: close` are added when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response: `status` and a one-line reason.
    pub fn text(status: u16, msg: &str) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(format!("{msg}\n").into_bytes())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    fn serialize(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            // Header values come from our own code; strip CR/LF anyway so none can split a line.
            let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
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

    /// Told when the server layer itself refused a request (431, 413, 411, 400) before
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

/// Whether and how a TLS listener asks for client certificates.
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// No CertificateRequest is sent.
    Off,
    /// Clients MAY present a certificate; one that does not chain to these roots (at the
    /// system time) fails the handshake.
    Verified(Vec<CertificateDer<'static>>),
    /// Clients MAY present any certificate. The handshake checks only proof of possession (the
    /// CertificateVerify signature, RFC 8446 §4.4.3); the handler MUST check the chain itself.
    /// EST uses this so a foreign or expired certificate gets an HTTP 403 and an audit line
    /// rather than a bare TLS alert.
    Deferred,
}

/// Builds a rustls server config from a PEM chain (end-entity first) and a PKCS#8 PEM key.
pub fn tls_config(
    chain_pem: &str,
    key_pem: &str,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate chain PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("no certificate in the chain PEM".into()));
    }
    // A key in a PKCS#11 token comes as its RFC 7512 URI (see crypto::SigningKey).
    let token_key = match crate::crypto::KeyUri::parse(key_pem) {
        Ok(uri) => Some(
            crate::crypto::SigningKey::open(&uri)
                .map_err(|e| Error::Tls(e.to_string()))?
                .into_tls(),
        ),
        Err(_) => None,
    };
    // The error text of a key parse never includes key bytes.
    let key = match token_key {
        Some(_) => None,
        None => Some(
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| Error::Tls("no usable private key in the key PEM".into()))?,
        ),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Verified(client_roots) => {
            let mut roots = RootCertStore::empty();
            for r in client_roots {
                roots
                    .add(r)
                    .map_err(|e| Error::Tls(format!("client root: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::Deferred => builder.with_client_cert_verifier(Arc::new(DeferredClientCert {
            algs: provider.signature_verification_algorithms,
        })),
    };
    let mut cfg = match (key, token_key) {
        (Some(key), _) => builder.with_single_cert(chain, key),
        (None, Some(signer)) => {
            let certified = rustls::sign::CertifiedKey::new(chain, signer);
            certified.keys_match().map(|()| {
                builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                    certified,
                )))
            })
        }
        (None, None) => Err(rustls::Error::General("no key".into())),
    }
    .map_err(|e| Error::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// [`ClientAuth::Deferred`]: offers client auth, never requires it, accepts any chain, and
/// verifies the handshake signature with the presented end-entity key.
#[derive(Debug)]
struct DeferredClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The handler checks the chain (see ClientAuth::Deferred).
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting the request.
    Reading,
    /// The answer is queued; flushing it out.
    Writing,
    /// The answer is out and our side is shut: discard what the client still sends until it
    /// closes, so unread bytes never turn the close into a RST that eats the answer
    /// (RFC 9112 §9.6, "lingering close").
    Draining,
    /// The handler answers later ([`Answer::Later`]) under this id.
    Parked(u64),
    /// Done: close at the next sweep.
    Done,
}

struct Conn {
    sock: TcpStream,
    addr: SocketAddr,
    tls: Option<Box<ServerConnection>>,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    deadline: Instant,
    /// When it was accepted.
    opened: Instant,
    /// When the client last sent us bytes; `None` = never.
    last_rx: Option<Instant>,
    phase: Phase,
}

/// At capacity, a connection whose client sent bytes within this time is not evicted for a new
/// one: a real client mid-handshake is always talking, so a flood of new connections
/// (slowloris reconnecting) can no longer push it out. Connections that never sent anything, or
/// went quiet, go first, the longest-quiet first.
pub const EVICT_GRACE: Duration = Duration::from_millis(250);

/// One listener and its connections.
pub struct Server {
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    limits: Limits,
    conns: Vec<Conn>,
}

impl Server {
    /// Binds `addr` (non-blocking). `tls: None` serves plain HTTP (for loopback metrics).
    pub fn bind(
        addr: SocketAddr,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
    ) -> Result<Server, Error> {
        let bind_err = |source| Error::Bind { addr, source };
        let listener = TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        Ok(Server {
            listener,
            tls,
            limits,
            conns: Vec::new(),
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Replaces the TLS config for new connections (certificate reload); open ones keep theirs.
    pub fn set_tls(&mut self, tls: Arc<ServerConfig>) {
        self.tls = Some(tls);
    }

    /// Replaces the limits for new connections.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Open connections right now.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// True while the connection parked under `id` is open.
    pub fn is_parked(&self, id: u64) -> bool {
        self.conns.iter().any(|c| c.phase == Phase::Parked(id))
    }

    /// Sends `resp` on the connection parked under `id` ([`Answer::Later`]). False when that
    /// connection is gone (the client hung up or its deadline passed).
    pub fn complete(&mut self, id: u64, resp: &Response) -> bool {
        let Some(conn) = self.conns.iter_mut().find(|c| c.phase == Phase::Parked(id)) else {
            return false;
        };
        conn.queue(resp);
        conn.write_out();
        true
    }

    /// Waits up to `timeout` for activity on the listener, its connections or `extra` (wakeup
    /// pipes, signal pipes), serves what is ready, and returns which of `extra` are readable.
    /// Returns early (all false) when interrupted by a signal.
    pub fn poll_once(
        &mut self,
        handler: &mut dyn Handler,
        extra: &[BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<Vec<bool>, Error> {
        let now = Instant::now();
        let wait = self
            .conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .fold(timeout, Duration::min);
        let mut ready = vec![false; extra.len()];
        let (listener_ready, conn_ready) = {
            let mut fds = Vec::with_capacity(1 + self.conns.len() + extra.len());
            fds.push(PollFd::new(&self.listener, PollFlags::IN));
            for c in &self.conns {
                fds.push(PollFd::new(&c.sock, c.interest()));
            }
            for fd in extra {
                fds.push(PollFd::new(fd, PollFlags::IN));
            }
            let ts = Timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            };
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => return Ok(ready),
                Err(e) => return Err(Error::Poll(e.into())),
            }
            let n = self.conns.len();
            let conn_ready: Vec<PollFlags> = fds[1..=n].iter().map(|f| f.revents()).collect();
            for (i, f) in fds[n + 1..].iter().enumerate() {
                ready[i] = !f.revents().is_empty();
            }
            (!fds[0].revents().is_empty(), conn_ready)
        };
        for (conn, rev) in self.conns.iter_mut().zip(conn_ready) {
            if !rev.is_empty() {
                conn.drive(handler, &self.limits);
            }
        }
        if listener_ready {
            self.accept_all();
        }
        let now = Instant::now();
        self.conns
            .retain(|c| c.phase != Phase::Done && c.deadline > now);
        Ok(ready)
    }

    fn accept_all(&mut self) {
        // Bounded per round, so a connect flood cannot starve the open connections.
        for _ in 0..64 {
            let (sock, addr) = match self.listener.accept() {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: try again next round.
                    log::warn!("accept on {:?}: {e}", self.listener.local_addr().ok());
                    return;
                }
            };
            if self.conns.len() >= self.limits.max_connections && !self.evict_one() {
                let _ = sock.shutdown(Shutdown::Both);
                continue;
            }
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = sock.set_nodelay(true);
            let tls = match &self.tls {
                Some(cfg) => match ServerConnection::new(cfg.clone()) {
                    Ok(mut c) => {
                        // Our answers are bounded by the handler; never refuse to queue one.
                        c.set_buffer_limit(None);
                        Some(Box::new(c))
                    }
                    Err(e) => {
                        log::warn!("TLS session for {addr}: {e}");
                        continue;
                    }
                },
                None => None,
            };
            self.conns.push(Conn {
                sock,
                addr,
                tls,
                inbuf: Vec::new(),
                outbuf: Vec::new(),
                deadline: Instant::now() + self.limits.request_timeout,
                opened: Instant::now(),
                last_rx: None,
                phase: Phase::Reading,
            });
        }
    }

    /// Drops the longest-quiet connection that has not finished sending its request and has
    /// not sent anything within [`EVICT_GRACE`]. False if none (the new one is then refused).
    fn evict_one(&mut self) -> bool {
        let now = Instant::now();
        let victim = self
            .conns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.phase, Phase::Reading | Phase::Draining))
            .filter(|(_, c)| {
                c.last_rx
                    .is_none_or(|t| now.duration_since(t) >= EVICT_GRACE)
            })
            .min_by_key(|(_, c)| c.last_rx.unwrap_or(c.opened))
            .map(|(i, _)| i);
        match victim {
            Some(i) => {
                let c = self.conns.swap_remove(i);
                log::debug!("dropping idle connection from {} (at capacity)", c.addr);
                true
            }
            None => false,
        }
    }
}

impl Conn {
    fn interest(&self) -> PollFlags {
        let wants_write = match &self.tls {
            Some(t) => t.wants_write(),
            None => !self.outbuf.is_empty(),
        };
        let mut f = PollFlags::empty();
        if matches!(self.phase, Phase::Reading | Phase::Draining)
            || self.tls.as_ref().is_some_and(|t| t.is_handshaking())
        {
            f |= PollFlags::IN;
        }
        if wants_write {
            f |= PollFlags::OUT;
        }
        if f.is_empty() {
            // Still watch for hang-up so a finished connection is reaped.
            f |= PollFlags::IN;
        }
        f
    }

    /// Reads what has arrived, answers a complete request, writes what is queued.
    fn drive(&mut self, handler: &mut dyn Handler, limits: &Limits) {
        if self.phase == Phase::Draining {
            self.drain();
            return;
        }
        if let Phase::Parked(_) = self.phase {
            // Waiting on the handler: the client has nothing more to say. A hang-up or extra
            // bytes (no pipelining here) end the connection; the handler's late answer is
            // then dropped by `complete`.
            let before = self.inbuf.len();
            match self.read_in(limits) {
                Ok(false) if self.inbuf.len() == before => self.write_out(),
                _ => self.phase = Phase::Done,
            }
            return;
        }
        if self.phase == Phase::Reading {
            let eof = match self.read_in(limits) {
                Ok(eof) => eof,
                Err(()) => {
                    self.phase = Phase::Done;
                    return;
                }
            };
            match parse_request(&self.inbuf, limits) {
                // A client that half-closed before sending a whole request gets nothing.
                Parsed::Partial if eof => {
                    self.phase = Phase::Done;
                    return;
                }
                Parsed::Partial => {}
                Parsed::Reject(resp) => {
                    let reason = String::from_utf8_lossy(&resp.body).trim().to_owned();
                    handler.rejected(resp.status, &reason, &self.peer());
                    self.queue(&resp)
                }
                Parsed::Complete(req) => match handler.answer(&req, &self.peer()) {
                    Answer::Now(resp) => self.queue(&resp),
                    Answer::Later(id) => {
                        self.phase = Phase::Parked(id);
                        self.deadline += PARK_GRACE;
                    }
                },
            }
        }
        self.write_out();
    }

    fn peer(&self) -> PeerInfo {
        PeerInfo {
            addr: self.addr,
            tls: self.tls.is_some(),
            certs: self
                .tls
                .as_ref()
                .and_then(|t| t.peer_certificates())
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
        }
    }

    /// Pulls bytes off the socket into `inbuf` (through TLS when on). `Ok(true)` when the
    /// client has finished sending; `Err` = close now.
    fn read_in(&mut self, limits: &Limits) -> Result<bool, ()> {
        let cap = limits.max_header_bytes + limits.max_body_bytes + 1;
        let mut buf = [0u8; 4096];
        match &mut self.tls {
            None => loop {
                if self.inbuf.len() >= cap {
                    return Ok(false);
                }
                match self.sock.read(&mut buf) {
                    Ok(0) => return Ok(true),
                    Ok(n) => {
                        self.last_rx = Some(Instant::now());
                        self.inbuf.extend_from_slice(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(()),
                }
            },
            Some(tls) => loop {
                if self.inbuf.len() >= cap {
                    return Ok(false);
                }
                let eof = match tls.read_tls(&mut self.sock) {
                    Ok(0) => true,
                    Ok(_) => {
                        self.last_rx = Some(Instant::now());
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                };
                if let Err(e) = tls.process_new_packets() {
                    log::debug!("TLS from {}: {e}", self.addr);
                    // Send the alert rustls queued, best effort, then close.
                    let _ = tls.write_tls(&mut self.sock);
                    return Err(());
                }
                loop {
                    match tls.reader().read(&mut buf) {
                        Ok(0) => return Ok(true),
                        Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return Err(()),
                    }
                }
                if eof {
                    return Ok(true);
                }
                if tls.wants_write() {
                    // Handshake messages: flush them so the client can go on.
                    let _ = tls.write_tls(&mut self.sock);
                }
            },
        }
    }

    fn queue(&mut self, resp: &Response) {
        let bytes = resp.serialize();
        match &mut self.tls {
            Some(tls) => {
                if tls.writer().write_all(&bytes).is_err() {
                    self.phase = Phase::Done;
                    return;
                }
                tls.send_close_notify();
            }
            None => self.outbuf = bytes,
        }
        self.phase = Phase::Writing;
    }

    fn write_out(&mut self) {
        match &mut self.tls {
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.phase = Phase::Done;
                            return;
                        }
                    }
                }
            }
            None => {
                while !self.outbuf.is_empty() {
                    match self.sock.write(&self.outbuf) {
                        Ok(0) => {
                            self.phase = Phase::Done;
                            return;
                        }
                        Ok(n) => {
                            self.outbuf.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.phase = Phase::Done;
                            return;
                        }
                    }
                }
            }
        }
        if self.phase == Phase::Writing {
            let _ = self.sock.shutdown(Shutdown::Write);
            self.phase = Phase::Draining;
            self.drain();
        }
    }

    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.phase = Phase::Done;
    }
}

/// What [`parse_request`] found in a read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head or the body is not all there yet: read more.
    Partial,
    /// The request breaks a limit or HTTP/1.1's grammar: send this and close.
    Reject(Response),
    /// One whole request (one request per connection: bytes after its body are ignored).
    Complete(Request),
}

/// Parses one request out of `buf`, applying the header and body limits (RFC 9112 §2-§6).
/// Pure (no I/O): the server calls it after each read, and the `http_request` fuzz target
/// calls it directly.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Parsed::Reject(Response::text(431, "request header too large"));
            }
            return Parsed::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Reject(Response::text(431, "too many header fields"))
        }
        Err(e) => return Parsed::Reject(Response::text(400, &format!("bad request: {e}"))),
    };
    if head_len > limits.max_header_bytes {
        return Parsed::Reject(Response::text(431, "request header too large"));
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    if !find("transfer-encoding").is_empty() {
        return Parsed::Reject(Response::text(
            411,
            "chunked request bodies are not accepted; send Content-Length",
        ));
    }
    let lengths = find("content-length");
    let length = match lengths.as_slice() {
        [] => 0,
        // RFC 9110 §8.6: `Content-Length = 1*DIGIT` (Rust's parser would also take "+5").
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            match one.parse::<usize>() {
                Ok(n) => n,
                Err(_) => return Parsed::Reject(Response::text(413, "body larger than allowed")),
            }
        }
        [_] => return Parsed::Reject(Response::text(400, "bad Content-Length")),
        // RFC 9112 §6.3: differing lengths are unrecoverable; identical repeats are too odd
        // to be worth trusting.
        _ => return Parsed::Reject(Response::text(400, "repeated Content-Length")),
    };
    if length > limits.max_body_bytes {
        return Parsed::Reject(Response::text(
            413,
            &format!("body larger than {} bytes", limits.max_body_bytes),
        ));
    }
    let have = buf.len() - head_len;
    if have < length {
        return Parsed::Partial;
    }
    Parsed::Complete(Request {
        method,
        path,
        query,
        headers,
        body: buf[head_len..head_len + length].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            max_header_bytes: 256,
            max_body_bytes: 16,
            request_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn parses_a_post_with_its_body() {
        let raw = b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let Parsed::Complete(req) = parse_request(raw, &limits()) else {
            panic!("not complete")
        };
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/x");
        assert_eq!(req.query.as_deref(), Some("y=1"));
        assert_eq!(req.header("content-length"), Some("5"));
        assert_eq!(req.body, b"hello");
    }

    #[test]
    fn waits_for_the_rest_of_the_body() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
        assert!(matches!(parse_request(raw, &limits()), Parsed::Partial));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHo", &limits()),
            Parsed::Partial
        ));
    }

    fn status(p: Parsed) -> u16 {
        match p {
            Parsed::Reject(r) => r.status,
            Parsed::Complete(_) => 0,
            Parsed::Partial => 1,
        }
    }

    #[test]
    fn enforces_limits_before_reading_the_body() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
        assert_eq!(status(parse_request(raw, &limits())), 413);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(300));
        assert_eq!(status(parse_request(big.as_bytes(), &limits())), 431);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(parse_request(chunked, &limits())), 411);
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(parse_request(two, &limits())), 400);
        assert_eq!(
            status(parse_request(b"\x01\x02 / HTTP/1.1\r\n\r\n", &limits())),
            400
        );
    }

    #[test]
    fn content_length_is_digits_only() {
        let req =
            |cl: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nhello");
        assert_eq!(status(parse_request(req("+5").as_bytes(), &limits())), 400);
        assert_eq!(status(parse_request(req("-5").as_bytes(), &limits())), 400);
        assert_eq!(status(parse_request(req("5 5").as_bytes(), &limits())), 400);
        assert_eq!(
            status(parse_request(
                req("99999999999999999999999").as_bytes(),
                &limits()
            )),
            413
        );
        assert!(matches!(
            parse_request(req("5").as_bytes(), &limits()),
            Parsed::Complete(_)
        ));
    }

    #[test]
    fn response_has_length_and_close() {
        let r = Response::text(401, "no").header("WWW-Authenticate", "Basic realm=\"x\"\r\nX: y");
        let s = String::from_utf8(r.serialize()).unwrap();
        assert!(s.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(s.contains("WWW-Authenticate: Basic realm=\"x\"X: y\r\n"));
        assert!(s.contains("Content-Length: 3\r\nConnection: close\r\n\r\nno\n"));
    }

    fn serve_in_thread(limits: Limits) -> (SocketAddr, std::os::unix::net::UnixStream) {
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), None, limits).unwrap();
        let addr = server.local_addr().unwrap();
        let (stop_tx, stop_rx) = std::os::unix::net::UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut h = |req: &Request, _: &PeerInfo| Response::text(200, &req.path);
            loop {
                let r = server
                    .poll_once(&mut h, &[stop_rx.as_fd()], Duration::from_secs(1))
                    .unwrap();
                if r[0] {
                    return;
                }
            }
        });
        (addr, stop_tx)
    }

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn idle_connections_do_not_lock_out_a_real_client() {
        let (addr, mut stop) = serve_in_thread(limits());
        // Twice the connection limit, all idle.
        let idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // They never sent a byte, so they are evicted first for a new client.
        std::thread::sleep(Duration::from_millis(100));
        let out = get(addr, "/hello");
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("/hello\n"));
        drop(idle);
        stop.write_all(b"x").unwrap();
    }

    /// A handler that parks `/later` and answers everything else at once.
    struct Parking {
        parked: Vec<u64>,
    }

    impl Handler for Parking {
        fn handle(&mut self, req: &Request, _: &PeerInfo) -> Response {
            Response::text(200, &req.path)
        }

        fn answer(&mut self, req: &Request, peer: &PeerInfo) -> Answer {
            if req.path == "/later" {
                self.parked.push(7);
                return Answer::Later(7);
            }
            Answer::Now(self.handle(req, peer))
        }
    }

    #[test]
    fn a_parked_request_does_not_stall_others_and_is_completed_later() {
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), None, limits()).unwrap();
        let addr = server.local_addr().unwrap();
        let mut h = Parking { parked: Vec::new() };
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(slow, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let t = Instant::now();
        while h.parked.is_empty() {
            assert!(t.elapsed() < Duration::from_secs(5));
            server
                .poll_once(&mut h, &[], Duration::from_millis(50))
                .unwrap();
        }
        assert!(server.is_parked(7));
        // Another client is served while the first waits.
        let mut fast = TcpStream::connect(addr).unwrap();
        fast.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(fast, "GET /now HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let reader = std::thread::spawn(move || {
            fast.read_to_string(&mut out).unwrap();
            out
        });
        let t = Instant::now();
        while !reader.is_finished() {
            assert!(t.elapsed() < Duration::from_secs(5));
            server
                .poll_once(&mut h, &[], Duration::from_millis(20))
                .unwrap();
        }
        assert!(reader.join().unwrap().ends_with("/now\n"));
        assert!(!server.complete(8, &Response::text(200, "nobody")));
        assert!(server.complete(7, &Response::text(202, "later")));
        assert!(!server.is_parked(7));
        let mut out = String::new();
        let reader = std::thread::spawn(move || {
            slow.read_to_string(&mut out).unwrap();
            out
        });
        let t = Instant::now();
        while !reader.is_finished() {
            assert!(t.elapsed() < Duration::from_secs(5));
            server
                .poll_once(&mut h, &[], Duration::from_millis(20))
                .unwrap();
        }
        let out = reader.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 202 Accepted"), "{out}");
        assert!(out.ends_with("later\n"));
    }

    #[test]
    fn a_parked_client_that_hangs_up_is_dropped() {
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), None, limits()).unwrap();
        let addr = server.local_addr().unwrap();
        let mut h = Parking { parked: Vec::new() };
        let mut c = TcpStream::connect(addr).unwrap();
        write!(c, "GET /later HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let t = Instant::now();
        while h.parked.is_empty() {
            assert!(t.elapsed() < Duration::from_secs(5));
            server
                .poll_once(&mut h, &[], Duration::from_millis(50))
                .unwrap();
        }
        drop(c);
        let t = Instant::now();
        while server.is_parked(7) {
            assert!(t.elapsed() < Duration::from_secs(5));
            server
                .poll_once(&mut h, &[], Duration::from_millis(50))
                .unwrap();
        }
        assert!(!server.complete(7, &Response::text(200, "too late")));
    }

    #[test]
    fn slow_client_is_cut_off_at_the_deadline() {
        let mut l = limits();
        l.request_timeout = Duration::from_millis(300);
        let (addr, mut stop) = serve_in_thread(l);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"GET / HT").unwrap();
        let t = Instant::now();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(out.is_empty());
        assert!(t.elapsed() < Duration::from_secs(2));
        stop.write_all(b"x").unwrap();
    }
}
