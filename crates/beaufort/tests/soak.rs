//! A short load and crash soak (`beaufort soak`, docs/EVALUATION.md §"Load and soak" runs the
//! 10-minute one): four member processes written to at a fixed open-loop rate for 70 s while a
//! member is killed with SIGKILL and restarted twice. Every acknowledged write must be held by
//! every member afterwards, and no answer may be a 5xx. The command polls for convergence with
//! its own deadline; nothing here depends on timing.

mod common;

use common::*;
use std::process::Command;

#[test]
fn a_short_soak_loses_no_acknowledged_write_and_answers_no_5xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.json");
    let out = Command::new(BIN)
        .args([
            "soak",
            "--members",
            "4",
            "--duration",
            "70s",
            "--rate",
            "10",
            "--kill-every",
            "30s",
            "--downtime",
            "2s",
            "--out",
        ])
        .arg(&report)
        .arg("--dir")
        .arg(dir.path().join("consortium"))
        .output()
        .expect("run beaufort soak");
    let log = String::from_utf8_lossy(&out.stderr);
    eprintln!("{log}");
    let text =
        std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("no report ({e}): {log}"));
    let json: serde_json::Value = serde_json::from_str(&text).expect("report JSON");
    assert_eq!(json["kills"].as_array().map(Vec::len), Some(2), "{text}");
    assert!(
        json["acknowledged"].as_u64() > Some(100),
        "too few writes committed: {text}"
    );
    assert_eq!(
        json["lost"].as_u64(),
        Some(0),
        "acknowledged writes lost: {text}"
    );
    assert_eq!(
        json["server_errors"].as_u64(),
        Some(0),
        "5xx answers: {text}"
    );
    assert!(json["converged_after_s"].is_number(), "{text}");
    assert!(out.status.success(), "{log}");
}
