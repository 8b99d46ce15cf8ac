//! The EST server end to end on arbitrary request bytes (RFC 7030): `http::parse_request`, then
//! `Est::handle` with HTTP Basic bootstrap tokens, base64 PKCS#10 bodies (§4.2.1) and the
//! multipart `serverkeygen` answer (§4.4.2), against a real local CA in a scratch state dir.
//!
//! Never panics, never answers 5xx (the fixed setup leaves no server-side excuse), and every
//! 200 is well-formed: base64 certs-only PKCS#7 whose leaf names were granted to the token, or
//! a two-part multipart with a PKCS#8 key that matches that leaf.
//!
//! The token store is written by hand with a known token so the seeds can enroll:
//! device `s1`, token `fuzz-token`, names `s1.local` and `10.0.0.7`, unlimited uses.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;

use gatecert::ca::LocalCa;
use gatecert::clock::{Clock, FixedClock};
use gatecert::config::Config;
use gatecert::crypto::{self, CertInfo};
use gatecert::est::Est;
use gatecert::http::{parse_request, Handler, Limits, Parsed, PeerInfo};
use gatecert::pkcs7;

#[path = "common/scratch.rs"]
mod common;

const NOW: i64 = 1_800_000_000;
const GRANTED: [&str; 2] = ["s1.local", "10.0.0.7"];

struct Fixture {
    dir: PathBuf,
    est: Est,
    runs: u64,
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let dir = common::dir("est");
        let cfg = Config::standalone(dir.clone());
        let clock = Arc::new(FixedClock::new(NOW));
        let trusted = gatecert::trust::ClockTrust::load(&dir, None)
            .check(clock.now())
            .expect("NOW is past the build-time floor");
        let ca = LocalCa::init(&LocalCa::dir_in(&dir), &cfg.ca, trusted).expect("CA");
        write_tokens(&dir);
        Mutex::new(Fixture {
            est: Est::new(&dir, ca, clock),
            dir,
            runs: 0,
        })
    })
}

/// A `tokens.json` of the earlier format, with a known secret: the store migrates it into its
/// journal (`tokens.jnl`) on the first open.
fn write_tokens(dir: &std::path::Path) {
    let salt = [7u8; 16];
    let mut msg = b"s1\0".to_vec();
    msg.extend(b"fuzz-token");
    let file = serde_json::json!({
        "version": 1,
        "tokens": [{
            "device": "s1",
            "names": GRANTED,
            "salt": crypto::b64url(&salt),
            "hash": crypto::hex(&crypto::hmac_sha256(&salt, &msg)),
            "expires": NOW + 86_400,
            "uses_left": u32::MAX,
            "revoked": false,
            "created": NOW,
        }],
    });
    std::fs::write(dir.join("tokens.json"), file.to_string()).expect("tokens.json");
}

/// The leaf of a base64 certs-only body, if it has one (`cacerts` has none): its names must
/// have been granted. The SET is DER-sorted, so the leaf is the certificate that is not a CA.
fn check_certs_only(b64: &[u8]) -> Option<CertInfo> {
    let der = crypto::b64_decode(b64).expect("200 body is base64");
    let certs = pkcs7::parse_certs_only(&der).expect("200 body is certs-only PKCS#7");
    assert!(!certs.is_empty());
    let leaf = certs
        .iter()
        .map(|c| CertInfo::from_der(c).expect("certificate parses"))
        .find(|c| !c.is_ca)?;
    for name in leaf
        .dns_names
        .iter()
        .cloned()
        .chain(leaf.ips.iter().map(|ip| ip.to_string()))
    {
        assert!(
            GRANTED.iter().any(|g| g.eq_ignore_ascii_case(&name)),
            "issued ungranted name {name}"
        );
    }
    Some(leaf)
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_connections: 1,
        max_header_bytes: 8192,
        max_body_bytes: 16384,
        request_timeout: std::time::Duration::from_secs(10),
    };
    let Parsed::Complete(req) = parse_request(data, &limits) else {
        return;
    };
    let mut f = fixture().lock().unwrap_or_else(|p| p.into_inner());
    f.runs += 1;
    if f.runs % 2000 == 0 {
        // Keep the audit log and leaf inventory small, so runs stay fast.
        for name in [
            "audit.log",
            "audit.log.1",
            "audit.log.2",
            "audit.log.head",
            "leaves.jnl",
        ] {
            let _ = std::fs::remove_file(f.dir.join(name));
        }
    }
    let peer = PeerInfo {
        addr: "192.0.2.7:5000".parse().expect("literal address"),
        tls: true,
        certs: Vec::new(),
    };
    let resp = f.est.handle(&req, &peer);
    assert!(
        resp.status < 500,
        "HTTP {}: {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    if resp.status != 200 {
        return;
    }
    let ct = resp
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    if ct.starts_with("application/pkcs7-mime") {
        check_certs_only(&resp.body);
    } else if let Some(boundary) = ct.strip_prefix("multipart/mixed; boundary=") {
        let body = String::from_utf8(resp.body).expect("multipart is text");
        let parts: Vec<&str> = body.split(&format!("--{boundary}")).collect();
        assert_eq!(parts.len(), 4, "two parts and the close");
        assert_eq!(parts[3], "--\r\n");
        let content = |p: &str| p.split_once("\r\n\r\n").expect("part head").1.to_owned();
        assert!(parts[1].contains("application/pkcs8"));
        let pkcs8 = crypto::b64_decode(content(parts[1]).as_bytes()).expect("key is base64");
        let key = crypto::PrivateKey::from_pem(&crypto::pem_block("PRIVATE KEY", &pkcs8))
            .expect("key is PKCS#8");
        assert!(parts[2].contains("smime-type=certs-only"));
        let leaf = check_certs_only(content(parts[2]).as_bytes()).expect("a leaf in the answer");
        assert!(
            key.matches(&leaf),
            "serverkeygen key does not match its certificate"
        );
    } else {
        // cacerts / csrattrs: base64 DER.
        crypto::b64_decode(&resp.body).expect("200 body is base64");
    }
});
