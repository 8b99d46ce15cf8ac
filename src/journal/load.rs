//! Reading a journal's file into memory: a load from the start, and catching up with what
//! other processes appended or compacted since ([`Journal::refresh`]).

use std::fs;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{record_at, torn_tail, Index, Journal, RecordIn, Slot, HEADER, MAGIC, READ_CHUNK};
use crate::store::{io_err, Error};

/// A record collected by a load from the start ([`Journal::build`]): its key, its offset, and
/// where its value is (`None`: it deletes the key).
type Loaded<V, M> = (Arc<str>, u64, Option<Slot<V, M>>);

impl<V: Serialize + DeserializeOwned, X: Index<V>> Journal<V, X> {
    /// Catches up with what other processes wrote: nothing when the file is unchanged (one
    /// `stat`), the new records when it grew, a full reload when it was replaced by compaction.
    pub fn refresh(&mut self) -> Result<(), Error> {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.id.is_some() {
                    self.reset();
                }
                return Ok(());
            }
            Err(e) => return Err(io_err("stat", &self.path)(e)),
        };
        let id = (meta.dev(), meta.ino());
        if self.id != Some(id) || meta.len() < self.len {
            self.reset();
        }
        if self.id == Some(id) && meta.len() == self.len {
            return Ok(());
        }
        let mut id = id;
        if self.file.is_none() {
            // Nothing read yet (or all forgotten): read the file opened, whatever was stat'ed.
            let f = match fs::File::open(&self.path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("open", &self.path)(e)),
            };
            let m = f.metadata().map_err(io_err("stat", &self.path))?;
            id = (m.dev(), m.ino());
            self.forget_recent();
            self.file = Some(f);
        }
        self.id = Some(id);
        // In chunks, so that reading a large journal never holds the whole file in memory.
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut pos = self.len;
        // Read from the start: every record is collected, and the map built in one go
        // ([`Journal::build`]).
        let mut bulk = self.map.is_empty().then(Vec::new);
        let mut read = || -> Result<(), Error> {
            loop {
                let n = self
                    .file
                    .as_ref()
                    .map_or(Ok(0), |f| f.read_at(&mut chunk, pos))
                    .map_err(io_err("read", &self.path))?;
                if n == 0 {
                    break;
                }
                pos += n as u64;
                buf.extend_from_slice(&chunk[..n]);
                let used = self.apply(&buf, false, &mut bulk)?;
                buf.drain(..used);
            }
            self.apply(&buf, true, &mut bulk).map(drop)
        };
        let loaded = read();
        self.build(&mut bulk);
        loaded
    }

    /// The records collected by a load from the start, into the (empty) map: the last record of
    /// each key wins, a deletion removes it, and the map is built in one go, with full nodes,
    /// instead of with a walk of the map per record.
    fn build(&mut self, bulk: &mut Option<Vec<Loaded<V, X::Meta>>>) {
        let Some(mut all) = bulk.take() else {
            return;
        };
        debug_assert!(self.map.is_empty());
        // By key, the latest record first (records are at distinct offsets); keep that one.
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        all.dedup_by(|later, first| later.0 == first.0);
        let mut live = 0;
        // Sorted already: `from_iter`'s stable sort finds one run.
        self.map = all
            .into_iter()
            .filter_map(|(k, _, slot)| slot.map(|s| (k, s)))
            .inspect(|(_, s)| live += s.size())
            .collect();
        self.live = live;
    }

    pub(super) fn reset(&mut self) {
        self.map.clear();
        self.index.clear();
        self.len = 0;
        self.live = 0;
        self.id = None;
        self.file = None;
        self.forget_recent();
    }

    /// `r`, the record at byte `at` with `len` bytes of payload, now holds its key; during a
    /// load from the start it is collected in `bulk` ([`Journal::build`]) instead.
    pub(super) fn set(
        &mut self,
        r: RecordIn<V>,
        at: u64,
        len: u32,
        bulk: &mut Option<Vec<Loaded<V, X::Meta>>>,
    ) {
        if let Some(all) = bulk.as_mut() {
            let k: Arc<str> = Arc::from(r.k);
            let slot = r.v.map(|v| {
                self.index.add(&k, &v);
                Self::slot_of(v, at, len)
            });
            all.push((k, at, slot));
            return;
        }
        let Some(v) = r.v else {
            if let Some(old) = self.map.remove(r.k.as_str()) {
                self.live -= old.size();
            }
            return;
        };
        // One walk of the map for a key it has (rows rewritten: the common case of a long
        // journal), two for a new one.
        let bounds = (
            std::ops::Bound::Included(r.k.as_str()),
            std::ops::Bound::Included(r.k.as_str()),
        );
        if let Some((k, old)) = self.map.range_mut::<str, _>(bounds).next() {
            self.index.add(k, &v);
            self.live -= old.size();
            *old = Self::slot_of(v, at, len);
        } else {
            let k: Arc<str> = Arc::from(r.k);
            self.index.add(&k, &v);
            self.map.insert(k, Self::slot_of(v, at, len));
        }
        self.live += HEADER + u64::from(len);
    }

    /// Where `v`, read from the record at byte `at` with `len` bytes of payload, is kept.
    fn slot_of(v: V, at: u64, len: u32) -> Slot<V, X::Meta> {
        if X::KEEP_VALUES {
            Slot::Value(Box::new((v, HEADER + u64::from(len))))
        } else {
            let meta = X::meta(&v);
            Slot::File { at, len, meta }
        }
    }

    /// Applies the records at the start of `buf` (the bytes of the file from `self.len` on);
    /// returns how many bytes it used. A record cut short at the end of `buf` waits for more
    /// bytes, unless `eof`: then it is a torn tail, ignored.
    fn apply(
        &mut self,
        buf: &[u8],
        eof: bool,
        bulk: &mut Option<Vec<Loaded<V, X::Meta>>>,
    ) -> Result<usize, Error> {
        let mut at = 0usize;
        if self.len == 0 {
            if buf.len() < MAGIC.len() {
                // An empty or torn creation: nothing in it yet.
                if MAGIC.starts_with(buf) {
                    return Ok(0);
                }
                return Err(self.corrupt("not a gatecert journal (bad magic)".into()));
            }
            if &buf[..MAGIC.len()] != MAGIC {
                return Err(self.corrupt("not a gatecert journal (bad magic)".into()));
            }
            at = MAGIC.len();
            self.len = MAGIC.len() as u64;
        }
        while at < buf.len() {
            let Some(rec) = record_at(&buf[at..]) else {
                // A torn tail is the last thing in the file; damage followed by more is not.
                if torn_tail(&buf[at..]) {
                    if eof {
                        break;
                    }
                    return Ok(at);
                }
                return Err(self.corrupt(format!(
                    "damaged record at byte {} (bad length or crc) followed by more data",
                    self.len
                )));
            };
            // record_at checked it against MAX_RECORD.
            let len = rec.len() as u32;
            let r: RecordIn<V> = serde_json::from_slice(rec).map_err(|e| {
                self.corrupt(format!("record at byte {} does not parse: {e}", self.len))
            })?;
            self.set(r, self.len, len, bulk);
            let size = HEADER + u64::from(len);
            at += usize::try_from(size).unwrap_or(usize::MAX);
            self.len += size;
        }
        Ok(at)
    }
}
