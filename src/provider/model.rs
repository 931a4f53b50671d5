//! The instances a console walks, derived from a [`Snapshot`].
//!
//! Orientation follows 3PAR: SystemElement is the volume (or group) on the
//! side that is currently the source, SyncedElement the one on the target
//! side, so both arrays report the same association keys and each its own
//! view; a role reversal swaps them (UpdatedSynchronization tells clients).

pub use super::group_props::group_view;
use super::group_props::{
    lag_props, mode_numbers, period_s, policy_value, role_number, status_number, sync_props,
    verify_props,
};
use super::volumes::volume_instance;
use super::{Replication, Snapshot, NS};
use crate::cim::model::{CimType, DateTime, Instance, Name, ObjectPath, Value};
use crate::core::{GroupRead, PairRead, SyncStatus, Tick};

/// Every class the provider serves, exactly.
pub const CLASSES: &[&str] = &[
    "RCM_ComputerSystem",
    "RCM_StorageVolume",
    "CIM_SystemDevice",
    "RCM_ReplicationService",
    "CIM_HostedService",
    "RCM_ReplicationServiceCapabilities",
    "CIM_ElementCapabilities",
    "RCM_ReplicationGroup",
    "CIM_HostedCollection",
    "CIM_OrderedMemberOfCollection",
    "RCM_RemoteReplicationCollection",
    "CIM_ServiceAffectsElement",
    "RCM_StorageSynchronized",
    "RCM_GroupSynchronized",
    "RCM_ConcreteJob",
    "CIM_OwningJobElement",
    "CIM_AffectedJobElement",
];

fn local_groups(rep: &Replication) -> std::collections::BTreeMap<String, Vec<String>> {
    rep.local_groups.lock().expect("not poisoned").clone()
}

pub(super) fn s(v: &str) -> Option<Value> {
    Some(Value::String(v.to_string()))
}
pub(super) fn u16v(v: u16) -> Option<Value> {
    Some(Value::Uint16(v))
}
pub(super) fn u16s(v: &[u16]) -> Option<Value> {
    Some(Value::Array(
        v.iter().map(|x| Some(Value::Uint16(*x))).collect(),
    ))
}
fn r(p: ObjectPath) -> Option<Value> {
    Some(Value::reference(p))
}

pub(super) fn path(host: &str, class: &str, keys: &[(&str, &str)]) -> ObjectPath {
    ObjectPath {
        host: Some(host.to_string()),
        namespace: Some(NS.to_string()),
        class: Name::new(class),
        keys: keys
            .iter()
            .map(|(k, v)| (Name::new(k), Value::String(v.to_string())))
            .collect(),
    }
}

pub fn cs_path(array: &str, host: &str) -> ObjectPath {
    path(
        host,
        "RCM_ComputerSystem",
        &[("CreationClassName", "RCM_ComputerSystem"), ("Name", array)],
    )
}

pub fn vol_path(array: &str, host: &str, vol: &str) -> ObjectPath {
    path(
        host,
        "RCM_StorageVolume",
        &[
            ("SystemCreationClassName", "RCM_ComputerSystem"),
            ("SystemName", array),
            ("CreationClassName", "RCM_StorageVolume"),
            ("DeviceID", vol),
        ],
    )
}

pub fn rs_path(array: &str, host: &str) -> ObjectPath {
    path(
        host,
        "RCM_ReplicationService",
        &[
            ("SystemCreationClassName", "RCM_ComputerSystem"),
            ("SystemName", array),
            ("CreationClassName", "RCM_ReplicationService"),
            ("Name", "replication"),
        ],
    )
}

pub fn caps_path(array: &str, host: &str) -> ObjectPath {
    path(
        host,
        "RCM_ReplicationServiceCapabilities",
        &[("InstanceID", &format!("{array}:replication:capabilities"))],
    )
}

pub fn group_path(array: &str, host: &str, group: &str) -> ObjectPath {
    path(
        host,
        "RCM_ReplicationGroup",
        &[("InstanceID", &format!("{array}:{group}"))],
    )
}

pub fn link_path(array: &str, host: &str, peer: &str) -> ObjectPath {
    path(
        host,
        "RCM_RemoteReplicationCollection",
        &[("InstanceID", &format!("{array}:link:{peer}"))],
    )
}

pub fn job_path(array: &str, host: &str, id: u64) -> ObjectPath {
    path(
        host,
        "RCM_ConcreteJob",
        &[("InstanceID", &format!("{array}:job:{id}"))],
    )
}

pub(super) fn assoc(class: &str, a: (&str, ObjectPath), b: (&str, ObjectPath)) -> Instance {
    Instance::new(class)
        .with(a.0, CimType::Reference(None), r(a.1))
        .with(b.0, CimType::Reference(None), r(b.1))
}

pub fn sync_path(source: ObjectPath, target: ObjectPath, class: &str, host: &str) -> ObjectPath {
    ObjectPath {
        host: Some(host.to_string()),
        namespace: Some(NS.to_string()),
        class: Name::new(class),
        keys: vec![
            (Name::new("SystemElement"), Value::reference(source)),
            (Name::new("SyncedElement"), Value::reference(target)),
        ],
    }
}

impl Replication {
    /// (source path, target path) of a pair as this array reports it.
    pub fn pair_ends(&self, g: &GroupRead, p: &PairRead) -> (ObjectPath, ObjectPath) {
        let local = vol_path(&self.array, &self.host_of(&self.array), &p.local);
        let remote = vol_path(&g.peer, &self.host_of(&g.peer), &p.remote);
        if g.role.is_source() {
            (local, remote)
        } else {
            (remote, local)
        }
    }

    /// (source path, target path) of a group's GroupSynchronized.
    pub fn group_ends(&self, g: &GroupRead) -> (ObjectPath, ObjectPath) {
        let local = group_path(&self.array, &self.host_of(&self.array), &g.name);
        let remote = group_path(&g.peer, &self.host_of(&g.peer), &g.name);
        if g.role.is_source() {
            (local, remote)
        } else {
            (remote, local)
        }
    }

    pub fn pair_sync_path(&self, g: &GroupRead, p: &PairRead) -> ObjectPath {
        let (a, b) = self.pair_ends(g, p);
        sync_path(a, b, "RCM_StorageSynchronized", &self.host_of(&self.array))
    }

    pub fn group_sync_path(&self, g: &GroupRead) -> ObjectPath {
        let (a, b) = self.group_ends(g);
        sync_path(a, b, "RCM_GroupSynchronized", &self.host_of(&self.array))
    }

    pub fn datetime(&self, t: Tick) -> DateTime {
        let ms = self.backend.epoch_ms() + t.0 as i64;
        let dt = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
        DateTime::timestamp(&dt)
    }
}

/// An RCM_ComputerSystem with what any array knows of it (a peer's has
/// only this).
pub(super) fn system_known(name: &str) -> Instance {
    Instance::new("RCM_ComputerSystem")
        .with(
            "CreationClassName",
            CimType::String,
            s("RCM_ComputerSystem"),
        )
        .with("Name", CimType::String, s(name))
        .with("ElementName", CimType::String, s(name))
        .with("NameFormat", CimType::String, s("Other"))
        .with("Dedicated", CimType::Uint16, u16s(&[3, 15]))
}

/// A service of this array, started and OK: `class` keyed by `name`.
pub(super) fn service(me: &str, class: &str, name: &str, element: &str) -> Instance {
    Instance::new(class)
        .with(
            "SystemCreationClassName",
            CimType::String,
            s("RCM_ComputerSystem"),
        )
        .with("SystemName", CimType::String, s(me))
        .with("CreationClassName", CimType::String, s(class))
        .with("Name", CimType::String, s(name))
        .with("ElementName", CimType::String, s(element))
        .with("Started", CimType::Boolean, Some(Value::Boolean(true)))
        .with("EnabledState", CimType::Uint16, u16v(2))
        .with("OperationalStatus", CimType::Uint16, u16s(&[2]))
}

fn system_device(me: &str, host: &str, v: &str) -> Instance {
    assoc(
        "CIM_SystemDevice",
        ("GroupComponent", cs_path(me, host)),
        ("PartComponent", vol_path(me, host, v)),
    )
}

fn replication_group(rep: &Replication, me: &str, g: &GroupRead) -> Instance {
    let mut inst = Instance::new("RCM_ReplicationGroup")
        .with(
            "InstanceID",
            CimType::String,
            s(&format!("{me}:{}", g.name)),
        )
        .with("ElementName", CimType::String, s(&g.name))
        .with("TargetSystem", CimType::String, s(&g.peer))
        .with("Role", CimType::Uint16, u16v(role_number(g.role)))
        .with("Started", CimType::Boolean, Some(Value::Boolean(g.started)))
        .with("Mode", CimType::Uint16, u16v(mode_numbers(g.mode).0))
        .with(
            "SyncInterval",
            CimType::Uint32,
            Some(Value::Uint32(period_s(g.mode))),
        )
        .with("SyncPolicy", CimType::String, policy_value(g))
        .with("Persistent", CimType::Boolean, Some(Value::Boolean(true)))
        .with(
            "DeleteOnEmptyElement",
            CimType::Boolean,
            Some(Value::Boolean(false)),
        )
        .with(
            "DeleteOnUnassociated",
            CimType::Boolean,
            Some(Value::Boolean(false)),
        );
    lag_props(rep, &mut inst, g);
    verify_props(&mut inst, g);
    inst
}

/// A group made by CreateGroup, not replicating yet; held by the provider
/// only, hence not Persistent.
fn local_group(me: &str, name: &str) -> Instance {
    Instance::new("RCM_ReplicationGroup")
        .with("InstanceID", CimType::String, s(&format!("{me}:{name}")))
        .with("ElementName", CimType::String, s(name))
        .with("Started", CimType::Boolean, Some(Value::Boolean(false)))
        .with("Persistent", CimType::Boolean, Some(Value::Boolean(false)))
}

fn hosted_collection(me: &str, host: &str, dependent: ObjectPath) -> Instance {
    assoc(
        "CIM_HostedCollection",
        ("Antecedent", cs_path(me, host)),
        ("Dependent", dependent),
    )
}

fn member(me: &str, host: &str, group: &str, i: usize, vol: &str) -> Instance {
    assoc(
        "CIM_OrderedMemberOfCollection",
        ("Collection", group_path(me, host, group)),
        ("Member", vol_path(me, host, vol)),
    )
    .with(
        "AssignedSequence",
        CimType::Uint64,
        Some(Value::Uint64(i as u64 + 1)),
    )
}

fn pair_instance(rep: &Replication, g: &GroupRead, p: &PairRead) -> Instance {
    let v = &p.view;
    let (a, b) = rep.pair_ends(g, p);
    let mut inst = Instance::new("RCM_StorageSynchronized")
        .with("SystemElement", CimType::Reference(None), r(a))
        .with("SyncedElement", CimType::Reference(None), r(b))
        .with("ReplicaType", CimType::Uint16, u16v(2))
        .with("SyncState", CimType::Uint16, u16v(v.sync_state.number()))
        .with("ReadOnly", CimType::Uint16, u16v(3))
        .with("SyncStatus", CimType::Uint16, u16v(status_number(v.status)))
        .with("GroupName", CimType::String, s(&g.name));
    sync_props(rep, &mut inst, g, v, Some(p.established));
    inst
}

fn group_sync_instance(rep: &Replication, g: &GroupRead) -> Option<Instance> {
    let v = group_view(g)?;
    let (a, b) = rep.group_ends(g);
    let mut inst = Instance::new("RCM_GroupSynchronized")
        .with("SystemElement", CimType::Reference(None), r(a))
        .with("SyncedElement", CimType::Reference(None), r(b))
        .with("RelationshipName", CimType::String, s(&g.name))
        .with(
            "ConsistencyEnabled",
            CimType::Boolean,
            Some(Value::Boolean(true)),
        )
        .with("ConsistencyType", CimType::Uint16, u16v(2))
        .with(
            "ConsistencyState",
            CimType::Uint16,
            u16v(if v.status == SyncStatus::Syncing {
                4
            } else {
                3
            }),
        );
    sync_props(
        rep,
        &mut inst,
        g,
        &v,
        g.pairs.iter().map(|p| p.established).min(),
    );
    Some(inst)
}

/// Instances of exactly `class` on this array.
pub fn instances(rep: &Replication, snap: &Snapshot, class: &str) -> Vec<Instance> {
    let me = rep.array.as_str();
    let host = rep.host_of(me);
    let cs = cs_path(me, &host);
    let rs = rs_path(me, &host);
    match class {
        "RCM_ComputerSystem" => vec![system_known(me)
            .with("OperationalStatus", CimType::Uint16, u16s(&[2]))
            .with("EnabledState", CimType::Uint16, u16v(2))],
        "RCM_StorageVolume" => snap
            .volumes
            .iter()
            .map(|v| volume_instance(me, snap, v))
            .collect(),
        "CIM_SystemDevice" => snap
            .volumes
            .iter()
            .map(|v| system_device(me, &host, &v.name))
            .collect(),
        "RCM_ReplicationService" => vec![service(
            me,
            "RCM_ReplicationService",
            "replication",
            &format!("{me} replication service"),
        )
        .with(
            "WriteBytesSent",
            CimType::Uint64,
            Some(Value::Uint64(snap.counters.write_bytes_sent)),
        )
        .with(
            "SyncBytesSent",
            CimType::Uint64,
            Some(Value::Uint64(snap.counters.sync_bytes_sent)),
        )
        .with(
            "BytesApplied",
            CimType::Uint64,
            Some(Value::Uint64(snap.counters.bytes_applied)),
        )],
        "CIM_HostedService" => vec![
            assoc(
                "CIM_HostedService",
                ("Antecedent", cs.clone()),
                ("Dependent", rs),
            ),
            assoc(
                "CIM_HostedService",
                ("Antecedent", cs),
                ("Dependent", super::pools::scs_path(me, &host)),
            ),
        ],
        "RCM_ReplicationServiceCapabilities" => {
            vec![Instance::new("RCM_ReplicationServiceCapabilities")
                .with(
                    "InstanceID",
                    CimType::String,
                    s(&format!("{me}:replication:capabilities")),
                )
                .with(
                    "ElementName",
                    CimType::String,
                    s(&format!("{me} replication capabilities")),
                )
                .with(
                    "SupportedReplicationTypes",
                    CimType::Uint16,
                    u16s(super::methods::REPLICATION_TYPES),
                )
                .with("SupportedStorageObjects", CimType::Uint16, u16s(&[2]))
                // CreateElementReplica and ModifyReplicaSynchronization may or may
                // not start a job; the Get* methods never do.
                .with(
                    "SupportedAsynchronousActions",
                    CimType::Uint16,
                    u16s(&[2, 5]),
                )
                .with(
                    "SupportedSynchronousActions",
                    CimType::Uint16,
                    u16s(&[2, 5, 9, 10]),
                )]
        }
        "CIM_ElementCapabilities" => vec![assoc(
            "CIM_ElementCapabilities",
            ("ManagedElement", rs),
            ("Capabilities", caps_path(me, &host)),
        )],
        "RCM_ReplicationGroup" => snap
            .groups
            .iter()
            .map(|g| replication_group(rep, me, g))
            .chain(
                local_groups(rep)
                    .into_keys()
                    .map(|name| local_group(me, &name)),
            )
            .collect(),
        "CIM_HostedCollection" => snap
            .groups
            .iter()
            .map(|g| group_path(me, &host, &g.name))
            .chain(
                local_groups(rep)
                    .into_keys()
                    .map(|name| group_path(me, &host, &name)),
            )
            .chain(snap.links.keys().map(|peer| link_path(me, &host, peer)))
            .map(|d| hosted_collection(me, &host, d))
            .collect(),
        // The service replicates over its links: consoles find them with
        // Associators(service, ResultClass=CIM_ConnectivityCollection).
        "CIM_ServiceAffectsElement" => snap
            .links
            .keys()
            .map(|peer| {
                assoc(
                    "CIM_ServiceAffectsElement",
                    ("AffectedElement", link_path(me, &host, peer)),
                    ("AffectingElement", rs.clone()),
                )
                .with("ElementEffects", CimType::Uint16, u16s(&[7]))
            })
            .collect(),
        "CIM_OrderedMemberOfCollection" => snap
            .groups
            .iter()
            .map(|g| {
                (
                    g.name.clone(),
                    g.pairs.iter().map(|p| p.local.clone()).collect(),
                )
            })
            .chain(local_groups(rep))
            .flat_map(|(name, members): (String, Vec<String>)| {
                let host = host.clone();
                members
                    .into_iter()
                    .enumerate()
                    .map(move |(i, vol)| member(me, &host, &name, i, &vol))
            })
            .collect(),
        "RCM_RemoteReplicationCollection" => snap
            .links
            .iter()
            .map(|(peer, up)| {
                Instance::new("RCM_RemoteReplicationCollection")
                    .with(
                        "InstanceID",
                        CimType::String,
                        s(&format!("{me}:link:{peer}")),
                    )
                    .with("ElementName", CimType::String, s(peer))
                    .with(
                        "ConnectivityStatus",
                        CimType::Uint16,
                        u16v(if *up { 2 } else { 3 }),
                    )
            })
            .collect(),
        "RCM_StorageSynchronized" => snap
            .groups
            .iter()
            .flat_map(|g| g.pairs.iter().map(move |p| pair_instance(rep, g, p)))
            .chain(snap.replicas.iter().map(|r| super::local::instance(rep, r)))
            .collect(),
        "RCM_GroupSynchronized" => snap
            .groups
            .iter()
            .filter_map(|g| group_sync_instance(rep, g))
            .collect(),
        _ => Vec::new(),
    }
}

/// (array, volume) named by a volume path's keys.
fn volume_keys(p: &ObjectPath) -> Option<(&str, &str)> {
    Some((p.key("SystemName")?.as_str()?, p.key("DeviceID")?.as_str()?))
}

/// (array, group) named by a replication group path's InstanceID.
fn group_keys(p: &ObjectPath) -> Option<(&str, &str)> {
    p.key("InstanceID")?.as_str()?.split_once(':')
}

/// The element a reference property of `path` points at.
fn reference_key<'a>(path: &'a ObjectPath, prop: &str) -> Option<&'a ObjectPath> {
    match path.key(prop)? {
        Value::Reference(r) => Some(r),
        _ => None,
    }
}

/// The groups (`group_sync`) or pairs that a synchronization path can
/// name, found from its SystemElement: the candidates to compare it with.
pub fn sync_candidates<'a>(
    snap: &'a Snapshot,
    sync: &ObjectPath,
    group_sync: bool,
) -> Vec<(&'a GroupRead, Option<&'a PairRead>)> {
    let Some(system) = reference_key(sync, "SystemElement") else {
        return Vec::new();
    };
    if group_sync {
        group_keys(system)
            .and_then(|(_, name)| snap.group(name))
            .map(|g| (g, None))
            .into_iter()
            .collect()
    } else {
        volume_keys(system)
            .map(|(a, v)| {
                snap.pairs_of_volume(a, v)
                    .into_iter()
                    .map(|(g, p)| (g, Some(p)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The instances of `class` that may be the one at `path`, found by its
/// keys; None when the class is not looked up by key (a few instances:
/// the caller enumerates). A superset is fine: the caller compares paths.
pub fn candidates(
    rep: &Replication,
    snap: &Snapshot,
    class: &str,
    path: &ObjectPath,
) -> Option<Vec<Instance>> {
    let me = rep.array.as_str();
    Some(match class {
        "RCM_StorageVolume" => volume_keys(path)
            .filter(|(a, _)| *a == me)
            .and_then(|(_, v)| Some(volume_instance(me, snap, snap.volume_read(v)?)))
            .into_iter()
            .collect(),
        "RCM_StorageSynchronized" => reference_key(path, "SystemElement")
            .and_then(volume_keys)
            .map(|(a, v)| {
                let local = snap
                    .replicas
                    .iter()
                    .filter(|r| a == me && r.source == v)
                    .map(|r| super::local::instance(rep, r));
                snap.pairs_of_volume(a, v)
                    .into_iter()
                    .map(|(g, p)| pair_instance(rep, g, p))
                    .chain(local)
                    .collect()
            })
            .unwrap_or_default(),
        "RCM_GroupSynchronized" => reference_key(path, "SystemElement")
            .and_then(group_keys)
            .and_then(|(_, name)| group_sync_instance(rep, snap.group(name)?))
            .into_iter()
            .collect(),
        "RCM_ReplicationGroup" => match group_keys(path) {
            Some((a, name)) if a == me => match snap.group(name) {
                Some(g) => vec![replication_group(rep, me, g)],
                None if local_groups(rep).contains_key(name) => vec![local_group(me, name)],
                None => Vec::new(),
            },
            _ => Vec::new(),
        },
        _ => return None,
    })
}

/// The instances of association `class` that may refer to `object`,
/// found by the object's keys; None when the walk is not indexed (from
/// the array itself, say: then every instance refers to it anyway).
pub fn referring(
    rep: &Replication,
    snap: &Snapshot,
    class: &str,
    object: &ObjectPath,
) -> Option<Vec<Instance>> {
    let me = rep.array.as_str();
    let host = rep.host_of(me);
    let vol = volume_keys(object);
    let group = group_keys(object).filter(|_| object.class.is("RCM_ReplicationGroup"));
    Some(match class {
        "RCM_StorageSynchronized" => {
            let (a, v) = vol?;
            let local = super::local::of_volume(snap, v)
                .filter(|_| a == me)
                .map(|r| super::local::instance(rep, r));
            snap.pairs_of_volume(a, v)
                .into_iter()
                .map(|(g, p)| pair_instance(rep, g, p))
                .chain(local)
                .collect()
        }
        "RCM_GroupSynchronized" => {
            let (_, name) = group?;
            snap.group(name)
                .and_then(|g| group_sync_instance(rep, g))
                .into_iter()
                .collect()
        }
        "CIM_SystemDevice" => {
            let (a, v) = vol?;
            if a == me && snap.volume(v).is_some() {
                vec![system_device(me, &host, v)]
            } else {
                Vec::new()
            }
        }
        "CIM_OrderedMemberOfCollection" => {
            if let Some((a, v)) = vol {
                if a != me {
                    return Some(Vec::new());
                }
                let mut out: Vec<Instance> = snap
                    .pairs_of_local(v)
                    .into_iter()
                    .filter_map(|(g, _)| {
                        let i = g.pairs.iter().position(|p| p.local == v)?;
                        Some(member(me, &host, &g.name, i, v))
                    })
                    .collect();
                for (name, members) in local_groups(rep) {
                    if let Some(i) = members.iter().position(|m| m == v) {
                        out.push(member(me, &host, &name, i, v));
                    }
                }
                out
            } else {
                let (_, name) = group?;
                let members: Vec<String> = match snap.group(name) {
                    Some(g) => g.pairs.iter().map(|p| p.local.clone()).collect(),
                    None => local_groups(rep).remove(name).unwrap_or_default(),
                };
                members
                    .iter()
                    .enumerate()
                    .map(|(i, v)| member(me, &host, name, i, v))
                    .collect()
            }
        }
        "CIM_AllocatedFromStoragePool" => {
            // From one volume: its one allocation (a walk from a pool
            // lists the pool's volumes, which the class enumeration does).
            let (a, v) = vol?;
            let Some(blocks) = snap.volume(v).filter(|_| a == me) else {
                return Some(Vec::new());
            };
            vec![super::pools::allocation(
                me,
                &host,
                v,
                super::pools::consumed(snap, v, blocks),
            )]
        }
        _ => return None,
    })
}
