//! Protocol tests over the in-memory transport: no sockets, no sleeps (the sleep advances a
//! fixed clock).

use std::cell::RefCell;
use std::time::Duration;

use super::transport::{response, Method, TestTransport};
use super::types::{Identifier, NewOrder, OrderStatus};
use super::*;
use crate::clock::FixedClock;
use crate::crypto::{KeyType, PrivateKey};

const DIR: &str = "https://ca.test/dir";

fn directory(extra: &str) -> String {
    format!(
        r#"{{"newNonce":"https://ca.test/nonce","newAccount":"https://ca.test/acct",
        "newOrder":"https://ca.test/order","revokeCert":"https://ca.test/revoke",
        "keyChange":"https://ca.test/key-change"{extra}}}"#
    )
}

fn decode(jws: &serde_json::Value, part: &str) -> serde_json::Value {
    let raw = crypto::b64url_decode(jws[part].as_str().unwrap()).unwrap();
    if raw.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&raw).unwrap()
}

struct Harness {
    t: TestTransport,
    clock: FixedClock,
    slept: RefCell<Vec<Duration>>,
}

impl Harness {
    fn new(extra: &str) -> Harness {
        let t = TestTransport::new();
        t.push(Method::Get, DIR, response(200, &[], &directory(extra)));
        Harness {
            t,
            clock: FixedClock::new(1_800_000_000),
            slept: RefCell::new(Vec::new()),
        }
    }

    fn run<R>(&self, f: impl FnOnce(&Client) -> R) -> R {
        let sleep = |d: Duration| {
            self.slept.borrow_mut().push(d);
            self.clock.advance(d.as_secs() as i64);
        };
        let client = Client::new(&self.t, &self.clock, &sleep, DIR).unwrap();
        f(&client)
    }
}

fn login() -> Login {
    Login {
        key: PrivateKey::generate(KeyType::Ec256).unwrap().into(),
        url: "https://ca.test/acct/7".into(),
    }
}

const ORDER: &str = r#"{"status":"pending","identifiers":[{"type":"dns","value":"gw.example"}],
    "authorizations":["https://ca.test/authz/1"],"finalize":"https://ca.test/order/1/fin"}"#;

fn new_order() -> NewOrder {
    NewOrder {
        identifiers: vec![Identifier::Dns("gw.example".into())],
        profile: None,
        replaces: None,
    }
}

#[test]
fn new_account_uses_jwk_and_returns_location() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n1")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/acct",
        response(
            201,
            &[
                ("Location", "https://ca.test/acct/7"),
                ("Replay-Nonce", "n2"),
            ],
            r#"{"status":"valid","contact":["mailto:ops@example.com"]}"#,
        ),
    );
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let jwk = key.jwk();
    let login = h
        .run(|c| c.account(key, &["mailto:ops@example.com".into()], None, false))
        .unwrap();
    assert_eq!(login.url, "https://ca.test/acct/7");
    let post = &h.t.seen()[2];
    let jws = post.json();
    let prot = decode(&jws, "protected");
    assert_eq!(prot["jwk"], jwk);
    assert!(prot.get("kid").is_none());
    assert_eq!(prot["nonce"], "n1");
    let payload = decode(&jws, "payload");
    assert_eq!(payload["termsOfServiceAgreed"], true);
    assert_eq!(payload["contact"][0], "mailto:ops@example.com");
    assert!(payload.get("externalAccountBinding").is_none());
    assert!(post
        .headers
        .contains(&("Content-Type".into(), "application/jose+json".into())));
}

/// acme2certifier 0.46.3's answer for a key that already has an account: 200, the Location,
/// and an empty object where RFC 8555 §7.3.1 puts the account object.
#[test]
fn existing_account_with_empty_body_is_found_by_location() {
    for only_existing in [false, true] {
        let h = Harness::new("");
        h.t.push(
            Method::Head,
            "https://ca.test/nonce",
            response(200, &[("Replay-Nonce", "n1")], ""),
        );
        h.t.push(
            Method::Post,
            "https://ca.test/acct",
            response(200, &[("Location", "https://ca.test/acct/Sszt12")], "{}"),
        );
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let login = h.run(|c| c.account(key, &[], None, only_existing)).unwrap();
        assert_eq!(login.url, "https://ca.test/acct/Sszt12");
    }
    // A status other than valid is still refused.
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n1")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/acct",
        response(
            200,
            &[("Location", "https://ca.test/acct/9")],
            r#"{"status":"deactivated"}"#,
        ),
    );
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let err = h.run(|c| c.account(key, &[], None, true)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "account is Deactivated https://ca.test/acct/9"
    );
}

#[test]
fn new_account_with_eab_carries_a_verifiable_hs256_binding() {
    let h = Harness::new(r#","meta":{"externalAccountRequired":true}"#);
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n1")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/acct",
        response(
            201,
            &[("Location", "https://ca.test/acct/8")],
            r#"{"status":"valid"}"#,
        ),
    );
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let jwk = key.jwk();
    let mac = [7u8; 32];
    h.run(|c| c.account(key, &[], Some(("eab-kid", &mac)), false))
        .unwrap();
    let payload = decode(&h.t.seen()[2].json(), "payload");
    let eab = &payload["externalAccountBinding"];
    assert_eq!(
        decode(eab, "protected"),
        serde_json::json!({"alg":"HS256","kid":"eab-kid","url":"https://ca.test/acct"})
    );
    assert_eq!(decode(eab, "payload"), jwk);
    let input = format!(
        "{}.{}",
        eab["protected"].as_str().unwrap(),
        eab["payload"].as_str().unwrap()
    );
    let sig = crypto::b64url_decode(eab["signature"].as_str().unwrap()).unwrap();
    assert!(crypto::constant_time_eq(
        &crypto::hmac_sha256(&mac, input.as_bytes()),
        &sig
    ));
}

#[test]
fn bad_nonce_is_retried_with_the_error_responses_nonce() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n1")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(
            400,
            &[("Replay-Nonce", "from-error"), ("Content-Type", "application/problem+json")],
            r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#,
        ),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(201, &[("Location", "https://ca.test/order/1")], ORDER),
    );
    let (url, order) = h.run(|c| c.new_order(&login(), &new_order())).unwrap();
    assert_eq!(url, "https://ca.test/order/1");
    assert_eq!(order.status, OrderStatus::Pending);
    let seen = h.t.seen();
    assert_eq!(
        seen.len(),
        4,
        "one HEAD only: the retry used the error's nonce"
    );
    assert_eq!(decode(&seen[2].json(), "protected")["nonce"], "n1");
    assert_eq!(decode(&seen[3].json(), "protected")["nonce"], "from-error");
    assert!(decode(&seen[3].json(), "protected").get("jwk").is_none());
}

#[test]
fn bad_nonce_retries_are_bounded() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    for _ in 0..6 {
        h.t.push(
            Method::Post,
            "https://ca.test/order",
            response(
                400,
                &[("Replay-Nonce", "again")],
                r#"{"type":"urn:ietf:params:acme:error:badNonce"}"#,
            ),
        );
    }
    let err = h.run(|c| c.new_order(&login(), &new_order())).unwrap_err();
    assert!(matches!(&err, Error::Problem { problem, .. } if problem.is("badNonce")));
    assert_eq!(h.t.remaining(), 0);
}

#[test]
fn rate_limit_retry_after_is_honoured_then_succeeds() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(
            429,
            &[("Replay-Nonce", "n2"), ("Retry-After", "7")],
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"slow down"}"#,
        ),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(201, &[("Location", "https://ca.test/order/1")], ORDER),
    );
    h.run(|c| c.new_order(&login(), &new_order())).unwrap();
    assert_eq!(*h.slept.borrow(), vec![Duration::from_secs(7)]);
}

#[test]
fn rate_limit_past_the_deadline_fails_with_the_problem() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(
            429,
            &[("Retry-After", "86400")],
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many certificates"}"#,
        ),
    );
    let err = h.run(|c| c.new_order(&login(), &new_order())).unwrap_err();
    assert!(err.is_retryable());
    assert!(err
        .to_string()
        .contains("rateLimited: too many certificates (HTTP 429)"));
    assert!(h.slept.borrow().is_empty());
    // Issue 18: the Retry-After travels with the problem, so the upstream worker's backoff
    // waits it out instead of ordering again every few hours while the limit holds.
    assert!(
        matches!(
            &err,
            Error::Problem {
                retry_after: Some(86_400),
                ..
            }
        ),
        "{err:?}"
    );
}

/// Found while writing the `acme_json` fuzz target (which now asserts it): a delay-seconds
/// within `now` of i64::MAX made `now + secs` overflow in
/// `retry_later` (a panic in debug builds; in release a wrapped sum that passed the max_wait
/// check and slept for ~292 billion years).
#[test]
fn retry_after_is_capped_so_callers_can_add_it_to_the_clock() {
    let now = 1_795_867_200;
    for huge in [
        "9223372036854775807",
        "99999999999",
        "Fri, 31 Dec 9999 23:59:59 GMT",
    ] {
        let r = response(429, &[("Retry-After", huge)], "");
        assert_eq!(retry_after(&r, now), Some(MAX_RETRY_AFTER), "{huge}");
        assert!(now.checked_add(retry_after(&r, now).unwrap()).is_some());
    }
    let r = response(429, &[("Retry-After", "-9223372036854775808")], "");
    assert_eq!(retry_after(&r, now), Some(0));

    // Through the caller: a rate limit asking for "forever" fails at once, sleeping not at all.
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(
            429,
            &[("Retry-After", "9223372036854775807")],
            r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"go away"}"#,
        ),
    );
    let err = h.run(|c| c.new_order(&login(), &new_order())).unwrap_err();
    assert!(err.is_retryable());
    assert!(h.slept.borrow().is_empty());
}

#[test]
fn retry_after_accepts_an_http_date() {
    let r = response(503, &[("Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT")], "");
    assert_eq!(retry_after(&r, 784_111_777 - 30), Some(30));
    assert_eq!(retry_after(&r, 784_111_777 + 30), Some(0));
    assert_eq!(
        retry_after(&response(503, &[("Retry-After", "soon")], ""), 0),
        None
    );
}

#[test]
fn order_poll_honours_retry_after() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    let processing = ORDER.replace("pending", "processing");
    let valid = ORDER.replace(
        r#""status":"pending""#,
        r#""status":"valid","certificate":"https://ca.test/cert/1""#,
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order/1",
        response(
            200,
            &[("Retry-After", "3"), ("Replay-Nonce", "a")],
            &processing,
        ),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order/1",
        response(200, &[("Replay-Nonce", "b")], &valid),
    );
    let order = h
        .run(|c| {
            c.poll_order(&login(), "https://ca.test/order/1", |s| {
                s == OrderStatus::Valid
            })
        })
        .unwrap();
    assert_eq!(order.certificate.as_deref(), Some("https://ca.test/cert/1"));
    assert_eq!(*h.slept.borrow(), vec![Duration::from_secs(3)]);
    // POST-as-GET: empty payload, kid header.
    let jws = h.t.seen()[2].json();
    assert_eq!(jws["payload"], "");
    assert_eq!(decode(&jws, "protected")["kid"], "https://ca.test/acct/7");
}

#[test]
fn order_poll_backs_off_and_gives_up_at_the_deadline() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    let processing = ORDER.replace("pending", "processing");
    for _ in 0..40 {
        h.t.push(
            Method::Post,
            "https://ca.test/order/1",
            response(200, &[("Replay-Nonce", "a")], &processing),
        );
    }
    let err = h
        .run(|c| {
            c.poll_order(&login(), "https://ca.test/order/1", |s| {
                s == OrderStatus::Valid
            })
        })
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    let slept = h.slept.borrow();
    // 1 s, 2 s, 4 s ... each with < 50% jitter, capped at 16 s (+ jitter).
    assert!(slept[0] >= Duration::from_secs(1) && slept[0] < Duration::from_millis(1500));
    assert!(slept[1] >= Duration::from_secs(2) && slept[1] < Duration::from_secs(3));
    assert!(slept.iter().all(|d| *d < Duration::from_secs(24)));
}

#[test]
fn invalid_order_reports_the_servers_problem() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    let invalid = ORDER.replace(
        r#""status":"pending""#,
        r#""status":"invalid","error":{"type":"urn:ietf:params:acme:error:unauthorized","detail":"no"}"#,
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order/1",
        response(200, &[], &invalid),
    );
    let err = h
        .run(|c| {
            c.poll_order(&login(), "https://ca.test/order/1", |s| {
                s == OrderStatus::Valid
            })
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "order is invalid https://ca.test/order/1: urn:ietf:params:acme:error:unauthorized: no"
    );
}

#[test]
fn problem_with_subproblems_is_shown_in_the_error() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(
            400,
            &[("Content-Type", "application/problem+json")],
            r#"{"type":"urn:ietf:params:acme:error:rejectedIdentifier","detail":"Error creating new order",
              "status":400,"subproblems":[{"type":"urn:ietf:params:acme:error:rejectedIdentifier",
              "detail":"policy forbids issuing for name","identifier":{"type":"dns","value":"bad.example"}}]}"#,
        ),
    );
    let err = h.run(|c| c.new_order(&login(), &new_order())).unwrap_err();
    assert!(!err.is_retryable());
    let shown = err.to_string();
    assert!(shown.starts_with(
        "https://ca.test/order: urn:ietf:params:acme:error:rejectedIdentifier: Error creating new order (HTTP 400)"
    ), "{shown}");
    assert!(shown.contains(
        "dns:bad.example: urn:ietf:params:acme:error:rejectedIdentifier: policy forbids issuing for name"
    ));
}

#[test]
fn non_json_error_bodies_still_name_the_status() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(502, &[], "Bad Gateway\n"),
    );
    let err = h.run(|c| c.new_order(&login(), &new_order())).unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(
        err.to_string(),
        "https://ca.test/order: about:blank: Bad Gateway (HTTP 502)"
    );
}

#[test]
fn profile_not_offered_is_a_clear_error_listing_the_offered_ones() {
    let h = Harness::new(r#","meta":{"profiles":{"classic":"90d","tlsserver":"7d"}}"#);
    let mut order = new_order();
    order.profile = Some("shortlived".into());
    let err = h.run(|c| c.new_order(&login(), &order)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "profile 'shortlived' is not offered by https://ca.test/dir; it offers: classic, tlsserver"
    );
    assert_eq!(h.t.seen().len(), 1, "nothing was sent to newOrder");
}

#[test]
fn profile_and_replaces_are_sent_in_new_order() {
    let h = Harness::new(r#","meta":{"profiles":{"shortlived":"6d"}}"#);
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order",
        response(201, &[("Location", "https://ca.test/order/1")], ORDER),
    );
    let mut order = new_order();
    order.profile = Some("shortlived".into());
    order.replaces = Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into());
    h.run(|c| c.new_order(&login(), &order)).unwrap();
    let payload = decode(&h.t.seen()[2].json(), "payload");
    assert_eq!(payload["profile"], "shortlived");
    assert_eq!(payload["replaces"], "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    assert_eq!(
        payload["identifiers"][0],
        serde_json::json!({"type":"dns","value":"gw.example"})
    );
}

#[test]
fn key_change_nests_a_jwk_signed_inner_jws() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/key-change",
        response(200, &[], "{}"),
    );
    let old = login();
    let new_key = PrivateKey::generate(KeyType::Ec256).unwrap();
    h.run(|c| c.key_change(&old, &new_key)).unwrap();
    let outer = h.t.seen()[2].json();
    let outer_h = decode(&outer, "protected");
    assert_eq!(outer_h["kid"], old.url);
    assert_eq!(outer_h["url"], "https://ca.test/key-change");
    let inner = decode(&outer, "payload");
    let inner_h = decode(&inner, "protected");
    assert_eq!(inner_h["jwk"], new_key.jwk());
    assert_eq!(inner_h["url"], "https://ca.test/key-change");
    assert!(inner_h.get("nonce").is_none());
    assert_eq!(
        decode(&inner, "payload"),
        serde_json::json!({"account": old.url, "oldKey": old.key.jwk()})
    );
}

fn self_signed(cn: &str) -> String {
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key.to_rcgen()).unwrap().pem()
}

#[test]
fn download_fetches_alternates_and_preferred_chain_picks_by_issuer_cn() {
    let default_chain = format!("{}{}", self_signed("leaf"), self_signed("Default Root"));
    let alt_chain = format!(
        "{}{}{}",
        self_signed("leaf"),
        self_signed("Cross X1"),
        self_signed("Alt Root")
    );
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/cert/1",
        response(
            200,
            &[
                ("Content-Type", "application/pem-certificate-chain"),
                ("Replay-Nonce", "n2"),
                ("Link", r#"<https://ca.test/dir>;rel="index", <https://ca.test/cert/1/1>;rel="alternate""#),
            ],
            &default_chain,
        ),
    );
    h.t.push(
        Method::Post,
        "https://ca.test/cert/1/1",
        response(200, &[], &alt_chain),
    );
    let chains = h
        .run(|c| c.download(&login(), "https://ca.test/cert/1"))
        .unwrap();
    assert_eq!(chains, vec![default_chain.clone(), alt_chain.clone()]);
    let accept = &h.t.seen()[2].headers;
    assert!(accept.contains(&("Accept".into(), "application/pem-certificate-chain".into())));
    assert_eq!(select_chain(&chains, None), Some(&default_chain));
    assert_eq!(select_chain(&chains, Some("Alt Root")), Some(&alt_chain));
    assert_eq!(select_chain(&chains, Some("Cross X1")), Some(&alt_chain));
    assert_eq!(
        select_chain(&chains, Some("Default Root")),
        Some(&default_chain)
    );
    assert_eq!(select_chain(&chains, Some("Nobody")), Some(&default_chain));
}

#[test]
fn ari_cert_id_and_retry_after() {
    let mut info = CertInfo::from_pem(&self_signed("x")).unwrap();
    info.aki = None;
    assert_eq!(cert_id(&info), None);
    // RFC 9773 §4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4,
    // serial 00:87:65:43:21.
    info.aki = Some(vec![
        0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0, 0xAE,
        0x2C, 0xDE, 0x01, 0xC8, 0xD4,
    ]);
    info.serial = vec![0x00, 0x87, 0x65, 0x43, 0x21];
    let id = cert_id(&info).unwrap();
    assert_eq!(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");

    let h = Harness::new(r#","renewalInfo":"https://ca.test/ari/""#);
    h.t.push(
        Method::Get,
        "https://ca.test/ari/aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        response(
            200,
            &[("Retry-After", "21600")],
            r#"{"suggestedWindow":{"start":"2025-01-02T04:00:00Z","end":"2025-01-03T04:00:00Z"}}"#,
        ),
    );
    let (ri, retry) = h.run(|c| c.renewal_info(&id)).unwrap().unwrap();
    assert_eq!(ri.suggested_window.end, "2025-01-03T04:00:00Z");
    assert_eq!(retry, Some(21600));
}

#[test]
fn unreachable_directory_names_the_url() {
    let t = TestTransport::new();
    let clock = FixedClock::new(0);
    let err = Client::new(&t, &clock, &|_| {}, "https://nowhere.test/dir")
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("GET https://nowhere.test/dir"),
        "{err}"
    );
}

/// Issue 18: a finalize response that is already `valid` is used as is — no order poll, no
/// sleep (the old code always polled the order again).
#[test]
fn finalize_uses_a_valid_finalize_response_without_polling() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    let valid = ORDER.replace(
        r#""status":"pending""#,
        r#""status":"valid","certificate":"https://ca.test/cert/9""#,
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order/1/fin",
        response(200, &[("Replay-Nonce", "a")], &valid),
    );
    let ready: types::Order = serde_json::from_str(&ORDER.replace("pending", "ready")).unwrap();
    let order = h
        .run(|c| c.finalize(&login(), "https://ca.test/order/1", &ready, b"csr"))
        .unwrap();
    assert_eq!(order.certificate.as_deref(), Some("https://ca.test/cert/9"));
    assert!(h.slept.borrow().is_empty());
    let posts: Vec<_> =
        h.t.seen()
            .iter()
            .filter(|r| r.method == Method::Post)
            .map(|r| r.url.clone())
            .collect();
    assert_eq!(posts, vec!["https://ca.test/order/1/fin".to_owned()]);
}

/// Issue 18: a `processing` finalize response's Retry-After, in its HTTP-date form, sets the
/// wait before the one order poll (not a fixed ~1 s backoff).
#[test]
fn finalize_processing_waits_for_the_http_date_retry_after() {
    let h = Harness::new("");
    h.t.push(
        Method::Head,
        "https://ca.test/nonce",
        response(200, &[("Replay-Nonce", "n")], ""),
    );
    // 1_800_000_000 = Fri, 15 Jan 2027 08:00:00 GMT; ask for 7 s later.
    h.t.push(
        Method::Post,
        "https://ca.test/order/1/fin",
        response(
            200,
            &[
                ("Retry-After", "Fri, 15 Jan 2027 08:00:07 GMT"),
                ("Replay-Nonce", "a"),
            ],
            &ORDER.replace("pending", "processing"),
        ),
    );
    let valid = ORDER.replace(
        r#""status":"pending""#,
        r#""status":"valid","certificate":"https://ca.test/cert/9""#,
    );
    h.t.push(
        Method::Post,
        "https://ca.test/order/1",
        response(200, &[("Replay-Nonce", "b")], &valid),
    );
    let ready: types::Order = serde_json::from_str(&ORDER.replace("pending", "ready")).unwrap();
    let order = h
        .run(|c| c.finalize(&login(), "https://ca.test/order/1", &ready, b"csr"))
        .unwrap();
    assert_eq!(order.certificate.as_deref(), Some("https://ca.test/cert/9"));
    assert_eq!(*h.slept.borrow(), vec![Duration::from_secs(7)]);
}
