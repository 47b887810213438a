#!/usr/bin/env bash
# The test command (README, CI). Release build (numeric tests are many times slower in debug) with
# -enable-testing so suites may use @testable imports. Tests run one at a time: several start
# processes (mpirun, coordinator + samplers) on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export OPENBLAS_NUM_THREADS=1
swift build -c release --build-tests -Xswiftc -enable-testing
swift test -c release -Xswiftc -enable-testing --skip-build --no-parallel "$@"
