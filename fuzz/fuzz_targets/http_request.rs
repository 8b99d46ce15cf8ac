//! The EST listener's request parser, `http::parse_request`, on arbitrary bytes: never panics;
//! a complete request honours the limits and Content-Length (or is chunked, never both); a
//! refusal is one of the statuses the server documents; a cut before the end of a complete
//! request is never complete; and bytes after a request (pipelining) do not change it.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;

use gatecert::http::{parse_request, Limits, Parsed};

fuzz_target!(|data: &[u8]| {
    // The first byte picks small or default-like limits so both limit paths are reached.
    let Some((&knob, buf)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_connections: 1,
        max_header_bytes: if knob & 1 == 0 {
            8192
        } else {
            64 + usize::from(knob)
        },
        max_body_bytes: if knob & 2 == 0 {
            16384
        } else {
            usize::from(knob >> 2)
        },
        request_timeout: Duration::from_secs(10),
    };
    match parse_request(buf, &limits) {
        Parsed::Partial => {}
        Parsed::Reject(resp) => {
            assert!(
                matches!(resp.status, 400 | 413 | 431 | 501),
                "unexpected refusal {}",
                resp.status
            );
        }
        Parsed::Complete(req) => {
            assert!(req.body.len() <= limits.max_body_bytes);
            assert!(!req.method.is_empty());
            assert!(!req.path.contains('?'));
            let chunked = req.header("transfer-encoding").is_some();
            let declared = req.header("content-length").map(|v| v.parse::<usize>());
            match declared {
                Some(Ok(n)) => assert_eq!(n, req.body.len()),
                Some(Err(e)) => panic!("complete request with a bad Content-Length: {e}"),
                None => assert!(chunked || req.body.is_empty()),
            }
            assert!(!(chunked && declared.is_some()), "Content-Length with Transfer-Encoding");
            // Where the head ends, by httparse itself (it also accepts bare LF line ends).
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let Ok(httparse::Status::Complete(head_len)) =
                httparse::Request::new(&mut headers).parse(buf)
            else {
                panic!("complete request, but httparse finds no complete head");
            };
            let end = if chunked {
                // The shortest complete prefix (completeness only grows with more bytes).
                let (mut lo, mut hi) = (head_len, buf.len());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if matches!(parse_request(&buf[..mid], &limits), Parsed::Complete(_)) {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                // A chunked body carries at least its size lines around the data.
                assert!(lo >= head_len + req.body.len() + 5);
                lo
            } else {
                let end = head_len + req.body.len();
                assert_eq!(&buf[head_len..end], &req.body[..]);
                end
            };
            // A cut inside the request is not complete.
            assert!(
                !matches!(parse_request(&buf[..end - 1], &limits), Parsed::Complete(_)),
                "a truncated request parsed as complete"
            );
            // Trailing bytes (a pipelined request) leave the first one as it was.
            let mut more = buf[..end].to_vec();
            more.extend_from_slice(b"GET /x HTTP/1.1\r\n\r\n");
            assert_eq!(parse_request(&more, &limits), Parsed::Complete(req));
        }
    }
});
