//! Value parsers for option strings. Each returns `None` on a bad value; the caller names
//! the file, line, option and the expected form.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Parses a duration: plain seconds (`90`) or a number with one unit suffix `s`, `m`, `h`,
/// `d` (`90s`, `30m`, `24h`, `7d`). Returns seconds; `None` on a bad value or overflow.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parses a size in bytes: plain (`1048576`) or with one binary suffix `K`, `M`, `G`
/// (`64M` = 64 MiB). `None` on a bad value or overflow.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Parses a UCI boolean as OpenWrt's `config_get_bool` does: `1/0`, `yes/no`, `on/off`,
/// `true/false`, `enabled/disabled`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "yes" | "on" | "true" | "enabled" => Some(true),
        "0" | "no" | "off" | "false" | "disabled" => Some(false),
        _ => None,
    }
}

/// Parses a listen address: `[::]:80`, `127.0.0.1:8443`, or `:80` for `[::]:80`.
pub fn parse_socket_addr(s: &str) -> Option<SocketAddr> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().ok()?;
        return Some(SocketAddr::from(([0u16; 8], port)));
    }
    s.parse().ok()
}

/// Parses a CIDR range `10.0.0.0/8` or `fd00::/8`; a bare address is a host (/32 or /128).
/// Host bits must be zero, so a typo like `10.0.0.1/8` is not silently widened.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, Some(l)),
        None => (s.parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => l.parse().ok()?,
        Some(_) => return None,
        None => max,
    };
    if len > max {
        return None;
    }
    let bits: u128 = match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)) << 96,
        IpAddr::V6(a) => u128::from(a),
    };
    let host_mask = u128::MAX.checked_shr(u32::from(len)).unwrap_or(0);
    if bits & host_mask != 0 {
        return None;
    }
    Some((addr, len))
}

/// Parses a DNS name: lowercased, LDH labels of 1..=63 octets that neither start nor end with
/// `-`, at most 253 octets, and (if `wildcard`) an optional leading `*.`.
pub fn parse_domain(s: &str, wildcard: bool) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let rest = match lower.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        Some(_) => return None,
        None => &lower,
    };
    if rest.is_empty() || rest.len() > 253 {
        return None;
    }
    let labels_ok = rest.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    // A name made only of digits and dots would be read as an IP address by clients.
    let numeric = rest.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    (labels_ok && !numeric).then_some(lower)
}

/// Parses a log level: `error`, `warn`/`warning`, `info`/`notice`, `debug`.
pub fn parse_log_level(s: &str) -> Option<log::LevelFilter> {
    match s {
        "error" | "err" => Some(log::LevelFilter::Error),
        "warn" | "warning" => Some(log::LevelFilter::Warn),
        "info" | "notice" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        _ => None,
    }
}

/// Whether `s` is an `http://` or `https://` URL with a host and no whitespace.
pub fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// An absolute path.
pub fn parse_abs_path(s: &str) -> Option<PathBuf> {
    s.starts_with('/').then(|| PathBuf::from(s))
}

/// An e-mail address for the ACME account contact; a leading `mailto:` is dropped.
pub fn parse_email(s: &str) -> Option<String> {
    let s = s.strip_prefix("mailto:").unwrap_or(s);
    let (local, domain) = s.rsplit_once('@')?;
    let ok = !local.is_empty()
        && parse_domain(domain, false).is_some()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ',');
    ok.then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let table: &[(&str, Option<u64>)] = &[
            ("90", Some(90)),
            ("90s", Some(90)),
            ("30m", Some(1800)),
            ("24h", Some(86400)),
            ("7d", Some(604800)),
            ("0", Some(0)),
            (" 5m ", Some(300)),
            ("", None),
            ("h", None),
            ("1.5h", None),
            ("-1", None),
            ("10w", None),
            ("5 m", None),
            ("1h30m", None),
            ("99999999999999999999d", None),
            ("999999999999999999d", None),
        ];
        for (s, want) in table {
            assert_eq!(parse_duration(s), *want, "{s:?}");
        }
    }

    #[test]
    fn booleans() {
        for s in ["1", "yes", "on", "true", "enabled"] {
            assert_eq!(parse_bool(s), Some(true), "{s}");
        }
        for s in ["0", "no", "off", "false", "disabled"] {
            assert_eq!(parse_bool(s), Some(false), "{s}");
        }
        for s in ["", "2", "Y", "maybe"] {
            assert_eq!(parse_bool(s), None, "{s}");
        }
    }

    #[test]
    fn socket_addrs() {
        assert_eq!(
            parse_socket_addr(":80"),
            Some(SocketAddr::from(([0u16; 8], 80)))
        );
        assert_eq!(parse_socket_addr("[::]:80"), parse_socket_addr(":80"));
        assert_eq!(
            parse_socket_addr("127.0.0.1:8443"),
            Some(SocketAddr::from(([127, 0, 0, 1], 8443)))
        );
        for bad in ["80", "::1:80", ":", ":99999", "localhost:80", "[::1]"] {
            assert_eq!(parse_socket_addr(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.0/8"),
            Some((IpAddr::from([10, 0, 0, 0]), 8))
        );
        assert_eq!(
            parse_cidr("192.0.2.7"),
            Some((IpAddr::from([192, 0, 2, 7]), 32))
        );
        assert_eq!(parse_cidr("fd00::/8"), Some(("fd00::".parse().unwrap(), 8)));
        assert_eq!(
            parse_cidr("0.0.0.0/0"),
            Some((IpAddr::from([0, 0, 0, 0]), 0))
        );
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "x/8",
            "fd00::/129",
            "1/8",
        ] {
            assert_eq!(parse_cidr(bad), None, "{bad}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(
            parse_domain("GW1.Example.COM", true).as_deref(),
            Some("gw1.example.com")
        );
        assert_eq!(
            parse_domain("*.example.com", true).as_deref(),
            Some("*.example.com")
        );
        assert_eq!(parse_domain("*.example.com", false), None);
        assert_eq!(
            parse_domain("localhost", false).as_deref(),
            Some("localhost")
        );
        let long_label = format!("{}.com", "a".repeat(64));
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "a.com.",
            "*",
            "a.*.com",
            "192.0.2.1",
            "é.com",
            long_label.as_str(),
        ] {
            assert_eq!(parse_domain(bad, true), None, "{bad}");
        }
    }

    #[test]
    fn urls_emails_levels() {
        assert!(is_http_url(
            "https://acme-v02.api.letsencrypt.org/directory"
        ));
        assert!(is_http_url("http://127.0.0.1:14000/dir"));
        for bad in [
            "ftp://x",
            "https://",
            "https:///dir",
            "acme.example",
            "https://a b",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
        assert_eq!(
            parse_email("mailto:ops@example.com").as_deref(),
            Some("ops@example.com")
        );
        for bad in ["ops", "@example.com", "ops@", "a b@example.com", "a@b@bad_"] {
            assert_eq!(parse_email(bad), None, "{bad}");
        }
        assert_eq!(parse_log_level("debug"), Some(log::LevelFilter::Debug));
        assert_eq!(parse_log_level("loud"), None);
    }
}
