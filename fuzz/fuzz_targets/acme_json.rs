//! What an ACME server sends, on arbitrary bytes: every response type in `acme::types`
//! deserialized from the body (RFC 8555 §7.1, RFC 9773 §4.2, RFC 7807 problems), and the same
//! bytes as `Retry-After` (RFC 9110 §10.2.3) and `Link` (RFC 8288) header values. Never panics;
//! a Retry-After is a delay callers can add to the clock; a Link target is in the header.
#![no_main]

use libfuzzer_sys::fuzz_target;

use gatecert::acme::transport::Response;
use gatecert::acme::types::{
    Account, Authorization, Challenge, Directory, Identifier, Order, Problem, RenewalInfo,
    RevocationReason,
};
use gatecert::acme::{links, retry_after};

/// Deserializes `T` and formats what Display/Debug there is: no panic either way.
fn json<T: serde::de::DeserializeOwned + std::fmt::Debug>(data: &[u8]) -> Option<T> {
    let v = serde_json::from_slice::<T>(data).ok()?;
    let _ = format!("{v:?}");
    Some(v)
}

fuzz_target!(|data: &[u8]| {
    let _ = json::<Directory>(data);
    let _ = json::<Account>(data);
    let _ = json::<Order>(data).map(|o| {
        for id in &o.identifiers {
            let _ = id.to_string();
        }
    });
    let _ = json::<Authorization>(data);
    let _ = json::<Challenge>(data);
    if let Some(p) = json::<Problem>(data) {
        let _ = p.to_string();
        let _ = p.is("badNonce");
    }
    let _ = json::<RenewalInfo>(data);
    if let Some(id) = json::<Identifier>(data) {
        let _ = id.to_string();
        let _ = id.value();
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(RevocationReason(code)) = RevocationReason::parse(text) {
        assert!(matches!(code, 0..=6 | 9 | 10), "reason {code}");
    }
    let resp = Response {
        status: 503,
        headers: vec![
            ("retry-after".into(), text.into()),
            ("link".into(), text.into()),
        ],
        body: Vec::new(),
    };
    // 1970, today, and 2100: a Retry-After is added to the clock by every caller.
    for now in [0, 1_795_867_200, 4_102_444_800] {
        if let Some(secs) = retry_after(&resp, now) {
            assert!(secs >= 0, "negative delay {secs}");
            assert!(now.checked_add(secs).is_some(), "now + {secs} overflows");
        }
    }
    for rel in ["alternate", "up", "index"] {
        for target in links(&resp, rel) {
            assert!(
                text.contains(&format!("<{target}>")),
                "{target:?} not in {text:?}"
            );
        }
    }
});
