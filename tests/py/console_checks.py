"""SMI-S consoles against two replicim arrays (the replication provider).

Usage: console_checks.py PHASE URL_A URL_B

The phases follow the call sequences real consoles make
(../shared/reference/smis-replication.md section 5); the Rust test between
phases injects the faults a console cannot (array kill, restart):

  discover  libstoragemgmt-style discovery on A: profiles in interop,
            ElementConformsToProfile to the ComputerSystem, the
            ReplicationService by SystemName, its capabilities.
  create    EMC-style remote mirror creation on A (CreateElementReplica with
            TargetElement and ConnectivityCollection), job polling, then
            wait_for_sync on CopyState 4 / SyncState 6.
  refusal   operations the array refuses come back as CIM errors that name
            what to do; an unknown operation is "Not Supported".
  failover  on B after A died: failover unless CopyState is already 10
            (Failedover), job polled to Completed.
  group     CreateGroup, then CreateGroupReplica to the peer, as consoles
            that replicate consistency groups do.
  failback  on B after A came back: Resync Replica (recover) then Failback
            (restore), polled until A is Primary and in sync again.
  blocks    libstoragemgmt's Block Services sequence: Block Services
            profile, pools, volumes by pool, volume create and delete
            (refusals: pool full, duplicate, bad name, volume in a group).
  mock      a differential check against pywbem_mock holding the same
            instances: AssociatorNames and ReferenceNames of every instance
            with every association class.
  associations  far ends on the peer (paths and instances), one host in
            every path, pywbemcli round trips of every printed path.
  replicas  local replicas the libstoragemgmt way (volume_replicate with
            clone and copy: capabilities, CreateElementReplica SyncType 7
            and 8 with TargetPool and WaitForCopyState, job polling, the
            new volume through AffectedJobElement), the ETERNUS way (a
            clone into a TargetElement made first), then Restore (15),
            Resync (14), Detach (8) and Return To ResourcePool (19), and
            volume_delete of a snapshot. Leaves lsm_src, its snapshot
            lsm_snap and the copy lsm_copy for the mock phase.
  planned   a planned DR test with both arrays up: Failover (10) on A's
            service, recover and Failback on B's, then teardown with
            Suspend (22, twice) and Detach (8, Force, on a stopped and on a
            started group).

Every check asserts; the script prints one line per check and ends with
"N checks passed".
"""
import sys
import time
import warnings

from pywbem import Uint16, WBEMConnection

from checklib import check, expect_error, summary  # noqa: E402

warnings.simplefilter("error")

phase, url_a, url_b = sys.argv[1:4]
NS = "root/cimv2"
def conn(url, ns=NS):
    return WBEMConnection(url, None, default_namespace=ns, timeout=30)


def rep_service(c):
    """The ReplicationService, found the libstoragemgmt way."""
    services = c.EnumerateInstances("CIM_ReplicationService", PropertyList=["SystemName"])
    check("one ReplicationService per array", len(services) == 1, services)
    return services[0].path


def wait_job(c, name, rc, out):
    """rc 0 is done; rc 4096 is a job polled until it leaves New/Starting/Running."""
    if rc == 0:
        check(f"{name} finished at once", True)
        return None
    check(f"{name} started a job", rc == 4096 and "Job" in out, (rc, dict(out)))
    job = out["Job"]
    for _ in range(600):
        j = c.GetInstance(job, PropertyList=["JobState", "ErrorDescription", "OperationalStatus"])
        if j["JobState"] not in (2, 3, 4):
            break
        time.sleep(0.05)
    check(f"{name} job completed", j["JobState"] == 7, (j["JobState"], j["ErrorDescription"]))
    check(f"{name} job OperationalStatus is OK, Completed", list(j["OperationalStatus"]) == [2, 17], j["OperationalStatus"])
    return job


def pair_of(c, system, vol):
    """The StorageSynchronized of one volume, found with ReferenceNames."""
    vols = c.EnumerateInstanceNames("CIM_StorageVolume")
    vp = [p for p in vols if p["DeviceID"] == vol and p["SystemName"] == system]
    check(f"{vol} is a volume of {system}", len(vp) == 1, vols)
    names = c.ReferenceNames(vp[0], ResultClass="CIM_StorageSynchronized")
    check(f"{vol} on {system} has one StorageSynchronized", len(names) == 1, names)
    return names[0]


def wait_for(c, path, what, cond, tries=600):
    for _ in range(tries):
        inst = c.GetInstance(path, LocalOnly=False)
        if cond(inst):
            return inst
        time.sleep(0.05)
    raise AssertionError(f"{what}: still CopyState {inst['CopyState']} SyncState {inst['SyncState']} Role {inst['Role']}")


a, b = conn(url_a), conn(url_b)

if phase == "discover":
    interop = conn(url_a, "interop")
    profiles = interop.EnumerateInstances(
        "CIM_RegisteredProfile", PropertyList=["RegisteredName", "RegisteredVersion", "RegisteredOrganization"]
    )
    snia = {p["RegisteredName"]: p for p in profiles if p["RegisteredOrganization"] == 11}
    check("SNIA profiles: Array, Replication Services, Job Control", {"Array", "Replication Services", "Job Control"} <= set(snia), sorted(snia))
    check("PropertyList honoured on profiles", set(snia["Array"].keys()) <= {"RegisteredName", "RegisteredVersion", "RegisteredOrganization"}, list(snia["Array"].keys()))
    for prof in ("Array", "Replication Services"):
        systems = interop.AssociatorNames(
            snia[prof].path, ResultClass="CIM_ComputerSystem", AssocClass="CIM_ElementConformsToProfile"
        )
        check(f"{prof} profile leads to the array's ComputerSystem", len(systems) == 1 and systems[0].namespace == NS and systems[0]["Name"] == "site-a", systems)
    system = systems[0]
    cs = a.GetInstance(system)
    check("ComputerSystem is the array (Dedicated includes Storage)", 3 in cs["Dedicated"] and cs["ElementName"] == "site-a", dict(cs))
    rs = rep_service(a)
    check("ReplicationService SystemName matches the array", rs["SystemName"] == system["Name"], rs)
    hosted = a.AssociatorNames(system, AssocClass="CIM_HostedService", ResultClass="CIM_ReplicationService")
    check("HostedService links system and service", [p["Name"] for p in hosted] == [rs["Name"]], hosted)
    caps = a.Associators(rs, AssocClass="CIM_ElementCapabilities", ResultClass="CIM_ReplicationServiceCapabilities")
    check("one ReplicationServiceCapabilities", len(caps) == 1, caps)
    types = list(caps[0]["SupportedReplicationTypes"])
    check("remote mirrors (synchronous, asynchronous), local snapshots and clones (synchronous)", types == [4, 5, 6, 10], types)
    (cp,) = a.EnumerateInstanceNames("CIM_ReplicationServiceCapabilities")
    rc, out = a.InvokeMethod("GetSupportedOperations", cp, ReplicationType=Uint16(4))
    check("GetSupportedOperations lists Failover, Failback, Resync, Reverse", rc == 0 and {10, 11, 14, 20} <= set(out["SupportedOperations"]), (rc, dict(out)))
    rc, out = a.InvokeMethod("GetSupportedFeatures", cp, ReplicationType=Uint16(4))
    check("GetSupportedFeatures: remote source/target managed, remote targets created, foreign paths accepted", rc == 0 and list(out["Features"]) == [34, 35, 42, 46], (rc, dict(out)))
    rc, out = a.InvokeMethod("GetSupportedCopyStates", cp, ReplicationType=Uint16(4))
    check("GetSupportedCopyStates includes Failedover", rc == 0 and 10 in out["SupportedCopyStates"], (rc, dict(out)))
    vols = a.EnumerateInstances("CIM_StorageVolume")
    check("volumes vol0 and vol1 on site-a", sorted(v["DeviceID"] for v in vols) == ["vol0", "vol1"], [v.path for v in vols])
    check("volume sizes are real", all(v["BlockSize"] * v["NumberOfBlocks"] > 0 for v in vols))
    links = a.Associators(rs, ResultClass="CIM_ConnectivityCollection")
    check("a RemoteReplicationCollection leads to site-b", any(str(l["InstanceID"]).endswith("site-b") for l in links), [l.path for l in links])
    peers = a.InvokeMethod("GetPeerSystems", rs)
    check("GetPeerSystems names site-b", peers[0] == 0 and [p["Name"] for p in peers[1]["Systems"]] == ["site-b"], peers)

elif phase == "create":
    rs = rep_service(a)
    (link,) = [l for l in a.Associators(rs, ResultClass="CIM_ConnectivityCollection") if str(l["InstanceID"]).endswith("site-b")]
    b_vols = {}
    for vol in ("vol0", "vol1"):
        src = [p for p in a.EnumerateInstanceNames("CIM_StorageVolume") if p["DeviceID"] == vol][0]
        # The target on B, named the way the peer array names it.
        tgt = src.copy()
        tgt["SystemName"] = "site-b"
        tgt.host = url_b.split("//")[1]
        rc, out = a.InvokeMethod(
            "CreateElementReplica",
            rs,
            ElementName="rcg0",
            SyncType=Uint16(6),
            Mode=Uint16(2),
            SourceElement=src,
            TargetElement=tgt,
            ConnectivityCollection=link.path,
        )
        wait_job(a, f"CreateElementReplica {vol}", rc, out)
        check(f"CreateElementReplica {vol} returns its Synchronization", out["Synchronization"].classname == "RCM_StorageSynchronized", dict(out))
        if rc == 4096:
            affected = a.AssociatorNames(out["Job"], AssocClass="CIM_AffectedJobElement")
            check(f"{vol} job affects the pair's elements", len(affected) >= 1, affected)
        sv = pair_of(a, "site-a", vol)
        inst = wait_for(a, sv, f"{vol} synchronized", lambda i: i["CopyState"] == 4)
        check(f"{vol} SyncState 6, Mode 2, SyncType 6, Role Primary", (inst["SyncState"], inst["Mode"], inst["SyncType"], inst["Role"]) == (6, 2, 6, 1), dict(inst))
        check(f"{vol} SyncedElement is on site-b", inst["SyncedElement"]["SystemName"] == "site-b", inst["SyncedElement"])
        b_vols[vol] = pair_of(b, "site-b", vol)
    groups = a.EnumerateInstances("CIM_GroupSynchronized")
    check("one GroupSynchronized rcg0 on A", [g["RelationshipName"] for g in groups] == ["rcg0"], groups)
    binst = wait_for(b, b_vols["vol0"], "B synchronized", lambda i: i["CopyState"] == 4)
    check("B sees the pair: Secondary, Synchronized", (binst["Role"], binst["CopyState"]) == (2, 4), dict(binst))
    rc, out = a.InvokeMethod("GetReplicationRelationships", rs, Type=Uint16(2))
    check("GetReplicationRelationships lists both pairs", rc == 0 and len(out["Synchronizations"]) == 2, (rc, dict(out)))

elif phase == "refusal":
    rs = rep_service(b)
    sv = pair_of(b, "site-b", "vol0")
    e = expect_error("Failback on the secondary is refused with CIM_ERR_FAILED", 1,
                     lambda: b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(11), Synchronization=sv))
    check("the refusal says where to issue it", "Primary-Rev" in e.status_description, e.status_description)
    e = expect_error("Reverse Roles on a started group is refused", 1,
                     lambda: b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(20), Synchronization=sv))
    check("the reverse refusal says to stop first", "stop it first" in e.status_description, e.status_description)
    rc, _ = b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(2), Synchronization=sv)
    check("Abort (2) is Not Supported (rc 1)", rc == 1, rc)
    expect_error("a missing Synchronization is CIM_ERR_INVALID_PARAMETER", 4,
                 lambda: b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(10)))
    inst = b.GetInstance(sv)
    check("refusals changed nothing", (inst["CopyState"], inst["Role"]) == (4, 2), dict(inst))

elif phase == "failover":
    rs = rep_service(b)
    for vol in ("vol0", "vol1"):
        sv = pair_of(b, "site-b", vol)
        inst = b.GetInstance(sv, LocalOnly=False)
        # The EMC driver skips failover when SyncState is 12; in the 3PAR
        # tables a pair that lost its primary is SyncState 12 (Broken) too
        # (DR row 1), so only CopyState 10 means "already failed over".
        check(f"{vol} on B before failover: Broken, SyncState 12 (DR row 1)", (inst["CopyState"], inst["SyncState"]) in ((5, 12), (10, 12)), dict(inst))
        if inst["CopyState"] == 10:
            check(f"{vol} already failed over with its group", vol == "vol1")
            continue
        rc, out = b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(10), Synchronization=sv, Force=False)
        wait_job(b, f"Failover {vol}", rc, out)
        # The source end moved to B, and with it the association's keys.
        upd = out.get("UpdatedSynchronization")
        check(f"Failover {vol} returns UpdatedSynchronization with B as SystemElement",
              upd is not None and upd["SystemElement"]["SystemName"] == "site-b" and upd["SyncedElement"]["SystemName"] == "site-a", dict(out))
        check("the updated path is the pair's new name", b.GetInstance(upd)["CopyState"] == 10)
    for vol in ("vol0", "vol1"):
        inst = b.GetInstance(pair_of(b, "site-b", vol))
        check(f"{vol} on B: SyncState 12, CopyState 10, Primary-Rev, RoleReversed", (inst["SyncState"], inst["CopyState"], inst["Role"], inst["RoleReversed"]) == (12, 10, 3, True), dict(inst))

elif phase == "failback":
    rs = rep_service(b)
    sv = pair_of(b, "site-b", "vol0")
    rc, out = b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(14), Synchronization=sv)
    wait_job(b, "Resync Replica (recover)", rc, out)
    inst = wait_for(b, sv, "recovered", lambda i: i["CopyState"] == 4)
    check("after recover B is Primary-Rev and Synchronized", (inst["Role"], inst["SyncState"]) == (3, 6), dict(inst))
    inst = wait_for(a, pair_of(a, "site-a", "vol0"), "A in step with B", lambda i: i["CopyState"] == 4)
    check("after recover A is Secondary-Rev", (inst["Role"], inst["RoleReversed"]) == (4, True), dict(inst))
    # EMC's failback: Failback unless SyncState is already 6 on the natural
    # primary; here A is Secondary-Rev, so it is needed.
    rc, out = b.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(11), Synchronization=sv)
    wait_job(b, "Failback (restore)", rc, out)
    for vol in ("vol0", "vol1"):
        inst = wait_for(a, pair_of(a, "site-a", vol), f"{vol} restored", lambda i: i["Role"] == 1 and i["CopyState"] == 4)
        check(f"{vol} on A: Primary again, SyncState 6, not reversed", (inst["SyncState"], inst["RoleReversed"]) == (6, False), dict(inst))
        inst = wait_for(b, pair_of(b, "site-b", vol), f"{vol} on B back to Secondary", lambda i: i["Role"] == 2)
        check(f"{vol} on B: Secondary again", (inst["Role"], inst["CopyState"]) == (2, 4), dict(inst))

elif phase == "group":
    rs = rep_service(a)
    vols = sorted(a.EnumerateInstanceNames("CIM_StorageVolume"), key=lambda p: p["DeviceID"])
    rc, out = a.InvokeMethod("CreateGroup", rs, GroupName="spare", Members=vols[:1])
    check("CreateGroup of one volume", rc == 0, rc)
    rc, _ = a.InvokeMethod("DeleteGroup", rs, ReplicationGroup=out["ReplicationGroup"])
    check("DeleteGroup of a group that does not replicate", rc == 0 and all(g["ElementName"] != "spare" for g in a.EnumerateInstances("CIM_ReplicationGroup")), rc)
    rc, out = a.InvokeMethod("CreateGroup", rs, GroupName="db", Members=vols)
    check("CreateGroup db of vol0 and vol1", rc == 0 and out["ReplicationGroup"]["InstanceID"] == "site-a:db", (rc, dict(out)))
    rg = out["ReplicationGroup"]
    expect_error("a duplicate group name is CIM_ERR_ALREADY_EXISTS", 11,
                 lambda: a.InvokeMethod("CreateGroup", rs, GroupName="db", Members=vols))
    members = a.AssociatorNames(rg, AssocClass="CIM_OrderedMemberOfCollection")
    check("the group's members, through OrderedMemberOfCollection", sorted(m["DeviceID"] for m in members) == ["vol0", "vol1"], members)
    check("no pairs before CreateGroupReplica", a.EnumerateInstanceNames("CIM_StorageSynchronized") == [])
    (link,) = a.Associators(rs, ResultClass="CIM_ConnectivityCollection")
    rc, out = a.InvokeMethod("CreateGroupReplica", rs, SyncType=Uint16(6), Mode=Uint16(2), SourceGroup=rg, ConnectivityCollection=link.path)
    wait_job(a, "CreateGroupReplica", rc, out)
    check("CreateGroupReplica returns the GroupSynchronized and the target group", out["Synchronization"].classname == "RCM_GroupSynchronized" and out["TargetGroup"]["InstanceID"] == "site-b:db", dict(out))
    gs = wait_for(a, out["Synchronization"], "group synchronized", lambda i: i["CopyState"] == 4)
    check("group pair: Synchronized, Role Primary, named db", (gs["Role"], gs["RelationshipName"]) == (1, "db"), dict(gs))
    for vol in ("vol0", "vol1"):
        inst = wait_for(b, pair_of(b, "site-b", vol), f"{vol} on B", lambda i: i["CopyState"] == 4)
        check(f"{vol} mirrored to site-b as Secondary", inst["Role"] == 2, dict(inst))
    g = [x for x in a.EnumerateInstances("CIM_ReplicationGroup") if x["ElementName"] == "db"]
    check("db is now a remote-copy group to site-b", len(g) == 1 and g[0]["TargetSystem"] == "site-b" and g[0]["Started"] is True, g)
    e = expect_error("CreateGroupReplica of a replicating group is CIM_ERR_INVALID_PARAMETER", 4,
                     lambda: a.InvokeMethod("CreateGroupReplica", rs, SyncType=Uint16(6), SourceGroup=rg))
    check("the refusal says what to use instead", "ModifyReplicaSynchronization" in e.status_description, e.status_description)
    rc, _ = a.InvokeMethod("CreateGroupReplica", rs, SyncType=Uint16(7), SourceGroup=rg)
    check("snapshots (SyncType 7) are Not Supported (rc 1)", rc == 1, rc)

elif phase == "planned":
    # A planned DR test as EMC-style consoles run it (cinder's VMAX
    # failover_host with the source alive): Failover (10) on the source
    # array's service, then Resync Replica (14, recover) and Failback (11)
    # on the new source, then teardown with Suspend (22) and Detach (8).
    rs_a, rs_b = rep_service(a), rep_service(b)
    sv = pair_of(a, "site-a", "vol0")
    rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs_a, Operation=Uint16(10), Synchronization=sv)
    wait_job(a, "planned Failover on the source's service", rc, out)
    for vol in ("vol0", "vol1"):
        ib = b.GetInstance(pair_of(b, "site-b", vol))
        check(f"{vol} on B after the planned failover: Primary-Rev, ProgressStatus Completed", (ib["Role"], ib["ProgressStatus"], ib["RoleReversed"]) == (3, 2, True), dict(ib))
        ia = a.GetInstance(pair_of(a, "site-a", vol))
        check(f"{vol} on A: Secondary-Rev (write-disabled), Broken as DR row 4", (ia["Role"], ia["CopyState"], ia["SyncState"]) == (4, 5, 12), dict(ia))
    sb = pair_of(b, "site-b", "vol0")
    rc, out = b.InvokeMethod("ModifyReplicaSynchronization", rs_b, Operation=Uint16(14), Synchronization=sb)
    wait_job(b, "Resync Replica (recover) after the planned failover", rc, out)
    # The moment every pair shows Synchronized, the next step is accepted.
    for vol in ("vol0", "vol1"):
        wait_for(b, pair_of(b, "site-b", vol), f"{vol} recovered", lambda i: i["CopyState"] == 4)
    rc, out = b.InvokeMethod("ModifyReplicaSynchronization", rs_b, Operation=Uint16(11), Synchronization=sb)
    wait_job(b, "Failback as soon as every pair is Synchronized", rc, out)
    inst = wait_for(a, pair_of(a, "site-a", "vol0"), "A Primary again", lambda i: i["Role"] == 1 and i["CopyState"] == 4)
    check("A is Primary again, not reversed", inst["RoleReversed"] is False, dict(inst))
    # Teardown: Suspend, Suspend again (nothing to do), Detach with Force.
    sv = pair_of(a, "site-a", "vol1")
    rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs_a, Operation=Uint16(22), Synchronization=sv)
    wait_job(a, "Suspend", rc, out)
    rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs_a, Operation=Uint16(22), Synchronization=sv)
    check("Suspend of a suspended group is a no-op success", rc == 0, (rc, dict(out)))
    rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs_a, Operation=Uint16(8), Synchronization=sv, Force=True, WaitForCopyState=Uint16(15))
    check("Detach (Force, WaitForCopyState 15) of a stopped pair returns 0", rc == 0, (rc, dict(out)))
    left = [p["SystemElement"]["DeviceID"] for p in a.EnumerateInstanceNames("CIM_StorageSynchronized") if p["SyncedElement"]["SystemName"] != "site-a"]
    check("vol1's pair is gone, vol0's stays", left == ["vol0"], left)
    # Detach of a pair in a started group: stopped, detached, restarted.
    sv = pair_of(a, "site-a", "vol0")
    rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs_a, Operation=Uint16(4), Synchronization=sv)
    wait_job(a, "Activate", rc, out)
    wait_for(a, sv, "vol0 synchronized", lambda i: i["CopyState"] == 4)
    rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs_a, Operation=Uint16(8), Synchronization=sv)
    check("Detach of a pair in a started group returns 0", rc == 0, (rc, dict(out)))
    check("no mirror pairs remain on A (the local replicas of the replicas phase do)",
          [p for p in a.EnumerateInstanceNames("CIM_StorageSynchronized") if p["SyncedElement"]["SystemName"] != "site-a"] == [])
    for _ in range(200):
        if b.EnumerateInstanceNames("CIM_StorageSynchronized") == []:
            break
        time.sleep(0.05)
    check("no pairs remain on B", b.EnumerateInstanceNames("CIM_StorageSynchronized") == [])

elif phase == "blocks":
    # libstoragemgmt's smispy sequence: plugin_register (profiles, the
    # system), pools, volumes, volume_create, volume_delete, job polling.
    from pywbem import Uint64
    interop = conn(url_a, "interop")
    profiles = interop.EnumerateInstances("CIM_RegisteredProfile", PropertyList=["RegisteredName", "RegisteredVersion", "RegisteredOrganization"])
    snia = {p["RegisteredName"]: p for p in profiles if p["RegisteredOrganization"] == 11}
    check("SNIA profiles include Block Services", {"Array", "Block Services", "Replication Services", "Job Control"} <= set(snia), sorted(snia))
    (system,) = interop.AssociatorNames(snia["Block Services"].path, AssocClass="CIM_ElementConformsToProfile", ResultClass="CIM_ComputerSystem")
    pools = a.Associators(system, AssocClass="CIM_HostedStoragePool", ResultClass="CIM_StoragePool",
                          PropertyList=["InstanceID", "ElementName", "TotalManagedSpace", "RemainingManagedSpace", "Usage", "Primordial", "OperationalStatus"])
    check("two pools hosted by the system: primordial and pool0", sorted((p["ElementName"], p["Primordial"]) for p in pools) == [("pool0", False), ("primordial", True)], pools)
    (pool,) = [p for p in pools if not p["Primordial"]]
    check("pool0: total, remaining, Usage, OK", pool["TotalManagedSpace"] > pool["RemainingManagedSpace"] > 0 and pool["Usage"] == 2 and list(pool["OperationalStatus"]) == [2], dict(pool))
    vols = a.Associators(pool.path, AssocClass="CIM_AllocatedFromStoragePool", ResultClass="CIM_StorageVolume")
    used = sum(v["NumberOfBlocks"] * v["BlockSize"] for v in vols)
    check("volumes() through AllocatedFromStoragePool: vol0 and vol1", sorted(v["DeviceID"] for v in vols) == ["vol0", "vol1"], vols)
    check("the pool's remaining space is its total less its volumes", pool["TotalManagedSpace"] - pool["RemainingManagedSpace"] == used, (dict(pool), used))
    (scs,) = a.AssociatorNames(system, AssocClass="CIM_HostedService", ResultClass="CIM_StorageConfigurationService")
    size = 3 * 1024 * 1024 + 1
    rc, out = a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="lsm_vol1", ElementType=Uint16(2), Size=Uint64(size), InPool=pool.path)
    check("volume_create returns 0 with TheElement and the size made (whole blocks)", rc == 0 and out["TheElement"]["DeviceID"] == "lsm_vol1" and out["Size"] == size + 4095, (rc, dict(out)))
    v = a.GetInstance(out["TheElement"])
    check("the new volume: BlockSize, NumberOfBlocks, ConsumableBlocks, OK", (v["BlockSize"], v["NumberOfBlocks"], v["ConsumableBlocks"], list(v["OperationalStatus"])) == (4096, 769, 769, [2]), dict(v))
    names = {x["DeviceID"]: (x["Name"], x["NameFormat"]) for x in a.EnumerateInstances("CIM_StorageVolume", PropertyList=["DeviceID", "Name", "NameFormat"])}
    check("every volume has a unique NAA Name (NameFormat 9, 16 hex digits, NAA type 3)",
          len({n for n, _ in names.values()}) == len(names) and all(f == 9 and len(n) == 16 and n[0] == "3" and int(n, 16) for n, f in names.values()), names)
    in_pool = a.AssociatorNames(pool.path, AssocClass="CIM_AllocatedFromStoragePool", ResultClass="CIM_StorageVolume")
    check("the new volume is allocated from pool0", any(p["DeviceID"] == "lsm_vol1" for p in in_pool), in_pool)
    after = a.GetInstance(pool.path)
    check("the pool's remaining space went down by the volume's size", pool["RemainingManagedSpace"] - after["RemainingManagedSpace"] == 769 * 4096, (pool["RemainingManagedSpace"], after["RemainingManagedSpace"]))
    e = expect_error("a volume larger than the pool is refused with CIM_ERR_FAILED", 1,
                     lambda: a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="huge", ElementType=Uint16(2), Size=Uint64(after["RemainingManagedSpace"] + 4096), InPool=pool.path))
    check("the refusal says the pool is full and what to do", "do not fit in the pool" in e.status_description and "removevv" in e.status_description, e.status_description)
    e = expect_error("a duplicate name is refused", 1,
                     lambda: a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="lsm_vol1", ElementType=Uint16(2), Size=Uint64(4096), InPool=pool.path))
    expect_error("a bad name is CIM_ERR_INVALID_PARAMETER", 4,
                 lambda: a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="bad/name", ElementType=Uint16(2), Size=Uint64(4096), InPool=pool.path))
    expect_error("InPool must be the concrete pool", 4,
                 lambda: a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="x1", ElementType=Uint16(2), Size=Uint64(4096), InPool=[p for p in pools if p["Primordial"]][0].path))
    (v0,) = [p for p in in_pool if p["DeviceID"] == "vol0"]
    e = expect_error("volume_delete of a volume in a group is refused", 1,
                     lambda: a.InvokeMethod("ReturnToStoragePool", scs, TheElement=v0))
    check("the refusal names the group", "rcg0" in e.status_description, e.status_description)
    rc, _ = a.InvokeMethod("ReturnToStoragePool", scs, TheElement=out["TheElement"])
    check("volume_delete returns 0", rc == 0, rc)
    check("the volume is gone and its space is back", all(p["DeviceID"] != "lsm_vol1" for p in a.EnumerateInstanceNames("CIM_StorageVolume")) and a.GetInstance(pool.path)["RemainingManagedSpace"] == pool["RemainingManagedSpace"])
    expect_error("deleting it again is CIM_ERR_NOT_FOUND", 6, lambda: a.InvokeMethod("ReturnToStoragePool", scs, TheElement=out["TheElement"]))
    rc, again = a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="lsm_vol1", ElementType=Uint16(2), Size=Uint64(4096), InPool=pool.path)
    check("a new volume under a deleted one's name has a new Name", a.GetInstance(again["TheElement"])["Name"] != v["Name"], (v["Name"],))
    a.InvokeMethod("ReturnToStoragePool", scs, TheElement=again["TheElement"])
    jobs = a.EnumerateInstances("CIM_ConcreteJob", PropertyList=["InstanceID", "JobState", "PercentComplete", "ErrorDescription", "OperationalStatus"])
    check("job polling with a PropertyList returns only those properties", jobs and all(set(j.keys()) <= {"InstanceID", "JobState", "PercentComplete", "ErrorDescription", "OperationalStatus"} for j in jobs), jobs)

elif phase == "replicas":
    from pywbem import Uint64
    rs = rep_service(a)
    (caps,) = a.Associators(rs, AssocClass="CIM_ElementCapabilities", ResultClass="CIM_ReplicationServiceCapabilities",
                            PropertyList=["SupportedReplicationTypes", "SupportedAsynchronousActions", "SupportedSynchronousActions"])
    check("capabilities: sync snapshot local (6) and sync clone local (10) with the remote mirrors",
          list(caps["SupportedReplicationTypes"]) == [4, 5, 6, 10], caps["SupportedReplicationTypes"])
    check("CreateElementReplica (2) is an action, so lsm claims VOLUME_REPLICATE",
          2 in caps["SupportedAsynchronousActions"] and 2 in caps["SupportedSynchronousActions"], dict(caps))
    import re

    def raw_bools(name):
        """pywbem 1.9 turns every boolean output value into True (it calls
        bool() on the text), so booleans are read from the raw reply."""
        m = re.search(rf'<PARAMVALUE NAME="{name}"[^>]*>(.*?)</PARAMVALUE>', a.last_raw_reply.decode() if isinstance(a.last_raw_reply, bytes) else a.last_raw_reply, re.S)
        return [v == "TRUE" for v in re.findall(r"<VALUE>(\w+)</VALUE>", m.group(1))] if m else []
    for rtype, state, ops, force in ((6, 4, [14, 15, 19], [False] * 3), (10, 3, [8, 14, 19], [True, False, False]), (10, 4, [8, 14, 19], [False] * 3), (6, 3, [], [])):
        rc, out = a.InvokeMethod("GetSupportedOperations", caps.path, ReplicationType=Uint16(rtype), CopyState=Uint16(state))
        check(f"GetSupportedOperations type {rtype} in CopyState {state}: {ops}",
              rc == 0 and list(out["SupportedOperations"] or []) == ops and raw_bools("RequiresForce") == force, (dict(out), raw_bools("RequiresForce")))
    for (st, mode, where), want in (((7, 2, 2), 6), ((8, 2, 2), 10)):
        rc, out = a.InvokeMethod("ConvertSyncTypeToReplicationType", caps.path, SyncType=Uint16(st), Mode=Uint16(mode), LocalOrRemote=Uint16(where))
        check(f"SyncType {st} local converts to ReplicationType {want}", rc == 0 and out["ReplicationType"] == want, dict(out))
    rc, out = a.InvokeMethod("GetSupportedWaitForCopyStates", caps.path, Params=[("ReplicationType", Uint16(10)), ("MethodName", Uint16(2))])
    check("a clone may be waited for in 3 or 4", list(out["SupportedCopyStates"]) == [3, 4], dict(out))
    system = a.EnumerateInstanceNames("CIM_ComputerSystem")[0]
    (pool,) = [p for p in a.Associators(system, AssocClass="CIM_HostedStoragePool", ResultClass="CIM_StoragePool") if not p["Primordial"]]
    (scs,) = a.AssociatorNames(system, AssocClass="CIM_HostedService", ResultClass="CIM_StorageConfigurationService")
    size = 1024 * 1024
    rc, out = a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="lsm_src", ElementType=Uint16(2), Size=Uint64(size), InPool=pool.path)
    src = out["TheElement"]
    free = a.GetInstance(pool.path)["RemainingManagedSpace"]

    def new_volume_of(name, rc, out):
        """lsm: the job, then the volume through AffectedJobElement (or TargetElement at once)."""
        job = wait_job(a, name, rc, out)
        if job is None:
            return out["TargetElement"]
        (vol,) = a.AssociatorNames(job, AssocClass="CIM_AffectedJobElement", ResultClass="CIM_StorageVolume")
        check(f"{name}: the job's AffectedJobElement is the new volume", vol["DeviceID"] == out["TargetElement"]["DeviceID"], (vol, out["TargetElement"]))
        return vol

    def sync_of(target):
        (s,) = [x for x in a.References(target, ResultClass="CIM_StorageSynchronized") if x["SyncedElement"]["DeviceID"] == target["DeviceID"]]
        return s

    # volume_replicate(REPLICATE_COPY): a clone (SyncType 8) in the pool.
    rc, out = a.InvokeMethod("CreateElementReplica", rs, ElementName="lsm_copy", SyncType=Uint16(8), SourceElement=src, WaitForCopyState=Uint16(4), TargetPool=pool.path)
    copy = new_volume_of("volume_replicate COPY", rc, out)
    v = a.GetInstance(copy)
    check("the copy is a volume of the source's size", (v["DeviceID"], v["NumberOfBlocks"] * v["BlockSize"]) == ("lsm_copy", size), dict(v))
    (cpool,) = a.AssociatorNames(copy, AssocClass="CIM_AllocatedFromStoragePool", ResultClass="CIM_StoragePool")
    check("the copy is allocated from pool0 (lsm's pool_id_of_cim_vol)", cpool["InstanceID"] == pool["InstanceID"], cpool)
    cs = sync_of(copy)
    check("the copy's StorageSynchronized: Clone, UnSyncUnAssoc, Synchronized, Frozen, Completed, 100%",
          (cs["SyncType"], cs["CopyType"], cs["CopyState"], cs["SyncState"], cs["ProgressStatus"], cs["PercentSynced"], cs["SystemElement"]["DeviceID"]) == (8, 5, 4, 14, 2, 100, "lsm_src"), dict(cs))
    check("the pool gave the copy its full size", free - a.GetInstance(pool.path)["RemainingManagedSpace"] == size)
    # volume_replicate(REPLICATE_CLONE): a snapshot (SyncType 7).
    rc, out = a.InvokeMethod("CreateElementReplica", rs, ElementName="lsm_snap", SyncType=Uint16(7), SourceElement=src, WaitForCopyState=Uint16(4), TargetPool=pool.path)
    snapv = new_volume_of("volume_replicate CLONE", rc, out)
    ss = sync_of(snapv)
    check("the snapshot's StorageSynchronized: Snapshot, UnSyncAssoc, Synchronized, Idle, Copy-On-Write, target read-only",
          (ss["SyncType"], ss["CopyType"], ss["CopyState"], ss["SyncState"], ss["CopyMethodology"], ss["ReadOnly"]) == (7, 4, 4, 11, 6, 3), dict(ss))
    ends = a.AssociatorNames(src, AssocClass="CIM_StorageSynchronized")
    check("Associators(source, StorageSynchronized) reaches both replicas", sorted(p["DeviceID"] for p in ends) == ["lsm_copy", "lsm_snap"], ends)
    rels = a.InvokeMethod("GetReplicationRelationships", rs, Type=Uint16(2), Locality=Uint16(2))[1]["Synchronizations"]
    check("GetReplicationRelationships, local only: the two replicas", sorted(p["SyncedElement"]["DeviceID"] for p in rels) == ["lsm_copy", "lsm_snap"], rels)
    # The ETERNUS way: the target made first, then a clone into it.
    rc, out = a.InvokeMethod("CreateOrModifyElementFromStoragePool", scs, ElementName="et_target", ElementType=Uint16(2), Size=Uint64(size), InPool=pool.path)
    target = out["TheElement"]
    rc, out = a.InvokeMethod("CreateElementReplica", rs, SyncType=Uint16(8), SourceElement=src, TargetElement=target, WaitForCopyState=Uint16(4))
    new_volume_of("clone into TargetElement", rc, out)
    check("the clone went into the given volume", out["TargetElement"]["DeviceID"] == "et_target", dict(out))
    # Refusals.
    expect_error("WaitForCopyState 8 on a snapshot is CIM_ERR_INVALID_PARAMETER", 4,
                 lambda: a.InvokeMethod("CreateElementReplica", rs, ElementName="x", SyncType=Uint16(7), SourceElement=src, WaitForCopyState=Uint16(8)))
    rc, _ = a.InvokeMethod("CreateElementReplica", rs, ElementName="x", SyncType=Uint16(9), SourceElement=src)
    check("TokenizedClone (9) is Not Supported (1)", rc == 1, rc)
    e = expect_error("a clone into a volume of another size is refused", 1,
                     lambda: a.InvokeMethod("CreateElementReplica", rs, SyncType=Uint16(8), SourceElement=src, TargetElement=snapv))
    rc, _ = a.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(8), Synchronization=ss.path)
    check("Detach of a snapshot is Not Supported (1), as GetSupportedOperations says", rc == 1, rc)
    e = expect_error("the source of a snapshot cannot be deleted first", 1,
                     lambda: a.InvokeMethod("ReturnToStoragePool", scs, TheElement=src))
    check("the refusal names the snapshot", "lsm_snap" in e.status_description, e.status_description)
    rc, _ = a.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(11), Synchronization=ss.path)
    check("Failback on a local snapshot is Not Supported (1)", rc == 1, rc)
    # Restore (15), Resync (14): done at once, the association stays.
    for op, name in ((15, "Restore From Replica"), (14, "Resync Replica")):
        rc, out = a.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(op), Synchronization=ss.path, WaitForCopyState=Uint16(4))
        wait_job(a, f"{name} on the snapshot", rc, out)
        check(f"after {name} the snapshot is still Synchronized", a.GetInstance(ss.path)["CopyState"] == 4)
    # Detach (8) of the ETERNUS clone: the volume stays, on its own.
    (es,) = [x for x in a.ReferenceNames(target, ResultClass="CIM_StorageSynchronized")]
    rc, _ = a.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(8), Synchronization=es, WaitForCopyState=Uint16(15))
    check("Detach of a complete clone returns 0", rc == 0, rc)
    check("the detached clone has no association and is still a volume",
          a.ReferenceNames(target, ResultClass="CIM_StorageSynchronized") == [] and a.GetInstance(target)["DeviceID"] == "et_target")
    rc, _ = a.InvokeMethod("ReturnToStoragePool", scs, TheElement=target)
    check("the detached clone is deleted like any volume", rc == 0, rc)
    # Return To ResourcePool (19) of a second snapshot; lsm's volume_delete
    # of a third (SyncState Idle, so lsm goes straight to ReturnToStoragePool).
    for how in ("19", "volume_delete"):
        rc, out = a.InvokeMethod("CreateElementReplica", rs, ElementName=f"snap_{how}", SyncType=Uint16(7), SourceElement=src)
        check(f"snapshot for {how} made at once", rc == 0, rc)
        t = out["TargetElement"]
        if how == "19":
            rc, _ = a.InvokeMethod("ModifyReplicaSynchronization", rs, Operation=Uint16(19), Synchronization=out["Synchronization"])
        else:
            refs = a.References(t, ResultClass="CIM_StorageSynchronized")
            check("lsm reads SyncState and CopyType of the snapshot", [(r["SyncState"], r["CopyType"]) for r in refs] == [(11, 4)], refs)
            rc, _ = a.InvokeMethod("ReturnToStoragePool", scs, TheElement=t)
        check(f"{how} of a snapshot returns 0 and it is gone", rc == 0 and all(p["DeviceID"] != f"snap_{how}" for p in a.EnumerateInstanceNames("CIM_StorageVolume")), rc)
    jobs = a.EnumerateInstances("CIM_ConcreteJob", PropertyList=["InstanceID", "JobState", "PercentComplete", "ErrorDescription", "OperationalStatus"])
    check("every replica job is Completed", all(j["JobState"] == 7 for j in jobs), jobs)

elif phase == "mock":
    # The same instances in pywbem_mock, and the intrinsic association
    # operations compared: for every instance of the provider, every
    # association class and both Name forms, the array answers what
    # pywbem_mock answers (far ends on the peer included).
    from pywbem_mock import FakedWBEMConnection
    mock = FakedWBEMConnection(default_namespace=NS)
    qualifiers = a.EnumerateQualifiers()
    mock.add_cimobjects(qualifiers, namespace=NS)
    classes = a.EnumerateClasses(DeepInheritance=True, LocalOnly=True, IncludeQualifiers=True)
    by_name = {c.classname.lower(): c for c in classes}

    def depth(c):
        n = 0
        while c.superclass:
            c, n = by_name[c.superclass.lower()], n + 1
        return n
    classes.sort(key=depth)
    mock.add_cimobjects(classes, namespace=NS)
    concrete = [c for c in classes if not (c.qualifiers.get("Abstract") and c.qualifiers["Abstract"].value)]
    assoc_classes = sorted(c.classname for c in classes if c.qualifiers.get("Association") and c.qualifiers["Association"].value)
    instances = []
    for c in concrete:
        for i in a.EnumerateInstances(c.classname, DeepInheritance=False, LocalOnly=False):
            if i.classname.lower() == c.classname.lower():
                i.path.host = None
                instances.append(i)
    # Far ends on the peer, as the array describes them, so the mock can
    # resolve the same references.
    known = {(i.path.classname.lower(), tuple(sorted((k.lower(), str(v)) for k, v in i.path.keybindings.items()))) for i in instances}
    for i in list(instances):
        for v in i.properties.values():
            if v.type == "reference" and v.value is not None and v.value.host not in (None, url_a.split("//")[1]):
                far = v.value.copy()
                key = (far.classname.lower(), tuple(sorted((k.lower(), str(x)) for k, x in far.keybindings.items())))
                if key in known:
                    continue
                known.add(key)
                for got in a.Associators(i.path, ResultRole=v.name):
                    if got.path.host == far.host and got.path.keybindings == far.keybindings:
                        got.path.host = None
                        instances.append(got)
    for i in instances:
        for v in i.properties.values():
            if v.type == "reference" and v.value is not None:
                v.value.host = None
    mock.add_cimobjects(instances, namespace=NS)
    check(f"pywbem_mock holds the provider's {len(instances)} instances", len(instances) > 20, len(instances))

    def keyset(paths):
        return sorted((p.classname.lower(), tuple(sorted((k.lower(), str(getattr(v, 'keybindings', v))) for k, v in p.keybindings.items()))) for p in paths)

    compared = differ = 0
    diffs = []
    for i in instances:
        if i.classname in assoc_classes or i.path.keybindings.get("SystemName") not in (None, "site-a"):
            continue
        p = i.path.copy()
        for ac in [None] + assoc_classes:
            for op in ("AssociatorNames", "ReferenceNames"):
                kw = {"AssocClass": ac} if op == "AssociatorNames" else {"ResultClass": ac}
                if ac is None:
                    kw = {}
                mine = keyset(getattr(a, op)(p, **kw))
                theirs = keyset(getattr(mock, op)(p, **kw))
                compared += 1
                if mine != theirs:
                    differ += 1
                    diffs.append((op, str(p)[:80], ac, mine, theirs))
    check(f"{compared} AssociatorNames/ReferenceNames answers equal pywbem_mock's", differ == 0, diffs[:3])

elif phase == "associations":
    # Associations reach the peer: the far end of a pair is the peer's
    # volume on the peer's host, as a path and as an instance; one host in
    # every path; pywbemcli reuses every path it printed.
    import subprocess
    host_a, host_b = url_a.split("//")[1], url_b.split("//")[1]
    (va,) = [p for p in a.EnumerateInstanceNames("CIM_StorageVolume") if p["DeviceID"] == "vol0"]
    far = a.AssociatorNames(va, AssocClass="CIM_StorageSynchronized")
    check("AssociatorNames(volume, StorageSynchronized) is the peer's volume on the peer's host",
          [(p.host, p["SystemName"], p["DeviceID"]) for p in far] == [(host_b, "site-b", "vol0")], far)
    (inst,) = a.Associators(va, AssocClass="CIM_StorageSynchronized", ResultClass="CIM_StorageVolume")
    check("Associators returns the peer's volume as an instance with what A knows of it",
          (inst.path.host, inst["SystemName"], inst["NumberOfBlocks"], inst["BlockSize"]) == (host_b, "site-b", va_blocks, 4096) if (va_blocks := a.GetInstance(va)["NumberOfBlocks"]) else False, inst)
    (sync,) = a.ReferenceNames(va, ResultClass="CIM_StorageSynchronized")
    check("the pair's SystemElement equals the enumerated volume path (same host)", sync["SystemElement"] == va.copy() or (sync["SystemElement"].host == host_a and sync["SystemElement"]["DeviceID"] == "vol0"), (sync["SystemElement"], va))
    check("the pair's SyncedElement equals the volume's far end", sync["SyncedElement"] == far[0], (sync["SyncedElement"], far[0]))
    (g,) = a.EnumerateInstanceNames("CIM_ReplicationGroup")
    fg = a.AssociatorNames(g, AssocClass="CIM_GroupSynchronized")
    check("AssociatorNames(group, GroupSynchronized) is the peer's group", [(p.host, p["InstanceID"]) for p in fg] == [(host_b, "site-b:rcg0")], fg)
    (gi,) = a.Associators(g, AssocClass="CIM_GroupSynchronized")
    check("the peer's group as an instance", (gi["TargetSystem"], gi["Role"]) == ("site-a", 2), gi)
    jobs = a.EnumerateInstanceNames("CIM_ConcreteJob")
    targets = set()
    for j in jobs:
        targets |= {(v.path.host, v["SystemName"], v["DeviceID"]) for v in a.Associators(j, AssocClass="CIM_AffectedJobElement", ResultClass="CIM_StorageVolume")}
    check("Associators(job, AffectedJobElement, ResultClass=StorageVolume) finds the new targets on the peer",
          {(host_b, "site-b", "vol0"), (host_b, "site-b", "vol1")} <= targets, targets)
    # pywbemcli: every printed path goes back in, with and without pull.
    def cli(*args):
        r = subprocess.run(["pywbemcli", "-s", url_a, "-d", NS, *args], capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr
    for pull in ("yes", "no"):
        for cls in ("CIM_StorageSynchronized", "CIM_StorageVolume", "CIM_ReplicationGroup"):
            rc, out = cli("--use-pull", pull, "instance", "enumerate", cls, "--names-only")
            paths = [l.strip() for l in out.splitlines() if l.strip().startswith("//")]
            check(f"pywbemcli ({pull} pull) prints {cls} paths with host {host_a}", rc == 0 and paths and all(p.startswith(f"//{host_a}/") for p in paths), out)
            for path in paths:
                for cmd in (["instance", "get", path], ["instance", "references", path, "--names-only"], ["instance", "associators", path, "--names-only"]):
                    rc, out = cli("--use-pull", pull, *cmd)
                    check(f"pywbemcli ({pull} pull) {cmd[1]} {path[:60]}...", rc == 0 and "Error:" not in out, out)

else:
    raise SystemExit(f"unknown phase {phase}")

summary()
