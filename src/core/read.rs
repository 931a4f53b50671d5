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

use super::types::{Mode, Policies, Role, Tick};
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
    pub pairs: Vec<PairRead>,
}

/// Keyed lookups over an `ArrayRead`, built on first use.
#[derive(Clone, Debug, Default)]
struct Index {
    group_at: HashMap<String, usize>,
    volume_at: HashMap<String, usize>,
    /// Local volume -> (group, pair) indexes of every pair it is in.
    local_pairs: HashMap<String, Vec<(usize, usize)>>,
    /// (peer, remote volume) -> (group, pair) indexes.
    remote_pairs: HashMap<(String, String), Vec<(usize, usize)>>,
}

/// One array at one generation. Groups and the volume list are shared
/// with the read model of the previous generation where they did not
/// change (`Array::read_model_from`), so a new generation costs what
/// changed, plus building the indexes when a lookup first needs them.
#[derive(Clone, Debug, Default)]
pub struct ArrayRead {
    pub array: String,
    /// (name, blocks) of every volume, by name.
    pub volumes: Arc<Vec<(String, u64)>>,
    /// Every group, by name.
    pub groups: Vec<Arc<GroupRead>>,
    /// Link state to every peer that has a link or a group.
    pub links: BTreeMap<String, bool>,
    pub counters: Counters,
    index: OnceLock<Index>,
}

impl PartialEq for ArrayRead {
    fn eq(&self, o: &ArrayRead) -> bool {
        self.array == o.array
            && self.volumes == o.volumes
            && self.groups == o.groups
            && self.links == o.links
            && self.counters == o.counters
    }
}

impl ArrayRead {
    pub(super) fn new(
        array: String,
        volumes: Arc<Vec<(String, u64)>>,
        groups: Vec<Arc<GroupRead>>,
        links: BTreeMap<String, bool>,
        counters: Counters,
    ) -> ArrayRead {
        ArrayRead {
            array,
            volumes,
            groups,
            links,
            counters,
            index: OnceLock::new(),
        }
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let mut x = Index::default();
            for (i, (v, _)) in self.volumes.iter().enumerate() {
                x.volume_at.insert(v.clone(), i);
            }
            for (gi, g) in self.groups.iter().enumerate() {
                x.group_at.insert(g.name.clone(), gi);
                for (pi, p) in g.pairs.iter().enumerate() {
                    x.local_pairs
                        .entry(p.local.clone())
                        .or_default()
                        .push((gi, pi));
                    x.remote_pairs
                        .entry((g.peer.clone(), p.remote.clone()))
                        .or_default()
                        .push((gi, pi));
                }
            }
            x
        })
    }

    /// An array that holds nothing (yet).
    pub fn empty(array: &str) -> ArrayRead {
        ArrayRead {
            array: array.to_string(),
            ..ArrayRead::default()
        }
    }

    pub fn group(&self, name: &str) -> Option<&GroupRead> {
        self.index().group_at.get(name).map(|i| &*self.groups[*i])
    }

    /// A group as this read model shares it: the same `Arc` as in the
    /// previous generation's model when the group did not change.
    pub fn group_shared(&self, name: &str) -> Option<&Arc<GroupRead>> {
        self.index().group_at.get(name).map(|i| &self.groups[*i])
    }

    /// The size in blocks of a volume of this array.
    pub fn volume(&self, name: &str) -> Option<u64> {
        self.index().volume_at.get(name).map(|i| self.volumes[*i].1)
    }

    fn at(&self, ix: &[(usize, usize)]) -> Vec<(&GroupRead, &PairRead)> {
        ix.iter()
            .map(|(g, p)| (&*self.groups[*g], &self.groups[*g].pairs[*p]))
            .collect()
    }

    /// Every pair a local volume is in, with its group.
    pub fn pairs_of_local(&self, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        self.index()
            .local_pairs
            .get(vol)
            .map(|ix| self.at(ix))
            .unwrap_or_default()
    }

    /// Every pair whose other end is `vol` on `peer`, with its group.
    pub fn pairs_of_remote(&self, peer: &str, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        self.index()
            .remote_pairs
            .get(&(peer.to_string(), vol.to_string()))
            .map(|ix| self.at(ix))
            .unwrap_or_default()
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
