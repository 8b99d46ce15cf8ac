//! OpenWrt's acme-common schema (`/etc/config/acme`, edited by luci-app-acme) → certificates.
//!
//! Read when gatecert's own file defines no `certificate` section. It is another package's
//! schema, so options gatecert does not use (`credentials`, `calias`, `debug`, ...) are
//! ignored rather than rejected. Names follow `net/acme-common/files/acme.init`:
//!
//! ```text
//! config acme
//!     option account_email 'ops@example.org'
//! config cert 'example'
//!     option enabled 1
//!     list domains example.org
//!     option validation_method standalone|webroot|dns
//!     option dns dns_hook_name
//! ```
//!
//! Each imported certificate is named after its first domain and installs into
//! `/etc/ssl/acme`, as acme-common's hook does (`/etc/ssl/acme/<main_domain>.crt`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::sections::{check_challenge, key_type, Reader};
use super::uci;
use super::value::{parse_abs_path, parse_bool, parse_domain, parse_duration, parse_email};
use super::{Certificate, ChallengeKind, Error, HttpMode};

/// Where acme-common installs certificates.
pub const INSTALL_DIR: &str = "/etc/ssl/acme";

const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// acme.sh's short server names that acme-common users put in `acme_server`.
const SHORT_NAMES: &[(&str, &str)] = &[
    ("letsencrypt", LETSENCRYPT),
    ("letsencrypt_test", LETSENCRYPT_STAGING),
    ("zerossl", "https://acme.zerossl.com/v2/DV90"),
    ("buypass", "https://api.buypass.com/acme/directory"),
    (
        "buypass_test",
        "https://api.test4.buypass.no/acme/directory",
    ),
    ("google", "https://dv.acme-v02.api.pki.goog/directory"),
    (
        "googletest",
        "https://dv.acme-v02.test-api.pki.goog/directory",
    ),
];

/// Reads acme-common's file at `path`. A missing file yields no certificates.
pub(super) fn import(path: &Path) -> Result<Vec<Certificate>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    certificates(&text, path)
}

/// Turns acme-common's UCI text into certificates (enabled `cert` sections only).
pub(super) fn certificates(text: &str, path: &Path) -> Result<Vec<Certificate>, Error> {
    let sections = uci::parse(text).map_err(|e| Error::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        msg: e.msg,
    })?;
    // acme.init reads only the first `acme` section's globals.
    let email = match sections.iter().find(|s| s.kind == "acme") {
        Some(section) => {
            Reader { path, section }.parse("account_email", "an e-mail address", parse_email)?
        }
        None => None,
    };
    let mut out: Vec<Certificate> = Vec::new();
    for section in sections.iter().filter(|s| s.kind == "cert") {
        let r = Reader { path, section };
        if let Some(cert) = certificate(&r, email.as_deref())? {
            if let Some(dup) = out.iter().find(|c| c.name == cert.name) {
                return Err(r.err_at(
                    "domains",
                    format!(
                        "first domain '{}' is also the first domain of the section on line {}",
                        cert.name, dup.line
                    ),
                ));
            }
            out.push(cert);
        }
    }
    Ok(out)
}

/// One `config cert` section; `None` when `enabled` is off.
fn certificate(r: &Reader, email: Option<&str>) -> Result<Option<Certificate>, Error> {
    let bool_form = "1/0, yes/no, on/off, true/false or enabled/disabled";
    if r.parse("enabled", bool_form, parse_bool)? == Some(false) {
        return Ok(None);
    }
    // `domains` holds DNS names; an IP address there becomes an IP identifier.
    let names = r.items("domains", "a DNS name or IP address", |v| {
        match v.parse::<IpAddr>() {
            Ok(ip) => Some(Err(ip)),
            Err(_) => parse_domain(v, true).map(Ok),
        }
    })?;
    let Some(first) = names.first() else {
        return Err(r.err_at(
            "domains",
            "a cert section needs at least one `list domains`",
        ));
    };
    let name = match first {
        Ok(d) => d.clone(),
        Err(ip) => ip.to_string(),
    };
    let mut c = Certificate::standalone(&name, Vec::new());
    c.line = r.section.line;
    for n in names {
        match n {
            Ok(d) => c.domains.push(d),
            Err(ip) => c.ips.push(ip),
        }
    }
    c.email = email.map(str::to_string);
    c.install_dir = Some(PathBuf::from(INSTALL_DIR));

    let staging = match r.parse("staging", bool_form, parse_bool)? {
        Some(b) => b,
        None => r
            .parse("use_staging", bool_form, parse_bool)?
            .unwrap_or(false),
    };
    c.directory = Some(match r.value("acme_server")? {
        Some((v, _)) if v.starts_with("https://") || v.starts_with("http://") => v.to_string(),
        Some((v, line)) => match SHORT_NAMES.iter().find(|(short, _)| *short == v) {
            Some((_, url)) => (*url).to_string(),
            None => {
                return Err(r.err(
                    line,
                    "acme_server",
                    format!("bad value '{v}': expected an http(s) directory URL"),
                ))
            }
        },
        None if staging => LETSENCRYPT_STAGING.to_string(),
        None => LETSENCRYPT.to_string(),
    });

    if let Some(k) = key_type(r, "key_type")? {
        c.key_type = k;
    } else if let Some((v, line)) = r.value("keylength")? {
        // Deprecated spelling: `ec-256`, `ec-384`, or an RSA bit length.
        match super::KeyType::parse(&v.replace('-', "")) {
            Some(k) => c.key_type = k,
            None => {
                return Err(r.err(
                    line,
                    "keylength",
                    format!(
                        "'{v}' is not supported: gatecert makes EC keys only (ec-256 or ec-384)"
                    ),
                ))
            }
        }
    }

    let dns = r.parse("dns", "the name of a DNS hook", |v| {
        (!v.contains(char::is_whitespace)).then(|| PathBuf::from(v))
    })?;
    let webroot = r.parse("webroot", "an absolute path", parse_abs_path)?;
    let method = match r.value("validation_method")? {
        Some((v, _)) => v.to_string(),
        // acme.init's guess when the option is unset.
        None if dns.is_some() => "dns".into(),
        None if r.parse("standalone", bool_form, parse_bool)? == Some(true) => "standalone".into(),
        None => "webroot".into(),
    };
    match method.as_str() {
        "standalone" => {}
        "webroot" => match webroot {
            Some(w) => c.http = HttpMode::Webroot(w),
            None => {
                return Err(r.err_at(
                    "validation_method",
                    "validation_method 'webroot' needs `option webroot` (the web server's \
                     document root); or use validation_method 'standalone'",
                ))
            }
        },
        "dns" => {
            c.challenge = ChallengeKind::Dns01;
            c.dns_hook = dns;
        }
        other => {
            return Err(r.err_at(
                "validation_method",
                format!("bad value '{other}': expected standalone, webroot or dns"),
            ))
        }
    }
    if let Some(d) = r.parse(
        "dns_wait",
        "a duration such as 30s or plain seconds",
        parse_duration,
    )? {
        c.dns_wait = d;
    }
    // `days` (acme.sh's fixed renewal age) is checked but not used: gatecert renews by ARI or
    // at a fraction of the lifetime.
    r.parse("days", "a whole number of days", |v| v.parse::<u32>().ok())?;
    check_challenge(r, &c)?;
    Ok(Some(c))
}
