#!/usr/bin/env bash
# Held-out loss and top-1 agreement of the base and the tuned expert on the run's 524 validation steps,
# under sampling's system message and under the evaluation's (logs/held-out-*.log here).
#
#   bash docs/real-run/coder-1.5b/held-out.sh [RUN_DIR]     # ~3 min per line on 1 thread
#
# `train` prints both before its first step; with the run's seed and validation fraction it holds out the
# same questions. Each train is stopped (SIGTERM) once that line is out: nothing is trained.
set -euo pipefail
cd "$(dirname "$0")/../../.."
run=${1:-runs/coder-1.5b}
bin=$(bash scripts/setup.sh)
model=models/real/qwen2.5-coder-1.5b-instruct
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the same samples with the evaluation's system message (qwen25-math-cot)
cp -r "$run/samples" "$work/samples-eval-prompt"
python3 - "$work/samples-eval-prompt/settings.json" <<'PY'
import json, sys
path = sys.argv[1]
settings = json.load(open(path))
settings["settings"]["systemPrompt"] = "Please reason step by step, and put your final answer within \\boxed{}."
json.dump(settings, open(path, "w"))
PY
for prompt in sampling eval; do
  samples=$run/samples; [ $prompt = eval ] && samples=$work/samples-eval-prompt
  for which in base tuned; do
    adapter=(); [ $which = tuned ] && adapter=(--init-adapter "$run/train")
    log=$work/$prompt-$which.log
    "$bin" train --model $model --samples "$samples" --out "$work/out-$prompt-$which" "${adapter[@]}" \
      --validation-fraction 0.05 --lr 1e-30 --steps 1 --packing --threads 1 --weights stored > "$log" 2>&1 &
    pid=$!
    while kill -0 $pid 2>/dev/null && ! grep -q "before training" "$log"; do sleep 5; done
    kill -TERM $pid 2>/dev/null || true
    wait $pid || true
    echo "$prompt prompt, $which: $(grep -h "before training" "$log" || echo "failed: see $log")"
  done
done
