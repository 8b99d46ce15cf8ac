//! Clock trust: never issue or renew on a clock that is obviously wrong.
//!
//! Routers without an RTC boot at 1970 or at their firmware's build date until NTP answers. A
//! certificate tool that trusts that clock issues certificates valid in the past, or decides a good
//! certificate has expired (Azure iotedge #4062). gatecert refuses to issue or renew while the
//! clock is earlier than the newest of:
//! - its own build time (`SOURCE_DATE_EPOCH` when set at build, else the build's wall clock),
//! - the last time it trusted the clock (persisted in `<state_dir>/clock`, rewritten at most once a
//!   day, so flash is not worn),
//! - the local CA certificate's notBefore.
//!
//! It resumes by itself once the clock passes that floor, or at once when the NTP hotplug hook
//! signals stratum by creating [`NTP_FLAG`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::store;

/// Created by the OpenWrt NTP hotplug hook on `ACTION=stratum`: NTP has synchronised the clock.
pub const NTP_FLAG: &str = "/var/run/gatecert/clock-trusted";

/// The build time this binary carries.
pub const BUILD_TIME: &str = env!("GATECERT_BUILD_TIME");

const REWRITE_AFTER: i64 = 86_400;

/// 2026-11-01T00:00:00Z, before gatecert's first line was written: a CA whose root notBefore
/// is earlier was created by a clock that was wrong (see
/// [`crate::ca::LocalCa::made_with_bad_clock`]).
pub const EPOCH: i64 = 1_793_491_200;

/// Where a floor came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorSource {
    /// The binary's build time.
    Build,
    /// The last time the clock was trusted.
    LastTrusted,
    /// The local CA certificate's notBefore.
    CaNotBefore,
}

impl FloorSource {
    fn as_str(self) -> &'static str {
        match self {
            FloorSource::Build => "gatecert's build time",
            FloorSource::LastTrusted => "the last time the clock was trusted",
            FloorSource::CaNotBefore => "the local CA certificate's notBefore",
        }
    }
}

/// The clock is before the floor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untrusted {
    /// What the clock says.
    pub now: i64,
    /// The floor it must reach.
    pub floor: i64,
    /// Which fact set the floor.
    pub source: FloorSource,
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the system clock ({}) is earlier than {} ({}); refusing to issue or renew until the \
             clock is set (NTP) — no certificate was changed",
            crate::crypto::rfc3339(self.now),
            self.source.as_str(),
            crate::crypto::rfc3339(self.floor)
        )
    }
}

impl std::error::Error for Untrusted {}

/// Proof that the clock was trusted: the only way to get one is [`ClockTrust::check`] (tests
/// aside), and every signing or creating call of the local CA ([`crate::ca::LocalCa::init`],
/// [`crate::ca::LocalCa::issue`], [`crate::ca::LocalCa::issue_with_new_key`]) and every ACME
/// order (`renew`) takes one, so a new caller cannot skip the clock gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedNow {
    now: i64,
}

impl TrustedNow {
    /// The trusted time, Unix seconds.
    pub fn unix(self) -> i64 {
        self.now
    }

    /// A trusted time for unit tests, which build CAs and leaves at chosen instants.
    #[cfg(test)]
    pub fn for_tests(now: i64) -> TrustedNow {
        TrustedNow { now }
    }
}

/// The clock-trust state of one state directory.
#[derive(Clone, Debug)]
pub struct ClockTrust {
    file: PathBuf,
    ntp_flag: PathBuf,
    last_trusted: Option<i64>,
    ca_not_before: Option<i64>,
    build: i64,
}

/// `<state_dir>/clock`: the last trusted time, written at most once a day.
pub fn clock_path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("clock")
}

impl ClockTrust {
    /// Reads `<state_dir>/clock` (a missing or unreadable file means "never trusted").
    pub fn load(state_dir: &Path, ca_not_before: Option<i64>) -> ClockTrust {
        let file = clock_path_in(state_dir);
        let last_trusted = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        ClockTrust {
            file,
            ntp_flag: PathBuf::from(NTP_FLAG),
            last_trusted,
            ca_not_before,
            build: BUILD_TIME.parse().unwrap_or(0),
        }
    }

    /// Uses another NTP flag path (tests).
    pub fn with_ntp_flag(mut self, path: PathBuf) -> ClockTrust {
        self.ntp_flag = path;
        self
    }

    /// The newest of the known facts, and which one it is.
    pub fn floor(&self) -> (i64, FloorSource) {
        let mut best = (self.build, FloorSource::Build);
        for (t, s) in [
            (self.last_trusted, FloorSource::LastTrusted),
            (self.ca_not_before, FloorSource::CaNotBefore),
        ] {
            if let Some(t) = t {
                if t > best.0 {
                    best = (t, s);
                }
            }
        }
        best
    }

    /// Whether NTP has signalled that the clock is synchronised.
    pub fn ntp_synced(&self) -> bool {
        self.ntp_flag.exists()
    }

    /// `Ok` when `now` may be trusted for issuing and renewing; records it (at most once a day).
    pub fn check(&mut self, now: i64) -> Result<TrustedNow, Untrusted> {
        let (floor, source) = self.floor();
        if now < floor && !self.ntp_synced() {
            return Err(Untrusted { now, floor, source });
        }
        self.record(now);
        Ok(TrustedNow { now })
    }

    /// Persists `now` as trusted if the stored value is more than a day old. Flash wear: at most
    /// one small write a day, none in a steady state within the day.
    fn record(&mut self, now: i64) {
        if self
            .last_trusted
            .is_some_and(|t| now - t < REWRITE_AFTER && now >= t)
        {
            return;
        }
        if store::write_atomic(&self.file, now.to_string().as_bytes(), store::PUBLIC).is_ok() {
            self.last_trusted = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("gatecert-trust-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A year after this binary was built: always above the build floor.
    fn now() -> i64 {
        BUILD_TIME.parse::<i64>().unwrap() + 365 * 86_400
    }

    #[test]
    fn refuses_1970_and_names_the_floor() {
        let d = dir("1970");
        let mut t = ClockTrust::load(&d, None).with_ntp_flag(d.join("nope"));
        let e = t.check(0).unwrap_err();
        assert_eq!(e.source, FloorSource::Build);
        let msg = e.to_string();
        assert!(msg.contains("1970-01-01T00:00:00Z"), "{msg}");
        assert!(msg.contains("build time"), "{msg}");
        assert!(!d.join("clock").exists(), "nothing written on refusal");
    }

    #[test]
    fn ca_not_before_raises_the_floor() {
        let d = dir("ca");
        let mut t = ClockTrust::load(&d, Some(now())).with_ntp_flag(d.join("nope"));
        let e = t.check(now() - 86_400).unwrap_err();
        assert_eq!(e.source, FloorSource::CaNotBefore);
        assert!(t.check(now() + 60).is_ok());
    }

    #[test]
    fn last_trusted_is_persisted_rarely() {
        let d = dir("rare");
        let mut t = ClockTrust::load(&d, None).with_ntp_flag(d.join("nope"));
        t.check(now()).unwrap();
        let f = d.join("clock");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), now().to_string());
        t.check(now() + 3_600).unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), now().to_string());
        t.check(now() + 90_000).unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            (now() + 90_000).to_string()
        );
        // a new process sees the floor
        let mut t2 = ClockTrust::load(&d, None).with_ntp_flag(d.join("nope"));
        assert_eq!(
            t2.check(now()).unwrap_err().source,
            FloorSource::LastTrusted
        );
    }

    #[test]
    fn ntp_flag_overrides_the_floor() {
        let d = dir("ntp");
        std::fs::write(d.join("flag"), b"").unwrap();
        let mut t = ClockTrust::load(&d, Some(now())).with_ntp_flag(d.join("flag"));
        assert!(t.ntp_synced());
        assert!(t.check(now() - 86_400).is_ok());
    }
}
