//! Configuration: UCI text → raw sections ([`uci`]) → a typed [`Config`] that holds every default.
//!
//! Parsing happens in two stages, as ripgrep turns low-level args into high-level settings:
//! the lexer only knows UCI syntax; this module knows what each option means, applies the
//! defaults, and rejects bad values with the file, the line and the option named.
//!
//! Every option is documented in README's configuration reference; keep the two in step.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::crypto::KeyType;

mod acme;
mod acme_server;
mod label;
mod sections;
pub mod uci;
mod value;

pub use label::is_label_name;
pub use value::parse_duration;

/// The whole configuration, typed, with every default applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Where the config was read from (for messages).
    pub source: PathBuf,
    /// `config gatecert 'main'`.
    pub main: Main,
    /// `config certificate 'NAME'` sections: the gateway's own certificates, in file order.
    pub certificates: Vec<Certificate>,
    /// `config ca 'local'`: the local issuing CA for leaves.
    pub ca: Ca,
    /// `config est 'est'`: the EST listener.
    pub est: Est,
    /// `config broker 'upstream'`: brokering leaf enrollments to the upstream ACME CA.
    /// `None` when the section is absent or `enabled '0'`.
    pub broker: Option<Broker>,
    /// `config metrics 'metrics'`.
    pub metrics: Metrics,
    /// `config label 'NAME'` sections: EST label profiles (RFC 7030 §3.2.2), in file order.
    pub labels: Vec<Label>,
    /// `config acme_server 'acme'`: the local ACME server; `None` when absent or disabled.
    pub acme_server: Option<AcmeServer>,
}

/// `config acme_server 'acme'`: the local ACME server (RFC 8555) under `/acme/` on the EST
/// listener.
#[derive(Clone, Debug, PartialEq)]
pub struct AcmeServer {
    /// `preauthorized`: names bound to the account's EAB token need no challenge (RFC 8555
    /// §7.4: an order may come back with valid authorizations).
    pub preauthorized: bool,
    /// `list static_host 'NAME=IP'`: where to reach a leaf for validation before asking the
    /// system resolver.
    pub static_host: Vec<(String, std::net::IpAddr)>,
    /// `http_port`: the port http-01 validation connects to (default 80, RFC 8555 §8.3).
    pub http_port: u16,
    /// `tls_port`: the port tls-alpn-01 validation connects to (default 443, RFC 8737 §3).
    pub tls_port: u16,
    /// `lifetime` of its leaves, seconds (default the CA's `lifetime`).
    pub lifetime: u64,
    /// `max_accounts`: accounts kept (default 256).
    pub max_accounts: usize,
    /// `max_orders`: orders kept in memory at once (default 256).
    pub max_orders: usize,
}

/// `config label 'NAME'`: a profile of the local CA served under `/.well-known/est/NAME/`.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    /// The section name: the label in the URL path.
    pub name: String,
    /// Line of the `config` line, for messages.
    pub line: usize,
    /// `lifetime` of its leaves, seconds, at most the CA's `max_lifetime`; `None` = the CA's.
    pub lifetime: Option<u64>,
    /// `list allow_suffix`: DNS suffixes its leaves may carry, each within the CA's; empty = the CA's.
    pub allow_suffix: Vec<String>,
    /// `server_auth`: add EKU serverAuth (only when the CA's `server_auth` is on; default the CA's).
    pub server_auth: bool,
}

/// Log destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// `/dev/log` (OpenWrt logd, journald).
    Syslog,
    /// Standard error, for foreground use.
    Stderr,
}

/// `config gatecert 'main'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Main {
    /// `state_dir`, default `/etc/gatecert`.
    pub state_dir: PathBuf,
    /// `log`, default syslog.
    pub log: LogTarget,
    /// `log_level`: error | warn | info | debug, default info.
    pub log_level: log::LevelFilter,
    /// `alert_days`: warn this many days before a certificate expires (default 30; capped at
    /// 1/3 of the lifetime for short-lived certificates).
    pub alert_days: u32,
    /// `alert_failures`: log an error after this many renewal failures in a row (default 3).
    pub alert_failures: u32,
}

/// ACME challenge type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// RFC 8555 §8.3.
    Http01,
    /// RFC 8737.
    TlsAlpn01,
    /// RFC 8555 §8.4.
    Dns01,
}

impl ChallengeKind {
    /// The ACME spelling, e.g. `http-01`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Dns01 => "dns-01",
        }
    }
}

/// How http-01 is answered.
#[derive(Clone, Debug, PartialEq)]
pub enum HttpMode {
    /// gatecert's own listener on `http_listen`, up only while a challenge is pending.
    Standalone(SocketAddr),
    /// Files under `<webroot>/.well-known/acme-challenge/`, always removed afterwards.
    Webroot(PathBuf),
}

/// `config certificate 'NAME'`: one certificate for the gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Certificate {
    /// The section name; also the directory name under `<state_dir>/certs/`.
    pub name: String,
    /// Line of the `config` line, for messages.
    pub line: usize,
    /// `directory`: the ACME directory URL. `None` = standalone: issued by the local CA.
    pub directory: Option<String>,
    /// `ca_bundle`: PEM file of roots to trust for the ACME server's HTTPS. Default: the system
    /// bundle (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_bundle: Option<PathBuf>,
    /// `email`: account contact (`mailto:`), optional.
    pub email: Option<String>,
    /// `eab_kid` + `eab_hmac_key` (base64url): External Account Binding, RFC 8555 §7.3.4.
    pub eab: Option<Eab>,
    /// `list domain`.
    pub domains: Vec<String>,
    /// `list ip` (RFC 8738).
    pub ips: Vec<IpAddr>,
    /// `challenge`, default http-01.
    pub challenge: ChallengeKind,
    /// `http_mode` + `http_listen` / `webroot`. Default standalone on `[::]:80`.
    pub http: HttpMode,
    /// `tls_alpn_listen`, default `[::]:443`.
    pub tls_alpn_listen: SocketAddr,
    /// `dns_hook`: executable called as `HOOK add|del FQDN VALUE`.
    pub dns_hook: Option<PathBuf>,
    /// `dns_wait`: seconds to wait after `add` for propagation (default 0).
    pub dns_wait: u64,
    /// `key_type`, default ec256.
    pub key_type: KeyType,
    /// `reuse_key`: keep the certificate key across renewals (default false: a fresh key each time).
    pub reuse_key: bool,
    /// `profile`: an ACME profile name the directory must offer.
    pub profile: Option<String>,
    /// `preferred_chain`: issuer CN to pick among alternate chains.
    pub preferred_chain: Option<String>,
    /// `deploy_hook`: a shell command run after a new set is installed.
    pub deploy_hook: Option<String>,
    /// `install_dir`: also write `<name>.{key,crt,chain.crt,fullchain.crt,combined.crt}` here
    /// (OpenWrt's `/etc/ssl/acme` layout). Optional.
    pub install_dir: Option<PathBuf>,
    /// `timeout`: seconds for each network call (default 30).
    pub timeout: u64,
}

/// External Account Binding credentials. `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Eab {
    /// `eab_kid`.
    pub kid: String,
    /// `eab_hmac_key`, decoded from base64url.
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Eab {{ kid: {:?}, hmac_key: <redacted> }}", self.kid)
    }
}

/// `config ca 'local'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Ca {
    /// `lifetime`: leaf lifetime, seconds (default 24h).
    pub lifetime: u64,
    /// `max_lifetime`: the most any leaf may get, seconds (default 7d).
    pub max_lifetime: u64,
    /// `list allow_suffix`: DNS suffixes leaves may carry; also the intermediate's permitted
    /// name constraints at `ca init`. Empty = the CA issues no DNS names.
    pub allow_suffix: Vec<String>,
    /// `list allow_ip`: CIDR ranges leaves may carry as IP SANs.
    pub allow_ip: Vec<(IpAddr, u8)>,
    /// `server_auth`: add EKU serverAuth to leaves (default false: clientAuth only).
    pub server_auth: bool,
    /// `name`: the CA's common name prefix (default `gatecert`).
    pub name: String,
}

/// `config est 'est'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Est {
    /// `enabled`, default true.
    pub enabled: bool,
    /// `listen`, default `[::]:8443`.
    pub listen: SocketAddr,
    /// `max_connections`, default 64.
    pub max_connections: usize,
    /// `max_header_bytes`, default 8192.
    pub max_header_bytes: usize,
    /// `max_body_bytes`, default 16384.
    pub max_body_bytes: usize,
    /// `request_timeout`: seconds a connection may take for one request (default 10).
    pub request_timeout: u64,
}

/// `config broker 'upstream'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Broker {
    /// `certificate`: the certificate section whose directory, account and trust to use
    /// (default: the first certificate with a directory).
    pub certificate: String,
    /// `challenge` for leaf names, default dns-01 when `dns_hook` is set, else http-01.
    pub challenge: ChallengeKind,
    /// `dns_hook` for leaf names (default: the certificate's).
    pub dns_hook: Option<PathBuf>,
    /// `upstream_wait`: seconds an EST request may wait on the upstream (default 5).
    pub upstream_wait: u64,
    /// `interim_lifetime`: seconds an interim (local) leaf lives (default 6h, max 24h).
    pub interim_lifetime: u64,
}

/// `config metrics 'metrics'`.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    /// `listen`: a loopback address for Prometheus scrapes. None = off.
    pub listen: Option<SocketAddr>,
    /// `textfile`: write metrics atomically here for node_exporter. None = off.
    pub textfile: Option<PathBuf>,
}

/// A configuration error. Display names the file, the line and the option.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The config file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// UCI syntax error.
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// An option has a value we can't use, or is missing, or unknown.
    Option {
        /// The file.
        path: PathBuf,
        /// 1-based line of the option (or of the section, when an option is missing).
        line: usize,
        /// The section name (`gateway`), or type when anonymous.
        section: String,
        /// The option name.
        option: String,
        /// What is wrong and what is expected.
        msg: String,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Read { path, .. } => write!(f, "cannot read config {}", path.display()),
            Error::Syntax { path, line, msg } => write!(f, "{}:{line}: {msg}", path.display()),
            Error::Option {
                path,
                line,
                section,
                option,
                msg,
            } => write!(
                f,
                "{}:{line}: section '{section}', option '{option}': {msg}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Config {
    /// The embedded default: no upstream, a local CA, EST on `[::]:8443`, and one standalone
    /// `gateway` certificate for the host name `gateway.local`, issued by the local CA.
    pub fn standalone(state_dir: PathBuf) -> Config {
        Config {
            source: PathBuf::from("<built-in defaults>"),
            main: Main {
                state_dir,
                log: LogTarget::Syslog,
                log_level: log::LevelFilter::Info,
                alert_days: 30,
                alert_failures: 3,
            },
            certificates: vec![Certificate::standalone(
                "gateway",
                vec!["gateway.local".into()],
            )],
            ca: Ca {
                lifetime: 24 * 3600,
                max_lifetime: 7 * 24 * 3600,
                allow_suffix: vec!["local".into()],
                allow_ip: Vec::new(),
                server_auth: false,
                name: "gatecert".into(),
            },
            est: Est {
                enabled: true,
                listen: SocketAddr::from(([0u16; 8], 8443)),
                max_connections: 64,
                max_header_bytes: 8192,
                max_body_bytes: 16384,
                request_timeout: 10,
            },
            broker: None,
            metrics: Metrics {
                listen: None,
                textfile: None,
            },
            labels: Vec::new(),
            acme_server: None,
        }
    }
}

impl Certificate {
    /// A certificate section with every default and no `directory` (issued by the local CA).
    pub fn standalone(name: &str, domains: Vec<String>) -> Certificate {
        Certificate {
            name: name.into(),
            line: 0,
            directory: None,
            ca_bundle: None,
            email: None,
            eab: None,
            domains,
            ips: Vec::new(),
            challenge: ChallengeKind::Http01,
            http: HttpMode::Standalone(SocketAddr::from(([0u16; 8], 80))),
            tls_alpn_listen: SocketAddr::from(([0u16; 8], 443)),
            dns_hook: None,
            dns_wait: 0,
            key_type: KeyType::Ec256,
            reuse_key: false,
            profile: None,
            preferred_chain: None,
            deploy_hook: None,
            install_dir: None,
            timeout: 30,
        }
    }
}

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/etc/gatecert";

/// OpenWrt's acme-common config, read for the gateway certificate when gatecert's own file
/// has no `certificate` section.
pub const ACME_CONFIG: &str = "/etc/config/acme";

impl Config {
    /// Reads `path` and, when it has no `certificate` section, OpenWrt's [`ACME_CONFIG`].
    /// A missing `path` means the built-in standalone defaults (see [`Config::standalone`]).
    pub fn load(path: &Path) -> Result<Config, Error> {
        Config::load_with_acme(path, Path::new(ACME_CONFIG))
    }

    /// As [`Config::load`], with acme-common's file at `acme_path`. Its enabled
    /// `config cert` sections become certificates that install into `/etc/ssl/acme`.
    pub fn load_with_acme(path: &Path, acme_path: &Path) -> Result<Config, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(Error::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        sections::build(&text, path, Some(&|| acme::import(acme_path)))
    }

    /// Parses UCI `text` (read from `path`, which only names it in messages). Does not look
    /// at acme-common's file.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        sections::build(text, path, None)
    }
}
