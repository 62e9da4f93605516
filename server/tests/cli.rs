//! The command line of the real binary: help that explains, and the rule catalogue.
//!
//! Having an integration test here also makes `cargo nextest run --workspace` build the
//! `patientflow` binary that the end-to-end tests in `tests/` drive.

// Test code, helpers included: a panic with a message is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

fn patientflow(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patientflow"))
        .args(args)
        .output()
        .expect("run patientflow");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_names_every_command_and_its_environment_variables() {
    let (ok, out, _) = patientflow(&["--help"]);
    assert!(ok);
    for command in ["produce", "ingest", "quality"] {
        assert!(out.contains(command), "{out}");
    }
    let (ok, out, _) = patientflow(&["ingest", "--help"]);
    assert!(ok);
    for var in [
        "PATIENTFLOW_DATA",
        "PATIENTFLOW_LANDING",
        "PATIENTFLOW_SOURCE_TIMEZONE",
    ] {
        assert!(out.contains(var), "{var} missing from:\n{out}");
    }
}

#[test]
fn quality_rules_lists_the_contract_rules_in_order() {
    let (ok, out, _) = patientflow(&["quality", "rules"]);
    assert!(ok);
    let pos = |rule: &str| {
        out.find(&format!("`{rule}`"))
            .unwrap_or_else(|| panic!("{rule}: {out}"))
    };
    assert!(pos("malformed_record") < pos("future_admission_time"));
    assert!(pos("future_admission_time") < pos("discharge_before_admission"));
    assert!(pos("invalid_bed") < pos("duplicate_event"));
}

#[test]
fn bad_arguments_explain_the_fix() {
    let (ok, _, err) = patientflow(&["produce", "--out", "/tmp/x", "--defect-rate", "nope=1"]);
    assert!(!ok);
    assert!(err.contains("known: malformed_record"), "{err}");
    let (ok, _, err) = patientflow(&["produce", "--out", "/tmp/x", "--until", "yesterday"]);
    assert!(!ok);
    assert!(err.contains("2026-11-24T12:00:00Z"), "{err}");
}
