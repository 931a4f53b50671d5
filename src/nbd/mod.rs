//! The NBD export: hosts read and write volumes over the network block
//! device protocol (fixed newstyle handshake; OPT_GO, OPT_INFO, OPT_LIST,
//! OPT_ABORT, OPT_EXPORT_NAME; READ, WRITE, FLUSH, TRIM, DISC with simple
//! replies).
//!
//! [`Device`] is what an export serves and [`Catalog`] where the server
//! finds exports. [`StoreDevice`] serves one volume of a [`BlockStore`]
//! directly; an array's own device (`node::ArrayDevice`) routes writes
//! through the replication core and refuses them on secondary volumes.

pub mod server;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::core::{BlockStore, BLOCK_SIZE};

/// NBD error numbers (the protocol's errno values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// EPERM: the export is read-only (for example a secondary volume).
    Perm = 1,
    /// EIO: the store failed.
    Io = 5,
    /// EINVAL: a request outside the export or malformed.
    Inval = 22,
    /// ENOSPC: a write past the end.
    NoSpc = 28,
}

/// A block device an export serves. Offsets and lengths are in bytes and
/// already checked against `size`.
pub trait Device: Send + Sync {
    fn size(&self) -> u64;
    fn read_only(&self) -> bool;
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Errno>;
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Errno>;
    fn flush(&self) -> Result<(), Errno>;
    /// Discards a range: it reads back as zeroes afterwards.
    fn trim(&self, offset: u64, len: u64) -> Result<(), Errno>;
}

/// Calls `f(block, offset in block, range in the caller's buffer)` for
/// every block a byte range touches.
pub fn each_block<E>(
    offset: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, std::ops::Range<usize>) -> Result<(), E>,
) -> Result<(), E> {
    let bs = BLOCK_SIZE as u64;
    let mut done = 0usize;
    while done < len {
        let pos = offset + done as u64;
        let (block, within) = (pos / bs, (pos % bs) as usize);
        let n = (BLOCK_SIZE - within).min(len - done);
        f(block, within, done..done + n)?;
        done += n;
    }
    Ok(())
}

/// The exports by name.
pub type Exports = BTreeMap<String, Arc<dyn Device>>;

/// Where the server finds exports; an array's volumes come and go.
pub trait Catalog: Send + Sync {
    fn names(&self) -> Vec<String>;
    fn get(&self, name: &str) -> Option<Arc<dyn Device>>;
}

impl Catalog for Exports {
    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
    fn get(&self, name: &str) -> Option<Arc<dyn Device>> {
        BTreeMap::get(self, name).cloned()
    }
}

/// One volume of a block store, served as it is.
pub struct StoreDevice<S: BlockStore> {
    store: Arc<Mutex<S>>,
    vol: String,
    blocks: u64,
    read_only: bool,
}

impl<S: BlockStore> StoreDevice<S> {
    pub fn new(store: Arc<Mutex<S>>, vol: &str, blocks: u64, read_only: bool) -> Self {
        StoreDevice {
            store,
            vol: vol.to_string(),
            blocks,
            read_only,
        }
    }
}

impl<S: BlockStore + Send> Device for StoreDevice<S> {
    fn size(&self) -> u64 {
        self.blocks * BLOCK_SIZE as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Errno> {
        let mut store = self.store.lock().map_err(|_| Errno::Io)?;
        let mut block = [0u8; BLOCK_SIZE];
        each_block(offset, out.len(), |b, within, range| {
            store
                .read_block(&self.vol, b, &mut block)
                .map_err(|_| Errno::Io)?;
            let n = range.len();
            out[range].copy_from_slice(&block[within..within + n]);
            Ok(())
        })
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::Perm);
        }
        let mut store = self.store.lock().map_err(|_| Errno::Io)?;
        let mut block = [0u8; BLOCK_SIZE];
        each_block(offset, data.len(), |b, within, range| {
            if range.len() < BLOCK_SIZE {
                // A partial block: read, change, write back.
                store
                    .read_block(&self.vol, b, &mut block)
                    .map_err(|_| Errno::Io)?;
            }
            let n = range.len();
            block[within..within + n].copy_from_slice(&data[range]);
            store
                .write_block(&self.vol, b, &block)
                .map_err(|_| Errno::Io)
        })
    }
    fn flush(&self) -> Result<(), Errno> {
        self.store
            .lock()
            .map_err(|_| Errno::Io)?
            .flush()
            .map_err(|_| Errno::Io)
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), Errno> {
        if self.read_only {
            return Err(Errno::Perm);
        }
        let zeroes = vec![0u8; len.min(1 << 20) as usize];
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(zeroes.len() as u64) as usize;
            self.write(at, &zeroes[..n])?;
            at += n as u64;
        }
        Ok(())
    }
}
