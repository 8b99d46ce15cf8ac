//! Validation by the gateway: http-01 (RFC 8555 §8.3) and tls-alpn-01 ([`super::tlsalpn`],
//! RFC 8737) against the leaf on the LAN, in a
//! thread per attempt (at most [`MAX_INFLIGHT`] at once), each bounded in time and size.
//! The leaf is found through `list static_host 'NAME=IP'` first, then the system resolver.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::{Duration, Instant};

/// Validations running at once; more are refused with `rateLimited` until one ends.
pub const MAX_INFLIGHT: usize = 8;
/// Connect, write and read, each.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole attempt.
const DEADLINE: Duration = Duration::from_secs(10);
/// The most read from the leaf.
const MAX_RESPONSE: usize = 8192;

/// One validation to run.
pub struct Job {
    /// The authorization it is for.
    pub authz: u64,
    /// The name (or IP address) to validate.
    pub name: String,
    /// The challenge token.
    pub token: String,
    /// The expected key authorization (`token.thumbprint`).
    pub key_auth: String,
    /// Where to connect, from `static_host`, if mapped.
    pub mapped: Option<IpAddr>,
    /// The port (80 or 443 in real deployments; `http_port`, `tls_port`).
    pub port: u16,
    /// tls-alpn-01 instead of http-01.
    pub tls_alpn: bool,
}

/// Runs validations off the service's loop.
pub struct Validator {
    tx: Sender<(u64, Result<(), String>)>,
    rx: Receiver<(u64, Result<(), String>)>,
    inflight: usize,
}

impl Default for Validator {
    fn default() -> Self {
        let (tx, rx) = channel();
        Validator {
            tx,
            rx,
            inflight: 0,
        }
    }
}

impl Validator {
    /// Starts `job`; false when [`MAX_INFLIGHT`] are running.
    pub fn start(&mut self, job: Job) -> bool {
        if self.inflight >= MAX_INFLIGHT {
            return false;
        }
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name("acme-validate".into())
            .spawn(move || {
                let r = if job.tls_alpn {
                    address(&job).and_then(|addr| {
                        super::tlsalpn::validate(
                            addr,
                            &job.name,
                            &job.key_auth,
                            IO_TIMEOUT,
                            DEADLINE,
                        )
                    })
                } else {
                    http01(&job)
                };
                let _ = tx.send((job.authz, r));
            });
        if spawned.is_err() {
            return false;
        }
        self.inflight += 1;
        true
    }

    /// The results that came in: `(authz, Ok | Err(reason))`.
    pub fn results(&mut self) -> Vec<(u64, Result<(), String>)> {
        let out: Vec<_> = self.rx.try_iter().collect();
        self.inflight = self.inflight.saturating_sub(out.len());
        out
    }
}

fn address(job: &Job) -> Result<SocketAddr, String> {
    if let Some(ip) = job.mapped.or_else(|| job.name.parse().ok()) {
        return Ok(SocketAddr::new(ip, job.port));
    }
    (job.name.as_str(), job.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", job.name))?
        .next()
        .ok_or_else(|| format!("{} has no address", job.name))
}

/// GET `http://NAME:port/.well-known/acme-challenge/TOKEN`; the body, trailing whitespace
/// trimmed, must be the key authorization (RFC 8555 §8.3). Redirects are not followed.
fn http01(job: &Job) -> Result<(), String> {
    let start = Instant::now();
    let addr = address(job)?;
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    let _ = s.set_write_timeout(Some(IO_TIMEOUT));
    let host = match addr.ip() {
        _ if job.name.parse::<IpAddr>().is_err() => job.name.clone(),
        IpAddr::V6(ip) => format!("[{ip}]"),
        IpAddr::V4(ip) => ip.to_string(),
    };
    let req = format!(
        "GET /.well-known/acme-challenge/{} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gatecert\r\n\
         Accept: */*\r\nConnection: close\r\n\r\n",
        job.token
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("writing to {addr}: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while buf.len() < MAX_RESPONSE && start.elapsed() < DEADLINE {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading from {addr}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{addr} sent no complete HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("{addr} answered HTTP {status} for the challenge"));
    }
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    if body.trim_end() == job.key_auth {
        Ok(())
    } else {
        Err(format!("{addr} served the wrong key authorization"))
    }
}

/// The data of a chunked body (RFC 9112 §7.1), enough for a one-line key authorization.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        // `get`: a size that is not a character boundary of the (lossy) text ends it.
        let (Some(data), Some(next)) = (after.get(..n), after.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(data);
        rest = next.trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve(reply: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b);
                let _ = s.write_all(reply.as_bytes());
            }
        });
        port
    }

    fn job(port: u16) -> Job {
        Job {
            authz: 1,
            name: "cam1.sensors.local".into(),
            token: "tok".into(),
            key_auth: "tok.thumb".into(),
            mapped: Some("127.0.0.1".parse().unwrap()),
            port,
            tls_alpn: false,
        }
    }

    #[test]
    fn a_chunk_size_inside_a_character_ends_the_body_without_a_panic() {
        assert_eq!(dechunk("1\r\n\u{e9}\r\n0\r\n\r\n"), "");
        assert_eq!(dechunk("2\r\nok\r\n0\r\n\r\n"), "ok");
    }

    #[test]
    fn http01_checks_the_key_authorization() {
        let port = serve("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ntok.thumb\n");
        assert_eq!(http01(&job(port)), Ok(()));
        let port = serve(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\ntok.thumb\r\n0\r\n\r\n",
        );
        assert_eq!(http01(&job(port)), Ok(()));
        let port = serve("HTTP/1.1 200 OK\r\n\r\ntok.other");
        assert!(http01(&job(port))
            .unwrap_err()
            .contains("wrong key authorization"));
        let port = serve("HTTP/1.1 404 Not Found\r\n\r\n");
        assert!(http01(&job(port)).unwrap_err().contains("404")); // Redirects are not followed.
        let port = serve("HTTP/1.1 301 Moved\r\nLocation: http://elsewhere/\r\n\r\n");
        assert!(http01(&job(port)).unwrap_err().contains("301"));
    }

    #[test]
    fn at_most_8_kib_are_read() {
        let padding = format!("X-Pad: {}\r\n", "a".repeat(MAX_RESPONSE));
        let reply: &'static str =
            Box::leak(format!("HTTP/1.1 200 OK\r\n{padding}\r\ntok.thumb").into_boxed_str());
        let port = serve(reply);
        assert!(http01(&job(port)).is_err());
    }

    #[test]
    fn at_most_8_validations_run_at_once() {
        // A listener that accepts and never answers: each validation waits out its timeout.
        let hole = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = hole.local_addr().unwrap().port();
        let mut v = Validator::default();
        for _ in 0..MAX_INFLIGHT {
            assert!(v.start(job(port)));
        }
        assert!(!v.start(job(port)), "a ninth validation started");
        drop(hole);
    }
}
