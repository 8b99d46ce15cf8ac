//! ACME protocol objects (RFC 8555 §7.1), as plain serde structs spelled as in the RFC.
//!
//! Fields gatecert does not use are left out; serde ignores unknown members, as RFC 8555 §7.1
//! asks ("Clients MUST ignore unrecognized fields"). Extensions: `meta.profiles` and
//! `order.profile` (draft-ietf-acme-profiles), `renewalInfo` and `order.replaces` (RFC 9773),
//! IP identifiers (RFC 8738).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The directory object, RFC 8555 §7.1.1.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    /// New nonce URL (§7.2).
    pub new_nonce: String,
    /// New account URL (§7.3).
    pub new_account: String,
    /// New order URL (§7.4).
    pub new_order: String,
    /// Pre-authorization URL (§7.4.1), if the server supports it.
    #[serde(default)]
    pub new_authz: Option<String>,
    /// Revoke certificate URL (§7.6).
    pub revoke_cert: String,
    /// Key change URL (§7.3.5).
    pub key_change: String,
    /// ACME Renewal Information base URL (RFC 9773 §3), if offered.
    #[serde(default)]
    pub renewal_info: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// The directory's `meta` object.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// The current terms of service.
    #[serde(default)]
    pub terms_of_service: Option<String>,
    /// The CA's web site.
    #[serde(default)]
    pub website: Option<String>,
    /// CAA issuer domains.
    #[serde(default)]
    pub caa_identities: Vec<String>,
    /// True when newAccount needs External Account Binding (§7.3.4).
    #[serde(default)]
    pub external_account_required: bool,
    /// Profiles offered: name → description (draft-ietf-acme-profiles §3).
    #[serde(default)]
    pub profiles: BTreeMap<String, String>,
}

/// Account status, RFC 8555 §7.1.2.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Usable.
    Valid,
    /// Deactivated by the client.
    Deactivated,
    /// Revoked by the server.
    Revoked,
}

/// The account object, RFC 8555 §7.1.2.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The account's status. Optional here: for a key that already has an account, RFC 8555
    /// §7.3.1 answers 200 with the account object, but acme2certifier 0.46.3 sends `{}` (the
    /// Location header is what identifies the account).
    #[serde(default)]
    pub status: Option<AccountStatus>,
    /// Contact URLs (`mailto:`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// The orders list URL.
    #[serde(default)]
    pub orders: Option<String>,
}

/// The newAccount request payload, RFC 8555 §7.3.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAccount {
    /// Contact URLs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<String>,
    /// Agreement to the terms of service.
    pub terms_of_service_agreed: bool,
    /// Look up an existing account only; never create one (§7.3.1).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub only_return_existing: bool,
    /// The EAB JWS (§7.3.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_account_binding: Option<serde_json::Value>,
}

/// An identifier (RFC 8555 §9.7.7: `dns`; RFC 8738: `ip`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Identifier {
    /// A DNS name, possibly a wildcard `*.example.com`.
    Dns(String),
    /// An IP address in its textual form (RFC 8738 §3).
    Ip(String),
}

impl Identifier {
    /// The value, without the type.
    pub fn value(&self) -> &str {
        match self {
            Identifier::Dns(v) | Identifier::Ip(v) => v,
        }
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identifier::Dns(v) => write!(f, "dns:{v}"),
            Identifier::Ip(v) => write!(f, "ip:{v}"),
        }
    }
}

/// Order status, RFC 8555 §7.1.6.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Authorizations still pending.
    Pending,
    /// All authorizations valid: finalize now.
    Ready,
    /// The CA is issuing.
    Processing,
    /// Issued: `certificate` is set.
    Valid,
    /// Failed: `error` may say why.
    Invalid,
}

/// The order object, RFC 8555 §7.1.3.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Status.
    pub status: OrderStatus,
    /// When the order expires (RFC 3339).
    #[serde(default)]
    pub expires: Option<String>,
    /// The identifiers.
    pub identifiers: Vec<Identifier>,
    /// Authorization URLs.
    #[serde(default)]
    pub authorizations: Vec<String>,
    /// Finalize URL.
    pub finalize: String,
    /// Certificate URL once valid.
    #[serde(default)]
    pub certificate: Option<String>,
    /// Why the order failed.
    #[serde(default)]
    pub error: Option<Problem>,
    /// The certID this order replaces (RFC 9773 §5).
    #[serde(default)]
    pub replaces: Option<String>,
    /// The profile (draft-ietf-acme-profiles).
    #[serde(default)]
    pub profile: Option<String>,
}

/// The newOrder payload, RFC 8555 §7.4.
#[derive(Clone, Debug, Serialize)]
pub struct NewOrder {
    /// What to certify.
    pub identifiers: Vec<Identifier>,
    /// Profile name (draft-ietf-acme-profiles §4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// ARI certID of the certificate this order replaces (RFC 9773 §5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

/// Authorization status, RFC 8555 §7.1.6.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthorizationStatus {
    /// Waiting for a challenge.
    Pending,
    /// Validated.
    Valid,
    /// Validation failed.
    Invalid,
    /// Deactivated by the client.
    Deactivated,
    /// Expired.
    Expired,
    /// Revoked by the server.
    Revoked,
}

/// The authorization object, RFC 8555 §7.1.4.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Authorization {
    /// The identifier (without `*.` for wildcards).
    pub identifier: Identifier,
    /// Status.
    pub status: AuthorizationStatus,
    /// Expiry (RFC 3339).
    #[serde(default)]
    pub expires: Option<String>,
    /// Challenges offered.
    #[serde(default)]
    pub challenges: Vec<Challenge>,
    /// True for a wildcard order's authorization.
    #[serde(default)]
    pub wildcard: bool,
}

impl Authorization {
    /// The identifier as it was ordered, for messages: `*.` put back for a wildcard
    /// authorization (RFC 8555 §7.1.4 strips it from `identifier`), so that the two
    /// authorizations of `example.org` + `*.example.org` can be told apart.
    pub fn ordered(&self) -> Identifier {
        match &self.identifier {
            Identifier::Dns(v) if self.wildcard => Identifier::Dns(format!("*.{v}")),
            other => other.clone(),
        }
    }
}

/// Challenge status, RFC 8555 §7.1.6.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ChallengeStatus {
    /// Not yet answered.
    Pending,
    /// The server is validating.
    Processing,
    /// Validated.
    Valid,
    /// Failed.
    Invalid,
}

/// A challenge object, RFC 8555 §8.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Challenge {
    /// `http-01`, `dns-01`, `tls-alpn-01`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Where to respond.
    pub url: String,
    /// Status.
    pub status: ChallengeStatus,
    /// The token (§8.1), for the types we answer.
    #[serde(default)]
    pub token: Option<String>,
    /// Why validation failed.
    #[serde(default)]
    pub error: Option<Problem>,
}

/// An RFC 7807 problem document, as ACME uses it (RFC 8555 §6.7).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// The problem type URI, e.g. `urn:ietf:params:acme:error:badNonce`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// A human-readable explanation.
    #[serde(default)]
    pub detail: Option<String>,
    /// The HTTP status the server gave.
    #[serde(default)]
    pub status: Option<u16>,
    /// Per-identifier problems (§6.7.1).
    #[serde(default)]
    pub subproblems: Vec<Subproblem>,
}

/// A subproblem, RFC 8555 §6.7.1.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Subproblem {
    /// The problem type URI.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// A human-readable explanation.
    #[serde(default)]
    pub detail: Option<String>,
    /// The identifier it concerns.
    #[serde(default)]
    pub identifier: Option<Identifier>,
}

impl Problem {
    /// True when the type is `urn:ietf:params:acme:error:<name>`.
    pub fn is(&self, name: &str) -> bool {
        self.kind
            .as_deref()
            .and_then(|k| k.strip_prefix("urn:ietf:params:acme:error:"))
            == Some(name)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.as_deref().unwrap_or("about:blank"))?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        for sub in &self.subproblems {
            f.write_str("\n    - ")?;
            if let Some(id) = &sub.identifier {
                write!(f, "{id}: ")?;
            }
            f.write_str(sub.kind.as_deref().unwrap_or("about:blank"))?;
            if let Some(d) = &sub.detail {
                write!(f, ": {d}")?;
            }
        }
        Ok(())
    }
}

/// The renewalInfo response, RFC 9773 §4.2.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RenewalInfo {
    /// When the CA suggests renewing.
    pub suggested_window: SuggestedWindow,
    /// A page explaining the window (e.g. after an incident).
    #[serde(default, rename = "explanationURL")]
    pub explanation_url: Option<String>,
}

/// RFC 9773 §4.2 `suggestedWindow`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct SuggestedWindow {
    /// Start (RFC 3339).
    pub start: String,
    /// End (RFC 3339).
    pub end: String,
}

/// Revocation reason codes, RFC 5280 §5.3.1, as RFC 8555 §7.6 uses them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationReason(pub u8);

impl RevocationReason {
    const NAMES: [(&'static str, u8); 9] = [
        ("unspecified", 0),
        ("keyCompromise", 1),
        ("cACompromise", 2),
        ("affiliationChanged", 3),
        ("superseded", 4),
        ("cessationOfOperation", 5),
        ("certificateHold", 6),
        ("privilegeWithdrawn", 9),
        ("aACompromise", 10),
    ];

    /// Parses a reason name (case-insensitive) or its number.
    pub fn parse(s: &str) -> Option<RevocationReason> {
        if let Ok(n) = s.parse::<u8>() {
            return Self::NAMES
                .iter()
                .any(|(_, c)| *c == n)
                .then_some(RevocationReason(n));
        }
        Self::NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, c)| RevocationReason(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8555 §7.1.1's example directory.
    const RFC_DIRECTORY: &str = r#"{
     "newNonce": "https://example.com/acme/new-nonce",
     "newAccount": "https://example.com/acme/new-account",
     "newOrder": "https://example.com/acme/new-order",
     "newAuthz": "https://example.com/acme/new-authz",
     "revokeCert": "https://example.com/acme/revoke-cert",
     "keyChange": "https://example.com/acme/key-change",
     "meta": {
       "termsOfService": "https://example.com/acme/terms/2017-5-30",
       "website": "https://www.example.com/",
       "caaIdentities": ["example.com"],
       "externalAccountRequired": false
     }
   }"#;

    /// An invalid wildcard authorization as acme2certifier 0.46.3 sends it: the identifier
    /// without `*.` and no `error` on the challenge.
    #[test]
    fn wildcard_authorization_is_named_as_ordered() {
        let json = r#"{"expires": "2026-11-29T12:53:58Z", "status": "invalid",
            "identifier": {"type": "dns", "value": "dns.test"}, "wildcard": true,
            "challenges": [{"type": "dns-01", "url": "https://127.0.0.1:9543/acme/chall/Qej8",
                            "token": "t", "status": "invalid"}]}"#;
        let a: Authorization = serde_json::from_str(json).unwrap();
        assert_eq!(a.identifier, Identifier::Dns("dns.test".into()));
        assert_eq!(a.ordered().to_string(), "dns:*.dns.test");
        let plain = Authorization {
            wildcard: false,
            ..a.clone()
        };
        assert_eq!(plain.ordered().to_string(), "dns:dns.test");
        let ip = Authorization {
            identifier: Identifier::Ip("127.0.0.1".into()),
            ..a
        };
        assert_eq!(ip.ordered().to_string(), "ip:127.0.0.1");
    }

    #[test]
    fn parses_rfc8555_directory_example() {
        let d: Directory = serde_json::from_str(RFC_DIRECTORY).unwrap();
        assert_eq!(d.new_nonce, "https://example.com/acme/new-nonce");
        assert_eq!(d.key_change, "https://example.com/acme/key-change");
        assert_eq!(d.renewal_info, None);
        let meta = d.meta.unwrap();
        assert_eq!(meta.caa_identities, vec!["example.com"]);
        assert!(!meta.external_account_required);
        assert!(meta.profiles.is_empty());
    }

    #[test]
    fn parses_profiles_and_renewal_info() {
        let json = r#"{"newNonce":"n","newAccount":"a","newOrder":"o","revokeCert":"r",
            "keyChange":"k","renewalInfo":"https://ca/ari",
            "meta":{"profiles":{"classic":"90 days","shortlived":"6 days"}}}"#;
        let d: Directory = serde_json::from_str(json).unwrap();
        assert_eq!(d.renewal_info.as_deref(), Some("https://ca/ari"));
        let names: Vec<_> = d.meta.unwrap().profiles.into_keys().collect();
        assert_eq!(names, ["classic", "shortlived"]);
    }

    /// RFC 8555 §7.1.3's example order, plus RFC 8738's IP identifier.
    #[test]
    fn parses_rfc8555_order_example() {
        let json = r#"{
     "status": "valid",
     "expires": "2016-01-20T14:09:07.99Z",
     "identifiers": [
       { "type": "dns", "value": "www.example.org" },
       { "type": "ip", "value": "192.0.2.10" }
     ],
     "notBefore": "2016-01-01T00:00:00Z",
     "notAfter": "2016-01-08T00:00:00Z",
     "authorizations": [
       "https://example.com/acme/authz/PAniVnsZcis",
       "https://example.com/acme/authz/r4HqLzrSrpI"
     ],
     "finalize": "https://example.com/acme/order/TOlocE8rfgo/finalize",
     "certificate": "https://example.com/acme/cert/mAt3xBGaobw"
   }"#;
        let o: Order = serde_json::from_str(json).unwrap();
        assert_eq!(o.status, OrderStatus::Valid);
        assert_eq!(o.identifiers[1], Identifier::Ip("192.0.2.10".into()));
        assert_eq!(o.authorizations.len(), 2);
        assert!(o.certificate.is_some());
    }

    /// RFC 8555 §6.7.1's example problem, printed with its subproblems.
    #[test]
    fn problem_display_shows_type_detail_and_subproblems() {
        let json = r#"{
       "type": "urn:ietf:params:acme:error:malformed",
       "detail": "Some of the identifiers requested were rejected",
       "subproblems": [
           {
               "type": "urn:ietf:params:acme:error:malformed",
               "detail": "Invalid underscore in DNS name \"_example.org\"",
               "identifier": {
                   "type": "dns",
                   "value": "_example.org"
               }
           },
           {
               "type": "urn:ietf:params:acme:error:rejectedIdentifier",
               "detail": "This CA will not issue for \"example.net\"",
               "identifier": {
                   "type": "dns",
                   "value": "example.net"
               }
           }
       ]
   }"#;
        let p: Problem = serde_json::from_str(json).unwrap();
        assert!(p.is("malformed"));
        let shown = p.to_string();
        assert!(shown.starts_with(
            "urn:ietf:params:acme:error:malformed: Some of the identifiers requested were rejected"
        ));
        assert!(shown.contains(
            "dns:_example.org: urn:ietf:params:acme:error:malformed: Invalid underscore"
        ));
        assert!(shown.contains(
            "dns:example.net: urn:ietf:params:acme:error:rejectedIdentifier: This CA will not issue"
        ));
    }

    /// RFC 9773 §4.2's example.
    #[test]
    fn parses_renewal_info() {
        let json = r#"{
     "suggestedWindow": {
       "start": "2025-01-02T04:00:00Z",
       "end": "2025-01-03T04:00:00Z"
     },
     "explanationURL": "https://acme.example.com/docs/ari"
   }"#;
        let r: RenewalInfo = serde_json::from_str(json).unwrap();
        assert_eq!(r.suggested_window.start, "2025-01-02T04:00:00Z");
        assert_eq!(
            r.explanation_url.as_deref(),
            Some("https://acme.example.com/docs/ari")
        );
    }

    #[test]
    fn revocation_reasons_parse_by_name_or_number() {
        assert_eq!(
            RevocationReason::parse("keyCompromise"),
            Some(RevocationReason(1))
        );
        assert_eq!(
            RevocationReason::parse("superseded"),
            Some(RevocationReason(4))
        );
        assert_eq!(RevocationReason::parse("5"), Some(RevocationReason(5)));
        assert_eq!(RevocationReason::parse("7"), None);
        assert_eq!(RevocationReason::parse("bogus"), None);
    }
}
