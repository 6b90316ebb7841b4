#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test of every crate (release mode, because the
# model checker and the adversarial simulations are CPU-bound). CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# The loyalty end-to-end test drives the API from an independent Python client with its own P-256
# keys; it needs the `cryptography` package.
if ! python3 -c 'import cryptography' 2>/dev/null; then
  pip install --quiet cryptography || { apt-get update && apt-get install -y python3-cryptography; }
fi
# The browser tests (crates/beaufort/tests/browser.rs) drive Debian's headless Chromium through
# chromedriver; they fail, never skip, without them.
command -v chromedriver >/dev/null || { apt-get update && apt-get install -y chromium chromium-driver; }
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
cargo test --workspace --release
