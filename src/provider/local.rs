//! Local replicas over CIM: CreateElementReplica with SyncType 7
//! (Snapshot) or 8 (Clone), their CIM_StorageSynchronized, and
//! ModifyReplicaSynchronization on them. The state comes from the core's
//! read model (`ArrayRead::replicas`); the states are 3PAR's alignment of
//! the two vocabularies (reference smis-replication.md section 3.1):
//!
//! | replica          | CopyState          | SyncState            | ProgressStatus    |
//! |------------------|--------------------|----------------------|-------------------|
//! | snapshot         | 4 Synchronized     | 11 Idle              | 2 Completed       |
//! | clone, copying   | 3 Unsynchronized   | 5 ResyncInProgress   | 6 Synchronizing   |
//! | clone, complete  | 4 Synchronized     | 14 Frozen            | 2 Completed       |
//!
//! A snapshot reports Synchronized because it is a complete point-in-time
//! copy the moment it exists (and libstoragemgmt waits for CopyState 4
//! when it makes one).

use super::jobs::Goal;
use super::methods::{done, failed, param, Params, NOT_SUPPORTED, OK};
use super::model::{s, sync_path, u16v, vol_path};
use super::{Replication, Snapshot};
use crate::cim::dispatch::MethodResult;
use crate::cim::model::{CimType, Instance, Name, ObjectPath, Value};
use crate::cim::CimError;
use crate::core::{Command, CopyState, ReplicaKind, ReplicaOp, ReplicaRead, SyncOperation};

/// The SyncType of a replica kind.
pub fn sync_type(k: ReplicaKind) -> u16 {
    match k {
        ReplicaKind::Snapshot => 7,
        ReplicaKind::Clone => 8,
    }
}

/// The CopyState a replica shows now.
pub fn copy_state(r: &ReplicaRead) -> CopyState {
    if r.copying {
        CopyState::Unsynchronized
    } else {
        CopyState::Synchronized
    }
}

pub fn sync_path_of(rep: &Replication, r: &ReplicaRead) -> ObjectPath {
    let me = rep.array.as_str();
    let host = rep.host_of(me);
    sync_path(
        vol_path(me, &host, &r.source),
        vol_path(me, &host, &r.name),
        "RCM_StorageSynchronized",
        &host,
    )
}

/// The RCM_StorageSynchronized of a local replica.
pub fn instance(rep: &Replication, r: &ReplicaRead) -> Instance {
    let me = rep.array.as_str();
    let host = rep.host_of(me);
    let (sync_state, progress) = match (r.kind, r.copying) {
        (ReplicaKind::Snapshot, _) => (11, 2),
        (ReplicaKind::Clone, true) => (5, 6),
        (ReplicaKind::Clone, false) => (14, 2),
    };
    let percent = (r.copied * 100).checked_div(r.blocks).unwrap_or(100) as u16;
    let when = Some(Value::Datetime(rep.datetime(r.taken)));
    Instance::new("RCM_StorageSynchronized")
        .with(
            "SystemElement",
            CimType::Reference(None),
            Some(Value::reference(vol_path(me, &host, &r.source))),
        )
        .with(
            "SyncedElement",
            CimType::Reference(None),
            Some(Value::reference(vol_path(me, &host, &r.name))),
        )
        .with("SyncType", CimType::Uint16, u16v(sync_type(r.kind)))
        .with("Mode", CimType::Uint16, u16v(2))
        // UnSyncAssoc (snapshot), UnSyncUnAssoc (clone), as 3PAR.
        .with(
            "CopyType",
            CimType::Uint16,
            u16v(match r.kind {
                ReplicaKind::Snapshot => 4,
                ReplicaKind::Clone => 5,
            }),
        )
        // Before Delta (the snapshot keeps the old blocks), Full Copy.
        .with(
            "ReplicaType",
            CimType::Uint16,
            u16v(match r.kind {
                ReplicaKind::Snapshot => 3,
                ReplicaKind::Clone => 2,
            }),
        )
        // Copy-On-Write, Full Copy.
        .with(
            "CopyMethodology",
            CimType::Uint16,
            u16v(match r.kind {
                ReplicaKind::Snapshot => 6,
                ReplicaKind::Clone => 3,
            }),
        )
        .with("CopyState", CimType::Uint16, u16v(copy_state(r).number()))
        .with("SyncState", CimType::Uint16, u16v(sync_state))
        .with("ProgressStatus", CimType::Uint16, u16v(progress))
        .with("RequestedCopyState", CimType::Uint16, u16v(15))
        .with(
            "PercentSynced",
            CimType::Uint16,
            Some(Value::Uint16(percent)),
        )
        .with(
            "SyncMaintained",
            CimType::Boolean,
            Some(Value::Boolean(false)),
        )
        // Hosts may not write the target while it is a snapshot or copying.
        .with(
            "ReadOnly",
            CimType::Uint16,
            match r.kind == ReplicaKind::Snapshot || r.copying {
                true => u16v(3),
                false => None,
            },
        )
        .with("WhenEstablished", CimType::Datetime, when.clone())
        .with(
            "WhenSynced",
            CimType::Datetime,
            if r.copying { None } else { when },
        )
        .with(
            "RoleReversed",
            CimType::Boolean,
            Some(Value::Boolean(false)),
        )
        .with("ElementName", CimType::String, s(&r.name))
        // A retained copy: the group whose backup keeps it, and the name
        // of an application-consistent point. Its WhenEstablished is the
        // primary's time of the point.
        .with(
            "RetainedBy",
            CimType::String,
            r.retained.as_ref().and_then(|x| s(&x.group)),
        )
        .with(
            "PointName",
            CimType::String,
            r.retained
                .as_ref()
                .and_then(|x| x.label.as_deref())
                .and_then(s),
        )
}

/// The replicas of `vol` and the one `vol` is, for walks from a volume.
pub fn of_volume<'a>(snap: &'a Snapshot, vol: &'a str) -> impl Iterator<Item = &'a ReplicaRead> {
    snap.replicas
        .iter()
        .filter(move |r| r.source == vol || r.name == vol)
}

/// The replica a Synchronization path names, if it names one of this
/// array's (its SyncedElement is the replica, its SystemElement the source).
pub fn resolve<'a>(
    rep: &Replication,
    snap: &'a Snapshot,
    sync: &ObjectPath,
) -> Option<&'a ReplicaRead> {
    let end = |k: &str| -> Option<(String, String)> {
        let p = sync.key(k)?.as_ref_path()?;
        Some((
            p.key("SystemName")?.as_str()?.to_string(),
            p.key("DeviceID")?.as_str()?.to_string(),
        ))
    };
    let (sa, source) = end("SystemElement")?;
    let (ta, target) = end("SyncedElement")?;
    if sa != rep.array || ta != rep.array {
        return None;
    }
    snap.replica(&target).filter(|r| r.source == source)
}

/// A volume of this array named by a reference parameter's keys.
fn own_volume(rep: &Replication, p: &ObjectPath) -> Option<String> {
    let system = p.key("SystemName").and_then(Value::as_str);
    if system.is_some_and(|s| s != rep.array) {
        return None;
    }
    p.key("DeviceID")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// CreateElementReplica of a snapshot or a clone of SourceElement, named
/// ElementName (or the first free `SOURCE-svN` / `SOURCE-cpN`), in
/// TargetPool (pool0, the only one) or into TargetElement (clones).
pub fn create(rep: &Replication, p: &Params, kind: ReplicaKind) -> Result<MethodResult, CimError> {
    match param(p, "Mode").and_then(Value::as_u64) {
        None | Some(2) => {}
        // Local replicas are made synchronously (the point is taken at once).
        Some(_) => return done(NOT_SUPPORTED, Vec::new()),
    }
    let snap = rep.snapshot();
    let src = param(p, "SourceElement")
        .and_then(Value::as_ref_path)
        .ok_or_else(|| CimError::invalid_parameter("SourceElement is required"))?;
    let source = own_volume(rep, src)
        .filter(|v| snap.volume(v).is_some())
        .ok_or_else(|| {
            CimError::invalid_parameter(format!(
                "SourceElement {src} is not a volume of {}",
                rep.array
            ))
        })?;
    if let Some(pool) = param(p, "TargetPool") {
        let id = pool
            .as_ref_path()
            .and_then(|x| x.key("InstanceID"))
            .and_then(Value::as_str);
        if id != Some(&format!("{}:pool:{}", rep.array, super::pools::POOL)) {
            return Err(CimError::invalid_parameter(format!(
                "TargetPool must be {}'s pool {}",
                rep.array,
                super::pools::POOL
            )));
        }
    }
    // 3 (a clone copying) holds once the command returns: no job.
    let wait = match param(p, "WaitForCopyState").and_then(Value::as_u64) {
        None | Some(4) => Some(CopyState::Synchronized),
        Some(3) if kind == ReplicaKind::Clone => None,
        Some(n) => {
            return Err(CimError::invalid_parameter(format!(
                "WaitForCopyState {n}: a local {} reaches {} only",
                if kind == ReplicaKind::Clone {
                    "clone"
                } else {
                    "snapshot"
                },
                if kind == ReplicaKind::Clone {
                    "3 (copying) and 4"
                } else {
                    "4"
                }
            )))
        }
    };
    let target = param(p, "TargetElement")
        .map(|t| {
            t.as_ref_path()
                .and_then(|t| own_volume(rep, t))
                .ok_or_else(|| {
                    CimError::invalid_parameter(format!(
                        "TargetElement must be a volume of {}",
                        rep.array
                    ))
                })
        })
        .transpose()?;
    let into = target.is_some();
    let name = match (target, param(p, "ElementName").and_then(Value::as_str)) {
        (Some(t), _) => t,
        (None, Some(n)) if !n.is_empty() => n.to_string(),
        (None, _) => {
            let tag = if kind == ReplicaKind::Clone {
                "cp"
            } else {
                "sv"
            };
            (0..)
                .map(|i| format!("{source}-{tag}{i}"))
                .find(|n| snap.volume(n).is_none())
                .expect("a free name")
        }
    };
    rep.backend
        .command(Command::CreateReplica {
            name: name.clone(),
            source,
            kind,
            into,
        })
        .map_err(failed)?;
    let me = rep.array.as_str();
    let target = vol_path(me, &rep.host_of(me), &name);
    let snap = rep.snapshot();
    let r = snap
        .replica(&name)
        .ok_or_else(|| CimError::failed(format!("replica {name} went away at once")))?;
    let sync = sync_path_of(rep, r);
    let mut out = finish(
        rep,
        "CreateElementReplica",
        &name,
        wait,
        vec![target.clone()],
    )?;
    out.out
        .push((Name::new("Synchronization"), Value::reference(sync)));
    out.out
        .push((Name::new("TargetElement"), Value::reference(target)));
    Ok(out)
}

/// A job that waits for replica `name` to reach `copy`, or 0 at once
/// (also when `copy` is None).
fn finish(
    rep: &Replication,
    method: &str,
    name: &str,
    copy: Option<CopyState>,
    affected: Vec<ObjectPath>,
) -> Result<MethodResult, CimError> {
    super::methods::start_job(
        rep,
        method,
        name,
        Goal {
            role: None,
            copy,
            pair: None,
            replica: Some(name.to_string()),
            verify: None,
        },
        affected,
        Vec::new(),
    )
}

/// ModifyReplicaSynchronization on a local replica.
pub fn modify(
    rep: &Replication,
    r: &ReplicaRead,
    op: u16,
    force: bool,
    wait: Option<CopyState>,
) -> Result<MethodResult, CimError> {
    let Some(supported) = SyncOperation::from_number(op).filter(|o| operations(r.kind).contains(o))
    else {
        if (2..=25).contains(&op) {
            return done(NOT_SUPPORTED, Vec::new());
        }
        return Err(CimError::invalid_parameter(format!(
            "Operation {op} is not a ModifyReplicaSynchronization operation"
        )));
    };
    let op = match supported {
        SyncOperation::RestoreFromReplica => ReplicaOp::Restore,
        SyncOperation::ResyncReplica => ReplicaOp::Resync,
        SyncOperation::Detach => ReplicaOp::Detach { force },
        _ => ReplicaOp::Return,
    };
    let gone = matches!(op, ReplicaOp::Detach { .. } | ReplicaOp::Return);
    if let Some(w) =
        wait.filter(|w| !gone && !matches!(w, CopyState::Synchronized | CopyState::NotApplicable))
    {
        return Err(CimError::invalid_parameter(format!(
            "WaitForCopyState {}: after this operation a local replica reaches 4 (Synchronized)",
            w.number()
        )));
    }
    rep.backend
        .command(Command::ModifyReplica {
            name: r.name.clone(),
            op,
        })
        .map_err(failed)?;
    if gone {
        // The association is gone: nothing to wait for.
        return done(OK, Vec::new());
    }
    finish(
        rep,
        "ModifyReplicaSynchronization",
        &r.name,
        Some(CopyState::Synchronized),
        Vec::new(),
    )
}

/// The operations a replica kind accepts (GetSupportedOperations for
/// ReplicationType 6 and 10 lists these).
pub fn operations(kind: ReplicaKind) -> &'static [SyncOperation] {
    use SyncOperation as O;
    match kind {
        ReplicaKind::Snapshot => &[
            O::ResyncReplica,
            O::RestoreFromReplica,
            O::ReturnToResourcePool,
        ],
        ReplicaKind::Clone => &[O::Detach, O::ResyncReplica, O::ReturnToResourcePool],
    }
}
