//! Two simulated arrays, site-a and site-b, each behind its own CIM-XML
//! server (HTTP, no authentication), with remote-copy group rcg0
//! (synchronous, vol0 and vol1) started and synced from site-a to site-b.
//! Simulated time follows the wall clock. Runs until Ctrl-C.
//!
//! A light alternative to the lab (`replicim lab`: real processes, with
//! authentication) for trying consoles against the SMI-S provider:
//!
//! ```text
//! cargo run --release --example sim_pair [ADDR_A ADDR_B]
//! ```
//! Defaults: 127.0.0.1:5988 and 127.0.0.1:15988.

use replicim::conformance::cim_driver::CimDriver;
use replicim::conformance::core_driver::{SITE_A, SITE_B};
use replicim::conformance::{Driver, Step};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (a, b) = match args.as_slice() {
        [] => ("127.0.0.1:5988".to_string(), "127.0.0.1:15988".to_string()),
        [a, b] => (a.clone(), b.clone()),
        _ => {
            eprintln!("usage: sim_pair [ADDR_A ADDR_B]");
            std::process::exit(2);
        }
    };
    let mut d = CimDriver::start_at(&a, &b).unwrap_or_else(|e| {
        eprintln!("sim_pair: {e}");
        std::process::exit(1);
    });
    let setup = ["setup sync", "write A vol0 0..64 0x11", "settle"];
    if let Err(e) = d.reset() {
        eprintln!("sim_pair: {e}");
        std::process::exit(1);
    }
    for line in setup {
        let step = Step::parse(line).expect("step");
        if let Err(e) = d.step(&step) {
            eprintln!("sim_pair: {line}: {e}");
            std::process::exit(1);
        }
    }
    let _clock = d.wall_clock();
    println!(
        "site-a: http://{}  (namespace root/cimv2, interop root/interop)",
        d.hosts()[SITE_A]
    );
    println!("site-b: http://{}", d.hosts()[SITE_B]);
    println!(
        "remote-copy group rcg0 (sync, vol0 and vol1) is started and synced, site-a -> site-b"
    );
    println!(
        "try: replicim rcopy --url http://{} showrcopy",
        d.hosts()[SITE_A]
    );
    println!("Ctrl-C stops both arrays.");
    loop {
        std::thread::park();
    }
}
