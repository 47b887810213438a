#!/usr/bin/env bash
# libFuzzer harness (README "Reliability"): builds the library modules instrumented for libFuzzer and
# AddressSanitizer into .build-fuzz, links one driver per target in Fuzz/Targets, and runs each for
# SECONDS (default 60). Committed inputs in Fuzz/corpus/TARGET (seeds and every crash found so far) are
# replayed first; new coverage goes to .build-fuzz/corpus/TARGET. A crash leaves its input in
# .build-fuzz/crashes/ and fails the script: fix the bug, then commit the input to Fuzz/corpus/TARGET.
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET ...]
#
# Why not SwiftPM executables: libFuzzer brings its own main(), and SwiftPM renames an executable
# target's entry point, so a fuzzer linked through it has none. SwiftPM builds the modules; swiftc links.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=($(ls Fuzz/Targets | sed 's/\.swift$//'))
fi
bash scripts/setup.sh >/dev/null   # the C libraries (the release build it also makes is not used here)

scratch=.build-fuzz
flags=(-c debug --scratch-path "$scratch" -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing
       -Xcc -fsanitize=fuzzer-no-link,address)
# Every module a target imports, and what they import in turn.
for module in Cluster Training RunConfig GGUF; do
  swift build "${flags[@]}" --target "$module" >&2
done
bin=$(swift build "${flags[@]}" --show-bin-path)
modules=(InputFiles Digest CKernels Tensors SafeTensors Tokenizer Models GGUF Contrast Training Evaluation Cluster RunConfig Yams CYaml)
objects=()
for module in "${modules[@]}"; do objects+=($(find "$bin/$module.build" -name '*.o')); done
includes=(-I "$bin/Modules" -I "$bin" -I Sources/CBLAS -I Sources/CZeroMQ -I Sources/CKernels/include)
for map in "$bin"/*.build/module.modulemap; do includes+=(-Xcc "-fmodule-map-file=$map"); done
for flag in $(pkg-config --cflags-only-I openblas libzmq); do includes+=(-Xcc "$flag"); done
libs=($(pkg-config --libs openblas libzmq))

mkdir -p "$scratch/fuzzers" "$scratch/crashes" "$scratch/logs"
status=0
summary=()
for target in "${targets[@]}"; do
  driver="$scratch/fuzzers/$target"
  # (gold warns about every ASan helper symbol; the log keeps it quiet unless the link fails)
  if ! swiftc -sanitize=fuzzer,address -parse-as-library -g -module-name "fuzz_$target" "${includes[@]}" \
      Fuzz/Support/*.swift "Fuzz/Targets/$target.swift" "${objects[@]}" "${libs[@]}" -o "$driver" \
      >"$scratch/logs/$target.link" 2>&1; then
    grep -v 'Cannot export local symbol' "$scratch/logs/$target.link" >&2
    exit 1
  fi
  mkdir -p "$scratch/corpus/$target" "Fuzz/corpus/$target"
  work=$(mktemp -d "${TMPDIR:-/tmp}/lr-fuzz-XXXXXX")
  log="$scratch/logs/$target.log"
  set +e
  # Leaks are not findings here (the Swift runtime keeps its metadata caches until exit).
  LR_FUZZ_SCRATCH="$work" ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 OPENBLAS_NUM_THREADS=1 \
    "$driver" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2560 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$scratch/crashes/$target-" "$scratch/corpus/$target" "Fuzz/corpus/$target" >"$log" 2>&1
  rc=$?
  set -e
  rm -rf "$work"
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  corpus=$(ls "$scratch/corpus/$target" "Fuzz/corpus/$target" | grep -vc ':$' || true)
  if [ "$rc" -ne 0 ]; then
    status=1
    summary+=("$target: FAILED after ${runs:-?} inputs (exit $rc); see $log and $scratch/crashes/")
    grep -E 'ERROR|Fatal error|==[0-9]+==|Test unit written' "$log" | head -5 >&2 || true
  else
    summary+=("$target: ${runs} inputs in ${seconds}s, 0 crashes (coverage ${cov}, corpus ${corpus})")
  fi
done
printf 'fuzz: %s\n' "${summary[@]}"
exit "$status"
