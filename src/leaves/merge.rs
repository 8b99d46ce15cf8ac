//! Merging the split rows of an inventory written before one identity per device.
//!
//! The old code recorded a device's first enrollment under its token's device name (`s1`) and
//! each re-enrollment under the certificate's subject CN (`s1.sensors.local`), so one sensor had
//! two rows. A row whose device name is one of its own certificate names, beside another row
//! (whose device name is not one of its names) with exactly the same names, is that second
//! half: it is folded into the first, the newer certificate (by `issued_at`) becoming the
//! current one and the older one an earlier one of the same device. One pass over the rows,
//! with a map from names to row: every open of the inventory runs it.

use std::collections::{HashMap, HashSet};

use super::{Held, Leaf};

/// Merges split rows in `leaves` in place; returns how many rows were folded away.
pub(super) fn split_rows(leaves: &mut Vec<Leaf>) -> usize {
    let is_cn_row = |l: &Leaf| l.names.iter().any(|n| n.eq_ignore_ascii_case(&l.device));
    let mut home: HashMap<String, usize> = HashMap::new();
    for (j, l) in leaves.iter().enumerate() {
        if !is_cn_row(l) {
            if let Some(k) = names_key(&l.names) {
                home.entry(k).or_insert(j);
            }
        }
    }
    if home.is_empty() {
        return 0;
    }
    let fold: Vec<(usize, usize)> = leaves
        .iter()
        .enumerate()
        .filter(|(_, l)| is_cn_row(l))
        .filter_map(|(i, l)| {
            let j = *home.get(&names_key(&l.names)?)?;
            Some((i, j))
        })
        .collect();
    if fold.is_empty() {
        return 0;
    }
    for &(i, j) in &fold {
        let cn_row = leaves[i].clone();
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
    }
    let gone: HashSet<usize> = fold.iter().map(|(i, _)| *i).collect();
    let mut index = 0;
    leaves.retain(|_| {
        let keep = !gone.contains(&index);
        index += 1;
        keep
    });
    fold.len()
}

/// The names, lower-case, sorted, deduplicated, joined: equal for the same set of names.
fn names_key(names: &[String]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let mut v: Vec<String> = names.iter().map(|s| s.to_ascii_lowercase()).collect();
    v.sort();
    v.dedup();
    Some(v.join(","))
}
