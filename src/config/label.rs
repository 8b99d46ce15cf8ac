//! `config label 'NAME'`: a named profile of the local CA, served by EST under
//! `/.well-known/est/NAME/` (RFC 7030 §3.2.2).

use super::sections::Reader;
use super::value::{parse_bool, parse_domain, parse_duration};
use super::{Ca, Error, Label};

const LABEL_OPTIONS: &[&str] = &["lifetime", "allow_suffix", "server_auth"];

/// The EST operation names, which a label may not be (the path would be ambiguous).
const OPERATIONS: &[&str] = &[
    "cacerts",
    "simpleenroll",
    "simplereenroll",
    "serverkeygen",
    "csrattrs",
    "fullcmc",
];

/// True for a usable label: 1 to 64 of `A-Z a-z 0-9 _` (a UCI section name), not an operation
/// name. RFC 7030 §3.2.2 allows any path segment; this keeps labels plain in URLs and logs.
pub fn is_label_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !OPERATIONS.contains(&s)
}

/// Reads one label section; `ca` is the CA section it must stay within (read after the whole
/// file, so the `ca` section may come later).
pub(super) fn label(r: &Reader, ca: &Ca) -> Result<Label, Error> {
    r.check_known(LABEL_OPTIONS)?;
    let Some(name) = r.section.name.as_deref() else {
        return Err(r.syntax(
            "a label section needs a name, the URL path segment: config label 'NAME'".to_string(),
        ));
    };
    if !is_label_name(name) {
        return Err(r.syntax(format!(
            "label name '{name}' must be 1-64 of A-Z a-z 0-9 _ and not an EST operation name"
        )));
    }
    let lifetime = r.parse(
        "lifetime",
        "a duration of at least 1s such as 24h or 7d",
        |v| parse_duration(v).filter(|d| *d > 0),
    )?;
    if let Some(l) = lifetime.filter(|l| *l > ca.max_lifetime) {
        return Err(r.err_at(
            "lifetime",
            format!(
                "lifetime ({l}s) exceeds the ca section's max_lifetime ({}s)",
                ca.max_lifetime
            ),
        ));
    }
    let allow_suffix: Vec<String> = r.items(
        "allow_suffix",
        "a DNS suffix such as cameras.sensors.example.com",
        |v| parse_domain(v.strip_prefix('.').unwrap_or(v), false),
    )?;
    if let Some(s) = allow_suffix.iter().find(|s| {
        !ca.allow_suffix
            .iter()
            .any(|c| crate::ca::dns_in_subtree(s, c))
    }) {
        return Err(r.err_at(
            "allow_suffix",
            format!(
                "'{s}' is not within the ca section's allow_suffix {:?}: a label can only narrow it",
                ca.allow_suffix
            ),
        ));
    }
    let server_auth = match r.parse("server_auth", "1/0, yes/no, on/off, true/false", parse_bool)? {
        None => ca.server_auth,
        Some(true) if !ca.server_auth => {
            return Err(r.err_at(
                "server_auth",
                "the ca section's server_auth is off: a label can only narrow it",
            ))
        }
        Some(b) => b,
    };
    Ok(Label {
        name: name.to_string(),
        line: r.section.line,
        lifetime,
        allow_suffix,
        server_auth,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, Label};

    fn parse(text: &str) -> Result<Config, crate::config::Error> {
        Config::parse(text, Path::new("/etc/config/gatecert"))
    }

    const CA: &str =
        "config ca local\n\tlist allow_suffix sensors.example\n\toption server_auth 1\n";

    #[test]
    fn labels_narrow_the_ca() {
        let cfg = parse(&format!(
            "config label cameras\n\toption lifetime 2h\n\tlist allow_suffix cam.sensors.example\n\
             \toption server_auth 0\n{CA}config label meters\n"
        ))
        .unwrap();
        assert_eq!(
            cfg.labels,
            vec![
                Label {
                    name: "cameras".into(),
                    line: 1,
                    lifetime: Some(7200),
                    allow_suffix: vec!["cam.sensors.example".into()],
                    server_auth: false,
                },
                Label {
                    name: "meters".into(),
                    line: 8,
                    lifetime: None,
                    allow_suffix: vec![],
                    server_auth: true,
                },
            ]
        );
    }

    #[test]
    fn bad_labels_name_the_line_and_the_reason() {
        let table: &[(&str, &str)] = &[
            (
                "config label cam\n\toption lifetime 8d\n",
                ":2: section 'cam', option 'lifetime': lifetime (691200s) exceeds",
            ),
            (
                "config label cam\n\tlist allow_suffix other.example\n",
                ":2: section 'cam', option 'allow_suffix': 'other.example' is not within",
            ),
            (
                "config label cam\n\toption server_auth 1\n",
                ":2: section 'cam', option 'server_auth': the ca section's server_auth is off",
            ),
            (
                "config label cam\n\toption colour red\n",
                ":2: section 'cam', option 'colour': unknown option",
            ),
            ("config label\n", ":1: a label section needs a name"),
            (
                "config label 'simpleenroll'\n",
                ":1: label name 'simpleenroll'",
            ),
            (
                "config label 'a/b'\n",
                ":1: invalid character in name field 'a/b'",
            ),
        ];
        for (text, want) in table {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
