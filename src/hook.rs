//! Running operator hooks (`dns_hook`, `deploy_hook`) with a time limit.
//!
//! A hook that hangs (a DNS API that never answers, a service reload that blocks) must not hang
//! renewal: the upstream worker that runs it also brokers leaves. Each hook runs in a process
//! group of its own; past the limit the whole group gets SIGKILL and the run counts as failed.

use std::io;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a hook may run.
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// How a hook ended.
#[derive(Debug)]
pub enum Ended {
    /// It exited (successfully or not).
    Exited(ExitStatus),
    /// It ran past the limit and was killed with its process group.
    TimedOut(Duration),
}

impl Ended {
    /// True for exit status 0.
    pub fn success(&self) -> bool {
        matches!(self, Ended::Exited(s) if s.success())
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(s) => write!(f, "{s}"),
            Ended::TimedOut(d) => write!(f, "killed after {} s (time limit)", d.as_secs()),
        }
    }
}

/// Spawns `cmd` in a new process group and waits at most `limit` for it.
pub fn run(cmd: &mut Command, limit: Duration) -> io::Result<Ended> {
    let mut child = cmd.process_group(0).spawn()?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ended::Exited(status));
        }
        if Instant::now() >= deadline {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Ended::TimedOut(limit));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_reported() {
        let ok = run(Command::new("/bin/sh").args(["-c", "exit 0"]), TIMEOUT).unwrap();
        assert!(ok.success());
        let bad = run(Command::new("/bin/sh").args(["-c", "exit 3"]), TIMEOUT).unwrap();
        assert!(!bad.success());
        assert!(bad.to_string().contains('3'), "{bad}");
    }

    /// A hook that hangs, with a child of its own, is killed with its group at the limit.
    #[test]
    fn a_hanging_hook_is_killed_with_its_children() {
        let t = Instant::now();
        let r = run(
            Command::new("/bin/sh").args(["-c", "sleep 30 & sleep 30; wait"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(matches!(r, Ended::TimedOut(_)), "{r:?}");
        assert!(!r.success());
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(r.to_string().contains("time limit"));
    }
}
