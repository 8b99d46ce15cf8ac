use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gatecert-journal-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d.join("j.jnl")
}

fn put(j: &mut Journal<u32>, k: &str, v: Option<u32>) {
    j.lock(None).unwrap();
    j.put(k, v.as_ref()).unwrap();
    j.unlock().unwrap();
}

#[test]
fn crc32_is_the_ieee_one() {
    // The check value of CRC-32/ISO-HDLC.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn records_persist_last_wins_and_deletes() {
    let p = tmp("persist");
    let mut j: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert!(j.is_empty() && !j.exists());
    put(&mut j, "b", Some(1));
    put(&mut j, "a", Some(2));
    put(&mut j, "b", Some(3));
    put(&mut j, "a", None);
    let j2: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(j2.iter().collect::<Vec<_>>(), vec![("b", &3)]);
    assert_eq!(j.iter().collect::<Vec<_>>(), vec![("b", &3)]);
    assert!(j2.garbage() > 0);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn appending_without_the_lock_is_refused() {
    let p = tmp("nolock");
    let mut j: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert!(matches!(j.put("a", Some(&1)), Err(Error::Locked(_))));
    assert!(!p.exists());
}

#[test]
fn a_torn_tail_is_ignored_by_readers_and_cut_by_the_next_writer() {
    let p = tmp("torn");
    let mut j: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    put(&mut j, "a", Some(1));
    put(&mut j, "b", Some(2));
    let whole = fs::read(&p).unwrap();
    // Every cut inside the last record: the reader sees exactly the first one.
    let last = whole.len() - (8 + br#"{"k":"b","v":2}"#.len());
    for cut in last + 1..whole.len() {
        fs::write(&p, &whole[..cut]).unwrap();
        let r: Journal<u32> = Journal::open(&p, 0o600).unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), vec![("a", &1)], "cut {cut}");
    }
    // A whole-length last record whose payload did not reach the disk.
    let mut bad = whole.clone();
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    fs::write(&p, &bad).unwrap();
    let mut w: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(w.len(), 1);
    put(&mut w, "c", Some(4));
    let r: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(r.iter().collect::<Vec<_>>(), vec![("a", &1), ("c", &4)]);
}

#[test]
fn damage_followed_by_more_records_is_corrupt_not_skipped() {
    let p = tmp("damage");
    let mut j: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    put(&mut j, "a", Some(1));
    put(&mut j, "b", Some(2));
    let mut bad = fs::read(&p).unwrap();
    bad[MAGIC.len() + 9] ^= 0x55; // inside the first payload
    fs::write(&p, &bad).unwrap();
    let err = Journal::<u32>::open(&p, 0o600).unwrap_err();
    assert!(
        err.to_string().contains("damaged record at byte 5"),
        "{err}"
    );
    fs::write(&p, b"{\"version\":1}").unwrap();
    let err = Journal::<u32>::open(&p, 0o600).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
}

#[test]
fn refresh_catches_up_with_another_writer_and_its_compaction() {
    let p = tmp("refresh");
    let mut svc: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    let mut cli: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    put(&mut cli, "a", Some(1));
    svc.refresh().unwrap();
    assert_eq!(svc.get("a"), Some(&1));
    for i in 0..50_000u32 {
        cli.lock(None).unwrap();
        cli.put("a", Some(&i)).unwrap();
        cli.put("b", Some(&i)).unwrap();
        cli.unlock().unwrap();
        if cli.wants_compaction() {
            break;
        }
    }
    assert!(cli.wants_compaction());
    cli.lock(None).unwrap();
    cli.compact(|k, _| k != "b").unwrap();
    cli.unlock().unwrap();
    assert_eq!(cli.garbage(), 0);
    svc.refresh().unwrap();
    assert_eq!(svc.get("b"), None);
    assert_eq!(svc.get("a"), cli.get("a"));
    // The service appends after the compaction onto the new file.
    put(&mut svc, "c", Some(9));
    cli.refresh().unwrap();
    assert_eq!(cli.get("c"), Some(&9));
    assert_eq!(fs::metadata(&p).unwrap().len(), svc.len);
}

#[test]
fn a_held_lock_is_waited_for_only_as_long_as_asked() {
    let p = tmp("lockwait");
    let mut a: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    let mut b: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    a.lock(None).unwrap();
    assert!(matches!(
        b.lock(Some(Duration::from_millis(20))),
        Err(Error::Locked(_))
    ));
    a.unlock().unwrap();
    b.lock(Some(Duration::from_millis(20))).unwrap();
}

#[test]
fn unsynced_appends_are_synced_once() {
    let p = tmp("sync");
    let mut j: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    j.lock(None).unwrap();
    let before = j.syncs();
    for i in 0..10 {
        j.put(&format!("k{i}"), Some(&i)).unwrap();
    }
    j.unlock().unwrap();
    assert_eq!(j.syncs() - before, 1);
    let mut f = fs::OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(&[1, 2]).unwrap();
    assert_eq!(Journal::<u32>::open(&p, 0o600).unwrap().len(), 10);
}

/// Several changes staged before the journal file exists all land in it: creating the file at
/// the first append must not drop the rest of what was staged.
#[test]
fn changes_staged_before_the_file_exists_are_all_written() {
    let path = tmp("staged-new");
    let mut j: Journal<u32> = Journal::open(&path, 0o600).unwrap();
    j.lock(None).unwrap();
    for i in 0..50u32 {
        j.stage(&format!("k{i:02}"), Some(i)).unwrap();
    }
    j.flush().unwrap();
    j.unlock().unwrap();
    let again: Journal<u32> = Journal::open(&path, 0o600).unwrap();
    assert_eq!(again.len(), 50);
    assert_eq!(again.get("k49"), Some(&49));
    assert_eq!(again.garbage(), 0);
    let _ = fs::remove_dir_all(path.parent().unwrap());
}

/// A journal several read chunks long, with records across every chunk boundary and a torn
/// last record, reads back whole (the chunked reader neither loses nor splits a record).
#[test]
fn a_journal_larger_than_a_read_chunk_reads_back_whole() {
    let p = tmp("chunks");
    let mut j: Journal<String> = Journal::open(&p, 0o600).unwrap();
    j.lock(None).unwrap();
    let n = 3 * READ_CHUNK / 100;
    for i in 0..n {
        // Record sizes vary, so boundaries fall at every offset within a record.
        j.put(&format!("k{i:06}"), Some(&"x".repeat(i % 97)))
            .unwrap();
    }
    j.unlock().unwrap();
    let whole = fs::read(&p).unwrap();
    assert!(whole.len() > 2 * READ_CHUNK, "{}", whole.len());
    fs::write(&p, &whole[..whole.len() - 3]).unwrap();
    let r: Journal<String> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(r.len(), n - 1);
    assert_eq!(r.get("k000100").map(String::len), Some(100 % 97));
    assert!(r.get(&format!("k{:06}", n - 1)).is_none());
    let _ = fs::remove_dir_all(p.parent().unwrap());
}
