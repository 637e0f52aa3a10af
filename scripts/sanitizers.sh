#!/usr/bin/env bash
# Runs the concurrency tests under Miri and ThreadSanitizer, where a nightly toolchain with the
# `miri` and `rust-src` components exists (`rustup component add miri rust-src --toolchain
# nightly`). Not part of .ci/run: a fresh CI machine has no nightly.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "no nightly with miri: skipping (see the header of this script)"
    exit 0
fi

echo "== Miri: unit tests that fit its speed, and the small-thread tests"
MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test -p taskmeter --no-default-features \
    --target-dir target/miri --lib -- \
    --skip layout::tests --skip engine::tests::clocks --skip recording::counts::tests \
    --skip engine::tests::ordinals_are_recycled
MIRIFLAGS="-Zmiri-disable-isolation" cargo +nightly miri test -p taskmeter --no-default-features \
    --target-dir target/miri --test small_threads

echo "== ThreadSanitizer: small-thread, stress and fault tests"
RUSTFLAGS="-Zsanitizer=thread" RUSTDOCFLAGS="-Zsanitizer=thread" \
    cargo +nightly test -p taskmeter -Zbuild-std --target x86_64-unknown-linux-gnu \
    --target-dir target/tsan --release \
    --test small_threads --test stress --test faults
