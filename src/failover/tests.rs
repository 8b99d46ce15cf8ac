use super::*;
use crate::acme::types::Problem;

const T0: i64 = 1_700_000_000;
const DAY: i64 = 86_400;

fn problem(kind: &str, status: u16, retry_after: Option<i64>) -> renew::Error {
    renew::Error::Acme(acme::Error::Problem {
        url: "https://ca.test/new-order".into(),
        problem: Box::new(Problem {
            kind: Some(format!("urn:ietf:params:acme:error:{kind}")),
            status: Some(status),
            ..Problem::default()
        }),
        retry_after,
    })
}

#[test]
fn client_side_errors_never_fail_over() {
    let far = T0 - DAY; // the deadline has passed: anything that may fail over would
    for e in [
        problem("malformed", 400, None),
        problem("rejectedIdentifier", 400, None),
        problem("badCSR", 400, None),
        renew::Error::Config("certificate 'gw' has no domain and no ip".into()),
        renew::Error::KeyMismatch,
    ] {
        let f = classify(&e);
        assert_eq!(f, Failure::Stay, "{e}");
        let mut s = Streak::default();
        assert_eq!(judge(&f, &mut s, T0, far), None, "{e}");
        assert_eq!(s.failures, 0, "{e}");
    }
}

#[test]
fn account_eab_and_caa_fail_over_at_once() {
    for (kind, want) in [
        ("unauthorized", Reason::Account),
        ("accountDoesNotExist", Reason::Account),
        ("externalAccountRequired", Reason::Account),
        ("caa", Reason::Caa),
    ] {
        let f = classify(&problem(kind, 403, None));
        let mut s = Streak::default();
        assert_eq!(judge(&f, &mut s, T0, T0 + 30 * DAY), Some(want), "{kind}");
    }
    assert_eq!(
        classify(&problem("unauthorized", 403, None)),
        Failure::Account("unauthorized".into())
    );
    // CAA as a failed authorization's subproblem.
    let failed = renew::Error::Acme(acme::Error::Failed {
        what: "authorization for gw.test is Invalid".into(),
        url: "https://ca.test/authz/1".into(),
        problem: Some(Box::new(Problem {
            kind: Some("urn:ietf:params:acme:error:compound".into()),
            subproblems: vec![crate::acme::types::Subproblem {
                kind: Some("urn:ietf:params:acme:error:caa".into()),
                ..Default::default()
            }],
            ..Problem::default()
        })),
    });
    assert_eq!(classify(&failed), Failure::Caa);
}

#[test]
fn an_outage_fails_over_after_three_failures_spanning_thirty_minutes() {
    let deadline = T0 + 20 * DAY;
    let mut s = Streak::default();
    let f = Failure::Unreachable;
    assert_eq!(judge(&f, &mut s, T0, deadline), None);
    assert_eq!(judge(&f, &mut s, T0 + 60, deadline), None);
    // Three in a row, but within a minute: a blip, not an outage.
    assert_eq!(judge(&f, &mut s, T0 + 120, deadline), None);
    assert_eq!(s.failures, 3);
    assert_eq!(judge(&f, &mut s, T0 + OUTAGE_SPAN - 1, deadline), None);
    assert_eq!(
        judge(&f, &mut s, T0 + OUTAGE_SPAN, deadline),
        Some(Reason::Unreachable)
    );
    // serverInternal (and any 5xx) counts the same way.
    assert_eq!(
        classify(&problem("serverInternal", 500, None)),
        Failure::ServerError
    );
    let mut s = Streak::default();
    for i in 0..2 {
        assert_eq!(
            judge(
                &Failure::ServerError,
                &mut s,
                T0 + i * OUTAGE_SPAN,
                deadline
            ),
            None
        );
    }
    assert_eq!(
        judge(
            &Failure::ServerError,
            &mut s,
            T0 + 2 * OUTAGE_SPAN,
            deadline
        ),
        Some(Reason::ServerError)
    );
}

#[test]
fn past_the_deadline_an_outage_fails_over_at_the_first_failure() {
    // No certificate yet: the deadline is now.
    let d = deadline(None, T0);
    assert_eq!(d, T0);
    let mut s = Streak::default();
    assert_eq!(
        judge(&Failure::Unreachable, &mut s, T0, d),
        Some(Reason::Unreachable)
    );
    // A 90-day certificate: the deadline is 15 days before notAfter.
    assert_eq!(deadline(Some((T0, T0 + 90 * DAY)), T0), T0 + 75 * DAY);
    assert_eq!(deadline(Some((T0, T0 + 6 * DAY)), T0), T0 + 5 * DAY);
}

#[test]
fn a_rate_limit_fails_over_only_when_it_outlasts_the_deadline() {
    let d = T0 + 10 * DAY;
    let mut s = Streak::default();
    let soon = classify(&problem("rateLimited", 429, Some(7 * DAY)));
    assert_eq!(soon, Failure::RateLimited(Some(7 * DAY)));
    assert_eq!(judge(&soon, &mut s, T0, d), None);
    let late = Failure::RateLimited(Some(11 * DAY));
    assert_eq!(judge(&late, &mut s, T0, d), Some(Reason::RateLimited));
    // Without a Retry-After it clears "now": wait, unless the deadline has passed.
    assert_eq!(judge(&Failure::RateLimited(None), &mut s, T0, d), None);
    assert_eq!(s.failures, 0, "a rate limit is no outage");
}

#[test]
fn a_left_issuer_is_held_with_backoff_and_preferred_again_after() {
    let mut r = Record::default();
    let s = r.streak("primary");
    assert_eq!(hold_until(s, T0, None), T0 + HOLD_MIN);
    assert_eq!(hold_until(s, T0, None), T0 + 2 * HOLD_MIN);
    assert_eq!(hold_until(s, T0, Some(3 * DAY)), T0 + 3 * DAY);
    for _ in 0..20 {
        hold_until(s, T0, None);
    }
    assert_eq!(s.hold_until, Some(T0 + HOLD_MAX));
    let names = ["primary", "backup"];
    assert_eq!(order(&names, &r, T0), vec!["backup"]);
    assert_eq!(order(&names, &r, T0 + HOLD_MAX), vec!["primary", "backup"]);
    // Every one on hold: all, in preference order.
    hold_until(r.streak("backup"), T0, None);
    assert_eq!(order(&names, &r, T0), vec!["primary", "backup"]);
    // A success forgets the failures and the hold.
    let s = r.streak("primary");
    s.failures = 4;
    healthy(s);
    assert_eq!(
        *s,
        Streak {
            name: "primary".into(),
            ..Streak::default()
        }
    );
    assert!(!r.held("primary", T0));
}

#[test]
fn the_record_round_trips_and_old_state_files_still_load() {
    let mut r = Record {
        active: Some("backup".into()),
        reason: Some(Reason::RateLimited),
        from: Some("primary".into()),
        at: Some(T0),
        streaks: Vec::new(),
    };
    hold_until(r.streak("primary"), T0, Some(DAY));
    let text = serde_json::to_string(&r).unwrap();
    assert!(text.contains("\"reason\":\"rate-limited\""), "{text}");
    assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), r);
    assert_eq!(
        serde_json::from_str::<Record>("{}").unwrap(),
        Record::default()
    );
}
