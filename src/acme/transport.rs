//! The HTTP under the ACME client: a one-method [`Transport`] trait, the real [`UreqTransport`]
//! (ureq 3 over rustls 0.23 with *ring*), and an in-memory [`TestTransport`] so the protocol
//! logic is unit-tested without sockets (as ureq's own `unversioned::transport::test` does).

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// The most of a response body gatecert reads (certificates and JSON are a few KiB).
pub const MAX_BODY: u64 = 1024 * 1024;

/// The system trust bundle used when a certificate section names no `ca_bundle`.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The HTTP methods ACME uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The directory and (RFC 9773) renewalInfo.
    Get,
    /// newNonce (RFC 8555 §7.2).
    Head,
    /// Every JWS request.
    Post,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        })
    }
}

/// A response, read whole.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers, names lower-cased, in order (a name may repeat, e.g. `Link`).
    pub headers: Vec<(String, String)>,
    /// The body (at most [`MAX_BODY`] bytes).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name` (case-insensitive).
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A transport error.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be made or the response not read (DNS, connect, TLS, timeout).
    Http {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// The cause.
        source: ureq::Error,
    },
    /// The trust bundle could not be read or held no certificate.
    Roots {
        /// The bundle file.
        path: std::path::PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// The test transport had no scripted response for this request.
    Unscripted {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
    },
}

/// How an exchange failed, as upstream health sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Nothing answered in time: connect or read timed out.
    Timeout,
    /// Nobody is there: connection refused or reset, host unknown.
    Refused,
    /// Anything else (TLS, a bad response, local trouble).
    Other,
}

impl Error {
    /// The kind of failure, for deciding that an upstream is down.
    pub fn failure(&self) -> Failure {
        let Error::Http { source, .. } = self else {
            return Failure::Other;
        };
        match source {
            ureq::Error::Timeout(_) | ureq::Error::BodyStalled => Failure::Timeout,
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => Failure::Refused,
            ureq::Error::Io(e) => match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => Failure::Timeout,
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::NotConnected
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe => Failure::Refused,
                _ => Failure::Other,
            },
            _ => Failure::Other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Http { method, url, .. } => write!(f, "{method} {url} failed"),
            Error::Roots { path, msg } => {
                write!(f, "ca_bundle (trust bundle) {}: {msg}", path.display())
            }
            Error::Unscripted { method, url } => {
                write!(f, "test transport: no response scripted for {method} {url}")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Http { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// One HTTP exchange.
pub trait Transport {
    /// Sends a request and reads the whole response (any status: problem documents are bodies).
    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, Error>;
}

/// The real transport: ureq 3, rustls 0.23 with *ring*, trust from a PEM bundle, a timeout on
/// every call, no redirects followed silently.
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// Trust the certificates in `ca_bundle` (default [`SYSTEM_BUNDLE`]); give each call at most
    /// `timeout` in all, and at most `timeout` to connect.
    pub fn new(ca_bundle: Option<&Path>, timeout: Duration) -> Result<Self, Error> {
        let path = ca_bundle.unwrap_or(Path::new(SYSTEM_BUNDLE));
        let pem = std::fs::read(path).map_err(|e| Error::Roots {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(Error::Roots {
                path: path.to_path_buf(),
                msg: "no CERTIFICATE in it".into(),
            });
        }
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::new_with_certs(&certs))
            .unversioned_rustls_crypto_provider(crate::crypto::tls_provider())
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout))
            .max_redirects(0)
            .user_agent(concat!("gatecert/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(UreqTransport {
            agent: ureq::Agent::new_with_config(config),
        })
    }
}

impl Transport for UreqTransport {
    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, Error> {
        let fail = |source| Error::Http {
            method,
            url: url.to_owned(),
            source,
        };
        let result = match method {
            Method::Get | Method::Head => {
                let mut req = if method == Method::Get {
                    self.agent.get(url)
                } else {
                    self.agent.head(url)
                };
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.call()
            }
            Method::Post => {
                let mut req = self.agent.post(url);
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                req.send(body.unwrap_or_default())
            }
        };
        let mut resp = result.map_err(fail)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = if method == Method::Head {
            Vec::new()
        } else {
            // Over MAX_BODY is an error (ureq's BodyExceedsLimit), not a silent truncation.
            resp.body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map_err(fail)?
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A request the [`TestTransport`] saw.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The method.
    pub method: Method,
    /// The URL.
    pub url: String,
    /// The request headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The body as JSON (a JWS for POSTs).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// An in-memory transport: answers from a script, in order, and records every request.
#[derive(Default)]
pub struct TestTransport {
    script: Mutex<VecDeque<(Method, String, Response)>>,
    seen: Mutex<Vec<Recorded>>,
}

impl TestTransport {
    /// An empty script.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues the response to the next request, which must be `method url`.
    pub fn push(&self, method: Method, url: &str, resp: Response) -> &Self {
        if let Ok(mut s) = self.script.lock() {
            s.push_back((method, url.to_owned(), resp));
        }
        self
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// How many scripted responses are left.
    pub fn remaining(&self) -> usize {
        self.script.lock().map(|s| s.len()).unwrap_or(0)
    }
}

impl Transport for TestTransport {
    fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response, Error> {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push(Recorded {
                method,
                url: url.to_owned(),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: body.unwrap_or_default().to_vec(),
            });
        }
        let unscripted = || Error::Unscripted {
            method,
            url: url.to_owned(),
        };
        let mut script = self.script.lock().map_err(|_| unscripted())?;
        match script.front() {
            Some((m, u, _)) if *m == method && u == url => {
                script.pop_front().map(|(_, _, r)| r).ok_or_else(unscripted)
            }
            _ => Err(unscripted()),
        }
    }
}

/// Builds a response for tests and fixtures.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}
