//! Concurrent EST `simpleenroll` load against a running `gatecert run` on 127.0.0.1: CLIENTS
//! threads enroll in a loop, a new TCP connection and a full TLS handshake for every request
//! (no session resumption), for SECONDS. Driven by `bench/cap.sh`, which starts the server
//! pinned to one core, makes the token and the CSR, and runs this on the other core.
//!
//! usage: est_load PORT ROOT_PEM SECONDS CLIENTS DEVICE TOKEN CSR_B64_FILE
//!        est_load PORT ROOT_PEM SECONDS CLIENTS @TOKENS_FILE
//!
//! The first form enrolls one device again and again with a token of many uses (its row keeps
//! the most earlier certificates, and every enrollment supersedes one). The second is a fleet
//! enrolling for the first time: TOKENS_FILE has a line `DEVICE TOKEN NAME` per device
//! (`examples/scale_populate.rs --tokens-only`), each device enrolls once with its one-use
//! token and a CSR for NAME made here before the clock starts (one P-256 key for all); the
//! run ends early when every device has enrolled.
//!
//! Prints requests, failures by kind, ok/s and p50/p99 in the format of `bench/conns.py cap`;
//! exits 1 when any request failed. Bounded in time and count: SECONDS is capped at 300 and
//! CLIENTS at 256, every socket has a 10 s timeout, and only 127.0.0.1 is ever contacted. The
//! client checks the server's chain against ROOT_PEM like a sensor would.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// The name on the server's certificate (bench/serve.sh's listener).
const NAME: &str = "gateway.local";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, root, seconds, clients, requests) = match args.as_slice() {
        [port, root, seconds, clients, device, token, csr_file] => {
            let csr = std::fs::read_to_string(csr_file).expect("CSR_B64_FILE");
            (
                port,
                root,
                seconds,
                clients,
                Requests::Repeat(request(device, token, csr.trim())),
            )
        }
        [port, root, seconds, clients, file] if file.starts_with('@') => {
            (port, root, seconds, clients, fleet(&file[1..]))
        }
        _ => {
            eprintln!(
                "usage: est_load PORT ROOT_PEM SECONDS CLIENTS DEVICE TOKEN CSR_B64_FILE\n       \
                 est_load PORT ROOT_PEM SECONDS CLIENTS @TOKENS_FILE"
            );
            std::process::exit(2);
        }
    };
    let port: u16 = port.parse().expect("PORT");
    let seconds: f64 = seconds.parse::<f64>().expect("SECONDS").clamp(0.1, 300.0);
    let clients: usize = clients.parse::<usize>().expect("CLIENTS").clamp(1, 256);
    let root = std::fs::read(root).expect("ROOT_PEM");

    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&root) {
        roots.add(c.expect("root PEM")).expect("root certificate");
    }
    let cfg = ClientConfig::builder_with_provider(gatecert::crypto::tls_provider())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut cfg = cfg;
    // Every request a full handshake, as the goal asks: no resumption.
    cfg.resumption = rustls::client::Resumption::disabled();
    let cfg = Arc::new(cfg);
    let requests = Arc::new(requests);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let tally = Arc::new(Mutex::new(Tally::default()));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (cfg, requests, tally) = (cfg.clone(), requests.clone(), tally.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                while Instant::now() < deadline {
                    let Some(request) = requests.next() else {
                        break;
                    };
                    let t = Instant::now();
                    match enroll(addr, &cfg, request) {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(kind) => *errors.entry(kind).or_default() += 1,
                    }
                }
                let mut all = tally.lock().unwrap_or_else(|e| e.into_inner());
                all.lat.extend(lat);
                for (k, n) in errors {
                    *all.errors.entry(k).or_default() += n;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut all = tally.lock().unwrap_or_else(|e| e.into_inner());
    all.lat.sort();
    let ok = all.lat.len();
    let failed: u64 = all.errors.values().sum();
    let done = ok as u64 + failed;
    let pct = |p: f64| match all.lat.len() {
        0 => f64::NAN,
        n => all.lat[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3,
    };
    println!(
        "  simpleenroll: {clients} clients, {done} requests in {elapsed:.1} s, {ok} ok ({:.2}%), \
         {:.1} ok/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, failed {failed} {:?}",
        if done > 0 {
            100.0 * ok as f64 / done as f64
        } else {
            f64::NAN
        },
        ok as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        all.errors,
    );
    if let Requests::Fleet(list, _) = requests.as_ref() {
        println!(
            "  fleet: {} devices, each enrolled at most once{}",
            list.len(),
            if done as usize >= list.len() {
                "; all were used before the time was up"
            } else {
                ""
            }
        );
    }
    std::process::exit(if ok > 0 && failed == 0 { 0 } else { 1 });
}

/// The requests the clients send.
enum Requests {
    /// The same one each time.
    Repeat(Vec<u8>),
    /// Each once, in turn.
    Fleet(Vec<Vec<u8>>, AtomicUsize),
}

impl Requests {
    fn next(&self) -> Option<&[u8]> {
        match self {
            Requests::Repeat(r) => Some(r),
            Requests::Fleet(list, at) => list
                .get(at.fetch_add(1, Ordering::Relaxed))
                .map(Vec::as_slice),
        }
    }
}

/// A `simpleenroll` request with HTTP Basic `device:token` and the base64 CSR.
fn request(device: &str, token: &str, csr_b64: &str) -> Vec<u8> {
    let auth = gatecert::crypto::b64(format!("{device}:{token}").as_bytes());
    format!(
        "POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: {NAME}\r\n\
         Authorization: Basic {auth}\r\nContent-Type: application/pkcs10\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{csr_b64}",
        csr_b64.len()
    )
    .into_bytes()
}

/// One request per `DEVICE TOKEN NAME` line of `path`, each with a CSR for NAME.
fn fleet(path: &str) -> Requests {
    let text = std::fs::read_to_string(path).expect("TOKENS_FILE");
    let key =
        gatecert::crypto::PrivateKey::generate(gatecert::crypto::KeyType::Ec256).expect("key");
    let list = text
        .lines()
        .take(1_000_000)
        .map(|line| {
            let [device, token, name] = line.split(' ').collect::<Vec<_>>()[..] else {
                panic!("TOKENS_FILE: not DEVICE TOKEN NAME: {line:?}");
            };
            let csr = key.csr(&[name.to_owned()], &[]).expect("CSR");
            request(device, token, &gatecert::crypto::b64(&csr))
        })
        .collect();
    Requests::Fleet(list, AtomicUsize::new(0))
}

/// One enrollment on a fresh TLS connection: Ok on `200` with a body, else the failure's kind.
fn enroll(addr: SocketAddr, cfg: &Arc<ClientConfig>, request: &[u8]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{:?}", e.kind());
    let sock = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
    sock.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    sock.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let _ = sock.set_nodelay(true);
    let name = ServerName::try_from(NAME).expect("server name");
    let conn = ClientConnection::new(cfg.clone(), name).map_err(|e| format!("tls: {e}"))?;
    let mut tls = StreamOwned::new(conn, sock);
    tls.write_all(request).map_err(io)?;
    let mut reply = Vec::with_capacity(2048);
    match tls.read_to_end(&mut reply) {
        Ok(_) => {}
        // The server closes after its answer; a close without close_notify still ends it.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => {}
        Err(e) => return Err(io(e)),
    }
    let status = reply.split(|b| *b == b'\r').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status).into_owned();
    if status.starts_with("HTTP/1.1 200") && reply.windows(4).any(|w| w == b"\r\n\r\n") {
        Ok(())
    } else if status.is_empty() {
        Err("empty reply".into())
    } else {
        Err(status)
    }
}
