//! The storage admin's side of the 3PAR vocabulary: each rcopy command as
//! the CIM-XML calls an SMI-S console makes (the operation map of
//! ../shared/reference/interface.md), and `showrcopy` read back from the
//! provider's instances. Used by `replicim rcopy` and by the CIM-level
//! conformance driver, so both speak to arrays the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::cim::client::{Client, ClientError, MethodReturn, Param};
use crate::cim::model::{Instance, ObjectPath, Value};
use crate::core::{
    Command, CopyState, Mode, ReplicaKind, ReplicaOp, Role, SyncOperation, SyncStatus, BLOCK_SIZE,
};

/// The implementation namespace the provider serves.
const NS: &str = "root/cimv2";

/// One remote-copy group, as showrcopy lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupRow {
    pub name: String,
    pub target: String,
    /// Started, Stopped, or Error (stopped because the destination could
    /// not keep up; `error` says why).
    pub status: String,
    pub role: String,
    /// Sync, Async or Periodic.
    pub mode: String,
    /// Seconds between periodic syncs (0: manual syncs).
    pub period_s: u32,
    /// Async and periodic groups: changed data not yet on the target.
    pub lag_bytes: u64,
    /// Age of the oldest write not yet on the target, in ms.
    pub lag_ms: u64,
    /// Why the group is in Error.
    pub error: Option<String>,
    /// The last online verify (verifyrcopy) on this array, if any.
    pub verify: Option<VerifyRow>,
    pub options: Vec<String>,
    pub volumes: Vec<VolumeRow>,
}

/// One volume pair of a group.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VolumeRow {
    pub local_vv: String,
    pub remote_vv: String,
    pub sync_status: String,
    pub percent_synced: Option<u64>,
    /// When the pair was last whole on the target (UTC), if ever.
    pub last_sync_time: Option<String>,
    pub bytes: u64,
}

/// One volume of the array (showvv).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VvRow {
    pub name: String,
    pub size_mib: u64,
    /// Base, or the group roles it has (Primary, Secondary, ...).
    pub role: String,
    pub groups: Vec<String>,
}

/// A group's last online verify, as showrcopy prints it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VerifyRow {
    /// running, done, or `failed: WHY`.
    pub status: String,
    pub compared_bytes: u64,
    pub total_bytes: u64,
    pub differing_blocks: u64,
    /// VOLUME:BLOCK, the first 1024.
    pub differing: Vec<String>,
    pub ms: u64,
}

/// One snapshot of the array (`showvv -snap`): a local snapshot replica,
/// or a retained copy a remote-copy group keeps on its backup.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SnapRow {
    pub name: String,
    /// The volume it is a point of.
    pub base: String,
    /// The group that keeps it (a retained copy), or None.
    pub retained_by: Option<String>,
    /// Its point in time, UTC (the primary's time for a retained copy).
    pub point_time: Option<String>,
    /// The name of an application-consistent point.
    pub point_name: Option<String>,
    /// What it costs: the old blocks it holds apart from its base.
    pub saved_bytes: u64,
}

/// Whether a command waits for the job it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    No,
    /// Poll the job until it ends; `progress` is called with
    /// (percent, bytes remaining) after each poll.
    Yes,
}

/// One array, reached over CIM-XML.
pub struct Console {
    client: Client,
    array: String,
    service: ObjectPath,
}

fn cim(e: ClientError) -> String {
    e.to_string()
}

fn num(i: &Instance, n: &str) -> Option<u64> {
    i.get(n).and_then(Value::as_u64)
}

fn text(i: &Instance, n: &str) -> String {
    i.get(n).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A string property, None when absent or empty.
fn some_text(i: &Instance, n: &str) -> Option<String> {
    Some(text(i, n)).filter(|t| !t.is_empty())
}

/// A string array property (empty when absent).
fn texts(i: &Instance, n: &str) -> Vec<String> {
    match i.get(n) {
        Some(Value::Array(v)) => v
            .iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn role_name(n: Option<u64>) -> String {
    n.and_then(|n| u16::try_from(n).ok())
        .and_then(Role::from_number)
        .map_or_else(|| "?".to_string(), |r| r.to_string())
}

fn status_name(n: Option<u64>) -> String {
    n.and_then(|n| u16::try_from(n).ok())
        .and_then(SyncStatus::from_number)
        .map_or_else(|| "?".to_string(), |s| s.to_string())
}

/// `yyyymmddhhmmss.mmmmmm+000` as `yyyy-mm-dd hh:mm:ss UTC`.
fn utc_text(dt: &str) -> Option<String> {
    let d = dt.get(0..14)?;
    if !d.bytes().all(|b| b.is_ascii_digit()) || dt.get(21..) != Some("+000") {
        return Some(dt.to_string());
    }
    Some(format!(
        "{}-{}-{} {}:{}:{} UTC",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[8..10],
        &d[10..12],
        &d[12..14]
    ))
}

impl Console {
    /// Connects and finds the array's ReplicationService.
    pub fn connect(client: Client) -> Result<Console, String> {
        let mut client = client;
        let services = client
            .enumerate_instances(NS, "CIM_ReplicationService")
            .map_err(cim)?;
        let (service, inst) = match services.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(format!(
                    "{} serves no CIM_ReplicationService: it does not host an array",
                    client.addr()
                ))
            }
            _ => {
                return Err(format!(
                    "{} serves several replication services",
                    client.addr()
                ))
            }
        };
        let array = text(&inst, "SystemName");
        Ok(Console {
            client,
            array,
            service,
        })
    }

    /// The array's name.
    pub fn array(&self) -> &str {
        &self.array
    }

    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Every instance of `class` (and its subclasses) in the namespace.
    fn all(&mut self, class: &str) -> Result<Vec<(ObjectPath, Instance)>, String> {
        self.client.enumerate_instances(NS, class).map_err(cim)
    }

    /// showvv: every volume with its size, and the groups and roles it
    /// has in them.
    pub fn show_volumes(&mut self) -> Result<Vec<VvRow>, String> {
        let groups = self.show()?;
        // Local replicas: target -> "Snapshot(SOURCE)" or "Copy(SOURCE)".
        let replicas: BTreeMap<String, String> = self
            .all("CIM_StorageSynchronized")?
            .into_iter()
            .filter_map(|(_, s)| {
                let kind = match num(&s, "SyncType")? {
                    7 => "Snapshot",
                    8 => "Copy",
                    _ => return None,
                };
                let end = |k: &str| {
                    s.get(k)
                        .and_then(Value::as_ref_path)
                        .and_then(|p| p.key("DeviceID"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                };
                let pct = num(&s, "PercentSynced").unwrap_or(100);
                let role = match pct {
                    100 => format!("{kind}({})", end("SystemElement")?),
                    p => format!("{kind}({}) {p}%", end("SystemElement")?),
                };
                Some((end("SyncedElement")?, role))
            })
            .collect();
        let mut rows: Vec<VvRow> = self
            .all("CIM_StorageVolume")?
            .into_iter()
            .map(|(_, v)| {
                let name = text(&v, "DeviceID");
                let blocks = num(&v, "NumberOfBlocks").unwrap_or(0);
                let size = num(&v, "BlockSize").unwrap_or(0) * blocks;
                let mut roles = Vec::new();
                let mut in_groups = Vec::new();
                for g in &groups {
                    if g.volumes.iter().any(|r| r.local_vv == name) {
                        in_groups.push(g.name.clone());
                        if !roles.contains(&g.role) {
                            roles.push(g.role.clone());
                        }
                    }
                }
                if let Some(r) = replicas.get(&name) {
                    roles.insert(0, r.clone());
                }
                VvRow {
                    name,
                    size_mib: size >> 20,
                    role: if roles.is_empty() {
                        "Base".into()
                    } else {
                        roles.join(",")
                    },
                    groups: in_groups,
                }
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// showvv -snap: every snapshot replica, retained copies included,
    /// with its point and its cost, by volume and point time.
    pub fn show_snapshots(&mut self) -> Result<Vec<SnapRow>, String> {
        let dev = |i: &Instance, k: &str| {
            i.get(k)
                .and_then(Value::as_ref_path)
                .and_then(|p| p.key("DeviceID"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let cost: BTreeMap<String, u64> = self
            .all("CIM_AllocatedFromStoragePool")?
            .into_iter()
            .filter_map(|(_, a)| Some((dev(&a, "Dependent")?, num(&a, "SpaceConsumed")?)))
            .collect();
        let mut rows: Vec<(String, SnapRow)> = self
            .all("CIM_StorageSynchronized")?
            .into_iter()
            .filter(|(_, s)| num(s, "SyncType") == Some(7))
            .filter_map(|(_, s)| {
                let name = dev(&s, "SyncedElement")?;
                let raw = match s.get("WhenEstablished") {
                    Some(Value::Datetime(d)) => d.as_str().to_string(),
                    _ => String::new(),
                };
                Some((
                    raw,
                    SnapRow {
                        base: dev(&s, "SystemElement")?,
                        retained_by: some_text(&s, "RetainedBy"),
                        point_time: match s.get("WhenEstablished") {
                            Some(Value::Datetime(d)) => utc_text(d.as_str()),
                            _ => None,
                        },
                        point_name: some_text(&s, "PointName"),
                        saved_bytes: cost.get(&name).copied().unwrap_or(0),
                        name,
                    },
                ))
            })
            .collect();
        // By volume, then oldest point first (the CIM datetime, to the
        // microsecond, sorts as text).
        rows.sort_by(|(ta, a), (tb, b)| (&a.base, ta, &a.name).cmp(&(&b.base, tb, &b.name)));
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    /// showrcopy: every group of the array with its volume pairs.
    pub fn show(&mut self) -> Result<Vec<GroupRow>, String> {
        let groups = self.all("CIM_ReplicationGroup")?;
        // The classes with an instance per volume are read a page at a
        // time, with only the properties the listing shows, and each page
        // is boiled down to the row data before the next one comes: rcopy
        // holds the listing, not 8,000 instances of each class.
        const PAGE: u32 = 500;
        let key = |p: &ObjectPath| {
            let mut k: Vec<(String, String)> = p
                .keys
                .iter()
                .map(|(n, v)| (n.as_str().to_ascii_lowercase(), v.to_text()))
                .collect();
            k.sort();
            (p.class.as_str().to_ascii_lowercase(), k)
        };
        // Each group's members (sequence, local volume), by the group's
        // path, found once.
        let mut members_of: BTreeMap<_, Vec<(u64, String)>> = BTreeMap::new();
        self.client
            .enumerate_instances_paged(
                NS,
                "CIM_OrderedMemberOfCollection",
                Some(&["Collection", "Member", "AssignedSequence"]),
                PAGE,
                |page| {
                    for (_, m) in page {
                        let coll = m.get("Collection").and_then(Value::as_ref_path);
                        let local = m
                            .get("Member")
                            .and_then(Value::as_ref_path)
                            .and_then(|v| v.key("DeviceID"))
                            .and_then(Value::as_str);
                        if let (Some(c), Some(local)) = (coll, local) {
                            let seq = num(&m, "AssignedSequence").unwrap_or(0);
                            members_of
                                .entry(key(c))
                                .or_default()
                                .push((seq, local.to_string()));
                        }
                    }
                },
            )
            .map_err(cim)?;
        // Each pair's row by (group, local volume): a volume may mirror in
        // several groups, to one array or several.
        let me = self.array.clone();
        type PairKey = (String, String);
        let mut by_local: BTreeMap<PairKey, VolumeRow> = BTreeMap::new();
        self.client
            .enumerate_instances_paged(
                NS,
                "CIM_StorageSynchronized",
                Some(&[
                    "SystemElement",
                    "SyncedElement",
                    "GroupName",
                    "SyncStatus",
                    "PercentSynced",
                    "WhenSynced",
                ]),
                PAGE,
                |page| {
                    for (_, p) in page {
                        let ends: Vec<&ObjectPath> = ["SystemElement", "SyncedElement"]
                            .iter()
                            .filter_map(|k| p.get(k).and_then(Value::as_ref_path))
                            .collect();
                        let name = |e: &ObjectPath| {
                            e.key("DeviceID")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string()
                        };
                        let mine = |e: &ObjectPath| {
                            e.key("SystemName").and_then(Value::as_str) == Some(me.as_str())
                        };
                        if let [a, b] = ends.as_slice() {
                            let (local, remote) = if mine(a) { (a, b) } else { (b, a) };
                            let last = match p.get("WhenSynced") {
                                Some(Value::Datetime(d)) => utc_text(d.as_str()),
                                _ => None,
                            };
                            let row = VolumeRow {
                                local_vv: name(local),
                                remote_vv: name(remote),
                                sync_status: status_name(num(&p, "SyncStatus")),
                                percent_synced: num(&p, "PercentSynced"),
                                last_sync_time: last,
                                bytes: 0,
                            };
                            by_local.insert((text(&p, "GroupName"), name(local)), row);
                        }
                    }
                },
            )
            .map_err(cim)?;
        let mut size: BTreeMap<String, u64> = BTreeMap::new();
        self.client
            .enumerate_instances_paged(
                NS,
                "CIM_StorageVolume",
                Some(&["DeviceID", "BlockSize", "NumberOfBlocks"]),
                PAGE,
                |page| {
                    for (_, v) in page {
                        let bytes = num(&v, "BlockSize").unwrap_or(0)
                            * num(&v, "NumberOfBlocks").unwrap_or(0);
                        size.insert(text(&v, "DeviceID"), bytes);
                    }
                },
            )
            .map_err(cim)?;
        let mut out = Vec::new();
        for (gpath, g) in &groups {
            let mut vols: Vec<(u64, VolumeRow)> = Vec::new();
            for (seq, local) in members_of.get(&key(gpath)).into_iter().flatten() {
                let Some(row) = by_local.get(&(text(g, "ElementName"), local.clone())) else {
                    continue;
                };
                let mut row = row.clone();
                row.bytes = size.get(local).copied().unwrap_or(0);
                vols.push((*seq, row));
            }
            vols.sort_by_key(|(seq, _)| *seq);
            let options = texts(g, "SyncPolicy");
            let error = some_text(g, "ErrorReason");
            let verify = some_text(g, "VerifyStatus").map(|status| VerifyRow {
                status,
                compared_bytes: num(g, "VerifyComparedBytes").unwrap_or(0),
                total_bytes: num(g, "VerifyTotalBytes").unwrap_or(0),
                differing_blocks: num(g, "VerifyDifferingBlocks").unwrap_or(0),
                differing: texts(g, "VerifyDiffering"),
                ms: num(g, "VerifyMilliseconds").unwrap_or(0),
            });
            out.push(GroupRow {
                name: text(g, "ElementName"),
                target: text(g, "TargetSystem"),
                status: if g.get("Started").and_then(Value::as_bool) == Some(true) {
                    "Started".into()
                } else if error.is_some() {
                    "Error".into()
                } else {
                    "Stopped".into()
                },
                role: role_name(num(g, "Role")),
                mode: match text(g, "ReplicationMode").as_str() {
                    "async" => "Async".into(),
                    "periodic" => "Periodic".into(),
                    "sync" => "Sync".into(),
                    // An array without the vendor property.
                    _ if num(g, "Mode") == Some(3) => "Periodic".into(),
                    _ => "Sync".into(),
                },
                period_s: num(g, "SyncInterval").unwrap_or(0) as u32,
                lag_bytes: num(g, "LagBytes").unwrap_or(0),
                lag_ms: num(g, "LagMilliseconds").unwrap_or(0),
                error,
                verify,
                options,
                volumes: vols.into_iter().map(|(_, v)| v).collect(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Reads one instance by its path: None when the array has no such
    /// instance. A command reads what it acts on by key, so its cost does
    /// not grow with the number of groups and volumes on the array.
    fn get(&mut self, mut path: ObjectPath) -> Result<Option<(ObjectPath, Instance)>, String> {
        path.host = None;
        match self.client.get_instance(&path) {
            Ok(i) => Ok(Some((path, i))),
            Err(ClientError::Cim(e)) if e.code == 6 => Ok(None),
            Err(e) => Err(cim(e)),
        }
    }

    fn group(&mut self, name: &str) -> Result<(ObjectPath, Instance), String> {
        let path = crate::provider::model_paths::group_path(&self.array, "", name);
        self.get(path)?
            .ok_or_else(|| format!("remote-copy group {name} does not exist on {}", self.array))
    }

    /// The GroupSynchronized of a group (it has one once it has a volume).
    pub fn group_sync(&mut self, name: &str) -> Result<(ObjectPath, Instance), String> {
        let (g, _) = self.group(name)?;
        let refs = self
            .client
            .references(&g, "CIM_GroupSynchronized")
            .map_err(cim)?;
        refs.into_iter()
            .next()
            .ok_or_else(|| format!("group {name} has no volumes yet: admit one first (admitrcopyvv VV {name} TARGET:VV)"))
    }

    /// The StorageSynchronized of one local volume in one group (a volume
    /// can mirror in several groups).
    pub fn pair_sync(&mut self, group: &str, vol: &str) -> Result<(ObjectPath, Instance), String> {
        self.group(group)?;
        let vp = self.volume(vol)?;
        let refs = self
            .client
            .references(&vp, "CIM_StorageSynchronized")
            .map_err(cim)?;
        refs.into_iter()
            .find(|(_, p)| text(p, "GroupName") == group)
            .ok_or_else(|| {
                format!(
                    "volume {vol} is not in remote-copy group {group} on {}",
                    self.array
                )
            })
    }

    /// The StorageSynchronized of local replica `name` (its SyncedElement).
    fn replica_sync(&mut self, name: &str) -> Result<ObjectPath, String> {
        let vp = self.volume(name)?;
        let refs = self
            .client
            .references(&vp, "CIM_StorageSynchronized")
            .map_err(cim)?;
        refs.into_iter()
            .find(|(_, s)| {
                matches!(num(s, "SyncType"), Some(7 | 8))
                    && s.get("SyncedElement")
                        .and_then(Value::as_ref_path)
                        .and_then(|p| p.key("DeviceID"))
                        .and_then(Value::as_str)
                        == Some(name)
            })
            .map(|(p, _)| p)
            .ok_or_else(|| {
                format!(
                    "{name} is not a snapshot or a copy on {} (showvv lists them)",
                    self.array
                )
            })
    }

    fn volume(&mut self, vol: &str) -> Result<ObjectPath, String> {
        let path = crate::provider::model_paths::vol_path(&self.array, "", vol);
        self.get(path)?
            .map(|(p, _)| p)
            .ok_or_else(|| format!("volume {vol} does not exist on {}", self.array))
    }

    /// Runs one rcopy command. With `Wait::Yes`, a command that starts a
    /// job returns when the job ends; `progress` sees (percent, bytes left).
    pub fn run(
        &mut self,
        cmd: &Command,
        wait: Wait,
        progress: &mut dyn FnMut(u16, u64),
    ) -> Result<(), String> {
        let group = cmd.group().unwrap_or_default().to_string();
        let r = match cmd {
            Command::CreateGroup { peer, mode, .. } => {
                let mut params = vec![
                    Param::Value("GroupName", Value::String(group.clone())),
                    Param::Value("TargetSystem", Value::String(peer.clone())),
                ];
                match mode {
                    Mode::Sync => params.push(Param::Value("Mode", Value::Uint16(2))),
                    Mode::Async => params.push(Param::Value("Mode", Value::Uint16(3))),
                    Mode::Periodic { period_ms } => {
                        if period_ms % 1000 != 0 {
                            return Err(format!(
                                "period {period_ms} ms: over CIM the period is whole seconds"
                            ));
                        }
                        params.push(Param::Value("Mode", Value::Uint16(3)));
                        params.push(Param::Value(
                            "SyncInterval",
                            Value::Uint32((period_ms / 1000) as u32),
                        ));
                    }
                }
                self.invoke("CreateRemoteCopyGroup", &params)?
            }
            Command::CreateVolume { vol, blocks } => {
                let scs = self.configuration_service()?;
                let pool = self.pool()?;
                self.client
                    .invoke(
                        &scs,
                        "CreateOrModifyElementFromStoragePool",
                        &[
                            Param::Value("ElementName", Value::String(vol.clone())),
                            Param::Value("ElementType", Value::Uint16(2)),
                            Param::Value("Size", Value::Uint64(blocks * BLOCK_SIZE as u64)),
                            Param::Ref("InPool", pool),
                        ],
                    )
                    .map_err(cim)?
            }
            Command::DeleteVolume { vol } => {
                let scs = self.configuration_service()?;
                let path = self.volume(vol)?;
                self.client
                    .invoke(
                        &scs,
                        "ReturnToStoragePool",
                        &[Param::Ref("TheElement", path)],
                    )
                    .map_err(cim)?
            }
            Command::CreateReplica {
                name,
                source,
                kind,
                into,
            } => {
                let src = self.volume(source)?;
                let sync_type = match kind {
                    ReplicaKind::Snapshot => 7,
                    ReplicaKind::Clone => 8,
                };
                let mut params = vec![
                    Param::Value("SyncType", Value::Uint16(sync_type)),
                    Param::Ref("SourceElement", src),
                    Param::Value("WaitForCopyState", Value::Uint16(4)),
                ];
                if *into {
                    params.push(Param::Ref("TargetElement", self.volume(name)?));
                } else {
                    params.push(Param::Value("ElementName", Value::String(name.clone())));
                }
                self.invoke("CreateElementReplica", &params)?
            }
            Command::ModifyReplica { name, op } => {
                let sync = self.replica_sync(name)?;
                let (op, force) = match op {
                    ReplicaOp::Restore => (SyncOperation::RestoreFromReplica, false),
                    ReplicaOp::Resync => (SyncOperation::ResyncReplica, false),
                    ReplicaOp::Detach { force } => (SyncOperation::Detach, *force),
                    ReplicaOp::Return => (SyncOperation::ReturnToResourcePool, false),
                };
                self.modify(op, sync, force)?
            }
            Command::RemoveGroup {
                force, remove_vv, ..
            } => self.invoke(
                "RemoveRemoteCopyGroup",
                &[
                    Param::Value("GroupName", Value::String(group.clone())),
                    Param::Value("Force", Value::Boolean(*force)),
                    Param::Value("RemoveTargetVolumes", Value::Boolean(*remove_vv)),
                ],
            )?,
            Command::SetPeriod { period_ms, .. } => {
                if period_ms % 1000 != 0 {
                    return Err(format!(
                        "period {period_ms} ms: over CIM the period is whole seconds"
                    ));
                }
                self.invoke(
                    "SetRemoteCopyPeriod",
                    &[
                        Param::Value("GroupName", Value::String(group.clone())),
                        Param::Value("SyncInterval", Value::Uint32((period_ms / 1000) as u32)),
                    ],
                )?
            }
            Command::SetPolicy { change, .. } => self.invoke(
                "SetRemoteCopyPolicy",
                &[
                    Param::Value("GroupName", Value::String(group.clone())),
                    Param::Value("Policy", Value::String(super::policy_text(*change))),
                ],
            )?,
            Command::Admit {
                vol, remote_vol, ..
            } => {
                let (_, g) = self.group(&group)?;
                let src = self.volume(vol)?;
                let mut tgt = src.clone();
                tgt.host = None;
                tgt.set_key("SystemName", Value::String(text(&g, "TargetSystem")));
                tgt.set_key("DeviceID", Value::String(remote_vol.clone()));
                let mut params = vec![
                    Param::Value("ElementName", Value::String(group.clone())),
                    Param::Value("SyncType", Value::Uint16(6)),
                    Param::Ref("SourceElement", src),
                    Param::Ref("TargetElement", tgt),
                ];
                if g.get("Started").and_then(Value::as_bool) != Some(true) {
                    // A stopped group stays stopped: associate only.
                    params.push(Param::Value("WaitForCopyState", Value::Uint16(2)));
                }
                self.invoke("CreateElementReplica", &params)?
            }
            Command::Dismiss { vol, .. } => {
                let (sync, _) = self.pair_sync(&group, vol)?;
                self.modify(SyncOperation::Detach, sync, false)?
            }
            Command::Start { .. } => {
                // Resync Replica a broken group from its source side;
                // Activate otherwise (on a target side the array refuses it
                // and names the side to use).
                let (sync, st) = self.group_sync(&group)?;
                let copy = num(&st, "CopyState").and_then(|n| CopyState::from_number(n as u16));
                let role = num(&st, "Role").and_then(|n| Role::from_number(n as u16));
                let broken = matches!(copy, Some(CopyState::Broken | CopyState::Skewed));
                let source = role.is_some_and(Role::is_source);
                let op = if broken && source {
                    SyncOperation::ResyncReplica
                } else {
                    SyncOperation::Activate
                };
                self.modify(op, sync, false)?
            }
            Command::Stop { .. } => self.modify_group(&group, SyncOperation::Deactivate, false)?,
            Command::Verify { repair, .. } => self.invoke(
                "VerifyRemoteCopyGroup",
                &[
                    Param::Value("GroupName", Value::String(group.clone())),
                    Param::Value("Repair", Value::Boolean(*repair)),
                ],
            )?,
            Command::Sync { label: None, .. } => {
                self.modify_group(&group, SyncOperation::ResyncReplica, false)?
            }
            Command::Sync {
                label: Some(label), ..
            } => self.invoke(
                "CreateSyncPoint",
                &[
                    Param::Value("GroupName", Value::String(group.clone())),
                    Param::Value("PointName", Value::String(label.clone())),
                ],
            )?,
            Command::Failover { .. } => {
                self.modify_group(&group, SyncOperation::Failover, false)?
            }
            Command::Recover { full, .. } => {
                self.modify_group(&group, SyncOperation::ResyncReplica, *full)?
            }
            Command::Restore { .. } => self.modify_group(&group, SyncOperation::Failback, false)?,
            Command::Reverse { .. } => {
                self.modify_group(&group, SyncOperation::ReverseRoles, false)?
            }
            Command::SetMode {
                mode: Mode::Sync, ..
            } => self.modify_group(&group, SyncOperation::ResetToSync, false)?,
            Command::SetMode {
                mode: Mode::Async, ..
            } => self.modify_group(&group, SyncOperation::ResetToAsync, false)?,
            Command::SetMode {
                mode: Mode::Periodic { period_ms },
                ..
            } => {
                if *period_ms % 1000 != 0 {
                    return Err(format!(
                        "period {period_ms} ms: over CIM the period is whole seconds"
                    ));
                }
                // Reset To Async makes a sync group stream; the period
                // then makes it periodic, in place.
                let (_, g) = self.group(&group)?;
                if text(&g, "ReplicationMode") == "sync" {
                    self.modify_group(&group, SyncOperation::ResetToAsync, false)?;
                }
                self.invoke(
                    "SetRemoteCopyPeriod",
                    &[
                        Param::Value("GroupName", Value::String(group.clone())),
                        Param::Value("SyncInterval", Value::Uint32((period_ms / 1000) as u32)),
                    ],
                )?
            }
        };
        match r.return_value.as_u64() {
            Some(0) => Ok(()),
            Some(4096) => match (wait, r.out("Job").and_then(Value::as_ref_path)) {
                (Wait::No, _) => Ok(()),
                (Wait::Yes, Some(job)) => self.wait_job(&job.clone(), &group, progress),
                (Wait::Yes, None) => Err("the array started a job but did not name it".into()),
            },
            Some(1) => Err(format!("{} does not support this operation", self.array)),
            rv => Err(format!("the array answered {rv:?}")),
        }
    }

    /// The array's CIM_StorageConfigurationService (Block Services).
    fn configuration_service(&mut self) -> Result<ObjectPath, String> {
        match self.all("CIM_StorageConfigurationService")?.as_slice() {
            [(p, _)] => Ok(p.clone()),
            _ => Err(format!(
                "{} does not serve one CIM_StorageConfigurationService",
                self.array
            )),
        }
    }

    /// The concrete pool volumes are made in.
    fn pool(&mut self) -> Result<ObjectPath, String> {
        self.all("CIM_StoragePool")?
            .into_iter()
            .find(|(_, i)| i.get("Primordial").and_then(Value::as_bool) == Some(false))
            .map(|(p, _)| p)
            .ok_or_else(|| format!("{} has no concrete storage pool", self.array))
    }

    fn invoke(&mut self, method: &str, params: &[Param<'_>]) -> Result<MethodReturn, String> {
        let service = self.service.clone();
        self.client.invoke(&service, method, params).map_err(cim)
    }

    fn modify(
        &mut self,
        op: SyncOperation,
        sync: ObjectPath,
        force: bool,
    ) -> Result<MethodReturn, String> {
        self.invoke(
            "ModifyReplicaSynchronization",
            &[
                Param::Value("Operation", Value::Uint16(op.number())),
                Param::Ref("Synchronization", sync),
                Param::Value("Force", Value::Boolean(force)),
            ],
        )
    }

    fn modify_group(
        &mut self,
        group: &str,
        op: SyncOperation,
        force: bool,
    ) -> Result<MethodReturn, String> {
        let (sync, _) = self.group_sync(group)?;
        self.modify(op, sync, force)
    }

    fn wait_job(
        &mut self,
        job: &ObjectPath,
        group: &str,
        progress: &mut dyn FnMut(u16, u64),
    ) -> Result<(), String> {
        // The group's size does not change while its job runs.
        let total: u64 = self
            .show()?
            .into_iter()
            .filter(|g| g.name == group)
            .flat_map(|g| g.volumes)
            .map(|v| v.bytes)
            .sum();
        loop {
            let j = self.client.get_instance(job).map_err(cim)?;
            let pct = num(&j, "PercentComplete").unwrap_or(0).min(100) as u16;
            progress(pct, total * u64::from(100 - pct) / 100);
            match num(&j, "JobState") {
                Some(2) | Some(3) | Some(4) => std::thread::sleep(Duration::from_millis(100)),
                Some(7) => return Ok(()),
                _ => return Err(text(&j, "ErrorDescription")),
            }
        }
    }
}
