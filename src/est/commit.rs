//! The group commit, off the loop's thread.
//!
//! The service's loop signs a turn's issuances and stages them under the stores' locks
//! ([`Est::stage_issues`]); the syncs that make them durable ([`Staged::write`]) run on one
//! commit thread, so that the loop goes on accepting connections, running TLS handshakes and
//! reading requests meanwhile. While a group commits, every request that arrives whole is
//! deferred ([`Est::defer`]): nothing about it is decided, checked or claimed until the group is
//! done and its locks are released, and then it is handled as if it had just arrived
//! ([`Est::take_deferred`]). So the loop never reads a store a commit holds, never waits on a
//! lock the commit thread has, and every gate of a deferred request runs on the stores as the
//! finished group left them. No client is answered before its group's `write` returned: the
//! answers are made on the loop's thread from the thread's result ([`Est::finish_commit`]).
//! One group at a time: the next starts once the last has answered.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::record::{Group, Staged};
use super::{Denial, Est};
use crate::http::{Answer, PeerInfo, Request, Response};

/// The ids of requests deferred while a group commits (the broker's count up from 1, the
/// pending issuances' from [`super::PENDING_IDS`]).
const DEFERRED_IDS: u64 = 1 << 61;

/// The commit thread: takes staged groups, writes them, says how each went.
pub(super) struct Committer {
    jobs: Option<Sender<Staged>>,
    done: Receiver<Result<(), Denial>>,
    /// Readable once a result is waiting (the loop polls it; shared, so that it needs no `dup`
    /// per turn).
    wake: Arc<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    fn start(#[cfg(test)] gate: Option<Arc<Gate>>) -> std::io::Result<Committer> {
        let (wake, mut signal) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (jobs, queue) = mpsc::channel::<Staged>();
        let (report, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("gatecert-commit".into())
            .spawn(move || {
                for staged in queue {
                    #[cfg(test)]
                    if let Some(g) = &gate {
                        g.pass();
                    }
                    if report.send(staged.write()).is_err() {
                        return;
                    }
                    let _ = signal.write(&[1]);
                }
            })?;
        Ok(Committer {
            jobs: Some(jobs),
            done,
            wake: Arc::new(wake),
            thread: Some(thread),
        })
    }
}

impl Drop for Committer {
    /// Lets a group on its way finish (its records become durable, its locks are released)
    /// before the thread is gone.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A group on the commit thread: what is needed to answer its clients.
pub(super) struct Inflight {
    group: Group,
    /// (parked id, operation, client) of each issuance, in the group's order.
    meta: Vec<(u64, String, IpAddr)>,
}

impl Est {
    /// True while a group is on the commit thread.
    pub fn committing(&self) -> bool {
        self.inflight.is_some()
    }

    /// The socket that turns readable when the group on the commit thread is done.
    pub fn commit_wake(&self) -> Option<&Arc<UnixStream>> {
        self.inflight.as_ref()?;
        self.committer.as_ref().map(|c| &c.wake)
    }

    /// Parks `req` until the group on the commit thread is done ([`Est::take_deferred`]).
    pub fn defer(&mut self, req: &Request, peer: &PeerInfo) -> Answer {
        self.next_deferred += 1;
        let id = DEFERRED_IDS | self.next_deferred;
        self.deferred.push((id, req.clone(), peer.clone()));
        Answer::Later(id)
    }

    /// The requests deferred while the last group committed, in arrival order, to be handled
    /// now; empty while a group is still committing.
    pub fn take_deferred(&mut self) -> Vec<(u64, Request, PeerInfo)> {
        if self.committing() {
            return Vec::new();
        }
        std::mem::take(&mut self.deferred)
    }

    /// Stages the issuances parked since the last group (those whose client is still there:
    /// `alive(id)`) and hands them to the commit thread. Returns the answers that are final
    /// already (the gates refused them, or the locks could not be had), for
    /// [`crate::http::Server::complete`]. Does nothing while a group is committing.
    pub fn start_commit(&mut self, alive: &dyn Fn(u64) -> bool) -> Vec<(u64, String, Response)> {
        if self.committing() {
            return Vec::new();
        }
        let mut meta = Vec::new();
        let mut items = Vec::new();
        for (id, issue) in std::mem::take(&mut self.pending) {
            if alive(id) {
                meta.push((id, issue.op.clone(), issue.client));
                items.push(issue);
            } else if let Some(c) = issue.granted.claim {
                // Its client went away before the commit: its token use is not spent.
                self.claims.take(c);
            }
        }
        if items.is_empty() {
            return Vec::new();
        }
        let (group, staged) = self.stage_issues(items);
        let Some(staged) = staged else {
            return self.answers(meta, group.results);
        };
        if self.committer.is_none() {
            match Committer::start(
                #[cfg(test)]
                self.commit_gate.clone(),
            ) {
                Ok(c) => self.committer = Some(c),
                Err(e) => log::warn!("no commit thread ({e}); committing on the loop's thread"),
            }
        }
        let sent = match self.committer.as_ref().and_then(|c| c.jobs.as_ref()) {
            Some(jobs) => jobs.send(staged).map_err(|e| e.0),
            None => Err(staged),
        };
        match sent {
            Ok(()) => {
                self.inflight = Some(Inflight { group, meta });
                Vec::new()
            }
            Err(staged) => {
                let stored = staged.write();
                let results = self.finish_issues(group, stored);
                self.answers(meta, results)
            }
        }
    }

    /// The answers of the group on the commit thread once it is done (at once, or, with `wait`,
    /// when it is); empty while it still commits or when none is. A thread that went away
    /// mid-group answers 500 and withholds every certificate of the group.
    pub fn finish_commit(&mut self, wait: bool) -> Vec<(u64, String, Response)> {
        let Some(c) = self.committer.as_ref() else {
            return Vec::new();
        };
        if self.inflight.is_none() {
            return Vec::new();
        }
        let stored = if wait {
            c.done.recv().map_err(|_| ())
        } else {
            match c.done.try_recv() {
                Ok(r) => Ok(r),
                Err(TryRecvError::Empty) => return Vec::new(),
                Err(TryRecvError::Disconnected) => Err(()),
            }
        };
        let mut drain = [0u8; 16];
        while matches!((&*c.wake).read(&mut drain), Ok(n) if n > 0) {}
        let stored = stored.unwrap_or_else(|()| {
            log::error!("the commit thread is gone; the certificates of its group are withheld");
            self.committer = None;
            Err(Denial::new(500, "issuance record lost"))
        });
        let Some(Inflight { group, meta }) = self.inflight.take() else {
            return Vec::new();
        };
        let results = self.finish_issues(group, stored);
        self.answers(meta, results)
    }

    /// Commits the issuances parked since the last call as one group and waits for it:
    /// [`Est::start_commit`] then [`Est::finish_commit`]. A group already on the commit thread
    /// is finished first; its answers come first.
    pub fn commit_pending(&mut self, alive: &dyn Fn(u64) -> bool) -> Vec<(u64, String, Response)> {
        let mut out = self.finish_commit(true);
        out.extend(self.start_commit(alive));
        out.extend(self.finish_commit(true));
        out
    }

    fn answers(
        &mut self,
        meta: Vec<(u64, String, IpAddr)>,
        results: Vec<Result<super::Granted, Denial>>,
    ) -> Vec<(u64, String, Response)> {
        meta.into_iter()
            .zip(results)
            .map(|((id, op, client), r)| {
                let resp = self.respond(&op, client, r);
                (id, op, resp)
            })
            .collect()
    }
}

/// Tests: holds the commit thread before each group's write until opened, so that a test can
/// look at the service while a group commits for as long as it likes.
#[cfg(test)]
#[derive(Default)]
pub struct Gate {
    state: std::sync::Mutex<(bool, usize)>,
    changed: std::sync::Condvar,
}

#[cfg(test)]
impl Gate {
    fn pass(&self) {
        let mut st = self.state.lock().unwrap();
        st.1 += 1;
        self.changed.notify_all();
        while !st.0 {
            st = self.changed.wait(st).unwrap();
        }
    }

    /// Waits (at most `limit`) until `n` groups have reached the gate; false if they did not.
    pub fn reached(&self, n: usize, limit: std::time::Duration) -> bool {
        let st = self.state.lock().unwrap();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, limit, |st| st.1 < n)
            .unwrap();
        st.1 >= n
    }

    /// Lets every group through from now on.
    pub fn open(&self) {
        self.state.lock().unwrap().0 = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
impl Est {
    /// Holds this service's commit thread at a [`Gate`] (set before the first group).
    pub fn gate_commits(&mut self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.commit_gate = Some(gate.clone());
        gate
    }
}
