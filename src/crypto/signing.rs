//! [`SigningKey`]: a private key that signs, wherever it lives: a PKCS#8 file ([`PrivateKey`])
//! or a PKCS#11 token ([`super::token`], with the `pkcs11` feature). Certificates, CRLs and CSRs
//! (rcgen's [`rcgen::SigningKey`]) and TLS server authentication (rustls'
//! [`rustls::sign::SigningKey`]) go through it, so a token key serves every use a file key does.
//! Signatures are ECDSA in the X.509 / TLS encoding (RFC 3279 §2.2.3 `ECDSA-Sig-Value`).

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::{CertInfo, Error, KeyType, KeyUri, PrivateKey};

/// A private key that signs: a file key, or (with the `pkcs11` feature) a key in a token.
pub enum SigningKey {
    /// A PKCS#8 key held in memory (read from a 0600 file).
    File(PrivateKey),
    /// A key inside a PKCS#11 token: it never leaves the token.
    #[cfg(feature = "pkcs11")]
    Token(super::token::TokenKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::File(k) => write!(f, "SigningKey::File({k:?})"),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => write!(f, "SigningKey::Token({k:?})"),
        }
    }
}

impl From<PrivateKey> for SigningKey {
    fn from(k: PrivateKey) -> Self {
        SigningKey::File(k)
    }
}

impl SigningKey {
    /// Opens the key a PKCS#11 URI names (RFC 7512): loads the module, finds the token, logs in
    /// with the PIN and finds the key pair by label. Without the `pkcs11` feature this is an
    /// error saying so.
    pub fn open(uri: &KeyUri) -> Result<SigningKey, Error> {
        #[cfg(feature = "pkcs11")]
        {
            super::token::TokenKey::open(uri).map(SigningKey::Token)
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            Err(no_pkcs11(uri))
        }
    }

    /// Makes a new non-extractable key pair of `kind` in the token (C_GenerateKeyPair with
    /// CKA_TOKEN, CKA_SENSITIVE, CKA_EXTRACTABLE false). Refuses when the label is taken.
    pub fn generate_in_token(uri: &KeyUri, kind: KeyType) -> Result<SigningKey, Error> {
        #[cfg(feature = "pkcs11")]
        {
            super::token::TokenKey::generate(uri, kind).map(SigningKey::Token)
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = kind;
            Err(no_pkcs11(uri))
        }
    }

    /// Opens the key the URI names, or makes it in the token (as [`SigningKey::generate_in_token`])
    /// when the token holds no private key under that label (a public key object left alone
    /// there is removed first). A module, token or PIN failure is an error, never a reason to
    /// make a key.
    pub fn open_or_generate(uri: &KeyUri, kind: KeyType) -> Result<SigningKey, Error> {
        #[cfg(feature = "pkcs11")]
        {
            if Self::exists_in_token(uri)? {
                Self::open(uri)
            } else {
                // A public key without its private key (a kill during C_GenerateKeyPair) is of
                // no use and would block the label: clear it first.
                super::token::destroy(uri)?;
                Self::generate_in_token(uri, kind)
            }
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = kind;
            Err(no_pkcs11(uri))
        }
    }

    /// True when the URI's token holds a private key under its label; an error when the
    /// module, the token or the PIN fails.
    pub fn exists_in_token(uri: &KeyUri) -> Result<bool, Error> {
        #[cfg(feature = "pkcs11")]
        {
            super::token::exists(uri)
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            Err(no_pkcs11(uri))
        }
    }

    /// The labels of the key objects in the URI's token for which `select` is true.
    pub fn labels_in_token(
        uri: &KeyUri,
        select: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, Error> {
        #[cfg(feature = "pkcs11")]
        {
            super::token::labels(uri, select)
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            let _ = select;
            Err(no_pkcs11(uri))
        }
    }

    /// Destroys the key pair (private and public objects) the URI names. Absent is not an
    /// error (a retried cleanup).
    pub fn destroy_in_token(uri: &KeyUri) -> Result<(), Error> {
        #[cfg(feature = "pkcs11")]
        {
            super::token::destroy(uri)
        }
        #[cfg(not(feature = "pkcs11"))]
        {
            Err(no_pkcs11(uri))
        }
    }

    /// The file key; `None` for a token key.
    pub fn as_file(&self) -> Option<&PrivateKey> {
        match self {
            SigningKey::File(k) => Some(k),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(_) => None,
        }
    }

    /// The token key's URI (without PIN); `None` for a file key.
    pub fn token_uri(&self) -> Option<&KeyUri> {
        match self {
            SigningKey::File(_) => None,
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => Some(k.uri()),
        }
    }

    /// The key's type.
    pub fn kind(&self) -> KeyType {
        match self {
            SigningKey::File(k) => k.kind(),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => k.kind(),
        }
    }

    /// The uncompressed public point (0x04 || X || Y).
    pub fn public_point(&self) -> &[u8] {
        match self {
            SigningKey::File(k) => k.public_point(),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => k.public_point(),
        }
    }

    /// DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData as _;
        self.rcgen().subject_public_key_info()
    }

    /// True when `cert`'s public key is this key's.
    pub fn matches(&self, cert: &CertInfo) -> bool {
        cert.spki_der == self.spki_der()
    }

    /// Signs `msg` (hashed with SHA-256 for P-256, SHA-384 for P-384): an ASN.1 DER
    /// `ECDSA-Sig-Value` (RFC 3279 §2.2.3), as X.509 and TLS 1.2/1.3 want it.
    pub fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            SigningKey::File(k) => k.sign_der(msg),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => k.sign_der(msg),
        }
    }

    /// Signs `msg` with the JWS encoding: the fixed-width `r || s` of RFC 7518 §3.4 (ES256 /
    /// ES384), in the token for a token key.
    pub fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            SigningKey::File(k) => k.sign_jws(msg),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => k.sign_raw(msg),
        }
    }

    /// The key as rcgen's signer, for certificates, CRLs and CSRs.
    pub fn rcgen(&self) -> RcgenKey<'_> {
        match self {
            SigningKey::File(k) => RcgenKey::File(k),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => RcgenKey::Token(k),
        }
    }

    /// A PKCS#10 CSR for these names, signed by this key (RFC 2986 proof of possession).
    pub fn csr(&self, dns: &[String], ips: &[IpAddr]) -> Result<Vec<u8>, Error> {
        let params = super::csr_params(dns, ips)?;
        Ok(params.serialize_request(&self.rcgen())?.der().to_vec())
    }

    /// A description for `check` and messages: `file` or the token key's URI and token.
    pub fn describe(&self) -> String {
        match self {
            SigningKey::File(k) => format!("file key ({})", k.kind().as_str()),
            #[cfg(feature = "pkcs11")]
            SigningKey::Token(k) => k.describe(),
        }
    }

    /// The key as rustls' server signing key (TLS server authentication, RFC 8446 §4.4.3).
    pub fn into_tls(self) -> Arc<dyn rustls::sign::SigningKey> {
        Arc::new(TlsKey(Arc::new(self)))
    }
}

impl super::JwsKey for SigningKey {
    fn kind(&self) -> KeyType {
        SigningKey::kind(self)
    }

    fn public_point(&self) -> &[u8] {
        SigningKey::public_point(self)
    }

    fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        SigningKey::sign_jws(self, msg)
    }
}

#[cfg(not(feature = "pkcs11"))]
fn no_pkcs11(uri: &KeyUri) -> Error {
    Error::Key(format!(
        "{uri}: this gatecert was built without PKCS#11 support (cargo feature `pkcs11`)"
    ))
}

/// rcgen's view of a key: a [`SigningKey`] ([`SigningKey::rcgen`]) or a file key
/// ([`PrivateKey::to_rcgen`]). One type for both, so rcgen's generic signing code exists once
/// in the binary.
pub enum RcgenKey<'a> {
    /// A PKCS#8 file key.
    File(&'a PrivateKey),
    /// A key in a PKCS#11 token.
    #[cfg(feature = "pkcs11")]
    Token(&'a super::token::TokenKey),
    /// A shared [`SigningKey`], for an rcgen `Issuer` kept between signatures
    /// ([`SigningKey::rcgen_shared`]).
    Shared(Arc<SigningKey>),
}

impl SigningKey {
    /// [`SigningKey::rcgen`] holding its own reference to the key, so that what is built on it
    /// (the local CA's issuer) can be kept.
    pub fn rcgen_shared(self: &Arc<Self>) -> RcgenKey<'static> {
        RcgenKey::Shared(self.clone())
    }
}

impl RcgenKey<'_> {
    fn kind(&self) -> KeyType {
        match self {
            RcgenKey::File(k) => k.kind(),
            #[cfg(feature = "pkcs11")]
            RcgenKey::Token(k) => k.kind(),
            RcgenKey::Shared(k) => k.kind(),
        }
    }

    fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            RcgenKey::File(k) => k.sign_der(msg),
            #[cfg(feature = "pkcs11")]
            RcgenKey::Token(k) => k.sign_der(msg),
            RcgenKey::Shared(k) => k.sign_der(msg),
        }
    }
}

impl rcgen::PublicKeyData for RcgenKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        match self {
            RcgenKey::File(k) => k.public_point(),
            #[cfg(feature = "pkcs11")]
            RcgenKey::Token(k) => k.public_point(),
            RcgenKey::Shared(k) => k.public_point(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.kind().rcgen_alg()
    }
}

impl rcgen::SigningKey for RcgenKey<'_> {
    /// An ASN.1 DER `ECDSA-Sig-Value` (RFC 5280 §4.1.1.3, RFC 3279 §2.2.3).
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_der(msg).map_err(|e| {
            log::error!("signing failed: {e}");
            rcgen::Error::RemoteKeyError
        })
    }
}

/// rustls' view of a [`SigningKey`]: ECDSA with the curve's own hash only (TLS 1.3 ties
/// P-256 to SHA-256 and P-384 to SHA-384, RFC 8446 §4.2.3).
struct TlsKey(Arc<SigningKey>);

impl fmt::Debug for TlsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsKey({:?})", self.0)
    }
}

impl TlsKey {
    fn scheme(&self) -> rustls::SignatureScheme {
        match self.0.kind() {
            KeyType::Ec256 => rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
            KeyType::Ec384 => rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
        }
    }
}

impl rustls::sign::SigningKey for TlsKey {
    fn choose_scheme(
        &self,
        offered: &[rustls::SignatureScheme],
    ) -> Option<Box<dyn rustls::sign::Signer>> {
        let scheme = self.scheme();
        offered.contains(&scheme).then(|| {
            Box::new(TlsSigner {
                key: self.0.clone(),
                scheme,
            }) as Box<dyn rustls::sign::Signer>
        })
    }

    fn public_key(&self) -> Option<rustls_pki_types::SubjectPublicKeyInfoDer<'_>> {
        Some(self.0.spki_der().into())
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ECDSA
    }
}

struct TlsSigner {
    key: Arc<SigningKey>,
    scheme: rustls::SignatureScheme,
}

impl fmt::Debug for TlsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSigner({:?})", self.scheme)
    }
}

impl rustls::sign::Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.key.sign_der(message).map_err(|e| {
            // The error names the token, never a PIN.
            log::error!("TLS signature failed: {e}");
            rustls::Error::General(format!("signing failed: {e}"))
        })
    }

    fn scheme(&self) -> rustls::SignatureScheme {
        self.scheme
    }
}

/// The rustls crypto provider for every TLS client and server in gatecert: *ring*'s cipher
/// suites, key exchange groups and signature verification (RFC 8446 §9.1; every algorithm
/// kept, since an upstream CA's chain may be RSA), with a key provider that loads only the
/// ECDSA P-256/P-384 private keys gatecert makes and accepts ([`KeyType`]). *ring*'s own key
/// provider also loads RSA and Ed25519 private keys, which would link their signing code
/// for keys gatecert never holds.
pub fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::CryptoProvider {
        key_provider: &EcdsaKeys,
        ..rustls::crypto::ring::default_provider()
    })
}

/// Loads ECDSA private keys only (RFC 8446 §4.2.3 `ecdsa_secp256r1_sha256`,
/// `ecdsa_secp384r1_sha384`).
#[derive(Debug)]
struct EcdsaKeys;

impl rustls::crypto::KeyProvider for EcdsaKeys {
    fn load_private_key(
        &self,
        key_der: rustls_pki_types::PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn rustls::sign::SigningKey>, rustls::Error> {
        rustls::crypto::ring::sign::any_ecdsa_type(&key_der).map_err(|_| {
            rustls::Error::General("the private key is not an ECDSA P-256 or P-384 key".into())
        })
    }
}

/// Encodes a fixed-width `r || s` (PKCS#11 CKM_ECDSA output, RFC 5480 sizes) as the DER
/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` (RFC 3279 §2.2.3).
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return Err(Error::Key(format!(
            "the token returned a {}-byte ECDSA signature (expected r || s)",
            raw.len()
        )));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let int = |v: &[u8]| {
        let v = &v[v.iter().position(|b| *b != 0).unwrap_or(v.len() - 1)..];
        let mut out = vec![0x02];
        let pad = v[0] & 0x80 != 0;
        der_len(&mut out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend(body);
    Ok(out)
}

fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        // Invariant: an ECDSA-Sig-Value for curves up to P-521 is shorter than 256 bytes.
        out.extend([0x81, len as u8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature;

    /// The TLS key provider loads the ECDSA keys gatecert makes (both curves) and refuses an
    /// Ed25519 key with a message saying what it takes; *ring*'s default provider, which
    /// this replaces, would load it.
    #[test]
    fn tls_provider_loads_ecdsa_keys_only() {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let p = tls_provider();
        for kind in [KeyType::Ec256, KeyType::Ec384] {
            let k = PrivateKey::generate(kind).unwrap();
            let der = PrivateKeyDer::from_pem_slice(k.to_pem().as_bytes()).unwrap();
            let signer = p.key_provider.load_private_key(der).unwrap();
            assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::ECDSA);
        }
        let rng = ring::rand::SystemRandom::new();
        let ed = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ed.as_ref().to_vec()));
        let err = p.key_provider.load_private_key(der).unwrap_err();
        assert!(
            err.to_string().contains("not an ECDSA P-256 or P-384 key"),
            "{err}"
        );
    }

    /// A fixed-width signature from ring re-encoded as DER verifies with ring's ASN.1 verifier,
    /// for both curves and for r/s with leading zeros and high bits.
    #[test]
    fn raw_signature_to_der_verifies() {
        for kind in [KeyType::Ec256, KeyType::Ec384] {
            let k = PrivateKey::generate(kind).unwrap();
            let alg: &dyn signature::VerificationAlgorithm = match kind {
                KeyType::Ec256 => &signature::ECDSA_P256_SHA256_ASN1,
                KeyType::Ec384 => &signature::ECDSA_P384_SHA384_ASN1,
            };
            for i in 0..64u8 {
                let msg = [i; 5];
                let raw = k.sign_jws(&msg).unwrap();
                let der = ecdsa_raw_to_der(&raw).unwrap();
                signature::UnparsedPublicKey::new(alg, k.public_point())
                    .verify(&msg, &der)
                    .unwrap();
            }
        }
        let der = ecdsa_raw_to_der(&[0, 0, 0x80, 0, 0, 1, 0, 2]).unwrap();
        assert_eq!(
            der,
            [0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x00, 0x02, 0x03, 0x01, 0x00, 0x02]
        );
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_err());
        assert!(ecdsa_raw_to_der(&[]).is_err());
    }

    /// A file key through the rcgen and rustls doors: the certificate verifies, and the TLS
    /// signer picks the curve's scheme only.
    #[test]
    fn file_key_signs_through_rcgen_and_rustls() {
        let k = SigningKey::from(PrivateKey::generate(KeyType::Ec384).unwrap());
        let params = rcgen::CertificateParams::new(vec!["gw.test".to_string()]).unwrap();
        let cert = params.self_signed(&k.rcgen()).unwrap();
        assert!(super::super::signed_by(cert.der(), cert.der()));
        assert!(k.matches(&CertInfo::from_der(cert.der()).unwrap()));
        let csr = k.csr(&["gw.test".into()], &[]).unwrap();
        super::super::verify_csr_signature(&csr).unwrap();
        let tls = k.into_tls();
        assert!(tls
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
            .is_none());
        let signer = tls
            .choose_scheme(&[
                rustls::SignatureScheme::ED25519,
                rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
            ])
            .unwrap();
        assert_eq!(
            signer.scheme(),
            rustls::SignatureScheme::ECDSA_NISTP384_SHA384
        );
        assert!(!signer.sign(b"hello").unwrap().is_empty());
    }
}
