//! The service's control socket, `<state_dir>/control.sock`: `gatecert renew` run while
//! `gatecert run` holds the state directory hands its request to the service instead of
//! failing on the lock.
//!
//! Protocol: one line from the client, `renew [--force] [--cert NAME]`; one answer, the exit
//! code (`0` renewed, `1` nothing due, `2` error) on the first line, then what to print. The
//! socket is 0600 in the 0700 state directory (root only); one client at a time, a request of at
//! most [`MAX_REQUEST`] bytes read within [`READ_TIMEOUT`].

use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// A `renew` request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// `--force`.
    pub force: bool,
    /// `--cert NAME`.
    pub cert: Option<String>,
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
        s.push('\n');
        s
    }

    /// Parses a request line; the error names what is wrong.
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("renew") {
            return Err("the only request is: renew [--force] [--cert NAME]".into());
        }
        let mut req = Request {
            force: false,
            cert: None,
        };
        while let Some(w) = words.next() {
            match w {
                "--force" => req.force = true,
                "--cert" => match words.next() {
                    Some(n) if req.cert.is_none() => req.cert = Some(n.to_string()),
                    Some(_) => return Err("--cert given twice".into()),
                    None => return Err("--cert needs a certificate name".into()),
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
        let _ = write!(self.stream, "{code}\n{message}");
        let _ = self.stream.flush();
    }
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
    pub fn accept(&self) -> Option<(Client, Request)> {
        let (stream, _) = self.inner.accept().ok()?;
        let mut stream = stream;
        if stream.set_nonblocking(false).is_err()
            || stream.set_read_timeout(Some(READ_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(READ_TIMEOUT)).is_err()
        {
            return None;
        }
        if self.busy.swap(true, Ordering::SeqCst) {
            let _ = write!(
                stream,
                "2\nanother renew request is being served; try again"
            );
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
        match Request::parse(&line) {
            Ok(req) => Some((client, req)),
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
        .set_read_timeout(Some(ANSWER_TIMEOUT + Duration::from_secs(30)))
        .map_err(|e| with_path(e, &path))?;
    stream
        .write_all(req.line().as_bytes())
        .map_err(|e| with_path(e, &path))?;
    let mut answer = String::new();
    stream
        .take(64 * 1024)
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
                cert: Some("gw".into())
            }
        );
        assert_eq!(Request::parse(&r.line()).unwrap(), r);
        assert!(Request::parse("status\n")
            .unwrap_err()
            .contains("only request"));
        assert!(Request::parse("renew --cert\n")
            .unwrap_err()
            .contains("needs"));
        assert!(Request::parse("renew -x\n").unwrap_err().contains("\"-x\""));
    }
}
