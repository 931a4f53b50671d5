//! The RCM_StorageVolume instances: this array's volumes (with their
//! durable NAA Name) and what any array knows of a volume (a peer's).

use super::model::{s, u16s, u16v};
use super::Snapshot;
use crate::cim::model::{CimType, Instance, Value};
use crate::core::Role;

/// An RCM_StorageVolume of this array, with its durable unique Name: an
/// NAA 3 (locally assigned) identifier, 28 bits of the array's name and
/// the volume's 32-bit serial (never given twice on one array).
pub(super) fn volume_instance(
    me: &str,
    snap: &Snapshot,
    vol: &crate::core::VolumeRead,
) -> Instance {
    let v = vol.name.as_str();
    let roles: Vec<Role> = snap.pairs_of_local(v).iter().map(|(g, _)| g.role).collect();
    let usage = if roles.iter().any(|r| r.is_source()) {
        7
    } else if !roles.is_empty() {
        9
    } else {
        2
    };
    volume_known(me, v, vol.blocks, usage)
        .with("Name", CimType::String, s(&naa(me, vol.id)))
        .with("NameFormat", CimType::Uint16, u16v(9))
        .with("OperationalStatus", CimType::Uint16, u16s(&[2]))
        .with("EnabledState", CimType::Uint16, u16v(2))
}

/// An NAA 3 name: 4 bits of type, 28 of the array name's FNV-1a hash, 32
/// of the serial, in 16 upper-case hex digits.
pub fn naa(array: &str, serial: u64) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in array.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    let v = (3u64 << 60) | (((h & 0x0fff_ffff) as u64) << 32) | (serial & 0xffff_ffff);
    format!("{v:016X}")
}

/// An RCM_StorageVolume of `system` with what any array knows of it: its
/// keys, names, size and use (a peer's volume has only these).
pub(super) fn volume_known(system: &str, v: &str, blocks: u64, usage: u16) -> Instance {
    Instance::new("RCM_StorageVolume")
        .with(
            "SystemCreationClassName",
            CimType::String,
            s("RCM_ComputerSystem"),
        )
        .with("SystemName", CimType::String, s(system))
        .with("CreationClassName", CimType::String, s("RCM_StorageVolume"))
        .with("DeviceID", CimType::String, s(v))
        .with("ElementName", CimType::String, s(v))
        .with("Name", CimType::String, s(v))
        .with("BlockSize", CimType::Uint64, Some(Value::Uint64(4096)))
        .with(
            "NumberOfBlocks",
            CimType::Uint64,
            Some(Value::Uint64(blocks)),
        )
        .with(
            "ConsumableBlocks",
            CimType::Uint64,
            Some(Value::Uint64(blocks)),
        )
        .with("Usage", CimType::Uint16, u16v(usage))
}
