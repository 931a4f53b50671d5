//! The state tables (conformance/*.toml), replayed at core level.

use replicim::conformance::{self, core_driver::CoreDriver, run_row, Table};

#[test]
fn every_row_of_both_tables_passes_at_core_level() {
    let mut out = Vec::new();
    let (passed, failed) = conformance::run(&mut CoreDriver::new(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(failed, 0, "{text}");
    // 6 normal-operation rows + DR rows 1, 2, 3a, 3b, 4..16 + 3 decided
    // rows + 9 planned-failover rows + 11 async and Error rows.
    assert_eq!(passed, 46, "{text}");
    assert!(text.ends_with("46 passed, 0 failed\n"), "{text}");
}

#[test]
fn dr_table_lists_every_row_of_the_reference() {
    let t = Table::parse(conformance::DR_TABLE).unwrap();
    let ids: Vec<&str> = t.rows.iter().map(|r| r.id.as_str()).collect();
    let want = [
        "1", "2", "3a", "3b", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
        "16",
    ];
    assert_eq!(ids, want);
}

/// A runner that cannot fail proves nothing: a wrong expectation must fail.
#[test]
fn a_wrong_expectation_fails_the_row() {
    let t = Table::parse(conformance::DR_TABLE).unwrap();
    let mut row = t.rows.iter().find(|r| r.id == "3a").unwrap().clone();
    row.copy_state = 5; // 3a is Failedover (10), not Broken
    let r = run_row(&mut CoreDriver::new(), "dr", &row);
    assert!(!r.passed, "{}", r.line);
    assert!(r.line.contains("Failedover(10)"), "{}", r.line);
}

#[test]
fn a_refusal_that_does_not_happen_fails_the_row() {
    let t = Table::parse(conformance::NORMAL_TABLE).unwrap();
    let mut row = t.rows.iter().find(|r| r.id == "Synced").unwrap().clone();
    row.scenario
        .push("expect-error A stoprcopygroup rcg0 contains anything".into());
    let r = run_row(&mut CoreDriver::new(), "normal", &row);
    assert!(!r.passed, "{}", r.line);
    assert!(r.line.contains("must be refused"), "{}", r.line);
}

#[test]
fn an_unknown_step_is_a_clear_error() {
    let bad = "name = \"x\"\n[[row]]\nid = \"1\"\nevent = \"e\"\narray = \"A\"\nrole = \"Primary\"\nstatus = \"New\"\ncopy_state = 2\nsync_state = 5\nprogress = 19\nscenario = [\"teleport A\"]\n";
    let e = Table::parse(bad).unwrap_err();
    assert!(e.contains("unknown scenario step `teleport`"), "{e}");
}

/// The same tables through the SMI-S provider: two arrays served over
/// CIM-XML on 127.0.0.1, driven by ModifyReplicaSynchronization and read
/// back from RCM_StorageSynchronized / RCM_GroupSynchronized.
#[test]
fn every_row_of_both_tables_passes_at_cim_level() {
    let mut d = replicim::conformance::cim_driver::CimDriver::start().unwrap();
    let mut out = Vec::new();
    let (passed, failed) = conformance::run(&mut d, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(failed, 0, "{text}");
    assert_eq!(passed, 46, "{text}");
}

#[test]
fn a_wrong_expectation_fails_the_row_at_cim_level() {
    let t = Table::parse(conformance::DR_TABLE).unwrap();
    let mut row = t.rows.iter().find(|r| r.id == "4").unwrap().clone();
    let last = row.scenario.last_mut().unwrap();
    *last = last.replace("on the source", "on the moon");
    let mut d = replicim::conformance::cim_driver::CimDriver::start().unwrap();
    let r = run_row(&mut d, "dr", &row);
    assert!(!r.passed, "{}", r.line);
    // The array's own message comes back once, with its CIM status.
    assert!(
        r.line
            .contains("refused with `CIM_ERR_FAILED: startrcopygroup must be issued on the source"),
        "{}",
        r.line
    );
}

/// The Error rows check the reason, and a wrong one fails the row.
#[test]
fn an_error_for_another_reason_fails_the_row() {
    let t = Table::parse(conformance::ASYNC_TABLE).unwrap();
    let mut row = t
        .rows
        .iter()
        .find(|r| r.id == "sync-Error")
        .unwrap()
        .clone();
    let last = row.scenario.last_mut().unwrap();
    assert_eq!(last, "check-error A max_lag");
    *last = "check-error A max_backlog".into();
    let r = run_row(&mut CoreDriver::new(), "async", &row);
    assert!(!r.passed, "{}", r.line);
    assert!(r.line.contains("another reason"), "{}", r.line);
}
