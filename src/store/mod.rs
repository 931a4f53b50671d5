//! Block stores: the two implementations of `core::BlockStore`.
//!
//! * [`MemStore`]: volumes and save areas in memory. Used by the simulation
//!   and the conformance replay; an array "crash" keeps it, as a disk would be
//!   kept.
//! * [`FileStore`]: one sparse image file per volume (`volumes/<name>.img`,
//!   sized with `set_len`, so unwritten blocks are holes that read as zeros)
//!   and one append-only file per snapshot save area (`snaps/<id>.cow`).
//!   Reads and writes are positional (`pread`/`pwrite`), so no seek state is
//!   shared.

pub mod journal;
pub mod memjournal;

pub use memjournal::MemJournal;

/// A block store whose changes become durable in batches, with the array's
/// metadata: the file journal of a real array, or the simulation's
/// [`MemJournal`]. The node's batch policy runs over either.
pub trait Journaled: crate::core::BlockStore {
    /// Makes the batch durable with the metadata `meta` (all of it, as it
    /// is now; only the keys that changed are stored). Returns false when
    /// nothing changed.
    fn commit(&mut self, meta: Vec<(String, Vec<u8>)>) -> Result<bool, StoreError>;
    /// As `commit`, given only the keys that may have changed since the
    /// last commit (`None`: removed), so its cost follows the change, not
    /// the size of the metadata.
    fn commit_changes(
        &mut self,
        changes: Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<bool, StoreError>;
    /// The metadata as of the last commit.
    fn committed_meta(&self) -> &BTreeMap<String, Vec<u8>>;
    /// Names the metadata keys whose change must wait for bulk blocks to
    /// be durable (every key, unless set).
    fn set_barrier(&mut self, barrier: fn(&str) -> bool);
}

use std::collections::{BTreeMap, HashMap};

/// The changes that turn `committed` into exactly `listing` (every key as
/// it is now; a committed key missing from it is removed).
fn full_listing_changes(
    committed: &BTreeMap<String, Vec<u8>>,
    listing: impl IntoIterator<Item = (String, Vec<u8>)>,
) -> Vec<(String, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in listing {
        seen.insert(k.clone());
        out.push((k, Some(v)));
    }
    for k in committed.keys() {
        if !seen.contains(k) {
            out.push((k.clone(), None));
        }
    }
    out
}

/// `changes` without the entries that change nothing.
fn real_changes(
    committed: &BTreeMap<String, Vec<u8>>,
    changes: Vec<(String, Option<Vec<u8>>)>,
) -> Vec<(String, Option<Vec<u8>>)> {
    changes
        .into_iter()
        .filter(|(k, v)| committed.get(k) != v.as_ref())
        .collect()
}
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::core::{Block, BlockStore, SnapId, StoreError, BLOCK_SIZE};

/// In-memory block store. Unwritten blocks cost nothing.
#[derive(Default, Clone)]
pub struct MemStore {
    vols: HashMap<String, MemVol>,
    saves: HashMap<SnapId, Vec<Box<Block>>>,
}

#[derive(Clone)]
pub(crate) struct MemVol {
    blocks: u64,
    data: BTreeMap<u64, Box<Block>>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn vol(&self, vol: &str) -> Result<&MemVol, StoreError> {
        self.vols
            .get(vol)
            .ok_or_else(|| StoreError::new(vol, "no such volume in the store"))
    }
}

fn range_check(vol: &str, block: u64, blocks: u64) -> Result<(), StoreError> {
    if block >= blocks {
        return Err(StoreError::new(
            vol,
            format!("block {block} beyond the end ({blocks} blocks)"),
        ));
    }
    Ok(())
}

impl BlockStore for MemStore {
    fn create_volume(&mut self, vol: &str, blocks: u64) -> Result<(), StoreError> {
        if self.vols.contains_key(vol) {
            return Err(StoreError::new(vol, "volume already exists in the store"));
        }
        self.vols.insert(
            vol.to_string(),
            MemVol {
                blocks,
                data: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn delete_volume(&mut self, vol: &str) -> Result<(), StoreError> {
        self.vols
            .remove(vol)
            .map(|_| ())
            .ok_or_else(|| StoreError::new(vol, "no such volume in the store"))
    }

    fn read_block(&mut self, vol: &str, block: u64, out: &mut Block) -> Result<(), StoreError> {
        let v = self.vol(vol)?;
        range_check(vol, block, v.blocks)?;
        match v.data.get(&block) {
            Some(d) => out.copy_from_slice(&d[..]),
            None => out.fill(0),
        }
        Ok(())
    }

    fn write_block(&mut self, vol: &str, block: u64, data: &Block) -> Result<(), StoreError> {
        let v = self
            .vols
            .get_mut(vol)
            .ok_or_else(|| StoreError::new(vol, "no such volume in the store"))?;
        range_check(vol, block, v.blocks)?;
        match v.data.get_mut(&block) {
            Some(d) => d.copy_from_slice(data),
            None => {
                v.data.insert(block, Box::new(*data));
            }
        }
        Ok(())
    }

    fn allocated_blocks(&mut self, vol: &str) -> Result<Vec<u64>, StoreError> {
        Ok(self.vol(vol)?.data.keys().copied().collect())
    }

    fn save_create(&mut self, snap: SnapId) -> Result<(), StoreError> {
        self.saves.insert(snap, Vec::new());
        Ok(())
    }

    fn save_put(&mut self, snap: SnapId, data: &Block) -> Result<u64, StoreError> {
        let area = self
            .saves
            .get_mut(&snap)
            .ok_or_else(|| StoreError::new(format!("snapshot {}", snap.0), "no save area"))?;
        area.push(Box::new(*data));
        Ok(area.len() as u64 - 1)
    }

    fn save_get(&mut self, snap: SnapId, slot: u64, out: &mut Block) -> Result<(), StoreError> {
        let d = self
            .saves
            .get(&snap)
            .and_then(|a| a.get(slot as usize))
            .ok_or_else(|| StoreError::new(format!("snapshot {}", snap.0), "no such slot"))?;
        out.copy_from_slice(&d[..]);
        Ok(())
    }

    fn save_delete(&mut self, snap: SnapId) -> Result<(), StoreError> {
        self.saves.remove(&snap);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Block store on files in one directory.
pub struct FileStore {
    dir: PathBuf,
    vols: HashMap<String, (File, u64)>,
    saves: HashMap<SnapId, (File, u64)>,
}

fn io_err(object: impl Into<String>, e: std::io::Error) -> StoreError {
    StoreError::new(object, e.to_string())
}

impl FileStore {
    /// Opens (creating if needed) a store in `dir`, re-opening the volume and
    /// save files already there.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let shown = dir.display().to_string();
        // Volumes hold hosts' data: the directories are 0700 and every
        // file 0600, whatever the umask (crate::secure).
        crate::secure::private_dir(dir).map_err(|e| StoreError::new(&shown, e))?;
        for sub in ["volumes", "snaps"] {
            crate::secure::private_dir(&dir.join(sub)).map_err(|e| StoreError::new(&shown, e))?;
        }
        let mut store = FileStore {
            dir: dir.to_path_buf(),
            vols: HashMap::new(),
            saves: HashMap::new(),
        };
        for entry in fs::read_dir(dir.join("volumes")).map_err(|e| io_err(&shown, e))? {
            let path = entry.map_err(|e| io_err(&shown, e))?.path();
            if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".img"))
            {
                let file = crate::secure::open_private(&path, false, false)
                    .map_err(|e| io_err(name, e))?;
                let len = file.metadata().map_err(|e| io_err(name, e))?.len();
                store
                    .vols
                    .insert(name.to_string(), (file, len / BLOCK_SIZE as u64));
            }
        }
        for entry in fs::read_dir(dir.join("snaps")).map_err(|e| io_err(&shown, e))? {
            let path = entry.map_err(|e| io_err(&shown, e))?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".cow"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id {
                let file = crate::secure::open_private(&path, false, false)
                    .map_err(|e| io_err(path.display().to_string(), e))?;
                let len = file
                    .metadata()
                    .map_err(|e| io_err(path.display().to_string(), e))?
                    .len();
                store
                    .saves
                    .insert(SnapId(id), (file, len / BLOCK_SIZE as u64));
            }
        }
        Ok(store)
    }

    fn vol_path(&self, vol: &str) -> PathBuf {
        self.dir.join("volumes").join(format!("{vol}.img"))
    }

    fn save_path(&self, snap: SnapId) -> PathBuf {
        self.dir.join("snaps").join(format!("{}.cow", snap.0))
    }

    /// Creates a volume unless one of that name exists (replaying a log).
    pub fn ensure_volume(&mut self, vol: &str, blocks: u64) -> Result<(), StoreError> {
        if self.vols.contains_key(vol) {
            return Ok(());
        }
        self.create_volume(vol, blocks)
    }

    /// Writes a save-area slot at its place (replaying a log: idempotent).
    pub fn save_put_at(&mut self, snap: SnapId, slot: u64, data: &Block) -> Result<(), StoreError> {
        let name = format!("snapshot {}", snap.0);
        let (file, len) = self
            .saves
            .get_mut(&snap)
            .ok_or_else(|| StoreError::new(&name, "no save area"))?;
        file.write_all_at(data, slot * BLOCK_SIZE as u64)
            .map_err(|e| io_err(&name, e))?;
        *len = (*len).max(slot + 1);
        Ok(())
    }

    /// Makes a volume's written blocks durable.
    pub fn sync_volume(&self, vol: &str) -> Result<(), StoreError> {
        self.vol(vol)?.0.sync_data().map_err(|e| io_err(vol, e))
    }

    /// Size in blocks of a volume.
    pub fn volume_blocks(&self, vol: &str) -> Option<u64> {
        self.vols.get(vol).map(|(_, n)| *n)
    }

    /// Slots written in a save area.
    pub fn save_len(&self, snap: SnapId) -> Option<u64> {
        self.saves.get(&snap).map(|(_, n)| *n)
    }

    /// Names of the volume files present.
    pub fn volume_names(&self) -> Vec<String> {
        self.vols.keys().cloned().collect()
    }

    /// Save areas present.
    pub fn save_ids(&self) -> Vec<SnapId> {
        self.saves.keys().copied().collect()
    }

    /// Makes the directory entries (created, renamed, removed files) durable.
    pub fn sync_dirs(&self) -> Result<(), StoreError> {
        for sub in ["volumes", "snaps"] {
            let d = self.dir.join(sub);
            File::open(&d)
                .and_then(|f| f.sync_all())
                .map_err(|e| io_err(d.display().to_string(), e))?;
        }
        Ok(())
    }

    fn vol(&self, vol: &str) -> Result<&(File, u64), StoreError> {
        self.vols
            .get(vol)
            .ok_or_else(|| StoreError::new(vol, "no such volume in the store"))
    }
}

/// Volume names become file names: refuse anything that could escape the
/// directory or confuse the layout.
fn valid_name(vol: &str) -> Result<(), StoreError> {
    let ok = !vol.is_empty()
        && vol.len() <= 64
        && vol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !vol.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(StoreError::new(
            vol,
            "volume names are 1-64 characters of letters, digits, '_', '-' and '.', not starting with '.'",
        ))
    }
}

impl BlockStore for FileStore {
    fn create_volume(&mut self, vol: &str, blocks: u64) -> Result<(), StoreError> {
        valid_name(vol)?;
        if self.vols.contains_key(vol) {
            return Err(StoreError::new(vol, "volume already exists in the store"));
        }
        let path = self.vol_path(vol);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(crate::secure::FILE)
            .open(&path)
            .map_err(|e| io_err(vol, e))?;
        file.set_permissions(std::fs::Permissions::from_mode(crate::secure::FILE))
            .map_err(|e| io_err(vol, e))?;
        file.set_len(blocks * BLOCK_SIZE as u64)
            .map_err(|e| io_err(vol, e))?;
        self.vols.insert(vol.to_string(), (file, blocks));
        Ok(())
    }

    fn delete_volume(&mut self, vol: &str) -> Result<(), StoreError> {
        self.vols
            .remove(vol)
            .ok_or_else(|| StoreError::new(vol, "no such volume in the store"))?;
        fs::remove_file(self.vol_path(vol)).map_err(|e| io_err(vol, e))
    }

    fn read_block(&mut self, vol: &str, block: u64, out: &mut Block) -> Result<(), StoreError> {
        let (file, blocks) = self.vol(vol)?;
        range_check(vol, block, *blocks)?;
        file.read_exact_at(out, block * BLOCK_SIZE as u64)
            .map_err(|e| io_err(vol, e))
    }

    fn write_block(&mut self, vol: &str, block: u64, data: &Block) -> Result<(), StoreError> {
        let (file, blocks) = self.vol(vol)?;
        range_check(vol, block, *blocks)?;
        file.write_all_at(data, block * BLOCK_SIZE as u64)
            .map_err(|e| io_err(vol, e))
    }

    /// The blocks of the file's data extents (`lseek` SEEK_DATA and
    /// SEEK_HOLE): holes are skipped without reading them; a written block
    /// of zeros inside a data extent is listed (and sent) like any other.
    fn allocated_blocks(&mut self, vol: &str) -> Result<Vec<u64>, StoreError> {
        use std::os::fd::AsRawFd;
        let (file, blocks) = self.vol(vol)?;
        let (fd, end) = (file.as_raw_fd(), *blocks * BLOCK_SIZE as u64);
        let mut out = Vec::new();
        let mut at: i64 = 0;
        while (at as u64) < end {
            // SAFETY: lseek on a descriptor this store owns; it only moves
            // the file offset, which positional I/O here never uses.
            let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
            if data < 0 {
                break; // ENXIO: no data past `at`
            }
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let hole = if hole < 0 {
                end as i64
            } else {
                hole.min(end as i64)
            };
            let first = data as u64 / BLOCK_SIZE as u64;
            let last = (hole as u64).div_ceil(BLOCK_SIZE as u64);
            out.extend(first..last.min(*blocks));
            at = hole;
        }
        Ok(out)
    }

    fn save_create(&mut self, snap: SnapId) -> Result<(), StoreError> {
        let path = self.save_path(snap);
        let file = crate::secure::open_private(&path, true, true)
            .map_err(|e| io_err(path.display().to_string(), e))?;
        self.saves.insert(snap, (file, 0));
        Ok(())
    }

    fn save_put(&mut self, snap: SnapId, data: &Block) -> Result<u64, StoreError> {
        let name = format!("snapshot {}", snap.0);
        let (file, len) = self
            .saves
            .get_mut(&snap)
            .ok_or_else(|| StoreError::new(&name, "no save area"))?;
        file.write_all_at(data, *len * BLOCK_SIZE as u64)
            .map_err(|e| io_err(&name, e))?;
        *len += 1;
        Ok(*len - 1)
    }

    fn save_get(&mut self, snap: SnapId, slot: u64, out: &mut Block) -> Result<(), StoreError> {
        let name = format!("snapshot {}", snap.0);
        let (file, len) = self
            .saves
            .get(&snap)
            .ok_or_else(|| StoreError::new(&name, "no save area"))?;
        if slot >= *len {
            return Err(StoreError::new(&name, format!("slot {slot} not written")));
        }
        file.read_exact_at(out, slot * BLOCK_SIZE as u64)
            .map_err(|e| io_err(&name, e))
    }

    fn save_delete(&mut self, snap: SnapId) -> Result<(), StoreError> {
        if self.saves.remove(&snap).is_some() {
            let path = self.save_path(snap);
            fs::remove_file(&path).map_err(|e| io_err(path.display().to_string(), e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        for (name, (file, _)) in &self.vols {
            file.sync_data().map_err(|e| io_err(name, e))?;
        }
        for (snap, (file, _)) in &self.saves {
            file.sync_data()
                .map_err(|e| io_err(format!("snapshot {}", snap.0), e))?;
        }
        Ok(())
    }
}
