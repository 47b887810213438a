#!/usr/bin/env bash
# Continue the real run from the committed snapshot, on this machine or a fresh one (see README.md here).
#
#   bash docs/real-run/coder-1.5b/continue.sh              # lightreasoner run: the stages in order
#   bash docs/real-run/coder-1.5b/continue.sh --paired     # both GSM8K evaluations at once, 1 thread each
#
# --paired runs eval-base and eval-tuned side by side (same settings as `run`, which then finds them done
# and finishes): the same total CPU time on 2 cores, but the paired before/after grows from the start
# instead of after the base evaluation's hours. Logs and GNU time's report go to runs/coder-1.5b/logs/.
# Safe to rerun: every stage resumes, and each output folder takes one writer at a time.
set -euo pipefail
cd "$(dirname "$0")/../../.."
here=docs/real-run/coder-1.5b
run=runs/coder-1.5b
bin=$(bash scripts/setup.sh)
LIGHTREASONER_BIN=$bin bash scripts/real-models.sh >/dev/null

if [ ! -f "$run/samples/summary.json" ]; then
  mkdir -p "$run" && tar xzf "$here/run-state.tar.gz" -C "$run"
fi
if [ -f "$here/train-state.tar.gz" ]; then
  [ -d "$run/train" ] || tar xzf "$here/train-state.tar.gz" -C "$run"
elif [ ! -f "$run/train/adapter_model.safetensors" ]; then
  mkdir -p "$run/train" && cp "$here"/adapter/* "$here"/train/* "$run/train/"
fi
for e in eval-base eval-tuned; do   # keep whichever copy has more finished items
  [ -d "$here/$e" ] || continue
  have=$(cat "$run/$e"/*.jsonl 2>/dev/null | wc -l || true)
  saved=$(cat "$here/$e"/*.jsonl 2>/dev/null | wc -l || true)
  if [ "$saved" -gt "$have" ]; then mkdir -p "$run/$e" && cp "$here/$e"/* "$run/$e/"; fi
done

if [ "${1:-}" = "--paired" ] && [ ! -f "$run/eval-tuned/summary.json" ]; then
  # merge (seconds) and nothing else: eval.before false and eval.limit 0 would change the plan, so run
  # merge directly, as `run` does, into the folder `run` uses
  # the settings come from the config as `run` resolves them, so both ways evaluate alike
  effective=$("$bin" run configs/coder-1.5b.yaml --dry-run 2>&1)
  setting() { awk -v key="$1" '$1 == key { sub(/^[^ ]+ +/, ""); print; exit }' <<<"$effective"; }
  [ -f "$run/merged/config.json" ] || "$bin" merge --model "$(setting models.expert)" --adapter "$run/train" --out "$run/merged"
  mkdir -p "$run/logs"
  common=(--batch-size "$(setting eval.batch_size)" --max-new-tokens "$(setting eval.max_new_tokens)"
          --prompt-type "$(setting eval.prompt_type)" --weights "$(setting models.weights)" --compute "$(setting models.compute)"
          --resume --threads 1)
  for name in $(setting eval.data | tr -d '[],'); do common+=(--data "$name"); done
  [ "$(setting eval.limit)" = null ] || common+=(--limit "$(setting eval.limit)")
  [ "$(setting eval.data_dir)" = null ] || common+=(--data-dir "$(setting eval.data_dir)")
  pids=()
  for e in eval-base eval-tuned; do
    [ -f "$run/$e/summary.json" ] && continue
    model=$(setting models.expert)
    [ "$e" = eval-tuned ] && model=$run/merged
    timer=(); [ -x /usr/bin/time ] && timer=(/usr/bin/time -v -o "$run/logs/$e.time")   # wall time and peak RSS
    "${timer[@]}" "$bin" eval --model "$model" --out "$run/$e" "${common[@]}" \
      > "$run/logs/$e.out" 2>> "$run/logs/$e.log" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
fi
exec "$bin" run configs/coder-1.5b.yaml
