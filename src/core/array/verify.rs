//! Online verify (DRBD's `drbdadm verify`; rcopy `verifyrcopy`): the
//! source sends a digest of every block the target should hold, in
//! batches, and the target answers with the blocks whose own digest
//! differs. No block data crosses the link. With `repair`, the differing
//! blocks are then resent, and only those.
//!
//! What the target should hold: in sync mode the source's live volume
//! (a digest batch follows, on the ordered link, every host write made
//! before it, and precedes every later one, so both sides digest the same
//! instant); in periodic and async modes the last complete point, which is
//! the source's base snapshot, while the target holds it (no cycle starts
//! during a verify).

use super::*;
use sha2::{Digest, Sha256};

/// Blocks per digest batch (16 bytes each: 4 KiB per message). A batch is
/// read and hashed in one input of the array's loop (1 MiB, about 3 ms),
/// so host writes never wait long behind a verify.
pub const VERIFY_BATCH: u64 = 256;
/// Digest batches in flight (keeps the link busy across the round trip).
const VERIFY_WINDOW: usize = 8;
/// Differing blocks a report lists (all are counted, and all repaired).
pub const MAX_DIFF_LISTED: usize = 1024;

/// A block's digest: the first 16 bytes of its SHA-256.
pub fn block_digest(b: &Block) -> [u8; 16] {
    let full = Sha256::digest(b);
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// The progress or the result of a group's last verify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Counts the verifies of this array (a job follows its own).
    pub seq: u64,
    pub running: bool,
    pub repair: bool,
    pub compared_blocks: u64,
    pub total_blocks: u64,
    /// (local volume, block), at most [`MAX_DIFF_LISTED`].
    pub differing: Vec<(String, u64)>,
    pub differing_count: u64,
    pub started: Tick,
    pub elapsed_ms: u64,
    /// Why it stopped before the end.
    pub failed: Option<String>,
}

/// A running verify's cursor (volatile).
#[derive(Clone, Debug, Default)]
pub struct Verify {
    pub report: VerifyReport,
    pair: usize,
    next: u64,
    outstanding: usize,
}

impl<S: BlockStore> Array<S> {
    pub(super) fn cmd_verify(&mut self, g: &mut Group, repair: bool) -> Result<(), CommandError> {
        self.need_source(g, "verifyrcopy")?;
        if !g.started {
            return Err(CommandError::NotStarted {
                op: "verifyrcopy",
                group: g.name.clone(),
            });
        }
        self.need_link(g, "verifyrcopy", "the arrays compare over the link")?;
        let busy = if g.verify.as_ref().is_some_and(|v| v.report.running) {
            Some("a verify")
        } else if g.running() || g.op.is_some() {
            Some("a sync")
        } else if g.pairs.iter().any(|p| p.status != SyncStatus::Synced) {
            Some("a resync (the pairs are not all Synced)")
        } else {
            None
        };
        if let Some(what) = busy {
            return Err(CommandError::Busy {
                op: "verifyrcopy",
                group: g.name.clone(),
                what: what.into(),
            });
        }
        self.point_counter += 1;
        g.verify = Some(Verify {
            report: VerifyReport {
                seq: self.point_counter,
                running: true,
                repair,
                total_blocks: g.pairs.iter().map(|p| p.blocks).sum(),
                started: self.now,
                ..VerifyReport::default()
            },
            ..Verify::default()
        });
        self.pump_verify(g)?;
        Ok(())
    }

    pub(super) fn verifying(g: &Group) -> bool {
        g.verify.as_ref().is_some_and(|v| v.report.running)
    }

    /// Sends digest batches up to the window.
    fn pump_verify(&mut self, g: &mut Group) -> R<()> {
        let sync = g.mode.is_sync();
        loop {
            let Some(v) = g.verify.as_mut().filter(|v| v.report.running) else {
                return Ok(());
            };
            if v.outstanding >= VERIFY_WINDOW {
                return Ok(());
            }
            let Some(p) = g.pairs.get(v.pair) else {
                return Ok(());
            };
            let end = (v.next + VERIFY_BATCH).min(p.blocks);
            let mut digests = Vec::with_capacity((end - v.next) as usize);
            let mut buf = [0u8; BLOCK_SIZE];
            for b in v.next..end {
                match (sync, p.base_snap) {
                    (false, Some(s)) => self.vols.read_snap(&mut self.store, s, b, &mut buf)?,
                    _ => self.vols.read(&mut self.store, &p.local, b, &mut buf)?,
                }
                digests.push(block_digest(&buf));
            }
            let msg = Msg::VerifyBlocks {
                group: g.name.clone(),
                vol: p.remote.clone(),
                first: v.next,
                digests,
            };
            v.outstanding += 1;
            v.next = end;
            if end >= p.blocks {
                v.pair += 1;
                v.next = 0;
            }
            self.send(&g.peer.clone(), msg);
        }
    }

    /// Target: the blocks of a batch whose digest here differs.
    pub(super) fn on_verify_blocks(
        &mut self,
        g: &mut Group,
        from: &str,
        vol: String,
        first: u64,
        digests: Vec<[u8; 16]>,
    ) -> R<()> {
        // Only a target answers, and only for a volume of the group.
        let Some(remote) = g
            .pairs
            .iter()
            .find(|p| p.local == vol && !g.role.is_source())
            .map(|p| p.remote.clone())
        else {
            return Ok(());
        };
        let count = digests.len() as u64;
        let mut differing = Vec::new();
        let in_range = self.vols.check_range(&vol, first, count).is_ok();
        let mut buf = [0u8; BLOCK_SIZE];
        for (b, want) in (first..).zip(&digests) {
            if !in_range {
                differing.push(b);
                continue;
            }
            self.vols.read(&mut self.store, &vol, b, &mut buf)?;
            if block_digest(&buf) != *want {
                differing.push(b);
            }
        }
        self.send(
            from,
            Msg::VerifyDiff {
                group: g.name.clone(),
                vol: remote,
                first,
                count,
                differing,
            },
        );
        Ok(())
    }

    /// Source: one batch's answer.
    pub(super) fn on_verify_diff(
        &mut self,
        g: &mut Group,
        vol: String,
        count: u64,
        differing: Vec<u64>,
    ) -> R<()> {
        let Some(v) = g.verify.as_mut().filter(|v| v.report.running) else {
            return Ok(());
        };
        v.outstanding = v.outstanding.saturating_sub(1);
        v.report.compared_blocks += count;
        v.report.differing_count += differing.len() as u64;
        for b in differing {
            if v.report.differing.len() < MAX_DIFF_LISTED {
                v.report.differing.push((vol.clone(), b));
            }
            if let Some(p) = g.pairs.iter_mut().find(|p| p.local == vol) {
                if v.report.repair && b < p.blocks {
                    p.extra.insert(b);
                }
            }
        }
        let done = v.pair >= g.pairs.len() && v.outstanding == 0;
        if !done {
            return self.pump_verify(g);
        }
        let v = g.verify.as_mut().expect("running");
        v.report.running = false;
        v.report.elapsed_ms = self.now.0.saturating_sub(v.report.started.0);
        let r = v.report.clone();
        self.note(
            &g.name,
            format!(
                "verify: {} blocks ({} MiB) compared in {} ms, {} differ{}",
                r.compared_blocks,
                (r.compared_blocks * BLOCK_SIZE as u64) >> 20,
                r.elapsed_ms,
                r.differing_count,
                if r.repair && r.differing_count > 0 {
                    "; resending them"
                } else {
                    ""
                }
            ),
        );
        if r.repair && r.differing_count > 0 {
            self.repair(g)?;
        } else if g.next_cycle.is_some_and(|c| c <= self.now) {
            // A cycle that came due during the verify runs now.
            self.start_runs(g, false)?;
        }
        Ok(())
    }

    /// Resends the differing blocks (now in the pairs' `extra`): a sync
    /// group through a stop and a start in one step (a resync of only
    /// those, as a live mode switch); a periodic or async group in a cycle
    /// now.
    fn repair(&mut self, g: &mut Group) -> R<()> {
        if !g.mode.is_sync() {
            return self.start_runs(g, false);
        }
        match self.cmd_stop(g).and_then(|()| self.cmd_start(g)) {
            Ok(()) => Ok(()),
            Err(CommandError::Volume(e)) => Err(e),
            Err(e) => {
                self.note(&g.name, format!("verify: the repair did not start: {e}"));
                Ok(())
            }
        }
    }

    /// A stop or a failure ends a running verify.
    pub(super) fn abort_verify(&mut self, g: &mut Group, cause: StopCause) {
        if let Some(v) = g.verify.as_mut().filter(|v| v.report.running) {
            v.report.running = false;
            v.report.elapsed_ms = self.now.0.saturating_sub(v.report.started.0);
            v.report.failed = Some(format!("the group stopped ({cause:?})"));
            self.note(&g.name, "verify: stopped with the group".into());
        }
    }
}
