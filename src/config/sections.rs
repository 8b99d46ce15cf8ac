//! Raw UCI sections → typed settings: one builder per section type, each starting from the
//! standalone defaults and rejecting unknown options and bad values with file:line named.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::uci::{self, Section};
use super::value::{
    is_http_url, parse_abs_path, parse_bool, parse_cidr, parse_domain, parse_duration, parse_email,
    parse_log_level, parse_socket_addr,
};
use super::{
    Broker, Ca, Certificate, ChallengeKind, Config, Eab, Error, Est, HttpMode, LogTarget, Main,
    Metrics,
};
use crate::crypto::{self, KeyType};

/// The longest an interim (local) leaf may live while the upstream is away.
const MAX_INTERIM_LIFETIME: u64 = 24 * 3600;

const MAIN_OPTIONS: &[&str] = &[
    "state_dir",
    "log",
    "log_level",
    "alert_days",
    "alert_failures",
];
const CERT_OPTIONS: &[&str] = &[
    "directory",
    "ca_bundle",
    "email",
    "eab_kid",
    "eab_hmac_key",
    "domain",
    "ip",
    "challenge",
    "http_mode",
    "http_listen",
    "webroot",
    "tls_alpn_listen",
    "dns_hook",
    "dns_wait",
    "key_type",
    "reuse_key",
    "profile",
    "preferred_chain",
    "deploy_hook",
    "install_dir",
    "timeout",
];
const CA_OPTIONS: &[&str] = &[
    "lifetime",
    "max_lifetime",
    "allow_suffix",
    "allow_ip",
    "server_auth",
    "name",
];
const EST_OPTIONS: &[&str] = &[
    "enabled",
    "listen",
    "max_connections",
    "max_header_bytes",
    "max_body_bytes",
    "request_timeout",
];
const BROKER_OPTIONS: &[&str] = &[
    "enabled",
    "certificate",
    "challenge",
    "dns_hook",
    "upstream_wait",
    "interim_lifetime",
];
const METRICS_OPTIONS: &[&str] = &["listen", "textfile"];

/// Expected forms, for messages.
const DURATION: &str = "a duration such as 90s, 30m, 24h, 7d or plain seconds";
const BOOL: &str = "1/0, yes/no, on/off, true/false or enabled/disabled";
const LISTEN: &str = "an address:port such as [::]:80, 127.0.0.1:8443 or :80";
const ABS_PATH: &str = "an absolute path";
const CHALLENGE: &str = "http-01, tls-alpn-01 or dns-01";

/// Certificates from somewhere else (OpenWrt's acme-common config), asked for only when gatecert's
/// own file has no `certificate` section. Passed in so this module doesn't depend on the importer.
pub(super) type Import<'a> = &'a dyn Fn() -> Result<Vec<Certificate>, Error>;

/// Builds the typed config from gatecert's own file; `import` supplies certificates when the file
/// has no `certificate` section.
pub(super) fn build(text: &str, path: &Path, import: Option<Import<'_>>) -> Result<Config, Error> {
    let sections = uci::parse(text).map_err(|e| Error::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        msg: e.msg,
    })?;
    let mut cfg = Config::standalone(PathBuf::from(super::DEFAULT_STATE_DIR));
    cfg.source = path.to_path_buf();
    let mut certificates: Vec<Certificate> = Vec::new();
    let mut broker = None;
    let mut labels = Vec::new();
    let mut acme_server = None;
    // The first section of each single-instance type, to reject a second one.
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for section in &sections {
        let r = Reader { path, section };
        let kind = section.kind.as_str();
        if kind != "certificate" && kind != "label" {
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kind) {
                return Err(r.syntax(format!(
                    "a second '{kind}' section (the first is on line {first}); merge them"
                )));
            }
            seen.push((kind, section.line));
        }
        match kind {
            "gatecert" => cfg.main = main(&r, cfg.main)?,
            "certificate" => {
                let cert = certificate(&r)?;
                certificates.push(cert);
            }
            "ca" => cfg.ca = ca(&r, cfg.ca)?,
            "est" => cfg.est = est(&r, cfg.est)?,
            "broker" => broker = Some(section),
            "label" => labels.push(section),
            "acme_server" => acme_server = Some(section),
            "metrics" => cfg.metrics = metrics(&r)?,
            other => {
                return Err(r.syntax(format!(
                    "unknown section type '{other}' (expected gatecert, certificate, ca, est, \
                     broker, metrics, label or acme_server)"
                )))
            }
        }
    }
    if certificates.is_empty() {
        if let Some(import) = import {
            certificates = import()?;
        }
    }
    if !certificates.is_empty() {
        cfg.certificates = certificates;
    }
    if let Some(section) = broker {
        cfg.broker = self::broker(&Reader { path, section }, &cfg.certificates)?;
    }
    if let Some(section) = acme_server {
        cfg.acme_server = super::acme_server::acme_server(&Reader { path, section }, &cfg.ca)?;
    }
    for section in labels {
        let r = Reader { path, section };
        // UCI merges sections reopened under one name, so every label is unique here.
        cfg.labels.push(super::label::label(&r, &cfg.ca)?);
    }
    Ok(cfg)
}

/// A section being read, with the file it came from, for messages.
pub(super) struct Reader<'a> {
    pub(super) path: &'a Path,
    pub(super) section: &'a Section,
}

impl<'a> Reader<'a> {
    /// An error about the section itself, at its `config` line.
    pub(super) fn syntax(&self, msg: String) -> Error {
        Error::Syntax {
            path: self.path.to_path_buf(),
            line: self.section.line,
            msg,
        }
    }

    /// An error about `option` at `line`.
    pub(super) fn err(&self, line: usize, option: &str, msg: impl Into<String>) -> Error {
        Error::Option {
            path: self.path.to_path_buf(),
            line,
            section: self.section.label().to_string(),
            option: option.to_string(),
            msg: msg.into(),
        }
    }

    /// An error about `option` at the option's line if it is present, else the section's.
    pub(super) fn err_at(&self, option: &str, msg: impl Into<String>) -> Error {
        let line = self
            .section
            .option(option)
            .map_or(self.section.line, |o| o.line);
        self.err(line, option, msg)
    }

    /// Rejects options not in `known`, so that typos are not silently ignored.
    pub(super) fn check_known(&self, known: &[&str]) -> Result<(), Error> {
        match self
            .section
            .options
            .iter()
            .find(|o| !known.contains(&o.name.as_str()))
        {
            Some(o) => Err(self.err(
                o.line,
                &o.name,
                format!(
                    "unknown option for a '{}' section (known: {})",
                    self.section.kind,
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }

    /// The single value of `name`, or `None` when absent or empty (`''` unsets, as in uci).
    /// A `list` with one item is accepted.
    pub(super) fn value(&self, name: &str) -> Result<Option<(&'a str, usize)>, Error> {
        let Some(opt) = self.section.option(name) else {
            return Ok(None);
        };
        match opt.values.as_slice() {
            [v] if v.is_empty() => Ok(None),
            [v] => Ok(Some((v.as_str(), opt.line))),
            _ => Err(self.err(opt.line, name, "takes one value: use `option`, not `list`")),
        }
    }

    /// The value of `name` as a string.
    pub(super) fn string(&self, name: &str) -> Result<Option<String>, Error> {
        Ok(self.value(name)?.map(|(v, _)| v.to_string()))
    }

    /// Parses the value of `name` with `f`; a bad value is reported with `expected`.
    pub(super) fn parse<T>(
        &self,
        name: &str,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, Error> {
        match self.value(name)? {
            None => Ok(None),
            Some((v, line)) => match f(v) {
                Some(t) => Ok(Some(t)),
                None => Err(self.err(line, name, format!("bad value '{v}': expected {expected}"))),
            },
        }
    }

    /// Parses every item of the list `name` (or the words of an `option`) with `f`.
    pub(super) fn items<T>(
        &self,
        name: &str,
        expected: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<Vec<T>, Error> {
        let Some(opt) = self.section.option(name) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for word in opt.values.iter().flat_map(|v| v.split_whitespace()) {
            match f(word) {
                Some(t) => out.push(t),
                None => {
                    return Err(self.err(
                        opt.line,
                        name,
                        format!("bad item '{word}': expected {expected}"),
                    ))
                }
            }
        }
        Ok(out)
    }

    fn duration(&self, name: &str) -> Result<Option<u64>, Error> {
        self.parse(name, DURATION, parse_duration)
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, Error> {
        self.parse(name, BOOL, parse_bool)
    }

    fn number<T: std::str::FromStr + PartialOrd>(
        &self,
        name: &str,
        min: T,
    ) -> Result<Option<T>, Error>
    where
        T: std::fmt::Display,
    {
        let expected = format!("a whole number, at least {min}");
        self.parse(name, &expected, |v| {
            v.parse::<T>().ok().filter(|n| *n >= min)
        })
    }
}

/// Parses `challenge`.
pub(super) fn parse_challenge(s: &str) -> Option<ChallengeKind> {
    match s {
        "http-01" => Some(ChallengeKind::Http01),
        "tls-alpn-01" => Some(ChallengeKind::TlsAlpn01),
        "dns-01" => Some(ChallengeKind::Dns01),
        _ => None,
    }
}

/// Parses `key_type`, naming RSA specifically: gatecert makes only EC keys.
pub(super) fn key_type(r: &Reader, name: &str) -> Result<Option<KeyType>, Error> {
    match r.value(name)? {
        None => Ok(None),
        Some((v, line)) => match KeyType::parse(v) {
            Some(k) => Ok(Some(k)),
            None if v.starts_with("rsa") => Err(r.err(
                line,
                name,
                format!("'{v}' is not supported: gatecert makes EC keys only (ec256 or ec384)"),
            )),
            None => Err(r.err(
                line,
                name,
                format!("bad value '{v}': expected ec256 or ec384"),
            )),
        },
    }
}

fn main(r: &Reader, mut m: Main) -> Result<Main, Error> {
    r.check_known(MAIN_OPTIONS)?;
    if let Some(p) = r.parse("state_dir", ABS_PATH, parse_abs_path)? {
        m.state_dir = p;
    }
    if let Some(t) = r.parse("log", "syslog or stderr", |v| match v {
        "syslog" => Some(LogTarget::Syslog),
        "stderr" => Some(LogTarget::Stderr),
        _ => None,
    })? {
        m.log = t;
    }
    if let Some(l) = r.parse("log_level", "error, warn, info or debug", parse_log_level)? {
        m.log_level = l;
    }
    if let Some(n) = r.number("alert_days", 0u32)? {
        m.alert_days = n;
    }
    if let Some(n) = r.number("alert_failures", 1u32)? {
        m.alert_failures = n;
    }
    Ok(m)
}

fn certificate(r: &Reader) -> Result<Certificate, Error> {
    r.check_known(CERT_OPTIONS)?;
    let Some(name) = r.section.name.as_deref() else {
        return Err(
            r.syntax("a certificate section needs a name: config certificate 'NAME'".to_string())
        );
    };
    let mut c = Certificate::standalone(name, Vec::new());
    c.line = r.section.line;
    if let Some((v, line)) = r.value("directory")? {
        if !is_http_url(v) {
            return Err(r.err(
                line,
                "directory",
                format!("bad value '{v}': expected the ACME directory's http(s) URL"),
            ));
        }
        c.directory = Some(v.to_string());
    }
    c.ca_bundle = r.parse("ca_bundle", ABS_PATH, parse_abs_path)?;
    c.email = r.parse("email", "an e-mail address", parse_email)?;
    c.eab = eab(r)?;
    c.domains = r.items(
        "domain",
        "a DNS name such as gw.example.com or *.example.com",
        |v| parse_domain(v, true),
    )?;
    c.ips = r.items("ip", "an IPv4 or IPv6 address", |v| {
        v.parse::<IpAddr>().ok()
    })?;
    if c.domains.is_empty() && c.ips.is_empty() {
        return Err(r.err_at(
            "domain",
            "a certificate needs at least one `list domain` or `list ip`",
        ));
    }
    if let Some(k) = r.parse("challenge", CHALLENGE, parse_challenge)? {
        c.challenge = k;
    }
    let listen = r.parse("http_listen", LISTEN, parse_socket_addr)?;
    let webroot = r.parse("webroot", ABS_PATH, parse_abs_path)?;
    match r.value("http_mode")? {
        None | Some(("standalone", _)) => {
            if let Some(a) = listen {
                c.http = HttpMode::Standalone(a);
            }
        }
        Some(("webroot", _)) => {
            match webroot {
                Some(w) => c.http = HttpMode::Webroot(w),
                None => return Err(r.err_at(
                    "webroot",
                    "http_mode 'webroot' needs `option webroot` (the web server's document root)",
                )),
            }
        }
        Some((v, line)) => {
            return Err(r.err(
                line,
                "http_mode",
                format!("bad value '{v}': expected standalone or webroot"),
            ))
        }
    }
    if let Some(a) = r.parse("tls_alpn_listen", LISTEN, parse_socket_addr)? {
        c.tls_alpn_listen = a;
    }
    c.dns_hook = r.parse("dns_hook", ABS_PATH, parse_abs_path)?;
    if let Some(d) = r.duration("dns_wait")? {
        c.dns_wait = d;
    }
    if let Some(k) = key_type(r, "key_type")? {
        c.key_type = k;
    }
    if let Some(b) = r.bool("reuse_key")? {
        c.reuse_key = b;
    }
    c.profile = r.string("profile")?;
    c.preferred_chain = r.string("preferred_chain")?;
    c.deploy_hook = r.string("deploy_hook")?;
    c.install_dir = r.parse("install_dir", ABS_PATH, parse_abs_path)?;
    if let Some(t) = r.parse("timeout", "a duration of at least 1s", |v| {
        parse_duration(v).filter(|t| *t > 0)
    })? {
        c.timeout = t;
    }
    check_challenge(r, &c)?;
    Ok(c)
}

/// Checks that the challenge can validate the certificate's identifiers (ACME only).
pub(super) fn check_challenge(r: &Reader, c: &Certificate) -> Result<(), Error> {
    if c.challenge == ChallengeKind::Dns01 && c.dns_hook.is_none() {
        let line = r
            .section
            .option("challenge")
            .or_else(|| r.section.option("validation_method"))
            .map_or(r.section.line, |o| o.line);
        return Err(r.err(
            line,
            "dns_hook",
            "challenge 'dns-01' needs `option dns_hook` (the script that publishes TXT records)",
        ));
    }
    if c.directory.is_none() {
        return Ok(());
    }
    if c.challenge == ChallengeKind::Dns01 && !c.ips.is_empty() {
        return Err(r.err_at(
            "ip",
            "IP identifiers cannot be validated with dns-01 (RFC 8738 §7); use http-01 or tls-alpn-01",
        ));
    }
    if c.challenge != ChallengeKind::Dns01 {
        if let Some(w) = c.domains.iter().find(|d| d.starts_with("*.")) {
            return Err(r.err_at(
                "domain",
                format!("wildcard '{w}' can only be validated with dns-01 (RFC 8555 §7.1.3)"),
            ));
        }
    }
    Ok(())
}

/// `eab_kid` + `eab_hmac_key`, both or neither. The key's value never reaches a message.
fn eab(r: &Reader) -> Result<Option<Eab>, Error> {
    let kid = r.value("eab_kid")?;
    let key = r.value("eab_hmac_key")?;
    match (kid, key) {
        (None, None) => Ok(None),
        (Some((_, line)), None) => Err(r.err(
            line,
            "eab_hmac_key",
            "eab_kid is set but eab_hmac_key is not: External Account Binding needs both",
        )),
        (None, Some((_, line))) => Err(r.err(
            line,
            "eab_kid",
            "eab_hmac_key is set but eab_kid is not: External Account Binding needs both",
        )),
        (Some((kid, _)), Some((key, line))) => match crypto::b64url_decode(key.trim()) {
            Ok(hmac_key) if !hmac_key.is_empty() => Ok(Some(Eab {
                kid: kid.to_string(),
                hmac_key,
            })),
            _ => Err(r.err(
                line,
                "eab_hmac_key",
                "is not valid base64url (the value is not shown; copy it again from your CA)",
            )),
        },
    }
}

fn ca(r: &Reader, mut ca: Ca) -> Result<Ca, Error> {
    r.check_known(CA_OPTIONS)?;
    let positive = "a duration of at least 1s such as 24h or 7d";
    let nonzero = |v: &str| parse_duration(v).filter(|d| *d > 0);
    if let Some(d) = r.parse("lifetime", positive, nonzero)? {
        ca.lifetime = d;
    }
    if let Some(d) = r.parse("max_lifetime", positive, nonzero)? {
        ca.max_lifetime = d;
    }
    if ca.lifetime > ca.max_lifetime {
        return Err(r.err_at(
            "lifetime",
            format!(
                "lifetime ({}s) exceeds max_lifetime ({}s)",
                ca.lifetime, ca.max_lifetime
            ),
        ));
    }
    if r.section.option("allow_suffix").is_some() {
        ca.allow_suffix = r.items(
            "allow_suffix",
            "a DNS suffix such as sensors.example.com",
            |v| parse_domain(v.strip_prefix('.').unwrap_or(v), false),
        )?;
    }
    ca.allow_ip = r.items(
        "allow_ip",
        "an address or CIDR range such as 10.0.0.0/8",
        parse_cidr,
    )?;
    if let Some(b) = r.bool("server_auth")? {
        ca.server_auth = b;
    }
    if let Some(n) = r.parse("name", "printable text of at most 48 characters", |v| {
        (v.chars().count() <= 48 && !v.chars().any(char::is_control)).then(|| v.to_string())
    })? {
        ca.name = n;
    }
    Ok(ca)
}

fn est(r: &Reader, mut est: Est) -> Result<Est, Error> {
    r.check_known(EST_OPTIONS)?;
    if let Some(b) = r.bool("enabled")? {
        est.enabled = b;
    }
    if let Some(a) = r.parse("listen", LISTEN, parse_socket_addr)? {
        est.listen = a;
    }
    if let Some(n) = r.number("max_connections", 1usize)? {
        est.max_connections = n;
    }
    if let Some(n) = r.number("max_header_bytes", 1024usize)? {
        est.max_header_bytes = n;
    }
    if let Some(n) = r.number("max_body_bytes", 1024usize)? {
        est.max_body_bytes = n;
    }
    if let Some(t) = r.parse("request_timeout", "a duration of at least 1s", |v| {
        parse_duration(v).filter(|t| *t > 0)
    })? {
        est.request_timeout = t;
    }
    Ok(est)
}

fn broker(r: &Reader, certificates: &[Certificate]) -> Result<Option<Broker>, Error> {
    r.check_known(BROKER_OPTIONS)?;
    if r.bool("enabled")? == Some(false) {
        return Ok(None);
    }
    let cert = match r.value("certificate")? {
        Some((name, line)) => match certificates.iter().find(|c| c.name == name) {
            Some(c) if c.directory.is_some() => c,
            Some(_) => {
                return Err(r.err(
                    line,
                    "certificate",
                    format!(
                    "certificate '{name}' has no `directory`: the broker needs an upstream ACME CA"
                ),
                ))
            }
            None => {
                return Err(r.err(
                    line,
                    "certificate",
                    format!("no certificate section named '{name}'"),
                ))
            }
        },
        None => match certificates.iter().find(|c| c.directory.is_some()) {
            Some(c) => c,
            None => return Err(r.err_at(
                "certificate",
                "the broker needs a certificate section with a `directory` (an upstream ACME CA)",
            )),
        },
    };
    let dns_hook = match r.parse("dns_hook", ABS_PATH, parse_abs_path)? {
        Some(h) => Some(h),
        None => cert.dns_hook.clone(),
    };
    let challenge = match r.parse("challenge", CHALLENGE, parse_challenge)? {
        Some(k) => k,
        None if dns_hook.is_some() => ChallengeKind::Dns01,
        None => ChallengeKind::Http01,
    };
    if challenge == ChallengeKind::Dns01 && dns_hook.is_none() {
        return Err(r.err_at(
            "dns_hook",
            "challenge 'dns-01' needs a dns_hook here or on the certificate",
        ));
    }
    let upstream_wait = r.duration("upstream_wait")?.unwrap_or(5);
    let interim_lifetime = r
        .parse("interim_lifetime", "a duration between 1s and 24h", |v| {
            parse_duration(v).filter(|d| (1..=MAX_INTERIM_LIFETIME).contains(d))
        })?
        .unwrap_or(6 * 3600);
    Ok(Some(Broker {
        certificate: cert.name.clone(),
        challenge,
        dns_hook,
        upstream_wait,
        interim_lifetime,
    }))
}

fn metrics(r: &Reader) -> Result<Metrics, Error> {
    r.check_known(METRICS_OPTIONS)?;
    let listen = r.parse(
        "listen",
        "a loopback address:port such as 127.0.0.1:9100 or [::1]:9100",
        |v| parse_socket_addr(v).filter(|a| a.ip().is_loopback()),
    )?;
    let textfile = r.parse("textfile", ABS_PATH, parse_abs_path)?;
    Ok(Metrics { listen, textfile })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    const FILE: &str = "/etc/config/gatecert";

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new(FILE))
    }

    /// The configuration sketch from the original design brief, with the empty options it shows.
    const SKETCH: &str = "\
config gatecert 'main'
\toption state_dir '/etc/gatecert'
\toption log 'syslog'                # syslog | stderr
\toption log_level 'info'

config certificate 'gateway'           # the gateway's own certificate; more sections allowed
\toption directory 'https://acme-v02.api.letsencrypt.org/directory'
\toption ca_bundle ''                # PEM to trust for a private ACME CA's HTTPS
\toption email 'ops@example.com'
\toption eab_kid ''
\toption eab_hmac_key ''
\tlist domain 'gw1.example.com'
\tlist ip '192.0.2.10'
\toption challenge 'http-01'         # http-01 | tls-alpn-01 | dns-01
\toption http_mode 'standalone'      # standalone | webroot
\toption http_listen '[::]:80'
\toption webroot '/www'
\toption tls_alpn_listen '[::]:443'
\toption dns_hook '/usr/libexec/gatecert/dns-hook'
\toption key_type 'ec256'            # ec256 | ec384
\toption profile ''                  # ACME profile, e.g. shortlived
\toption deploy_hook '/etc/init.d/uhttpd reload'

config ca 'local'                      # the local issuing CA for leaves
\toption lifetime '24h'
\toption max_lifetime '7d'
\tlist allow_suffix 'sensors.example.com'

config est 'est'
\toption listen '[::]:8443'
";

    #[test]
    fn design_sketch_parses_to_expected_values() {
        let cfg = parse(SKETCH).unwrap();
        let mut want = Config::standalone(PathBuf::from("/etc/gatecert"));
        want.source = PathBuf::from(FILE);
        let mut gw = Certificate::standalone("gateway", vec!["gw1.example.com".into()]);
        gw.line = 6;
        gw.directory = Some("https://acme-v02.api.letsencrypt.org/directory".into());
        gw.email = Some("ops@example.com".into());
        gw.ips = vec![IpAddr::from([192, 0, 2, 10])];
        gw.dns_hook = Some(PathBuf::from("/usr/libexec/gatecert/dns-hook"));
        gw.deploy_hook = Some("/etc/init.d/uhttpd reload".into());
        want.certificates = vec![gw];
        want.ca.allow_suffix = vec!["sensors.example.com".into()];
        assert_eq!(cfg, want);
    }

    #[test]
    fn empty_file_is_the_standalone_default() {
        let cfg = parse("# nothing here\n").unwrap();
        let mut want = Config::standalone(PathBuf::from(crate::config::DEFAULT_STATE_DIR));
        want.source = PathBuf::from(FILE);
        assert_eq!(cfg, want);
        assert_eq!(cfg.certificates[0].name, "gateway");
        assert!(cfg.certificates[0].directory.is_none());
    }

    #[test]
    fn every_section_overrides_defaults() {
        let text = "\
config gatecert main
\toption state_dir /var/lib/gatecert
\toption log stderr
\toption log_level debug
\toption alert_days 10
\toption alert_failures 5
config certificate gw
\toption directory 'http://127.0.0.1:14000/dir'
\toption eab_kid kid-1
\toption eab_hmac_key 'c2VjcmV0LWtleQ'
\tlist domain '*.GW.example'
\toption challenge dns-01
\toption dns_hook /bin/hook
\toption dns_wait 2m
\toption key_type ec384
\toption reuse_key yes
\toption timeout 1m
\toption install_dir /etc/ssl/acme
config certificate web
\tlist domain web.example
\toption http_mode webroot
\toption webroot /www
config ca
\toption lifetime 1h
\tlist allow_ip 10.0.0.0/8
\tlist allow_ip 'fd00::/8 192.0.2.1'
\toption server_auth on
\toption name 'Plant 7'
config est
\toption enabled off
\toption listen :9443
\toption max_connections 8
\toption request_timeout 30s
config broker
\toption interim_lifetime 12h
config metrics
\toption listen '[::1]:9100'
\toption textfile /tmp/gatecert.prom
";
        let cfg = parse(text).unwrap();
        assert_eq!(cfg.main.state_dir, PathBuf::from("/var/lib/gatecert"));
        assert_eq!(cfg.main.log, LogTarget::Stderr);
        assert_eq!(cfg.main.log_level, log::LevelFilter::Debug);
        assert_eq!((cfg.main.alert_days, cfg.main.alert_failures), (10, 5));
        let gw = &cfg.certificates[0];
        assert_eq!(gw.domains, vec!["*.gw.example".to_string()]);
        assert_eq!(
            gw.eab,
            Some(Eab {
                kid: "kid-1".into(),
                hmac_key: b"secret-key".to_vec()
            })
        );
        assert_eq!(gw.challenge, ChallengeKind::Dns01);
        assert_eq!((gw.dns_wait, gw.timeout), (120, 60));
        assert_eq!(gw.key_type, KeyType::Ec384);
        assert!(gw.reuse_key);
        let web = &cfg.certificates[1];
        assert_eq!(web.http, HttpMode::Webroot(PathBuf::from("/www")));
        assert!(web.directory.is_none());
        assert_eq!(cfg.ca.lifetime, 3600);
        assert_eq!(cfg.ca.allow_suffix, vec!["local".to_string()]);
        assert_eq!(cfg.ca.allow_ip.len(), 3);
        assert!(cfg.ca.server_auth);
        assert_eq!(cfg.ca.name, "Plant 7");
        assert!(!cfg.est.enabled);
        assert_eq!(cfg.est.listen, SocketAddr::from(([0u16; 8], 9443)));
        assert_eq!(cfg.est.max_connections, 8);
        assert_eq!(cfg.est.request_timeout, 30);
        let broker = cfg.broker.unwrap();
        assert_eq!(broker.certificate, "gw");
        assert_eq!(broker.challenge, ChallengeKind::Dns01);
        assert_eq!(broker.dns_hook, Some(PathBuf::from("/bin/hook")));
        assert_eq!(
            (broker.upstream_wait, broker.interim_lifetime),
            (5, 12 * 3600)
        );
        assert_eq!(cfg.metrics.listen, Some("[::1]:9100".parse().unwrap()));
        assert_eq!(
            cfg.metrics.textfile,
            Some(PathBuf::from("/tmp/gatecert.prom"))
        );
    }

    #[test]
    fn broker_defaults_and_disable() {
        let base = "config certificate gw\n\toption directory https://ca.example/dir\n\tlist domain gw.example\n";
        let cfg = parse(&format!("{base}config broker\n")).unwrap();
        let b = cfg.broker.unwrap();
        assert_eq!(b.certificate, "gw");
        assert_eq!(b.challenge, ChallengeKind::Http01);
        assert_eq!((b.upstream_wait, b.interim_lifetime), (5, 6 * 3600));
        let cfg = parse(&format!("{base}config broker\n\toption enabled 0\n")).unwrap();
        assert_eq!(cfg.broker, None);
    }

    /// (config text, line, section, option, a fragment of the message)
    const BAD: &[(&str, usize, &str, &str, &str)] = &[
        ("config gatecert main\n\toption log journal\n", 2, "main", "log", "expected syslog or stderr"),
        ("config gatecert main\n\toption log_level loud\n", 2, "main", "log_level", "expected error, warn"),
        ("config gatecert main\n\toption state_dir relative\n", 2, "main", "state_dir", "absolute path"),
        ("config gatecert main\n\toption alert_days -1\n", 2, "main", "alert_days", "whole number"),
        ("config gatecert main\n\toption colour blue\n", 2, "main", "colour", "unknown option"),
        ("config certificate gw\n\tlist domain a.example\n\toption directroy x\n", 3, "gw", "directroy", "unknown option"),
        ("config certificate gw\n\tlist domain a.example\n\toption directory acme.example\n", 3, "gw", "directory", "http(s) URL"),
        ("config certificate gw\n\toption email a@b.example\n", 1, "gw", "domain", "at least one"),
        ("config certificate gw\n\tlist domain 'bad_name.example'\n", 2, "gw", "domain", "DNS name"),
        ("config certificate gw\n\tlist domain a.example\n\tlist ip 300.1.1.1\n", 3, "gw", "ip", "IPv4 or IPv6"),
        ("config certificate gw\n\tlist domain a.example\n\toption challenge http\n", 3, "gw", "challenge", "http-01, tls-alpn-01 or dns-01"),
        ("config certificate gw\n\tlist domain a.example\n\toption challenge dns-01\n", 3, "gw", "dns_hook", "needs `option dns_hook`"),
        ("config certificate gw\n\tlist domain a.example\n\toption http_mode proxy\n", 3, "gw", "http_mode", "standalone or webroot"),
        ("config certificate gw\n\tlist domain a.example\n\toption http_mode webroot\n", 1, "gw", "webroot", "needs `option webroot`"),
        ("config certificate gw\n\tlist domain a.example\n\toption http_listen 80\n", 3, "gw", "http_listen", "[::]:80"),
        ("config certificate gw\n\tlist domain a.example\n\toption key_type rsa2048\n", 3, "gw", "key_type", "EC keys only"),
        ("config certificate gw\n\tlist domain a.example\n\toption key_type ec521\n", 3, "gw", "key_type", "ec256 or ec384"),
        ("config certificate gw\n\tlist domain a.example\n\toption reuse_key maybe\n", 3, "gw", "reuse_key", "yes/no"),
        ("config certificate gw\n\tlist domain a.example\n\toption timeout 10x\n", 3, "gw", "timeout", "duration"),
        ("config certificate gw\n\tlist domain a.example\n\toption eab_kid k\n", 3, "gw", "eab_hmac_key", "needs both"),
        ("config certificate gw\n\tlist domain a.example\n\n\toption eab_hmac_key c2VjcmV0\n", 4, "gw", "eab_kid", "needs both"),
        ("config certificate gw\n\toption directory https://ca.example/d\n\tlist domain '*.a.example'\n", 3, "gw", "domain", "only be validated with dns-01"),
        ("config certificate gw\n\toption directory https://ca.example/d\n\tlist ip 192.0.2.1\n\toption challenge dns-01\n\toption dns_hook /h\n", 3, "gw", "ip", "RFC 8738"),
        ("config certificate gw\n\tlist domain a.example\n\tlist email a@b.example\n\tlist email c@b.example\n", 3, "gw", "email", "use `option`, not `list`"),
        ("config ca local\n\toption lifetime 8d\n", 2, "local", "lifetime", "exceeds max_lifetime"),
        ("config ca local\n\toption max_lifetime 0\n", 2, "local", "max_lifetime", "at least 1s"),
        ("config ca local\n\tlist allow_ip 10.0.0.1/8\n", 2, "local", "allow_ip", "CIDR"),
        ("config ca local\n\tlist allow_suffix '*.x'\n", 2, "local", "allow_suffix", "DNS suffix"),
        ("config est est\n\toption listen 'localhost:8443'\n", 2, "est", "listen", "address:port"),
        ("config est est\n\toption max_connections 0\n", 2, "est", "max_connections", "at least 1"),
        ("config broker upstream\n", 1, "upstream", "certificate", "needs a certificate section with a `directory`"),
        ("config certificate gw\n\toption directory https://ca.example/d\n\tlist domain a.example\nconfig broker up\n\toption interim_lifetime 2d\n", 5, "up", "interim_lifetime", "between 1s and 24h"),
        ("config certificate gw\n\toption directory https://ca.example/d\n\tlist domain a.example\nconfig broker up\n\toption certificate other\n", 5, "up", "certificate", "no certificate section named 'other'"),
        ("config certificate gw\n\tlist domain a.example\nconfig broker up\n\toption certificate gw\n", 4, "up", "certificate", "has no `directory`"),
        ("config metrics m\n\toption listen '0.0.0.0:9100'\n", 2, "m", "listen", "loopback"),
    ];

    #[test]
    fn bad_values_name_file_line_section_and_option() {
        for (text, line, section, option, needle) in BAD {
            let err = parse(text).expect_err(text);
            let shown = err.to_string();
            let prefix = format!("{FILE}:{line}: section '{section}', option '{option}': ");
            assert!(
                shown.starts_with(&prefix),
                "{text:?}\n got: {shown}\nwant: {prefix}"
            );
            assert!(shown.contains(needle), "{text:?}: {shown}");
        }
    }

    #[test]
    fn section_level_errors_name_file_and_line() {
        let table: &[(&str, &str)] = &[
            (
                "config gatecert main\n\nconfig foo bar\n",
                "/etc/config/gatecert:3: unknown section type 'foo'",
            ),
            (
                "config certificate\n\tlist domain a.example\n",
                "/etc/config/gatecert:1: a certificate section needs a name",
            ),
            (
                "config ca a\nconfig ca b\n",
                "/etc/config/gatecert:2: a second 'ca' section (the first is on line 1)",
            ),
            (
                "config ca a\n\toption lifetime 'open\n",
                "/etc/config/gatecert:2: unterminated ' quote",
            ),
        ];
        for (text, want) in table {
            let shown = parse(text).expect_err(text).to_string();
            assert!(shown.starts_with(want), "{text:?}: {shown}");
        }
    }

    #[test]
    fn eab_key_never_appears_in_errors() {
        let secret = "s3cr3t!!not+base64url";
        let texts = [
            format!("config certificate gw\n\tlist domain a.example\n\toption eab_kid k\n\toption eab_hmac_key '{secret}'\n"),
            format!("config certificate gw\n\tlist domain a.example\n\toption eab_hmac_key '{secret}'\n"),
            format!("config certificate gw\n\tlist domain a.example\n\tlist eab_hmac_key '{secret}'\n\tlist eab_hmac_key '{secret}'\n"),
        ];
        for text in &texts {
            let err = parse(text).expect_err(text);
            assert!(matches!(err, Error::Option { ref option, .. } if option.starts_with("eab_")));
            assert!(!err.to_string().contains(secret), "{err}");
            assert!(!format!("{err:?}").contains(secret), "{err:?}");
        }
        // And a good key is redacted from Debug output.
        let cfg = parse("config certificate gw\n\tlist domain a.example\n\toption eab_kid k\n\toption eab_hmac_key c2VjcmV0LWtleQ\n").unwrap();
        assert!(!format!("{cfg:?}").contains("secret-key"));
    }

    #[test]
    fn load_reads_files_and_defaults_when_absent() {
        let dir = std::env::temp_dir().join(format!("gatecert-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("gatecert");
        let none = dir.join("acme-absent");
        let cfg = Config::load_with_acme(&path, &none).unwrap();
        assert_eq!(cfg.certificates[0].name, "gateway");
        std::fs::write(&path, "config est\n\toption listen :1\n").unwrap();
        let cfg = Config::load_with_acme(&path, &none).unwrap();
        assert_eq!(cfg.est.listen.port(), 1);
        std::fs::write(&path, "config est\n\toption listen x\n").unwrap();
        let err = Config::load_with_acme(&path, &none)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("{}:2:", path.display())), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn documented_example_parses() {
        let text = include_str!("../../doc/gatecert.config.example");
        let cfg = parse(text).unwrap();
        assert_eq!(cfg.certificates[0].name, "gateway");
        assert_eq!(
            cfg.broker.map(|b| b.certificate).as_deref(),
            Some("gateway")
        );
        let cameras = &cfg.labels[0];
        assert_eq!(cameras.name, "cameras");
        assert_eq!(cameras.lifetime, Some(12 * 3600));
        assert_eq!(cameras.allow_suffix, vec!["cameras.local".to_string()]);
        assert!(!cameras.server_auth);
    }
}
