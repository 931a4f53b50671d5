//! A map that remembers which entries were handed out for change. The
//! array's groups, volumes and snapshots live in such maps, so a journal
//! commit encodes and compares only the entries a step touched, and the
//! array's own indexes (groups with a deadline) look only at those, not at
//! every entry the array holds.
//!
//! Reading goes through `Deref` to the map. Every mutable access is one of
//! the methods below, each of which records the keys it hands out, so no
//! change can bypass the record (there is no `DerefMut`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;

#[derive(Clone, Debug)]
pub struct TrackedMap<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    /// Handed out since the last `take_touched` (the journal's record).
    touched: BTreeSet<K>,
    /// Handed out since the last `take_unscanned`, for an owner that keeps
    /// an index beside the map (None: no index, nothing recorded).
    unscanned: Option<BTreeSet<K>>,
}

impl<K: Ord + Clone, V> Default for TrackedMap<K, V> {
    fn default() -> Self {
        TrackedMap {
            map: BTreeMap::new(),
            touched: BTreeSet::new(),
            unscanned: None,
        }
    }
}

impl<K: Ord + Clone, V> Deref for TrackedMap<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<K: Ord + Clone, V> TrackedMap<K, V> {
    /// A map as it was committed: nothing touched for the journal.
    pub fn from_map(map: BTreeMap<K, V>) -> Self {
        TrackedMap {
            map,
            touched: BTreeSet::new(),
            unscanned: None,
        }
    }

    /// Also records what an index kept beside the map has not scanned:
    /// from now, every entry (all of them are new to the index).
    pub fn scanned(mut self) -> Self {
        self.unscanned = Some(self.map.keys().cloned().collect());
        self
    }

    fn hand_out(&mut self, k: K) {
        if let Some(u) = &mut self.unscanned {
            u.insert(k.clone());
        }
        self.touched.insert(k);
    }

    pub fn get_mut<Q>(&mut self, k: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        if !self.map.contains_key(k) {
            return None;
        }
        self.hand_out(k.to_owned());
        self.map.get_mut(k)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.hand_out(k.clone());
        self.map.insert(k, v)
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ToOwned<Owned = K> + ?Sized,
    {
        self.hand_out(k.to_owned());
        self.map.remove(k)
    }

    /// Every entry, mutably: all of them count as touched.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.touched.extend(self.map.keys().cloned());
        if let Some(u) = &mut self.unscanned {
            u.extend(self.map.keys().cloned());
        }
        self.map.values_mut()
    }

    /// The keys handed out for change since the last call (a key no
    /// longer in the map was removed).
    pub fn take_touched(&mut self) -> BTreeSet<K> {
        std::mem::take(&mut self.touched)
    }

    /// The keys handed out for change since the last `take_unscanned`:
    /// what an index kept beside the map has not looked at yet.
    pub fn unscanned(&self) -> impl Iterator<Item = &K> {
        self.unscanned.iter().flatten()
    }

    pub fn take_unscanned(&mut self) -> BTreeSet<K> {
        self.unscanned
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }
}
