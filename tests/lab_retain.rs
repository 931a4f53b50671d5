//! Retained copies in the lab (issue 14): two `replicim serve` processes,
//! a periodic group keeping 2 cycles on the backup. The copies are listed
//! by the real `replicim rcopy showvv -snap` (over CIM-XML), read by
//! qemu-io over NBD as read-only exports holding each cycle's data, and
//! pruned to the policy.

use std::process::Command;

use replicim::lab::{qemu, Lab, Site};

use crate::lab::{lab_up, rcopy};

const EXE: &str = env!("CARGO_BIN_EXE_replicim");
const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// `replicim rcopy ... showvv -snap` against `s`: (status ok, stdout).
fn showvv_snap(lab: &Lab, s: Site, json: bool) -> (bool, String) {
    let url = format!("http://127.0.0.1:{}", lab.opts.ports.of(s).http);
    let mut c = Command::new(EXE);
    c.args(["rcopy", "--url", &url, "--user", "admin"])
        .env("REPLICIM_PASSWORD", &lab.password);
    if json {
        c.arg("--json");
    }
    let out = c.args(["showvv", "-snap"]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// One cycle: 64 KiB of `fill` at the start of vol0, then `syncrcopy`.
fn cycle(lab: &Lab, fill: u8) {
    qemu::io(
        &lab.nbd_url(Site::A, "vol0"),
        &[format!("write -P {fill} 0 64k")],
    )
    .unwrap();
    rcopy(lab, Site::A, "syncrcopy rcg0").unwrap();
    lab.wait_synced(Site::A, WAIT).unwrap();
}

#[test]
fn retained_copies_are_listed_by_rcopy_and_readable_over_nbd() {
    let t = lab_up(false);
    let lab = &t.lab;
    lab.wait_link(Site::A, true, WAIT).unwrap();
    for line in [
        "creatercopygroup rcg0 site-b periodic:0",
        "admitrcopyvv vol0 rcg0 site-b:vol0",
        "setrcopygroup pol retain=2 rcg0",
        "startrcopygroup rcg0",
    ] {
        rcopy(lab, Site::A, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    lab.wait_synced(Site::A, WAIT).unwrap();
    for fill in [0x41, 0x42, 0x43] {
        cycle(lab, fill);
    }
    // The table, as an admin reads it.
    let (ok, text) = showvv_snap(lab, Site::B, false);
    println!("{text}");
    assert!(ok, "{text}");
    assert!(text.contains("2 snapshots"), "{text}");
    assert!(
        text.contains("RetainedBy") && text.contains("UTC"),
        "{text}"
    );
    // The rows, as a script reads them: two copies of vol0 kept by rcg0,
    // oldest first by their point time.
    let (ok, json) = showvv_snap(lab, Site::B, true);
    assert!(ok, "{json}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r["retained_by"] == "rcg0" && r["base"] == "vol0")
        .collect();
    assert_eq!(rows.len(), 2, "{json}");
    // The older copy costs the 16 blocks the newer cycle overwrote.
    assert_eq!(rows[0]["saved_bytes"], 64 * 1024, "{json}");
    // Each is an NBD export holding its cycle's data (the first cycle,
    // 0x41, was pruned), and is read-only.
    for (r, fill) in rows.iter().zip([0x42, 0x43]) {
        let name = r["name"].as_str().unwrap();
        let url = lab.nbd_url(Site::B, name);
        // An error here is a failed pattern check.
        qemu::io_read_only(&url, &[format!("read -P {fill} 0 64k")]).unwrap();
        let (wrote, out) = qemu::io_output(&url, &["write -P 1 0 4k".to_string()]).unwrap();
        assert!(!wrote, "{name} took a write: {out}");
    }
    // On the primary, none.
    let (_, text) = showvv_snap(lab, Site::A, false);
    assert!(text.contains("0 snapshots"), "{text}");
}
