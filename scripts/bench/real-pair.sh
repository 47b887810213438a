#!/usr/bin/env bash
# f32 against --compute bf16 on the real pair (issue 20): decode tok/s (`bench --model`), GSM8K eval
# tok/s with greedy agreement per item, and sampling s/question with kept-step agreement. Both modes
# run one after the other in this script, so they see the same machine; the load average is printed
# before each step (rerun it on an idle machine for the figures in docs/bench/real-pair/).
#
#   bash scripts/bench/real-pair.sh                 # models from models/real (scripts/real-models.sh)
#   REAL=/path/to/real OUT=runs/real-pair QUESTIONS=16 EVAL_LIMIT=16 EVAL_TOKENS=512 BATCH=16 \
#     MODES="f32 bf16" TESTS="bench eval sample" bash scripts/bench/real-pair.sh
#
# Writes OUT/{bench-*.json,eval-*,sample-*,*.log} and prints the agreement report
# (scripts/bench/real_pair_agreement.py; python3 standard library only).
set -euo pipefail
cd "$(dirname "$0")/../.."
real=${REAL:-models/real}
out=${OUT:-runs/real-pair}
questions=${QUESTIONS:-16}
limit=${EVAL_LIMIT:-16}
tokens=${EVAL_TOKENS:-512}
batch=${BATCH:-16}
modes=${MODES:-f32 bf16}
tests=${TESTS:-bench eval sample}
threads=${THREADS:-$(nproc)}
bin=${LIGHTREASONER_BIN:-$(bash scripts/setup.sh)}
expert=$real/qwen2.5-coder-1.5b-instruct
amateur=$real/qwen2.5-coder-0.5b-instruct
mkdir -p "$out"

step() { echo "real-pair: $* | $(uptime | sed 's/.*load/load/')" | tee -a "$out/steps.log" >&2; }
timed() {  # wall seconds of a command into $out/<name>.seconds, its stderr into $out/<name>.log
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@" 2> "$out/$name.log"
  end=$(date +%s.%N)
  echo "$end - $start" | bc > "$out/$name.seconds"
  step "$name: $(cat "$out/$name.seconds") s"
}

for mode in $modes; do
  if [[ " $tests " == *" bench "* ]]; then
    step "bench decode, compute $mode"
    timed "bench-$mode" "$bin" bench --model "$expert" --tests decode --batch-sizes 1,16,64 --prompt-tokens 64 \
      --decode-tokens 32 --repeats 1 --warmup 0 --threads "$threads" --compute "$mode" --json "$out/bench-$mode.json" \
      > "$out/bench-$mode.md"
  fi
  if [[ " $tests " == *" eval "* ]]; then
    step "eval gsm8k, compute $mode"
    rm -rf "$out/eval-$mode"
    timed "eval-$mode" "$bin" eval --model "$expert" --data gsm8k --data-dir data --limit "$limit" \
      --max-new-tokens "$tokens" --batch-size "$batch" --weights stored --threads "$threads" --compute "$mode" \
      --out "$out/eval-$mode" > "$out/eval-$mode.md"
  fi
  if [[ " $tests " == *" sample "* ]]; then
    step "sample, compute $mode"
    rm -rf "$out/sample-$mode"
    timed "sample-$mode" "$bin" sample --expert "$expert" --amateur "$amateur" --data data/gsm8k/openai/train.jsonl \
      --max-questions "$questions" --batch-size "$batch" --weights stored --threads "$threads" --compute "$mode" \
      --out "$out/sample-$mode" > "$out/sample-$mode.json"
  fi
done
python3 scripts/bench/real_pair_agreement.py "$out" | tee "$out/report.md"
