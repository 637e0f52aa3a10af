#!/usr/bin/env bash
# Runs the concurrency tests under Miri and ThreadSanitizer, where a nightly toolchain with the
# `miri` and `rust-src` components exists (`rustup component add miri rust-src --toolchain
# nightly`). Not part of .ci/run, but for the quick Miri set (`scripts/miri.sh --quick`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "no nightly with miri: skipping (see the header of this script)"
    exit 0
fi

echo "== Miri: unit tests that fit its speed, the small-thread tests, native buckets"
bash scripts/miri.sh --require

echo "== ThreadSanitizer: small-thread, stress and fault tests"
RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
    cargo +nightly test -p taskmeter -Zbuild-std --target x86_64-unknown-linux-gnu \
    --target-dir target/tsan --release \
    --test small_threads --test stress --test faults
