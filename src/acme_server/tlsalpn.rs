//! tls-alpn-01 validation by the gateway ([RFC 8737] §3): a TLS handshake to the leaf with SNI
//! the name and ALPN `acme-tls/1`; the leaf's self-signed certificate must name exactly that
//! name and carry the critical acmeIdentifier extension holding SHA-256 of the key
//! authorization. The certificate is not chained to anything (it is self-signed by design), but
//! the handshake signature is verified, so the leaf holds its key.
//!
//! [RFC 8737]: https://www.rfc-editor.org/rfc/rfc8737

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::crypto;

/// The acmeIdentifier extension (RFC 8737 §6.1).
const OID_ACME_IDENTIFIER: &str = "1.3.6.1.5.5.7.1.31";
/// The ALPN protocol (RFC 8737 §6.2).
pub const ALPN: &[u8] = b"acme-tls/1";

/// Accepts any certificate (it is judged after the handshake) but checks the handshake
/// signature with its key. webpki would refuse the certificate itself: its acmeIdentifier
/// extension is critical and unknown to it, so the signature is checked here with ring.
#[derive(Debug)]
struct AnyCert;

const SCHEMES: [SignatureScheme; 8] = [
    SignatureScheme::ECDSA_NISTP256_SHA256,
    SignatureScheme::ECDSA_NISTP384_SHA384,
    SignatureScheme::ED25519,
    SignatureScheme::RSA_PSS_SHA256,
    SignatureScheme::RSA_PSS_SHA384,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PSS_SHA512,
];

/// Verifies a handshake signature with the certificate's public key.
fn verify_with_cert(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    use ring::signature as sig;
    use x509_parser::prelude::FromDer as _;
    let bad = || rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature);
    let (_, parsed) =
        x509_parser::certificate::X509Certificate::from_der(cert.as_ref()).map_err(|_| bad())?;
    let key = parsed.public_key().subject_public_key.data.as_ref();
    let alg: &dyn sig::VerificationAlgorithm = match dss.scheme {
        SignatureScheme::ECDSA_NISTP256_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::ECDSA_NISTP384_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::ED25519 => &sig::ED25519,
        SignatureScheme::RSA_PSS_SHA256 => &sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RSA_PSS_SHA384 => &sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RSA_PSS_SHA512 => &sig::RSA_PSS_2048_8192_SHA512,
        SignatureScheme::RSA_PKCS1_SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        _ => return Err(bad()),
    };
    sig::UnparsedPublicKey::new(alg, key)
        .verify(message, dss.signature())
        .map(|()| HandshakeSignatureValid::assertion())
        .map_err(|_| bad())
}

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_cert(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_with_cert(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SCHEMES.to_vec()
    }
}

/// Validates `name` at `addr` against `key_auth`, within `timeout` per step and `deadline` in
/// all.
pub fn validate(
    addr: SocketAddr,
    name: &str,
    key_auth: &str,
    timeout: Duration,
    deadline: Duration,
) -> Result<(), String> {
    let start = Instant::now();
    let provider = crate::crypto::tls_provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let sni =
        ServerName::try_from(name.to_owned()).map_err(|_| format!("{name} is not a DNS name"))?;
    let mut conn =
        rustls::ClientConnection::new(Arc::new(cfg), sni).map_err(|e| format!("TLS setup: {e}"))?;
    let mut sock = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let _ = sock.set_read_timeout(Some(timeout));
    let _ = sock.set_write_timeout(Some(timeout));
    while conn.is_handshaking() {
        if start.elapsed() > deadline {
            return Err(format!("TLS handshake with {addr} took too long"));
        }
        conn.complete_io(&mut sock)
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    }
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(format!("{addr} did not negotiate ALPN acme-tls/1"));
    }
    let cert = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| format!("{addr} sent no certificate"))?;
    check_cert(cert.as_ref(), name, key_auth).map_err(|why| format!("{addr}: {why}"))
}

/// RFC 8737 §3: one SAN, the name; the acmeIdentifier extension critical and holding the
/// digest of the key authorization as a DER OCTET STRING.
pub fn check_cert(der: &[u8], name: &str, key_auth: &str) -> Result<(), String> {
    use x509_parser::prelude::FromDer as _;
    let info = crypto::CertInfo::from_der(der).map_err(|e| format!("certificate: {e}"))?;
    if !info.ips.is_empty()
        || info.dns_names.len() != 1
        || !info.dns_names[0].eq_ignore_ascii_case(name)
    {
        return Err(format!("the certificate must name exactly {name}"));
    }
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("certificate: {e}"))?;
    let ext = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_ACME_IDENTIFIER)
        .ok_or("the certificate has no acmeIdentifier extension")?;
    if !ext.critical {
        return Err("the acmeIdentifier extension is not critical".into());
    }
    let mut want = vec![0x04, 0x20];
    want.extend(crypto::sha256(key_auth.as_bytes()));
    if ext.value == want.as_slice() {
        Ok(())
    } else {
        Err("wrong key authorization in acmeIdentifier".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_certificate_is_checked() {
        let digest = crypto::sha256(b"tok.thumb");
        let (der, _) = crypto::tls_alpn_cert(&["cam.local".into()], &[], &digest).unwrap();
        assert_eq!(check_cert(&der, "cam.local", "tok.thumb"), Ok(()));
        assert!(check_cert(&der, "cam.local", "tok.other")
            .unwrap_err()
            .contains("wrong key"));
        assert!(check_cert(&der, "other.local", "tok.thumb")
            .unwrap_err()
            .contains("exactly"));
        let (plain, _) =
            crypto::tls_alpn_cert(&["cam.local".into(), "b.local".into()], &[], &digest).unwrap();
        assert!(check_cert(&plain, "cam.local", "tok.thumb").is_err());
    }
}
