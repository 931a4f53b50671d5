//! The block-store boundary.
//!
//! The core decides *what* to read and write; a [`BlockStore`] does it. Two
//! implementations live outside the core: `store::MemStore` (simulation and
//! tests) and `store::FileStore` (sparse volume image files and snapshot save
//! files on disk).
//!
//! The store knows nothing about snapshots' meaning. It keeps two kinds of
//! objects: volumes (fixed-size arrays of blocks, unwritten blocks read as
//! zeros) and save areas (append-only lists of preserved blocks, addressed by
//! slot). Copy-on-write bookkeeping is the core's job (`core::volumes`).

use super::types::{Block, SnapId};

/// A failure of the underlying storage, with a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage error on {object}: {message}")]
pub struct StoreError {
    pub object: String,
    pub message: String,
}

impl StoreError {
    pub fn new(object: impl Into<String>, message: impl Into<String>) -> Self {
        StoreError {
            object: object.into(),
            message: message.into(),
        }
    }
}

/// Block storage for one array.
///
/// Contract (what implementations must guarantee):
/// * `create_volume` makes a volume of `blocks` zero blocks; it fails if the
///   name exists.
/// * `read_block` of a block never written returns zeros.
/// * `save_put` returns slots 0, 1, 2, ... in order for one save area.
/// * Nothing is durable until `flush` returns (file store); the memory store
///   is always "durable" for the life of the value.
pub trait BlockStore {
    fn create_volume(&mut self, vol: &str, blocks: u64) -> Result<(), StoreError>;
    fn delete_volume(&mut self, vol: &str) -> Result<(), StoreError>;
    fn read_block(&mut self, vol: &str, block: u64, out: &mut Block) -> Result<(), StoreError>;
    fn write_block(&mut self, vol: &str, block: u64, data: &Block) -> Result<(), StoreError>;
    /// A block of a sync run landing on a volume that has no snapshot. If
    /// the run does not complete, the pair is not synced and the whole run
    /// is sent again, so a store may skip its log for these blocks, as long
    /// as they are durable before any later change of the array's metadata
    /// other than counters (for example the generation the run completes).
    fn write_block_bulk(&mut self, vol: &str, block: u64, data: &Block) -> Result<(), StoreError> {
        self.write_block(vol, block, data)
    }
    /// Blocks that may hold non-zero data, in ascending order. A store may
    /// answer every block; the core uses it to skip holes in a full sync to a
    /// fresh (all-zero) target.
    fn allocated_blocks(&mut self, vol: &str) -> Result<Vec<u64>, StoreError>;

    fn save_create(&mut self, snap: SnapId) -> Result<(), StoreError>;
    fn save_put(&mut self, snap: SnapId, data: &Block) -> Result<u64, StoreError>;
    fn save_get(&mut self, snap: SnapId, slot: u64, out: &mut Block) -> Result<(), StoreError>;
    fn save_delete(&mut self, snap: SnapId) -> Result<(), StoreError>;

    fn flush(&mut self) -> Result<(), StoreError>;
}
