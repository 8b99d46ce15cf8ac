//! JSON Web Signature in the flattened JSON serialization (RFC 7515 §7.2.2), as ACME requires
//! (RFC 8555 §6.2).
//!
//! There are exactly three signers: [`JwkSigner`] (the account key, public key in the header:
//! newAccount, revocation by certificate key, the inner key-change JWS), [`KidSigner`] (the
//! account key, account URL in the header: everything else) and [`EabSigner`] (HS256 over the
//! account JWK, RFC 8555 §7.3.4). The header carries [`KeyOrKeyId`], so "jwk and kid both" or
//! "neither" cannot be built (§6.2: "The 'jwk' and 'kid' fields are mutually exclusive").

use serde::Serialize;

use crate::crypto::{self, b64url, JwsKey};

/// Either the public key or the account URL, RFC 8555 §6.2.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum KeyOrKeyId<'a> {
    /// The JWK of the signing key.
    Jwk(serde_json::Value),
    /// The account URL (or, for EAB, the CA-issued key identifier).
    Kid(&'a str),
}

/// The JWS protected header, RFC 8555 §6.2.
#[derive(Clone, Debug, Serialize)]
pub struct Header<'a> {
    /// `ES256`, `ES384` or `HS256`.
    pub alg: &'static str,
    /// jwk XOR kid.
    #[serde(flatten)]
    pub key: KeyOrKeyId<'a>,
    /// The anti-replay nonce (absent in the EAB and inner key-change JWS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<&'a str>,
    /// The request URL.
    pub url: &'a str,
}

/// Something that can sign a JWS.
pub trait Signer {
    /// The protected header for a request to `url`.
    fn header<'a>(&'a self, nonce: Option<&'a str>, url: &'a str) -> Header<'a>;
    /// Signs the JWS signing input.
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, crypto::Error>;
}

/// Signs with the account key (a file key or one in a PKCS#11 token) and puts its JWK in the
/// header.
pub struct JwkSigner<'a>(pub &'a dyn JwsKey);

impl Signer for JwkSigner<'_> {
    fn header<'a>(&'a self, nonce: Option<&'a str>, url: &'a str) -> Header<'a> {
        Header {
            alg: self.0.kind().jws_alg(),
            key: KeyOrKeyId::Jwk(self.0.jwk()),
            nonce,
            url,
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, crypto::Error> {
        self.0.sign_jws(msg)
    }
}

/// Signs with the account key and names the account URL in the header.
pub struct KidSigner<'a> {
    /// The account key (a file key or one in a PKCS#11 token).
    pub key: &'a dyn JwsKey,
    /// The account URL.
    pub kid: &'a str,
}

impl Signer for KidSigner<'_> {
    fn header<'a>(&'a self, nonce: Option<&'a str>, url: &'a str) -> Header<'a> {
        Header {
            alg: self.key.kind().jws_alg(),
            key: KeyOrKeyId::Kid(self.kid),
            nonce,
            url,
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, crypto::Error> {
        self.key.sign_jws(msg)
    }
}

/// The External Account Binding MAC key, RFC 8555 §7.3.4.
pub struct EabSigner<'a> {
    /// The key identifier the CA issued.
    pub kid: &'a str,
    /// The MAC key (decoded). Never logged.
    pub key: &'a [u8],
}

impl Signer for EabSigner<'_> {
    fn header<'a>(&'a self, nonce: Option<&'a str>, url: &'a str) -> Header<'a> {
        Header {
            alg: "HS256",
            key: KeyOrKeyId::Kid(self.kid),
            nonce,
            url,
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, crypto::Error> {
        Ok(crypto::hmac_sha256(self.key, msg).to_vec())
    }
}

/// A flattened JWS: `{"protected", "payload", "signature"}`. `payload` `None` is POST-as-GET
/// (RFC 8555 §6.3: the payload is the empty string).
pub fn sign(
    signer: &dyn Signer,
    nonce: Option<&str>,
    url: &str,
    payload: Option<&serde_json::Value>,
) -> Result<serde_json::Value, crypto::Error> {
    let header = signer.header(nonce, url);
    // Serializing a struct of strings and a serde_json::Value cannot fail.
    let protected = b64url(&serde_json::to_vec(&header).unwrap_or_default());
    let payload = match payload {
        Some(p) => b64url(&serde_json::to_vec(p).unwrap_or_default()),
        None => String::new(),
    };
    let signature = signer.sign(format!("{protected}.{payload}").as_bytes())?;
    Ok(serde_json::json!({
        "protected": protected,
        "payload": payload,
        "signature": b64url(&signature),
    }))
}

/// The External Account Binding JWS for a newAccount request (RFC 8555 §7.3.4): protected
/// `{alg: HS256, kid, url}`, payload the account's public JWK.
pub fn eab(
    account_key: &dyn JwsKey,
    kid: &str,
    hmac_key: &[u8],
    new_account_url: &str,
) -> Result<serde_json::Value, crypto::Error> {
    sign(
        &EabSigner { kid, key: hmac_key },
        None,
        new_account_url,
        Some(&account_key.jwk()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, PrivateKey};

    pub(crate) fn decode(jws: &serde_json::Value, part: &str) -> serde_json::Value {
        let raw = crypto::b64url_decode(jws[part].as_str().unwrap()).unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    #[test]
    fn kid_and_jwk_headers_are_exclusive() {
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let jws = sign(&JwkSigner(&key), Some("n1"), "https://ca/new-acct", None).unwrap();
        let h = decode(&jws, "protected");
        assert_eq!(h["alg"], "ES256");
        assert_eq!(h["jwk"], key.jwk());
        assert!(h.get("kid").is_none());
        assert_eq!(h["nonce"], "n1");
        assert_eq!(h["url"], "https://ca/new-acct");
        assert_eq!(jws["payload"], "");

        let signer = KidSigner {
            key: &key,
            kid: "https://ca/acct/1",
        };
        let jws = sign(
            &signer,
            Some("n2"),
            "https://ca/order",
            Some(&serde_json::json!({})),
        )
        .unwrap();
        let h = decode(&jws, "protected");
        assert_eq!(h["kid"], "https://ca/acct/1");
        assert!(h.get("jwk").is_none());
        assert_eq!(decode(&jws, "payload"), serde_json::json!({}));
        // The signature is fixed-width r||s (RFC 7518 §3.4).
        let sig = crypto::b64url_decode(jws["signature"].as_str().unwrap()).unwrap();
        assert_eq!(sig.len(), 64);
    }

    #[test]
    fn es384_signature_is_96_bytes() {
        let key = PrivateKey::generate(KeyType::Ec384).unwrap();
        let jws = sign(&JwkSigner(&key), Some("n"), "u", None).unwrap();
        assert_eq!(decode(&jws, "protected")["alg"], "ES384");
        let sig = crypto::b64url_decode(jws["signature"].as_str().unwrap()).unwrap();
        assert_eq!(sig.len(), 96);
    }

    #[test]
    fn eab_is_hs256_over_the_account_jwk() {
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let mac = b"0123456789abcdef0123456789abcdef";
        let jws = eab(&key, "kid-1", mac, "https://ca/new-acct").unwrap();
        let h = decode(&jws, "protected");
        assert_eq!(
            h,
            serde_json::json!({"alg": "HS256", "kid": "kid-1", "url": "https://ca/new-acct"})
        );
        assert_eq!(decode(&jws, "payload"), key.jwk());
        let input = format!(
            "{}.{}",
            jws["protected"].as_str().unwrap(),
            jws["payload"].as_str().unwrap()
        );
        let expect = crypto::hmac_sha256(mac, input.as_bytes());
        let got = crypto::b64url_decode(jws["signature"].as_str().unwrap()).unwrap();
        assert!(crypto::constant_time_eq(&expect, &got));
    }
}
