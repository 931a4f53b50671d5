//! The peer's elements as this array knows them, for Associators that
//! reach across the array's edge (the far end of a pair, of a group, of a
//! link): described through the read model's keyed lookups only.

use super::group_props::role_number;
use super::model::{s, system_known, u16v};
use super::volumes::volume_known;
use super::{Replication, Snapshot};
use crate::cim::model::{CimType, Instance, ObjectPath, Value};

/// What this array knows of an element of one of its peers (for
/// Associators that reach across): the peer's system, a volume that
/// mirrors one of ours, or the peer's side of one of our groups. Only
/// what the local array knows is filled in; None for anything else.
pub fn foreign(
    rep: &Replication,
    snap: &Snapshot,
    class: &str,
    path: &ObjectPath,
) -> Option<Instance> {
    let key = |k: &str| path.key(k).and_then(Value::as_str);
    // Keyed lookups only: a walk from one object costs the same on an
    // array of any size.
    let peer_of_ours = |peer: &str| {
        peer != rep.array && (rep.hosts.contains_key(peer) || snap.links.contains_key(peer))
    };
    match class {
        "RCM_ComputerSystem" => {
            let peer = key("Name").filter(|p| peer_of_ours(p))?;
            Some(system_known(peer))
        }
        "RCM_StorageVolume" => {
            let (peer, vol) = (key("SystemName")?, key("DeviceID")?);
            if peer == rep.array {
                return None;
            }
            let (g, p) = snap.pairs_of_remote(peer, vol).into_iter().next()?;
            let blocks = snap.volume(&p.local)?;
            let usage = if g.role.is_source() { 9 } else { 7 };
            Some(volume_known(peer, vol, blocks, usage))
        }
        "RCM_ReplicationGroup" => {
            let (peer, name) = key("InstanceID")?.split_once(':')?;
            let g = snap.group(name).filter(|g| g.peer == peer)?;
            Some(
                Instance::new("RCM_ReplicationGroup")
                    .with("InstanceID", CimType::String, s(&format!("{peer}:{name}")))
                    .with("ElementName", CimType::String, s(name))
                    .with("TargetSystem", CimType::String, s(&rep.array))
                    .with(
                        "Role",
                        CimType::Uint16,
                        u16v(role_number(g.role.counterpart())),
                    )
                    .with("Persistent", CimType::Boolean, Some(Value::Boolean(true))),
            )
        }
        _ => None,
    }
}
