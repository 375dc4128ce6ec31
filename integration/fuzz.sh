#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/fuzz_targets) for a bounded time: SWITCHBOARD_FUZZ_SECS
# seconds each (default 30), starting from the seeds in fuzz/seeds and the corpus kept in
# fuzz/corpus. Installs cargo-fuzz from crates.io when missing. cargo fuzz needs nightly
# flags (-Zsanitizer); the machine's stable toolchain accepts them with RUSTC_BOOTSTRAP=1.
# A crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${SWITCHBOARD_FUZZ_SECS:-30}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=64}"
for t in parse bind http1; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for ${secs}s"
  # ASan keeps freed memory in quarantine (hundreds of MB when binding allocates a lot), so
  # RSS overstates the live heap: the quarantine is capped and the RSS limit set above it.
  log="target/fuzz-$t.log"
  mkdir -p target
  if ! cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E '^(#[0-9]+.*DONE|Done)' "$log" || true
done
echo "fuzz: no crash"
