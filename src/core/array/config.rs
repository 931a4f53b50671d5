//! Configuration: mode and policies, and their copy on the peer.

use super::*;

impl<S: BlockStore> Array<S> {
    pub(super) fn cmd_set_mode(&mut self, g: &mut Group, mode: Mode) -> Result<(), CommandError> {
        let peer = g.peer.clone();
        self.need_source(g, "setrcopygroup mode")?;
        if g.started {
            return Err(CommandError::NotStopped {
                op: "setrcopygroup mode",
                group: g.name.clone(),
                source_array: self.name.clone(),
            });
        }
        if !mode.is_sync() && g.policies.fail_wrt_on_err {
            return Err(CommandError::PolicyNeedsSync {
                policy: "fail_wrt_on_err",
                group: g.name.clone(),
            });
        }
        g.mode = mode;
        g.next_cycle = None;
        self.send(
            &peer,
            Msg::Config {
                group: g.name.clone(),
                mode,
                policies: g.policies,
            },
        );
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
