//! The leaf inventory: the latest certificate each sensor holds, `<state_dir>/leaves.json`,
//! written atomically when it changes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    version: u32,
    leaves: Vec<Leaf>,
}

/// The inventory. One entry per device: recording a new leaf replaces the device's old one.
#[derive(Debug)]
pub struct Inventory {
    path: PathBuf,
    file: File,
}

impl Inventory {
    /// Opens `path` (usually `<state_dir>/leaves.json`); an absent file is an empty inventory.
    pub fn open(path: &Path) -> Result<Inventory, store::Error> {
        let file = match store::read_optional(path)? {
            None => File {
                version: 1,
                leaves: Vec::new(),
            },
            Some(text) => serde_json::from_str(&text).map_err(|e| store::Error::Corrupt {
                path: path.to_path_buf(),
                what: format!("not a leaf inventory: {e}"),
            })?,
        };
        Ok(Inventory {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Records `leaf` as its device's current certificate and writes the file.
    pub fn record(&mut self, leaf: Leaf) -> Result<(), store::Error> {
        match self
            .file
            .leaves
            .iter_mut()
            .find(|l| l.device == leaf.device)
        {
            Some(old) => *old = leaf,
            None => self.file.leaves.push(leaf),
        }
        self.file.leaves.sort_by(|a, b| a.device.cmp(&b.device));
        let json = serde_json::to_vec_pretty(&self.file).map_err(|e| store::Error::Corrupt {
            path: self.path.clone(),
            what: format!("cannot serialise: {e}"),
        })?;
        store::write_if_changed(&self.path, &json, store::PUBLIC)?;
        Ok(())
    }

    /// Every device's current leaf, by device name.
    pub fn list(&self) -> &[Leaf] {
        &self.file.leaves
    }

    /// The current leaf of `device`.
    pub fn by_device(&self, device: &str) -> Option<&Leaf> {
        self.file.leaves.iter().find(|l| l.device == device)
    }

    /// Leaves of `source` (the broker upgrades `Interim` ones).
    pub fn by_source(&self, source: Source) -> impl Iterator<Item = &Leaf> {
        self.file.leaves.iter().filter(move |l| l.source == source)
    }
}

/// `<state_dir>/leaves.json`.
pub fn path_in(state_dir: &Path) -> PathBuf {
    state_dir.join("leaves.json")
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
        }
    }

    #[test]
    fn record_replaces_per_device_and_persists() {
        let dir = std::env::temp_dir().join(format!("gatecert-leaves-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("leaves.json");
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
        assert!(Inventory::open(&path).is_err());
    }
}
