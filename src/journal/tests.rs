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
    // Slicing-by-8 agrees with the bitwise definition at every length and alignment of the tail.
    let bitwise = |data: &[u8]| {
        let mut c = !0u32;
        for b in data {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    };
    let data: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for start in 0..9 {
        for end in start..data.len() {
            assert_eq!(
                crc32(&data[start..end]),
                bitwise(&data[start..end]),
                "{start}..{end}"
            );
        }
    }
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

/// An index that keeps no value (they are read back) and remembers what it was shown.
#[derive(Debug, Default)]
struct Seen(Vec<(String, u32)>);

impl Index<u32> for Seen {
    const KEEP_VALUES: bool = false;
    type Meta = u32;
    fn meta(v: &u32) -> u32 {
        *v + 1000
    }
    fn add(&mut self, k: &Arc<str>, v: &u32) {
        self.0.push((k.to_string(), *v));
    }
    fn clear(&mut self) {
        self.0.clear();
    }
}

type Lazy = Journal<u32, Seen>;

fn put_lazy(j: &mut Lazy, k: &str, v: Option<u32>) {
    j.lock(None).unwrap();
    j.put(k, v.as_ref()).unwrap();
    j.unlock().unwrap();
}

#[test]
fn values_not_kept_are_read_back_and_seen_by_the_index_and_metas() {
    let p = tmp("lazy");
    let mut w: Lazy = Journal::open(&p, 0o600).unwrap();
    put_lazy(&mut w, "a", Some(1));
    put_lazy(&mut w, "b", Some(2));
    put_lazy(&mut w, "a", Some(3));
    // Not in memory: get sees nothing, read goes to the file.
    assert_eq!(w.get("a"), None);
    assert_eq!(w.read("a").unwrap(), Some(3));
    assert_eq!(w.read("b").unwrap(), Some(2));
    assert_eq!(w.read("c").unwrap(), None);
    assert!(w.contains("b") && !w.contains("c"));
    let metas: Vec<(String, u32)> = w.metas("").map(|(k, m)| (k.to_string(), m)).collect();
    assert_eq!(metas, [("a".to_string(), 1003), ("b".to_string(), 1002)]);
    assert_eq!(
        w.index().0,
        [("a".into(), 1), ("b".into(), 2), ("a".into(), 3)]
    );
    // Staged values are in memory, and read as such until flushed to the file.
    w.lock(None).unwrap();
    w.stage("b", Some(7)).unwrap();
    assert_eq!(w.get("b"), Some(&7));
    assert_eq!(w.read("b").unwrap(), Some(7));
    w.flush().unwrap();
    w.unlock().unwrap();
    assert_eq!(w.get("b"), None);
    assert_eq!(w.read("b").unwrap(), Some(7));
    // Another reader of the file sees the same.
    let r: Lazy = Journal::open(&p, 0o600).unwrap();
    let all: Vec<(&str, u32)> = r.read_range("").map(Result::unwrap).collect();
    assert_eq!(all, [("a", 3), ("b", 7)]);
    assert_eq!(
        r.index().0,
        [
            ("a".into(), 1),
            ("b".into(), 2),
            ("a".into(), 3),
            ("b".into(), 7)
        ]
    );
}

#[test]
fn values_read_back_follow_another_writers_appends_and_compaction() {
    let p = tmp("lazy-refresh");
    let mut svc: Lazy = Journal::open(&p, 0o600).unwrap();
    let mut cli: Lazy = Journal::open(&p, 0o600).unwrap();
    put_lazy(&mut cli, "a", Some(1));
    assert_eq!(svc.read("a").unwrap(), None);
    svc.refresh().unwrap();
    assert_eq!(svc.read("a").unwrap(), Some(1));
    assert_eq!(svc.index().0, [("a".into(), 1)]);
    for i in 0..50_000u32 {
        cli.lock(None).unwrap();
        cli.put("a", Some(&i)).unwrap();
        cli.put("b", Some(&(i + 1))).unwrap();
        cli.unlock().unwrap();
        if cli.wants_compaction() {
            break;
        }
    }
    svc.refresh().unwrap();
    let before = (svc.read("a").unwrap(), svc.read("b").unwrap());
    cli.lock(None).unwrap();
    cli.compact(|_, _| true).unwrap();
    cli.unlock().unwrap();
    assert_eq!(cli.garbage(), 0);
    assert_eq!((cli.read("a").unwrap(), cli.read("b").unwrap()), before);
    // Before it catches up, the service reads the file it indexed (still open), at the old
    // offsets; after, the compacted one at the new offsets.
    assert_eq!((svc.read("a").unwrap(), svc.read("b").unwrap()), before);
    svc.refresh().unwrap();
    assert_eq!(svc.appended(), cli.appended());
    assert_eq!((svc.read("a").unwrap(), svc.read("b").unwrap()), before);
    assert_eq!(
        svc.index().0.len(),
        2,
        "the index was rebuilt: {:?}",
        svc.index()
    );
    // The service appends onto the new file; the other writer reads it back.
    put_lazy(&mut svc, "c", Some(9));
    cli.refresh().unwrap();
    assert_eq!(cli.read("c").unwrap(), Some(9));
    assert_eq!(fs::metadata(&p).unwrap().len(), svc.len);
}

#[test]
fn a_torn_tail_and_damage_under_values_read_back() {
    let p = tmp("lazy-torn");
    let mut j: Lazy = Journal::open(&p, 0o600).unwrap();
    put_lazy(&mut j, "a", Some(1));
    put_lazy(&mut j, "b", Some(2));
    let whole = fs::read(&p).unwrap();
    fs::write(&p, &whole[..whole.len() - 3]).unwrap();
    let mut w: Lazy = Journal::open(&p, 0o600).unwrap();
    assert_eq!(w.read("a").unwrap(), Some(1));
    assert_eq!(w.read("b").unwrap(), None);
    put_lazy(&mut w, "c", Some(4));
    assert_eq!(w.read("c").unwrap(), Some(4));
    let r: Lazy = Journal::open(&p, 0o600).unwrap();
    let all: Vec<(&str, u32)> = r.read_range("").map(Result::unwrap).collect();
    assert_eq!(all, [("a", 1), ("c", 4)]);
    // A record changed in place after it was indexed: a clear error, not a wrong value.
    let mut bytes = fs::read(&p).unwrap();
    let at = MAGIC.len() + 8 + br#"{"k":"a","v":"#.len();
    bytes[at] = b'7';
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&bytes, 0).unwrap();
    match r.read("a") {
        Err(Error::Corrupt { what, .. }) => assert!(what.contains("changed"), "{what}"),
        other => panic!("{other:?}"),
    }
}

/// Pruning decided on the summaries: `compact_by` asks about every key, in memory or in the
/// file, reads no record to decide, and keeps the others' records as they were.
#[test]
fn compact_by_prunes_on_the_summaries() {
    let p = tmp("lazy-compact-by");
    let mut j: Lazy = Journal::open(&p, 0o600).unwrap();
    j.lock(None).unwrap();
    for i in 0..200u32 {
        j.put(&format!("k{i:03}"), Some(&i)).unwrap();
    }
    // Odd values (summary 1000 + v) are to go; nothing superseded yet.
    let keep = |_: &str, m: u32| m.is_multiple_of(2);
    assert!(!j.wants_compaction_by(|_, _| true));
    let mut pad = 0u32;
    while !j.wants_compaction_by(keep) {
        j.put("pad", Some(&pad)).unwrap();
        pad += 2;
    }
    j.compact_by(keep).unwrap();
    j.unlock().unwrap();
    let r: Lazy = Journal::open(&p, 0o600).unwrap();
    let all: Vec<(String, u32)> = r
        .read_range("")
        .map(|x| x.map(|(k, v)| (k.to_string(), v)).unwrap())
        .collect();
    let want: Vec<(String, u32)> = (0..200u32)
        .filter(|i| i % 2 == 0)
        .map(|i| (format!("k{i:03}"), i))
        .chain(std::iter::once(("pad".to_string(), pad - 2)))
        .collect();
    assert_eq!(all, want);
    assert_eq!(r.garbage(), 0);
}

/// A journal read from its start is built in one go (every record collected, the last of each
/// key kept, deletions applied): it answers exactly as the writer's map, built record by record,
/// with the same live bytes, summaries and index; and later appends still land.
#[test]
fn a_map_built_in_one_go_answers_as_one_built_record_by_record() {
    let p = tmp("lazy-bulk");
    let mut w: Lazy = Journal::open(&p, 0o600).unwrap();
    w.lock(None).unwrap();
    let n = 3000u32;
    // File order is not key order (k1, k10, k100 ... interleave), as with device names; every
    // third key rewritten later, every seventh deleted, and some deleted keys written again.
    for i in 0..n {
        w.put(&format!("k{i}"), Some(&i)).unwrap();
    }
    for i in (0..n).step_by(3) {
        w.put(&format!("k{i}"), Some(&(i + n))).unwrap();
    }
    for i in (0..n).step_by(7) {
        w.put(&format!("k{i}"), None).unwrap();
    }
    for i in (0..n).step_by(14) {
        w.put(&format!("k{i}"), Some(&(i + 2 * n))).unwrap();
    }
    w.unlock().unwrap();
    let mut r: Lazy = Journal::open(&p, 0o600).unwrap();
    let all = |j: &Lazy| -> Vec<(String, u32)> {
        j.read_range("")
            .map(|x| x.map(|(k, v)| (k.to_string(), v)).unwrap())
            .collect()
    };
    assert_eq!(all(&r), all(&w));
    assert_eq!(r.len(), w.len());
    assert_eq!(r.garbage(), w.garbage());
    assert!(r.garbage() > 0);
    let metas = |j: &Lazy| -> Vec<(String, u32)> {
        j.metas("k1").map(|(k, m)| (k.to_string(), m)).collect()
    };
    assert_eq!(metas(&r), metas(&w));
    assert_eq!(
        r.index().0,
        w.index().0,
        "the index saw every value, in file order"
    );
    let want: Vec<(String, u32)> = (0..n)
        .filter(|i| i % 7 != 0 || i % 14 == 0)
        .map(|i| {
            let v = match i {
                _ if i % 14 == 0 => i + 2 * n,
                _ if i % 3 == 0 => i + n,
                _ => i,
            };
            (format!("k{i}"), v)
        })
        .collect::<std::collections::BTreeMap<_, _>>()
        .into_iter()
        .collect();
    assert_eq!(all(&r), want);
    w.lock(None).unwrap();
    w.put("k5", Some(&7)).unwrap();
    w.put("zz", Some(&9)).unwrap();
    w.unlock().unwrap();
    r.refresh().unwrap();
    assert_eq!(r.read("k5").unwrap(), Some(7));
    assert_eq!(r.read("zz").unwrap(), Some(9));
    assert_eq!(r.len(), want.len() + 1);
}

#[test]
fn values_kept_from_reads_never_outlive_the_file_they_were_read_from() {
    let p = tmp("recent");
    let mut svc: Lazy = Journal::open(&p, 0o600).unwrap();
    let mut cli: Lazy = Journal::open(&p, 0o600).unwrap();
    // Records of the same length: after "a" goes and the file is compacted, "b"'s record is
    // where "a"'s was, with the same length.
    put_lazy(&mut cli, "a", Some(1));
    put_lazy(&mut cli, "b", Some(2));
    svc.refresh().unwrap();
    assert_eq!(svc.read("a").unwrap(), Some(1));
    assert_eq!(svc.read("a").unwrap(), Some(1), "read again, from memory");
    assert_eq!(svc.read("b").unwrap(), Some(2));
    let Some(Slot::File {
        at: a_at,
        len: a_len,
        ..
    }) = svc.map.get("a")
    else {
        panic!("a is read back from the file");
    };
    let (a_at, a_len) = (*a_at, *a_len);
    cli.lock(None).unwrap();
    cli.put("a", None).unwrap();
    cli.compact(|_, _| true).unwrap();
    cli.unlock().unwrap();
    svc.refresh().unwrap();
    assert!(
        matches!(svc.map.get("b"), Some(Slot::File { at, len, .. }) if (*at, *len) == (a_at, a_len)),
        "b's record took a's place: {:?}",
        svc.map.get("b")
    );
    assert_eq!(svc.read("b").unwrap(), Some(2));
    assert_eq!(svc.read("a").unwrap(), None);
    // A key rewritten in place of the same length is read at its new offset.
    put_lazy(&mut cli, "b", Some(3));
    svc.refresh().unwrap();
    assert_eq!(svc.read("b").unwrap(), Some(3));
    // Only the last few values read are kept.
    for i in 0..(RECENT as u32 * 3) {
        put_lazy(&mut cli, &format!("k{i:02}"), Some(i));
    }
    svc.refresh().unwrap();
    for i in 0..(RECENT as u32 * 3) {
        assert_eq!(svc.read(&format!("k{i:02}")).unwrap(), Some(i));
    }
    assert_eq!(svc.recent.lock().unwrap().len(), RECENT);
}

#[test]
fn appending_at_a_trusted_tail_reads_only_the_last_record() {
    let p = tmp("tail");
    // No file yet, or only the magic: nothing to trust, nothing written.
    assert!(!append_at_tail(&p, "a", &1u32).unwrap());
    assert!(!p.exists());
    let mut svc: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    put(&mut svc, "a", Some(1));
    put(&mut svc, "b", Some(2));
    assert!(append_at_tail(&p, "c", &3u32).unwrap());
    assert!(append_at_tail(&p, "a", &4u32).unwrap());
    // What another process and the kept journal read: the appended records, the last one wins.
    let r: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(
        r.iter().collect::<Vec<_>>(),
        [("a", &4), ("b", &2), ("c", &3)]
    );
    svc.refresh().unwrap();
    assert_eq!(
        svc.iter().collect::<Vec<_>>(),
        [("a", &4), ("b", &2), ("c", &3)]
    );
    let whole = fs::read(&p).unwrap();
    // The record before the last one is not read: damage there is not seen (a full read still
    // refuses it, as before), and the append is whole.
    let mut bad = whole.clone();
    bad[MAGIC.len() + 9] ^= 0x55;
    fs::write(&p, &bad).unwrap();
    assert!(append_at_tail(&p, "d", &5u32).unwrap());
    assert_eq!(
        fs::read(&p).unwrap().len(),
        whole.len() + 8 + br#"{"k":"d","v":5}"#.len()
    );
    assert!(Journal::<u32>::open(&p, 0o600).is_err());
    // Every torn tail (a last record cut short, or whole-length with a payload that did not
    // reach the disk): nothing is appended; the writer that reads the journal cuts it.
    let last = whole.len() - (8 + br#"{"k":"a","v":4}"#.len());
    let mut torn: Vec<Vec<u8>> = (last + 1..whole.len())
        .map(|c| whole[..c].to_vec())
        .collect();
    let mut crc = whole.clone();
    let n = crc.len();
    crc[n - 2] ^= 0x55;
    torn.push(crc);
    for t in &torn {
        fs::write(&p, t).unwrap();
        assert!(
            !append_at_tail(&p, "e", &6u32).unwrap(),
            "{} bytes",
            t.len()
        );
        assert_eq!(&fs::read(&p).unwrap(), t);
    }
    let mut w: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    put(&mut w, "e", Some(6));
    assert!(append_at_tail(&p, "f", &7u32).unwrap());
    let r: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(
        r.iter().collect::<Vec<_>>(),
        [("a", &1), ("b", &2), ("c", &3), ("e", &6), ("f", &7)]
    );
    // Not a journal: refused, untouched.
    fs::write(&p, b"{\"version\":1}\n{\"k\":\"x\"}").unwrap();
    assert!(!append_at_tail(&p, "g", &8u32).unwrap());
    // A writer holding the lock is waited for.
    fs::remove_file(&p).unwrap();
    let mut w: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    put(&mut w, "a", Some(1));
    w.lock(None).unwrap();
    let t = std::thread::spawn({
        let p = p.clone();
        move || append_at_tail(&p, "b", &2u32).unwrap()
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!t.is_finished());
    w.put("c", Some(&3)).unwrap();
    w.unlock().unwrap();
    assert!(t.join().unwrap());
    let r: Journal<u32> = Journal::open(&p, 0o600).unwrap();
    assert_eq!(
        r.iter().collect::<Vec<_>>(),
        [("a", &1), ("b", &2), ("c", &3)]
    );
}
