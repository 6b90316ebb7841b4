//! Every scripted scenario in `tests/replays/` runs without a violation and ends with every honest
//! member having decided, all the same value per key and view.

use beaufort_sim::replay;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn replay_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/replays")
}

#[test]
fn every_replay_file_passes_and_every_honest_member_decides() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(replay_dir())
        .expect("tests/replays exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "the paper examples and the counterexample are there"
    );
    for file in files {
        let script = replay::load(&file).expect("replay parses");
        let outcome = replay::run(&script).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            outcome.violations.is_empty(),
            "{}: {:?}",
            file.display(),
            outcome.violations
        );
        assert!(
            outcome.honest_faults.is_empty(),
            "{}: honest members blamed each other: {:?}",
            file.display(),
            outcome.honest_faults
        );
        assert!(
            outcome.all_honest_decided(),
            "{}: not every honest member decided",
            file.display()
        );
        let mut decided = BTreeMap::new();
        for d in &outcome.decisions {
            let first = decided
                .entry((d.key.clone(), d.view))
                .or_insert(d.value.clone());
            assert_eq!(
                *first,
                d.value,
                "{}: honest members disagree",
                file.display()
            );
        }
    }
}

#[test]
fn counterexample_decides_x_everywhere() {
    let script = replay::load(&replay_dir().join("literal-algorithm1-counterexample.json"))
        .expect("replay parses");
    let outcome = replay::run(&script).expect("replay runs");
    let values: Vec<String> = outcome
        .decisions
        .iter()
        .map(|d| format!("{}:{:?}", d.member, d.value))
        .collect();
    assert_eq!(values, ["0:\"x1\"", "1:\"x1\"", "2:\"x1\""]);
}

#[test]
fn higher_hash_wins_the_tie() {
    let script =
        replay::load(&replay_dir().join("paper-higher-hash-wins.json")).expect("replay parses");
    let outcome = replay::run(&script).expect("replay runs");
    let v1 = beaufort_core::types::Value::data(b"v1".to_vec()).expect("small");
    let v2 = beaufort_core::types::Value::data(b"v2b".to_vec()).expect("small");
    assert!(v2.hash() > v1.hash(), "the script's premise");
    for d in outcome.decisions.iter().filter(|d| d.view == 0) {
        assert_eq!(d.value, v2, "member {} decided the lower hash", d.member);
    }
}

#[test]
fn split_vote_is_resolved_in_round_one() {
    let script =
        replay::load(&replay_dir().join("paper-split-vote-round1.json")).expect("replay parses");
    let outcome = replay::run(&script).expect("replay runs");
    let v1 = beaufort_core::types::Value::data(b"v1".to_vec()).expect("small");
    let view0: Vec<_> = outcome.decisions.iter().filter(|d| d.view == 0).collect();
    assert_eq!(view0.len(), 4);
    for d in view0 {
        assert_eq!(d.value, v1);
        assert_eq!(d.round, 1, "the certificate comes from round 1");
    }
}

#[test]
fn a_failed_expectation_is_reported_as_a_script_error() {
    let text = r#"{"members": 4, "steps": [
        {"propose": {"member": 0, "key": "k", "value": "v"}},
        {"expect_decided": {"member": 0, "key": "k", "view": 0, "value": "v"}}
    ]}"#;
    let script: replay::Script = serde_json::from_str(text).expect("parses");
    let error = replay::run(&script).expect_err("nothing was decided");
    assert!(error.to_string().contains("step 1"), "{error}");
}

#[test]
fn a_view_driven_far_past_the_old_round_limit_still_decides() {
    let script =
        replay::load(&replay_dir().join("liveness-rounds-beyond-64.json")).expect("replay parses");
    let outcome = replay::run(&script).expect("replay runs");
    let y1 = beaufort_core::types::Value::data(b"y1".to_vec()).expect("small");
    assert_eq!(outcome.decisions.len(), 3, "every honest member decides");
    for d in &outcome.decisions {
        assert_eq!(d.value, y1);
        assert_eq!(
            d.round, 101,
            "the certificate comes from round 101 (the limit was 64)"
        );
    }
}

#[test]
fn junk_bodies_do_not_make_honest_members_blame_each_other() {
    let script =
        replay::load(&replay_dir().join("liveness-junk-bodies.json")).expect("replay parses");
    let outcome = replay::run(&script).expect("replay runs");
    assert!(
        outcome.honest_faults.is_empty(),
        "{:?}",
        outcome.honest_faults
    );
    let y1 = beaufort_core::types::Value::data(b"y1".to_vec()).expect("small");
    let view0: Vec<_> = outcome.decisions.iter().filter(|d| d.view == 0).collect();
    assert_eq!(view0.len(), 3);
    assert!(view0.iter().all(|d| d.value == y1));
}
