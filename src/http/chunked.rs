//! The chunked transfer coding of request bodies (RFC 9112 §7.1), decoded from a buffer.
//!
//! Pure and bounded: the decoded body may not exceed the body limit (a chunk size that would
//! pass it is refused as soon as its size line is read, before its data arrives), and the
//! framing around it (size lines, extensions, trailer fields) may not exceed its own budget, so
//! a client cannot make the server buffer more than `max_body + max_framing` bytes however it
//! cuts its body into chunks. Chunk extensions are ignored (§7.1.1), trailer fields are parsed
//! and discarded (§7.1.2). Lines end in CRLF; a bare LF inside the framing is refused rather
//! than guessed at (request smuggling lives in such guesses).

/// Why a chunked body was refused: the status (400 or 413) and a reason for the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// 400 (malformed chunking) or 413 (past the body or framing limit).
    pub status: u16,
    /// What is wrong, for the response body.
    pub reason: String,
}

fn bad(reason: impl Into<String>) -> Refused {
    Refused {
        status: 400,
        reason: format!("malformed chunked body: {}", reason.into()),
    }
}

fn too_large(reason: String) -> Refused {
    Refused {
        status: 413,
        reason,
    }
}

/// The most trailer fields accepted (they are discarded anyway).
const MAX_TRAILERS: usize = 16;

/// Decodes the chunked body at the start of `buf`. `Ok(None)`: not all there yet.
/// `Ok(Some((body, used)))`: the decoded body and how many bytes of `buf` the chunked body
/// took, trailer section included.
pub fn decode(
    buf: &[u8],
    max_body: usize,
    max_framing: usize,
) -> Result<Option<(Vec<u8>, usize)>, Refused> {
    let mut body = Vec::new();
    let mut pos = 0;
    let mut framing = 0usize;
    let framing_check = |framing: usize| {
        if framing > max_framing {
            Err(too_large(format!(
                "chunked framing larger than {max_framing} bytes (use fewer, larger chunks)"
            )))
        } else {
            Ok(())
        }
    };
    loop {
        // chunk-size [ chunk-ext ] CRLF
        let Some(line_len) = find_crlf(&buf[pos..]) else {
            let partial = &buf[pos..];
            framing_check(framing + partial.len())?;
            reject_bare_lf(partial)?;
            // A size line that cannot come right is refused before it ends.
            if !partial.is_empty() {
                size_digits(partial, max_body - body.len())?;
            }
            return Ok(None);
        };
        let line = &buf[pos..pos + line_len];
        reject_bare_lf(line)?;
        framing += line_len + 2;
        framing_check(framing)?;
        let size = chunk_size(line, max_body - body.len())?;
        pos += line_len + 2;
        if size == 0 {
            break;
        }
        // chunk-data CRLF
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size;
        if &buf[pos..pos + 2] != b"\r\n" {
            return Err(bad("chunk data not followed by CRLF"));
        }
        pos += 2;
        framing += 2;
        framing_check(framing)?;
    }
    // trailer-section CRLF: field lines, then an empty line (§7.1.2). Parsed (so a malformed
    // one is refused) and discarded: none of them changes how we treat the request.
    let rest = &buf[pos..];
    let mut trailers = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(rest, &mut trailers) {
        Ok(httparse::Status::Complete((n, _))) => {
            framing_check(framing + n)?;
            // httparse also takes a bare LF; we don't (see the module docs).
            if rest[..n].windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
                || rest.first() == Some(&b'\n')
            {
                return Err(bad("trailer line not ended by CRLF"));
            }
            Ok(Some((body, pos + n)))
        }
        Ok(httparse::Status::Partial) => {
            framing_check(framing + rest.len())?;
            Ok(None)
        }
        Err(httparse::Error::TooManyHeaders) => {
            Err(bad(format!("more than {MAX_TRAILERS} trailer fields")))
        }
        Err(e) => Err(bad(format!("trailer section: {e}"))),
    }
}

/// The offset of the first CRLF in `b`.
fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// A bare LF (without CR) in a size line.
fn reject_bare_lf(partial_line: &[u8]) -> Result<(), Refused> {
    if partial_line.contains(&b'\n') {
        return Err(bad("chunk size line not ended by CRLF"));
    }
    Ok(())
}

/// `chunk-size [ chunk-ext ]` (without the CRLF): the size, at most `room`.
fn chunk_size(line: &[u8], room: usize) -> Result<usize, Refused> {
    let (size, digits) = size_digits(line, room)?;
    chunk_ext(&line[digits..])?;
    Ok(size)
}

/// The hexadecimal size at the start of `line` and its digit count; the size at most `room`.
fn size_digits(line: &[u8], room: usize) -> Result<(usize, usize), Refused> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(bad("chunk size is not a hexadecimal number"));
    }
    let mut size: usize = 0;
    for &d in &line[..digits] {
        // Leading zeros are fine ("1*HEXDIG"); a value past `room` is refused at once, so
        // no number of digits can overflow.
        let v = (d as char).to_digit(16).unwrap_or(0) as usize;
        size = size.saturating_mul(16).saturating_add(v);
        if size > room {
            return Err(too_large(format!(
                "chunked body larger than allowed ({} bytes left of the body limit, a chunk declares more)",
                room
            )));
        }
    }
    Ok((size, digits))
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )` (§7.1.1),
/// checked for shape and otherwise ignored.
fn chunk_ext(mut ext: &[u8]) -> Result<(), Refused> {
    let bws = |b: &mut &[u8]| {
        while let [b' ' | b'\t', rest @ ..] = *b {
            *b = rest;
        }
    };
    let token = |b: &mut &[u8]| {
        let n = b.iter().take_while(|c| is_tchar(**c)).count();
        *b = &b[n..];
        n
    };
    loop {
        bws(&mut ext);
        match ext {
            [] => return Ok(()),
            [b';', rest @ ..] => ext = rest,
            _ => return Err(bad("junk after the chunk size")),
        }
        bws(&mut ext);
        if token(&mut ext) == 0 {
            return Err(bad("chunk extension without a name"));
        }
        bws(&mut ext);
        if let [b'=', rest @ ..] = ext {
            ext = rest;
            bws(&mut ext);
            if let [b'"', rest @ ..] = ext {
                ext = quoted_rest(rest)?;
            } else if token(&mut ext) == 0 {
                return Err(bad("chunk extension value missing"));
            }
        }
    }
}

/// After the opening quote of a `quoted-string` (RFC 9110 §5.6.4): what follows its close.
fn quoted_rest(mut b: &[u8]) -> Result<&[u8], Refused> {
    loop {
        match b {
            [b'"', rest @ ..] => return Ok(rest),
            [b'\\', c, rest @ ..] if *c == b'\t' || (0x20..0x7f).contains(c) || *c >= 0x80 => {
                b = rest
            }
            [c, rest @ ..] if *c == b'\t' || (0x20..0x7f).contains(c) || *c >= 0x80 => b = rest,
            _ => return Err(bad("bad quoted chunk extension value")),
        }
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(buf: &[u8]) -> (Vec<u8>, usize) {
        decode(buf, 64, 256).unwrap().unwrap()
    }

    fn refused(buf: &[u8]) -> Refused {
        decode(buf, 64, 256).unwrap_err()
    }

    #[test]
    fn decodes_chunks_and_says_how_much_it_used() {
        let raw = b"5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\nNEXT";
        assert_eq!(ok(raw), (b"hello 0123456789".to_vec(), raw.len() - 4));
        // Upper- and lower-case hex, leading zeros, a zero-length body.
        assert_eq!(ok(b"000b\r\nhello world\r\n0\r\n\r\n").0, b"hello world");
        assert_eq!(ok(b"b\r\nhello world\r\n00\r\n\r\n").0, b"hello world");
        assert_eq!(ok(b"0\r\n\r\n"), (Vec::new(), 5));
    }

    #[test]
    fn every_prefix_is_partial_never_an_error() {
        let raw = b"5;a=b\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n";
        for n in 0..raw.len() {
            assert_eq!(decode(&raw[..n], 64, 256), Ok(None), "prefix {n}");
        }
        assert_eq!(ok(raw), (b"helloabc".to_vec(), raw.len()));
    }

    #[test]
    fn extensions_are_ignored_and_trailers_discarded() {
        let raw = b"5 ; name ; q=\"a \\\" b;\" ;t=tok\r\nhello\r\n0;last\r\nExpires: x\r\nX-Sum: 1\r\n\r\n";
        assert_eq!(ok(raw), (b"hello".to_vec(), raw.len()));
    }

    #[test]
    fn malformed_chunking_is_a_400_with_a_reason() {
        for (raw, why) in [
            (&b"x\r\n"[..], "not a hexadecimal number"),
            (b"-5\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"),
            (b"+5\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"),
            (b" 5\r\nhello\r\n0\r\n\r\n", "not a hexadecimal number"),
            (b"0x5\r\nhello\r\n0\r\n\r\n", "junk after the chunk size"),
            (b"5\r\nhelloXX0\r\n\r\n", "not followed by CRLF"),
            (b"5\nhello\r\n0\r\n\r\n", "not ended by CRLF"),
            (b"5;\r\nhello\r\n0\r\n\r\n", "without a name"),
            (b"5;a=\r\nhello\r\n0\r\n\r\n", "value missing"),
            (b"5;a=\"b\r\nhello\r\n0\r\n\r\n", "bad quoted"),
            (
                b"5;a\x01\r\nhello\r\n0\r\n\r\n",
                "junk after the chunk size",
            ),
            (b"0\r\nno colon\r\n\r\n", "trailer section"),
            (b"0\r\nX: 1\n\r\n", "not ended by CRLF"),
            (b"0\r\n\n", "not ended by CRLF"),
        ] {
            let r = refused(raw);
            assert_eq!(r.status, 400, "{raw:?}");
            assert!(r.reason.starts_with("malformed chunked body: "), "{r:?}");
            assert!(r.reason.contains(why), "{raw:?}: {r:?}");
        }
        let many: String = (0..17).map(|i| format!("X-{i}: v\r\n")).collect();
        let r = refused(format!("0\r\n{many}\r\n").as_bytes());
        assert!(r.reason.contains("more than 16 trailer fields"), "{r:?}");
    }

    #[test]
    fn the_body_limit_holds_across_chunks_and_before_the_data_arrives() {
        // Exactly at the limit: fine.
        let at = format!("40\r\n{}\r\n0\r\n\r\n", "a".repeat(64));
        assert_eq!(ok(at.as_bytes()).0.len(), 64);
        // One byte over, in a second chunk: refused when its size line is read.
        let r = refused(format!("40\r\n{}\r\n1\r\n", "a".repeat(64)).as_bytes());
        assert_eq!(r.status, 413);
        // A huge declared size: refused with no data sent, however many digits.
        for size in ["41", "ffffffff", "ffffffffffffffffffffffffffffffffffffffff"] {
            let r = refused(format!("{size}\r\n").as_bytes());
            assert_eq!(r.status, 413, "{size}");
            assert!(r.reason.contains("larger than allowed"), "{r:?}");
        }
        // Even with no CRLF yet: the digits alone are enough to know.
        assert_eq!(refused(b"fffffffffffffffffffffffffff").status, 413);
        assert_eq!(refused(b"z").status, 400);
    }

    #[test]
    fn the_framing_budget_bounds_what_is_buffered() {
        // One-byte chunks: 6 bytes of wire per byte of body run out of framing first.
        let tiny: String = (0..60).map(|_| "1\r\na\r\n").collect();
        let r = refused(format!("{tiny}0\r\n\r\n").as_bytes());
        assert_eq!(r.status, 413);
        assert!(r.reason.contains("framing larger than 256 bytes"), "{r:?}");
        // An endless extension, a size line that never ends, endless trailers.
        let r = refused(format!("1;{}", "a".repeat(300)).as_bytes());
        assert_eq!(r.status, 413);
        let r = refused(format!("0\r\nX: {}", "a".repeat(300)).as_bytes());
        assert_eq!(r.status, 413);
        let r = refused(format!("0{}", "0".repeat(300)).as_bytes());
        assert_eq!(r.status, 413);
    }

    #[test]
    fn hostile_bytes_never_panic() {
        // A small deterministic sweep of short inputs over the alphabet that matters.
        let alphabet = b"0 1f;=\"\\\r\nXa:";
        let mut buf = Vec::new();
        for seed in 0u32..20_000 {
            buf.clear();
            let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(7);
            for _ in 0..(seed % 14) {
                buf.push(alphabet[(x % alphabet.len() as u32) as usize]);
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345) >> 3;
            }
            if let Ok(Some((body, used))) = decode(&buf, 8, 32) {
                assert!(body.len() <= 8 && used <= buf.len());
            }
        }
    }
}
