//! A per-process scratch directory for targets that need files (`/dev/shm` when there is one),
//! with leftovers of earlier, dead fuzz processes removed (libFuzzer exits without cleanup).

use std::path::{Path, PathBuf};

/// `<shm or tmp>/gatecert-fuzz-<tag>-<pid>`, created empty.
pub fn dir(tag: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let prefix = format!("gatecert-fuzz-{tag}-");
    if let Ok(entries) = std::fs::read_dir(&base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix(&prefix) else {
                continue;
            };
            if !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    let dir = base.join(format!("{prefix}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
