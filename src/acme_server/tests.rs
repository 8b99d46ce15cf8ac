//! The ACME server's handler in memory, with an injected clock: the resources and checks the
//! integration tests (tests/acme_server.rs) do not reach with lego and certbot.

use std::sync::Arc;

use serde_json::{json, Value};

use super::*;
use crate::acme::jws::{self as cjws, EabSigner, Header, JwkSigner, KeyOrKeyId, KidSigner, Signer};
use crate::clock::FixedClock;
use crate::config::Config;
use crate::crypto::{self, KeyType, PrivateKey};
use crate::token::{self, Tokens};

const HOST: &str = "gw.local:8443";
const BASE: &str = "https://gw.local:8443/acme";

fn setup(tag: &str, preauthorized: bool) -> (PathBuf, AcmeServer, Arc<FixedClock>) {
    let dir =
        std::env::temp_dir().join(format!("gatecert-acmed-unit-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = Config::standalone(dir.clone());
    let clock = Arc::new(FixedClock::new(1_800_000_000));
    let ca = LocalCa::init(
        &LocalCa::dir_in(&dir),
        &cfg.ca,
        crate::trust::TrustedNow::for_tests(clock.now()),
    )
    .unwrap();
    let srv = AcmeServer::new(
        acme_cfg(preauthorized),
        &dir,
        ca,
        cfg.ca.clone(),
        clock.clone(),
    )
    .unwrap();
    (dir, srv, clock)
}

fn acme_cfg(preauthorized: bool) -> config::AcmeServer {
    config::AcmeServer {
        preauthorized,
        static_host: Vec::new(),
        http_port: 80,
        tls_port: 443,
        lifetime: 3600,
        max_accounts: 4,
        max_orders: 4,
    }
}

fn peer() -> PeerInfo {
    PeerInfo {
        addr: "192.0.2.9:4000".parse().unwrap(),
        tls: true,
        certs: Vec::new(),
    }
}

fn request(method: &str, path: &str, body: Vec<u8>) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: None,
        headers: vec![
            ("Host".into(), HOST.into()),
            ("Content-Type".into(), "application/jose+json".into()),
        ],
        body,
    }
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn body(resp: &Response) -> Value {
    serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
}

fn nonce(srv: &mut AcmeServer) -> String {
    let r = srv.handle(&request("HEAD", "/acme/new-nonce", Vec::new()), &peer());
    header(&r, "Replay-Nonce").unwrap()
}

fn post(
    srv: &mut AcmeServer,
    path: &str,
    signer: &dyn Signer,
    payload: Option<&Value>,
) -> Response {
    let n = nonce(srv);
    let url = format!("{BASE}/{path}");
    let jws = cjws::sign(signer, Some(&n), &url, payload).unwrap();
    srv.handle(
        &request(
            "POST",
            &format!("/acme/{path}"),
            serde_json::to_vec(&jws).unwrap(),
        ),
        &peer(),
    )
}

/// An `--acme` token for `device` and `names`: (kid, MAC key).
fn eab_for(dir: &Path, device: &str, names: &[&str]) -> (String, Vec<u8>) {
    let secret = eab::ensure_secret(dir).unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let derive = |kid: &str| eab::mac_key(&secret, kid);
    let (kid, mac) = Tokens::open_locked(&token::path_in(dir))
        .unwrap()
        .add_eab(device, &names, 3600, 1, 1_800_000_000, &derive)
        .unwrap();
    (kid, crypto::b64url_decode(&mac).unwrap())
}

fn new_account(
    srv: &mut AcmeServer,
    signer: &dyn Signer,
    jwk: &Value,
    eab: &(String, Vec<u8>),
) -> Response {
    let url = format!("{BASE}/new-acct");
    let binding = cjws::sign(
        &EabSigner {
            kid: &eab.0,
            key: &eab.1,
        },
        None,
        &url,
        Some(jwk),
    )
    .unwrap();
    post(
        srv,
        "new-acct",
        signer,
        Some(&json!({"externalAccountBinding": binding})),
    )
}

fn register(srv: &mut AcmeServer, dir: &Path, device: &str, name: &str) -> (PrivateKey, String) {
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let eab = eab_for(dir, device, &[name]);
    let r = new_account(srv, &JwkSigner(&key), &key.jwk(), &eab);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    (key, header(&r, "Location").unwrap())
}

fn order(name: &str) -> Value {
    json!({"identifiers": [{"type": "dns", "value": name}]})
}

fn path_of(url: &str) -> &str {
    url.strip_prefix(&format!("{BASE}/")).unwrap()
}

/// Ed25519 account keys (RFC 8037), signed with ring directly: gatecert's own client has none.
struct Ed25519(ring::signature::Ed25519KeyPair, Value);

impl Signer for Ed25519 {
    fn header<'a>(&'a self, nonce: Option<&'a str>, url: &'a str) -> Header<'a> {
        Header {
            alg: "EdDSA",
            key: KeyOrKeyId::Jwk(self.1.clone()),
            nonce,
            url,
        }
    }
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, crypto::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

#[test]
fn ed25519_account_registers() {
    use ring::signature::KeyPair as _;
    let (dir, mut srv, _) = setup("ed25519", false);
    let pkcs8 =
        ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let kp = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk =
        json!({"crv": "Ed25519", "kty": "OKP", "x": crypto::b64url(kp.public_key().as_ref())});
    let signer = Ed25519(kp, jwk.clone());
    let eab = eab_for(&dir, "ed", &["ed.local"]);
    let r = new_account(&mut srv, &signer, &jwk, &eab);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(body(&r)["status"], "valid");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finalize_checks_the_csr_the_clock_and_issues_once() {
    let (dir, mut srv, clock) = setup("finalize", true);
    let (key, account) = register(&mut srv, &dir, "cam", "cam.local");
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let r = post(&mut srv, "new-order", &signer, Some(&order("cam.local")));
    assert_eq!(r.status, 201);
    // Pre-authorized: ready at once, authorization valid with no challenge.
    let o = body(&r);
    assert_eq!(o["status"], "ready");
    let authz = o["authorizations"][0].as_str().unwrap().to_owned();
    let a = body(&post(&mut srv, path_of(&authz), &signer, None));
    assert_eq!(a["status"], "valid");
    assert_eq!(a["challenges"], json!([]));
    let finalize = path_of(o["finalize"].as_str().unwrap()).to_owned();

    // A CSR for another name: badCSR.
    let leaf = PrivateKey::generate(KeyType::Ec256).unwrap();
    let wrong = leaf.csr(&["other.local".into()], &[]).unwrap();
    let r = post(
        &mut srv,
        &finalize,
        &signer,
        Some(&json!({"csr": crypto::b64url(&wrong)})),
    );
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:badCSR");

    // A clock before the CA's notBefore: 503, nothing issued, nothing in the inventory.
    let csr = leaf.csr(&["cam.local".into()], &[]).unwrap();
    let good = clock.now();
    clock.set(good - 2 * 86_400);
    let r = post(
        &mut srv,
        &finalize,
        &signer,
        Some(&json!({"csr": crypto::b64url(&csr)})),
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(!crate::leaves::path_in(&dir).exists());
    clock.set(good);

    let r = post(
        &mut srv,
        &finalize,
        &signer,
        Some(&json!({"csr": crypto::b64url(&csr)})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let o = body(&r);
    assert_eq!(o["status"], "valid");
    let cert = post(
        &mut srv,
        path_of(o["certificate"].as_str().unwrap()),
        &signer,
        None,
    );
    assert_eq!(
        header(&cert, "Content-Type").as_deref(),
        Some("application/pem-certificate-chain")
    );
    let chain = crypto::certs_from_pem(&String::from_utf8(cert.body).unwrap()).unwrap();
    assert_eq!(chain.len(), 2);
    let info = crypto::CertInfo::from_der(chain[0].as_ref()).unwrap();
    assert_eq!(info.dns_names, vec!["cam.local".to_string()]);
    assert!(info.not_after - info.not_before <= 3600 + crate::ca::BACKDATE);

    // The same order again: orderNotReady, no second certificate.
    let r = post(
        &mut srv,
        &finalize,
        &signer,
        Some(&json!({"csr": crypto::b64url(&csr)})),
    );
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:orderNotReady");
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert_eq!(log.matches("\"event\":\"acme.issue\"").count(), 1);
    assert!(log.contains("clock untrusted"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn key_change_only_return_existing_and_deactivation() {
    let (dir, mut srv, _) = setup("keychange", false);
    let (old, account) = register(&mut srv, &dir, "kc", "kc.local");
    let new = PrivateKey::generate(KeyType::Ec384).unwrap();
    let url = format!("{BASE}/key-change");
    let inner = cjws::sign(
        &JwkSigner(&new),
        None,
        &url,
        Some(&json!({"account": account, "oldKey": old.jwk()})),
    )
    .unwrap();
    let r = post(
        &mut srv,
        "key-change",
        &KidSigner {
            key: &old,
            kid: &account,
        },
        Some(&inner),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // The old key no longer signs for the account; the new one does.
    let r = post(
        &mut srv,
        "new-order",
        &KidSigner {
            key: &old,
            kid: &account,
        },
        Some(&order("kc.local")),
    );
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:unauthorized");
    let signer = KidSigner {
        key: &new,
        kid: &account,
    };
    assert_eq!(
        post(&mut srv, "new-order", &signer, Some(&order("kc.local"))).status,
        201
    );
    // onlyReturnExisting finds it by the new key, and does not make one for an unknown key.
    let r = post(
        &mut srv,
        "new-acct",
        &JwkSigner(&new),
        Some(&json!({"onlyReturnExisting": true})),
    );
    assert_eq!(
        (r.status, header(&r, "Location")),
        (200, Some(account.clone()))
    );
    let r = post(
        &mut srv,
        "new-acct",
        &JwkSigner(&old),
        Some(&json!({"onlyReturnExisting": true})),
    );
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:accountDoesNotExist"
    );
    // Deactivated: nothing more.
    let r = post(
        &mut srv,
        path_of(&account),
        &signer,
        Some(&json!({"status": "deactivated"})),
    );
    assert_eq!(body(&r)["status"], "deactivated");
    let r = post(&mut srv, "new-order", &signer, Some(&order("kc.local")));
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:unauthorized");
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert!(log.contains("acme.key-change") && log.contains("acme.deactivate"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Files under `dir` but the audit log's, with their sizes.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if !e.file_name().to_string_lossy().starts_with("audit.log") {
            out.push((p.clone(), e.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

#[test]
fn unauthenticated_requests_write_only_their_audit_line() {
    let (dir, mut srv, _) = setup("noauth", false);
    let before = files(&dir);
    for _ in 0..50 {
        nonce(&mut srv);
    }
    assert_eq!(
        srv.handle(&request("GET", "/acme/directory", Vec::new()), &peer())
            .status,
        200
    );
    let r = srv.handle(&request("POST", "/acme/new-order", b"{}".to_vec()), &peer());
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:malformed");
    // An unknown account, and a newAccount without EAB.
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let ghost = format!("{BASE}/acct/77");
    let r = post(
        &mut srv,
        "new-order",
        &KidSigner {
            key: &key,
            kid: &ghost,
        },
        Some(&order("x.local")),
    );
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:accountDoesNotExist"
    );
    let r = post(&mut srv, "new-acct", &JwkSigner(&key), Some(&json!({})));
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:externalAccountRequired"
    );
    let after = files(&dir);
    assert_eq!(before, after);
    assert!(!eab::dir_in(&dir).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn orders_are_capped_with_rate_limited() {
    let (dir, mut srv, _) = setup("cap", false);
    let (key, account) = register(&mut srv, &dir, "c", "c.local");
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    for _ in 0..4 {
        assert_eq!(
            post(&mut srv, "new-order", &signer, Some(&order("c.local"))).status,
            201
        );
    }
    let r = post(&mut srv, "new-order", &signer, Some(&order("c.local")));
    assert_eq!(
        (r.status, body(&r)["type"].clone()),
        (429, json!("urn:ietf:params:acme:error:rateLimited"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn directory_profiles_and_renewal_info() {
    let (dir, mut srv, clock) = setup("ari", true);
    let d = body(&srv.handle(&request("GET", "/acme/directory", Vec::new()), &peer()));
    assert_eq!(d["meta"]["externalAccountRequired"], true);
    assert!(d["meta"]["profiles"]["shortlived"].is_string());
    assert_eq!(d["renewalInfo"], format!("{BASE}/renewal-info"));

    let (key, account) = register(&mut srv, &dir, "ari", "ari.local");
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let mut o = order("ari.local");
    o["profile"] = json!("forever");
    let r = post(&mut srv, "new-order", &signer, Some(&o));
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:invalidProfile"
    );
    o["profile"] = json!("shortlived");
    let r = post(&mut srv, "new-order", &signer, Some(&o));
    assert_eq!(r.status, 201);
    let o = body(&r);
    assert_eq!(o["profile"], "shortlived");
    let leaf = PrivateKey::generate(KeyType::Ec256).unwrap();
    let csr = leaf.csr(&["ari.local".into()], &[]).unwrap();
    let finalize = path_of(o["finalize"].as_str().unwrap()).to_owned();
    let r = post(
        &mut srv,
        &finalize,
        &signer,
        Some(&json!({"csr": crypto::b64url(&csr)})),
    );
    let cert = post(
        &mut srv,
        path_of(body(&r)["certificate"].as_str().unwrap()),
        &signer,
        None,
    );
    let chain = crypto::certs_from_pem(&String::from_utf8(cert.body).unwrap()).unwrap();
    let info = crypto::CertInfo::from_der(chain[0].as_ref()).unwrap();

    // ARI (RFC 9773): a window inside the last third of the leaf's life, and Retry-After.
    let id = crate::acme::cert_id(&info).unwrap();
    let r = srv.handle(
        &request("GET", &format!("/acme/renewal-info/{id}"), Vec::new()),
        &peer(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(header(&r, "Retry-After").is_some());
    let w = &body(&r)["suggestedWindow"];
    let start = crypto::parse_rfc3339(w["start"].as_str().unwrap()).unwrap();
    let end = crypto::parse_rfc3339(w["end"].as_str().unwrap()).unwrap();
    let now = clock.now();
    assert!(start >= now + (info.not_after - now) * 2 / 3 && end <= info.not_after && start < end);
    // Another CA's or an unknown serial: 404.
    let other = format!("{}.AQID", id.split('.').next().unwrap());
    let r = srv.handle(
        &request("GET", &format!("/acme/renewal-info/{other}"), Vec::new()),
        &peer(),
    );
    assert_eq!(r.status, 404);
    let r = srv.handle(
        &request("GET", "/acme/renewal-info/nodot", Vec::new()),
        &peer(),
    );
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:malformed");

    // After `gatecert ca rotate`, a leaf of the replaced intermediate is told to renew now.
    let ca_cfg = Config::standalone(dir.clone()).ca;
    let trusted = crate::trust::TrustedNow::for_tests(now);
    let old = LocalCa::open(&LocalCa::dir_in(&dir), &ca_cfg).unwrap();
    let staged = old.stage_rotation(trusted, info.not_after).unwrap();
    staged.commit().unwrap();
    let rotated = LocalCa::open(&LocalCa::dir_in(&dir), &ca_cfg).unwrap();
    let mut srv =
        AcmeServer::new(acme_cfg(true), &dir, rotated, ca_cfg.clone(), clock.clone()).unwrap();
    let r = srv.handle(
        &request("GET", &format!("/acme/renewal-info/{id}"), Vec::new()),
        &peer(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let w = &body(&r)["suggestedWindow"];
    let start = crypto::parse_rfc3339(w["start"].as_str().unwrap()).unwrap();
    let end = crypto::parse_rfc3339(w["end"].as_str().unwrap()).unwrap();
    assert!(start <= now && now < end, "{w}");
    // The replaced intermediate's key id with the serial of a certificate issued after the
    // rotation names no certificate of it.
    clock.advance(crate::ca::rotate::RETIRE_SLACK + 1);
    let mut inv =
        crate::leaves::Inventory::open_locked(&crate::leaves::path_in(&dir), None).unwrap();
    let mut row = inv.list().find(|l| l.device == "ari").unwrap().clone();
    row.issued_at = clock.now();
    inv.record(row).unwrap();
    drop(inv);
    let r = srv.handle(
        &request("GET", &format!("/acme/renewal-info/{id}"), Vec::new()),
        &peer(),
    );
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn anonymous_refusals_are_audited_at_a_bounded_rate() {
    let (dir, mut srv, clock) = setup("anon", false);
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    let deny_lines = || {
        std::fs::read_to_string(crate::audit::path_in(&dir))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"event\":\"acme.deny\""))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for _ in 0..ANON_AUDIT_PER_MINUTE + 20 {
        let r = post(&mut srv, "new-acct", &JwkSigner(&key), Some(&json!({})));
        assert_eq!(
            body(&r)["type"],
            "urn:ietf:params:acme:error:externalAccountRequired"
        );
    }
    assert_eq!(deny_lines().len(), ANON_AUDIT_PER_MINUTE as usize);
    // A minute later the next one is written, with the count of those left out.
    clock.advance(60);
    post(&mut srv, "new-acct", &JwkSigner(&key), Some(&json!({})));
    let lines = deny_lines();
    assert_eq!(lines.len(), ANON_AUDIT_PER_MINUTE as usize + 1);
    assert!(
        lines.last().unwrap().contains("\"suppressed\":20"),
        "{lines:?}"
    );
    // A refusal naming a device is always written.
    let (k, account) = register(&mut srv, &dir, "d", "d.local");
    for _ in 0..ANON_AUDIT_PER_MINUTE {
        post(&mut srv, "new-acct", &JwkSigner(&key), Some(&json!({})));
    }
    let before = deny_lines().len();
    let r = post(
        &mut srv,
        "new-order",
        &KidSigner {
            key: &k,
            kid: &account,
        },
        Some(&order("x.local")),
    );
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:rejectedIdentifier"
    );
    assert_eq!(deny_lines().len(), before + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A broker whose upstream is a listener that never answers, with `upstream_wait` 2 s. Its
/// worker starts on the gateway certificate at once and hangs there, so `upstream_wait` after
/// the start it counts as stalled and a new finalize gets an interim certificate without being
/// parked: start it just before the finalize (under qemu a registration alone can take 1 s).
fn blackholed_broker(
    dir: &Path,
    clock: Arc<FixedClock>,
) -> (crate::broker::Broker, std::net::TcpListener) {
    use crate::config::{self, Certificate};
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = Config::standalone(dir.to_path_buf());
    let mut gw = Certificate::standalone("gw", vec!["gw.local".into()]);
    gw.directory = Some(format!("https://{}/dir", hole.local_addr().unwrap()));
    gw.timeout = 120;
    cfg.certificates = vec![gw];
    cfg.broker = Some(config::Broker {
        certificate: "gw".into(),
        challenge: config::ChallengeKind::Http01,
        dns_hook: None,
        upstream_wait: 2,
        interim_lifetime: 1800,
        issuers: Vec::new(),
    });
    let broker = crate::broker::Broker::start(&cfg, clock).unwrap().unwrap();
    (broker, hole)
}

/// Registers `device` for `name`, orders it (pre-authorized), starts a blackholed broker and
/// finalizes through it: (the broker, its upstream, the account's key, its URL, the order
/// URL, the finalize answer).
fn finalize_brokered(
    srv: &mut AcmeServer,
    dir: &Path,
    clock: Arc<FixedClock>,
    device: &str,
    name: &str,
) -> Brokered {
    let (key, account) = register(srv, dir, device, name);
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let o = body(&post(srv, "new-order", &signer, Some(&order(name))));
    let finalize = path_of(o["finalize"].as_str().unwrap()).to_owned();
    let leaf = PrivateKey::generate(KeyType::Ec256).unwrap();
    let csr = leaf.csr(&[name.into()], &[]).unwrap();
    let n = nonce(srv);
    let url = format!("{BASE}/{finalize}");
    let payload = json!({"csr": crypto::b64url(&csr)});
    let jws = cjws::sign(&signer, Some(&n), &url, Some(&payload)).unwrap();
    let req = request(
        "POST",
        &format!("/acme/{finalize}"),
        serde_json::to_vec(&jws).unwrap(),
    );
    let (mut broker, hole) = blackholed_broker(dir, clock);
    let r = srv.handle_with(&req, &peer(), Some(&mut broker));
    let order_url = header(&r, "Location").unwrap();
    Brokered {
        broker,
        hole,
        key,
        account,
        order_url,
        answer: r,
    }
}

/// What [`finalize_brokered`] leaves: the broker, its upstream (kept open until the end) and
/// the parked order.
struct Brokered {
    broker: crate::broker::Broker,
    hole: std::net::TcpListener,
    key: PrivateKey,
    account: String,
    order_url: String,
    answer: Response,
}

/// Polls `broker` until it resolves something (its deadline is 2 s away), at most 10 s.
fn resolutions(broker: &mut crate::broker::Broker) -> Vec<crate::broker::Resolution> {
    let limit = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = broker.poll();
        if !r.is_empty() || std::time::Instant::now() > limit {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// With a broker and the upstream blackholed, a finalize is parked (the order is
/// `processing`); once `upstream_wait` has passed the broker gives up and the order turns
/// valid with a local interim certificate of `interim_lifetime`.
#[test]
fn finalize_with_a_blackholed_upstream_yields_an_interim_certificate() {
    let (dir, mut srv, clock) = setup("brokered", true);
    let Brokered {
        mut broker,
        hole,
        key,
        account,
        order_url,
        answer: r,
    } = finalize_brokered(&mut srv, &dir, clock.clone(), "bk", "bk.local");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        body(&r)["status"],
        "processing",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(header(&r, "Retry-After").as_deref(), Some("1"));

    let res = resolutions(&mut broker);
    srv.resolve(res, Some(&mut broker));
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let o = body(&post(&mut srv, path_of(&order_url), &signer, None));
    assert_eq!(o["status"], "valid", "{o}");
    let cert = post(
        &mut srv,
        path_of(o["certificate"].as_str().unwrap()),
        &signer,
        None,
    );
    let chain = crypto::certs_from_pem(&String::from_utf8(cert.body).unwrap()).unwrap();
    let info = crypto::CertInfo::from_der(chain[0].as_ref()).unwrap();
    assert!(info.not_after - info.not_before <= 1800 + crate::ca::BACKDATE);
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert!(log.contains("\"source\":\"interim\""), "{log}");
    let inv = crate::leaves::Inventory::open(&crate::leaves::path_in(&dir)).unwrap();
    assert_eq!(
        inv.by_device("bk").unwrap().source,
        crate::leaves::Source::Interim
    );
    // ARI: the upstream is not up, so the usual window; an interim leaf asks again in 5 min.
    let id = crate::acme::cert_id(&info).unwrap();
    let req = request("GET", &format!("/acme/renewal-info/{id}"), Vec::new());
    let r = srv.handle_with(&req, &peer(), Some(&mut broker));
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "Retry-After").as_deref(), Some("300"));
    let start = body(&r)["suggestedWindow"]["start"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(crypto::parse_rfc3339(&start).unwrap() > clock.now());
    drop(hole);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The token revoked while the finalize was parked: when the broker resolves it, nothing is
/// issued, the order is invalid and the refusal audited.
#[test]
fn a_token_revoked_while_parked_yields_nothing() {
    let (dir, mut srv, clock) = setup("parkedrevoke", true);
    let Brokered {
        mut broker,
        hole,
        key,
        account,
        order_url,
        answer: r,
    } = finalize_brokered(&mut srv, &dir, clock, "rv", "rv.local");
    assert_eq!(
        body(&r)["status"],
        "processing",
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(Tokens::open_locked(&token::path_in(&dir))
        .unwrap()
        .revoke("rv")
        .unwrap());
    let res = resolutions(&mut broker);
    srv.resolve(res, Some(&mut broker));
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let o = body(&post(&mut srv, path_of(&order_url), &signer, None));
    assert_eq!(o["status"], "invalid", "{o}");
    assert_eq!(
        o["error"]["type"],
        "urn:ietf:params:acme:error:unauthorized"
    );
    assert!(!crate::leaves::path_in(&dir).exists());
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert!(!log.contains("acme.issue"));
    assert!(log.contains("token revoked"), "{log}");
    drop(hole);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replaced_and_expired_tokens_admit_nobody() {
    let (dir, mut srv, clock) = setup("stale", false);
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();
    // Replaced: a new `token add --acme` for the device voids the first binding.
    let first = eab_for(&dir, "st", &["st.local"]);
    let _second = eab_for(&dir, "st", &["st.local"]);
    let r = new_account(&mut srv, &JwkSigner(&key), &key.jwk(), &first);
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:unauthorized");
    assert!(body(&r)["detail"]
        .as_str()
        .unwrap()
        .contains("unknown EAB key id"));
    // Expired: past its ttl (an hour here).
    let fresh = eab_for(&dir, "ex", &["ex.local"]);
    clock.advance(3601);
    let r = new_account(&mut srv, &JwkSigner(&key), &key.jwk(), &fresh);
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:unauthorized");
    assert!(body(&r)["detail"]
        .as_str()
        .unwrap()
        .contains("token expired"));
    let _ = std::fs::remove_dir_all(&dir);
}

mod lifecycle;
