//! What the array keeps beside its groups so that no input and no read
//! costs in proportion to the whole array: the read model handed to
//! readers (rebuilt from the previous one for what changed), the groups
//! that may have a deadline, and the groups holding each volume. Each has
//! a `*_mismatch` check against a full scan, run by the simulation.

use super::*;
use std::sync::Arc;

/// How many group changes the array remembers for readers that rebuild
/// their model from an older one.
const CHANGE_LOG: usize = 65_536;

impl<S: BlockStore> Array<S> {
    /// The array as a reader sees it, with keyed lookups. O(pairs): the
    /// shell builds it once and then follows changes with
    /// [`Array::read_model_from`].
    pub fn read_model(&self) -> ArrayRead {
        self.read_model_from(None)
    }

    pub(super) fn group_read(&self, g: &Group) -> GroupRead {
        GroupRead {
            name: g.name.clone(),
            peer: g.peer.clone(),
            role: g.role,
            mode: g.mode,
            policies: g.policies,
            started: g.started,
            recovered: g.recovered,
            busy: g.busy(),
            syncing: g.syncing(),
            lag: self.lag_of(g),
            error: g.error.clone(),
            verify: g.verify.as_ref().map(|v| v.report.clone()),
            pairs: g
                .pairs
                .iter()
                .map(|p| PairRead {
                    local: p.local.clone(),
                    remote: p.remote.clone(),
                    established: p.established,
                    view: self.pair_view(g, p),
                })
                .collect(),
        }
    }

    /// The read model now, reusing from `prev` (the read model of
    /// generation `.1`) every group and the volume list that did not
    /// change since: what a step touched is rebuilt, not the whole array.
    /// A change of any link rebuilds every group (a view shows its link).
    pub fn read_model_from(&self, prev: Option<(&ArrayRead, u64)>) -> ArrayRead {
        let links: BTreeMap<String, bool> = self
            .links()
            .map(|(p, up)| (p.to_string(), up))
            .chain(
                self.groups
                    .values()
                    .map(|g| (g.peer.clone(), self.link_up(&g.peer))),
            )
            .collect();
        // A previous model is of use when it is of this array, with the
        // same links, and no change since it was built left the log.
        let prev = prev.filter(|(p, gen)| {
            p.array == self.name && p.links == links && *gen >= self.changes_trimmed
        });
        let groups: Vec<Arc<GroupRead>> = match prev {
            Some((p, gen)) => {
                // Touched by the input now running (not yet stamped), or
                // stamped after `prev` was built: rebuilt; the rest shared.
                let mut changed: BTreeSet<&String> = self.groups.unscanned().collect();
                changed.extend(
                    self.changes
                        .iter()
                        .rev()
                        .take_while(|(g, _)| *g > gen)
                        .map(|(_, name)| name),
                );
                let mut v = p.groups.clone();
                for name in changed {
                    let at = v.binary_search_by(|g| g.name.as_str().cmp(name));
                    match (self.groups.get(name), at) {
                        (Some(g), Ok(i)) => v[i] = Arc::new(self.group_read(g)),
                        (Some(g), Err(i)) => v.insert(i, Arc::new(self.group_read(g))),
                        (None, Ok(i)) => {
                            v.remove(i);
                        }
                        (None, Err(_)) => {}
                    }
                }
                v
            }
            None => self
                .groups
                .values()
                .map(|g| Arc::new(self.group_read(g)))
                .collect(),
        };
        let volumes = match prev {
            Some((p, gen)) if !self.vols.table_changing() && self.vols_changed_at <= gen => {
                p.volumes.clone()
            }
            _ => {
                // Volumes and snapshot replicas, merged in name order.
                let mut all: Vec<VolumeRead> = self
                    .vols
                    .names()
                    .map(|(n, m)| VolumeRead {
                        name: n.clone(),
                        blocks: m.blocks,
                        id: m.serial,
                    })
                    .chain(
                        self.vols
                            .replicas()
                            .iter()
                            .filter(|(_, r)| r.kind == ReplicaKind::Snapshot)
                            .filter_map(|(n, r)| {
                                Some(VolumeRead {
                                    name: n.clone(),
                                    blocks: self.vols.readable_blocks(n)?,
                                    id: r.serial,
                                })
                            }),
                    )
                    .collect();
                all.sort_by(|a, b| a.name.cmp(&b.name));
                Arc::new(all)
            }
        };
        let replicas = Arc::new(
            self.vols
                .replicas()
                .iter()
                .map(|(n, r)| ReplicaRead {
                    name: n.clone(),
                    source: r.source.clone(),
                    kind: r.kind,
                    blocks: self.vols.readable_blocks(n).unwrap_or(0),
                    taken: r.taken,
                    copied: if r.copying() {
                        r.copied
                    } else {
                        self.vols.readable_blocks(n).unwrap_or(0)
                    },
                    copying: r.copying(),
                    saved: match (r.kind, r.snap) {
                        (ReplicaKind::Snapshot, Some(s)) => self.vols.changed_count(s) as u64,
                        _ => 0,
                    },
                    retained: r.retained.clone(),
                })
                .collect(),
        );
        let read = ArrayRead::new(
            self.name.clone(),
            volumes,
            groups,
            links,
            self.counters,
            self.config.capacity_blocks,
            replicas,
        );
        if let Some((p, _)) = prev {
            read.carry_index(p);
        }
        read
    }

    /// The earliest deadline of `groups`.
    pub(super) fn earliest<'a>(&self, groups: impl Iterator<Item = &'a Group>) -> Option<Tick> {
        let mut next: Option<Tick> = None;
        let mut at = |t: Tick| next = Some(next.map_or(t, |n| n.min(t)));
        for g in groups {
            if g.op == Some(GroupOp::FailingOver) {
                at(self.now);
            }
            if let Some(d) = g.restore_deadline {
                at(d);
            }
            if let Some(c) = g.next_cycle {
                if g.started && g.role.is_source() && !g.running() {
                    at(c);
                }
            }
            if let Some(t) = self.congestion_deadline(g) {
                at(t);
            }
            if let Some((t, _)) = g.draining_since {
                at(t.plus(SWITCH_DRAIN_MS));
            }
        }
        next
    }

    /// Whether a group may have work for `handle_timeout`: a superset of
    /// what `poll_timeout` asks of each group.
    pub(super) fn has_timer(g: &Group) -> bool {
        g.op == Some(GroupOp::FailingOver)
            || g.restore_deadline.is_some()
            || g.next_cycle.is_some()
            || g.probe_at.is_some()
            || g.draining_since.is_some()
            || (g.started && g.policies.bounds(g.mode))
    }

    /// An input arrived: readers must see a new generation, and the groups
    /// the last input handed out for change are scanned for deadlines.
    pub(super) fn input(&mut self) {
        // What the previous input handed out for change happened at its
        // generation.
        let done = self.generation;
        if self.vols.take_table_changed() {
            self.vols_changed_at = done;
        }
        self.generation = next_generation();
        for name in self.groups.take_unscanned() {
            self.changes.push_back((done, name.clone()));
            while self.changes.len() > CHANGE_LOG {
                if let Some((g, _)) = self.changes.pop_front() {
                    self.changes_trimmed = self.changes_trimmed.max(g);
                }
            }
            match self.groups.get(&name) {
                Some(g) if Self::has_timer(g) => {
                    self.timed.insert(name);
                }
                _ => {
                    self.timed.remove(&name);
                }
            }
        }
    }

    /// The indexed `poll_timeout` disagrees with a scan of every group:
    /// what each says. The simulation checks it.
    pub fn timed_mismatch(&self) -> Option<String> {
        let (indexed, all) = (self.group_deadline(), self.earliest(self.groups.values()));
        (indexed != all).then(|| format!("poll_timeout says {indexed:?}, every group says {all:?}"))
    }

    /// Group `g` now holds local volume `vol`.
    pub(super) fn hold(&mut self, g: &Group, vol: &str) {
        let v = self.holders.entry(vol.to_string()).or_default();
        if let Err(at) = v.binary_search(&g.name) {
            v.insert(at, g.name.clone());
        }
    }

    /// Group `g` dropped a pair of local volume `vol`.
    pub(super) fn unhold(&mut self, g: &Group, vol: &str) {
        if g.pairs.iter().any(|p| p.local == vol) {
            return;
        }
        if let Some(v) = self.holders.get_mut(vol) {
            v.retain(|n| *n != g.name);
            if v.is_empty() {
                self.holders.remove(vol);
            }
        }
    }

    /// Takes pair `i` out of group `g`: out of the holders index, and its
    /// snapshots deleted.
    pub(super) fn drop_pair(&mut self, g: &mut Group, i: usize) -> R<Pair> {
        let p = g.pairs.remove(i);
        self.unhold(g, &p.local);
        for s in [p.base_snap, p.target_snap, p.cycle_snap]
            .into_iter()
            .flatten()
        {
            self.vols.delete_snap(&mut self.store, s)?;
        }
        Ok(p)
    }

    /// Group `g` is gone, with every pair it held.
    pub(super) fn unhold_group(&mut self, g: &Group) {
        let gone = Group {
            pairs: Vec::new(),
            ..g.clone()
        };
        for p in &g.pairs {
            self.unhold(&gone, &p.local);
        }
    }

    pub(super) fn holders_now(&self) -> BTreeMap<String, Vec<String>> {
        let mut h: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for g in self.groups.values() {
            for p in &g.pairs {
                let v = h.entry(p.local.clone()).or_default();
                if v.last() != Some(&g.name) {
                    v.push(g.name.clone());
                }
            }
        }
        h
    }

    /// The groups holding local volume `vol`, in name order.
    pub(super) fn holders_of(&self, vol: &str) -> &[String] {
        self.holders.get(vol).map_or(&[], |v| v.as_slice())
    }

    /// The holders index disagrees with the groups (a membership change
    /// that did not update it): what differs. The simulation checks it.
    pub fn holders_mismatch(&self) -> Option<String> {
        let now = self.holders_now();
        (now != self.holders).then(|| format!("index {:?}, groups {:?}", self.holders, now))
    }
}
