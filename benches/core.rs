//! Core benchmarks, each against a baseline measured in the same run.
//!
//! Run: `cargo bench --bench core`. Prints a Markdown table for
//! BENCHMARKS.md. Sizes are fixed so runs compare across days; the machine
//! is noisy (2 shared cores), so read the ratios, not the absolute figures.

use std::time::{Duration, Instant};

use replicim::core::{
    ArrayConfig, BlockStore, Command, Mode, Policies, ReplicaKind, Volumes, BLOCK_SIZE,
};
use replicim::sim::{pattern_block, Rng, Sim};
use replicim::store::MemStore;

const MIB: u64 = 1 << 20;

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("ran"))
}

fn pair(blocks: u64, mode: Mode) -> Sim {
    let mut sim = Sim::new();
    sim.check_commits = false;
    sim.add_array("a", ArrayConfig::default());
    sim.add_array("b", ArrayConfig::default());
    sim.link_up("a", "b").unwrap();
    sim.settle(100).unwrap();
    sim.create_volume("a", "v", blocks).unwrap();
    for b in 0..blocks {
        sim.write("a", "v", b, &pattern_block((b % 251) as u8, b))
            .unwrap();
    }
    sim.command(
        "a",
        Command::CreateGroup {
            group: "g".into(),
            peer: "b".into(),
            mode,
            policies: Policies::default(),
        },
    )
    .unwrap();
    sim.settle(100).unwrap();
    sim.command(
        "a",
        Command::Admit {
            group: "g".into(),
            vol: "v".into(),
            remote_vol: "v".into(),
        },
    )
    .unwrap();
    sim.settle(100).unwrap();
    sim
}

fn main() {
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let only = std::env::var("BENCH_ONLY").ok();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if want("scale") {
        let data = pattern_block(1, 1);
        // 5. The cost of one replicated write must not grow with the number of
        // groups configured: 1,000 groups of 8 volumes against 1 group of 8, the
        // same writes to one volume of the first group.
        let scale = |groups: usize| {
            let mut sim = Sim::new();
            // Timed commits: not the simulation's whole-state check of each.
            sim.check_commits = false;
            sim.add_array("a", ArrayConfig::default());
            sim.add_array("b", ArrayConfig::default());
            sim.link_up("a", "b").unwrap();
            sim.settle(100).unwrap();
            for g in 0..groups {
                let group = format!("g{g:04}");
                sim.command(
                    "a",
                    Command::CreateGroup {
                        group: group.clone(),
                        peer: "b".into(),
                        mode: Mode::Sync,
                        policies: Policies::default(),
                    },
                )
                .unwrap();
                sim.settle(100).unwrap();
                for v in 0..8 {
                    let vol = format!("{group}v{v}");
                    sim.create_volume("a", &vol, 4).unwrap();
                    sim.command(
                        "a",
                        Command::Admit {
                            group: group.clone(),
                            vol: vol.clone(),
                            remote_vol: vol,
                        },
                    )
                    .unwrap();
                    sim.settle(100).unwrap();
                }
                sim.command("a", Command::Start { group }).unwrap();
                sim.settle(10_000).unwrap();
            }
            let n = 2_000u64;
            let (t, _) = best(3, || {
                for i in 0..n {
                    sim.write("a", "g0000v0", i % 4, &data).unwrap();
                    sim.step().unwrap();
                    sim.step().unwrap();
                    sim.take_events();
                }
            });
            n as f64 / t.as_secs_f64()
        };
        let (one, many) = (scale(1), scale(1000));
        rows.push((
            "sync-mode 4 KiB writes with 1,000 groups × 8 volumes configured (in process)".into(),
            format!("{many:.0} writes/s"),
            format!("1 group of 8 volumes: {one:.0} writes/s"),
            format!("{:.2}x the cost with one group", one / many),
        ));
    }
    if only.is_some() {
        for (a, b, c, d) in rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
        return;
    }

    // 1. Full sync of 256 MiB through two cores vs a plain store-to-store copy.
    let blocks = 256 * MIB / BLOCK_SIZE as u64;
    // Only the copy is timed: building and filling the source store is
    // not part of the baseline (the full sync below starts from a filled
    // store too).
    let copy = (0..3)
        .map(|_| {
            let mut src = MemStore::new();
            let mut dst = MemStore::new();
            src.create_volume("v", blocks).unwrap();
            dst.create_volume("v", blocks).unwrap();
            for b in 0..blocks {
                src.write_block("v", b, &pattern_block((b % 251) as u8, b))
                    .unwrap();
            }
            let t = Instant::now();
            let mut buf = [0u8; BLOCK_SIZE];
            for b in 0..blocks {
                src.read_block("v", b, &mut buf).unwrap();
                dst.write_block("v", b, &buf).unwrap();
            }
            t.elapsed()
        })
        .min()
        .expect("ran");
    let mut full_times = Vec::new();
    for _ in 0..3 {
        let mut sim = pair(blocks, Mode::Sync);
        let t = Instant::now();
        sim.command("a", Command::Start { group: "g".into() })
            .unwrap();
        sim.settle(10_000_000).unwrap();
        full_times.push(t.elapsed());
    }
    let full = *full_times.iter().min().unwrap();
    let mbs = |d: Duration| 256.0 / d.as_secs_f64();
    rows.push((
        "initial full sync, 256 MiB, through both cores".into(),
        format!("{:.0} MB/s", mbs(full)),
        format!("store-to-store copy {:.0} MB/s", mbs(copy)),
        format!(
            "{:.2}x of the copy",
            copy.as_secs_f64() / full.as_secs_f64()
        ),
    ));

    // 1b. A local clone of the same 256 MiB, copied in steps by the array's
    // timer (`promote_budget` blocks a tick, a journal commit each), against
    // the same plain copy; and a snapshot replica, a command whose cost is its
    // batch, against making an empty volume (the same batch and commit).
    let mut clone_times = Vec::new();
    let mut snap_times = Vec::new();
    let mut vol_times = Vec::new();
    for i in 0..3 {
        let mut sim = pair(blocks, Mode::Sync);
        let t = Instant::now();
        sim.command(
            "a",
            Command::CreateVolume {
                vol: format!("e{i}"),
                blocks,
            },
        )
        .unwrap();
        vol_times.push(t.elapsed());
        let t = Instant::now();
        sim.command(
            "a",
            Command::CreateReplica {
                name: format!("s{i}"),
                source: "v".into(),
                kind: ReplicaKind::Snapshot,
                into: false,
            },
        )
        .unwrap();
        snap_times.push(t.elapsed());
        let t = Instant::now();
        sim.command(
            "a",
            Command::CreateReplica {
                name: "c".into(),
                source: "v".into(),
                kind: ReplicaKind::Clone,
                into: false,
            },
        )
        .unwrap();
        sim.settle(10_000_000).unwrap();
        clone_times.push(t.elapsed());
        assert!(!sim.array("a").read_model().replica("c").unwrap().copying);
    }
    let clone = *clone_times.iter().min().unwrap();
    rows.push((
        "local clone, 256 MiB, copied in steps by the array's timer".into(),
        format!("{:.0} MB/s", mbs(clone)),
        format!("store-to-store copy {:.0} MB/s", mbs(copy)),
        format!(
            "{:.2}x of the copy",
            copy.as_secs_f64() / clone.as_secs_f64()
        ),
    ));
    let (snap, vol) = (
        *snap_times.iter().min().unwrap(),
        *vol_times.iter().min().unwrap(),
    );
    rows.push((
        "snapshot replica of a 256 MiB volume (a command and its commit)".into(),
        format!("{:.1} µs", snap.as_secs_f64() * 1e6),
        format!("making an empty volume {:.1} µs", vol.as_secs_f64() * 1e6),
        format!("{:.2}x the cost", snap.as_secs_f64() / vol.as_secs_f64()),
    ));

    // 2. Delta resync after 1% random changes vs the full sync above.
    let mut sim = pair(blocks, Mode::Sync);
    sim.command("a", Command::Start { group: "g".into() })
        .unwrap();
    sim.settle(10_000_000).unwrap();
    sim.link_down("a", "b").unwrap();
    let mut rng = Rng::new(7);
    for _ in 0..blocks / 100 {
        let b = rng.below(blocks);
        sim.write("a", "v", b, &pattern_block(0xee, b)).unwrap();
    }
    sim.link_up("a", "b").unwrap();
    sim.settle(1000).unwrap();
    let before = sim.array("a").counters().sync_bytes_sent;
    let t = Instant::now();
    sim.command("a", Command::Start { group: "g".into() })
        .unwrap();
    sim.settle(10_000_000).unwrap();
    let delta = t.elapsed();
    let sent = sim.array("a").counters().sync_bytes_sent - before;
    rows.push((
        "delta resync after 1% random 4 KiB writes, 256 MiB".into(),
        format!(
            "{:.1} ms, {:.2} MiB sent",
            delta.as_secs_f64() * 1e3,
            sent as f64 / MIB as f64
        ),
        format!("full sync {:.0} ms", full.as_secs_f64() * 1e3),
        format!(
            "{:.1}x faster than full",
            full.as_secs_f64() / delta.as_secs_f64()
        ),
    ));

    // 3. Sync-mode replicated writes vs the same writes to a volume in no group.
    let n = 50_000u64;
    let mut sim = pair(1024, Mode::Sync);
    sim.command("a", Command::Start { group: "g".into() })
        .unwrap();
    sim.settle(1_000_000).unwrap();
    sim.create_volume("a", "plain", 1024).unwrap();
    let data = pattern_block(1, 1);
    let (plain, _) = best(3, || {
        for i in 0..n {
            sim.write("a", "plain", i % 1024, &data).unwrap();
        }
    });
    let (repl, _) = best(3, || {
        for i in 0..n {
            sim.write("a", "v", i % 1024, &data).unwrap();
            sim.step().unwrap();
            sim.step().unwrap();
            sim.take_events();
        }
    });
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    rows.push((
        "sync-mode 4 KiB writes, replicated and acknowledged (in process)".into(),
        format!("{:.0} writes/s", rate(repl)),
        format!("unreplicated {:.0} writes/s", rate(plain)),
        format!(
            "{:.1}x the cost of an unreplicated write",
            plain.as_secs_f64().recip() / repl.as_secs_f64().recip()
        ),
    ));

    // 4. Snapshot creation on 1 GiB is O(1); changed_since costs O(changed).
    let mut store = MemStore::new();
    let mut vols = Volumes::default();
    let gib = 262_144;
    vols.create(&mut store, "big", gib).unwrap();
    let (snap_t, snap) = best(5, || vols.snapshot(&mut store, "big", 1).unwrap());
    let mut rng = Rng::new(3);
    for _ in 0..gib / 100 {
        let b = rng.below(gib);
        vols.write(&mut store, "big", b, &data).unwrap();
    }
    let (cs_t, changed) = best(5, || vols.changed_since(snap).len());
    let (scan_t, _) = best(3, || {
        let mut buf = [0u8; BLOCK_SIZE];
        let mut n = 0;
        for b in 0..gib {
            vols.read(&mut store, "big", b, &mut buf).unwrap();
            n += buf[0] as u64;
        }
        n
    });
    rows.push((
        "snapshot of a 1 GiB volume".into(),
        format!("{:.1} µs", snap_t.as_secs_f64() * 1e6),
        "-".into(),
        "O(1): no data copied".into(),
    ));
    rows.push((
        format!("blocks changed since a snapshot (1 GiB, {changed} changed)"),
        format!("{:.2} ms", cs_t.as_secs_f64() * 1e3),
        format!(
            "reading the whole volume {:.0} ms",
            scan_t.as_secs_f64() * 1e3
        ),
        format!(
            "{:.0}x faster than a scan",
            scan_t.as_secs_f64() / cs_t.as_secs_f64()
        ),
    ));

    println!("| measurement | result | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    for (a, b, c, d) in rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
}
