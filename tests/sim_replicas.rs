//! Local replicas in the fault simulation: operators take, resync and
//! return snapshots and copies of the volumes on either side while the
//! group replicates, fails over, restores and crashes. Invariant 7: a
//! snapshot, and a copy once complete, reads exactly what its source held
//! at the instant it was taken, whatever happens to the source after.
//!
//! The replica actions draw from their own random stream, so the main
//! stream of a seed picks the same faults as before.

use std::collections::BTreeMap;

use replicim::core::{Command, ReplicaKind, ReplicaOp};
use replicim::sim::{Rng, Sim};

pub struct Replicas {
    rng: Rng,
    next: u64,
    /// (side, replica) -> its kind and the tag of each block at its point.
    kept: BTreeMap<(String, String), (ReplicaKind, Vec<u64>)>,
    /// (side, retained copy, its point's time) -> the tag of each block
    /// when it was first seen.
    retained: BTreeMap<(String, String, u64), Vec<u64>>,
}

fn tags(sim: &mut Sim, side: &str, vol: &str, blocks: u64) -> Vec<u64> {
    (0..blocks)
        .map(|b| {
            let mut buf = [0u8; 4096];
            sim.array_mut(side).read(vol, b, &mut buf).unwrap();
            u64::from_le_bytes(buf[..8].try_into().unwrap())
        })
        .collect()
}

impl Replicas {
    pub fn new(seed: u64) -> Replicas {
        Replicas {
            rng: Rng::new(seed ^ 0x7e91_1ca5_0000_0007),
            next: 0,
            kept: BTreeMap::new(),
            retained: BTreeMap::new(),
        }
    }

    /// Maybe (one time in 25) one replica action on a live side; maybe
    /// (one time in 100) a switch of the group's mode. True when a mode
    /// switch was accepted.
    pub fn act(
        &mut self,
        sim: &mut Sim,
        vols: &[String],
        blocks: u64,
        log: &mut Vec<String>,
    ) -> bool {
        let switched = self.rng.chance(1) && self.switch_mode(sim, log);
        if self.rng.chance(4) {
            self.replica_action(sim, vols, blocks, log);
        }
        if self.rng.chance(2) {
            self.verify(sim, log);
        }
        switched
    }

    /// An online verify on a live side (with -repair one time in three).
    fn verify(&mut self, sim: &mut Sim, log: &mut Vec<String>) {
        let side = if self.rng.chance(50) {
            "site-a"
        } else {
            "site-b"
        };
        if !sim.alive(side) {
            return;
        }
        let line = if self.rng.chance(33) {
            "verifyrcopy -repair rcg0"
        } else {
            "verifyrcopy rcg0"
        };
        let c = replicim::rcopy::parse(&line.split_whitespace().collect::<Vec<_>>()).unwrap();
        let r = sim.command(side, c);
        log.push(format!("{side}: {line} -> {r:?}"));
    }

    /// Invariant 9 on every live side: a verify that ran to its end found
    /// no differing block (nothing in the simulation changes a target
    /// behind its array's back, so a difference is a replication bug, or
    /// a verify that compares the wrong instants). Returns how many ended.
    pub fn check_verify(&mut self, sim: &mut Sim) -> Result<usize, String> {
        let mut ended = 0;
        for side in ["site-a", "site-b"] {
            if !sim.alive(side) {
                continue;
            }
            let read = sim.array(side).read_model();
            let Some(v) = read.groups.iter().find_map(|g| g.verify.clone()) else {
                continue;
            };
            if v.running || v.failed.is_some() {
                continue;
            }
            ended += 1;
            if v.differing_count > 0 {
                return Err(format!(
                    "9. a verify on {side} found {} differing blocks: {:?}",
                    v.differing_count, v.differing
                ));
            }
        }
        Ok(ended)
    }

    fn replica_action(
        &mut self,
        sim: &mut Sim,
        vols: &[String],
        blocks: u64,
        log: &mut Vec<String>,
    ) {
        let alive: Vec<&str> = ["site-a", "site-b"]
            .into_iter()
            .filter(|s| sim.alive(s))
            .collect();
        if alive.is_empty() {
            return;
        }
        let side = alive[self.rng.below(alive.len() as u64) as usize];
        let mine: Vec<String> = self
            .kept
            .keys()
            .filter(|(s, _)| s == side)
            .map(|(_, n)| n.clone())
            .collect();
        let roll = self.rng.below(100);
        if roll < 60 || mine.is_empty() {
            let sources: Vec<&String> = vols
                .iter()
                .filter(|v| sim.array(side).volumes().meta(v).is_some())
                .collect();
            if sources.is_empty() {
                return;
            }
            let vol = sources[self.rng.below(sources.len() as u64) as usize].clone();
            let kind = if self.rng.chance(30) {
                ReplicaKind::Clone
            } else {
                ReplicaKind::Snapshot
            };
            self.next += 1;
            let name = format!("rep{}", self.next);
            // The point is the source as the command finds it: read before
            // (the batch runs due timers after the command, which may
            // change the source at once).
            let point = tags(sim, side, &vol, blocks);
            let r = sim.command(
                side,
                Command::CreateReplica {
                    name: name.clone(),
                    source: vol.clone(),
                    kind,
                    into: false,
                },
            );
            log.push(format!("{side}: {kind:?} {name} of {vol} -> {r:?}"));
            if r.is_ok() {
                self.kept.insert((side.to_string(), name), (kind, point));
            }
            return;
        }
        let name = mine[self.rng.below(mine.len() as u64) as usize].clone();
        let key = (side.to_string(), name.clone());
        let op = if roll < 80 {
            ReplicaOp::Resync
        } else {
            ReplicaOp::Return
        };
        let source = sim
            .array(side)
            .volumes()
            .replica(&name)
            .map(|r| r.source.clone());
        let point = source.map(|v| tags(sim, side, &v, blocks));
        let r = sim.command(
            side,
            Command::ModifyReplica {
                name: name.clone(),
                op,
            },
        );
        log.push(format!("{side}: {op:?} {name} -> {r:?}"));
        match (r, op) {
            (Ok(()), ReplicaOp::Resync) => {
                self.kept.get_mut(&key).expect("kept").1 = point.expect("a replica has a source");
            }
            // Returned; or not known any more (a crash may have taken the
            // answer, and with it whether the change was committed).
            _ => {
                self.kept.remove(&key);
            }
        }
    }

    /// `setrcopygroup mode` on a live side, started or not: the invariants
    /// of the fault run follow the mode the source has now.
    fn switch_mode(&mut self, sim: &mut Sim, log: &mut Vec<String>) -> bool {
        let side = if self.rng.chance(50) {
            "site-a"
        } else {
            "site-b"
        };
        if !sim.alive(side) {
            return false;
        }
        let mode =
            ["sync", "async", "periodic", "periodic:20", "periodic:60"][self.rng.below(5) as usize];
        let line = format!("setrcopygroup mode {mode} rcg0");
        let c = replicim::rcopy::parse(&line.split_whitespace().collect::<Vec<_>>()).unwrap();
        let r = sim.command(side, c);
        log.push(format!("{side}: {line} -> {r:?}"));
        // A crash may have taken the answer of an accepted switch.
        r.is_ok() || !sim.alive(side)
    }

    /// Invariant 8 on every live side: a retained copy a group keeps on
    /// its backup reads the same from the moment it appears until the
    /// retention policy drops it (it is never a resync base, and nothing
    /// writes it). Returns how many copies were checked.
    pub fn check_retained(&mut self, sim: &mut Sim) -> Result<usize, String> {
        let mut seen = BTreeMap::new();
        for side in ["site-a", "site-b"] {
            if !sim.alive(side) {
                // Its copies are checked again once it is back.
                for (k, v) in &self.retained {
                    if k.0 == side {
                        seen.insert(k.clone(), v.clone());
                    }
                }
                continue;
            }
            let read = sim.array(side).read_model();
            let copies: Vec<_> = read
                .replicas
                .iter()
                .filter_map(|r| Some((r.name.clone(), r.retained.clone()?.at, r.blocks)))
                .collect();
            for (name, at, blocks) in copies {
                let got = tags(sim, side, &name, blocks);
                let key = (side.to_string(), name.clone(), at.0);
                if let Some(want) = self.retained.get(&key) {
                    if *want != got {
                        return Err(format!(
                            "8. retained copy {name} on {side} changed: holds {got:?}, it held {want:?}"
                        ));
                    }
                }
                seen.insert(key, got);
            }
        }
        let n = seen.len();
        self.retained = seen;
        Ok(n)
    }

    /// Invariant 7 on every live side.
    pub fn check(&self, sim: &mut Sim) -> Result<(), String> {
        for ((side, name), (kind, want)) in &self.kept {
            if !sim.alive(side) {
                continue;
            }
            let Some(r) = sim.array(side).read_model().replica(name).cloned() else {
                return Err(format!("7. replica {name} on {side} is gone"));
            };
            if r.kind != *kind {
                return Err(format!("7. replica {name} on {side} changed kind"));
            }
            if r.copying {
                continue;
            }
            let got = tags(sim, side, name, want.len() as u64);
            if got != *want {
                return Err(format!(
                    "7. {kind:?} {name} on {side} of {} changed: holds {got:?}, its point was {want:?}",
                    r.source
                ));
            }
        }
        Ok(())
    }
}
