//! Group entries of older on-disk formats, read into the current
//! [`Group`] (the node's store tries the current format first).

use super::*;

/// A group entry of an older format; field order is the format.
/// `P` is how its policies were written and `E` its Error reason (`()`,
/// which postcard writes as nothing, for a format without one):
/// [`LegacyGroup`] is the first format, [`LegacyGroupV2`] the one before
/// retained copies.
#[derive(serde::Deserialize)]
pub struct OldGroup<P, E> {
    name: String,
    peer: String,
    role: Role,
    mode: Mode,
    policies: P,
    epoch: u64,
    started: bool,
    stop_cause: StopCause,
    op: Option<GroupOp>,
    requested: Option<CopyState>,
    recovered: bool,
    pairs: Vec<Pair>,
    next_cycle: Option<Tick>,
    reverse_pending: Option<u64>,
    error: E,
}

/// Written before 2026-12-01: policies of two flags, no Error reason.
pub type LegacyGroup = OldGroup<(bool, bool), ()>;

/// Written before retained copies (2026-12-01): policies with the
/// congestion bounds but no `retain`.
pub type LegacyGroupV2 = OldGroup<(bool, bool, u64, u64), Option<String>>;

/// Old policies, as the current ones (retaining the default).
pub trait OldPolicies {
    fn policies(self) -> Policies;
}

impl OldPolicies for (bool, bool) {
    fn policies(self) -> Policies {
        (self.0, self.1, 0, 0).policies()
    }
}

impl OldPolicies for (bool, bool, u64, u64) {
    fn policies(self) -> Policies {
        Policies {
            auto_recover: self.0,
            fail_wrt_on_err: self.1,
            max_lag_ms: self.2,
            max_backlog_bytes: self.3,
            ..Policies::default()
        }
    }
}

/// An old Error reason (none in the first format).
pub trait OldError {
    fn reason(self) -> Option<String>;
}

impl OldError for () {
    fn reason(self) -> Option<String> {
        None
    }
}

impl OldError for Option<String> {
    fn reason(self) -> Option<String> {
        self
    }
}

impl<P: OldPolicies, E: OldError> From<OldGroup<P, E>> for Group {
    fn from(l: OldGroup<P, E>) -> Group {
        let mut g = new_group(&l.name, &l.peer, l.role, l.mode, l.policies.policies());
        g.epoch = l.epoch;
        g.started = l.started;
        g.stop_cause = l.stop_cause;
        g.op = l.op;
        g.requested = l.requested;
        g.recovered = l.recovered;
        g.pairs = l.pairs;
        g.next_cycle = l.next_cycle;
        g.reverse_pending = l.reverse_pending;
        g.error = l.error.reason();
        g
    }
}
