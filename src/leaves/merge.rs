//! Merging the split rows of an inventory written before one identity per device.
//!
//! The old code recorded a device's first enrollment under its token's device name (`s1`) and
//! each re-enrollment under the certificate's subject CN (`s1.sensors.local`), so one sensor had
//! two rows. A row whose device name is one of its own certificate names, beside another row
//! with exactly the same names, is that second half: it is folded into the first, the newer
//! certificate (by `issued_at`) becoming the current one and the older one, if unexpired, an
//! earlier one of the same device.

use super::{Held, Leaf};

/// Merges split rows in `leaves` in place; returns how many rows were folded away.
pub(super) fn split_rows(leaves: &mut Vec<Leaf>) -> usize {
    let mut merged = 0;
    let mut i = 0;
    while i < leaves.len() {
        let cn_row = &leaves[i];
        let is_cn_row = cn_row
            .names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(&cn_row.device));
        let partner = is_cn_row
            .then(|| {
                leaves.iter().position(|l| {
                    l.device != cn_row.device
                        && !l.names.iter().any(|n| n.eq_ignore_ascii_case(&l.device))
                        && same_names(&l.names, &cn_row.names)
                })
            })
            .flatten();
        let Some(j) = partner else {
            i += 1;
            continue;
        };
        let cn_row = leaves.remove(i);
        let j = if j > i { j - 1 } else { j };
        let row = &mut leaves[j];
        let (newer, older) = if cn_row.issued_at >= row.issued_at {
            (cn_row, row.clone())
        } else {
            (row.clone(), cn_row)
        };
        let mut earlier: Vec<Held> = older.certs().collect();
        earlier.extend(newer.earlier.iter().cloned());
        earlier.retain(|h| !h.serial.eq_ignore_ascii_case(&newer.serial));
        *row = Leaf {
            device: row.device.clone(),
            earlier,
            state: row.state,
            state_since: row.state_since,
            state_reason: row.state_reason.clone(),
            cuts: row.cuts,
            ..newer
        };
        // The row at i is the next one now.
        merged += 1;
    }
    merged
}

fn same_names(a: &[String], b: &[String]) -> bool {
    let norm = |v: &[String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_ascii_lowercase()).collect();
        v.sort();
        v.dedup();
        v
    };
    !a.is_empty() && norm(a) == norm(b)
}
