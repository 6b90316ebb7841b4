//! Backup and restore of a member, end to end over four `beaufort node` processes: a backup
//! taken while the member runs, the member voting on after it (including in a view left open),
//! then its store lost and restored from the old backup. The restored member must rejoin without
//! ever voting twice: it sits out the views it may have voted in, no member records evidence
//! against anyone, and writes at every member still commit.

mod common;

use common::{agreed_value, consortium_with, eventually, Member, SHORT_WAIT};
use serde_json::Value as Json;

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Whether `member` lists `key` among its open views.
fn holds_state_of(member: &Member, key: &str) -> bool {
    match member.http("GET", "/v1/views", "") {
        Some((200, body)) => {
            let views: Json = serde_json::from_str(&body).expect("views JSON");
            views
                .as_array()
                .expect("a list")
                .iter()
                .any(|v| v["key_hex"] == hex_of(key))
        }
        _ => false,
    }
}

fn assert_no_evidence(members: &[Member]) {
    for (i, member) in members.iter().enumerate() {
        let status = member.status();
        assert_eq!(
            status["excluded"],
            serde_json::json!([]),
            "member {i} excluded someone"
        );
        assert_eq!(member.metric("beaufort_excluded_members"), 0, "member {i}");
    }
}

#[test]
fn a_member_restored_from_an_old_backup_rejoins_without_voting_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = consortium_with(dir.path(), 4, true);
    members[0].put("before/1", "a");
    agreed_value(&members, "before/1");

    // A backup of member 3 while it runs.
    let file = dir.path().join("member-3.backup");
    let out = members[3].cli(&["backup", "--out", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 keys"));

    // Member 3 keeps voting after the backup: decided writes ...
    for i in 0..3 {
        members[3].put(&format!("after/{i}"), "b");
    }
    agreed_value(&members, "after/2");
    // ... and a view left open with its vote in it: members 1 and 2 are cut off from 0 and 3,
    // so members 0 and 3 vote for x without a quorum.
    members[0].isolate(&[1, 2]);
    members[3].isolate(&[1, 2]);
    let (status, body) = members[3].put_wait("open/k", "x", SHORT_WAIT);
    assert_eq!(status, 202, "the write cannot commit: {body}");
    eventually("member 0 to hold member 3's vote on open/k", || {
        holds_state_of(&members[0], "open/k")
    });

    // Member 3's store is lost; its operator restores the old backup. Not while a member that
    // may hold one of its votes cannot be asked:
    members[3].kill();
    members[2].kill();
    let refused = members[3].cli(&["restore", file.to_str().expect("utf-8 path")]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("member 2"),
        "names the member it cannot ask: {why}"
    );
    assert!(why.contains("--allow-unreachable"), "{why}");
    members[2].restart();
    eventually("member 2 to serve again", || {
        members[2].http("GET", "/livez", "").is_some()
    });
    std::fs::remove_dir_all(dir.path().join("data-3")).expect("lose member 3's store");
    let out = members[3].cli(&["restore", file.to_str().expect("utf-8 path")]);
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sits out"));
    members[3].restart();

    // It sits out the open view it voted in, and says why.
    let mut answer = (0, String::new());
    eventually("member 3 to answer a write", || {
        answer = members[3].put_wait("open/k", "y", SHORT_WAIT);
        answer.0 != 0
    });
    assert_eq!(answer.0, 503, "{answer:?}");
    assert!(answer.1.contains("restored from a backup"), "{answer:?}");
    assert!(members[3].status()["fenced_keys"].as_u64() >= Some(1));
    // Reads are fresh meanwhile: it learns what was decided after its backup.
    eventually("member 3 to learn after/2", || {
        members[3].value("after/2").as_deref() == Some("b")
    });

    // The others decide the open view without it; then it takes part again.
    members[0].isolate(&[]);
    let decided = agreed_value(&members, "open/k");
    assert_eq!(decided, "x", "the value members 0 and 3 voted for");
    members[3].put("open/k", "z");
    assert_eq!(agreed_value(&members, "open/k"), "z");
    members[3].put("later/1", "w");
    members[1].put("later/2", "w");
    agreed_value(&members, "later/1");
    agreed_value(&members, "later/2");
    // open/k left the fence; the keys decided while it was away stay fenced for its own writes
    // (their next view is open at every member) until another member writes them.
    assert_eq!(members[3].status()["fenced_keys"], serde_json::json!(4));
    members[0].put("after/0", "c");
    eventually("after/0 to leave member 3's fence", || {
        members[3].status()["fenced_keys"] == serde_json::json!(3)
    });
    assert_no_evidence(&members);
}
