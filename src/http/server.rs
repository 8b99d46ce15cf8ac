//! The listener and its connections: one `poll(2)` loop, non-blocking sockets, rustls driven
//! by hand, and the limits of [`Limits`].

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
    /// When it last made progress towards a whole request: accepted, a TLS handshake flight
    /// processed (we had an answer to send) or the handshake completed. Bytes that advance
    /// nothing (a ClientHello or a request head trickled a byte at a time) do not count.
    progress: Instant,
    /// The client has sent at least one byte.
    heard: bool,
    /// The request is `HEAD`: its answer goes without content.
    head: bool,
    phase: Phase,
}

/// How long a connection may leave the server waiting for its next step (its TLS handshake
/// flight, its whole request) before, at the connection cap, a waiting client may displace it:
/// a quarter of `request_timeout`, at most 1 s. Only the client's own delay counts: the clock
/// restarts at every step, and a connection whose bytes wait unread in its socket is never
/// displaced, so a busy server never pushes out real clients it has not got round to. A
/// slowloris connection makes no step however often it sends a byte, so trickling buys it
/// nothing.
pub fn displace_after(limits: &Limits) -> Duration {
    (limits.request_timeout / 4).min(Duration::from_secs(1))
}

/// [`displace_after`] for a connection that has not sent a single byte: a quarter of it. A
/// real client's first flight follows the TCP handshake within one round trip.
fn displace_silent_after(limits: &Limits) -> Duration {
    displace_after(limits) / 4
}

impl Conn {
    /// When this connection becomes displaceable, if it is still reading its request then.
    fn stall_deadline(&self, limits: &Limits) -> Instant {
        if self.heard {
            self.progress + displace_after(limits)
        } else {
            self.progress + displace_silent_after(limits)
        }
    }
}

/// The listen(2) backlog: clients beyond the connection cap wait here (the kernel completes
/// their TCP handshake; we accept them as slots free up) rather than being refused.
const BACKLOG: i32 = 1024;

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
        // std listens with a backlog of 128; clients over the cap wait in the backlog, so make
        // room for a burst (the kernel caps it at net.core.somaxconn).
        rustix::net::listen(&listener, BACKLOG).map_err(|e| bind_err(e.into()))?;
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

    /// Parks the connection parked under `old` under `new` instead (a deferred request whose
    /// handler parked it again). False when that connection is gone.
    pub fn repark(&mut self, old: u64, new: u64) -> bool {
        match self
            .conns
            .iter_mut()
            .find(|c| c.phase == Phase::Parked(old))
        {
            Some(conn) => {
                conn.phase = Phase::Parked(new);
                true
            }
            None => false,
        }
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
        let mut wait = self
            .conns
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .fold(timeout, Duration::min);
        // At the cap, waiting clients stay in the listen backlog until a slot frees or an
        // unfinished connection has had its time (`displace_after`): then watch the listener.
        let room = self.conns.len() < self.limits.max_connections;
        let accepting = room || self.victim(now).is_some();
        if !accepting {
            if let Some(t) = self.next_displaceable(now) {
                wait = wait.min(t.saturating_duration_since(now));
            }
        }
        let mut ready = vec![false; extra.len()];
        let (listener_ready, conn_ready) = {
            let mut fds = Vec::with_capacity(1 + self.conns.len() + extra.len());
            let interest = if accepting {
                PollFlags::IN
            } else {
                PollFlags::empty()
            };
            fds.push(PollFd::new(&self.listener, interest));
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
        let now = Instant::now();
        self.conns
            .retain(|c| c.phase != Phase::Done && c.deadline > now);
        if listener_ready {
            self.accept_all();
        }
        Ok(ready)
    }

    fn accept_all(&mut self) {
        // Bounded per round, so a connect flood cannot starve the open connections.
        for _ in 0..64 {
            if self.conns.len() >= self.limits.max_connections {
                // Make room for the next waiting client, if there is one, or leave it in the
                // backlog.
                if !self.client_waiting() {
                    return;
                }
                match self.victim(Instant::now()) {
                    Some(i) => self.displace(i),
                    None => return,
                }
            }
            let (sock, addr) = match self.listener.accept() {
                Ok(v) => v,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // EMFILE and friends: try again next round.
                    log::warn!("accept on {:?}: {e}", self.listener.local_addr().ok());
                    return;
                }
            };
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
                progress: Instant::now(),
                heard: false,
                head: false,
                phase: Phase::Reading,
            });
        }
    }

    /// True when a client waits in the listen backlog (a poll that does not wait).
    fn client_waiting(&self) -> bool {
        let mut fds = [PollFd::new(&self.listener, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
    }

    /// The connection a waiting client may displace at the cap, if any:
    /// - one already answered and only lingering ([`Phase::Draining`]), with nothing unread
    ///   (so closing it sends a FIN after the answer, never a RST that could eat it);
    /// - else one still short of a whole request that has made no step for
    ///   [`displace_after`] (a quarter of that if it never sent a byte) and has nothing
    ///   unread in its socket: from the peer address that holds the most such connections
    ///   (a flood from a few addresses pays first, whatever its shape), the longest stalled
    ///   first.
    ///
    /// Connections being answered or parked are never displaced.
    fn victim(&self, now: Instant) -> Option<usize> {
        let lingering = self
            .conns
            .iter()
            .position(|c| c.phase == Phase::Draining && !c.unread());
        if lingering.is_some() {
            return lingering;
        }
        let stalled: Vec<usize> = (0..self.conns.len())
            .filter(|&i| {
                let c = &self.conns[i];
                c.phase == Phase::Reading && c.stall_deadline(&self.limits) <= now
            })
            .collect();
        if stalled.is_empty() {
            return None;
        }
        // Per address: how many stalled connections it holds (a small linear table: the cap
        // bounds it).
        let mut per_peer: Vec<(IpAddr, usize)> = Vec::new();
        for &i in &stalled {
            let ip = self.conns[i].addr.ip();
            match per_peer.iter_mut().find(|(p, _)| *p == ip) {
                Some((_, n)) => *n += 1,
                None => per_peer.push((ip, 1)),
            }
        }
        let share = |ip: IpAddr| {
            per_peer
                .iter()
                .find(|(p, _)| *p == ip)
                .map_or(0, |(_, n)| *n)
        };
        let mut order = stalled;
        order.sort_by_key(|&i| {
            let c = &self.conns[i];
            (std::cmp::Reverse(share(c.addr.ip())), c.progress)
        });
        // Bytes waiting unread mean the server is behind, not the client: skip those.
        order.into_iter().find(|&i| !self.conns[i].unread())
    }

    /// When the next unfinished connection becomes displaceable (for the poll timeout while
    /// clients wait in the backlog).
    fn next_displaceable(&self, now: Instant) -> Option<Instant> {
        self.conns
            .iter()
            .filter(|c| c.phase == Phase::Reading)
            .map(|c| c.stall_deadline(&self.limits))
            .filter(|t| *t > now)
            .min()
    }

    /// Drops connection `i` for a waiting client. One that got through its TLS handshake is
    /// told why first (408, RFC 9110 §15.5.9), best effort and without waiting.
    fn displace(&mut self, i: usize) {
        let mut c = self.conns.swap_remove(i);
        if c.phase == Phase::Reading && c.tls.as_ref().is_none_or(|t| !t.is_handshaking()) {
            c.queue(&Response::text(
                408,
                "request not complete in time while others wait; try again",
            ));
            c.write_out();
        }
        log::debug!(
            "displaced an unfinished connection from {} (at capacity)",
            c.addr
        );
    }
}

impl Conn {
    /// True when bytes from the client wait unread in the socket.
    fn unread(&self) -> bool {
        let mut b = [0u8; 1];
        match self.sock.peek(&mut b) {
            Ok(n) => n > 0,
            Err(_) => false,
        }
    }

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
                Parsed::Complete(req) => {
                    self.head = req.method == "HEAD";
                    match handler.answer(&req, &self.peer()) {
                        Answer::Now(resp) => self.queue(&resp),
                        Answer::Later(id) => {
                            self.phase = Phase::Parked(id);
                            self.deadline += PARK_GRACE;
                        }
                    }
                }
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
                        self.heard = true;
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
                        self.heard = true;
                        false
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                };
                let handshaking = tls.is_handshaking();
                if let Err(e) = tls.process_new_packets() {
                    log::debug!("TLS from {}: {e}", self.addr);
                    // Send the alert rustls queued, best effort, then close.
                    let _ = tls.write_tls(&mut self.sock);
                    return Err(());
                }
                loop {
                    match tls.reader().read(&mut buf) {
                        Ok(0) => return Ok(true),
                        Ok(n) => {
                            self.heard = true;
                            self.inbuf.extend_from_slice(&buf[..n]);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => return Err(()),
                    }
                }
                if eof {
                    return Ok(true);
                }
                if (handshaking && tls.wants_write()) || handshaking != tls.is_handshaking() {
                    // A handshake flight answered, or the handshake done: a step forward.
                    self.progress = Instant::now();
                }
                if tls.wants_write() {
                    // Handshake messages: flush them so the client can go on.
                    let _ = tls.write_tls(&mut self.sock);
                }
            },
        }
    }

    fn queue(&mut self, resp: &Response) {
        let build = crate::trust::BUILD_TIME.parse().unwrap_or(0);
        let date = super::response::trusted_date(SystemTime::now(), build);
        let bytes = resp.serialize(date, self.head);
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
