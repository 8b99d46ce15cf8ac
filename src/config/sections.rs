//! Raw UCI sections → typed settings: one builder per section type, each starting from the
//! standalone defaults and rejecting unknown options and bad values with file:line named.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::keyref::{key_uri, key_uris};
use super::uci::{self, Section};
use super::value::{
    is_http_url, parse_abs_path, parse_bool, parse_cidr, parse_domain, parse_duration, parse_email,
    parse_log_level, parse_size, parse_socket_addr,
};
use super::{
    Broker, Ca, Certificate, ChallengeKind, Config, Eab, Error, Est, HttpMode, LogTarget, Main,
    Metrics, Note, Origin,
};
use crate::crypto::{self, KeyType};

/// The longest an interim (local) leaf may live while the upstream is away.
const MAX_INTERIM_LIFETIME: u64 = 24 * 3600;

const MAIN_OPTIONS: &[&str] = &[
    // Read by the OpenWrt init script only: `enabled '0'` keeps the service from starting.
    "enabled",
    "state_dir",
    "log",
    "log_level",
    "alert_days",
    "alert_failures",
    "firewall_hook",
    "webroot",
    "audit_retention",
    "audit_max_bytes",
    "audit_archive_dir",
    "audit_syslog",
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
    "key_uri",
    "account_key_uri",
    "pin_file",
    "issuer",
];
const CA_OPTIONS: &[&str] = &[
    "lifetime",
    "max_lifetime",
    "allow_suffix",
    "allow_ip",
    "server_auth",
    "name",
    "key_uri",
    "pin_file",
    "crl_validity",
    "crl_file",
    "crl_url",
];
const EST_OPTIONS: &[&str] = &[
    "enabled",
    // Read by the OpenWrt init script: the interface (e.g. `lan`) whose address EST binds to.
    "interface",
    "listen",
    "max_connections",
    "max_header_bytes",
    "max_body_bytes",
    "request_timeout",
    "key_uri",
    "pin_file",
    "reenroll_alert",
];
const BROKER_OPTIONS: &[&str] = &[
    "enabled",
    "certificate",
    "challenge",
    "dns_hook",
    "upstream_wait",
    "interim_lifetime",
    "issuer",
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
/// Never fails: what cannot be imported comes back as notes.
pub(super) type Import<'a> = &'a dyn Fn() -> (Vec<Certificate>, Vec<Note>);

/// Section types of which gatecert reads only the first, as `@system[0]` is read on OpenWrt and
/// acme-common reads only its first `acme` section; a second one is ignored with a note.
const SINGLE: &[&str] = &["gatecert", "ca", "est", "metrics", "broker", "acme_server"];

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
    // The first section of each single-instance type, to ignore a second one.
    let mut seen: Vec<(&str, String)> = Vec::new();
    // The main section first: its `webroot` is the certificates' default.
    if let Some(section) = sections.iter().find(|s| s.kind == "gatecert") {
        cfg.main = main(&Reader { path, section }, cfg.main)?;
    }
    // Then the issuers: certificates and the broker name them, wherever they are in the file.
    for section in sections.iter().filter(|s| s.kind == "issuer") {
        let i = super::issuer::issuer(&Reader { path, section }, &cfg.issuers)?;
        cfg.issuers.push(i);
    }
    for section in &sections {
        let r = Reader { path, section };
        let kind = section.kind.as_str();
        if SINGLE.contains(&kind) {
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == kind) {
                cfg.notes.push(Note {
                    file: path.to_path_buf(),
                    line: section.line,
                    section: section.label(),
                    msg: format!(
                        "ignored: a second '{kind}' section; only the first ('{first}') is read \
                         (merge them)"
                    ),
                });
                continue;
            }
            seen.push((kind, section.label()));
        }
        match kind {
            "gatecert" | "issuer" => {} // read above
            "certificate" => {
                let cert = certificate(&r, cfg.main.webroot.as_deref(), &cfg.issuers)?;
                if let Some(dup) = certificates.iter().find(|c| c.name == cert.name) {
                    return Err(r.syntax(format!(
                        "certificate name '{}' is also used by the section on line {}",
                        cert.name, dup.line
                    )));
                }
                if let Some(dup) = super::keyref::shared_key(&cert, &certificates) {
                    return Err(r.err_at(
                        "key_uri",
                        format!(
                            "certificate '{}' (line {}) keeps its keys under the same object in \
                             the same token; give each certificate an object of its own",
                            dup.name, dup.line
                        ),
                    ));
                }
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
                    "unknown section type '{other}' (expected gatecert, certificate, issuer, ca, \
                     est, broker, metrics, label or acme_server)"
                )))
            }
        }
    }
    if certificates.is_empty() {
        if let Some(import) = import {
            let (imported, notes) = import();
            certificates = imported;
            cfg.notes.extend(notes);
        }
    }
    if !certificates.is_empty() {
        cfg.certificates = certificates;
    }
    for c in &mut cfg.certificates {
        c.firewall_hook.clone_from(&cfg.main.firewall_hook);
    }
    if let Some(section) = broker {
        cfg.broker = self::broker(
            &Reader { path, section },
            &cfg.certificates,
            &sections,
            &cfg.issuers,
        )?;
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
            section: self.section.label(),
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

    fn number<T>(&self, name: &str, min: T) -> Result<Option<T>, Error>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display,
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
    if let Some(h) = r.parse("firewall_hook", ABS_PATH, parse_abs_path)? {
        m.firewall_hook = Some(h);
    }
    m.webroot = r.parse("webroot", ABS_PATH, parse_abs_path)?;
    if let Some(d) = r.parse(
        "audit_retention",
        "a duration of at least 1d such as 30d",
        |v| parse_duration(v).filter(|d| *d >= 86_400),
    )? {
        m.audit_retention = Some(d);
    }
    if let Some(b) = r.parse(
        "audit_max_bytes",
        "a size of at least 4M such as 64M (K, M, G: binary units)",
        |v| parse_size(v).filter(|b| *b >= 4 << 20),
    )? {
        m.audit_max_bytes = b;
    }
    m.audit_archive_dir = r.parse("audit_archive_dir", ABS_PATH, parse_abs_path)?;
    if let Some(b) = r.parse("audit_syslog", "0 or 1", parse_bool)? {
        m.audit_syslog = b;
    }
    Ok(m)
}

/// One `config certificate` section; `default_webroot` (main's `webroot`) is its http-01 mode
/// when it sets neither `http_mode` nor `http_listen`.
fn certificate(
    r: &Reader,
    default_webroot: Option<&Path>,
    issuers: &[super::Issuer],
) -> Result<Certificate, Error> {
    r.check_known(CERT_OPTIONS)?;
    // An anonymous section (`uci add gatecert certificate`) is named as libuci names it
    // (`cfg020828`): that name is its directory under `<state_dir>/certs/`.
    let mut c = Certificate::standalone(&r.section.id, Vec::new());
    c.line = r.section.line;
    c.origin = Origin {
        file: r.path.to_path_buf(),
        section: r.section.label(),
    };
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
        None if listen.is_none() && default_webroot.is_some() => {
            if let Some(w) = default_webroot {
                c.http = HttpMode::Webroot(w.to_path_buf());
            }
        }
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
    [c.key_uri, c.account_key_uri] = key_uris(r, ["key_uri", "account_key_uri"])?;
    super::issuer::refuse_per_ca(r)?;
    c.issuers = super::issuer::list(r, issuers, c.email.as_deref(), c.profile.as_deref())?;
    if let Some(first) = c.issuers.first() {
        c = c.via(first);
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
pub(super) fn eab(r: &Reader) -> Result<Option<Eab>, Error> {
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
    ca.key_uri = key_uri(r)?;
    // At least 5 minutes: the service re-signs when a quarter is left, on its 1-minute tick.
    if let Some(d) = r.parse(
        "crl_validity",
        "a duration of at least 5m such as 6h",
        |v| parse_duration(v).filter(|d| *d >= 300),
    )? {
        ca.crl_validity = d;
    }
    ca.crl_file = r.parse("crl_file", ABS_PATH, parse_abs_path)?;
    if let Some((v, line)) = r.value("crl_url")? {
        if !is_http_url(v) {
            return Err(r.err(
                line,
                "crl_url",
                format!(
                    "bad value '{v}': expected the http(s) URL relying parties fetch the CRL from"
                ),
            ));
        }
        ca.crl_url = Some(v.to_string());
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
    est.key_uri = key_uri(r)?;
    if let Some(n) = r.number("reenroll_alert", 1u32)? {
        est.reenroll_alert = n;
    }
    Ok(est)
}

fn broker(
    r: &Reader,
    certificates: &[Certificate],
    sections: &[Section],
    issuers: &[super::Issuer],
) -> Result<Option<Broker>, Error> {
    r.check_known(BROKER_OPTIONS)?;
    if r.bool("enabled")? == Some(false) {
        return Ok(None);
    }
    let cert = match r.value("certificate")? {
        // A name, or a uci reference such as `@certificate[0]` (LuCI and `uci add` make
        // anonymous sections).
        Some((name, line)) => match certificates.iter().find(|c| {
            c.name == name
                || (name.starts_with('@')
                    && uci::lookup(sections, name).is_some_and(|i| {
                        sections[i].kind == "certificate" && sections[i].id == c.name
                    }))
        }) {
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
    let mut broker_issuers =
        super::issuer::list(r, issuers, cert.email.as_deref(), cert.profile.as_deref())?;
    if broker_issuers.is_empty() {
        broker_issuers.clone_from(&cert.issuers);
    }
    Ok(Some(Broker {
        certificate: cert.name.clone(),
        challenge,
        dns_hook,
        upstream_wait,
        interim_lifetime,
        issuers: broker_issuers,
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
#[path = "sections_tests.rs"]
mod tests;
