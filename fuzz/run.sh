#!/usr/bin/env bash
# Fuzzes the loader and the tokenizer for a bounded time, side by side (one core each).
#
#   fuzz/run.sh [seconds per target, default 60] [--keep]
#
# Each target starts from its kept corpus, fuzz/corpus/<target>/, which is only read: inputs the
# run finds go to a temporary folder. With --keep, the new inputs that add coverage are merged
# into fuzz/corpus/<target>/ (libFuzzer's -merge=1 keeps the fewest inputs covering it all), to be
# committed as regression inputs for tests/test_fuzz_corpus.py.
# Exits non-zero, printing the fuzzer's report and the failing input, if a target fails.
set -euo pipefail

seconds="${1:-60}"
keep="${2:-}"
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/bertcpu-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The package must import from this checkout (the tests' way: run from the repository root).
cd "$fuzz_dir/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

# The harnesses run as executables (#!/usr/bin/env python): libFuzzer's -merge re-runs argv[0].
pids=()
for target in loader tokenizer; do
    mkdir -p "$work/$target"
    # -timeout: an input running 10 s is a hang; -rss_limit_mb: a loader that allocates 2 GB
    # for a file of a few kB is a finding, not a fact of life.
    "$fuzz_dir/fuzz_$target.py" "$work/$target" "$fuzz_dir/corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$work/$target-" -print_final_stats=1 >"$work/$target.log" 2>&1 &
    pids+=("$!")
done

status=0
for i in 0 1; do
    target=$([ "$i" = 0 ] && echo loader || echo tokenizer)
    wait "${pids[$i]}" && failed=0 || failed=1
    # The harness's scratch folder (fuzz/scratch.py): libFuzzer's exit() leaves it behind.
    rm -rf "/dev/shm/bertcpu-fuzz-$target-${pids[$i]}" "${TMPDIR:-/tmp}/bertcpu-fuzz-$target-${pids[$i]}"
    if [ "$failed" = 0 ]; then
        runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$work/$target.log" | tail -1)
        coverage=$(grep -o 'cov: [0-9]*' "$work/$target.log" | tail -1)
        echo "fuzz/$target: ${runs:-?}s, $coverage, no failure"
    else
        status=1
        echo "fuzz/$target: FAILED; the fuzzer's report:"
        grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)|^INFO:' "$work/$target.log" | tail -60
        for artifact in "$work/$target"-*; do
            [ -e "$artifact" ] || continue
            # Kept beside the harnesses; once fixed, move it into fuzz/corpus/$target/.
            echo "failing input, kept as fuzz/failure-$(basename "$artifact"):"
            cp "$artifact" "$fuzz_dir/failure-$(basename "$artifact")"
            head -c 2000 "$artifact" | od -c | head -20
        done
    fi
done

if [ "$status" = 0 ] && [ "$keep" = "--keep" ]; then
    for target in loader tokenizer; do
        before=$(ls "$fuzz_dir/corpus/$target" | wc -l)
        "$fuzz_dir/fuzz_$target.py" -merge=1 "$fuzz_dir/corpus/$target" "$work/$target" \
            >"$work/$target-merge.log" 2>&1
        echo "fuzz/$target: corpus $before -> $(ls "$fuzz_dir/corpus/$target" | wc -l) inputs"
    done
fi
exit "$status"
