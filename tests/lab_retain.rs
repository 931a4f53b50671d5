//! Retained copies in the lab (issue 14): two `replicim serve` processes,
//! a periodic group keeping 2 cycles on the backup. The copies are listed
//! by the real `replicim rcopy showvv -snap` (over CIM-XML), read by
//! qemu-io over NBD as read-only exports holding each cycle's data, and
//! pruned to the policy.

use std::process::Command;

use replicim::lab::{qemu, Lab, Site};

use crate::lab::{counters, lab_up, rcopy, same};
use crate::lab_modes::group_row;

const BS: u64 = 4096;

const EXE: &str = env!("CARGO_BIN_EXE_replicim");
const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The real `replicim rcopy WORDS...` against `s`, with the lab's
/// password from the environment: (status ok, stdout then stderr).
fn cli(lab: &Lab, s: Site, words: &[&str]) -> (bool, String) {
    let url = format!("http://127.0.0.1:{}", lab.opts.ports.of(s).http);
    let out = Command::new(EXE)
        .args(["rcopy", "--url", &url, "--user", "admin"])
        .args(words)
        .env("REPLICIM_PASSWORD", &lab.password)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `replicim rcopy [--json] showvv -snap` against `s`.
fn showvv_snap(lab: &Lab, s: Site, json: bool) -> (bool, String) {
    match json {
        true => cli(lab, s, &["--json", "showvv", "-snap"]),
        false => cli(lab, s, &["showvv", "-snap"]),
    }
}

/// A lab whose rcg0 replicates vol0 periodically (manual cycles) after
/// `policy` lines, started and Synced.
fn periodic_lab(policy: &[&str]) -> crate::lab::TestLab {
    let t = lab_up(false);
    let lab = &t.lab;
    lab.wait_link(Site::A, true, WAIT).unwrap();
    let head = [
        "creatercopygroup rcg0 site-b periodic:0",
        "admitrcopyvv vol0 rcg0 site-b:vol0",
    ];
    for line in head.iter().chain(policy).chain(&["startrcopygroup rcg0"]) {
        rcopy(lab, Site::A, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    lab.wait_synced(Site::A, WAIT).unwrap();
    t
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
    let t = periodic_lab(&["setrcopygroup pol retain=2 rcg0"]);
    let lab = &t.lab;
    for fill in [0x41, 0x42, 0x43] {
        cycle(lab, fill);
    }
    // The policy shows with the group's other options.
    let g = group_row(lab);
    assert!(g.options.iter().any(|o| o == "retain=2"), "{g:?}");
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

/// Force delete in the lab (issue 14), on the provisioned sync group
/// (vol0 and vol1, started and Synced):
/// * CIM Detach (8) with Force=true on vol1's started pair: the pair
///   goes, the group runs on with vol0, and B's vol1 is an ordinary
///   writable volume over NBD holding what A wrote;
/// * the real `replicim rcopy removercopygroup -f rcg0`: the started group
///   is stopped and removed on both arrays; B's vol0 is kept, readable and
///   writable over NBD;
/// * then a new group with `removercopygroup -f -removevv`: B's volume is
///   deleted, and its NBD export is gone.
#[test]
fn force_delete_keeps_or_removes_the_secondary_volume() {
    use replicim::cim::client::Param;
    use replicim::cim::model::Value;
    let t = lab_up(true);
    let lab = &t.lab;
    for (v, fill) in [("vol0", 0x51), ("vol1", 0x52)] {
        qemu::io(
            &lab.nbd_url(Site::A, v),
            &[format!("write -P {fill} 0 64k")],
        )
        .unwrap();
    }
    // CIM: Detach with Force on a started pair.
    let mut c = lab.console(Site::A).unwrap();
    let (sync, _) = c.pair_sync("rcg0", "vol1").unwrap();
    let client = c.client();
    let (svc, _) = client
        .enumerate_instances("root/cimv2", "CIM_ReplicationService")
        .unwrap()
        .remove(0);
    let r = client
        .invoke(
            &svc,
            "ModifyReplicaSynchronization",
            &[
                Param::Value("Operation", Value::Uint16(8)),
                Param::Ref("Synchronization", sync),
                Param::Value("Force", Value::Boolean(true)),
            ],
        )
        .unwrap();
    assert_eq!(r.return_value.as_u64(), Some(0), "{r:?}");
    let g = group_row(lab);
    assert_eq!(g.status, "Started", "{g:?}");
    assert_eq!(g.volumes.len(), 1, "{g:?}");
    let b1 = lab.nbd_url(Site::B, "vol1");
    qemu::io(
        &b1,
        &["read -P 0x52 0 64k".into(), "write -P 0x61 0 4k".into()],
    )
    .unwrap();

    // rcopy: removercopygroup -f on the started group.
    let rcopy_cli = |s: Site, words: &[&str]| cli(lab, s, words);
    let (ok, err) = rcopy_cli(Site::A, &["removercopygroup", "rcg0"]);
    assert!(!ok && err.contains("-f"), "{err}");
    let (ok, err) = rcopy_cli(Site::A, &["removercopygroup", "-f", "rcg0"]);
    assert!(ok, "{err}");
    let t0 = std::time::Instant::now();
    while !lab.console(Site::B).unwrap().show().unwrap().is_empty() {
        assert!(t0.elapsed() < WAIT, "B still has the group");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let b0 = lab.nbd_url(Site::B, "vol0");
    qemu::io(
        &b0,
        &["read -P 0x51 0 64k".into(), "write -P 0x62 0 4k".into()],
    )
    .unwrap();
    qemu::io(&b0, &["read -P 0x62 0 4k".into()]).unwrap();

    // A new group on vol1, removed with -removevv: B's vol1 goes.
    for line in [
        "creatercopygroup rcg1 site-b sync",
        "admitrcopyvv vol1 rcg1 site-b:vol1",
        "startrcopygroup rcg1",
    ] {
        rcopy(lab, Site::A, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    lab.wait_synced(Site::A, WAIT).unwrap();
    let (ok, err) = rcopy_cli(Site::A, &["removercopygroup", "-f", "-removevv", "rcg1"]);
    assert!(ok, "{err}");
    let t0 = std::time::Instant::now();
    while qemu::io(&b1, &["read 0 4k".into()]).is_ok() {
        assert!(t0.elapsed() < WAIT, "B's vol1 is still exported");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let vols: Vec<String> = lab
        .console(Site::B)
        .unwrap()
        .show_volumes()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(vols, ["vol0"], "B keeps vol0 only");
    // A keeps both.
    qemu::io(
        &lab.nbd_url(Site::A, "vol1"),
        &["read -P 0x52 0 64k".into()],
    )
    .unwrap();
}

/// The freeze / point / thaw cycle (issue 14) with the real CLI: the pre
/// command writes the application's checkpoint (0x77) through NBD, the
/// array takes the named point, the post command writes what comes after
/// the thaw (0x88). The backup retains `vol0.app1` holding the checkpoint
/// and not the later write. The post command runs even when the point is
/// refused, and no point is asked for when the pre command fails.
#[test]
fn syncrcopy_pre_and_post_hooks_bracket_a_named_point_retained_on_the_backup() {
    let t = periodic_lab(&[]);
    let lab = &t.lab;
    let a0 = lab.nbd_url(Site::A, "vol0");
    qemu::io(&a0, &["write -P 0x11 0 8k".into()]).unwrap();
    let log = lab.opts.dir.join("hooks.log");
    let cli = |words: &[&str]| cli(lab, Site::A, words);
    let pre = format!(
        "qemu-io -f raw {a0} -c 'write -P 0x77 0 4k' >/dev/null && echo pre >> {}",
        log.display()
    );
    let post = format!(
        "echo post >> {} && qemu-io -f raw {a0} -c 'write -P 0x88 0 4k' >/dev/null",
        log.display()
    );
    let (ok, err) = cli(&[
        "syncrcopy",
        "-n",
        "app1",
        "--pre",
        &pre,
        "--post",
        &post,
        "rcg0",
    ]);
    println!("  {}", err.trim());
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "pre\npost\n");
    lab.wait_synced(Site::A, WAIT).unwrap();
    let (ok, json) = showvv_snap(lab, Site::B, true);
    assert!(ok, "{json}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let named: Vec<_> = rows.iter().filter(|r| r["point_name"] == "app1").collect();
    assert_eq!(named.len(), 1, "{json}");
    assert_eq!(named[0]["name"], "vol0.app1", "{json}");
    // The checkpoint is in the point; the write after the thaw is not;
    // the rest of what was written before is.
    let copy = lab.nbd_url(Site::B, "vol0.app1");
    qemu::io_read_only(
        &copy,
        &["read -P 0x77 0 4k".into(), "read -P 0x11 4k 4k".into()],
    )
    .unwrap();
    // A refused point (the group is stopped): the post command still runs.
    rcopy(lab, Site::A, "stoprcopygroup rcg0").unwrap();
    let (ok, err) = cli(&[
        "syncrcopy",
        "-n",
        "app2",
        "--post",
        &format!("echo post2 >> {}", log.display()),
        "rcg0",
    ]);
    assert!(!ok && err.contains("not started"), "{err}");
    // A failed pre command: no point is asked for, the post command runs.
    let (ok, err) = cli(&[
        "syncrcopy",
        "-n",
        "app3",
        "--pre",
        "exit 3",
        "--post",
        &format!("echo post3 >> {}", log.display()),
        "rcg0",
    ]);
    assert!(!ok && err.contains("no point was taken"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "pre\npost\npost2\npost3\n"
    );
}

/// The file of a volume in an array's data directory.
fn image_of(lab: &Lab, s: Site, vol: &str) -> std::path::PathBuf {
    let mut stack = vec![replicim::lab::data_dir(&lab.opts.dir, s)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n == format!("{vol}.img").as_str())
            {
                return p;
            }
        }
    }
    panic!("no {vol}.img under {}", lab.opts.dir.display());
}

/// Online verify in the lab (issue 14): one block of B's vol1 is
/// overwritten in its image file behind the running array's back; the
/// real `replicim rcopy verifyrcopy` finds exactly that block, and
/// `verifyrcopy -repair` resends exactly one block, after which qemu-img
/// finds both images equal and a new verify finds nothing.
#[test]
fn verifyrcopy_finds_a_block_corrupted_in_the_secondarys_file_and_repairs_it() {
    use std::io::{Seek, SeekFrom, Write};
    let t = lab_up(true);
    let lab = &t.lab;
    qemu::io(
        &lab.nbd_url(Site::A, "vol1"),
        &["write -P 0x31 0 1M".into()],
    )
    .unwrap();
    lab.wait_synced(Site::A, WAIT).unwrap();
    let cli = |words: &[&str]| {
        let (ok, text) = cli(lab, Site::A, words);
        assert!(ok, "{words:?}: {text}");
        text
    };
    let clean = cli(&["verifyrcopy", "rcg0"]);
    println!("  {}", clean.trim());
    assert!(
        clean.contains("done,") && clean.contains(" 0 blocks differ"),
        "{clean}"
    );
    // Behind B's back: a block no one ever wrote (so no journal record of
    // the array's own holds it).
    let img = image_of(lab, Site::B, "vol1");
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(5000 * BS)).unwrap();
    f.write_all(&[0xee; BS as usize]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let found = cli(&["verifyrcopy", "rcg0"]);
    println!("  {}", found.trim());
    assert!(found.contains(" 1 blocks differ (vol1:5000)"), "{found}");
    let (_, sync_before, _) = counters(lab, Site::A);
    let fixed = cli(&["verifyrcopy", "-repair", "rcg0"]);
    println!("  {}", fixed.trim());
    lab.wait_synced(Site::A, WAIT).unwrap();
    let (_, sync_after, _) = counters(lab, Site::A);
    assert_eq!(sync_after - sync_before, BS, "exactly one block was resent");
    same(lab);
    let again = cli(&["verifyrcopy", "rcg0"]);
    assert!(again.contains(" 0 blocks differ"), "{again}");
    let show = cli(&["showrcopy", "rcg0"]);
    assert!(show.contains("Verify: done"), "{show}");
}

/// The freeze / point / thaw cycle with a real filesystem (issue 14). The
/// machine has no kernel NBD client to mount through, so the filesystem is
/// an ext4 image that e2fsprogs edits offline: the pre command writes the
/// application's file (version 1) into the image and puts the image on A's
/// vol0 through NBD (qemu-img convert), the array takes the named point,
/// and the post command writes version 2 the same way. The backup's
/// retained copy, read back through NBD, is a valid ext4 filesystem
/// (e2fsck) whose file is version 1.
#[test]
fn a_named_point_of_an_ext4_filesystem_holds_the_file_as_the_pre_command_left_it() {
    let t = periodic_lab(&[]);
    let lab = &t.lab;
    let dir = lab.opts.dir.join("fs");
    std::fs::create_dir_all(&dir).unwrap();
    let img = dir.join("fs.img");
    let sh = |cmd: &str| {
        let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh(&format!("mkfs.ext4 -q -F -b 4096 {} 16M", img.display()));
    let a0 = lab.nbd_url(Site::A, "vol0");
    // One version of the application's file, written into the filesystem
    // and the filesystem onto vol0.
    let put = |version: u32| {
        format!(
            "echo 'ledger version {version}' > {d}/ledger.txt && \
             debugfs -w -R 'rm ledger.txt' {img} >/dev/null 2>&1; \
             debugfs -w -R 'write {d}/ledger.txt ledger.txt' {img} >/dev/null 2>&1 && \
             qemu-img convert -n -f raw -O raw {img} {a0}",
            d = dir.display(),
            img = img.display()
        )
    };
    let (ok, err) = cli(
        lab,
        Site::A,
        &[
            "syncrcopy",
            "-n",
            "fs1",
            "--pre",
            &put(1),
            "--post",
            &put(2),
            "rcg0",
        ],
    );
    println!("  {}", err.trim());
    assert!(ok, "{err}");
    lab.wait_synced(Site::A, WAIT).unwrap();
    // A holds version 2; the backup's retained point holds version 1.
    let read_file = |url: &str, name: &str| {
        let copy = dir.join(name);
        sh(&format!(
            "qemu-img convert -f raw -O raw {url} {}",
            copy.display()
        ));
        sh(&format!("e2fsck -n -f {} >/dev/null", copy.display()));
        sh(&format!(
            "debugfs -R 'cat ledger.txt' {} 2>/dev/null",
            copy.display()
        ))
    };
    assert_eq!(read_file(&a0, "a.img").trim(), "ledger version 2");
    let point = read_file(&lab.nbd_url(Site::B, "vol0.fs1"), "point.img");
    assert_eq!(
        point.trim(),
        "ledger version 1",
        "the point is between the hooks"
    );
}
