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
mod issuer;
mod keyref;
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
    /// Sections skipped or ignored, each with the reason: logged when the config is loaded
    /// and shown by `gatecert status` (doc/status-schema.md, `config_notes`).
    pub notes: Vec<Note>,
    /// `config acme_server 'acme'`: the local ACME server; `None` when absent or disabled.
    pub acme_server: Option<AcmeServer>,
    /// `config issuer 'NAME'` sections: upstream ACME CAs that certificates and the broker
    /// name with `list issuer`, in file order.
    pub issuers: Vec<Issuer>,
}

/// `config issuer 'NAME'`: one upstream ACME CA (RFC 8555) with its own trust bundle, EAB and
/// account (stored under `<state_dir>/accounts/`, keyed by the directory URL).
#[derive(Clone, Debug, PartialEq)]
pub struct Issuer {
    /// The section name, as `list issuer` names it.
    pub name: String,
    /// Line of the `config` line, for messages.
    pub line: usize,
    /// `directory`: the ACME directory URL (required).
    pub directory: String,
    /// `ca_bundle`: PEM roots for this CA's HTTPS (default: the system bundle).
    pub ca_bundle: Option<PathBuf>,
    /// `email`: account contact (default: the certificate's `email`).
    pub email: Option<String>,
    /// `eab_kid` + `eab_hmac_key`: External Account Binding with this CA (RFC 8555 §7.3.4).
    pub eab: Option<Eab>,
    /// `profile`: the ACME profile to ask this CA for (default: the certificate's `profile`).
    pub profile: Option<String>,
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

/// A section (or option) that was skipped or ignored, and why. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The file the section is in.
    pub file: PathBuf,
    /// 1-based line of the section (or option).
    pub line: usize,
    /// The section as `uci show` names it (`example`, `@cert[1]`).
    pub section: String,
    /// What happened and why.
    pub msg: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: section '{}': {}",
            self.file.display(),
            self.line,
            self.section,
            self.msg
        )
    }
}

/// Where a certificate's settings came from, for `gatecert status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The file (`/etc/config/gatecert`, `/etc/config/acme`), or `<built-in defaults>`.
    pub file: PathBuf,
    /// The section as `uci show` names it (`gateway`, `@certificate[0]`, `example`).
    pub section: String,
}

/// Environment for a DNS hook (acme.sh dnsapi credentials from acme-common's
/// `list credentials`). `Debug` prints the variable names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HookEnv(pub Vec<(String, String)>);

impl std::fmt::Debug for HookEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "HookEnv({names:?}, values redacted)")
    }
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
    /// `firewall_hook`: run as `HOOK open|close PORT NAME` around every standalone challenge
    /// listener (http-01 standalone, tls-alpn-01), to open the port in the firewall only while
    /// it is up. OpenWrt's config sets `/usr/lib/gatecert/fw4-port`, which adds and removes an
    /// fw4 rule as acme-common does. Default: none.
    pub firewall_hook: Option<PathBuf>,
    /// `webroot`: the http-01 mode of every certificate section that sets neither `http_mode`
    /// nor `http_listen`: files under `<webroot>/.well-known/acme-challenge/`. OpenWrt's config
    /// sets acme-common's `/var/run/acme/challenge`, which uhttpd serves (LuCI keeps port 80).
    /// Default: none (standalone on `[::]:80`).
    pub webroot: Option<PathBuf>,
    /// `audit_retention`: rotated `audit.log` files are kept at least this long, seconds.
    /// Default ([`Config::audit_policy`]): twice the longest leaf lifetime, at least 30 days.
    pub audit_retention: Option<u64>,
    /// `audit_max_bytes`: the disk budget of `audit.log` and its rotated files (default 64 MiB,
    /// [`crate::audit::DEFAULT_BUDGET`]); accepts `K`, `M`, `G` suffixes (binary).
    pub audit_max_bytes: u64,
    /// `audit_archive_dir`: rotated audit files are copied (and synced) here before they are
    /// pruned (a USB stick); unavailable = an alert, never a refusal. Default: none.
    pub audit_archive_dir: Option<PathBuf>,
    /// `audit_syslog`: every audit line (issuances, denials and their summaries) is also sent
    /// to syslog (`/dev/log`, facility "log audit"). Default off.
    pub audit_syslog: bool,
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
    /// Where these settings came from.
    pub origin: Origin,
    /// Extra environment for `dns_hook` (acme-common's `list credentials`).
    pub dns_env: HookEnv,
    /// acme-common's `days`: renew once the certificate is this many days old (at the latest;
    /// ARI or the usual fraction of the lifetime may say earlier).
    pub renew_days: Option<u32>,
    /// Send acme-common's events (hotplug `acme`, ubus `acme.renew`/`acme.issue`) through
    /// this script after an issue, a renewal or a failure: set for certificates imported from
    /// `/etc/config/acme`.
    pub notify: Option<PathBuf>,
    /// The main section's `firewall_hook`, copied here for the challenge listeners.
    pub firewall_hook: Option<PathBuf>,
    /// `key_uri` (+ `pin_file`): the certificate's key lives in a PKCS#11 token (RFC 7512 URI);
    /// each renewal makes a fresh key there (or reuses it with `reuse_key`). Default: key files.
    pub key_uri: Option<crate::crypto::KeyUri>,
    /// `list issuer`: the upstream CAs to order from, most preferred first, each with the
    /// certificate's `email` and `profile` filled in where the issuer sets none. Empty for the
    /// one-issuer shorthand (`directory`) and for standalone certificates. When set,
    /// `directory`, `ca_bundle`, `eab`, `email` and `profile` above are the first issuer's.
    pub issuers: Vec<Issuer>,
    /// `account_key_uri` (+ `pin_file`): the ACME account key lives in a PKCS#11 token (RFC 7512
    /// URI; made there, P-256, when the token has none) and signs every request (RFC 8555 §6.2).
    /// Default: `accounts/<id>/key.pem`.
    pub account_key_uri: Option<crate::crypto::KeyUri>,
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
    /// `key_uri` (+ `pin_file`): the issuing intermediate's key lives in a PKCS#11 token
    /// (RFC 7512 URI); `ca init` makes it there. Default: `intermediate.key`.
    pub key_uri: Option<crate::crypto::KeyUri>,
    /// `crl_validity`: nextUpdate - thisUpdate of the CRL (RFC 5280 §5.1.2.5), seconds (default
    /// 6h); the service signs a new one when a quarter of it is left.
    pub crl_validity: u64,
    /// `crl_file`: an absolute path the CRL (DER) is also written to, atomically.
    pub crl_file: Option<PathBuf>,
    /// `crl_url`: the http(s) URL leaves carry as their CRL Distribution Point (RFC 5280
    /// §4.2.1.13); none by default.
    pub crl_url: Option<String>,
}

/// The default `crl_validity`: 6 hours.
pub const CRL_VALIDITY: u64 = 6 * 3600;

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
    /// `key_uri` (+ `pin_file`): the listener's own key (when the local CA issues its
    /// certificate) lives in a PKCS#11 token (RFC 7512 URI). Default: a key file.
    pub key_uri: Option<crate::crypto::KeyUri>,
    /// `reenroll_alert`: refused re-enrollments with one device's certificate, in a row, that
    /// raise an alert (syslog and `gatecert_leaf_reenroll_alerts_total`); default 5.
    pub reenroll_alert: u32,
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
    /// `list issuer`: the upstream CAs for leaves, most preferred first (default: the
    /// certificate's `list issuer`; empty = the certificate's `directory` alone).
    pub issuers: Vec<Issuer>,
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
    /// The file is larger than [`MAX_CONFIG_BYTES`]; it is not read any further.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit, bytes.
        limit: u64,
    },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Read { path, .. } => write!(f, "cannot read config {}", path.display()),
            Error::TooLarge { path, limit } => write!(
                f,
                "config {} is larger than {limit} bytes; a gatecert config is a few KiB",
                path.display()
            ),
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
            source: PathBuf::from(BUILT_IN),
            main: Main {
                state_dir,
                log: LogTarget::Syslog,
                log_level: log::LevelFilter::Info,
                alert_days: 30,
                alert_failures: 3,
                firewall_hook: None,
                webroot: None,
                audit_retention: None,
                audit_max_bytes: crate::audit::DEFAULT_BUDGET,
                audit_archive_dir: None,
                audit_syslog: false,
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
                key_uri: None,
                crl_validity: CRL_VALIDITY,
                crl_file: None,
                crl_url: None,
            },
            est: Est {
                enabled: true,
                listen: SocketAddr::from(([0u16; 8], 8443)),
                max_connections: 64,
                max_header_bytes: 8192,
                max_body_bytes: 16384,
                request_timeout: 10,
                key_uri: None,
                reenroll_alert: 5,
            },
            broker: None,
            metrics: Metrics {
                listen: None,
                textfile: None,
            },
            labels: Vec::new(),
            notes: Vec::new(),
            acme_server: None,
            issuers: Vec::new(),
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
            origin: Origin {
                file: PathBuf::from(BUILT_IN),
                section: name.into(),
            },
            dns_env: HookEnv::default(),
            renew_days: None,
            notify: None,
            firewall_hook: None,
            key_uri: None,
            issuers: Vec::new(),
            account_key_uri: None,
        }
    }

    /// This certificate as ordered from `issuer`: its directory, trust bundle, EAB, contact
    /// and profile.
    pub fn via(&self, issuer: &Issuer) -> Certificate {
        Certificate {
            directory: Some(issuer.directory.clone()),
            ca_bundle: issuer.ca_bundle.clone(),
            eab: issuer.eab.clone(),
            email: issuer.email.clone(),
            profile: issuer.profile.clone(),
            ..self.clone()
        }
    }
}

/// How the embedded defaults are named as a source.
pub const BUILT_IN: &str = "<built-in defaults>";

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/etc/gatecert";

/// The largest config file gatecert reads (1 MiB). Every option of a gateway with dozens of
/// certificates fits in a few KiB; the cap keeps a runaway or hostile file from costing the
/// router its memory (the text, its sections and the typed config are all held at once).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads the UTF-8 text of the config file at `path`, at most [`MAX_CONFIG_BYTES`].
/// `Ok(None)` when it does not exist. A larger file is refused without reading it whole.
pub(crate) fn read_capped(path: &Path) -> Result<Option<String>, Error> {
    use std::io::Read as _;
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let too_large = || Error::TooLarge {
        path: path.to_path_buf(),
        limit: MAX_CONFIG_BYTES,
    };
    // The size check first, so a huge regular file is refused without a read; the bounded
    // read below also covers files that grow meanwhile and special files with no size.
    if file.metadata().map_err(read_err)?.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map(Some).map_err(|_| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        ))
    })
}

/// OpenWrt's acme-common config, read for the gateway certificates when gatecert's own file
/// has no `certificate` section. The embedded `gateway` certificate is used only when neither
/// has one.
pub const ACME_CONFIG: &str = "/etc/config/acme";

impl Config {
    /// Reads `path` and, when it has no `certificate` section, acme-common's file `acme` in the
    /// same directory: [`ACME_CONFIG`] for the default `/etc/config/gatecert`, as uci keeps
    /// every package's file in one directory. A missing `path` means the built-in standalone
    /// defaults (see [`Config::standalone`]).
    pub fn load(path: &Path) -> Result<Config, Error> {
        Config::load_with_acme(path, &path.with_file_name("acme"))
    }

    /// As [`Config::load`], with acme-common's file at `acme_path`. Its enabled
    /// `config cert` sections become certificates that install into `/etc/ssl/acme`.
    pub fn load_with_acme(path: &Path, acme_path: &Path) -> Result<Config, Error> {
        let text = read_capped(path)?.unwrap_or_default();
        sections::build(&text, path, Some(&|| acme::import(acme_path)))
    }

    /// The audit log's [`crate::audit::Policy`]: `audit_retention` or else twice the longest
    /// leaf lifetime configured (CA, labels, ACME server), at least 30 days; `audit_max_bytes`,
    /// `audit_archive_dir`, `audit_syslog`.
    pub fn audit_policy(&self) -> crate::audit::Policy {
        let longest = self
            .labels
            .iter()
            .filter_map(|l| l.lifetime)
            .chain(self.acme_server.as_ref().map(|a| a.lifetime))
            .fold(self.ca.lifetime.max(self.ca.max_lifetime), u64::max);
        let retention = self.main.audit_retention.unwrap_or_else(|| {
            longest
                .saturating_mul(2)
                .max(crate::audit::DEFAULT_RETENTION as u64)
        });
        crate::audit::Policy {
            retention: i64::try_from(retention).unwrap_or(i64::MAX),
            budget: self.main.audit_max_bytes,
            archive_dir: self.main.audit_archive_dir.clone(),
            syslog: self
                .main
                .audit_syslog
                .then(|| PathBuf::from(crate::audit::DEV_LOG)),
        }
    }

    /// Parses UCI `text` (read from `path`, which only names it in messages). Does not look
    /// at acme-common's file.
    pub fn parse(text: &str, path: &Path) -> Result<Config, Error> {
        sections::build(text, path, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_over_the_cap_is_refused_naming_file_and_limit() {
        let dir = std::env::temp_dir().join(format!("gatecert-cfgcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.conf");
        let ok = "config gatecert 'main'\n\toption log 'stderr'\n";
        // Exactly at the cap: read.
        let mut text = ok.to_owned();
        text.push('#');
        text.push_str(&"x".repeat(MAX_CONFIG_BYTES as usize - text.len() - 1));
        text.push('\n');
        assert_eq!(text.len() as u64, MAX_CONFIG_BYTES);
        std::fs::write(&path, &text).unwrap();
        let cfg = Config::load_with_acme(&path, &dir.join("no-acme")).unwrap();
        assert_eq!(cfg.main.log, LogTarget::Stderr);
        // One byte over: refused, by name and limit, for ours and for acme-common's file.
        text.push('\n');
        std::fs::write(&path, &text).unwrap();
        let e = Config::load_with_acme(&path, &dir.join("no-acme")).unwrap_err();
        assert!(matches!(e, Error::TooLarge { limit, .. } if limit == MAX_CONFIG_BYTES));
        assert_eq!(
            e.to_string(),
            format!(
                "config {} is larger than 1048576 bytes; a gatecert config is a few KiB",
                path.display()
            )
        );
        // acme-common's file over the cap is not imported, with a note naming it and the limit.
        let cfg = Config::load_with_acme(&dir.join("absent.conf"), &path).unwrap();
        assert!(
            cfg.notes
                .iter()
                .any(|n| n.file == path && n.msg.contains("larger than 1048576 bytes")),
            "{:?}",
            cfg.notes
        );
        // Missing is still "defaults"; not UTF-8 names the file.
        assert!(Config::load_with_acme(&dir.join("absent.conf"), &dir.join("no-acme")).is_ok());
        std::fs::write(&path, b"config gatecert 'main'\n# \xff\n").unwrap();
        let e = Config::load_with_acme(&path, &dir.join("no-acme")).unwrap_err();
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
