//! The ACME account key (RFC 8555 §7.3): `accounts/<id>/key.pem` (0600), or, with
//! `account_key_uri` (issue 17), a key in a PKCS#11 token that signs every request there
//! (ES256 / ES384, RFC 7518 §3.4) and never touches the flash. `account.json` records which key
//! its account URL belongs to, so a changed `account_key_uri` looks the account up again
//! (newAccount returns the existing account of a known key, §7.3.1) instead of signing for
//! another key's account.

use std::path::Path;

use crate::config::Certificate;
use crate::crypto::{KeyType, PrivateKey, SigningKey};
use crate::store;

use super::Error;

/// The account key for `cert` in the account directory `dir`, and whether it was made just now
/// (then no stored account URL belongs to it). With `create`, a missing key is made: a file key
/// written (0600) before newAccount, or a P-256 key made in the token; without it, a missing
/// file key is [`Error::NoAccount`] and a missing token key the token's error.
pub(super) fn load(
    dir: &Path,
    cert: &Certificate,
    create: bool,
) -> Result<(SigningKey, bool), Error> {
    if let Some(uri) = &cert.account_key_uri {
        let made = create && !SigningKey::exists_in_token(uri)?;
        let key = if made {
            SigningKey::open_or_generate(uri, KeyType::Ec256)?
        } else {
            SigningKey::open(uri)?
        };
        log::info!("{}: account key: {}", cert.name, key.describe());
        return Ok((key, made));
    }
    let key_path = dir.join("key.pem");
    match store::read_optional(&key_path)? {
        Some(pem) => Ok((PrivateKey::from_pem(&pem)?.into(), false)),
        None if create => {
            let key = PrivateKey::generate(KeyType::Ec256)?;
            store::write_atomic(&key_path, key.to_pem().as_bytes(), store::SECRET)?;
            Ok((key.into(), true))
        }
        None => Err(Error::NoAccount(dir.to_path_buf())),
    }
}

/// What `account.json` records as its key: the token key's URI without PIN, `None` for
/// `key.pem`.
pub(super) fn record(cert: &Certificate) -> Option<String> {
    cert.account_key_uri.as_ref().map(|u| u.to_string())
}

/// `gatecert account rollover` replaces a file key only: a token key is replaced by naming a new
/// object in `account_key_uri` (the next run makes it and registers it as a new account).
pub(super) fn refuse_token_rollover(cert: &Certificate) -> Result<(), Error> {
    match &cert.account_key_uri {
        Some(uri) => Err(Error::Config(format!(
            "certificate '{}': the account key is in a PKCS#11 token ({uri}); account rollover \
             replaces key.pem only. To change a token account key, point account_key_uri at a \
             new object (a new account is registered with it)",
            cert.name
        ))),
        None => Ok(()),
    }
}
