//! The handle every other part of the process holds to talk to the
//! array's loop: the inputs it sends, and the read model the loop leaves
//! for readers.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Sender};

use super::clock;
use crate::core::{Command, CommandError};
use crate::link::tcp::LinkEvent;
use crate::nbd::Errno;
use crate::provider::Snapshot;
use crate::store::journal::{JournalStats, Recovery};

pub(super) type Reply<T> = Sender<T>;

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

/// The handle every other part of the process holds.
#[derive(Clone)]
pub struct NodeHandle {
    pub(super) tx: Sender<Input>,
    pub(super) name: String,
    /// The last read model the loop built, and the generation of the
    /// array's last durable state: while they match, a reader takes the
    /// model without a round trip to the loop.
    pub(super) published: Published,
}

/// What the loop leaves for readers.
#[derive(Default)]
pub(super) struct Shared {
    /// The array's generation after its last batch that left nothing
    /// uncommitted (a plain number: the write path does not build a read
    /// model for readers that may never come).
    pub(super) durable: std::sync::atomic::AtomicU64,
    /// The read model last built for a reader, with its generation.
    pub(super) model: std::sync::Mutex<Option<(u64, Snapshot)>>,
}

pub(super) type Published = std::sync::Arc<Shared>;

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

    /// The array as of its last durable state, timed now.
    pub fn snapshot(&self) -> Option<Snapshot> {
        let durable = self.published.durable.load(Ordering::Acquire);
        let model = self.published.model.lock().expect("not poisoned");
        match &*model {
            Some((gen, s)) if *gen == durable => {
                let mut s = s.clone();
                s.now = clock(s.now);
                Some(s)
            }
            _ => {
                drop(model);
                self.ask(|reply| Input::Snapshot { reply })
            }
        }
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
