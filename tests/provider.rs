//! The SMI-S replication provider, driven by pywbem the way consoles drive
//! real arrays (tests/py/console_checks.py), with faults injected between
//! the console's phases.

use crate::cim_support::run;
use replicim::conformance::cim_driver::CimDriver;
use replicim::conformance::core_driver::{SITE_A, SITE_B, VOLUMES, VOLUME_BLOCKS};
use replicim::conformance::{Driver, Step};

fn console(d: &CimDriver, phase: &str) -> String {
    let a = format!("http://{}", d.hosts()[SITE_A]);
    let b = format!("http://{}", d.hosts()[SITE_B]);
    let (rc, out, err) = run("python3", &["tests/py/console_checks.py", phase, &a, &b]);
    assert_eq!(rc, 0, "console phase {phase} failed:\n{out}\n{err}");
    assert!(out.contains(" checks passed"), "{out}");
    println!("--- console phase {phase}\n{out}");
    out
}

fn step(d: &mut CimDriver, line: &str) {
    d.step(&Step::parse(line).unwrap())
        .unwrap_or_else(|e| panic!("{line}: {e}"));
}

/// Two served arrays; vol0 and vol1 exist on site-a only, in no group.
fn two_arrays_with_volumes() -> CimDriver {
    let mut d = CimDriver::start().unwrap();
    d.reset().unwrap();
    {
        let sim = d.sim();
        let mut s = sim.lock().unwrap();
        for v in VOLUMES {
            s.create_volume(SITE_A, v, VOLUME_BLOCKS).unwrap();
        }
    }
    d
}

fn same_data(d: &CimDriver) -> bool {
    let sim = d.sim();
    let mut s = sim.lock().unwrap();
    VOLUMES
        .iter()
        .all(|v| s.checksum(SITE_A, v).unwrap() == s.checksum(SITE_B, v).unwrap())
}

/// Discovery, creation, refusals, failover after an array loss and
/// failback, each phase as a separate pywbem console run; the data on both
/// arrays is compared after creation and after failback.
#[test]
fn pywbem_console_discovers_creates_fails_over_and_fails_back() {
    let mut d = two_arrays_with_volumes();
    step(&mut d, "write A vol0 0..48 0x5a");
    step(&mut d, "write A vol1 100..140 0x6b");
    let clock = d.wall_clock();
    let out = console(&d, "discover");
    assert!(
        out.contains("ok  remote mirrors (synchronous, asynchronous), local snapshots and clones"),
        "{out}"
    );
    let out = console(&d, "create");
    assert!(
        out.contains("ok  vol1 SyncState 6, Mode 2, SyncType 6, Role Primary"),
        "{out}"
    );
    assert!(same_data(&d), "B differs from A after the initial sync");
    console(&d, "refusal");
    drop(clock);

    // Array A fails; B notices the link loss on its own.
    step(&mut d, "kill A");
    step(&mut d, "settle");
    let clock = d.wall_clock();
    console(&d, "failover");
    drop(clock);
    // Production moves to B.
    step(&mut d, "write B vol0 100..110 0xc1");
    step(&mut d, "write B vol1 0..4 0xc2");
    step(&mut d, "start A");
    step(&mut d, "settle");
    assert!(!same_data(&d), "A already has B's writes before recover");
    let clock = d.wall_clock();
    console(&d, "failback");
    drop(clock);
    step(&mut d, "settle");
    assert!(same_data(&d), "A does not have B's writes after failback");
}

/// DR row 8 through a job: recover starts a job, the link drops during
/// the resync, and the job ends as an Exception that says why, while the
/// group stays failed over.
#[test]
fn a_recover_cut_short_ends_its_job_in_exception() {
    use replicim::cim::client::{Client, Param};
    use replicim::cim::model::Value;
    use replicim::provider::model_paths;

    let mut d = CimDriver::start().unwrap();
    d.reset().unwrap();
    for line in [
        "setup sync",
        "write A vol0 0..32 0xa1",
        "settle",
        "kill A",
        "settle",
        "rcopy B setrcopygroup failover rcg0",
        "settle",
        "write B vol0 0..200 0xc1",
        "start A",
        "settle",
        "throttle 2",
    ] {
        step(&mut d, line);
    }
    let host_b = d.hosts()[SITE_B].clone();
    let mut c = Client::new(&host_b, None);
    let vol = model_paths::vol_path(SITE_B, &host_b, "vol0");
    let (sync, _) = c
        .references(&vol, "CIM_StorageSynchronized")
        .unwrap()
        .remove(0);
    let r = c
        .invoke(
            &model_paths::rs_path(SITE_B, &host_b),
            "ModifyReplicaSynchronization",
            &[
                Param::Value("Operation", Value::Uint16(14)),
                Param::Ref("Synchronization", sync.clone()),
            ],
        )
        .unwrap();
    assert_eq!(r.return_value.as_u64(), Some(4096), "{:?}", r.out);
    let job = r.out("Job").and_then(Value::as_ref_path).unwrap().clone();
    let running = c.get_instance(&job).unwrap();
    assert_eq!(running.get("JobState").and_then(Value::as_u64), Some(4));
    for line in ["run-until A vol0 Syncing", "steps 3", "link down", "settle"] {
        step(&mut d, line);
    }
    let j = c.get_instance(&job).unwrap();
    assert_eq!(j.get("JobState").and_then(Value::as_u64), Some(10), "{j:?}");
    let status: Vec<u64> = match j.get("OperationalStatus") {
        Some(Value::Array(v)) => v.iter().flatten().filter_map(Value::as_u64).collect(),
        other => panic!("OperationalStatus {other:?}"),
    };
    assert_eq!(status, [6, 17]);
    let why = j.get("ErrorDescription").and_then(Value::as_str).unwrap();
    println!("job ended: {why}");
    assert!(
        why.contains("rcg0") && why.contains("the link to site-a is down"),
        "{why}"
    );
    let pair = c.get_instance(&sync).unwrap();
    assert_eq!(pair.get("CopyState").and_then(Value::as_u64), Some(10));
}

fn rcopy(d: &CimDriver, side: &str, args: &[&str]) -> (i32, String, String) {
    let url = format!("http://{}", d.hosts()[side]);
    let mut all = vec!["rcopy", "--url", &url];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_replicim"), &all)
}

fn rcopy_ok(d: &CimDriver, side: &str, args: &[&str]) -> String {
    let (rc, out, err) = rcopy(d, side, args);
    assert_eq!(rc, 0, "replicim rcopy {args:?} on {side}:\n{out}\n{err}");
    out
}

/// `replicim rcopy` against running servers: a group made, filled,
/// started and shown in 3PAR layout and as JSON, a policy set, a refusal
/// explained, and the group taken apart again.
#[test]
fn rcopy_admin_client_manages_a_group_over_cim() {
    let mut d = two_arrays_with_volumes();
    step(&mut d, "write A vol0 0..64 0x3c");
    let _clock = d.wall_clock();
    let empty = rcopy_ok(&d, SITE_A, &["showrcopy"]);
    assert!(
        empty.contains("System: site-a") && empty.contains("No remote-copy groups."),
        "{empty}"
    );
    rcopy_ok(&d, SITE_A, &["creatercopygroup", "rcg1", "site-b", "sync"]);
    rcopy_ok(&d, SITE_A, &["admitrcopyvv", "vol0", "rcg1", "site-b:vol0"]);
    rcopy_ok(
        &d,
        SITE_A,
        &["admitrcopyvv", "vol1", "rcg1", "site-b:vol1r"],
    );
    let (rc, _, err) = rcopy(&d, SITE_A, &["startrcopygroup", "rcg9"]);
    assert_eq!(rc, 1, "{err}");
    assert!(
        err.contains("remote-copy group rcg9 does not exist on site-a"),
        "{err}"
    );
    rcopy_ok(&d, SITE_A, &["startrcopygroup", "rcg1"]);
    let shown = rcopy_ok(&d, SITE_A, &["showrcopy"]);
    println!("{shown}");
    let lines: Vec<&str> = shown.lines().collect();
    let head = lines.iter().position(|l| l.starts_with("Name ")).unwrap();
    let cols: Vec<&str> = lines[head].split_whitespace().collect();
    assert_eq!(
        cols,
        ["Name", "Target", "Status", "Role", "Mode", "Options"]
    );
    let g: Vec<&str> = lines[head + 1].split_whitespace().collect();
    assert_eq!(
        g[..5],
        ["rcg1", "site-b", "Started", "Primary", "Sync"],
        "{shown}"
    );
    let vh: Vec<&str> = lines[head + 2].split_whitespace().collect();
    assert_eq!(vh, ["LocalVV", "RemoteVV", "SyncStatus", "LastSyncTime"]);
    let v0: Vec<&str> = lines[head + 3].split_whitespace().collect();
    assert_eq!(v0[..3], ["vol0", "vol0", "Synced"], "{shown}");
    // A synchronous pair is always current: no LastSyncTime, as on 3PAR.
    assert!(lines[head + 3].ends_with(" NA"), "{shown}");
    let v1: Vec<&str> = lines[head + 4].split_whitespace().collect();
    assert_eq!(v1[..3], ["vol1", "vol1r", "Synced"], "{shown}");
    assert!(same_data_of(&d, "vol0", "vol0") && same_data_of(&d, "vol1", "vol1r"));

    rcopy_ok(
        &d,
        SITE_A,
        &["setrcopygroup", "pol", "auto_recover", "rcg1"],
    );
    let json = rcopy_ok(&d, SITE_B, &["--json", "showrcopy", "rcg1"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["system"], "site-b");
    let g = &v["groups"][0];
    assert_eq!(
        (g["role"].as_str(), g["status"].as_str()),
        (Some("Secondary"), Some("Started")),
        "{json}"
    );
    let json_a = rcopy_ok(&d, SITE_A, &["--json", "showrcopy", "rcg1"]);
    let a: serde_json::Value = serde_json::from_str(&json_a).unwrap();
    assert!(
        a["groups"][0]["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "auto_recover"),
        "{json_a}"
    );
    assert_eq!(g["volumes"][1]["local_vv"], "vol1r", "{json}");
    assert_eq!(g["volumes"][1]["remote_vv"], "vol1", "{json}");

    let (rc, _, err) = rcopy(&d, SITE_B, &["stoprcopygroup", "rcg1"]);
    assert_eq!(rc, 1, "{err}");
    assert!(err.contains("must be issued on the source"), "{err}");
    let (rc, out, _) = rcopy(&d, SITE_B, &["--json", "setrcopygroup", "restore", "rcg1"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (rc, &v["ok"]),
        (1, &serde_json::Value::Bool(false)),
        "{out}"
    );

    rcopy_ok(&d, SITE_A, &["stoprcopygroup", "rcg1"]);
    rcopy_ok(&d, SITE_A, &["dismissrcopyvv", "vol1", "rcg1"]);
    let shown = rcopy_ok(&d, SITE_A, &["showrcopy", "rcg1"]);
    assert!(
        shown.contains("Stopped") && !shown.contains("vol1"),
        "{shown}"
    );
    rcopy_ok(&d, SITE_A, &["removercopygroup", "rcg1"]);
    let (rc, _, err) = rcopy(&d, SITE_A, &["showrcopy", "rcg1"]);
    assert_eq!(rc, 1);
    assert!(err.contains("rcg1 does not exist on site-a"), "{err}");
    // A periodic group: a manual sync waits for its job and leaves a
    // LastSyncTime.
    rcopy_ok(
        &d,
        SITE_A,
        &["creatercopygroup", "rcg2", "site-b", "periodic:60000"],
    );
    rcopy_ok(
        &d,
        SITE_A,
        &["admitrcopyvv", "vol0", "rcg2", "site-b:vol0p"],
    );
    rcopy_ok(&d, SITE_A, &["startrcopygroup", "rcg2"]);
    step(&mut d, "write A vol0 200..210 0x3d");
    rcopy_ok(&d, SITE_A, &["syncrcopy", "rcg2"]);
    assert!(same_data_of(&d, "vol0", "vol0p"));
    let shown = rcopy_ok(&d, SITE_A, &["showrcopy", "rcg2"]);
    println!("{shown}");
    assert!(
        shown.contains("Periodic") && shown.contains("period=60s"),
        "{shown}"
    );
    let v0 = shown
        .lines()
        .find(|l| l.trim_start().starts_with("vol0"))
        .unwrap();
    assert!(v0.contains("Synced") && v0.ends_with(" UTC"), "{shown}");
    // setrcopygroup period, over SetRemoteCopyPeriod, on the started group.
    rcopy_ok(&d, SITE_A, &["setrcopygroup", "period", "2m", "rcg2"]);
    let shown = rcopy_ok(&d, SITE_A, &["showrcopy", "rcg2"]);
    assert!(
        shown.contains("period=120s") && shown.contains("Started"),
        "{shown}"
    );
    rcopy_ok(&d, SITE_A, &["setrcopygroup", "mode", "sync", "rcg2"]);
    let (rc, _, err) = rcopy(&d, SITE_A, &["setrcopygroup", "period", "30", "rcg2"]);
    assert_eq!(rc, 1);
    assert!(
        err.contains("is synchronous") && err.contains("setrcopygroup mode periodic rcg2"),
        "{err}"
    );
    let (rc, _, err) = rcopy(&d, SITE_A, &["setrcopygroup", "teleport", "rcg1"]);
    assert_eq!(rc, 1);
    assert!(err.contains("unknown setrcopygroup subcommand"), "{err}");
}

fn same_data_of(d: &CimDriver, a: &str, b: &str) -> bool {
    let sim = d.sim();
    let mut s = sim.lock().unwrap();
    s.checksum(SITE_A, a).unwrap() == s.checksum(SITE_B, b).unwrap()
}

/// A job whose goal was reached stays Completed when a later command
/// changes the state (seen with two CreateElementReplica jobs and a stop).
#[test]
fn finished_jobs_are_not_judged_again_after_later_commands() {
    use replicim::cim::client::Client;
    use replicim::cim::model::Value;

    let mut d = CimDriver::start().unwrap();
    d.reset().unwrap();
    for line in [
        "setup sync",
        "settle",
        "rcopy A stoprcopygroup rcg0",
        "settle",
    ] {
        step(&mut d, line);
    }
    let mut c = Client::new(&d.hosts()[SITE_A], None);
    let jobs = c
        .enumerate_instances("root/cimv2", "CIM_ConcreteJob")
        .unwrap();
    let created: Vec<_> = jobs
        .iter()
        .filter(|(_, j)| {
            j.get("MethodName").and_then(Value::as_str) == Some("CreateElementReplica")
        })
        .collect();
    assert_eq!(created.len(), 2, "{jobs:?}");
    for (_, j) in created {
        assert_eq!(j.get("JobState").and_then(Value::as_u64), Some(7), "{j:?}");
    }
}

/// CreateGroup then CreateGroupReplica from a pywbem console: a group of
/// two volumes becomes a remote-copy group, mirrored byte for byte.
#[test]
fn pywbem_console_replicates_a_whole_group() {
    let mut d = two_arrays_with_volumes();
    step(&mut d, "write A vol0 0..40 0x71");
    step(&mut d, "write A vol1 10..90 0x72");
    let clock = d.wall_clock();
    let out = console(&d, "group");
    assert!(
        out.contains("ok  vol1 mirrored to site-b as Secondary"),
        "{out}"
    );
    drop(clock);
    step(&mut d, "settle");
    assert!(same_data(&d), "site-b differs after CreateGroupReplica");
}

/// One volume mirrored in three groups to the same array: showrcopy shows
/// each group's own pair (remote volume and status), and dismissrcopyvv
/// removes the pair of the group it names and no other; a group that does
/// not exist, or does not hold the volume, is refused and changes nothing.
#[test]
fn one_volume_in_several_groups_is_handled_per_group() {
    let mut d = two_arrays_with_volumes();
    step(&mut d, "write A vol1 0..16 0x5d");
    let _clock = d.wall_clock();
    for (g, remote, mode) in [
        ("rcg1", "vol1a", "sync"),
        ("rcg2", "vol1b", "sync"),
        ("rcg3", "vol1c", "periodic"),
    ] {
        rcopy_ok(&d, SITE_A, &["creatercopygroup", g, "site-b", mode]);
        rcopy_ok(
            &d,
            SITE_A,
            &["admitrcopyvv", "vol1", g, &format!("site-b:{remote}")],
        );
    }
    // Only rcg2 runs: its pair is Synced, the others New.
    rcopy_ok(&d, SITE_A, &["startrcopygroup", "rcg2"]);
    step(&mut d, "settle");
    let json: serde_json::Value =
        serde_json::from_str(&rcopy_ok(&d, SITE_A, &["--json", "showrcopy"])).unwrap();
    let pair = |g: &str| {
        let grp = json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == g)
            .unwrap_or_else(|| panic!("{g} missing: {json}"));
        let v = &grp["volumes"].as_array().unwrap()[0];
        (
            v["remote_vv"].as_str().unwrap().to_string(),
            v["sync_status"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(pair("rcg1"), ("vol1a".into(), "New".into()));
    assert_eq!(pair("rcg2"), ("vol1b".into(), "Synced".into()));
    assert_eq!(pair("rcg3"), ("vol1c".into(), "New".into()));

    // A group that does not exist, or does not hold vol1: refused.
    let (rc, _, err) = rcopy(&d, SITE_A, &["dismissrcopyvv", "vol1", "nosuchgroup"]);
    assert_ne!(rc, 0);
    assert!(err.contains("nosuchgroup does not exist"), "{err}");
    rcopy_ok(&d, SITE_A, &["creatercopygroup", "rcg4", "site-b", "sync"]);
    let (rc, _, err) = rcopy(&d, SITE_A, &["dismissrcopyvv", "vol1", "rcg4"]);
    assert_ne!(rc, 0);
    assert!(err.contains("not in remote-copy group rcg4"), "{err}");

    // Dismissing from rcg3 leaves rcg1 and rcg2 as they were.
    rcopy_ok(&d, SITE_A, &["dismissrcopyvv", "vol1", "rcg3"]);
    let json: serde_json::Value =
        serde_json::from_str(&rcopy_ok(&d, SITE_A, &["--json", "showrcopy"])).unwrap();
    let count = |g: &str| {
        json["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == g)
            .map(|x| x["volumes"].as_array().unwrap().len())
    };
    assert_eq!(count("rcg3"), Some(0));
    assert_eq!(count("rcg1"), Some(1));
    assert_eq!(count("rcg2"), Some(1));
    let sim = d.sim();
    let s = sim.lock().unwrap();
    let a = s.array(SITE_A);
    assert!(a
        .group("rcg1")
        .unwrap()
        .pairs
        .iter()
        .any(|p| p.local == "vol1"));
    assert!(a
        .group("rcg2")
        .unwrap()
        .pairs
        .iter()
        .any(|p| p.local == "vol1"));
    assert!(a.group("rcg3").unwrap().pairs.is_empty());
}

/// Names follow one rule wherever they enter: rcopy refuses a bad one
/// before it reaches an array, and the array refuses it over CIM-XML as
/// an invalid parameter (a 100,000-character group name, a slash), so no
/// such name ever reaches the link.
#[test]
fn names_are_checked_where_they_enter() {
    use replicim::cim::client::{Client, Param};
    use replicim::cim::model::Value;
    let d = two_arrays_with_volumes();
    let (rc, _, err) = rcopy(
        &d,
        SITE_A,
        &["creatercopygroup", "bad/name", "site-b", "sync"],
    );
    assert_ne!(rc, 0);
    assert!(err.contains("1-31 characters"), "{err}");
    let mut c = Client::new(&d.hosts()[SITE_A], None);
    let rs = replicim::provider::model_paths::rs_path(SITE_A, &d.hosts()[SITE_A]);
    for name in [
        "x".repeat(100_000),
        "bad/name".to_string(),
        "..".to_string(),
    ] {
        let r = c.invoke(
            &rs,
            "CreateRemoteCopyGroup",
            &[
                Param::Value("GroupName", Value::String(name.clone())),
                Param::Value("TargetSystem", Value::String("site-b".into())),
                Param::Value("Mode", Value::Uint16(2)),
            ],
        );
        let e = r.expect_err("a bad name is refused").to_string();
        assert!(
            e.contains("CIM_ERR_INVALID_PARAMETER") && e.contains("1-31 characters"),
            "{e}"
        );
    }
    let sim = d.sim();
    assert_eq!(sim.lock().unwrap().array(SITE_A).groups().count(), 0);
}

/// The keyed lookups (GetInstance by key, References walked from one
/// volume or group) answer exactly what a whole enumeration would: every
/// instance read by its path equals the enumerated one, and every
/// References answer equals the enumerated associations that point at the
/// object. The setup has a volume in three groups, a started group and
/// groups seen from both arrays.
#[test]
fn keyed_lookups_answer_what_enumeration_does() {
    use replicim::cim::client::Client;
    use replicim::cim::model::{ObjectPath, Value};
    let mut d = two_arrays_with_volumes();
    let _clock = d.wall_clock();
    for (g, vol, remote) in [
        ("rcg0", "vol0", "vol0"),
        ("rcg1", "vol1", "vol1a"),
        ("rcg2", "vol1", "vol1b"),
    ] {
        rcopy_ok(&d, SITE_A, &["creatercopygroup", g, "site-b", "sync"]);
        rcopy_ok(
            &d,
            SITE_A,
            &["admitrcopyvv", vol, g, &format!("site-b:{remote}")],
        );
    }
    rcopy_ok(&d, SITE_A, &["startrcopygroup", "rcg0"]);
    step(&mut d, "settle");
    let refers = |i: &replicim::cim::model::Instance, o: &ObjectPath| {
        i.properties
            .iter()
            .any(|p| matches!(&p.value, Some(Value::Reference(r)) if r.same_instance(o)))
    };
    let keys = |p: &ObjectPath| format!("{:?}", p.keys);
    let mut checked = (0, 0);
    for site in [SITE_A, SITE_B] {
        let mut c = Client::new(&d.hosts()[site], None);
        let ns = replicim::provider::NS;
        for class in [
            "RCM_StorageVolume",
            "RCM_ReplicationGroup",
            "RCM_StorageSynchronized",
            "RCM_GroupSynchronized",
        ] {
            let all = c.enumerate_instances(ns, class).unwrap();
            assert!(!all.is_empty(), "{site}: no {class}");
            for (p, i) in &all {
                assert_eq!(&c.get_instance(p).unwrap(), i, "{site}: GetInstance {p}");
                checked.0 += 1;
            }
        }
        let objects: Vec<ObjectPath> = ["RCM_StorageVolume", "RCM_ReplicationGroup"]
            .iter()
            .flat_map(|cl| c.enumerate_instances(ns, cl).unwrap())
            .map(|(p, _)| p)
            .collect();
        for assoc in [
            "CIM_StorageSynchronized",
            "CIM_GroupSynchronized",
            "CIM_SystemDevice",
            "CIM_OrderedMemberOfCollection",
            "CIM_HostedCollection",
        ] {
            let all = c.enumerate_instances(ns, assoc).unwrap();
            for o in &objects {
                let mut want: Vec<String> = all
                    .iter()
                    .filter(|(_, i)| refers(i, o))
                    .map(|(p, _)| keys(p))
                    .collect();
                let mut got: Vec<String> = c
                    .references(o, assoc)
                    .unwrap()
                    .iter()
                    .map(|(p, _)| keys(p))
                    .collect();
                want.sort();
                got.sort();
                assert_eq!(got, want, "{site}: References({o}, {assoc})");
                checked.1 += 1;
            }
        }
    }
    println!(
        "{} GetInstance and {} References compared",
        checked.0, checked.1
    );
    assert!(checked.0 > 20 && checked.1 > 40, "{checked:?}");
}

/// A planned DR test and a teardown, as EMC-style consoles run them, with
/// both arrays up; the data is compared after the failback.
#[test]
fn pywbem_console_runs_a_planned_dr_test_and_tears_down() {
    let mut d = two_arrays_with_volumes();
    step(&mut d, "write A vol0 0..40 0x3c");
    step(&mut d, "write A vol1 8..24 0x4d");
    let clock = d.wall_clock();
    console(&d, "create");
    assert!(same_data(&d));
    console(&d, "associations");
    console(&d, "blocks");
    console(&d, "replicas");
    console(&d, "mock");
    console(&d, "planned");
    assert!(same_data(&d));
    drop(clock);
}
