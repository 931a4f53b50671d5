//! The read model the core hands out: what an array looks like from
//! outside, as plain data with keyed lookups.
//!
//! Readers (the CIM provider, the node's NBD catalog) see this and never
//! the core's own structures: `Group` and `Pair` are also the on-disk
//! format and carry the volatile machinery of running operations. An
//! `ArrayRead` is immutable once built; the shell shares one behind an
//! `Arc` between every request that comes while the array's
//! [`generation`](super::Array::generation) stays the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::types::{Lag, Mode, Policies, Role, Tick};
use super::view::PairView;
use super::Counters;

static GENERATIONS: AtomicU64 = AtomicU64::new(1);

/// A generation number never handed out before in this process, to any
/// array: an array rebuilt from disk (a crash in the simulation) never
/// repeats the generation of the one it replaces. It decides nothing in
/// the core, so runs stay deterministic.
pub fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, Ordering::Relaxed)
}

/// One pair of a group, as a reader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PairRead {
    pub local: String,
    pub remote: String,
    pub established: Tick,
    pub view: PairView,
}

/// One remote-copy group, as a reader sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupRead {
    pub name: String,
    pub peer: String,
    pub role: Role,
    pub mode: Mode,
    pub policies: Policies,
    pub started: bool,
    /// Primary-Rev only: the recover handshake is done.
    pub recovered: bool,
    /// The operation this side is in the middle of, if any.
    pub busy: Option<&'static str>,
    /// A sync run is moving blocks.
    pub syncing: bool,
    /// How far the target is behind (a started non-sync source only).
    pub lag: Lag,
    /// Why the group is in the Error state, if it is.
    pub error: Option<String>,
    /// Source: the running or last online verify.
    pub verify: Option<crate::core::VerifyReport>,
    pub pairs: Vec<PairRead>,
}

/// How many parts the pair index is cut into: a new generation copies
/// only the parts that hold a volume of a changed group.
const SHARDS: usize = 64;

/// Volume name -> (group name, pair position) of every pair it is in.
type Shard = HashMap<String, Vec<(String, usize)>>;

/// The pair lookups over an `ArrayRead` (groups and volumes need none:
/// both lists are in name order). Built on first use; after that, each
/// generation's model derives its index from the previous one's, changing
/// only what the changed groups hold, so a lookup after a command costs
/// what the command changed, not a scan of every pair.
#[derive(Clone, Debug)]
struct Index {
    /// By local volume.
    local: Vec<Arc<Shard>>,
    /// By the peer's volume (the group's peer tells the array).
    remote: Vec<Arc<Shard>>,
}

fn shard_of(vol: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    vol.hash(&mut h);
    (h.finish() % SHARDS as u64) as usize
}

impl Index {
    fn empty() -> Index {
        Index {
            local: vec![Arc::default(); SHARDS],
            remote: vec![Arc::default(); SHARDS],
        }
    }

    fn add(&mut self, g: &GroupRead) {
        for (pi, p) in g.pairs.iter().enumerate() {
            for (shards, vol) in [(&mut self.local, &p.local), (&mut self.remote, &p.remote)] {
                Arc::make_mut(&mut shards[shard_of(vol)])
                    .entry(vol.clone())
                    .or_default()
                    .push((g.name.clone(), pi));
            }
        }
    }

    fn remove(&mut self, g: &GroupRead) {
        for p in &g.pairs {
            for (shards, vol) in [(&mut self.local, &p.local), (&mut self.remote, &p.remote)] {
                let shard = Arc::make_mut(&mut shards[shard_of(vol)]);
                if let Some(at) = shard.get_mut(vol.as_str()) {
                    at.retain(|(name, _)| *name != g.name);
                    if at.is_empty() {
                        shard.remove(vol.as_str());
                    }
                }
            }
        }
    }

    fn build(groups: &[Arc<GroupRead>]) -> Index {
        let mut x = Index::empty();
        for g in groups {
            x.add(g);
        }
        x
    }

    /// The index of `now` from `prev`'s, where the two lists share every
    /// group that did not change (the same `Arc`).
    fn derive(&self, prev: &[Arc<GroupRead>], now: &[Arc<GroupRead>]) -> Index {
        let mut x = self.clone();
        let (mut i, mut j) = (0, 0);
        while i < prev.len() || j < now.len() {
            match (prev.get(i), now.get(j)) {
                (Some(a), Some(b)) if a.name == b.name => {
                    if !Arc::ptr_eq(a, b) {
                        x.remove(a);
                        x.add(b);
                    }
                    i += 1;
                    j += 1;
                }
                (Some(a), Some(b)) if a.name < b.name => {
                    x.remove(a);
                    i += 1;
                }
                (Some(a), None) => {
                    x.remove(a);
                    i += 1;
                }
                (_, Some(b)) => {
                    x.add(b);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        x
    }
}

/// One array at one generation. Groups and the volume list are shared
/// with the read model of the previous generation where they did not
/// change (`Array::read_model_from`), so a new generation costs what
/// changed, plus building the indexes when a lookup first needs them.
#[derive(Clone, Debug, Default)]
pub struct ArrayRead {
    pub array: String,
    /// Every volume, in name order.
    pub volumes: Arc<Vec<VolumeRead>>,
    /// Every group, in name order.
    pub groups: Vec<Arc<GroupRead>>,
    /// Link state to every peer that has a link or a group.
    pub links: BTreeMap<String, bool>,
    pub counters: Counters,
    /// The array's capacity in blocks (its one storage pool).
    pub capacity_blocks: u64,
    /// Local replicas, in name order. A snapshot replica is also listed in
    /// `volumes` (it is readable as one); a clone is a volume anyway.
    pub replicas: Arc<Vec<ReplicaRead>>,
    index: OnceLock<Index>,
}

/// A volume as readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeRead {
    pub name: String,
    pub blocks: u64,
    /// Unique on this array for ever: a volume's or a snapshot replica's
    /// serial (one durable counter gives both, and snapshot numbers).
    pub id: u64,
}

/// A local replica as readers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRead {
    pub name: String,
    pub source: String,
    pub kind: crate::core::ReplicaKind,
    pub blocks: u64,
    /// When its point was taken.
    pub taken: Tick,
    /// Clone: blocks copied (`blocks` when complete).
    pub copied: u64,
    /// Clone: its copy is still running.
    pub copying: bool,
    /// Snapshot: blocks it holds apart from its source (its cost).
    pub saved: u64,
    /// A retained copy: the group that keeps it, its point's time on the
    /// primary and name.
    pub retained: Option<crate::core::Retained>,
}

impl PartialEq for ArrayRead {
    fn eq(&self, o: &ArrayRead) -> bool {
        self.array == o.array
            && self.volumes == o.volumes
            && self.groups == o.groups
            && self.links == o.links
            && self.counters == o.counters
            && self.capacity_blocks == o.capacity_blocks
            && self.replicas == o.replicas
    }
}

impl ArrayRead {
    pub(super) fn new(
        array: String,
        volumes: Arc<Vec<VolumeRead>>,
        groups: Vec<Arc<GroupRead>>,
        links: BTreeMap<String, bool>,
        counters: Counters,
        capacity_blocks: u64,
        replicas: Arc<Vec<ReplicaRead>>,
    ) -> ArrayRead {
        debug_assert!(groups.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(volumes.windows(2).all(|w| w[0].name < w[1].name));
        ArrayRead {
            array,
            volumes,
            groups,
            links,
            counters,
            capacity_blocks,
            replicas,
            index: OnceLock::new(),
        }
    }

    /// A local replica by name.
    pub fn replica(&self, name: &str) -> Option<&ReplicaRead> {
        self.replicas
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.replicas[i])
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::build(&self.groups))
    }

    /// Takes over `prev`'s index, if a lookup built it, changed for the
    /// groups that differ: the next lookup need not scan every pair.
    pub(super) fn carry_index(&self, prev: &ArrayRead) {
        if let Some(x) = prev.index.get() {
            let _ = self.index.set(x.derive(&prev.groups, &self.groups));
        }
    }

    /// An array that holds nothing (yet).
    pub fn empty(array: &str) -> ArrayRead {
        ArrayRead {
            array: array.to_string(),
            ..ArrayRead::default()
        }
    }

    pub fn group(&self, name: &str) -> Option<&GroupRead> {
        self.group_shared(name).map(|g| &**g)
    }

    /// A group as this read model shares it: the same `Arc` as in the
    /// previous generation's model when the group did not change.
    pub fn group_shared(&self, name: &str) -> Option<&Arc<GroupRead>> {
        self.groups
            .binary_search_by(|g| g.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.groups[i])
    }

    /// The size in blocks of a volume of this array.
    pub fn volume(&self, name: &str) -> Option<u64> {
        self.volume_read(name).map(|v| v.blocks)
    }

    /// A volume of this array.
    pub fn volume_read(&self, name: &str) -> Option<&VolumeRead> {
        self.volumes
            .binary_search_by(|v| v.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.volumes[i])
    }

    /// The pairs `shards` lists for `vol`, in group order, then pair
    /// order: as a scan would find them.
    fn at(&self, shards: &[Arc<Shard>], vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        let mut at: Vec<(&GroupRead, usize)> = shards[shard_of(vol)]
            .get(vol)
            .into_iter()
            .flatten()
            .filter_map(|(g, p)| Some((self.group(g)?, *p)))
            .collect();
        at.sort_by(|a, b| (&a.0.name, a.1).cmp(&(&b.0.name, b.1)));
        at.into_iter()
            .filter_map(|(g, p)| Some((g, g.pairs.get(p)?)))
            .collect()
    }

    /// The index this model carries differs from one built afresh: what
    /// differs. None when no index was built. The simulation checks it.
    pub fn index_mismatch(&self) -> Option<String> {
        let carried = self.index.get()?;
        let fresh = Index::build(&self.groups);
        let norm = |shards: &[Arc<Shard>]| {
            let mut all: Vec<(String, String, usize)> = shards
                .iter()
                .flat_map(|s| s.iter())
                .flat_map(|(v, at)| at.iter().map(move |(g, p)| (v.clone(), g.clone(), *p)))
                .collect();
            all.sort();
            all
        };
        for (what, a, b) in [
            ("local", &carried.local, &fresh.local),
            ("remote", &carried.remote, &fresh.remote),
        ] {
            let (a, b) = (norm(a), norm(b));
            if a != b {
                return Some(format!(
                    "the carried {what} pair index ({} entries) differs from a fresh one ({})",
                    a.len(),
                    b.len()
                ));
            }
        }
        None
    }

    /// Every pair a local volume is in, with its group.
    pub fn pairs_of_local(&self, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        self.at(&self.index().local, vol)
    }

    /// Every pair whose other end is `vol` on `peer`, with its group.
    pub fn pairs_of_remote(&self, peer: &str, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        let mut out = self.at(&self.index().remote, vol);
        out.retain(|(g, _)| g.peer == peer);
        out
    }

    /// Every pair that has volume `vol` of array `array` at one end.
    pub fn pairs_of_volume(&self, array: &str, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        if array == self.array {
            self.pairs_of_local(vol)
        } else {
            self.pairs_of_remote(array, vol)
        }
    }
}
