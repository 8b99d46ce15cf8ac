//! The one narrow door to key material, signatures, digests and X.509 parsing.
//!
//! Everything cryptographic in gatecert goes through this module, and through exactly one
//! implementation: *ring* (which rustls, rcgen and ureq already use). No second ECDSA stack.
//! Key material never leaves this module except as PKCS#8 PEM for writing to a 0600 file, and
//! [`PrivateKey`]'s `Debug` prints no secret.

use std::fmt;
use std::net::IpAddr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use name::name_to_string;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};

mod name;
mod signing;
#[cfg(feature = "pkcs11")]
mod token;
mod uri;

pub use signing::{ecdsa_raw_to_der, tls_provider, RcgenKey, SigningKey};
#[cfg(feature = "pkcs11")]
pub use token::{report as token_report, TokenReport};
pub use uri::{KeyUri, Pin};

/// An error from this module. It never carries key material.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The key could not be generated, parsed or used (e.g. not PKCS#8, or a curve we don't support).
    Key(String),
    /// A PEM document held no block of the expected kind, or a block did not decode.
    Pem(String),
    /// A certificate or CSR did not parse as DER X.509.
    X509(String),
    /// rcgen refused to build a certificate or CSR.
    Build(String),
    /// A signature did not verify.
    BadSignature,
    /// The system RNG failed.
    Rng,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Key(m) => write!(f, "key: {m}"),
            Error::Pem(m) => write!(f, "PEM: {m}"),
            Error::X509(m) => write!(f, "X.509: {m}"),
            Error::Build(m) => write!(f, "building certificate: {m}"),
            Error::BadSignature => f.write_str("signature does not verify"),
            Error::Rng => f.write_str("system random number generator failed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Build(e.to_string())
    }
}

/// The key types gatecert generates and accepts for its own keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// NIST P-256 with SHA-256 (JWS `ES256`).
    Ec256,
    /// NIST P-384 with SHA-384 (JWS `ES384`).
    Ec384,
}

impl KeyType {
    /// The config spelling: `ec256` / `ec384`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ec256 => "ec256",
            KeyType::Ec384 => "ec384",
        }
    }

    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "ec256" | "p256" | "P-256" => Some(KeyType::Ec256),
            "ec384" | "p384" | "P-384" => Some(KeyType::Ec384),
            _ => None,
        }
    }

    /// The RFC 7518 §3.4 `alg` value for JWS.
    pub fn jws_alg(self) -> &'static str {
        match self {
            KeyType::Ec256 => "ES256",
            KeyType::Ec384 => "ES384",
        }
    }

    fn curve(self) -> &'static str {
        match self {
            KeyType::Ec256 => "P-256",
            KeyType::Ec384 => "P-384",
        }
    }

    fn fixed(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            KeyType::Ec256 => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            KeyType::Ec384 => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
        }
    }

    fn rcgen_alg(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyType::Ec256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Ec384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }
}

/// An ECDSA private key (P-256 or P-384), held as PKCS#8 and as a ready *ring* signer.
pub struct PrivateKey {
    kind: KeyType,
    pkcs8: Vec<u8>,
    signer: EcdsaKeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <redacted>)", self.kind.as_str())
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.pkcs8.iter_mut().for_each(|b| *b = 0);
    }
}

impl PrivateKey {
    /// A fresh key from the system RNG.
    pub fn generate(kind: KeyType) -> Result<Self, Error> {
        let doc = EcdsaKeyPair::generate_pkcs8(kind.fixed(), rng()).map_err(|_| Error::Rng)?;
        Self::from_pkcs8(kind, doc.as_ref().to_vec())
    }

    /// Parses a PKCS#8 `PRIVATE KEY` PEM document holding a P-256 or P-384 key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| Error::Pem("no PKCS#8 PRIVATE KEY block".into()))?;
        let bytes = der.secret_pkcs8_der().to_vec();
        for kind in [KeyType::Ec256, KeyType::Ec384] {
            if EcdsaKeyPair::from_pkcs8(kind.fixed(), &bytes, rng()).is_ok() {
                return Self::from_pkcs8(kind, bytes);
            }
        }
        Err(Error::Key("not a P-256 or P-384 PKCS#8 key".into()))
    }

    fn from_pkcs8(kind: KeyType, pkcs8: Vec<u8>) -> Result<Self, Error> {
        let signer = EcdsaKeyPair::from_pkcs8(kind.fixed(), &pkcs8, rng())
            .map_err(|e| Error::Key(e.to_string()))?;
        Ok(PrivateKey {
            kind,
            pkcs8,
            signer,
        })
    }

    /// The key's type.
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// PKCS#8 PEM, for writing to a 0600 file. The only way key material leaves this module.
    pub fn to_pem(&self) -> String {
        pem_block("PRIVATE KEY", &self.pkcs8)
    }

    /// The uncompressed public point (0x04 || X || Y).
    pub fn public_point(&self) -> &[u8] {
        self.signer.public_key().as_ref()
    }

    /// DER SubjectPublicKeyInfo of the public key.
    pub fn spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData as _;
        self.to_rcgen().subject_public_key_info()
    }

    /// Signs `msg` with the JWS encoding: the fixed-width `r || s` of RFC 7518 §3.4.
    pub fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = self.signer.sign(rng(), msg).map_err(|_| Error::Rng)?;
        Ok(sig.as_ref().to_vec())
    }

    /// Signs `msg` with the X.509 / TLS encoding (ASN.1 DER `ECDSA-Sig-Value`).
    /// The signer already parsed signs (`r || s`), re-encoded as DER: parsing the PKCS#8 again
    /// for each signature would recompute and check the public point, a scalar multiplication
    /// as dear as the signature itself.
    pub fn sign_der(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        let sig = self.signer.sign(rng(), msg).map_err(|_| Error::Rng)?;
        ecdsa_raw_to_der(sig.as_ref())
    }

    /// The public JWK (RFC 7517), members in lexicographic order as RFC 7638 §3 requires.
    pub fn jwk(&self) -> serde_json::Value {
        JwsKey::jwk(self)
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url): the account part of a key authorization.
    pub fn jwk_thumbprint(&self) -> String {
        JwsKey::jwk_thumbprint(self)
    }

    /// The same key as an rcgen signer, for building CSRs and certificates. It signs with
    /// [`PrivateKey::sign_der`], the same *ring* call as everything else, so rcgen's own
    /// key-pair code (RSA, Ed25519) stays out of the binary.
    pub fn to_rcgen(&self) -> RcgenKey<'_> {
        RcgenKey::File(self)
    }

    /// A PKCS#10 CSR for these names, signed by this key (proof of possession).
    pub fn csr(&self, dns: &[String], ips: &[IpAddr]) -> Result<Vec<u8>, Error> {
        let csr = csr_params(dns, ips)?.serialize_request(&self.to_rcgen())?;
        Ok(csr.der().to_vec())
    }

    /// True when `cert`'s public key is this key's public key.
    pub fn matches(&self, cert: &CertInfo) -> bool {
        cert.spki_der == self.spki_der()
    }
}

/// A key that signs JWS (RFC 7515) with ES256 / ES384 (RFC 7518 §3.4), as an ACME account key
/// does (RFC 8555 §6.2): a [`PrivateKey`], or a [`SigningKey`] that may live in a token.
pub trait JwsKey {
    /// The key's type (the JWS `alg`).
    fn kind(&self) -> KeyType;
    /// The uncompressed public point (0x04 || X || Y).
    fn public_point(&self) -> &[u8];
    /// Signs `msg`: the fixed-width `r || s` of RFC 7518 §3.4.
    fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, Error>;

    /// The public JWK (RFC 7517), members in lexicographic order as RFC 7638 §3 requires.
    fn jwk(&self) -> serde_json::Value {
        let (x, y) = xy(self.public_point());
        serde_json::json!({
            "crv": self.kind().curve(),
            "kty": "EC",
            "x": b64url(x),
            "y": b64url(y),
        })
    }

    /// RFC 7638 JWK thumbprint (SHA-256, base64url): the account part of a key authorization.
    fn jwk_thumbprint(&self) -> String {
        let (x, y) = xy(self.public_point());
        let canonical = format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            self.kind().curve(),
            b64url(x),
            b64url(y)
        );
        b64url(&sha256(canonical.as_bytes()))
    }
}

impl JwsKey for PrivateKey {
    fn kind(&self) -> KeyType {
        self.kind
    }

    fn public_point(&self) -> &[u8] {
        PrivateKey::public_point(self)
    }

    fn sign_jws(&self, msg: &[u8]) -> Result<Vec<u8>, Error> {
        PrivateKey::sign_jws(self, msg)
    }
}

/// X and Y of an uncompressed point.
fn xy(point: &[u8]) -> (&[u8], &[u8]) {
    let point = point.get(1..).unwrap_or_default();
    point.split_at(point.len() / 2)
}

/// A self-signed tls-alpn-01 validation certificate (RFC 8737 §3): one SAN (`dns` or `ip`),
/// and the critical acmeIdentifier extension holding SHA-256 of the key authorization.
/// Returns the DER certificate and its fresh key.
pub fn tls_alpn_cert(
    dns: &[String],
    ips: &[IpAddr],
    key_authz_digest: &[u8; 32],
) -> Result<(Vec<u8>, PrivateKey), Error> {
    let key = PrivateKey::generate(KeyType::Ec256)?;
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans(dns, ips)?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(
        key_authz_digest,
    )];
    let cert = params.self_signed(&key.to_rcgen())?;
    Ok((cert.der().to_vec(), key))
}

/// A CSR's contents for these names: the SANs, and CN = the first DNS name.
fn csr_params(dns: &[String], ips: &[IpAddr]) -> Result<rcgen::CertificateParams, Error> {
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = sans(dns, ips)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = dns.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    Ok(params)
}

/// rcgen SANs for DNS names and IP addresses.
pub fn sans(dns: &[String], ips: &[IpAddr]) -> Result<Vec<rcgen::SanType>, Error> {
    let mut out = Vec::with_capacity(dns.len() + ips.len());
    for d in dns {
        let name = d
            .as_str()
            .try_into()
            .map_err(|_| Error::Build(format!("not a valid DNS name: {d:?}")))?;
        out.push(rcgen::SanType::DnsName(name));
    }
    out.extend(ips.iter().map(|ip| rcgen::SanType::IpAddress(*ip)));
    Ok(out)
}

fn rng() -> &'static SystemRandom {
    static RNG: std::sync::OnceLock<SystemRandom> = std::sync::OnceLock::new();
    RNG.get_or_init(SystemRandom::new)
}

/// `N` bytes from the system RNG.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    rng().fill(&mut out).map_err(|_| Error::Rng)?;
    Ok(out)
}

/// A uniformly random integer in `0..n` (n > 0), from the system RNG.
pub fn random_below(n: u64) -> Result<u64, Error> {
    if n <= 1 {
        return Ok(0);
    }
    // Rejection sampling: no modulo bias.
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let v = u64::from_le_bytes(random_bytes::<8>()?);
        if v < zone {
            return Ok(v % n);
        }
    }
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A serial in hex as openssl prints it: upper case, without leading `00` octets (one `00` is
/// kept for a zero serial). Also reads serials stored by versions that kept DER's sign octet.
pub fn serial_display(serial_hex: &str) -> String {
    let mut s = serial_hex.trim();
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s.to_ascii_uppercase()
}

/// True when two hex serials name the same integer (case and DER's leading `00` aside).
pub fn same_serial(a: &str, b: &str) -> bool {
    serial_display(a) == serial_display(b)
}

/// Parses hex (either case, even length; `:` separators allowed, as openssl prints them).
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            u8::try_from(h * 16 + l).ok()
        })
        .collect()
}

/// Lower-case hex.
pub fn hex(data: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(data.len() * 2);
    for b in data {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// HMAC-SHA-256 (JWS `HS256`, RFC 7518 §3.2), as EAB (RFC 8555 §7.3.4) uses.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&k, msg);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Equality in time that depends only on the lengths, not on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// base64url without padding (RFC 7515 §2).
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url, with or without padding.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| Error::Pem(format!("bad base64url: {e}")))
}

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// Decodes standard base64, ignoring ASCII whitespace (RFC 7030 bodies are line-wrapped).
pub fn b64_decode(s: &[u8]) -> Result<Vec<u8>, Error> {
    let clean: Vec<u8> = s
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(&clean)
        .map_err(|e| Error::Pem(format!("bad base64: {e}")))
}

/// A PEM block with 64-column lines.
pub fn pem_block(label: &str, der: &[u8]) -> String {
    let b = b64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every `CERTIFICATE` block of a PEM document, in order.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| Error::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(Error::Pem("no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// Certificates as concatenated PEM.
pub fn certs_to_pem<'a>(certs: impl IntoIterator<Item = &'a [u8]>) -> String {
    certs
        .into_iter()
        .map(|der| pem_block("CERTIFICATE", der))
        .collect()
}

/// What gatecert needs to know about a certificate, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// Subject as an RFC 4514-ish string.
    pub subject: String,
    /// Subject commonName, if any.
    pub subject_cn: Option<String>,
    /// Issuer as an RFC 4514-ish string.
    pub issuer: String,
    /// Issuer commonName, if any (`preferred_chain` matches on it).
    pub issuer_cn: Option<String>,
    /// The serial's DER integer content bytes (as ARI's CertID wants them, RFC 9773 §4.1).
    pub serial: Vec<u8>,
    /// notBefore, Unix seconds.
    pub not_before: i64,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// dNSName SANs.
    pub dns_names: Vec<String>,
    /// iPAddress SANs.
    pub ips: Vec<IpAddr>,
    /// basicConstraints cA.
    pub is_ca: bool,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// authorityKeyIdentifier keyIdentifier, if present.
    pub aki: Option<Vec<u8>>,
    /// subjectKeyIdentifier, if present.
    pub ski: Option<Vec<u8>>,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, Error> {
        use x509_parser::extensions::{GeneralName, ParsedExtension};
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| Error::X509(e.to_string()))?;
        let mut info = CertInfo {
            der: der.to_vec(),
            subject: name_to_string(cert.subject()),
            subject_cn: first_cn(cert.subject()),
            issuer: name_to_string(cert.issuer()),
            issuer_cn: first_cn(cert.issuer()),
            serial: cert.raw_serial().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            is_ca: cert.is_ca(),
            spki_der: cert.public_key().raw.to_vec(),
            aki: None,
            ski: None,
        };
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        match name {
                            GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                            GeneralName::IPAddress(b) => {
                                if let Some(ip) = ip_from_bytes(b) {
                                    info.ips.push(ip);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    info.aki = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                ParsedExtension::SubjectKeyIdentifier(ski) => info.ski = Some(ski.0.to_vec()),
                _ => {}
            }
        }
        Ok(info)
    }

    /// Parses the first certificate of a PEM document.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let certs = certs_from_pem(pem)?;
        Self::from_der(&certs[0])
    }

    /// The serial as colon-free upper-case hex, as `openssl x509 -serial` prints it: the
    /// integer's value, so without the `00` octet DER puts before a top-bit-set first byte
    /// (RFC 5280 §4.1.2.2, X.690 §8.3.2).
    pub fn serial_hex(&self) -> String {
        serial_display(&hex(&self.serial))
    }

    /// Lifetime in seconds.
    pub fn lifetime(&self) -> i64 {
        self.not_after - self.not_before
    }
}

/// What a CRL (RFC 5280 §5) says, as `status` and the tests read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// Issuer, RFC 4514-ish.
    pub issuer: String,
    /// thisUpdate, Unix seconds.
    pub this_update: i64,
    /// nextUpdate, Unix seconds, if present.
    pub next_update: Option<i64>,
    /// cRLNumber, big-endian bytes.
    pub number: Vec<u8>,
    /// Revoked serials, upper-case hex, with their reason codes (none: unspecified).
    pub revoked: Vec<(String, Option<u8>)>,
}

impl CrlInfo {
    /// Parses a DER CRL (its signature is not checked here).
    pub fn from_der(der: &[u8]) -> Result<CrlInfo, Error> {
        let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| Error::X509(e.to_string()))?;
        Ok(CrlInfo {
            issuer: name_to_string(crl.issuer()),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            number: crl
                .crl_number()
                .map(|n| n.to_bytes_be())
                .unwrap_or_default(),
            revoked: crl
                .iter_revoked_certificates()
                .map(|r| {
                    let serial = hex(r.raw_serial()).to_uppercase();
                    (serial, r.reason_code().map(|(_, c)| c.0))
                })
                .collect(),
        })
    }
}

fn first_cn(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}

/// The key algorithm and strength of a SubjectPublicKeyInfo, as a CA judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStrength {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// Ed25519 (RFC 8410).
    Ed25519,
    /// RSA with this modulus size in bits.
    Rsa(usize),
}

/// A name-constraints subtree (RFC 5280 §4.2.1.10) of the kinds gatecert uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subtree {
    /// A dNSName subtree: the name itself and every subdomain, label-wise.
    Dns(String),
    /// An iPAddress subtree: address and prefix length.
    Ip(IpAddr, u8),
    /// Any other kind of subtree (email, directoryName, URI): shown, not interpreted.
    Other(String),
}

/// The nameConstraints extension of a CA certificate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Constraints {
    /// permittedSubtrees.
    pub permitted: Vec<Subtree>,
    /// excludedSubtrees.
    pub excluded: Vec<Subtree>,
}

/// A parsed PKCS#10 CSR (RFC 2986); see [`parse_csr`] (its signature is checked separately).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrInfo {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// Subject commonName, if any.
    pub subject_cn: Option<String>,
    /// dNSName SANs from the extensionRequest attribute.
    pub dns: Vec<String>,
    /// iPAddress SANs from the extensionRequest attribute.
    pub ips: Vec<IpAddr>,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The key's algorithm and size.
    pub key: KeyStrength,
}

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// Judges the key of a DER SubjectPublicKeyInfo. Errors name the algorithm we don't accept.
pub fn key_strength(spki_der: &[u8]) -> Result<KeyStrength, Error> {
    use x509_parser::prelude::FromDer as _;
    let (rest, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| Error::X509(format!("SubjectPublicKeyInfo: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::X509(
            "trailing bytes after SubjectPublicKeyInfo".into(),
        ));
    }
    key_strength_of(&spki)
}

fn key_strength_of(
    spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> Result<KeyStrength, Error> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            match curve.as_str() {
                OID_P256 => Ok(KeyStrength::P256),
                OID_P384 => Ok(KeyStrength::P384),
                other => Err(Error::Key(format!(
                    "EC key on curve {other:?}: only P-256 and P-384 are accepted"
                ))),
            }
        }
        OID_ED25519 => Ok(KeyStrength::Ed25519),
        OID_RSA => match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(r)) => Ok(KeyStrength::Rsa(r.key_size())),
            _ => Err(Error::Key("RSA public key does not parse".into())),
        },
        other => Err(Error::Key(format!(
            "public key algorithm {other} is not accepted (P-256, P-384, Ed25519 or RSA >= 2048)"
        ))),
    }
}

/// Verifies `sig` over `msg` with the key in `spki_der`, for the X.509 signature algorithm
/// `alg_oid` (dotted form, e.g. `1.2.840.10045.4.3.2`). ECDSA signatures are ASN.1 DER
/// (RFC 3279 §2.2.3); RSA is PKCS#1 v1.5 with a 2048..8192-bit modulus.
pub fn verify_signature(
    spki_der: &[u8],
    alg_oid: &str,
    msg: &[u8],
    sig: &[u8],
) -> Result<(), Error> {
    use x509_parser::prelude::FromDer as _;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| Error::X509(format!("SubjectPublicKeyInfo: {e}")))?;
    let key = key_strength_of(&spki)?;
    let alg: &'static dyn signature::VerificationAlgorithm = match (key, alg_oid) {
        (KeyStrength::P256, "1.2.840.10045.4.3.2") => &signature::ECDSA_P256_SHA256_ASN1,
        (KeyStrength::P256, "1.2.840.10045.4.3.3") => &signature::ECDSA_P256_SHA384_ASN1,
        (KeyStrength::P384, "1.2.840.10045.4.3.3") => &signature::ECDSA_P384_SHA384_ASN1,
        (KeyStrength::P384, "1.2.840.10045.4.3.2") => &signature::ECDSA_P384_SHA256_ASN1,
        (KeyStrength::Ed25519, OID_ED25519) => &signature::ED25519,
        (KeyStrength::Rsa(_), "1.2.840.113549.1.1.11") => &signature::RSA_PKCS1_2048_8192_SHA256,
        (KeyStrength::Rsa(_), "1.2.840.113549.1.1.12") => &signature::RSA_PKCS1_2048_8192_SHA384,
        (KeyStrength::Rsa(_), "1.2.840.113549.1.1.13") => &signature::RSA_PKCS1_2048_8192_SHA512,
        (k, a) => {
            return Err(Error::Key(format!(
                "signature algorithm {a} is not accepted with a {k:?} key"
            )))
        }
    };
    signature::UnparsedPublicKey::new(alg, spki.subject_public_key.data.as_ref())
        .verify(msg, sig)
        .map_err(|_| Error::BadSignature)
}

/// Parses a PKCS#10 CSR (RFC 2986). It does NOT verify the self-signature (proof of possession,
/// RFC 2986 §3): [`verify_csr_signature`] does, and `ca::verify_csr` calls both. Key strength and
/// names are the CA's policy.
pub fn parse_csr(der: &[u8]) -> Result<CsrInfo, Error> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer as _;
    let (rest, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| Error::X509(format!("CSR: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::X509("trailing bytes after the CSR".into()));
    }
    let info = &csr.certification_request_info;
    // x509-parser skips bytes after the BIT STRING inside the SPKI SEQUENCE, and its `raw` then
    // stops at the BIT STRING (a truncated TLV). Re-read `raw` strictly so such a CSR is refused
    // and `spki_der` is always one well-formed SubjectPublicKeyInfo.
    let key = key_strength(info.subject_pki.raw)?;
    let mut out = CsrInfo {
        der: der.to_vec(),
        subject_cn: first_cn(&info.subject),
        dns: Vec::new(),
        ips: Vec::new(),
        spki_der: info.subject_pki.raw.to_vec(),
        key,
    };
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => out.dns.push(d.to_string()),
                        GeneralName::IPAddress(b) => match ip_from_bytes(b) {
                            Some(ip) => out.ips.push(ip),
                            None => return Err(Error::X509("malformed iPAddress SAN".into())),
                        },
                        other => {
                            return Err(Error::X509(format!(
                                "unsupported SAN type {other:?}: only dNSName and iPAddress"
                            )))
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Verifies a CSR's signature with [`verify_signature`] (split out so callers can judge the key
/// first and report a weak key before a bad signature).
pub fn verify_csr_signature(der: &[u8]) -> Result<(), Error> {
    use x509_parser::prelude::FromDer as _;
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| Error::X509(format!("CSR: {e}")))?;
    let info = &csr.certification_request_info;
    verify_signature(
        info.subject_pki.raw,
        &csr.signature_algorithm.algorithm.to_id_string(),
        info.raw,
        csr.signature_value.data.as_ref(),
    )
}

/// True when `cert_der`'s signature verifies under `issuer_der`'s public key (no other checks).
pub fn signed_by(cert_der: &[u8], issuer_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, issuer))) = (
        x509_parser::parse_x509_certificate(cert_der),
        x509_parser::parse_x509_certificate(issuer_der),
    ) else {
        return false;
    };
    verify_signature(
        issuer.public_key().raw,
        &cert.signature_algorithm.algorithm.to_id_string(),
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
    .is_ok()
}

/// The nameConstraints extension of a certificate; `None` when it has none.
pub fn name_constraints(cert_der: &[u8]) -> Result<Option<Constraints>, Error> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| Error::X509(e.to_string()))?;
    let nc = cert
        .name_constraints()
        .map_err(|e| Error::X509(format!("nameConstraints: {e}")))?;
    let Some(nc) = nc else { return Ok(None) };
    let conv = |subtrees: &Option<Vec<x509_parser::extensions::GeneralSubtree<'_>>>| {
        subtrees
            .iter()
            .flatten()
            .map(|s| match &s.base {
                GeneralName::DNSName(d) => Subtree::Dns(d.to_string()),
                GeneralName::IPAddress(b) if b.len() == 8 || b.len() == 32 => {
                    let (addr, mask) = b.split_at(b.len() / 2);
                    let prefix = mask.iter().map(|m| m.count_ones() as u8).sum();
                    match ip_from_bytes(addr) {
                        Some(ip) => Subtree::Ip(ip, prefix),
                        None => Subtree::Other(format!("{b:?}")),
                    }
                }
                other => Subtree::Other(format!("{other:?}")),
            })
            .collect::<Vec<_>>()
    };
    Ok(Some(Constraints {
        permitted: conv(&nc.value.permitted_subtrees),
        excluded: conv(&nc.value.excluded_subtrees),
    }))
}

/// The basicConstraints pathLenConstraint of a certificate, if any.
pub fn path_len(cert_der: &[u8]) -> Option<u32> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    cert.basic_constraints().ok()??.value.path_len_constraint
}

/// Unix seconds as RFC 3339 UTC (`2026-11-28T12:00:00Z`).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Parses RFC 3339 into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests;
