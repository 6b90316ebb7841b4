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
# The /verify page runs the receipt verifier compiled to WebAssembly, which crates/node/build.rs
# builds: install its tools when missing (the wasm32 target, clang and lld, the pinned
# wasm-bindgen CLI), and make a build without them an error instead of a page that says so.
./scripts/wasm-tools.sh
export BEAUFORT_WASM=require
cargo fmt --all -- --check
# The fuzz crate is its own workspace (fuzz/Cargo.toml), so the line above does not reach it.
cargo fmt --manifest-path fuzz/Cargo.toml --all -- --check
cargo clippy --workspace --all-targets --release -- -D warnings
# The crates the browser runs, linted as they are compiled there.
cargo clippy --release -p beaufort-wasm -p beaufort-receipt -p beaufort-browser -p beaufort-link --target wasm32-unknown-unknown -- -D warnings
# The web pages' typed API client is current with the OpenAPI document and type-checks
# (crates/node/web-ts; installs Node.js and npm when missing).
./scripts/check-web-client.sh
# Coverage-guided fuzzing of what a hostile peer controls (fuzz/README.md): each target replays its
# committed corpus, then fuzzes for a few seconds; a crash, a failed assertion or a hang fails the
# suite (the input is then in fuzz/artifacts/TARGET/). cargo-fuzz passes nightly compiler flags,
# which the stable toolchain accepts with RUSTC_BOOTSTRAP=1. New inputs go to a scratch directory,
# never into the committed corpus.
fuzz_version=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $fuzz_version" ]; then
  cargo install cargo-fuzz --locked --version "$fuzz_version"
fi
fuzz_scratch=$(mktemp -d)
trap 'rm -rf "$fuzz_scratch"' EXIT
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none)
for target in wire_decode replica_receive merkle_sync; do
  mkdir -p "$fuzz_scratch/$target"
  if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$target" "$fuzz_scratch/$target" \
    "corpus/$target" -- -max_total_time=20 -max_len=2048 -len_control=0 -timeout=60 \
    >"$fuzz_scratch/$target.log" 2>&1); then
    tail -n 60 "$fuzz_scratch/$target.log"
    echo "fuzz target $target failed: see fuzz/README.md, the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  echo "fuzz $target: $(grep -E '^Done [0-9]+ runs' "$fuzz_scratch/$target.log")"
done
cargo test --workspace --release
