#!/usr/bin/env bash
# The planner against a measured run: `plan` before the run (generated lengths at their maximum), the run
# itself, `plan` again (lengths as the run measured them, same calibration), and the ratio estimate /
# measured per stage. A documented check (docs/planner.md), not a timed test: both sides depend on the
# machine's load.
#
#   scripts/bench/plan-check.sh [CONFIG] [RUN_DIR] [--set KEY=VALUE ...]     defaults: configs/tiny.yaml, a temporary folder
set -euo pipefail
cd "$(dirname "$0")/../.."
CONFIG=${1:-configs/tiny.yaml}
RUN_DIR=${2:-$(mktemp -d /tmp/lr-plan-check-XXXXXX)/run}
shift $(( $# > 2 ? 2 : $# ))
LR_BIN=${LR_BIN:-.build/release/lightreasoner}
work=$(dirname "$RUN_DIR")
mkdir -p "$work"
"$LR_BIN" plan "$CONFIG" --run-dir "$RUN_DIR" --save-calibration "$work/calibration.json" --json "$@" > "$work/plan-before.json"
"$LR_BIN" run "$CONFIG" --run-dir "$RUN_DIR" "$@" --quiet > /dev/null
"$LR_BIN" plan "$CONFIG" --run-dir "$RUN_DIR" --calibration "$work/calibration.json" --json "$@" > "$work/plan-after.json"
python3 - "$work/plan-before.json" "$work/plan-after.json" "$RUN_DIR/run.json" <<'PY'
import json, sys
before, after, history = (json.load(open(p)) for p in sys.argv[1:4])
measured = {s["stage"]: s.get("seconds") for s in history["invocations"][-1]["stages"] if s.get("status") == "ran"}
print("| stage | measured s | estimate s (max lengths) | ratio | estimate s (measured lengths) | ratio |")
print("|---|---:|---:|---:|---:|---:|")
for b, a in zip(before["stages"], after["stages"]):
    m = measured.get(b["stage"])
    if not m: continue
    print(f"| {b['stage']} | {m:.2f} | {b['seconds']:.2f} | {b['seconds']/m:.2f} | {a['seconds']:.2f} | {a['seconds']/m:.2f} |")
PY
