//! Configuration: mode and policies, and their copy on the peer.

use super::*;

/// The longest host writes wait while a live switch to sync drains what
/// the target lacks (an application's I/O timeout is far longer).
pub const SWITCH_DRAIN_MS: u64 = 2_000;

impl<S: BlockStore> Array<S> {
    /// `setrcopygroup mode` (Reset To Sync / Async). A stopped group just
    /// takes the new mode. A started group switches live: a new period of
    /// a periodic group applies from now; a switch between sync and
    /// periodic goes through a consistent point, as an operator's stop and
    /// start would, in one step (the stop snapshots every pair, the start
    /// in the new mode resyncs only what changed since), so no
    /// acknowledged write is lost and nothing is copied whole. Until that
    /// resync completes a switch to sync does not yet hold writes to RPO 0.
    pub(super) fn cmd_set_mode(&mut self, g: &mut Group, mode: Mode) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_source(g, "setrcopygroup mode")?;
        let live = g.started;
        if live && (g.op.is_some() || g.busy().is_some()) {
            return Err(busy("setrcopygroup mode", g));
        }
        if !mode.is_sync() && g.policies.fail_wrt_on_err {
            return Err(CommandError::PolicyNeedsSync {
                policy: "fail_wrt_on_err",
                group: g.name.clone(),
            });
        }
        let switch = g.mode.is_sync() != mode.is_sync();
        let old = g.mode;
        if live && switch {
            // What the restart needs is checked before the stop: on Err,
            // nothing changed.
            self.need_link(g, "setrcopygroup mode", "switch it once the link is back")?;
            self.need_agreement(g, "setrcopygroup mode")?;
            self.cmd_stop(g)?;
        }
        g.mode = mode;
        // Periodic <-> async and a new period apply from now, on the
        // cycles in place (both are cycles of group points).
        g.next_cycle = match live && !switch {
            true => mode.first_cycle(self.now),
            false => None,
        };
        self.send(
            &peer,
            Msg::Config {
                group: g.name.clone(),
                mode,
                policies: g.policies,
            },
        );
        if live && switch {
            self.cmd_start(g)?;
            self.note(&g.name, format!("mode switched live to {mode:?}"));
            if mode.is_sync() && g.running() {
                // Host writes wait while what the target lacks drains, so
                // the switch ends at RPO 0 with every write since on the
                // peer; bounded by SWITCH_DRAIN_MS.
                g.draining_since = Some((self.now, old));
            }
        }
        Ok(())
    }

    /// The drain of a live switch to sync is over its bound: the switch is
    /// refused after the fact. The held writes complete (not replicated),
    /// and the group goes back to the mode it had, through a consistent
    /// point as any switch.
    pub(super) fn drain_timeout(&mut self, g: &mut Group) -> R<()> {
        let Some((since, old)) = g.draining_since else {
            return Ok(());
        };
        if self.now < since.plus(SWITCH_DRAIN_MS) {
            return Ok(());
        }
        g.draining_since = None;
        let lag: u64 = g.pairs.iter().map(|p| p.progress().0).sum();
        let reason = format!(
            "{lag} blocks still to send to {} after {SWITCH_DRAIN_MS} ms: the switch to sync is refused, the group stays {old}",
            g.peer
        );
        self.release_writes(&g.name.clone(), None);
        if let Err(e) = self.cmd_set_mode(g, old) {
            self.note(&g.name, format!("back to {old} failed: {e}"));
        }
        self.events.push_back(Event::OperationFailed {
            group: g.name.clone(),
            op: "setrcopygroup mode",
            reason,
        });
        Ok(())
    }

    pub(super) fn cmd_set_policy(
        &mut self,
        g: &mut Group,
        change: PolicyChange,
    ) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_source(g, "setrcopygroup pol")?;
        let mut policies = g.policies;
        match change {
            PolicyChange::AutoRecover(on) => policies.auto_recover = on,
            PolicyChange::FailWrtOnErr(on) => policies.fail_wrt_on_err = on,
            PolicyChange::MaxLag(ms) => policies.max_lag_ms = ms,
            PolicyChange::MaxBacklog(bytes) => policies.max_backlog_bytes = bytes,
            PolicyChange::Retain(n) => policies.retain = n.min(MAX_RETAIN),
        }
        if policies.fail_wrt_on_err && !g.mode.is_sync() {
            return Err(CommandError::PolicyNeedsSync {
                policy: "fail_wrt_on_err",
                group: g.name.clone(),
            });
        }
        // Enabling auto_recover never restarts a group by itself: it
        // only acts on the next link-up.
        g.policies = policies;
        self.send(
            &peer,
            Msg::Config {
                group: g.name.clone(),
                mode: g.mode,
                policies,
            },
        );
        Ok(())
    }

    pub(super) fn on_config(&mut self, g: &mut Group, mode: Mode, policies: Policies) -> R<()> {
        if !g.role.is_source() {
            g.mode = mode;
            g.policies = policies;
        }

        Ok(())
    }
}
