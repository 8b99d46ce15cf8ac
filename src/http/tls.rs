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
    let provider = server_provider();
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
    // Our order of cipher suites, not the client's (see `server_provider`).
    cfg.ignore_client_order = true;
    Ok(Arc::new(cfg))
}

/// [`crate::crypto::tls_provider`] with the cipher suites that hash with SHA-256 first: most
/// clients list `TLS_AES_256_GCM_SHA384` first, and a TLS 1.3 handshake's transcript hash and
/// key schedule use its suite's hash, SHA-384, which costs more than SHA-256 everywhere (no
/// SHA-512 instructions on x86, 64-bit arithmetic on 32-bit MIPS) and buys nothing next to a
/// P-256 or X25519 key exchange of 128-bit strength. The same suites are offered, in this order:
/// TLS 1.3 before 1.2, then SHA-256 before SHA-384 (`TLS_AES_128_GCM_SHA256`, RFC 8446's
/// mandatory suite, comes first).
pub fn server_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = (*crate::crypto::tls_provider()).clone();
    provider.cipher_suites.sort_by_key(|s| {
        let hash = match s {
            rustls::SupportedCipherSuite::Tls13(s) => s.common.hash_provider.algorithm(),
            rustls::SupportedCipherSuite::Tls12(s) => s.common.hash_provider.algorithm(),
        };
        (
            s.version().version != rustls::ProtocolVersion::TLSv1_3,
            hash != rustls::crypto::hash::HashAlgorithm::SHA256,
        )
    });
    Arc::new(provider)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KeyType, PrivateKey};
    use rustls::{ClientConfig, ClientConnection, ServerConnection};

    /// A CA and a leaf for `gateway.local` it signed: (CA DER, leaf PEM, leaf key PEM).
    fn ca_and_leaf() -> (CertificateDer<'static>, String, String) {
        let ca_key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key.to_rcgen()).unwrap();
        let issuer = rcgen::Issuer::from_params(&ca, ca_key.to_rcgen());
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["gateway.local".to_string()])
            .unwrap()
            .signed_by(&key.to_rcgen(), &issuer)
            .unwrap();
        (ca_cert.der().clone(), leaf.pem(), key.to_pem())
    }

    /// Runs a handshake in memory; the suite both sides agreed on.
    fn handshake(server: Arc<ServerConfig>, client: ClientConfig) -> rustls::CipherSuite {
        let name = rustls::pki_types::ServerName::try_from("gateway.local").unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!s.is_handshaking(), "the handshake did not complete");
        let suite = s.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(Some(suite), c.negotiated_cipher_suite().map(|s| s.suite()));
        suite
    }

    /// A client that lists `TLS_AES_256_GCM_SHA384` first (rustls' and OpenSSL's default) gets
    /// `TLS_AES_128_GCM_SHA256`: the server's order, SHA-256 first. A client that offers only
    /// the SHA-384 suite still gets it.
    #[test]
    fn the_server_picks_a_sha256_suite_first() {
        let (ca, chain, key) = ca_and_leaf();
        let server = tls_config(&chain, &key, ClientAuth::Off).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = crate::crypto::tls_provider();
        assert_eq!(
            provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384,
            "the client's default order changed; this test no longer shows the server's"
        );
        let client = |p: Arc<rustls::crypto::CryptoProvider>| {
            ClientConfig::builder_with_provider(p)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth()
        };
        assert_eq!(
            handshake(server.clone(), client(provider.clone())),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let only_384 = rustls::crypto::CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384],
            ..(*provider).clone()
        };
        assert_eq!(
            handshake(server, client(Arc::new(only_384))),
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384
        );
    }

    /// The server's provider offers every suite of the shared one, TLS 1.3 first.
    #[test]
    fn the_server_offers_the_same_suites() {
        let ours: Vec<_> = server_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        let mut all: Vec<_> = crate::crypto::tls_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours.len(), all.len());
        assert_eq!(ours[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut sorted = ours.clone();
        sorted.sort_by_key(|s| format!("{s:?}"));
        all.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(sorted, all);
        let tls13 = ours
            .iter()
            .take_while(|s| format!("{s:?}").starts_with("TLS13_"))
            .count();
        assert!(
            ours[tls13..]
                .iter()
                .all(|s| !format!("{s:?}").starts_with("TLS13_")),
            "{ours:?}"
        );
    }
}
