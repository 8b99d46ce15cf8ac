//! An append-only keyed journal: the storage under the token store and the leaf inventory, so
//! that one enrollment appends one small record instead of rewriting a whole file.
//!
//! ## Format
//!
//! ```text
//! "GCJ1\n"                                   magic, 5 bytes
//! record*: len u32 LE | crc32(payload) u32 LE | payload (JSON {"k": key, "v": value})
//! ```
//!
//! A record without `"v"` deletes its key. The last record for a key wins. The in-memory index
//! (a `BTreeMap` of the keys) is owned by whoever opened the journal (the service keeps it for
//! its life); it holds each value parsed, or, for a journal whose [`Index`] says so, only where
//! its record is in the file, read back on demand ([`Journal::read`], one `pread` of a page the
//! page cache usually holds), so that memory per key stays a few dozen bytes;
//! [`Journal::refresh`] catches up with records another process appended (one `stat`, and a read
//! of only the new bytes) and reloads after a compaction by another process (a new inode).
//!
//! ## Crash safety
//!
//! A record is appended with one `write(2)` on an `O_APPEND` descriptor and made durable with
//! `fdatasync(2)` ([`Journal::sync`]); a crash mid-append leaves a torn tail (short, or a crc that
//! does not match), which readers ignore and the next writer (under the lock) truncates away. A
//! bad record followed by more data is not a torn tail: it is refused as corrupt, never silently
//! skipped. Compaction writes the live records to a temp file, fsyncs it, renames it over the
//! journal and fsyncs the directory: a crash leaves the old journal or the new one.
//!
//! Writers serialise on an exclusive `flock(2)` of `<path>.lock` ([`Journal::lock`]); readers
//! take no lock.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::store::{self, io_err, Error};

mod load;

/// What a process keeps of a journal between two opens of it (its parsed index), so that the
/// next open only catches up with what other processes appended ([`Journal::refresh`]: one
/// `stat` when nothing was) instead of reading the whole file again. One value, for the last
/// path kept; the value is taken out while in use, so two users never share it.
#[derive(Debug)]
pub struct Kept<T>(std::sync::Mutex<Option<(PathBuf, T)>>);

impl<T> Default for Kept<T> {
    fn default() -> Self {
        Kept::new()
    }
}

impl<T> Kept<T> {
    /// Nothing kept.
    pub const fn new() -> Kept<T> {
        Kept(std::sync::Mutex::new(None))
    }

    /// Takes the value kept for `path`, if that is what is kept.
    pub fn take(&self, path: &Path) -> Option<T> {
        let mut kept = self.0.lock().ok()?;
        match kept.take() {
            Some((p, v)) if p == path => Some(v),
            other => {
                *kept = other;
                None
            }
        }
    }

    /// Keeps `value` for `path` (replacing what was kept).
    pub fn keep(&self, path: &Path, value: T) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some((path.to_path_buf(), value));
        }
    }
}

/// The first bytes of every journal.
pub const MAGIC: &[u8; 5] = b"GCJ1\n";
/// The largest record accepted: a bigger length field is damage, not data.
pub const MAX_RECORD: u32 = 64 * 1024;
/// Compaction waits until superseded records outweigh live ones *and* this many bytes.
pub const COMPACT_MIN_GARBAGE: u64 = 256 * 1024;
const HEADER: u64 = 8;
/// How much of a journal is read at a time.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Serialize)]
struct RecordOut<'a, V> {
    k: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    v: Option<&'a V>,
}

#[derive(Deserialize)]
struct RecordIn<V> {
    k: String,
    #[serde(default = "Option::default")]
    v: Option<V>,
}

/// What a journal keeps in memory besides its keys: whether it keeps every value (parsed), or
/// only where each value's record is in the file (read back on demand, [`Journal::read`]); and
/// an index of its own that sees every value as it is read, staged or appended (only added to:
/// a lookup in it must check what it finds, and the owner removes what it knows went stale).
pub trait Index<V>: Default + std::fmt::Debug {
    /// Values kept in memory ([`Journal::get`]), or read back from the file.
    const KEEP_VALUES: bool;
    /// A few bytes kept with each key read back from the file, that summarise its value
    /// ([`Journal::metas`]: counts over every key without reading any record).
    type Meta: Copy + std::fmt::Debug;
    /// The summary of `value`.
    fn meta(value: &V) -> Self::Meta;
    /// `key` now has `value`.
    fn add(&mut self, key: &Arc<str>, value: &V);
    /// Everything was forgotten (the journal is read again from its start).
    fn clear(&mut self);
}

/// No index; values kept in memory.
impl<V> Index<V> for () {
    const KEEP_VALUES: bool = true;
    type Meta = ();
    fn meta(_: &V) {}
    fn add(&mut self, _: &Arc<str>, _: &V) {}
    fn clear(&mut self) {}
}

/// Where a key's value is.
#[derive(Debug)]
enum Slot<V, M> {
    /// In the file: the record whose header is at byte `at`, with `len` bytes of payload, and
    /// the summary of its value.
    File { at: u64, len: u32, meta: M },
    /// In memory, and the size of its record in the file (0: staged, not appended yet).
    Value(Box<(V, u64)>),
}

impl<V, M> Slot<V, M> {
    fn size(&self) -> u64 {
        match self {
            Slot::File { len, .. } => HEADER + u64::from(*len),
            Slot::Value(b) => b.1,
        }
    }

    fn value(&self) -> Option<&V> {
        match self {
            Slot::Value(b) => Some(&b.0),
            Slot::File { .. } => None,
        }
    }
}

/// A keyed journal of `V`s (see the module doc), with an [`Index`] `X`.
#[derive(Debug)]
pub struct Journal<V, X: Index<V> = ()> {
    path: PathBuf,
    mode: u32,
    /// Where the value of each key is.
    map: BTreeMap<Arc<str>, Slot<V, X::Meta>>,
    /// The owner's index of the values.
    index: X,
    /// Bytes of the journal read and applied (past the last good record: a torn tail or nothing).
    len: u64,
    /// Bytes in live records (the rest of `len`, past the magic, is garbage).
    live: u64,
    /// (dev, ino) of the file read, to notice a compaction by another process.
    id: Option<(u64, u64)>,
    /// The file read (open while `id` is set): records are read back from it, so they stay
    /// readable (and the offsets right) even after another process renamed a compacted file
    /// over it, until [`Journal::refresh`] reads the new one.
    file: Option<fs::File>,
    /// Appended since the last [`Journal::sync`].
    dirty: Option<fs::File>,
    lock: Option<store::FileLock>,
    /// Durable syncs done (for the benches' "syncs per request").
    syncs: u64,
    /// Keys changed in memory by [`Journal::stage`], appended by [`Journal::flush`].
    staged: std::collections::BTreeSet<String>,
    /// The values last read back by [`Journal::read`], with their record's offset and bytes
    /// (emptied whenever `file` changes): an enrollment reads its device's row at each gate and
    /// again to stage the new one, and the parse is most of a read's cost.
    recent: std::sync::Mutex<Recent<V>>,
}

/// How many values [`Journal::read`] keeps parsed (a few KB each at most).
const RECENT: usize = 8;

/// The last [`RECENT`] values read back, oldest first: (offset, payload, value).
type Recent<V> = Vec<(u64, Box<[u8]>, V)>;

impl<V: Serialize + DeserializeOwned, X: Index<V>> Journal<V, X> {
    /// Opens `path` (created with `mode` on the first append); an absent file is empty.
    pub fn open(path: &Path, mode: u32) -> Result<Journal<V, X>, Error> {
        let mut j = Journal::detached(path, mode);
        j.refresh()?;
        Ok(j)
    }

    /// A journal value for `path` that has read nothing (a placeholder: [`Journal::open`]
    /// reads).
    pub fn detached(path: &Path, mode: u32) -> Journal<V, X> {
        Journal {
            path: path.to_path_buf(),
            mode,
            map: BTreeMap::new(),
            index: X::default(),
            len: 0,
            live: 0,
            id: None,
            file: None,
            dirty: None,
            lock: None,
            syncs: 0,
            staged: std::collections::BTreeSet::new(),
            recent: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// The values read back no longer name records of `file` (it is replaced or forgotten).
    fn forget_recent(&mut self) {
        self.recent
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the journal file exists (or has been read).
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The owner's index.
    pub fn index(&self) -> &X {
        &self.index
    }

    /// The owner's index, to remove what went stale.
    pub fn index_mut(&mut self) -> &mut X {
        &mut self.index
    }

    fn corrupt(&self, what: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    /// The key as kept: the one in the map when there is one (so the index shares it).
    fn key_of(&self, key: &str) -> Arc<str> {
        self.map
            .get_key_value(key)
            .map_or_else(|| Arc::from(key), |(k, _)| Arc::clone(k))
    }

    /// The value of `key`, when values are kept in memory ([`Index::KEEP_VALUES`]; otherwise
    /// only a staged one: see [`Journal::read`]).
    pub fn get(&self, key: &str) -> Option<&V> {
        self.map.get(key).and_then(Slot::value)
    }

    /// Whether `key` has a value (nothing is read).
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    /// Every key and value kept in memory, in key order (see [`Journal::get`]).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.map
            .iter()
            .filter_map(|(k, s)| s.value().map(|v| (&**k, v)))
    }

    fn slots<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a Arc<str>, &'a Slot<V, X::Meta>)> + 'a {
        self.map
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// The keys that start with `prefix`, in key order (nothing is read).
    pub fn keys<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Arc<str>> + 'a {
        self.slots(prefix).map(|(k, _)| k)
    }

    /// The keys that start with `prefix`, and their values kept in memory, in key order (see
    /// [`Journal::get`]).
    pub fn range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a V)> + 'a {
        self.slots(prefix)
            .filter_map(|(k, s)| s.value().map(|v| (&**k, v)))
    }

    /// The summary ([`Index::Meta`]) of the value of each key that starts with `prefix`, in
    /// key order: nothing is read.
    pub fn metas<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a Arc<str>, X::Meta)> + 'a {
        self.slots(prefix).map(|(k, slot)| match slot {
            Slot::File { meta, .. } => (k, *meta),
            Slot::Value(b) => (k, X::meta(&b.0)),
        })
    }

    /// The value of `key`, from memory or read back from its record in the file (one `pread`;
    /// the record is checked again: its crc, and that it holds `key`).
    pub fn read(&self, key: &str) -> Result<Option<V>, Error>
    where
        V: Clone,
    {
        match self.map.get(key) {
            None => Ok(None),
            Some(Slot::Value(b)) => Ok(Some(b.0.clone())),
            Some(Slot::File { at, len, .. }) => self.read_recent(key, *at, *len).map(Some),
        }
    }

    /// [`Journal::read_record`], without parsing a record again whose bytes are those of one
    /// read last (the record is still read and checked: damage since is seen, as without).
    fn read_recent(&self, key: &str, at: u64, len: u32) -> Result<V, Error>
    where
        V: Clone,
    {
        let buf = self.read_raw(at, len)?;
        let payload = &buf[HEADER as usize..];
        let recent = || {
            self.recent
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some((_, _, v)) = recent().iter().find(|r| r.0 == at && *r.1 == *payload) {
            return Ok(v.clone());
        }
        let v = self.parse_record(key, at, payload)?;
        let mut r = recent();
        if r.len() == RECENT {
            r.remove(0);
        }
        r.push((at, payload.into(), v.clone()));
        Ok(v)
    }

    /// The keys that start with `prefix` and their values (see [`Journal::read`]), in key order.
    pub fn read_range<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = Result<(&'a str, V), Error>> + 'a
    where
        V: Clone,
    {
        self.slots(prefix).map(move |(k, slot)| match slot {
            Slot::Value(b) => Ok((&**k, b.0.clone())),
            Slot::File { at, len, .. } => self.read_record(k, *at, *len).map(|v| (&**k, v)),
        })
    }

    /// The whole record (header and payload) at byte `at`, checked (its length and crc).
    fn read_raw(&self, at: u64, len: u32) -> Result<Vec<u8>, Error> {
        let f = self.file.as_ref().ok_or_else(|| {
            self.corrupt(format!(
                "the record at byte {at} is gone (the file was not read)"
            ))
        })?;
        let mut buf = vec![0u8; HEADER as usize + len as usize];
        f.read_exact_at(&mut buf, at)
            .map_err(io_err("read back a record of", &self.path))?;
        match record_at(&buf) {
            Some(p) if p.len() == len as usize => Ok(buf),
            _ => Err(self.corrupt(format!(
                "the record at byte {at} changed since it was read (bad length or crc)"
            ))),
        }
    }

    fn read_record(&self, key: &str, at: u64, len: u32) -> Result<V, Error> {
        let buf = self.read_raw(at, len)?;
        self.parse_record(key, at, &buf[HEADER as usize..])
    }

    /// The value of `key` in the record at byte `at` whose payload is `payload`.
    fn parse_record(&self, key: &str, at: u64, payload: &[u8]) -> Result<V, Error> {
        let r: RecordIn<V> = serde_json::from_slice(payload)
            .map_err(|e| self.corrupt(format!("record at byte {at} does not parse: {e}")))?;
        match r.v {
            Some(v) if r.k == key => Ok(v),
            _ => Err(self.corrupt(format!(
                "the record at byte {at} is not the value of {key:?} any more"
            ))),
        }
    }

    /// How many keys have a value.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes of superseded records.
    pub fn garbage(&self) -> u64 {
        self.len.saturating_sub(MAGIC.len() as u64 + self.live)
    }

    /// Durable syncs done by this value.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Takes the writers' lock (`<path>.lock`), waiting at most `wait` (`None`: as long as it
    /// takes), then catches up with [`Journal::refresh`]. [`Error::Locked`] when it stayed held.
    pub fn lock(&mut self, wait: Option<Duration>) -> Result<(), Error> {
        if self.lock.is_some() {
            return self.refresh();
        }
        let lock = store::FileLock::acquire(&self.path, wait)?;
        self.lock = Some(lock);
        self.refresh()
    }

    /// Makes what was appended durable ([`Journal::sync`]) and releases the writers' lock (also
    /// when the sync fails: the error says the records may not be durable).
    pub fn unlock(&mut self) -> Result<(), Error> {
        let synced = self.sync();
        self.lock = None;
        synced
    }

    /// For an owner's `Drop` that keeps this journal between opens ([`Kept`]): true when it may
    /// be kept, i.e. nothing is staged and unsaved (memory would be ahead of the file) and the
    /// lock, if held, was released with everything synced. Otherwise the next open reads the
    /// file again.
    pub fn release_for_keeping(&mut self) -> bool {
        if self.has_staged() {
            return false;
        }
        if self.is_locked() {
            if let Err(e) = self.unlock() {
                log::error!("{e}");
                return false;
            }
        }
        true
    }

    /// Whether this value holds the writers' lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_some()
    }

    /// `<path>.lock`.
    pub fn lock_path(&self) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Keeps `key = value` in memory, staged (the index sees it).
    fn stage_value(&mut self, key: &str, value: Option<V>) {
        let k = self.key_of(key);
        if let Some(old) = self.map.remove(key) {
            self.live -= old.size();
        }
        if let Some(v) = value {
            self.index.add(&k, &v);
            // The size is counted when the record is appended.
            self.map.insert(k, Slot::Value(Box::new((v, 0))));
        }
        self.staged.insert(key.to_owned());
    }

    /// Changes `key` in memory only (`None` deletes it): readers of this value see it at once,
    /// the file only after [`Journal::flush`]. Needs the lock, so that nothing another process
    /// appends can be missed between this and the flush.
    pub fn stage(&mut self, key: &str, value: Option<V>) -> Result<(), Error> {
        if self.lock.is_none() {
            return Err(Error::Locked(self.lock_path()));
        }
        self.stage_value(key, value);
        Ok(())
    }

    /// Loads `key = value` into memory without the lock, staged: a migration read from an older
    /// file, written by [`Journal::create_from_memory`] under the lock (or never, by a reader).
    pub fn preload(&mut self, key: &str, value: V) {
        self.stage_value(key, Some(value));
    }

    /// Removes `key` from memory without the lock (see [`Journal::preload`]).
    pub fn preload_remove(&mut self, key: &str) {
        self.stage_value(key, None);
    }

    /// Writes everything in memory (and every record read back) as a new journal, atomically:
    /// how a preloaded migration lands. Needs the lock.
    pub fn create_from_memory(&mut self) -> Result<(), Error> {
        self.rewrite(|_, _| true)?;
        self.staged.clear();
        self.reset();
        self.refresh()
    }

    /// Whether changes were staged and not flushed.
    pub fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Appends every staged change (one record per key, its value now). Durable after
    /// [`Journal::sync`].
    pub fn flush(&mut self) -> Result<(), Error>
    where
        V: Clone,
    {
        while let Some(key) = self.staged.pop_first() {
            let value = match self.read(&key) {
                Ok(v) => v,
                Err(e) => {
                    self.staged.insert(key);
                    return Err(e);
                }
            };
            if let Err(e) = self.put(&key, value.as_ref()) {
                self.staged.insert(key);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Appends `key = value` (`None` deletes it). Needs the lock; durable after
    /// [`Journal::sync`].
    pub fn put(&mut self, key: &str, value: Option<&V>) -> Result<(), Error> {
        let mut rec = Vec::new();
        encode_record(&self.path, &mut rec, key, value)?;
        let at = self.append(&rec)?;
        let payload = &rec[HEADER as usize..];
        // Apply what was written by reading it back as any other process would, so the index and
        // the file can't disagree: serialise → parse is the same path `refresh` takes.
        let r: RecordIn<V> = serde_json::from_slice(payload)
            .map_err(|e| self.corrupt(format!("record does not parse back: {e}")))?;
        // encode_record checked it against MAX_RECORD.
        let len = payload.len() as u32;
        self.set(r, at, len, &mut None);
        self.len += HEADER + u64::from(len);
        Ok(())
    }

    /// Appends one record (header and payload, [`encode_record`]); returns the byte it starts at.
    fn append(&mut self, rec: &[u8]) -> Result<u64, Error> {
        if self.lock.is_none() {
            return Err(Error::Locked(self.lock_path()));
        }
        let mut f = match self.dirty.take() {
            Some(f) => f,
            None => self.open_for_append()?,
        };
        f.write_all(rec).map_err(io_err("append to", &self.path))?;
        self.dirty = Some(f);
        Ok(self.len)
    }

    /// Opens the journal to append, creating it with its magic, and cutting away a torn tail
    /// (under the lock, so no other writer is mid-append).
    fn open_for_append(&mut self) -> Result<fs::File, Error> {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(self.mode)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&self.path)
            .map_err(io_err("open", &self.path))?;
        let meta = f.metadata().map_err(io_err("stat", &self.path))?;
        if self.id.is_none() || self.len < MAGIC.len() as u64 {
            // New (or only a torn magic): start it.
            f.set_len(0).map_err(io_err("truncate", &self.path))?;
            let mut g = &f;
            g.write_all(MAGIC).map_err(io_err("write", &self.path))?;
            // Keep the map: it holds what was staged to be written into this new file (a new
            // or torn-at-birth file has nothing else in it, so nothing is read back from it).
            self.live = 0;
            self.len = MAGIC.len() as u64;
            self.id = Some((meta.dev(), meta.ino()));
            self.forget_recent();
            self.file = Some(f.try_clone().map_err(io_err("open", &self.path))?);
            if let Some(dir) = self.path.parent() {
                f.sync_all().map_err(io_err("sync", &self.path))?;
                store::sync_dir(dir)?;
            }
        } else if meta.len() > self.len {
            f.set_len(self.len)
                .map_err(io_err("truncate", &self.path))?;
        }
        let mut f = f;
        f.seek(SeekFrom::End(0))
            .map_err(io_err("seek", &self.path))?;
        Ok(f)
    }

    /// Makes every record appended so far durable (one `fdatasync`); nothing to do when none was.
    pub fn sync(&mut self) -> Result<(), Error> {
        if let Some(f) = self.dirty.take() {
            f.sync_data().map_err(io_err("sync", &self.path))?;
            self.syncs += 1;
        }
        Ok(())
    }

    /// Whether [`Journal::compact`] would do anything: superseded records outweigh live ones
    /// and [`COMPACT_MIN_GARBAGE`].
    pub fn wants_compaction(&self) -> bool {
        let g = self.garbage();
        g > self.live && g > COMPACT_MIN_GARBAGE
    }

    /// Like [`Journal::wants_compaction`], counting the live records `keep` refuses as garbage
    /// too (they would be pruned; only values kept in memory are asked). Scans every record:
    /// call it rarely (see [`Journal::appended`]).
    pub fn wants_compaction_with(&self, keep: impl Fn(&str, &V) -> bool) -> bool {
        let dead: u64 = self
            .map
            .iter()
            .filter(|(k, s)| s.value().is_some_and(|v| !keep(k, v)))
            .map(|(_, s)| s.size())
            .sum();
        let g = self.garbage() + dead;
        g > self.live - dead && g > COMPACT_MIN_GARBAGE
    }

    /// Like [`Journal::wants_compaction_with`], asking `keep` about every live key with its
    /// summary ([`Index::Meta`]), whether its value is in memory or in the file: no record is
    /// read. Scans every key: call it rarely.
    pub fn wants_compaction_by(&self, keep: impl Fn(&str, X::Meta) -> bool) -> bool {
        let dead: u64 = self
            .map
            .iter()
            .filter(|(k, s)| !keep(k, Self::meta_of(s)))
            .map(|(_, s)| s.size())
            .sum();
        let g = self.garbage() + dead;
        g > self.live.saturating_sub(dead) && g > COMPACT_MIN_GARBAGE
    }

    fn meta_of(slot: &Slot<V, X::Meta>) -> X::Meta {
        match slot {
            Slot::File { meta, .. } => *meta,
            Slot::Value(b) => X::meta(&b.0),
        }
    }

    /// The summary ([`Index::Meta`]) of the value of `key` (nothing is read).
    pub fn meta(&self, key: &str) -> Option<X::Meta> {
        self.map.get(key).map(Self::meta_of)
    }

    /// Bytes in the journal (magic, records; not a torn tail).
    pub fn appended(&self) -> u64 {
        self.len
    }

    /// Bytes in live records.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Creates the journal with `items` (a migration), atomically: all of them or nothing.
    /// Needs the lock.
    pub fn create_from<'a>(
        &mut self,
        items: impl Iterator<Item = (&'a str, &'a V)>,
    ) -> Result<(), Error>
    where
        V: 'a,
    {
        if self.lock.is_none() {
            return Err(Error::Locked(self.lock_path()));
        }
        let mut out = Vec::new();
        out.extend(MAGIC);
        for (k, v) in items {
            self.encode(&mut out, k, v)?;
        }
        store::write_atomic(&self.path, &out, self.mode)?;
        self.syncs += 1;
        self.reset();
        self.refresh()
    }

    fn encode(&self, out: &mut Vec<u8>, k: &str, v: &V) -> Result<(), Error> {
        encode_record(&self.path, out, k, Some(v))
    }

    /// Writes the live records for which `keep` holds (a value kept in memory is asked; a
    /// record read back is copied as it is) as a new journal, atomically, streamed: a temp file
    /// (fsynced) renamed over the journal, and the directory fsynced. Needs the lock.
    fn rewrite(&mut self, keep: impl Fn(&str, &V) -> bool) -> Result<(), Error> {
        self.rewrite_slots(|k, slot| match slot {
            Slot::Value(b) => keep(k, &b.0),
            Slot::File { .. } => true,
        })
    }

    /// [`Journal::rewrite`], asking `keep` about every slot.
    fn rewrite_slots(
        &mut self,
        keep: impl Fn(&str, &Slot<V, X::Meta>) -> bool,
    ) -> Result<(), Error> {
        if self.lock.is_none() {
            return Err(Error::Locked(self.lock_path()));
        }
        self.sync()?;
        let this = &*self;
        store::write_atomic_with(&self.path, self.mode, |w, tmp| {
            let werr = io_err("write", tmp);
            w.write_all(MAGIC).map_err(werr)?;
            let mut out = Vec::new();
            for (k, slot) in &this.map {
                out.clear();
                if !keep(k, slot) {
                    continue;
                }
                match slot {
                    Slot::Value(b) => this.encode(&mut out, k, &b.0)?,
                    Slot::File { at, len, .. } => out = this.read_raw(*at, *len)?,
                }
                w.write_all(&out).map_err(io_err("write", tmp))?;
            }
            Ok(())
        })?;
        self.syncs += 1;
        Ok(())
    }

    /// Rewrites the journal with only the live records for which `keep` holds (the others are
    /// pruned; only values kept in memory are asked, records read back are kept), atomically
    /// (temp file, fsync, rename, fsync of the directory), streamed: never a second copy of
    /// the journal in memory. Needs the lock.
    pub fn compact(&mut self, keep: impl Fn(&str, &V) -> bool) -> Result<(), Error> {
        self.rewrite(keep)?;
        self.reset();
        self.refresh()
    }

    /// Like [`Journal::compact`], asking `keep` about every live key with its summary
    /// ([`Index::Meta`]), whether its value is in memory or in the file: the pruning decision
    /// reads no record (the records kept are copied as they are). Needs the lock.
    pub fn compact_by(&mut self, keep: impl Fn(&str, X::Meta) -> bool) -> Result<(), Error> {
        self.rewrite_slots(|k, slot| keep(k, Self::meta_of(slot)))?;
        self.reset();
        self.refresh()
    }
}

/// Appends the record `key` = `value` to the journal at `path` without reading it, when its
/// end can be trusted from its last bytes alone: it starts with the magic and ends with a whole
/// record (its length reaches the end exactly, its crc matches, its payload starts as every
/// payload does). Under the writers' lock, synced. `Ok(false)`, nothing written, when it can't
/// be trusted (no file, a torn tail, or a last record too damaged to be found): the caller then
/// opens the journal ([`Journal::lock`] reads it all and cuts a torn tail) and appends there.
///
/// So a writer that only adds a key (`gatecert token add`) costs O(1) however many records the
/// journal holds. A length field is binary with a zero high byte, which JSON text never holds,
/// so inside a whole last record nothing else can pass for its start.
pub fn append_at_tail<V: Serialize>(path: &Path, key: &str, value: &V) -> Result<bool, Error> {
    let _lock = store::FileLock::acquire(path, None)?;
    let f = match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err("open", path)(e)),
    };
    let size = f.metadata().map_err(io_err("stat", path))?.len();
    let body = size.saturating_sub(MAGIC.len() as u64);
    if body <= HEADER {
        return Ok(false);
    }
    let mut magic = [0u8; MAGIC.len()];
    f.read_exact_at(&mut magic, 0)
        .map_err(io_err("read", path))?;
    let window = body.min(HEADER + u64::from(MAX_RECORD)) as usize;
    let mut tail = vec![0u8; window];
    f.read_exact_at(&mut tail, size - window as u64)
        .map_err(io_err("read", path))?;
    let whole_last = (0..window - HEADER as usize).rev().any(|p| {
        tail[p + HEADER as usize..].starts_with(PAYLOAD_START)
            && record_at(&tail[p..]).is_some_and(|r| r.len() == window - p - HEADER as usize)
    });
    if &magic != MAGIC || !whole_last {
        return Ok(false);
    }
    let mut rec = Vec::new();
    encode_record(path, &mut rec, key, Some(value))?;
    f.write_all_at(&rec, size)
        .map_err(io_err("append to", path))?;
    f.sync_data().map_err(io_err("sync", path))?;
    Ok(true)
}

/// Appends to `out` the record (header and payload) of `key` = `value` (`None`: deleted), for
/// the journal at `path`.
fn encode_record<V: Serialize>(
    path: &Path,
    out: &mut Vec<u8>,
    key: &str,
    value: Option<&V>,
) -> Result<(), Error> {
    let corrupt = |what| Error::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let payload = serde_json::to_vec(&RecordOut { k: key, v: value })
        .map_err(|e| corrupt(format!("cannot serialise a record: {e}")))?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD)
        .ok_or_else(|| corrupt(format!("record of {} bytes", payload.len())))?;
    out.reserve(HEADER as usize + payload.len());
    out.extend(len.to_le_bytes());
    out.extend(crc32(&payload).to_le_bytes());
    out.extend(payload);
    Ok(())
}

/// How every record's payload starts (`RecordOut` serialised).
const PAYLOAD_START: &[u8] = b"{\"k\":";

/// The payload of the record at the start of `buf`, when it is whole and its crc matches.
fn record_at(buf: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?);
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = buf.get(8..8 + len as usize)?;
    (crc32(payload) == crc).then_some(payload)
}

/// Whether the bad bytes `rest` can be what a crash mid-append left: a record cut short (its
/// header says it runs past the end of the file), or one whole-length record whose payload did
/// not reach the disk (crc mismatch) with nothing after it.
fn torn_tail(rest: &[u8]) -> bool {
    let Some(len) = rest
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
    else {
        return true;
    };
    if len > MAX_RECORD {
        return false;
    }
    (HEADER as usize + len as usize) >= rest.len()
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// Slicing-by-8 tables: `CRC[0]` is the bytewise table, `CRC[k][i]` the CRC of byte `i`
/// followed by `k` zero bytes (8 KiB; start-up reads every record of a journal, and the
/// bytewise loop was a fifth of it at 100,000 rows).
static CRC: [[u32; 256]; 8] = crc_tables();

const fn crc_tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    t[0] = crc_table();
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// CRC-32 (IEEE 802.3, the one of zlib and PNG).
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    let mut chunks = data.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        c = CRC[7][(lo & 0xFF) as usize]
            ^ CRC[6][((lo >> 8) & 0xFF) as usize]
            ^ CRC[5][((lo >> 16) & 0xFF) as usize]
            ^ CRC[4][(lo >> 24) as usize]
            ^ CRC[3][b[4] as usize]
            ^ CRC[2][b[5] as usize]
            ^ CRC[1][b[6] as usize]
            ^ CRC[0][b[7] as usize];
    }
    for b in chunks.remainder() {
        c = CRC[0][((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests;
