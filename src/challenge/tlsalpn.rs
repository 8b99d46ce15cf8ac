//! tls-alpn-01 (RFC 8737): a TLS listener that negotiates only ALPN `acme-tls/1` and presents,
//! for each identifier's SNI, a self-signed certificate carrying the critical acmeIdentifier
//! extension. For an IP identifier the SAN is the IP address and the SNI is its reverse-DNS
//! name (RFC 8738 §6).

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Error, Listener, Pending};
use crate::acme::types::Identifier;
use crate::crypto;

/// The ALPN protocol name, RFC 8737 §6.2.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// The tls-alpn-01 listener. Dropping it closes the port.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
}

#[derive(Debug)]
struct BySni(HashMap<String, Arc<CertifiedKey>>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?.to_ascii_lowercase();
        self.0.get(&sni).cloned()
    }
}

impl Server {
    /// Listens on `addr` with one validation certificate per pending identifier.
    pub fn start(addr: SocketAddr, pending: &[Pending]) -> Result<Server, Error> {
        let mut certs = HashMap::new();
        for p in pending {
            let digest = crypto::sha256(p.key_authorization.as_bytes());
            let (sni, cert) = match &p.identifier {
                Identifier::Dns(name) => (
                    name.to_ascii_lowercase(),
                    crypto::tls_alpn_cert(std::slice::from_ref(name), &[], &digest)?,
                ),
                Identifier::Ip(ip) => {
                    let ip: IpAddr = ip
                        .parse()
                        .map_err(|_| Error::Tls(format!("not an IP address: {ip}")))?;
                    (
                        reverse_name(ip),
                        crypto::tls_alpn_cert(&[], &[ip], &digest)?,
                    )
                }
            };
            let (der, key) = cert;
            let key_der = PrivateKeyDer::from_pem_slice(key.to_pem().as_bytes())
                .map_err(|e| Error::Tls(e.to_string()))?;
            let signer = rustls::crypto::ring::sign::any_ecdsa_type(&key_der)
                .map_err(|e| Error::Tls(e.to_string()))?;
            let ck = CertifiedKey::new(vec![CertificateDer::from(der)], signer);
            certs.insert(sni, Arc::new(ck));
        }
        let provider = crate::crypto::tls_provider();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(BySni(certs)));
        // RFC 8737 §3: the server MUST NOT negotiate anything but acme-tls/1 here; a client
        // offering other protocols only gets a no_application_protocol alert.
        config.alpn_protocols = vec![ACME_TLS_1.to_vec()];
        let config = Arc::new(config);
        let listener = Listener::spawn(addr, Arc::new(move |sock| handshake(sock, &config)))?;
        Ok(Server { listener })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }
}

/// Completes one handshake (the validation) and closes the connection.
fn handshake(mut sock: TcpStream, config: &Arc<rustls::ServerConfig>) {
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut conn) = rustls::ServerConnection::new(config.clone()) else {
        return;
    };
    while conn.is_handshaking() {
        if conn.complete_io(&mut sock).is_err() {
            return;
        }
    }
    log::debug!(
        "tls-alpn-01: handshake done for {:?}",
        conn.server_name().unwrap_or("")
    );
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = sock.flush();
}

/// The reverse-DNS name of an address (RFC 8738 §6): `4.3.2.1.in-addr.arpa`, or nibbles under
/// `ip6.arpa`.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_follow_rfc8738() {
        assert_eq!(
            reverse_name("127.0.0.1".parse().unwrap()),
            "1.0.0.127.in-addr.arpa"
        );
        // RFC 3596 §2.5's example address.
        assert_eq!(
            reverse_name("4321:0:1:2:3:4:567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa"
        );
    }

    #[test]
    fn validation_cert_has_critical_acme_identifier() {
        let digest = crypto::sha256(b"tok.thumb");
        let (der, _) = crypto::tls_alpn_cert(&["gw.example".into()], &[], &digest).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let oid = x509_parser::der_parser::oid!(1.3.6 .1 .5 .5 .7 .1 .31);
        let ext = cert
            .extensions()
            .iter()
            .find(|e| e.oid == oid)
            .expect("acmeIdentifier present");
        assert!(ext.critical);
        // OCTET STRING (0x04), length 32, then the digest.
        assert_eq!(&ext.value[..2], &[0x04, 32]);
        assert_eq!(&ext.value[2..], &digest);
        let info = crypto::CertInfo::from_der(&der).unwrap();
        assert_eq!(info.dns_names, vec!["gw.example"]);
    }
}
