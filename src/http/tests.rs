//! The server loop against real sockets on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;

fn limits() -> Limits {
    Limits {
        max_connections: 4,
        max_header_bytes: 256,
        max_body_bytes: 16,
        request_timeout: Duration::from_secs(2),
    }
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

/// Opens a connection that sends one byte of a request head every 50 ms and never finishes,
/// reconnecting when dropped, until `stop`; at most `rounds` bytes in all, so it is bounded.
fn trickler(
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: ";
        let mut reconnects = 0;
        let mut sock = TcpStream::connect(addr).ok();
        for i in 0..400 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let byte = [head.get(i % 64).copied().unwrap_or(b'a')];
            let ok = sock.as_mut().is_some_and(|s| s.write_all(&byte).is_ok());
            if !ok {
                reconnects += 1;
                sock = TcpStream::connect(addr).ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        reconnects
    })
}

/// Issue 10 item 6: more tricklers than the cap, each sending a byte well within any "recent
/// activity" window, used to lock a real client out. Now a trickler that has not finished its
/// request after `displace_after` gives way to a waiting client.
#[test]
fn tricklers_holding_the_cap_do_not_lock_out_a_real_client() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (addr, mut stop) = serve_in_thread(limits());
    let halt = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..6).map(|_| trickler(addr, halt.clone())).collect();
    // Let them take every slot (the cap is 4) and start trickling.
    std::thread::sleep(Duration::from_millis(200));
    let answers: Vec<String> = (0..3).map(|i| get(addr, &format!("/real{i}"))).collect();
    halt.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.join().unwrap();
    }
    for (i, out) in answers.iter().enumerate() {
        assert!(out.starts_with("HTTP/1.1 200 OK"), "request {i}: {out:?}");
        assert!(out.ends_with(&format!("/real{i}\n")), "{out:?}");
    }
    stop.write_all(b"x").unwrap();
}

/// Issue 13: as many concurrent clients as the cap are all served, and so are four times as
/// many (the rest wait in the listen backlog instead of being reset).
#[test]
fn clients_at_and_beyond_the_cap_are_all_served() {
    let (addr, mut stop) = serve_in_thread(limits());
    for clients in [4, 16] {
        let threads: Vec<_> = (0..clients)
            .map(|c| {
                std::thread::spawn(move || {
                    (0..5)
                        .map(|r| get(addr, &format!("/c{c}r{r}")))
                        .filter(|out| !out.starts_with("HTTP/1.1 200 OK"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let failed: Vec<String> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(failed.is_empty(), "{clients} clients: {failed:?}");
    }
    stop.write_all(b"x").unwrap();
}

/// A HEAD answer carries the GET answer's head (Content-Length included) and no content;
/// every answer, refusals included, carries a Date.
#[test]
fn head_has_no_content_and_every_answer_a_date() {
    let (addr, mut stop) = serve_in_thread(limits());
    let raw = |req: &str| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let get = raw("GET /abc HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = raw("HEAD /abc HTTP/1.1\r\nHost: x\r\n\r\n");
    let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
    assert_eq!(get_body, "/abc\n");
    assert!(head.ends_with("\r\n\r\n"), "{head:?}");
    assert!(head.contains("Content-Length: 5\r\n"), "{head:?}");
    let no_date = |h: &str| -> String {
        h.lines()
            .filter(|l| !l.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(no_date(head.trim_end()), no_date(get_head));
    for out in [get.as_str(), head.as_str(), &raw("BAD\r\n\r\n")] {
        let date = out
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .unwrap_or_else(|| panic!("no Date in {out:?}"));
        // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
        assert_eq!(date.len(), 29, "{date}");
        assert!(
            date.ends_with(" GMT") && date.as_bytes()[3] == b',',
            "{date}"
        );
    }
    stop.write_all(b"x").unwrap();
}

/// A blocking TCP connection to `to` from the loopback address `from` (127.0.0.2, ...).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    use rustix::net::{AddressFamily, SocketType};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let src: SocketAddr = format!("{from}:0").parse().unwrap();
    rustix::net::bind(&fd, &src).unwrap();
    rustix::net::connect(&fd, &to).unwrap();
    TcpStream::from(fd)
}

/// True when the server closed `s` (EOF or reset, after its 408 if any); false while it is
/// still open and silent.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Runs `server` until `done` or 5 s.
fn serve_until(server: &mut Server, h: &mut dyn Handler, done: &dyn Fn() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < Duration::from_secs(5), "gave up waiting");
        server.poll_once(h, &[], Duration::from_millis(20)).unwrap();
    }
}

/// At the cap, the address that holds the most stalled connections gives way first, even
/// when another address's connection has been stalled longer.
#[test]
fn the_address_holding_the_most_stalled_connections_gives_way_first() {
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), None, limits()).unwrap();
    let addr = server.local_addr().unwrap();
    let mut h = |req: &Request, _: &PeerInfo| Response::text(200, &req.path);
    let mut lone = connect_from("127.0.0.3", addr);
    let t = Instant::now();
    while server.connections() < 1 {
        assert!(t.elapsed() < Duration::from_secs(5));
        server
            .poll_once(&mut h, &[], Duration::from_millis(20))
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let mut flood: Vec<TcpStream> = (0..3).map(|_| connect_from("127.0.0.2", addr)).collect();
    while server.connections() < 4 {
        assert!(t.elapsed() < Duration::from_secs(5));
        server
            .poll_once(&mut h, &[], Duration::from_millis(20))
            .unwrap();
    }
    // All four silent past their stall time; then a real client arrives.
    std::thread::sleep(displace_after(&limits()));
    let mut real = TcpStream::connect(addr).unwrap();
    real.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    real.write_all(b"GET /real HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = real.read_to_string(&mut out);
        out
    });
    serve_until(&mut server, &mut h, &|| reader.is_finished());
    assert!(reader.join().unwrap().ends_with("/real\n"));
    assert!(
        !closed_by_server(&mut lone),
        "the lone 127.0.0.3 connection was displaced"
    );
    let gone = flood
        .iter_mut()
        .map(closed_by_server)
        .filter(|c| *c)
        .count();
    assert_eq!(gone, 1, "one 127.0.0.2 connection makes room");
}

/// Parks `/park` and, while answering it (the server is busy), sends `/mine` on `other`'s
/// behalf: bytes that arrive while the server works on something else.
struct BusyParking {
    other: Option<TcpStream>,
}

impl Handler for BusyParking {
    fn handle(&mut self, req: &Request, _: &PeerInfo) -> Response {
        Response::text(200, &req.path)
    }

    fn answer(&mut self, req: &Request, peer: &PeerInfo) -> Answer {
        if req.path == "/park" {
            if let Some(mut s) = self.other.take() {
                s.write_all(b"GET /mine HTTP/1.1\r\nHost: x\r\n\r\n")
                    .unwrap();
                // Make sure they are in the server's socket before this round ends.
                std::thread::sleep(Duration::from_millis(50));
            }
            return Answer::Later(1);
        }
        Answer::Now(self.handle(req, peer))
    }
}

/// A connection whose request arrived while the server was busy is not displaced for a
/// waiting client, though it has been quiet longer than any other: the delay is ours.
#[test]
fn a_request_waiting_unread_is_never_displaced() {
    let mut l = limits();
    l.max_connections = 3;
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), None, l).unwrap();
    let addr = server.local_addr().unwrap();
    let mut h = BusyParking { other: None };
    let t = Instant::now();
    let mut conns = Vec::new();
    // In this order: the parker, the one whose request comes late, a silent one.
    for n in 1..=3 {
        conns.push(TcpStream::connect(addr).unwrap());
        while server.connections() < n {
            assert!(t.elapsed() < Duration::from_secs(5));
            server
                .poll_once(&mut h, &[], Duration::from_millis(20))
                .unwrap();
        }
    }
    let (mut parker, mut late, mut silent) = (conns.remove(0), conns.remove(0), conns.remove(0));
    h.other = Some(late.try_clone().unwrap());
    std::thread::sleep(displace_after(&l));
    // One round: the parker's request makes the server busy while `late`'s request arrives;
    // a waiting client then needs a slot.
    parker
        .write_all(b"GET /park HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let _waiting = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = late.read_to_string(&mut out);
        out
    });
    serve_until(&mut server, &mut h, &|| reader.is_finished());
    let out = reader.join().unwrap();
    assert!(
        out.ends_with("/mine\n"),
        "the late request was dropped: {out:?}"
    );
    assert!(
        closed_by_server(&mut silent),
        "the silent one should have made room"
    );
    assert!(server.is_parked(1));
    drop(parker);
}

/// A connection that never sent a byte gives way sooner (a quarter of the stall time) than
/// one that sent part of a request, though the latter is older.
#[test]
fn a_silent_connection_gives_way_before_a_started_one() {
    let mut l = limits();
    l.max_connections = 2;
    let mut server = Server::bind("127.0.0.1:0".parse().unwrap(), None, l).unwrap();
    let addr = server.local_addr().unwrap();
    let mut h = |req: &Request, _: &PeerInfo| Response::text(200, &req.path);
    let t = Instant::now();
    let mut started = TcpStream::connect(addr).unwrap();
    started.write_all(b"GET /sta").unwrap();
    while server.connections() < 1 {
        assert!(t.elapsed() < Duration::from_secs(5));
        server
            .poll_once(&mut h, &[], Duration::from_millis(20))
            .unwrap();
    }
    let mut silent = TcpStream::connect(addr).unwrap();
    while server.connections() < 2 {
        assert!(t.elapsed() < Duration::from_secs(5));
        server
            .poll_once(&mut h, &[], Duration::from_millis(20))
            .unwrap();
    }
    // Read `started`'s bytes (so nothing is unread), then wait past the silent stall time.
    server
        .poll_once(&mut h, &[], Duration::from_millis(50))
        .unwrap();
    std::thread::sleep(displace_after(&l) / 4 + Duration::from_millis(50));
    let mut real = TcpStream::connect(addr).unwrap();
    real.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    real.write_all(b"GET /real HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = real.read_to_string(&mut out);
        out
    });
    serve_until(&mut server, &mut h, &|| reader.is_finished());
    assert!(reader.join().unwrap().ends_with("/real\n"));
    assert!(
        closed_by_server(&mut silent),
        "the silent connection should have made room"
    );
    assert!(
        !closed_by_server(&mut started),
        "the started one was displaced"
    );
}
