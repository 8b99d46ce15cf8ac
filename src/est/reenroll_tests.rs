//! Unit tests of the re-enrollment rule (only the current certificate, a grace window for the
//! one it replaced) and of the unaudited credential-less challenge, on the injected clock.

use std::sync::Arc;

use super::tests::{enroll_req, peer, setup, token_and_csr};
use super::*;
use crate::config::Config;
use crate::leaves::{self, Inventory};
use crate::pkcs7;

/// The single certificate of a certs-only answer.
fn only_cert(resp: &Response) -> Vec<u8> {
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let mut certs = pkcs7::parse_certs_only(&crypto::b64_decode(&resp.body).unwrap()).unwrap();
    assert_eq!(
        certs.len(),
        1,
        "an enroll answer carries only the issued certificate"
    );
    certs.remove(0)
}

fn reenroll_req(name: &str) -> Request {
    let key = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
    let mut req = enroll_req("x", "y", &key.csr(&[name.to_string()], &[]).unwrap());
    req.headers.clear();
    req.path = format!("{PREFIX}simplereenroll");
    req
}

fn peer_with(cert: &[u8]) -> PeerInfo {
    PeerInfo {
        certs: vec![cert.to_vec().into()],
        ..peer()
    }
}

/// Only the device's current certificate re-enrolls; the one it replaced may for
/// leaves::GRACE seconds (a lost reply), then gets 403, audited.
#[test]
fn superseded_certificate_may_not_reenroll_after_the_grace_window() {
    let (dir, mut est, clock) = setup("superseded");
    let name = "g.sensors.local".to_string();
    let (token, csr) = token_and_csr(&dir, "g", &name, 600, clock.now());
    let c1 = only_cert(&est.handle(&enroll_req("g", &token, &csr), &peer()));
    let c2 = only_cert(&est.handle(&reenroll_req(&name), &peer_with(&c1)));
    let inv = crate::leaves::Inventory::open(&leaves::path_in(&dir)).unwrap();
    assert_eq!(
        inv.list().collect::<Vec<_>>().len(),
        1,
        "one device, one entry: {:?}",
        inv.list().collect::<Vec<_>>()
    );
    assert_eq!(inv.list().collect::<Vec<_>>()[0].device, "g");
    // c1's reply "was lost": inside the window it may try again.
    clock.advance(60);
    let c3 = only_cert(&est.handle(&reenroll_req(&name), &peer_with(&c1)));
    // c2 was replaced without ever being used: refused.
    let resp = est.handle(&reenroll_req(&name), &peer_with(&c2));
    assert_eq!(resp.status, 403);
    assert!(String::from_utf8_lossy(&resp.body).contains("not the current certificate"));
    // Past the window c1 is refused too; c3, the current one, still works.
    clock.advance(leaves::GRACE);
    let resp = est.handle(&reenroll_req(&name), &peer_with(&c1));
    assert_eq!(resp.status, 403);
    assert!(String::from_utf8_lossy(&resp.body).contains("superseded"));
    let log = std::fs::read_to_string(audit::deny_path_in(&dir)).unwrap();
    assert!(log.lines().any(|l| l.contains("est.deny")
        && l.contains("superseded")
        && l.contains("\"device\":\"g\"")));
    only_cert(&est.handle(&reenroll_req(&name), &peer_with(&c3)));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The RFC 7235 round-trip: no credentials is counted, not audited; a wrong token is a 401
/// refusal, audited.
#[test]
fn credential_less_challenge_is_counted_not_audited() {
    let (dir, mut est, clock) = setup("challenge");
    let counters = Arc::new(Counters::new());
    est.set_counters(counters.clone());
    let name = "h.sensors.local".to_string();
    let (token, csr) = token_and_csr(&dir, "h", &name, 600, clock.now());
    let mut bare = enroll_req("h", &token, &csr);
    bare.headers.clear();
    let resp = est.handle(&bare, &peer());
    assert_eq!(resp.status, 401);
    assert!(resp.headers.iter().any(|(k, _)| k == "WWW-Authenticate"));
    assert!(!audit::path_in(&dir).exists(), "the challenge was audited");
    assert!(
        !audit::deny_path_in(&dir).exists(),
        "the challenge was audited"
    );
    only_cert(&est.handle(&enroll_req("h", &token, &csr), &peer()));
    let resp = est.handle(&enroll_req("h", "wrong", &csr), &peer());
    assert_eq!(resp.status, 401);
    let log = std::fs::read_to_string(audit::deny_path_in(&dir)).unwrap();
    assert!(!log.contains("no credentials"), "{log}");
    assert!(
        log.contains("est.deny") && log.contains("\"status\":401"),
        "{log}"
    );
    let cfg = Config::standalone(dir.clone());
    let text = crate::report::metrics::render_metrics(
        &crate::report::Status::gather(&cfg, clock.now()),
        &counters,
    );
    assert!(
        text.contains("gatecert_est_auth_challenges_total{endpoint=\"simpleenroll\"} 1\n"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An interim leaf under a label gets the shorter of `interim_lifetime` and the label's lifetime;
/// a label's serverAuth is granted only as far as the CA's `server_auth` allows.
#[test]
fn interim_lifetime_is_capped_by_the_label() {
    let (dir, mut est, clock) = setup("interim-label");
    let name = "i.sensors.local".to_string();
    let key = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
    let csr = est
        .ca()
        .verify_csr(&key.csr(std::slice::from_ref(&name), &[]).unwrap())
        .unwrap();
    let auth = |lifetime| Authorized {
        device: "i".into(),
        names: vec![name.clone()],
        csr: csr.clone(),
        claim: None,
        renews: None,
        lifetime,
        server_auth: true,
        cuts: 0,
    };
    let g = est
        .grant_local(auth(Some(3600)), Some(6 * 3600), Origin::Interim)
        .map_err(|d| d.reason)
        .unwrap();
    assert_eq!(g.issued.not_after, clock.now() + 3600);
    let g = est
        .grant_local(auth(Some(12 * 3600)), Some(6 * 3600), Origin::Interim)
        .map_err(|d| d.reason)
        .unwrap();
    assert_eq!(g.issued.not_after, clock.now() + 6 * 3600);
    // The standalone CA's server_auth is off: no serverAuth whatever the label asks.
    let (_, cert) = x509_parser::parse_x509_certificate(&g.issued.leaf_der).unwrap();
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth, "{eku:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A certificate authorized before `leaves revoke` and finished after it (a parked or slow
/// request) is not delivered, and does not bring the device back; a new token then works.
#[test]
fn a_device_revoked_while_its_request_was_in_progress_gets_nothing() {
    let (dir, mut est, clock) = setup("revoked-midway");
    let name = "m.sensors.local".to_string();
    let (token, csr) = token_and_csr(&dir, "m", &name, 600, clock.now());
    assert_eq!(
        est.handle(&enroll_req("m", &token, &csr), &peer()).status,
        200
    );
    let first = Inventory::open(&leaves::path_in(&dir))
        .unwrap()
        .by_device("m")
        .unwrap()
        .serial
        .clone();
    let cuts = 0;
    let key = crypto::PrivateKey::generate(crypto::KeyType::Ec256).unwrap();
    let csr2 = est
        .ca()
        .verify_csr(&key.csr(std::slice::from_ref(&name), &[]).unwrap())
        .unwrap();
    let issued = est
        .ca()
        .issue(
            &IssueRequest {
                csr: csr2,
                lifetime: None,
                server_auth: false,
            },
            crate::trust::TrustedNow::for_tests(clock.now()),
        )
        .unwrap();
    clock.advance(5);
    let cfg = Config::standalone(dir.clone());
    crate::revocation::cut_off(
        &crate::revocation::Site::cli(&dir, &cfg.ca),
        "m",
        leaves::DeviceState::Revoked,
        0,
        None,
        clock.now(),
    )
    .unwrap();
    let g = Granted {
        device: "m".into(),
        names: vec![name.clone()],
        issued,
        key_pem: None,
        origin: Origin::Local,
        renews: None,
        cuts,
        claim: None,
    };
    let resp = est.finish("simpleenroll", peer().addr.ip(), Ok(g));
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    assert_eq!(resp.status, 403, "{text}");
    assert!(
        text.contains("revoked or disabled while this request was in progress"),
        "{text}"
    );
    let inv = Inventory::open(&leaves::path_in(&dir)).unwrap();
    let row = inv.by_device("m").unwrap();
    assert_eq!(row.serial, first);
    assert_eq!(row.state, leaves::DeviceState::Revoked);
    let log = std::fs::read_to_string(crate::audit::deny_path_in(&dir)).unwrap();
    assert!(log.contains("while this request was in progress"));
    // A new token, issued after the revocation: enrolled, active again.
    clock.advance(1);
    let (token, csr) = token_and_csr(&dir, "m", &name, 600, clock.now());
    let resp = est.handle(&enroll_req("m", &token, &csr), &peer());
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let inv = Inventory::open(&leaves::path_in(&dir)).unwrap();
    assert_eq!(
        inv.by_device("m").unwrap().state,
        leaves::DeviceState::Active
    );
    let _ = std::fs::remove_dir_all(&dir);
}
