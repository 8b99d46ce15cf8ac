//! `key_uri` + `pin_file`: a key in a TPM or HSM, named by an RFC 7512 PKCS#11 URI, for a
//! `certificate`, the `ca` (issuing intermediate) or the `est` listener.

use super::sections::Reader;
use super::value::parse_abs_path;
use super::{Certificate, Error};
use crate::crypto::{KeyUri, Pin};

/// `key_uri` (an RFC 7512 PKCS#11 URI) and `pin_file`: a key in a TPM or HSM. The PIN comes
/// from the URI (`pin-source` / `pin-value`) or `pin_file`, never both; no message shows it.
pub(super) fn key_uri(r: &Reader) -> Result<Option<KeyUri>, Error> {
    let [uri] = key_uris(r, ["key_uri"])?;
    Ok(uri)
}

/// [`key_uri`] for several URI options of one section (a certificate's `key_uri` and
/// `account_key_uri`): `pin_file` gives the PIN of each URI that does not carry its own, and is
/// an error when none of the options is set or one of them already gives the PIN.
pub(super) fn key_uris<const N: usize>(
    r: &Reader,
    options: [&str; N],
) -> Result<[Option<KeyUri>; N], Error> {
    let pin_file = r.parse("pin_file", "an absolute path", parse_abs_path)?;
    let mut out: [Option<KeyUri>; N] = std::array::from_fn(|_| None);
    for (option, slot) in options.iter().zip(out.iter_mut()) {
        let Some((v, line)) = r.value(option)? else {
            continue;
        };
        if !cfg!(feature = "pkcs11") {
            return Err(r.err(
                line,
                option,
                "this gatecert was built without PKCS#11 support (cargo feature `pkcs11`); \
                 a static build cannot load a PKCS#11 module",
            ));
        }
        let mut uri = KeyUri::parse(v).map_err(|e| r.err(line, option, e))?;
        if let Some(p) = &pin_file {
            if uri.pin != Pin::None {
                return Err(r.err_at(
                    "pin_file",
                    format!(
                        "the {option} already gives the PIN (pin-source or pin-value): drop one of them"
                    ),
                ));
            }
            uri.pin = Pin::File(p.clone());
        }
        *slot = Some(uri);
    }
    if pin_file.is_some() && out.iter().all(Option::is_none) {
        return Err(r.err_at(
            "pin_file",
            format!(
                "pin_file is set but {}: the PIN is for a key in a PKCS#11 token",
                match options.as_slice() {
                    [one] => format!("{one} is not"),
                    many => format!("none of {} is set", many.join(", ")),
                }
            ),
        ));
    }
    Ok(out)
}

/// Another certificate whose `key_uri` names the same object in the same token. Renewals make
/// `<object>.<8 hex>` keys there and remove those that are not their live set's, so two
/// certificates sharing an object would remove each other's keys.
pub(super) fn shared_key<'a>(
    cert: &Certificate,
    others: &'a [Certificate],
) -> Option<&'a Certificate> {
    let mine = cert.key_uri.as_ref()?;
    others.iter().find(|o| {
        o.key_uri.as_ref().is_some_and(|u| {
            u.object == mine.object && u.token == mine.token && u.module_path == mine.module_path
        })
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    const FILE: &str = "/etc/config/gatecert";
    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new(FILE))
    }

    #[cfg(feature = "pkcs11")]
    #[test]
    fn key_uri_in_every_section_with_pin_file() {
        let text = format!(
            "config certificate gw\n\tlist domain gw.local\n\toption key_uri 'pkcs11:token=gw;object=gateway?{MODULE}'\n\toption account_key_uri 'pkcs11:token=gw;object=acme?{MODULE}'\n\toption pin_file /etc/gatecert/pin\n\
             config ca local\n\toption key_uri 'pkcs11:token=gw;object=ca?{MODULE}&pin-source=file:/p'\n\
             config est est\n\toption key_uri 'pkcs11:token=gw;object=est?{MODULE}&pin-value=1234'\n"
        );
        let cfg = parse(&text).unwrap();
        let gw = cfg.certificates[0].key_uri.as_ref().unwrap();
        assert_eq!(
            (gw.object.as_str(), &gw.pin),
            ("gateway", &Pin::File("/etc/gatecert/pin".into()))
        );
        // One pin_file for both of the certificate's keys.
        let acme = cfg.certificates[0].account_key_uri.as_ref().unwrap();
        assert_eq!(
            (acme.object.as_str(), &acme.pin),
            ("acme", &Pin::File("/etc/gatecert/pin".into()))
        );
        let ca = cfg.ca.key_uri.as_ref().unwrap();
        assert_eq!(
            (ca.object.as_str(), &ca.pin),
            ("ca", &Pin::File("/p".into()))
        );
        let est = cfg.est.key_uri.as_ref().unwrap();
        assert_eq!(est.pin, Pin::Value("1234".into()));
        // The PIN never shows in the config's Debug output.
        assert!(!format!("{cfg:?}").contains("1234"));
    }

    #[cfg(feature = "pkcs11")]
    #[test]
    fn bad_key_uri_and_pin_file_name_file_line_and_option() {
        for (text, line, option, needle) in [
            (format!("config ca x\n\toption key_uri 'pkcs11:token=gw?{MODULE}'\n"), 2, "key_uri", "no 'object'"),
            ("config ca x\n\toption key_uri 'file:/k'\n".to_string(), 2, "key_uri", "must start with 'pkcs11:'"),
            ("config est\n\n\toption pin_file /p\n".to_string(), 3, "pin_file", "key_uri is not"),
            ("config certificate gw\n\tlist domain gw.local\n\toption pin_file /p\n".to_string(), 3, "pin_file", "none of key_uri, account_key_uri is set"),
            (format!("config certificate gw\n\tlist domain gw.local\n\toption account_key_uri 'pkcs11:object=a?{MODULE}&pin-value=9876'\n\toption pin_file /p\n"), 4, "pin_file", "the account_key_uri already gives the PIN"),
            (format!("config certificate gw\n\tlist domain gw.local\n\toption account_key_uri 'pkcs11:token=gw?{MODULE}'\n"), 3, "account_key_uri", "no 'object'"),
            (format!("config certificate a\n\tlist domain a.local\n\toption key_uri 'pkcs11:token=gw;object=k?{MODULE}'\n\
                      config certificate b\n\tlist domain b.local\n\toption key_uri 'pkcs11:token=gw;object=k?{MODULE}&pin-value=1'\n"),
             6, "key_uri", "certificate 'a' (line 1) keeps its keys under the same object"),
            (format!("config ca x\n\toption key_uri 'pkcs11:object=k?{MODULE}&pin-value=9876'\n\toption pin_file /p\n"), 3, "pin_file", "already gives the PIN"),
            (format!("config ca x\n\toption key_uri 'pkcs11:object=k?{MODULE}'\n\toption pin_file p\n"), 3, "pin_file", "absolute path"),
        ] {
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.starts_with(&format!("{FILE}:{line}:")), "{err}");
            assert!(err.contains(&format!("option '{option}'")), "{err}");
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("9876"), "{err}");
        }
    }

    /// A build without the feature says so at the option, rather than failing at the first use.
    #[cfg(not(feature = "pkcs11"))]
    #[test]
    fn key_uri_without_the_feature_is_a_clear_error() {
        let text = format!("config ca x\n\toption key_uri 'pkcs11:object=k?{MODULE}'\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{FILE}:2:")), "{err}");
        assert!(err.contains("built without PKCS#11 support"), "{err}");
    }
}
