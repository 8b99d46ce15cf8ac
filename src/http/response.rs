//! Responses and their serialization (RFC 9112 §4, §6).

use std::time::{SystemTime, UNIX_EPOCH};

/// A response. `Date`, `Content-Length` and `Connection: close` are added when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response: `status` and a one-line reason.
    pub fn text(status: u16, msg: &str) -> Self {
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(format!("{msg}\n").into_bytes())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The bytes on the wire: status line, our headers, then `Date` when `date` is known (RFC
    /// 9110 §6.6.1: an origin server with a reasonably accurate clock sends it, one without
    /// must not; see [`trusted_date`]), `Content-Length` and `Connection: close`, then
    /// the body unless the request was `HEAD` (RFC 9110 §9.3.2: the same header fields as for
    /// `GET`, `Content-Length` included, and no content).
    pub(super) fn serialize(&self, date: Option<SystemTime>, head: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            // Header values come from our own code; strip CR/LF anyway so none can split a line.
            let v: String = v.chars().filter(|c| *c != '\r' && *c != '\n').collect();
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(date) = date {
            out.push_str(&format!("Date: {}\r\n", imf_fixdate(date)));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        if !head {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// The time for a `Date` header: `now`, unless it is before `build` (UNIX seconds, this
/// binary's build time), which no correct clock can be: a router without an RTC before NTP
/// has no reasonably accurate clock, and RFC 9110 §6.6.1 then forbids a Date.
pub(super) fn trusted_date(now: SystemTime, build: u64) -> Option<SystemTime> {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (secs >= build).then_some(now)
}

/// `IMF-fixdate` (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`. A clock before 1970
/// or past year 9999 (neither of which IMF-fixdate can say) is written as the nearest bound.
fn imf_fixdate(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // 9999-12-31T23:59:59Z.
    const MAX: u64 = 253_402_300_799;
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(MAX);
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[dt.weekday().number_days_from_monday() as usize],
        dt.day(),
        MONTHS[usize::from(u8::from(dt.month())) - 1],
        dt.year(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_has_length_and_close() {
        let r = Response::text(401, "no").header("WWW-Authenticate", "Basic realm=\"x\"\r\nX: y");
        let at = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        let s = String::from_utf8(r.serialize(Some(at), false)).unwrap();
        assert!(s.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(s.contains("WWW-Authenticate: Basic realm=\"x\"X: y\r\n"));
        assert!(s.ends_with(
            "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Length: 3\r\nConnection: close\r\n\r\nno\n"
        ));
        // HEAD: the same head, no content.
        let h = String::from_utf8(r.serialize(Some(at), true)).unwrap();
        assert_eq!(format!("{h}no\n"), s);
        // No trustworthy clock: no Date at all.
        let n = String::from_utf8(r.serialize(None, false)).unwrap();
        assert!(!n.contains("Date:"), "{n}");
        assert_eq!(
            n.len(),
            s.len() - "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n".len()
        );
    }

    #[test]
    fn no_date_from_a_clock_before_the_build() {
        let at = |s: u64| UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(trusted_date(at(3600), 1_700_000_000), None);
        assert_eq!(trusted_date(at(1_699_999_999), 1_700_000_000), None);
        assert_eq!(
            trusted_date(at(1_700_000_000), 1_700_000_000),
            Some(at(1_700_000_000))
        );
        assert_eq!(
            trusted_date(at(1_800_000_000), 1_700_000_000),
            Some(at(1_800_000_000))
        );
    }

    #[test]
    fn imf_fixdate_by_rfc_9110_and_at_the_edges() {
        let at = |s: u64| imf_fixdate(UNIX_EPOCH + std::time::Duration::from_secs(s));
        // RFC 9110 §5.6.7's example.
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(u64::MAX / 2), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(
            imf_fixdate(UNIX_EPOCH - std::time::Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }
}
