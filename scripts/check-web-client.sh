#!/usr/bin/env bash
# The web pages' typed API client (crates/node/web-ts, README.md there) is current: schema.d.ts is
# what the pinned openapi-typescript
# generates from it, client.ts type-checks under `strict`, and the committed crates/node/web/client.js
# (compiled into the node, so the Rust build never needs Node.js) is what the pinned tsc makes of
# it. (That openapi.json is the document the node serves is a Rust test, in
# crates/node/tests/api_contract.rs, so no build of its own is needed here.) Installs Node.js and
# npm when missing; fails, never skips. Run by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y nodejs npm
fi
dir=crates/node/web-ts
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
stale() {
  echo "$1 is stale: $2 (crates/node/web-ts/README.md says how to regenerate it)" >&2
  exit 1
}
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$dir" && npx --no-install openapi-typescript openapi.json --output "$scratch/schema.d.ts")
diff -u "$dir/schema.d.ts" "$scratch/schema.d.ts" ||
  stale "$dir/schema.d.ts" "openapi-typescript makes other types of openapi.json"
(cd "$dir" && npx --no-install tsc -p tsconfig.json --noEmit)
(cd "$dir" && npx --no-install tsc -p tsconfig.json --outDir "$scratch/out")
diff -u crates/node/web/client.js "$scratch/out/client.js" ||
  stale crates/node/web/client.js "tsc compiles client.ts to something else"
echo "web client: openapi.json, schema.d.ts and client.js are current; client.ts type-checks"
