//! Which names the local CA issues for: DNS host names and IP addresses inside both the
//! configured `allow_suffix` / `allow_ip` and the intermediate's nameConstraints
//! (RFC 5280 §4.2.1.10), and the nameConstraints a new intermediate gets from the config.

use std::net::IpAddr;

use rcgen::{CidrSubnet, GeneralSubtree, NameConstraints};

use super::{Error, LocalCa};
use crate::config;
use crate::crypto::{Constraints, Subtree};

impl LocalCa {
    /// The policy check for names alone: allowed by the config AND by the intermediate.
    pub fn check_names(&self, dns: &[String], ips: &[IpAddr]) -> Result<(), Error> {
        if dns.is_empty() && ips.is_empty() {
            return Err(Error::Policy(
                "the request names no DNS name or IP address".into(),
            ));
        }
        for d in dns {
            let name = normalize_dns(d)?;
            if !self
                .cfg
                .allow_suffix
                .iter()
                .any(|s| dns_in_subtree(&name, s))
            {
                return Err(Error::Policy(format!(
                    "DNS name {name:?} is outside allow_suffix {:?}",
                    self.cfg.allow_suffix
                )));
            }
            if !constraints_permit(&self.int_constraints, &Name::Dns(&name)) {
                return Err(Error::Policy(format!(
                    "DNS name {name:?} is outside the intermediate's name constraints"
                )));
            }
        }
        for ip in ips {
            if !self
                .cfg
                .allow_ip
                .iter()
                .any(|(net, len)| ip_in_subnet(*ip, *net, *len))
            {
                return Err(Error::Policy(format!(
                    "IP address {ip} is outside allow_ip"
                )));
            }
            if !constraints_permit(&self.int_constraints, &Name::Ip(*ip)) {
                return Err(Error::Policy(format!(
                    "IP address {ip} is outside the intermediate's name constraints"
                )));
            }
        }
        Ok(())
    }
}

/// nameConstraints from the config. A name type with no allowed entry is excluded outright, since
/// RFC 5280 §4.2.1.10 leaves a type with no permitted subtree unconstrained.
pub(super) fn rcgen_constraints(cfg: &config::Ca) -> NameConstraints {
    let mut nc = NameConstraints {
        permitted_subtrees: Vec::new(),
        excluded_subtrees: Vec::new(),
    };
    for s in &cfg.allow_suffix {
        nc.permitted_subtrees.push(GeneralSubtree::DnsName(
            s.trim_start_matches('.').to_ascii_lowercase(),
        ));
    }
    for (ip, len) in &cfg.allow_ip {
        nc.permitted_subtrees
            .push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                *ip, *len,
            )));
    }
    if cfg.allow_ip.is_empty() {
        for any in ["0.0.0.0".parse(), "::".parse()].into_iter().flatten() {
            nc.excluded_subtrees
                .push(GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                    any, 0,
                )));
        }
    }
    nc
}

/// Lower-cases a DNS name and checks its syntax (LDH labels, no wildcard, no trailing dot).
pub(super) fn normalize_dns(name: &str) -> Result<String, Error> {
    dns_host_name(name)
        .map_err(|why| Error::Policy(format!("{name:?} is not a valid DNS host name: {why}")))
}

/// `name` lower-cased when it is a DNS host name this CA issues for (RFC 1123 §2.1 labels,
/// RFC 5280 §4.2.1.6 dNSName): else why not. No wildcards, no trailing dot, no empty labels.
pub fn dns_host_name(name: &str) -> Result<String, &'static str> {
    let n = name.to_ascii_lowercase();
    if n.is_empty() {
        return Err("it is empty");
    }
    if n.len() > 253 {
        return Err("it is longer than 253 characters");
    }
    if n.ends_with('.') {
        return Err("it ends with a dot");
    }
    for l in n.split('.') {
        if l.is_empty() {
            return Err("it has an empty label (two dots in a row, or a leading dot)");
        }
        if l == "*" {
            return Err("wildcards are not issued");
        }
        if l.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err("only letters, digits, '-' and '.' are allowed");
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(n)
}

/// RFC 5280 §4.2.1.10: a dNSName constraint matches the name itself and any name formed by
/// adding labels to its left. Compared label-wise, so `evilsensors.example.com` is not inside
/// `sensors.example.com`. An empty (or ".") suffix matches everything.
pub fn dns_in_subtree(name: &str, suffix: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let suffix = suffix
        .trim_start_matches('.')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if suffix.is_empty() {
        return true;
    }
    name == suffix || name.ends_with(&format!(".{suffix}"))
}

/// True when `ip` is inside `net/len` (address families must agree).
pub fn ip_in_subnet(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    fn masked(a: &[u8], len: u8) -> Vec<u8> {
        a.iter()
            .enumerate()
            .map(|(i, b)| {
                let bits = (len as usize).saturating_sub(i * 8).min(8);
                if bits == 0 {
                    0
                } else {
                    b & (0xffu8 << (8 - bits))
                }
            })
            .collect()
    }
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => masked(&a.octets(), len) == masked(&n.octets(), len),
        (IpAddr::V6(a), IpAddr::V6(n)) => masked(&a.octets(), len) == masked(&n.octets(), len),
        _ => false,
    }
}

pub(super) enum Name<'a> {
    Dns(&'a str),
    Ip(IpAddr),
}

/// RFC 5280 §4.2.1.10 for one name: not in any excluded subtree of its type, and inside some
/// permitted subtree of its type when any exist.
pub(super) fn constraints_permit(c: &Constraints, name: &Name<'_>) -> bool {
    let hit = |t: &Subtree| match (t, name) {
        (Subtree::Dns(s), Name::Dns(n)) => Some(dns_in_subtree(n, s)),
        (Subtree::Ip(net, len), Name::Ip(ip)) => Some(ip_in_subnet(*ip, *net, *len)),
        _ => None,
    };
    if c.excluded.iter().any(|t| hit(t) == Some(true)) {
        return false;
    }
    let same_type: Vec<bool> = c.permitted.iter().filter_map(hit).collect();
    same_type.is_empty() || same_type.contains(&true)
}
