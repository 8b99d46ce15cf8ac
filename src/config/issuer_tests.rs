//! Tests for `config issuer` and `list issuer`.

use std::path::{Path, PathBuf};

use super::super::{Config, Error};

const FILE: &str = "/etc/config/gatecert";

fn parse(text: &str) -> Result<Config, Error> {
    Config::parse(text, Path::new(FILE))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

/// README's "Backup issuers" example.
const BACKUP: &str = "\
config issuer 'primary'
\toption directory 'https://acme-v02.api.letsencrypt.org/directory'

config issuer 'backup'
\toption directory 'https://acme.zerossl.com/v2/DV90'
\toption eab_kid 'kid-1'
\toption eab_hmac_key 'c2VjcmV0LWhtYWMta2V5'
\toption profile 'shortlived'

config certificate 'gateway'
\tlist domain 'gw.example.com'
\toption email 'ops@example.com'
\tlist issuer 'primary'
\tlist issuer 'backup'

config broker 'upstream'
\tlist issuer 'backup'
";

#[test]
fn issuers_resolve_in_order_with_the_certificates_email() {
    let cfg = parse(BACKUP).unwrap();
    assert_eq!(cfg.issuers.len(), 2);
    let gw = &cfg.certificates[0];
    let names: Vec<&str> = gw.issuers.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["primary", "backup"]);
    // The certificate's own fields are the first issuer's.
    assert_eq!(
        gw.directory.as_deref(),
        Some(gw.issuers[0].directory.as_str())
    );
    assert_eq!(gw.eab, None);
    // email falls back to the certificate's; EAB and profile are the issuer's own.
    assert!(gw
        .issuers
        .iter()
        .all(|i| i.email.as_deref() == Some("ops@example.com")));
    let b = gw.via(&gw.issuers[1]);
    assert_eq!(
        b.directory.as_deref(),
        Some("https://acme.zerossl.com/v2/DV90")
    );
    assert_eq!(b.eab.as_ref().map(|e| e.kid.as_str()), Some("kid-1"));
    assert_eq!(b.profile.as_deref(), Some("shortlived"));
    assert_eq!(b.ca_bundle, None::<PathBuf>);
    // The broker's own list wins over the certificate's.
    let broker = cfg.broker.unwrap();
    assert_eq!(broker.issuers.len(), 1);
    assert_eq!(broker.issuers[0].name, "backup");
    assert!(
        !format!("{:?}", cfg.issuers).contains("c2VjcmV0"),
        "EAB key in Debug"
    );
}

#[test]
fn the_broker_defaults_to_its_certificates_issuers_and_directory_stays_the_shorthand() {
    let text = BACKUP.replace("\tlist issuer 'backup'\n", "");
    let text = text.replace(
        "config broker 'upstream'\n",
        "config broker 'upstream'\n\toption enabled 1\n",
    );
    let cfg = parse(&text).unwrap();
    assert_eq!(cfg.certificates[0].issuers.len(), 1);
    assert_eq!(cfg.broker.unwrap().issuers.len(), 1);
    let one = parse("config certificate gw\n\tlist domain gw.example\n\toption directory https://ca.example/dir\n").unwrap();
    assert!(one.certificates[0].issuers.is_empty());
    assert_eq!(
        one.certificates[0].directory.as_deref(),
        Some("https://ca.example/dir")
    );
}

#[test]
fn bad_issuer_config_names_file_line_and_option() {
    let iss = "config issuer 'a'\n\toption directory 'https://a.example/dir'\n";
    let table: &[(String, &str)] = &[
        (
            format!("{iss}config certificate gw\n\tlist domain gw.example\n\tlist issuer 'nope'\n"),
            "/etc/config/gatecert:5: section 'gw', option 'issuer': no issuer section named 'nope' (known: a)",
        ),
        (
            format!("{iss}config certificate gw\n\tlist domain gw.example\n\tlist issuer 'a'\n\tlist issuer 'a'\n"),
            "/etc/config/gatecert:5: section 'gw', option 'issuer': issuer 'a' is listed twice",
        ),
        (
            format!("{iss}config certificate gw\n\tlist domain gw.example\n\toption directory 'https://b.example/dir'\n\tlist issuer 'a'\n"),
            "/etc/config/gatecert:6: section 'gw', option 'issuer': set either `option directory` (the one-issuer shorthand) or `list issuer`, not both",
        ),
        (
            format!("{iss}config certificate gw\n\tlist domain gw.example\n\toption eab_kid k\n\toption eab_hmac_key c2VjcmV0\n\tlist issuer 'a'\n"),
            "/etc/config/gatecert:7: section 'gw', option 'issuer': set either `option eab_kid`",
        ),
        (
            format!("{iss}config issuer 'b'\n\toption directory 'https://a.example/dir'\n"),
            "/etc/config/gatecert:4: section 'b', option 'directory': issuer 'a' (line 1) has the same directory",
        ),
        (
            "config issuer 'a'\n\toption email ops@example.com\n".into(),
            "/etc/config/gatecert:1: section 'a', option 'directory': an issuer section needs `option directory`",
        ),
        (
            "config issuer 'a'\n\toption directory 'ftp://a.example/'\n".into(),
            "/etc/config/gatecert:2: section 'a', option 'directory': bad value 'ftp://a.example/'",
        ),
        (
            "config issuer\n\toption directory 'https://a.example/dir'\n".into(),
            "/etc/config/gatecert:1: an issuer section needs a name",
        ),
        (
            format!("{iss}\toption timeout 30\n"),
            "/etc/config/gatecert:3: section 'a', option 'timeout': unknown option for a 'issuer' section",
        ),
        (
            format!("{iss}config certificate gw\n\tlist domain gw.example\n\tlist issuer a\nconfig broker\n\tlist issuer 'zz'\n"),
            "/etc/config/gatecert:7: section '@broker[0]', option 'issuer': no issuer section named 'zz' (known: a)",
        ),
    ];
    for (text, want) in table {
        let got = err(text);
        assert!(got.starts_with(want), "{text:?}\n got {got}\nwant {want}");
    }
    // Issuer sections may follow the certificates that name them.
    let later = "config certificate gw\n\tlist domain gw.example\n\tlist issuer a\nconfig issuer 'a'\n\toption directory 'https://a.example/dir'\n";
    assert_eq!(parse(later).unwrap().certificates[0].issuers[0].name, "a");
}
