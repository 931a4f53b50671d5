//! Methods that only read: GetReplicationRelationships, GetPeerSystems
//! and the capabilities' Get* methods.

use super::*;

/// GetReplicationRelationships: paths of this array's pairs or groups.
pub(super) fn relationships(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let kind = u16p(p, "Type").ok_or_else(|| {
        CimError::invalid_parameter("Type is required (2 StorageSynchronized, 3 GroupSynchronized)")
    })?;
    let snap = rep.snapshot();
    let want_mode = u16p(p, "Mode");
    let want_state = u16p(p, "CopyState");
    let locality = u16p(p, "Locality");
    let sync_type = u16p(p, "SyncType");
    if !matches!(kind, 2 | 3) {
        return Err(CimError::invalid_parameter(format!(
            "Type {kind}: use 2 (StorageSynchronized) or 3 (GroupSynchronized)"
        )));
    }
    let mut found = Vec::new();
    // Local replicas (StorageSynchronized only: they are not grouped).
    if kind == 2 && locality != Some(3) && want_mode.is_none_or(|m| m == 2) {
        for r in snap.replicas.iter() {
            let local = crate::provider::local::sync_type(r.kind);
            let state = crate::provider::local::copy_state(r).number();
            if sync_type.is_none_or(|t| t == local) && want_state.is_none_or(|s| s == state) {
                found.push(Some(Value::reference(
                    crate::provider::local::sync_path_of(rep, r),
                )));
            }
        }
    }
    let remote = sync_type.is_none_or(|t| t == 6) && locality != Some(2);
    let groups: &[std::sync::Arc<crate::core::GroupRead>] = if remote { &snap.groups } else { &[] };
    for g in groups {
        let mode = if g.mode.is_sync() { 2 } else { 3 };
        if want_mode.is_some_and(|m| m != mode) {
            continue;
        }
        match kind {
            2 => {
                for pr in &g.pairs {
                    let v = Some(&pr.view);
                    if want_state.is_some_and(|s| v.map(|v| v.copy_state.number()) != Some(s)) {
                        continue;
                    }
                    found.push(Some(Value::reference(rep.pair_sync_path(g, pr))));
                }
            }
            3 => {
                let v = crate::provider::model::group_view(g);
                if want_state.is_some_and(|s| v.map(|v| v.copy_state.number()) != Some(s)) {
                    continue;
                }
                found.push(Some(Value::reference(rep.group_sync_path(g))));
            }
            n => {
                return Err(CimError::invalid_parameter(format!(
                    "Type {n}: use 2 (StorageSynchronized) or 3 (GroupSynchronized)"
                )))
            }
        }
    }
    done(
        OK,
        vec![(Name::new("Synchronizations"), Value::Array(found))],
    )
}

/// GetPeerSystems: the arrays this one replicates with.
pub(super) fn peers(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let reachable_only = u16p(p, "Options") == Some(2);
    let snap = rep.snapshot();
    let mut names: Vec<String> = rep
        .hosts
        .keys()
        .filter(|a| **a != rep.array)
        .cloned()
        .collect();
    for peer in snap.links.keys() {
        if !names.contains(peer) {
            names.push(peer.clone());
        }
    }
    let systems: Vec<Option<Value>> = names
        .iter()
        .filter(|n| !reachable_only || snap.links.get(*n).copied().unwrap_or(false))
        .map(|n| Some(Value::reference(cs_path(n, &rep.host_of(n)))))
        .collect();
    done(
        OK,
        vec![
            (Name::new("Systems"), Value::Array(systems)),
            (Name::new("LocalAccessPoints"), Value::Array(Vec::new())),
            (Name::new("RemoteAccessPoints"), Value::Array(Vec::new())),
        ],
    )
}

/// Operations the array accepts on a pair in a CopyState (for
/// GetSupportedOperations), on the side ServiceControlling names. A
/// CopyState alone does not say the role: Failback (11) in Synchronized
/// is accepted only on a Primary-Rev side after recover, and the planned
/// Failover (10) only with every pair Synced.
pub(super) fn operations_in(state: Option<u16>) -> Vec<u16> {
    use CopyState as C;
    use SyncOperation as O;
    let ops: &[SyncOperation] = match state.map(CopyState::from_number) {
        None => return operations(),
        Some(Some(C::Initialized)) => &[O::Activate, O::Detach, O::Suspend],
        // Reset To Sync / Async switch a started group live.
        Some(Some(C::Unsynchronized)) => &[
            O::Deactivate,
            O::Detach,
            O::ResetToSync,
            O::ResetToAsync,
            O::Suspend,
        ],
        Some(Some(C::Synchronized)) => &[
            O::Deactivate,
            O::Detach,
            O::Failover,
            O::Failback,
            O::ResetToSync,
            O::ResetToAsync,
            O::Suspend,
        ],
        Some(Some(C::Broken | C::Skewed)) => &[
            O::Activate,
            O::Detach,
            O::Failover,
            O::ResyncReplica,
            O::Suspend,
        ],
        Some(Some(C::Inactive)) => &[
            O::Activate,
            O::Detach,
            O::ResyncReplica,
            O::Resume,
            O::ResetToSync,
            O::ResetToAsync,
            O::ReverseRoles,
            O::Suspend,
        ],
        // Failback needs recover first (Resync Replica on this side).
        Some(Some(C::FailedOver)) => &[O::Detach, O::ResyncReplica, O::Suspend],
        Some(_) => &[],
    };
    ops.iter().map(|o| o.number()).collect()
}

pub(super) fn capabilities(m: &str, p: &Params) -> Result<MethodResult, CimError> {
    let rtype = u16p(p, "ReplicationType");
    let supported = rtype.is_some_and(|t| REPLICATION_TYPES.contains(&t));
    // Local snapshots (6) and clones (10) have their own answers.
    let local = match rtype {
        Some(6) => Some(crate::core::ReplicaKind::Snapshot),
        Some(10) => Some(crate::core::ReplicaKind::Clone),
        _ => None,
    };
    let lower = m.to_ascii_lowercase();
    if lower != "getsupportedreplicationtypes"
        && lower != "convertsynctypetoreplicationtype"
        && !supported
    {
        return done(NOT_SUPPORTED, Vec::new());
    }
    match lower.as_str() {
        "getsupportedreplicationtypes" => done(
            OK,
            vec![(
                Name::new("SupportedReplicationTypes"),
                u16_array(REPLICATION_TYPES),
            )],
        ),
        "convertsynctypetoreplicationtype" => match (
            u16p(p, "SyncType"),
            u16p(p, "Mode"),
            u16p(p, "LocalOrRemote"),
        ) {
            (Some(6), Some(2), Some(3)) => {
                done(OK, vec![(Name::new("ReplicationType"), Value::Uint16(4))])
            }
            (Some(6), Some(3), Some(3)) => {
                done(OK, vec![(Name::new("ReplicationType"), Value::Uint16(5))])
            }
            (Some(7), Some(2), Some(2)) => {
                done(OK, vec![(Name::new("ReplicationType"), Value::Uint16(6))])
            }
            (Some(8), Some(2), Some(2)) => {
                done(OK, vec![(Name::new("ReplicationType"), Value::Uint16(10))])
            }
            _ => done(NOT_SUPPORTED, Vec::new()),
        },
        "getsupportedoperations" if local.is_some() => {
            let kind = local.expect("checked");
            let state = u16p(p, "CopyState");
            // A snapshot is always Synchronized; a clone is Unsynchronized
            // while it copies (and then detached only with Force).
            let applies = matches!(
                (kind, state),
                (_, None | Some(4)) | (crate::core::ReplicaKind::Clone, Some(3))
            );
            let ops: Vec<u16> = crate::provider::local::operations(kind)
                .iter()
                .filter(|_| applies)
                .map(|o| o.number())
                .collect();
            let force: Vec<Option<Value>> = ops
                .iter()
                .map(|o| Some(Value::Boolean(*o == 8 && state == Some(3))))
                .collect();
            done(
                OK,
                vec![
                    (Name::new("SupportedOperations"), u16_array(&ops)),
                    (
                        Name::new("ServiceControlling"),
                        u16_array(&vec![2; ops.len()]),
                    ),
                    (Name::new("RequiresForce"), Value::Array(force)),
                    (
                        Name::new("UpdatesSynchronizedPath"),
                        Value::Array(ops.iter().map(|_| Some(Value::Boolean(false))).collect()),
                    ),
                ],
            )
        }
        "getsupportedoperations" => {
            let ops = operations_in(u16p(p, "CopyState"));
            let controlling: Vec<u16> = ops
                .iter()
                .map(|o| match o {
                    // Failover: the target side; either side with the
                    // link up (planned). Detach and Reverse Roles: either.
                    8 | 10 | 20 => 4,
                    _ => 2, // the source side
                })
                .collect();
            let updates: Vec<Option<Value>> = ops
                .iter()
                .map(|o| Some(Value::Boolean(matches!(o, 10 | 11 | 20))))
                .collect();
            done(
                OK,
                vec![
                    (Name::new("SupportedOperations"), u16_array(&ops)),
                    (Name::new("ServiceControlling"), u16_array(&controlling)),
                    (
                        Name::new("RequiresForce"),
                        Value::Array(ops.iter().map(|_| Some(Value::Boolean(false))).collect()),
                    ),
                    (Name::new("UpdatesSynchronizedPath"), Value::Array(updates)),
                ],
            )
        }
        // The features claimed, each one a behaviour the methods have.
        // 34/35: each array's provider manages pairs whose other end is
        // remote (failover on the target side, everything else on the
        // source side); 42: admitting a volume creates its target on the
        // peer; 46: TargetElement may be the peer's own path (its host).
        "getsupportedfeatures" => done(
            OK,
            vec![(Name::new("Features"), u16_array(&[34, 35, 42, 46]))],
        ),
        "getsupportedcopystates" => {
            let states: &[u16] = match local {
                Some(crate::core::ReplicaKind::Snapshot) => &[4],
                Some(crate::core::ReplicaKind::Clone) => &[3, 4],
                None => &[2, 3, 4, 5, 8, 10, 13],
            };
            done(
                OK,
                vec![
                    (Name::new("SupportedCopyStates"), u16_array(states)),
                    (
                        Name::new("HostAccessible"),
                        Value::Array(states.iter().map(|_| Some(Value::Boolean(true))).collect()),
                    ),
                ],
            )
        }
        "getsupportedwaitforcopystates" => {
            let states: &[u16] = match (local, u16p(p, "MethodName")) {
                (Some(crate::core::ReplicaKind::Clone), Some(2)) => &[3, 4],
                (Some(_), Some(2 | 4)) => &[4],
                (None, Some(2)) => &[3, 4],
                (None, Some(4)) => &[3, 4, 8, 10],
                _ => &[],
            };
            done(
                OK,
                vec![(Name::new("SupportedCopyStates"), u16_array(states))],
            )
        }
        _ => Err(CimError::method_not_available(format!(
            "{m} is not available"
        ))),
    }
}
