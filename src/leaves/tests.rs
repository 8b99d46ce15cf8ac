use super::*;

fn leaf(device: &str, serial: &str, source: Source) -> Leaf {
    Leaf::new(
        device,
        vec![format!("{device}.sensors.local")],
        serial,
        2_000_000_000,
        source,
        1_900_000_000,
    )
}

#[test]
fn only_the_current_certificate_or_the_previous_in_grace_stands() {
    let dir = std::env::temp_dir().join(format!("gatecert-standing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut inv = Inventory::open(&dir.join("leaves.json")).unwrap();
    let now = 1_900_000_000;
    inv.record(leaf("d", "0A", Source::Local)).unwrap();
    assert!(matches!(inv.standing("0a", now), Standing::Current(_)));
    assert_eq!(inv.standing("0B", now), Standing::Unknown);
    // 0A re-enrolls: 0B is current, 0A has GRACE seconds.
    let mut b = leaf("d", "0B", Source::Local);
    b.previous = inv.previous_for("d", "0A", now);
    assert_eq!(b.previous.as_ref().unwrap().until, now + GRACE);
    inv.record(b).unwrap();
    assert!(matches!(inv.standing("0B", now), Standing::Current(_)));
    assert!(matches!(
        inv.standing("0A", now + GRACE - 1),
        Standing::Grace(_)
    ));
    assert!(matches!(
        inv.standing("0A", now + GRACE),
        Standing::Superseded(_)
    ));
    // 0A retries inside the window (a lost reply): 0C is current, 0A keeps its deadline.
    let mut c = leaf("d", "0C", Source::Local);
    c.previous = inv.previous_for("d", "0A", now + 60);
    assert_eq!(c.previous.as_ref().unwrap().until, now + GRACE);
    inv.record(c).unwrap();
    // 0B was replaced without ever being used: it stands nowhere any more.
    assert_eq!(inv.standing("0B", now + 60), Standing::Unknown);
    assert!(inv.previous_for("d", "0B", now + 60).is_none());
    assert!(inv.previous_for("d", "0A", now + GRACE).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn record_replaces_per_device_and_persists() {
    let dir = std::env::temp_dir().join(format!("gatecert-leaves-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("leaves.json");
    let mut inv = Inventory::open(&path).unwrap();
    assert!(inv.list().collect::<Vec<_>>().is_empty());
    inv.record(leaf("b", "01", Source::Interim)).unwrap();
    inv.record(leaf("a", "02", Source::Local)).unwrap();
    inv.record(leaf("b", "03", Source::Upstream)).unwrap();
    let inv = Inventory::open(&path).unwrap();
    assert_eq!(inv.list().collect::<Vec<_>>().len(), 2);
    assert_eq!(inv.list().collect::<Vec<_>>()[0].device, "a");
    assert_eq!(inv.by_device("b").unwrap().serial, "03");
    assert_eq!(inv.by_device("b").unwrap().source, Source::Upstream);
    assert!(inv.by_device("c").is_none());
    assert_eq!(inv.by_source(Source::Interim).count(), 0);
    std::fs::write(dir.join("leaves.jnl"), "{nope").unwrap();
    assert!(Inventory::open(&path).is_err());
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatecert-leaves-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An inventory as the code before one identity per device wrote it: `s1` (its token's name,
/// first enrollment) and `s1.sensors.local` (its CN, the re-enrollment) are one sensor.
#[test]
fn split_rows_of_an_old_inventory_merge_into_the_token_device() {
    let dir = tempdir("merge");
    let path = dir.join("leaves.json");
    std::fs::write(
        &path,
        include_str!("../../tests/fixtures/leaves-split-v1.json"),
    )
    .unwrap();
    let mut inv = Inventory::open_locked(&path, None).unwrap();
    assert_eq!(inv.merged(), 1);
    assert_eq!(
        inv.list().collect::<Vec<_>>().len(),
        2,
        "{:?}",
        inv.list().collect::<Vec<_>>()
    );
    let s1 = inv.by_device("s1").unwrap();
    // The re-enrollment is newer: it is the current certificate; the first one is earlier.
    assert_eq!(s1.serial, "6B1C7D2E3F405162738495A6B7C8D9EA");
    assert_eq!(s1.earlier.len(), 1);
    assert_eq!(s1.earlier[0].serial, "5A0B6C1D2E3F40516273849506A7B8C9");
    assert!(inv.by_device("s1.sensors.local").is_none());
    assert_eq!(inv.by_device("s2").unwrap().source, Source::Interim);
    // Both certificates lead to s1.
    assert_eq!(
        inv.device_of_serial("5a0b6c1d2e3f40516273849506a7b8c9")
            .as_deref(),
        Some("s1")
    );
    assert_eq!(
        inv.device_of_serial("6B1C7D2E3F405162738495A6B7C8D9EA")
            .as_deref(),
        Some("s1")
    );
    inv.save().unwrap();
    drop(inv);
    let again = Inventory::open(&path).unwrap();
    assert_eq!(again.merged(), 0);
    assert_eq!(again.list().collect::<Vec<_>>().len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reenrollment_updates_one_row_and_keeps_unexpired_certificates() {
    let dir = tempdir("onerow");
    let path = dir.join("leaves.json");
    let mut inv = Inventory::open(&path).unwrap();
    inv.record(leaf("d", "0A", Source::Local)).unwrap();
    let mut b = leaf("d", "0B", Source::Local);
    b.issued_at += 10;
    inv.record(b).unwrap();
    let inv = Inventory::open(&path).unwrap();
    assert_eq!(inv.list().collect::<Vec<_>>().len(), 1);
    let row = inv.by_device("d").unwrap();
    assert_eq!(row.serial, "0B");
    let serials: Vec<String> = row.certs().map(|h| h.serial).collect();
    assert_eq!(serials, ["0B", "0A"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cut_off_revokes_every_unexpired_certificate_and_blocks_the_device() {
    let dir = tempdir("cutoff");
    let path = dir.join("leaves.json");
    let now = 1_900_000_100;
    let mut inv = Inventory::open_locked(&path, None).unwrap();
    let mut a = leaf("d", "0A", Source::Local);
    a.key = Some("aa".into());
    inv.record(a).unwrap();
    let mut b = leaf("d", "0B", Source::Upstream);
    b.issued_at += 10;
    b.key = Some("bb".into());
    b.der = Some("AAAA".into());
    inv.record(b).unwrap();
    let mut expired = leaf("e", "0E", Source::Local);
    expired.not_after = now - 1;
    inv.record(expired).unwrap();
    assert!(matches!(
        inv.cut_off("nobody", DeviceState::Revoked, 0, None, now),
        Err(Error::NoSuchDevice(_))
    ));
    // By serial of an earlier certificate: the whole device.
    let cut = inv
        .cut_off("0a", DeviceState::Revoked, KEY_COMPROMISE, None, now)
        .unwrap();
    assert_eq!(cut.device, "d");
    assert_eq!(cut.revoked.len(), 2);
    assert_eq!(cut.queued_upstream, 1);
    assert!(inv.key_compromised("AA") && inv.key_compromised("bb"));
    assert!(matches!(inv.standing("0B", now), Standing::Revoked(_)));
    assert!(matches!(inv.standing("0A", now), Standing::Revoked(_)));
    // Only the local one is the CRL's.
    let crl: Vec<String> = inv.crl_entries(now).map(|r| r.serial).collect();
    assert_eq!(crl, ["0A"]);
    assert_eq!(inv.upstream_revocations().next().unwrap().serial, "0B");
    inv.upstream_revocation_result("0B", Err("connection refused".into()));
    assert_eq!(inv.upstream_revocations().next().unwrap().attempts, 1);
    inv.upstream_revocation_result("0b", Ok(()));
    assert!(inv.upstream_revocations().next().is_none());
    // Revoking again finds nothing new; an expired certificate is never listed.
    let e = inv
        .cut_off("e", DeviceState::Disabled, CESSATION, Some("stolen"), now)
        .unwrap();
    assert!(e.revoked.is_empty());
    assert!(matches!(inv.standing("0E", now), Standing::Disabled(_)));
    assert_eq!(
        inv.by_device("e").unwrap().state_reason.as_deref(),
        Some("stolen")
    );
    inv.save().unwrap();
    drop(inv);
    let mut inv = Inventory::open_locked(&path, None).unwrap();
    assert_eq!(inv.by_device("d").unwrap().state, DeviceState::Revoked);
    assert!(!inv.enable("d", now).unwrap());
    assert!(inv.enable("e", now).unwrap());
    assert_eq!(inv.by_device("e").unwrap().state, DeviceState::Revoked);
    // A new enrollment (new token) makes a revoked device active again.
    let mut c = leaf("d", "0C", Source::Local);
    c.issued_at = now + 5;
    inv.record(c).unwrap();
    assert_eq!(inv.by_device("d").unwrap().state, DeviceState::Active);
    assert!(matches!(inv.standing("0C", now + 5), Standing::Current(_)));
    assert!(inv.by_device("d").unwrap().earlier.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Devices named by their FQDN (token user = CN) are one row already and stay as they are; a
/// token-named row newer than its CN row keeps its certificate current.
#[test]
fn merge_leaves_fqdn_named_devices_alone_and_keeps_the_newer_certificate() {
    let dir = tempdir("merge2");
    let path = dir.join("leaves.json");
    let mut fqdn = leaf("f.sensors.local", "0F", Source::Local);
    fqdn.names = vec!["f.sensors.local".into()];
    let mut old_cn = leaf("g.sensors.local", "01", Source::Local);
    old_cn.names = vec!["G.sensors.local".into()];
    let mut newer = leaf("g", "02", Source::Local);
    newer.names = vec!["g.sensors.local".into()];
    newer.issued_at = old_cn.issued_at + 100;
    let text = serde_json::json!({"version": 1, "leaves": [fqdn, old_cn, newer]}).to_string();
    std::fs::write(&path, text).unwrap();
    let inv = Inventory::open(&path).unwrap();
    assert_eq!(inv.merged(), 1);
    let devices: Vec<String> = inv.list().map(|l| l.device).collect();
    assert_eq!(devices, ["f.sensors.local", "g"]);
    let g = inv.by_device("g").unwrap();
    assert_eq!(g.serial, "02");
    assert_eq!(g.earlier.len(), 1);
    assert_eq!(g.earlier[0].serial, "01");
    let _ = std::fs::remove_dir_all(&dir);
}

/// One device enrolling over and over keeps a bounded row: past MAX_EARLIER earlier
/// certificates the oldest are revoked as superseded (in the CRL, returned for the audit line),
/// so every certificate it holds is still reached by a revocation of the device, and a record
/// never outgrows the journal's record limit.
#[test]
fn a_device_holds_at_most_max_earlier_earlier_certificates() {
    let dir = tempdir("bounded");
    let path = dir.join("leaves.jnl");
    let mut inv = Inventory::open_locked(&path, None).unwrap();
    let mut superseded = Vec::new();
    let extra = 3;
    for i in 0..=(MAX_EARLIER + extra) {
        let mut l = leaf("busy", &format!("{:02X}", i + 1), Source::Local);
        l.not_after += i as i64;
        l.issued_at += i as i64;
        superseded.extend(inv.record(l).unwrap());
    }
    let row = inv.by_device("busy").unwrap();
    assert_eq!(row.earlier.len(), MAX_EARLIER);
    let gone: Vec<&str> = superseded.iter().map(|r| r.serial.as_str()).collect();
    assert_eq!(gone, ["01", "02", "03"]);
    assert!(superseded.iter().all(|r| r.reason == SUPERSEDED));
    assert!(inv.crl_pending());
    assert_eq!(inv.crl_entries(1_900_000_000).count(), extra);
    // A cut of the device reaches everything it still holds.
    let cut = inv
        .cut_off("busy", DeviceState::Revoked, 0, None, 1_900_000_100)
        .unwrap();
    assert_eq!(cut.revoked.len(), MAX_EARLIER + 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `leaves revoke` on a state directory that still has only the `leaves.json` of an earlier
/// version finds the device (the inventory exists), and its save migrates the file.
#[test]
fn a_revocation_on_an_earlier_leaves_json_migrates_it() {
    let dir = tempdir("legacy-revoke");
    let text = serde_json::json!({"version": 2, "leaves": [leaf("old", "0C", Source::Local)]});
    std::fs::write(dir.join("leaves.json"), text.to_string()).unwrap();
    assert!(exists(&path_in(&dir)));
    let ca = crate::config::Config::standalone(dir.clone()).ca;
    let out = crate::revocation::cut_off(
        &crate::revocation::Site::cli(&dir, &ca),
        "old",
        DeviceState::Revoked,
        0,
        None,
        1_900_000_100,
    )
    .unwrap();
    assert_eq!(out.cut.revoked.len(), 1);
    assert!(!dir.join("leaves.json").exists());
    let inv = Inventory::open(&path_in(&dir)).unwrap();
    assert_eq!(inv.by_device("old").unwrap().state, DeviceState::Revoked);
    assert!(inv.standing("0C", 1_900_000_100) != Standing::Unknown);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The service keeps its index between opens; a row another process appends (`ca sign`,
/// `leaves revoke`) is found by its serial at the next open, and a row it rewrites stops
/// answering for the serials it no longer holds.
#[test]
fn the_kept_index_sees_rows_another_process_appended() {
    let dir = tempdir("kept-index");
    let path = dir.join("leaves.jnl");
    let now = 1_900_000_000;
    Inventory::open(&path)
        .unwrap()
        .record(leaf("a", "0A", Source::Local))
        .unwrap();
    // Another process: the journal, under its lock, without this process's kept index.
    let mut other: Journal<Rec> = Journal::open(&path, store::PUBLIC).unwrap();
    other.lock(None).unwrap();
    other
        .put("d/b", Some(&Rec::Leaf(leaf("b", "0B", Source::Interim))))
        .unwrap();
    other
        .put("d/a", Some(&Rec::Leaf(leaf("a", "1A", Source::Local))))
        .unwrap();
    other.unlock().unwrap();
    let inv = Inventory::open(&path).unwrap();
    assert_eq!(inv.by_serial("0b").unwrap().device, "b");
    assert!(matches!(inv.standing("0B", now), Standing::Current(l) if l.device == "b"));
    assert_eq!(inv.by_serial("1A").unwrap().device, "a");
    // 0A's entry in the index is stale: the row read back does not hold it.
    assert_eq!(inv.standing("0A", now), Standing::Unknown);
    assert_eq!(inv.device_of_serial("0A"), None);
    assert_eq!(inv.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn counts_from_memory_agree_with_the_rows() {
    let dir = tempdir("counts");
    let path = dir.join("leaves.jnl");
    let now = 1_950_000_000;
    let mut inv = Inventory::open_locked(&path, None).unwrap();
    inv.record(leaf("a", "01", Source::Local)).unwrap();
    inv.record(leaf("b", "02", Source::Interim)).unwrap();
    inv.record(leaf("c", "03", Source::Upstream)).unwrap();
    let mut old = leaf("d", "04", Source::Local);
    old.not_after = now - 1;
    inv.record(old).unwrap();
    inv.cut_off("b", DeviceState::Disabled, CESSATION, None, now)
        .unwrap();
    inv.cut_off("a", DeviceState::Revoked, KEY_COMPROMISE, None, now)
        .unwrap();
    inv.save().unwrap();
    drop(inv);
    let inv = Inventory::open(&path).unwrap();
    let rows: Vec<Leaf> = inv.list().collect();
    let c = inv.counts(now);
    assert_eq!(c.total, rows.len());
    assert_eq!((c.local, c.interim, c.upstream), (2, 1, 1));
    assert_eq!(c.expired, 1);
    assert_eq!(c.disabled, ["b"]);
    assert_eq!(c.revoked, ["a"]);
    assert_eq!(
        c.revoked_certificates,
        inv.revoked().filter(|r| r.not_after > now).count()
    );
    assert_eq!(c.revoked_certificates, 2);
    assert_eq!(c.upstream_revocations_pending, 0);
    let _ = std::fs::remove_dir_all(&dir);
}
