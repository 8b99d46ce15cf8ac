use super::*;
use crate::ca::crl::Entry;
use crate::config;
use crate::crypto::CrlInfo;

const NOW: i64 = 1_795_867_200; // 2026-11-28T12:00:00Z

fn setup(tag: &str) -> (PathBuf, config::Ca, LocalCa) {
    let dir = std::env::temp_dir().join(format!("gatecert-rotate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = config::Config::standalone(dir.clone()).ca;
    cfg.allow_ip = vec![("192.0.2.0".parse().unwrap(), 24)];
    let ca = LocalCa::init(&dir.join("ca"), &cfg, TrustedNow::for_tests(NOW)).unwrap();
    (dir, cfg, ca)
}

fn leaf(ca: &LocalCa, at: i64) -> crate::ca::Issued {
    let names = ["a.sensors.local".to_string()];
    ca.issue_with_new_key(&names, &[], None, false, TrustedNow::for_tests(at))
        .unwrap()
        .1
}

#[test]
fn a_rotation_keeps_root_name_and_constraints_and_the_old_generation_for_verification() {
    let (dir, cfg, ca) = setup("keeps");
    let old_leaf = leaf(&ca, NOW);
    assert!(!ca.changed_on_disk());
    let at = NOW + 100;
    let staged = ca
        .stage_rotation(TrustedNow::for_tests(at), old_leaf.not_after)
        .unwrap();
    // Not live before the commit.
    let before = LocalCa::open(ca.dir(), &cfg).unwrap();
    assert_eq!(before.intermediate().der, ca.intermediate().der);
    assert!(before.previous().is_empty());
    staged.commit().unwrap();
    assert!(ca.changed_on_disk());

    let new = LocalCa::open(ca.dir(), &cfg).unwrap();
    assert_ne!(new.intermediate().der, ca.intermediate().der);
    assert_ne!(new.intermediate().spki_der, ca.intermediate().spki_der);
    assert_eq!(new.intermediate().subject, ca.intermediate().subject);
    assert_eq!(new.chain_der()[1], ca.chain_der()[1], "the same root");
    assert!(crypto::signed_by(
        &new.intermediate().der,
        &ca.chain_der()[1]
    ));
    assert_eq!(new.constraints(), ca.constraints());
    assert_eq!(new.intermediate().not_before, at - crate::ca::BACKDATE);
    assert!(!new.dir().join("next.pem").exists() && !new.dir().join("next.key").exists());

    // The old generation: kept, for verification only.
    let [g] = new.previous() else {
        panic!("{:?}", new.previous().len())
    };
    assert_eq!(g.info.der, ca.intermediate().der);
    assert_eq!(g.rotated_at, at);
    let longest = i64::try_from(cfg.max_lifetime).unwrap();
    assert_eq!(g.retire_after, at + longest + RETIRE_SLACK);
    assert!(!new.dir().join("previous").read_dir().unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "key")));
    assert!(new.issued_by_me(&old_leaf.leaf_der));
    assert!(!new.issued_by_current(&old_leaf.leaf_der));
    let aki = CertInfo::from_der(&old_leaf.leaf_der).unwrap().aki.unwrap();
    assert!(new.previous_by_aki(&aki).is_some());
    let fresh = leaf(&new, at);
    assert!(new.issued_by_current(&fresh.leaf_der));
    assert!(!crypto::signed_by(&fresh.leaf_der, &ca.intermediate().der));

    // The CRL (the documented choice): signed by the live intermediate, under the issuer name
    // both generations share, listing an old-generation serial.
    let entry = Entry {
        serial: old_leaf.serial_hex.clone(),
        revoked_at: at,
        reason: 1,
    };
    let crl = new
        .sign_crl(&[entry], 2, 3600, TrustedNow::for_tests(at))
        .unwrap();
    let info = CrlInfo::from_der(&crl.der).unwrap();
    assert_eq!(info.issuer, ca.intermediate().subject);
    assert_eq!(info.revoked[0].0, old_leaf.serial_hex);
    let (_, parsed) = x509_parser::parse_x509_crl(&crl.der).unwrap();
    let (_, int) = x509_parser::parse_x509_certificate(&new.intermediate().der).unwrap();
    assert!(parsed.verify_signature(int.public_key()).is_ok());

    // Retired from retire_after on, and then gone.
    let due = |t| new.generations_due(TrustedNow::for_tests(t)).len();
    assert_eq!(due(g.retire_after - 1), 0);
    assert_eq!(due(g.retire_after), 1);
    new.retire_generation(&g.info.serial_hex()).unwrap();
    assert!(LocalCa::open(new.dir(), &cfg)
        .unwrap()
        .previous()
        .is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_retirement_waits_for_the_last_leaf_but_not_past_the_intermediate() {
    let (dir, cfg, ca) = setup("bound");
    let late = NOW + 400 * 86_400;
    let staged = ca.stage_rotation(TrustedNow::for_tests(NOW), late).unwrap();
    assert_eq!(staged.retire_after, late);
    staged.abandon();
    let never = ca.intermediate().not_after + 86_400;
    let staged = ca
        .stage_rotation(TrustedNow::for_tests(NOW), never)
        .unwrap();
    assert_eq!(staged.retire_after, ca.intermediate().not_after);
    staged.abandon();
    assert!(LocalCa::open(ca.dir(), &cfg).unwrap().previous().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crash_between_the_renames_reads_the_new_generation_and_the_next_rotation_finishes_it() {
    let (dir, cfg, ca) = setup("crash");
    let cdir = ca.dir().to_path_buf();
    // Staged only (a crash before the first rename): the old generation stays live and whole.
    let staged = ca.stage_rotation(TrustedNow::for_tests(NOW), 0).unwrap();
    let new_der = staged.new.der.clone();
    let still = LocalCa::open(&cdir, &cfg).unwrap();
    assert_eq!(still.intermediate().der, ca.intermediate().der);
    assert!(still.previous().is_empty());
    // The key renamed, the certificate not yet.
    std::fs::rename(cdir.join("next.key"), cdir.join("intermediate.key")).unwrap();
    let half = LocalCa::open(&cdir, &cfg).unwrap();
    assert_eq!(half.intermediate().der, new_der);
    assert_eq!(half.previous().len(), 1);
    assert!(half.issued_by_current(&leaf(&half, NOW).leaf_der));
    // The next rotation completes the first before it starts.
    half.stage_rotation(TrustedNow::for_tests(NOW + 10), 0)
        .unwrap()
        .commit()
        .unwrap();
    let two = LocalCa::open(&cdir, &cfg).unwrap();
    assert_eq!(two.previous().len(), 2);
    assert_eq!(two.previous()[1].info.der, new_der);
    assert!(!cdir.join("next.pem").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rotation_is_refused_without_the_root_key_or_before_the_intermediate() {
    let (dir, _cfg, ca) = setup("refused");
    let early = ca.stage_rotation(TrustedNow::for_tests(NOW - crate::ca::BACKDATE - 1), 0);
    assert!(matches!(early, Err(Error::Clock(_))), "{early:?}");
    std::fs::remove_file(ca.dir().join("root.key")).unwrap();
    let err = ca
        .stage_rotation(TrustedNow::for_tests(NOW), 0)
        .unwrap_err();
    assert!(matches!(err, Error::RootOffline(_)), "{err:?}");
    assert!(err.to_string().contains("root.key"), "{err}");
    assert!(!ca.dir().join("next.key").exists() && !ca.dir().join("previous").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
