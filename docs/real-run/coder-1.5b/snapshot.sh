#!/usr/bin/env bash
# Snapshot the real run's resumable state into docs/real-run/coder-1.5b/ (what a later session or another
# machine continues from; see README.md here). Safe while `lightreasoner run` is going: it copies only
# complete things (a checkpoint with DONE, eval items up to the last whole line).
#
#   bash docs/real-run/coder-1.5b/snapshot.sh [RUN_DIR]        # prints what it wrote; commit them
#   OUT=/tmp/x bash docs/real-run/coder-1.5b/snapshot.sh RUN   # write them elsewhere
#
# - training unfinished: the newest complete checkpoint + train_config.json + metrics.jsonl up to its
#   step + logs/train.log → train-state.tar.gz
# - training finished: the final adapter as plain files (adapter/: adapter_config.json,
#   adapter_model.safetensors, PEFT's layout), train/ (train_config.json, metrics.jsonl) and
#   logs/train.log; train-state.tar.gz is removed (no optimizer state: nothing left to resume)
# - eval-base / eval-tuned (whole or in progress): identity.json, summary.json, the per-item JSONL cut to
#   whole lines, as plain files in eval-base/ and eval-tuned/ (re-gradable as they are; the merged model
#   is not kept: `run` rebuilds it from the adapter, bit for bit on any CPU, so eval-tuned's recorded
#   fingerprint still matches)
set -euo pipefail
cd "$(dirname "$0")/../../.."
run=${1:-runs/coder-1.5b}
here=${OUT:-docs/real-run/coder-1.5b}
mkdir -p "$here"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/train" "$tmp/logs"

if [ -f "$run/train/adapter_model.safetensors" ]; then
  mkdir -p "$here/adapter" "$here/train" "$here/logs"
  cp "$run/train/adapter_config.json" "$run/train/adapter_model.safetensors" "$here/adapter/"
  cp "$run/train/metrics.jsonl" "$run/train/train_config.json" "$here/train/"
  cp "$run/logs/train.log" "$here/logs/"
  rm -f "$here/train-state.tar.gz"
  echo "$here/adapter/, $here/train/, $here/logs/train.log (training finished)"
else
  newest=$(ls -d "$run"/train/checkpoint-* 2>/dev/null | sort -t- -k2 -n | while read -r d; do [ -f "$d/DONE" ] && echo "$d"; done | tail -1)
  [ -n "$newest" ] || { echo "snapshot: no complete checkpoint in $run/train" >&2; exit 1; }
  step=${newest##*-}
  cp -r "$newest" "$tmp/train/"
  # metrics up to the checkpoint's step only: a resume appends after it without a gap or overlap
  awk -v last="$step" 'match($0, /"step":[0-9]+/) { s = substr($0, RSTART + 7, RLENGTH - 7) + 0; if (s <= last) print }' \
    "$run/train/metrics.jsonl" > "$tmp/train/metrics.jsonl"
  cp "$run/train/train_config.json" "$tmp/train/"
  cp "$run/logs/train.log" "$tmp/logs/"
  tar czf "$here/train-state.tar.gz" -C "$tmp" train logs
  echo "$here/train-state.tar.gz (training: step $step)"
fi

for name in eval-base eval-tuned; do
  [ -f "$run/$name/identity.json" ] || continue
  mkdir -p "$here/$name"
  for file in "$run/$name"/*; do
    case "$file" in
      *.jsonl)  # whole lines only: a line still being written (no newline yet) is left out
        if [ -z "$(tail -c1 "$file")" ]; then cp "$file" "$here/$name/"; else sed '$d' "$file" > "$here/$name/$(basename "$file")"; fi ;;
      *.json) cp "$file" "$here/$name/" ;;
    esac
  done
  echo "$here/$name/ ($(cat "$here/$name"/*.jsonl 2>/dev/null | wc -l) items)"
done
