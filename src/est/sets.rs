//! The gateway's own certificate sets from the local CA: each standalone `certificate` section
//! (`<state_dir>/certs/<name>`) and the EST listener's `est-local` set.
//!
//! Every issuance here passes the clock gate (the CA's signing calls take a
//! [`TrustedNow`], see [`crate::trust`]), gets its audit line before it goes live, and is made
//! live only when it is valid now (RFC 5280 §4.1.2.5: notBefore ≤ now < notAfter). A live set
//! that is not valid yet (a forward clock jump issued it, and the clock came back) is rolled
//! back to a kept generation that is valid now, or replaced once the clock is trusted.

use std::net::IpAddr;
use std::path::Path;

use serde_json::json;

use super::{names_of, same_set, Error, LOCAL_SET};
use crate::audit::{self, Audit, DEFAULT_MAX_BYTES};
use crate::ca::LocalCa;
use crate::config::Config;
use crate::crypto::{self, CertInfo};
use crate::store::{self, CertSet, SetDir};
use crate::trust::{ClockTrust, Untrusted};

/// The EST listener's own certificate chain and key (PEM), and where they came from.
pub struct ListenerIdentity {
    /// End-entity first.
    pub chain_pem: String,
    /// PKCS#8 PEM; or, for a key in a PKCS#11 token, its RFC 7512 URI with the PIN (in
    /// memory only: [`crate::http::tls_config`] opens the token with it).
    pub key_pem: String,
    /// `acme:<name>` or `local`.
    pub source: String,
    /// The end-entity certificate's notAfter.
    pub not_after: i64,
}

/// One set the local CA keeps issued: `<state_dir>/certs/<name>`.
pub struct LocalSet<'a> {
    /// The state directory (the audit log lives there).
    pub state_dir: &'a Path,
    /// The set's name: its directory under `certs/`, and its name in the audit log.
    pub name: &'a str,
    /// The DNS names and IP addresses the certificate must carry.
    pub names: (Vec<String>, Vec<IpAddr>),
    /// Lifetime to ask for; `None` = the CA's.
    pub lifetime: Option<u64>,
    /// `key_uri`: the set's key lives in a PKCS#11 token (made there when absent).
    pub key_uri: Option<&'a crypto::KeyUri>,
}

/// What [`ensure_local_set`] could do.
pub struct Ensured {
    /// The set to serve, valid now; `None` when there is none and none may be issued yet.
    pub identity: Option<ListenerIdentity>,
    /// Set when a new certificate was needed but the clock is not trusted: the service waits.
    pub waiting: Option<Untrusted>,
    /// Set when a new certificate was installed just now: the generation that was live before
    /// (`None` for a first one), for a rollback if the deploy hook fails.
    pub installed: Option<Option<String>>,
}

/// The EST listener's certificate: the gateway's ACME certificate when one is installed and
/// valid now (`<state_dir>/certs/<name>/live`), else one from the local CA for the configured
/// names, kept in `<state_dir>/certs/est-local` and reissued only in the last third of its life.
pub fn listener_identity(
    cfg: &Config,
    ca: &LocalCa,
    now: i64,
    trust: &mut ClockTrust,
) -> Result<Ensured, Error> {
    let certs_dir = cfg.main.state_dir.join("certs");
    for c in cfg.certificates.iter().filter(|c| c.directory.is_some()) {
        let live = SetDir::new(certs_dir.join(&c.name)).live();
        let Some((found, info)) = identity_at(&live, c.key_uri.as_ref()) else {
            continue;
        };
        // Valid now; or, while the clock is below its floor, merely unexpired (a router at 1970
        // keeps serving what it has rather than judging it by that clock).
        let usable = now < info.not_after && (info.not_before <= now || trust.check(now).is_err());
        if usable {
            return Ok(Ensured {
                identity: Some(ListenerIdentity {
                    source: format!("acme:{}", c.name),
                    ..found
                }),
                waiting: None,
                installed: None,
            });
        }
    }
    let set = LocalSet {
        state_dir: &cfg.main.state_dir,
        name: LOCAL_SET,
        names: listener_names(cfg, ca),
        lifetime: None,
        key_uri: cfg.est.key_uri.as_ref(),
    };
    ensure_local_set(&set, ca, now, trust)
}

/// The names of every configured certificate that the local CA may issue for, then the
/// router's own: its host name under each `allow_suffix` (`openwrt.lan`) and the address EST
/// listens on when it is a specific one (the LAN address the OpenWrt init script passes with
/// `--listen`), so a sensor can connect by name or IP. Each passes the CA's policy or is left out.
fn listener_names(cfg: &Config, ca: &LocalCa) -> (Vec<String>, Vec<IpAddr>) {
    let mut dns: Vec<String> = Vec::new();
    let mut ips: Vec<IpAddr> = Vec::new();
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .to_ascii_lowercase();
    // A fully qualified host name (`gw1.example.com`, as Yocto images often set) gives its
    // first label: the router is `gw1.lan` on the LAN.
    let label = host.split('.').next().unwrap_or_default().to_string();
    let own_dns: Vec<String> = cfg
        .ca
        .allow_suffix
        .iter()
        .filter(|_| !label.is_empty())
        .map(|s| format!("{label}.{}", s.trim_start_matches('.')))
        .collect();
    let listen = cfg.est.listen.ip();
    let own_ips: Vec<IpAddr> = if listen.is_unspecified() {
        Vec::new()
    } else {
        vec![listen]
    };
    let own = crate::config::Certificate::standalone("est-own", own_dns);
    let own = crate::config::Certificate {
        ips: own_ips,
        ..own
    };
    for c in cfg.certificates.iter().chain(std::iter::once(&own)) {
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
    if dns.is_empty() && ips.is_empty() {
        // Nothing of the router's own passes (a host name that is no DNS label, say): a fixed
        // name under the first suffix the CA allows, else the loopback address if it may.
        let fallback = cfg
            .ca
            .allow_suffix
            .iter()
            .map(|s| format!("gatecert.{}", s.trim_start_matches('.')))
            .find(|d| ca.check_names(std::slice::from_ref(d), &[]).is_ok());
        if let Some(d) = fallback {
            dns.push(d);
        } else if let Some(ip) = [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ]
        .into_iter()
        .find(|ip| ca.check_names(&[], std::slice::from_ref(ip)).is_ok())
        {
            ips.push(ip);
        }
    }
    (dns, ips)
}

/// True when the local CA may issue the EST listener a certificate of its own (some name of
/// the router's, or a fallback, passes its policy): else EST can only serve an ACME one.
pub fn listener_has_names(cfg: &Config, ca: &LocalCa) -> bool {
    let (dns, ips) = listener_names(cfg, ca);
    !dns.is_empty() || !ips.is_empty()
}

/// Keeps `set` issued from the local CA: the live set stays while it is valid now, for the
/// same names, from this CA, with more than a third of its lifetime left. A live set that is
/// not valid yet is rolled back to a kept generation that is. Otherwise a new certificate is
/// issued, if the clock is trusted (`trust`, which should carry the CA's notBefore); if not,
/// the set that is valid now (if any) is kept and `Ensured::waiting` says why.
pub fn ensure_local_set(
    set: &LocalSet<'_>,
    ca: &LocalCa,
    now: i64,
    trust: &mut ClockTrust,
) -> Result<Ensured, Error> {
    let dir = SetDir::new(set.state_dir.join("certs").join(set.name));
    let (dns, ips) = &set.names;
    let want = names_of(dns, ips);
    let ours = |info: &CertInfo| {
        // From the live intermediate: after `ca rotate` the set is re-issued at once.
        same_set(&names_of(&info.dns_names, &info.ips), &want) && ca.issued_by_current(&info.der)
    };
    let live = identity_at(&dir.live(), set.key_uri).filter(|(_, info)| ours(info));
    // The live set, when valid now.
    let mut serving = None;
    // The live set, unexpired but not valid yet by this clock.
    let mut ahead = None;
    match live {
        Some((found, info)) if valid_at(&info, now) => {
            if (info.not_after - now) * 3 > info.lifetime() {
                return Ok(Ensured {
                    identity: Some(found),
                    waiting: None,
                    installed: None,
                });
            }
            serving = Some(found);
        }
        Some((found, info)) if now < info.not_after => ahead = Some((found, info)),
        _ => {}
    }
    if let Some((_, info)) = &ahead {
        if let Some((found, kept)) = roll_back(set, &dir, info, now, &ours)? {
            if (kept.not_after - now) * 3 > kept.lifetime() {
                return Ok(Ensured {
                    identity: Some(found),
                    waiting: None,
                    installed: None,
                });
            }
            serving = Some(found);
        }
    }
    if dns.is_empty() && ips.is_empty() {
        return Err(Error::NoListenerNames);
    }
    let trusted = match trust.check(now) {
        Ok(t) => t,
        Err(u) => {
            // Below the floor the clock cannot say a set is not valid yet: a router that
            // booted at 1970 keeps serving its set (unless a kept one is valid even by it).
            return Ok(Ensured {
                identity: serving.or(ahead.map(|(found, _)| found)),
                waiting: Some(u),
                installed: None,
            });
        }
    };
    let (key_pem, issued) = match set.key_uri {
        Some(uri) => {
            // The key stays in the token; the set records its URI (no PIN) in key.uri.
            let key = match crypto::SigningKey::open(uri) {
                Ok(k) => k,
                Err(e) => {
                    log::info!("{}: {e}; making the key in the token", set.name);
                    crypto::SigningKey::generate_in_token(uri, crypto::KeyType::Ec256)
                        .map_err(|e| Error::Ca(e.into()))?
                }
            };
            let issued = ca.issue_for_key(dns, ips, set.lifetime, true, &key, trusted)?;
            (uri.to_string(), issued)
        }
        None => {
            let (key, issued) = ca.issue_with_new_key(dns, ips, set.lifetime, true, trusted)?;
            (key.to_pem(), issued)
        }
    };
    let leaf = CertInfo::from_der(&issued.leaf_der).map_err(|e| Error::Ca(e.into()))?;
    check_valid_now(&leaf, trusted.unix())?;
    let new = CertSet {
        key_pem,
        cert_pem: crypto::pem_block("CERTIFICATE", &issued.leaf_der),
        chain_pem: crypto::certs_to_pem(issued.chain_der[1..].iter().map(Vec::as_slice)),
    };
    // The audit line first: no certificate goes live without it.
    Audit::open(&audit::path_in(set.state_dir), DEFAULT_MAX_BYTES)
        .and_then(|mut a| {
            a.append(
                trusted.unix(),
                "issue",
                json!({"via": "run", "set": set.name, "names": want,
                    "serial": issued.serial_hex, "not_after": issued.not_after}),
            )
        })
        .map_err(Error::Audit)?;
    let previous = dir.install(&new)?;
    log::info!(
        "issued {} from the local CA for {} (serial {}, until {})",
        dir.path().display(),
        want.join(", "),
        issued.serial_hex,
        crypto::rfc3339(issued.not_after)
    );
    Ok(Ensured {
        identity: Some(ListenerIdentity {
            chain_pem: new.fullchain(),
            key_pem: set
                .key_uri
                .map_or_else(|| new.key_pem.clone(), |u| u.to_secret_string()),
            source: "local".into(),
            not_after: issued.not_after,
        }),
        waiting: None,
        installed: Some(previous),
    })
}

/// notBefore ≤ now < notAfter (RFC 5280 §4.1.2.5).
fn valid_at(info: &CertInfo, now: i64) -> bool {
    info.not_before <= now && now < info.not_after
}

/// Refuses a certificate that is not valid at `now` (RFC 5280 §4.1.2.5): it must never go live.
fn check_valid_now(leaf: &CertInfo, now: i64) -> Result<(), Error> {
    if !valid_at(leaf, now) {
        return Err(Error::NotValidNow(format!(
            "certificate {} is valid from {} to {}, not at {}",
            leaf.serial_hex(),
            crypto::rfc3339(leaf.not_before),
            crypto::rfc3339(leaf.not_after),
            crypto::rfc3339(now)
        )));
    }
    Ok(())
}

/// The live set of `dir` (`live`) is not valid yet: it was issued while the clock ran ahead.
/// Points `live` back at the newest kept generation that is valid now, for the same names and
/// from this CA, and audits it. Returns that set and its certificate.
fn roll_back(
    set: &LocalSet<'_>,
    dir: &SetDir,
    live: &CertInfo,
    now: i64,
    ours: &dyn Fn(&CertInfo) -> bool,
) -> Result<Option<(ListenerIdentity, CertInfo)>, Error> {
    let current = dir.current();
    for generation in generations(dir.path()) {
        if Some(&generation) == current.as_ref() {
            continue;
        }
        let Some((found, info)) = identity_at(&dir.path().join(&generation), set.key_uri) else {
            continue;
        };
        if !ours(&info) || !valid_at(&info, now) {
            continue;
        }
        dir.restore(&generation)?;
        log::warn!(
            "{}: the live certificate is not valid until {} (issued while the clock ran ahead); \
             rolled back to {generation}",
            dir.path().display(),
            crypto::rfc3339(live.not_before)
        );
        let appended =
            Audit::open(&audit::path_in(set.state_dir), DEFAULT_MAX_BYTES).and_then(|mut a| {
                a.append(
                    now,
                    "set-rollback",
                    json!({"set": set.name, "from_serial": live.serial_hex(),
                        "not_before": live.not_before, "to": generation,
                        "serial": info.serial_hex()}),
                )
            });
        if let Err(e) = appended {
            log::error!("audit log append failed: {e}");
        }
        return Ok(Some((found, info)));
    }
    log::warn!(
        "{}: the live certificate is not valid until {} and no kept generation is valid now",
        dir.path().display(),
        crypto::rfc3339(live.not_before)
    );
    Ok(None)
}

/// `gen-N` directories of a set, newest first.
fn generations(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut gens: Vec<u64> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("gen-"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    gens.sort_unstable_by(|a, b| b.cmp(a));
    gens.into_iter().map(|g| format!("gen-{g}")).collect()
}

/// The set in `path` (a generation directory or `live`), if it parses and its key matches its
/// certificate. The caller judges its dates. With `key_uri` the set's key is in a token: the set
/// must record that same key (`key.uri`), and the token must still hold it (when it can be
/// asked; why it can't is said when TLS is set up).
fn identity_at(
    path: &Path,
    key_uri: Option<&crypto::KeyUri>,
) -> Option<(ListenerIdentity, CertInfo)> {
    let chain_pem = store::read_optional(&path.join(store::FULLCHAIN)).ok()??;
    if let Some(uri) = key_uri {
        let recorded = store::read_optional(&path.join(store::KEY_URI)).ok()??;
        let recorded = crypto::KeyUri::parse(recorded.trim()).ok()?;
        // The configured key, or a fresh per-renewal one (`<object>.<hex>`, renew.rs).
        let ours = recorded.object == uri.object
            || recorded
                .object
                .strip_prefix(uri.object.as_str())
                .is_some_and(|rest| rest.starts_with('.'));
        if !ours || recorded.module_path != uri.module_path || recorded.token != uri.token {
            return None;
        }
        // A key object removed from the token makes the set useless: a new one is issued (with
        // a key made in the token). A token that can't be asked (wrong PIN, token missing) keeps
        // the set; the TLS setup then says why.
        let key = uri.with_object(&recorded.object);
        if matches!(crypto::SigningKey::exists_in_token(&key), Ok(false)) {
            log::warn!(
                "{}: the token no longer holds its key {key}",
                path.display()
            );
            return None;
        }
        let info = CertInfo::from_pem(&chain_pem).ok()?;
        return Some((
            ListenerIdentity {
                chain_pem,
                key_pem: key.to_secret_string(),
                source: "local".into(),
                not_after: info.not_after,
            },
            info,
        ));
    }
    let key_pem = match store::read(&path.join(store::KEY)) {
        Ok(k) => k,
        Err(e) => {
            log::warn!("{e}; ignoring the set");
            return None;
        }
    };
    let Ok(info) = CertInfo::from_pem(&chain_pem) else {
        log::warn!("{}: unreadable certificate; ignoring it", path.display());
        return None;
    };
    let key_ok = crypto::PrivateKey::from_pem(&key_pem).is_ok_and(|k| k.matches(&info));
    key_ok.then(|| {
        (
            ListenerIdentity {
                chain_pem,
                key_pem,
                source: "local".into(),
                not_after: info.not_after,
            },
            info,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::TrustedNow;

    const DAY: i64 = 86_400;

    fn good_now() -> i64 {
        crate::trust::BUILD_TIME.parse::<i64>().unwrap() + 365 * DAY
    }

    fn setup(tag: &str) -> (std::path::PathBuf, LocalCa) {
        let dir = std::env::temp_dir().join(format!("gatecert-sets-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = Config::standalone(dir.clone());
        let ca = LocalCa::init(
            &LocalCa::dir_in(&dir),
            &cfg.ca,
            TrustedNow::for_tests(good_now()),
        )
        .unwrap();
        (dir, ca)
    }

    fn set(dir: &Path) -> LocalSet<'_> {
        LocalSet {
            state_dir: dir,
            name: "gw",
            names: (vec!["gateway.local".into()], vec![]),
            lifetime: None,
            key_uri: None,
        }
    }

    fn trust(dir: &Path, ca: &LocalCa) -> ClockTrust {
        ClockTrust::load(dir, Some(ca.intermediate().not_before))
            .with_ntp_flag(dir.join("no-ntp-flag"))
    }

    #[test]
    fn below_the_floor_nothing_is_issued_or_written() {
        let (dir, ca) = setup("floor");
        let got =
            ensure_local_set(&set(&dir), &ca, good_now() - DAY, &mut trust(&dir, &ca)).unwrap();
        assert!(got.identity.is_none());
        assert!(got.waiting.is_some());
        assert!(!dir.join("certs").exists());
        assert!(!audit::path_in(&dir).exists());
    }

    #[test]
    fn a_not_yet_valid_live_set_rolls_back_to_the_valid_one() {
        let (dir, ca) = setup("rollback");
        let t = good_now();
        let first = ensure_local_set(&set(&dir), &ca, t, &mut trust(&dir, &ca)).unwrap();
        let first_pem = first.identity.unwrap().chain_pem;
        // Ahead by 30 days: the 24 h set has expired, a new one is issued.
        let ahead = ensure_local_set(&set(&dir), &ca, t + 30 * DAY, &mut trust(&dir, &ca))
            .unwrap()
            .identity
            .unwrap();
        assert_ne!(ahead.chain_pem, first_pem);
        // Back: the clock is below its last trusted time, the kept set is valid again.
        let mut back = trust(&dir, &ca);
        assert!(back.check(t).is_err());
        let got = ensure_local_set(&set(&dir), &ca, t, &mut back).unwrap();
        assert_eq!(got.identity.unwrap().chain_pem, first_pem);
        let live = SetDir::new(dir.join("certs/gw"))
            .read_live()
            .unwrap()
            .unwrap();
        assert_eq!(live.0, first_pem);
        let log = std::fs::read_to_string(audit::path_in(&dir)).unwrap();
        assert_eq!(log.matches("\"event\":\"issue\"").count(), 2, "{log}");
        assert!(log.contains("\"event\":\"set-rollback\""), "{log}");
    }

    #[test]
    fn a_certificate_not_valid_now_is_refused() {
        let (_, ca) = setup("valid");
        let info = ca.intermediate().clone();
        assert!(check_valid_now(&info, info.not_before - 1).is_err());
        assert!(check_valid_now(&info, info.not_after).is_err());
        assert!(check_valid_now(&info, info.not_before).is_ok());
    }
}
