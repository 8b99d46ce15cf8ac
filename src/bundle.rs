//! The zero-touch provisioning bundle that `gatecert token add DEVICE ... --bundle` prints: what
//! a sensor needs to enroll (RFC 7030 §4.2.1 `simpleenroll` with HTTP Basic, §3.2.3) in one JSON
//! object: the EST URLs it can reach, the trust anchor to verify the server with (the local
//! CA's root, RFC 7030 §4.1.1 "explicit trust anchor"), its device name, its one-time token and
//! the token's expiry. `--qr` renders the same JSON as a QR code (ISO/IEC 18004) in the terminal.
//!
//! The token is a secret: the bundle goes to stdout once and nowhere else (no log line, no
//! audit field, no file).

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;

use crate::ca::LocalCa;
use crate::config::Config;
use crate::crypto::{self, CertInfo};
use crate::est::PREFIX;
use crate::store::{self, SetDir};

/// The JSON schema name and version of a bundle.
pub const SCHEMA: &str = "gatecert.bundle/1";

/// The set directory of the EST listener's own certificate from the local CA.
const EST_LOCAL_SET: &str = "est-local";

/// What a sensor needs to enroll, as printed by `token add --bundle`.
#[derive(Clone, Debug, Serialize)]
pub struct Bundle {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// The device name: the HTTP Basic user name.
    pub device: String,
    /// The one-time bootstrap token: the HTTP Basic password.
    pub token: String,
    /// The token's expiry, RFC 3339 UTC.
    pub expires: String,
    /// The names the certificate may carry (the token is bound to them).
    pub names: Vec<String>,
    /// `https://HOST:PORT/.well-known/est/`, one per name the EST listener's certificate
    /// carries (hostname first, then addresses), so the sensor's hostname check passes.
    pub est_urls: Vec<String>,
    /// What the EST server's TLS certificate chains to: `trust_anchor` (the local CA issued
    /// it) or `public` (an ACME certificate: verify it with the sensor's usual roots).
    pub est_tls: &'static str,
    /// The local CA's root: the sensor's trust anchor for the EST server and its peers.
    pub trust_anchor: TrustAnchor,
}

/// The root certificate and its fingerprint.
#[derive(Clone, Debug, Serialize)]
pub struct TrustAnchor {
    /// PEM, one certificate.
    pub pem: String,
    /// SHA-256 of the DER, upper-case hex pairs joined by `:` (as `openssl x509 -fingerprint
    /// -sha256` prints it).
    pub sha256: String,
}

/// Why a bundle could not be made.
#[derive(Debug)]
pub enum Error {
    /// The local CA is not there (no trust anchor to hand out).
    Ca(crate::ca::Error),
    /// No name to reach the EST listener by: no listener certificate yet and none configured.
    NoUrl,
    /// EST is disabled in the config.
    EstDisabled,
    /// The text is too long for a QR code.
    TooLong(usize),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Ca(_) => f.write_str("no trust anchor for the bundle"),
            Error::NoUrl => f.write_str(
                "no EST URL for the bundle: the EST listener has no certificate yet and no \
                 certificate section names a domain or ip (start `gatecert run` once)",
            ),
            Error::EstDisabled => f.write_str("no bundle: EST is disabled (config est 'est')"),
            Error::TooLong(n) => write!(f, "the bundle ({n} bytes) is too long for a QR code"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Ca(e) => Some(e),
            _ => None,
        }
    }
}

impl Bundle {
    /// The bundle for a token just made. Reads the state directory only.
    pub fn new(
        cfg: &Config,
        device: &str,
        token: &str,
        names: &[String],
        expires: i64,
    ) -> Result<Bundle, Error> {
        if !cfg.est.enabled {
            return Err(Error::EstDisabled);
        }
        let ca =
            LocalCa::open(&LocalCa::dir_in(&cfg.main.state_dir), &cfg.ca).map_err(Error::Ca)?;
        let root = ca.chain_der().last().cloned().unwrap_or_default();
        let (est_urls, from_acme) = est_urls(cfg);
        if est_urls.is_empty() {
            return Err(Error::NoUrl);
        }
        Ok(Bundle {
            schema: SCHEMA,
            device: device.to_owned(),
            token: token.to_owned(),
            expires: crypto::rfc3339(expires),
            names: names.to_vec(),
            est_urls,
            est_tls: if from_acme { "public" } else { "trust_anchor" },
            trust_anchor: TrustAnchor {
                pem: crypto::pem_block("CERTIFICATE", &root),
                sha256: fingerprint(&root),
            },
        })
    }

    /// Compact JSON (what the QR code carries).
    pub fn to_json(&self) -> String {
        // Serialising plain strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// SHA-256 of `der` as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    crypto::hex(&crypto::sha256(der))
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

/// The URLs a sensor can reach the EST listener at: every name on the listener's live
/// certificate (an ACME certificate when one is installed, else `est-local`), DNS names first;
/// without one yet, the configured names of the certificate sections. Only names the
/// certificate carries: a sensor's hostname check would refuse any other.
/// Also says whether that certificate is an ACME one.
fn est_urls(cfg: &Config) -> (Vec<String>, bool) {
    let port = cfg.est.listen.port();
    let certs = cfg.main.state_dir.join("certs");
    let live = cfg
        .certificates
        .iter()
        .filter(|c| c.directory.is_some())
        .map(|c| c.name.as_str())
        .chain([EST_LOCAL_SET])
        .find_map(|name| {
            let path = SetDir::new(certs.join(name)).live().join(store::CERT);
            let pem = store::read_optional(&path).ok().flatten()?;
            CertInfo::from_pem(&pem)
                .ok()
                .map(|info| (info, name != EST_LOCAL_SET))
        });
    let from_acme = live.as_ref().is_some_and(|(_, acme)| *acme);
    let (mut dns, mut ips): (Vec<String>, Vec<IpAddr>) = match live {
        Some((info, _)) => (info.dns_names, info.ips),
        None => cfg
            .certificates
            .iter()
            .fold((vec![], vec![]), |(mut d, mut i), c| {
                d.extend(c.domains.iter().cloned());
                i.extend(c.ips.iter().copied());
                (d, i)
            }),
    };
    dns.dedup();
    ips.dedup();
    let mut out: Vec<String> = dns
        .into_iter()
        .filter(|d| !d.starts_with('*'))
        .map(|d| format!("https://{d}:{port}{PREFIX}"))
        .collect();
    out.extend(
        ips.into_iter()
            .map(|ip| format!("https://{}{PREFIX}", SocketAddr::new(ip, port))),
    );
    out.dedup();
    (out, from_acme)
}

/// The QR code of `text` (byte mode, error correction level L, the smallest version that fits:
/// a code on a screen is not worn or torn, and L keeps it narrow enough for a terminal; as
/// `qrencode` does by default) as rows of `true` = dark module, without the quiet zone.
pub fn qr_matrix(text: &str) -> Result<Vec<Vec<bool>>, Error> {
    use qrcodegen::{QrCode, QrCodeEcc};
    let qr = QrCode::encode_text(text, QrCodeEcc::Low).map_err(|_| Error::TooLong(text.len()))?;
    let n = qr.size();
    Ok((0..n)
        .map(|y| (0..n).map(|x| qr.get_module(x, y)).collect())
        .collect())
}

/// The quiet zone around the code, in modules (ISO/IEC 18004 §9.1 asks for 4).
pub const QUIET: usize = 4;

/// `text` as a QR code for a terminal: two module rows per text line with UTF-8 half blocks
/// (`▀`, `▄`, `█`, space). Light modules (and the quiet zone) are the drawn blocks, dark
/// modules the background, as `qrencode -t UTF8` does: it scans on a terminal with light text
/// on a dark background, the usual one on a router's console.
pub fn qr_terminal(text: &str) -> Result<String, Error> {
    let m = qr_matrix(text)?;
    let n = m.len();
    let side = n + 2 * QUIET;
    // light(x, y) in padded coordinates.
    let light = |x: usize, y: usize| {
        if x < QUIET || y < QUIET || x >= n + QUIET || y >= n + QUIET {
            return true;
        }
        !m[y - QUIET][x - QUIET]
    };
    let mut out = String::with_capacity(side * side);
    for y in (0..side).step_by(2) {
        for x in 0..side {
            let top = light(x, y);
            let bottom = y + 1 < side && light(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Ok(out)
}

/// The matrix as rows of `0`/`1` (for a client that draws it itself, e.g. LuCI).
pub fn qr_rows(text: &str) -> Result<Vec<String>, Error> {
    Ok(qr_matrix(text)?
        .into_iter()
        .map(|row| row.into_iter().map(|d| if d { '1' } else { '0' }).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_is_square_with_finder_patterns() {
        let m = qr_matrix("{\"a\":1}").unwrap();
        let n = m.len();
        assert!(n >= 21 && (n - 17).is_multiple_of(4), "size {n}");
        assert!(m.iter().all(|r| r.len() == n));
        // The three finder patterns' corners are dark, the separator beside them light.
        for (x, y) in [(0, 0), (n - 1, 0), (0, n - 1)] {
            assert!(m[y][x], "finder corner at {x},{y}");
        }
        assert!(!m[7][7]);
    }

    #[test]
    fn terminal_rendering_has_the_quiet_zone_and_two_rows_per_line() {
        let text = "hello";
        let n = qr_matrix(text).unwrap().len();
        let t = qr_terminal(text).unwrap();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), (n + 2 * QUIET).div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == n + 2 * QUIET));
        assert!(lines[0].chars().all(|c| c == '█'), "quiet zone on top");
        let rows = qr_rows(text).unwrap();
        assert_eq!(rows.len(), n);
        assert!(rows[0].starts_with("1111111"));
    }

    #[test]
    fn too_long_is_an_error_naming_the_size() {
        let long = "x".repeat(4000);
        let e = qr_matrix(&long).unwrap_err();
        assert!(e.to_string().contains("4000 bytes"), "{e}");
    }
}
