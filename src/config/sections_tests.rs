//! Tests for the section builders (`sections.rs`).

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
    gw.origin.file = PathBuf::from(FILE);
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
            "config my-type 'x'\n",
            "/etc/config/gatecert:1: unknown section type 'my-type'",
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

/// What LuCI and `uci add` write: anonymous sections, a second singleton section,
/// `@certificate[0]` references, `option enabled` without a value.
#[test]
fn uci_as_luci_writes_it() {
    let text = "\
config gatecert
\toption log_level 'debug'
config gatecert
\toption log_level 'error'
config certificate
\toption directory 'https://ca.example/dir'
\tlist domain 'gw.example'
config certificate
\tlist domain 'b.local'
config ca
\tlist allow_suffix 'lan'
config ca
\tlist allow_suffix 'evil.example'
config est
\toption enabled
config broker
\toption certificate '@certificate[0]'
";
    let cfg = parse(text).unwrap();
    assert_eq!(cfg.main.log_level, log::LevelFilter::Debug);
    let names: Vec<&str> = cfg.certificates.iter().map(|c| c.name.as_str()).collect();
    // libuci's names: a counter that anonymous sections bump twice, and the type's hash.
    assert_eq!(names, ["cfg060828", "cfg080828"]);
    assert_eq!(cfg.certificates[1].origin.section, "@certificate[1]");
    assert_eq!(cfg.ca.allow_suffix, vec!["lan".to_string()]);
    assert!(
        cfg.est.enabled,
        "`option enabled` with no value is unset: the default"
    );
    assert_eq!(cfg.broker.unwrap().certificate, "cfg060828");
    let notes: Vec<String> = cfg.notes.iter().map(|n| n.to_string()).collect();
    assert_eq!(
        notes,
        [
            "/etc/config/gatecert:3: section '@gatecert[1]': ignored: a second 'gatecert' section; only the first ('@gatecert[0]') is read (merge them)",
            "/etc/config/gatecert:12: section '@ca[1]': ignored: a second 'ca' section; only the first ('@ca[0]') is read (merge them)",
        ]
    );
    let err = parse("config certificate 'c'\n\tlist domain a.example\n\toption directory https://x.example/d\nconfig broker\n\toption certificate '@certificate[1]'\n").unwrap_err();
    assert!(
        err.to_string()
            .contains("no certificate section named '@certificate[1]'"),
        "{err}"
    );
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
}

/// The config the OpenWrt package ships: no certificate section (so acme-common's are
/// imported), `lan` among the suffixes, EST bound to the lan interface by the init script,
/// the fw4 hook for standalone listeners.
#[test]
fn shipped_openwrt_config() {
    let text = include_str!("../../openwrt/gatecert/files/gatecert.config");
    let cfg = parse(text).unwrap();
    assert_eq!(cfg.certificates.len(), 1);
    assert_eq!(
        cfg.certificates[0].origin.file,
        PathBuf::from(crate::config::BUILT_IN)
    );
    assert_eq!(
        cfg.ca.allow_suffix,
        vec!["lan".to_string(), "local".to_string()]
    );
    assert_eq!(
        cfg.main.firewall_hook,
        Some(PathBuf::from("/usr/lib/gatecert/fw4-port"))
    );
    assert_eq!(
        cfg.certificates[0].firewall_hook,
        Some(PathBuf::from("/usr/lib/gatecert/fw4-port"))
    );
    assert!(cfg.notes.is_empty(), "{:?}", cfg.notes);
    // A certificate section added to it answers http-01 through uhttpd, not on port 80.
    let added = format!("{text}\nconfig certificate\n\tlist domain 'r.example.org'\n");
    let cfg = parse(&added).unwrap();
    assert_eq!(
        cfg.certificates[0].http,
        HttpMode::Webroot(PathBuf::from("/var/run/acme/challenge"))
    );
    let own = format!(
        "{text}\nconfig certificate\n\tlist domain 'r.example.org'\n\toption http_listen ':8080'\n"
    );
    let cfg = parse(&own).unwrap();
    assert_eq!(
        cfg.certificates[0].http,
        HttpMode::Standalone("[::]:8080".parse().unwrap())
    );
    // With an acme-common file beside it, its certificates are the ones used.
    let dir = std::env::temp_dir().join(format!("gatecert-shipped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gatecert"), text).unwrap();
    std::fs::write(
        dir.join("acme"),
        "config cert 'router'\n\tlist domains 'router.example.org'\n",
    )
    .unwrap();
    let cfg = Config::load_with_acme(&dir.join("gatecert"), &dir.join("acme")).unwrap();
    assert_eq!(cfg.certificates[0].name, "router.example.org");
    assert_eq!(cfg.certificates[0].origin.file, dir.join("acme"));
    assert_eq!(cfg.certificates[0].origin.section, "router");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn crl_and_alert_options() {
    let cfg = parse(
        "config ca 'local'\n\toption crl_validity '2h'\n\toption crl_file '/tmp/g.crl'\n\
         \toption crl_url 'http://gw.local/crl'\nconfig est 'est'\n\toption reenroll_alert '3'\n",
    )
    .unwrap();
    assert_eq!(cfg.ca.crl_validity, 7200);
    assert_eq!(cfg.ca.crl_file.as_deref(), Some(Path::new("/tmp/g.crl")));
    assert_eq!(cfg.ca.crl_url.as_deref(), Some("http://gw.local/crl"));
    assert_eq!(cfg.est.reenroll_alert, 3);
    for (text, option, says) in [
        (
            "config ca 'local'\n\toption crl_validity '1m'\n",
            "crl_validity",
            "at least 5m",
        ),
        (
            "config ca 'local'\n\toption crl_url 'ldap://x'\n",
            "crl_url",
            "http(s) URL",
        ),
        (
            "config ca 'local'\n\toption crl_file 'rel.crl'\n",
            "crl_file",
            "absolute",
        ),
        (
            "config est 'est'\n\toption reenroll_alert '0'\n",
            "reenroll_alert",
            "",
        ),
    ] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains(option) && err.contains(says), "{text}: {err}");
    }
}

/// Issue 13: the audit options, their defaults (retention: twice the longest leaf lifetime,
/// at least 30 days) and their errors.
#[test]
fn audit_options_and_the_default_retention() {
    let cfg = parse("config gatecert main\n").unwrap();
    let p = cfg.audit_policy();
    assert_eq!(p.retention, 30 * 86_400);
    assert_eq!(p.budget, crate::audit::DEFAULT_BUDGET);
    assert_eq!(p.file_bytes(), 2 << 20);
    assert_eq!((p.archive_dir, p.syslog), (None, None));

    // A CA that may issue 30-day leaves: history for 60 days.
    let cfg = parse("config ca local\n\toption lifetime 1d\n\toption max_lifetime 30d\n").unwrap();
    assert_eq!(cfg.audit_policy().retention, 60 * 86_400);

    let cfg = parse(
        "config gatecert main\n\toption audit_retention 90d\n\toption audit_max_bytes 256M\n\
         \toption audit_archive_dir /mnt/usb/gatecert-audit\n\toption audit_syslog 1\n",
    )
    .unwrap();
    let p = cfg.audit_policy();
    assert_eq!(p.retention, 90 * 86_400);
    assert_eq!(p.budget, 256 << 20);
    assert_eq!(p.file_bytes(), 8 << 20);
    assert_eq!(
        p.archive_dir.as_deref(),
        Some(Path::new("/mnt/usb/gatecert-audit"))
    );
    assert_eq!(p.syslog.as_deref(), Some(Path::new(crate::audit::DEV_LOG)));

    for (text, want) in [
        ("\toption audit_max_bytes 1M\n", "at least 4M"),
        ("\toption audit_max_bytes lots\n", "bad value 'lots'"),
        ("\toption audit_retention 2h\n", "at least 1d"),
        ("\toption audit_archive_dir usb\n", "audit_archive_dir"),
        ("\toption audit_syslog maybe\n", "audit_syslog"),
    ] {
        let e = parse(&format!("config gatecert main\n{text}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}
