//! External Account Binding keys (RFC 8555 §7.3.4) for `gatecert token add --acme`.
//!
//! A leaf is admitted with a bootstrap token, and the token store keeps only a salted hash of
//! each token. The server must still know the EAB MAC key to verify the binding, so the MAC key
//! is *derived*, never stored: `eab_hmac = HMAC-SHA-256(eab.key, "gatecert-eab-v1" || kid)`,
//! where `eab.key` is one 32-byte random secret in `<state_dir>/acme/` (0600 in a 0700
//! directory, like the CA's key) and `kid` is random per token. The token store holds the
//! salted hash of `eab_hmac` (the bootstrap token of an `--acme` device *is* its MAC key), so
//! a leaked `tokens.jnl` yields no MAC key, revoking or re-adding the token (a new kid)
//! invalidates the old key, and nothing per token is kept in clear.

use std::path::{Path, PathBuf};

use crate::crypto::{self, b64url};
use crate::store;

/// `<state_dir>/acme/`: the ACME server's files.
pub fn dir_in(state_dir: &Path) -> PathBuf {
    state_dir.join("acme")
}

fn secret_path(state_dir: &Path) -> PathBuf {
    dir_in(state_dir).join("eab.key")
}

/// The EAB secret, made on first use (by `token add --acme`).
pub fn ensure_secret(state_dir: &Path) -> Result<Vec<u8>, store::Error> {
    if let Some(s) = read_secret(state_dir)? {
        return Ok(s);
    }
    let dir = dir_in(state_dir);
    store::private_dir(&dir)?;
    let secret = crypto::random_bytes::<32>().map_err(|e| store::Error::Corrupt {
        path: secret_path(state_dir),
        what: format!("cannot make a secret: {e}"),
    })?;
    store::write_atomic(
        &secret_path(state_dir),
        b64url(&secret).as_bytes(),
        store::SECRET,
    )?;
    Ok(secret.to_vec())
}

/// The EAB secret, `None` before any `--acme` token was made.
pub fn read_secret(state_dir: &Path) -> Result<Option<Vec<u8>>, store::Error> {
    let path = secret_path(state_dir);
    match store::read_optional(&path)? {
        None => Ok(None),
        Some(text) => crypto::b64url_decode(text.trim())
            .ok()
            .filter(|s| s.len() == 32)
            .map(Some)
            .ok_or(store::Error::Corrupt {
                path,
                what: "not a base64url 32-byte secret".into(),
            }),
    }
}

/// The MAC key for `kid`, base64url (what `token add --acme` prints as `eab_hmac`).
pub fn mac_key(secret: &[u8], kid: &str) -> String {
    let mut msg = b"gatecert-eab-v1".to_vec();
    msg.extend(kid.as_bytes());
    b64url(&crypto::hmac_sha256(secret, &msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_private_and_keys_differ_by_kid() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("gatecert-eab-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(read_secret(&dir).unwrap(), None);
        let s = ensure_secret(&dir).unwrap();
        assert_eq!(ensure_secret(&dir).unwrap(), s);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&secret_path(&dir)), 0o600);
        assert_eq!(mode(&dir_in(&dir)), 0o700);
        assert_ne!(mac_key(&s, "a"), mac_key(&s, "b"));
        assert_eq!(crypto::b64url_decode(&mac_key(&s, "a")).unwrap().len(), 32);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
