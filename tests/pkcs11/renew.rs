//! `gatecert renew` against Pebble with the certificate key and the ACME account key in
//! SoftHSM2 (part of tests/pkcs11.rs).

use super::*;

/// Pebble's ports for these tests (tests/acme_pebble.rs uses the defaults).
const PORTS: common::Ports = common::Ports {
    acme: 14110,
    management: 15110,
    dns: 8153,
    challtestsrv: 8155,
    http01: 5080,
    tls_alpn: 5443,
};

/// The token object a set's `key.uri` names, and that object's public key (DER SPKI) as
/// pkcs11-tool reads it from the token.
fn token_key_of(h: &Hsm, live: &Path) -> (String, Vec<u8>) {
    let uri = std::fs::read_to_string(live.join("key.uri")).unwrap();
    let uri = gatecert::crypto::KeyUri::parse(uri.trim()).unwrap();
    assert_eq!(uri.pin, gatecert::crypto::Pin::None, "a PIN in key.uri");
    let spki = h.token.public_key_der(&uri.object);
    (uri.object, spki)
}

/// `gatecert renew` against Pebble with the certificate's key in the token: a fresh key per
/// renewal, made in the token; the certificate carries the token key; the replaced key object
/// is removed once the new set is live and the deploy hook succeeded, and kept when the hook
/// fails and the previous set is restored; `reuse_key` reuses the live key; a kill -9 between
/// "new set live" and "old object removed" leaves a usable set. The ACME account key is in
/// the token too (`account_key_uri`, made there at the first run, every request signed there):
/// no private key file anywhere in the state dir. Then a P-384 account key made with
/// pkcs11-tool (JWS ES384) and a P-384 certificate key, and a wrong PIN for the account key.
#[test]
fn renew_against_pebble_with_the_certificate_key_in_softhsm() {
    let h = Hsm::new("renew");
    let p = common::Pebble::start_with(PORTS, "pebble-p11");
    let conf = h.path("renew.uci");
    let listen = format!("127.0.0.1:{}", PORTS.http01);
    let write_conf = |hook: &str| {
        let extra = format!(
            "\toption key_uri '{}'\n\toption account_key_uri '{}'\n\toption deploy_hook '{hook}'\n",
            h.uri("gw"),
            h.uri("acme"),
        );
        let text = common::acme_conf(&h.state(), &p, "gw1.example.com", &listen, &extra);
        std::fs::write(&conf, text).unwrap();
    };
    write_conf("true");
    let live = h.state().join("certs/gw/live");
    let out = h.gatecert(&conf, &["renew", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains(PIN));
    assert!(live.join("key.uri").exists() && !live.join("key.pem").exists());
    assert!(!live.join("combined.pem").exists());
    // The account key was made in the token; the account records it (without the PIN).
    assert!(
        text(&out).contains("gw: account key: ec256 key \"acme\" in token \"gw\""),
        "{}",
        text(&out)
    );
    assert!(
        h.objects().contains("label:      acme\n"),
        "{}",
        h.objects()
    );
    let accounts: Vec<PathBuf> = std::fs::read_dir(h.state().join("accounts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert!(!accounts[0].join("key.pem").exists());
    let account_of = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(accounts[0].join("account.json")).unwrap())
            .unwrap()
    };
    let account = account_of();
    assert!(
        account["key_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("pkcs11:token=gw;object=acme") && !u.contains(PIN)),
        "{account}"
    );
    let root = p.root();
    let verify = |live: &Path| {
        let out = openssl(&[
            "verify",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            live.join("chain.pem").to_str().unwrap(),
            live.join("cert.pem").to_str().unwrap(),
        ]);
        assert!(text(&out).contains(": OK"), "{}", text(&out));
    };
    verify(&live);
    let (first, spki) = token_key_of(&h, &live);
    assert!(first.starts_with("gw."), "{first}");
    let cert = gatecert::crypto::CertInfo::from_pem(
        &std::fs::read_to_string(live.join("cert.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        cert.spki_der, spki,
        "the certificate's key is not the token's"
    );

    // A forced renewal: a fresh key in the token, the old object removed.
    let out = h.gatecert(&conf, &["renew", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    verify(&live);
    let (second, _) = token_key_of(&h, &live);
    assert_ne!(second, first);
    let objects = h.objects();
    assert!(
        !objects.contains(&format!("label:      {first}\n")),
        "{objects}"
    );
    assert!(
        objects.contains(&format!("label:      {second}\n")),
        "{objects}"
    );

    // A failing deploy hook: the previous set comes back, and its key object stays.
    write_conf("false");
    let out = h.gatecert(&conf, &["renew", "--force"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let (restored, _) = token_key_of(&h, &live);
    assert_eq!(restored, second);
    verify(&live);

    // reuse_key: the live set's key object signs the next order's CSR again.
    rewrite(
        &conf,
        &conf,
        "\toption deploy_hook 'false'\n",
        "\toption deploy_hook 'true'\n\toption reuse_key '1'\n",
    );
    let serial = std::fs::read_to_string(live.join("cert.pem")).unwrap();
    let out = h.gatecert(&conf, &["renew", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_ne!(
        std::fs::read_to_string(live.join("cert.pem")).unwrap(),
        serial
    );
    let (reused, _) = token_key_of(&h, &live);
    assert_eq!(reused, second);
    verify(&live);

    // kill -9 between "the new set is live" and "the old key object is removed": the deploy
    // hook SIGKILLs gatecert. The new set is live and usable (its key is in the token), the
    // old object is left, and the next renewal goes through.
    rewrite(
        &conf,
        &conf,
        "\toption deploy_hook 'true'\n\toption reuse_key '1'\n",
        "\toption deploy_hook 'kill -9 $PPID'\n",
    );
    let out = h.gatecert(&conf, &["renew", "--force"]);
    assert_eq!(out.status.code(), None, "not killed: {}", text(&out));
    let (crashed, spki) = token_key_of(&h, &live);
    assert_ne!(crashed, second);
    verify(&live);
    let cert = gatecert::crypto::CertInfo::from_pem(
        &std::fs::read_to_string(live.join("cert.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(cert.spki_der, spki);
    assert!(h.objects().contains(&format!("label:      {second}\n")));
    write_conf("true");
    let out = h.gatecert(&conf, &["renew", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    verify(&live);
    let objects = h.objects();
    assert!(
        !objects.contains(&format!("label:      {crashed}\n")),
        "{objects}"
    );

    // The same account all along (the token key signed every request), and `check` finds it.
    assert_eq!(account_of()["url"], account["url"]);
    let shown = text(&h.gatecert(&conf, &["check"]));
    assert!(
        shown.contains("ok   pkcs11 account key gw: module /usr/lib/softhsm/libsofthsm2.so")
            && shown.contains("key \"acme\" (ec256, non-extractable)"),
        "{shown}"
    );
    // No private key anywhere in the state dir, the accounts included.
    let certs = assert_no_private_key_file(&h.state(), &[]);
    assert!(certs >= 4, "only {certs} certificates in the state dir");

    // The account key object removed: `check` says so; the next renewal makes a new key in the
    // token and registers a new account for it rather than signing for the old one.
    h.delete_key("acme");
    let shown = text(&h.gatecert(&conf, &["check"]));
    assert!(
        shown.contains("FAIL pkcs11 account key gw:")
            && shown.contains("no key labelled \"acme\" (removed from the token?)"),
        "{shown}"
    );
    let out = h.gatecert(&conf, &["renew", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    verify(&live);
    assert_ne!(account_of()["url"], account["url"]);
    assert!(h.objects().contains("label:      acme\n"));
    // `account rollover` replaces key.pem only: refused for a token key, with the reason.
    let out = h.gatecert(&conf, &["account", "rollover"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("the account key is in a PKCS#11 token"),
        "{}",
        text(&out)
    );

    // P-384: an account key the operator made with pkcs11-tool (JWS ES384) and a P-384
    // certificate key made by gatecert, in a token and state dir of their own.
    let h = Hsm::new("renew384");
    h.tool(Command::new("pkcs11-tool").args([
        "--module",
        MODULE,
        "--login",
        "--pin",
        PIN,
        "--keypairgen",
        "--key-type",
        "EC:secp384r1",
        "--label",
        "acme384",
    ]));
    let conf = h.path("renew384.uci");
    let extra = format!(
        "\toption key_type 'ec384'\n\toption key_uri '{}'\n\toption account_key_uri '{}'\n",
        h.uri("gw"),
        h.uri("acme384"),
    );
    let config = common::acme_conf(&h.state(), &p, "gw384.example.com", &listen, &extra);
    std::fs::write(&conf, config).unwrap();
    let out = h.gatecert(&conf, &["renew", "-v"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("gw: account key: ec384 key \"acme384\" in token \"gw\""),
        "{}",
        text(&out)
    );
    let live = h.state().join("certs/gw/live");
    verify(&live);
    let cert = gatecert::crypto::CertInfo::from_pem(
        &std::fs::read_to_string(live.join("cert.pem")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        gatecert::crypto::key_strength(&cert.spki_der).unwrap(),
        gatecert::crypto::KeyStrength::P384
    );
    // pkcs11-tool cannot export a P-384 public key; its listing shows the point.
    let uri = std::fs::read_to_string(live.join("key.uri")).unwrap();
    let object = gatecert::crypto::KeyUri::parse(uri.trim()).unwrap().object;
    let point = h
        .token
        .public_point(&object)
        .expect("no such public key object");
    assert_eq!(point.len(), 97, "{object}: {point:?}");
    assert!(
        cert.spki_der.ends_with(&point),
        "the certificate's key is not {object}"
    );
    assert_no_private_key_file(&h.state(), &[]);

    // A wrong PIN: the renewal fails naming the account key's object, `check` says why, and
    // the live set stays.
    let before = std::fs::read_to_string(live.join("cert.pem")).unwrap();
    std::fs::write(h.path("pin"), "wrongQ9x\n").unwrap();
    let out = h.gatecert(&conf, &["renew", "--force"]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("object=acme384"), "{shown}");
    assert!(shown.contains("refused the PIN (wrong PIN)"), "{shown}");
    assert!(!shown.contains("wrongQ9x"), "{shown}");
    let shown = text(&h.gatecert(&conf, &["check"]));
    assert!(
        shown.contains("FAIL pkcs11 account key gw:") && shown.contains("wrong PIN"),
        "{shown}"
    );
    assert_eq!(
        std::fs::read_to_string(live.join("cert.pem")).unwrap(),
        before
    );
}
