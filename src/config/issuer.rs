//! `config issuer 'NAME'` sections and the `list issuer` that names them, in a certificate or
//! the broker section, in order of preference (README, "Backup issuers").

use super::sections::{eab, Reader};
use super::value::{is_http_url, parse_abs_path, parse_email};
use super::{Error, Issuer};

const ISSUER_OPTIONS: &[&str] = &[
    "directory",
    "ca_bundle",
    "email",
    "eab_kid",
    "eab_hmac_key",
    "profile",
];

/// Options a certificate section may not set next to `list issuer`: they belong to one CA, so
/// they go in its `config issuer` section.
const PER_CA: &[&str] = &["directory", "ca_bundle", "eab_kid", "eab_hmac_key"];

/// One `config issuer 'NAME'` section. `others` are the issuers read before it, to refuse a
/// second section with the same directory (the two would share one account).
pub(super) fn issuer(r: &Reader, others: &[Issuer]) -> Result<Issuer, Error> {
    r.check_known(ISSUER_OPTIONS)?;
    let Some(name) = r.section.name.clone() else {
        return Err(r.syntax(
            "an issuer section needs a name, the one `list issuer` uses: config issuer 'NAME'"
                .to_string(),
        ));
    };
    let directory = match r.value("directory")? {
        Some((v, _)) if is_http_url(v) => v.to_string(),
        Some((v, line)) => {
            return Err(r.err(
                line,
                "directory",
                format!("bad value '{v}': expected the ACME directory's http(s) URL"),
            ))
        }
        None => {
            return Err(r.err_at(
                "directory",
                "an issuer section needs `option directory` (its ACME directory URL)",
            ))
        }
    };
    if let Some(dup) = others.iter().find(|i| i.directory == directory) {
        return Err(r.err_at(
            "directory",
            format!(
                "issuer '{}' (line {}) has the same directory; one CA is one issuer section",
                dup.name, dup.line
            ),
        ));
    }
    Ok(Issuer {
        name,
        line: r.section.line,
        directory,
        ca_bundle: r.parse("ca_bundle", "an absolute path", parse_abs_path)?,
        email: r.parse("email", "an e-mail address", parse_email)?,
        eab: eab(r)?,
        profile: r.string("profile")?,
    })
}

/// The section's `list issuer`, resolved against `known`, in order; `email` and `profile` fill
/// in what an issuer leaves unset. Empty when the section has no `issuer` option.
pub(super) fn list(
    r: &Reader,
    known: &[Issuer],
    email: Option<&str>,
    profile: Option<&str>,
) -> Result<Vec<Issuer>, Error> {
    let Some(opt) = r.section.option("issuer") else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Issuer> = Vec::new();
    for name in opt.values.iter().flat_map(|v| v.split_whitespace()) {
        let Some(found) = known.iter().find(|i| i.name == name) else {
            let names: Vec<&str> = known.iter().map(|i| i.name.as_str()).collect();
            return Err(r.err(
                opt.line,
                "issuer",
                if names.is_empty() {
                    format!("no issuer section named '{name}' (there are none)")
                } else {
                    format!(
                        "no issuer section named '{name}' (known: {})",
                        names.join(", ")
                    )
                },
            ));
        };
        if out.iter().any(|i| i.name == name) {
            return Err(r.err(
                opt.line,
                "issuer",
                format!("issuer '{name}' is listed twice"),
            ));
        }
        let mut i = found.clone();
        if i.email.is_none() {
            i.email = email.map(str::to_string);
        }
        if i.profile.is_none() {
            i.profile = profile.map(str::to_string);
        }
        out.push(i);
    }
    if out.is_empty() {
        return Err(r.err(opt.line, "issuer", "names no issuer"));
    }
    Ok(out)
}

/// A certificate section with `list issuer` may not also set the per-CA options.
pub(super) fn refuse_per_ca(r: &Reader) -> Result<(), Error> {
    let Some(opt) = r.section.option("issuer") else {
        return Ok(());
    };
    match PER_CA
        .iter()
        .find(|o| r.section.option(o).is_some_and(|v| v.values != [""]))
    {
        Some(clash) => Err(r.err(
            opt.line,
            "issuer",
            format!(
                "set either `option {clash}` (the one-issuer shorthand) or `list issuer`, not \
                 both: with `list issuer`, {clash} goes in each `config issuer` section"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "issuer_tests.rs"]
mod tests;
