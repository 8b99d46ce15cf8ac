//! Request parsing: the head with httparse, then the body by `Content-Length` or the chunked
//! transfer coding (RFC 9112 §6, §7.1).

use super::{chunked, Limits, Request, Response};

/// What [`parse_request`] found in a read buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head or the body is not all there yet: read more.
    Partial,
    /// The request breaks a limit or HTTP/1.1's grammar: send this and close.
    Reject(Response),
    /// One whole request (one request per connection: bytes after its body are ignored).
    Complete(Request),
}

/// Parses one request out of `buf`, applying the header and body limits (RFC 9112 §2-§6).
/// Pure (no I/O): the server calls it after each read, and the `http_request` fuzz target
/// calls it directly.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Parsed::Reject(Response::text(431, "request header too large"));
            }
            return Parsed::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Reject(Response::text(431, "too many header fields"))
        }
        Err(e) => return Parsed::Reject(Response::text(400, &format!("bad request: {e}"))),
    };
    if head_len > limits.max_header_bytes {
        return Parsed::Reject(Response::text(431, "request header too large"));
    }
    let method = req.method.unwrap_or("").to_owned();
    let target = req.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    let find = |n: &str| {
        headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    let codings = find("transfer-encoding");
    let lengths = find("content-length");
    let reject = |status, why: &str| Parsed::Reject(Response::text(status, why));
    let body = if codings.is_empty() {
        let length = match lengths.as_slice() {
            [] => 0,
            // RFC 9110 §8.6: `Content-Length = 1*DIGIT` (Rust's parser would also take "+5").
            [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
                match one.parse::<usize>() {
                    Ok(n) => n,
                    Err(_) => return reject(413, "body larger than allowed"),
                }
            }
            [_] => return reject(400, "bad Content-Length"),
            // RFC 9112 §6.3: differing lengths are unrecoverable; identical repeats are too odd
            // to be worth trusting.
            _ => return reject(400, "repeated Content-Length"),
        };
        if length > limits.max_body_bytes {
            return reject(
                413,
                &format!("body larger than {} bytes", limits.max_body_bytes),
            );
        }
        let have = buf.len() - head_len;
        if have < length {
            return Parsed::Partial;
        }
        buf[head_len..head_len + length].to_vec()
    } else {
        // RFC 9112 §6.1: Transfer-Encoding is HTTP/1.1; in a 1.0 request the framing is
        // faulty. §6.3: with Content-Length as well, the message is a smuggling attempt or
        // a broken client, and either way we close after a 400.
        if req.version == Some(0) {
            return reject(400, "Transfer-Encoding in an HTTP/1.0 request");
        }
        if !lengths.is_empty() {
            return reject(400, "both Content-Length and Transfer-Encoding");
        }
        let list: Vec<&str> = codings
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        // §6.3: unless chunked is the final coding the body length cannot be known (400);
        // §7: chunked is applied once; §6.1: a coding we don't implement is a 501.
        match list.split_last() {
            Some((last, rest)) if last.eq_ignore_ascii_case("chunked") => {
                if rest.iter().any(|c| c.eq_ignore_ascii_case("chunked")) {
                    return reject(400, "chunked applied more than once");
                }
                if !rest.is_empty() {
                    let others = rest.join(", ");
                    return reject(
                        501,
                        &format!("transfer coding {others} is not implemented; send chunked alone"),
                    );
                }
            }
            _ => return reject(400, "Transfer-Encoding without chunked as the final coding"),
        }
        match chunked::decode(
            &buf[head_len..],
            limits.max_body_bytes,
            chunked_framing(limits),
        ) {
            Ok(Some((body, _used))) => body,
            Ok(None) => return Parsed::Partial,
            Err(r) => return reject(r.status, &r.reason),
        }
    };
    Parsed::Complete(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

/// The framing a chunked body may carry around its data (size lines, extensions, trailers):
/// as much as a request head. Together with the body limit this bounds what a connection may
/// make the server buffer, see [`wire_limit`].
fn chunked_framing(limits: &Limits) -> usize {
    limits.max_header_bytes
}

/// The most bytes one request may take on the wire under `limits`: head, body, and the
/// chunked framing around the body. The server stops reading a connection there.
pub(super) fn wire_limit(limits: &Limits) -> usize {
    limits.max_header_bytes + limits.max_body_bytes + chunked_framing(limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> Limits {
        Limits {
            max_connections: 4,
            max_header_bytes: 256,
            max_body_bytes: 16,
            request_timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn parses_a_post_with_its_body() {
        let raw = b"POST /x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let Parsed::Complete(req) = parse_request(raw, &limits()) else {
            panic!("not complete")
        };
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/x");
        assert_eq!(req.query.as_deref(), Some("y=1"));
        assert_eq!(req.header("content-length"), Some("5"));
        assert_eq!(req.body, b"hello");
    }

    #[test]
    fn waits_for_the_rest_of_the_body() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel";
        assert!(matches!(parse_request(raw, &limits()), Parsed::Partial));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nHo", &limits()),
            Parsed::Partial
        ));
    }

    fn status(p: Parsed) -> u16 {
        match p {
            Parsed::Reject(r) => r.status,
            Parsed::Complete(_) => 0,
            Parsed::Partial => 1,
        }
    }

    #[test]
    fn enforces_limits_before_reading_the_body() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
        assert_eq!(status(parse_request(raw, &limits())), 413);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(300));
        assert_eq!(status(parse_request(big.as_bytes(), &limits())), 431);
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(parse_request(two, &limits())), 400);
        assert_eq!(
            status(parse_request(b"\x01\x02 / HTTP/1.1\r\n\r\n", &limits())),
            400
        );
    }

    fn reason(p: Parsed) -> String {
        match p {
            Parsed::Reject(r) => String::from_utf8_lossy(&r.body).trim().to_owned(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn a_chunked_body_is_decoded_under_the_same_body_limit() {
        let raw = b"POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
        for n in 0..raw.len() {
            assert_eq!(
                parse_request(&raw[..n], &limits()),
                Parsed::Partial,
                "prefix {n}"
            );
        }
        let Parsed::Complete(req) = parse_request(raw, &limits()) else {
            panic!("not complete")
        };
        assert_eq!(req.body, b"hello world");
        // The trailer is discarded, not merged into the header fields (RFC 9112 §7.1.2).
        assert_eq!(req.header("x-trailer"), None);
        // Case-insensitive, and as a list with empty members (RFC 9110 §5.6.1).
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: ,Chunked\r\n\r\n0\r\n\r\n";
        assert!(matches!(parse_request(raw, &limits()), Parsed::Complete(r) if r.body.is_empty()));
        // 17 bytes in two chunks against a 16-byte limit: 413, as for Content-Length.
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\naaaaaaaa\r\n9\r\n";
        assert_eq!(status(parse_request(raw, &limits())), 413);
        // Malformed chunking: 400 with the reason.
        let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let p = parse_request(raw, &limits());
        assert_eq!(status(p.clone()), 400);
        assert_eq!(
            reason(p),
            "malformed chunked body: chunk size is not a hexadecimal number"
        );
    }

    #[test]
    fn transfer_encoding_framing_conflicts_are_refused() {
        let req = |te: &str, extra: &str| {
            parse_request(
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n{extra}\r\n0\r\n\r\n")
                    .as_bytes(),
                &limits(),
            )
        };
        let p = req("chunked", "Content-Length: 5\r\n");
        assert_eq!(reason(p), "both Content-Length and Transfer-Encoding");
        let p = req("chunked", "Transfer-Encoding: chunked\r\n");
        assert_eq!(reason(p), "chunked applied more than once");
        let p = req("gzip, chunked", "");
        assert_eq!(status(p.clone()), 501);
        assert!(reason(p).contains("gzip is not implemented"));
        for te in ["gzip", "chunked, gzip", "identity", ""] {
            assert_eq!(status(req(te, "")), 400, "{te:?}");
        }
        let one_oh = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            reason(parse_request(one_oh, &limits())),
            "Transfer-Encoding in an HTTP/1.0 request"
        );
    }

    #[test]
    fn content_length_is_digits_only() {
        let req =
            |cl: &str| format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nhello");
        assert_eq!(status(parse_request(req("+5").as_bytes(), &limits())), 400);
        assert_eq!(status(parse_request(req("-5").as_bytes(), &limits())), 400);
        assert_eq!(status(parse_request(req("5 5").as_bytes(), &limits())), 400);
        assert_eq!(
            status(parse_request(
                req("99999999999999999999999").as_bytes(),
                &limits()
            )),
            413
        );
        assert!(matches!(
            parse_request(req("5").as_bytes(), &limits()),
            Parsed::Complete(_)
        ));
    }
}
