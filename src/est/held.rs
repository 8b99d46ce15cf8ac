//! The token store and the leaf inventory the service keeps open for its life: each request
//! catches up with what other processes appended (one `stat` when nothing was) instead of
//! re-reading whole files, so a request's cost does not grow with the number of sensors.

use std::path::Path;

use crate::leaves::{self, Inventory};
use crate::store;
use crate::token::{self, Tokens};

/// The state kept open by [`super::Est`]; opened on first use.
#[derive(Debug, Default)]
pub(super) struct Held {
    tokens: Option<Tokens>,
    inventory: Option<Inventory>,
}

impl Held {
    /// The token store of `state_dir`, caught up.
    pub(super) fn tokens(&mut self, state_dir: &Path) -> Result<&mut Tokens, token::Error> {
        match &mut self.tokens {
            Some(t) => {
                if let Err(e) = t.refresh() {
                    // Reopen next time rather than trust an index that may have missed records.
                    self.tokens = None;
                    return Err(e);
                }
            }
            None => self.tokens = Some(Tokens::open(&token::path_in(state_dir))?),
        }
        self.tokens
            .as_mut()
            .ok_or_else(|| token::Error::Invalid("token store not open".into()))
    }

    /// The leaf inventory of `state_dir`, caught up.
    pub(super) fn inventory(&mut self, state_dir: &Path) -> Result<&mut Inventory, store::Error> {
        match &mut self.inventory {
            Some(i) => {
                if let Err(e) = i.refresh() {
                    self.inventory = None;
                    return Err(e);
                }
            }
            None => self.inventory = Some(Inventory::open(&leaves::path_in(state_dir))?),
        }
        self.inventory
            .as_mut()
            .ok_or_else(|| store::Error::Corrupt {
                path: leaves::path_in(state_dir),
                what: "inventory not open".into(),
            })
    }
}
