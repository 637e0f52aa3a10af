#!/usr/bin/env bash
# Mutation testing of the engine's modules with cargo-mutants: each mutant of the given
# files (default: layout, recording, reader, snapshot, window) is built and run against the
# tests that exercise the engine; a mutant no test kills is a hole in the suite, or an
# equivalent mutant (listed with its reason in TESTING.md).
#
#   scripts/mutants.sh                      # every engine module: hours on 2 cores
#   scripts/mutants.sh src/window.rs        # one file
#   scripts/mutants.sh --loom src/window.rs # then its survivors against the loom models
#
# `MUTANTS_RE=REGEX` tests only the mutants whose names (as `cargo mutants --list` shows them)
# match. Results go to $MUTANTS_OUT/mutants.out (default target/mutants; caught.txt, missed.txt,
# timeout.txt, unviable.txt). `--loom` reruns, in the same output, only the mutants the last
# run did not catch, built with `--cfg loom` and tested by the loom models (the orderings
# and barriers that no test on real threads can catch reliably). Not run by CI: too slow.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants

loom=false
if [ "${1:-}" = --loom ]; then
    loom=true
    shift
fi
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(src/layout.rs src/recording/counts.rs src/recording/leased.rs
           src/recording/shared.rs src/recording/route.rs src/recording/mod.rs
           src/recording/labelled.rs src/reader.rs src/snapshot.rs src/window.rs)
fi
args=(--package taskmeter --profile mutants --no-shuffle --output "${MUTANTS_OUT:-target/mutants}"
      # Functions of `#[cfg(all(test, not(loom)))]` modules are test code, not engine code;
      # so is `Recording::id`, compiled only for the tests' fault injection.
      --exclude-re 'tests::' --exclude-re 'Recording::id ')
for file in "${files[@]}"; do
    args+=(--file "$file")
done
if [ -n "${MUTANTS_RE:-}" ]; then
    args+=(--re "$MUTANTS_RE")
fi

if $loom; then
    # The models at preemption bound 2 (CI runs 3): minutes per mutant, not hours.
    RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 \
        cargo mutants "${args[@]}" --iterate --no-default-features --timeout 600 \
        -- --test loom
else
    # The `mutants` profile (Cargo.toml): optimized enough for the threaded tests to run
    # quickly, incremental so that each mutant rebuilds in seconds. Test targets: those that
    # drive the engine's protocols and figures, and the quick ones that read snapshots through
    # the exports and the solti API (the server and fault tests add little here and take
    # long). A mutant still running after 30 s (the unmutated tests take about 13) has hung:
    # counted as timed out.
    cargo mutants "${args[@]}" --timeout 30 \
        -- --lib --test engine --test stress --test small_threads --test window --test memory \
        --test no_alloc --test fuzz_corpus --test export --test sinks --test solti \
        --test solti_0_0_2
fi
