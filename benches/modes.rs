//! The benchmarks of issue 13 (async streaming, live switching, the Error
//! state), each with its same-run baseline, on two `replicim serve`
//! processes behind the lab switch:
//!
//! * async 4 KiB write latency through NBD, vs an unreplicated volume of
//!   the same array;
//! * sustained 64 KiB writes at about 50 MB/s with the link throttled to
//!   10 MB/s: the lag over time, when `max_lag` trips the group, and the
//!   host write latency meanwhile, vs the same writes to an unreplicated
//!   volume;
//! * a sync → async → sync switch under a one-in-flight 4 KiB write load:
//!   the longest host write during each switch, vs the longest write of
//!   an equally long window with no switch.
//!
//! Run: `cargo bench --bench modes` (needs qemu-utils). Prints Markdown
//! rows for BENCHMARKS.md.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{percentile, Nbd};
use replicim::lab::{Lab, Options, Ports, Site};
use replicim::rcopy::{self, console::GroupRow, console::Wait};
use replicim::sim::Rng;

const EXE: &str = env!("CARGO_BIN_EXE_replicim");
const BS: u64 = 4096;

fn lab(dir: &Path, volumes: Vec<(String, u64)>) -> Lab {
    let mut opts = Options::new(dir, Path::new(EXE));
    opts.ports = Ports::free();
    opts.password = Some("bench".into());
    opts.heartbeat_ms = 200;
    opts.timeout_ms = 5000;
    opts.volumes = volumes;
    let lab = Lab::start(opts).unwrap();
    lab.provision().unwrap();
    lab
}

fn rcopy(lab: &Lab, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    lab.console(Site::A)
        .unwrap()
        .run(&rcopy::parse(&words).unwrap(), Wait::Yes, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{line}: {e}"));
}

fn group(lab: &Lab) -> GroupRow {
    let mut c = lab.console(Site::A).unwrap();
    c.show()
        .unwrap()
        .into_iter()
        .find(|g| g.name == "rcg0")
        .unwrap()
}

fn volumes() -> Vec<(String, u64)> {
    ["vol0", "vol1", "solo"]
        .iter()
        .map(|v| (v.to_string(), 256))
        .collect()
}

/// `mode` async: cycles run back to back (a write lands in a cycle's
/// point and the last point: two copy-on-write saves on a first write).
/// `mode` periodic (manual cycles, none run): the last point only (one
/// save), which splits the async cost into its parts.
fn async_latency(dir: &Path, mode: &str) {
    let lab = lab(dir, volumes());
    rcopy(&lab, &format!("setrcopygroup mode {mode} rcg0"));
    let (mut t_rep, mut t_solo) = common::paired_writes(lab.opts.ports.a.nbd, "vol0", "solo");
    let g = group(&lab);
    assert_eq!(g.mode.to_lowercase(), mode);
    let (p50r, p99r) = (percentile(&mut t_rep, 0.5), percentile(&mut t_rep, 0.99));
    let (p50s, p99s) = (percentile(&mut t_solo, 0.5), percentile(&mut t_solo, 0.99));
    let what = match mode {
        "async" => "async (cycles running back to back)",
        _ => "periodic with manual cycles (none running: one snapshot, the last point)",
    };
    println!(
        "| {what}: 4 KiB write latency through NBD (vol0, rcg0) | p50 {p50r:.0} µs, p99 {p99r:.0} µs | unreplicated volume on the same array: p50 {p50s:.0} µs, p99 {p99s:.0} µs | **{:.2}x** (target for async ≤ 1.1) |",
        p50r / p50s
    );
}

/// 64 KiB writes paced at `mb_s`, for `secs`, to `export`; each write's
/// latency (µs) and, every 250 ms, `sample()`.
fn paced(port: u16, export: &str, mb_s: f64, secs: f64, sample: &mut dyn FnMut(f64)) -> Vec<f64> {
    let mut c = Nbd::connect(port, export);
    let data = vec![0x5au8; 65536];
    let mut rng = Rng::new(7);
    let per = Duration::from_secs_f64(65536.0 / (mb_s * 1e6));
    let t0 = Instant::now();
    let mut next_sample = 0.0;
    let mut lat = Vec::new();
    let mut n = 0u32;
    while t0.elapsed().as_secs_f64() < secs {
        let off = rng.below(16384 * 4 / 16) * 65536;
        let t = Instant::now();
        c.write(off, &data);
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        n += 1;
        if let Some(wait) = (per * n).checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        let now = t0.elapsed().as_secs_f64();
        if now >= next_sample {
            sample(now);
            next_sample += 0.25;
        }
    }
    lat
}

fn throttled(dir: &Path) {
    let lab = lab(dir, volumes());
    let port = lab.opts.ports.a.nbd;
    rcopy(&lab, "setrcopygroup mode async rcg0");
    rcopy(&lab, "setrcopygroup pol max_lag=3s rcg0");
    let mut base = paced(port, "solo", 50.0, 4.0, &mut |_| {});
    lab.throttle(Some(10_000_000));
    let mut trip: Option<f64> = None;
    let mut trace = Vec::new();
    let mut c = lab.console(Site::A).unwrap();
    let mut rep = paced(port, "vol0", 50.0, 8.0, &mut |t| {
        let g = c
            .show()
            .unwrap()
            .into_iter()
            .find(|g| g.name == "rcg0")
            .unwrap();
        if g.status == "Error" && trip.is_none() {
            trip = Some(t);
        }
        trace.push(format!(
            "{t:.2}s {} {:.1} MiB {:.2}s",
            g.status,
            g.lag_bytes as f64 / 1048576.0,
            g.lag_ms as f64 / 1000.0
        ));
    });
    lab.throttle(None);
    let (p50r, p99r) = (percentile(&mut rep, 0.5), percentile(&mut rep, 0.99));
    let (p50s, p99s) = (percentile(&mut base, 0.5), percentile(&mut base, 0.99));
    let every: Vec<&String> = trace.iter().step_by(4).collect();
    println!(
        "| 64 KiB writes paced at 50 MB/s for 8 s, async, link throttled to 10 MB/s, max_lag=3s: lag each second (status, lag bytes, oldest unapplied write) {every:?}; Error tripped at {} | host write p50 {p50r:.0} µs, p99 {p99r:.0} µs | the same writes to an unreplicated volume, link unthrottled: p50 {p50s:.0} µs, p99 {p99s:.0} µs | **{:.2}x** (target ≤ 1.2) |",
        trip.map_or("never".to_string(), |t| format!("{t:.2} s")),
        p50r / p50s
    );
}

fn switch_stall(dir: &Path) {
    let lab = lab(dir, volumes());
    let port = lab.opts.ports.a.nbd;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = stop.clone();
    let t0 = Instant::now();
    let writer = std::thread::spawn(move || {
        let mut c = Nbd::connect(port, "vol0");
        let data = vec![0x3cu8; BS as usize];
        let mut rng = Rng::new(9);
        let mut out = Vec::new();
        while !stop_w.load(std::sync::atomic::Ordering::SeqCst) {
            let start = t0.elapsed().as_secs_f64();
            let t = Instant::now();
            c.write(rng.below(65536) * BS, &data);
            out.push((start, t.elapsed().as_secs_f64() * 1e3));
        }
        out
    });
    let mut marks = Vec::new();
    std::thread::sleep(Duration::from_secs(2));
    for mode in ["async", "sync"] {
        let a = t0.elapsed().as_secs_f64();
        rcopy(&lab, &format!("setrcopygroup mode {mode} rcg0"));
        // The switch to sync resyncs what async left behind: until every
        // pair is Synced again. (An async group under load is always in
        // a cycle: its switch ends with the command.)
        while mode == "sync"
            && group(&lab)
                .volumes
                .iter()
                .any(|v| v.sync_status != "Synced")
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        marks.push((mode, a, t0.elapsed().as_secs_f64()));
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let w = writer.join().unwrap();
    let worst = |from: f64, to: f64| {
        w.iter()
            .filter(|(s, _)| *s >= from && *s <= to)
            .map(|(_, l)| *l)
            .fold(0.0f64, f64::max)
    };
    let quiet = worst(0.5, 1.9);
    for (mode, a, b) in marks {
        println!(
            "| longest 4 KiB host write (one in flight) during the live switch to {mode} under load ({:.0} ms, to Synced for sync) | {:.1} ms | longest write of the 1.4 s before any switch: {quiet:.1} ms | {:.2}x |",
            (b - a) * 1e3,
            worst(a - 0.01, b + 0.05),
            worst(a - 0.01, b + 0.05) / quiet
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (want, run) = common::bench_main("mode");
    if want("async") {
        run("async-latency", &|d| async_latency(d, "async"));
        run("periodic-latency", &|d| async_latency(d, "periodic"));
    }
    if want("throttled") {
        run("throttled", &throttled);
    }
    if want("switch") {
        run("switch", &switch_stall);
    }
}
