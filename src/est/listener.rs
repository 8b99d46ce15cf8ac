//! The EST listener's own certificate: the gateway's ACME one, or one from the local CA.

use std::net::IpAddr;
use std::path::Path;

use super::{names_of, same_set, Error};
use crate::ca::LocalCa;
use crate::config::Config;
use crate::crypto::{self, CertInfo};
use crate::store::{CertSet, SetDir};

use super::LOCAL_SET;

/// The EST listener's own certificate chain and key (PEM), and where they came from.
pub struct ListenerIdentity {
    /// End-entity first.
    pub chain_pem: String,
    /// PKCS#8 PEM.
    pub key_pem: String,
    /// `acme:<name>` or `local`.
    pub source: String,
    /// The end-entity certificate's notAfter.
    pub not_after: i64,
}

/// The EST listener's certificate: the gateway's ACME certificate when one is installed and
/// unexpired (`<state_dir>/certs/<name>/live`), else one from the local CA for the configured
/// names, kept in `<state_dir>/certs/est-local` and reissued only in the last third of its life.
pub fn listener_identity(cfg: &Config, ca: &LocalCa, now: i64) -> Result<ListenerIdentity, Error> {
    let certs_dir = cfg.main.state_dir.join("certs");
    for c in cfg.certificates.iter().filter(|c| c.directory.is_some()) {
        if let Some(found) = live_identity(&certs_dir.join(&c.name), now, 0)? {
            return Ok(ListenerIdentity {
                source: format!("acme:{}", c.name),
                ..found
            });
        }
    }
    ensure_local_set(
        &certs_dir.join(LOCAL_SET),
        ca,
        &listener_names(cfg, ca),
        now,
        None,
    )
}

/// The names of every configured certificate that the local CA may issue for.
fn listener_names(cfg: &Config, ca: &LocalCa) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    for c in &cfg.certificates {
        for d in &c.domains {
            if !dns.contains(d) && ca.check_names(std::slice::from_ref(d), &[]).is_ok() {
                dns.push(d.clone());
            }
        }
        for ip in &c.ips {
            if !ips.contains(ip) && ca.check_names(&[], std::slice::from_ref(ip)).is_ok() {
                ips.push(*ip);
            }
        }
    }
    (dns, ips)
}

/// Issues a server certificate from the local CA into `dir` unless the live one is for the
/// same names and has more than a third of its lifetime left. `lifetime: None` = the CA's.
pub fn ensure_local_set(
    dir: &Path,
    ca: &LocalCa,
    (dns, ips): &(Vec<String>, Vec<IpAddr>),
    now: i64,
    lifetime: Option<u64>,
) -> Result<ListenerIdentity, Error> {
    if let Some(found) = live_identity(dir, now, 3)? {
        let info = crypto::certs_from_pem(&found.chain_pem)
            .ok()
            .and_then(|c| CertInfo::from_der(c[0].as_ref()).ok());
        let same = info.is_some_and(|i| {
            same_set(&names_of(&i.dns_names, &i.ips), &names_of(dns, ips))
                && ca.issued_by_me(&i.der)
        });
        if same {
            return Ok(found);
        }
    }
    if dns.is_empty() && ips.is_empty() {
        return Err(Error::NoListenerNames);
    }
    let (key, issued) = ca.issue_with_new_key(dns, ips, lifetime, true, now)?;
    let set = CertSet {
        key_pem: key.to_pem(),
        cert_pem: crypto::pem_block("CERTIFICATE", &issued.leaf_der),
        chain_pem: crypto::certs_to_pem(issued.chain_der[1..].iter().map(Vec::as_slice)),
    };
    SetDir::new(dir).install(&set)?;
    log::info!(
        "issued {} from the local CA for {} (serial {}, until {})",
        dir.display(),
        names_of(dns, ips).join(", "),
        issued.serial_hex,
        crypto::rfc3339(issued.not_after)
    );
    Ok(ListenerIdentity {
        chain_pem: set.fullchain(),
        key_pem: set.key_pem.clone(),
        source: "local".into(),
        not_after: issued.not_after,
    })
}

/// The live set in `dir`, if its key matches and it is still good: unexpired, and with
/// `keep_fraction` > 0, more than 1/keep_fraction of its lifetime left.
fn live_identity(
    dir: &Path,
    now: i64,
    keep_fraction: i64,
) -> Result<Option<ListenerIdentity>, Error> {
    let Some((chain_pem, key_pem)) = SetDir::new(dir).read_live()? else {
        return Ok(None);
    };
    let Ok(info) = CertInfo::from_pem(&chain_pem) else {
        log::warn!("{}: unreadable certificate; ignoring it", dir.display());
        return Ok(None);
    };
    let key_ok = crypto::PrivateKey::from_pem(&key_pem).is_ok_and(|k| k.matches(&info));
    let left = info.not_after - now;
    let good = key_ok && left > 0 && (keep_fraction == 0 || left * keep_fraction > info.lifetime());
    Ok(good.then(|| ListenerIdentity {
        chain_pem,
        key_pem,
        source: "local".into(),
        not_after: info.not_after,
    }))
}
