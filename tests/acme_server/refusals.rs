//! Refusals of the local ACME server, each with its RFC 8555 §6.7 problem type and an audit
//! line: no EAB, a reused or revoked token, a name outside the token, a replayed nonce, a JWS
//! signed by the wrong key. The client is curl, with JWS made by gatecert's own ACME client
//! signers (`gatecert::acme::jws`).

use std::process::Command;

use gatecert::acme::jws::{self, JwkSigner, KidSigner, Signer};
use gatecert::crypto::{self, KeyType, PrivateKey};
use serde_json::{json, Value};

use super::Gatecert;

pub(crate) struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn problem(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

pub(crate) fn curl(g: &Gatecert, url: &str, args: &[&str]) -> Reply {
    let (body, headers) = (g.path("curl.body"), g.path("curl.headers"));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(g.path("root.pem"))
        .arg("--resolve")
        .arg(format!("{}:{}:127.0.0.1", g.host, g.port))
        .arg("-o")
        .arg(&body)
        .arg("-D")
        .arg(&headers)
        .args(["-w", "%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    Reply {
        status: String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0),
        headers: std::fs::read_to_string(&headers).unwrap_or_default(),
        body: serde_json::from_slice(&std::fs::read(&body).unwrap_or_default())
            .unwrap_or(Value::Null),
    }
}

pub(crate) fn url(g: &Gatecert, path: &str) -> String {
    format!("https://{}:{}/acme/{path}", g.host, g.port)
}

pub(crate) fn nonce(g: &Gatecert) -> String {
    curl(g, &url(g, "new-nonce"), &["-I"])
        .header("replay-nonce")
        .expect("a Replay-Nonce")
}

pub(crate) fn post(
    g: &Gatecert,
    path: &str,
    signer: &dyn Signer,
    nonce: &str,
    payload: &Value,
) -> Reply {
    let u = url(g, path);
    let jws = jws::sign(signer, Some(nonce), &u, Some(payload)).unwrap();
    let file = g.path("jws.json");
    std::fs::write(&file, serde_json::to_vec(&jws).unwrap()).unwrap();
    let data = format!("@{}", file.display());
    curl(
        g,
        &u,
        &[
            "-H",
            "Content-Type: application/jose+json",
            "--data-binary",
            &data,
        ],
    )
}

/// newAccount for `key` with the EAB of `eab` (kid, base64url MAC key), if any.
pub(crate) fn new_account(
    g: &Gatecert,
    key: &PrivateKey,
    eab: Option<&(String, String)>,
    n: &str,
) -> Reply {
    let mut payload = json!({"termsOfServiceAgreed": true});
    if let Some((kid, hmac)) = eab {
        let mac = crypto::b64url_decode(hmac).unwrap();
        payload["externalAccountBinding"] = jws::eab(key, kid, &mac, &url(g, "new-acct")).unwrap();
    }
    post(g, "new-acct", &JwkSigner(key), n, &payload)
}

pub(crate) fn order_for(name: &str) -> Value {
    json!({"identifiers": [{"type": "dns", "value": name}]})
}

#[test]
fn refusals_have_rfc_problem_types_and_are_audited() {
    let g = Gatecert::start("refusals", "");
    let key = PrivateKey::generate(KeyType::Ec256).unwrap();

    // No EAB: externalAccountRequired (RFC 8555 7.3.4).
    let n1 = nonce(&g);
    let r = new_account(&g, &key, None, &n1);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.problem(),
        "urn:ietf:params:acme:error:externalAccountRequired"
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    g.assert_audit("acme.deny", &["externalAccountRequired"]);

    // The same nonce again: badNonce (RFC 8555 6.5), with a fresh nonce to retry with.
    let r = new_account(&g, &key, None, &n1);
    assert_eq!(r.status, 400);
    assert_eq!(r.problem(), "urn:ietf:params:acme:error:badNonce");
    assert!(r.header("replay-nonce").is_some_and(|n| n != n1));
    g.assert_audit("acme.deny", &["badNonce"]);

    // A good EAB admits the account.
    let eab = g.eab("cam4", &["cam4.local"]);
    let r = new_account(&g, &key, Some(&eab), &nonce(&g));
    assert_eq!(r.status, 201, "{}", r.body);
    let account = r.header("location").expect("account URL");

    // The token was one use: a second account with it is refused.
    let other = PrivateKey::generate(KeyType::Ec256).unwrap();
    let r = new_account(&g, &other, Some(&eab), &nonce(&g));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.problem(), "urn:ietf:params:acme:error:unauthorized");
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("token already used"));
    g.assert_audit("acme.deny", &["\"device\":\"cam4\"", "token already used"]);

    // A revoked token admits nobody.
    let revoked = g.eab("cam5", &["cam5.local"]);
    assert!(g.cli(&["token", "revoke", "cam5"]).status.success());
    let r = new_account(&g, &other, Some(&revoked), &nonce(&g));
    assert_eq!(r.problem(), "urn:ietf:params:acme:error:unauthorized");
    g.assert_audit("acme.deny", &["\"device\":\"cam5\"", "token revoked"]);

    // A name outside the token: rejectedIdentifier, with the subproblem naming it.
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let r = post(
        &g,
        "new-order",
        &signer,
        &nonce(&g),
        &order_for("cam5.local"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.problem(), "urn:ietf:params:acme:error:rejectedIdentifier");
    assert_eq!(
        r.body["subproblems"][0]["identifier"]["value"],
        "cam5.local"
    );
    g.assert_audit(
        "acme.deny",
        &["rejectedIdentifier", "\"device\":\"cam4\"", "cam5.local"],
    );

    // A JWS naming the account but signed by another key.
    let forged = KidSigner {
        key: &other,
        kid: &account,
    };
    let r = post(
        &g,
        "new-order",
        &forged,
        &nonce(&g),
        &order_for("cam4.local"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.problem(), "urn:ietf:params:acme:error:unauthorized");
    g.assert_audit(
        "acme.deny",
        &["not signed by the account's key", "\"device\":\"cam4\""],
    );

    // The account's own key and name: an order.
    let r = post(
        &g,
        "new-order",
        &signer,
        &nonce(&g),
        &order_for("cam4.local"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "pending");

    // Once the device's token is revoked, its account orders nothing more.
    assert!(g.cli(&["token", "revoke", "cam4"]).status.success());
    let r = post(
        &g,
        "new-order",
        &signer,
        &nonce(&g),
        &order_for("cam4.local"),
    );
    assert_eq!(r.problem(), "urn:ietf:params:acme:error:unauthorized");
    g.assert_audit("acme.deny", &["\"device\":\"cam4\"", "token revoked"]);

    assert_eq!(g.count_audit("acme.issue"), 0);
    // No secret reached the audit log.
    assert!(!g.audit().contains(&eab.1) && !g.audit().contains(&revoked.1));
}
