//! Validation of every peer message against this array's state, before
//! anything changes.

use super::*;

impl<S: BlockStore> Array<S> {
    /// Whether `msg` from `from` is one this array can act on: every name
    /// follows the naming rule, every count is within its bound, and every
    /// block lies inside the volume it names (when this array has the pair).
    pub(super) fn check_message(&self, from: &str, msg: &Msg) -> Result<(), String> {
        let name = |n: &str| names::group(n).map_err(|e| e.to_string());
        let vol = |n: &str| names::volume(n).map_err(|e| e.to_string());
        let text = |t: &str, what: &str| {
            if t.len() > names::MAX_REASON * 2 {
                Err(format!("{what} of {} bytes", t.len()))
            } else {
                Ok(())
            }
        };
        if let Some(g) = msg.group() {
            name(g)?;
        }
        // The pair a block message is about, when this array has it.
        let size = |group: &str, v: &str| -> Option<u64> {
            let g = self.groups.get(group).filter(|g| g.peer == from)?;
            g.pairs.iter().find(|p| p.local == v).map(|p| p.blocks)
        };
        let inside = |group: &str, v: &str, block: u64| match size(group, v) {
            Some(n) if block >= n => Err(format!(
                "block {block} is beyond the end of {v} ({n} blocks) in group {group}"
            )),
            _ => Ok(()),
        };
        match msg {
            Msg::Hello {
                array, groups: gs, ..
            } => {
                if array != from {
                    return Err(format!("a Hello from {from} names {array:?}"));
                }
                if gs.len() > names::HELLO_GROUPS {
                    return Err(format!("a Hello listing {} groups", gs.len()));
                }
                for gh in gs {
                    name(&gh.group)?;
                    if gh.pairs.len() > names::MAX_PAIRS {
                        return Err(format!("group {} with {} pairs", gh.group, gh.pairs.len()));
                    }
                    for ph in &gh.pairs {
                        vol(&ph.vol)?;
                    }
                }
            }
            Msg::Admit {
                vol: v,
                source_vol,
                blocks,
                ..
            } => {
                vol(v)?;
                vol(source_vol)?;
                if *blocks == 0 || *blocks > names::MAX_VOLUME_BLOCKS {
                    return Err(format!("a volume of {blocks} blocks"));
                }
            }
            Msg::AdmitResult { vol: v, error, .. } => {
                vol(v)?;
                if let Some(e) = error {
                    text(e, "an admit error")?;
                }
            }
            Msg::Start { pairs, .. } => {
                if pairs.len() > names::MAX_PAIRS {
                    return Err(format!("a Start of {} pairs", pairs.len()));
                }
                for (v, _) in pairs {
                    vol(v)?;
                }
            }
            Msg::Data {
                group,
                vol: v,
                block,
                ..
            } => {
                vol(v)?;
                inside(group, v, *block)?;
            }
            Msg::SyncBlocks {
                group,
                vol: v,
                blocks,
            } => {
                vol(v)?;
                if blocks.is_empty() || blocks.len() as u64 > names::MAX_RUN_BATCH {
                    return Err(format!("a SyncBlocks of {} blocks", blocks.len()));
                }
                for b in blocks {
                    inside(group, v, b.block)?;
                }
            }
            Msg::SyncBlocksAck { vol: v, count, .. } => {
                vol(v)?;
                if *count == 0 || *count > names::MAX_RUN_BATCH {
                    return Err(format!("an ack of {count} blocks"));
                }
            }
            Msg::Refused { reason, .. } => text(reason, "a refusal")?,
            Msg::OpRefused { op, reason, .. } => {
                text(reason, "a refusal")?;
                if op.len() > names::MAX_NAME {
                    return Err(format!("an operation name of {} bytes", op.len()));
                }
            }
            Msg::RecoverReady { group, changed } => {
                if changed.len() > names::MAX_PAIRS {
                    return Err(format!("a RecoverReady of {} pairs", changed.len()));
                }
                let mut runs = 0;
                for (v, c) in changed {
                    vol(v)?;
                    if let Changed::Ranges(r) = c {
                        runs += r.len();
                        let n = size(group, v).unwrap_or(u64::MAX);
                        let mut next = 0;
                        for &(first, count) in r {
                            let end = first.checked_add(count).filter(|e| *e <= n);
                            if count == 0 || first < next || end.is_none() {
                                return Err(format!(
                                    "changed blocks {first}+{count} of {v} are out of order or beyond its end"
                                ));
                            }
                            next = first + count;
                        }
                    }
                }
                if runs > names::MAX_RECOVER_RANGES {
                    return Err(format!("a RecoverReady of {runs} ranges"));
                }
            }
            Msg::SyncDone { vol: v, label, .. } => {
                vol(v)?;
                if let Some(l) = label {
                    names::volume(l).map_err(|e| format!("a SyncDone point name: {e}"))?;
                }
            }
            Msg::DataAck { vol: v, .. }
            | Msg::Dismiss { vol: v, .. }
            | Msg::SyncDoneAck { vol: v, .. } => vol(v)?,
            Msg::CreateGroup { .. }
            | Msg::RemoveGroup { .. }
            | Msg::Config { .. }
            | Msg::Stop { .. }
            | Msg::RecoverPrepare { .. }
            | Msg::RestorePrepare { .. }
            | Msg::RestoreReady { .. }
            | Msg::RestoreCommit { .. }
            | Msg::RestoreAbort { .. }
            | Msg::Reverse { .. }
            | Msg::ReverseDone { .. }
            | Msg::HandOverRequest { .. }
            | Msg::HandOver { .. }
            | Msg::Probe { .. }
            | Msg::ProbeAck { .. } => {}
            Msg::VerifyBlocks {
                vol: v,
                first,
                digests,
                ..
            } => {
                vol(v)?;
                let n = digests.len() as u64;
                if n == 0 || n > VERIFY_BATCH || first.checked_add(n).is_none() {
                    return Err(format!("a VerifyBlocks of {n} digests from block {first}"));
                }
            }
            Msg::VerifyDiff {
                vol: v,
                first,
                count,
                differing,
                ..
            } => {
                vol(v)?;
                let end = first.saturating_add(*count);
                let ordered = differing.windows(2).all(|w| w[0] < w[1]);
                if *count > VERIFY_BATCH
                    || !ordered
                    || differing.iter().any(|b| *b < *first || *b >= end)
                {
                    return Err(format!(
                        "a VerifyDiff of {} blocks not in order within {first}+{count}",
                        differing.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Why this side does not take blocks of `vol` for `g`, if it does not.
    pub(super) fn not_receiving(&self, g: &Group, vol: &str) -> Option<String> {
        (g.role.is_source() || !g.started || g.pairs.iter().all(|p| p.local != vol)).then(|| {
            format!(
                "{} is {} and not receiving for group {}",
                self.name, g.role, g.name
            )
        })
    }
}
