#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the whole LightReasoner job on
# the tiny models shipped in models/: inspect → generate → contrastive sampling → LoRA training →
# merge → evaluation before and after. Outputs go to runs/demo (removed first). A few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash scripts/setup.sh)
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
run=runs/demo
rm -rf "$run"
step() { echo; echo "== $*"; }

step lightreasoner inspect --model models/tiny-expert
"$bin" inspect --model models/tiny-expert

step lightreasoner generate --model models/tiny-expert
"$bin" generate --model models/tiny-expert --max-new-tokens 48 \
  --prompt "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?"

step lightreasoner sample "(expert models/tiny-expert, amateur models/tiny-amateur, 20 held-out GSM8K train questions)"
"$bin" sample --expert models/tiny-expert --amateur models/tiny-amateur \
  --data Tests/Fixtures/inputs/gsm8k_train_first20.jsonl --out "$run/samples" --max-new-tokens 96

step lightreasoner train "(LoRA r 8 / alpha 16 on q_proj,v_proj; 8 x 2 samples per step)"
"$bin" train --model models/tiny-expert --samples "$run/samples" --out "$run/train" \
  --steps 40 --lr 1e-3 --validation-fraction 0.2 --eval-every 20

step lightreasoner merge
"$bin" merge --model models/tiny-expert --adapter "$run/train" --out "$run/merged"

step lightreasoner eval "(GSM8K, first 50 test questions, before and after)"
"$bin" eval --model models/tiny-expert --data gsm8k --data-dir data --limit 50 --max-new-tokens 128 --out "$run/eval-base"
"$bin" eval --model "$run/merged" --data gsm8k --data-dir data --limit 50 --max-new-tokens 128 --out "$run/eval-tuned" \
  --compare "$run/eval-base"
