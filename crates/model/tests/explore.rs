use beaufort_model::{Bounds, Model};

/// Every schedule of up to 7 actions (two proposals, whole-state transfers among the honest
/// members, and any vote of the Byzantine member up to round 2) keeps agreement and terminates
/// once the Byzantine member falls silent. The CLI runs deeper bounds (see docs/EVALUATION.md).
#[test]
fn bounded_exhaustive_search_finds_no_violation() {
    let model = Model::new();
    let report = model.explore(Bounds {
        depth: 7,
        byzantine_rounds: 2,
        max_worlds: 2_000_000,
        relay: false,
    });
    assert!(
        report.counterexample.is_none(),
        "counterexample: {:?}",
        report.counterexample
    );
    assert!(!report.truncated);
    assert_eq!(report.depth_reached, 7);
    assert!(
        report.worlds > 1000,
        "explored only {} worlds",
        report.worlds
    );
    assert!(report.decided_worlds > 0, "no schedule reached a decision");
}

/// With the Byzantine member also forwarding single honest votes (partial views of honest
/// state), every schedule of up to 6 actions keeps both properties.
#[test]
fn bounded_search_with_relayed_partial_views_finds_no_violation() {
    let report = Model::new().explore(Bounds {
        depth: 6,
        byzantine_rounds: 1,
        max_worlds: 2_000_000,
        relay: true,
    });
    assert!(
        report.counterexample.is_none(),
        "counterexample: {:?}",
        report.counterexample
    );
    assert!(!report.truncated);
    assert_eq!(report.depth_reached, 6);
    assert!(report.decided_worlds > 0);
}

/// The 9-step attack on the literal Algorithm 1 (docs/PROTOCOL.md §5): under the locking rule the
/// same schedule leaves D unable to complete two certificates, and the honest members still decide.
#[test]
fn literal_algorithm1_counterexample_is_harmless_under_locking() {
    use beaufort_core::vote::VoteKind::{Commit, PreCommit};
    use beaufort_model::Action::{Byzantine, Propose, Transfer};
    let (a, b, c) = (0, 1, 2);
    let model = Model::new();
    let schedule = [
        Propose(a),
        Propose(b),
        Transfer { from: a, to: c },
        Byzantine {
            to: c,
            kind: PreCommit,
            round: 0,
            y: true,
        },
        Transfer { from: c, to: a },
        Transfer { from: a, to: b },
        Byzantine {
            to: a,
            kind: PreCommit,
            round: 1,
            y: false,
        },
        Transfer { from: a, to: c },
        Byzantine {
            to: b,
            kind: PreCommit,
            round: 2,
            y: true,
        },
        Transfer { from: b, to: a },
        Transfer { from: b, to: c },
        Byzantine {
            to: a,
            kind: Commit,
            round: 1,
            y: false,
        },
        Byzantine {
            to: c,
            kind: Commit,
            round: 1,
            y: false,
        },
        Byzantine {
            to: a,
            kind: Commit,
            round: 2,
            y: true,
        },
        Byzantine {
            to: b,
            kind: Commit,
            round: 2,
            y: true,
        },
    ];
    let decided = model.check_schedule(&schedule).expect("no violation");
    // Whatever was decided so far is one value.
    let values: std::collections::BTreeSet<_> = decided.iter().flatten().collect();
    assert!(values.len() <= 1, "{decided:?}");
}

/// Over pieces (docs/AGGREGATION.md): honest states travel as one partial aggregate per group,
/// and the Byzantine member also delivers pieces — its vote combined with an honest vote it saw,
/// or a forged piece claiming an honest member. Every schedule of up to 5 actions keeps both
/// properties.
#[test]
fn bounded_search_over_pieces_finds_no_violation() {
    let report = Model::over_pieces().explore(Bounds {
        depth: 5,
        byzantine_rounds: 1,
        max_worlds: 2_000_000,
        relay: false,
    });
    assert!(
        report.counterexample.is_none(),
        "counterexample: {:?}",
        report.counterexample
    );
    assert!(!report.truncated);
    assert_eq!(report.depth_reached, 5);
    assert!(report.decided_worlds > 0);
}

/// The literal-Algorithm-1 attack replayed with states travelling as pieces.
#[test]
fn literal_algorithm1_counterexample_is_harmless_over_pieces() {
    use beaufort_core::vote::VoteKind::{Commit, PreCommit};
    use beaufort_model::Action::{Byzantine, ByzantinePiece, Propose, Transfer};
    let (a, b, c) = (0, 1, 2);
    let schedule = [
        Propose(a),
        Propose(b),
        Transfer { from: a, to: c },
        Byzantine {
            to: c,
            kind: PreCommit,
            round: 0,
            y: true,
        },
        Transfer { from: c, to: a },
        Transfer { from: a, to: b },
        ByzantinePiece {
            to: a,
            kind: PreCommit,
            round: 1,
            y: false,
            with: c,
            forged: true,
        },
        Transfer { from: a, to: c },
        Byzantine {
            to: b,
            kind: PreCommit,
            round: 2,
            y: true,
        },
        Transfer { from: b, to: a },
        Transfer { from: b, to: c },
        Byzantine {
            to: a,
            kind: Commit,
            round: 1,
            y: false,
        },
        ByzantinePiece {
            to: c,
            kind: Commit,
            round: 1,
            y: false,
            with: a,
            forged: false,
        },
    ];
    let decided = Model::over_pieces()
        .check_schedule(&schedule)
        .expect("no violation");
    let values: std::collections::BTreeSet<_> = decided.iter().flatten().collect();
    assert!(values.len() <= 1, "{decided:?}");
}
