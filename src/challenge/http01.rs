//! http-01 (RFC 8555 §8.3): serve the key authorization at
//! `http://<domain>/.well-known/acme-challenge/<token>`, from gatecert's own short-lived
//! listener or as files under an existing web server's root.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Error, Listener, Pending};
use crate::store;

/// The path prefix, RFC 8555 §8.3.
pub const PREFIX: &str = "/.well-known/acme-challenge/";
/// The most request header bytes the listener reads.
pub const MAX_HEADER: usize = 8 * 1024;
/// How long one connection may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The standalone listener. Dropping it closes the port.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
}

impl Server {
    /// Listens on `addr`, answering exactly the pending tokens; everything else is 404.
    pub fn start(addr: SocketAddr, pending: &[Pending]) -> Result<Server, Error> {
        let answers: HashMap<String, String> = pending
            .iter()
            .map(|p| (format!("{PREFIX}{}", p.token), p.key_authorization.clone()))
            .collect();
        let answers = Arc::new(answers);
        let listener = Listener::spawn(addr, Arc::new(move |sock| serve(sock, &answers)))?;
        Ok(Server { listener })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }
}

/// Reads one request (header ≤ [`MAX_HEADER`], within [`READ_TIMEOUT`]) and answers it.
fn serve(mut sock: TcpStream, answers: &HashMap<String, String>) {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let path = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || sock.set_read_timeout(Some(left)).is_err() {
            return;
        }
        let n = match sock.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let ok = matches!(req.method, Some("GET" | "HEAD"));
                break ok.then(|| req.path.unwrap_or("").to_owned());
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEADER => continue,
            _ => break None,
        }
    };
    let _ = sock.set_write_timeout(Some(READ_TIMEOUT));
    let answer = path.as_deref().and_then(|p| answers.get(p));
    let resp = match answer {
        Some(ka) => {
            log::debug!("http-01: served {}", path.as_deref().unwrap_or(""));
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ka}",
                ka.len()
            )
        }
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let _ = sock.write_all(resp.as_bytes());
    let _ = sock.flush();
}

/// Challenge files under a webroot. Dropping this removes them, whatever happened.
#[derive(Debug)]
pub struct WebrootFiles {
    dir: PathBuf,
    files: Vec<PathBuf>,
}

impl WebrootFiles {
    /// Writes `<webroot>/.well-known/acme-challenge/<token>` for each pending challenge.
    pub fn write(webroot: &Path, pending: &[Pending]) -> Result<WebrootFiles, Error> {
        let dir = webroot.join(PREFIX.trim_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Webroot {
            path: dir.clone(),
            source,
        })?;
        // Files are added to the guard before writing, so a partial failure still cleans up.
        let mut guard = WebrootFiles {
            dir,
            files: Vec::new(),
        };
        for p in pending {
            let path = guard.dir.join(&p.token);
            guard.files.push(path.clone());
            store::write_atomic(&path, p.key_authorization.as_bytes(), store::PUBLIC).map_err(
                |e| Error::Webroot {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                },
            )?;
        }
        log::info!(
            "http-01: wrote {} file(s) under {}",
            guard.files.len(),
            guard.dir.display()
        );
        Ok(guard)
    }
}

impl Drop for WebrootFiles {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        // Only removes the directory if it is now empty.
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::types::Identifier;

    fn pending(token: &str) -> Pending {
        Pending {
            identifier: Identifier::Dns("gw.example".into()),
            token: token.into(),
            key_authorization: format!("{token}.thumb"),
        }
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn standalone_answers_token_and_404s_the_rest() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server = Server::start(addr, &[pending("tok1")]).unwrap();
        let ok = get(
            addr,
            b"GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\nHost: x\r\n\r\n",
        );
        assert!(ok.starts_with("HTTP/1.1 200 OK"), "{ok}");
        assert!(ok.ends_with("\r\n\r\ntok1.thumb"));
        let other = get(
            addr,
            b"GET /.well-known/acme-challenge/tok2 HTTP/1.1\r\n\r\n",
        );
        assert!(other.starts_with("HTTP/1.1 404"));
        let post = get(
            addr,
            b"POST /.well-known/acme-challenge/tok1 HTTP/1.1\r\n\r\n",
        );
        assert!(post.starts_with("HTTP/1.1 404"));
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEADER + 10));
        let too_big = get(addr, &huge);
        assert!(too_big.starts_with("HTTP/1.1 404"));
        drop(server);
        // After drop nothing answers the token there. (Another test may have bound the freed
        // port meanwhile, so "connect fails" alone would be a race.)
        let after = TcpStream::connect(addr).map(|mut s| {
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let _ = s.write_all(b"GET /.well-known/acme-challenge/tok1 HTTP/1.1\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        });
        assert!(
            after.as_deref().map_or(true, |r| !r.contains("tok1.thumb")),
            "the token is still served after drop: {after:?}"
        );
    }

    #[test]
    fn webroot_files_are_removed_on_drop() {
        let root = std::env::temp_dir().join(format!("gatecert-webroot-{}", std::process::id()));
        let files = WebrootFiles::write(&root, &[pending("abc"), pending("def")]).unwrap();
        let f = root.join(".well-known/acme-challenge/abc");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "abc.thumb");
        drop(files);
        assert!(!f.exists());
        assert!(!root.join(".well-known/acme-challenge").exists());
        std::fs::remove_dir_all(root).unwrap();
    }
}
