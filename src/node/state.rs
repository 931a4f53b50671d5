//! An array's durable state as journal metadata, the activity log, and the
//! way back from them after a crash. Used by the real node (over the file
//! journal) and by the simulation (over the memory journal), so both come
//! back from a crash the same way.
//!
//! Keys: `head` (names, counters, volume table), `snap/<id>` per snapshot,
//! `group/<name>` per group, `activity-log`.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::{Array, ArrayConfig, Durable, Group, Head, SnapId, SnapMeta, Tick};
use crate::store::Journaled;

pub const HEAD: &str = "head";
pub const AL: &str = "activity-log";

fn snap_key(id: SnapId) -> String {
    format!("snap/{:020}", id.0)
}

fn group_key(name: &str) -> String {
    format!("group/{name}")
}

/// Blocks per activity-log extent (4 MiB).
pub const AL_EXTENT_BLOCKS: u64 = 1024;
/// Most extents the activity log holds (1 GiB of hot data): at a restart
/// after a crash, at most this much is resent beyond the snapshots' delta.
pub const AL_MAX: usize = 256;

/// An extent a synchronous write went to: (peer, the peer's volume name,
/// extent number).
pub type Extent = (String, String, u64);

/// The activity log (as DRBD's): the extents whose synchronous writes may
/// be sent to the peer *before* they are durable here, which takes the
/// local log sync off the write's critical path. A write to an extent not
/// in the committed log waits for the commit that adds its extent. After a
/// crash every logged extent is resent whole (`Array::mark_changed`), so a
/// block the peer got and this array lost cannot make the two differ.
#[derive(Default)]
pub struct ActivityLog {
    /// As of the last commit.
    pub committed: BTreeSet<Extent>,
    /// What the next commit persists, with the batch that last used each.
    current: BTreeMap<Extent, u64>,
}

impl ActivityLog {
    /// Notes a write to `e` in `batch`; true if it may be sent now.
    pub fn touch(&mut self, e: Extent, batch: u64) -> bool {
        let ok = self.committed.contains(&e);
        self.current.insert(e, batch);
        ok
    }

    /// Drops the least recently used extents beyond [`AL_MAX`], never one
    /// used in `batch` (its writes are not committed yet).
    pub fn trim(&mut self, batch: u64) {
        while self.current.len() > AL_MAX {
            let Some(old) = self
                .current
                .iter()
                .filter(|(_, b)| **b < batch)
                .min_by_key(|(_, b)| **b)
                .map(|(e, _)| e.clone())
            else {
                break;
            };
            self.current.remove(&old);
        }
    }

    pub fn keys(&self) -> Vec<Extent> {
        self.current.keys().cloned().collect()
    }
}

/// The array's durable state (and the activity log) as journal metadata.
pub fn meta_of<S: crate::core::BlockStore>(a: &Array<S>, al: &[Extent]) -> Vec<(String, Vec<u8>)> {
    let (head, snaps, groups) = a.durable();
    let enc = |v: &dyn erased::Ser| v.bytes();
    let mut out = Vec::with_capacity(2 + snaps.len() + groups.len());
    out.push((HEAD.to_string(), enc(&head)));
    out.push((AL.to_string(), enc(&al)));
    for (id, s) in snaps {
        out.push((snap_key(*id), enc(s)));
    }
    for (name, g) in groups {
        out.push((group_key(name), enc(g)));
    }
    out
}

/// postcard behind a trait object, so `meta_of` encodes three types alike.
mod erased {
    pub trait Ser {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            postcard::to_allocvec(self).expect("array state serializes")
        }
    }
}

/// Rebuilds the durable state from journal metadata (None: a new array).
pub fn durable_of(meta: &BTreeMap<String, Vec<u8>>) -> Result<Option<Durable>, String> {
    let Some(head) = meta.get(HEAD) else {
        return Ok(None);
    };
    let bad = |what: &str, e: postcard::Error| format!("metadata {what} does not decode: {e}");
    let head: Head = postcard::from_bytes(head).map_err(|e| bad(HEAD, e))?;
    let mut snaps = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for (k, v) in meta {
        if let Some(id) = k.strip_prefix("snap/") {
            let id = SnapId(id.parse().map_err(|_| format!("metadata key {k}"))?);
            let s: SnapMeta = postcard::from_bytes(v).map_err(|e| bad(k, e))?;
            snaps.insert(id, s);
        } else if let Some(name) = k.strip_prefix("group/") {
            let g: Group = postcard::from_bytes(v).map_err(|e| bad(k, e))?;
            groups.insert(name.to_string(), g);
        }
    }
    Ok(Some(Durable {
        head,
        snaps,
        groups,
    }))
}

/// The activity log as of the last commit.
pub fn activity_log_of(meta: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Extent>, String> {
    meta.get(AL)
        .map(|v| postcard::from_bytes(v).map_err(|e| format!("activity log: {e}")))
        .transpose()
        .map(Option::unwrap_or_default)
}

/// The array as its store's last commit left it, as after
/// [`Array::crash`]: the durable state, with every extent of the committed
/// activity log marked changed on its pairs (writes there may have reached
/// the peer without being durable here; they are resent whole). `name`
/// names a new array when the store holds none. Call [`boot`] next.
pub fn rebuild<S: Journaled>(
    store: S,
    name: &str,
    config: ArrayConfig,
) -> Result<(Array<S>, bool), String> {
    let durable = durable_of(store.committed_meta())?;
    let logged = activity_log_of(store.committed_meta())?;
    let fresh = durable.is_none();
    let mut array = match durable {
        Some(d) => Array::from_durable(store, config, d),
        None => Array::new(name, store, config),
    };
    for (peer, remote, extent) in &logged {
        let from = extent * AL_EXTENT_BLOCKS;
        array.mark_changed(peer, remote, from..from + AL_EXTENT_BLOCKS);
    }
    if !logged.is_empty() {
        tracing::info!(
            extents = logged.len(),
            "activity log: those extents resend whole at the next sync"
        );
    }
    Ok((array, fresh))
}

/// Brings a rebuilt array up: every group that was running stops as after
/// a failure (per the tables), and whatever that did (snapshots at
/// failure) is committed before the array talks to anyone. The activity
/// log starts empty.
pub fn boot<S: Journaled>(array: &mut Array<S>, now: Tick, fresh: bool) -> Result<(), String> {
    if fresh {
        array.handle_timeout(now).map_err(|e| e.to_string())?;
    } else {
        array.restart(now).map_err(|e| e.to_string())?;
    }
    while array.poll_transmit().is_some() {}
    while array.poll_event().is_some() {}
    let meta = meta_of(array, &[]);
    array.store_mut().commit(meta).map_err(|e| e.to_string())?;
    Ok(())
}
