//! The listener and its connections: one `poll(2)` loop, non-blocking sockets, rustls driven
//! by hand, and the limits of [`Limits`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustls::{ServerConfig, ServerConnection};

use super::{
    parse_request, Answer, Error, Handler, Limits, Parsed, PeerInfo, Response, PARK_GRACE,
};

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
        let cap = super::parse::wire_limit(limits) + 1;
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
