//! The Error state: a group whose destination cannot keep up within its
//! bound stops replicating instead of slowing the hosts, and (with
//! `auto_recover`) resumes once a probe shows the destination caught up.
//!
//! The bounds are policies (`max_lag`, `max_backlog`). In sync mode the
//! bound is the longest a host write may wait for the peer: the write
//! that waits longer trips the group, and every waiting write completes
//! at once, unreplicated, as at a link failure. In async mode it is the
//! age of the oldest write the target has not applied, or the bytes
//! changed and not applied, once the group has caught up after its start
//! (the resync that follows a start is behind by nature). The stop is the
//! one every failure takes: the pairs keep a snapshot, and the next start
//! resyncs only what changed.

use super::*;

/// After a trip, the first probe waits this long (and each next one).
pub const PROBE_MS: u64 = 500;

impl<S: BlockStore> Array<S> {
    /// How far the target of a started non-sync source is behind.
    pub fn lag_of(&self, g: &Group) -> Lag {
        if g.mode.is_sync() || !g.started || !g.role.is_source() {
            return Lag::default();
        }
        let mut blocks = 0;
        for p in &g.pairs {
            blocks += p.progress().0 + p.extra.len() as u64;
            // Written since the point being shipped (or the last one).
            if let Some(s) = p.cycle_snap.or(p.base_snap) {
                blocks += self.vols.changed_count(s) as u64;
            }
        }
        let oldest = earlier(g.cycle_oldest, g.dirty_since);
        Lag {
            bytes: blocks * BLOCK_SIZE as u64,
            oldest: oldest.filter(|_| blocks > 0),
        }
    }

    /// When the group trips unless the target catches up first, or its
    /// next probe is due.
    pub(super) fn congestion_deadline(&self, g: &Group) -> Option<Tick> {
        let bound = g.policies.max_lag_ms;
        if !g.started || !g.role.is_source() || !g.policies.bounds(g.mode) || bound == 0 {
            return g.probe_at;
        }
        let since = match g.mode {
            Mode::Sync => self.peer_wait_since(g),
            _ if !g.caught_up => None,
            _ => self.lag_of(g).oldest,
        };
        since.map(|t| t.plus(bound.saturating_add(1)))
    }

    /// Why the group's destination is behind its bound, if it is.
    fn congestion(&self, g: &Group) -> Option<String> {
        if !g.started || !g.role.is_source() || !g.policies.bounds(g.mode) || g.op.is_some() {
            return None;
        }
        let pol = g.policies;
        if g.mode.is_sync() {
            let waited = self.now.0.saturating_sub(self.peer_wait_since(g)?.0);
            return (waited > pol.max_lag_ms).then(|| {
                format!(
                    "a host write waited {waited} ms for {} (max_lag {} ms)",
                    g.peer, pol.max_lag_ms
                )
            });
        }
        if !g.caught_up {
            return None;
        }
        let lag = self.lag_of(g);
        let age = lag.age_ms(self.now);
        if pol.max_lag_ms > 0 && age > pol.max_lag_ms {
            return Some(format!(
                "the oldest write not yet on {} is {age} ms old (max_lag {} ms)",
                g.peer, pol.max_lag_ms
            ));
        }
        (pol.max_backlog_bytes > 0 && lag.bytes > pol.max_backlog_bytes).then(|| {
            format!(
                "{} bytes are not yet on {} (max_backlog {})",
                lag.bytes, g.peer, pol.max_backlog_bytes
            )
        })
    }

    /// Trips the group into the Error state if its bound is crossed.
    pub(super) fn check_congestion(&mut self, g: &mut Group) -> R<()> {
        let Some(reason) = self.congestion(g) else {
            return Ok(());
        };
        self.send(
            &g.peer.clone(),
            Msg::Stop {
                group: g.name.clone(),
            },
        );
        self.fail_group(g, StopCause::Congested)?;
        self.note(
            &g.name,
            format!(
                "Error: {reason}; host writes continue here and a delta resync follows {}",
                if g.policies.auto_recover {
                    "once the destination has caught up (auto_recover)"
                } else {
                    "`startrcopygroup`"
                }
            ),
        );
        g.error = Some(reason);
        if g.policies.auto_recover {
            g.probe_at = Some(self.now.plus(PROBE_MS));
        }
        Ok(())
    }

    /// The probe of a group in Error is due: ask the peer to answer. Its
    /// answer comes after everything sent before it has been applied
    /// there (the link keeps order), so its round trip tells whether the
    /// destination has caught up.
    pub(super) fn probe_timeout(&mut self, g: &mut Group) {
        if g.probe_at.is_some_and(|t| t <= self.now) {
            g.probe_at = None;
            if g.started || g.stop_cause != StopCause::Congested || !g.policies.auto_recover {
                return;
            }
            if self.link_up(&g.peer) {
                self.send(
                    &g.peer.clone(),
                    Msg::Probe {
                        group: g.name.clone(),
                        sent: self.now.0,
                    },
                );
            }
        }
    }

    pub(super) fn on_probe(&mut self, g: &mut Group, from: &str, sent: u64) {
        self.send(
            from,
            Msg::ProbeAck {
                group: g.name.clone(),
                sent,
            },
        );
    }

    /// A probe came back: resume (a delta resync) if the round trip fits
    /// in half the bound, so a group does not flap at its edge; probe
    /// again later if not.
    pub(super) fn on_probe_ack(&mut self, g: &mut Group, sent: u64) -> R<()> {
        let waiting = !g.started
            && g.stop_cause == StopCause::Congested
            && g.policies.auto_recover
            && (g.role == Role::Primary || (g.role == Role::PrimaryRev && g.recovered))
            && g.op.is_none()
            && g.busy().is_none()
            && !g.pairs.is_empty();
        if !waiting {
            return Ok(());
        }
        let rtt = self.now.0.saturating_sub(sent);
        let bound = g.policies.max_lag_ms;
        if bound > 0 && rtt.saturating_mul(2) > bound {
            g.probe_at = Some(self.now.plus(PROBE_MS));
            return Ok(());
        }
        self.note(
            &g.name,
            format!(
                "auto_recover: {} caught up (probe {rtt} ms); resuming",
                g.peer
            ),
        );
        g.started = true;
        g.requested = Some(CopyState::Synchronized);
        self.start_runs(g, false)
    }

    /// Since when the oldest host write still waiting for `g`'s peer has
    /// waited (writes are pending in id order, which is time order). Read
    /// only for a group with a sync bound, so the write and ack paths
    /// keep no clock of their own.
    fn peer_wait_since(&self, g: &Group) -> Option<Tick> {
        self.pending
            .values()
            .find(|w| w.waiting.contains_key(&g.name))
            .map(|w| w.since)
    }
}
