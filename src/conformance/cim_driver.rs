//! The CIM level: the same scenarios, with two arrays in one process, each
//! behind its own CIM-XML server on 127.0.0.1. Operator commands and every
//! observation go through CIM-XML with the project's own client; faults
//! (crashes, link cuts, holds), host writes, stepping and data checks use
//! the core's injection hooks, as on a real array they would come from
//! outside the management path.

use std::sync::{Arc, Mutex};

use super::core_driver::{CoreDriver, GROUP, SITE_A, SITE_B, VOLUMES};
use super::{Driver, Observed, Side, Step};
use crate::cim::client::{Client, Param};
use crate::cim::model::{ObjectPath, Value};
use crate::cim::server::{self, ServerConfig, State};
use crate::core::Mode;
use crate::provider::{self, Hosts, Replication};
use crate::rcopy::{
    self,
    console::{Console, Wait},
};
use crate::sim::backend::SimBackend;
use crate::sim::Sim;

fn site(side: Side) -> &'static str {
    match side {
        Side::A => SITE_A,
        Side::B => SITE_B,
    }
}

/// Drives scenarios through CIM-XML.
pub struct CimDriver {
    core: CoreDriver,
    hosts: Hosts,
    consoles: [Console; 2],
    stop: Option<tokio::sync::broadcast::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CimDriver {
    /// Starts both servers (HTTP, no authentication) on 127.0.0.1.
    pub fn start() -> Result<CimDriver, String> {
        CimDriver::start_at("127.0.0.1:0", "127.0.0.1:0")
    }

    /// Starts both servers on the given addresses (HTTP, no authentication).
    pub fn start_at(addr_a: &str, addr_b: &str) -> Result<CimDriver, String> {
        let core = CoreDriver::new();
        let sim: Arc<Mutex<Sim>> = core.shared();
        let bind = |a: &str| {
            std::net::TcpListener::bind(a).map_err(|e| format!("cannot listen on {a}: {e}"))
        };
        let la = bind(addr_a)?;
        let lb = bind(addr_b)?;
        let mut hosts = Hosts::new();
        hosts.insert(
            SITE_A.into(),
            la.local_addr().map_err(|e| e.to_string())?.to_string(),
        );
        hosts.insert(
            SITE_B.into(),
            lb.local_addr().map_err(|e| e.to_string())?.to_string(),
        );
        let epoch_ms = chrono::Utc::now().timestamp_millis();
        let mut states = Vec::new();
        for name in [SITE_A, SITE_B] {
            let cim = crate::cli::serve::build(&hosts[name], &[])?;
            let backend = Arc::new(SimBackend {
                sim: sim.clone(),
                array: name.into(),
                epoch_ms,
            });
            let rep = Arc::new(Replication::new(backend, name, hosts.clone()));
            rep.register_profiles(&cim.interop);
            let mut d = cim.dispatcher;
            d.register(rep)?;
            states.push(Arc::new(State::new(Arc::new(d), ServerConfig::default())));
        }
        let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
        let stop = stop_tx.clone();
        la.set_nonblocking(true).map_err(|e| e.to_string())?;
        lb.set_nonblocking(true).map_err(|e| e.to_string())?;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for (l, state) in [la, lb].into_iter().zip(states) {
                    let l = tokio::net::TcpListener::from_std(l).expect("listener");
                    let mut rx = stop.subscribe();
                    tasks.push(tokio::spawn(server::run(l, None, state, async move {
                        let _ = rx.recv().await;
                    })));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        let consoles = [
            Console::connect(Client::new(&hosts[SITE_A], None))?,
            Console::connect(Client::new(&hosts[SITE_B], None))?,
        ];
        Ok(CimDriver {
            core,
            hosts,
            consoles,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// host:port of each array's CIM-XML server.
    pub fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// The simulated arrays both servers manage.
    pub fn sim(&self) -> Arc<Mutex<Sim>> {
        self.core.shared()
    }

    /// Lets simulated time follow the wall clock until the returned guard
    /// drops, so a console that polls (jobs, CopyState) sees operations
    /// progress without anyone calling `settle`.
    pub fn wall_clock(&self) -> WallClock {
        let sim = self.core.shared();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = std::time::Instant::now();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(5));
                let ms = last.elapsed().as_millis() as u64;
                if ms == 0 {
                    continue;
                }
                last += std::time::Duration::from_millis(ms);
                let mut s = sim.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = s.advance(ms) {
                    tracing::error!("simulated arrays stopped: {e}");
                    return;
                }
            }
        });
        WallClock {
            stop,
            thread: Some(thread),
        }
    }

    fn console(&mut self, side: Side) -> &mut Console {
        &mut self.consoles[match side {
            Side::A => 0,
            Side::B => 1,
        }]
    }

    fn client(&mut self, side: Side) -> &mut Client {
        self.console(side).client()
    }

    fn host(&self, side: Side) -> String {
        self.hosts[site(side)].clone()
    }

    fn rs(&self, side: Side) -> ObjectPath {
        provider::model_paths::rs_path(site(side), &self.host(side))
    }

    /// Creates rcg0 (mode) with vol0 and vol1 through CreateElementReplica.
    fn setup(&mut self, mode: &str, start: bool) -> Result<(), String> {
        self.core.prepare_volumes()?;
        let rs = self.rs(Side::A);
        let mode_n: u16 = match rcopy::parse_mode(mode)? {
            Mode::Sync => 2,
            Mode::Async => 3,
            Mode::Periodic { period_ms } => {
                // A periodic group is made first, with its period; the
                // pairs then join it. (Mode 3 alone makes a streaming one.)
                let params = [
                    Param::Value("GroupName", Value::String(GROUP.into())),
                    Param::Value("TargetSystem", Value::String(SITE_B.into())),
                    Param::Value("Mode", Value::Uint16(3)),
                    Param::Value("SyncInterval", Value::Uint32((period_ms / 1000) as u32)),
                ];
                let r = self
                    .client(Side::A)
                    .invoke(&rs, "CreateRemoteCopyGroup", &params)
                    .map_err(|e| e.to_string())?;
                if r.return_value.as_u64() != Some(0) {
                    return Err(format!(
                        "CreateRemoteCopyGroup returned {:?}",
                        r.return_value
                    ));
                }
                3
            }
        };
        for v in VOLUMES {
            let src = provider::model_paths::vol_path(SITE_A, &self.host(Side::A), v);
            let mut params = vec![
                Param::Value("ElementName", Value::String(GROUP.into())),
                Param::Value("SyncType", Value::Uint16(6)),
                Param::Value("Mode", Value::Uint16(mode_n)),
                Param::Ref("SourceElement", src),
            ];
            if !start {
                // Initialized: create the association, start no data flow.
                params.push(Param::Value("WaitForCopyState", Value::Uint16(2)));
            }
            let r = self
                .client(Side::A)
                .invoke(&rs, "CreateElementReplica", &params)
                .map_err(|e| e.to_string())?;
            if !matches!(r.return_value.as_u64(), Some(0) | Some(4096)) {
                return Err(format!(
                    "CreateElementReplica({v}) returned {:?}",
                    r.return_value
                ));
            }
            self.core.step(&Step::Settle)?;
        }
        if start {
            for v in VOLUMES {
                let o = self.observe_one(Side::A, v)?;
                if o.status != "Synced" {
                    return Err(format!(
                        "setup: {v} is {} after CreateElementReplica, not Synced",
                        o.status
                    ));
                }
            }
        }
        Ok(())
    }

    fn observe_one(&mut self, side: Side, vol: &str) -> Result<Observed, String> {
        let host = self.host(side);
        observe_pair(self.client(side), site(side), &host, vol)
    }
}

/// One pair of `vol` on `array` (reached at `host`), read over CIM-XML:
/// its StorageSynchronized found by References from the volume.
pub fn observe_pair(
    client: &mut Client,
    array: &str,
    host: &str,
    vol: &str,
) -> Result<Observed, String> {
    let vp = provider::model_paths::vol_path(array, host, vol);
    let refs = client
        .references(&vp, "CIM_StorageSynchronized")
        .map_err(|e| e.to_string())?;
    let (path, _) = refs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{vol} on {array} has no StorageSynchronized"))?;
    let inst = client.get_instance(&path).map_err(|e| e.to_string())?;
    let num = |n: &str| {
        inst.get(n)
            .and_then(Value::as_u64)
            .map(|v| v as u16)
            .ok_or_else(|| format!("{vol}: {n} is missing"))
    };
    let role = match num("Role")? {
        1 => "Primary",
        2 => "Secondary",
        3 => "Primary-Rev",
        4 => "Secondary-Rev",
        n => return Err(format!("{vol}: Role {n}")),
    };
    let status = match num("SyncStatus")? {
        1 => "New",
        2 => "Syncing",
        3 => "Synced",
        4 => "NotSynced",
        5 => "Stopped",
        6 => "Stale",
        n => return Err(format!("{vol}: SyncStatus {n}")),
    };
    Ok(Observed {
        vol: vol.to_string(),
        role: role.into(),
        status: status.into(),
        copy_state: num("CopyState")?,
        sync_state: num("SyncState")?,
        progress: num("ProgressStatus")?,
        role_reversed: inst
            .get("RoleReversed")
            .and_then(Value::as_bool)
            .ok_or("RoleReversed is missing")?,
    })
}

/// See [`CimDriver::wall_clock`].
pub struct WallClock {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WallClock {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for CimDriver {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Driver for CimDriver {
    fn reset(&mut self) -> Result<(), String> {
        self.core.reset()
    }

    /// One rcopy command as the CIM calls an SMI-S console would make,
    /// without waiting for the job it may start.
    fn command(&mut self, side: Side, cmd: crate::core::Command) -> Result<(), String> {
        self.console(side).run(&cmd, Wait::No, &mut |_, _| {})
    }

    fn act(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Setup { mode, start } => self.setup(mode, *start),
            Step::Rcopy { .. } | Step::ExpectError { .. } => self.step(step),
            Step::CheckError { side, contains } => {
                let rows = self.console(*side).show()?;
                let error = rows
                    .iter()
                    .find(|g| g.name == GROUP)
                    .and_then(|g| g.error.clone());
                super::check_error(*side, error.as_deref(), contains)
            }
            // Faults, host I/O, time and data checks come from outside.
            other => self.core.step(other),
        }
    }

    fn observe(&mut self, side: Side) -> Result<Vec<Observed>, String> {
        let host = self.host(side);
        observe_group(self.console(side), site(side), &host)
    }
}

/// Every pair of rcg0 on `array`, and a check that the group's own
/// GroupSynchronized agrees with its pairs. The pairs and the group are
/// separate requests, so a running array may move between them: the check
/// is made when the pairs read the same before and after the group, and
/// the reads are retried (a few times) while they do not.
pub fn observe_group(
    console: &mut Console,
    array: &str,
    host: &str,
) -> Result<Vec<Observed>, String> {
    let pairs = |console: &mut Console| -> Result<Vec<Observed>, String> {
        VOLUMES
            .iter()
            .map(|v| observe_pair(console.client(), array, host, v))
            .collect()
    };
    let mut out = pairs(console)?;
    for _ in 0..5 {
        let (gs, _) = console.group_sync(GROUP)?;
        let g = console
            .client()
            .get_instance(&gs)
            .map_err(|e| e.to_string())?;
        let after = pairs(console)?;
        if after != out {
            out = after;
            continue;
        }
        for (n, pick) in [("CopyState", 0usize), ("ProgressStatus", 2)] {
            let want = [out[0].copy_state, out[0].sync_state, out[0].progress][pick];
            let got = g.get(n).and_then(Value::as_u64).map(|v| v as u16);
            if out
                .iter()
                .all(|o| [o.copy_state, o.sync_state, o.progress][pick] == want)
                && got != Some(want)
            {
                return Err(format!(
                    "GroupSynchronized {n} is {got:?}, its pairs show {want} before and after it"
                ));
            }
        }
        break;
    }
    Ok(out)
}
