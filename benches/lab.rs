//! The two-process benchmarks of the replication issue, each with its
//! same-run baseline:
//!
//! * sync-mode 4 KiB write latency through NBD on a replicated volume, vs
//!   the same writes to an unreplicated volume of the same array;
//! * initial full sync of a 1 GiB volume, vs `cp` of the volume file;
//! * delta resync after 1% random 4 KiB changes on that volume, vs
//!   `rsync --inplace --no-whole-file` of the same pair of files;
//! * failover of 100 groups × 8 volumes, through CIM-XML;
//! * planned failover (link up) of the same, against a Deactivate of them.
//!
//! Run: `cargo bench --bench lab` (needs qemu-utils and rsync). Arrays are
//! real `replicim serve` processes behind the lab switch; the load
//! generator is a small NBD client here (one request in flight, like a
//! synchronous database log writer). Prints Markdown rows for BENCHMARKS.md.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod common;

use replicim::cim::client::Param;
use replicim::cim::model::Value;
use replicim::lab::{Lab, Options, Ports, Site};
use replicim::rcopy::{self, console::Wait};
use replicim::sim::Rng;

use common::{percentile, Nbd};

const EXE: &str = env!("CARGO_BIN_EXE_replicim");
const BS: u64 = 4096;

fn lab(dir: &Path, volumes: Vec<(String, u64)>) -> Lab {
    lab_with(dir, volumes, false)
}

fn lab_with(dir: &Path, volumes: Vec<(String, u64)>, direct: bool) -> Lab {
    let mut opts = Options::new(dir, Path::new(EXE));
    opts.direct_link = direct;
    opts.ports = Ports::free();
    opts.password = Some("bench".into());
    opts.heartbeat_ms = 200;
    opts.timeout_ms = 1500;
    opts.volumes = volumes;
    Lab::start(opts).unwrap()
}

fn rcopy(lab: &Lab, s: Site, line: &str, wait: Wait) {
    let words: Vec<&str> = line.split_whitespace().collect();
    lab.console(s)
        .unwrap()
        .run(&rcopy::parse(&words).unwrap(), wait, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{line}: {e}"));
}

fn sync_bytes(lab: &Lab, s: Site) -> u64 {
    lab.link_counters(s).unwrap().1
}

/// Waits (polling every 5 ms) until every pair of `group` on site-a is
/// Synced; returns when it was seen.
fn wait_group_synced(lab: &Lab, group: &str) -> Instant {
    let mut c = lab.console(Site::A).unwrap();
    loop {
        let rows = c.show().unwrap();
        let g = rows.iter().find(|g| g.name == group).unwrap();
        if g.volumes.iter().all(|v| v.sync_status == "Synced") {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn latency(dir: &Path, direct: bool) {
    let lab = lab_with(
        dir,
        vec![
            ("vol0".into(), 64),
            ("vol1".into(), 64),
            ("solo".into(), 64),
        ],
        direct,
    );
    lab.provision().unwrap();
    let (mut t_rep, mut t_solo) = common::paired_writes(lab.opts.ports.a.nbd, "vol0", "solo");
    let (p50r, p99r) = (percentile(&mut t_rep, 0.5), percentile(&mut t_rep, 0.99));
    let (p50s, p99s) = (percentile(&mut t_solo, 0.5), percentile(&mut t_solo, 0.99));
    println!(
        "| sync 4 KiB write latency through NBD, replicated (vol0, rcg0 synced), link {} | p50 {p50r:.0} µs, p99 {p99r:.0} µs | unreplicated volume on the same array: p50 {p50s:.0} µs, p99 {p99s:.0} µs | **{:.2}x** (target ≤ 1.5) |",
        if direct { "direct A↔B" } else { "through the lab switch" },
        p50r / p50s
    );
}

fn full_and_delta(dir: &Path) {
    let lab = lab(dir, vec![("big".into(), 1024)]);
    lab.wait_link(Site::A, true, Duration::from_secs(30))
        .unwrap();
    // Fill the volume through NBD with non-zero data.
    let mut c = Nbd::connect(lab.opts.ports.a.nbd, "big");
    let mut chunk = vec![0u8; 1 << 20];
    let t = Instant::now();
    for i in 0..1024u64 {
        for (j, b) in chunk.iter_mut().enumerate() {
            *b = (i as usize * 131 + j * 7 % 251) as u8 | 1;
        }
        c.write(i << 20, &chunk);
    }
    let fill = t.elapsed();
    drop(c);
    let a_file = dir.join("site-a/array/data/volumes/big.img");
    let cp_dst = dir.join("cp.img");
    // Every timed copy starts with no dirty pages, so none pays for
    // another's writeback.
    let settle = || assert!(Command::new("sync").status().unwrap().success());
    settle();
    let t = Instant::now();
    let st = Command::new("cp")
        .arg(&a_file)
        .arg(&cp_dst)
        .status()
        .unwrap();
    assert!(st.success());
    let cp = t.elapsed();
    settle();
    let cp_sync = t.elapsed();
    std::fs::remove_file(&cp_dst).unwrap();
    settle();

    rcopy(&lab, Site::A, "creatercopygroup big site-b sync", Wait::Yes);
    rcopy(&lab, Site::A, "admitrcopyvv big big site-b:big", Wait::Yes);
    let t = Instant::now();
    rcopy(&lab, Site::A, "startrcopygroup big", Wait::No);
    let full = wait_group_synced(&lab, "big").duration_since(t);
    let gib = 1024.0 * 1024.0 * 1024.0;
    println!(
        "| initial full sync of a 1 GiB volume (A→B, two processes) | {:.2} s, {:.0} MB/s | `cp` of the volume file: {:.2} s, {:.0} MB/s | **{:.2}x** of cp (target ≥ 0.7) |",
        full.as_secs_f64(),
        gib / full.as_secs_f64() / 1e6,
        cp.as_secs_f64(),
        gib / cp.as_secs_f64() / 1e6,
        cp.as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "|  (the same copy made durable, `cp` then `sync`: {:.2} s, {:.0} MB/s; replicim's sync is durable on B when it reports Synced) | | **{:.2}x** of cp + sync | |",
        cp_sync.as_secs_f64(),
        gib / cp_sync.as_secs_f64() / 1e6,
        cp_sync.as_secs_f64() / full.as_secs_f64()
    );
    println!(
        "|  (filling the volume through NBD first: {:.1} s, {:.0} MB/s) | | | |",
        fill.as_secs_f64(),
        gib / fill.as_secs_f64() / 1e6
    );

    // The rsync destination: the pre-change copy, as B holds it.
    let b_file = dir.join("site-b/array/data/volumes/big.img");
    let rs_dst = dir.join("rsync-dst.img");
    assert!(Command::new("cp")
        .arg(&b_file)
        .arg(&rs_dst)
        .status()
        .unwrap()
        .success());
    lab.link(false);
    lab.wait_link(Site::A, false, Duration::from_secs(30))
        .unwrap();
    let mut c = Nbd::connect(lab.opts.ports.a.nbd, "big");
    let mut rng = Rng::new(7);
    let mut changed = std::collections::BTreeSet::new();
    let blocks = (1u64 << 30) / BS;
    let data = vec![0x3cu8; BS as usize];
    while changed.len() < (blocks / 100) as usize {
        let b = rng.below(blocks);
        c.write(b * BS, &data);
        changed.insert(b);
    }
    drop(c);
    lab.link(true);
    lab.wait_link(Site::A, true, Duration::from_secs(30))
        .unwrap();
    let before = sync_bytes(&lab, Site::A);
    let wire_before = lab.switch.delivered.load(Ordering::Relaxed);
    let t = Instant::now();
    rcopy(&lab, Site::A, "startrcopygroup big", Wait::No);
    let delta = wait_group_synced(&lab, "big").duration_since(t);
    let sent = sync_bytes(&lab, Site::A) - before;
    // What crossed the switch: TLS records in both directions, with frame
    // headers, acknowledgements and heartbeats, during the resync.
    let wire = lab.switch.delivered.load(Ordering::Relaxed) - wire_before;
    let changed_bytes = changed.len() as u64 * BS;

    let t = Instant::now();
    let out = Command::new("rsync")
        .args(["--inplace", "--no-whole-file", "--stats"])
        .arg(&a_file)
        .arg(&rs_dst)
        .output()
        .expect("rsync (apt-get install rsync)");
    let rs = t.elapsed();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stdout);
    let rs_sent = stats
        .lines()
        .find_map(|l| l.strip_prefix("Total bytes sent: "))
        .map(|v| v.replace(',', ""))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    println!(
        "| delta resync after 1% random 4 KiB changes on 1 GiB ({} blocks) | {:.3} s; block payload queued (SyncBytesSent) {sent} bytes = **{:.3}x** the changed bytes; on the wire (TLS records through the switch, both directions) {wire} bytes = **{:.3}x** (target ≤ 1.1) | `rsync --inplace --no-whole-file`: {:.2} s, {rs_sent} bytes sent | **{:.1}x** faster (target ≥ 10) |",
        changed.len(),
        delta.as_secs_f64(),
        sent as f64 / changed_bytes as f64,
        wire as f64 / changed_bytes as f64,
        rs.as_secs_f64(),
        rs.as_secs_f64() / delta.as_secs_f64()
    );
}

/// A lab with 100 synchronous groups of 8 one-block volumes, all started
/// and synced from A to B.
fn hundred_groups(dir: &Path) -> Lab {
    let vols: Vec<(String, u64)> = (0..800).map(|i| (format!("f{i:03}"), 1)).collect();
    let lab = lab(dir, vols);
    lab.wait_link(Site::A, true, Duration::from_secs(30))
        .unwrap();
    let mut c = lab.console(Site::A).unwrap();
    let mut run = |line: String| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let cmd = rcopy::parse(&words).unwrap();
        // A group is made on both arrays: the next step may have to wait
        // for the peer's answer ("retry in a moment").
        for attempt in 0.. {
            match c.run(&cmd, Wait::No, &mut |_, _| {}) {
                Ok(()) => break,
                Err(e) if e.contains("retry") && attempt < 100 => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("{line}: {e}"),
            }
        }
    };
    for g in 0..100 {
        run(format!("creatercopygroup g{g:03} site-b sync"));
        for v in 0..8 {
            let vol = format!("f{:03}", g * 8 + v);
            run(format!("admitrcopyvv {vol} g{g:03} site-b:{vol}"));
        }
        run(format!("startrcopygroup g{g:03}"));
    }
    lab.wait_synced(Site::A, Duration::from_secs(300)).unwrap();
    lab
}

/// One ModifyReplicaSynchronization(`op`) per GroupSynchronized of `s`,
/// then waits until every group there satisfies `done`; returns (all
/// done, calls issued).
fn every_group(
    lab: &Lab,
    s: Site,
    op: u16,
    done: &dyn Fn(&replicim::cim::model::Instance) -> bool,
) -> (Duration, Duration) {
    let mut client = lab.client(s);
    let host = format!("127.0.0.1:{}", lab.opts.ports.of(s).http);
    let rs = replicim::provider::model_paths::rs_path(s.name(), &host);
    let syncs: Vec<_> = client
        .enumerate_instances(replicim::provider::NS, "CIM_GroupSynchronized")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(syncs.len(), 100);
    let t = Instant::now();
    for p in &syncs {
        let r = client
            .invoke(
                &rs,
                "ModifyReplicaSynchronization",
                &[
                    Param::Value("Operation", Value::Uint16(op)),
                    Param::Ref("Synchronization", p.clone()),
                ],
            )
            .unwrap();
        assert!(matches!(r.return_value.as_u64(), Some(0) | Some(4096)));
    }
    let issued = t.elapsed();
    loop {
        let gs = lab
            .client(s)
            .enumerate_instances(replicim::provider::NS, "CIM_GroupSynchronized")
            .unwrap();
        if gs.len() == 100 && gs.iter().all(|(_, i)| done(i)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    (t.elapsed(), issued)
}

/// Planned failover (Failover with the link up) of 100 groups from B,
/// against a Deactivate of the same 100 groups from A in the same lab
/// (the same number of calls, each also agreed with the peer).
fn planned(dir: &Path) {
    let lab = hundred_groups(dir);
    let (stop, _) = every_group(&lab, Site::A, 7, &|i| {
        i.get("CopyState") == Some(&Value::Uint16(8))
    });
    let (start, _) = every_group(&lab, Site::A, 4, &|i| {
        i.get("CopyState") == Some(&Value::Uint16(4))
    });
    let (all, issued) = every_group(&lab, Site::B, 10, &|i| {
        i.get("Role") == Some(&Value::Uint16(3))
            && i.get("ProgressStatus") == Some(&Value::Uint16(2))
    });
    println!(
        "| planned failover of 100 groups × 8 volumes from B (link up), 100 ModifyReplicaSynchronization(Failover) calls | all 100 groups Primary-Rev/Completed after {:.0} ms (calls issued in {:.0} ms) | Deactivate of the same 100 groups from A: {:.0} ms (Activate back: {:.0} ms) | {:.2}x the Deactivate |",
        all.as_secs_f64() * 1e3,
        issued.as_secs_f64() * 1e3,
        stop.as_secs_f64() * 1e3,
        start.as_secs_f64() * 1e3,
        all.as_secs_f64() / stop.as_secs_f64()
    );
}

fn failover(dir: &Path) {
    let lab = hundred_groups(dir);
    lab.kill(Site::A).unwrap();
    lab.wait_link(Site::B, false, Duration::from_secs(30))
        .unwrap();
    // A console knows its paths before disaster strikes: discovery is not
    // part of the failover. Done: every group on B shows Failedover,
    // Completed.
    let (all, issued) = every_group(&lab, Site::B, 10, &|i| {
        i.get("CopyState") == Some(&Value::Uint16(10))
            && i.get("ProgressStatus") == Some(&Value::Uint16(2))
    });
    println!(
        "| failover of 100 groups × 8 volumes on B (A killed), 100 ModifyReplicaSynchronization(Failover) calls over CIM-XML | all 800 pairs Failedover/Completed after {:.0} ms (calls issued in {:.0} ms) | — | target < 1 s |",
        all.as_secs_f64() * 1e3,
        issued.as_secs_f64() * 1e3
    );
}

/// Peak resident set size of a process, in MB (0 when unknown).
fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// p50 latency of 4 KiB writes through NBD, one in flight, in µs.
fn write_p50(port: u16, vol: &str, blocks: u64) -> f64 {
    let mut c = Nbd::connect(port, vol);
    let mut rng = Rng::new(9);
    let data = vec![0x5au8; BS as usize];
    let mut t = Vec::new();
    for i in 0..2_200 {
        let off = rng.below(blocks) * BS;
        let s = Instant::now();
        c.write(off, &data);
        if i >= 200 {
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
    }
    percentile(&mut t, 0.5)
}

/// One array with its peer holding GROUPS remote-copy groups of 8 volumes
/// (the 1,000 × 8 by default; `BENCH_GROUPS` overrides): what a
/// request, a write, a failover and a listing cost at that size, each
/// against the same arrays with one group or a bare hyper server.
fn scale(dir: &Path) {
    let groups: usize = std::env::var("BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let secs = 3.0;
    let vol = |g: usize, v: usize| format!("s{g:04}v{v}");
    let vols: Vec<(String, u64)> = (0..groups)
        .flat_map(|g| (0..8).map(move |v| (vol(g, v), if g == 0 && v == 0 { 256 } else { 1 })))
        .collect();
    let lab = lab(dir, vols);
    lab.wait_link(Site::A, true, Duration::from_secs(60))
        .unwrap();
    let mut c = lab.console(Site::A).unwrap();
    let mut make = |g: usize| -> Duration {
        let t = Instant::now();
        let name = format!("g{g:04}");
        let mut lines = vec![format!("creatercopygroup {name} site-b sync")];
        for v in 0..8 {
            lines.push(format!(
                "admitrcopyvv {} {name} site-b:{}",
                vol(g, v),
                vol(g, v)
            ));
        }
        lines.push(format!("startrcopygroup {name}"));
        for line in lines {
            let words: Vec<&str> = line.split_whitespace().collect();
            let cmd = rcopy::parse(&words).unwrap();
            for attempt in 0.. {
                match c.run(&cmd, Wait::No, &mut |_, _| {}) {
                    Ok(()) => break,
                    Err(e) if e.contains("retry") && attempt < 200 => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("{line}: {e}"),
                }
            }
        }
        t.elapsed()
    };
    let first = make(0);
    lab.wait_synced(Site::A, Duration::from_secs(60)).unwrap();
    let nbd = lab.opts.ports.a.nbd;
    let lat1 = write_p50(nbd, &vol(0, 0), 256);
    let t = Instant::now();
    let mut each = Vec::with_capacity(groups);
    for g in 1..groups {
        each.push(make(g));
    }
    let setup = t.elapsed();
    // One creation is a few milliseconds on a shared machine: compare the
    // medians of the first ten and the last ten, not two single samples.
    let median = |d: &[Duration]| {
        let mut d = d.to_vec();
        d.sort();
        d.get(d.len() / 2).copied().unwrap_or(first)
    };
    let k = each.len().min(10);
    let early = median(&each[..k]);
    let last = median(&each[each.len() - k..]);
    lab.wait_synced(Site::A, Duration::from_secs(600)).unwrap();
    let latn = write_p50(nbd, &vol(0, 0), 256);
    let pairs = groups * 8;
    println!(
        "| creating one group (create, 8 admits, start) over CIM-XML, median of 10 | groups {}-{groups}: {:.1} ms | groups 2-11: {:.1} ms (all {groups}: {:.0} s) | {:.2}x the first (target ≤ 2) |",
        groups - k + 1,
        last.as_secs_f64() * 1e3,
        early.as_secs_f64() * 1e3,
        setup.as_secs_f64(),
        last.as_secs_f64() / early.as_secs_f64()
    );
    println!(
        "| sync 4 KiB write latency through NBD, p50 of 2,000 | {groups} groups configured: {latn:.0} µs | 1 group: {lat1:.0} µs | {:.2}x (target ≤ 1.1) |",
        latn / lat1
    );

    // Reads a console makes, against a bare hyper server with replies of
    // the same size.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = format!("127.0.0.1:{}", lab.opts.ports.a.http);
    let auth = {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                replicim::lab::USER,
                lab.password
            ))
        )
    };
    let mid = groups / 2;
    let vp = |sys: &str, port: u16, v: &str| {
        replicim::provider::model_paths::vol_path(sys, &format!("127.0.0.1:{port}"), v)
    };
    let name_of = |p: &replicim::cim::model::ObjectPath| {
        let mut out = Vec::new();
        replicim::cim::xml::encode::instance_name(&mut out, p);
        String::from_utf8(out).unwrap()
    };
    let pair = replicim::cim::model::ObjectPath {
        host: None,
        namespace: None,
        class: replicim::cim::model::Name::new("RCM_StorageSynchronized"),
        keys: vec![
            (
                replicim::cim::model::Name::new("SystemElement"),
                Value::reference(vp("site-a", lab.opts.ports.a.http, &vol(mid, 3))),
            ),
            (
                replicim::cim::model::Name::new("SyncedElement"),
                Value::reference(vp("site-b", lab.opts.ports.b.http, &vol(mid, 3))),
            ),
        ],
    };
    let local = replicim::cim::model::ObjectPath {
        host: None,
        namespace: None,
        ..vp("site-a", lab.opts.ports.a.http, &vol(mid, 3))
    };
    let get = common::cim_request(
        "GetInstance",
        &format!(
            "<IPARAMVALUE NAME=\"InstanceName\">{}</IPARAMVALUE>",
            name_of(&pair)
        ),
    );
    let refs = common::cim_request(
        "References",
        &format!(
            "<IPARAMVALUE NAME=\"ObjectName\">{}</IPARAMVALUE><IPARAMVALUE NAME=\"ResultClass\"><CLASSNAME NAME=\"CIM_StorageSynchronized\"/></IPARAMVALUE>",
            name_of(&local)
        ),
    );
    for (what, req, target) in [
        ("GetInstance of one RCM_StorageSynchronized", &get, 0.4),
        (
            "References(volume, ResultClass=CIM_StorageSynchronized)",
            &refs,
            0.3,
        ),
    ] {
        let sample = rt.block_on(common::load_as(
            &addr,
            &req.0,
            &req.1,
            1,
            0.3,
            Some(auth.clone()),
        ));
        let size = (sample.1 / sample.0.max(1)) as usize;
        let bare = common::Server::spawn(&["--child-bare", &size.to_string()]);
        let bb = rt.block_on(common::load(&bare.addr, &req.0, &req.1, 4, secs));
        let pp = rt.block_on(common::load_as(
            &addr,
            &req.0,
            &req.1,
            4,
            secs,
            Some(auth.clone()),
        ));
        let (rb, rp) = (
            bb.0 as f64 / bb.2.as_secs_f64(),
            pp.0 as f64 / pp.2.as_secs_f64(),
        );
        println!(
            "| {what}, {pairs} pairs, 4 connections, {size} B reply | {rp:.0} req/s | bare hyper {rb:.0} req/s | **{:.2}x** of bare hyper (target ≥ {target}) |",
            rp / rb
        );
    }
    let ei = common::cim_request(
        "EnumerateInstances",
        "<IPARAMVALUE NAME=\"ClassName\"><CLASSNAME NAME=\"CIM_StorageSynchronized\"/></IPARAMVALUE>",
    );
    let e = rt.block_on(common::load_as(
        &addr,
        &ei.0,
        &ei.1,
        1,
        secs,
        Some(auth.clone()),
    ));
    println!(
        "| EnumerateInstances of all {pairs} CIM_StorageSynchronized, 1 connection | {:.0} MB/s ({:.1} MB per reply, {:.2} s each) | - | target ≥ 150 MB/s |",
        e.1 as f64 / 1e6 / e.2.as_secs_f64(),
        e.1 as f64 / 1e6 / e.0.max(1) as f64,
        e.2.as_secs_f64() / e.0.max(1) as f64
    );

    // showrcopy of every group, as an admin runs it.
    let pwfile = dir.join("password");
    let t = Instant::now();
    // Reaped by wait4 in `wait_rusage`, which also reads its peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(EXE)
        .args([
            "rcopy",
            "--url",
            &format!("http://{addr}"),
            "--password-file",
        ])
        .arg(&pwfile)
        .arg("showrcopy")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (ok, rss_kb) = wait_rusage(child.id());
    let show = t.elapsed();
    assert!(ok, "showrcopy failed");
    println!(
        "| `replicim rcopy showrcopy` of {groups} groups | {:.2} s, rcopy peak RSS {:.0} MB | - | targets < 1 s, < 100 MB |",
        show.as_secs_f64(),
        rss_kb as f64 / 1024.0
    );
    let rss_a = peak_rss_mb(lab.pid(Site::A).unwrap());

    // Failover of every group on B over CIM-XML, A killed.
    lab.kill(Site::A).unwrap();
    lab.wait_link(Site::B, false, Duration::from_secs(30))
        .unwrap();
    let mut client = lab.client(Site::B);
    let host_b = format!("127.0.0.1:{}", lab.opts.ports.b.http);
    let rs = replicim::provider::model_paths::rs_path(Site::B.name(), &host_b);
    let syncs: Vec<_> = client
        .enumerate_instances(replicim::provider::NS, "CIM_GroupSynchronized")
        .unwrap()
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(syncs.len(), groups);
    let t = Instant::now();
    for p in &syncs {
        let r = client
            .invoke(
                &rs,
                "ModifyReplicaSynchronization",
                &[
                    Param::Value("Operation", Value::Uint16(10)),
                    Param::Ref("Synchronization", p.clone()),
                ],
            )
            .unwrap();
        assert!(matches!(r.return_value.as_u64(), Some(0) | Some(4096)));
    }
    let issued = t.elapsed();
    loop {
        let gs = client
            .enumerate_instances(replicim::provider::NS, "CIM_GroupSynchronized")
            .unwrap();
        if gs.len() == groups
            && gs.iter().all(|(_, i)| {
                i.get("CopyState") == Some(&Value::Uint16(10))
                    && i.get("ProgressStatus") == Some(&Value::Uint16(2))
            })
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = t.elapsed();
    // The floor of a call that must be durable before it is answered: one
    // small write and fdatasync in the same directory, as many times.
    let floor = {
        use std::io::Write;
        let path = dir.join("fsync-probe");
        let mut f = std::fs::File::create(&path).unwrap();
        let t = Instant::now();
        for _ in 0..groups {
            f.write_all(&[0u8; 512]).unwrap();
            f.sync_data().unwrap();
        }
        let e = t.elapsed();
        let _ = std::fs::remove_file(&path);
        e
    };
    println!(
        "| failover of all {groups} groups on B over CIM-XML (A killed; a console that knows its paths, one call at a time) | {:.2} s until every group shows Failedover/Completed (calls issued in {:.2} s) | {groups} write+fdatasync on the same disk: {:.2} s | {:.2}x the fsync floor (target < 2 s) |",
        all.as_secs_f64(),
        issued.as_secs_f64(),
        floor.as_secs_f64(),
        all.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "| server peak RSS through all of the above | site-a {rss_a:.0} MB, site-b {:.0} MB | - | target < 150 MB |",
        peak_rss_mb(lab.pid(Site::B).unwrap())
    );
}

/// Waits for a child process; (exited 0, peak RSS in KiB).
fn wait_rusage(pid: u32) -> (bool, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our own child; status and ru are valid for writes.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut ru) };
    (
        r == pid as i32 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        ru.ru_maxrss,
    )
}

/// Online verify of a 256 MiB group against its same-run baselines: the
/// initial full sync of the same data (which ships it), and `sha256sum`
/// of the primary's image file (one local read and hash of it).
fn verify(dir: &Path) {
    let lab = lab(dir, vec![("big".into(), 256)]);
    lab.wait_link(Site::A, true, Duration::from_secs(30))
        .unwrap();
    let mut c = Nbd::connect(lab.opts.ports.a.nbd, "big");
    let mut chunk = vec![0u8; 1 << 20];
    for i in 0..256u64 {
        for (j, b) in chunk.iter_mut().enumerate() {
            *b = (i as usize * 131 + j * 7 % 251) as u8 | 1;
        }
        c.write(i << 20, &chunk);
    }
    drop(c);
    assert!(Command::new("sync").status().unwrap().success());
    let t = Instant::now();
    let st = Command::new("sha256sum")
        .arg(dir.join("site-a/array/data/volumes/big.img"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let hash = t.elapsed();
    for line in [
        "creatercopygroup rcv site-b sync",
        "admitrcopyvv big rcv site-b:big",
    ] {
        rcopy(&lab, Site::A, line, Wait::Yes);
    }
    let t = Instant::now();
    rcopy(&lab, Site::A, "startrcopygroup rcv", Wait::No);
    let full = wait_group_synced(&lab, "rcv") - t;
    let before = sync_bytes(&lab, Site::A);
    let t = Instant::now();
    rcopy(&lab, Site::A, "verifyrcopy rcv", Wait::Yes);
    let took = t.elapsed();
    let sent = sync_bytes(&lab, Site::A) - before;
    let row = lab
        .console(Site::A)
        .unwrap()
        .show()
        .unwrap()
        .into_iter()
        .find(|g| g.name == "rcv")
        .unwrap();
    let v = row.verify.expect("a verify report");
    assert_eq!(v.differing_blocks, 0);
    let mibs = |d: Duration| 256.0 / d.as_secs_f64();
    println!(
        "| verifyrcopy of 256 MiB (sync group, Synced): compared {} MiB, {} block bytes sent, array's own time {} ms | {:.2} s, {:.0} MiB/s | initial full sync of the same group: {:.2} s ({:.0} MiB/s); `sha256sum` of A's image: {:.2} s ({:.0} MiB/s) | **{:.2}x** the full sync's time, {:.2}x sha256sum's |",
        v.compared_bytes >> 20,
        sent,
        v.ms,
        took.as_secs_f64(),
        mibs(took),
        full.as_secs_f64(),
        mibs(full),
        hash.as_secs_f64(),
        mibs(hash),
        took.as_secs_f64() / full.as_secs_f64(),
        took.as_secs_f64() / hash.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--child-bare") {
        let n: usize = args.last().unwrap().parse().unwrap();
        return common::child_bare(vec![b'x'; n]);
    }
    let (want, run) = common::bench_main("lab");
    if want("latency") {
        run("latency-direct", &|d| latency(d, true));
        run("latency-switch", &|d| latency(d, false));
    }
    if want("sync") {
        run("sync", &full_and_delta);
    }
    if want("failover") {
        run("failover", &failover);
    }
    if want("planned") {
        run("planned", &planned);
    }
    if want("scale") {
        run("scale", &scale);
    }
    if want("verify") {
        run("verify", &verify);
    }
}
