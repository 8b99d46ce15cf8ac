//! ACME Renewal Information ([RFC 9773]) for the leaves this server issued: the gateway tells
//! each leaf when to renew, spread over its lifetime so that leaves enrolled together do not all
//! come back at once.
//!
//! [RFC 9773]: https://www.rfc-editor.org/rfc/rfc9773

use serde_json::{json, Value};

use super::problem::Problem;
use super::state::Status;
use super::{json_response, AcmeServer, Denied};
use crate::broker::health;
use crate::crypto::{self, rfc3339};
use crate::http::Response;
use crate::leaves::{self, Inventory};

/// How long a client should wait before asking again (RFC 9773 §4.2 `Retry-After`), seconds.
pub const RETRY_AFTER: i64 = 6 * 3600;

/// The length of the "renew now" window of an interim leaf once the upstream is back, seconds.
pub const NOW_WINDOW: i64 = 300;

/// `Retry-After` while an interim leaf waits for the upstream to come back, seconds.
pub const INTERIM_RETRY_AFTER: i64 = 300;

/// The window for a leaf: an interim one (issued while the upstream was away) is told to renew
/// now once the upstream is back (`up_since`: up, and since when, as the broker last judged),
/// so it is upgraded to an upstream certificate without operator action; every other leaf gets
/// [`window`].
pub fn window_for(
    serial: &[u8],
    leaf: &leaves::Leaf,
    up_since: Option<i64>,
    now: i64,
) -> (i64, i64) {
    let back = up_since.is_some_and(|t| t > leaf.issued_at);
    if leaf.source == leaves::Source::Interim && back && leaf.not_after > now {
        // A window that closed a minute ago: RFC 9773 §4.2 has a client whose random pick
        // lies in the past renew at once, so every pick means "now" (also for a leaf whose
        // clock lags ours by up to a minute). A window reaching into the future would leave a
        // cron-run client (`gatecert renew`) "not due" until its next run.
        return (now - NOW_WINDOW - 60, now - 60);
    }
    window(serial, leaf.issued_at, leaf.not_after)
}

/// The suggested window for a leaf issued at `issued` that expires at `not_after`: it opens
/// between 2/3 and 3/4 of the lifetime, at a point fixed by the serial, and lasts 1/12 of it.
pub fn window(serial: &[u8], issued: i64, not_after: i64) -> (i64, i64) {
    let life = (not_after - issued).max(12);
    let spread = life / 12;
    let h = crypto::sha256(serial);
    let offset = i64::from(u16::from_be_bytes([h[0], h[1]])) * spread / 65_536;
    let start = issued + life * 2 / 3 + offset;
    (start, start + spread)
}

/// A certID (RFC 9773 §4.1): `base64url(AKI keyIdentifier) "." base64url(serial)`, decoded.
fn parse_cert_id(cert_id: &str) -> Option<(Vec<u8>, Vec<u8>)> {
    let (aki, serial) = cert_id.split_once('.')?;
    Some((
        crypto::b64url_decode(aki).ok()?,
        crypto::b64url_decode(serial).ok()?,
    ))
}

impl AcmeServer {
    /// newOrder's `replaces` (RFC 9773 §5): the certID of a certificate the ordering device
    /// holds now (issued here or brokered), sharing a name with the order, and not replaced
    /// by another live (unexpired, not invalid) order. Returns (the certID, the serial in hex). A certificate the device
    /// no longer holds as its current one, or that another pending order replaces, is
    /// `alreadyReplaced` (409, §5 MUST); anything else the order cannot honour is `malformed`.
    pub(super) fn replaced(
        &self,
        device: &str,
        v: &Value,
        names: &[(String, bool)],
        now: i64,
    ) -> Result<(String, String), Denied> {
        let refuse = |why: String| {
            Denied::audited(Problem::malformed(format!("replaces: {why} (RFC 9773 5)")))
                .device(device)
        };
        let cert_id = v
            .as_str()
            .ok_or_else(|| refuse("must be a certID string".into()))?;
        let (_, serial) = parse_cert_id(cert_id)
            .ok_or_else(|| refuse("the certID is base64url(AKI).base64url(serial)".into()))?;
        let hex = crypto::hex(&serial);
        let inv = Inventory::open(&leaves::path_in(&self.state_dir))
            .map_err(|e| Denied::from(Problem::internal(e)))?;
        let row = inv
            .by_device(device)
            .filter(|l| l.certs().any(|h| crypto::same_serial(&h.serial, &hex)))
            .ok_or_else(|| refuse(format!("{hex} is not a certificate of device {device}")))?;
        if !names.iter().any(|(n, _)| row.names.contains(n)) {
            return Err(refuse(format!("{hex} shares no name with the order")));
        }
        let pending = self.orders.orders.values().any(|o| {
            o.status != Status::Invalid
                && o.expires > now
                && o.replaces
                    .as_ref()
                    .is_some_and(|r| crypto::same_serial(&r.1, &hex))
        });
        if pending || !crypto::same_serial(&row.serial, &hex) {
            return Err(Denied::audited(Problem::new(
                "alreadyReplaced",
                409,
                format!("{hex} was already replaced (RFC 9773 5)"),
            ))
            .device(device));
        }
        Ok((cert_id.to_owned(), crypto::serial_display(&hex)))
    }

    /// `GET /acme/renewal-info/<certID>` (RFC 9773 §4.1), unauthenticated: the certID is
    /// `base64url(AKI keyIdentifier) "." base64url(serial)`.
    pub(super) fn renewal_info(&self, cert_id: &str, brokered: bool) -> Result<Response, Problem> {
        let bad =
            || Problem::malformed("the certID is base64url(AKI).base64url(serial) (RFC 9773 4.1)");
        let (aki, serial) = parse_cert_id(cert_id).ok_or_else(bad)?;
        let unknown = || {
            Problem::new(
                "malformed",
                404,
                "no certificate of this CA has that certID",
            )
        };
        // A leaf of an intermediate replaced by `gatecert ca rotate` is told to renew now.
        let replaced = self.ca.previous_by_aki(&aki);
        if replaced.is_none() && self.ca.intermediate().ski.as_deref() != Some(aki.as_slice()) {
            return Err(unknown());
        }
        let hex = crypto::hex(&serial);
        let inv = Inventory::open(&leaves::path_in(&self.state_dir)).map_err(Problem::internal)?;
        let leaf = inv.by_serial(&hex).ok_or_else(unknown)?;
        // The device's certificate must be one the replaced intermediate could have signed:
        // issued before the rotation (or before a running service noticed it).
        let replaced = match replaced {
            Some(g) if leaf.issued_at > g.rotated_at + crate::ca::rotate::RETIRE_SLACK => {
                return Err(unknown())
            }
            g => g.is_some(),
        };
        let now = self.clock.now();
        // The upstream's health as the broker last recorded it (written on every change): up
        // since after this leaf was issued means it came back.
        let up_since = match brokered && health::path_in(&self.state_dir).exists() {
            true => Some(health::Health::load(&self.state_dir, now))
                .filter(|h| h.state == health::State::Up)
                .map(|h| h.since),
            false => None,
        };
        let (start, end) = match replaced && leaf.not_after > now {
            true => (now - 60, now + 300),
            false => window_for(&serial, &leaf, up_since, now),
        };
        // An interim leaf asks again soon: the upstream may come back.
        let retry = match leaf.source {
            leaves::Source::Interim => INTERIM_RETRY_AFTER,
            _ => RETRY_AFTER,
        };
        Ok(json_response(
            200,
            &json!({"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}),
        )
        .header("Retry-After", &retry.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::{window, window_for};
    use crate::leaves::{Leaf, Source};

    #[test]
    fn an_interim_leaf_renews_now_once_the_upstream_is_up() {
        let leaf = |source| Leaf::new("d", vec!["d.local".into()], "01", 1000 + 3600, source, 1000);
        let now = 1200;
        let (s, e) = window_for(&[1], &leaf(Source::Interim), Some(1100), now);
        // Wholly in the past: any pick in it is "renew at once" (RFC 9773 §4.2).
        assert!(s < e && e < now, "{s} {e}");
        // Upstream away, up since before the interim leaf (never judged to have gone away), or
        // a leaf that is not interim: the usual window.
        for (source, up) in [
            (Source::Interim, None),
            (Source::Interim, Some(900)),
            (Source::Upstream, Some(1100)),
            (Source::Local, Some(1100)),
        ] {
            assert_eq!(
                window_for(&[1], &leaf(source), up, now),
                window(&[1], 1000, 4600)
            );
        }
    }

    #[test]
    fn windows_fall_in_the_last_third_and_are_spread() {
        let mut starts = std::collections::BTreeSet::new();
        for i in 0u8..50 {
            let (s, e) = window(&[i, 7, 9], 1000, 1000 + 86_400);
            assert!(
                s >= 1000 + 57_600 && e <= 1000 + 86_400 * 3 / 4 + 7_200,
                "{s} {e}"
            );
            assert_eq!(e - s, 7_200);
            starts.insert(s);
        }
        assert!(
            starts.len() > 40,
            "windows are not spread: {}",
            starts.len()
        );
    }
}
