//! `gatecert demo`: the whole local job on this machine, with no outside CA.
//!
//! In a fresh temp dir: a standalone config, the service on 127.0.0.1 (a free port) on a
//! thread, a bootstrap token for `sensor-1`, then a simulated sensor that makes a P-256 key and a
//! CSR and enrolls over real TLS (EST `simpleenroll`, HTTP Basic), trusting only the local root.
//! It checks the answer and prints a status table.

use std::io::Write as _;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::{self, CertInfo, KeyType, PrivateKey};
use crate::est::PREFIX;
use crate::leaves::Inventory;
use crate::pkcs7;
use crate::token::Tokens;

use super::{loopback, Service};

const DEVICE: &str = "sensor-1";
const SUFFIX: &str = "sensors.local";

/// `gatecert demo [--keep]`: exit 0 when a simulated sensor enrolled and its certificate checks
/// out; 2 otherwise. `--keep` leaves the temp dir in place and prints its path.
pub fn cmd_demo(args: &[String]) -> i32 {
    let keep = args.iter().any(|a| a == "--keep");
    if let Some(bad) = args.iter().find(|a| *a != "--keep") {
        eprintln!(
            "gatecert: error: demo: unexpected argument {bad:?} (usage: gatecert demo [--keep])"
        );
        return 2;
    }
    let dir = temp_dir();
    let result = demo(&dir, keep);
    if keep {
        println!("\nstate kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if result.is_ok() {
        print!("{}", next_steps(&dir, keep));
    }
    match result {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("gatecert: error: demo: {msg}");
            2
        }
    }
}

fn temp_dir() -> PathBuf {
    let tag = crypto::random_bytes::<6>()
        .map(|b| crypto::hex(&b))
        .unwrap_or_default();
    std::env::temp_dir().join(format!("gatecert-demo-{}-{tag}", std::process::id()))
}

/// A standalone config in `dir`: the gateway is `gateway.local` + 127.0.0.1, leaves live under
/// `sensors.local`, EST on a free loopback port.
pub fn demo_config(dir: &Path) -> Config {
    let mut cfg = Config::standalone(dir.to_path_buf());
    cfg.ca.allow_suffix = vec!["gateway.local".into(), SUFFIX.into()];
    cfg.ca.allow_ip = vec![(IpAddr::from([127, 0, 0, 1]), 32)];
    cfg.est.listen = loopback(0);
    if let Some(gw) = cfg.certificates.first_mut() {
        gw.ips = vec![IpAddr::from([127, 0, 0, 1])];
    }
    cfg
}

/// What to try next: the kept state, then the same on a real gateway.
fn next_steps(dir: &Path, keep: bool) -> String {
    let d = dir.display();
    let mut out = String::from("\nnext steps:\n");
    if keep {
        out.push_str(&format!(
            "  gatecert status --state-dir {d}       the same table, from the kept state\n  \
             openssl x509 -in {d}/{DEVICE}/cert.pem -noout -text   the sensor's certificate\n  \
             openssl verify -CAfile {d}/ca/root.pem -untrusted {d}/ca/intermediate.pem {d}/{DEVICE}/cert.pem\n"
        ));
    } else {
        out.push_str("  gatecert demo --keep                 keep the state dir and the sensor's key and certificate\n");
    }
    out.push_str(
        "  on a gateway: edit /etc/config/gatecert (README: Configuration reference), `gatecert check`,\n  \
         start the service (`service gatecert start` or `gatecert run`), then for each sensor\n  \
         `gatecert token add DEVICE --name DEVICE.local --qr` and enroll it (README: EST clients)\n",
    );
    out
}

fn demo(dir: &Path, keep: bool) -> Result<(), String> {
    let started = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cfg = demo_config(dir);
    let mut svc = Service::start(cfg, clock.clone()).map_err(|e| crate::errchain::one_line(&e))?;
    let addr = svc.local_addr().ok_or("the EST listener did not start")?;
    let root_der = svc
        .ca()
        .chain_der()
        .last()
        .cloned()
        .ok_or("the CA has no root")?;
    let int = svc.ca().intermediate().clone();
    let root = CertInfo::from_der(&root_der).map_err(|e| e.to_string())?;

    let (mut stop, stop_rx) = UnixStream::pair().map_err(|e| e.to_string())?;
    let service = std::thread::spawn(move || loop {
        match svc.step(&[stop_rx.as_fd()], Duration::from_secs(1)) {
            Ok(r) if r[0] => return Ok(svc),
            Ok(_) => {}
            Err(e) => return Err(crate::errchain::one_line(&e)),
        }
    });

    // The operator's step: a one-time bootstrap token for the sensor.
    let name = format!("{DEVICE}.{SUFFIX}");
    let token = Tokens::open(&crate::token::path_in(dir))
        .and_then(|mut t| t.add(DEVICE, std::slice::from_ref(&name), 3600, 1, clock.now()))
        .map_err(|e| crate::errchain::one_line(&e))?;

    // The sensor's step: key, CSR, simpleenroll over TLS trusting only the local root.
    let enrolled = enroll(addr.port(), &root_der, DEVICE, &token, &name);
    let _ = stop.write_all(b"x");
    let svc = service
        .join()
        .map_err(|_| "the service thread panicked".to_string())??;
    let (leaf, chain_len, sensor_key) = enrolled?;
    if !svc.ca().issued_by_me(&leaf.der) || !leaf.dns_names.contains(&name) {
        return Err("the enrolled certificate is not the one asked for".into());
    }

    let gw = crate::store::SetDir::new(dir.join("certs").join("gateway"))
        .read_live()
        .map_err(|e| crate::errchain::one_line(&e))?
        .and_then(|(pem, _)| CertInfo::from_pem(&pem).ok())
        .ok_or("the gateway certificate was not installed")?;
    let inventory =
        Inventory::open(&crate::leaves::path_in(dir)).map_err(|e| crate::errchain::one_line(&e))?;
    let rec = inventory
        .by_device(DEVICE)
        .ok_or("the leaf is missing from the inventory")?;

    println!(
        "gatecert demo: a local CA, the gateway's certificate and one sensor enrolled over EST\n"
    );
    let rows = [
        (
            "root CA",
            format!(
                "{}  until {}",
                root.subject,
                crypto::rfc3339(root.not_after)
            ),
        ),
        (
            "issuing CA",
            format!("{}  until {}", int.subject, crypto::rfc3339(int.not_after)),
        ),
        (
            "gateway cert",
            format!(
                "{}  until {}  (local CA)",
                names(&gw).join(", "),
                crypto::rfc3339(gw.not_after)
            ),
        ),
        (
            "EST listener",
            format!("https://{addr}{PREFIX}  (serves the est-local certificate)"),
        ),
        ("leaf device", rec.device.clone()),
        ("leaf names", rec.names.join(", ")),
        ("leaf serial", rec.serial.clone()),
        ("leaf until", crypto::rfc3339(rec.not_after)),
        ("leaf source", rec.source.as_str().to_string()),
        (
            "enroll reply",
            match chain_len {
                1 => "the issued certificate alone (PKCS#7 certs-only, RFC 7030 4.2.3)".to_string(),
                n => format!("{n} certificates (PKCS#7 certs-only)"),
            },
        ),
    ];
    for (k, v) in rows {
        println!("  {k:<13} {v}");
    }
    println!(
        "\n  Two certificates of the gateway's own: `gateway` is its identity for other services\n  \
         (uhttpd, MQTT; certs/gateway/live/), from an ACME CA when the config names a `directory`,\n  \
         here from the local CA. `est-local` is the one the EST listener presents to sensors when\n  \
         no ACME certificate is installed: the local CA issues it, and sensors verify it with the\n  \
         local root they also get their own certificates from."
    );
    if keep {
        let sensor = dir.join(DEVICE);
        let write = |name: &str, data: &str, mode: u32| {
            crate::store::write_atomic(&sensor.join(name), data.as_bytes(), mode)
                .map_err(|e| crate::errchain::one_line(&e))
        };
        crate::store::private_dir(&sensor).map_err(|e| crate::errchain::one_line(&e))?;
        write("key.pem", &sensor_key.to_pem(), crate::store::SECRET)?;
        write(
            "cert.pem",
            &crypto::pem_block("CERTIFICATE", &leaf.der),
            crate::store::PUBLIC,
        )?;
        println!(
            "  sensor key and certificate kept in {} (key.pem 0600, cert.pem)",
            sensor.display()
        );
    }
    // The same status table `gatecert status` prints for this state directory.
    let status = crate::report::Status::gather(&demo_config(dir), clock.now());
    println!("\n$ gatecert status\n{}", status.render_table());
    println!("done in {} ms", started.elapsed().as_millis());
    Ok(())
}

fn names(c: &CertInfo) -> Vec<String> {
    c.dns_names
        .iter()
        .cloned()
        .chain(c.ips.iter().map(IpAddr::to_string))
        .collect()
}

/// The simulated sensor: POST simpleenroll, parse the certs-only answer.
pub(super) fn enroll(
    port: u16,
    root_der: &[u8],
    device: &str,
    token: &str,
    name: &str,
) -> Result<(CertInfo, usize, PrivateKey), String> {
    let key = PrivateKey::generate(KeyType::Ec256).map_err(|e| e.to_string())?;
    let csr = key
        .csr(&[name.to_string()], &[])
        .map_err(|e| e.to_string())?;
    let agent = est_client(root_der, Duration::from_secs(5));
    let url = format!("https://127.0.0.1:{port}{PREFIX}simpleenroll");
    let auth = format!(
        "Basic {}",
        crypto::b64(format!("{device}:{token}").as_bytes())
    );
    let mut resp = agent
        .post(&url)
        .header("Content-Type", "application/pkcs10")
        .header("Content-Transfer-Encoding", "base64")
        .header("Authorization", &auth)
        .send(crypto::b64(&csr))
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the answer: {e}"))?;
    if status != 200 {
        return Err(format!("POST {url}: HTTP {status}: {}", body.trim()));
    }
    let der = crypto::b64_decode(body.as_bytes()).map_err(|e| e.to_string())?;
    let certs = pkcs7::parse_certs_only(&der).map_err(|e| e.to_string())?;
    // The SET is DER-sorted, not chain-ordered: the leaf is the one for the sensor's key.
    let leaf = certs
        .iter()
        .filter_map(|c| CertInfo::from_der(c).ok())
        .find(|c| key.matches(c))
        .ok_or("no certificate in the answer is for the sensor's key")?;
    Ok((leaf, certs.len(), key))
}

/// A ureq agent that trusts only `root_der`, with a short deadline.
/// A simulated leaf's HTTPS client for the EST server on this machine: it trusts only
/// `root_der`, opens a new TLS connection for every request (no idle pool), and resolves every
/// name to 127.0.0.1, so a URL can name the server certificate's host (`gateway.local`). The
/// demo, the benchmarks and the crash harness use it.
pub fn est_client(root_der: &[u8], timeout: Duration) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let root = Certificate::from_der(root_der).to_owned();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&[root]))
        .unversioned_rustls_crypto_provider(crate::crypto::tls_provider())
        .build();
    ureq::Agent::with_parts(
        ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_idle_connections(0)
            .build(),
        ureq::unversioned::transport::DefaultConnector::default(),
        Loopback,
    )
}

/// Resolves every name to 127.0.0.1.
#[derive(Debug)]
struct Loopback;

impl ureq::unversioned::resolver::Resolver for Loopback {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let port = uri.port_u16().unwrap_or(443);
        // from_fn fills the backing store without counting; push adds the one address.
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut addrs = ureq::unversioned::resolver::ResolvedSocketAddrs::from_fn(|_| loopback);
        addrs.push(loopback);
        Ok(addrs)
    }
}
