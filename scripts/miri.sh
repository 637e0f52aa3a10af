#!/usr/bin/env bash
# Runs, under Miri, the unit tests that fit its speed (the lease's hand-over, the reader's
# faults, the snapshot's blocks and lists, the label table, the native buckets, whose indexes
# must not depend on the float library that Miri perturbs, ...) and the small-thread tests;
# with `--quick`, only the unit tests of the newest structures (what CI runs). The tests'
# self-dependency turns every feature on. Needs a nightly toolchain with the `miri` and
# `rust-src` components; without one it says so and exits 0, or 1 with `--require`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    rustup component add miri rust-src --toolchain nightly >/dev/null 2>&1 || true
fi
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "SKIPPED: Miri (no nightly toolchain with the miri component here)"
    [ "${1:-}" = --require ] && exit 1
    exit 0
fi
quick=false
[ "${1:-}" = --quick ] && quick=true
export MIRIFLAGS="-Zmiri-disable-isolation"
miri=(cargo +nightly miri test -p taskmeter --target-dir target/miri)
if $quick; then
    "${miri[@]}" --no-default-features --lib -- \
        export::native recording::labelled snapshot::durations
    exit 0
fi
"${miri[@]}" --no-default-features --lib -- \
    --skip layout::tests --skip engine::tests::clocks --skip recording::counts::tests \
    --skip engine::tests::ordinals_are_recycled
"${miri[@]}" --no-default-features --test small_threads
