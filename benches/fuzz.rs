//! The fuzz targets of `replicim::sim::fuzz`, run for as long as asked:
//!
//! ```sh
//! cargo bench --bench fuzz -- [--target decoder|messages|all] [--iterations N] [--seed S]
//! ```
//!
//! Prints the executions, how many inputs were refused, and the rate; a
//! failure prints the seed that replays it and exits non-zero.

use std::time::Instant;

use replicim::sim::fuzz;

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = arg(&args, "--target").unwrap_or("all");
    let n: u64 = arg(&args, "--iterations")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = arg(&args, "--seed")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let mut failed = false;
    if matches!(target, "decoder" | "all") {
        let t0 = Instant::now();
        let c = fuzz::decoder(seed, n);
        let s = t0.elapsed().as_secs_f64();
        println!(
            "fuzz decoder: seed {seed}, {} executions, {} refused, 0 crashes, {:.1} s ({:.0}/s)",
            c.executions,
            c.refused,
            s,
            c.executions as f64 / s
        );
    }
    if matches!(target, "messages" | "all") {
        let t0 = Instant::now();
        match fuzz::messages(seed, n) {
            Ok(c) => {
                let s = t0.elapsed().as_secs_f64();
                println!(
                    "fuzz messages: seed {seed}, {} executions, {} refused (sessions dropped), 0 crashes, {:.1} s ({:.0}/s)",
                    c.executions,
                    c.refused,
                    s,
                    c.executions as f64 / s
                );
            }
            Err(e) => {
                println!("fuzz messages FAILED: {e}");
                failed = true;
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
