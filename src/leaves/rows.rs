//! The inventory's journal (`leaves.jnl`) with its serial index, and the reads and writes of
//! its records: what a process keeps between opens ([`super::CACHE`]).

use super::*;

/// The journal and its index, which a process keeps between opens ([`CACHE`]).
#[derive(Debug)]
pub(super) struct Core {
    /// The keys, where their records are (rows are read back on demand), and the serials.
    pub(super) journal: Journal<Rec, Serials>,
    /// A `leaves.json` of an earlier version was read into memory, to be written as the
    /// journal by the first [`Inventory::save`].
    pub(super) migrating: bool,
    /// A record could not be read back (logged when it happened): what was decided without it
    /// must not be saved, and the index is not kept.
    pub(super) failed: std::sync::Mutex<Option<String>>,
}

/// Every serial a row holds (current, previous, earlier) to the key of the row (`d/DEVICE`),
/// by a 64-bit hash of the serial in [`crypto::serial_display`] form: about 40 bytes a serial,
/// the device's key shared with the journal's. A hash is not the serial: a lookup reads the
/// rows it names and keeps the one that holds the serial (so a collision, or an entry gone
/// stale because another process changed the row, costs a read, never a wrong answer).
#[derive(Debug, Default)]
pub(super) struct Serials(HashMap<u64, Holders, std::hash::BuildHasherDefault<AsIs>>);

/// The rows a serial hash names: almost always one.
#[derive(Debug)]
pub(super) enum Holders {
    One(Arc<str>),
    Many(Vec<Arc<str>>),
}

impl Holders {
    pub(super) fn as_slice(&self) -> &[Arc<str>] {
        match self {
            Holders::One(k) => std::slice::from_ref(k),
            Holders::Many(v) => v,
        }
    }
}

/// A hash of [`crypto::serial_display`]`(serial)`, without making that string.
fn serial_hash(serial: &str) -> u64 {
    use std::hash::Hasher as _;
    let mut s = serial.trim();
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Upper-cased through a buffer: one `write` per serial rather than one per byte.
    let mut buf = [0u8; 64];
    for part in s.as_bytes().chunks(buf.len()) {
        let up = &mut buf[..part.len()];
        up.copy_from_slice(part);
        up.make_ascii_uppercase();
        h.write(up);
    }
    h.finish()
}

/// The serial index's keys are hashes already: used as they are.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct AsIs(u64);

impl std::hash::Hasher for AsIs {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Serials {
    pub(super) fn insert(&mut self, serial: &str, key: &Arc<str>) {
        match self.0.entry(serial_hash(serial)) {
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Holders::One(Arc::clone(key)));
            }
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let h = e.get_mut();
                if h.as_slice().iter().any(|k| k == key) {
                    return;
                }
                let mut v = h.as_slice().to_vec();
                v.push(Arc::clone(key));
                *h = Holders::Many(v);
            }
        }
    }

    pub(super) fn remove(&mut self, serial: &str, key: &str) {
        let hash = serial_hash(serial);
        let Some(h) = self.0.get_mut(&hash) else {
            return;
        };
        let mut v: Vec<Arc<str>> = h
            .as_slice()
            .iter()
            .filter(|k| &***k != key)
            .cloned()
            .collect();
        match v.len() {
            0 => {
                self.0.remove(&hash);
            }
            1 => *h = Holders::One(v.remove(0)),
            _ => *h = Holders::Many(v),
        }
    }

    /// The keys of the rows that may hold `serial`.
    pub(super) fn candidates(&self, serial: &str) -> &[Arc<str>] {
        self.0
            .get(&serial_hash(serial))
            .map_or(&[], Holders::as_slice)
    }
}

/// What the inventory keeps of each record besides where it is in the file: what
/// [`Inventory::counts`] counts (for `status`, and the service's alerts at every tick), so
/// that counting reads no row.
#[derive(Clone, Copy, Debug)]
pub(super) struct Meta {
    /// A row's (current certificate's) or a revoked certificate's notAfter.
    pub(super) not_after: i64,
    pub(super) source: Source,
    pub(super) state: DeviceState,
}

impl crate::journal::Index<Rec> for Serials {
    const KEEP_VALUES: bool = false;
    type Meta = Meta;

    fn meta(value: &Rec) -> Meta {
        match value {
            Rec::Leaf(l) => Meta {
                not_after: l.not_after,
                source: l.source,
                state: l.state,
            },
            Rec::Revoked(r) => Meta {
                not_after: r.not_after,
                source: r.source,
                state: DeviceState::Revoked,
            },
            Rec::Key | Rec::Upstream(_) | Rec::Crl(_) => Meta {
                not_after: 0,
                source: Source::Local,
                state: DeviceState::Active,
            },
        }
    }

    fn add(&mut self, key: &Arc<str>, value: &Rec) {
        if let Rec::Leaf(l) = value {
            for s in serials_of(l) {
                self.insert(s, key);
            }
        }
    }

    fn clear(&mut self) {
        // A new map: the old one's capacity is given back.
        self.0 = HashMap::default();
    }
}

impl Core {
    /// A placeholder that read nothing (what a dropped inventory leaves behind).
    pub(super) fn detached(path: &Path) -> Core {
        Core {
            journal: Journal::detached(path, store::PUBLIC),
            migrating: false,
            failed: std::sync::Mutex::new(None),
        }
    }

    pub(super) fn load(path: &Path) -> Result<Core, store::Error> {
        match CACHE.take(path) {
            Some(mut core) => {
                core.journal.refresh()?;
                Ok(core)
            }
            None => Ok(Core {
                journal: Journal::open(path, store::PUBLIC)?,
                migrating: false,
                failed: std::sync::Mutex::new(None),
            }),
        }
    }

    /// Notes that a record could not be read back: logged now, refused by the next save.
    pub(super) fn fail(&self, e: &store::Error) {
        log::error!("leaf inventory: {e}");
        if let Ok(mut f) = self.failed.lock() {
            f.get_or_insert_with(|| e.to_string());
        }
    }

    pub(super) fn has_failed(&self) -> bool {
        self.failed.lock().map_or(true, |f| f.is_some())
    }

    pub(super) fn read(&self, key: &str) -> Option<Rec> {
        match self.journal.read(key) {
            Ok(r) => r,
            Err(e) => {
                self.fail(&e);
                None
            }
        }
    }

    pub(super) fn read_range<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = Rec> + 'a {
        self.journal
            .read_range(prefix)
            .filter_map(move |r| match r {
                Ok((_, rec)) => Some(rec),
                Err(e) => {
                    self.fail(&e);
                    None
                }
            })
    }

    pub(super) fn rows(&self) -> impl Iterator<Item = Leaf> + '_ {
        self.read_range("d/").filter_map(|r| match r {
            Rec::Leaf(l) => Some(l),
            _ => None,
        })
    }

    pub(super) fn row(&self, device: &str) -> Option<Leaf> {
        self.row_at(&device_key(device))
    }

    pub(super) fn row_at(&self, key: &str) -> Option<Leaf> {
        match self.read(key) {
            Some(Rec::Leaf(l)) => Some(l),
            _ => None,
        }
    }

    /// The row that holds `serial` (as its current, previous or an earlier certificate).
    pub(super) fn holder(&self, serial: &str) -> Option<Leaf> {
        self.journal
            .index()
            .candidates(serial)
            .iter()
            .filter_map(|k| self.row_at(k))
            .find(|l| serials_of(l).any(|s| crypto::same_serial(s, serial)))
    }

    pub(super) fn revoked(&self, serial: &str) -> Option<Revoked> {
        match self.read(&revoked_key(serial)) {
            Some(Rec::Revoked(r)) => Some(r),
            _ => None,
        }
    }

    pub(super) fn crl(&self) -> CrlMeta {
        match self.read(CRL_KEY) {
            Some(Rec::Crl(m)) => m,
            _ => CrlMeta::default(),
        }
    }

    pub(super) fn stage(&mut self, key: &str, rec: Option<Rec>) -> Result<(), store::Error> {
        if self.migrating {
            // Staged with the migration; written with it.
            match rec {
                Some(r) => self.journal.preload(key, r),
                None => self.journal.preload_remove(key),
            }
            return Ok(());
        }
        if !self.journal.is_locked() {
            // Opened to read: the first change takes the lock (and catches up).
            self.journal.lock(None)?;
        }
        self.journal.stage(key, rec)
    }

    pub(super) fn set_row(&mut self, leaf: Leaf) -> Result<(), store::Error> {
        let key = device_key(&leaf.device);
        if let Some(old) = self.row(&leaf.device) {
            // Its serials are indexed again (by the journal) from the new row.
            for s in serials_of(&old) {
                self.journal.index_mut().remove(s, &key);
            }
        }
        self.stage(&key, Some(Rec::Leaf(leaf)))
    }

    pub(super) fn set_crl(&mut self, m: CrlMeta) -> Result<(), store::Error> {
        if self.crl() == m {
            return Ok(());
        }
        self.stage(CRL_KEY, Some(Rec::Crl(m)))
    }
}
