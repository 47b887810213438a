#!/usr/bin/env bash
# The test suite under a sanitizer (README "Reliability"): the package and its tests built with
# AddressSanitizer or ThreadSanitizer into .build-address / .build-thread (the lightreasoner binary the
# tests start is instrumented too), then run one suite at a time.
#
#   bash scripts/sanitize.sh address [FILTER ...]   # every suite unless filters are given
#   bash scripts/sanitize.sh thread  [FILTER ...]   # default: the concurrent code (see below)
#
# A report stops the run (halt_on_error) and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: scripts/sanitize.sh address|thread [FILTER ...]}
shift
case "$mode" in address|thread) ;; *) echo "sanitize: mode must be address or thread, not '$mode'" >&2; exit 64 ;; esac
filters=("$@")
if [ "$mode" = thread ] && [ ${#filters[@]} -eq 0 ]; then
  # What runs on several threads: the coordinator and sampler nodes (ZeroMQ, heartbeats, in-process
  # clusters), the parallel loops (attention, skinny kernels, contrastive decisions) and the sampler
  # that uses them, training's data-parallel ranks.
  filters=(ClusterTests SamplingTests TensorsTests ContrastTests DistributedTrainingTests)
fi
bash scripts/setup.sh >/dev/null   # the C libraries
scratch=.build-$mode
flags=(-c release --scratch-path "$scratch" -Xswiftc -enable-testing --sanitize="$mode")
swift build "${flags[@]}" --build-tests >&2
# Leaks are not findings here (the Swift runtime keeps its metadata caches until exit). One BLAS thread
# as in CI, except under ThreadSanitizer, where two make the parallel loops really run in parallel.
export ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
export OPENBLAS_NUM_THREADS=1
[ "$mode" = thread ] && export OPENBLAS_NUM_THREADS=2
args=()
for filter in "${filters[@]}"; do args+=(--filter "$filter"); done
swift test "${flags[@]}" --skip-build --no-parallel "${args[@]}"
