mod common;

use beaufort_core::types::Value;
use common::Cluster;

#[test]
fn single_proposal_is_decided_everywhere() {
    let mut c = Cluster::new(4);
    c.propose(0, "k", "hello");
    c.run();
    for i in 0..4 {
        assert_eq!(c.value(i, "k"), Some(Value::data("hello").unwrap()));
    }
    assert!(c.decisions.iter().any(|(m, d)| *m == 0 && d.mine));
}

#[test]
fn concurrent_proposals_agree() {
    let mut c = Cluster::new(7);
    for i in 0..7u16 {
        c.propose(i, "k", &format!("v{i}"));
    }
    c.run();
    let first = c.value(0, "k").expect("decided");
    for i in 0..7 {
        assert_eq!(c.value(i, "k"), Some(first.clone()));
    }
}
