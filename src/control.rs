//! The service's control socket, `<state_dir>/control.sock`: `gatecert renew` run while
//! `gatecert run` holds the state directory hands its request to the service instead of
//! failing on the lock; `gatecert status` asks it for the leaf and token counts, and
//! `gatecert leaves revoke|disable|enable` hands it the change: it has the stores open, so
//! neither command reads a journal whole.
//!
//! Protocol: one line from the client, `renew [--force] [--cert NAME] [--issuer NAME]`,
//! `counts NOW` or `leaves OP WHO REASON NOW` (NOW in Unix seconds); one answer, the exit code
//! (`0` renewed or done, `1` nothing due, `2` error) on the first line, then what to print (for
//! `counts`, a JSON object; for `leaves`, `{"out": ..., "err": ...}`). The socket is 0600 in the
//! 0700 state directory (root only); one client at a time, a request of at most
//! [`MAX_REQUEST`] bytes read within [`READ_TIMEOUT`].

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::revocation::{Change, Op, Printed};

/// The socket's file name in the state directory.
pub const SOCKET: &str = "control.sock";
/// The longest request line.
pub const MAX_REQUEST: u64 = 256;
/// How long the service waits for the request line.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a renewal may take before the service answers with an error (an ACME order with
/// its retries is bounded well below this).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// `<state_dir>/control.sock`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET)
}

/// What a client asks.
#[derive(Debug, PartialEq, Eq)]
pub enum Ask {
    /// `renew ...`.
    Renew(Request),
    /// `counts NOW`: the leaf and token counts as of NOW ([`crate::report::status`]).
    Counts(i64),
    /// `leaves OP WHO REASON NOW`: `gatecert leaves revoke|disable|enable` at the command's
    /// NOW ([`crate::revocation::Change`]).
    Leaves(Change, i64),
}

impl Ask {
    /// Parses a request line; the error names what is wrong.
    pub fn parse(line: &str) -> Result<Ask, String> {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("counts") => match (words.next().map(str::parse::<i64>), words.next()) {
                (Some(Ok(now)), None) => Ok(Ask::Counts(now)),
                _ => Err("usage: counts NOW (Unix seconds)".into()),
            },
            Some("leaves") => {
                let w: Vec<&str> = words.collect();
                match w.as_slice() {
                    [op, who, reason, now] if !who.chars().any(char::is_control) => {
                        match (Op::parse(op), reason.parse::<u8>(), now.parse::<i64>()) {
                            (Some(op), Ok(reason), Ok(now)) => Ok(Ask::Leaves(
                                Change {
                                    op,
                                    who: (*who).to_owned(),
                                    reason,
                                },
                                now,
                            )),
                            _ => Err(LEAVES_USAGE.into()),
                        }
                    }
                    _ => Err(LEAVES_USAGE.into()),
                }
            }
            _ => Request::parse(line).map(Ask::Renew),
        }
    }
}

const LEAVES_USAGE: &str = "usage: leaves revoke|disable|enable WHO REASON NOW (Unix seconds)";

/// How long `gatecert leaves revoke|disable|enable` waits for the service's answer (the
/// service waits at most [`LEAVES_LOCK_WAIT`] for each lock, then signs the CRL).
pub const LEAVES_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the service's loop waits for `leaves.jnl.lock` and `tokens.jnl.lock` for such a
/// request before it leaves the change to the command (which waits as long as it takes).
pub const LEAVES_LOCK_WAIT: Duration = Duration::from_secs(1);

/// The client's side of `leaves`: what the service did and printed, or `None` when no service
/// listens, the socket is busy with a renewal, a lock the change needs is held by another
/// process, the service does not know the request (an older version), or `change` cannot be
/// put on one request line (the caller then carries it out itself, under the same locks).
pub fn leaves(state_dir: &Path, change: &Change, now: i64) -> Option<Printed> {
    let who = &change.who;
    if who.is_empty() || who.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let line = format!(
        "leaves {} {who} {} {now}\n",
        change.op.as_str(),
        change.reason
    );
    if line.len() as u64 > MAX_REQUEST {
        return None;
    }
    match exchange(state_dir, &line, LEAVES_TIMEOUT, 1 << 20) {
        Ok(Some((code, answer))) => Printed::from_json(code, &answer),
        _ => None,
    }
}

/// How long `gatecert status` waits for the counts (the service answers them from memory,
/// after the group commit in flight, if any).
pub const COUNTS_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest counts answer taken (it names disabled and revoked devices).
const MAX_COUNTS: u64 = 16 << 20;

/// The client's side of `counts`: the service's JSON answer, or `None` when no service
/// listens, it is busy with a renewal, or its answer is not one (the caller then reads the
/// stores itself).
pub fn counts(state_dir: &Path, now: i64) -> Option<String> {
    let line = format!("counts {now}\n");
    match exchange(state_dir, &line, COUNTS_TIMEOUT, MAX_COUNTS) {
        Ok(Some((0, json))) => Some(json),
        _ => None,
    }
}

/// A `renew` request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `--force`.
    pub force: bool,
    /// `--cert NAME`.
    pub cert: Option<String>,
    /// `--issuer NAME`: re-issue from this issuer (`renew --now --issuer`).
    pub issuer: Option<String>,
}

impl Request {
    /// The request line.
    pub fn line(&self) -> String {
        let mut s = String::from("renew");
        if self.force {
            s.push_str(" --force");
        }
        if let Some(c) = &self.cert {
            s.push_str(" --cert ");
            s.push_str(c);
        }
        if let Some(i) = &self.issuer {
            s.push_str(" --issuer ");
            s.push_str(i);
        }
        s.push('\n');
        s
    }

    /// Parses a request line; the error names what is wrong.
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("renew") {
            return Err(
                "the requests are: renew [--force] [--cert NAME] [--issuer NAME] | counts NOW | \
                 leaves OP WHO REASON NOW"
                    .into(),
            );
        }
        let mut req = Request {
            force: false,
            cert: None,
            issuer: None,
        };
        while let Some(w) = words.next() {
            match w {
                "--force" => req.force = true,
                "--cert" => match words.next() {
                    Some(n) if req.cert.is_none() => req.cert = Some(n.to_string()),
                    Some(_) => return Err("--cert given twice".into()),
                    None => return Err("--cert needs a certificate name".into()),
                },
                "--issuer" => match words.next() {
                    Some(n) if req.issuer.is_none() => req.issuer = Some(n.to_string()),
                    Some(_) => return Err("--issuer given twice".into()),
                    None => return Err("--issuer needs an issuer name".into()),
                },
                other => return Err(format!("unexpected word {other:?} in the request")),
            }
        }
        Ok(req)
    }
}

/// The service's side.
pub struct Listener {
    inner: UnixListener,
    path: PathBuf,
    busy: Arc<AtomicBool>,
}

/// A client whose request was read; answer it with [`Client::answer`] (the next client is
/// taken only after that).
pub struct Client {
    stream: UnixStream,
    busy: Arc<AtomicBool>,
}

impl Client {
    /// Sends the exit code and message, and frees the socket for the next client.
    pub fn answer(mut self, code: i32, message: &str) {
        finish(&mut self.stream, code, message);
    }
}

/// Writes the answer, then reads what the client sent beyond the request (at most 4 KiB,
/// within the stream's read timeout) until it closes: closing with unread data would reset the
/// connection, and the client would lose the answer.
fn finish(stream: &mut UnixStream, code: i32, message: &str) {
    let _ = write!(stream, "{code}\n{message}");
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = stream.take(4096).read_to_end(&mut rest);
}

impl Drop for Client {
    fn drop(&mut self) {
        self.busy.store(false, Ordering::SeqCst);
    }
}

impl Listener {
    /// Binds `<state_dir>/control.sock` (the caller holds the state directory's lock, so a
    /// socket file left there is stale and is replaced), mode 0600, non-blocking.
    pub fn bind(state_dir: &Path) -> io::Result<Listener> {
        let path = path_in(state_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, &path)),
        }
        let inner = UnixListener::bind(&path).map_err(|e| with_path(e, &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| with_path(e, &path))?;
        inner
            .set_nonblocking(true)
            .map_err(|e| with_path(e, &path))?;
        Ok(Listener {
            inner,
            path,
            busy: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }

    /// Accepts a waiting client and reads its request. A bad request, or a second client
    /// while one is being served, is answered here with exit code 2 (and `None` returned).
    pub fn accept(&self) -> Option<(Client, Ask)> {
        let (stream, _) = self.inner.accept().ok()?;
        let mut stream = stream;
        if stream.set_nonblocking(false).is_err()
            || stream.set_read_timeout(Some(READ_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(READ_TIMEOUT)).is_err()
        {
            return None;
        }
        if self.busy.swap(true, Ordering::SeqCst) {
            finish(&mut stream, 2, "another request is being served; try again");
            return None;
        }
        let client = Client {
            stream,
            busy: self.busy.clone(),
        };
        let mut line = String::new();
        let read = client
            .stream
            .try_clone()
            .and_then(|s| BufReader::new(s.take(MAX_REQUEST)).read_line(&mut line));
        if let Err(e) = read {
            client.answer(2, &format!("reading the request: {e}"));
            return None;
        }
        if !line.ends_with('\n') {
            client.answer(
                2,
                &format!("the request must be one line of at most {MAX_REQUEST} bytes"),
            );
            return None;
        }
        match Ask::parse(&line) {
            Ok(ask) => Some((client, ask)),
            Err(m) => {
                client.answer(2, &m);
                None
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The client's side: hands `req` to the service listening on `<state_dir>/control.sock`.
/// `Ok(None)` when no service listens there (then the caller renews by itself).
pub fn request(state_dir: &Path, req: &Request) -> io::Result<Option<(i32, String)>> {
    exchange(
        state_dir,
        &req.line(),
        ANSWER_TIMEOUT + Duration::from_secs(30),
        64 * 1024,
    )
}

/// Sends `line`, reads the answer (at most `max` bytes, within `timeout`): `Ok(None)` when no
/// service listens.
fn exchange(
    state_dir: &Path,
    line: &str,
    timeout: Duration,
    max: u64,
) -> io::Result<Option<(i32, String)>> {
    let path = path_in(state_dir);
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(with_path(e, &path)),
    };
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| with_path(e, &path))?;
    stream
        .write_all(line.as_bytes())
        .map_err(|e| with_path(e, &path))?;
    let mut answer = String::new();
    stream
        .take(max)
        .read_to_string(&mut answer)
        .map_err(|e| with_path(e, &path))?;
    let (code, message) = answer.split_once('\n').unwrap_or((answer.as_str(), ""));
    match code.trim().parse::<i32>() {
        Ok(c @ 0..=2) => Ok(Some((c, message.to_string()))),
        _ => Err(with_path(
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the service answered {answer:?}, not an exit code"),
            ),
            &path,
        )),
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_say_why() {
        let r = Request::parse("renew --force --cert gw\n").unwrap();
        assert_eq!(
            r,
            Request {
                force: true,
                cert: Some("gw".into()),
                issuer: None,
            }
        );
        assert_eq!(Request::parse(&r.line()).unwrap(), r);
        let r = Request::parse("renew --force --cert gw --issuer backup\n").unwrap();
        assert_eq!(r.issuer.as_deref(), Some("backup"));
        assert_eq!(Request::parse(&r.line()).unwrap(), r);
        assert!(Request::parse("renew --issuer\n")
            .unwrap_err()
            .contains("--issuer needs an issuer name"));
        assert!(Request::parse("status\n")
            .unwrap_err()
            .contains("the requests are"));
        assert_eq!(
            Ask::parse("counts 1700000000\n"),
            Ok(Ask::Counts(1_700_000_000))
        );
        assert!(matches!(Ask::parse("renew --force\n"), Ok(Ask::Renew(r)) if r.force));
        for bad in ["counts\n", "counts x\n", "counts 1 2\n"] {
            assert!(Ask::parse(bad).unwrap_err().contains("counts NOW"), "{bad}");
        }
        assert_eq!(
            Ask::parse("leaves disable s-1 5 1700000000\n"),
            Ok(Ask::Leaves(
                Change {
                    op: Op::Disable,
                    who: "s-1".into(),
                    reason: 5,
                },
                1_700_000_000
            ))
        );
        for bad in [
            "leaves\n",
            "leaves revoke s-1 0\n",
            "leaves forget s-1 0 1\n",
            "leaves revoke s-1 256 1\n",
            "leaves revoke s-1 0 x\n",
            "leaves revoke s 1 0 1\n",
            "leaves revoke s\u{1b}[2J 0 1\n",
        ] {
            assert!(
                Ask::parse(bad)
                    .unwrap_err()
                    .contains("leaves revoke|disable|enable WHO"),
                "{bad}"
            );
        }
        assert!(Request::parse("renew --cert\n")
            .unwrap_err()
            .contains("needs"));
        assert!(Request::parse("renew -x\n").unwrap_err().contains("\"-x\""));
    }

    fn answer_of(mut s: UnixStream) -> String {
        let mut a = String::new();
        s.read_to_string(&mut a).unwrap();
        a
    }

    /// Waits (bounded) until the listener has a client, then accepts it.
    fn accept_one(l: &Listener) -> Option<(Client, Ask)> {
        let fd = l.fd();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        let _ = rustix::event::poll(&mut fds, None);
        l.accept()
    }

    /// `leaves` hands the change over and returns what the service printed; an answer that
    /// is not one (an older service, a busy socket), no service, or a WHO that cannot go on
    /// the line is `None`: the command then does the change itself.
    #[test]
    fn a_leaves_change_is_handed_over_or_left_to_the_command() {
        let dir = std::env::temp_dir().join(format!("gatecert-control-l-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let change = Change {
            op: Op::Revoke,
            who: "s-1".into(),
            reason: 1,
        };
        assert_eq!(leaves(&dir, &change, 7), None, "no service");
        let l = Listener::bind(&dir).unwrap();
        let serve = |change: &Change, code: i32, answer: &str| {
            std::thread::scope(|s| {
                let asker = s.spawn(|| leaves(&dir, change, 7));
                let (client, ask) = accept_one(&l).unwrap();
                assert_eq!(ask, Ask::Leaves(change.clone(), 7));
                client.answer(code, answer);
                asker.join().unwrap()
            })
        };
        let printed = Printed {
            code: 2,
            out: "device s-1 revoked\n".into(),
            err: "the CRL was not published\n".into(),
        };
        assert_eq!(serve(&change, 2, &printed.to_json()), Some(printed));
        assert_eq!(
            serve(&change, 2, "the requests are: renew | counts NOW"),
            None
        );
        for who in ["two words", "", "tab\there", &"x".repeat(300)] {
            let odd = Change {
                who: who.into(),
                ..change.clone()
            };
            assert_eq!(leaves(&dir, &odd, 7), None, "{who:?}");
        }
        drop(l);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_socket_is_private_bounded_and_takes_one_client_at_a_time() {
        let dir = std::env::temp_dir().join(format!("gatecert-control-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let l = Listener::bind(&dir).unwrap();
        let mode = std::fs::metadata(path_in(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        // A request longer than MAX_REQUEST: refused, saying why.
        let mut c = UnixStream::connect(path_in(&dir)).unwrap();
        c.write_all(format!("renew --cert {}\n", "x".repeat(300)).as_bytes())
            .unwrap();
        assert!(accept_one(&l).is_none());
        assert!(answer_of(c).starts_with("2\nthe request must be one line of at most 256"));

        // One client at a time: a second one while the first is unanswered is told so.
        let mut first = UnixStream::connect(path_in(&dir)).unwrap();
        first.write_all(b"renew --force\n").unwrap();
        let (client, req) = accept_one(&l).unwrap();
        assert!(matches!(req, Ask::Renew(r) if r.force));
        let mut second = UnixStream::connect(path_in(&dir)).unwrap();
        second.write_all(b"renew\n").unwrap();
        assert!(accept_one(&l).is_none());
        assert!(answer_of(second).starts_with("2\nanother request"));
        client.answer(1, "");
        assert_eq!(answer_of(first), "1\n");
        // Answered: the next client is taken.
        let mut third = UnixStream::connect(path_in(&dir)).unwrap();
        third.write_all(b"renew\n").unwrap();
        let (client, _) = accept_one(&l).unwrap();
        client.answer(0, "");
        assert_eq!(answer_of(third), "0\n");
        drop(l);
        assert!(!path_in(&dir).exists(), "removed on drop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
