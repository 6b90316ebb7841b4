//! `beaufort demo --format json` speaks the simulator's language: the same fields, with the
//! bandwidth counted from the bytes the members' links carried.

use serde_json::Value as Json;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_beaufort");

fn json_of(args: &[&str]) -> Json {
    let out = Command::new(BIN).args(args).output().expect("run beaufort");
    assert!(
        out.status.success(),
        "beaufort {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "beaufort {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The names of an object's fields.
fn fields(json: &Json) -> Vec<String> {
    let mut names: Vec<String> = json
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

#[test]
fn the_demo_reports_what_the_simulator_reports_from_real_links() {
    let demo = json_of(&[
        "demo",
        "--nodes",
        "4",
        "--duration",
        "3s",
        "--rate",
        "2",
        "--format",
        "json",
    ]);
    let sim = json_of(&[
        "sim",
        "run",
        "--nodes",
        "4",
        "--duration",
        "3s",
        "--rate",
        "2",
        "--seed",
        "1",
        "--cost",
        "reference",
        "--format",
        "json",
    ]);
    for shared in [
        "latency_ms",
        "bandwidth_mbit_per_node",
        "upload_mbit_per_node",
        "bytes_per_tx",
    ] {
        assert_eq!(fields(&demo[shared]), fields(&sim[shared]), "{shared}");
    }
    for count in ["decided", "submitted"] {
        assert!(sim[count].is_u64(), "the simulator reports {count}");
        assert!(demo[count].is_u64(), "the demo reports {count}");
    }

    let submitted = demo["submitted"].as_u64().unwrap();
    let decided = demo["decided"].as_u64().unwrap();
    let failed = demo["failed"].as_u64().unwrap();
    assert!(submitted >= 4, "every member submitted: {demo}");
    assert_eq!(decided + failed, submitted, "every write has an answer");
    assert_eq!(demo["voucher_redemptions_committed"], 1);
    let latency = &demo["latency_ms"];
    let (p50, p99, max) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
        latency["max"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{latency}");
    for report in [&demo, &sim] {
        let bytes = &report["bytes_per_tx"];
        let (received, floor, multiple) = (
            bytes["received_per_tx"].as_f64().unwrap(),
            bytes["floor"].as_f64().unwrap(),
            bytes["floor_multiple"].as_f64().unwrap(),
        );
        // Four members: a value and its key, and two certificates of 48 + 1 + 20 bytes.
        assert!(floor > 2.0 * 69.0, "{bytes}");
        assert!(received > 0.0, "{bytes}");
        assert!((multiple - received / floor).abs() < 1e-6, "{bytes}");
    }
    let total = demo["bandwidth_mbit_per_node"]["mean"].as_f64().unwrap();
    let upload = demo["upload_mbit_per_node"]["mean"].as_f64().unwrap();
    assert!(
        0.0 < upload && upload < total,
        "links carried the votes both ways: {demo}"
    );
}
