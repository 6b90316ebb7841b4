#!/usr/bin/env bash
# The README's main job: installs what the web app's receipt verifier needs when missing
# (scripts/wasm-tools.sh), then runs `beaufort demo` with the arguments given, e.g.
#   ./scripts/demo.sh --nodes 7 --duration 20s --serve
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/wasm-tools.sh
# Fail the build rather than serve a /verify page without its verifier.
BEAUFORT_WASM=require exec cargo run --release --bin beaufort -- demo "$@"
