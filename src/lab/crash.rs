//! Seeded kill -9 points on a running lab, and the model of acknowledged
//! writes they are checked against. Used by the crash test (`tests/lab.rs`,
//! a few dozen points per CI run) and by the soak bench (`benches/soak.rs`,
//! thousands of points under CPU load).
//!
//! A kill point: host writes on A (the kill lands among them), a resync
//! after a link failure (killed midway), or a role change (A fails, B takes
//! over and is written, A comes back, and the kill lands in the recover or
//! the restore). After each: the victim restarts from its journal, an
//! operator brings the pair back to A Primary / B Secondary, synced (with
//! the commands a console would use, retrying "retry in a moment" a bounded
//! number of times), every acknowledged write reads back, and both arrays
//! hold the same bytes.
//!
//! What "acknowledged" allows: a block holds the last write qemu-io saw
//! acknowledged, or a write issued after it that was not (the write in
//! flight at a kill may have been committed by the array before its reply
//! was lost). Anything else is a lost write.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use super::{qemu, Lab, Site};
use crate::conformance::cim_driver::observe_group;
use crate::conformance::Observed;
use crate::rcopy::{self, console::Wait};
use crate::sim::Rng;

const BS: u64 = 4096;
/// Longest a lab may take to come back to A Primary / B Secondary, synced.
pub const CONVERGE_LIMIT: Duration = Duration::from_secs(180);
/// Longest a console retries a command the array asks to retry.
const RETRY_LIMIT: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(60);

/// Every block written, with the fills it may hold: the last acknowledged
/// one first, then those issued after it without an acknowledgement.
#[derive(Default)]
pub struct Acked(pub BTreeMap<(String, u64), Vec<u8>>);

impl Acked {
    /// `fill` was acknowledged at `block` of `vol`.
    pub fn acked(&mut self, vol: &str, block: u64, fill: u8) {
        self.0.insert((vol.to_string(), block), vec![fill]);
    }

    /// `fill` was written at `block` of `vol` without an acknowledgement.
    pub fn maybe(&mut self, vol: &str, block: u64, fill: u8) {
        let e = self.0.entry((vol.to_string(), block)).or_default();
        if e.is_empty() {
            // Never acknowledged before: zeros stay allowed.
            e.push(0);
        }
        e.push(fill);
    }

    /// qemu-io writes of whole blocks, `(first block, count, fill)`; every
    /// one must be acknowledged.
    pub fn write(
        &mut self,
        lab: &Lab,
        s: Site,
        vol: &str,
        writes: &[(u64, u64, u8)],
    ) -> Result<(), String> {
        let cmds: Vec<String> = writes
            .iter()
            .map(|(b, n, f)| format!("write -P {f} {} {}", b * BS, n * BS))
            .collect();
        qemu::io(&lab.nbd_url(s, vol), &cmds)?;
        for (b, n, f) in writes {
            for x in *b..b + n {
                self.acked(vol, x, *f);
            }
        }
        Ok(())
    }

    /// Records a qemu-io run of one-block writes `cmds` that may have been
    /// cut: the writes it reports done are acknowledged, the first one
    /// after them may have landed (qemu-io stops at its first failure).
    pub fn record(&mut self, vol: &str, cmds: &[(u64, u8)], out: &str) -> Result<(), String> {
        let done = qemu::wrote_offsets(out);
        for ((b, f), off) in cmds.iter().zip(done.iter()) {
            if b * BS != *off {
                return Err(format!(
                    "qemu-io reported offset {off} where block {b} was written next"
                ));
            }
            self.acked(vol, *b, *f);
        }
        if let Some((b, f)) = cmds.get(done.len()) {
            self.maybe(vol, *b, *f);
        }
        Ok(())
    }

    /// Every recorded block of every volume holds an allowed fill on `s`;
    /// returns how many blocks were checked. The volume is read whole
    /// through NBD (qemu-img) into `DIR/check.img`.
    pub fn check(&self, lab: &Lab, s: Site) -> Result<usize, String> {
        let scratch = lab.opts.dir.join("check.img");
        let mut vols: BTreeMap<&str, Vec<(u64, &Vec<u8>)>> = BTreeMap::new();
        for ((v, b), fills) in &self.0 {
            vols.entry(v).or_default().push((*b, fills));
        }
        let mut n = 0;
        for (vol, blocks) in vols {
            qemu::dump(&lab.nbd_url(s, vol), &scratch)?;
            let f = std::fs::File::open(&scratch).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; BS as usize];
            for (b, fills) in blocks {
                f.read_exact_at(&mut buf, b * BS)
                    .map_err(|e| format!("{vol} block {b}: {e}"))?;
                let holds = |fill: u8| buf.iter().all(|x| *x == fill);
                if !fills.iter().any(|fill| holds(*fill)) {
                    let seen = if buf.iter().all(|x| *x == buf[0]) {
                        format!("fill {:#04x}", buf[0])
                    } else {
                        "mixed bytes".to_string()
                    };
                    return Err(format!(
                        "acknowledged write lost on {}: {vol} block {b} (offset {}) holds {seen}; \
                         acknowledged fill {:#04x}, unacknowledged writes after it {:?}",
                        s.name(),
                        b * BS,
                        fills[0],
                        &fills[1..]
                    ));
                }
                n += 1;
            }
            let _ = std::fs::remove_file(&scratch);
        }
        Ok(n)
    }
}

/// Both arrays hold the same bytes in both volumes (qemu-img compare).
pub fn same(lab: &Lab) -> Result<(), String> {
    for v in super::VOLUMES {
        let (a, b) = (lab.nbd_url(Site::A, v), lab.nbd_url(Site::B, v));
        if !qemu::same(&a, &b)? {
            return Err(format!("{v} differs between A and B"));
        }
    }
    Ok(())
}

/// What `s` reports for every pair of rcg0.
pub fn observe(lab: &Lab, s: Site) -> Result<Vec<Observed>, String> {
    let host = format!("127.0.0.1:{}", lab.opts.ports.of(s).http);
    observe_group(&mut lab.console(s)?, s.name(), &host)
}

/// Waits until no pair of rcg0 on `s` is still failing over
/// (ProgressStatus 11), as a console must before writing: the failover job
/// ends on the role, and a promotion that spans batches refuses host
/// writes until it is done (issue 12 makes the job wait for it).
pub fn wait_failover_done(lab: &Lab, s: Site) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        let seen = observe(lab, s)?;
        if seen.iter().all(|o| o.progress != 11) {
            return Ok(());
        }
        if t0.elapsed() > WAIT {
            return Err(format!(
                "{} was still failing over after {WAIT:?}",
                s.name()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An rcopy command through CIM-XML, as a console issues it: waiting for
/// its job, and retrying (bounded) while the array says to retry in a
/// moment (the peer's state is on its way after a link-up).
pub fn rcopy(lab: &Lab, s: Site, line: &str, wait: Wait) -> Result<(), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let cmd = rcopy::parse(&words)?;
    let t0 = Instant::now();
    loop {
        match lab.console(s)?.run(&cmd, wait, &mut |_, _| {}) {
            Err(e) if e.contains("retry in a moment") && t0.elapsed() < RETRY_LIMIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            r => return r.map_err(|e| format!("{line} on {}: {e}", s.name())),
        }
    }
}

/// Brings the lab back to A Primary / B Secondary, synced, whatever state
/// a kill left it in, with the commands an operator would use. An error
/// names the state it stayed stuck in.
pub fn converge(lab: &Lab, log: &mut dyn FnMut(&str)) -> Result<(), String> {
    let t0 = Instant::now();
    loop {
        if t0.elapsed() > CONVERGE_LIMIT {
            return Err(format!(
                "stuck for {CONVERGE_LIMIT:?}: A {:?} B {:?}",
                observe(lab, Site::A),
                observe(lab, Site::B)
            ));
        }
        for s in [Site::A, Site::B] {
            if !lab.running(s) {
                lab.start_site(s)?;
            }
        }
        if lab
            .wait_link(Site::A, true, Duration::from_secs(5))
            .is_err()
        {
            continue;
        }
        let (Ok(a), Ok(b)) = (observe(lab, Site::A), observe(lab, Site::B)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let all = |v: &[Observed], st: &str| v.iter().all(|o| o.status == st);
        let busy = |v: &[Observed]| v.iter().any(|o| o.status == "Syncing");
        let r = match (a[0].role.as_str(), b[0].role.as_str()) {
            ("Primary", "Secondary") if all(&a, "Synced") && all(&b, "Synced") => return Ok(()),
            ("Primary", "Secondary") if !busy(&a) => {
                rcopy(lab, Site::A, "startrcopygroup rcg0", Wait::Yes)
            }
            (_, "Primary-Rev") if all(&b, "Synced") => {
                rcopy(lab, Site::B, "setrcopygroup restore rcg0", Wait::Yes)
            }
            (_, "Primary-Rev") if !busy(&b) => {
                rcopy(lab, Site::B, "setrcopygroup recover rcg0", Wait::Yes).or_else(|e| {
                    if e.contains("-full") {
                        rcopy(lab, Site::B, "setrcopygroup recover -full rcg0", Wait::Yes)
                    } else {
                        Err(e)
                    }
                })
            }
            _ => Ok(()), // a swap or a sync under way
        };
        if let Err(e) = r {
            log(&format!("    converge: {e}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What a run of kill points did.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub points: u64,
    /// Acknowledged blocks read back on A after the last point (and on B).
    pub checked: usize,
    /// Kill points by kind: host writes, resyncs, role changes.
    pub kinds: [u64; 3],
    /// Victims: A, B.
    pub victims: [u64; 2],
}

/// Runs `points` seeded kill points on a provisioned lab (rcg0 synced, A
/// Primary). Stops at the first point that loses an acknowledged write,
/// leaves the arrays different, or does not converge, with what it saw.
pub fn run_points(
    lab: &Lab,
    seed: u64,
    points: u64,
    acked: &mut Acked,
    log: &mut dyn FnMut(&str),
) -> Result<Summary, String> {
    let mut rng = Rng::new(seed);
    let mut sum = Summary::default();
    for k in 0..points {
        let victim = if rng.chance(50) { Site::A } else { Site::B };
        let kind = rng.below(3) as usize;
        let delay = Duration::from_millis(rng.below(400));
        sum.kinds[kind] += 1;
        sum.victims[victim as usize] += 1;
        let fill = |i: u64| ((k * 31 + i) % 250 + 1) as u8;
        match kind {
            0 => {
                // Host writes on A; the kill lands among them.
                let vol = if rng.chance(50) { "vol0" } else { "vol1" };
                let cmds: Vec<(u64, u8)> = (0..48).map(|i| (rng.below(16384), fill(i))).collect();
                let url = lab.nbd_url(Site::A, vol);
                let text: Vec<String> = cmds
                    .iter()
                    .map(|(b, f)| format!("write -P {f} {} {BS}", b * BS))
                    .collect();
                let writer = std::thread::spawn(move || qemu::io_output(&url, &text));
                std::thread::sleep(delay);
                lab.kill(victim)?;
                let (_, out) = writer
                    .join()
                    .map_err(|_| "the qemu-io thread panicked".to_string())??;
                acked.record(vol, &cmds, &out)?;
            }
            1 => {
                // A resync after a link failure, killed midway.
                lab.link(false);
                lab.wait_link(Site::A, false, WAIT)?;
                let writes: Vec<(u64, u64, u8)> =
                    (0..64).map(|i| (rng.below(16384), 1, fill(i))).collect();
                acked.write(lab, Site::A, "vol0", &writes)?;
                lab.throttle(Some(128 * 1024));
                lab.link(true);
                lab.wait_link(Site::A, true, WAIT)?;
                rcopy(lab, Site::A, "startrcopygroup rcg0", Wait::No)?;
                std::thread::sleep(delay);
                lab.kill(victim)?;
                lab.throttle(None);
            }
            _ => {
                // A role change: A fails, B takes over and is written, A
                // comes back, and the kill lands in the recover or restore.
                lab.kill(Site::A)?;
                lab.wait_link(Site::B, false, WAIT)?;
                rcopy(lab, Site::B, "setrcopygroup failover rcg0", Wait::Yes)?;
                wait_failover_done(lab, Site::B)?;
                let writes: Vec<(u64, u64, u8)> =
                    (0..32).map(|i| (rng.below(16384), 2, fill(i))).collect();
                acked.write(lab, Site::B, "vol1", &writes)?;
                lab.start_site(Site::A)?;
                lab.wait_link(Site::B, true, WAIT)?;
                let op = if rng.chance(50) { "recover" } else { "restore" };
                if op == "restore" {
                    rcopy(lab, Site::B, "setrcopygroup recover rcg0", Wait::Yes)?;
                    lab.wait_synced(Site::B, WAIT)?;
                }
                lab.throttle(Some(256 * 1024));
                // The operation must be accepted: a refused one would make
                // this no role-change kill point at all.
                rcopy(lab, Site::B, &format!("setrcopygroup {op} rcg0"), Wait::No)?;
                std::thread::sleep(delay);
                lab.kill(victim)?;
                lab.throttle(None);
            }
        }
        lab.start_site(victim)?;
        converge(lab, log)?;
        let n = acked.check(lab, Site::A)?;
        same(lab)?;
        log(&format!(
            "  point {k}: kind {kind}, killed {} after {delay:?}; {n} acknowledged blocks intact, A = B",
            victim.name()
        ));
        sum.points = k + 1;
        sum.checked = n;
    }
    sum.checked = acked.check(lab, Site::B)?.max(sum.checked);
    Ok(sum)
}
