//! A figure is reproducible from a committed cost table: the table in docs is the reference
//! table, and a run charged with it gives exactly the figures of `--cost reference`, and says
//! which table it used.

use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_beaufort");

fn committed_table() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/figures/cost-reference.json")
}

fn run(args: &[&str]) -> Json {
    let out = Command::new(BIN).args(args).output().expect("run beaufort");
    assert!(
        out.status.success(),
        "beaufort {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn the_committed_table_is_the_reference_table() {
    let printed = run(&["sim", "calibrate", "--reference"]);
    let committed: Json = serde_json::from_str(
        &std::fs::read_to_string(committed_table()).expect("the committed table"),
    )
    .expect("JSON");
    assert_eq!(printed, committed);
}

#[test]
fn a_run_charged_with_the_committed_table_repeats_the_reference_figures() {
    let table = committed_table();
    let table = table.to_str().expect("a UTF-8 path");
    let common = [
        "sim",
        "run",
        "--nodes",
        "7",
        "--duration",
        "3s",
        "--seed",
        "1",
        "--format",
        "json",
    ];
    let from_file = run(&[&common[..], &["--cost-table", table]].concat());
    let reference = run(&[&common[..], &["--cost", "reference"]].concat());
    for field in [
        "decided",
        "latency_ms",
        "bandwidth_mbit_per_node",
        "cpu_utilisation",
        "cost_table",
        "cost_table_fingerprint",
    ] {
        assert_eq!(from_file[field], reference[field], "{field}");
    }
    assert!(from_file["cost_table_fingerprint"].is_string());
}

#[test]
fn a_cost_table_that_is_not_one_is_refused_with_its_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("table.json");
    std::fs::write(&bad, "{\"bls_sign\": \"fast\"}").expect("write");
    let out = Command::new(BIN)
        .args([
            "sim",
            "run",
            "--nodes",
            "4",
            "--duration",
            "1s",
            "--cost-table",
        ])
        .arg(&bad)
        .output()
        .expect("run beaufort");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a cost table"), "{stderr}");
}
