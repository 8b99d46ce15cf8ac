use super::*;

const NOW: i64 = 1_795_867_200;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gatecert-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d.join("audit.log")
}

fn write_events(path: &Path, n: usize, max: u64) {
    write_events_at(path, n, max, NOW, DEFAULT_RETENTION);
}

fn write_events_at(path: &Path, n: usize, max: u64, at: i64, retention: i64) {
    let mut a = Audit::open(path, max).unwrap().with_retention(retention);
    for i in 0..n {
        a.append(
            at + i as i64,
            "issue",
            serde_json::json!({"device": format!("s{i}"), "serial": format!("{i:032X}")}),
        )
        .unwrap();
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

#[test]
fn intact_log_verifies_and_lines_chain() {
    let path = tmp("ok");
    write_events(&path, 5, DEFAULT_MAX_BYTES);
    // Reopening continues the chain.
    write_events(&path, 2, DEFAULT_MAX_BYTES);
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.lines, 7);
    let l = lines(&path);
    let first: serde_json::Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(first["prev"], GENESIS);
    assert_eq!(first["event"], "issue");
    assert_eq!(first["ts"], NOW);
    assert_eq!(first["device"], "s0");
    let second: serde_json::Value = serde_json::from_str(&l[1]).unwrap();
    assert_eq!(
        second["prev"],
        crypto::hex(&crypto::sha256(l[0].as_bytes()))
    );
}

#[test]
fn a_flipped_byte_is_caught_with_its_line() {
    let path = tmp("flip");
    write_events(&path, 5, DEFAULT_MAX_BYTES);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"s2\"", "\"s9\"");
    rewrite(&path, &l);
    let r = Audit::verify(&path).unwrap();
    assert!(!r.ok());
    // The edited line 3 is betrayed by line 4's prev.
    assert_eq!(r.problems[0].line, 4, "{:?}", r.problems);
}

#[test]
fn editing_the_last_line_is_caught_by_the_head() {
    let path = tmp("last");
    write_events(&path, 3, DEFAULT_MAX_BYTES);
    let mut l = lines(&path);
    l[2] = l[2].replace("\"s2\"", "\"s7\"");
    rewrite(&path, &l);
    let r = Audit::verify(&path).unwrap();
    assert!(!r.ok());
}

#[test]
fn a_deleted_line_is_caught() {
    for victim in [0, 2, 4] {
        let path = tmp(&format!("del{victim}"));
        write_events(&path, 5, DEFAULT_MAX_BYTES);
        let mut l = lines(&path);
        l.remove(victim);
        rewrite(&path, &l);
        let r = Audit::verify(&path).unwrap();
        assert!(!r.ok(), "deleting line {} went unnoticed", victim + 1);
        if victim < 4 {
            assert_eq!(r.problems[0].line, victim + 1, "{:?}", r.problems);
        }
    }
}

#[test]
fn a_crash_between_line_and_head_loses_nothing() {
    // SIGKILL after the line's fsync but before audit.log.head is replaced: the log is one
    // complete line ahead of the head (found by tests/crash.rs). That is not a removal.
    let path = tmp("headlag");
    write_events(&path, 3, DEFAULT_MAX_BYTES);
    let head = std::fs::read(head_path(&path)).unwrap();
    write_events(&path, 1, DEFAULT_MAX_BYTES);
    std::fs::write(head_path(&path), &head).unwrap();
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.lines, 4);
    // The next append brings the head up to date.
    write_events(&path, 1, DEFAULT_MAX_BYTES);
    assert!(Audit::verify(&path).unwrap().ok());
    // Several lines ahead, chaining on from the head, is a group commit's crash window
    // (`a_head_several_lines_behind_a_group_commit_is_caught_up`); a head that is no line of
    // the log's end is not: flagged.
    write_events(&path, 2, DEFAULT_MAX_BYTES);
    std::fs::write(head_path(&path), &head).unwrap();
    assert!(Audit::verify(&path).unwrap().ok());
    std::fs::write(
        head_path(&path),
        crypto::hex(&crypto::sha256(b"not a line")),
    )
    .unwrap();
    assert!(!Audit::verify(&path).unwrap().ok());
}

#[test]
fn truncation_is_caught() {
    // Whole lines cut off the end: the head file remembers.
    let path = tmp("trunc");
    write_events(&path, 5, DEFAULT_MAX_BYTES);
    let l = lines(&path);
    rewrite(&path, &l[..3]);
    let r = Audit::verify(&path).unwrap();
    assert!(!r.ok());
    assert!(
        r.problems[0].what.contains("removed from the end"),
        "{:?}",
        r.problems
    );
    // Emptied entirely.
    std::fs::write(&path, "").unwrap();
    assert!(!Audit::verify(&path).unwrap().ok());
}

#[test]
fn a_torn_line_is_reported_repaired_and_reopen_recovers() {
    let path = tmp("torn");
    write_events(&path, 3, DEFAULT_MAX_BYTES);
    let full = std::fs::read(&path).unwrap();
    let mut torn = full.clone();
    let tail = b"{\"ts\":1,\"event\":\"iss";
    torn.extend(tail);
    std::fs::write(&path, &torn).unwrap();
    let r = Audit::verify(&path).unwrap();
    assert_eq!(r.torn_at, Some(full.len() as u64));
    assert!(r.problems.iter().any(|p| p.what.contains("torn")));
    assert_eq!(Audit::repair(&path).unwrap(), tail.len() as u64);
    assert_eq!(std::fs::read(&path).unwrap(), full);
    assert!(Audit::verify(&path).unwrap().ok());
    assert_eq!(Audit::repair(&path).unwrap(), 0);

    // Opening a torn log cuts the tail and records a repair event; the chain stays intact.
    std::fs::write(&path, &torn).unwrap();
    write_events(&path, 1, DEFAULT_MAX_BYTES);
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    let l = lines(&path);
    assert!(l[3].contains("\"event\":\"repair\""));
    assert_eq!(l.len(), 5);
}

#[test]
fn rotation_keeps_the_chain_across_files() {
    let path = tmp("rotate");
    // ~150 bytes a line: 1 KiB files rotate every few lines. No retention: KEEP files stay.
    write_events_at(&path, 40, 1024, NOW, 0);
    let one = rotated(&path, 1);
    let two = rotated(&path, 2);
    assert!(one.exists() && two.exists());
    assert!(!rotated(&path, 3).exists());
    for p in [&path, &one, &two] {
        assert!(std::fs::metadata(p).unwrap().len() <= 1024);
    }
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.files, vec![two.clone(), one.clone(), path.clone()]);
    let first_of_current: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    assert_eq!(first_of_current["event"], "rotate");
    let last_of_one = lines(&one).pop().unwrap();
    assert_eq!(
        first_of_current["prev"],
        crypto::hex(&crypto::sha256(last_of_one.as_bytes()))
    );

    // Tampering with a rotated file is caught there.
    let mut l = lines(&one);
    l[1] = l[1].replace("issue", "issuX");
    rewrite(&one, &l);
    let r = Audit::verify(&path).unwrap();
    assert!(!r.ok());
    assert_eq!(r.problems[0].path, one);
    assert_eq!(r.problems[0].line, 3);
}

#[test]
fn removing_a_rotated_file_in_the_middle_is_caught() {
    let path = tmp("gap");
    write_events(&path, 40, 1024);
    let one = rotated(&path, 1);
    std::fs::remove_file(&one).unwrap();
    let r = Audit::verify(&path).unwrap();
    assert!(!r.ok());
    assert_eq!(r.problems[0].path, path);
    assert_eq!(r.problems[0].line, 1);
}

#[test]
fn fields_must_be_an_object() {
    let path = tmp("fields");
    let mut a = Audit::open(&path, DEFAULT_MAX_BYTES).unwrap();
    assert!(matches!(
        a.append(NOW, "x", serde_json::json!([1])),
        Err(Error::Fields)
    ));
}

#[test]
fn rotation_keeps_files_within_the_retention_and_drops_older_ones() {
    let path = tmp("retain");
    write_events(&path, 40, 1024);
    let kept = rotated_files(&path).unwrap().len();
    assert!(kept > KEEP, "files within 30 days were dropped: {kept}");
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(
        r.lines,
        40 + kept,
        "every event and one rotate line per file"
    );
    // 31 days later the next rotations drop what is past the retention, oldest first.
    write_events_at(&path, 20, 1024, NOW + 31 * 86_400, DEFAULT_RETENTION);
    assert!(rotated_files(&path).unwrap().len() <= kept);
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("\"dropped_files\""));
}

/// Issue 10 item 5b: a tail cut or edited is not laundered by the next line. Each tampering
/// makes `open` and `append` refuse; `repair_head` records the gap and appends resume.
#[test]
fn the_head_is_authoritative_and_repair_is_recorded() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 4] = [
        ("delete-last", |p| {
            let l = lines(p);
            rewrite(p, &l[..l.len() - 1]);
        }),
        ("edit-last", |p| {
            let mut l = lines(p);
            let n = l.len() - 1;
            l[n] = l[n].replace("\"s4\"", "\"s8\"");
            rewrite(p, &l);
        }),
        ("truncate", |p| std::fs::write(p, "").unwrap()),
        ("remove", |p| std::fs::remove_file(p).unwrap()),
    ];
    for (tag, tamper) in cases {
        let path = tmp(&format!("head-{tag}"));
        write_events(&path, 5, DEFAULT_MAX_BYTES);
        let mut held = Audit::open(&path, DEFAULT_MAX_BYTES).unwrap();
        tamper(&path);
        let before = std::fs::read(&path).unwrap_or_default();
        assert!(
            matches!(
                Audit::open(&path, DEFAULT_MAX_BYTES),
                Err(Error::Broken { .. })
            ),
            "{tag}: open continued a tampered log"
        );
        let e = held
            .append(NOW + 9, "issue", serde_json::json!({}))
            .unwrap_err();
        assert!(
            e.to_string().contains("audit verify --repair"),
            "{tag}: {e}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap_or_default(),
            before,
            "{tag}: appended"
        );
        assert!(
            !Audit::verify(&path).unwrap().ok(),
            "{tag}: verify said intact"
        );

        let what = Audit::repair_head(&path, NOW + 10).unwrap();
        assert!(what.is_some(), "{tag}");
        let last = lines(&path).pop().unwrap();
        assert!(last.contains("\"event\":\"repair\""), "{tag}: {last}");
        assert!(last.contains("\"head_was\""), "{tag}: {last}");
        assert_eq!(Audit::repair_head(&path, NOW + 11).unwrap(), None);
        write_events(&path, 1, DEFAULT_MAX_BYTES);
        let r = Audit::verify(&path).unwrap();
        assert!(r.ok(), "{tag}: {:?}", r.problems);
    }
}

/// Issue 10 item 5e: appenders with their own handles (as separate processes have) chain onto
/// each other's lines under the lock.
#[test]
fn concurrent_appenders_keep_one_chain() {
    let path = tmp("concurrent");
    write_events(&path, 1, DEFAULT_MAX_BYTES);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    // Opened before the others append: a stale view unless append re-reads.
                    let mut a = Audit::open(&path, DEFAULT_MAX_BYTES).unwrap();
                    std::thread::yield_now();
                    a.append(NOW, "issue", serde_json::json!({"t": t, "i": i}))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.lines, 81);
}

#[test]
fn denial_fields_are_bounded() {
    let user = "u".repeat(6000);
    let names: Vec<String> = (0..200)
        .map(|i| format!("n{i}.{}", "x".repeat(300)))
        .collect();
    let b = bounded(serde_json::json!({"device": user, "names": names, "status": 403}));
    let text = b.to_string();
    assert!(text.len() < 2 * 1024, "{} bytes", text.len());
    assert_eq!(b["status"], 403);
    assert!(b["device"].as_str().unwrap().contains("(cut, 6000 bytes)"));
    assert_eq!(b["names"].as_array().unwrap().len(), MAX_FIELD_ITEMS + 1);
    assert_eq!(b["names"][MAX_FIELD_ITEMS], "...(+192 more)");
}

/// `inspect` reads only the end of a large log; the chain and the head check are the same.
#[test]
fn a_large_log_is_checked_from_its_tail() {
    let path = tmp("large");
    write_events(&path, 700, DEFAULT_MAX_BYTES);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > TAIL_BYTES, "{len}");
    let tail = inspect(&path).unwrap();
    assert_eq!(tail.complete_len, len);
    assert!(tail.mismatch.is_none());
    write_events(&path, 1, DEFAULT_MAX_BYTES);
    assert!(Audit::verify(&path).unwrap().ok());
    let l = lines(&path);
    rewrite(&path, &l[..l.len() - 1]);
    assert!(matches!(
        Audit::open(&path, DEFAULT_MAX_BYTES),
        Err(Error::Broken { .. })
    ));
}

/// Flash is finite: past the budget the oldest go even inside the retention, and the
/// `rotate` line says what went and why.
#[test]
fn rotation_keeps_within_the_budget_and_records_what_it_drops() {
    let path = tmp("maxrot");
    let budget = 8 * 1024;
    let mut a = Audit::open(&path, 1024).unwrap().with_policy(Policy {
        budget,
        ..Policy::default()
    });
    issues(&mut a, 0..160, 1);
    let files = rotated_files(&path).unwrap();
    let total: u64 = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum::<u64>()
        + std::fs::metadata(&path).unwrap().len();
    assert!(total <= budget, "{total} bytes kept, budget {budget}");
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.begins, Begins::Pruned);
    let rotate: serde_json::Value = serde_json::from_str(&lines(&path)[0]).unwrap();
    assert_eq!(rotate["short_of_retention"], true, "{rotate}");
    assert_eq!(
        rotate["pruned"][0]["reason"], "over audit_max_bytes",
        "{rotate}"
    );
}

/// One `issue` line for each of `range`, `step` seconds apart.
fn issues(a: &mut Audit, range: std::ops::Range<i64>, step: i64) {
    for i in range {
        a.append(
            NOW + i * step,
            "issue",
            serde_json::json!({"device": format!("s{i}")}),
        )
        .unwrap();
    }
}

fn policy(budget: u64) -> Policy {
    Policy {
        budget,
        ..Policy::default()
    }
}

/// Issue 13 item 2: after retention pruned the oldest files, `verify` knows where history
/// legitimately begins; removing the next oldest file by hand is still caught.
#[test]
fn verify_accepts_a_recorded_pruned_start_and_catches_an_unrecorded_one() {
    let path = tmp("prunedstart");
    write_events_at(&path, 40, 1024, NOW, DEFAULT_RETENTION);
    // 31 days later: the files of the first batch are past the retention and go.
    write_events_at(&path, 40, 1024, NOW + 31 * 86_400, DEFAULT_RETENTION);
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.begins, Begins::Pruned);
    assert!(r.first_ts.unwrap() >= NOW);
    let all: String = r
        .files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(all.contains("\"reason\":\"older than audit_retention\""));
    // Someone removes the oldest kept file: no pruning recorded that start.
    let oldest = rotated_files(&path).unwrap().pop().unwrap().1;
    std::fs::remove_file(&oldest).unwrap();
    let r = Audit::verify(&path).unwrap();
    assert!(!r.ok());
    assert!(
        r.problems[0].what.contains("recorded pruning"),
        "{:?}",
        r.problems
    );
}

/// A log written before prunings were recorded (no `history_from` anywhere) still verifies
/// from a rotation, as it did, and says so.
#[test]
fn an_old_log_without_history_from_still_verifies() {
    let path = tmp("legacy");
    write_events_at(&path, 40, 1024, NOW, 0);
    // Strip `history_from` as an older version wrote: rebuild the chain without it.
    let mut all: Vec<(PathBuf, Vec<serde_json::Value>)> = Vec::new();
    let r = Audit::verify(&path).unwrap();
    for f in &r.files {
        let v = lines(f)
            .iter()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if let Some(m) = v.as_object_mut() {
                    m.remove("history_from");
                }
                v
            })
            .collect();
        all.push((f.clone(), v));
    }
    let mut prev = "0".repeat(64);
    for (f, vs) in &mut all {
        let mut out = Vec::new();
        for (i, v) in vs.iter_mut().enumerate() {
            if !(f != &path && i == 0 && prev == "0".repeat(64)) {
                v["prev"] = prev.clone().into();
            }
            let l = v.to_string();
            prev = crypto::hex(&crypto::sha256(l.as_bytes()));
            out.push(l);
        }
        rewrite(f, &out);
    }
    std::fs::write(head_path(&path), &prev).unwrap();
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
    assert_eq!(r.begins, Begins::Unrecorded);
}

/// Issue 13 item 3: rotated files are copied to the archive before they are pruned; an
/// unavailable archive never stops appends, keeps the files (within the budget) and is
/// reported; once back, everything is archived and the archive verifies as one chain from
/// the first line.
#[test]
fn the_archive_gets_every_rotated_file_and_an_unavailable_one_loses_nothing() {
    let path = tmp("archive");
    let archive = path.with_file_name("usb");
    let p = Policy {
        retention: 86_400,
        archive_dir: Some(archive.clone()),
        ..policy(1 << 20)
    };
    // The stick is not mounted: appends go on, nothing past KEEP is pruned although expired.
    let mut a = Audit::open(&path, 1024).unwrap().with_policy(p.clone());
    issues(&mut a, 0..60, 3_600);
    let kept = rotated_files(&path).unwrap().len();
    assert!(kept > KEEP + 3, "{kept}");
    let h = History::of(&path, &p);
    assert_eq!(h.unarchived_files, kept);
    assert!(h.archive_error.is_some(), "{h:?}");
    let att = h.attention();
    assert!(att[0].contains("not archived to"), "{att:?}");
    assert!(Audit::verify(&path).unwrap().ok());
    assert_eq!(Audit::verify(&path).unwrap().begins, Begins::Genesis);

    // Mounted again: the next rotation archives all, then prunes what is past the retention.
    std::fs::create_dir(&archive).unwrap();
    issues(&mut a, 60..80, 3_600);
    assert!(rotated_files(&path).unwrap().len() < kept);
    let h = History::of(&path, &p);
    assert_eq!(h.unarchived_files, 0, "{h:?}");
    assert!(h.attention().is_empty(), "{:?}", h.attention());
    let local = Audit::verify(&path).unwrap();
    assert!(local.ok() && local.begins == Begins::Pruned, "{local:?}");
    let arch = Audit::verify_dir(&archive).unwrap();
    assert!(arch.ok(), "{:?}", arch.problems);
    assert_eq!(
        arch.begins,
        Begins::Genesis,
        "the archive holds history from the start"
    );
    // Every line the local log no longer has is in the archive.
    let archived: std::collections::HashSet<String> =
        arch.files.iter().flat_map(|f| lines(f)).collect();
    for i in 0..40 {
        let dev = format!("\"device\":\"s{i}\"");
        assert!(archived.iter().any(|l| l.contains(&dev)), "s{i} lost");
    }
    let log = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "rotate");

    // An archive file edited afterwards is caught there.
    let f = arch.files[1].clone();
    let mut l = lines(&f);
    l[1] = l[1].replace("issue", "issuX");
    rewrite(&f, &l);
    assert!(!Audit::verify_dir(&archive).unwrap().ok());
}

/// Beyond the budget an unarchived file goes all the same, with an audited drop saying it was
/// not archived, and `status` says the history is short.
#[test]
fn over_the_budget_an_unarchived_file_is_dropped_loudly() {
    let path = tmp("archive-full");
    let p = Policy {
        archive_dir: Some(path.with_file_name("absent")),
        ..policy(6 * 1024)
    };
    let mut a = Audit::open(&path, 1024).unwrap().with_policy(p.clone());
    issues(&mut a, 0..100, 1);
    let log = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["pruned"][0]["archived"], false, "{first}");
    assert_eq!(
        first["pruned"][0]["reason"], "over audit_max_bytes",
        "{first}"
    );
    assert_eq!(first["short_of_retention"], true, "{first}");
    let h = History::of(&path, &p);
    assert!(h.short_of_retention);
    assert!(
        h.attention()
            .iter()
            .any(|a| a.contains("audit history dropped within audit_retention")),
        "{:?}",
        h.attention()
    );
    assert!(Audit::verify(&path).unwrap().ok());
}

/// Issue 13 item 4: with a syslog socket each line is also sent there, whole; the denial
/// stream of a configured state directory too.
#[test]
fn lines_are_forwarded_to_the_syslog_socket() {
    let path = tmp("syslog");
    let dir = path.parent().unwrap().to_path_buf();
    let sock = dir.join("log.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    configure(
        &dir,
        Policy {
            syslog: Some(sock.clone()),
            ..Policy::default()
        },
    );
    let mut a = Audit::open(&path, DEFAULT_MAX_BYTES).unwrap();
    a.append(
        NOW,
        "token-add",
        serde_json::json!({"device": "s1", "uses": 1}),
    )
    .unwrap();
    let mut d = Audit::open(&deny_path_in(&dir), DENY_MAX_BYTES).unwrap();
    d.append(NOW, "est.deny", serde_json::json!({"status": 401}))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = rx.recv(&mut buf).unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    let line = lines(&path).pop().unwrap();
    assert!(msg.starts_with("<110>gatecert-audit["), "{msg}");
    assert!(msg.ends_with(&format!("]: {line}")), "{msg}");
    let n = rx.recv(&mut buf).unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.contains("\"event\":\"est.deny\""), "{msg}");
    // No socket: the line is still recorded.
    drop(rx);
    std::fs::remove_file(&sock).unwrap();
    a.append(NOW, "issue", serde_json::json!({})).unwrap();
    assert!(Audit::verify(&path).unwrap().ok());
}

/// Bytes this thread has read so far (`rchar` of /proc/thread-self/io).
fn rchar() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .unwrap()
        .parse()
        .unwrap()
}

/// Issue 13 item 5: the appender does not re-read the log per line (bytes read per append
/// stay far below the 64 KiB tail read), yet a line another process appended (its own
/// handle, its own memory) is chained onto.
#[test]
fn appends_do_not_reread_the_log_but_notice_another_process() {
    let path = tmp("noreread");
    write_events(&path, 700, DEFAULT_MAX_BYTES);
    assert!(std::fs::metadata(&path).unwrap().len() > TAIL_BYTES);
    let before = rchar();
    for i in 0..50 {
        // As the service does per request.
        let mut a =
            Audit::open_locked_within(&path, DEFAULT_MAX_BYTES, Duration::from_secs(1)).unwrap();
        a.append(NOW + i, "est.issue", serde_json::json!({"device": "s"}))
            .unwrap();
    }
    let read = rchar() - before;
    eprintln!(
        "noreread: log {} bytes, {read} bytes read for 50 appends",
        std::fs::metadata(&path).unwrap().len()
    );
    assert!(read < 50 * 4096, "{read} bytes read for 50 appends");

    // Another process appends: a chained line and a new head, none of this process's memory.
    let last = lines(&path).pop().unwrap();
    let theirs = render(
        NOW + 99,
        "ca-sign",
        serde_json::json!({"device": "cli"}),
        &crypto::hex(&crypto::sha256(last.as_bytes())),
    )
    .unwrap();
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(format!("{theirs}\n").as_bytes()).unwrap();
    store::write_atomic(
        &head_path(&path),
        crypto::hex(&crypto::sha256(theirs.as_bytes())).as_bytes(),
        store::SECRET,
    )
    .unwrap();
    let mut a = Audit::open_locked(&path, DEFAULT_MAX_BYTES).unwrap();
    a.append(NOW + 100, "est.issue", serde_json::json!({"device": "s"}))
        .unwrap();
    let r = Audit::verify(&path).unwrap();
    assert!(r.ok(), "{:?}", r.problems);
}

/// In the service a thread archives ([`spawn_archiver`]): the request that rotates never
/// copies to the (maybe slow) stick, and prunes an expired file only once the thread copied it.
#[test]
fn in_the_service_rotation_leaves_copying_to_the_archiver() {
    let path = tmp("archiver");
    let dir = path.parent().unwrap().to_path_buf();
    let usb = dir.join("usb");
    std::fs::create_dir(&usb).unwrap();
    // No policy configured for this directory: the thread idles; this test copies by hand.
    spawn_archiver(&dir).unwrap();
    let p = Policy {
        retention: 86_400,
        archive_dir: Some(usb.clone()),
        ..policy(1 << 20)
    };
    let mut a = Audit::open(&path, 1024).unwrap().with_policy(p.clone());
    issues(&mut a, 0..40, 3_600);
    assert_eq!(
        std::fs::read_dir(&usb).unwrap().count(),
        0,
        "the request copied"
    );
    let waiting = rotated_files(&path).unwrap().len();
    assert!(
        waiting > KEEP + 2,
        "expired files were pruned unarchived: {waiting}"
    );
    assert_eq!(archive_pending(&path, &usb).unwrap(), waiting);
    assert_eq!(archive_pending(&path, &usb).unwrap(), 0);
    issues(&mut a, 40..50, 3_600);
    assert!(rotated_files(&path).unwrap().len() < waiting);
    assert!(Audit::verify(&path).unwrap().ok());
    assert!(Audit::verify_dir(&usb).unwrap().ok());
}

/// A crash after a group commit's lines were written (and synced) but before the head was
/// updated leaves the head several lines behind: the next open accepts it, because the lines
/// after the head's chain on from it, and brings the head up to date. A line in between that
/// was edited breaks the chain: that is still refused.
#[test]
fn a_head_several_lines_behind_a_group_commit_is_caught_up() {
    let path = tmp("batch-head");
    write_events(&path, 3, DEFAULT_MAX_BYTES);
    let head_before = std::fs::read_to_string(head_path(&path)).unwrap();
    let mut a = Audit::open_locked(&path, DEFAULT_MAX_BYTES).unwrap();
    let batch = (0..6)
        .map(|i| ("est.issue", serde_json::json!({"device": format!("b{i}")})))
        .collect();
    a.append_batch(NOW + 10, batch).unwrap();
    drop(a);
    // The crash: the lines are there, the head is the one from before the group.
    std::fs::write(head_path(&path), &head_before).unwrap();
    assert!(Audit::verify(&path).unwrap().ok());
    Audit::open(&path, DEFAULT_MAX_BYTES).unwrap();
    let now_head = std::fs::read_to_string(head_path(&path)).unwrap();
    let last = lines(&path).last().cloned().unwrap();
    assert_eq!(now_head, crypto::hex(&crypto::sha256(last.as_bytes())));
    assert!(Audit::verify(&path).unwrap().ok());

    // The same, with a line of the group edited: not a crash artefact.
    std::fs::write(head_path(&path), &head_before).unwrap();
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"b2\"", "\"bX\"");
    std::fs::write(&path, text).unwrap();
    assert!(!Audit::verify(&path).unwrap().ok());
    assert!(matches!(
        Audit::open(&path, DEFAULT_MAX_BYTES),
        Err(Error::Broken { .. })
    ));
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn group_commits_rewrite_the_head_in_place_and_a_power_cut_within_the_lag_verifies() {
    use std::os::unix::fs::MetadataExt as _;
    let path = tmp("lazy-head");
    write_events(&path, 2, DEFAULT_MAX_BYTES);
    let ino = std::fs::metadata(head_path(&path)).unwrap().ino();
    let lag = || {
        super::HEAD_BEHIND
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| *p == path)
            .map_or(0, |(_, n)| *n)
    };
    // Many groups of one (one client at a time): the head follows every group in place, and is
    // synced whenever the lines past its last synced state would exceed HEAD_LAG.
    let mut durable = std::fs::read_to_string(head_path(&path)).unwrap();
    let mut lazy_groups = 0;
    for i in 0..200 {
        let mut a = Audit::open_locked(&path, DEFAULT_MAX_BYTES).unwrap();
        let pad = "x".repeat(200);
        a.append_batch(
            NOW + i,
            vec![(
                "est.issue",
                serde_json::json!({"device": format!("d{i}"), "pad": pad}),
            )],
        )
        .unwrap();
        drop(a);
        let head = std::fs::read_to_string(head_path(&path)).unwrap();
        let last = lines(&path).last().cloned().unwrap();
        assert_eq!(head, crypto::hex(&crypto::sha256(last.as_bytes())));
        assert!(
            lag() <= super::HEAD_LAG,
            "lag {} over {}",
            lag(),
            super::HEAD_LAG
        );
        if lag() == 0 {
            durable = head;
        } else {
            lazy_groups += 1;
        }
    }
    assert!(
        lazy_groups > 100,
        "only {lazy_groups} of 200 groups left the head unsynced"
    );
    assert_eq!(std::fs::metadata(head_path(&path)).unwrap().ino(), ino);
    // Then one large group, up to the batch limit, before the cut.
    let mut a = Audit::open_locked(&path, DEFAULT_MAX_BYTES).unwrap();
    let batch = (0..120)
        .map(|i| {
            (
                "est.issue",
                serde_json::json!({"device": format!("big{i}"), "pad": "y".repeat(250)}),
            )
        })
        .collect();
    a.append_batch(NOW + 300, batch).unwrap();
    drop(a);
    // The power cut: the head on disk is the last synced one, or older by none of its lines.
    if lag() > 0 {
        std::fs::write(head_path(&path), &durable).unwrap();
    }
    assert!(Audit::verify(&path).unwrap().ok());
    Audit::open(&path, DEFAULT_MAX_BYTES).unwrap();
    let last = lines(&path).last().cloned().unwrap();
    assert_eq!(
        std::fs::read_to_string(head_path(&path)).unwrap(),
        crypto::hex(&crypto::sha256(last.as_bytes()))
    );
    // A head replaced by something else is still rewritten atomically (a symlink is never
    // followed), and removal from the end is still caught.
    std::fs::remove_file(head_path(&path)).unwrap();
    std::os::unix::fs::symlink("/dev/null", head_path(&path)).unwrap();
    assert!(matches!(
        Audit::open_locked(&path, DEFAULT_MAX_BYTES),
        Err(Error::Broken { .. })
    ));
    let other = path.with_file_name("other");
    std::fs::write(&other, "o".repeat(64)).unwrap();
    std::fs::remove_file(head_path(&path)).unwrap();
    std::os::unix::fs::symlink(&other, head_path(&path)).unwrap();
    super::write_head(&path, &"a".repeat(64), 0, false).unwrap();
    assert_eq!(std::fs::read_to_string(&other).unwrap(), "o".repeat(64));
    assert!(!std::fs::symlink_metadata(head_path(&path))
        .unwrap()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(head_path(&path)).unwrap(),
        "a".repeat(64)
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// `Audit::check`, which EST runs before every issuance, reads nothing while the log and its
/// head are as this process last left them, and still sees a tail cut by someone else (the
/// stamp changed, so the log is read and judged).
#[test]
fn check_answers_from_memory_until_the_log_changes() {
    let path = tmp("checkcache");
    write_events(&path, 700, DEFAULT_MAX_BYTES);
    assert!(std::fs::metadata(&path).unwrap().len() > TAIL_BYTES);
    // This process appends (as the service's group commit does): its end is remembered.
    let mut a =
        Audit::open_locked_within(&path, DEFAULT_MAX_BYTES, Duration::from_secs(1)).unwrap();
    a.append(NOW, "est.issue", serde_json::json!({"device": "s"}))
        .unwrap();
    drop(a);
    let before = rchar();
    for _ in 0..50 {
        Audit::check(&path).unwrap();
    }
    let read = rchar() - before;
    assert!(read < 4096, "{read} bytes read for 50 checks");

    // Someone removes the last line: the next check reads the log and refuses it.
    let data = std::fs::read(&path).unwrap();
    let cut = data[..data.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap();
    std::fs::write(&path, &data[..=cut]).unwrap();
    assert!(matches!(Audit::check(&path), Err(Error::Broken { .. })));
    // And the same when the head is rewritten to something the log does not end with.
    std::fs::write(&path, &data).unwrap();
    Audit::check(&path).unwrap();
    store::write_atomic(&head_path(&path), "ab".repeat(32).as_bytes(), store::SECRET).unwrap();
    assert!(matches!(Audit::check(&path), Err(Error::Broken { .. })));
}
