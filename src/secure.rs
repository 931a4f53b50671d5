//! File modes for what an array keeps: its directories are 0700, and
//! volume images, journals, credentials and keys 0600, whatever the umask
//! of the process that made them (a volume holds a host's data; a key or a
//! password lets anyone in). Public certificates are 0644.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of private files.
pub const FILE: u32 = 0o600;
/// Mode of private directories.
pub const DIR: u32 = 0o700;

fn err(p: &Path, e: impl std::fmt::Display) -> String {
    format!("{}: {e}", p.display())
}

/// Creates `dir` (and its missing parents, 0700) and makes it 0700.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    // Every directory made on the way is private too (DIR/clients for
    // DIR/clients/site-a), whatever the umask.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR)
        .create(dir)
        .map_err(|e| err(dir, e))?;
    fs::set_permissions(dir, Permissions::from_mode(DIR)).map_err(|e| err(dir, e))
}

/// Writes a private file (0600), through a temporary file and a rename so
/// no reader sees it half written.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_mode(path, bytes, FILE)
}

/// Writes a public file (0644), likewise.
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_mode(path, bytes, 0o644)
}

fn write_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|e| err(&tmp, e))?;
        // The mode given to open is masked by the umask: set it outright.
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| err(&tmp, e))?;
        f.sync_all().map_err(|e| err(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| err(path, e))
}

/// Opens (creating if missing) a private file for reading and writing.
pub fn open_private(path: &Path, create: bool, truncate: bool) -> std::io::Result<fs::File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(truncate)
        .mode(FILE)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(FILE))?;
    Ok(f)
}

/// A private file found readable or writable by others is made 0600 again
/// (and the operator told).
pub fn check_private(path: &Path) -> Result<(), String> {
    let meta = fs::metadata(path).map_err(|e| err(path, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            path = %path.display(),
            "a private file was open to other users; made it 0600"
        );
        fs::set_permissions(path, Permissions::from_mode(FILE)).map_err(|e| err(path, e))?;
    }
    Ok(())
}
