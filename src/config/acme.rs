//! OpenWrt's acme-common schema (`/etc/config/acme`, edited by luci-app-acme) → certificates.
//!
//! Read when gatecert's own file defines no `certificate` section. It is another package's
//! schema, so options gatecert does not use (`debug`, `state_dir`, ...) are ignored rather than
//! rejected. Option names and defaults follow `net/acme-common/files/acme.init` and
//! `net/acme-acmesh/files/hook.sh` in openwrt/packages:
//!
//! ```text
//! config acme
//!     option account_email 'ops@example.org'
//! config cert 'example'
//!     option enabled 1
//!     list domains example.org
//!     option validation_method webroot|standalone|alpn|dns
//!     option dns dns_cf
//!     list credentials 'CF_Token="..."'
//! ```
//!
//! The import never fails as a whole: each `cert` section is imported or skipped, and every
//! skip becomes a [`Note`] (logged to syslog at start and shown by `gatecert status`), so one
//! section gatecert cannot handle never stops EST or the local CA.
//!
//! Each imported certificate is named after its first domain, installs into `/etc/ssl/acme`
//! as acme-common's hook does (`/etc/ssl/acme/<main_domain>.crt`), and sends acme-common's
//! events through [`NOTIFY`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use super::sections::{check_challenge, key_type, Reader};
use super::uci;
use super::value::{parse_abs_path, parse_bool, parse_domain, parse_duration, parse_email};
use super::{Certificate, ChallengeKind, Error, HookEnv, HttpMode, Note, Origin};

/// Where acme-common installs certificates.
pub const INSTALL_DIR: &str = "/etc/ssl/acme";

/// acme-common's challenge directory (`CHALLENGE_DIR` in acme.init) for the default webroot
/// mode: uhttpd serves it through the `/www/.well-known/acme-challenge` symlink that
/// acme-common's (and gatecert's) uci-defaults create.
pub const CHALLENGE_DIR: &str = "/var/run/acme/challenge";

/// The adapter that runs an acme.sh dnsapi script (`dns 'dns_cf'`) as a gatecert DNS hook
/// (shipped as openwrt/gatecert/files/gatecert.acmesh-dnsapi).
pub const DNSAPI_ADAPTER: &str = "/usr/lib/gatecert/acmesh-dnsapi";

/// Sends acme-common's events (shipped as openwrt/gatecert/files/gatecert.deploy-hook).
pub const NOTIFY: &str = "/usr/lib/gatecert/deploy-hook";

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

const BOOL: &str = "1/0, yes/no, on/off, true/false or enabled/disabled";

/// Reads acme-common's file at `path` (at most [`super::MAX_CONFIG_BYTES`]). A missing file
/// yields nothing; anything else that goes wrong yields notes, never an error.
pub(super) fn import(path: &Path) -> (Vec<Certificate>, Vec<Note>) {
    match super::read_capped(path) {
        Ok(Some(text)) => certificates(&text, path),
        Ok(None) => (Vec::new(), Vec::new()),
        Err(e) => (
            Vec::new(),
            vec![Note {
                file: path.to_path_buf(),
                line: 0,
                section: "-".into(),
                msg: format!("not imported: {}", crate::errchain::one_line(&e)),
            }],
        ),
    }
}

/// A skipped section's note from the error that made it skip.
fn skipped(e: Error, section: &str) -> Note {
    match e {
        Error::Option {
            path,
            line,
            section,
            option,
            msg,
        } => Note {
            file: path,
            line,
            section,
            msg: format!("skipped: option '{option}': {msg}"),
        },
        Error::Syntax { path, line, msg } => Note {
            file: path,
            line,
            section: section.into(),
            msg: format!("skipped: {msg}"),
        },
        Error::Read { path, source } => Note {
            file: path,
            line: 0,
            section: section.into(),
            msg: format!("skipped: {source}"),
        },
        Error::TooLarge { path, limit } => Note {
            file: path,
            line: 0,
            section: section.into(),
            msg: format!("skipped: the file is larger than {limit} bytes"),
        },
    }
}

/// Turns acme-common's UCI text into certificates (enabled `cert` sections that gatecert can
/// serve) and notes (every section skipped, and why).
pub(super) fn certificates(text: &str, path: &Path) -> (Vec<Certificate>, Vec<Note>) {
    let mut notes = Vec::new();
    let sections = match uci::parse(text) {
        Ok(s) => s,
        Err(e) => {
            notes.push(Note {
                file: path.to_path_buf(),
                line: e.line,
                section: "-".into(),
                msg: format!("not imported: {} (uci rejects this file too)", e.msg),
            });
            return (Vec::new(), notes);
        }
    };
    // acme.init reads only the first `acme` section's globals.
    let email = match sections.iter().find(|s| s.kind == "acme") {
        Some(section) => {
            match (Reader { path, section }).parse(
                "account_email",
                "an e-mail address",
                parse_email,
            ) {
                Ok(e) => e,
                Err(e) => {
                    let mut n = skipped(e, &section.label());
                    n.msg = n.msg.replacen("skipped", "ignored", 1);
                    notes.push(n);
                    None
                }
            }
        }
        None => None,
    };
    let mut out: Vec<Certificate> = Vec::new();
    for section in sections.iter().filter(|s| s.kind == "cert") {
        let r = Reader { path, section };
        match certificate(&r, email.as_deref()) {
            Ok(Some(cert)) => {
                if let Some(dup) = out.iter().find(|c| c.name == cert.name) {
                    notes.push(Note {
                        file: path.to_path_buf(),
                        line: section.line,
                        section: section.label(),
                        msg: format!(
                            "skipped: first domain '{}' is also the first domain of section '{}' \
                             (line {})",
                            cert.name, dup.origin.section, dup.line
                        ),
                    });
                } else {
                    out.push(cert);
                }
            }
            Ok(None) => notes.push(Note {
                file: path.to_path_buf(),
                line: section.line,
                section: section.label(),
                msg: "skipped: disabled (option enabled '0')".into(),
            }),
            Err(e) => notes.push(skipped(e, &section.label())),
        }
    }
    (out, notes)
}

/// One `config cert` section; `None` when `enabled` is off; `Err` says why it is skipped.
fn certificate(r: &Reader, email: Option<&str>) -> Result<Option<Certificate>, Error> {
    if r.parse("enabled", BOOL, parse_bool)? == Some(false) {
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
    c.origin = Origin {
        file: r.path.to_path_buf(),
        section: r.section.label(),
    };
    for n in names {
        match n {
            Ok(d) => c.domains.push(d),
            Err(ip) => c.ips.push(ip),
        }
    }
    c.email = email.map(str::to_string);
    c.install_dir = Some(PathBuf::from(INSTALL_DIR));
    c.notify = Some(PathBuf::from(NOTIFY));

    let staging = match r.parse("staging", BOOL, parse_bool)? {
        Some(b) => b,
        None => r.parse("use_staging", BOOL, parse_bool)?.unwrap_or(false),
    };
    c.directory = Some(match r.value("acme_server")? {
        Some((v, _)) if v.starts_with("https://") || v.starts_with("http://") => v.to_string(),
        Some((v, line)) => match SHORT_NAMES.iter().find(|(short, _)| *short == v) {
            Some((_, url)) => (*url).to_string(),
            None => {
                return Err(r.err(
                    line,
                    "acme_server",
                    format!(
                        "bad value '{v}': expected an http(s) directory URL or an acme.sh \
                             server name (letsencrypt, zerossl, ...)"
                    ),
                ))
            }
        },
        None if staging => LETSENCRYPT_STAGING.to_string(),
        None => LETSENCRYPT.to_string(),
    });

    const NO_RSA: &str = "RSA keys are not supported: gatecert makes EC keys only (its crypto \
                          library, ring, cannot generate RSA keys); use key_type 'ec256' or 'ec384'";
    if r.value("key_type")?
        .is_some_and(|(v, _)| v.starts_with("rsa"))
    {
        return Err(r.err_at("key_type", NO_RSA));
    }
    if let Some(k) = key_type(r, "key_type")? {
        c.key_type = k;
    } else if let Some((v, line)) = r.value("keylength")? {
        // Deprecated spelling: `ec-256`, `ec-384`, or an RSA bit length.
        match super::KeyType::parse(&v.replace('-', "")) {
            Some(k) => c.key_type = k,
            None if v.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(r.err(line, "keylength", NO_RSA))
            }
            None => {
                return Err(r.err(
                    line,
                    "keylength",
                    format!("bad value '{v}': expected ec-256 or ec-384"),
                ))
            }
        }
    }

    let port = r.parse("listen_port", "a TCP port number (1-65535)", |v| {
        v.parse::<u16>().ok().filter(|p| *p > 0)
    })?;
    let any = |p: u16| SocketAddr::from(([0u16; 8], p));
    let dns = r.value("dns")?;
    let webroot = r.parse("webroot", "an absolute path", parse_abs_path)?;
    let method = match r.value("validation_method")? {
        Some((v, _)) => v.to_string(),
        // acme.init's guess when the option is unset.
        None if dns.is_some() => "dns".into(),
        None if r.parse("standalone", BOOL, parse_bool)? == Some(true) => "standalone".into(),
        None => "webroot".into(),
    };
    match method.as_str() {
        "standalone" => c.http = HttpMode::Standalone(any(port.unwrap_or(80))),
        // acme-common's default: challenge files in CHALLENGE_DIR, served by uhttpd through
        // the /www/.well-known/acme-challenge symlink; `webroot` (deprecated) replaces it.
        "webroot" => {
            c.http = HttpMode::Webroot(webroot.unwrap_or_else(|| PathBuf::from(CHALLENGE_DIR)))
        }
        "alpn" => {
            c.challenge = ChallengeKind::TlsAlpn01;
            c.tls_alpn_listen = any(port.unwrap_or(443));
        }
        "dns" => {
            c.challenge = ChallengeKind::Dns01;
            dns_hook(r, &mut c, dns)?;
        }
        other => {
            return Err(r.err_at(
                "validation_method",
                format!("bad value '{other}': expected webroot, standalone, alpn or dns"),
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
    c.renew_days = r.parse("days", "a whole number of days, at least 1", |v| {
        v.parse::<u32>().ok().filter(|d| *d > 0)
    })?;
    c.profile = r.string("cert_profile")?;
    check_challenge(r, &c)?;
    Ok(Some(c))
}

/// `dns`: an acme.sh dnsapi name (`dns_cf`) runs through [`DNSAPI_ADAPTER`] with the
/// section's `credentials`; an absolute path is a gatecert DNS hook.
fn dns_hook(r: &Reader, c: &mut Certificate, dns: Option<(&str, usize)>) -> Result<(), Error> {
    let Some((v, line)) = dns else {
        return Err(r.err_at(
            "dns",
            "validation_method 'dns' needs `option dns` (an acme.sh dnsapi name such as dns_cf)",
        ));
    };
    if v.starts_with('/') {
        c.dns_hook = Some(PathBuf::from(v));
        return Ok(());
    }
    let api_ok = v.len() > 4
        && v.starts_with("dns_")
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !api_ok {
        return Err(r.err(
            line,
            "dns",
            format!(
                "bad value '{v}': expected an acme.sh dnsapi name such as dns_cf, or an \
                     absolute path to a gatecert DNS hook"
            ),
        ));
    }
    c.dns_hook = Some(PathBuf::from(DNSAPI_ADAPTER));
    let mut env = vec![("GATECERT_DNSAPI".to_string(), v.to_string())];
    // acme.sh's alias modes: the TXT record goes under the alias (dalias wins, as in hook.sh).
    if let Some(alias) = r.string("dalias")?.or(r.string("calias")?) {
        match parse_domain(&alias, false) {
            Some(a) => env.push(("GATECERT_DNS_ALIAS".into(), a)),
            None => {
                return Err(r.err_at(
                    "calias",
                    format!("bad alias '{alias}': expected a DNS name"),
                ))
            }
        }
    }
    if let Some(opt) = r.section.option("credentials") {
        for (i, item) in opt.values.iter().enumerate() {
            // Never echo the value: it is a secret.
            let (key, value) = credential(item).ok_or_else(|| {
                r.err(
                    opt.line,
                    "credentials",
                    format!(
                        "item {} is not NAME=VALUE (NAME: letters, digits, '_'; the value may be \
                         quoted)",
                        i + 1
                    ),
                )
            })?;
            if key.starts_with("GATECERT_") || key == "PATH" {
                return Err(r.err(
                    opt.line,
                    "credentials",
                    format!("item {}: {key} may not be set", i + 1),
                ));
            }
            env.push((key, value));
        }
    }
    c.dns_env = HookEnv(env);
    Ok(())
}

/// `NAME="value"`, `NAME='value'` or `NAME=value`, as acme-common's `eval export` takes them.
fn credential(item: &str) -> Option<(String, String)> {
    let (key, value) = item.split_once('=')?;
    let key_ok = !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !key_ok {
        return None;
    }
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value);
    Some((key.to_string(), unquoted.to_string()))
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
\tlist credentials 'FREEDNS_Password=\"s3cr3t-pass\"'
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

    fn import_text(text: &str) -> (Vec<Certificate>, Vec<String>) {
        let (certs, notes) = certificates(text, Path::new("/etc/config/acme"));
        (certs, notes.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn imports_enabled_cert_sections() {
        let (certs, notes) = import_text(ACME);
        assert_eq!(certs.len(), 2);
        let w = &certs[0];
        assert_eq!(w.name, "example.org");
        assert_eq!(w.domains, vec!["example.org", "*.example.org"]);
        assert_eq!(w.directory.as_deref(), Some(LETSENCRYPT_STAGING));
        assert_eq!(w.challenge, ChallengeKind::Dns01);
        assert_eq!(w.dns_hook, Some(PathBuf::from(DNSAPI_ADAPTER)));
        assert_eq!(
            w.dns_env.0,
            vec![
                ("GATECERT_DNSAPI".to_string(), "dns_freedns".to_string()),
                ("GATECERT_DNS_ALIAS".into(), "example.com".into()),
                ("FREEDNS_User".into(), "ssladmin@example.org".into()),
                ("FREEDNS_Password".into(), "s3cr3t-pass".into()),
            ]
        );
        assert!(
            !format!("{w:?}").contains("s3cr3t-pass"),
            "credentials in Debug"
        );
        assert_eq!(w.email.as_deref(), Some("email@example.org"));
        assert_eq!(w.install_dir, Some(PathBuf::from(INSTALL_DIR)));
        assert_eq!(w.notify, Some(PathBuf::from(NOTIFY)));
        assert_eq!(w.origin.file, PathBuf::from("/etc/config/acme"));
        assert_eq!(w.origin.section, "example_wildcard");
        let s = &certs[1];
        assert_eq!(s.name, "example.net");
        assert_eq!(s.directory.as_deref(), Some(LETSENCRYPT));
        assert_eq!(s.http, HttpMode::Webroot(PathBuf::from("/www")));
        assert_eq!(s.key_type, KeyType::Ec384);
        assert_eq!(
            notes,
            vec!["/etc/config/acme:24: section 'off': skipped: disabled (option enabled '0')"]
        );
    }

    /// What luci-app-acme writes: an anonymous `acme` section, named `cert` sections, the
    /// default webroot mode (no `webroot`), an RSA key, `alpn` with a port, a dnsapi name with
    /// credentials, `days` and `cert_profile`.
    pub(crate) const LUCI: &str = "\
config acme
\toption account_email 'ops@example.org'
\toption debug '0'

config cert 'router'
\toption enabled '1'
\toption validation_method 'webroot'
\tlist domains 'router.example.org'
\toption key_type 'ec256'
\toption days '30'
\toption cert_profile 'shortlived'

config cert 'legacy'
\toption enabled '1'
\toption validation_method 'webroot'
\tlist domains 'legacy.example.org'
\toption key_type 'rsa2048'

config cert 'alpn'
\toption enabled '1'
\toption validation_method 'alpn'
\toption listen_port '8443'
\tlist domains 'alpn.example.org'

config cert 'cloudflare'
\toption enabled '1'
\toption validation_method 'dns'
\toption dns 'dns_cf'
\tlist credentials 'CF_Token=\"tok-SECRET\"'
\tlist credentials 'CF_Zone_ID=zone1'
\tlist domains 'cf.example.org'
\toption dns_wait '30s'
";

    #[test]
    fn luci_app_acme_file_imports_each_section_or_says_why_not() {
        let (certs, notes) = import_text(LUCI);
        let names: Vec<&str> = certs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["router.example.org", "alpn.example.org", "cf.example.org"]
        );
        let r = &certs[0];
        assert_eq!(r.http, HttpMode::Webroot(PathBuf::from(CHALLENGE_DIR)));
        assert_eq!(r.challenge, ChallengeKind::Http01);
        assert_eq!(r.renew_days, Some(30));
        assert_eq!(r.profile.as_deref(), Some("shortlived"));
        let a = &certs[1];
        assert_eq!(a.challenge, ChallengeKind::TlsAlpn01);
        assert_eq!(a.tls_alpn_listen.port(), 8443);
        let d = &certs[2];
        assert_eq!(d.dns_hook, Some(PathBuf::from(DNSAPI_ADAPTER)));
        assert_eq!(d.dns_wait, 30);
        assert_eq!(d.dns_env.0[0], ("GATECERT_DNSAPI".into(), "dns_cf".into()));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("/etc/config/acme:17: section 'legacy': skipped: option 'key_type': RSA keys are not supported"),
            "{notes:?}"
        );
        assert!(!notes.concat().contains("SECRET"));
    }

    #[test]
    fn standalone_honours_listen_port() {
        let text = "config cert c\n\tlist domains a.example\n\toption validation_method standalone\n\toption listen_port 8080\n";
        let (certs, notes) = import_text(text);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            certs[0].http,
            HttpMode::Standalone("[::]:8080".parse().unwrap())
        );
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
        assert_eq!(cfg.notes.len(), 1);
        assert_eq!(cfg.broker.unwrap().certificate, "example.org");
        std::fs::write(&own, "config certificate gw\n\tlist domain gw.local\n").unwrap();
        let cfg = Config::load_with_acme(&own, &acme).unwrap();
        assert_eq!(cfg.certificates.len(), 1);
        assert_eq!(cfg.certificates[0].name, "gw");
        assert!(cfg.notes.is_empty());
        // A file uci itself rejects: nothing imported, one note, the built-in default stays.
        std::fs::write(&acme, "config cert c\n;\n").unwrap();
        std::fs::write(&own, "").unwrap();
        let cfg = Config::load_with_acme(&own, &acme).unwrap();
        assert_eq!(cfg.certificates[0].name, "gateway");
        assert!(
            cfg.notes[0].msg.contains("not imported: invalid command"),
            "{:?}",
            cfg.notes
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Sections skipped, each note naming the file, line, section, option and reason; the
    /// other sections are still imported.
    #[test]
    fn skips_name_the_acme_file_and_never_stop_the_rest() {
        let table: &[(&str, &str)] = &[
            (
                "config cert c\n\tlist domains a.example\n\toption key_type rsa4096\n",
                "/etc/config/acme:3: section 'c': skipped: option 'key_type': RSA keys are not supported",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption keylength 4096\n",
                "/etc/config/acme:3: section 'c': skipped: option 'keylength': RSA keys are not supported",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption validation_method dns\n",
                "/etc/config/acme:1: section 'c': skipped: option 'dns': validation_method 'dns' needs `option dns`",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption validation_method dns\n\toption dns 'cf'\n",
                "/etc/config/acme:4: section 'c': skipped: option 'dns': bad value 'cf': expected an acme.sh dnsapi name",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption dns dns_cf\n\tlist credentials 'no equals SECRET'\n",
                "/etc/config/acme:4: section 'c': skipped: option 'credentials': item 1 is not NAME=VALUE",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption validation_method carrier-pigeon\n",
                "/etc/config/acme:3: section 'c': skipped: option 'validation_method': bad value 'carrier-pigeon'",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption acme_server nowhere\n",
                "/etc/config/acme:3: section 'c': skipped: option 'acme_server': bad value 'nowhere'",
            ),
            (
                "config cert c\n\tlist domains a.example\n\toption listen_port 0\n",
                "/etc/config/acme:3: section 'c': skipped: option 'listen_port': bad value '0'",
            ),
            (
                "config cert c\n\toption enabled 1\n",
                "/etc/config/acme:1: section 'c': skipped: option 'domains'",
            ),
            (
                "config cert\n\tlist domains a.example\n\toption key_type rsa2048\n",
                "/etc/config/acme:3: section '@cert[0]': skipped: option 'key_type'",
            ),
        ];
        for (text, want) in table {
            let good = "config cert ok\n\tlist domains ok.example\n";
            let (certs, notes) = import_text(&format!("{text}{good}"));
            assert_eq!(notes.len(), 1, "{text:?}: {notes:?}");
            assert!(
                notes[0].starts_with(want),
                "{text:?}:\n got {}\nwant {want}",
                notes[0]
            );
            assert!(!notes[0].contains("SECRET"), "{}", notes[0]);
            assert_eq!(certs.len(), 1, "{text:?}");
            assert_eq!(certs[0].name, "ok.example");
        }
    }

    #[test]
    fn short_server_names_and_ips() {
        let text = "config cert c\n\tlist domains 192.0.2.1\n\tlist domains a.example\n\toption validation_method standalone\n\toption acme_server zerossl\n\toption unknown_option x\n";
        let (certs, _) = import_text(text);
        assert_eq!(certs[0].name, "192.0.2.1");
        assert_eq!(certs[0].ips, vec![IpAddr::from([192, 0, 2, 1])]);
        assert_eq!(certs[0].domains, vec!["a.example"]);
        assert_eq!(
            certs[0].directory.as_deref(),
            Some("https://acme.zerossl.com/v2/DV90")
        );
    }
}
