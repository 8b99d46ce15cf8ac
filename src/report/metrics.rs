//! Prometheus metrics in the text exposition format 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>).
//!
//! Two outputs: a file for node_exporter's textfile collector ([`write_textfile`], written
//! atomically and only when the text changed), and a loopback listener ([`MetricsListener`]).
//! The listener is a tiny blocking one — one connection at a time, a 2 s timeout, a 4 KiB
//! request cap — meant for the daemon's single helper thread; [`answer`] is the same response
//! as a pure function, for serving `/metrics` from the EST server layer's Handler instead.
//!
//! Gauges come from a [`Status`]; counters from [`Counters`], which the daemon, the renew code
//! and the EST handler bump through a shared `Arc<Counters>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::leaves::Source;
use crate::store;

use super::health::problem_short;
use super::status::Status;

/// The Content-Type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The most request bytes the listener reads.
pub const MAX_REQUEST: usize = 4096;
/// How long the listener waits on a client for its request or to take the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// EST endpoints kept as label values (RFC 7030 §3.2.2); anything else is counted as `other`,
/// so a scanner cannot grow the label set.
const EST_ENDPOINTS: [&str; 7] = [
    "cacerts",
    "crl",
    "simpleenroll",
    "simplereenroll",
    "serverkeygen",
    "csrattrs",
    "fullcmc",
];
const CHALLENGES: [&str; 3] = ["http-01", "tls-alpn-01", "dns-01"];
/// Distinct label sets kept per counter; later new ones fold into the last bucket seen.
const MAX_SERIES: usize = 256;

/// Event counters since the process started. Share one as `Arc<Counters>`.
#[derive(Debug, Default)]
pub struct Counters {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    renewal_attempts: BTreeMap<String, u64>,
    renewal_success: BTreeMap<String, u64>,
    renewal_failures: BTreeMap<(String, String), u64>,
    challenge_failures: BTreeMap<String, u64>,
    leaf_issuances: BTreeMap<String, u64>,
    est_requests: BTreeMap<(String, u16), u64>,
    est_auth_challenges: BTreeMap<String, u64>,
    reenroll_alerts: u64,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
    if map.len() >= MAX_SERIES && !map.contains_key(&key) {
        return;
    }
    *map.entry(key).or_insert(0) += 1;
}

impl Counters {
    /// No events yet.
    pub fn new() -> Counters {
        Counters::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Counters are plain integers: a panic elsewhere cannot leave them inconsistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A renewal of certificate `name` started.
    pub fn renewal_attempt(&self, name: &str) {
        bump(&mut self.lock().renewal_attempts, name.to_owned());
    }

    /// A renewal of `name` installed a new certificate.
    pub fn renewal_success(&self, name: &str) {
        bump(&mut self.lock().renewal_success, name.to_owned());
    }

    /// A renewal of `name` failed with `problem`: an ACME problem type URN (or a message
    /// holding one), counted under its short name (`rateLimited`), else `other`.
    pub fn renewal_failure(&self, name: &str, problem: &str) {
        bump(
            &mut self.lock().renewal_failures,
            (name.to_owned(), problem_short(problem)),
        );
    }

    /// A challenge of `kind` (`http-01`, `tls-alpn-01`, `dns-01`) failed.
    pub fn challenge_failure(&self, kind: &str) {
        let kind = if CHALLENGES.contains(&kind) {
            kind
        } else {
            "other"
        };
        bump(&mut self.lock().challenge_failures, kind.to_owned());
    }

    /// A leaf certificate was issued.
    pub fn leaf_issued(&self, source: Source) {
        bump(&mut self.lock().leaf_issuances, source.as_str().to_owned());
    }

    /// The EST server answered `endpoint` (the last path segment, e.g. `simpleenroll`) with
    /// HTTP `status`.
    pub fn est_request(&self, endpoint: &str, status: u16) {
        let ep = if EST_ENDPOINTS.contains(&endpoint) {
            endpoint
        } else {
            "other"
        };
        bump(&mut self.lock().est_requests, (ep.to_owned(), status));
    }
}

impl Counters {
    /// An EST request came without credentials and got the 401 challenge (RFC 7235 §3.1): the
    /// normal first half of HTTP authentication, counted here instead of audited as a denial.
    pub fn est_auth_challenge(&self, endpoint: &str) {
        let ep = if EST_ENDPOINTS.contains(&endpoint) {
            endpoint
        } else {
            "other"
        };
        bump(&mut self.lock().est_auth_challenges, ep.to_owned());
    }

    /// Refused re-enrollments with one device's certificates reached `reenroll_alert`.
    pub fn reenroll_alert(&self) {
        self.lock().reenroll_alerts += 1;
    }
}

/// Escapes a label value: backslash, double quote and line feed (text format 0.0.4).
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// The whole exposition: gauges from `status`, counters from `counters`. Every gateway
/// certificate and every leaf source gets its counters even at 0, so `rate()` works from the
/// first scrape.
pub fn render_metrics(status: &Status, counters: &Counters) -> String {
    let c = counters.lock();
    let mut out = String::new();

    let m = "gatecert_certificate_not_after_seconds";
    family(
        &mut out,
        m,
        "gauge",
        "notAfter of each certificate, Unix seconds.",
    );
    for cert in &status.certificates {
        if let Some(na) = cert.not_after {
            sample(
                &mut out,
                m,
                &[("name", &cert.name), ("kind", cert.kind.as_str())],
                na,
            );
        }
    }

    let gateway: Vec<&str> = status
        .certificates
        .iter()
        .filter(|c| c.kind == super::status::Kind::Gateway)
        .map(|c| c.name.as_str())
        .collect();
    let named = |map: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        let mut all: BTreeMap<String, u64> = gateway.iter().map(|n| (n.to_string(), 0)).collect();
        all.extend(map.iter().map(|(k, v)| (k.clone(), *v)));
        all
    };
    for (m, help, map) in [
        (
            "gatecert_renewal_attempts_total",
            "Renewal attempts since the service started.",
            &c.renewal_attempts,
        ),
        (
            "gatecert_renewal_success_total",
            "Renewals that installed a new certificate since the service started.",
            &c.renewal_success,
        ),
    ] {
        family(&mut out, m, "counter", help);
        for (name, v) in named(map) {
            sample(&mut out, m, &[("name", &name)], v);
        }
    }

    let m = "gatecert_renewal_failures_total";
    family(
        &mut out,
        m,
        "counter",
        "Failed renewals by ACME problem type (short name, RFC 8555 section 6.7) or other.",
    );
    for ((name, problem), v) in &c.renewal_failures {
        sample(&mut out, m, &[("name", name), ("problem", problem)], v);
    }

    let m = "gatecert_issuer_active";
    family(
        &mut out,
        m,
        "gauge",
        "1 for the issuer a certificate with list issuer uses now, 0 for its others.",
    );
    for cert in &status.certificates {
        for (issuer, v) in cert.issuers.iter().flat_map(|v| {
            v.order
                .iter()
                .map(move |i| (i.as_str(), u8::from(*i == v.active)))
        }) {
            sample(&mut out, m, &[("name", &cert.name), ("issuer", issuer)], v);
        }
    }

    let m = "gatecert_renewal_consecutive_failures";
    family(
        &mut out,
        m,
        "gauge",
        "Failed renewals in a row (health.json).",
    );
    for cert in status
        .certificates
        .iter()
        .filter(|c| c.kind == super::status::Kind::Gateway)
    {
        sample(&mut out, m, &[("name", &cert.name)], cert.failures);
    }

    let m = "gatecert_challenge_failures_total";
    family(&mut out, m, "counter", "Failed ACME challenges by type.");
    for (kind, v) in &c.challenge_failures {
        sample(&mut out, m, &[("type", kind)], v);
    }

    let m = "gatecert_upstream_up";
    family(
        &mut out,
        m,
        "gauge",
        "1 when the upstream ACME CA is up or degraded, 0 when down; absent when standalone or unknown.",
    );
    match status.upstream.state.as_str() {
        "up" | "degraded" => sample(&mut out, m, &[], 1),
        "down" => sample(&mut out, m, &[], 0),
        _ => {}
    }

    let m = "gatecert_leaf_issuances_total";
    family(
        &mut out,
        m,
        "counter",
        "Leaf certificates issued, by source.",
    );
    for src in [Source::Local, Source::Interim, Source::Upstream] {
        let v = c.leaf_issuances.get(src.as_str()).copied().unwrap_or(0);
        sample(&mut out, m, &[("source", src.as_str())], v);
    }

    let m = "gatecert_leaf_reenroll_alerts_total";
    family(
        &mut out,
        m,
        "counter",
        "Times one device's certificates were refused reenroll_alert re-enrollments in a row.",
    );
    sample(&mut out, m, &[], c.reenroll_alerts);

    let m = "gatecert_est_requests_total";
    family(
        &mut out,
        m,
        "counter",
        "EST requests by endpoint and HTTP status.",
    );
    for ((ep, st), v) in &c.est_requests {
        sample(
            &mut out,
            m,
            &[("endpoint", ep), ("status", &st.to_string())],
            v,
        );
    }

    let m = "gatecert_est_auth_challenges_total";
    family(
        &mut out,
        m,
        "counter",
        "EST requests without credentials answered with the 401 challenge (not audited).",
    );
    for (ep, v) in &c.est_auth_challenges {
        sample(&mut out, m, &[("endpoint", ep)], v);
    }

    let m = "gatecert_clock_trusted";
    family(
        &mut out,
        m,
        "gauge",
        "1 when the system clock may be believed.",
    );
    sample(&mut out, m, &[], u8::from(status.clock.trusted));

    let m = "gatecert_audit_short_of_retention";
    family(
        &mut out,
        m,
        "gauge",
        "1 when the last audit rotation dropped history younger than audit_retention (budget too small).",
    );
    sample(&mut out, m, &[], u8::from(status.audit.short_of_retention));
    if status.audit.archive_dir.is_some() {
        let m = "gatecert_audit_unarchived_files";
        family(
            &mut out,
            m,
            "gauge",
            "Rotated audit files not yet copied to audit_archive_dir.",
        );
        sample(&mut out, m, &[], status.audit.unarchived_files);
    }

    let m = "gatecert_healthy";
    family(&mut out, m, "gauge", "1 when gatecert status would exit 0.");
    sample(&mut out, m, &[], u8::from(status.healthy));
    out
}

/// Writes `text` to the textfile collector's `path` atomically (0644), only when it differs
/// from what is there. Returns whether it wrote.
pub fn write_textfile(path: &Path, text: &str) -> Result<bool, store::Error> {
    store::write_if_changed(path, text.as_bytes(), store::PUBLIC)
}

/// An HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// Body (empty for HEAD).
    pub body: String,
}

/// The answer to `method path`: `GET /metrics` (or HEAD) renders; other paths are 404, other
/// methods 405.
pub fn answer(method: &str, path: &str, render: impl FnOnce() -> String) -> Answer {
    let text = |status, body: &str| Answer {
        status,
        content_type: "text/plain; charset=utf-8",
        body: body.to_owned(),
    };
    let path = path.split('?').next().unwrap_or(path);
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => Answer {
            status: 200,
            content_type: CONTENT_TYPE,
            body: if method == "GET" {
                render()
            } else {
                String::new()
            },
        },
        (_, "/metrics") => text(405, "method not allowed\n"),
        _ => text(404, "not found; try /metrics\n"),
    }
}

/// A blocking loopback listener for Prometheus scrapes.
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
}

impl MetricsListener {
    /// Binds `addr`, which must be a loopback address (the config already insists).
    pub fn bind(addr: SocketAddr) -> std::io::Result<MetricsListener> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("metrics listen {addr}: only loopback addresses are allowed"),
            ));
        }
        Ok(MetricsListener {
            listener: TcpListener::bind(addr)?,
        })
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts one connection and answers one request on it, then closes it. A client that
    /// sends more than [`MAX_REQUEST`] bytes of header gets 431; one that stalls for
    /// [`IO_TIMEOUT`] is dropped.
    pub fn serve_one(&self, render: &dyn Fn() -> String) -> std::io::Result<()> {
        let (mut conn, _) = self.listener.accept()?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        let a = match read_head(&mut conn)? {
            Head::Request(method, path) => answer(&method, &path, render),
            Head::TooLarge => Answer {
                status: 431,
                content_type: "text/plain; charset=utf-8",
                body: "request header too large\n".into(),
            },
            Head::Bad => Answer {
                status: 400,
                content_type: "text/plain; charset=utf-8",
                body: "bad request\n".into(),
            },
        };
        let reason = match a.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Request Header Fields Too Large",
        };
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            a.status,
            a.content_type,
            a.body.len()
        );
        conn.write_all(head.as_bytes())?;
        conn.write_all(a.body.as_bytes())?;
        conn.flush()
    }

    /// Serves forever on a helper thread; errors on one connection are logged at debug and do
    /// not stop the loop.
    pub fn spawn(
        self,
        render: impl Fn() -> String + Send + 'static,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || loop {
                if let Err(e) = self.serve_one(&render) {
                    log::debug!("metrics: {e}");
                }
            })
    }
}

enum Head {
    Request(String, String),
    TooLarge,
    Bad,
}

fn read_head(conn: &mut TcpStream) -> std::io::Result<Head> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(Head::TooLarge);
        }
        let n = match conn.read(&mut buf[len..]) {
            Ok(0) => return Ok(Head::Bad),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                return Ok(match (req.method, req.path) {
                    (Some(m), Some(p)) => Head::Request(m.to_owned(), p.to_owned()),
                    _ => Head::Bad,
                })
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Ok(Head::TooLarge),
            Err(_) => return Ok(Head::Bad),
        }
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
