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
    match super::read_capped(path)? {
        Some(text) => certificates(&text, path),
        None => Ok(Vec::new()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::crypto::KeyType;

    const ACME: &str = "\
config acme
\toption account_email 'email@example.org'
\toption debug 0

config cert 'example_wildcard'
\toption enabled 1
\toption staging 1
\tlist domains example.org
\tlist domains *.example.org
\toption validation_method dns
\toption dns \"dns_freedns\"
\tlist credentials 'FREEDNS_User=\"ssladmin@example.org\"'
\toption calias \"example.com\"

config cert 'example_subdomain'
\toption enabled 1
\tlist domains example.net
\tlist domains www.example.net
\toption validation_method webroot
\toption webroot /www
\toption key_type ec384

config cert 'off'
\toption enabled 0
\tlist domains off.example
";

    #[test]
    fn imports_enabled_cert_sections() {
        let certs = certificates(ACME, Path::new("/etc/config/acme")).unwrap();
        assert_eq!(certs.len(), 2);
        let w = &certs[0];
        assert_eq!(w.name, "example.org");
        assert_eq!(w.domains, vec!["example.org", "*.example.org"]);
        assert_eq!(w.directory.as_deref(), Some(LETSENCRYPT_STAGING));
        assert_eq!(w.challenge, ChallengeKind::Dns01);
        assert_eq!(w.dns_hook, Some(PathBuf::from("dns_freedns")));
        assert_eq!(w.email.as_deref(), Some("email@example.org"));
        assert_eq!(w.install_dir, Some(PathBuf::from(INSTALL_DIR)));
        let s = &certs[1];
        assert_eq!(s.name, "example.net");
        assert_eq!(s.directory.as_deref(), Some(LETSENCRYPT));
        assert_eq!(s.http, HttpMode::Webroot(PathBuf::from("/www")));
        assert_eq!(s.key_type, KeyType::Ec384);
    }

    #[test]
    fn load_with_acme_only_without_own_certificates() {
        let dir = std::env::temp_dir().join(format!("gatecert-acme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let own = dir.join("gatecert");
        let acme = dir.join("acme");
        std::fs::write(&acme, ACME).unwrap();
        std::fs::write(&own, "config broker\n").unwrap();
        let cfg = Config::load_with_acme(&own, &acme).unwrap();
        assert_eq!(cfg.certificates.len(), 2);
        assert_eq!(cfg.broker.unwrap().certificate, "example.org");
        std::fs::write(&own, "config certificate gw\n\tlist domain gw.local\n").unwrap();
        let cfg = Config::load_with_acme(&own, &acme).unwrap();
        assert_eq!(cfg.certificates.len(), 1);
        assert_eq!(cfg.certificates[0].name, "gw");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn acme_errors_name_the_acme_file() {
        let table: &[(&str, &str)] = &[
            (
                "config cert c\n\tlist domains a.example\n\toption key_type rsa2048\n\toption validation_method standalone\n",
                "/etc/config/acme:3: section 'c', option 'key_type': 'rsa2048' is not supported",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption keylength 4096\n\toption validation_method standalone\n",
                "/etc/config/acme:3: section 'c', option 'keylength': '4096' is not supported",
            ),
            (
                "config cert c\n\tlist domains a.example\n",
                "/etc/config/acme:1: section 'c', option 'validation_method': validation_method 'webroot' needs",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption validation_method dns\n",
                "/etc/config/acme:3: section 'c', option 'dns_hook': challenge 'dns-01' needs",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption validation_method standalone\n\toption acme_server nowhere\n",
                "/etc/config/acme:4: section 'c', option 'acme_server': bad value 'nowhere'",
            ),
            ("config cert c\n\toption enabled 1\n", "/etc/config/acme:1: section 'c', option 'domains'"),
        ];
        for (text, want) in table {
            let err = certificates(text, Path::new("/etc/config/acme")).expect_err(text);
            assert!(err.to_string().starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn short_server_names_and_ips() {
        let text = "config cert c\n\tlist domains 192.0.2.1\n\tlist domains a.example\n\toption validation_method standalone\n\toption acme_server zerossl\n\toption unknown_option x\n";
        let certs = certificates(text, Path::new("acme")).unwrap();
        assert_eq!(certs[0].name, "192.0.2.1");
        assert_eq!(certs[0].ips, vec![IpAddr::from([192, 0, 2, 1])]);
        assert_eq!(certs[0].domains, vec!["a.example"]);
        assert_eq!(
            certs[0].directory.as_deref(),
            Some("https://acme.zerossl.com/v2/DV90")
        );
    }
}
