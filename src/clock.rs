//! Time as gatecert sees it: Unix seconds from an injectable clock.
//!
//! Production code asks a [`Clock`] for the time, never `SystemTime` directly, so tests can set
//! the clock (renewal windows, alert windows, a router that booted in 1970) without sleeping.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time, in Unix seconds.
pub trait Clock: Send + Sync {
    /// Now, in Unix seconds.
    fn now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs() as i64,
            // A clock before 1970 is as untrustworthy as 1970 itself.
            Err(_) => 0,
        }
    }
}

/// A clock that says what it is told. For tests, and for `GATECERT_FAKE_NOW` in integration tests.
///
/// A `Mutex<i64>` rather than an `AtomicI64`: 32-bit MIPS has no 64-bit atomics.
#[derive(Debug, Default)]
pub struct FixedClock(Mutex<i64>);

impl FixedClock {
    /// A clock stopped at `unix`.
    pub fn new(unix: i64) -> Self {
        FixedClock(Mutex::new(unix))
    }

    /// Sets the time.
    pub fn set(&self, unix: i64) {
        *self.lock() = unix;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, i64> {
        // A poisoned clock still holds a valid i64; keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the time forward by `secs`.
    pub fn advance(&self, secs: i64) {
        *self.lock() += secs;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        *self.lock()
    }
}

/// A clock read from a file holding Unix seconds, re-read at every call: integration tests move
/// a running service's clock with it (`GATECERT_FAKE_NOW_FILE`). An unreadable or malformed
/// file reads as 0 (1970), which the clock-trust floor refuses.
#[derive(Debug)]
pub struct FileClock(std::path::PathBuf);

impl Clock for FileClock {
    fn now(&self) -> i64 {
        std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// The clock the binary uses: the system clock, unless `GATECERT_FAKE_NOW` (Unix seconds) is set,
/// which integration tests use to drive renewal and clock-trust states without sleeping, or
/// `GATECERT_FAKE_NOW_FILE` (a file holding Unix seconds, re-read at every call) is set, which
/// they use to move a running service's clock. Both are honoured only when set in the
/// environment of the process; nothing in the state directory or config can set them.
pub fn from_env() -> Box<dyn Clock> {
    if let Some(path) = std::env::var_os("GATECERT_FAKE_NOW_FILE").filter(|p| !p.is_empty()) {
        return Box::new(FileClock(path.into()));
    }
    match std::env::var("GATECERT_FAKE_NOW")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(t) => Box::new(FixedClock::new(t)),
        None => Box::new(SystemClock),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_moves_only_when_told() {
        let c = FixedClock::new(100);
        assert_eq!(c.now(), 100);
        c.advance(50);
        assert_eq!(c.now(), 150);
        c.set(7);
        assert_eq!(c.now(), 7);
    }

    #[test]
    fn file_clock_rereads_its_file() {
        let path = std::env::temp_dir().join(format!("gatecert-fileclock-{}", std::process::id()));
        std::fs::write(&path, "3600\n").unwrap();
        let c = FileClock(path.clone());
        assert_eq!(c.now(), 3600);
        std::fs::write(&path, "1800000000").unwrap();
        assert_eq!(c.now(), 1_800_000_000);
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(c.now(), 0);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800);
    }
}
