//! The array as the other parts of the process see it: NBD exports for
//! hosts and the provider's backend, both over the node's handle.

use super::NodeHandle;
use crate::core::{Command, CommandError, BLOCK_SIZE};
use crate::nbd::{Device, Errno};
use crate::provider::{Backend, Snapshot};

/// One volume of the array, as an NBD export. A volume is not advertised
/// read-only: whether a write is allowed depends on its role at the time
/// of the write (a secondary answers EPERM, and the same connection can
/// write after a failover; so does a clone until its copy completes). A
/// snapshot replica is advertised read-only: it never becomes writable.
pub struct ArrayDevice {
    pub node: NodeHandle,
    pub vol: String,
    pub blocks: u64,
    pub read_only: bool,
}

impl Device for ArrayDevice {
    fn size(&self) -> u64 {
        self.blocks * BLOCK_SIZE as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Errno> {
        let data = self.node.read(&self.vol, offset, out.len())?;
        out.copy_from_slice(&data);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.node.write(&self.vol, offset, data.to_vec())
    }
    /// Every acknowledged write is already durable (and, in sync mode,
    /// applied on the peer): a flush has nothing left to do.
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), Errno> {
        // Discarded ranges read back as zeroes, on both sides of a mirror.
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(1 << 20);
            self.node.write(&self.vol, at, vec![0u8; n as usize])?;
            at += n;
        }
        Ok(())
    }
}

/// The provider's view of a real array.
pub struct NodeBackend {
    pub node: NodeHandle,
}

impl Backend for NodeBackend {
    fn snapshot(&self) -> Snapshot {
        self.node
            .snapshot()
            .unwrap_or_else(|| Snapshot::empty(self.node.name()))
    }
    fn command(&self, cmd: Command) -> Result<(), CommandError> {
        self.node.command(cmd)
    }
    /// Ticks are already milliseconds since 1970.
    fn epoch_ms(&self) -> i64 {
        0
    }
    fn now(&self) -> crate::core::Tick {
        crate::core::Tick(chrono::Utc::now().timestamp_millis().max(0) as u64)
    }
}

/// The array's volumes as NBD exports, as they are at each connection.
pub struct VolumeCatalog {
    pub node: NodeHandle,
}

impl crate::nbd::Catalog for VolumeCatalog {
    fn names(&self) -> Vec<String> {
        self.node
            .snapshot()
            .map(|s| s.volumes.iter().map(|v| v.name.clone()).collect())
            .unwrap_or_default()
    }
    fn get(&self, name: &str) -> Option<std::sync::Arc<dyn Device>> {
        let snap = self.node.snapshot()?;
        let blocks = snap.volume(name)?;
        let read_only = snap
            .replica(name)
            .is_some_and(|r| r.kind == crate::core::ReplicaKind::Snapshot);
        Some(std::sync::Arc::new(ArrayDevice {
            node: self.node.clone(),
            vol: name.to_string(),
            blocks,
            read_only,
        }))
    }
}
