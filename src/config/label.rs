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

/// True for a usable label: 1 to 64 of `A-Z a-z 0-9 - _ .`, not `.`/`..`, not an operation name.
/// RFC 7030 §3.2.2 allows any path segment; this keeps labels plain in URLs, logs and metrics.
pub fn is_label_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
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
            "label name '{name}' must be 1-64 of A-Z a-z 0-9 - _ . and not an EST operation name"
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
