//! Two array processes (`replicim serve`) behind the lab's fault switch:
//! the DR table with real SIGKILLs and qemu-io, link failures with the
//! link's byte counters, a periodic cycle cut by a kill, seeded kill -9
//! crash points, and the `replicim lab` command line itself.
//!
//! Every test prints what it measured; a crash-point run prints its seed
//! (`REPLICIM_CRASH_SEED=N` replays it, `REPLICIM_CRASH_POINTS=N` sets how
//! many kill points).

use std::path::Path;
use std::time::{Duration, Instant};

use replicim::conformance::Observed;
use replicim::lab::crash::{self, Acked};
use replicim::lab::{qemu, Lab, Options, Ports, Site};
use replicim::rcopy::{self, console::Wait};
use replicim::sim::Rng;

const BS: u64 = 4096;
const EXE: &str = env!("CARGO_BIN_EXE_replicim");
const WAIT: Duration = Duration::from_secs(60);

/// A lab in its own directory on free ports; heartbeats every 100 ms, link
/// declared down after 600 ms of silence.
pub struct TestLab {
    pub lab: Lab,
    dir: Option<tempfile::TempDir>,
}

impl Drop for TestLab {
    /// A failed test keeps its lab directory (logs, journals) and says where.
    fn drop(&mut self) {
        self.lab.stop();
        if std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                eprintln!("lab directory kept: {}", d.keep().display());
            }
        }
    }
}

pub fn lab_up(provision: bool) -> TestLab {
    lab_up_with(provision, 600)
}

/// [`lab_up`] with the link declared down after `timeout_ms` of silence.
pub fn lab_up_with(provision: bool, timeout_ms: u64) -> TestLab {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(dir.path(), Path::new(EXE));
    opts.ports = Ports::free();
    opts.password = Some("lab-test".into());
    opts.heartbeat_ms = 100;
    opts.timeout_ms = timeout_ms;
    let lab = Lab::start(opts).unwrap_or_else(|e| panic!("lab start: {e}"));
    if provision {
        lab.provision().unwrap_or_else(|e| panic!("provision: {e}"));
    }
    TestLab {
        lab,
        dir: Some(dir),
    }
}

/// An rcopy command through CIM-XML, waiting for the job it starts (and
/// retrying, bounded, while the array says to retry in a moment).
pub fn rcopy(lab: &Lab, s: Site, line: &str) -> Result<(), String> {
    crash::rcopy(lab, s, line, Wait::Yes)
}

pub fn observe(lab: &Lab, s: Site) -> Result<Vec<Observed>, String> {
    crash::observe(lab, s)
}

/// (role, status, CopyState, SyncState, ProgressStatus, RoleReversed) of
/// every pair of rcg0 on `s`.
type Tuple = (&'static str, &'static str, u16, u16, u16, bool);

/// Waits until every pair on `s` shows `want`; panics with what it saw.
pub fn expect(lab: &Lab, s: Site, want: Tuple, what: &str) {
    let t0 = Instant::now();
    let mut last: String;
    loop {
        match observe(lab, s) {
            Ok(seen) => {
                let ok = seen.iter().all(|o| {
                    (
                        o.role.as_str(),
                        o.status.as_str(),
                        o.copy_state,
                        o.sync_state,
                        o.progress,
                        o.role_reversed,
                    ) == want
                });
                if ok && !seen.is_empty() {
                    println!("  {what}: {} shows {want:?}", s.name());
                    return;
                }
                last = format!("{seen:?}");
            }
            Err(e) => last = e,
        }
        if t0.elapsed() > WAIT {
            panic!("{what}: {} never showed {want:?}; last: {last}", s.name());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The link byte counters an array exposes on RCM_ReplicationService:
/// (WriteBytesSent, SyncBytesSent, BytesApplied).
pub fn counters(lab: &Lab, s: Site) -> (u64, u64, u64) {
    lab.link_counters(s).unwrap()
}

/// Both arrays hold the same bytes in both volumes (qemu-img compare, and
/// SHA-256 of each whole volume read over NBD).
pub fn same(lab: &Lab) {
    for v in ["vol0", "vol1"] {
        let (a, b) = (lab.nbd_url(Site::A, v), lab.nbd_url(Site::B, v));
        assert!(qemu::same(&a, &b).unwrap(), "{v} differs between A and B");
        let scratch = lab.opts.dir.join("sum.img");
        let (ha, hb) = (
            qemu::sha256(&a, &scratch).unwrap(),
            qemu::sha256(&b, &scratch).unwrap(),
        );
        assert_eq!(ha, hb, "{v}: checksums differ");
    }
}

const SYNCED_P: Tuple = ("Primary", "Synced", 4, 6, 2, false);
const SYNCED_S: Tuple = ("Secondary", "Synced", 4, 6, 2, false);

/// The DR scenario, with the tables' rows checked at every step:
/// writes on A, kill A, failover on B, every acknowledged write on B,
/// writes on B, A back, a recover cut by the link (rows 8 and 10), recover
/// (rows 5-7, 9), checksums equal, restore (row 15), writes on A seen on B.
#[test]
fn dr_table_with_real_kills_and_qemu_io() {
    let t = lab_up(true);
    let lab = &t.lab;
    let mut rng = Rng::new(0x5eed_0d12);
    let mut acked = Acked::default();
    for (i, vol) in ["vol0", "vol1", "vol0", "vol1"].iter().enumerate() {
        let writes: Vec<(u64, u64, u8)> = (0..12)
            .map(|_| (rng.below(16000), 1 + rng.below(16), 0x10 + i as u8))
            .collect();
        acked.write(lab, Site::A, vol, &writes).unwrap();
    }
    expect(lab, Site::A, SYNCED_P, "writes replicated");
    expect(lab, Site::B, SYNCED_S, "writes replicated");

    lab.kill(Site::A).unwrap();
    expect(
        lab,
        Site::B,
        ("Secondary", "Stopped", 5, 12, 2, false),
        "row 1",
    );

    rcopy(lab, Site::B, "setrcopygroup failover rcg0").unwrap();
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Stopped", 10, 12, 2, true),
        "row 3a",
    );
    let n = acked.check(lab, Site::B).unwrap();
    println!("  {n} acknowledged blocks read back on B after the failover");

    // New data on B, enough that a throttled recover takes a while.
    for vol in ["vol0", "vol1"] {
        let writes: Vec<(u64, u64, u8)> = (0..8)
            .map(|i| (2000 + i * 700 + rng.below(100), 32, 0x60))
            .collect();
        acked.write(lab, Site::B, vol, &writes).unwrap();
    }

    lab.start_site(Site::A).unwrap();
    expect(
        lab,
        Site::A,
        ("Secondary-Rev", "Stopped", 5, 12, 2, true),
        "row 4",
    );
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Stopped", 5, 12, 2, true),
        "row 3b",
    );

    // A recover cut short: throttle, start it, cut the link while it runs.
    lab.throttle(Some(64 * 1024));
    let console_b = std::thread::spawn({
        let port = lab.opts.ports.b.http;
        move || {
            let c = replicim::cim::client::Client::new(
                &format!("127.0.0.1:{port}"),
                Some(("admin", "lab-test")),
            );
            let mut console = replicim::rcopy::console::Console::connect(c).unwrap();
            let cmd = rcopy::parse(&["setrcopygroup", "recover", "rcg0"]).unwrap();
            console.run(&cmd, Wait::Yes, &mut |_, _| {})
        }
    });
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Syncing", 3, 10, 8, true),
        "row 5",
    );
    expect(
        lab,
        Site::A,
        ("Secondary-Rev", "Syncing", 3, 10, 8, true),
        "row 6",
    );
    lab.link(false);
    let r = console_b.join().unwrap();
    assert!(
        r.is_err(),
        "a recover cut by the link must fail its job: {r:?}"
    );
    println!("  recover job failed as it should: {}", r.unwrap_err());
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Stopped", 10, 12, 2, true),
        "row 8",
    );
    expect(
        lab,
        Site::A,
        ("Secondary-Rev", "Stopped", 10, 12, 2, true),
        "row 10",
    );
    lab.throttle(None);
    lab.link(true);
    lab.wait_link(Site::B, true, WAIT).unwrap();

    let before = counters(lab, Site::B).1;
    rcopy(lab, Site::B, "setrcopygroup recover rcg0").unwrap();
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Synced", 4, 6, 2, true),
        "row 7",
    );
    expect(
        lab,
        Site::A,
        ("Secondary-Rev", "Synced", 4, 6, 2, true),
        "row 9",
    );
    println!("  recover sent {} bytes", counters(lab, Site::B).1 - before);
    same(lab);

    rcopy(lab, Site::B, "setrcopygroup restore rcg0").unwrap();
    expect(lab, Site::A, SYNCED_P, "row 15");
    expect(lab, Site::B, SYNCED_S, "after restore");
    acked.write(lab, Site::A, "vol1", &[(7, 3, 0x77)]).unwrap();
    qemu::io(
        &lab.nbd_url(Site::B, "vol1"),
        &[format!("read -P 0x77 {} {}", 7 * BS, 3 * BS)],
    )
    .unwrap();
    // B is a secondary again: its volumes refuse host writes.
    let refused = qemu::io(&lab.nbd_url(Site::B, "vol0"), &["write 0 4096".into()]);
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("Operation not permitted")),
        "{refused:?}"
    );
    let n = acked.check(lab, Site::A).unwrap();
    println!("  {n} acknowledged blocks read back on A at the end");
    same(lab);
}

/// Link down while A keeps writing: the group stops, A keeps snapshots of
/// the synced volumes, and the resync after the link is back sends exactly
/// the changed blocks — by startrcopygroup, then by auto_recover.
#[test]
fn link_failure_resyncs_only_the_changed_blocks() {
    let t = lab_up(true);
    let lab = &t.lab;
    let mut rng = Rng::new(0x11_4c);
    let mut acked = Acked::default();
    acked
        .write(lab, Site::A, "vol0", &[(0, 256, 0x01)])
        .unwrap();
    acked
        .write(lab, Site::A, "vol1", &[(0, 256, 0x02)])
        .unwrap();
    expect(lab, Site::B, SYNCED_S, "baseline");
    let snaps = |lab: &Lab| {
        std::fs::read_dir(lab.opts.dir.join("site-a/array/data/snaps"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    for (round, auto) in [(0u8, false), (1, true)] {
        if auto {
            rcopy(lab, Site::A, "setrcopygroup pol auto_recover rcg0").unwrap();
        }
        let (_, sync0, _) = counters(lab, Site::A);
        assert_eq!(snaps(lab), 0, "no snapshot while synced");
        lab.link(false);
        // Writes go on; the first ones wait until A declares the link down.
        let mut changed = std::collections::BTreeSet::new();
        for vol in ["vol0", "vol1"] {
            let writes: Vec<(u64, u64, u8)> = (0..40)
                .map(|_| (rng.below(16384), 1, 0x30 + round))
                .collect();
            for (b, _, _) in &writes {
                changed.insert((vol, *b));
            }
            acked.write(lab, Site::A, vol, &writes).unwrap();
        }
        expect(
            lab,
            Site::A,
            ("Primary", "Stopped", 5, 12, 2, false),
            "link down",
        );
        let kept = snaps(lab);
        assert_eq!(kept, 2, "A keeps one snapshot per synced volume");
        println!("  link down: group stopped, {kept} snapshots kept on A");
        lab.link(true);
        if !auto {
            lab.wait_link(Site::A, true, WAIT).unwrap();
            rcopy(lab, Site::A, "startrcopygroup rcg0").unwrap();
        }
        expect(lab, Site::A, SYNCED_P, "resynced");
        let (_, sync1, _) = counters(lab, Site::A);
        let sent = sync1 - sync0;
        let bytes = changed.len() as u64 * BS;
        println!(
            "  {}: resync sent {sent} bytes for {} changed blocks ({bytes} bytes)",
            if auto {
                "auto_recover"
            } else {
                "startrcopygroup"
            },
            changed.len()
        );
        assert_eq!(
            sent, bytes,
            "the resync must send exactly the changed blocks"
        );
        // The base is dropped at the sync's end; its file goes with the
        // next commit (at most IDLE_COMMIT later).
        let t0 = Instant::now();
        while snaps(lab) != 0 {
            assert!(t0.elapsed() < WAIT, "the resync base is never dropped");
            std::thread::sleep(Duration::from_millis(20));
        }
        same(lab);
    }
    acked.check(lab, Site::B).unwrap();
}

/// A periodic group (manual cycles): a cycle cut by killing the primary
/// leaves B exactly at the last complete cycle (Stale), and after A is back
/// a small cycle ships only its delta.
#[test]
fn periodic_cycle_cut_by_a_kill_leaves_the_last_complete_cycle() {
    let t = lab_up(false);
    let lab = &t.lab;
    lab.wait_link(Site::A, true, WAIT).unwrap();
    let mut acked = Acked::default();
    acked
        .write(lab, Site::A, "vol0", &[(0, 512, 0x21)])
        .unwrap();
    acked
        .write(lab, Site::A, "vol1", &[(100, 512, 0x22)])
        .unwrap();
    for line in [
        "creatercopygroup rcg0 site-b periodic:0",
        "admitrcopyvv vol0 rcg0 site-b:vol0",
        "admitrcopyvv vol1 rcg0 site-b:vol1",
        "startrcopygroup rcg0",
    ] {
        rcopy(lab, Site::A, line).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    lab.wait_synced(Site::A, WAIT).unwrap();
    let scratch = lab.opts.dir.join("sum.img");
    let sums = |s: Site| -> Vec<[u8; 32]> {
        ["vol0", "vol1"]
            .iter()
            .map(|v| qemu::sha256(&lab.nbd_url(s, v), &scratch).unwrap())
            .collect()
    };
    let cycle1 = sums(Site::A);
    assert_eq!(sums(Site::B), cycle1, "B holds the first cycle");

    // The next cycle carries 16 MiB per volume through a 1 MiB/s link.
    acked
        .write(lab, Site::A, "vol0", &[(0, 4096, 0x31)])
        .unwrap();
    acked
        .write(lab, Site::A, "vol1", &[(4096, 4096, 0x32)])
        .unwrap();
    let (_, _, applied0) = counters(lab, Site::B);
    lab.throttle(Some(1 << 20));
    let words = ["syncrcopy", "rcg0"];
    lab.console(Site::A)
        .unwrap()
        .run(&rcopy::parse(&words).unwrap(), Wait::No, &mut |_, _| {})
        .unwrap();
    let t0 = Instant::now();
    while counters(lab, Site::B).2 < applied0 + (2 << 20) {
        assert!(t0.elapsed() < WAIT, "the cycle never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mid = counters(lab, Site::B).2 - applied0;
    lab.kill(Site::A).unwrap();
    println!("  killed A after {mid} bytes of a 32 MiB cycle reached B");
    expect(
        lab,
        Site::B,
        ("Secondary", "Stale", 13, 12, 2, false),
        "normal row Stale",
    );
    assert_eq!(
        sums(Site::B),
        cycle1,
        "B rolled back to the last complete cycle"
    );

    lab.throttle(None);
    lab.start_site(Site::A).unwrap();
    lab.wait_link(Site::A, true, WAIT).unwrap();
    rcopy(lab, Site::A, "startrcopygroup rcg0").unwrap();
    lab.wait_synced(Site::A, WAIT).unwrap();
    same(lab);
    // A small cycle ships exactly its changed blocks.
    let (_, sync0, _) = counters(lab, Site::A);
    acked
        .write(lab, Site::A, "vol1", &[(9000, 10, 0x41), (12000, 1, 0x42)])
        .unwrap();
    rcopy(lab, Site::A, "syncrcopy rcg0").unwrap();
    lab.wait_synced(Site::A, WAIT).unwrap();
    let sent = counters(lab, Site::A).1 - sync0;
    println!("  a cycle after 11 changed blocks sent {sent} bytes");
    assert_eq!(sent, 11 * BS);
    same(lab);
    acked.check(lab, Site::B).unwrap();
}

/// Seeded kill -9 points of A or B during host writes, resyncs and role
/// changes (failover, recover, restore), as `lab::crash::run_points` plays
/// them. After each: the array restarts from its journal, the pair
/// converges, every acknowledged write reads back (the write in flight at
/// a kill may or may not have landed), and both volumes are equal.
#[test]
fn seeded_kill_points_lose_no_acknowledged_write() {
    let seed: u64 = std::env::var("REPLICIM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000
        });
    let points: u64 = std::env::var("REPLICIM_CRASH_POINTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    println!("crash points: seed {seed} (replay with REPLICIM_CRASH_SEED={seed}), {points} points");
    let t = lab_up(true);
    let t_all = Instant::now();
    let mut acked = Acked::default();
    let sum = crash::run_points(&t.lab, seed, points, &mut acked, &mut |l| println!("{l}"))
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert_eq!(sum.points, points);
    assert!(sum.checked > 0, "no acknowledged write was checked");
    println!(
        "crash points: {points} kills (writes {}, resyncs {}, role changes {}; A {}, B {}) in {:?}; \
         0 acknowledged writes lost of {} blocks checked",
        sum.kinds[0], sum.kinds[1], sum.kinds[2], sum.victims[0], sum.victims[1],
        t_all.elapsed(),
        sum.checked
    );
}

/// `replicim lab` as a user runs it: the default endpoints, the banner,
/// the fault subcommands against the running lab, Ctrl-C, and a second run
/// on the same directory that reuses the state. (Uses the interface's
/// default ports, so nothing else may hold them while it runs.)
#[test]
fn the_lab_command_line_runs_faults_and_stops_cleanly() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let run_lab = || {
        // The password from the environment, as the README's commands give
        // it: nothing secret on a command line.
        let mut child = Command::new(EXE)
            .args(["lab", "--dir", &d])
            .env("REPLICIM_PASSWORD", "pw-lab")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        let t0 = Instant::now();
        while !banner.contains("Ctrl-C stops both arrays.") {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "lab ended: {banner}");
            banner += &line;
            assert!(t0.elapsed() < Duration::from_secs(120), "{banner}");
        }
        (child, out, banner)
    };
    let ctl = |args: &[&str]| -> String {
        let o = Command::new(EXE)
            .arg("lab")
            .args(args)
            .args(["--dir", &d])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "lab {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let interrupt = |mut child: std::process::Child, mut out: std::io::BufReader<_>| {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let status = child.wait().unwrap();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut rest);
        assert!(status.success(), "lab exit {status:?}: {rest}");
        assert!(rest.contains("stopped; state kept"), "{rest}");
    };

    let (child, out, banner) = run_lab();
    println!("{banner}");
    for want in [
        "http://127.0.0.1:5988",
        "https://127.0.0.1:5989",
        "nbd://127.0.0.1:10809",
        "http://127.0.0.1:15988",
        "nbd://127.0.0.1:10810",
        "created rcg0",
    ] {
        assert!(banner.contains(want), "banner lacks {want}");
    }
    assert!(!banner.contains("pw-lab"), "the banner shows the password");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("password"))
            .unwrap()
            .trim(),
        "pw-lab"
    );
    // rcopy: the password from a file or the environment; HTTPS with the
    // client certificate the lab issued, or checked against the array's CA
    // with the password; refused when nothing says how to check the server.
    let rcopy = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(EXE);
        c.arg("rcopy")
            .args(args)
            .arg("showrcopy")
            .env_remove("REPLICIM_PASSWORD");
        if let Some(pw) = env {
            c.env("REPLICIM_PASSWORD", pw);
        }
        let o = c.output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    let pwfile = format!("{d}/password");
    let client = format!("{d}/clients/site-a");
    let ca = format!("{client}/ca-cert.pem");
    for (what, args, env) in [
        (
            "--password-file",
            vec!["--url", "http://127.0.0.1:5988", "--password-file", &pwfile],
            None,
        ),
        (
            "REPLICIM_PASSWORD",
            vec!["--url", "http://127.0.0.1:5988"],
            Some("pw-lab"),
        ),
        (
            "https with a client certificate",
            vec!["--url", "https://127.0.0.1:5989", "--client-dir", &client],
            None,
        ),
        (
            "https checked against the CA",
            vec!["--url", "https://127.0.0.1:5989", "--ca-file", &ca],
            Some("pw-lab"),
        ),
    ] {
        let (ok, said) = rcopy(&args, env);
        assert!(ok && said.contains("rcg0"), "rcopy with {what}: {said}");
    }
    let (ok, said) = rcopy(&["--url", "http://127.0.0.1:5988"], Some("wrong"));
    assert!(!ok, "a wrong password was accepted: {said}");
    let (ok, said) = rcopy(&["--url", "https://127.0.0.1:5989"], Some("pw-lab"));
    assert!(
        !ok && said.contains("--ca-file"),
        "https without a way to check: {said}"
    );
    let stranger = tempfile::tempdir().unwrap();
    let other = replicim::pki::ensure(stranger.path(), "elsewhere", "elsewhere").unwrap();
    let other_ca = other.ca.to_str().unwrap().to_string();
    let (ok, said) = rcopy(
        &["--url", "https://127.0.0.1:5989", "--ca-file", &other_ca],
        Some("pw-lab"),
    );
    assert!(
        !ok,
        "a server certificate from another CA was trusted: {said}"
    );
    println!("  rcopy: password file, environment, https with a client certificate and with the CA: served; a stranger CA: refused ({})", said.trim());
    qemu::io("nbd://127.0.0.1:10809/vol0", &["write -P 0x5c 0 1M".into()]).unwrap();
    qemu::io("nbd://127.0.0.1:10810/vol0", &["read -P 0x5c 0 1M".into()]).unwrap();
    assert_eq!(
        ctl(&["status"]),
        "site-a running, sees the link up; site-b running, sees the link up; switch up"
    );
    ctl(&["link", "down"]);
    assert!(ctl(&["status"]).ends_with("switch down"));
    // Each array notices on its own, after its heartbeat timeout.
    let t0 = Instant::now();
    while !ctl(&["status"]).starts_with("site-a running, sees the link down") {
        assert!(t0.elapsed() < WAIT, "site-a never saw the link down");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A keeps writing: the first write waits out the link timeout.
    qemu::io(
        "nbd://127.0.0.1:10809/vol1",
        &["write -P 0x6d 0 64k".into()],
    )
    .unwrap();
    ctl(&["link", "up"]);
    ctl(&["link", "throttle", "100000"]);
    assert!(ctl(&["status"]).contains("throttled to 100000 bytes/s"));
    ctl(&["link", "throttle", "off"]);
    ctl(&["kill", "A"]);
    assert!(ctl(&["status"]).starts_with("site-a down"));
    ctl(&["start", "A"]);
    assert!(ctl(&["status"]).starts_with("site-a running"));
    let bad = Command::new(EXE)
        .args(["lab", "kill", "C", "--dir", &d])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("A (site-a) and B (site-b)"));
    interrupt(child, out);
    assert!(!replicim::lab::listening(5988) && !replicim::lab::listening(15988));
    let gone = Command::new(EXE)
        .args(["lab", "status", "--dir", &d])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no lab is running"));

    // The same directory again: the state is reused, the data is there.
    let (child, out, banner) = run_lab();
    assert!(
        banner.contains("rcg0 exists already") && banner.contains("restarted it"),
        "{banner}"
    );
    qemu::io(
        "nbd://127.0.0.1:10809/vol0",
        &["write -P 0x7e 8M 64k".into()],
    )
    .unwrap();
    qemu::io(
        "nbd://127.0.0.1:10810/vol0",
        &["read -P 0x7e 8M 64k".into()],
    )
    .unwrap();
    qemu::io("nbd://127.0.0.1:10809/vol0", &["read -P 0x5c 0 1M".into()]).unwrap();
    qemu::io("nbd://127.0.0.1:10809/vol1", &["read -P 0x6d 0 64k".into()]).unwrap();
    interrupt(child, out);
}

/// A TLS stream to site-b's link port.
type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// A TLS connection to site-b's link port as `identity`, trusting site-b's
/// pinned certificate.
fn tls_to_b(lab: &Lab, identity: replicim::link::tls::Identity) -> Tls {
    use replicim::lab::{link_dir, Site as S};
    let b = replicim::link::tls::ensure_identity(&link_dir(&lab.opts.dir, S::B), "site-b").unwrap();
    let tls = replicim::link::tls::LinkTls {
        identity,
        peers: std::collections::BTreeMap::from([("site-b".to_string(), vec![b.fingerprint()])]),
    };
    let conn = rustls::ClientConnection::new(
        tls.client("site-b").unwrap(),
        "replicim-link".try_into().unwrap(),
    )
    .unwrap();
    let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{}", lab.opts.ports.b.link)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// site-a's own identity (read from its data directory), at site-b.
fn genuine_site_a(lab: &Lab) -> Tls {
    let a = replicim::link::tls::ensure_identity(
        &replicim::lab::link_dir(&lab.opts.dir, Site::A),
        "site-a",
    )
    .unwrap();
    tls_to_b(lab, a)
}

/// A program speaking the link protocol as site-a — with site-a's own
/// credentials, as a buggy genuine peer would — sends site-b, one
/// connection each, the malformed messages that used to stop or wedge an
/// array: a block beyond the end of a volume, a 100,000-character group
/// name, names with a slash, a SyncBlocks of 10,000 blocks, recover ranges
/// past a volume's end, a Hello naming another array, an empty volume, and
/// a frame over the size limit. Each is refused (B drops that session and
/// logs why), B keeps running, its volumes and groups are untouched, and
/// replication restarts: a write on A reads back on B.
#[test]
fn no_peer_message_stops_or_corrupts_an_array() {
    use replicim::core::{Changed, DataTag, Mode, Msg, Policies, RunBlock, BLOCK_SIZE};
    use replicim::link::{encode, Frame, Session, Timing};
    use std::io::{Read, Write};

    let t = lab_up(true);
    let lab = &t.lab;
    let mut acked = Acked::default();
    acked.write(lab, Site::A, "vol0", &[(0, 16, 0x61)]).unwrap();
    let block = || Box::new([0xeeu8; BLOCK_SIZE]);
    let long = "g".repeat(100_000);
    let bad: Vec<(&str, Frame)> = vec![
        (
            "a block beyond the end of vol0",
            Frame::Message(Msg::Data {
                group: "rcg0".into(),
                vol: "vol0".into(),
                block: 1 << 40,
                data: block(),
                tag: DataTag::Sync,
            }),
        ),
        (
            "a 100,000-character group name",
            Frame::Message(Msg::CreateGroup {
                group: long.clone(),
                mode: Mode::Sync,
                policies: Policies::default(),
            }),
        ),
        (
            "a group name with a slash",
            Frame::Message(Msg::CreateGroup {
                group: "bad/name".into(),
                mode: Mode::Sync,
                policies: Policies::default(),
            }),
        ),
        (
            "a volume name that escapes the data directory",
            Frame::Message(Msg::Admit {
                group: "rcg0".into(),
                vol: "../../etc".into(),
                source_vol: "vol0".into(),
                blocks: 16,
            }),
        ),
        (
            "an empty volume",
            Frame::Message(Msg::Admit {
                group: "rcg0".into(),
                vol: "volz".into(),
                source_vol: "volz".into(),
                blocks: 0,
            }),
        ),
        (
            "a SyncBlocks of 200 blocks",
            Frame::Message(Msg::SyncBlocks {
                group: "rcg0".into(),
                vol: "vol1".into(),
                blocks: (0..200)
                    .map(|b| RunBlock {
                        block: b,
                        data: block(),
                    })
                    .collect(),
            }),
        ),
        (
            "recover ranges past the end of vol1",
            Frame::Message(Msg::RecoverReady {
                group: "rcg0".into(),
                changed: vec![("vol1".into(), Changed::Ranges(vec![(16380, 100)]))],
            }),
        ),
        (
            "a Hello naming another array",
            Frame::Message(Msg::Hello {
                array: "site-z".into(),
                groups: vec![],
                complete: true,
            }),
        ),
    ];
    // A buggy peer, but a genuine one: it holds site-a's link identity.
    let handshake = || {
        let mut s = genuine_site_a(lab);
        let mut hello = Session::dial("site-a", "site-b", Timing::default(), Default::default());
        s.write_all(&hello.take_output()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let ev = hello.handle_input(&buf[..n], Default::default());
        assert!(hello.is_up(), "no Welcome from site-b: {ev:?}");
        s
    };
    let closed = |s: &mut Tls| {
        s.sock
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                Ok(_) => continue, // heartbeats, its own Hello
            }
        }
    };
    for (what, frame) in bad {
        let mut s = handshake();
        let mut out = Vec::new();
        encode(&frame, &mut out).unwrap();
        s.write_all(&out).unwrap();
        assert!(closed(&mut s), "{what}: site-b kept the session");
        assert!(lab.running(Site::B), "{what}: site-b stopped");
        println!("  refused: {what}");
    }
    // A frame over the 1 MiB limit: its length alone ends the session.
    {
        let mut s = handshake();
        let len = (2u32 << 20).to_be_bytes();
        s.write_all(&len).unwrap();
        let _ = s.write_all(&vec![0u8; 64 * 1024]);
        assert!(closed(&mut s), "an oversized frame kept the session");
        assert!(lab.running(Site::B), "an oversized frame stopped site-b");
        println!("  refused: a frame over the size limit");
    }
    // Nothing changed on B, and replication comes back by itself.
    let log = std::fs::read_to_string(lab.opts.dir.join("site-b.log")).unwrap();
    assert!(
        log.contains("refused a message, dropping the session"),
        "site-b logged no refusal"
    );
    assert!(!log.contains("array stopped"), "site-b logged a stop");
    let groups = lab.console(Site::B).unwrap().show().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].volumes.len(), 2);
    // Each dropped session was a link failure for the group (no
    // auto_recover in the lab): the operator starts it again.
    lab.wait_link(Site::A, true, WAIT).unwrap();
    rcopy(lab, Site::A, "startrcopygroup rcg0").unwrap();
    expect(lab, Site::B, SYNCED_S, "replicating again");
    acked
        .write(lab, Site::A, "vol1", &[(100, 8, 0x62)])
        .unwrap();
    let n = acked.check(lab, Site::B).unwrap();
    println!("  {n} acknowledged blocks read back on B after the attack");
    same(lab);
}

/// A stream that keeps a copy of everything written to it.
struct Recording {
    tcp: std::net::TcpStream,
    sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl std::io::Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.tcp.read(buf)
    }
}

impl std::io::Write for Recording {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.sent.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

use std::io::{Read as _, Write as _};

/// Impostors on the replication link, each refused by TLS before any
/// message reaches the core: a Hello with the right names but no
/// credentials (plain TCP), garbage, a replay of a genuine session's bytes,
/// and a TLS peer with a certificate nobody pinned. The real link stays up
/// throughout (site-b logs no link change), every refusal is logged with
/// its reason, and the volumes stay identical.
#[test]
fn impostors_on_the_link_are_refused_and_the_real_link_stays_up() {
    use replicim::link::{Session, Timing};
    let t = lab_up(true);
    let lab = &t.lab;
    let b_link = format!("127.0.0.1:{}", lab.opts.ports.b.link);
    // A genuine session, recorded (it replaces the real one for a moment:
    // site-a then dials again).
    let recorded = {
        let a = replicim::link::tls::ensure_identity(
            &replicim::lab::link_dir(&lab.opts.dir, Site::A),
            "site-a",
        )
        .unwrap();
        let b = replicim::link::tls::ensure_identity(
            &replicim::lab::link_dir(&lab.opts.dir, Site::B),
            "site-b",
        )
        .unwrap();
        let tls = replicim::link::tls::LinkTls {
            identity: a,
            peers: std::collections::BTreeMap::from([(
                "site-b".to_string(),
                vec![b.fingerprint()],
            )]),
        };
        let conn = rustls::ClientConnection::new(
            tls.client("site-b").unwrap(),
            "replicim-link".try_into().unwrap(),
        )
        .unwrap();
        let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tcp = std::net::TcpStream::connect(&b_link).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut s = rustls::StreamOwned::new(
            conn,
            Recording {
                tcp,
                sent: sent.clone(),
            },
        );
        let mut hello = Session::dial("site-a", "site-b", Timing::default(), Default::default());
        s.write_all(&hello.take_output()).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        hello.handle_input(&buf[..n], Default::default());
        assert!(hello.is_up(), "the genuine session was not welcomed");
        drop(s);
        let bytes = sent.lock().unwrap().clone();
        bytes
    };
    // The recording replaced the real session for a moment, a link
    // failure for the group: the operator starts it again.
    // Site-a may still see its replaced connection as up when it is asked:
    // retried (bounded) while it says the link is down, as a console would.
    let t0 = Instant::now();
    loop {
        lab.wait_link(Site::A, true, WAIT).unwrap();
        lab.wait_link(Site::B, true, WAIT).unwrap();
        match rcopy(lab, Site::A, "startrcopygroup rcg0") {
            Ok(()) => break,
            Err(e) if e.contains("is down") && t0.elapsed() < WAIT => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("startrcopygroup after the recorded session: {e}"),
        }
    }
    expect(lab, Site::B, SYNCED_S, "replicating before the impostors");
    std::thread::sleep(Duration::from_millis(500));
    let log_path = lab.opts.dir.join("site-b.log");
    let before = std::fs::read_to_string(&log_path).unwrap().len();

    let refused_by_b = |what: &str, mut s: std::net::TcpStream, bytes: &[u8]| {
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(bytes);
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        // Whatever came back, it was no Welcome: TLS alerts at most.
        let mut probe = Session::dial("site-a", "site-b", Timing::default(), Default::default());
        probe.handle_input(&got, Default::default());
        assert!(!probe.is_up(), "{what}: site-b welcomed it");
        println!("  refused: {what}");
    };
    // 1. The right names, no credentials: the link protocol in clear.
    let mut hello = Session::dial("site-a", "site-b", Timing::default(), Default::default());
    refused_by_b(
        "a Hello as site-a without credentials",
        std::net::TcpStream::connect(&b_link).unwrap(),
        &hello.take_output(),
    );
    // 2. Garbage.
    let garbage: Vec<u8> = (0..600u32).map(|i| (i * 7919 % 251) as u8).collect();
    refused_by_b(
        "garbage",
        std::net::TcpStream::connect(&b_link).unwrap(),
        &garbage,
    );
    // 3. A replay of the genuine session's bytes.
    refused_by_b(
        "a replayed genuine handshake",
        std::net::TcpStream::connect(&b_link).unwrap(),
        &recorded,
    );
    // 4. A TLS peer with a certificate no one pinned.
    {
        let dir = tempfile::tempdir().unwrap();
        let stranger = replicim::link::tls::ensure_identity(dir.path(), "site-a").unwrap();
        let mut s = tls_to_b(lab, stranger);
        let mut hello = Session::dial("site-a", "site-b", Timing::default(), Default::default());
        let _ = s.write_all(&hello.take_output());
        let mut buf = [0u8; 4096];
        let r = s.read(&mut buf);
        assert!(
            !matches!(r, Ok(n) if n > 0),
            "a stranger's certificate got an answer: {r:?}"
        );
        println!("  refused: a peer with a certificate no one pinned ({r:?})");
    }
    // The real link never moved, and both arrays hold the same bytes.
    std::thread::sleep(Duration::from_millis(1000));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let after = &log[before..];
    let refusals = after.matches("link: refused a connection").count();
    assert!(refusals >= 4, "site-b logged {refusals} refusals:\n{after}");
    assert!(
        !after.contains("link down") && !after.contains("link up"),
        "the real link changed:\n{after}"
    );
    assert!(lab.link_reported(Site::A).unwrap() && lab.link_reported(Site::B).unwrap());
    let mut acked = Acked::default();
    acked.write(lab, Site::A, "vol0", &[(40, 8, 0x71)]).unwrap();
    expect(lab, Site::B, SYNCED_S, "still replicating");
    acked.check(lab, Site::B).unwrap();
    same(lab);
}

/// Every directory an array keeps is 0700 and every volume image, journal,
/// checkpoint, save area, credential and key 0600 — even when the processes
/// run with a umask that would leave them open to everyone.
#[test]
fn volumes_journals_and_secrets_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: umask(2) only sets this process's file mode mask.
    let old = unsafe { libc::umask(0) };
    let t = lab_up(true);
    unsafe { libc::umask(old) };
    let lab = &t.lab;
    // Something in every kind of file: a link failure makes snapshot save
    // areas, writes fill the journal.
    let mut acked = Acked::default();
    lab.link(false);
    lab.wait_link(Site::A, false, WAIT).unwrap();
    acked.write(lab, Site::A, "vol0", &[(0, 8, 0x51)]).unwrap();
    let mut checked = 0;
    let mut open = Vec::new();
    let mut walk = vec![lab.opts.dir.clone()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let mode = e.metadata().unwrap().permissions().mode() & 0o777;
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if e.file_type().unwrap().is_dir() {
                walk.push(p.clone());
                if mode != 0o700 {
                    open.push(format!("{} is {mode:o}", p.display()));
                }
                checked += 1;
                continue;
            }
            let private = name.ends_with(".img")
                || name.ends_with(".cow")
                || name == "wal.log"
                || name == "meta.bin"
                || name.ends_with("key.pem")
                || name == "credentials"
                || name == "password"
                || name.ends_with(".toml");
            if private {
                checked += 1;
                if mode != 0o600 {
                    open.push(format!("{} is {mode:o}", p.display()));
                }
            }
        }
    }
    println!("  {checked} directories and private files checked");
    assert!(checked > 12, "too few files found: {checked}");
    assert!(open.is_empty(), "open to others:\n{}", open.join("\n"));
    lab.link(true);
}

/// A real pywbem console on 127.0.0.1: EnumerateInstanceNames of the
/// array's systems; the seconds it took, or its error.
fn pywbem_served(lab: &Lab, password: &str) -> Result<f64, String> {
    let url = format!("http://127.0.0.1:{}", lab.opts.ports.a.http);
    let script = "import sys, time, pywbem\n\
        t = time.time()\n\
        c = pywbem.WBEMConnection(sys.argv[1], ('admin', sys.argv[2]), default_namespace='root/cimv2', timeout=20)\n\
        n = c.EnumerateInstanceNames('CIM_ComputerSystem')\n\
        assert len(n) >= 1, n\n\
        print(time.time() - t)\n";
    let (code, out, err) = crate::cim_support::run("python3", &["-c", script, &url, password]);
    if code != 0 {
        return Err(err);
    }
    out.trim().parse().map_err(|e| format!("{out}: {e}"))
}

/// One request from `ip` with Basic credentials admin:`password`; the HTTP
/// status, or 0 when the server closed the connection without an answer.
fn status_from(ip: [u8; 4], to: std::net::SocketAddr, password: &str) -> u16 {
    use base64::Engine as _;
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\" ?><CIM CIMVERSION=\"2.0\" DTDVERSION=\"2.0\"><MESSAGE ID=\"1\" PROTOCOLVERSION=\"1.0\"><SIMPLEREQ><IMETHODCALL NAME=\"EnumerateClassNames\"><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/><NAMESPACE NAME=\"cimv2\"/></LOCALNAMESPACEPATH></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>";
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{password}"));
    let mut s = crate::util::connect_from(ip, to);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!(
        "POST /cimom HTTP/1.1\r\nHost: {to}\r\nContent-Type: application/xml; charset=\"utf-8\"\r\n\
         Content-Length: {}\r\nCIMOperation: MethodCall\r\nCIMMethod: EnumerateClassNames\r\n\
         CIMObject: root%2Fcimv2\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut head = [0u8; 12];
    match s.read_exact(&mut head) {
        Ok(()) => std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap(),
        Err(_) => 0,
    }
}

/// The CIM server under abuse, with real sockets: 600 half-open
/// connections from one address (request headers begun, never finished)
/// and 300 wrong passwords from another. A real pywbem console is served
/// throughout; the held connections are closed by the header timeout; the
/// guessing address is refused after ten failures, even with the right
/// password; and the log says each once, not once per attempt.
#[test]
fn the_cim_server_serves_real_clients_under_abuse() {
    let t = lab_up(false);
    let lab = &t.lab;
    let to: std::net::SocketAddr = ([127, 0, 0, 1], lab.opts.ports.a.http).into();
    let quiet = pywbem_served(lab, "lab-test").expect("pywbem before the abuse");
    println!("  baseline: pywbem served in {quiet:.3} s");

    // Slowloris from 127.0.0.2.
    let t0 = Instant::now();
    let mut held = Vec::new();
    for _ in 0..600 {
        let mut s = crate::util::connect_from([127, 0, 0, 2], to);
        let _ = s.write_all(b"POST /cimom HTTP/1.1\r\nHost: 127.0.0.1\r\nCIMOperation: Meth");
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        held.push(s);
    }
    let took = pywbem_served(lab, "lab-test").expect("pywbem beside 600 half-open connections");
    println!("  600 half-open connections held; pywbem served in {took:.3} s");
    assert!(
        took < 5.0,
        "pywbem waited {took:.3} s beside the half-open connections"
    );
    // Which of them does the server still hold? A closed one reads EOF.
    let open = |held: &mut Vec<std::net::TcpStream>| {
        held.iter_mut()
            .filter(|s: &&mut std::net::TcpStream| {
                let mut b = [0u8; 1];
                let s: &std::net::TcpStream = s;
                matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut)
            })
            .count()
    };
    let still = open(&mut held);
    println!(
        "  {still} of 600 still open after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        still <= 64,
        "the server holds {still} connections from one address"
    );
    loop {
        let still = open(&mut held);
        if still == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{still} half-open connections still held after {:?}",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "  all closed by the server after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    drop(held);

    // Brute force from 127.0.0.3.
    let t1 = Instant::now();
    let mut seen = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..300 {
        *seen
            .entry(status_from([127, 0, 0, 3], to, &format!("guess{i}")))
            .or_default() += 1;
    }
    println!(
        "  300 wrong passwords in {:.2} s: {seen:?}",
        t1.elapsed().as_secs_f64()
    );
    assert!(seen.get(&401).copied().unwrap_or(0) <= 10, "{seen:?}");
    assert!(seen.get(&429).copied().unwrap_or(0) >= 290, "{seen:?}");
    assert_eq!(
        status_from([127, 0, 0, 3], to, "lab-test"),
        429,
        "the right password from a blocked address"
    );
    let took = pywbem_served(lab, "lab-test").expect("pywbem beside the blocked address");
    println!("  pywbem from another address served in {took:.3} s");

    // One line per episode in the array's log.
    let log = std::fs::read_to_string(lab.opts.dir.join("site-a.log")).unwrap();
    let count = |what: &str| log.lines().filter(|l| l.contains(what)).count();
    assert_eq!(count("refusing further connections from this address"), 1);
    assert_eq!(count("too many failed logins"), 1);
    assert_eq!(count("authentication failed"), 1);
}

/// Volumes made and deleted at run time through the storage configuration
/// service (rcopy createvv/removevv) are NBD exports at once, keep what a
/// host wrote through a kill -9 of their array, and count against the
/// pool; a deleted volume is no export any more.
#[test]
fn volumes_made_over_cim_are_exported_at_once_and_survive_a_kill() {
    let t = lab_up(true);
    let lab = &t.lab;
    rcopy(lab, Site::A, "createvv newvv 8").unwrap();
    let url = lab.nbd_url(Site::A, "newvv");
    qemu::io(&url, &["write -P 0x5c 4096 1M".into()]).unwrap();
    lab.kill(Site::A).unwrap();
    lab.start_site(Site::A).unwrap();
    qemu::io(
        &url,
        &[
            "read -P 0x5c 4096 1M".into(),
            "read -P 0 0 4096".into(),
            "read -P 0 1052672 1M".into(),
        ],
    )
    .unwrap();
    let vvs = lab.console(Site::A).unwrap().show_volumes().unwrap();
    let row = vvs
        .iter()
        .find(|r| r.name == "newvv")
        .expect("showvv lists newvv");
    assert_eq!((row.size_mib, row.role.as_str()), (8, "Base"), "{vvs:?}");
    let v0 = vvs.iter().find(|r| r.name == "vol0").unwrap();
    assert_eq!(
        (v0.role.as_str(), v0.groups.clone()),
        ("Primary", vec!["rcg0".to_string()])
    );
    let e = rcopy(lab, Site::A, "removevv vol0").unwrap_err();
    assert!(e.contains("rcg0"), "{e}");
    let e = rcopy(lab, Site::A, "createvv big 2T").unwrap_err();
    assert!(e.contains("do not fit in the pool"), "{e}");
    rcopy(lab, Site::A, "removevv newvv").unwrap();
    let (ok, text) = qemu::io_output(&url, &["read 0 4096".into()]).unwrap();
    assert!(!ok, "a deleted volume is still exported: {text}");
    lab.kill(Site::A).unwrap();
    lab.start_site(Site::A).unwrap();
    let vvs = lab.console(Site::A).unwrap().show_volumes().unwrap();
    assert!(vvs.iter().all(|r| r.name != "newvv"), "{vvs:?}");
}

/// Local replicas with real processes, made with the 3PAR verbs over CIM:
/// a snapshot is a read-only export that keeps its point while the source
/// is written, a copy is a full writable export once complete, both
/// survive a kill -9 of their array, and promotesv rolls the source back.
#[test]
fn snapshots_and_copies_are_exports_that_survive_a_kill() {
    let t = lab_up(true);
    let lab = &t.lab;
    let io = |url: &str, cmds: &[&str]| {
        qemu::io(url, &cmds.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap()
    };
    let ro = |url: &str, cmds: &[&str]| {
        qemu::io_read_only(url, &cmds.iter().map(|c| c.to_string()).collect::<Vec<_>>()).unwrap()
    };
    rcopy(lab, Site::A, "createvv src 8").unwrap();
    let src = lab.nbd_url(Site::A, "src");
    io(&src, &["write -P 0x11 0 8M"]);
    rcopy(lab, Site::A, "createsv srcsv src").unwrap();
    rcopy(lab, Site::A, "createvvcopy -p src -online srccp").unwrap();
    io(&src, &["write -P 0x22 1M 2M"]);
    let sv = lab.nbd_url(Site::A, "srcsv");
    let cp = lab.nbd_url(Site::A, "srccp");
    ro(&sv, &["read -P 0x11 0 8M"]);
    let (ok, text) = qemu::io_output(&sv, &["write -P 0x33 0 4096".into()]).unwrap();
    assert!(!ok, "a snapshot took a write: {text}");
    // The copy is complete (rcopy waited for its job): a writable volume.
    io(&cp, &["read -P 0x11 0 8M", "write -P 0x44 0 4096"]);
    lab.kill(Site::A).unwrap();
    lab.start_site(Site::A).unwrap();
    ro(&sv, &["read -P 0x11 0 8M"]);
    io(&cp, &["read -P 0x44 0 4096", "read -P 0x11 4096 8384512"]);
    io(&src, &["read -P 0x11 0 1M", "read -P 0x22 1M 2M"]);
    let vvs = lab.console(Site::A).unwrap().show_volumes().unwrap();
    let role = |n: &str| vvs.iter().find(|r| r.name == n).map(|r| r.role.clone());
    assert_eq!(
        (role("srcsv"), role("srccp")),
        (Some("Snapshot(src)".into()), Some("Copy(src)".into())),
        "{vvs:?}"
    );
    let e = rcopy(lab, Site::A, "removevv src").unwrap_err();
    assert!(e.contains("srcsv"), "{e}");
    rcopy(lab, Site::A, "promotesv srcsv").unwrap();
    io(&src, &["read -P 0x11 0 8M"]);
    rcopy(lab, Site::A, "promotevvcopy srccp").unwrap();
    rcopy(lab, Site::A, "removevv srcsv").unwrap();
    rcopy(lab, Site::A, "removevv src").unwrap();
    io(&cp, &["read -P 0x44 0 4096"]);
    let vvs = lab.console(Site::A).unwrap().show_volumes().unwrap();
    let row = vvs
        .iter()
        .find(|r| r.name == "srccp")
        .expect("the copy stays");
    assert_eq!(row.role, "Base", "{vvs:?}");
    assert!(vvs.iter().all(|r| r.name != "srcsv" && r.name != "src"));
}

/// A planned failover under a host write load, with real processes:
/// qemu-io writes to A without pause while B asks for the failover. Every
/// write A acknowledged is on B after the hand-over, A refuses host writes
/// from the hand-over on (qemu-io's run is cut there) while B takes them,
/// and recover then restore bring A back as Primary with B's writes.
#[test]
fn a_planned_failover_under_write_load_keeps_every_acknowledged_write() {
    let t = lab_up(true);
    let lab = &t.lab;
    let url = lab.nbd_url(Site::A, "vol0");
    let writer = std::thread::spawn(move || {
        let mut acked = Acked::default();
        for batch in 0..400u64 {
            let cmds: Vec<(u64, u8)> = (0..200u64)
                .map(|i| ((batch * 200 + i) * 7 % 16000, (1 + (batch + i) % 250) as u8))
                .collect();
            let lines: Vec<String> = cmds
                .iter()
                .map(|(b, f)| format!("write -P {f} {} {BS}", b * BS))
                .collect();
            let (ok, out) = qemu::io_output(&url, &lines).unwrap();
            acked.record("vol0", &cmds, &out).unwrap();
            if !ok {
                assert!(
                    out.contains("Operation not permitted"),
                    "writes on A failed for another reason: {out}"
                );
                return (acked, batch);
            }
        }
        panic!("A still took writes after 80,000 of them: the failover never write-disabled it");
    });
    std::thread::sleep(Duration::from_millis(700));
    rcopy(lab, Site::B, "setrcopygroup failover rcg0").unwrap();
    let (mut acked, batches) = writer.join().unwrap();
    println!("  A's writes were cut after {batches} full batches of 200");
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Stopped", 5, 12, 2, true),
        "planned failover done, seen from B (as row 3b)",
    );
    expect(
        lab,
        Site::A,
        ("Secondary-Rev", "Stopped", 5, 12, 2, true),
        "planned failover done, seen from A (as row 4)",
    );
    let n = acked.check(lab, Site::B).unwrap();
    println!("  {n} blocks acknowledged on A read back on B");
    let (ok, out) =
        qemu::io_output(&lab.nbd_url(Site::A, "vol0"), &["write 0 4096".into()]).unwrap();
    assert!(!ok, "A took a write after handing over: {out}");
    acked
        .write(lab, Site::B, "vol0", &[(100, 4, 0x77), (9000, 16, 0x78)])
        .unwrap();
    rcopy(lab, Site::B, "setrcopygroup recover rcg0").unwrap();
    expect(
        lab,
        Site::B,
        ("Primary-Rev", "Synced", 4, 6, 2, true),
        "recover done (row 7)",
    );
    rcopy(lab, Site::B, "setrcopygroup restore rcg0").unwrap();
    expect(lab, Site::A, SYNCED_P, "restore done (row 15)");
    expect(lab, Site::B, SYNCED_S, "restore done, seen from B (row 12)");
    acked.check(lab, Site::A).unwrap();
    same(lab);
}
