//! The ACME server's revocation, `replaces` and account expiry, in memory with an injected
//! clock (the helpers are the parent module's).

use super::*;

/// Orders `name` (pre-authorized) and finalizes it with a new key: the leaf's DER.
fn issue_preauthorized(srv: &mut AcmeServer, signer: &KidSigner<'_>, name: &str) -> Vec<u8> {
    let o = body(&post(srv, "new-order", signer, Some(&order(name))));
    let finalize = path_of(o["finalize"].as_str().unwrap()).to_owned();
    let csr = PrivateKey::generate(KeyType::Ec256)
        .unwrap()
        .csr(&[name.into()], &[])
        .unwrap();
    let csr = json!({"csr": crypto::b64url(&csr)});
    let o = body(&post(srv, &finalize, signer, Some(&csr)));
    let cert = post(
        srv,
        path_of(o["certificate"].as_str().unwrap()),
        signer,
        None,
    );
    let chain = crypto::certs_from_pem(&String::from_utf8(cert.body).unwrap()).unwrap();
    chain[0].as_ref().to_vec()
}

/// revokeCert takes `gatecert leaves revoke`'s path (crate::revocation): the inventory records
/// the certificate (its device stays active, a keyCompromise bans the key), one `acme.revoke`
/// line, and the CRL at `<state_dir>/crl.der` signed before the answer; on an untrusted clock
/// the revocation stands and the service's CRL refresh lists it once the clock is trusted.
#[test]
fn revoke_cert_lands_in_the_inventory_and_the_crl() {
    use crate::leaves::{self, DeviceState, Inventory};
    let (dir, mut srv, clock) = setup("revokecrl", true);
    let (key, account) = register(&mut srv, &dir, "cam", "cam.local");
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let crl_serials = || {
        let der = std::fs::read(crate::revocation::crl_path_in(&dir)).unwrap();
        crypto::CrlInfo::from_der(&der).unwrap().revoked
    };
    let good = clock.now();

    // Trusted clock: the CRL lists it when revokeCert answers.
    let first = issue_preauthorized(&mut srv, &signer, "cam.local");
    let first_info = crypto::CertInfo::from_der(&first).unwrap();
    let revoke =
        |der: &[u8], reason: u8| json!({"certificate": crypto::b64url(der), "reason": reason});
    // A stranger's key: refused, nothing recorded.
    let stranger = PrivateKey::generate(KeyType::Ec256).unwrap();
    let r = post(
        &mut srv,
        "revoke-cert",
        &JwkSigner(&stranger),
        Some(&revoke(&first, 4)),
    );
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:unauthorized");
    assert!(Inventory::open(&leaves::path_in(&dir))
        .unwrap()
        .revoked()
        .next()
        .is_none());
    let r = post(&mut srv, "revoke-cert", &signer, Some(&revoke(&first, 4)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(crl_serials(), vec![(first_info.serial_hex(), Some(4))]);
    let inv = Inventory::open(&leaves::path_in(&dir)).unwrap();
    assert_eq!(inv.by_device("cam").unwrap().state, DeviceState::Active);
    assert!(!inv.crl_pending());
    // Again: alreadyRevoked, nothing written.
    let r = post(&mut srv, "revoke-cert", &signer, Some(&revoke(&first, 4)));
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:alreadyRevoked"
    );

    // Untrusted clock (before the CA's notBefore): revoked in the inventory, no CRL signed.
    let second = issue_preauthorized(&mut srv, &signer, "cam.local");
    let second_info = crypto::CertInfo::from_der(&second).unwrap();
    clock.set(good - 2 * 86_400);
    let r = post(&mut srv, "revoke-cert", &signer, Some(&revoke(&second, 1)));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(crl_serials().len(), 1);
    let inv = Inventory::open(&leaves::path_in(&dir)).unwrap();
    assert!(inv.crl_pending());
    assert!(inv.key_compromised(&crypto::hex(&crypto::sha256(&second_info.spki_der))));
    // The clock is trusted again: the service's refresh signs the CRL with both.
    clock.set(good);
    let cfg = Config::standalone(dir.clone());
    let crl = crate::revocation::refresh_crl(
        &dir,
        &cfg.ca,
        &srv.ca,
        good,
        0,
        std::time::Duration::from_secs(1),
    )
    .unwrap();
    assert!(crl.is_some());
    let mut serials = crl_serials();
    serials.sort();
    let mut want = vec![
        (first_info.serial_hex(), Some(4)),
        (second_info.serial_hex(), Some(1)),
    ];
    want.sort();
    assert_eq!(serials, want);
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert_eq!(log.matches("\"event\":\"acme.revoke\"").count(), 2, "{log}");
    assert!(log.contains("\"reason\":\"keyCompromise\""), "{log}");
    // The periodic re-signing (nothing pending, a quarter of the validity left), then a restart
    // (the service knows no nextUpdate yet): the CRL's saved number and nextUpdate say it is
    // not due, so nothing is signed or written again.
    let validity = i64::try_from(cfg.ca.crl_validity).unwrap();
    let resign = good + validity - validity / 4 + 1;
    let refresh = |at: i64| {
        crate::revocation::refresh_crl(
            &dir,
            &cfg.ca,
            &srv.ca,
            at,
            0,
            std::time::Duration::from_secs(1),
        )
        .unwrap()
    };
    let resigned = refresh(resign).expect("re-signed a quarter before nextUpdate");
    assert!(!Inventory::open(&leaves::path_in(&dir))
        .unwrap()
        .crl_pending());
    let signed = std::fs::read_to_string(crate::audit::path_in(&dir))
        .unwrap()
        .matches("\"event\":\"crl.issue\"")
        .count();
    assert!(refresh(resign + 60).is_none());
    assert_eq!(
        Inventory::open(&leaves::path_in(&dir))
            .unwrap()
            .crl_next_update(),
        resigned.next_update
    );
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert_eq!(
        log.matches("\"event\":\"crl.issue\"").count(),
        signed,
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// newOrder's `replaces` (RFC 9773 §5): the device's current certificate may be replaced by
/// one live order (echoed in the order, its serial in the `acme.issue` line); a second order
/// for it, or for a certificate already replaced, is `alreadyReplaced` (409); a certID that is
/// not the device's is `malformed`.
#[test]
fn replaces_names_the_devices_current_certificate_once() {
    let (dir, mut srv, _) = setup("replaces", true);
    let (key, account) = register(&mut srv, &dir, "cam", "cam.local");
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let first =
        crypto::CertInfo::from_der(&issue_preauthorized(&mut srv, &signer, "cam.local")).unwrap();
    let id = crate::acme::cert_id(&first).unwrap();
    let with = |replaces: &str| {
        let mut o = order("cam.local");
        o["replaces"] = json!(replaces);
        o
    };
    let r = post(&mut srv, "new-order", &signer, Some(&with(&id)));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let o = body(&r);
    assert_eq!(o["replaces"], json!(id));
    let r = post(&mut srv, "new-order", &signer, Some(&with(&id)));
    assert_eq!(r.status, 409);
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:alreadyReplaced"
    );
    let bogus = format!("{}.AQID", id.split('.').next().unwrap());
    let r = post(&mut srv, "new-order", &signer, Some(&with(&bogus)));
    assert_eq!(body(&r)["type"], "urn:ietf:params:acme:error:malformed");
    assert!(body(&r)["detail"]
        .as_str()
        .unwrap()
        .contains("not a certificate of device cam"));
    // The first order is finalized: the replaced certificate is no longer current.
    let finalize = path_of(o["finalize"].as_str().unwrap()).to_owned();
    let csr = PrivateKey::generate(KeyType::Ec256)
        .unwrap()
        .csr(&["cam.local".into()], &[])
        .unwrap();
    let r = post(
        &mut srv,
        &finalize,
        &signer,
        Some(&json!({"csr": crypto::b64url(&csr)})),
    );
    assert_eq!(body(&r)["status"], "valid");
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert!(
        log.contains(&format!("\"replaces\":\"{}\"", first.serial_hex())),
        "{log}"
    );
    let r = post(&mut srv, "new-order", &signer, Some(&with(&id)));
    assert_eq!(r.status, 409);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `max_accounts` (4 here) bounds the accounts; once it is reached, accounts that can never
/// order again (deactivated, or their device's token revoked or replaced) expire to make room,
/// audited once; live ones never do (`rateLimited`).
#[test]
fn accounts_are_capped_and_dead_ones_expire_when_full() {
    let (dir, mut srv, _) = setup("acctcap", true);
    let mut accounts = Vec::new();
    for d in ["a", "b", "c", "d"] {
        accounts.push(register(&mut srv, &dir, d, &format!("{d}.local")));
    }
    let full = |srv: &mut AcmeServer, device: &str| {
        let key = PrivateKey::generate(KeyType::Ec256).unwrap();
        let eab = eab_for(&dir, device, &[&format!("{device}.local")]);
        new_account(srv, &JwkSigner(&key), &key.jwk(), &eab)
    };
    let r = full(&mut srv, "e");
    assert_eq!(
        (r.status, body(&r)["type"].clone()),
        (429, json!("urn:ietf:params:acme:error:rateLimited"))
    );
    // a deactivates its account; b's token is revoked.
    let (key_a, url_a) = &accounts[0];
    let signer_a = KidSigner {
        key: key_a,
        kid: url_a,
    };
    let r = post(
        &mut srv,
        path_of(url_a),
        &signer_a,
        Some(&json!({"status": "deactivated"})),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    Tokens::open_locked(&token::path_in(&dir))
        .unwrap()
        .revoke("b")
        .unwrap();
    let r = full(&mut srv, "f");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert_eq!(
        log.matches("\"event\":\"acme.accounts-expire\"").count(),
        1,
        "{log}"
    );
    // a's account is gone; c's still orders.
    let r = post(&mut srv, "new-order", &signer_a, Some(&order("a.local")));
    assert_eq!(
        body(&r)["type"],
        "urn:ietf:params:acme:error:accountDoesNotExist"
    );
    let (key_c, url_c) = &accounts[2];
    let signer_c = KidSigner {
        key: key_c,
        kid: url_c,
    };
    let r = post(&mut srv, "new-order", &signer_c, Some(&order("c.local")));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Three live accounts (c, d, f): one more fits, then the cap holds.
    assert_eq!(full(&mut srv, "g").status, 201);
    assert_eq!(full(&mut srv, "h").status, 429);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An earlier version kept revokeCert's serials in `acme/revoked.json` alone: at start they
/// move to the inventory and the CRL (audited), and the file goes.
#[test]
fn revoked_json_of_an_earlier_version_moves_to_the_crl() {
    let (dir, mut srv, clock) = setup("revokedjson", true);
    let (key, account) = register(&mut srv, &dir, "cam", "cam.local");
    let signer = KidSigner {
        key: &key,
        kid: &account,
    };
    let held = crypto::CertInfo::from_der(&issue_preauthorized(&mut srv, &signer, "cam.local"))
        .unwrap()
        .serial_hex();
    let old = eab::dir_in(&dir).join("revoked.json");
    std::fs::write(&old, serde_json::to_vec(&[&held, "0A0B0C"]).unwrap()).unwrap();
    let cfg = Config::standalone(dir.clone());
    let ca = LocalCa::open(&LocalCa::dir_in(&dir), &cfg.ca).unwrap();
    let _again = AcmeServer::new(srv.cfg.clone(), &dir, ca, cfg.ca.clone(), clock).unwrap();
    assert!(!old.exists());
    let der = std::fs::read(crate::revocation::crl_path_in(&dir)).unwrap();
    let mut listed: Vec<String> = crypto::CrlInfo::from_der(&der)
        .unwrap()
        .revoked
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    listed.sort();
    let mut want = vec![held.clone(), "0A0B0C".to_owned()];
    want.sort();
    assert_eq!(listed, want);
    let log = std::fs::read_to_string(crate::audit::path_in(&dir)).unwrap();
    assert_eq!(log.matches("acme/revoked.json").count(), 2, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
