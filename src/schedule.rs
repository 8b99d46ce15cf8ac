//! When to renew: ARI windows (RFC 9773), the lifetime rule, per-device jitter, and backoff.
//!
//! Everything here is pure arithmetic on Unix seconds; the caller passes `now` from a
//! [`crate::clock::Clock`], so tests set the clock instead of sleeping.
//!
//! The rule without ARI: renew when less than 1/3 of the lifetime is left, or 1/2 for lifetimes
//! under 10 days (so 6-day and 24-hour certificates renew with half their life left, as Let's
//! Encrypt advises for short-lived certificates). A per-device jitter moves that point earlier
//! by up to 1/20 of the lifetime (capped at 1 day), so a fleet that was provisioned on the same
//! day does not renew in the same minute. The jitter is derived from a device seed and the
//! certificate's serial, so it is stable across restarts without being written anywhere.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::{Deserialize, Serialize};

use crate::crypto;

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;

/// ARI re-poll bounds: a renewalInfo `Retry-After` is obeyed within `[MIN, MAX]`; without one
/// the client asks again after [`ARI_POLL_DEFAULT`]. RFC 9773 §4.3: clients should not poll
/// more often than the Retry-After asks, and should clamp it to a reasonable range.
pub const ARI_POLL_MIN: i64 = HOUR;
/// See [`ARI_POLL_MIN`].
pub const ARI_POLL_MAX: i64 = DAY;
/// The re-poll interval when the renewalInfo response has no `Retry-After`.
pub const ARI_POLL_DEFAULT: i64 = 6 * HOUR;

/// Seconds until renewalInfo may be fetched again, from the response's `Retry-After`.
pub fn ari_poll_delay(retry_after: Option<i64>) -> i64 {
    retry_after
        .unwrap_or(ARI_POLL_DEFAULT)
        .clamp(ari_poll_min(), ARI_POLL_MAX)
}

/// [`ARI_POLL_MIN`], or (test-only) `GATECERT_ARI_POLL_MIN_SECS` (at least 1), read once: the
/// closed-loop ARI test (tests/ari_loop.rs) has its test double ask for a `Retry-After` of
/// seconds and watches `gatecert run` follow it. Like the other `GATECERT_*` test hooks it is
/// honoured only from the process's environment; nothing in the config or state can set it.
fn ari_poll_min() -> i64 {
    static MIN: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("GATECERT_ARI_POLL_MIN_SECS")
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .map_or(ARI_POLL_MIN, |s| s.clamp(1, ARI_POLL_MIN))
    })
}

/// Why a certificate is (or is not yet) due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No certificate is installed.
    Missing,
    /// `--force` was given.
    Forced,
    /// The certificate has expired (or is not yet valid by our clock).
    Expired,
    /// The ARI suggested window says so (RFC 9773 §4.2); `at` is our random pick in it.
    AriWindow,
    /// Less than the lifetime fraction is left.
    Lifetime,
    /// `gatecert revoke` revoked the installed certificate: replace it at once.
    Revoked,
}

impl Reason {
    /// A short phrase for status output.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Missing => "no certificate installed",
            Reason::Forced => "forced",
            Reason::Expired => "expired",
            Reason::AriWindow => "ARI window",
            Reason::Lifetime => "lifetime rule",
            Reason::Revoked => "revoked",
        }
    }
}

/// The decision for one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// When renewal is (or was) due, Unix seconds.
    pub at: i64,
    /// Why at that time.
    pub reason: Reason,
    /// When to look again before `at` (the next ARI poll): the CA may move the window.
    pub recheck: Option<i64>,
}

impl Decision {
    /// True when `now` has reached the renewal time.
    pub fn due(&self, now: i64) -> bool {
        now >= self.at
    }

    /// When the scheduler should next look at this certificate: the renewal time, or the
    /// next ARI poll if that comes first.
    pub fn wake_at(&self) -> i64 {
        self.recheck.map_or(self.at, |r| r.min(self.at))
    }
}

/// The fraction rule: the time at which less than 1/3 (1/2 under 10 days) of the lifetime is
/// left, moved earlier by this device's jitter.
pub fn lifetime_renew_at(not_before: i64, not_after: i64, jitter_seed: &[u8]) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let left = if lifetime < 10 * DAY {
        lifetime / 2
    } else {
        lifetime / 3
    };
    let spread = (lifetime / 20).min(DAY);
    not_after - left - jitter(jitter_seed, spread)
}

/// A stable pseudo-random offset in `0..spread` derived from `seed` (device + certificate).
pub fn jitter(seed: &[u8], spread: i64) -> i64 {
    if spread <= 0 {
        return 0;
    }
    let h = crypto::sha256(seed);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    (u64::from_le_bytes(b) % spread as u64) as i64
}

/// The renewal decision without ARI.
pub fn decide(not_before: i64, not_after: i64, now: i64, jitter_seed: &[u8]) -> Decision {
    if now >= not_after {
        return Decision {
            at: not_after,
            reason: Reason::Expired,
            recheck: None,
        };
    }
    Decision {
        at: lifetime_renew_at(not_before, not_after, jitter_seed),
        reason: Reason::Lifetime,
        recheck: None,
    }
}

/// The ARI suggested window (RFC 9773 §4.2), in Unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// `suggestedWindow.start`.
    pub start: i64,
    /// `suggestedWindow.end`.
    pub end: i64,
}

impl Window {
    /// RFC 9773 §4.2: "If the end of the window is not after the start, the client MUST treat
    /// this as though the server had not responded": an inverted or empty window is no window.
    pub fn usable(&self) -> bool {
        self.end > self.start
    }
}

/// Our random pick inside an ARI window, persisted until the window changes.
///
/// RFC 9773 §4.2: "the client SHOULD select a uniform random time within the suggested window".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AriChoice {
    /// The window the pick was made in.
    pub window: Window,
    /// The chosen renewal time.
    pub at: i64,
}

/// Keeps `previous` if it was drawn in the same window; otherwise draws a new uniform time in
/// `window` from the system RNG. A window whose end is in the past is due now (§4.2: "if the
/// suggested window ... is in the past, the client SHOULD attempt renewal immediately").
pub fn ari_choice(
    previous: Option<&AriChoice>,
    window: Window,
) -> Result<AriChoice, crypto::Error> {
    if let Some(p) = previous {
        if p.window == window {
            return Ok(*p);
        }
    }
    let span = (window.end - window.start).max(0) as u64;
    let at = window.start + crypto::random_below(span + 1)? as i64;
    Ok(AriChoice { window, at })
}

/// The latest time an ARI pick may schedule renewal: the last tenth of the lifetime is kept
/// for retries, so a window lying (partly or wholly) after notAfter never schedules renewal at
/// the moment of expiry.
pub fn ari_latest(not_before: i64, not_after: i64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    not_after - (lifetime / 10).max(60.min(lifetime))
}

/// The decision with an ARI choice: the pick wins, clamped into the lifetime
/// ([`ari_latest`]).
pub fn decide_with_ari(not_before: i64, not_after: i64, now: i64, choice: &AriChoice) -> Decision {
    if now >= not_after {
        return Decision {
            at: not_after,
            reason: Reason::Expired,
            recheck: None,
        };
    }
    Decision {
        at: choice.at.min(ari_latest(not_before, not_after)),
        reason: Reason::AriWindow,
        recheck: None,
    }
}

/// The decision `gatecert run` and `gatecert renew` take for a certificate: the ARI pick when
/// the CA gave a usable window ([`decide_with_ari`]), else the lifetime rule with jitter
/// ([`decide`]). The fleet simulation (`examples/fleet_sim.rs`) calls this same function.
pub fn decide_any(
    not_before: i64,
    not_after: i64,
    now: i64,
    jitter_seed: &[u8],
    ari: Option<&AriChoice>,
) -> Decision {
    match ari {
        Some(c) => decide_with_ari(not_before, not_after, now, c),
        None => decide(not_before, not_after, now, jitter_seed),
    }
}

/// When the upstream worker looks at a certificate that is not due: at the renewal time or
/// the next ARI poll, never sooner than a minute from `now` (with the test-only
/// `GATECERT_ARI_POLL_MIN_SECS`, never sooner than that when it is shorter).
pub fn next_look(decision: &Decision, now: i64) -> i64 {
    decision.wake_at().max(now + ari_poll_min().min(60))
}

/// Exponential backoff after `failures` consecutive failed attempts: 5 min, 10 min, 20 min, ...
/// capped at 6 h, and never more than 1/10 of the remaining lifetime (short-lived certificates
/// must get several tries before they expire), with up to 20% random jitter added. A server's
/// `Retry-After` wins when it asks for longer.
pub fn backoff(failures: u32, now: i64, not_after: Option<i64>, retry_after: Option<i64>) -> i64 {
    let mut delay = backoff_base(failures, now, not_after);
    let spread = (delay / 5).max(1) as u64;
    delay += crypto::random_below(spread).unwrap_or(0) as i64;
    if let Some(ra) = retry_after.filter(|&ra| ra > delay) {
        // Never sooner than the server asked, but not all at that second either: a fleet
        // refused by the same limit would come back as one herd (the fleet simulation showed
        // it). Up to 1/10 of the wait, at most an hour, is added.
        let spread = (ra / 10).clamp(1, HOUR) as u64;
        delay = ra + crypto::random_below(spread).unwrap_or(0) as i64;
    }
    now + delay
}

/// [`backoff`]'s delay without the jitter: the least a failing certificate waits after its
/// `failures`-th consecutive failure at `now`. `gatecert renew` from cron checks it against the
/// last recorded failure, so a failing renewal does not place an order on every cron run.
pub fn backoff_base(failures: u32, now: i64, not_after: Option<i64>) -> i64 {
    let exp = 5 * 60i64.saturating_mul(1 << failures.saturating_sub(1).min(12));
    let mut delay = exp.min(6 * HOUR);
    // Once expired there is nothing left to save by hurrying: the plain exponential backoff
    // applies (retrying every minute would hammer a CA that refuses us, e.g. by rate limit).
    if let Some(na) = not_after.filter(|&na| na > now) {
        delay = delay.min(((na - now) / 10).max(60));
    }
    delay
}

/// The renewal engine's queue: certificate names keyed on their next renewal time, soonest
/// first (a min-heap, as Azure iot-identity-service's cert renewal engine keeps it).
#[derive(Debug, Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(i64, String)>>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Self {
        Queue::default()
    }

    /// Schedules `name` at `at`, replacing any earlier entry for it.
    pub fn schedule(&mut self, name: &str, at: i64) {
        self.heap.retain(|Reverse((_, n))| n != name);
        self.heap.push(Reverse((at, name.to_owned())));
    }

    /// The soonest time anything is due.
    pub fn next_at(&self) -> Option<i64> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the names due at `now`.
    pub fn pop_due(&mut self, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((_, name))) = self.heap.pop() {
                out.push(name);
            }
        }
        out
    }

    /// Number of scheduled certificates.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_867_200; // 2026-11-28T12:00:00Z

    /// Table: lifetime → how much life is left when renewal becomes due (before jitter).
    #[test]
    fn lifetime_rule_table() {
        let cases = [
            // (lifetime, left at renewal)
            (90 * DAY, 30 * DAY),
            (10 * DAY, 10 * DAY / 3),
            (6 * DAY, 3 * DAY),
            (DAY, 12 * HOUR),
        ];
        for (lifetime, left) in cases {
            let at = lifetime_renew_at(T0, T0 + lifetime, b"");
            let j = jitter(b"", (lifetime / 20).min(DAY));
            assert_eq!(T0 + lifetime - at - j, left, "lifetime {lifetime}");
        }
    }

    /// A 24-hour certificate is not due after 11 hours, and is due after 12 hours, for any seed:
    /// the jitter (≤ 1/20 of 24 h = 72 min) only ever moves renewal earlier.
    #[test]
    fn one_day_certificate_to_the_hour() {
        for seed in [&b"dev-a"[..], b"dev-b", b"dev-c", b""] {
            let nb = T0;
            let na = T0 + DAY;
            let d = decide(nb, na, nb + 10 * HOUR, seed);
            assert!(!d.due(nb + 10 * HOUR), "{seed:?}");
            assert!(d.due(nb + 12 * HOUR), "{seed:?}");
            assert_eq!(d.reason, Reason::Lifetime);
            assert!(d.at >= nb + 12 * HOUR - 72 * 60);
        }
    }

    #[test]
    fn six_day_certificate_renews_at_half_life() {
        let nb = T0;
        let na = T0 + 6 * DAY;
        let d = decide(nb, na, nb, b"gw1");
        assert!(!d.due(nb + 2 * DAY + 12 * HOUR));
        assert!(d.due(nb + 3 * DAY));
    }

    #[test]
    fn ninety_day_certificate_renews_with_a_third_left() {
        let d = decide(T0, T0 + 90 * DAY, T0, b"gw1");
        assert!(!d.due(T0 + 58 * DAY));
        assert!(d.due(T0 + 60 * DAY));
    }

    #[test]
    fn expired_is_due_now() {
        let d = decide(T0, T0 + DAY, T0 + 2 * DAY, b"x");
        assert_eq!(d.reason, Reason::Expired);
        assert!(d.due(T0 + 2 * DAY));
    }

    #[test]
    fn jitter_differs_across_devices_and_is_stable() {
        let a = jitter(b"device-a/gateway", DAY);
        assert_eq!(a, jitter(b"device-a/gateway", DAY));
        let distinct: std::collections::HashSet<i64> = (0..50)
            .map(|i| jitter(format!("device-{i}").as_bytes(), DAY))
            .collect();
        assert!(distinct.len() > 40);
        assert!(distinct.iter().all(|j| (0..DAY).contains(j)));
    }

    #[test]
    fn ari_choice_is_in_window_and_kept_until_window_changes() {
        let w = Window {
            start: T0,
            end: T0 + 2 * HOUR,
        };
        let c = ari_choice(None, w).unwrap();
        assert!((w.start..=w.end).contains(&c.at));
        for _ in 0..20 {
            assert_eq!(ari_choice(Some(&c), w).unwrap(), c);
        }
        let w2 = Window {
            start: T0 + DAY,
            end: T0 + DAY + HOUR,
        };
        let c2 = ari_choice(Some(&c), w2).unwrap();
        assert_eq!(c2.window, w2);
        assert!((w2.start..=w2.end).contains(&c2.at));
    }

    /// Uniformity, coarsely: 2,000 draws over a 10-bucket window fill every bucket.
    #[test]
    fn ari_choice_spreads_over_the_window() {
        let w = Window {
            start: 0,
            end: 9_999,
        };
        let mut buckets = [0u32; 10];
        for _ in 0..2_000 {
            let c = ari_choice(None, w).unwrap();
            buckets[(c.at / 1_000) as usize] += 1;
        }
        assert!(buckets.iter().all(|&b| b > 100), "{buckets:?}");
    }

    #[test]
    fn ari_past_window_is_due_and_never_after_expiry() {
        let c = AriChoice {
            window: Window {
                start: T0 - 2 * DAY,
                end: T0 - DAY,
            },
            at: T0 - DAY - 5,
        };
        let d = decide_with_ari(T0 - 5 * DAY, T0 + DAY, T0, &c);
        assert!(d.due(T0));
        assert_eq!(d.reason, Reason::AriWindow);
    }

    /// Issue 18: a valid window lying after notAfter must not schedule renewal at the moment
    /// of expiry; the pick is clamped into the lifetime, leaving its last tenth for retries.
    #[test]
    fn ari_window_after_expiry_is_clamped_into_the_lifetime() {
        let (nb, na) = (T0, T0 + 90 * DAY);
        let late = AriChoice {
            window: Window {
                start: na + DAY,
                end: na + 2 * DAY,
            },
            at: na + DAY,
        };
        let d = decide_with_ari(nb, na, T0, &late);
        assert_eq!(d.at, na - 9 * DAY);
        // Six-day certificate, window straddling notAfter: still 14.4 h before expiry.
        let (nb, na) = (T0, T0 + 6 * DAY);
        let straddle = AriChoice {
            window: Window {
                start: na - HOUR,
                end: na + HOUR,
            },
            at: na,
        };
        assert_eq!(decide_with_ari(nb, na, T0, &straddle).at, na - 6 * DAY / 10);
        // A pick inside the lifetime is left alone.
        let fine = AriChoice {
            window: Window {
                start: T0 + DAY,
                end: T0 + 2 * DAY,
            },
            at: T0 + DAY + 5,
        };
        assert_eq!(decide_with_ari(nb, na, T0, &fine).at, T0 + DAY + 5);
    }

    /// RFC 9773 §4.2 MUST: end before start, or end = start, is no window.
    #[test]
    fn inverted_and_empty_windows_are_not_usable() {
        assert!(!Window { start: 10, end: 5 }.usable());
        assert!(!Window { start: 10, end: 10 }.usable());
        assert!(Window { start: 10, end: 11 }.usable());
    }

    #[test]
    fn ari_poll_delay_is_clamped_with_a_six_hour_default() {
        assert_eq!(ari_poll_delay(None), 6 * HOUR);
        assert_eq!(ari_poll_delay(Some(0)), HOUR);
        assert_eq!(ari_poll_delay(Some(2 * HOUR)), 2 * HOUR);
        assert_eq!(ari_poll_delay(Some(30 * DAY)), DAY);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let b1 = backoff(1, T0, None, None) - T0;
        assert!((300..=360).contains(&b1), "{b1}");
        let b3 = backoff(3, T0, None, None) - T0;
        assert!((1200..=1440).contains(&b3), "{b3}");
        let b20 = backoff(20, T0, None, None) - T0;
        assert!((6 * HOUR..=6 * HOUR * 12 / 10).contains(&b20), "{b20}");
        // short-lived: 2 h left → at most 12 min (+20%)
        let short = backoff(20, T0, Some(T0 + 2 * HOUR), None) - T0;
        assert!(short <= 12 * 60 * 12 / 10, "{short}");
        let ra = backoff(1, T0, None, Some(7_200)) - T0;
        assert!((7_200..7_920).contains(&ra), "{ra}");
    }

    /// Issue 18 (found by the fleet simulation): devices refused with the same Retry-After do
    /// not all come back in the same second; none comes back sooner than asked.
    #[test]
    fn retry_after_is_honoured_with_a_spread() {
        let picks: std::collections::HashSet<i64> = (0..200)
            .map(|_| backoff(3, T0, None, Some(3 * HOUR)) - T0)
            .collect();
        assert!(picks
            .iter()
            .all(|d| (3 * HOUR..3 * HOUR + 1_080).contains(d)));
        assert!(picks.len() > 100, "{}", picks.len());
    }

    /// Issue 18 (found by the fleet simulation): an expired certificate's retries do not fall
    /// to one a minute; they back off as if no expiry were known.
    #[test]
    fn backoff_after_expiry_is_not_a_retry_every_minute() {
        let b = backoff(20, T0, Some(T0 - DAY), None) - T0;
        assert!((6 * HOUR..=6 * HOUR * 12 / 10).contains(&b), "{b}");
        let b1 = backoff(1, T0, Some(T0 - DAY), None) - T0;
        assert!((300..=360).contains(&b1), "{b1}");
    }

    #[test]
    fn queue_pops_soonest_first_and_reschedules() {
        let mut q = Queue::new();
        q.schedule("b", 20);
        q.schedule("a", 10);
        q.schedule("c", 30);
        q.schedule("c", 5);
        assert_eq!(q.len(), 3);
        assert_eq!(q.next_at(), Some(5));
        assert_eq!(q.pop_due(20), vec!["c", "a", "b"]);
        assert!(q.is_empty());
    }
}
