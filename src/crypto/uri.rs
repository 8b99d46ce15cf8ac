//! RFC 7512 PKCS#11 URIs naming a key in a TPM or HSM: `pkcs11:token=gw;object=gateway?
//! module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/gatecert/pin`.
//!
//! The parser is strict: every attribute at most once (RFC 7512 §2.3), only the attributes
//! gatecert acts on (plus vendor `x-` ones, which are refused too since gatecert can't honour
//! them), percent-encoding checked, and an `object` label is required (keys are found and made
//! by label). The PIN (`pin-value`, or the contents of `pin-source`) is never printed: `Debug`
//! redacts it and `Display` leaves it out.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the token's user PIN comes from (RFC 7512 §2.3 `pin-source` / `pin-value`, or the
/// config's `pin_file`).
#[derive(Clone, PartialEq, Eq)]
pub enum Pin {
    /// No PIN: the token needs no login (or is already logged in).
    None,
    /// `pin-value`: the PIN itself (kept in memory only, never written or printed).
    Value(String),
    /// `pin-source=file:...` or `pin_file`: a file whose first line is the PIN.
    File(PathBuf),
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::None => f.write_str("None"),
            Pin::Value(_) => f.write_str("Value(<redacted>)"),
            Pin::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// A key in a PKCS#11 token, as an RFC 7512 URI names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyUri {
    /// `token`: the token label (CK_TOKEN_INFO.label).
    pub token: Option<String>,
    /// `serial`: the token serial number.
    pub serial: Option<String>,
    /// `manufacturer`: the token manufacturer.
    pub manufacturer: Option<String>,
    /// `model`: the token model.
    pub model: Option<String>,
    /// `slot-id`: the slot number (RFC 7512 §2.3, decimal).
    pub slot_id: Option<u64>,
    /// `object`: the key's label (CKA_LABEL); required.
    pub object: String,
    /// `id`: the key's CKA_ID (percent-encoded bytes).
    pub id: Option<Vec<u8>>,
    /// `module-path`: the PKCS#11 module to load; required (gatecert has no module registry).
    pub module_path: PathBuf,
    /// The user PIN's source.
    pub pin: Pin,
}

impl KeyUri {
    /// Parses an RFC 7512 URI. The error says which attribute is wrong and why; it never
    /// repeats a `pin-value`.
    pub fn parse(s: &str) -> Result<KeyUri, String> {
        let Some(rest) = s.strip_prefix("pkcs11:") else {
            return Err("not a PKCS#11 URI: it must start with 'pkcs11:' (RFC 7512)".into());
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        if rest.contains('#') {
            return Err("a PKCS#11 URI has no fragment ('#' must be written %23)".into());
        }
        let mut uri = KeyUri {
            token: None,
            serial: None,
            manufacturer: None,
            model: None,
            slot_id: None,
            object: String::new(),
            id: None,
            module_path: PathBuf::new(),
            pin: Pin::None,
        };
        let mut seen: Vec<String> = Vec::new();
        let mut once = |name: &str| -> Result<(), String> {
            if seen.iter().any(|n| n == name) {
                return Err(format!("attribute '{name}' appears twice (RFC 7512 §2.3)"));
            }
            seen.push(name.to_string());
            Ok(())
        };
        let mut object = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let Some((name, value)) = attr.split_once('=') else {
                return Err(format!("path attribute '{attr}' has no '=value'"));
            };
            once(name)?;
            let bytes = pct_decode(value).map_err(|e| format!("attribute '{name}': {e}"))?;
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| format!("attribute '{name}' is not UTF-8"))
            };
            match name {
                "token" => uri.token = Some(text()?),
                "serial" => uri.serial = Some(text()?),
                "manufacturer" => uri.manufacturer = Some(text()?),
                "model" => uri.model = Some(text()?),
                "object" => object = Some(text()?),
                "id" => uri.id = Some(bytes),
                "slot-id" => {
                    uri.slot_id = Some(text()?.parse().map_err(|_| {
                        format!("slot-id '{value}' is not a decimal number (RFC 7512 §2.3)")
                    })?)
                }
                "type" => {
                    if text()? != "private" {
                        return Err(format!(
                            "type '{value}': gatecert signs with a private key, so only \
                             type=private (or no type) names it"
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "unsupported path attribute '{other}' (gatecert knows token, serial, \
                         manufacturer, model, slot-id, object, id, type)"
                    ))
                }
            }
        }
        let mut pin_value = None;
        let mut pin_source = None;
        for attr in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let Some((name, value)) = attr.split_once('=') else {
                return Err(format!(
                    "query attribute '{}' has no '=value'",
                    attr.split('=').next().unwrap_or(attr)
                ));
            };
            once(name)?;
            match name {
                // The value is never repeated in a message.
                "pin-value" => {
                    let v = pct_decode(value)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or("pin-value is not valid percent-encoded UTF-8 (value not shown)")?;
                    pin_value = Some(v);
                }
                "pin-source" => {
                    let v = String::from_utf8(
                        pct_decode(value).map_err(|e| format!("pin-source: {e}"))?,
                    )
                    .map_err(|_| "pin-source is not UTF-8".to_string())?;
                    pin_source = Some(pin_source_path(&v)?);
                }
                "module-path" => {
                    let v = String::from_utf8(
                        pct_decode(value).map_err(|e| format!("module-path: {e}"))?,
                    )
                    .map_err(|_| "module-path is not UTF-8".to_string())?;
                    if !Path::new(&v).is_absolute() {
                        return Err(format!("module-path '{v}' is not an absolute path"));
                    }
                    uri.module_path = PathBuf::from(v);
                }
                other => {
                    return Err(format!(
                        "unsupported query attribute '{other}' (gatecert knows module-path, \
                         pin-source, pin-value)"
                    ))
                }
            }
        }
        uri.pin = match (pin_value, pin_source) {
            (Some(_), Some(_)) => {
                return Err("both pin-value and pin-source: give the PIN one way".into())
            }
            (Some(v), None) => Pin::Value(v),
            (None, Some(p)) => Pin::File(p),
            (None, None) => Pin::None,
        };
        uri.object = match object {
            Some(o) if !o.is_empty() => o,
            _ => return Err(
                "no 'object' attribute: name the key's label, e.g. pkcs11:token=gw;object=gateway"
                    .into(),
            ),
        };
        if uri.module_path.as_os_str().is_empty() {
            return Err(
                "no 'module-path' query attribute: name the PKCS#11 module, e.g. \
                 ?module-path=/usr/lib/softhsm/libsofthsm2.so"
                    .into(),
            );
        }
        Ok(uri)
    }

    /// Reads the PIN: `None` when there is none. Errors name the file, never the PIN.
    pub fn read_pin(&self) -> Result<Option<String>, String> {
        match &self.pin {
            Pin::None => Ok(None),
            Pin::Value(v) => Ok(Some(v.clone())),
            Pin::File(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("PIN file {}: {e}", p.display()))?;
                let pin = text.lines().next().unwrap_or("").to_string();
                if pin.is_empty() {
                    return Err(format!("PIN file {} is empty", p.display()));
                }
                Ok(Some(pin))
            }
        }
    }

    /// The full URI, PIN included: only for handing a token key through an in-memory string
    /// (the EST listener's identity); never to be written, logged or shown.
    pub fn to_secret_string(&self) -> String {
        let shown = self.to_string();
        match &self.pin {
            Pin::None => shown,
            Pin::Value(v) => format!("{shown}&pin-value={}", pct_encode(v.as_bytes())),
            Pin::File(p) => format!(
                "{shown}&pin-source=file:{}",
                pct_encode(p.to_string_lossy().as_bytes())
            ),
        }
    }

    /// The same key under another label (a fresh key per renewal: `<object>.<n>`).
    pub fn with_object(&self, object: &str) -> KeyUri {
        KeyUri {
            object: object.to_string(),
            ..self.clone()
        }
    }
}

/// The URI without the PIN attributes (what messages, logs, `check` and a set's `key.uri`
/// show; the PIN comes from the config each time).
impl fmt::Display for KeyUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        let mut sep = "";
        let mut attr = |f: &mut fmt::Formatter<'_>, n: &str, v: &[u8]| {
            let r = write!(f, "{sep}{n}={}", pct_encode(v));
            sep = ";";
            r
        };
        for (n, v) in [
            ("token", &self.token),
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("serial", &self.serial),
        ] {
            if let Some(v) = v {
                attr(f, n, v.as_bytes())?;
            }
        }
        if let Some(s) = self.slot_id {
            attr(f, "slot-id", s.to_string().as_bytes())?;
        }
        attr(f, "object", self.object.as_bytes())?;
        if let Some(id) = &self.id {
            attr(f, "id", id)?;
        }
        write!(
            f,
            "?module-path={}",
            pct_encode(self.module_path.to_string_lossy().as_bytes())
        )
    }
}

/// `pin-source`: a `file:` URI (`file:/p`, `file:///p`) or an absolute path.
fn pin_source_path(v: &str) -> Result<PathBuf, String> {
    let p = match v.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') => rest,
        Some(_) => {
            return Err(format!(
                "pin-source '{v}': only local file: URIs are supported"
            ))
        }
        None => v.strip_prefix("file:").unwrap_or(v),
    };
    if !p.starts_with('/') {
        return Err(format!(
            "pin-source '{v}' is not a file: URI or absolute path (RFC 7512 §2.3)"
        ));
    }
    Ok(PathBuf::from(p))
}

/// RFC 3986 §2.1 percent-decoding; a bare '%' or a bad hex digit is an error, and so is a
/// character RFC 7512 §2.3 requires to be encoded.
fn pct_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a '%' not followed by two hex digits")?;
                out.push(hex);
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,=&/|".contains(&c) => {
                out.push(c);
                i += 1;
            }
            c => {
                return Err(format!(
                    "character {:?} must be percent-encoded (RFC 7512 §2.3)",
                    char::from(c)
                ))
            }
        }
    }
    Ok(out)
}

fn pct_encode(v: &[u8]) -> String {
    v.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b"-._~:[]@!$'()*+,/".contains(&c) {
                char::from(c).to_string()
            } else {
                format!("%{c:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &str = "module-path=/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn parses_token_object_module_and_pin_source() {
        let u = KeyUri::parse(&format!(
            "pkcs11:token=gw;object=gate%20way;id=%01%02?{MODULE}&pin-source=file:/etc/gc/pin"
        ))
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("gw"));
        assert_eq!(u.object, "gate way");
        assert_eq!(u.id, Some(vec![1, 2]));
        assert_eq!(u.module_path, Path::new("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(u.pin, Pin::File("/etc/gc/pin".into()));
        assert_eq!(
            u.to_string(),
            "pkcs11:token=gw;object=gate%20way;id=%01%02?module-path=/usr/lib/softhsm/\
             libsofthsm2.so"
        );
        let again = KeyUri::parse(&u.to_secret_string()).unwrap();
        assert_eq!(again, u);
        let public = KeyUri::parse(&u.to_string()).unwrap();
        assert_eq!(
            public,
            KeyUri {
                pin: Pin::None,
                ..u.clone()
            }
        );
        let u = KeyUri::parse(&format!(
            "pkcs11:object=k;slot-id=3;type=private?pin-source=file:///p&{MODULE}"
        ))
        .unwrap();
        assert_eq!((u.slot_id, u.pin), (Some(3), Pin::File("/p".into())));
    }

    #[test]
    fn pin_value_is_never_shown() {
        let u = KeyUri::parse(&format!(
            "pkcs11:token=gw;object=k?{MODULE}&pin-value=s3cr%65t"
        ))
        .unwrap();
        assert_eq!(u.pin, Pin::Value("s3cret".into()));
        assert_eq!(u.read_pin().unwrap().as_deref(), Some("s3cret"));
        for shown in [format!("{u}"), format!("{u:?}")] {
            assert!(!shown.contains("s3cr"), "{shown}");
        }
        assert!(format!("{u:?}").contains("Value(<redacted>)"));
        assert_eq!(KeyUri::parse(&u.to_secret_string()).unwrap(), u);
        let err =
            KeyUri::parse(&format!("pkcs11:object=k?{MODULE}&pin-value=s3cr%zz")).unwrap_err();
        assert!(!err.contains("s3cr"), "{err}");
    }

    #[test]
    fn bad_uris_are_refused_with_the_reason() {
        for (uri, why) in [
            ("pkcs12:object=k", "must start with 'pkcs11:'"),
            ("pkcs11:token=gw", "no 'object' attribute"),
            ("pkcs11:object=k", "no 'module-path'"),
            (
                "pkcs11:object=k;object=j?module-path=/m.so",
                "appears twice",
            ),
            (
                "pkcs11:object=k;colour=red?module-path=/m.so",
                "unsupported path attribute 'colour'",
            ),
            (
                "pkcs11:object=k?module-path=/m.so&pin=1",
                "unsupported query attribute 'pin'",
            ),
            ("pkcs11:object=k?module-path=m.so", "not an absolute path"),
            ("pkcs11:object=a%2?module-path=/m.so", "two hex digits"),
            (
                "pkcs11:object=a b?module-path=/m.so",
                "must be percent-encoded",
            ),
            (
                "pkcs11:object=k;type=public?module-path=/m.so",
                "only type=private",
            ),
            (
                "pkcs11:object=k;slot-id=x?module-path=/m.so",
                "not a decimal number",
            ),
            (
                "pkcs11:object=k?module-path=/m.so&pin-source=pin.txt",
                "not a file: URI",
            ),
            (
                "pkcs11:object=k?module-path=/m.so&pin-source=file:/p&pin-value=1",
                "both pin-value",
            ),
            ("pkcs11:object=k#frag?module-path=/m.so", "no fragment"),
            ("pkcs11:object?module-path=/m.so", "has no '=value'"),
        ] {
            let err = KeyUri::parse(uri).expect_err(uri);
            assert!(err.contains(why), "{uri}: {err}");
        }
    }

    #[test]
    fn pin_file_is_read_and_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("gatecert-pin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("pin");
        std::fs::write(&f, "1234\n").unwrap();
        let mut u = KeyUri::parse("pkcs11:object=k?module-path=/m.so").unwrap();
        assert_eq!(u.read_pin().unwrap(), None);
        u.pin = Pin::File(f.clone());
        assert_eq!(u.read_pin().unwrap().as_deref(), Some("1234"));
        std::fs::write(&f, "").unwrap();
        assert!(u.read_pin().unwrap_err().contains("is empty"));
        u.pin = Pin::File(dir.join("missing"));
        assert!(u.read_pin().unwrap_err().contains("missing"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
