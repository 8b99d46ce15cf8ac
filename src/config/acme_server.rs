//! `config acme_server 'acme'`: the local ACME server (RFC 8555) for leaves that speak ACME,
//! served on the EST listener under `/acme/`.

use std::net::IpAddr;

use super::sections::Reader;
use super::value::{parse_bool, parse_domain, parse_duration};
use super::{AcmeServer, Ca, Error};

const OPTIONS: &[&str] = &[
    "enabled",
    "preauthorized",
    "static_host",
    "http_port",
    "tls_port",
    "lifetime",
    "max_accounts",
    "max_orders",
];

/// Reads the section; `None` when it is `enabled '0'` (or left at its default, off). `ca` is the
/// CA section whose `max_lifetime` bounds `lifetime`.
pub(super) fn acme_server(r: &Reader, ca: &Ca) -> Result<Option<AcmeServer>, Error> {
    r.check_known(OPTIONS)?;
    let bool_form = "1/0, yes/no, on/off, true/false";
    if !r.parse("enabled", bool_form, parse_bool)?.unwrap_or(false) {
        return Ok(None);
    }
    let preauthorized = r
        .parse("preauthorized", bool_form, parse_bool)?
        .unwrap_or(false);
    let static_host = r.items(
        "static_host",
        "NAME=IP such as cam1.sensors.local=192.168.1.20",
        |v| {
            let (name, ip) = v.split_once('=')?;
            Some((parse_domain(name, false)?, ip.parse::<IpAddr>().ok()?))
        },
    )?;
    let http_port = r
        .parse("http_port", "a TCP port 1-65535", |v| {
            v.parse::<u16>().ok().filter(|p| *p > 0)
        })?
        .unwrap_or(80);
    let tls_port = r
        .parse("tls_port", "a TCP port 1-65535", |v| {
            v.parse::<u16>().ok().filter(|p| *p > 0)
        })?
        .unwrap_or(443);
    let lifetime = r.parse("lifetime", "a duration of at least 1s such as 24h", |v| {
        parse_duration(v).filter(|d| *d > 0)
    })?;
    if let Some(l) = lifetime.filter(|l| *l > ca.max_lifetime) {
        return Err(r.err_at(
            "lifetime",
            format!(
                "lifetime ({l}s) exceeds the ca section's max_lifetime ({}s)",
                ca.max_lifetime
            ),
        ));
    }
    let count = |name: &str, default: usize| {
        r.parse(name, "a count from 1 to 100000", |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=100_000).contains(n))
        })
        .map(|n| n.unwrap_or(default))
    };
    Ok(Some(AcmeServer {
        preauthorized,
        static_host,
        http_port,
        tls_port,
        lifetime: lifetime.unwrap_or(ca.lifetime.min(ca.max_lifetime)),
        max_accounts: count("max_accounts", 256)?,
        max_orders: count("max_orders", 256)?,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Error};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, Error> {
        Config::parse(text, Path::new("/etc/config/gatecert"))
    }

    #[test]
    fn absent_or_disabled_is_off() {
        assert_eq!(parse("").unwrap().acme_server, None);
        let cfg = parse("config acme_server 'acme'\n\toption enabled '0'\n").unwrap();
        assert_eq!(cfg.acme_server, None);
    }

    #[test]
    fn options_are_read_and_checked() {
        let cfg = parse(
            "config acme_server 'acme'\n\toption enabled '1'\n\toption preauthorized '1'\n\
             \tlist static_host 'cam1.sensors.local=127.0.0.1'\n\toption http_port '5002'\n",
        )
        .unwrap();
        let a = cfg.acme_server.unwrap();
        assert!(a.preauthorized);
        assert_eq!(a.http_port, 5002);
        assert_eq!(
            a.static_host,
            vec![(
                "cam1.sensors.local".to_string(),
                "127.0.0.1".parse().unwrap()
            )]
        );
        let e =
            parse("config acme_server 'acme'\n\toption enabled '1'\n\tlist static_host 'cam1'\n")
                .unwrap_err();
        assert!(e.to_string().contains("static_host"), "{e}");
        let e = parse("config acme_server 'acme'\n\toption enabled '1'\n\toption lifetime '30d'\n")
            .unwrap_err();
        assert!(e.to_string().contains("max_lifetime"), "{e}");
        let e = parse("config acme_server 'acme'\n\toption enable '1'\n").unwrap_err();
        assert!(e.to_string().contains("unknown option"), "{e}");
    }
}
