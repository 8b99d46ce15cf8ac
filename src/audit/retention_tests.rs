//! Issue 13: audit history that lasts. A month of a 10,000-sensor gateway, simulated with a
//! virtual clock through the production writer ([`Audit::append`], the fields the EST service,
//! `token add` and `leaves revoke` write), verified at the end as one chain.

use super::*;

/// 10,000 sensors, each re-enrolling twice a day.
const SENSORS: usize = 10_000;
const DAY: i64 = 86_400;
const T0: i64 = 1_795_867_200;

/// A directory on tmpfs when there is one: half a million fsyncs on a disk would take minutes.
fn fast_tmp(name: &str) -> PathBuf {
    let base = Path::new("/dev/shm");
    let base = if base.is_dir() {
        base.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("gatecert-retain-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// Removes the directory when dropped, also when the test fails (its 200 MB are in RAM).
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn serial(n: u64) -> String {
    crypto::hex(&crypto::sha256(&n.to_be_bytes())[..16]).to_uppercase()
}

/// The `ts` of a line the writer rendered (`"ts":N` is always there).
fn ts_of(line: &str) -> i64 {
    let rest = &line[line.find("\"ts\":").unwrap() + 5..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
    rest[..end].parse().unwrap()
}

/// The `est.issue` line `Est::commit_issue` writes.
fn issue(log: &mut Audit, now: i64, op: &str, sensor: usize, n: u64) {
    let device = format!("sensor-{sensor:05}");
    log.append(
        now,
        "est.issue",
        serde_json::json!({
            "op": op,
            "device": device,
            "names": [format!("{device}.sensors.example")],
            "serial": serial(n),
            "not_after": now + DAY,
            "source": "local",
            "client": format!("10.{}.{}.{}", sensor >> 16, (sensor >> 8) & 255, sensor & 255),
        }),
    )
    .unwrap();
}

/// The `est.deny` line `Est::record_denial` writes (fields cut by [`bounded`]).
fn deny(log: &mut Audit, now: i64, i: u64) {
    log.append(
        now,
        "est.deny",
        bounded(serde_json::json!({
            "op": "simpleenroll",
            "status": 401,
            "device": format!("intruder-{i}"),
            "names": ["x".repeat(300)],
            "reason": "unknown, used, expired or revoked token",
            "client": "192.0.2.7",
        })),
    )
    .unwrap();
}

/// 30 days of a 10,000-sensor gateway, plus three more so that retention prunes (a file holds about 1.3 days): every sensor
/// re-enrolls twice a day, 50 new sensors a day get a token and enroll, 5 are revoked, and
/// 1,440 denials a day go to the denial stream (its per-minute cap: one a minute here, all
/// written). Everything younger than the retention is still there at the end, `audit.log`
/// stays within its budget, and both chains verify, the issuance one beginning where a
/// recorded pruning left it.
#[test]
fn a_month_of_ten_thousand_sensors_fits_the_budget_and_verifies() {
    let dir = fast_tmp("month");
    let _cleanup = Cleanup(dir.clone());
    let path = path_in(&dir);
    let deny_path = deny_path_in(&dir);
    // The budget doc/operations.md gives for this fleet.
    let policy = Policy {
        retention: 30 * DAY,
        budget: 256 << 20,
        archive_dir: None,
        syslog: None,
    };
    // Held as the service holds it for each request.
    let mut log = Audit::open_locked(&path, policy.file_bytes())
        .unwrap()
        .with_policy(policy.clone());
    let mut denials = Audit::open_locked(&deny_path, DENY_MAX_BYTES)
        .unwrap()
        .with_retention(0);
    let days = 33;
    let per_day = 2 * SENSORS as i64 + 50 * 3 + 5;
    let mut n: u64 = 0;
    let mut issued_in_period = 0u64;
    let end = T0 + days * DAY;
    let mut peak: u64 = 0;
    let started = std::time::Instant::now();
    let mut t = T0;
    // Advances the virtual clock by one event; a new minute brings one denial.
    let tick = |t: &mut i64, denials: &mut Audit, step: i64| {
        let minute = *t / 60;
        *t += step;
        if *t / 60 != minute {
            deny(denials, *t, *t as u64);
        }
    };
    for day in 0..days {
        let base = T0 + day * DAY;
        let step = DAY / per_day;
        t = t.max(base);
        for _round in 0..2 {
            for s in 0..SENSORS {
                tick(&mut t, &mut denials, step);
                n += 1;
                issue(&mut log, t, "simplereenroll", s, n);
                if t >= end - policy.retention {
                    issued_in_period += 1;
                }
            }
        }
        for k in 0..50 {
            let device = format!("new-{day}-{k}");
            tick(&mut t, &mut denials, step);
            log.append(
                t,
                "token-add",
                serde_json::json!({"device": device, "names": [format!("{device}.sensors.example")],
                    "expires": t + 7 * DAY, "uses": 1, "eab_kid": null}),
            )
            .unwrap();
            for op in ["simpleenroll", "simplereenroll"] {
                tick(&mut t, &mut denials, step);
                n += 1;
                issue(&mut log, t, op, SENSORS + k, n);
                if t >= end - policy.retention {
                    issued_in_period += 1;
                }
            }
        }
        for k in 0..5 {
            tick(&mut t, &mut denials, step);
            log.append(
                t,
                "leaves.revoke",
                serde_json::json!({"device": format!("sensor-{:05}", day * 5 + k),
                    "reason": "keyCompromise", "note": null,
                    "serials": [serial(n)], "upstream_queued": false}),
            )
            .unwrap();
        }
        let used: u64 = std::iter::once(path.clone())
            .chain(rotated_files(&path).unwrap().into_iter().map(|(_, p)| p))
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        peak = peak.max(used);
    }
    assert!(
        peak <= policy.budget,
        "peak {peak} > budget {}",
        policy.budget
    );

    eprintln!("month: written in {:?}", started.elapsed());
    drop(log);
    drop(denials);
    let r = Audit::verify(&path).unwrap();
    eprintln!("month: verified in {:?}", started.elapsed());
    assert!(r.ok(), "{:?}", &r.problems[..r.problems.len().min(5)]);
    assert_eq!(
        r.begins,
        Begins::Pruned,
        "33 days in, the oldest files are pruned"
    );
    let first = r.first_ts.unwrap();
    assert!(
        first <= end - policy.retention,
        "history begins at {first}, less than the retention before the end {end}"
    );
    // Every issuance of the retention period is there, none lost to the denial stream.
    let cutoff = end - policy.retention;
    let mut kept = 0u64;
    for f in &r.files {
        let text = fs::read_to_string(f).unwrap();
        kept += text
            .lines()
            .filter(|l| l.contains("\"event\":\"est.issue\""))
            .filter(|l| ts_of(l) >= cutoff)
            .count() as u64;
    }
    assert!(kept >= issued_in_period, "{kept} < {issued_in_period}");
    let d = Audit::verify(&deny_path).unwrap();
    assert!(d.ok(), "{:?}", d.problems);
    eprintln!(
        "month: {} lines in {} files, peak {peak} bytes of {} budget, history from {}",
        r.lines,
        r.files.len(),
        policy.budget,
        (end - first) / DAY
    );
}
