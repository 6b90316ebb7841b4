#!/usr/bin/env bash
# Installs what building the browser's receipt verifier (crates/wasm, built by crates/node/build.rs)
# needs, each only when it is missing, so the README's commands work on a machine with nothing but
# rustup: the Rust target wasm32-unknown-unknown, Debian's clang and lld (blst's C is compiled for
# wasm32 by clang) and the wasm-bindgen CLI of exactly the version of the wasm-bindgen crate in
# Cargo.lock (the CLI refuses modules made by any other version).
set -euo pipefail
cd "$(dirname "$0")/.."
target=wasm32-unknown-unknown
if ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
fi
if ! command -v clang >/dev/null || ! command -v wasm-ld >/dev/null; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y clang lld
fi
version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$version" ]; then
  echo "Cargo.lock names no wasm-bindgen" >&2
  exit 1
fi
if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
  # Pinned to the exact version, but not --locked: the CLI's own lock file names a webpki-roots
  # release the registry no longer offers, so a locked install fails to resolve.
  cargo install wasm-bindgen-cli --version "=$version"
fi
