#!/bin/bash
# run.sh - builds the libFuzzer targets with clang under ASan+UBSan and
# runs each on its seed corpus for a bounded time; fails on any crash,
# leak, sanitizer report or broken invariant (the target's CHECK).
#
# Usage: fuzz/run.sh [TARGET...]       (default: every target)
#   FUZZ_BUILD=DIR     build directory (build-fuzz)
#   FUZZ_SECONDS=N     seconds per target (10)
#   FUZZ_JOBS=N        parallel build jobs (nproc)
# New inputs go to DIR/fuzz-corpus/<target>, beside the seeds in
# fuzz/corpus/<target> (left as they are); a failing input is saved as
# DIR/fuzz-artifacts/<target>-crash-<sha1>: replay it with
# DIR/fuzz/fuzz_<target> FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD:-build-fuzz}
secs=${FUZZ_SECONDS:-10}
jobs=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
all="http_request http_response http_chunked http_differential addr_parse hostname url"
targets=${*:-$all}

CC=clang cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWEFT_BUILD_FUZZ=ON \
    -DWEFT_SANITIZE=address,undefined -DWEFT_BUILD_TESTS=OFF -DWEFT_BUILD_EXAMPLES=OFF \
    -DWEFT_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target fuzzers

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:${ASAN_OPTIONS:-}
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:${UBSAN_OPTIONS:-}
mkdir -p "$build/fuzz-artifacts"
failed=""
for t in $targets; do
    bin="$build/fuzz/fuzz_$t"
    [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }
    mkdir -p "$build/fuzz-corpus/$t"
    dict=()
    case $t in http_*) dict=(-dict=fuzz/http.dict) ;; esac
    log="$build/fuzz-artifacts/$t.log"
    echo "== fuzz_$t: ${secs}s"
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        "${dict[@]}" -artifact_prefix="$build/fuzz-artifacts/$t-" \
        "$build/fuzz-corpus/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
        # Executions, coverage (edges, features) and corpus size at the end.
        awk '/^#[0-9]+.*cov:/ { last = $0 } END { print "   " last }' "$log"
    else
        tail -40 "$log"
        echo "== fuzz_$t FAILED (log: $log)"
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed" >&2
    exit 1
fi
echo "fuzz: every target ran ${secs}s clean"
