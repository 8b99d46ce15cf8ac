//! The TLS side of a listener: rustls 0.23 server config and the client-certificate policies.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
};

use super::Error;

/// Whether and how a TLS listener asks for client certificates.
#[derive(Clone, Debug)]
pub enum ClientAuth {
    /// No CertificateRequest is sent.
    Off,
    /// Clients MAY present a certificate; one that does not chain to these roots (at the
    /// system time) fails the handshake.
    Verified(Vec<CertificateDer<'static>>),
    /// Clients MAY present any certificate. The handshake checks only proof of possession (the
    /// CertificateVerify signature, RFC 8446 §4.4.3); the handler MUST check the chain itself.
    /// EST uses this so a foreign or expired certificate gets an HTTP 403 and an audit line
    /// rather than a bare TLS alert.
    Deferred,
}

/// Builds a rustls server config from a PEM chain (end-entity first) and a PKCS#8 PEM key.
pub fn tls_config(
    chain_pem: &str,
    key_pem: &str,
    client_auth: ClientAuth,
) -> Result<Arc<ServerConfig>, Error> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("certificate chain PEM: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("no certificate in the chain PEM".into()));
    }
    // A key in a PKCS#11 token comes as its RFC 7512 URI (see crypto::SigningKey).
    let token_key = match crate::crypto::KeyUri::parse(key_pem) {
        Ok(uri) => Some(
            crate::crypto::SigningKey::open(&uri)
                .map_err(|e| Error::Tls(e.to_string()))?
                .into_tls(),
        ),
        Err(_) => None,
    };
    // The error text of a key parse never includes key bytes.
    let key = match token_key {
        Some(_) => None,
        None => Some(
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| Error::Tls("no usable private key in the key PEM".into()))?,
        ),
    };
    let provider = crate::crypto::tls_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?;
    let builder = match client_auth {
        ClientAuth::Off => builder.with_no_client_auth(),
        ClientAuth::Verified(client_roots) => {
            let mut roots = RootCertStore::empty();
            for r in client_roots {
                roots
                    .add(r)
                    .map_err(|e| Error::Tls(format!("client root: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| Error::Tls(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientAuth::Deferred => builder.with_client_cert_verifier(Arc::new(DeferredClientCert {
            algs: provider.signature_verification_algorithms,
        })),
    };
    let mut cfg = match (key, token_key) {
        (Some(key), _) => builder.with_single_cert(chain, key),
        (None, Some(signer)) => {
            let certified = rustls::sign::CertifiedKey::new(chain, signer);
            certified.keys_match().map(|()| {
                builder
                    .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
            })
        }
        (None, None) => Err(rustls::Error::General("no key".into())),
    }
    .map_err(|e| Error::Tls(e.to_string()))?;
    // RFC 7301: offered in our order of preference; a client that offers only http/1.0 gets
    // it (we answer an HTTP/1.0 request with an HTTP/1.1 response, RFC 9110 §6.2, and close).
    cfg.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(Arc::new(cfg))
}

/// [`ClientAuth::Deferred`]: offers client auth, never requires it, accepts any chain, and
/// verifies the handshake signature with the presented end-entity key.
#[derive(Debug)]
struct DeferredClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for DeferredClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The handler checks the chain (see ClientAuth::Deferred).
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
