//! Request parsing: the head with httparse, then the body by `Content-Length` (RFC 9112 §6).

use super::{Limits, Request, Response};

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
    if !find("transfer-encoding").is_empty() {
        return Parsed::Reject(Response::text(
            411,
            "chunked request bodies are not accepted; send Content-Length",
        ));
    }
    let lengths = find("content-length");
    let length = match lengths.as_slice() {
        [] => 0,
        // RFC 9110 §8.6: `Content-Length = 1*DIGIT` (Rust's parser would also take "+5").
        [one] if !one.is_empty() && one.bytes().all(|b| b.is_ascii_digit()) => {
            match one.parse::<usize>() {
                Ok(n) => n,
                Err(_) => return Parsed::Reject(Response::text(413, "body larger than allowed")),
            }
        }
        [_] => return Parsed::Reject(Response::text(400, "bad Content-Length")),
        // RFC 9112 §6.3: differing lengths are unrecoverable; identical repeats are too odd
        // to be worth trusting.
        _ => return Parsed::Reject(Response::text(400, "repeated Content-Length")),
    };
    if length > limits.max_body_bytes {
        return Parsed::Reject(Response::text(
            413,
            &format!("body larger than {} bytes", limits.max_body_bytes),
        ));
    }
    let have = buf.len() - head_len;
    if have < length {
        return Parsed::Partial;
    }
    Parsed::Complete(Request {
        method,
        path,
        query,
        headers,
        body: buf[head_len..head_len + length].to_vec(),
    })
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
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(parse_request(chunked, &limits())), 411);
        let two = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(status(parse_request(two, &limits())), 400);
        assert_eq!(
            status(parse_request(b"\x01\x02 / HTTP/1.1\r\n\r\n", &limits())),
            400
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
