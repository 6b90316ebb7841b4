//! `beaufort doctor` against four `beaufort node` processes, from one member's configuration
//! file: healthy, one member cut off and behind, one member stopped. It names the member and
//! exits 1 whenever something needs an operator.

mod common;

use common::{agreed_value, consortium_with, eventually, Member};

/// Runs doctor from member 0's file: (success, what it printed).
fn doctor(member: &Member) -> (bool, String) {
    let out = member.cli(&["doctor"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn doctor_names_the_member_that_is_behind_or_unreachable_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = consortium_with(dir.path(), 4, true);
    members[0].put("points/alice", "1");
    agreed_value(&members, "points/alice");
    eventually("every member to have a neighbour", || {
        members.iter().all(|m| {
            m.status()["neighbours"]
                .as_array()
                .is_some_and(|n| !n.is_empty())
        })
    });
    let (ok, text) = doctor(&members[0]);
    assert!(ok, "a healthy consortium: {text}");
    assert!(text.contains("OK: every member answers"), "{text}");

    // Member 1 is cut off while the others decide: it falls behind.
    for i in [0, 2, 3] {
        members[i].isolate(&[1]);
    }
    members[1].isolate(&[0, 2, 3]);
    members[0].put("points/bob", "2");
    members[2].put("points/alice", "3");
    let (ok, text) = doctor(&members[0]);
    assert!(!ok, "{text}");
    assert!(text.contains("is behind under `points`"), "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert!(
        problems.iter().all(|l| l.contains("member 1 (")),
        "only member 1 is named: {text}"
    );

    // Healed, it catches up and doctor is content again.
    for member in &members {
        member.isolate(&[]);
    }
    eventually("doctor to find the consortium healthy again", || {
        doctor(&members[0]).0
    });

    // A stopped member is named as not answering.
    members[2].kill();
    let (ok, text) = doctor(&members[0]);
    assert!(!ok, "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("PROBLEM")).collect();
    assert_eq!(problems.len(), 1, "{text}");
    assert!(
        problems[0].contains("member 2 (") && problems[0].contains("does not answer"),
        "{text}"
    );
}
