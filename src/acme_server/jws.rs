//! Verifying the JWS of ACME requests (RFC 8555 §6.2, RFC 7515 §7.2.2 flattened JSON):
//! ES256, ES384 (RFC 7518 §3.4), EdDSA with Ed25519 (RFC 8037) and RS256 (RFC 7518 §3.3)
//! account keys, and the HS256 External Account Binding (RFC 8555 §7.3.4).

use ring::signature;
use serde_json::Value;

use super::problem::Problem;
use crate::crypto::{self, b64url, b64url_decode};

/// A parsed flattened JWS, signature not yet checked.
pub struct Jws {
    /// The decoded protected header.
    pub header: Value,
    /// The decoded payload (empty for POST-as-GET, RFC 8555 §6.3).
    pub payload: Vec<u8>,
    /// `protected || '.' || payload`, as sent.
    signing_input: Vec<u8>,
    signature: Vec<u8>,
}

/// How the request names its key (RFC 8555 §6.2: exactly one of the two).
pub enum KeyRef {
    /// The public key itself (newAccount, revokeCert by certificate key).
    Jwk(Value),
    /// An account URL.
    Kid(String),
}

impl Jws {
    /// Parses `body`; a malformed one is `malformed`, an unsupported `alg` `badSignatureAlgorithm`.
    pub fn parse(body: &[u8]) -> Result<Jws, Problem> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Problem::malformed(format!("body is not JSON: {e}")))?;
        let part = |name: &str| {
            v.get(name).and_then(Value::as_str).ok_or_else(|| {
                Problem::malformed(format!(
                    "JWS member '{name}' is missing (RFC 8555 6.2: flattened JSON serialization)"
                ))
            })
        };
        let (protected, payload, sig) = (part("protected")?, part("payload")?, part("signature")?);
        let header: Value = b64url_decode(protected)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or_else(|| Problem::malformed("protected header is not base64url JSON"))?;
        let payload_bytes =
            b64url_decode(payload).map_err(|_| Problem::malformed("payload is not base64url"))?;
        let signature =
            b64url_decode(sig).map_err(|_| Problem::malformed("signature is not base64url"))?;
        Ok(Jws {
            header,
            payload: payload_bytes,
            signing_input: format!("{protected}.{payload}").into_bytes(),
            signature,
        })
    }

    /// A header member as a string.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// `jwk` or `kid`, exactly one (RFC 8555 §6.2).
    pub fn key_ref(&self) -> Result<KeyRef, Problem> {
        match (self.header.get("jwk"), self.str("kid")) {
            (Some(j), None) => Ok(KeyRef::Jwk(j.clone())),
            (None, Some(k)) => Ok(KeyRef::Kid(k.to_owned())),
            _ => Err(Problem::malformed(
                "the protected header must hold exactly one of 'jwk' and 'kid' (RFC 8555 6.2)",
            )),
        }
    }

    /// Verifies the signature with `jwk` under the header's `alg`.
    pub fn verify(&self, jwk: &Value) -> Result<(), Problem> {
        let alg = self.str("alg").unwrap_or_default();
        verify(alg, jwk, &self.signing_input, &self.signature)
    }

    /// Verifies an HS256 MAC (the EAB JWS, RFC 8555 §7.3.4) in constant time.
    pub fn verify_hs256(&self, key: &[u8]) -> Result<(), Problem> {
        if self.str("alg") != Some("HS256") {
            return Err(Problem::new(
                "badSignatureAlgorithm",
                400,
                "the externalAccountBinding must be HS256",
            ));
        }
        let want = crypto::hmac_sha256(key, &self.signing_input);
        if crypto::constant_time_eq(&want, &self.signature) {
            Ok(())
        } else {
            Err(Problem::unauthorized(
                "externalAccountBinding MAC does not verify",
            ))
        }
    }
}

fn member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, Problem> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Problem::malformed(format!("JWK member '{name}' is missing")))
}

fn member_bytes(jwk: &Value, name: &str) -> Result<Vec<u8>, Problem> {
    b64url_decode(member(jwk, name)?)
        .map_err(|_| Problem::malformed(format!("JWK member '{name}' is not base64url")))
}

/// The raw public key of an EC or OKP JWK: `04 || x || y` for P-256/P-384, `x` for Ed25519;
/// and the modulus and exponent of an RSA one.
enum Public {
    Raw(&'static signature::EdDSAParameters, Vec<u8>),
    Ec(&'static str, Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

fn public(jwk: &Value) -> Result<Public, Problem> {
    match member(jwk, "kty")? {
        "EC" => {
            let crv = member(jwk, "crv")?;
            let len = match crv {
                "P-256" => 32,
                "P-384" => 48,
                other => return Err(bad_key(format!("EC curve {other} is not accepted"))),
            };
            let (x, y) = (member_bytes(jwk, "x")?, member_bytes(jwk, "y")?);
            if x.len() != len || y.len() != len {
                return Err(bad_key(format!("{crv} coordinates must be {len} bytes")));
            }
            let mut point = vec![4u8];
            point.extend(x);
            point.extend(y);
            Ok(Public::Ec(if len == 32 { "P-256" } else { "P-384" }, point))
        }
        "OKP" if member(jwk, "crv")? == "Ed25519" => {
            Ok(Public::Raw(&signature::ED25519, member_bytes(jwk, "x")?))
        }
        "RSA" => {
            let n = member_bytes(jwk, "n")?;
            if n.iter().skip_while(|b| **b == 0).count() * 8 < 2048 {
                return Err(bad_key("RSA keys must be at least 2048 bits"));
            }
            Ok(Public::Rsa {
                n,
                e: member_bytes(jwk, "e")?,
            })
        }
        other => Err(bad_key(format!(
            "key type {other} is not accepted (EC P-256/P-384, OKP Ed25519, RSA >= 2048)"
        ))),
    }
}

fn bad_key(msg: impl Into<String>) -> Problem {
    Problem::new("badPublicKey", 400, msg)
}

fn verify(alg: &str, jwk: &Value, msg: &[u8], sig: &[u8]) -> Result<(), Problem> {
    let ok = match (alg, public(jwk)?) {
        ("ES256", Public::Ec("P-256", point)) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
        }
        ("ES384", Public::Ec("P-384", point)) => {
            signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(msg, sig)
        }
        ("EdDSA", Public::Raw(params, x)) => {
            signature::UnparsedPublicKey::new(params, x).verify(msg, sig)
        }
        ("RS256", Public::Rsa { n, e }) => signature::RsaPublicKeyComponents { n, e }.verify(
            &signature::RSA_PKCS1_2048_8192_SHA256,
            msg,
            sig,
        ),
        (alg, _) => {
            return Err(Problem::new(
                "badSignatureAlgorithm",
                400,
                format!("alg {alg:?} does not fit the key (ES256, ES384, EdDSA, RS256 accepted)"),
            ))
        }
    };
    ok.map_err(|_| Problem::malformed("JWS signature does not verify"))
}

/// The RFC 7638 thumbprint of `jwk` (SHA-256, base64url): its required members, sorted, no
/// whitespace. Also checks the key is one this server accepts.
pub fn thumbprint(jwk: &Value) -> Result<String, Problem> {
    public(jwk)?;
    let canonical = match member(jwk, "kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            member(jwk, "crv")?,
            member(jwk, "x")?,
            member(jwk, "y")?
        ),
        "OKP" => format!(
            r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#,
            member(jwk, "crv")?,
            member(jwk, "x")?
        ),
        _ => format!(
            r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
            member(jwk, "e")?,
            member(jwk, "n")?
        ),
    };
    Ok(b64url(&crypto::sha256(canonical.as_bytes())))
}

/// True when `jwk` is the public key in the SubjectPublicKeyInfo `spki_der` (revocation by the
/// certificate's key, RFC 8555 §7.6).
pub fn matches_spki(jwk: &Value, spki_der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer as _;
    let Ok((_, spki)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der) else {
        return false;
    };
    let bits = spki.subject_public_key.data.as_ref();
    match public(jwk) {
        Ok(Public::Ec(_, point)) => point == bits,
        Ok(Public::Raw(_, x)) => x == bits,
        Ok(Public::Rsa { n, e }) => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(r)) => {
                strip(r.modulus) == strip(&n) && strip(r.exponent) == strip(&e)
            }
            _ => false,
        },
        Err(_) => false,
    }
}

fn strip(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::jws::{sign, JwkSigner};
    use crate::crypto::{KeyType, PrivateKey};

    #[test]
    fn client_jws_verifies_and_tampering_does_not() {
        for kind in [KeyType::Ec256, KeyType::Ec384] {
            let key = PrivateKey::generate(kind).unwrap();
            let jws = sign(
                &JwkSigner(&key),
                Some("n"),
                "https://gw/acme/new-acct",
                None,
            )
            .unwrap();
            let body = serde_json::to_vec(&jws).unwrap();
            let parsed = Jws::parse(&body).unwrap();
            let KeyRef::Jwk(jwk) = parsed.key_ref().unwrap() else {
                panic!("jwk expected")
            };
            parsed.verify(&jwk).unwrap();
            assert_eq!(thumbprint(&jwk).unwrap(), key.jwk_thumbprint());
            assert!(matches_spki(&jwk, &key.spki_der()));
            let other = PrivateKey::generate(kind).unwrap();
            let e = parsed.verify(&other.jwk()).unwrap_err();
            assert!(e.detail.contains("does not verify"), "{}", e.detail);
            assert!(!matches_spki(&other.jwk(), &key.spki_der()));
        }
    }

    #[test]
    fn alg_must_fit_the_key_and_small_rsa_is_refused() {
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let e = verify("ES384", &key.jwk(), b"m", &[0; 96]).unwrap_err();
        assert_eq!(e.kind, "badSignatureAlgorithm");
        let rsa = serde_json::json!({"kty": "RSA", "n": b64url(&[0xc1; 128]), "e": "AQAB"});
        assert_eq!(thumbprint(&rsa).unwrap_err().kind, "badPublicKey");
        let none = serde_json::json!({"kty": "oct", "k": "AAAA"});
        assert_eq!(thumbprint(&none).unwrap_err().kind, "badPublicKey");
    }
}
