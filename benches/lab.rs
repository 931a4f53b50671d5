//! The two-process benchmarks of the replication issue, each with its
//! same-run baseline:
//!
//! * sync-mode 4 KiB write latency through NBD on a replicated volume, vs
//!   the same writes to an unreplicated volume of the same array;
//! * initial full sync of a 1 GiB volume, vs `cp` of the volume file;
//! * delta resync after 1% random 4 KiB changes on that volume, vs
//!   `rsync --inplace --no-whole-file` of the same pair of files;
//! * failover of 100 groups × 8 volumes, through CIM-XML.
//!
//! Run: `cargo bench --bench lab` (needs qemu-utils and rsync). Arrays are
//! real `replicim serve` processes behind the lab switch; the load
//! generator is a small NBD client here (one request in flight, like a
//! synchronous database log writer). Prints Markdown rows for BENCHMARKS.md.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use replicim::cim::client::Param;
use replicim::cim::model::Value;
use replicim::lab::{Lab, Options, Ports, Site};
use replicim::rcopy::{self, console::Wait};
use replicim::sim::Rng;

const EXE: &str = env!("CARGO_BIN_EXE_replicim");
const BS: u64 = 4096;

/// A minimal NBD client: fixed newstyle, NBD_OPT_EXPORT_NAME, simple
/// replies, one request at a time.
struct Nbd {
    s: TcpStream,
    handle: u64,
}

impl Nbd {
    fn connect(port: u16, export: &str) -> Nbd {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_nodelay(true).unwrap();
        let mut hello = [0u8; 18];
        s.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[0..8], b"NBDMAGIC");
        s.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
        let mut opt = Vec::new();
        opt.extend_from_slice(&0x4948_4156_454f_5054u64.to_be_bytes());
        opt.extend_from_slice(&1u32.to_be_bytes()); // NBD_OPT_EXPORT_NAME
        opt.extend_from_slice(&(export.len() as u32).to_be_bytes());
        opt.extend_from_slice(export.as_bytes());
        s.write_all(&opt).unwrap();
        let mut info = [0u8; 10];
        s.read_exact(&mut info).unwrap();
        Nbd { s, handle: 0 }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.handle += 1;
        let mut req = Vec::with_capacity(28 + data.len());
        req.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        req.extend_from_slice(&0u16.to_be_bytes());
        req.extend_from_slice(&1u16.to_be_bytes()); // NBD_CMD_WRITE
        req.extend_from_slice(&self.handle.to_be_bytes());
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&(data.len() as u32).to_be_bytes());
        req.extend_from_slice(data);
        self.s.write_all(&req).unwrap();
        let mut reply = [0u8; 16];
        self.s.read_exact(&mut reply).unwrap();
        let err = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        assert_eq!(err, 0, "NBD write error {err}");
    }
}

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

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p) as usize]
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
    let port = lab.opts.ports.a.nbd;
    let mut rep = Nbd::connect(port, "vol0");
    let mut solo = Nbd::connect(port, "solo");
    let mut rng = Rng::new(42);
    let data = vec![0xa5u8; BS as usize];
    let (mut t_rep, mut t_solo) = (Vec::new(), Vec::new());
    for round in 0..8 {
        for (c, out) in [(&mut solo, &mut t_solo), (&mut rep, &mut t_rep)] {
            for _ in 0..500 {
                let off = rng.below(16384) * BS;
                let t = Instant::now();
                c.write(off, &data);
                if round > 0 {
                    out.push(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
    }
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
    let t = Instant::now();
    rcopy(&lab, Site::A, "startrcopygroup big", Wait::No);
    let delta = wait_group_synced(&lab, "big").duration_since(t);
    let sent = sync_bytes(&lab, Site::A) - before;
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
        "| delta resync after 1% random 4 KiB changes on 1 GiB ({} blocks) | {:.3} s; {sent} bytes on the link = **{:.3}x** the changed bytes (target ≤ 1.1) | `rsync --inplace --no-whole-file`: {:.2} s, {rs_sent} bytes sent | **{:.1}x** faster (target ≥ 10) |",
        changed.len(),
        delta.as_secs_f64(),
        sent as f64 / changed_bytes as f64,
        rs.as_secs_f64(),
        rs.as_secs_f64() / delta.as_secs_f64()
    );
}

fn failover(dir: &Path) {
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
    lab.kill(Site::A).unwrap();
    lab.wait_link(Site::B, false, Duration::from_secs(30))
        .unwrap();
    // A console knows its paths before disaster strikes: discovery is not
    // part of the failover.
    let mut client = lab.client(Site::B);
    let host = format!("127.0.0.1:{}", lab.opts.ports.b.http);
    let rs = replicim::provider::model_paths::rs_path(Site::B.name(), &host);
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
                    Param::Value("Operation", Value::Uint16(10)),
                    Param::Ref("Synchronization", p.clone()),
                ],
            )
            .unwrap();
        assert!(matches!(r.return_value.as_u64(), Some(0) | Some(4096)));
    }
    let issued = t.elapsed();
    // Done: every GroupSynchronized on B shows Failedover, Completed.
    loop {
        let gs = lab
            .client(Site::B)
            .enumerate_instances(replicim::provider::NS, "CIM_GroupSynchronized")
            .unwrap();
        let done = gs.len() == 100
            && gs.iter().all(|(_, i)| {
                i.get("CopyState") == Some(&Value::Uint16(10))
                    && i.get("ProgressStatus") == Some(&Value::Uint16(2))
            });
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let all = t.elapsed();
    println!(
        "| failover of 100 groups × 8 volumes on B (A killed), 100 ModifyReplicaSynchronization(Failover) calls over CIM-XML | all 800 pairs Failedover/Completed after {:.0} ms (calls issued in {:.0} ms) | — | target < 1 s |",
        all.as_secs_f64() * 1e3,
        issued.as_secs_f64() * 1e3
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    println!(
        "lab benchmarks, {} (2 vCPU), {}",
        chrono::Utc::now().format("%Y-%m-%d"),
        std::env::consts::ARCH
    );
    println!("| measurement | replicim | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    // Each benchmark's lab directory is kept if it fails (logs, journals).
    let run = |name: &str, f: &dyn Fn(&Path)| {
        let d = std::env::temp_dir().join(format!("replicim-bench-{name}"));
        let _ = std::fs::remove_dir_all(&d);
        f(&d);
        let _ = std::fs::remove_dir_all(&d);
    };
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
}
