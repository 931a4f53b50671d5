//! The crash soak: thousands of seeded kill -9 points on a lab of two
//! `serve` processes, beside a CPU load that keeps both cores busy (a race
//! between commit, send and ack shows up under load, not on a quiet
//! machine). Not a timed test: run it by hand, and record what it prints in
//! RELIABILITY.md.
//!
//! ```sh
//! cargo bench --bench soak -- --points 1000 [--seed N] [--load T] [--chunk P]
//! ```
//!
//! `--load T` runs T busy threads (default: one per core; 0 for none).
//! The points run in chunks of `--chunk` (default 100) on a fresh lab each,
//! seeds `N`, `N+1`, ...; a failure stops the soak, keeps that lab's
//! directory and prints its seed. The last line:
//! `crash soak: N points, K acknowledged blocks checked, L lost, S stuck`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use replicim::lab::crash::{self, Acked};
use replicim::lab::{Lab, Options, Ports};

const EXE: &str = env!("CARGO_BIN_EXE_replicim");

fn arg(args: &[String], name: &str) -> Option<u64> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let points = arg(&args, "--points").unwrap_or(1000);
    let chunk = arg(&args, "--chunk").unwrap_or(100).max(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let load = arg(&args, "--load").unwrap_or(cores as u64);
    let seed = arg(&args, "--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() % 1_000_000)
            .unwrap_or(1)
    });
    println!(
        "crash soak: {points} points in chunks of {chunk} from seed {seed}, beside {load} busy threads on {cores} cores"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let burners: Vec<_> = (0..load)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x: u64 = 1;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    }
                    std::hint::black_box(x);
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let (mut done, mut checked, mut lost, mut stuck) = (0u64, 0usize, 0u64, 0u64);
    let mut failure = None;
    let mut n = 0;
    while done < points {
        let count = chunk.min(points - done);
        let s = seed + n;
        n += 1;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut opts = Options::new(dir.path(), Path::new(EXE));
        opts.ports = Ports::free();
        opts.password = Some("soak".into());
        opts.heartbeat_ms = 100;
        opts.timeout_ms = 600;
        let lab = match Lab::start(opts).and_then(|lab| lab.provision().map(|_| lab)) {
            Ok(lab) => lab,
            Err(e) => {
                failure = Some((s, format!("lab start: {e}"), dir.keep()));
                break;
            }
        };
        let mut acked = Acked::default();
        let r = crash::run_points(&lab, s, count, &mut acked, &mut |l| {
            if !l.starts_with("  point") {
                println!("{l}");
            }
        });
        lab.stop();
        match r {
            Ok(sum) => {
                done += sum.points;
                checked += sum.checked;
                println!(
                    "  seed {s}: {} points (writes {}, resyncs {}, role changes {}; A {}, B {}), {} blocks checked; {done}/{points} in {:.0?}",
                    sum.points,
                    sum.kinds[0],
                    sum.kinds[1],
                    sum.kinds[2],
                    sum.victims[0],
                    sum.victims[1],
                    sum.checked,
                    t0.elapsed()
                );
            }
            Err(e) => {
                if e.contains("acknowledged write lost") {
                    lost += 1;
                } else if e.contains("stuck") {
                    stuck += 1;
                }
                failure = Some((s, e, dir.keep()));
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        let _ = b.join();
    }
    if let Some((s, e, dir)) = &failure {
        println!(
            "FAILED at seed {s} (replay: REPLICIM_CRASH_SEED={s} REPLICIM_CRASH_POINTS={chunk} cargo test --release seeded_kill_points): {e}\n  lab kept in {}",
            dir.display()
        );
    }
    println!(
        "crash soak: {done} points, {checked} acknowledged blocks checked, {lost} lost, {stuck} stuck ({:.0?}{})",
        t0.elapsed(),
        if failure.is_some() { ", stopped by a failure" } else { "" }
    );
    if failure.is_some() {
        std::process::exit(1);
    }
}
