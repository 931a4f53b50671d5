//! What every view of a remote-copy group carries for a console, beyond
//! its keys: the DMTF numbers of its mode and state, its policies and
//! mode in rcopy's words, how far its target is behind, why it is in
//! Error, its last online verify, and the one view of a whole group.

use super::model::{s, u16v};
use super::Replication;
use crate::cim::model::{CimType, Instance, Value};
use crate::core::{
    CopyState, GroupRead, Mode, PairView, ProgressStatus, Role, SyncState, SyncStatus, Tick,
};

pub fn role_number(r: Role) -> u16 {
    r.number()
}

pub fn status_number(s: SyncStatus) -> u16 {
    s.number()
}

/// 3PAR-style policy names of a group.
pub fn policy_names(g: &GroupRead) -> Vec<String> {
    let pol = g.policies;
    let mut v = vec![if pol.auto_recover {
        "auto_recover".to_string()
    } else {
        "no_auto_recover".to_string()
    }];
    if g.mode.is_sync() {
        v.push(if pol.fail_wrt_on_err {
            "fail_wrt_on_err".into()
        } else {
            "no_fail_wrt_on_err".into()
        });
    }
    if pol.max_lag_ms > 0 {
        v.push(format!("max_lag={}ms", pol.max_lag_ms));
    }
    match pol.max_backlog_bytes {
        0 => {}
        b if b % (1 << 20) == 0 => v.push(format!("max_backlog={}M", b >> 20)),
        b => v.push(format!("max_backlog={b}")),
    }
    if pol.retain != crate::core::DEFAULT_RETAIN {
        v.push(format!("retain={}", pol.retain));
    }
    v
}

/// The mode in rcopy's words: `sync`, `async` or `periodic`.
pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Sync => "sync",
        Mode::Async => "async",
        Mode::Periodic { .. } => "periodic",
    }
}

/// What every view of a group adds for a console: its mode in rcopy's
/// words, how far its target is behind, and why it is in Error.
pub(super) fn lag_props(rep: &Replication, inst: &mut Instance, g: &GroupRead) {
    inst.set("ReplicationMode", CimType::String, s(mode_name(g.mode)));
    inst.set(
        "LagBytes",
        CimType::Uint64,
        Some(Value::Uint64(g.lag.bytes)),
    );
    inst.set(
        "LagMilliseconds",
        CimType::Uint64,
        Some(Value::Uint64(g.lag.age_ms(rep.backend.now()))),
    );
    inst.set(
        "ErrorReason",
        CimType::String,
        g.error.as_deref().map(|e| Value::String(e.into())),
    );
}

/// SyncPolicy: the policy names as a string array.
pub(super) fn policy_value(g: &GroupRead) -> Option<Value> {
    Some(Value::Array(
        policy_names(g)
            .into_iter()
            .map(|p| Some(Value::String(p)))
            .collect(),
    ))
}

pub(super) fn mode_numbers(m: Mode) -> (u16, u16) {
    // (Mode: 2 Synchronous / 3 Asynchronous, CopyType: 3 Sync / 2 Async)
    if m.is_sync() {
        (2, 3)
    } else {
        (3, 2)
    }
}

pub(super) fn period_s(m: Mode) -> u32 {
    match m {
        Mode::Sync | Mode::Async => 0,
        Mode::Periodic { period_ms } => (period_ms / 1000) as u32,
    }
}

/// Properties every synchronization carries, from a view.
pub(super) fn sync_props(
    rep: &Replication,
    inst: &mut Instance,
    g: &GroupRead,
    v: &PairView,
    established: Option<Tick>,
) {
    let (mode, copy_type) = mode_numbers(g.mode);
    inst.set("CopyState", CimType::Uint16, u16v(v.copy_state.number()));
    inst.set("ProgressStatus", CimType::Uint16, u16v(v.progress.number()));
    inst.set(
        "RequestedCopyState",
        CimType::Uint16,
        u16v(v.requested_copy_state.number()),
    );
    inst.set("Mode", CimType::Uint16, u16v(mode));
    inst.set("SyncType", CimType::Uint16, u16v(6));
    inst.set("CopyType", CimType::Uint16, u16v(copy_type));
    inst.set(
        "SyncMaintained",
        CimType::Boolean,
        Some(Value::Boolean(v.status == SyncStatus::Synced)),
    );
    inst.set(
        "PercentSynced",
        CimType::Uint16,
        v.percent_synced.map(Value::Uint16),
    );
    inst.set(
        "WhenSynced",
        CimType::Datetime,
        v.when_synced.map(|t| Value::Datetime(rep.datetime(t))),
    );
    inst.set(
        "WhenEstablished",
        CimType::Datetime,
        established.map(|t| Value::Datetime(rep.datetime(t))),
    );
    inst.set(
        "CopyRecoveryMode",
        CimType::Uint16,
        u16v(if g.policies.auto_recover { 2 } else { 3 }),
    );
    inst.set(
        "FailedCopyStopsHostIO",
        CimType::Boolean,
        Some(Value::Boolean(g.policies.fail_wrt_on_err)),
    );
    inst.set("Role", CimType::Uint16, u16v(role_number(v.role)));
    inst.set(
        "RoleReversed",
        CimType::Boolean,
        Some(Value::Boolean(v.role_reversed)),
    );
    inst.set(
        "SyncInterval",
        CimType::Uint32,
        Some(Value::Uint32(period_s(g.mode))),
    );
    inst.set("SyncPolicy", CimType::String, policy_value(g));
    lag_props(rep, inst, g);
}

/// One value for a whole group: the common one, or `mixed`.
pub(super) fn common<T: PartialEq + Copy>(values: impl Iterator<Item = T>, mixed: T) -> Option<T> {
    let mut it = values;
    let first = it.next()?;
    Some(if it.all(|x| x == first) { first } else { mixed })
}

/// The group's view: pairs' values when they agree, Mixed when not.
pub fn group_view(g: &GroupRead) -> Option<PairView> {
    let views: Vec<PairView> = g.pairs.iter().map(|p| p.view).collect();
    let first = *views.first()?;
    Some(PairView {
        copy_state: common(views.iter().map(|v| v.copy_state), CopyState::Mixed)?,
        sync_state: common(views.iter().map(|v| v.sync_state), SyncState::Unknown)?,
        progress: common(views.iter().map(|v| v.progress), ProgressStatus::Mixed)?,
        status: common(views.iter().map(|v| v.status), first.status)?,
        percent_synced: if views.iter().all(|v| v.percent_synced.is_some()) {
            Some(
                (views
                    .iter()
                    .map(|v| v.percent_synced.unwrap_or(0) as u32)
                    .sum::<u32>()
                    / views.len() as u32) as u16,
            )
        } else {
            None
        },
        when_synced: views.iter().filter_map(|v| v.when_synced).min(),
        requested_copy_state: common(
            views.iter().map(|v| v.requested_copy_state),
            CopyState::Mixed,
        )?,
        ..first
    })
}

/// The group's last online verify, for a console.
pub(super) fn verify_props(inst: &mut Instance, g: &GroupRead) {
    let Some(v) = &g.verify else {
        return;
    };
    let status = match (&v.failed, v.running) {
        (Some(why), _) => format!("failed: {why}"),
        (None, true) => "running".into(),
        (None, false) => "done".into(),
    };
    let bs = crate::core::BLOCK_SIZE as u64;
    inst.set("VerifyStatus", CimType::String, s(&status));
    let n = |x: u64| Some(Value::Uint64(x));
    inst.set(
        "VerifyComparedBytes",
        CimType::Uint64,
        n(v.compared_blocks * bs),
    );
    inst.set("VerifyTotalBytes", CimType::Uint64, n(v.total_blocks * bs));
    inst.set(
        "VerifyDifferingBlocks",
        CimType::Uint64,
        n(v.differing_count),
    );
    inst.set(
        "VerifyDiffering",
        CimType::String,
        Some(Value::Array(
            v.differing
                .iter()
                .map(|(vol, b)| Some(Value::String(format!("{vol}:{b}"))))
                .collect(),
        )),
    );
    inst.set("VerifyMilliseconds", CimType::Uint64, n(v.elapsed_ms));
}
