#!/usr/bin/env bash
# Distributed sampling on one host: a coordinator and N sampler processes (ZeroMQ over loopback).
#
#   cluster/local.sh [N]            N samplers (default 2)
#
# Variables (defaults in brackets):
#   LR_BIN          lightreasoner binary [.build/release/lightreasoner]
#   DATA            GSM8K-style JSONL [Tests/Fixtures/inputs/gsm8k_train_first20.jsonl]
#   OUT             output directory, resumed if it exists [runs/local-sampling]
#   EXPERT AMATEUR  model directories [models/tiny-expert, models/tiny-amateur]
#   BIND            coordinator endpoint [tcp://127.0.0.1:* = a free port, written to $OUT/endpoint]
#   SHARD_SIZE      questions per lease [16]
#   MAX_QUESTIONS   only the first N questions [all]
#   MAX_NEW_TOKENS ALPHA BETA AMATEUR_INPUT   sampling settings [128, 0.2, 0.4, ids]
#   BATCH_SIZE      questions per sampler batch [8]
#   THREADS         OpenBLAS threads per sampler [cores / N, at least 1]
#   CURVE_DIR       run keys from `lightreasoner keygen --out DIR`: coordinator and samplers use CURVE [off]
#   EXTRA_COORDINATOR_ARGS EXTRA_SAMPLER_ARGS   appended to each command line
#
# Logs: $OUT/logs/coordinator.log and sampler-K.log. Exit status: the coordinator's.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-2}
LR_BIN=${LR_BIN:-.build/release/lightreasoner}
DATA=${DATA:-Tests/Fixtures/inputs/gsm8k_train_first20.jsonl}
OUT=${OUT:-runs/local-sampling}
EXPERT=${EXPERT:-models/tiny-expert}
AMATEUR=${AMATEUR:-models/tiny-amateur}
BIND=${BIND:-tcp://127.0.0.1:*}
SHARD_SIZE=${SHARD_SIZE:-16}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-128}
ALPHA=${ALPHA:-0.2}
BETA=${BETA:-0.4}
AMATEUR_INPUT=${AMATEUR_INPUT:-ids}
BATCH_SIZE=${BATCH_SIZE:-8}
CORES=$(nproc 2>/dev/null || echo 2)
THREADS=${THREADS:-$(( CORES / N > 0 ? CORES / N : 1 ))}

[ -x "$LR_BIN" ] || { echo "local.sh: no $LR_BIN; build it with: swift build -c release" >&2; exit 1; }
mkdir -p "$OUT/logs"
rm -f "$OUT/endpoint"

coordinator_args=(coordinator --data "$DATA" --out "$OUT" --bind "$BIND" --shard-size "$SHARD_SIZE"
                  --expert "$EXPERT" --amateur "$AMATEUR" --max-new-tokens "$MAX_NEW_TOKENS"
                  --alpha "$ALPHA" --beta "$BETA" --amateur-input "$AMATEUR_INPUT")
[ -n "${MAX_QUESTIONS:-}" ] && coordinator_args+=(--max-questions "$MAX_QUESTIONS")
[ -n "${CURVE_DIR:-}" ] && coordinator_args+=(--curve "$CURVE_DIR")
# shellcheck disable=SC2206
coordinator_args+=(${EXTRA_COORDINATOR_ARGS:-})

"$LR_BIN" "${coordinator_args[@]}" 2> >(tee "$OUT/logs/coordinator.log" >&2) &
coordinator=$!
samplers=()
cleanup() {
    for pid in "${samplers[@]}"; do kill "$pid" 2>/dev/null || true; done
    kill "$coordinator" 2>/dev/null || true
}
trap cleanup INT TERM

# The coordinator writes the endpoint it bound (the port chosen for '*') once it listens.
for _ in $(seq 1 600); do
    [ -s "$OUT/endpoint" ] && break
    kill -0 "$coordinator" 2>/dev/null || { wait "$coordinator"; exit $?; }
    sleep 0.1
done
[ -s "$OUT/endpoint" ] || { echo "local.sh: the coordinator did not start listening" >&2; cleanup; exit 1; }
endpoint=$(head -n1 "$OUT/endpoint")
endpoint=${endpoint/0.0.0.0/127.0.0.1}

for k in $(seq 1 "$N"); do
    sampler_args=(sampler --connect "$endpoint" --expert "$EXPERT" --amateur "$AMATEUR"
                  --batch-size "$BATCH_SIZE" --name "$(hostname -s)-$k")
    [ -n "${CURVE_DIR:-}" ] && sampler_args+=(--curve "$CURVE_DIR")
    # shellcheck disable=SC2206
    sampler_args+=(${EXTRA_SAMPLER_ARGS:-})
    OPENBLAS_NUM_THREADS=$THREADS "$LR_BIN" "${sampler_args[@]}" 2> "$OUT/logs/sampler-$k.log" &
    samplers+=($!)
done

status=0
wait "$coordinator" || status=$?
for pid in "${samplers[@]}"; do wait "$pid" 2>/dev/null || true; done
[ "$status" -eq 0 ] && echo "local.sh: done: $OUT/manifest.json" >&2
exit "$status"
