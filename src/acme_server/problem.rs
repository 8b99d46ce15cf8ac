//! Problem documents (RFC 7807) with the ACME error types of RFC 8555 §6.7.

use serde_json::json;

use crate::http::Response;

/// An ACME error: `urn:ietf:params:acme:error:<kind>`, the HTTP status and a detail for the
/// client (never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The RFC 8555 §6.7 error name, e.g. `badNonce`.
    pub kind: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What is wrong.
    pub detail: String,
    /// Per-identifier causes (RFC 8555 §6.7.1), as `(dns name, kind, detail)`.
    pub subproblems: Vec<(String, &'static str, String)>,
}

impl Problem {
    /// A problem of `kind` with `status`.
    pub fn new(kind: &'static str, status: u16, detail: impl Into<String>) -> Problem {
        Problem {
            kind,
            status,
            detail: detail.into(),
            subproblems: Vec::new(),
        }
    }

    /// `malformed`, 400.
    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", 400, detail)
    }

    /// `unauthorized`, 403.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new("unauthorized", 403, detail)
    }

    /// `serverInternal`, 500: the details go to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Problem {
        log::error!("ACME server: {detail}");
        Problem::new(
            "serverInternal",
            500,
            "internal error; see the gateway's log",
        )
    }

    /// The full type URN.
    pub fn urn(&self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.kind)
    }

    /// The problem document (RFC 7807 §3) as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = json!({"type": self.urn(), "detail": self.detail, "status": self.status});
        if !self.subproblems.is_empty() {
            doc["subproblems"] = self
                .subproblems
                .iter()
                .map(|(name, kind, detail)| {
                    json!({
                        "type": format!("urn:ietf:params:acme:error:{kind}"),
                        "detail": detail,
                        "identifier": {"type": "dns", "value": name},
                    })
                })
                .collect();
        }
        doc
    }

    /// The HTTP answer: `application/problem+json`.
    pub fn response(&self) -> Response {
        Response::new(self.status)
            .header("Content-Type", "application/problem+json")
            .body(serde_json::to_vec(&self.to_json()).unwrap_or_default())
    }
}
