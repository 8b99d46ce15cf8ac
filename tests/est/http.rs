//! The HTTP layer as EST clients meet it, against the real binary with curl and openssl
//! s_client: chunked request bodies (RFC 9112 §7.1), HEAD and Date (RFC 9110), ALPN http/1.0,
//! Content-Type of EST POSTs (RFC 7030 §4.2.1), and slowloris over the connection cap.

use super::*;

/// `openssl s_client` as a raw TLS client: sends `request` as is, returns everything it
/// printed (the server's raw answer bytes, and with `quiet: false` the session summary).
fn s_client(g: &Gatecert, request: &[u8], extra: &[&str], quiet: bool) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{}", g.port))
        .args([
            "-servername",
            "gateway.local",
            "-verify_return_error",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(g.path("root.pem"))
        .args(extra);
    if quiet {
        cmd.arg("-quiet");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request).unwrap();
    let mut out = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    let _ = child.wait();
    out
}

/// A POST of `body` with the given extra header lines, framed by the caller.
fn raw_post(g: &Gatecert, op: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {EST}/{op} HTTP/1.1\r\nHost: gateway.local:{}\r\n{headers}\r\n{body}",
        g.port
    )
    .into_bytes()
}

fn status_of(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find(|l| l.starts_with("HTTP/1."))
        .unwrap_or("")
        .to_owned()
}

/// Issue 11 item 2: a chunked CSR (as Go's net/http sends a body of unknown length) enrolls;
/// malformed chunking and a chunked body with Content-Length as well are refused with 400 and
/// a reason, before the token is looked at.
#[test]
fn chunked_enrollment_and_malformed_chunks() {
    let g = Gatecert::start("chunked");
    let name = "sensor-ch.sensors.local";
    let token = g.token("sensor-ch", &[name]);
    let (_, csr) = make_csr(&g.dir, "ch", "ec:P-256", name, &[name]);
    let user = format!("sensor-ch:{token}");
    let auth = format!("Basic {}", b64_encode(user.as_bytes()));

    // Malformed chunk size, and Content-Length beside Transfer-Encoding: 400 with the reason.
    let te = "Transfer-Encoding: chunked\r\nContent-Type: application/pkcs10\r\n";
    let bad = raw_post(
        &g,
        "simpleenroll",
        &format!("Authorization: {auth}\r\n{te}"),
        "zz\r\nMIIB\r\n0\r\n\r\n",
    );
    let out = s_client(&g, &bad, &[], true);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&out), "HTTP/1.1 400 Bad Request", "{text}");
    assert!(
        text.contains("malformed chunked body: chunk size is not a hexadecimal number"),
        "{text}"
    );
    let both = raw_post(
        &g,
        "simpleenroll",
        &format!("Authorization: {auth}\r\n{te}Content-Length: 9\r\n"),
        "4\r\nMIIB\r\n0\r\n\r\n",
    );
    let out = s_client(&g, &both, &[], true);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status_of(&out), "HTTP/1.1 400 Bad Request", "{text}");
    assert!(
        text.contains("both Content-Length and Transfer-Encoding"),
        "{text}"
    );

    // curl sends the CSR chunked when told to; the (unused) token enrolls with it.
    let data = format!("@{}", csr.display());
    let (code, _, body) = g.curl(
        "simpleenroll",
        &[
            "-u",
            &user,
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/pkcs10",
            "-H",
            "Transfer-Encoding: chunked",
            "--trace-ascii",
            g.path("chunked.trace").to_str().unwrap(),
        ],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let trace = std::fs::read_to_string(g.path("chunked.trace")).unwrap();
    assert!(
        trace.contains("Transfer-Encoding: chunked"),
        "curl did not send chunked"
    );
    let leaf = first_cert(&p7_to_pem(&g.dir, "chunked", &body));
    std::fs::write(g.path("chunked.pem"), &leaf).unwrap();
    let out = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        g.path("chunked.pem").to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(name));
}

/// Issue 11 item 5: HEAD has the GET head and no body (raw bytes from openssl s_client), and
/// every response, refusals included, has a Date that is a valid IMF-fixdate close to now.
#[test]
fn head_has_no_body_and_every_response_a_date() {
    let g = Gatecert::start("head");
    let get = format!("GET {EST}/cacerts HTTP/1.1\r\nHost: gateway.local\r\n\r\n");
    let head = get.replacen("GET", "HEAD", 1);
    let got = s_client(&g, get.as_bytes(), &[], true);
    let headed = s_client(&g, head.as_bytes(), &[], true);
    let split = |raw: &[u8]| {
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a whole head")
            + 4;
        (
            String::from_utf8_lossy(&raw[..at]).into_owned(),
            raw[at..].to_vec(),
        )
    };
    let (get_head, get_body) = split(&got);
    let (head_head, head_body) = split(&headed);
    assert!(get_head.starts_with("HTTP/1.1 200 OK\r\n"), "{get_head}");
    assert!(head_head.starts_with("HTTP/1.1 200 OK\r\n"), "{head_head}");
    assert!(!get_body.is_empty());
    assert!(
        head_body.is_empty(),
        "HEAD answered with {} bytes of body",
        head_body.len()
    );
    let length = format!("Content-Length: {}\r\n", get_body.len());
    assert!(head_head.contains(&length), "{head_head}");
    // HEAD on a POST resource: 405 naming POST; GET resources allow HEAD.
    let (code, headers, _) = g.curl("simpleenroll", &["-I"]);
    assert_eq!(code, 405);
    assert!(headers.contains("Allow: POST"), "{headers}");
    let (code, headers, _) = g.curl("csrattrs", &["-X", "POST"]);
    assert_eq!(code, 405);
    assert!(headers.contains("Allow: GET, HEAD"), "{headers}");

    // Every response has a Date: 200, HEAD, 401, 404, 405, 415 and a parser refusal.
    let mut heads = vec![get_head, head_head, headers];
    for (op, args) in [
        ("cacerts", &[][..]),
        (
            "simpleenroll",
            &[
                "--data-binary",
                "x",
                "-H",
                "Content-Type: application/pkcs10",
            ][..],
        ),
        ("nosuchop", &[]),
        (
            "simpleenroll",
            &["--data-binary", "x", "-H", "Content-Type: text/plain"],
        ),
    ] {
        heads.push(g.curl(op, args).1);
    }
    let bad = s_client(
        &g,
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
        &[],
        true,
    );
    assert_eq!(status_of(&bad), "HTTP/1.1 400 Bad Request");
    heads.push(String::from_utf8_lossy(&bad).into_owned());
    for h in &heads {
        let date = h
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .unwrap_or_else(|| panic!("no Date in {h}"));
        // IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT", as GNU date reads it back.
        assert!(date.len() == 29 && date.ends_with(" GMT"), "{date:?}");
        let out =
            run(Command::new("date").args(["-u", "-d", date, "+%s %a, %d %b %Y %H:%M:%S GMT"]));
        let out = String::from_utf8(out.stdout).unwrap();
        let (secs, again) = out.trim().split_once(' ').unwrap();
        assert_eq!(again, date, "not IMF-fixdate");
        let secs: i64 = secs.parse().unwrap();
        assert!((secs - now()).abs() < 300, "Date {date} is far from now");
    }
}

/// Issue 11 item 5: a client that offers only http/1.0 in ALPN gets it, and an answer.
#[test]
fn an_http10_only_alpn_client_is_served() {
    let g = Gatecert::start("alpn");
    let req = format!("GET {EST}/cacerts HTTP/1.0\r\n\r\n");
    let out = s_client(&g, req.as_bytes(), &["-alpn", "http/1.0"], false);
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("ALPN protocol: http/1.0"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    let (code, _, _) = g.curl("cacerts", &["--http1.0"]);
    assert_eq!(code, 200);
}

/// Issue 11 item 5: a wrong Content-Type on an EST POST is a 415 that leaves the token unused;
/// a missing one is taken as application/pkcs10 (README, EST clients).
#[test]
fn a_wrong_content_type_is_415_and_a_missing_one_is_pkcs10() {
    let g = Gatecert::start("ctype");
    let name = "sensor-ct.sensors.local";
    let token = g.token("sensor-ct", &[name]);
    let (_, csr) = make_csr(&g.dir, "ct", "ec:P-256", name, &[name]);
    let user = format!("sensor-ct:{token}");
    let data = format!("@{}", csr.display());
    let (code, headers, body) = g.curl(
        "simpleenroll",
        &[
            "-u",
            &user,
            "--data-binary",
            &data,
            "-H",
            "Content-Type: application/x-www-form-urlencoded",
        ],
    );
    assert_eq!(code, 415);
    assert!(
        headers.contains("Accept-Post: application/pkcs10"),
        "{headers}"
    );
    let reason = String::from_utf8_lossy(&body);
    assert!(
        reason.contains("simpleenroll takes Content-Type application/pkcs10, not \"application/x-www-form-urlencoded\""),
        "{reason}"
    );
    let (code, _, body) = g.curl(
        "simpleenroll",
        &["-u", &user, "--data-binary", &data, "-H", "Content-Type:"],
    );
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
}

/// Issue 10 item 6 at the binary: 66 connections (over the default cap of 64) each trickle a
/// TLS ClientHello one byte every 100 ms and reconnect when dropped, while curl asks for
/// cacerts five times. Each request must be answered (it waits in the listen backlog until a
/// trickler has had its time). Bounded: the tricklers stop with the test, at 600 bytes at most.
#[test]
fn tricklers_over_the_cap_do_not_lock_out_cacerts() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let g = Gatecert::start("trickle");
    let port = g.port;
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers: Vec<_> = (0..66)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                // A TLS handshake record header announcing 512 bytes, then its body, slowly.
                let hello = [
                    0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
                ];
                let mut sock: Option<TcpStream> = None;
                let mut sent = 0;
                for i in 0..600 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if sock.is_none() {
                        sock = TcpStream::connect(("127.0.0.1", port)).ok();
                        sent = 0;
                    }
                    let byte = [hello.get(sent).copied().unwrap_or((i % 251) as u8)];
                    if sock.as_mut().is_some_and(|s| s.write_all(&byte).is_ok()) {
                        sent += 1;
                    } else {
                        sock = None;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    // Let them take every slot.
    std::thread::sleep(Duration::from_millis(500));
    let codes: Vec<u16> = (0..5).map(|_| g.curl("cacerts", &[]).0).collect();
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.join().unwrap();
    }
    assert_eq!(codes, [200; 5], "cacerts while tricklers hold the cap");
}
