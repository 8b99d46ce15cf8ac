//! Unit tests of the EST handler on the injected clock.

use super::*;
use crate::clock::FixedClock;
use crate::config::Config;
use crate::pkcs7;

#[test]
fn basic_auth_parses_rfc7617_example() {
    // RFC 7617 §2: "Aladdin" / "open sesame".
    let mut req = Request {
        method: "POST".into(),
        path: "/".into(),
        query: None,
        headers: vec![(
            "Authorization".into(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into(),
        )],
        body: Vec::new(),
    };
    assert_eq!(
        basic_auth(&req),
        Some(("Aladdin".into(), "open sesame".into()))
    );
    req.headers[0].1 = "Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into();
    assert_eq!(basic_auth(&req), None);
    req.headers[0].1 = format!("Basic {}", crypto::b64(b"nopassword"));
    assert_eq!(basic_auth(&req), None);
}

#[test]
fn csr_attrs_is_well_formed_der() {
    assert_eq!(CSR_ATTRS[1] as usize, CSR_ATTRS.len() - 2);
    assert_eq!(CSR_ATTRS[13] as usize, CSR_ATTRS.len() - 14);
    assert_eq!(CSR_ATTRS[24] as usize, CSR_ATTRS.len() - 25);
}

pub(super) fn setup(tag: &str) -> (PathBuf, Est, Arc<FixedClock>) {
    let dir = std::env::temp_dir().join(format!("gatecert-est-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = Config::standalone(dir.clone());
    let clock = Arc::new(FixedClock::new(1_800_000_000));
    let ca = LocalCa::init(
        &LocalCa::dir_in(&dir),
        &cfg.ca,
        crate::trust::TrustedNow::for_tests(clock.now()),
    )
    .unwrap();
    let est = Est::new(&dir, ca, clock.clone());
    (dir, est, clock)
}

/// A one-use token for `device` bound to `name`, valid `ttl` s from `now`, and a P-256 CSR
/// for `name`.
pub(super) fn token_and_csr(
    dir: &Path,
    device: &str,
    name: &str,
    ttl: u64,
    now: i64,
) -> (String, Vec<u8>) {
    let names = [name.to_string()];
    let token = Tokens::open(&token::path_in(dir))
        .unwrap()
        .add(device, &names, ttl, 1, now)
        .unwrap();
    let key = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
    (token, key.csr(&names, &[]).unwrap())
}

pub(super) fn enroll_req(device: &str, token: &str, csr: &[u8]) -> Request {
    Request {
        method: "POST".into(),
        path: format!("{PREFIX}simpleenroll"),
        query: None,
        headers: vec![(
            "Authorization".into(),
            format!(
                "Basic {}",
                crypto::b64(format!("{device}:{token}").as_bytes())
            ),
        )],
        body: crypto::b64(csr).into_bytes(),
    }
}

pub(super) fn peer() -> PeerInfo {
    PeerInfo {
        addr: "192.0.2.7:5000".parse().unwrap(),
        tls: true,
        certs: Vec::new(),
    }
}

#[test]
fn token_expires_on_the_injected_clock() {
    let (dir, mut est, clock) = setup("clock");
    let name = "s.sensors.local".to_string();
    let (token, csr) = token_and_csr(&dir, "s", &name, 60, clock.now());
    clock.advance(61);
    let resp = est.handle(&enroll_req("s", &token, &csr), &peer());
    assert_eq!(resp.status, 401);
    assert!(resp.headers.contains(&(
        "WWW-Authenticate".into(),
        format!("Basic realm=\"{REALM}\"")
    )));
    assert!(String::from_utf8_lossy(&resp.body).contains("expired"));
    let log = std::fs::read_to_string(audit::deny_path_in(&dir)).unwrap();
    assert!(log.contains("token expired") && log.contains("192.0.2.7"));
    assert!(!log.contains(&token));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A clock before the CA's notBefore (a router that booted without RTC): no issuance, 503,
/// the token is not burnt, nothing goes into the inventory; once the clock is right, it works.
#[test]
fn untrusted_clock_refuses_without_burning_the_token() {
    let (dir, mut est, clock) = setup("untrusted");
    let name = "u.sensors.local".to_string();
    let (token, csr) = token_and_csr(&dir, "u", &name, 7 * 86_400, clock.now());
    let good = clock.now();
    clock.set(good - 2 * 86_400);
    let resp = est.handle(&enroll_req("u", &token, &csr), &peer());
    assert_eq!(resp.status, 503);
    assert!(String::from_utf8_lossy(&resp.body).contains("clock untrusted"));
    assert!(!crate::leaves::path_in(&dir).exists());
    clock.set(good);
    let resp = est.handle(&enroll_req("u", &token, &csr), &peer());
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn issuances_are_counted_by_source() {
    let (dir, mut est, clock) = setup("counted");
    let counters = Arc::new(Counters::new());
    est.set_counters(counters.clone());
    let name = "c.sensors.local".to_string();
    let (token, csr) = token_and_csr(&dir, "c", &name, 600, clock.now());
    assert_eq!(
        est.handle(&enroll_req("c", &token, &csr), &peer()).status,
        200
    );
    let cfg = Config::standalone(dir.clone());
    let text = crate::report::metrics::render_metrics(
        &crate::report::Status::gather(&cfg, clock.now()),
        &counters,
    );
    assert!(
        text.contains("gatecert_leaf_issuances_total{source=\"local\"} 1\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn routing_answers_404_and_405() {
    let (dir, mut est, _) = setup("routes");
    let mut req = enroll_req("x", "y", b"");
    req.method = "GET".into();
    let resp = est.handle(&req, &peer());
    assert_eq!(resp.status, 405);
    assert!(resp.headers.contains(&("Allow".into(), "POST".into())));
    req.path = format!("{PREFIX}fullcmc");
    assert_eq!(est.handle(&req, &peer()).status, 404);
    req.path = "/elsewhere".into();
    assert_eq!(est.handle(&req, &peer()).status, 404);
    req.path = format!("{PREFIX}cacerts");
    let resp = est.handle(&req, &peer());
    assert_eq!(resp.status, 200);
    let der = crypto::b64_decode(&resp.body).unwrap();
    let mut chain = est.ca().chain_der();
    chain.sort();
    assert_eq!(pkcs7::parse_certs_only(&der).unwrap(), chain);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn serverkeygen_answer_is_rfc7030_multipart() {
    let (dir, est, clock) = setup("keygen");
    let (key, issued) = est
        .ca()
        .issue_with_new_key(
            &["k.sensors.local".into()],
            &[],
            None,
            false,
            crate::trust::TrustedNow::for_tests(clock.now()),
        )
        .unwrap();
    let resp = serverkeygen_response(&key.to_pem(), &issued);
    let ct = &resp.headers[0].1;
    assert_eq!(ct, &format!("multipart/mixed; boundary={BOUNDARY}"));
    let body = String::from_utf8(resp.body).unwrap();
    let parts: Vec<&str> = body.split(&format!("--{BOUNDARY}")).collect();
    assert_eq!(parts.len(), 4);
    assert!(parts[1].starts_with("\r\nContent-Type: application/pkcs8\r\n"));
    assert!(parts[2].contains("smime-type=certs-only"));
    assert_eq!(parts[3], "--\r\n");
    let pkcs8 = parts[1].split("\r\n\r\n").nth(1).unwrap();
    let pem = crypto::pem_block(
        "PRIVATE KEY",
        &crypto::b64_decode(pkcs8.as_bytes()).unwrap(),
    );
    let back = crypto::PrivateKey::from_pem(&pem).unwrap();
    assert!(back.matches(&CertInfo::from_der(&issued.leaf_der).unwrap()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET /crl`, `/.well-known/est/crl` and `/.well-known/est/<label>/crl` serve the same DER CRL
/// (`application/pkix-crl`); 503 before one is signed, 405 for anything but GET, and a new CRL
/// is served as soon as the file changes.
#[test]
fn crl_is_served_on_every_path_and_follows_the_file() {
    let (dir, mut est, clock) = setup("crl");
    est.set_labels(vec![config::Label {
        name: "meters".into(),
        line: 1,
        lifetime: None,
        allow_suffix: Vec::new(),
        server_auth: false,
    }]);
    let get = |path: &str| Request {
        method: "GET".into(),
        path: path.into(),
        query: None,
        headers: Vec::new(),
        body: Vec::new(),
    };
    let paths = [
        "/crl",
        "/.well-known/est/crl",
        "/.well-known/est/meters/crl",
    ];
    let resp = est.handle(&get("/crl"), &peer());
    assert_eq!(resp.status, 503);
    let cfg = Config::standalone(dir.clone());
    let publish = |now: i64| {
        let mut inv =
            crate::leaves::Inventory::open_locked(&crate::leaves::path_in(&dir), None).unwrap();
        crate::revocation::publish_crl(&dir, &cfg.ca, None, &mut inv, now).unwrap()
    };
    let first = publish(clock.now());
    for p in paths {
        let resp = est.handle(&get(p), &peer());
        assert_eq!(resp.status, 200, "{p}");
        assert_eq!(resp.body, first.der, "{p}");
        assert!(resp
            .headers
            .contains(&("Content-Type".into(), "application/pkix-crl".into())));
    }
    let second = publish(clock.now() + 60);
    assert!(second.number > first.number);
    assert_eq!(est.handle(&get("/crl"), &peer()).body, second.der);
    let mut post = get("/crl");
    post.method = "POST".into();
    assert_eq!(est.handle(&post, &peer()).status, 405);
    post.path = "/.well-known/est/crl".into();
    assert_eq!(est.handle(&post, &peer()).status, 405);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The group commit: issuances answered `Later` by one turn of the loop are committed together
/// by `commit_pending`, in order; each gets its own answer (a token revoked between the signing
/// and the commit refuses only its own, and its use is not spent); no audit line or row is
/// written before the commit; a client gone before the commit spends nothing.
#[test]
fn issuances_of_one_turn_are_committed_together() {
    use crate::http::{Answer, Handler as _};
    let (dir, mut est, clock) = setup("group");
    let mut ids = Vec::new();
    for d in ["g1", "g2", "g3", "g4"] {
        let (token, csr) = token_and_csr(&dir, d, &format!("{d}.sensors.local"), 600, clock.now());
        match est.answer(&enroll_req(d, &token, &csr), &peer()) {
            Answer::Later(id) => ids.push(id),
            Answer::Now(r) => panic!("{d}: answered at once: {}", r.status),
        }
    }
    // Nothing recorded yet: the certificates are signed, not committed.
    let audit_log = std::fs::read_to_string(audit::path_in(&dir)).unwrap_or_default();
    assert!(!audit_log.contains("est.issue"), "{audit_log}");
    assert!(!crate::leaves::path_in(&dir).exists());
    let mut tokens = Tokens::open_locked(&crate::token::path_in(&dir)).unwrap();
    assert!(tokens.revoke("g2").unwrap());
    drop(tokens);
    let gone = ids[3];
    let answers = est.commit_pending(&|id| id != gone);
    let got: Vec<(u64, u16)> = answers.iter().map(|(id, _, r)| (*id, r.status)).collect();
    assert_eq!(got, [(ids[0], 200), (ids[1], 401), (ids[2], 200)]);
    let log = std::fs::read_to_string(audit::path_in(&dir)).unwrap();
    assert_eq!(log.matches("\"est.issue\"").count(), 2, "{log}");
    let inv = crate::leaves::Inventory::open(&crate::leaves::path_in(&dir)).unwrap();
    let devices: Vec<String> = inv.list().map(|l| l.device).collect();
    assert_eq!(devices, ["g1", "g3"]);
    let left = |t: &Tokens, d: &str| {
        t.list()
            .unwrap()
            .into_iter()
            .find(|i| i.device == d)
            .unwrap()
            .uses_left
    };
    let t = Tokens::open(&crate::token::path_in(&dir)).unwrap();
    assert_eq!(
        (
            left(&t, "g1"),
            left(&t, "g2"),
            left(&t, "g3"),
            left(&t, "g4")
        ),
        (0, 1, 0, 1)
    );
    drop(t);
    // Nothing is left parked.
    assert!(est.commit_pending(&|_| true).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
