//! An array's durable state as journal metadata, the activity log, and the
//! way back from them after a crash. Used by the real node (over the file
//! journal) and by the simulation (over the memory journal), so both come
//! back from a crash the same way.
//!
//! Keys: `head.v2` (name and counters), `vol/<name>` per volume,
//! `snap/<id>` per snapshot, `replica/<name>` per local replica,
//! `group/<name>` per group, `activity-log`. A
//! commit encodes only the head, the activity log and the entries the array
//! touched since the last one ([`touched_meta`]).
//!
//! Format history: until 2026-11-30 the volume table was inside the head,
//! under the key `head`. [`durable_of`] still reads that, and the first
//! commit after the start (a full listing) replaces it.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::{
    Array, ArrayConfig, Durable, Group, Head, ReplicaMeta, SnapId, SnapMeta, Tick, VolMeta,
};
use crate::store::Journaled;

pub const HEAD: &str = "head.v2";
pub const AL: &str = "activity-log";
/// The head of the first format: the scalars and the whole volume table.
const LEGACY_HEAD: &str = "head";

/// Whether a change of metadata key `k` must wait for bulk blocks to be
/// durable: every key but the head, the volume table and the activity log.
pub fn is_barrier(k: &str) -> bool {
    k != HEAD && k != AL && !k.starts_with("vol/")
}

fn vol_key(name: &str) -> String {
    format!("vol/{name}")
}

fn snap_key(id: SnapId) -> String {
    format!("snap/{:020}", id.0)
}

fn replica_key(name: &str) -> String {
    format!("replica/{name}")
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
    let (head, vols, snaps, replicas, groups) = a.durable();
    let enc = |v: &dyn erased::Ser| v.bytes();
    let mut out = Vec::with_capacity(2 + vols.len() + snaps.len() + replicas.len() + groups.len());
    out.push((HEAD.to_string(), enc(&head)));
    out.push((AL.to_string(), enc(&al)));
    for (name, v) in vols {
        out.push((vol_key(name), enc(v)));
    }
    for (id, s) in snaps {
        out.push((snap_key(*id), enc(s)));
    }
    for (name, r) in replicas {
        out.push((replica_key(name), enc(r)));
    }
    for (name, g) in groups {
        out.push((group_key(name), enc(g)));
    }
    out
}

/// The metadata entries a commit must look at now: the head, the activity
/// log, and the volumes, snapshots and groups the array handed out for change since
/// the last commit (`None`: removed). What a commit encodes and compares
/// follows what the batch touched, not how many groups the array has.
pub fn touched_meta<S: crate::core::BlockStore>(
    a: &mut Array<S>,
    al: &[Extent],
) -> Vec<(String, Option<Vec<u8>>)> {
    let (vol_names, snap_ids, replica_names, group_names) = a.take_touched();
    let (head, vols, snaps, replicas, groups) = a.durable();
    let enc = |v: &dyn erased::Ser| v.bytes();
    let mut out = Vec::with_capacity(
        2 + vol_names.len() + snap_ids.len() + replica_names.len() + group_names.len(),
    );
    out.push((HEAD.to_string(), Some(enc(&head))));
    out.push((AL.to_string(), Some(enc(&al))));
    for name in vol_names {
        out.push((vol_key(&name), vols.get(&name).map(|v| enc(v))));
    }
    for id in snap_ids {
        out.push((snap_key(id), snaps.get(&id).map(|s| enc(s))));
    }
    for name in replica_names {
        out.push((replica_key(&name), replicas.get(&name).map(|r| enc(r))));
    }
    for name in group_names {
        out.push((group_key(&name), groups.get(&name).map(|g| enc(g))));
    }
    out
}

/// The first metadata key (other than the activity log) on which the
/// committed metadata differs from the array's whole durable state now;
/// None when they agree. The simulation checks it after every commit, so
/// a change that escaped `touched_meta` cannot go unnoticed.
pub fn committed_mismatch<S: crate::core::BlockStore>(
    a: &Array<S>,
    committed: &BTreeMap<String, Vec<u8>>,
) -> Option<String> {
    let now: BTreeMap<String, Vec<u8>> = meta_of(a, &[])
        .into_iter()
        .filter(|(k, _)| k != AL)
        .collect();
    let keys: std::collections::BTreeSet<&String> = now
        .keys()
        .chain(committed.keys().filter(|k| *k != AL))
        .collect();
    let found = keys
        .into_iter()
        .find(|k| now.get(*k) != committed.get(*k))
        .cloned();
    found
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
    let bad = |what: &str, e: postcard::Error| format!("metadata {what} does not decode: {e}");
    let mut vols = BTreeMap::new();
    let head: Head = match (meta.get(HEAD), meta.get(LEGACY_HEAD)) {
        (Some(h), _) => postcard::from_bytes(h).map_err(|e| bad(HEAD, e))?,
        (None, Some(h)) => {
            let old: LegacyHead = postcard::from_bytes(h).map_err(|e| bad(LEGACY_HEAD, e))?;
            vols = old.vols.into_iter().map(|(n, v)| (n, v.into())).collect();
            Head {
                name: old.name,
                next_snap: old.next_snap,
                next_write: old.next_write,
                gen_counter: old.gen_counter,
                point_counter: old.point_counter,
                counters: old.counters,
                now: old.now,
            }
        }
        (None, None) => return Ok(None),
    };
    let mut snaps = BTreeMap::new();
    let mut replicas = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for (k, v) in meta {
        if let Some(name) = k.strip_prefix("vol/") {
            vols.insert(name.to_string(), vol_meta(v).map_err(|e| bad(k, e))?);
        } else if let Some(id) = k.strip_prefix("snap/") {
            let id = SnapId(id.parse().map_err(|_| format!("metadata key {k}"))?);
            let s: SnapMeta = postcard::from_bytes(v).map_err(|e| bad(k, e))?;
            snaps.insert(id, s);
        } else if let Some(name) = k.strip_prefix("replica/") {
            let r = current_or::<ReplicaMeta, crate::core::LegacyReplicaMeta>(v)
                .map_err(|e| bad(k, e))?;
            replicas.insert(name.to_string(), r);
        } else if let Some(name) = k.strip_prefix("group/") {
            let g = group_of(v).map_err(|e| bad(k, e))?;
            groups.insert(name.to_string(), g);
        }
    }
    Ok(Some(Durable {
        head,
        vols,
        snaps,
        replicas,
        groups,
    }))
}

/// An entry of the current format `N`, or of the older format `L` it
/// replaced; the error is the current format's.
fn current_or<N, L>(v: &[u8]) -> Result<N, postcard::Error>
where
    N: serde::de::DeserializeOwned,
    L: serde::de::DeserializeOwned + Into<N>,
{
    postcard::from_bytes::<N>(v)
        .or_else(|e| postcard::from_bytes::<L>(v).map(Into::into).map_err(|_| e))
}

/// A volume entry, of either format (with its serial, or from before).
fn vol_meta(v: &[u8]) -> Result<VolMeta, postcard::Error> {
    current_or::<VolMeta, crate::core::LegacyVolMeta>(v)
}

/// A group entry, of any format: current, before retained copies, or
/// before the congestion bounds and the Error reason.
fn group_of(v: &[u8]) -> Result<Group, postcard::Error> {
    current_or::<Group, crate::core::LegacyGroupV2>(v).or_else(|e| {
        postcard::from_bytes::<crate::core::LegacyGroup>(v)
            .map(Into::into)
            .map_err(|_| e)
    })
}

/// The head as the first format wrote it (field order is the format).
#[derive(serde::Deserialize)]
struct LegacyHead {
    name: String,
    vols: BTreeMap<String, crate::core::LegacyVolMeta>,
    next_snap: u64,
    next_write: u64,
    gen_counter: u64,
    point_counter: u64,
    counters: crate::core::Counters,
    now: Tick,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    /// A data directory written before the volume table left the head
    /// (key `head`, table inside, volumes without serials) loads with the
    /// same volumes, which get serials when the array is rebuilt; the
    /// first full commit replaces the old key with the new ones.
    #[test]
    fn the_first_format_still_loads() {
        #[derive(serde::Serialize)]
        struct OldVol {
            blocks: u64,
            snaps: Vec<SnapId>,
        }
        #[derive(serde::Serialize)]
        struct Old<'a> {
            name: &'a str,
            vols: BTreeMap<String, OldVol>,
            next_snap: u64,
            next_write: u64,
            gen_counter: u64,
            point_counter: u64,
            counters: crate::core::Counters,
            now: Tick,
        }
        let mut a = Array::new("site-a", MemStore::new(), ArrayConfig::default());
        a.create_volume("vol0", 8).unwrap();
        a.create_volume("vol1", 16).unwrap();
        let (head, vols, _, _, _) = a.durable();
        let old = Old {
            name: &head.name,
            vols: vols
                .iter()
                .map(|(n, v)| {
                    let o = OldVol {
                        blocks: v.blocks,
                        snaps: v.snaps.clone(),
                    };
                    (n.clone(), o)
                })
                .collect(),
            next_snap: head.next_snap,
            next_write: head.next_write,
            gen_counter: head.gen_counter,
            point_counter: head.point_counter,
            counters: head.counters,
            now: head.now,
        };
        let mut meta = BTreeMap::new();
        meta.insert(
            LEGACY_HEAD.to_string(),
            postcard::to_allocvec(&old).unwrap(),
        );
        let d = durable_of(&meta).unwrap().expect("an array");
        assert_eq!(d.head, head);
        let sizes = |m: &BTreeMap<String, VolMeta>| -> Vec<(String, u64)> {
            m.iter().map(|(n, v)| (n.clone(), v.blocks)).collect()
        };
        assert_eq!(sizes(&d.vols), sizes(vols));
        assert!(d.vols.values().all(|v| v.serial == 0), "no serials yet");
        let b = Array::from_durable(MemStore::new(), ArrayConfig::default(), d);
        let (head_b, vols_b, _, _, _) = b.durable();
        let serials: Vec<u64> = vols_b.values().map(|v| v.serial).collect();
        assert_eq!(serials, vec![head.next_snap + 1, head.next_snap + 2]);
        assert_eq!(head_b.next_snap, head.next_snap + 2, "the counter moved on");
        let new: BTreeMap<String, Vec<u8>> = meta_of(&b, &[]).into_iter().collect();
        assert!(new.contains_key(HEAD) && new.contains_key("vol/vol1"));
        assert!(!new.contains_key(LEGACY_HEAD));
        let again = durable_of(&new).unwrap().expect("an array");
        assert_eq!(&again.vols, vols_b, "serials are durable from then on");
    }

    /// A group entry written before the congestion bounds and the Error
    /// reason (policies of two flags) loads with no bounds and no Error;
    /// one of the new format is not mistaken for the old.
    #[test]
    fn a_group_of_the_format_before_the_bounds_still_loads() {
        use crate::core::{Command, CopyState, GroupOp, Mode, Pair, Policies, Role, StopCause};
        #[derive(serde::Serialize)]
        struct Old<'a> {
            name: &'a str,
            peer: &'a str,
            role: Role,
            mode: Mode,
            policies: (bool, bool),
            epoch: u64,
            started: bool,
            stop_cause: StopCause,
            op: Option<GroupOp>,
            requested: Option<CopyState>,
            recovered: bool,
            pairs: &'a [Pair],
            next_cycle: Option<Tick>,
            reverse_pending: Option<u64>,
        }
        let mut a = Array::new("site-a", MemStore::new(), ArrayConfig::default());
        a.create_volume("vol0", 8).unwrap();
        a.handle_link_up(Tick(0), "site-b");
        let policies = Policies {
            auto_recover: true,
            max_lag_ms: 250,
            ..Policies::default()
        };
        let mode = Mode::Periodic { period_ms: 5000 };
        a.command(
            Tick(1),
            Command::CreateGroup {
                group: "rcg0".into(),
                peer: "site-b".into(),
                mode,
                policies,
            },
        )
        .unwrap();
        let g = a.group("rcg0").unwrap().clone();
        let old = Old {
            name: &g.name,
            peer: &g.peer,
            role: g.role,
            mode: g.mode,
            policies: (true, false),
            epoch: 7,
            started: false,
            stop_cause: StopCause::LinkFailure,
            op: None,
            requested: Some(CopyState::Synchronized),
            recovered: false,
            pairs: &g.pairs,
            next_cycle: None,
            reverse_pending: None,
        };
        let loaded = group_of(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(loaded.name, "rcg0");
        assert_eq!((loaded.mode, loaded.epoch), (mode, 7));
        assert_eq!(loaded.stop_cause, StopCause::LinkFailure);
        assert_eq!(
            loaded.policies,
            Policies {
                auto_recover: true,
                ..Policies::default()
            }
        );
        assert_eq!(loaded.error, None);
        let new = group_of(&postcard::to_allocvec(&g).unwrap()).unwrap();
        assert_eq!(new.policies, policies, "the new format keeps its bounds");
    }

    /// A group entry written before retained copies (policies with the
    /// congestion bounds, no `retain`) loads with its bounds, its Error
    /// reason and the default retention.
    #[test]
    fn a_group_of_the_format_before_retained_copies_still_loads() {
        use crate::core::{
            Command, CopyState, GroupOp, Mode, Pair, Role, StopCause, DEFAULT_RETAIN,
        };
        #[derive(serde::Serialize)]
        struct V2<'a> {
            name: &'a str,
            peer: &'a str,
            role: Role,
            mode: Mode,
            policies: (bool, bool, u64, u64),
            epoch: u64,
            started: bool,
            stop_cause: StopCause,
            op: Option<GroupOp>,
            requested: Option<CopyState>,
            recovered: bool,
            pairs: &'a [Pair],
            next_cycle: Option<Tick>,
            reverse_pending: Option<u64>,
            error: Option<String>,
        }
        let mut a = Array::new("site-a", MemStore::new(), ArrayConfig::default());
        a.handle_link_up(Tick(0), "site-b");
        a.command(
            Tick(1),
            Command::CreateGroup {
                group: "rcg0".into(),
                peer: "site-b".into(),
                mode: Mode::Async,
                policies: crate::core::Policies::default(),
            },
        )
        .unwrap();
        let g = a.group("rcg0").unwrap().clone();
        let old = V2 {
            name: &g.name,
            peer: &g.peer,
            role: g.role,
            mode: g.mode,
            policies: (true, false, 250, 4096),
            epoch: 3,
            started: false,
            stop_cause: StopCause::Congested,
            op: None,
            requested: None,
            recovered: false,
            pairs: &g.pairs,
            next_cycle: None,
            reverse_pending: None,
            error: Some("behind".into()),
        };
        let loaded = group_of(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!((loaded.epoch, loaded.stop_cause), (3, StopCause::Congested));
        assert!(loaded.policies.auto_recover);
        assert_eq!(
            (
                loaded.policies.max_lag_ms,
                loaded.policies.max_backlog_bytes
            ),
            (250, 4096)
        );
        assert_eq!(loaded.policies.retain, DEFAULT_RETAIN);
        assert_eq!(loaded.error.as_deref(), Some("behind"));
    }

    /// A replica entry written before retained copies loads as a replica
    /// someone asked for (no `retained` mark); a new one keeps its mark.
    #[test]
    fn a_replica_of_the_format_before_retained_copies_still_loads() {
        use crate::core::{ReplicaKind, ReplicaMeta, Retained, SnapId};
        #[derive(serde::Serialize)]
        struct Old {
            source: String,
            kind: ReplicaKind,
            snap: Option<SnapId>,
            taken: Tick,
            copied: u64,
            fresh: bool,
            serial: u64,
        }
        let old = Old {
            source: "vol0".into(),
            kind: ReplicaKind::Snapshot,
            snap: Some(SnapId(4)),
            taken: Tick(99),
            copied: 0,
            fresh: false,
            serial: 12,
        };
        let bytes = postcard::to_allocvec(&old).unwrap();
        let r = current_or::<ReplicaMeta, crate::core::LegacyReplicaMeta>(&bytes).unwrap();
        assert_eq!(
            (r.source.as_str(), r.serial, r.taken),
            ("vol0", 12, Tick(99))
        );
        assert_eq!(r.retained, None);
        let kept = ReplicaMeta {
            retained: Some(Retained {
                group: "rcg0".into(),
                at: Tick(98),
                label: Some("nightly".into()),
            }),
            ..r
        };
        let bytes = postcard::to_allocvec(&kept).unwrap();
        let again = current_or::<ReplicaMeta, crate::core::LegacyReplicaMeta>(&bytes).unwrap();
        assert_eq!(again, kept);
    }
}
