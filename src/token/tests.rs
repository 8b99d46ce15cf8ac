use super::*;

const NOW: i64 = 1_795_867_200;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gatecert-tok-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("tokens.jnl")
}

fn names() -> Vec<String> {
    vec!["s1.sensors.local".to_string()]
}

#[test]
fn lifecycle_and_denials() {
    let path = tmp("life");
    let mut t = Tokens::open(&path).unwrap();
    let tok = t.add("s1", &names(), 3600, 2, NOW).unwrap();
    assert_eq!(crypto::b64url_decode(&tok).unwrap().len(), 32);

    let g = t.check("s1", &tok, NOW).unwrap();
    assert_eq!(g.names, names());
    assert_eq!(t.check("s2", &tok, NOW), Err(Denial::UnknownDevice));
    assert_eq!(t.check("s1", "wrong", NOW), Err(Denial::BadToken));
    assert_eq!(t.check("s1", &tok, NOW + 3600), Err(Denial::Expired));

    // Persisted and reopened: uses go down to zero, then Exhausted.
    let mut claims = Claims::new();
    spend(&mut t, &mut claims, "s1", &tok, "k1");
    let mut t = Tokens::open(&path).unwrap();
    assert_eq!(t.list().unwrap()[0].uses_left, 1);
    assert!(t.check("s1", &tok, NOW).is_ok());
    spend(&mut t, &mut claims, "s1", &tok, "k2");
    assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Exhausted));
    assert!(claims.is_empty());

    assert!(t.revoke("s1").unwrap());
    assert!(!t.revoke("nobody").unwrap());
    assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Revoked));
    assert!(t.list().unwrap()[0].revoked);
}

/// Claims and commits one use.
fn spend(t: &mut Tokens, claims: &mut Claims, device: &str, tok: &str, key: &str) {
    let (id, _) = t.claim(claims, device, tok, key, NOW).unwrap();
    let c = claims.take(id).unwrap();
    t.commit(&c, NOW).unwrap();
}

/// A one-use token: the first claim holds the use, so a second enrollment is refused before
/// it starts; a released claim frees it again; a commit re-checks revocation and
/// replacement, and a claim continued after a 202 is the same use.
#[test]
fn claims_hold_uses_until_committed_or_released() {
    let path = tmp("claims");
    let mut t = Tokens::open(&path).unwrap();
    let tok = t.add("d", &names(), 2 * RETRY_HOLD as u64, 1, NOW).unwrap();
    let mut claims = Claims::new();
    let (a, _) = t.claim(&mut claims, "d", &tok, "ka", NOW).unwrap();
    assert_eq!(
        t.claim(&mut claims, "d", &tok, "kb", NOW),
        Err(Denial::InUse)
    );
    // Same key, claim not waiting for a retry: still a second enrollment.
    assert_eq!(
        t.claim(&mut claims, "d", &tok, "ka", NOW),
        Err(Denial::InUse)
    );
    // Released: free again, nothing was written.
    assert!(claims.take(a).is_some());
    assert_eq!(Tokens::open(&path).unwrap().list().unwrap()[0].uses_left, 1);
    let (b, _) = t.claim(&mut claims, "d", &tok, "kb", NOW).unwrap();

    // 202: the claim waits for the retry of the same key, which continues it.
    claims.hold_for_retry(b, NOW);
    assert_eq!(
        t.claim(&mut claims, "d", &tok, "kc", NOW),
        Err(Denial::InUse)
    );
    let (b2, _) = t.claim(&mut claims, "d", &tok, "kb", NOW + 10).unwrap();
    assert_eq!(b, b2);
    assert_eq!(claims.len(), 1);
    // A retry that never comes frees the use after RETRY_HOLD.
    claims.hold_for_retry(b, NOW);
    let (c, _) = t
        .claim(&mut claims, "d", &tok, "kc", NOW + RETRY_HOLD)
        .unwrap();
    assert!(claims.get(b).is_none());

    // Revoked while claimed: the commit refuses and writes nothing.
    let claim = claims.take(c).unwrap();
    let mut locked = Tokens::open_locked(&path).unwrap();
    locked.revoke("d").unwrap();
    assert!(matches!(
        locked.commit(&claim, NOW),
        Err(Error::Denied(Denial::Revoked))
    ));
    assert_eq!(locked.list().unwrap()[0].uses_left, 1);

    // Replaced while claimed: the commit refuses, and the stale claim holds no use of the
    // new token.
    let tok2 = locked.add("d", &names(), 3600, 1, NOW).unwrap();
    let t2 = Tokens::open(&path).unwrap();
    assert_eq!(
        t2.claim(&mut claims, "d", &tok, "kd", NOW),
        Err(Denial::BadToken)
    );
    let (e, _) = t2.claim(&mut claims, "d", &tok2, "ke", NOW).unwrap();
    let stale = claim;
    assert!(matches!(
        locked.commit(&stale, NOW),
        Err(Error::Denied(Denial::Replaced))
    ));
    let claim = claims.take(e).unwrap();
    locked.commit(&claim, NOW).unwrap();
    assert_eq!(locked.list().unwrap()[0].uses_left, 0);
    // Expired between claim and commit.
    let tok3 = locked.add("d", &names(), 60, 1, NOW).unwrap();
    let (f, _) = locked.claim(&mut claims, "d", &tok3, "kf", NOW).unwrap();
    let claim = claims.take(f).unwrap();
    assert!(matches!(
        locked.commit(&claim, NOW + 60),
        Err(Error::Denied(Denial::Expired))
    ));
}

/// A lock held by another process (a stuck `gatecert token add`): the bounded open gives up
/// with Busy instead of waiting.
#[test]
fn bounded_lock_gives_up_when_held() {
    let path = tmp("busy");
    let held = Tokens::open_locked(&path).unwrap();
    let t = std::time::Instant::now();
    let err = Tokens::open_locked_within(&path, Duration::from_millis(30)).unwrap_err();
    assert!(matches!(err, Error::Busy(_)), "{err}");
    assert!(err.to_string().contains("tokens.jnl.lock"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(held);
    assert!(Tokens::open_locked_within(&path, Duration::from_millis(30)).is_ok());
}

#[test]
fn a_token_for_one_device_does_not_open_another() {
    let path = tmp("cross");
    let mut t = Tokens::open(&path).unwrap();
    let a = t.add("a", &names(), 3600, 1, NOW).unwrap();
    let b = t.add("b", &names(), 3600, 1, NOW).unwrap();
    assert_eq!(t.check("b", &a, NOW), Err(Denial::BadToken));
    assert_eq!(t.check("a", &b, NOW), Err(Denial::BadToken));
    // Re-adding replaces: the old token stops working.
    let a2 = t.add("a", &names(), 3600, 1, NOW).unwrap();
    assert_eq!(t.check("a", &a, NOW), Err(Denial::BadToken));
    assert!(t.check("a", &a2, NOW).is_ok());
}

/// A `tokens.json` of an earlier version is migrated into the journal on first open, once;
/// its tokens keep working and it is gone.
#[test]
fn a_legacy_tokens_json_is_migrated_on_first_open() {
    let path = tmp("migrate");
    let legacy = path.with_extension("json");
    // Make entries the way the earlier version stored them.
    let mut made = Tokens::open(&path).unwrap();
    let a = made.add("a", &names(), 3600, 2, NOW).unwrap();
    let b = made.add("b", &names(), 3600, 1, NOW).unwrap();
    let tokens: Vec<Entry> = made.journal.read_range("").map(|r| r.unwrap().1).collect();
    let json = serde_json::json!({"version": 1, "tokens": tokens});
    std::fs::write(&legacy, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    drop(made);
    std::fs::remove_file(&path).unwrap();
    let t = Tokens::open(&path).unwrap();
    assert!(!legacy.exists() && path.exists());
    assert!(t.check("a", &a, NOW).is_ok() && t.check("b", &b, NOW).is_ok());
    assert_eq!(t.list().unwrap().len(), 2);
    // A broken legacy file is an error naming it, and nothing is written.
    let path = tmp("migrate-bad");
    std::fs::write(path.with_extension("json"), "{nope").unwrap();
    let err = Tokens::open(&path).unwrap_err();
    let chain = crate::errchain::one_line(&err);
    assert!(
        chain.contains("tokens.json") && chain.contains("not a token file"),
        "{chain}"
    );
    assert!(!path.exists());
}

/// Issue 13: the store keeps no token in memory, only where its record is and a summary;
/// every answer is read back from the file and agrees with what was written.
#[test]
fn values_are_read_back_not_kept() {
    let path = tmp("lazy");
    let mut t = Tokens::open_locked(&path).unwrap();
    let tok = t.add("s1", &names(), 3600, 2, NOW).unwrap();
    t.add("s2", &names(), 3600, 1, NOW).unwrap();
    drop(t);
    let t = Tokens::open(&path).unwrap();
    assert!(t.journal.get("s1").is_none() && t.journal.iter().next().is_none());
    assert!(t.journal.contains("s1") && t.journal.contains("s2"));
    let g = t.check("s1", &tok, NOW).unwrap();
    assert_eq!((g.device.as_str(), g.names), ("s1", names()));
    assert_eq!(t.check("s2", &tok, NOW), Err(Denial::BadToken));
    let list = t.list().unwrap();
    assert_eq!(
        list.iter()
            .map(|i| (i.device.as_str(), i.uses_left))
            .collect::<Vec<_>>(),
        [("s1", 2), ("s2", 1)]
    );
}

/// A service's store sees what another process appends (a new token, a revocation) and,
/// after that process compacted the journal, still reads its records right, then the new
/// file.
#[test]
fn another_process_append_and_compaction_are_seen() {
    let path = tmp("other");
    let mut cli = Tokens::open_locked(&path).unwrap();
    let a = cli.add("a", &names(), 3600, 1, NOW).unwrap();
    cli.unlock().unwrap();
    let mut svc = Tokens::open(&path).unwrap();
    assert!(svc.check("a", &a, NOW).is_ok());
    cli.lock_within(Duration::from_secs(5)).unwrap();
    let b = cli.add("b", &names(), 3600, 1, NOW).unwrap();
    cli.revoke("a").unwrap();
    cli.unlock().unwrap();
    svc.refresh().unwrap();
    assert_eq!(svc.check("a", &a, NOW), Err(Denial::Revoked));
    assert!(svc.check("b", &b, NOW).is_ok());
    // Enough used-up tokens for a compaction, which prunes them and moves the records.
    cli.lock_within(Duration::from_secs(5)).unwrap();
    let mut claims = Claims::new();
    let mut i = 0;
    let before = std::fs::metadata(&path).unwrap();
    loop {
        let dev = format!("x{i}");
        let tok = cli.add(&dev, &names(), 3600, 1, NOW).unwrap();
        let (id, _) = cli.claim(&mut claims, &dev, &tok, "k", NOW).unwrap();
        cli.commit(&claims.take(id).unwrap(), NOW).unwrap();
        i += 1;
        cli.maintain(NOW).unwrap();
        use std::os::unix::fs::MetadataExt as _;
        if std::fs::metadata(&path).unwrap().ino() != before.ino() {
            break;
        }
    }
    cli.unlock().unwrap();
    // Not refreshed yet: the old file, still open, answers.
    assert!(svc.check("b", &b, NOW).is_ok());
    svc.refresh().unwrap();
    assert!(svc.check("b", &b, NOW).is_ok());
    assert_eq!(svc.check("a", &a, NOW), Err(Denial::Revoked));
    assert_eq!(svc.check("x0", "x", NOW), Err(Denial::UnknownDevice));
    assert_eq!(svc.counts(NOW).active, 1);
}

/// `status`'s counts, made from what is kept in memory, agree with the records read back.
#[test]
fn counts_agree_with_the_records() {
    let path = tmp("counts");
    let mut t = Tokens::open_locked(&path).unwrap();
    let mut claims = Claims::new();
    for i in 0..40 {
        let dev = format!("d{i:02}");
        let tok = t.add(&dev, &names(), 60 + 60 * (i % 3), 1, NOW).unwrap();
        if i % 4 == 0 {
            let (id, _) = t.claim(&mut claims, &dev, &tok, "k", NOW).unwrap();
            t.commit(&claims.take(id).unwrap(), NOW).unwrap();
        }
        if i % 5 == 0 {
            t.revoke(&dev).unwrap();
        }
    }
    drop(t);
    let t = Tokens::open(&path).unwrap();
    for now in [NOW, NOW + 60, NOW + 120, NOW + 180] {
        let mut want = Counts::default();
        for i in t.list().unwrap() {
            match crate::admin::token_state(i.revoked, i.expires, i.uses_left, now) {
                "revoked" => want.revoked += 1,
                "expired" => want.expired += 1,
                "exhausted" => want.exhausted += 1,
                _ => want.active += 1,
            }
        }
        assert_eq!(t.counts(now), want, "at {now}");
    }
    assert_eq!(t.counts(NOW).revoked, 8);
    assert_eq!(t.counts(NOW + 180).active, 0);
}

/// `token add` appends without reading the journal: what the service keeps open sees the
/// new tokens (an EAB kid through its index); a journal with a torn tail, or none yet, is
/// opened instead (the tail cut, the file created 0600).
#[test]
fn tokens_added_at_the_tail_are_seen_by_the_kept_store() {
    use std::os::unix::fs::PermissionsExt as _;
    let path = tmp("tail");
    let mac = |kid: &str| format!("mac-{kid}");
    let (none, t1) = add_to(&path, "s1", &names(), 3600, 1, NOW, None).unwrap();
    assert!(none.is_none());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let svc = Tokens::open(&path).unwrap();
    assert!(svc.check("s1", &t1, NOW).is_ok());
    drop(svc);
    let before = std::fs::metadata(&path).unwrap().len();
    let (kid, t2) = add_to(&path, "e1", &names(), 3600, 1, NOW, Some(&mac)).unwrap();
    let kid = kid.unwrap();
    assert_eq!(t2, format!("mac-{kid}"));
    let (_, t3) = add_to(&path, "s1", &names(), 3600, 2, NOW, None).unwrap();
    let svc = Tokens::open(&path).unwrap();
    assert_eq!(svc.device_of_eab_kid(&kid).unwrap().as_deref(), Some("e1"));
    assert_eq!(svc.check("s1", &t1, NOW), Err(Denial::BadToken));
    assert!(svc.check("s1", &t3, NOW).is_ok());
    let file = std::fs::read(&path).unwrap();
    assert!(!file.windows(t3.len()).any(|w| w == t3.as_bytes()));
    drop(svc);
    // A torn tail: the store is opened, the tail cut, the token appended after.
    let whole = std::fs::read(&path).unwrap();
    assert!(whole.len() as u64 > before);
    std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
    let (_, t4) = add_to(&path, "s4", &names(), 3600, 1, NOW, None).unwrap();
    let t = Tokens::open(&path).unwrap();
    assert!(t.check("s4", &t4, NOW).is_ok());
    assert!(
        t.check("s1", &t1, NOW).is_ok(),
        "the torn last record (s1 again) is gone"
    );
    assert_eq!(t.device_of_eab_kid(&kid).unwrap().as_deref(), Some("e1"));
}

/// The EAB key id index: each kid leads to its device; a replaced token's kid to none.
#[test]
fn eab_kids_are_found_through_the_index() {
    let path = tmp("kids");
    let mut t = Tokens::open_locked(&path).unwrap();
    let mac = |kid: &str| format!("mac-{kid}");
    let (k1, _) = t.add_eab("e1", &names(), 3600, 1, NOW, &mac).unwrap();
    let (k2, _) = t.add_eab("e2", &names(), 3600, 1, NOW, &mac).unwrap();
    t.add("plain", &names(), 3600, 1, NOW).unwrap();
    drop(t);
    let t = Tokens::open(&path).unwrap();
    assert_eq!(t.device_of_eab_kid(&k1).unwrap().as_deref(), Some("e1"));
    assert_eq!(t.device_of_eab_kid(&k2).unwrap().as_deref(), Some("e2"));
    assert_eq!(t.device_of_eab_kid("00").unwrap(), None);
    drop(t);
    let mut t = Tokens::open_locked(&path).unwrap();
    let (k3, _) = t.add_eab("e1", &names(), 3600, 1, NOW, &mac).unwrap();
    assert_eq!(t.device_of_eab_kid(&k1).unwrap(), None);
    assert_eq!(t.device_of_eab_kid(&k3).unwrap().as_deref(), Some("e1"));
    assert_eq!(t.eab_grant("e1", &k1), Err(Denial::Replaced));
    assert_eq!(t.eab_grant("e1", &k3).unwrap().names, names());
}

/// A record damaged after it was indexed is never read as something else: the device is
/// refused as Unreadable (no use can be claimed or spent), `list` fails naming the file, and
/// the other tokens keep working.
#[test]
fn a_record_that_cannot_be_read_back_fails_closed() {
    use std::os::unix::fs::FileExt as _;
    let path = tmp("damaged");
    let mut t = Tokens::open_locked(&path).unwrap();
    let tok = t.add("s1", &names(), 3600, 2, NOW).unwrap();
    let other = t.add("s2", &names(), 3600, 1, NOW).unwrap();
    t.unlock().unwrap();
    let mut claims = Claims::new();
    let (id, _) = t.claim(&mut claims, "s1", &tok, "k", NOW).unwrap();
    let claim = claims.take(id).unwrap();
    // Damage s1's record in place (same size, same file): its crc no longer matches.
    let bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"\"s1\"").unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(b"\"s9\"", at as u64).unwrap();
    assert_eq!(t.check("s1", &tok, NOW), Err(Denial::Unreadable));
    assert_eq!(
        t.claim(&mut claims, "s1", &tok, "k2", NOW),
        Err(Denial::Unreadable)
    );
    assert_eq!(t.eab_grant("s1", "kid"), Err(Denial::Unreadable));
    assert!(matches!(t.commit(&claim, NOW), Err(Error::Store(_))));
    let err = crate::errchain::one_line(&t.list().unwrap_err());
    assert!(err.contains("tokens.jnl") && err.contains("crc"), "{err}");
    assert!(!err.contains(&tok));
    assert!(t.check("s2", &other, NOW).is_ok());
}

/// Used-up and expired tokens are pruned when the journal is compacted; the rest survive.
#[test]
fn compaction_prunes_used_up_and_expired_tokens() {
    let path = tmp("prune");
    let mut t = Tokens::open_locked(&path).unwrap();
    let keep = t.add("keep", &names(), 7200, 1, NOW).unwrap();
    t.add("old", &names(), 60, 1, NOW).unwrap();
    // An ACME token stays, expired or used, until it is revoked.
    let mac = |kid: &str| format!("mac-{kid}");
    let (kid, _) = t.add_eab("eab", &names(), 60, 1, NOW, &mac).unwrap();
    t.add_eab("eab-revoked", &names(), 60, 1, NOW, &mac)
        .unwrap();
    t.revoke("eab-revoked").unwrap();
    let mut claims = Claims::new();
    let mut i = 0;
    let prunable = |_: &str, m: Meta| {
        (m.has(Meta::USES) && !m.expired(NOW + 120)) || (m.has(Meta::EAB) && !m.has(Meta::REVOKED))
    };
    while !t.journal.wants_compaction_by(prunable) {
        let dev = format!("d{i}");
        let tok = t.add(&dev, &names(), 3600, 1, NOW).unwrap();
        let (id, _) = t.claim(&mut claims, &dev, &tok, "k", NOW).unwrap();
        let c = claims.take(id).unwrap();
        t.commit(&c, NOW).unwrap();
        i += 1;
    }
    t.maintain(NOW + 120).unwrap();
    let left: Vec<String> = t.list().unwrap().into_iter().map(|i| i.device).collect();
    assert_eq!(left, ["eab", "keep"]);
    let again = Tokens::open(&path).unwrap();
    assert!(again.check("keep", &keep, NOW + 120).is_ok());
    assert_eq!(
        again.device_of_eab_kid(&kid).unwrap().as_deref(),
        Some("eab")
    );
}

#[test]
fn file_is_0600_and_never_holds_the_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let path = tmp("secret");
    let mut t = Tokens::open(&path).unwrap();
    let tok = t.add("s1", &names(), 3600, 1, NOW).unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(text.contains("\"s1\"") && !text.contains(&tok));
    let raw_hex = crypto::hex(&crypto::b64url_decode(&tok).unwrap());
    assert!(!text.contains(&raw_hex));
    assert!(!text.contains(&crypto::hex(&crypto::sha256(tok.as_bytes()))));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let listed = format!("{:?}", t.list().unwrap());
    assert!(!listed.contains(&tok) && !listed.contains("hash"));
}

#[test]
fn bad_arguments_are_refused() {
    let mut t = Tokens::open(&tmp("bad")).unwrap();
    assert!(matches!(
        t.add("", &names(), 1, 1, NOW),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        t.add("d", &names(), 1, 0, NOW),
        Err(Error::Invalid(_))
    ));
    assert!(matches!(t.add("d", &[], 1, 1, NOW), Err(Error::Invalid(_))));
    // HTTP Basic splits at the first ':' (RFC 7617): such a device could never log in.
    let e = t.add("a:b", &names(), 1, 1, NOW).unwrap_err();
    assert!(
        e.to_string().contains("\"a:b\"") && e.to_string().contains("':'"),
        "{e}"
    );
}

#[test]
fn durations() {
    for (s, want) in [
        ("90", Some(90)),
        ("90s", Some(90)),
        ("30m", Some(1800)),
        ("24h", Some(86_400)),
        ("7d", Some(604_800)),
        ("2w", Some(1_209_600)),
        ("7x", None),
        ("", None),
        ("h", None),
    ] {
        assert_eq!(parse_duration(s), want, "{s}");
    }
}

/// Two writers on one store: the lock makes the second wait, so neither update is lost.
#[test]
fn locked_writers_do_not_lose_updates() {
    let path = tmp("locked");
    let mut a = Tokens::open_locked(&path).unwrap();
    a.add("a", &["a.local".into()], 600, 1, 1_800_000_000)
        .unwrap();
    let p2 = path.clone();
    let writer = std::thread::spawn(move || {
        let mut b = Tokens::open_locked(&p2).unwrap(); // waits for `a`
        b.add("b", &["b.local".into()], 600, 1, 1_800_000_000)
            .unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    a.revoke("a").unwrap();
    drop(a);
    writer.join().unwrap();
    let t = Tokens::open(&path).unwrap();
    let list = t.list().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().find(|i| i.device == "a").unwrap().revoked);
}

/// Issue 13: spending a use appends one record to the token store in place (same inode),
/// however many tokens it holds; it never rewrites the whole file.
#[test]
fn spending_a_use_appends_instead_of_rewriting() {
    use std::os::unix::fs::MetadataExt as _;
    let path = tmp("append");
    let mut t = Tokens::open_locked(&path).unwrap();
    for i in 0..500 {
        t.add(&format!("d{i}"), &names(), 3600, 1, NOW).unwrap();
    }
    let tok = t.add("s1", &names(), 3600, 1, NOW).unwrap();
    let mut claims = Claims::new();
    let (id, _) = t.claim(&mut claims, "s1", &tok, "k", NOW).unwrap();
    let claim = claims.take(id).unwrap();
    let before = std::fs::metadata(&path).unwrap();
    t.commit(&claim, NOW).unwrap();
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(before.ino(), after.ino(), "the token store was rewritten");
    assert!(after.len() > before.len() && after.len() - before.len() < 512);
    drop(t);
    assert_eq!(
        Tokens::open(&path).unwrap().check("s1", &tok, NOW),
        Err(Denial::Exhausted)
    );
}
