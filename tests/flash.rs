//! Flash wear: in a steady state (nothing due, no leaves enrolling) `gatecert run` writes nothing
//! to its state directory. The test starts the real binary with a 1 s upkeep tick
//! (`GATECERT_TICK_SECS`), lets it settle, then watches every file's and directory's mtime, size
//! and inode over several ticks. The metrics textfile lives outside the state dir, as it would on
//! a router's tmpfs.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every path under `root` with (mtime in ns, size, inode).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (i128, u64, u64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        let mtime = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        out.insert(p.clone(), (mtime, meta.len(), meta.ino()));
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        }
    }
    out
}

struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn steady_state_writes_nothing_to_the_state_dir() {
    let dir = std::env::temp_dir().join(format!("gatecert-flash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state");
    let prom = dir.join("tmpfs").join("gatecert.prom");
    std::fs::create_dir_all(prom.parent().unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("gatecert.conf");
    std::fs::write(
        &config,
        format!(
            "config gatecert 'main'\n\toption state_dir '{}'\n\toption log 'stderr'\n\
             config certificate 'gateway'\n\tlist domain 'gateway.local'\n\
             config ca 'local'\n\tlist allow_suffix 'local'\n\
             config est 'est'\n\toption listen '127.0.0.1:{port}'\n\
             config metrics 'metrics'\n\toption textfile '{}'\n",
            state.display(),
            prom.display()
        ),
    )
    .unwrap();
    let mut run = Run(Command::new(env!("CARGO_BIN_EXE_gatecert"))
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("GATECERT_TICK_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());

    // Settle: the CA and the certificates are made at start; wait until the first upkeep tick
    // has passed (the metrics textfile exists, then one more tick).
    let t = Instant::now();
    while !prom.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "gatecert run did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = snapshot(&state);
    assert!(
        before.keys().any(|p| p.ends_with("ca")) && before.len() > 10,
        "the state dir was not populated: {before:?}"
    );

    // The window: five upkeep ticks.
    std::thread::sleep(Duration::from_secs(5));
    let after = snapshot(&state);

    let mut changed: Vec<String> = Vec::new();
    for (p, v) in &after {
        match before.get(p) {
            None => changed.push(format!("new: {}", p.display())),
            Some(old) if old != v => changed.push(format!("changed: {}", p.display())),
            Some(_) => {}
        }
    }
    for p in before.keys().filter(|p| !after.contains_key(*p)) {
        changed.push(format!("removed: {}", p.display()));
    }
    assert!(
        changed.is_empty(),
        "steady state wrote to the state dir: {changed:#?}"
    );
    // The service was up for the whole window (and so ran its 1 s upkeep ticks).
    assert!(
        run.0.try_wait().unwrap().is_none(),
        "gatecert run exited during the window"
    );
    eprintln!(
        "flash: {} paths under the state dir unchanged over 5 ticks of 1 s",
        after.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
