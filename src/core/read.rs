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

/// One array at one generation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArrayRead {
    pub array: String,
    /// (name, blocks) of every volume, by name.
    pub volumes: Vec<(String, u64)>,
    /// Every group, by name.
    pub groups: Vec<GroupRead>,
    /// Link state to every peer that has a link or a group.
    pub links: BTreeMap<String, bool>,
    pub counters: Counters,
    group_at: HashMap<String, usize>,
    volume_at: HashMap<String, usize>,
    /// Local volume -> (group, pair) indexes of every pair it is in.
    local_pairs: HashMap<String, Vec<(usize, usize)>>,
    /// (peer, remote volume) -> (group, pair) indexes.
    remote_pairs: HashMap<(String, String), Vec<(usize, usize)>>,
}

impl ArrayRead {
    pub(super) fn new(
        array: String,
        volumes: Vec<(String, u64)>,
        groups: Vec<GroupRead>,
        links: BTreeMap<String, bool>,
        counters: Counters,
    ) -> ArrayRead {
        let mut r = ArrayRead {
            array,
            volumes,
            groups,
            links,
            counters,
            ..ArrayRead::default()
        };
        for (i, (v, _)) in r.volumes.iter().enumerate() {
            r.volume_at.insert(v.clone(), i);
        }
        for (gi, g) in r.groups.iter().enumerate() {
            r.group_at.insert(g.name.clone(), gi);
            for (pi, p) in g.pairs.iter().enumerate() {
                r.local_pairs
                    .entry(p.local.clone())
                    .or_default()
                    .push((gi, pi));
                r.remote_pairs
                    .entry((g.peer.clone(), p.remote.clone()))
                    .or_default()
                    .push((gi, pi));
            }
        }
        r
    }

    /// An array that holds nothing (yet).
    pub fn empty(array: &str) -> ArrayRead {
        ArrayRead {
            array: array.to_string(),
            ..ArrayRead::default()
        }
    }

    pub fn group(&self, name: &str) -> Option<&GroupRead> {
        self.group_at.get(name).map(|i| &self.groups[*i])
    }

    /// The size in blocks of a volume of this array.
    pub fn volume(&self, name: &str) -> Option<u64> {
        self.volume_at.get(name).map(|i| self.volumes[*i].1)
    }

    fn at(&self, ix: &[(usize, usize)]) -> Vec<(&GroupRead, &PairRead)> {
        ix.iter()
            .map(|(g, p)| (&self.groups[*g], &self.groups[*g].pairs[*p]))
            .collect()
    }

    /// Every pair a local volume is in, with its group.
    pub fn pairs_of_local(&self, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        self.local_pairs
            .get(vol)
            .map(|ix| self.at(ix))
            .unwrap_or_default()
    }

    /// Every pair whose other end is `vol` on `peer`, with its group.
    pub fn pairs_of_remote(&self, peer: &str, vol: &str) -> Vec<(&GroupRead, &PairRead)> {
        self.remote_pairs
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
