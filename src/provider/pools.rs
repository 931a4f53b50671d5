//! SMI-S Block Services: the array's capacity as a primordial pool, the
//! one concrete pool every volume is allocated from, and the storage
//! configuration service that makes and deletes volumes at run time
//! (CreateOrModifyElementFromStoragePool, ReturnToStoragePool). The
//! figures come from the core's read model (`capacity_blocks` and the
//! volume list), so they are what the core enforces.

use super::methods::{done, failed, param, Params, NOT_SUPPORTED, OK};
use super::model::{assoc, cs_path, path, s, service, u16s, u16v, vol_path};
use super::{Replication, Snapshot};
use crate::cim::dispatch::MethodResult;
use crate::cim::model::{CimType, Instance, Name, ObjectPath, Value};
use crate::cim::CimError;
use crate::core::{Command, ReplicaKind, BLOCK_SIZE};

/// The classes this module serves.
pub const CLASSES: &[&str] = &[
    "RCM_StoragePool",
    "CIM_HostedStoragePool",
    "CIM_AllocatedFromStoragePool",
    "RCM_StorageConfigurationService",
];

/// The pool that stands for the array's raw capacity.
pub const PRIMORDIAL: &str = "primordial";
/// The pool volumes are made in.
pub const POOL: &str = "pool0";

pub fn pool_path(array: &str, host: &str, id: &str) -> ObjectPath {
    path(
        host,
        "RCM_StoragePool",
        &[("InstanceID", &format!("{array}:pool:{id}"))],
    )
}

pub fn scs_path(array: &str, host: &str) -> ObjectPath {
    path(
        host,
        "RCM_StorageConfigurationService",
        &[
            ("SystemCreationClassName", "RCM_ComputerSystem"),
            ("SystemName", array),
            ("CreationClassName", "RCM_StorageConfigurationService"),
            ("Name", "storage-configuration"),
        ],
    )
}

fn bytes(blocks: u64) -> Option<Value> {
    Some(Value::Uint64(blocks * BLOCK_SIZE as u64))
}

fn pool(me: &str, id: &str, primordial: bool, total: u64, free: u64) -> Instance {
    Instance::new("RCM_StoragePool")
        .with("InstanceID", CimType::String, s(&format!("{me}:pool:{id}")))
        .with("PoolID", CimType::String, s(id))
        .with("ElementName", CimType::String, s(id))
        .with(
            "Primordial",
            CimType::Boolean,
            Some(Value::Boolean(primordial)),
        )
        .with("TotalManagedSpace", CimType::Uint64, bytes(total))
        .with("RemainingManagedSpace", CimType::Uint64, bytes(free))
        // Unrestricted: volumes of any use come from it.
        .with("Usage", CimType::Uint16, u16v(2))
        .with("OperationalStatus", CimType::Uint16, u16s(&[2]))
}

/// A volume's allocation from pool0 (`blocks` it consumes).
pub fn allocation(me: &str, host: &str, vol: &str, blocks: u64) -> Instance {
    assoc(
        "CIM_AllocatedFromStoragePool",
        ("Antecedent", pool_path(me, host, POOL)),
        ("Dependent", vol_path(me, host, vol)),
    )
    .with("SpaceConsumed", CimType::Uint64, bytes(blocks))
}

/// What the pool has given out, as the core counts it: volumes (clones
/// included) at their full size, snapshot replicas at the blocks they hold.
fn used_blocks(snap: &Snapshot) -> u64 {
    let volumes: u64 = snap
        .volumes
        .iter()
        .filter(|v| {
            snap.replica(&v.name)
                .is_none_or(|r| r.kind != ReplicaKind::Snapshot)
        })
        .map(|v| v.blocks)
        .sum();
    volumes + snap.replicas.iter().map(|r| r.saved).sum::<u64>()
}

/// The blocks a volume takes from the pool.
pub fn consumed(snap: &Snapshot, vol: &str, blocks: u64) -> u64 {
    match snap.replica(vol) {
        Some(r) if r.kind == ReplicaKind::Snapshot => r.saved,
        _ => blocks,
    }
}

/// Instances of a Block Services class; None for any other class.
pub fn instances(rep: &Replication, snap: &Snapshot, class: &str) -> Option<Vec<Instance>> {
    let me = rep.array.as_str();
    let host = rep.host_of(me);
    let total = snap.capacity_blocks;
    let used = used_blocks(snap);
    let pool0 = pool_path(me, &host, POOL);
    Some(match class {
        "RCM_StoragePool" => vec![
            // All the raw capacity went to pool0.
            pool(me, PRIMORDIAL, true, total, 0),
            pool(me, POOL, false, total, total.saturating_sub(used)),
        ],
        "CIM_HostedStoragePool" => [PRIMORDIAL, POOL]
            .iter()
            .map(|id| {
                assoc(
                    "CIM_HostedStoragePool",
                    ("GroupComponent", cs_path(me, &host)),
                    ("PartComponent", pool_path(me, &host, id)),
                )
            })
            .collect(),
        "CIM_AllocatedFromStoragePool" => {
            let from_primordial = assoc(
                "CIM_AllocatedFromStoragePool",
                ("Antecedent", pool_path(me, &host, PRIMORDIAL)),
                ("Dependent", pool0.clone()),
            )
            .with("SpaceConsumed", CimType::Uint64, bytes(total));
            std::iter::once(from_primordial)
                .chain(
                    snap.volumes
                        .iter()
                        .map(|v| allocation(me, &host, &v.name, consumed(snap, &v.name, v.blocks))),
                )
                .collect()
        }
        "RCM_StorageConfigurationService" => vec![service(
            me,
            "RCM_StorageConfigurationService",
            "storage-configuration",
            "storage configuration",
        )],
        _ => return None,
    })
}

/// The methods of RCM_StorageConfigurationService.
pub fn invoke(rep: &Replication, m: &str, p: &Params) -> Result<MethodResult, CimError> {
    match m.to_ascii_lowercase().as_str() {
        "createormodifyelementfromstoragepool" => create(rep, p),
        "returntostoragepool" => delete(rep, p),
        _ => Err(CimError::method_not_available(format!(
            "{m} is not available on the storage configuration service of {}",
            rep.array
        ))),
    }
}

/// A volume of this array named by a reference parameter.
fn own_volume(rep: &Replication, p: &Params, name: &str) -> Result<Option<String>, CimError> {
    let Some(v) = param(p, name) else {
        return Ok(None);
    };
    let path = v.as_ref_path().ok_or_else(|| {
        CimError::invalid_parameter(format!("{name} must reference a StorageVolume"))
    })?;
    let vol = path
        .key("DeviceID")
        .and_then(Value::as_str)
        .filter(|_| {
            path.key("SystemName")
                .and_then(Value::as_str)
                .is_none_or(|s| s == rep.array)
        })
        .ok_or_else(|| {
            CimError::invalid_parameter(format!("{name} {path} is not a volume of {}", rep.array))
        })?;
    Ok(Some(vol.to_string()))
}

/// CreateOrModifyElementFromStoragePool: a new volume of Size bytes
/// (rounded up to whole blocks) in pool0, named ElementName (or the first
/// free `volN`). Modifying an existing element (TheElement given) is not
/// supported: volumes do not change size.
fn create(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    if own_volume(rep, p, "TheElement")?.is_some() {
        return done(NOT_SUPPORTED, Vec::new());
    }
    match param(p, "ElementType").and_then(Value::as_u64) {
        None | Some(2) => {}
        Some(_) => return done(NOT_SUPPORTED, Vec::new()),
    }
    if let Some(pool) = param(p, "InPool") {
        let id = pool
            .as_ref_path()
            .and_then(|x| x.key("InstanceID"))
            .and_then(Value::as_str);
        if id != Some(&format!("{}:pool:{POOL}", rep.array)) {
            return Err(CimError::invalid_parameter(format!(
                "InPool must be {}'s pool {POOL} (the primordial pool holds no volumes)",
                rep.array
            )));
        }
    }
    let size = param(p, "Size")
        .and_then(Value::as_u64)
        .filter(|s| *s > 0)
        .ok_or_else(|| CimError::invalid_parameter("Size (bytes, more than 0) is required"))?;
    let blocks = size.div_ceil(BLOCK_SIZE as u64);
    let snap = rep.snapshot();
    let vol = match param(p, "ElementName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => (0..)
            .map(|i| format!("vol{i}"))
            .find(|n| snap.volume(n).is_none())
            .expect("a free name"),
    };
    rep.backend
        .command(Command::CreateVolume {
            vol: vol.clone(),
            blocks,
        })
        .map_err(failed)?;
    let me = rep.array.as_str();
    done(
        OK,
        vec![
            (
                Name::new("TheElement"),
                Value::reference(vol_path(me, &rep.host_of(me), &vol)),
            ),
            (Name::new("Size"), Value::Uint64(blocks * BLOCK_SIZE as u64)),
        ],
    )
}

/// ReturnToStoragePool: deletes a volume no group holds.
fn delete(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let vol = own_volume(rep, p, "TheElement")?
        .ok_or_else(|| CimError::invalid_parameter("TheElement is required"))?;
    if rep.snapshot().volume(&vol).is_none() {
        return Err(CimError::not_found(format!(
            "volume {vol} does not exist on {}",
            rep.array
        )));
    }
    rep.backend
        .command(Command::DeleteVolume { vol })
        .map_err(failed)?;
    done(OK, Vec::new())
}
