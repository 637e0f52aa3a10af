#!/usr/bin/env bash
# Mutation testing of the engine's modules with cargo-mutants: each mutant of the given
# files (default: layout, recording, reader, snapshot, window) is built and run against the
# tests that exercise the engine; a mutant no test kills is a hole in the suite, or an
# equivalent mutant (listed with its reason in TESTING.md).
#
#   scripts/mutants.sh                      # every engine module: a few hours on 2 cores
#   scripts/mutants.sh src/window.rs        # one file
#
# Results go to target/mutants/mutants.out (caught.txt, missed.txt, timeout.txt, unviable.txt).
# Not run by CI: too slow.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(src/layout.rs src/recording/counts.rs src/recording/leased.rs
           src/recording/shared.rs src/recording/route.rs src/recording/mod.rs
           src/recording/labelled.rs src/reader.rs src/snapshot.rs src/window.rs)
fi
file_args=()
for file in "${files[@]}"; do
    file_args+=(--file "$file")
done

# The `mutants` profile (Cargo.toml): optimized enough for the threaded tests to run quickly,
# incremental so that each mutant rebuilds in seconds. Test targets: those that drive the
# engine's protocols and figures (the exports, server and fault tests add little here and
# take long).
cargo mutants --package taskmeter --profile mutants --no-shuffle \
    --output target/mutants --timeout-multiplier 5 \
    "${file_args[@]}" \
    -- --lib --test engine --test stress --test small_threads --test window --test memory \
    --test no_alloc --test fuzz_corpus
