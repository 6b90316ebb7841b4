//! `beaufort sim model-check`: the exhaustive bounded search over the real register.

use anyhow::Result;
use beaufort_model::{Bounds, Model};
use clap::Args;
use std::process::ExitCode;
use std::time::Instant;

/// Bounds of the search (see docs/PROTOCOL.md §13).
#[derive(Args)]
pub struct ModelCheckArgs {
    /// Longest schedule explored, in actions.
    #[arg(long, default_value_t = 8)]
    depth: usize,
    /// Highest round in which the Byzantine member signs votes.
    #[arg(long, default_value_t = 2)]
    byzantine_rounds: u32,
    /// Stop after this many distinct worlds.
    #[arg(long, default_value_t = 20_000_000)]
    max_worlds: usize,
    /// Also let the Byzantine member forward single honest votes (partial views).
    #[arg(long)]
    relay: bool,
    /// Honest states travel as one piece per vote group, and the Byzantine member also combines
    /// or forges pieces (docs/PROTOCOL.md §7.1).
    #[arg(long)]
    pieces: bool,
}

/// Runs the search and prints what it covered; exits non-zero with the schedule on a violation.
pub fn model_check(args: ModelCheckArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let model = if args.pieces {
        Model::over_pieces()
    } else {
        Model::new()
    };
    let report = model.explore(Bounds {
        depth: args.depth,
        byzantine_rounds: args.byzantine_rounds,
        max_worlds: args.max_worlds,
        relay: args.relay,
    });
    println!(
        "model check: n = 4, f = 1 (honest 0-2, Byzantine 3), depth {} (reached {}), Byzantine rounds 0..={}{}{}",
        args.depth,
        report.depth_reached,
        args.byzantine_rounds,
        if args.relay { ", relaying honest votes" } else { "" },
        if args.pieces { ", votes as pieces" } else { "" }
    );
    println!(
        "  worlds: {}  transitions: {}  worlds with a decision: {}{}",
        report.worlds,
        report.transitions,
        report.decided_worlds,
        if report.truncated {
            "  (truncated at --max-worlds)"
        } else {
            ""
        }
    );
    println!("  wall: {:.1} s", started.elapsed().as_secs_f64());
    match report.counterexample {
        None => {
            println!("violations: 0");
            Ok(ExitCode::SUCCESS)
        }
        Some(counterexample) => {
            println!("violation of {}:", counterexample.property);
            for (i, action) in counterexample.schedule.iter().enumerate() {
                println!("  {:>2}. {action:?}", i + 1);
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
