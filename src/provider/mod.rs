//! The SMI-S Replication Services provider: the core seen as CIM.
//!
//! This is the only module that uses both `cim` and `core`. Key types:
//! [`Backend`] (what the provider needs from one array: a [`Snapshot`] of
//! plain data and a way to run commands; `node::NodeBackend` serves a real
//! array, `sim::backend::SimBackend` one of the simulation), and
//! [`Replication`] (the `cim::dispatch::Provider`).
//!
//! Design decision: the provider never holds core state. Every request takes
//! a fresh snapshot (one per request, shared by every class the request
//! walks) and derives instances from it with `core::derive`'s
//! views, so what a console reads is exactly what the core decided at that
//! moment. Long operations become jobs whose completion is judged from the
//! same snapshots.

mod foreign;
mod group_props;
mod jobs;
mod local;
mod methods;
mod model;
mod pools;
mod volumes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::cim::dispatch::{Ctx, MethodResult, Provider};
use crate::cim::interop::Interop;
use crate::cim::model::{Class, Instance, Method, Name, ObjectPath, Value};
use crate::cim::CimError;
use crate::core::{ArrayRead, Command, CommandError, Tick};

pub use jobs::JobTable;

/// Object paths of the provider's instances, for clients and tests.
pub mod model_paths {
    pub use super::model::{
        caps_path, cs_path, group_path, job_path, link_path, rs_path, vol_path,
    };
}

/// The implementation namespace.
pub const NS: &str = "root/cimv2";

/// One array's state at one moment: the core's read model (shared, built
/// once per generation of the array) and the time of the read.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub now: Tick,
    pub read: Arc<ArrayRead>,
}

impl std::ops::Deref for Snapshot {
    type Target = ArrayRead;
    fn deref(&self) -> &ArrayRead {
        &self.read
    }
}

impl Snapshot {
    /// An array that holds nothing (yet, or any more).
    pub fn empty(array: &str) -> Snapshot {
        Snapshot {
            now: Tick(0),
            read: Arc::new(ArrayRead::empty(array)),
        }
    }
}

/// What the provider needs from one array.
pub trait Backend: Send + Sync {
    fn snapshot(&self) -> Snapshot;
    fn command(&self, cmd: Command) -> Result<(), CommandError>;
    /// Wall-clock milliseconds since 1970 at Tick 0, for CIM datetimes.
    fn epoch_ms(&self) -> i64;
    /// The array's clock now (what ages, such as a lag, are counted to).
    fn now(&self) -> Tick;
}

/// Reads a fresh snapshot out of any core array: O(pairs).
pub fn snapshot_of<S: crate::core::BlockStore>(a: &crate::core::Array<S>) -> Snapshot {
    Snapshot {
        now: a.now(),
        read: Arc::new(a.read_model()),
    }
}

/// The last read model of one array, rebuilt only when the array's
/// generation moved, and then only for what changed: a console polling an
/// idle array of 8,000 pairs costs one `Arc` clone per request, and a
/// command on one group rebuilds that group's part.
#[derive(Default)]
pub struct ReadCache {
    at: Option<(u64, Arc<ArrayRead>)>,
}

impl ReadCache {
    pub fn snapshot<S: crate::core::BlockStore>(&mut self, a: &crate::core::Array<S>) -> Snapshot {
        let read = match &self.at {
            Some((gen, read)) if *gen == a.generation() => read.clone(),
            prev => {
                let prev = prev.as_ref().map(|(gen, read)| (&**read, *gen));
                let read = Arc::new(a.read_model_from(prev));
                self.at = Some((a.generation(), read.clone()));
                read
            }
        };
        Snapshot { now: a.now(), read }
    }
}

/// Where a console reaches each array: array name -> CIM host ("host:port").
pub type Hosts = BTreeMap<String, String>;

/// The replication provider of one array.
pub struct Replication {
    backend: Arc<dyn Backend>,
    /// This array's name.
    array: String,
    hosts: Hosts,
    jobs: Mutex<JobTable>,
    /// Groups made by CreateGroup that do not replicate yet: name ->
    /// member volumes, in order. CreateGroupReplica turns one into a
    /// remote-copy group. Held by the provider, not the array, and so lost
    /// when the provider restarts.
    local_groups: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Replication {
    pub fn new(backend: Arc<dyn Backend>, array: &str, hosts: Hosts) -> Replication {
        Replication {
            backend,
            array: array.to_string(),
            hosts,
            jobs: Mutex::new(JobTable::default()),
            local_groups: Mutex::new(BTreeMap::new()),
        }
    }

    /// The array's state now. Every look at the array through the provider
    /// goes through here, so running jobs are judged against every state
    /// a client could have seen (and before every command changes it).
    pub fn snapshot(&self) -> Snapshot {
        let snap = self.backend.snapshot();
        self.jobs.lock().expect("not poisoned").update(&snap);
        snap
    }

    /// The CIM host of an array (its name when unknown).
    pub fn host_of(&self, array: &str) -> String {
        self.hosts
            .get(array)
            .cloned()
            .unwrap_or_else(|| array.to_string())
    }

    /// Registers the SNIA Array, Block Services, Replication Services and
    /// Job Control profiles, conforming to the array and its services.
    pub fn register_profiles(&self, interop: &Interop) {
        let array = interop.register_profile(11, "Array", "1.6.0");
        let block = interop.register_profile(11, "Block Services", "1.6.0");
        let repl = interop.register_profile(11, "Replication Services", "1.6.0");
        let jobs = interop.register_profile(11, "Job Control", "1.5.0");
        let cs = model::cs_path(&self.array, &self.host_of(&self.array));
        let rs = model::rs_path(&self.array, &self.host_of(&self.array));
        interop.conforms(array.clone(), cs.clone());
        interop.conforms(block.clone(), cs.clone());
        interop.references(block, array.clone());
        interop.conforms(repl.clone(), rs.clone());
        interop.conforms(repl.clone(), cs);
        interop.conforms(jobs.clone(), rs);
        interop.references(repl, array.clone());
        interop.references(jobs, array);
    }
}

impl Provider for Replication {
    fn classes(&self) -> Vec<(String, Name)> {
        model::CLASSES
            .iter()
            .chain(pools::CLASSES)
            .map(|c| (NS.to_string(), Name::new(c)))
            .collect()
    }

    fn enumerate(&self, ctx: &Ctx, class: &Name) -> Result<Vec<Instance>, CimError> {
        // One read of the array per CIM request, whatever the request walks.
        let snap = ctx.per_request("replicim.snapshot", || self.snapshot());
        if class.is("RCM_ConcreteJob")
            || class.is("CIM_OwningJobElement")
            || class.is("CIM_AffectedJobElement")
        {
            let jobs = self.jobs.lock().expect("not poisoned");
            return Ok(jobs.instances(class.as_str(), self));
        }
        if let Some(found) = pools::instances(self, &snap, class.as_str()) {
            return Ok(found);
        }
        Ok(model::instances(self, &snap, class.as_str()))
    }

    fn get(&self, ctx: &Ctx, class: &Class, path: &ObjectPath) -> Result<Instance, CimError> {
        let snap = ctx.per_request("replicim.snapshot", || self.snapshot());
        let found = match model::candidates(self, &snap, path.class.as_str(), path) {
            Some(found) => found,
            None => self.enumerate(ctx, &path.class)?,
        };
        found
            .into_iter()
            .find(|i| i.path(class, NS, None).same_instance(path))
            .ok_or_else(|| CimError::not_found(format!("{path} does not exist on {}", self.array)))
    }

    fn foreign(&self, ctx: &Ctx, class: &Class, path: &ObjectPath) -> Option<Instance> {
        let snap = ctx.per_request("replicim.snapshot", || self.snapshot());
        foreign::foreign(self, &snap, class.name.as_str(), path)
    }

    fn referring(
        &self,
        ctx: &Ctx,
        class: &Name,
        object: &ObjectPath,
    ) -> Result<Option<Vec<Instance>>, CimError> {
        let snap = ctx.per_request("replicim.snapshot", || self.snapshot());
        Ok(model::referring(self, &snap, class.as_str(), object))
    }

    fn invoke(
        &self,
        _ctx: &Ctx,
        target: &ObjectPath,
        method: &Method,
        params: Vec<(Name, Option<Value>)>,
    ) -> Result<MethodResult, CimError> {
        methods::invoke(self, target, method, params)
    }
}
