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

pub mod adapters;
pub mod batch;
mod handle;
pub mod state;

pub use adapters::{ArrayDevice, NodeBackend, VolumeCatalog};
pub use handle::{Input, NodeHandle, NodeStats};
use handle::{Published, Reply};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::{
    Array, ArrayConfig, CommandError, Durable, Event, Fault, Msg, SnapId, Tick, WriteError,
};
use crate::link::tcp::{Link, LinkEvent};
use crate::nbd::Errno;
use crate::provider::{ReadCache, Snapshot};
use crate::store::journal::{Journal, Recovery};
use batch::{Batcher, Req, WriteFailure};

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

/// Wall-clock milliseconds, never below `floor`.
fn clock(floor: Tick) -> Tick {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Tick(ms.max(floor.0))
}

/// Every volume and snapshot the metadata names has its file, of the size
/// the metadata expects: otherwise the directory is damaged and the array
/// must not start on it.
fn check_files(j: &Journal, d: &Durable) -> Result<(), String> {
    for (vol, m) in &d.vols {
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
/// the metadata, removes files no committed batch made, checks the files,
/// creates the configured volumes that do not exist, and restarts the core
/// (every group that was running is stopped as after a failure, per the
/// tables).
pub fn open(cfg: &NodeConfig) -> Result<(Array<Journal>, Recovery), String> {
    let (mut journal, recovery) =
        Journal::open(&cfg.dir).map_err(|e| format!("{}: {e}", cfg.dir.display()))?;
    // Counters and the activity log may change with bulk blocks unsynced;
    // a group or snapshot change (a run completing) may not.
    journal.set_barrier(state::is_barrier);
    let durable = state::durable_of(journal.meta())?;
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
                d.vols.keys().cloned().collect(),
                d.snaps.keys().copied().collect(),
            )
        },
    );
    journal.retain(&vols, &snaps).map_err(|e| e.to_string())?;
    if let Some(d) = &durable {
        check_files(&journal, d)?;
    }
    let (mut array, fresh) = state::rebuild(journal, &cfg.name, cfg.array)?;
    for (vol, blocks) in &cfg.volumes {
        if !array.volumes().exists(vol) {
            array
                .create_volume(vol, *blocks)
                .map_err(|e| format!("volume {vol}: {e}"))?;
        }
    }
    let now = clock(array.now());
    state::boot(&mut array, now, fresh)?;
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
    let published = Published::default();
    let to_publish = published.clone();
    let thread = std::thread::Builder::new()
        .name(format!("array-{name}"))
        .spawn(move || {
            let mut l = Loop::new(array, link, recovery, to_publish);
            if let Err(e) = l.run(rx) {
                // A store that cannot commit must not keep answering: stop,
                // so nothing uncommitted is ever acknowledged.
                tracing::error!("array stopped: {e}");
                std::process::exit(70);
            }
        })
        .map_err(|e| e.to_string())?;
    Ok((
        NodeHandle {
            tx,
            name,
            published,
        },
        thread,
    ))
}

/// Where the answer to a request goes.
enum Waiter {
    Write(Reply<Result<(), Errno>>),
    Read(Reply<Result<Vec<u8>, Errno>>),
    Command(Reply<Result<(), CommandError>>),
}

struct Loop {
    b: Batcher<Journal>,
    link: Link,
    stats: NodeStats,
    next_req: Req,
    waiting: HashMap<Req, Waiter>,
    /// The link session each peer is up on, as this loop last heard; a
    /// message is sent on that session or not at all.
    sessions: HashMap<String, u64>,
    /// State reads to answer once the batch is committed.
    after_commit: Vec<Box<dyn FnOnce() + Send>>,
    last_commit: std::time::Instant,
    /// The read model of the array's last generation a reader asked for.
    reads: ReadCache,
    published: Published,
}

impl Loop {
    fn new(array: Array<Journal>, link: Link, recovery: Recovery, published: Published) -> Loop {
        Loop {
            b: Batcher::new(array),
            link,
            stats: NodeStats {
                recovery,
                ..NodeStats::default()
            },
            next_req: 0,
            waiting: HashMap::new(),
            sessions: HashMap::new(),
            after_commit: Vec::new(),
            last_commit: std::time::Instant::now(),
            reads: ReadCache::default(),
            published,
        }
    }

    /// Says which generation of the array is durable (a reader never sees
    /// a change a crash could take back). Called after a commit before its
    /// answers leave, so an operator who is told a command is done reads
    /// its effect: the model readers share is then stale, and the next
    /// reader asks the loop for a new one.
    fn publish(&mut self) {
        if !self.b.is_dirty() {
            let gen = self.b.array().generation();
            self.published.durable.store(gen, Ordering::Release);
        }
    }

    /// A read model for a reader, left for the next ones too.
    fn snapshot_for_readers(&mut self) -> Snapshot {
        let snap = self.reads.snapshot(self.b.array());
        if !self.b.is_dirty() {
            let gen = self.b.array().generation();
            *self.published.model.lock().expect("not poisoned") = Some((gen, snap.clone()));
            self.published.durable.store(gen, Ordering::Release);
        }
        snap
    }

    fn now(&self) -> Tick {
        clock(self.b.array().now())
    }

    fn run(&mut self, rx: Receiver<Input>) -> Result<(), String> {
        loop {
            let now = self.now();
            let mut wait = self
                .b
                .array()
                .poll_timeout()
                .map(|t| Duration::from_millis(t.0.saturating_sub(now.0)))
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            if self.b.is_dirty() {
                wait = wait.min(IDLE_COMMIT.saturating_sub(self.last_commit.elapsed()));
            }
            let first = match rx.recv_timeout(wait) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return self.commit(),
            };
            self.b.begin();
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
            let early = match self.b.finish(now) {
                Ok(e) => e,
                Err(f) => {
                    self.fault(f)?;
                    Default::default()
                }
            };
            self.log_events();
            self.send_all(early.messages);
            self.answer(early.replies);
            let idle = self.b.is_dirty() && self.last_commit.elapsed() >= IDLE_COMMIT;
            if self.b.must_commit() || idle || stop {
                self.commit()?;
                self.publish();
                let late = self.b.release();
                self.send_all(late.messages);
                self.answer(late.replies);
                for f in self.after_commit.drain(..) {
                    f();
                }
            }
            if stop {
                return Ok(());
            }
            self.publish();
        }
    }

    fn commit(&mut self) -> Result<(), String> {
        self.b.commit().map_err(|e| format!("commit failed: {e}"))?;
        self.last_commit = std::time::Instant::now();
        Ok(())
    }

    fn send_all(&mut self, msgs: Vec<(String, Msg)>) {
        for (peer, m) in msgs {
            if let Some(sid) = self.sessions.get(&peer) {
                self.link.send(&peer, *sid, m);
            }
        }
    }

    /// A fault from the core: a peer's bad message drops its session (the
    /// array goes on); a failing store stops the array.
    fn fault(&mut self, f: Fault) -> Result<(), String> {
        match f {
            Fault::Store(e) => Err(format!("local storage failed: {e}")),
            Fault::Peer { peer, reason } => {
                tracing::warn!(%peer, "refused a message, dropping the session: {reason}");
                if let Some(sid) = self.sessions.get(&peer) {
                    self.link.drop_session(&peer, *sid, &reason);
                }
                Ok(())
            }
        }
    }

    fn answer(&mut self, replies: Vec<batch::Reply>) {
        for r in replies {
            let (req, _) = match &r {
                batch::Reply::Write { req, .. }
                | batch::Reply::Read { req, .. }
                | batch::Reply::Command { req, .. } => (*req, ()),
            };
            let Some(w) = self.waiting.remove(&req) else {
                continue;
            };
            match (w, r) {
                (Waiter::Write(tx), batch::Reply::Write { result, .. }) => {
                    let _ = tx.send(result.map(|_| ()).map_err(|f| {
                        tracing::debug!("host write refused: {f:?}");
                        match f {
                            WriteFailure::Refused(
                                WriteError::ReadOnly { .. }
                                | WriteError::Quiesced { .. }
                                | WriteError::ReadOnlyReplica { .. }
                                | WriteError::CannotReplicate { .. },
                            ) => Errno::Perm,
                            WriteFailure::Refused(WriteError::Volume(_))
                            | WriteFailure::Failed(_) => Errno::Io,
                        }
                    }));
                }
                (Waiter::Read(tx), batch::Reply::Read { result, .. }) => {
                    let _ = tx.send(result.map_err(|_| Errno::Io));
                }
                (Waiter::Command(tx), batch::Reply::Command { result, .. }) => {
                    let _ = tx.send(result);
                }
                _ => tracing::error!("a reply of the wrong kind for request {req}"),
            }
        }
    }

    fn req(&mut self, w: Waiter) -> Req {
        let req = self.next_req;
        self.next_req += 1;
        self.waiting.insert(req, w);
        req
    }

    fn input(&mut self, input: Input) -> Result<(), String> {
        let now = self.now();
        match input {
            Input::Link(ev) => match ev {
                LinkEvent::Up(peer, sid) => {
                    tracing::info!(%peer, "link up");
                    self.sessions.insert(peer.clone(), sid);
                    self.b.link_up(now, &peer);
                }
                LinkEvent::Down(peer, why) => {
                    tracing::warn!(%peer, "link down: {why}");
                    self.sessions.remove(&peer);
                    if let Err(f) = self.b.link_down(now, &peer) {
                        self.fault(f)?;
                    }
                }
                LinkEvent::Message(peer, msg) => {
                    if let Err(f) = self.b.message(now, &peer, msg) {
                        self.fault(f)?;
                    }
                }
            },
            Input::Write {
                vol,
                offset,
                data,
                reply,
            } => {
                let req = self.req(Waiter::Write(reply));
                self.b.write(now, req, &vol, offset, &data);
            }
            Input::Read {
                vol,
                offset,
                len,
                reply,
            } => {
                let req = self.req(Waiter::Read(reply));
                self.b.read(req, &vol, offset, len);
            }
            Input::Command { cmd, reply } => {
                let req = self.req(Waiter::Command(reply));
                self.b.command(now, req, cmd);
            }
            Input::Snapshot { reply } => {
                // A console sees only durable state: taken now, answered
                // after this batch's commit if it changed anything.
                let snap = self.snapshot_for_readers();
                if self.b.hold_answer() {
                    self.after_commit.push(Box::new(move || {
                        let _ = reply.send(snap);
                    }));
                } else {
                    let _ = reply.send(snap);
                }
            }
            Input::Stats { reply } => {
                let mut s = self.stats.clone();
                s.journal = self.b.array_mut().store_mut().stats();
                let _ = reply.send(s);
            }
            Input::Stop => {}
        }
        Ok(())
    }

    fn log_events(&mut self) {
        for ev in self.b.take_events() {
            match ev {
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
                    let c = self.b.array().counters();
                    tracing::info!(
                        %group,
                        write_bytes_sent = c.write_bytes_sent,
                        sync_bytes_sent = c.sync_bytes_sent,
                        bytes_applied = c.bytes_applied,
                        "{text}"
                    )
                }
                Event::WriteDone { .. } | Event::WriteFailed { .. } => {}
            }
        }
    }
}

/// The directory of an array's journal and files under a data directory.
pub fn array_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("array")
}
