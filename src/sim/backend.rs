//! The provider's [`Backend`] over an array of the simulation, for the
//! CIM-level conformance driver and the examples: the production provider
//! does not know the simulator.

use std::sync::{Arc, Mutex};

use super::Sim;
use crate::core::{Command, CommandError};
use crate::provider::{snapshot_of, Backend, Snapshot};

/// An array inside a shared in-process [`Sim`].
pub struct SimBackend {
    pub sim: Arc<Mutex<Sim>>,
    pub array: String,
    pub epoch_ms: i64,
}

impl Backend for SimBackend {
    fn snapshot(&self) -> Snapshot {
        let sim = self.sim.lock().unwrap_or_else(|e| e.into_inner());
        // An array the simulation does not hold (yet) holds nothing.
        // The simulation rebuilds an array after a crash, so the read
        // model is built afresh (no `ReadCache`).
        sim.get_array(&self.array)
            .map_or_else(|| Snapshot::empty(&self.array), snapshot_of)
    }
    fn command(&self, cmd: Command) -> Result<(), CommandError> {
        let mut sim = self.sim.lock().unwrap_or_else(|e| e.into_inner());
        if sim.get_array(&self.array).is_none() || !sim.alive(&self.array) {
            return Err(CommandError::LinkDown {
                op: "command",
                peer: self.array.clone(),
                hint: "the array is down".into(),
            });
        }
        sim.command(&self.array, cmd)
    }
    fn epoch_ms(&self) -> i64 {
        self.epoch_ms
    }
    fn now(&self) -> crate::core::Tick {
        self.sim.lock().unwrap_or_else(|e| e.into_inner()).now()
    }
}
