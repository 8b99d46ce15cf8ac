//! Answering ACME challenges (RFC 8555 §8): http-01 (standalone listener or webroot files),
//! tls-alpn-01 (RFC 8737, a standalone rustls listener) and dns-01 (a hook script).
//!
//! [`start`] puts every pending challenge of one order in place at once and returns an
//! [`Active`] guard; dropping the guard takes them all down again (listeners stop, webroot
//! files are removed, the DNS hook is called with `del`), on success and on failure alike.

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::acme::types::Identifier;
use crate::config::{Certificate, ChallengeKind, HttpMode};
use crate::crypto;

pub mod dns01;
pub mod http01;
pub mod tlsalpn;

/// A challenge solver error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not bind its address (port in use, or not root for port 80/443).
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A webroot challenge file could not be written.
    Webroot {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The DNS hook could not be started.
    HookSpawn {
        /// The hook.
        hook: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The DNS hook exited unsuccessfully.
    HookFailed {
        /// The hook.
        hook: PathBuf,
        /// `add` or `del`.
        action: &'static str,
        /// The exit status as the OS reports it.
        status: String,
    },
    /// The challenge type needs an option that is not set (e.g. dns-01 without `dns_hook`).
    Missing(&'static str),
    /// The TLS validation certificate or server configuration could not be built.
    Tls(String),
    /// Key generation failed.
    Crypto(crypto::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, .. } => write!(f, "cannot listen on {addr} for the challenge"),
            Error::Webroot { path, .. } => write!(f, "cannot write {}", path.display()),
            Error::HookSpawn { hook, .. } => write!(f, "cannot run hook {}", hook.display()),
            Error::HookFailed {
                hook,
                action,
                status,
            } => {
                let which = match *action {
                    "open" | "close" => "firewall_hook",
                    _ => "dns_hook",
                };
                write!(f, "{which} {} {action} failed: {status}", hook.display())
            }
            Error::Missing(what) => write!(f, "{what}"),
            Error::Tls(m) => write!(f, "tls-alpn-01: {m}"),
            Error::Crypto(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. }
            | Error::Webroot { source, .. }
            | Error::HookSpawn { source, .. } => Some(source),
            Error::Crypto(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crypto::Error> for Error {
    fn from(e: crypto::Error) -> Self {
        Error::Crypto(e)
    }
}

/// One challenge to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The identifier being validated (without `*.`).
    pub identifier: Identifier,
    /// The challenge token.
    pub token: String,
    /// The key authorization (RFC 8555 §8.1).
    pub key_authorization: String,
}

/// The key authorization: `token || '.' || base64url(JWK_Thumbprint(accountKey))`
/// (RFC 8555 §8.1).
pub fn key_authorization(token: &str, account_key: &dyn crypto::JwsKey) -> String {
    format!("{token}.{}", account_key.jwk_thumbprint())
}

/// The dns-01 TXT value: base64url(SHA-256(key authorization)) (RFC 8555 §8.4).
pub fn dns_value(key_authorization: &str) -> String {
    crypto::b64url(&crypto::sha256(key_authorization.as_bytes()))
}

/// Challenges in place. Dropping this takes them down.
#[derive(Debug)]
#[non_exhaustive]
pub enum Active {
    /// The standalone http-01 listener.
    Http(http01::Server),
    /// Files under the webroot.
    Webroot(http01::WebrootFiles),
    /// The tls-alpn-01 listener.
    TlsAlpn(tlsalpn::Server),
    /// TXT records added through the hook.
    Dns(dns01::Records),
}

/// Challenges in place, and the firewall hole for a standalone listener. Dropping this takes
/// the challenges down first, then closes the hole.
#[derive(Debug)]
pub struct Started {
    /// The challenges.
    pub active: Active,
    _hole: Option<FirewallHole>,
}

/// A port opened with the `firewall_hook` (`HOOK open PORT NAME`); closed on drop
/// (`HOOK close PORT NAME`), as acme-common adds and deletes its fw4 rule around acme.sh.
#[derive(Debug)]
pub struct FirewallHole {
    hook: PathBuf,
    port: u16,
    name: String,
}

impl FirewallHole {
    /// Runs `hook open PORT NAME`; an error if it cannot run or fails.
    pub fn open(hook: &Path, port: u16, name: &str) -> Result<FirewallHole, Error> {
        let hole = FirewallHole {
            hook: hook.to_path_buf(),
            port,
            name: name.to_string(),
        };
        hole.run("open")?;
        log::info!("{name}: opened port {port} ({})", hook.display());
        Ok(hole)
    }

    fn run(&self, action: &'static str) -> Result<(), Error> {
        let status = crate::hook::run(
            std::process::Command::new(&self.hook)
                .args([action, &self.port.to_string(), &self.name])
                .stdin(std::process::Stdio::null()),
            std::time::Duration::from_secs(30),
        )
        .map_err(|source| Error::HookSpawn {
            hook: self.hook.clone(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::HookFailed {
                hook: self.hook.clone(),
                action,
                status: status.to_string(),
            })
        }
    }
}

impl Drop for FirewallHole {
    fn drop(&mut self) {
        match self.run("close") {
            Ok(()) => log::info!("{}: closed port {}", self.name, self.port),
            Err(e) => log::warn!("{}: {e}", self.name),
        }
    }
}

/// Puts every challenge in `pending` in place the way `cert` says; for a standalone listener
/// with a `firewall_hook`, opens its port first.
pub fn start(
    kind: ChallengeKind,
    cert: &Certificate,
    pending: &[Pending],
    sleep: &dyn Fn(std::time::Duration),
) -> Result<Started, Error> {
    let port = match (kind, &cert.http) {
        (ChallengeKind::Http01, HttpMode::Standalone(addr)) => Some(addr.port()),
        (ChallengeKind::TlsAlpn01, _) => Some(cert.tls_alpn_listen.port()),
        _ => None,
    };
    let hole = match (&cert.firewall_hook, port) {
        (Some(hook), Some(port)) => Some(FirewallHole::open(hook, port, &cert.name)?),
        _ => None,
    };
    Ok(Started {
        active: start_challenges(kind, cert, pending, sleep)?,
        _hole: hole,
    })
}

fn start_challenges(
    kind: ChallengeKind,
    cert: &Certificate,
    pending: &[Pending],
    sleep: &dyn Fn(std::time::Duration),
) -> Result<Active, Error> {
    match kind {
        ChallengeKind::Http01 => match &cert.http {
            HttpMode::Standalone(addr) => Ok(Active::Http(http01::Server::start(*addr, pending)?)),
            HttpMode::Webroot(root) => {
                Ok(Active::Webroot(http01::WebrootFiles::write(root, pending)?))
            }
        },
        ChallengeKind::TlsAlpn01 => Ok(Active::TlsAlpn(tlsalpn::Server::start(
            cert.tls_alpn_listen,
            pending,
        )?)),
        ChallengeKind::Dns01 => {
            let hook = cert
                .dns_hook
                .as_ref()
                .ok_or(Error::Missing("challenge dns-01 needs the dns_hook option"))?;
            let records = dns01::Records::add(hook, &cert.dns_env, pending)?;
            if cert.dns_wait > 0 {
                log::info!("waiting {}s for DNS propagation", cert.dns_wait);
                sleep(std::time::Duration::from_secs(cert.dns_wait));
            }
            Ok(Active::Dns(records))
        }
    }
}

/// Connections one challenge listener serves at once; more are closed straight away.
const MAX_CONNECTIONS: usize = 16;

/// A listener thread that hands each connection to `handle` on its own thread, until dropped.
/// Up only while a challenge is pending.
#[derive(Debug)]
pub struct Listener {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    fn spawn(
        addr: SocketAddr,
        handle: Arc<dyn Fn(TcpStream) + Send + Sync>,
    ) -> Result<Listener, Error> {
        let bind_err = |source| Error::Bind { addr, source };
        let listener = TcpListener::bind(addr).map_err(bind_err)?;
        listener.set_nonblocking(true).map_err(bind_err)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let active = Arc::new(AtomicUsize::new(0));
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS
                            || sock.set_nonblocking(false).is_err()
                        {
                            continue;
                        }
                        active.fetch_add(1, Ordering::SeqCst);
                        let (handle, active) = (handle.clone(), active.clone());
                        std::thread::spawn(move || {
                            handle(sock);
                            active.fetch_sub(1, Ordering::SeqCst);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        log::info!("challenge listener up on {addr}");
        Ok(Listener {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        log::info!("challenge listener on {} down", self.addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, PrivateKey};

    #[test]
    fn key_authorization_is_token_dot_thumbprint() {
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let ka = key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &key);
        assert_eq!(
            ka,
            format!(
                "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.{}",
                key.jwk_thumbprint()
            )
        );
    }

    #[test]
    fn dns_value_is_b64url_sha256() {
        // The value is 43 characters of base64url (32 bytes, no padding).
        let v = dns_value("token.thumb");
        assert_eq!(v.len(), 43);
        assert_eq!(
            crypto::b64url_decode(&v).unwrap(),
            crypto::sha256(b"token.thumb")
        );
    }

    /// A standalone listener with a `firewall_hook`: the port is opened before the listener
    /// is up and closed after it is down; a webroot challenge opens nothing; a failing hook
    /// stops the challenge before any listener.
    #[test]
    fn firewall_hook_opens_and_closes_the_listener_port() {
        let dir = std::env::temp_dir().join(format!("gatecert-fw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("fw.log");
        let hook = dir.join("fw");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3\" >> '{}'\n[ \"$3\" != refuse ]\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cert = Certificate::standalone("gw", vec!["gw.example".into()]);
        cert.http = HttpMode::Standalone(SocketAddr::from(([127, 0, 0, 1], port)));
        cert.firewall_hook = Some(hook);
        let started = start(ChallengeKind::Http01, &cert, &[], &|_| {}).unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("open {port} gw\n")
        );
        drop(started);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("open {port} gw\nclose {port} gw\n")
        );
        assert!(
            TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "listener is down"
        );

        std::fs::remove_file(&log).unwrap();
        let mut web = cert.clone();
        web.http = HttpMode::Webroot(dir.join("www"));
        drop(start(ChallengeKind::Http01, &web, &[], &|_| {}).unwrap());
        assert!(!log.exists(), "webroot needs no open port");

        let mut refused = cert.clone();
        refused.name = "refuse".into();
        let err = start(ChallengeKind::Http01, &refused, &[], &|_| {}).unwrap_err();
        assert!(err.to_string().starts_with("firewall_hook "), "{err}");
        assert!(err.to_string().contains(" open failed"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
