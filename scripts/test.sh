#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate (release mode, because the
# model checker and the adversarial simulations are CPU-bound). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
