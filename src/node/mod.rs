//! One real array: the core driven by real time, a journaled file store,
//! the TCP link to its peers, NBD hosts and the CIM provider.
//!
//! # Shape
//!
//! One thread owns the [`Array`] (the core is single-threaded by design).
//! Everything else talks to it through one channel of [`Input`]s: link
//! events (forwarded from the link's tokio tasks), host I/O from the NBD
//! export ([`ArrayDevice`]), commands and state reads from the provider
//! ([`NodeBackend`]). The loop takes a batch of inputs, feeds them to the
//! core, then:
//!
//! 1. answers host writes that completed on acks of *earlier* batches (their
//!    data was committed with their own batch);
//! 2. commits the batch to the journal (one fsynced record: blocks,
//!    snapshot slots, changed metadata) if it has anything to release;
//! 3. releases the rest: messages to peers, answers to commands and to
//!    writes born in this batch.
//!
//! So a peer never hears of, and a host or operator is never told of, a
//! change that a crash could take back. A batch with nothing to release
//! (a read, an ack that finished no write of this batch) is committed with
//! the next one, or after [`IDLE_COMMIT`] at the latest: losing it in a
//! crash is the same as losing its inputs on the wire.
//!
//! Time is the wall clock in milliseconds since 1970, never allowed to go
//! backwards (the core's `Tick`), so timestamps survive restarts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::{
    Array, ArrayConfig, Block, Command, CommandError, DataTag, Durable, Event, Group, Head, Msg,
    SnapId, SnapMeta, Tick, WriteError, WriteId, WriteTicket, BLOCK_SIZE,
};
use crate::link::tcp::{Link, LinkEvent};
use crate::nbd::{each_block, Device, Errno};
use crate::provider::{snapshot_of, Backend, Snapshot};
use crate::store::journal::{Journal, JournalStats, Recovery};

/// Longest a batch with nothing to release stays uncommitted.
pub const IDLE_COMMIT: Duration = Duration::from_millis(200);

/// Most inputs taken into one batch.
const BATCH: usize = 512;

/// What the node needs to know to run one array.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub name: String,
    /// The array's own directory (journal, checkpoint, volume files).
    pub dir: PathBuf,
    /// Volumes to create at first start: (name, size in blocks).
    pub volumes: Vec<(String, u64)>,
    pub array: ArrayConfig,
}

type Reply<T> = Sender<T>;

/// An input to the array's loop.
pub enum Input {
    Link(LinkEvent),
    Write {
        vol: String,
        offset: u64,
        data: Vec<u8>,
        reply: Reply<Result<(), Errno>>,
    },
    Read {
        vol: String,
        offset: u64,
        len: usize,
        reply: Reply<Result<Vec<u8>, Errno>>,
    },
    Command {
        cmd: Command,
        reply: Reply<Result<(), CommandError>>,
    },
    Snapshot {
        reply: Reply<Snapshot>,
    },
    Stats {
        reply: Reply<NodeStats>,
    },
    /// Commit and stop the loop (a clean shutdown).
    Stop,
}

/// Figures for logs, tests and benchmarks.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    pub journal: JournalStats,
    pub recovery: Recovery,
    pub batches: u64,
}

/// A host write in progress: its blocks' write ids not yet completed.
struct HostWrite {
    remaining: usize,
    failed: Option<Errno>,
    batch: u64,
    reply: Reply<Result<(), Errno>>,
}

/// The handle every other part of the process holds.
#[derive(Clone)]
pub struct NodeHandle {
    tx: Sender<Input>,
    name: String,
}

impl NodeHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn send(&self, input: Input) -> bool {
        self.tx.send(input).is_ok()
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Input) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(make(tx)).is_err() {
            return None;
        }
        crate::rt::blocking(|| rx.recv().ok())
    }

    pub fn snapshot(&self) -> Option<Snapshot> {
        self.ask(|reply| Input::Snapshot { reply })
    }

    pub fn stats(&self) -> Option<NodeStats> {
        self.ask(|reply| Input::Stats { reply })
    }

    pub fn command(&self, cmd: Command) -> Result<(), CommandError> {
        self.ask(|reply| Input::Command { cmd, reply })
            .unwrap_or_else(|| Err(stopped(&self.name)))
    }

    pub fn write(&self, vol: &str, offset: u64, data: Vec<u8>) -> Result<(), Errno> {
        self.ask(|reply| Input::Write {
            vol: vol.to_string(),
            offset,
            data,
            reply,
        })
        .unwrap_or(Err(Errno::Io))
    }

    pub fn read(&self, vol: &str, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        self.ask(|reply| Input::Read {
            vol: vol.to_string(),
            offset,
            len,
            reply,
        })
        .unwrap_or(Err(Errno::Io))
    }

    pub fn stop(&self) {
        let _ = self.tx.send(Input::Stop);
    }
}

fn stopped(name: &str) -> CommandError {
    CommandError::LinkDown {
        op: "command",
        peer: name.to_string(),
        hint: "the array is stopping".into(),
    }
}

/// Wall-clock milliseconds, never below `floor`.
fn clock(floor: Tick) -> Tick {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Tick(ms.max(floor.0))
}

const HEAD: &str = "head";

fn snap_key(id: SnapId) -> String {
    format!("snap/{:020}", id.0)
}

fn group_key(name: &str) -> String {
    format!("group/{name}")
}

const AL: &str = "activity-log";

/// Blocks per activity-log extent (4 MiB).
pub const AL_EXTENT_BLOCKS: u64 = 1024;
/// Most extents the activity log holds (1 GiB of hot data): at a restart
/// after a crash, at most this much is resent beyond the snapshots' delta.
pub const AL_MAX: usize = 256;

/// An extent a synchronous write went to: (peer, the peer's volume name,
/// extent number).
type Extent = (String, String, u64);

/// The activity log (as DRBD's): the extents whose synchronous writes may
/// be sent to the peer *before* they are durable here, which takes the
/// local log sync off the write's critical path. A write to an extent not
/// in the committed log waits for the commit that adds its extent. After a
/// crash every logged extent is resent whole (`Array::mark_changed`), so a
/// block the peer got and this array lost cannot make the two differ.
#[derive(Default)]
struct ActivityLog {
    /// As of the last commit.
    committed: std::collections::BTreeSet<Extent>,
    /// What the next commit persists, with the batch that last used each.
    current: BTreeMap<Extent, u64>,
}

impl ActivityLog {
    /// Notes a write to `e` in `batch`; true if it may be sent now.
    fn touch(&mut self, e: Extent, batch: u64) -> bool {
        let ok = self.committed.contains(&e);
        self.current.insert(e, batch);
        ok
    }

    /// Drops the least recently used extents beyond [`AL_MAX`], never one
    /// used in `batch` (its writes are not committed yet).
    fn trim(&mut self, batch: u64) {
        while self.current.len() > AL_MAX {
            let Some(old) = self
                .current
                .iter()
                .filter(|(_, b)| **b < batch)
                .min_by_key(|(_, b)| **b)
                .map(|(e, _)| e.clone())
            else {
                break;
            };
            self.current.remove(&old);
        }
    }

    fn keys(&self) -> Vec<Extent> {
        self.current.keys().cloned().collect()
    }
}

/// The array's durable state (and the activity log) as journal metadata.
fn meta_of(a: &Array<Journal>, al: &[Extent]) -> Vec<(String, Vec<u8>)> {
    let (head, snaps, groups) = a.durable();
    let enc = |v: &dyn erased::Ser| v.bytes();
    let mut out = Vec::with_capacity(2 + snaps.len() + groups.len());
    out.push((HEAD.to_string(), enc(&head)));
    out.push((AL.to_string(), enc(&al)));
    for (id, s) in snaps {
        out.push((snap_key(*id), enc(s)));
    }
    for (name, g) in groups {
        out.push((group_key(name), enc(g)));
    }
    out
}

/// postcard behind a trait object, so `meta_of` encodes three types alike.
mod erased {
    pub trait Ser {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            postcard::to_allocvec(self).expect("array state serializes")
        }
    }
}

/// Rebuilds the durable state from journal metadata (None: a new array).
fn durable_of(meta: &BTreeMap<String, Vec<u8>>) -> Result<Option<Durable>, String> {
    let Some(head) = meta.get(HEAD) else {
        return Ok(None);
    };
    let bad = |what: &str, e: postcard::Error| format!("metadata {what} does not decode: {e}");
    let head: Head = postcard::from_bytes(head).map_err(|e| bad(HEAD, e))?;
    let mut snaps = BTreeMap::new();
    let mut groups = BTreeMap::new();
    for (k, v) in meta {
        if let Some(id) = k.strip_prefix("snap/") {
            let id = SnapId(id.parse().map_err(|_| format!("metadata key {k}"))?);
            let s: SnapMeta = postcard::from_bytes(v).map_err(|e| bad(k, e))?;
            snaps.insert(id, s);
        } else if let Some(name) = k.strip_prefix("group/") {
            let g: Group = postcard::from_bytes(v).map_err(|e| bad(k, e))?;
            groups.insert(name.to_string(), g);
        }
    }
    Ok(Some(Durable {
        head,
        snaps,
        groups,
    }))
}

/// Every volume and snapshot the metadata names has its file, of the size
/// the metadata expects: otherwise the directory is damaged and the array
/// must not start on it.
fn check_files(j: &Journal, d: &Durable) -> Result<(), String> {
    for (vol, m) in &d.head.vols {
        if j.volume_blocks(vol) != Some(m.blocks) {
            return Err(format!(
                "volume {vol}: the metadata says {} blocks, the file has {:?}; \
                 the data directory is damaged (restore it from a backup or resync from the peer)",
                m.blocks,
                j.volume_blocks(vol)
            ));
        }
    }
    for (id, s) in &d.snaps {
        let need = s.saved.values().max().map_or(0, |m| m + 1);
        if j.save_slots(*id).is_none_or(|n| n < need) {
            return Err(format!(
                "snapshot {} of {}: its save area has {:?} slots, the metadata uses {need}; \
                 the data directory is damaged",
                id.0,
                s.vol,
                j.save_slots(*id)
            ));
        }
    }
    Ok(())
}

/// Opens (or creates) the array in `cfg.dir`: replays the journal, loads
/// the metadata, removes files no committed batch made, creates the
/// configured volumes that do not exist, and restarts the core (every group
/// that was running is stopped as after a failure, per the tables).
pub fn open(cfg: &NodeConfig) -> Result<(Array<Journal>, Recovery), String> {
    let (mut journal, recovery) =
        Journal::open(&cfg.dir).map_err(|e| format!("{}: {e}", cfg.dir.display()))?;
    // Counters and the activity log may change with bulk blocks unsynced;
    // a group or snapshot change (a run completing) may not.
    journal.set_barrier(|k| k != HEAD && k != AL);
    let durable = durable_of(journal.meta())?;
    if let Some(d) = &durable {
        if d.head.name != cfg.name {
            return Err(format!(
                "{} holds array {}, not {}: use its own directory",
                cfg.dir.display(),
                d.head.name,
                cfg.name
            ));
        }
    }
    let (vols, snaps): (Vec<String>, Vec<SnapId>) = durable.as_ref().map_or_else(
        || (Vec::new(), Vec::new()),
        |d| {
            (
                d.head.vols.keys().cloned().collect(),
                d.snaps.keys().copied().collect(),
            )
        },
    );
    journal.retain(&vols, &snaps).map_err(|e| e.to_string())?;
    if let Some(d) = &durable {
        check_files(&journal, d)?;
    }
    let fresh = durable.is_none();
    let logged: Vec<Extent> = journal
        .meta()
        .get(AL)
        .map(|v| postcard::from_bytes(v).map_err(|e| format!("activity log: {e}")))
        .transpose()?
        .unwrap_or_default();
    let mut array = match durable {
        Some(d) => Array::from_durable(journal, cfg.array, d),
        None => Array::new(&cfg.name, journal, cfg.array),
    };
    // Writes in logged extents may have reached the peer without being
    // durable here: resend those extents whole at the next sync.
    for (peer, remote, extent) in &logged {
        let from = extent * AL_EXTENT_BLOCKS;
        array.mark_changed(peer, remote, from..from + AL_EXTENT_BLOCKS);
    }
    if !logged.is_empty() {
        tracing::info!(
            extents = logged.len(),
            "activity log: those extents resend whole at the next sync"
        );
    }
    let now = clock(array.now());
    for (vol, blocks) in &cfg.volumes {
        if !array.volumes().exists(vol) {
            array
                .create_volume(vol, *blocks)
                .map_err(|e| format!("volume {vol}: {e}"))?;
        }
    }
    if !fresh {
        array.restart(now).map_err(|e| e.to_string())?;
    } else {
        array.handle_timeout(now).map_err(|e| e.to_string())?;
    }
    // Whatever restart did (snapshots at failure) is durable before the
    // array talks to anyone.
    while array.poll_transmit().is_some() {}
    while array.poll_event().is_some() {}
    let meta = meta_of(&array, &[]);
    array.store_mut().commit(meta).map_err(|e| e.to_string())?;
    Ok((array, recovery))
}

/// Starts the array's loop on its own thread. `make_link` starts the link
/// to the peers with the sink that puts its events straight into the
/// loop's input queue (no task in between).
pub fn start(
    cfg: &NodeConfig,
    make_link: impl FnOnce(crate::link::tcp::Sink) -> Link,
) -> Result<(NodeHandle, std::thread::JoinHandle<()>), String> {
    let (array, recovery) = open(cfg)?;
    let (tx, rx) = mpsc::channel();
    let fwd = tx.clone();
    let link = make_link(std::sync::Arc::new(move |ev| {
        let _ = fwd.send(Input::Link(ev));
    }));
    let name = cfg.name.clone();
    let thread = std::thread::Builder::new()
        .name(format!("array-{name}"))
        .spawn(move || {
            let mut l = Loop::new(array, link, recovery);
            if let Err(e) = l.run(rx) {
                // A store that cannot commit must not keep answering: stop,
                // so nothing uncommitted is ever acknowledged.
                tracing::error!("array stopped: {e}");
                std::process::exit(70);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok((NodeHandle { tx, name }, thread))
}

struct Loop {
    array: Array<Journal>,
    link: Link,
    stats: NodeStats,
    batch: u64,
    writes: HashMap<u64, HostWrite>,
    /// Core write id -> host write it belongs to.
    ids: HashMap<WriteId, u64>,
    next_req: u64,
    /// Answers to send once the batch is committed.
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    /// Something changed since the last commit.
    dirty: bool,
    al: ActivityLog,
    last_commit: std::time::Instant,
}

impl Loop {
    fn new(array: Array<Journal>, link: Link, recovery: Recovery) -> Loop {
        Loop {
            array,
            link,
            stats: NodeStats {
                recovery,
                ..NodeStats::default()
            },
            batch: 0,
            writes: HashMap::new(),
            ids: HashMap::new(),
            next_req: 0,
            after_commit: Vec::new(),
            dirty: false,
            al: ActivityLog::default(),
            last_commit: std::time::Instant::now(),
        }
    }

    fn now(&self) -> Tick {
        clock(self.array.now())
    }

    fn run(&mut self, rx: Receiver<Input>) -> Result<(), String> {
        loop {
            let now = self.now();
            let mut wait = self
                .array
                .poll_timeout()
                .map(|t| Duration::from_millis(t.0.saturating_sub(now.0)))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            if self.dirty {
                wait = wait.min(IDLE_COMMIT.saturating_sub(self.last_commit.elapsed()));
            }
            let first = match rx.recv_timeout(wait) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.commit(),
            };
            self.batch += 1;
            self.stats.batches += 1;
            let mut stop = false;
            let mut next = first;
            let mut taken = 0;
            while let Some(input) = next {
                if matches!(input, Input::Stop) {
                    stop = true;
                    break;
                }
                self.input(input)?;
                taken += 1;
                next = if taken < BATCH {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            let now = self.now();
            if self.array.poll_timeout().is_some_and(|t| t <= now) {
                self.array.handle_timeout(now).map_err(|e| e.to_string())?;
                self.dirty = true;
            }
            self.drain_events();
            let msgs: Vec<(String, Msg)> =
                std::iter::from_fn(|| self.array.poll_transmit()).collect();
            let must = !msgs.is_empty() || !self.after_commit.is_empty();
            // Synchronous writes to logged extents go to the peer now, while
            // this batch is made durable; the rest (and everything after the
            // first message that must wait, to keep the order) after.
            let mut late = Vec::new();
            for (peer, m) in msgs {
                let early = match &m {
                    Msg::Data {
                        vol,
                        block,
                        tag: DataTag::Write(_),
                        ..
                    } => {
                        let e = (peer.clone(), vol.clone(), block / AL_EXTENT_BLOCKS);
                        self.al.touch(e, self.batch) && late.is_empty()
                    }
                    _ => false,
                };
                if early {
                    self.link.send(&peer, m);
                } else {
                    late.push((peer, m));
                }
            }
            self.al.trim(self.batch);
            if must || (self.dirty && self.last_commit.elapsed() >= IDLE_COMMIT) || stop {
                self.commit()?;
                for (peer, m) in late {
                    self.link.send(&peer, m);
                }
                for f in self.after_commit.drain(..) {
                    f();
                }
            }
            if stop {
                return Ok(());
            }
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        let al = self.al.keys();
        let meta = meta_of(&self.array, &al);
        self.array
            .store_mut()
            .commit(meta)
            .map_err(|e| format!("commit failed: {e}"))?;
        self.al.committed = al.into_iter().collect();
        self.dirty = false;
        self.last_commit = std::time::Instant::now();
        Ok(())
    }

    fn input(&mut self, input: Input) -> Result<(), String> {
        let now = self.now();
        match input {
            Input::Link(ev) => {
                self.dirty = true;
                match ev {
                    LinkEvent::Up(peer) => {
                        tracing::info!(%peer, "link up");
                        self.array.handle_link_up(now, &peer);
                    }
                    LinkEvent::Down(peer, why) => {
                        tracing::warn!(%peer, "link down: {why}");
                        self.array
                            .handle_link_down(now, &peer)
                            .map_err(|e| e.to_string())?;
                    }
                    LinkEvent::Message(peer, msg) => self
                        .array
                        .handle_message(now, &peer, msg)
                        .map_err(|e| e.to_string())?,
                }
            }
            Input::Write {
                vol,
                offset,
                data,
                reply,
            } => {
                self.dirty = true;
                self.host_write(now, &vol, offset, &data, reply);
            }
            Input::Read {
                vol,
                offset,
                len,
                reply,
            } => {
                // A read may see this batch's uncommitted blocks: answer it
                // only once they are durable.
                let r = self.host_read(&vol, offset, len);
                if self.dirty {
                    self.after_commit.push(Box::new(move || {
                        let _ = reply.send(r);
                    }));
                } else {
                    let _ = reply.send(r);
                }
            }
            Input::Command { cmd, reply } => {
                self.dirty = true;
                let r = self.array.command(now, cmd);
                self.after_commit.push(Box::new(move || {
                    let _ = reply.send(r);
                }));
            }
            Input::Snapshot { reply } => {
                let _ = reply.send(snapshot_of(&self.array));
            }
            Input::Stats { reply } => {
                let mut s = self.stats.clone();
                s.journal = self.array.store_mut().stats();
                let _ = reply.send(s);
            }
            Input::Stop => {}
        }
        Ok(())
    }

    fn host_read(&mut self, vol: &str, offset: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut out = vec![0u8; len];
        let mut block: Block = [0; BLOCK_SIZE];
        each_block(offset, len, |b, within, range| {
            self.array.read(vol, b, &mut block).map_err(|_| Errno::Io)?;
            let n = range.len();
            out[range].copy_from_slice(&block[within..within + n]);
            Ok(())
        })?;
        Ok(out)
    }

    fn host_write(
        &mut self,
        now: Tick,
        vol: &str,
        offset: u64,
        data: &[u8],
        reply: Reply<Result<(), Errno>>,
    ) {
        let req = self.next_req;
        self.next_req += 1;
        let mut pending = Vec::new();
        let mut block: Block = [0; BLOCK_SIZE];
        let array = &mut self.array;
        let r = each_block(offset, data.len(), |b, within, range| {
            if range.len() < BLOCK_SIZE {
                array.read(vol, b, &mut block).map_err(|_| Errno::Io)?;
            }
            let n = range.len();
            block[within..within + n].copy_from_slice(&data[range]);
            match array.write(now, vol, b, &block) {
                Ok(WriteTicket::Done { .. }) => Ok(()),
                Ok(WriteTicket::Pending { id }) => {
                    pending.push(id);
                    Ok(())
                }
                Err(e) => {
                    tracing::debug!("host write refused: {e}");
                    Err(match e {
                        WriteError::ReadOnly { .. }
                        | WriteError::Quiesced { .. }
                        | WriteError::CannotReplicate { .. } => Errno::Perm,
                        WriteError::Volume(_) => Errno::Io,
                    })
                }
            }
        });
        for id in &pending {
            self.ids.insert(*id, req);
        }
        self.writes.insert(
            req,
            HostWrite {
                remaining: pending.len(),
                failed: r.err(),
                batch: self.batch,
                reply,
            },
        );
        self.finish(req);
    }

    /// Answers a host write whose blocks are all done: now if its data was
    /// committed by an earlier batch, else after this batch's commit.
    fn finish(&mut self, req: u64) {
        let done = self.writes.get(&req).is_some_and(|w| w.remaining == 0);
        if !done {
            return;
        }
        let w = self.writes.remove(&req).expect("checked");
        let r = w.failed.map_or(Ok(()), Err);
        if w.batch < self.batch {
            let _ = w.reply.send(r);
        } else {
            self.after_commit.push(Box::new(move || {
                let _ = w.reply.send(r);
            }));
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.array.poll_event() {
            match ev {
                Event::WriteDone { id, .. } | Event::WriteFailed { id, .. } => {
                    let failed = matches!(ev, Event::WriteFailed { .. });
                    if let Some(req) = self.ids.remove(&id) {
                        if let Some(w) = self.writes.get_mut(&req) {
                            w.remaining -= 1;
                            if failed {
                                w.failed = Some(Errno::Io);
                            }
                        }
                        self.finish(req);
                    }
                }
                Event::OperationFailed { group, op, reason } => {
                    tracing::warn!(%group, op, "operation failed: {reason}")
                }
                Event::PointTaken { group, vol, point } => {
                    tracing::debug!(%group, %vol, point, "point taken")
                }
                Event::PointReached { group, vol, point } => {
                    tracing::info!(%group, %vol, point, "point reached")
                }
                Event::Transition { group, text } => {
                    let c = self.array.counters();
                    tracing::info!(
                        %group,
                        write_bytes_sent = c.write_bytes_sent,
                        sync_bytes_sent = c.sync_bytes_sent,
                        bytes_applied = c.bytes_applied,
                        "{text}"
                    )
                }
            }
        }
    }
}

/// One volume of the array, as an NBD export. It is never advertised
/// read-only: whether a write is allowed depends on the volume's role at
/// the time of the write (a secondary answers EPERM, and the same
/// connection can write after a failover).
pub struct ArrayDevice {
    pub node: NodeHandle,
    pub vol: String,
    pub blocks: u64,
}

impl Device for ArrayDevice {
    fn size(&self) -> u64 {
        self.blocks * BLOCK_SIZE as u64
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), Errno> {
        let data = self.node.read(&self.vol, offset, out.len())?;
        out.copy_from_slice(&data);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.node.write(&self.vol, offset, data.to_vec())
    }
    /// Every acknowledged write is already durable (and, in sync mode,
    /// applied on the peer): a flush has nothing left to do.
    fn flush(&self) -> Result<(), Errno> {
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), Errno> {
        // Discarded ranges read back as zeroes, on both sides of a mirror.
        let mut at = offset;
        while at < offset + len {
            let n = (offset + len - at).min(1 << 20);
            self.node.write(&self.vol, at, vec![0u8; n as usize])?;
            at += n;
        }
        Ok(())
    }
}

/// The provider's view of a real array.
pub struct NodeBackend {
    pub node: NodeHandle,
}

impl Backend for NodeBackend {
    fn snapshot(&self) -> Snapshot {
        self.node.snapshot().unwrap_or_else(|| Snapshot {
            array: self.node.name.clone(),
            ..Snapshot::default()
        })
    }
    fn command(&self, cmd: Command) -> Result<(), CommandError> {
        self.node.command(cmd)
    }
    /// Ticks are already milliseconds since 1970.
    fn epoch_ms(&self) -> i64 {
        0
    }
}

/// The directory of an array's journal and files under a data directory.
pub fn array_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("array")
}

/// The array's volumes as NBD exports, as they are at each connection.
pub struct VolumeCatalog {
    pub node: NodeHandle,
}

impl crate::nbd::Catalog for VolumeCatalog {
    fn names(&self) -> Vec<String> {
        self.node
            .snapshot()
            .map(|s| s.volumes.into_iter().map(|(n, _)| n).collect())
            .unwrap_or_default()
    }
    fn get(&self, name: &str) -> Option<std::sync::Arc<dyn Device>> {
        let snap = self.node.snapshot()?;
        let blocks = snap.volumes.iter().find(|(n, _)| n == name)?.1;
        Some(std::sync::Arc::new(ArrayDevice {
            node: self.node.clone(),
            vol: name.to_string(),
            blocks,
        }))
    }
}
