//! The leaf inventory: the latest certificate each sensor holds, `<state_dir>/leaves.jnl`, a
//! [`Journal`] with one record appended (and synced) per recorded leaf.
//!
//! It also decides who may re-enroll (RFC 7030 §4.2.2 leaves that to server policy): only a
//! device's current certificate, or the certificate it replaced for [`GRACE`] seconds after the
//! replacement, so a device whose re-enrollment reply was lost can retry with the certificate it
//! still holds. Any other certificate is superseded ([`Standing`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::journal::Journal;
use crate::store;

/// Who issued a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The local CA, by policy (standalone or no upstream for leaves).
    Local,
    /// The local CA, standing in while the upstream is unreachable; to be upgraded.
    Interim,
    /// The upstream ACME CA, brokered by the gateway.
    Upstream,
}

impl Source {
    /// The spelling in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Interim => "interim",
            Source::Upstream => "upstream",
        }
    }
}

/// How long a replaced certificate may still re-enroll: 10 minutes, enough for a client to retry
/// a re-enrollment whose reply was lost, short enough that a copied old key cannot keep a second
/// lineage alive.
pub const GRACE: i64 = 10 * 60;

/// The certificate a re-enrollment replaced, and until when it may still re-enroll.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Previous {
    /// Serial, upper-case hex.
    pub serial: String,
    /// Unix seconds; the grace window ends here and is never extended.
    pub until: i64,
}

/// What the inventory says about a certificate presented for re-enrollment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing<'a> {
    /// The device's current certificate.
    Current(&'a Leaf),
    /// The certificate the device's current one replaced, still inside its grace window.
    Grace(&'a Leaf),
    /// Replaced, and past its grace window (or replaced twice): it may not re-enroll.
    Superseded(&'a Leaf),
    /// No device holds this serial (never recorded, or a device re-enrolled since).
    Unknown,
}

/// One sensor's current certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leaf {
    /// The device name (from its bootstrap token, or its certificate's CN on re-enrollment).
    pub device: String,
    /// The names in the certificate.
    pub names: Vec<String>,
    /// Serial, upper-case hex.
    pub serial: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Who issued it.
    pub source: Source,
    /// When it was issued, Unix seconds.
    pub issued_at: i64,
    /// The certificate this one replaced by re-enrollment, while it may still re-enroll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

#[derive(Debug, Default, Deserialize)]
struct LegacyFile {
    leaves: Vec<Leaf>,
}

/// How long the service waits for `leaves.jnl.lock` (held by a `gatecert ca sign` for one
/// append) before the inventory write fails.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// The inventory. One entry per device: recording a new leaf replaces the device's old one.
/// Stored in a [`Journal`] keyed by device; an index by serial (current and previous) makes
/// [`Inventory::standing`] a lookup.
#[derive(Debug)]
pub struct Inventory {
    journal: Journal<Leaf>,
    /// Upper-case serial → device, for current and previous serials.
    serials: HashMap<String, String>,
    /// The journal length the index reflects.
    indexed: u64,
}

impl Inventory {
    /// Opens `path` (usually `<state_dir>/leaves.jnl`); an absent file is an empty inventory.
    /// A `leaves.json` of an earlier version next to it, and no journal yet, is migrated first
    /// (under the lock, written atomically, then removed).
    pub fn open(path: &Path) -> Result<Inventory, store::Error> {
        let mut inv = Inventory {
            journal: Journal::open(path, store::PUBLIC)?,
            serials: HashMap::new(),
            indexed: u64::MAX,
        };
        let legacy = path.with_extension("json");
        if !inv.journal.exists() && legacy != path && legacy.exists() {
            inv.journal.lock(None)?;
            if !inv.journal.exists() {
                if let Some(text) = store::read_optional(&legacy)? {
                    let file: LegacyFile =
                        serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                            path: legacy.clone(),
                            what: format!("not a leaf inventory: {e}"),
                        })?;
                    inv.journal
                        .create_from(file.leaves.iter().map(|l| (l.device.as_str(), l)))?;
                    std::fs::remove_file(&legacy).map_err(store::io_err("remove", &legacy))?;
                    if let Some(dir) = legacy.parent() {
                        store::sync_dir(dir)?;
                    }
                }
            }
            inv.journal.unlock()?;
        }
        inv.reindex();
        Ok(inv)
    }

    /// Catches up with what other processes appended (one `stat` when nothing was).
    pub fn refresh(&mut self) -> Result<(), store::Error> {
        self.journal.refresh()?;
        self.reindex();
        Ok(())
    }

    fn reindex(&mut self) {
        if self.indexed == self.journal.appended() {
            return;
        }
        self.serials.clear();
        let mut serials = HashMap::with_capacity(self.journal.len());
        for (_, l) in self.journal.iter() {
            index(&mut serials, l);
        }
        self.serials = serials;
        self.indexed = self.journal.appended();
    }

    /// Records `leaf` as its device's current certificate: one record appended and synced,
    /// under `<path>.lock` (waiting at most [`LOCK_WAIT`]). Compacts the journal when replaced
    /// rows outweigh live ones.
    pub fn record(&mut self, leaf: Leaf) -> Result<(), store::Error> {
        let held = self.journal.is_locked();
        self.journal.lock(Some(LOCK_WAIT))?;
        self.reindex();
        let put = self.put(&leaf).and_then(|()| {
            if self.journal.wants_compaction() {
                self.journal.compact(|_, _| true)?;
                self.indexed = u64::MAX;
                self.reindex();
            }
            Ok(())
        });
        if held {
            return put;
        }
        let unlocked = self.journal.unlock();
        put?;
        unlocked
    }

    /// Holds the writers' lock across many [`Inventory::record`] calls, which then append
    /// without syncing (an import); [`Inventory::release_lock`] syncs them all at once.
    pub fn hold_lock(&mut self) -> Result<(), store::Error> {
        self.journal.lock(None)?;
        self.reindex();
        Ok(())
    }

    /// Syncs what was recorded under [`Inventory::hold_lock`] and releases the lock.
    pub fn release_lock(&mut self) -> Result<(), store::Error> {
        self.journal.unlock()
    }

    fn put(&mut self, leaf: &Leaf) -> Result<(), store::Error> {
        if let Some(old) = self.journal.get(&leaf.device) {
            for s in std::iter::once(&old.serial).chain(old.previous.as_ref().map(|p| &p.serial)) {
                self.serials.remove(&s.to_ascii_uppercase());
            }
        }
        self.journal.put(&leaf.device, Some(leaf))?;
        index(&mut self.serials, leaf);
        self.indexed = self.journal.appended();
        Ok(())
    }

    /// Durable syncs done by this value.
    pub fn syncs(&self) -> u64 {
        self.journal.syncs()
    }

    /// The standing of the certificate with `serial` at `now` (see the module doc).
    pub fn standing(&self, serial: &str, now: i64) -> Standing<'_> {
        let Some(l) = self
            .serials
            .get(&serial.to_ascii_uppercase())
            .and_then(|d| self.journal.get(d))
        else {
            return Standing::Unknown;
        };
        if l.serial.eq_ignore_ascii_case(serial) {
            return Standing::Current(l);
        }
        match l
            .previous
            .as_ref()
            .filter(|p| p.serial.eq_ignore_ascii_case(serial))
        {
            Some(p) if now < p.until => Standing::Grace(l),
            Some(_) => Standing::Superseded(l),
            None => Standing::Unknown,
        }
    }

    /// The `previous` for a leaf that replaces `presented` (the serial of the client certificate
    /// of a re-enrollment) on `device` at `now`: the current certificate re-enrolling starts a
    /// grace window; the previous one re-enrolling inside its window keeps that window (never
    /// extended); anything else has none.
    pub fn previous_for(&self, device: &str, presented: &str, now: i64) -> Option<Previous> {
        let l = self.by_device(device)?;
        if l.serial.eq_ignore_ascii_case(presented) {
            return Some(Previous {
                serial: l.serial.clone(),
                until: now + GRACE,
            });
        }
        l.previous
            .clone()
            .filter(|p| p.serial.eq_ignore_ascii_case(presented) && now < p.until)
    }

    /// Every device's current leaf, by device name.
    pub fn list(&self) -> Vec<&Leaf> {
        self.journal.iter().map(|(_, l)| l).collect()
    }

    /// The current leaf of `device`.
    pub fn by_device(&self, device: &str) -> Option<&Leaf> {
        self.journal.get(device)
    }

    /// Leaves of `source` (the broker upgrades `Interim` ones).
    pub fn by_source(&self, source: Source) -> impl Iterator<Item = &Leaf> {
        self.journal
            .iter()
            .map(|(_, l)| l)
            .filter(move |l| l.source == source)
    }
}

/// Adds `l`'s serials (current, previous) to `serials`.
fn index(serials: &mut HashMap<String, String>, l: &Leaf) {
    serials.insert(l.serial.to_ascii_uppercase(), l.device.clone());
    if let Some(p) = &l.previous {
        serials.insert(p.serial.to_ascii_uppercase(), l.device.clone());
    }
}

/// `<state_dir>/leaves.jnl`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("leaves.jnl")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(device: &str, serial: &str, source: Source) -> Leaf {
        Leaf {
            device: device.into(),
            names: vec![format!("{device}.sensors.local")],
            serial: serial.into(),
            not_after: 2_000_000_000,
            source,
            issued_at: 1_900_000_000,
            previous: None,
        }
    }

    #[test]
    fn only_the_current_certificate_or_the_previous_in_grace_stands() {
        let dir = std::env::temp_dir().join(format!("gatecert-standing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut inv = Inventory::open(&dir.join("leaves.jnl")).unwrap();
        let now = 1_900_000_000;
        inv.record(leaf("d", "0A", Source::Local)).unwrap();
        assert!(matches!(inv.standing("0a", now), Standing::Current(_)));
        assert_eq!(inv.standing("0B", now), Standing::Unknown);
        // 0A re-enrolls: 0B is current, 0A has GRACE seconds.
        let mut b = leaf("d", "0B", Source::Local);
        b.previous = inv.previous_for("d", "0A", now);
        assert_eq!(b.previous.as_ref().unwrap().until, now + GRACE);
        inv.record(b).unwrap();
        assert!(matches!(inv.standing("0B", now), Standing::Current(_)));
        assert!(matches!(
            inv.standing("0A", now + GRACE - 1),
            Standing::Grace(_)
        ));
        assert!(matches!(
            inv.standing("0A", now + GRACE),
            Standing::Superseded(_)
        ));
        // 0A retries inside the window (a lost reply): 0C is current, 0A keeps its deadline.
        let mut c = leaf("d", "0C", Source::Local);
        c.previous = inv.previous_for("d", "0A", now + 60);
        assert_eq!(c.previous.as_ref().unwrap().until, now + GRACE);
        inv.record(c).unwrap();
        // 0B was replaced without ever being used: it stands nowhere any more.
        assert_eq!(inv.standing("0B", now + 60), Standing::Unknown);
        assert!(inv.previous_for("d", "0B", now + 60).is_none());
        assert!(inv.previous_for("d", "0A", now + GRACE).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn record_replaces_per_device_and_persists() {
        let dir = std::env::temp_dir().join(format!("gatecert-leaves-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("leaves.jnl");
        let mut inv = Inventory::open(&path).unwrap();
        assert!(inv.list().is_empty());
        inv.record(leaf("b", "01", Source::Interim)).unwrap();
        inv.record(leaf("a", "02", Source::Local)).unwrap();
        inv.record(leaf("b", "03", Source::Upstream)).unwrap();
        let inv = Inventory::open(&path).unwrap();
        assert_eq!(inv.list().len(), 2);
        assert_eq!(inv.list()[0].device, "a");
        assert_eq!(inv.by_device("b").unwrap().serial, "03");
        assert_eq!(inv.by_device("b").unwrap().source, Source::Upstream);
        assert!(inv.by_device("c").is_none());
        assert_eq!(inv.by_source(Source::Interim).count(), 0);
        std::fs::write(&path, "{nope").unwrap();
        // Not a journal: refused with the reason, never read as empty.
        assert!(Inventory::open(&path).is_err());
    }

    /// A `leaves.json` of an earlier version becomes the journal on first open; its standing
    /// lookups work from the index.
    #[test]
    fn a_legacy_leaves_json_is_migrated_and_indexed() {
        let dir = std::env::temp_dir().join(format!("gatecert-leaves-mig-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut b = leaf("b", "0B", Source::Local);
        b.previous = Some(Previous {
            serial: "0A".into(),
            until: 1_900_000_600,
        });
        let json =
            serde_json::json!({"version": 1, "leaves": [leaf("a", "01", Source::Interim), b]});
        std::fs::write(dir.join("leaves.json"), json.to_string()).unwrap();
        let inv = Inventory::open(&path_in(&dir)).unwrap();
        assert!(!dir.join("leaves.json").exists());
        assert_eq!(inv.list().len(), 2);
        assert!(matches!(
            inv.standing("0b", 1_900_000_000),
            Standing::Current(_)
        ));
        assert!(matches!(
            inv.standing("0A", 1_900_000_000),
            Standing::Grace(_)
        ));
        assert!(matches!(
            inv.standing("0A", 1_900_000_600),
            Standing::Superseded(_)
        ));
        assert_eq!(inv.by_source(Source::Interim).count(), 1);
    }

    /// Issue 13: recording one more leaf appends to the inventory in place (same inode, a few
    /// hundred bytes more), however many devices it holds; it never rewrites the whole file.
    #[test]
    fn recording_a_leaf_appends_instead_of_rewriting() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = std::env::temp_dir().join(format!("gatecert-leaves-app-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_in(&dir);
        let mut inv = Inventory::open(&path).unwrap();
        for i in 0..2000 {
            inv.record(leaf(&format!("d{i}"), &format!("{i:04X}"), Source::Local))
                .unwrap();
        }
        let before = std::fs::metadata(&path).unwrap();
        inv.record(leaf("d7", "FFFF", Source::Local)).unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(before.ino(), after.ino(), "the inventory was rewritten");
        assert!(after.len() > before.len() && after.len() - before.len() < 512);
        assert_eq!(
            Inventory::open(&path)
                .unwrap()
                .by_device("d7")
                .unwrap()
                .serial,
            "FFFF"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
