//! The gateway certificate's key in a PKCS#11 token (`key_uri`, issue 17): a fresh key per
//! renewal made in the token (or the live one with `reuse_key`), the CSR signed there, and the
//! replaced key object removed once the new set is live and the deploy hook succeeded
//! ([`super::install_set`]).
//!
//! A kill -9 (or a failing deploy hook) can leave one key object behind: a fresh key whose set
//! never went live, or the replaced key not yet removed. Each renewal first removes every object
//! labelled `<object>.<8 hex digits>` except the live set's ([`sweep`]), under the state
//! directory's lock that every renewal holds, so the token never holds more than two of this
//! certificate's key pairs: the live set's and at most one other.

use crate::acme::{Client, Login};
use crate::config::Certificate;
use crate::crypto;
use crate::store;
use crate::trust::TrustedNow;

use super::{authorize, finish, install_set, Env, Error, Outcome};

/// Orders, finalizes with a token key's CSR and installs (see the module doc). `live` is the
/// live set (fullchain, key record); `_trusted` is the clock gate's proof, as for every order.
#[allow(clippy::too_many_arguments)]
pub(super) fn renew(
    client: &Client,
    env: &Env,
    login: &Login,
    cert: &Certificate,
    uri: &crypto::KeyUri,
    replaces: Option<String>,
    live: Option<&(String, String)>,
    _trusted: TrustedNow,
) -> Result<Outcome, Error> {
    // The recorded key of the live set (its label; the PIN comes from the config).
    let live_uri = live
        .filter(|(_, k)| store::is_token_key(k))
        .and_then(|(_, k)| crypto::KeyUri::parse(k.trim()).ok())
        .map(|recorded| uri.with_object(&recorded.object));
    sweep(cert, uri, live_uri.as_ref());
    let (key, chain) = issue_in_token(client, env, login, cert, uri, replaces, live_uri.as_ref())?;
    let key_uri = key.token_uri().cloned().unwrap_or_else(|| uri.clone());
    // A fresh key replaced the live one: its object goes once the new set is live and the
    // deploy hook succeeded.
    let old = live_uri.filter(|old| old.object != key_uri.object);
    install_set(
        env.state_dir,
        cert,
        key_uri.to_string(),
        &key.spki_der(),
        &chain,
        old.as_ref(),
    )
}

/// [`super::issue`] with the certificate's key in a PKCS#11 token: the live set's key with
/// `reuse_key` (when it is still there and of the configured type), else a fresh key made in
/// the token for this order, labelled `<object>.<8 hex digits>`; removed again if the order
/// fails. Returns the key and the chosen chain.
fn issue_in_token(
    client: &Client,
    env: &Env,
    login: &Login,
    cert: &Certificate,
    uri: &crypto::KeyUri,
    replaces: Option<String>,
    live: Option<&crypto::KeyUri>,
) -> Result<(crypto::SigningKey, String), Error> {
    let (order_url, order) = authorize(client, env, login, cert, replaces)?;
    if cert.reuse_key {
        if let Some(k) = live.and_then(|u| crypto::SigningKey::open(u).ok()) {
            if k.kind() == cert.key_type {
                let csr = k.csr(&cert.domains, &cert.ips)?;
                let chain = finish(client, login, cert, &order_url, order, &csr)?;
                return Ok((k, chain));
            }
        }
    }
    let label = format!(
        "{}.{}",
        uri.object,
        crypto::hex(&crypto::random_bytes::<4>()?)
    );
    let fresh = uri.with_object(&label);
    let key = crypto::SigningKey::generate_in_token(&fresh, cert.key_type)?;
    let chain = key
        .csr(&cert.domains, &cert.ips)
        .map_err(Error::from)
        .and_then(|csr| finish(client, login, cert, &order_url, order, &csr));
    match chain {
        Ok(chain) => Ok((key, chain)),
        Err(e) => {
            drop(key);
            if let Err(d) = crypto::SigningKey::destroy_in_token(&fresh) {
                log::warn!(
                    "{}: could not remove the unused key {fresh}: {d}",
                    cert.name
                );
            }
            Err(e)
        }
    }
}

/// True for a label this certificate's renewals make: `<object>.<8 lower-case hex digits>`.
fn is_renewal_label(object: &str, label: &str) -> bool {
    label
        .strip_prefix(object)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Removes the key objects an interrupted renewal left in the token: every `<object>.<8 hex>`
/// label but the live set's. A token that can't be listed is logged and the renewal goes on
/// (its own errors will say more).
fn sweep(cert: &Certificate, uri: &crypto::KeyUri, live: Option<&crypto::KeyUri>) {
    let keep = live.map(|l| l.object.as_str());
    let stale = crypto::SigningKey::labels_in_token(uri, &|label| {
        is_renewal_label(&uri.object, label) && Some(label) != keep
    });
    let stale = match stale {
        Ok(s) => s,
        Err(e) => {
            log::warn!("{}: cannot list the token's keys: {e}", cert.name);
            return;
        }
    };
    for label in stale {
        let old = uri.with_object(&label);
        match crypto::SigningKey::destroy_in_token(&old) {
            Ok(()) => log::info!(
                "{}: removed a key an interrupted renewal left: {old}",
                cert.name
            ),
            Err(e) => log::warn!("{}: could not remove the unused key {old}: {e}", cert.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_renewal_label;

    /// Only `<object>.<8 lower-case hex>` is a renewal's label: the live object itself, other
    /// certificates' objects and look-alikes are never swept.
    #[test]
    fn renewal_labels_are_the_object_dot_eight_hex_digits() {
        assert!(is_renewal_label("gw", "gw.0a1b2c3d"));
        for other in [
            "gw",
            "gw.",
            "gw.0a1b2c3",
            "gw.0a1b2c3d4",
            "gw.0A1B2C3D",
            "gw.0a1b2c3g",
            "gwx.0a1b2c3d",
            "gw2.0a1b2c3d",
            "acme",
            "ca",
            "gw.0a1b2c3d.old",
        ] {
            assert!(!is_renewal_label("gw", other), "{other}");
        }
        assert!(is_renewal_label("gw.x", "gw.x.deadbeef"));
        assert!(!is_renewal_label("gw.x", "gw.deadbeef"));
    }
}
