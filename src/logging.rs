//! Log lines to syslog (`/dev/log`, which OpenWrt's logd and journald both accept) or to stderr.
//!
//! A hand-written RFC 3164 sender over a Unix datagram socket: about forty lines, where the
//! `syslog` crate would add `hostname`, `time` formatting and `libc` to a router's flash. Messages
//! carry no secrets by construction: the modules never format key material or tokens.

use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use crate::config::LogTarget;

/// The installed logger.
struct Logger {
    target: LogTarget,
    path: &'static str,
    socket: Mutex<Option<UnixDatagram>>,
}

impl Logger {
    fn send_syslog(&self, level: log::Level, msg: &str) -> bool {
        // RFC 3164 PRI = facility * 8 + severity; facility daemon (3).
        let severity = match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        let line = format!(
            "<{}>gatecert[{}]: {msg}",
            3 * 8 + severity,
            std::process::id()
        );
        let Ok(mut guard) = self.socket.lock() else {
            return false;
        };
        if guard.is_none() {
            *guard = UnixDatagram::unbound()
                .and_then(|s| s.connect(self.path).map(|()| s))
                .ok();
        }
        match guard.as_ref() {
            Some(s) if s.send(line.as_bytes()).is_ok() => true,
            _ => {
                // logd restarted or is absent: reconnect next time, use stderr now.
                *guard = None;
                false
            }
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        if self.target == LogTarget::Syslog && self.send_syslog(record.level(), &msg) {
            return;
        }
        let tag = match record.level() {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        let _ = writeln!(std::io::stderr().lock(), "gatecert: {tag}{msg}");
    }

    fn flush(&self) {}
}

/// Installs the logger. Later calls only change the level (a SIGHUP reload may change it).
pub fn init(target: LogTarget, level: log::LevelFilter) {
    let logger = Box::new(Logger {
        target,
        path: "/dev/log",
        socket: Mutex::new(None),
    });
    let _ = log::set_boxed_logger(logger);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_line_reaches_the_socket_with_daemon_facility() {
        let dir = std::env::temp_dir().join(format!("gatecert-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let leaked: &'static str = Box::leak(path.to_str().unwrap().to_owned().into_boxed_str());
        let l = Logger {
            target: LogTarget::Syslog,
            path: leaked,
            socket: Mutex::new(None),
        };
        assert!(l.send_syslog(log::Level::Warn, "renewal failed"));
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<28>gatecert["), "{line}");
        assert!(line.ends_with("]: renewal failed"), "{line}");
        drop(server);
        std::fs::remove_dir_all(&dir).unwrap();
        // with the socket gone, sending fails and the caller falls back to stderr
        assert!(!l.send_syslog(log::Level::Warn, "x"));
    }
}
