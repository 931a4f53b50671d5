//! CIM_ReplicationService and CIM_ReplicationServiceCapabilities methods.
//!
//! Refusals: a malformed or inapplicable parameter is
//! CIM_ERR_INVALID_PARAMETER; a request the core refuses (wrong side, wrong
//! state) is CIM_ERR_FAILED with the core's message, which names the reason
//! and what to do. DSP0200 gives a method no other way to carry a reason.

mod groups;
mod queries;

use super::jobs::Goal;
use super::model::{cs_path, group_path, job_path, vol_path};
use super::{Replication, Snapshot};
use crate::cim::dispatch::MethodResult;
use crate::cim::model::{Method, Name, ObjectPath, Value};
use crate::cim::CimError;
use crate::core::{Command, CopyState, Mode, Policies, Role, SyncOperation};
use groups::*;
use queries::*;

/// SupportedReplicationTypes: synchronous and asynchronous remote
/// mirrors (4, 5), synchronous local snapshots (6) and clones (10).
pub const REPLICATION_TYPES: &[u16] = &[4, 5, 6, 10];

/// Every ModifyReplicaSynchronization operation remote mirrors accept.
pub fn operations() -> Vec<u16> {
    <SyncOperation as strum::IntoEnumIterator>::iter()
        .filter(|o| !local_only(*o))
        .map(SyncOperation::number)
        .collect()
}

/// Operations only local replicas accept.
fn local_only(o: SyncOperation) -> bool {
    matches!(
        o,
        SyncOperation::RestoreFromReplica | SyncOperation::ReturnToResourcePool
    )
}

/// Method return values (DMTF).
pub(super) const OK: u32 = 0;
pub(super) const NOT_SUPPORTED: u32 = 1;
const JOB_STARTED: u32 = 4096;

pub(super) type Params = Vec<(Name, Option<Value>)>;

pub(super) fn param<'a>(p: &'a Params, name: &str) -> Option<&'a Value> {
    p.iter()
        .find(|(n, _)| n.is(name))
        .and_then(|(_, v)| v.as_ref())
}

fn u16p(p: &Params, name: &str) -> Option<u16> {
    param(p, name).and_then(Value::as_u64).map(|v| v as u16)
}

pub(super) fn done(rv: u32, out: Vec<(Name, Value)>) -> Result<MethodResult, CimError> {
    Ok(MethodResult {
        return_value: Value::Uint32(rv),
        out,
    })
}

fn u16_array(v: &[u16]) -> Value {
    Value::Array(v.iter().map(|x| Some(Value::Uint16(*x))).collect())
}

pub fn invoke(
    rep: &Replication,
    target: &ObjectPath,
    method: &Method,
    params: Params,
) -> Result<MethodResult, CimError> {
    let m = method.name.as_str();
    if target.class.is("RCM_ReplicationServiceCapabilities") {
        return capabilities(m, &params);
    }
    if target.class.is("RCM_StorageConfigurationService") {
        return super::pools::invoke(rep, m, &params);
    }
    if !target.class.is("RCM_ReplicationService") {
        return Err(CimError::method_not_available(format!(
            "{} has no method {m}",
            target.class
        )));
    }
    match m.to_ascii_lowercase().as_str() {
        "modifyreplicasynchronization" => modify(rep, &params),
        "createelementreplica" => create_element_replica(rep, &params),
        "getreplicationrelationships" => relationships(rep, &params),
        "getpeersystems" => peers(rep, &params),
        "createremotecopygroup" => create_group(rep, &params),
        "removeremotecopygroup" => {
            let group = group_name(rep, &params)?;
            rep.backend
                .command(Command::RemoveGroup {
                    group,
                    force: param(&params, "Force").and_then(Value::as_bool) == Some(true),
                    remove_vv: param(&params, "RemoveTargetVolumes").and_then(Value::as_bool)
                        == Some(true),
                })
                .map_err(failed)?;
            done(OK, Vec::new())
        }
        "createsyncpoint" => {
            let group = group_name(rep, &params)?;
            let label = param(&params, "PointName")
                .and_then(Value::as_str)
                .ok_or_else(|| CimError::invalid_parameter("PointName is required"))?
                .to_string();
            crate::core::names::volume(&label)
                .map_err(|e| CimError::invalid_parameter(format!("PointName: {e}")))?;
            rep.backend
                .command(Command::Sync {
                    group,
                    label: Some(label),
                })
                .map_err(failed)?;
            done(OK, Vec::new())
        }
        "verifyremotecopygroup" => {
            let group = group_name(rep, &params)?;
            let repair = param(&params, "Repair").and_then(Value::as_bool) == Some(true);
            rep.backend
                .command(Command::Verify {
                    group: group.clone(),
                    repair,
                })
                .map_err(failed)?;
            let seq = rep
                .snapshot()
                .group(&group)
                .and_then(|g| g.verify.as_ref().map(|v| v.seq));
            let goal = Goal {
                role: None,
                copy: None,
                pair: None,
                replica: None,
                verify: seq,
            };
            start_job(
                rep,
                "VerifyRemoteCopyGroup",
                &group,
                goal,
                Vec::new(),
                Vec::new(),
            )
        }
        "setremotecopypolicy" => {
            let group = group_name(rep, &params)?;
            let text = param(&params, "Policy")
                .and_then(Value::as_str)
                .ok_or_else(|| CimError::invalid_parameter("Policy is required"))?;
            let change = crate::rcopy::parse_policy(text).map_err(CimError::invalid_parameter)?;
            rep.backend
                .command(Command::SetPolicy { group, change })
                .map_err(failed)?;
            done(OK, Vec::new())
        }
        "setremotecopyperiod" => {
            let group = group_name(rep, &params)?;
            let secs = param(&params, "SyncInterval")
                .and_then(Value::as_u64)
                .filter(|s| *s <= 366 * 86_400)
                .ok_or_else(|| {
                    CimError::invalid_parameter(
                        "SyncInterval (seconds, at most 366 days) is required",
                    )
                })?;
            rep.backend
                .command(Command::SetPeriod {
                    group,
                    period_ms: secs * 1000,
                })
                .map_err(failed)?;
            done(OK, Vec::new())
        }
        "creategroup" => create_local_group(rep, &params),
        "deletegroup" => delete_local_group(rep, &params),
        "creategroupreplica" => create_group_replica(rep, &params),
        _ => Err(CimError::method_not_available(format!(
            "{m} is not available on {}",
            rep.array
        ))),
    }
}

/// GroupName, naming an existing group of this array.
fn group_name(rep: &Replication, p: &Params) -> Result<String, CimError> {
    let name = param(p, "GroupName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CimError::invalid_parameter("GroupName is required"))?;
    if rep.snapshot().group(name).is_none() {
        return Err(CimError::invalid_parameter(format!(
            "remote-copy group {name} does not exist on {}",
            rep.array
        )));
    }
    Ok(name.to_string())
}

/// CreateRemoteCopyGroup: an empty group replicating to TargetSystem.
fn create_group(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let group = param(p, "GroupName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CimError::invalid_parameter("GroupName is required"))?
        .to_string();
    not_local(rep, &group)?;
    let peer = param(p, "TargetSystem")
        .and_then(Value::as_str)
        .ok_or_else(|| CimError::invalid_parameter("TargetSystem is required"))?
        .to_string();
    if peer == rep.array || !rep.hosts.contains_key(&peer) {
        let known: Vec<&String> = rep.hosts.keys().filter(|a| **a != rep.array).collect();
        return Err(CimError::invalid_parameter(format!(
            "TargetSystem {peer} is not a peer of {}; peers: {known:?}",
            rep.array
        )));
    }
    let period_ms = match param(p, "SyncInterval").map(Value::as_u64) {
        None => None,
        Some(Some(s)) if s <= 366 * 86_400 => Some(s * 1000),
        Some(_) => {
            return Err(CimError::invalid_parameter(
                "SyncInterval is seconds, at most 366 days",
            ))
        }
    };
    let mode = mode_param(p, period_ms)?;
    rep.backend
        .command(Command::CreateGroup {
            group: group.clone(),
            peer,
            mode,
            policies: Policies::default(),
        })
        .map_err(failed)?;
    let path = group_path(&rep.array, &rep.host_of(&rep.array), &group);
    done(
        OK,
        vec![(Name::new("ReplicationGroup"), Value::reference(path))],
    )
}

/// An array's refusal: a bad name is the caller's parameter, anything else
/// a refusal in the array's words.
pub(super) fn failed(e: crate::core::CommandError) -> CimError {
    match e {
        crate::core::CommandError::BadName(n) => CimError::invalid_parameter(n.to_string()),
        e => CimError::failed(e.to_string()),
    }
}

/// The group and pair a Synchronization reference names.
fn resolve(
    rep: &Replication,
    snap: &Snapshot,
    sync: &ObjectPath,
) -> Result<(String, Option<String>), CimError> {
    // Only the groups and pairs its SystemElement can name are compared.
    let group_sync =
        sync.class.is("RCM_GroupSynchronized") || sync.class.is("CIM_GroupSynchronized");
    for (g, pair) in super::model::sync_candidates(snap, sync, group_sync) {
        match pair {
            None => {
                if same_keys(&rep.group_sync_path(g), sync) {
                    return Ok((g.name.clone(), None));
                }
            }
            Some(p) => {
                if same_keys(&rep.pair_sync_path(g, p), sync) {
                    return Ok((g.name.clone(), Some(p.local.clone())));
                }
            }
        }
    }
    Err(CimError::invalid_parameter(format!(
        "Synchronization {sync} is not a pair or group of {}",
        rep.array
    )))
}

/// Same SystemElement and SyncedElement (hosts and class spelling aside).
fn same_keys(a: &ObjectPath, b: &ObjectPath) -> bool {
    ["SystemElement", "SyncedElement"].iter().all(|k| {
        match (
            a.key(k).and_then(Value::as_ref_path),
            b.key(k).and_then(Value::as_ref_path),
        ) {
            (Some(x), Some(y)) => x.same_instance(y),
            _ => false,
        }
    })
}

/// ModifyReplicaSynchronization: the 3PAR operation table of interface.md.
fn modify(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let op =
        u16p(p, "Operation").ok_or_else(|| CimError::invalid_parameter("Operation is required"))?;
    let sync = param(p, "Synchronization")
        .and_then(Value::as_ref_path)
        .ok_or_else(|| {
            CimError::invalid_parameter(
                "Synchronization must reference a StorageSynchronized or GroupSynchronized",
            )
        })?
        .clone();
    let force = param(p, "Force").and_then(Value::as_bool).unwrap_or(false);
    let wait = u16p(p, "WaitForCopyState").map(|n| {
        CopyState::from_number(n).ok_or_else(|| {
            CimError::invalid_parameter(format!("WaitForCopyState {n} is not a CopyState"))
        })
    });
    let wait = wait.transpose()?;
    let snap = rep.snapshot();
    if let Some(r) = super::local::resolve(rep, &snap, &sync) {
        return super::local::modify(rep, r, op, force, wait);
    }
    let (group, pair) = resolve(rep, &snap, &sync)?;
    let g = snap.group(&group).expect("resolved");
    let name = group.clone();
    let Some(operation) = SyncOperation::from_number(op) else {
        if (2..=25).contains(&op) {
            return done(NOT_SUPPORTED, Vec::new());
        }
        return Err(CimError::invalid_parameter(format!(
            "Operation {op} is not a ModifyReplicaSynchronization operation"
        )));
    };
    use SyncOperation as O;
    let (cmd, goal) = match operation {
        // Local replicas only (handled above).
        O::RestoreFromReplica | O::ReturnToResourcePool => return done(NOT_SUPPORTED, Vec::new()),
        O::Activate | O::Resume => (
            Command::Start { group: name },
            Goal {
                role: None,
                copy: Some(CopyState::Synchronized),
                pair: None,
                replica: None,
                verify: None,
            },
        ),
        // Suspend of a group that is not replicating has nothing to do
        // (consoles tear down with Suspend then Detach).
        O::Suspend if !g.started => return done(OK, Vec::new()),
        O::Deactivate | O::Suspend => (
            Command::Stop { group: name },
            Goal {
                role: None,
                copy: None,
                pair: None,
                replica: None,
                verify: None,
            },
        ),
        O::Detach => {
            let vol = pair.clone().ok_or_else(|| {
                CimError::invalid_parameter(
                    "Detach takes a StorageSynchronized (one pair), not a group",
                )
            })?;
            (
                Command::Dismiss { group: name, vol },
                Goal {
                    role: None,
                    copy: None,
                    pair: None,
                    replica: None,
                    verify: None,
                },
            )
        }
        // On the Primary (a planned failover issued there) the goal is
        // this side's demotion; elsewhere the take-over.
        O::Failover => (
            Command::Failover { group: name },
            Goal {
                role: Some(if g.role == Role::Primary {
                    Role::SecondaryRev
                } else {
                    Role::PrimaryRev
                }),
                copy: None,
                pair: None,
                replica: None,
                verify: None,
            },
        ),
        O::Failback => (
            Command::Restore { group: name },
            Goal {
                role: Some(Role::Secondary),
                copy: None,
                pair: None,
                replica: None,
                verify: None,
            },
        ),
        O::ResyncReplica => {
            let cmd = if (g.role == Role::PrimaryRev && !g.recovered) || !g.role.is_source() {
                // recover (on a target-role side the core refuses it and
                // names the side to use); Force asks for the full resync
                // when there is no common base.
                Command::Recover {
                    group: name,
                    full: force,
                }
            } else if g.started && !g.mode.is_sync() {
                Command::Sync {
                    group: name,
                    label: None,
                }
            } else {
                Command::Start { group: name }
            };
            (
                cmd,
                Goal {
                    role: None,
                    copy: Some(CopyState::Synchronized),
                    pair: None,
                    replica: None,
                    verify: None,
                },
            )
        }
        O::ResetToSync => (
            Command::SetMode {
                group: name,
                mode: Mode::Sync,
            },
            Goal {
                role: None,
                copy: None,
                pair: None,
                replica: None,
                verify: None,
            },
        ),
        O::ResetToAsync => {
            // Async streaming, from sync or periodic (a period makes a
            // group periodic: SetRemoteCopyPeriod).
            let mode = Mode::Async;
            (
                Command::SetMode { group: name, mode },
                Goal {
                    role: None,
                    copy: None,
                    pair: None,
                    replica: None,
                    verify: None,
                },
            )
        }
        O::ReverseRoles => (
            Command::Reverse { group: name },
            Goal {
                role: Some(if g.role.is_source() {
                    Role::Secondary
                } else {
                    Role::Primary
                }),
                copy: None,
                pair: None,
                replica: None,
                verify: None,
            },
        ),
    };
    let goal = Goal {
        copy: wait.or(goal.copy),
        ..goal
    };
    if let Command::Dismiss { group, vol } = cmd {
        return detach(rep, g, group, vol);
    }
    rep.backend.command(cmd).map_err(failed)?;
    finish(
        rep,
        "ModifyReplicaSynchronization",
        &group,
        pair.as_deref(),
        goal,
        &sync,
        Vec::new(),
    )
}

/// Detach (8): the pair leaves its group at once, so there is no job and
/// no CopyState to wait for (the pair's association is gone). A started
/// group is stopped first (on its source side) and started again when
/// other pairs remain, which resyncs only what changed meanwhile.
fn detach(
    rep: &Replication,
    g: &crate::core::GroupRead,
    group: String,
    vol: String,
) -> Result<MethodResult, CimError> {
    let restart = g.started && g.role.is_source();
    if restart {
        rep.backend
            .command(Command::Stop {
                group: group.clone(),
            })
            .map_err(failed)?;
    }
    let dismissed = rep.backend.command(Command::Dismiss {
        group: group.clone(),
        vol,
    });
    let others = g.pairs.len() > 1;
    if restart && (others || dismissed.is_err()) {
        // Back as it was for the other pairs (or for all of them when the
        // dismiss was refused).
        rep.backend
            .command(Command::Start { group })
            .map_err(failed)?;
    }
    dismissed.map_err(failed)?;
    done(OK, Vec::new())
}

/// Returns 0 when the goal already holds, else 4096 with a job; adds
/// UpdatedSynchronization when the association's keys changed.
fn finish(
    rep: &Replication,
    method: &str,
    group: &str,
    pair: Option<&str>,
    goal: Goal,
    before: &ObjectPath,
    affected: Vec<ObjectPath>,
) -> Result<MethodResult, CimError> {
    let snap = rep.snapshot();
    let mut out = Vec::new();
    if let Some(g) = snap.group(group) {
        let now = match pair.and_then(|v| g.pairs.iter().find(|p| p.local == v)) {
            Some(p) => Some(rep.pair_sync_path(g, p)),
            None if pair.is_none() && before.class.as_str().contains("Group") => {
                Some(rep.group_sync_path(g))
            }
            None => None,
        };
        if let Some(now) = now {
            if !same_keys(&now, before) {
                out.push((Name::new("UpdatedSynchronization"), Value::reference(now)));
            }
        }
    }
    start_job(rep, method, group, goal, affected, out)
}

/// Starts a job on `group` (or a replica, per the goal) and judges it at
/// once: 0 with `out` when the goal already holds, 4096 with the Job added
/// while it runs, CIM_ERR_FAILED when it cannot be reached.
pub(super) fn start_job(
    rep: &Replication,
    method: &str,
    group: &str,
    goal: Goal,
    affected: Vec<ObjectPath>,
    mut out: Vec<(Name, Value)>,
) -> Result<MethodResult, CimError> {
    let snap = rep.snapshot();
    let job = {
        let mut jobs = rep.jobs.lock().expect("not poisoned");
        let id = jobs.start(method, group, goal, snap.now, affected);
        jobs.update(&snap);
        jobs.get(id).cloned()
    };
    match job.as_ref().map(|j| &j.state) {
        Some(super::jobs::JobState::Done) | None => done(OK, out),
        Some(super::jobs::JobState::Failed(why)) => Err(CimError::failed(why.clone())),
        Some(super::jobs::JobState::Running) => {
            let id = job.expect("running").id;
            out.push((
                Name::new("Job"),
                Value::reference(job_path(&rep.array, &rep.host_of(&rep.array), id)),
            ));
            done(JOB_STARTED, out)
        }
    }
}

/// The peer a new mirror goes to: the array `target_system` names (from
/// the target parameter `what`), the end of ConnectivityCollection, or the
/// only peer there is; they must agree.
fn pick_peer(
    rep: &Replication,
    p: &Params,
    target_system: Option<&str>,
    what: &str,
) -> Result<String, CimError> {
    let link_peer = param(p, "ConnectivityCollection")
        .and_then(Value::as_ref_path)
        .and_then(|c| {
            c.key("InstanceID")
                .and_then(Value::as_str)
                .and_then(|id| id.rsplit(':').next())
                .map(str::to_string)
        });
    let peer = match (target_system, &link_peer) {
        (Some(a), Some(b)) if a != b => {
            return Err(CimError::invalid_parameter(format!(
                "{what} is on {a} but ConnectivityCollection leads to {b}"
            )))
        }
        (Some(a), _) => a.to_string(),
        (None, Some(b)) => b.clone(),
        (None, None) => {
            let others: Vec<&String> = rep.hosts.keys().filter(|a| **a != rep.array).collect();
            match others.as_slice() {
                [one] => (*one).clone(),
                _ => {
                    return Err(CimError::invalid_parameter(format!(
                        "name the peer with {what} or ConnectivityCollection"
                    )))
                }
            }
        }
    };
    if peer == rep.array {
        return Err(CimError::invalid_parameter(
            "the target must be on another array: this provider makes remote mirrors only",
        ));
    }
    Ok(peer)
}

/// CreateElementReplica: a remote mirror of a local volume, in the group
/// named by ElementName (created if new; a started group is stopped, the
/// volume admitted, and the group started again).
fn create_element_replica(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    match u16p(p, "SyncType") {
        Some(6) => {}
        Some(7) => return super::local::create(rep, p, crate::core::ReplicaKind::Snapshot),
        Some(8) => return super::local::create(rep, p, crate::core::ReplicaKind::Clone),
        // TokenizedClone and vendor types are not built.
        _ => return done(NOT_SUPPORTED, Vec::new()),
    }
    let mode = mode_param(p, None)?;
    let snap = rep.snapshot();
    let src = param(p, "SourceElement")
        .and_then(Value::as_ref_path)
        .ok_or_else(|| CimError::invalid_parameter("SourceElement is required"))?;
    let vol = src
        .key("DeviceID")
        .and_then(Value::as_str)
        .filter(|v| {
            snap.volume(v).is_some()
                && src
                    .key("SystemName")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s == rep.array)
        })
        .ok_or_else(|| {
            CimError::invalid_parameter(format!(
                "SourceElement {src} is not a volume of {}",
                rep.array
            ))
        })?
        .to_string();
    let target = param(p, "TargetElement").and_then(Value::as_ref_path);
    let peer = pick_peer(
        rep,
        p,
        target.and_then(|t| t.key("SystemName").and_then(Value::as_str)),
        "TargetElement",
    )?;
    let remote = target
        .and_then(|t| t.key("DeviceID").and_then(Value::as_str))
        .unwrap_or(&vol)
        .to_string();
    let group = param(p, "ElementName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("rcg-{vol}"));
    not_local(rep, &group)?;
    match snap.group(&group) {
        None => {
            let policies = Policies::default();
            rep.backend
                .command(Command::CreateGroup {
                    group: group.clone(),
                    peer: peer.clone(),
                    mode,
                    policies,
                })
                .map_err(failed)?;
        }
        Some(g) if g.peer != peer => {
            return Err(CimError::invalid_parameter(format!(
                "group {group} replicates to {}, not {peer}",
                g.peer
            )))
        }
        Some(g) if g.started => rep
            .backend
            .command(Command::Stop {
                group: group.clone(),
            })
            .map_err(failed)?,
        Some(_) => {}
    }
    rep.backend
        .command(Command::Admit {
            group: group.clone(),
            vol: vol.clone(),
            remote_vol: remote.clone(),
        })
        .map_err(failed)?;
    let wait = u16p(p, "WaitForCopyState")
        .and_then(CopyState::from_number)
        .unwrap_or(CopyState::Synchronized);
    // WaitForCopyState Initialized: associate the elements, start no data
    // flow (the pair shows New until Activate).
    if wait != CopyState::Initialized {
        rep.backend
            .command(Command::Start {
                group: group.clone(),
            })
            .map_err(failed)?;
    }
    let remote_path = vol_path(&peer, &rep.host_of(&peer), &remote);
    let sync = {
        let snap = rep.snapshot();
        let g = snap.group(&group).expect("created");
        let pr = g.pairs.iter().find(|x| x.local == vol).expect("admitted");
        rep.pair_sync_path(g, pr)
    };
    let mut r = finish(
        rep,
        "CreateElementReplica",
        &group,
        Some(&vol),
        Goal {
            role: None,
            copy: Some(wait),
            pair: Some(vol.clone()),
            replica: None,
            verify: None,
        },
        &sync,
        vec![remote_path.clone()],
    )?;
    r.out
        .push((Name::new("Synchronization"), Value::reference(sync)));
    r.out
        .push((Name::new("TargetElement"), Value::reference(remote_path)));
    Ok(r)
}

/// Mode: 2 Synchronous (default) or 3 Asynchronous: periodic with a
/// period (`SyncInterval`, 0 = manual cycles), streaming without one.
fn mode_param(p: &Params, period_ms: Option<u64>) -> Result<Mode, CimError> {
    match u16p(p, "Mode") {
        None | Some(2) => Ok(Mode::Sync),
        Some(3) => Ok(match period_ms {
            Some(period_ms) => Mode::Periodic { period_ms },
            None => Mode::Async,
        }),
        Some(n) => Err(CimError::invalid_parameter(format!(
            "Mode {n} is not supported (2 Synchronous, 3 Asynchronous)"
        ))),
    }
}
