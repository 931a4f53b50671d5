//! The core level: scenarios run against two in-process arrays in a
//! [`Sim`], with the data checks done on their memory stores.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Driver, Observed, Side, Step};
use crate::core::{ArrayConfig, Event, SyncStatus, WriteId, WriteTicket};
use crate::sim::{pattern_block, Sim};

/// Names of the two arrays, as in the lab.
/// What every setup writes on site-a before the group exists: (volume,
/// first block, end block, fill).
pub const PREPARED: [(&str, u64, u64, u8); 2] = [("vol0", 0, 48, 0x5a), ("vol1", 100, 140, 0x6b)];
pub const SITE_A: &str = "site-a";
pub const SITE_B: &str = "site-b";
/// The group every scenario uses.
pub const GROUP: &str = "rcg0";
/// Volumes of the scenarios and their size in 4 KiB blocks (1 MiB each).
pub const VOLUMES: [&str; 2] = ["vol0", "vol1"];
pub const VOLUME_BLOCKS: u64 = 256;

const SETTLE_STEPS: usize = 100_000;

/// The arrays of the table replays: a failover promotes at most 4 blocks
/// per step, so a promotion with work to do is seen running (row 2).
pub const TABLE_CONFIG: ArrayConfig = ArrayConfig {
    window: 64,
    run_batch: 1,
    promote_budget: 4,
    restore_timeout_ms: 30_000,
    capacity_blocks: crate::core::DEFAULT_CAPACITY_BLOCKS,
};

fn site(side: Side) -> &'static str {
    match side {
        Side::A => SITE_A,
        Side::B => SITE_B,
    }
}

/// The last host write to one block: its data, and whether it is known to be
/// replicated (None while its acknowledgement is pending).
type LastWrite = (Box<[u8; 4096]>, Option<bool>);

/// Drives scenarios on the sans-IO core.
pub struct CoreDriver {
    /// Shared, so that a CIM-level driver can serve the same arrays.
    sim: Arc<Mutex<Sim>>,
    /// Last write per (volume, block): its data and whether it is known to
    /// be replicated (acknowledged only after the peer applied it).
    last_write: BTreeMap<(String, u64), LastWrite>,
    pending: BTreeMap<WriteId, (String, u64)>,
    remembered: BTreeMap<String, [u8; 32]>,
    tag: u64,
}

impl Default for CoreDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl CoreDriver {
    pub fn new() -> Self {
        CoreDriver {
            sim: Arc::new(Mutex::new(Sim::new())),
            last_write: BTreeMap::new(),
            pending: BTreeMap::new(),
            remembered: BTreeMap::new(),
            tag: 0,
        }
    }

    /// The simulation, locked.
    pub fn sim(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().expect("not poisoned")
    }

    /// The shared simulation handle.
    pub fn shared(&self) -> Arc<Mutex<Sim>> {
        self.sim.clone()
    }

    fn collect(&mut self) {
        let events = self.sim().take_events();
        for (_, e) in events {
            match e {
                Event::WriteDone { id, replicated } => {
                    if let Some(k) = self.pending.remove(&id) {
                        if let Some(w) = self.last_write.get_mut(&k) {
                            if w.1.is_none() {
                                w.1 = Some(replicated);
                            }
                        }
                    }
                }
                Event::WriteFailed { id, .. } => {
                    self.pending.remove(&id);
                }
                _ => {}
            }
        }
    }

    fn settle(&mut self) -> Result<(), String> {
        let n = self.sim().settle(SETTLE_STEPS).map_err(|e| e.to_string())?;
        self.collect();
        if n == SETTLE_STEPS {
            return Err(format!("did not settle within {SETTLE_STEPS} steps"));
        }
        Ok(())
    }

    /// Creates vol0 and vol1 on site-a with the [`PREPARED`] data, so that
    /// the initial sync of a setup moves real bytes.
    pub fn prepare_volumes(&mut self) -> Result<(), String> {
        for v in VOLUMES {
            self.sim()
                .create_volume(SITE_A, v, VOLUME_BLOCKS)
                .map_err(|e| e.to_string())?;
        }
        for (vol, from, to, fill) in PREPARED {
            self.step(&Step::Write {
                side: Side::A,
                vol: vol.into(),
                from,
                to,
                fill,
            })?;
        }
        Ok(())
    }

    fn status_of(&self, side: Side, vol: &str) -> Option<SyncStatus> {
        self.sim()
            .array(site(side))
            .view(GROUP, vol)
            .map(|v| v.status)
    }
}

impl Driver for CoreDriver {
    fn reset(&mut self) -> Result<(), String> {
        // The Sim is reset in place: a CIM-level driver shares the handle.
        *self.sim() = Sim::new();
        self.last_write.clear();
        self.pending.clear();
        self.remembered.clear();
        self.sim().add_array(SITE_A, TABLE_CONFIG);
        self.sim().add_array(SITE_B, TABLE_CONFIG);
        self.sim()
            .link_up(SITE_A, SITE_B)
            .map_err(|e| e.to_string())?;
        self.settle()
    }

    fn command(&mut self, side: Side, cmd: crate::core::Command) -> Result<(), String> {
        let r = self
            .sim()
            .command(site(side), cmd)
            .map_err(|e| e.to_string());
        self.collect();
        r
    }

    fn act(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Setup { mode, start } => {
                self.prepare_volumes()?;
                let mut lines = vec![
                    format!("creatercopygroup {GROUP} {SITE_B} {mode}"),
                    format!("admitrcopyvv vol0 {GROUP} {SITE_B}:vol0"),
                    format!("admitrcopyvv vol1 {GROUP} {SITE_B}:vol1"),
                ];
                if *start {
                    lines.push(format!("startrcopygroup {GROUP}"));
                }
                for l in lines {
                    self.step(&Step::parse(&format!("rcopy A {l}"))?)?;
                    self.settle()?;
                }
                if *start {
                    for v in VOLUMES {
                        if self.status_of(Side::A, v) != Some(SyncStatus::Synced) {
                            return Err(format!("setup: {v} did not reach Synced"));
                        }
                    }
                }
                Ok(())
            }
            Step::Write {
                side,
                vol,
                from,
                to,
                fill,
            } => {
                for b in *from..*to {
                    self.tag += 1;
                    let data = pattern_block(*fill, self.tag);
                    let t = self
                        .sim()
                        .write(site(*side), vol, b, &data)
                        .map_err(|e| e.to_string())?;
                    let state = match t {
                        WriteTicket::Done { replicated, .. } => Some(replicated),
                        WriteTicket::Pending { id } => {
                            self.pending.insert(id, (vol.clone(), b));
                            None
                        }
                    };
                    self.last_write
                        .insert((vol.clone(), b), (Box::new(data), state));
                }
                self.collect();
                Ok(())
            }
            Step::Kill(side) => {
                self.sim().crash(site(*side)).map_err(|e| e.to_string())?;
                // Writes the dead array never acknowledged are not acked.
                self.pending.clear();
                self.collect();
                Ok(())
            }
            Step::Start(side) => {
                self.sim().restart(site(*side)).map_err(|e| e.to_string())?;
                self.collect();
                Ok(())
            }
            Step::Link(up) => {
                let r = if *up {
                    self.sim().link_up(SITE_A, SITE_B)
                } else {
                    self.sim().link_down(SITE_A, SITE_B)
                };
                r.map_err(|e| e.to_string())?;
                self.collect();
                Ok(())
            }
            Step::Hold { from, held } => {
                self.sim().hold(site(*from), site(from.other()), *held);
                Ok(())
            }
            Step::Throttle(n) => {
                self.sim().set_throttle(*n);
                Ok(())
            }
            Step::Rcopy { .. } | Step::ExpectError { .. } => self.step(step),
            Step::Settle => self.settle(),
            Step::Steps(n) => {
                for _ in 0..*n {
                    self.sim().step().map_err(|e| e.to_string())?;
                }
                self.collect();
                Ok(())
            }
            Step::RunUntil { side, vol, status } => {
                for _ in 0..SETTLE_STEPS {
                    if self.status_of(*side, vol).map(|s| s.to_string()) == Some(status.clone()) {
                        self.collect();
                        return Ok(());
                    }
                    self.sim().step().map_err(|e| e.to_string())?;
                }
                Err(format!("{vol} on {side:?} never showed {status}"))
            }
            Step::Advance(ms) => {
                self.sim().advance(*ms).map_err(|e| e.to_string())?;
                self.collect();
                Ok(())
            }
            Step::CheckSynced => {
                for v in VOLUMES {
                    let a = self.sim().checksum(SITE_A, v).map_err(|e| e.to_string())?;
                    let b = self.sim().checksum(SITE_B, v).map_err(|e| e.to_string())?;
                    if a != b {
                        return Err(format!(
                            "{v}: checksums differ between {SITE_A} and {SITE_B}"
                        ));
                    }
                }
                Ok(())
            }
            Step::CheckAcked(side) => {
                let name = site(*side);
                let mut buf = [0u8; 4096];
                let mut checked = 0;
                for ((vol, block), (data, state)) in &self.last_write {
                    if *state != Some(true) {
                        continue;
                    }
                    self.sim()
                        .array_mut(name)
                        .read(vol, *block, &mut buf)
                        .map_err(|e| e.to_string())?;
                    if buf != **data {
                        return Err(format!(
                            "acknowledged write to {vol} block {block} is missing on {name}"
                        ));
                    }
                    checked += 1;
                }
                if checked == 0 {
                    return Err(
                        "check-acked found no replicated acknowledged write to check".into(),
                    );
                }
                Ok(())
            }
            Step::Remember(side) => {
                for v in VOLUMES {
                    let sum = self
                        .sim()
                        .checksum(site(*side), v)
                        .map_err(|e| e.to_string())?;
                    self.remembered.insert(v.to_string(), sum);
                }
                Ok(())
            }
            Step::CheckError { side, contains } => {
                let read = self.sim().array(site(*side)).read_model();
                let error = read.group(GROUP).and_then(|g| g.error.clone());
                super::check_error(*side, error.as_deref(), contains)
            }
            Step::CheckRemembered(side) => {
                for v in VOLUMES {
                    let sum = self
                        .sim()
                        .checksum(site(*side), v)
                        .map_err(|e| e.to_string())?;
                    if self.remembered.get(v) != Some(&sum) {
                        return Err(format!(
                            "{v} on {} differs from what was remembered",
                            site(*side)
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    fn observe(&mut self, side: Side) -> Result<Vec<Observed>, String> {
        let sim = self.sim();
        let a = sim.array(site(side));
        Ok(a.views()
            .into_iter()
            .filter(|(g, _, _)| g == GROUP)
            .map(|(_, vol, v)| Observed {
                vol,
                role: v.role.to_string(),
                status: v.status.to_string(),
                copy_state: v.copy_state.number(),
                sync_state: v.sync_state.number(),
                progress: v.progress.number(),
                role_reversed: v.role_reversed,
            })
            .collect())
    }
}
