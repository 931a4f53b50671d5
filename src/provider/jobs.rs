//! CIM_ConcreteJob for long operations.
//!
//! A job names a group and a goal: a role to reach, a CopyState every pair
//! must show, or both. At every look (GetInstance, enumeration) it is
//! judged against a fresh snapshot: done when the goal holds and no
//! operation runs on the group any more (ProgressStatus Completed); failed when
//! the group is no longer busy with the operation and the goal does not
//! hold (the core refused or a failure stopped it). Finished jobs stay
//! visible for TimeBeforeRemoval (5 minutes of array time).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::model::job_path;
use super::{Replication, Snapshot};
use crate::cim::model::{CimType, DateTime, Instance, ObjectPath, Value};
use crate::core::{CopyState, Role, Tick};

/// How long a finished job stays visible, in array milliseconds.
pub const TIME_BEFORE_REMOVAL_MS: u64 = 300_000;

#[derive(Clone, Debug, PartialEq)]
pub enum JobState {
    Running,
    Done,
    Failed(String),
}

/// What a job waits for.
#[derive(Clone, Debug, PartialEq)]
pub struct Goal {
    pub role: Option<Role>,
    pub copy: Option<CopyState>,
    /// The one pair (local volume) the goal is about; None: the group.
    pub pair: Option<String>,
    /// A local replica the goal is about, instead of a group (the job's
    /// `group` is then the replica's name).
    pub replica: Option<String>,
    /// The online verify (by its number) the job follows, instead of a
    /// role or a CopyState.
    pub verify: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: u64,
    pub method: String,
    pub group: String,
    pub goal: Goal,
    pub submitted: Tick,
    pub changed: Tick,
    pub state: JobState,
    pub percent: u16,
    /// Elements the job creates or changes (besides the group's pairs).
    pub affected: Vec<ObjectPath>,
    /// The group as the job was last judged against: a read model that
    /// shares it (the group did not change) cannot change the verdict.
    judged_on: Option<std::sync::Arc<crate::core::GroupRead>>,
}

/// Jobs by id. A request judges only the running ones and drops only the
/// expired ones, so its cost follows the jobs still running, not the
/// thousands a console may have finished in the last five minutes.
#[derive(Default)]
pub struct JobTable {
    next: u64,
    jobs: BTreeMap<u64, Job>,
    running: BTreeSet<u64>,
    /// Finished jobs in the order they finished (so by `changed`).
    finished: VecDeque<u64>,
}

impl JobTable {
    /// Starts a job; returns its id.
    pub fn start(
        &mut self,
        method: &str,
        group: &str,
        goal: Goal,
        now: Tick,
        affected: Vec<ObjectPath>,
    ) -> u64 {
        self.next += 1;
        self.running.insert(self.next);
        self.jobs.insert(
            self.next,
            Job {
                id: self.next,
                method: method.to_string(),
                group: group.to_string(),
                goal,
                submitted: now,
                changed: now,
                state: JobState::Running,
                percent: 0,
                affected,
                judged_on: None,
            },
        );
        self.next
    }

    /// Judges every running job against `snap`, and drops finished jobs
    /// older than TimeBeforeRemoval.
    pub fn update(&mut self, snap: &Snapshot) {
        let mut finished = Vec::new();
        for id in &self.running {
            let Some(j) = self.jobs.get_mut(id) else {
                continue;
            };
            let (state, percent) = if j.goal.replica.is_some() {
                judge_replica(snap, j)
            } else {
                let now = snap.group_shared(&j.group);
                if let (Some(was), Some(now)) = (&j.judged_on, now) {
                    if std::sync::Arc::ptr_eq(was, now) {
                        continue;
                    }
                }
                j.judged_on = now.cloned();
                judge(snap, j)
            };
            j.percent = percent;
            if state != JobState::Running {
                j.state = state;
                j.changed = snap.now;
                finished.push(*id);
            }
        }
        for id in finished {
            self.running.remove(&id);
            self.finished.push_back(id);
        }
        while let Some(id) = self.finished.front() {
            match self.jobs.get(id) {
                Some(j) if snap.now.0 < j.changed.0 + TIME_BEFORE_REMOVAL_MS => break,
                _ => {
                    self.jobs.remove(id);
                    self.finished.pop_front();
                }
            }
        }
    }

    pub fn get(&self, id: u64) -> Option<&Job> {
        self.jobs.get(&id)
    }

    /// Instances of the job classes and their associations.
    pub fn instances(&self, class: &str, rep: &Replication) -> Vec<Instance> {
        let me = rep.array.as_str();
        let host = rep.host_of(me);
        let snap = rep.backend.snapshot();
        let mut out = Vec::new();
        for j in self.jobs.values() {
            let jp = job_path(me, &host, j.id);
            match class {
                "RCM_ConcreteJob" => out.push(job_instance(rep, j)),
                "CIM_OwningJobElement" => out.push(
                    Instance::new("CIM_OwningJobElement")
                        .with(
                            "OwningElement",
                            CimType::Reference(None),
                            Some(Value::reference(super::model::rs_path(me, &host))),
                        )
                        .with(
                            "OwnedElement",
                            CimType::Reference(None),
                            Some(Value::reference(jp)),
                        ),
                ),
                "CIM_AffectedJobElement" => {
                    let mut affected = j.affected.clone();
                    if let Some(r) = j.goal.replica.as_ref().and_then(|r| snap.replica(r)) {
                        affected.push(super::local::sync_path_of(rep, r));
                    } else if let Some(g) = snap.group(&j.group) {
                        affected.push(rep.group_sync_path(g));
                        affected.extend(g.pairs.iter().map(|p| rep.pair_sync_path(g, p)));
                    }
                    // An element deleted since (a replica returned to the
                    // pool) is no longer affected by anything.
                    let gone = |p: &ObjectPath| {
                        p.class.is("RCM_StorageVolume")
                            && p.key("SystemName").and_then(Value::as_str) == Some(me)
                            && p.key("DeviceID")
                                .and_then(Value::as_str)
                                .is_some_and(|v| snap.volume(v).is_none())
                    };
                    for a in affected.into_iter().filter(|p| !gone(p)) {
                        let effect = if a.class.is("RCM_StorageVolume") {
                            5
                        } else {
                            4
                        };
                        out.push(
                            Instance::new("CIM_AffectedJobElement")
                                .with(
                                    "AffectedElement",
                                    CimType::Reference(None),
                                    Some(Value::reference(a)),
                                )
                                .with(
                                    "AffectingElement",
                                    CimType::Reference(None),
                                    Some(Value::reference(jp.clone())),
                                )
                                .with(
                                    "ElementEffects",
                                    CimType::Uint16,
                                    Some(Value::Array(vec![Some(Value::Uint16(effect))])),
                                ),
                        );
                    }
                }
                _ => {}
            }
        }
        out
    }
}

/// A job on a local replica: done when it shows the CopyState asked for.
fn judge_replica(snap: &Snapshot, j: &Job) -> (JobState, u16) {
    let name = j.goal.replica.as_deref().unwrap_or_default();
    let Some(r) = snap.replica(name) else {
        return (
            JobState::Failed(format!("replica {name} no longer exists on {}", snap.array)),
            0,
        );
    };
    let percent = (r.copied * 100).checked_div(r.blocks).unwrap_or(100) as u16;
    let now = super::local::copy_state(r);
    if j.goal.copy.is_none_or(|c| c == now) {
        (JobState::Done, 100)
    } else if r.copying {
        (JobState::Running, percent)
    } else {
        (
            JobState::Failed(format!(
                "replica {name} on {} shows CopyState {now}, not {}",
                snap.array,
                j.goal.copy.map(|c| c.to_string()).unwrap_or_default()
            )),
            percent,
        )
    }
}

fn judge(snap: &Snapshot, j: &Job) -> (JobState, u16) {
    let Some(g) = snap.group(&j.group) else {
        return (
            JobState::Failed(format!(
                "group {} no longer exists on {}",
                j.group, snap.array
            )),
            0,
        );
    };
    if let Some(seq) = j.goal.verify {
        return match g.verify.as_ref().filter(|v| v.seq == seq) {
            None => (
                JobState::Failed("the verify is no longer known (the array restarted)".into()),
                0,
            ),
            Some(v) if v.running => (
                JobState::Running,
                (v.compared_blocks * 100)
                    .checked_div(v.total_blocks)
                    .unwrap_or(0) as u16,
            ),
            Some(v) => match &v.failed {
                Some(why) => (JobState::Failed(format!("verify: {why}")), 0),
                None => (JobState::Done, 100),
            },
        };
    }
    let views: Vec<_> = g
        .pairs
        .iter()
        .filter(|p| j.goal.pair.as_ref().is_none_or(|v| *v == p.local))
        .map(|p| &p.view)
        .collect();
    let role_ok = j.goal.role.is_none_or(|r| g.role == r);
    let copy_ok = j
        .goal
        .copy
        .is_none_or(|c| !views.is_empty() && views.iter().all(|v| v.copy_state == c));
    let percent = if views.is_empty() {
        0
    } else {
        (views
            .iter()
            .map(|v| v.percent_synced.unwrap_or(0) as u32)
            .sum::<u32>()
            / views.len() as u32) as u16
    };
    // The whole goal: the role and CopyState, and no operation still
    // running on the group (a failover shows its new role at once, and is
    // done only when the promotion is).
    if role_ok && copy_ok && g.busy.is_none() {
        return (JobState::Done, 100);
    }
    // Still working: an operation is in progress, or a sync run that can
    // still reach the goal.
    if g.busy.is_some() || (j.goal.copy.is_some() && role_ok && (g.started || g.syncing)) {
        return (JobState::Running, percent);
    }
    let seen = views
        .iter()
        .map(|v| format!("{}/{} CopyState {}", v.role, v.status, v.copy_state))
        .collect::<Vec<_>>()
        .join(", ");
    let hint = if snap.links.get(&g.peer) == Some(&true) {
        "see the group's state and issue the operation again".to_string()
    } else {
        format!(
            "the link to {} is down; issue the operation again once it is back",
            g.peer
        )
    };
    (
        JobState::Failed(format!(
            "group {} on {} stopped short of the goal ({seen}); {hint}",
            g.name, snap.array
        )),
        percent,
    )
}

fn job_instance(rep: &Replication, j: &Job) -> Instance {
    let (state, status, code, desc): (u16, Vec<u16>, u16, Option<String>) = match &j.state {
        JobState::Running => (4, vec![2], 0, None),
        JobState::Done => (7, vec![2, 17], 0, None),
        JobState::Failed(why) => (10, vec![6, 17], 4, Some(why.clone())),
    };
    let dt = |t: Tick| Some(Value::Datetime(rep.datetime(t)));
    Instance::new("RCM_ConcreteJob")
        .with(
            "InstanceID",
            CimType::String,
            Some(Value::String(format!("{}:job:{}", rep.array, j.id))),
        )
        .with(
            "Name",
            CimType::String,
            Some(Value::String(j.method.clone())),
        )
        .with(
            "ElementName",
            CimType::String,
            Some(Value::String(format!("{} on {}", j.method, j.group))),
        )
        .with(
            "MethodName",
            CimType::String,
            Some(Value::String(j.method.clone())),
        )
        .with("JobState", CimType::Uint16, Some(Value::Uint16(state)))
        .with(
            "OperationalStatus",
            CimType::Uint16,
            Some(Value::Array(
                status.into_iter().map(|s| Some(Value::Uint16(s))).collect(),
            )),
        )
        .with(
            "PercentComplete",
            CimType::Uint16,
            Some(Value::Uint16(j.percent)),
        )
        .with("ErrorCode", CimType::Uint16, Some(Value::Uint16(code)))
        .with("ErrorDescription", CimType::String, desc.map(Value::String))
        .with(
            "JobStatus",
            CimType::String,
            Some(Value::String(format!("{:?}", j.state))),
        )
        .with("TimeSubmitted", CimType::Datetime, dt(j.submitted))
        .with("TimeOfLastStateChange", CimType::Datetime, dt(j.changed))
        .with(
            "TimeBeforeRemoval",
            CimType::Datetime,
            Some(Value::Datetime(DateTime::interval_ms(
                TIME_BEFORE_REMOVAL_MS,
            ))),
        )
        .with(
            "DeleteOnCompletion",
            CimType::Boolean,
            Some(Value::Boolean(false)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ArrayRead;
    use std::sync::Arc;

    fn at(ms: u64) -> Snapshot {
        Snapshot {
            now: Tick(ms),
            read: Arc::new(ArrayRead::empty("a")),
        }
    }

    fn goal() -> Goal {
        Goal {
            role: Some(Role::Primary),
            copy: None,
            pair: None,
            replica: None,
            verify: None,
        }
    }

    /// A finished job stays visible for TimeBeforeRemoval and then goes;
    /// a running one stays however old it is.
    #[test]
    fn finished_jobs_go_after_time_before_removal() {
        let mut t = JobTable::default();
        // No such group: each job fails when it is first judged.
        let a = t.start("m", "gone", goal(), Tick(0), Vec::new());
        t.update(&at(0));
        let b = t.start("m", "gone", goal(), Tick(1_000), Vec::new());
        t.update(&at(1_000));
        assert!(matches!(t.get(a).unwrap().state, JobState::Failed(_)));
        t.update(&at(TIME_BEFORE_REMOVAL_MS - 1));
        assert!(t.get(a).is_some(), "removed before its time");
        t.update(&at(TIME_BEFORE_REMOVAL_MS));
        assert!(t.get(a).is_none(), "kept after its time");
        assert!(t.get(b).is_some(), "the younger job went with the older");
        t.update(&at(TIME_BEFORE_REMOVAL_MS + 1_000));
        assert!(t.get(b).is_none());
        assert!(t.running.is_empty() && t.finished.is_empty() && t.jobs.is_empty());
    }
}
