//! Issue 13 in the lab: two `replicim serve` processes behind the fault
//! switch. A sync group goes to Error under a throttled link while host
//! writes stay fast, then resyncs only the delta; a group switched between
//! sync, async and periodic under a continuous qemu-io write load loses no
//! acknowledged write on either side.

use std::time::{Duration, Instant};

use replicim::lab::crash::Acked;
use replicim::lab::{qemu, Lab, Site};

use crate::lab::{counters, expect, rcopy, same};

const BS: u64 = 4096;
const SYNCED_P: (&str, &str, u16, u16, u16, bool) = ("Primary", "Synced", 4, 6, 2, false);

/// `n` one-block writes to vol0 at `first..`, in one qemu-io run; the time
/// it took.
fn timed_writes(lab: &Lab, first: u64, n: u64, fill: u8, acked: &mut Acked) -> Duration {
    let cmds: Vec<(u64, u8)> = (first..first + n).map(|b| (b, fill)).collect();
    let lines: Vec<String> = cmds
        .iter()
        .map(|(b, f)| format!("write -P {f} {} {BS}", b * BS))
        .collect();
    let t0 = Instant::now();
    let (ok, out) = qemu::io_output(&lab.nbd_url(Site::A, "vol0"), &lines).unwrap();
    let took = t0.elapsed();
    assert!(ok, "host writes failed: {out}");
    acked.record("vol0", &cmds, &out).unwrap();
    took
}

/// rcg0 as showrcopy lists it on site-a.
pub fn group_row(lab: &Lab) -> replicim::rcopy::console::GroupRow {
    let mut c = lab.console(Site::A).unwrap();
    c.show()
        .unwrap()
        .into_iter()
        .find(|g| g.name == "rcg0")
        .expect("rcg0")
}

#[test]
fn a_sync_group_goes_to_error_under_a_throttled_link_and_resyncs_the_delta() {
    // The link is declared down only after 5 s of silence: a slow link
    // stays a slow link, not a failure.
    let t = crate::lab::lab_up_with(true, 5000);
    let lab = &t.lab;
    let mut acked = Acked::default();
    rcopy(lab, Site::A, "setrcopygroup pol max_lag=300ms rcg0").unwrap();
    let fast = timed_writes(lab, 0, 20, 0x11, &mut acked);
    println!("  20 sync writes, link unthrottled: {fast:?}");
    // 8 KiB/s: one 4 KiB write takes half a second to reach B.
    lab.throttle(Some(8 * 1024));
    let t0 = Instant::now();
    let first = timed_writes(lab, 100, 1, 0x22, &mut acked);
    println!("  the write that tripped the group took {first:?}");
    assert!(
        first >= Duration::from_millis(300) && first < Duration::from_secs(4),
        "the first write waits for the bound, and not much longer: {first:?}"
    );
    expect(
        lab,
        Site::A,
        ("Primary", "Stopped", 5, 12, 2, false),
        "the Error state (Broken)",
    );
    let g = group_row(lab);
    assert_eq!(g.status, "Error", "{g:?}");
    let why = g.error.clone().unwrap_or_default();
    assert!(why.contains("max_lag 300 ms"), "{why}");
    println!(
        "  showrcopy: {} ({why}), {:?} after the write",
        g.status,
        t0.elapsed()
    );
    // Host writes stay fast: 200 writes while the link crawls (each would
    // take half a second if it still waited for B).
    let (_, sync_before, _) = counters(lab, Site::A);
    let after = timed_writes(lab, 200, 200, 0x33, &mut acked);
    println!("  200 writes in Error, link still throttled: {after:?}");
    assert!(after < Duration::from_secs(20), "writes waited: {after:?}");
    assert_eq!(group_row(lab).status, "Error", "no auto_recover: stays");
    // The link is fast again; a delta resync by hand.
    lab.throttle(None);
    rcopy(lab, Site::A, "startrcopygroup rcg0").unwrap();
    expect(lab, Site::A, SYNCED_P, "resumed and synced");
    let (_, sync_after, _) = counters(lab, Site::A);
    let resent = (sync_after - sync_before) / BS;
    println!("  the resync sent {resent} blocks (201 written since the trip)");
    assert!(
        (201..=260).contains(&resent),
        "only the blocks written since the trip: {resent}"
    );
    assert_eq!(group_row(lab).error, None);
    acked.check(lab, Site::B).unwrap();
    same(lab);
}

#[test]
fn mode_switches_under_write_load_lose_no_acknowledged_write() {
    let t = crate::lab::lab_up(true);
    let lab = &t.lab;
    let url = lab.nbd_url(Site::A, "vol0");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_w = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut acked = Acked::default();
        let mut batch = 0u64;
        let mut longest = Duration::ZERO;
        while !stop_w.load(std::sync::atomic::Ordering::SeqCst) {
            let cmds: Vec<(u64, u8)> = (0..50u64)
                .map(|i| ((batch * 50 + i) * 13 % 16000, (1 + (batch + i) % 250) as u8))
                .collect();
            let lines: Vec<String> = cmds
                .iter()
                .map(|(b, f)| format!("write -P {f} {} {BS}", b * BS))
                .collect();
            let t0 = Instant::now();
            let (ok, out) = qemu::io_output(&url, &lines).unwrap();
            longest = longest.max(t0.elapsed());
            assert!(ok, "a host write failed during a switch: {out}");
            acked.record("vol0", &cmds, &out).unwrap();
            batch += 1;
        }
        (acked, batch, longest)
    });
    for mode in ["async", "sync", "periodic", "async", "periodic", "sync"] {
        std::thread::sleep(Duration::from_millis(600));
        rcopy(lab, Site::A, &format!("setrcopygroup mode {mode} rcg0")).unwrap();
        let g = group_row(lab);
        assert_eq!(g.status, "Started", "{mode}: {g:?}");
        assert_eq!(g.mode.to_lowercase(), mode, "{g:?}");
        println!("  switched to {mode} under load");
    }
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, batches, longest) = writer.join().unwrap();
    println!("  {batches} batches of 50 writes; the longest batch took {longest:?}");
    expect(lab, Site::A, SYNCED_P, "back in sync mode, synced");
    let a = acked.check(lab, Site::A).unwrap();
    let b = acked.check(lab, Site::B).unwrap();
    println!("  {a} acknowledged blocks read back on A, {b} on B");
    same(lab);
}
