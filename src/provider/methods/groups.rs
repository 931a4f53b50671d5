//! The SMI-S group methods: CreateGroup and DeleteGroup (a group held by
//! the provider until it replicates) and CreateGroupReplica, which makes
//! it a remote-copy group of the core.

use super::*;

/// CreateGroup: a named, ordered set of this array's volumes, not
/// replicating yet (the provider holds it until CreateGroupReplica).
pub(super) fn create_local_group(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let name = param(p, "GroupName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CimError::invalid_parameter("GroupName is required: groups here are named"))?
        .to_string();
    let snap = rep.snapshot();
    let mut members = Vec::new();
    if let Some(Value::Array(refs)) = param(p, "Members") {
        for m in refs.iter().flatten() {
            let vol = m
                .as_ref_path()
                .filter(|m| {
                    m.key("SystemName")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s == rep.array)
                })
                .and_then(|m| m.key("DeviceID"))
                .and_then(Value::as_str)
                .filter(|v| snap.volume(v).is_some())
                .ok_or_else(|| {
                    let what = m
                        .as_ref_path()
                        .map_or("a value that is not a reference".to_string(), |p| {
                            p.to_string()
                        });
                    CimError::invalid_parameter(format!(
                        "Members: {what} is not a volume of {}",
                        rep.array
                    ))
                })?;
            if snap
                .groups
                .iter()
                .any(|g| g.pairs.iter().any(|p| p.local == vol))
            {
                return Err(CimError::invalid_parameter(format!(
                    "Members: {vol} already replicates in a remote-copy group"
                )));
            }
            if !members.iter().any(|x| x == vol) {
                members.push(vol.to_string());
            }
        }
    }
    crate::core::names::group(&name).map_err(|e| CimError::invalid_parameter(e.to_string()))?;
    let mut local = rep.local_groups.lock().expect("not poisoned");
    if snap.group(&name).is_some() || local.contains_key(&name) {
        return Err(CimError::already_exists(format!(
            "a group named {name} already exists on {}",
            rep.array
        )));
    }
    local.insert(name.clone(), members);
    let path = group_path(&rep.array, &rep.host_of(&rep.array), &name);
    done(
        OK,
        vec![(Name::new("ReplicationGroup"), Value::reference(path))],
    )
}

/// Refuses a remote-copy group name taken by a CreateGroup group.
pub(super) fn not_local(rep: &Replication, name: &str) -> Result<(), CimError> {
    if rep
        .local_groups
        .lock()
        .expect("not poisoned")
        .contains_key(name)
    {
        return Err(CimError::invalid_parameter(format!(
            "{name} is a group made by CreateGroup: replicate it with CreateGroupReplica"
        )));
    }
    Ok(())
}

/// The name of a group this array's provider made with CreateGroup.
pub(super) fn local_group_name(
    rep: &Replication,
    p: &Params,
    what: &str,
) -> Result<String, CimError> {
    let g = param(p, what)
        .and_then(Value::as_ref_path)
        .ok_or_else(|| CimError::invalid_parameter(format!("{what} is required")))?;
    let id = g.key("InstanceID").and_then(Value::as_str).unwrap_or("");
    let name = id.strip_prefix(&format!("{}:", rep.array)).ok_or_else(|| {
        CimError::invalid_parameter(format!("{what} {g} is not a group of {}", rep.array))
    })?;
    if rep
        .local_groups
        .lock()
        .expect("not poisoned")
        .contains_key(name)
    {
        return Ok(name.to_string());
    }
    if rep.snapshot().group(name).is_some() {
        return Err(CimError::invalid_parameter(format!(
            "{what}: {name} is already a remote-copy group; use ModifyReplicaSynchronization or RemoveRemoteCopyGroup"
        )));
    }
    Err(CimError::invalid_parameter(format!(
        "{what} {g} is not a group of {}",
        rep.array
    )))
}

/// DeleteGroup of a group that does not replicate (RemoveElements: no).
pub(super) fn delete_local_group(rep: &Replication, p: &Params) -> Result<MethodResult, CimError> {
    let name = local_group_name(rep, p, "ReplicationGroup")?;
    if param(p, "RemoveElements").and_then(Value::as_bool) == Some(true) {
        return done(NOT_SUPPORTED, Vec::new());
    }
    rep.local_groups.lock().expect("not poisoned").remove(&name);
    done(OK, Vec::new())
}

/// CreateGroupReplica: a CreateGroup group becomes a remote-copy group
/// (named RelationshipName, else the group's name) mirroring every member
/// to the same-named volume on the peer, which creates them.
pub(super) fn create_group_replica(
    rep: &Replication,
    p: &Params,
) -> Result<MethodResult, CimError> {
    if u16p(p, "SyncType") != Some(6) {
        return done(NOT_SUPPORTED, Vec::new());
    }
    let mode = mode_param(p, None)?;
    let source = local_group_name(rep, p, "SourceGroup")?;
    let target = param(p, "TargetGroup").and_then(Value::as_ref_path);
    let target_system = target
        .and_then(|t| t.key("InstanceID"))
        .and_then(Value::as_str)
        .and_then(|id| id.split_once(':'))
        .map(|(sys, _)| sys.to_string());
    let peer = pick_peer(rep, p, target_system.as_deref(), "TargetGroup")?;
    let name = param(p, "RelationshipName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&source)
        .to_string();
    let members = rep
        .local_groups
        .lock()
        .expect("not poisoned")
        .get(&source)
        .cloned()
        .ok_or_else(|| CimError::invalid_parameter(format!("group {source} was just deleted")))?;
    if members.is_empty() {
        return Err(CimError::invalid_parameter(format!(
            "group {source} has no members: add volumes with CreateGroup's Members"
        )));
    }
    if name != source && rep.snapshot().group(&name).is_some() {
        return Err(CimError::already_exists(format!(
            "a group named {name} already exists on {}",
            rep.array
        )));
    }
    rep.backend
        .command(Command::CreateGroup {
            group: name.clone(),
            peer: peer.clone(),
            mode,
            policies: Policies::default(),
        })
        .map_err(failed)?;
    let mut cmds: Vec<Command> = members
        .iter()
        .map(|v| Command::Admit {
            group: name.clone(),
            vol: v.clone(),
            remote_vol: v.clone(),
        })
        .collect();
    let wait = u16p(p, "WaitForCopyState")
        .and_then(CopyState::from_number)
        .unwrap_or(CopyState::Synchronized);
    if wait != CopyState::Initialized {
        cmds.push(Command::Start {
            group: name.clone(),
        });
    }
    for c in cmds {
        if let Err(e) = rep.backend.command(c) {
            // Leave things as they were: the group stays a local group.
            let _ = rep.backend.command(Command::RemoveGroup {
                group: name.clone(),
                force: false,
                remove_vv: false,
            });
            return Err(failed(e));
        }
    }
    rep.local_groups
        .lock()
        .expect("not poisoned")
        .remove(&source);
    let snap = rep.snapshot();
    let g = snap.group(&name).expect("created");
    let sync = rep.group_sync_path(g);
    let target_path = group_path(&peer, &rep.host_of(&peer), &name);
    let mut r = finish(
        rep,
        "CreateGroupReplica",
        &name,
        None,
        Goal {
            role: None,
            copy: Some(wait),
            pair: None,
            replica: None,
            verify: None,
        },
        &sync,
        vec![target_path.clone()],
    )?;
    r.out
        .push((Name::new("Synchronization"), Value::reference(sync)));
    r.out
        .push((Name::new("TargetGroup"), Value::reference(target_path)));
    Ok(r)
}
