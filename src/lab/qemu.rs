//! The real host clients of the lab: qemu-io and qemu-img over NBD.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

/// Runs `qemu-io -f raw URL -c CMD...`; an error names the command and
/// what qemu-io said (a refused write shows "Operation not permitted").
pub fn io(url: &str, cmds: &[String]) -> Result<String, String> {
    let (ok, text) = io_output(url, cmds)?;
    if !ok {
        return Err(format!("qemu-io {url} {cmds:?}: {}", text.trim()));
    }
    Ok(text)
}

/// [`io`] opening the export read-only (`qemu-io -r`), as a read-only
/// export (a snapshot) must be opened.
pub fn io_read_only(url: &str, cmds: &[String]) -> Result<String, String> {
    let (ok, text) = run(url, cmds, true)?;
    if !ok {
        return Err(format!("qemu-io -r {url} {cmds:?}: {}", text.trim()));
    }
    Ok(text)
}

/// Runs qemu-io and returns (every command succeeded, its output), so a
/// caller can see which writes were acknowledged before a failure.
pub fn io_output(url: &str, cmds: &[String]) -> Result<(bool, String), String> {
    run(url, cmds, false)
}

fn run(url: &str, cmds: &[String], read_only: bool) -> Result<(bool, String), String> {
    let mut c = Command::new("qemu-io");
    if read_only {
        c.arg("-r");
    }
    c.args(["-f", "raw", url]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = c
        .output()
        .map_err(|e| format!("cannot run qemu-io (install qemu-utils): {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok =
        out.status.success() && !text.contains("failed") && !text.contains("Pattern verification");
    Ok((ok, text))
}

/// Offsets of the writes qemu-io reports done ("wrote N/N bytes at offset
/// X"), in order.
pub fn wrote_offsets(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("wrote "))
        .filter_map(|l| l.split(" at offset ").nth(1))
        .filter_map(|o| o.trim().parse().ok())
        .collect()
}

/// Whether two images hold the same bytes (`qemu-img compare`).
pub fn same(url_a: &str, url_b: &str) -> Result<bool, String> {
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw", url_a, url_b])
        .output()
        .map_err(|e| format!("cannot run qemu-img (install qemu-utils): {e}"))?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(format!(
            "qemu-img compare {url_a} {url_b}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// Copies a whole image into the raw file `scratch` (`qemu-img convert`).
pub fn dump(url: &str, scratch: &Path) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw", url])
        .arg(scratch)
        .output()
        .map_err(|e| format!("cannot run qemu-img (install qemu-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img convert {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// SHA-256 of a whole image, read through qemu-img into `scratch`.
pub fn sha256(url: &str, scratch: &Path) -> Result<[u8; 32], String> {
    dump(url, scratch)?;
    let bytes = std::fs::read(scratch).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(scratch);
    Ok(Sha256::digest(&bytes).into())
}
