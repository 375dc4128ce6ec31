#!/usr/bin/env bash
# Builds the workspace (all targets, debug, --locked) as a machine with only a Rust toolchain
# would: PROTOC unset, and every `protoc` on PATH hidden in a private mount namespace (an
# unexecutable /dev/null bound over it). Fails if any build script still wants protoc, or if
# the dependency graph holds prost-build again. The artifacts are the ones the tests reuse.
# Needs root (or unprivileged user namespaces) for unshare; without either it says so and
# falls back to a PATH check only.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo tree --workspace --locked -e build -i prost-build >/dev/null 2>&1; then
  echo "no-protoc-build: prost-build is in the dependency graph again; the build would need protoc" >&2
  exit 1
fi

build='unset PROTOC
for p in $(type -P -a protoc 2>/dev/null); do mount --bind /dev/null "$p"; done
if protoc --version >/dev/null 2>&1; then echo "no-protoc-build: protoc still runs" >&2; exit 1; fi
cargo build --workspace --all-targets --locked'

if unshare --mount --propagation private true 2>/dev/null; then
  unshare --mount --propagation private bash -c "$build"
elif unshare --user --map-root-user --mount true 2>/dev/null; then
  unshare --user --map-root-user --mount bash -c "$build"
else
  echo "no-protoc-build: cannot make a mount namespace here; checking PATH only" >&2
  if env -u PROTOC bash -c 'type -P protoc' >/dev/null; then
    echo "no-protoc-build: protoc is on PATH and cannot be hidden; build not proven" >&2
  fi
  env -u PROTOC cargo build --workspace --all-targets --locked
fi
echo "no-protoc-build: the workspace builds without protoc"
