//! A short run of the fuzz targets on every test run (the long runs are
//! `cargo bench --bench fuzz`, recorded in RELIABILITY.md). The seed is
//! printed; `REPLICIM_FUZZ_SEED=N` replays it.

use replicim::sim::fuzz;

fn seed() -> u64 {
    std::env::var("REPLICIM_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        })
}

#[test]
fn the_link_decoder_takes_any_bytes() {
    let s = seed();
    let c = fuzz::decoder(s, 20_000);
    println!(
        "fuzz decoder: seed {s}, {} executions, {} refused",
        c.executions, c.refused
    );
    assert_eq!(c.executions, 20_000);
    assert!(c.refused > 0, "the inputs never reached a refusal");
}

#[test]
fn no_message_stops_an_array() {
    let s = seed();
    let c = fuzz::messages(s, 3_000).unwrap_or_else(|e| panic!("{e}"));
    println!(
        "fuzz messages: seed {s}, {} executions, {} refused",
        c.executions, c.refused
    );
    assert!(c.refused > 0, "no message was ever refused");
}
