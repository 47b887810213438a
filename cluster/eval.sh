#!/usr/bin/env bash
# Distributed evaluation on one host: `eval --bind` (the coordinator, loads no model) and N evaluator
# processes (ZeroMQ over loopback). The output folder is the one single-node `eval` writes.
#
#   cluster/eval.sh [N]                       coordinator + N evaluators (default 2)
#   ENDPOINT_FILE=F cluster/eval.sh [N]       only N evaluators, for a coordinator that writes F — e.g. a
#                                             `run` with eval.bind set: runs/<name>/eval-base/coordinator/endpoint
#                                             (then eval-tuned/…); the evaluators exit when that run is done
#
# Variables (defaults in brackets):
#   LR_BIN          lightreasoner binary [.build/release/lightreasoner]
#   MODEL           model directory [models/tiny-expert]
#   DATA            benchmark names or files, comma-separated [gsm8k]
#   DATA_DIR        the toolkit's data layout [data]
#   OUT             output folder, resumed if it exists (--resume) [runs/local-eval]
#   LIMIT           only the first N items of each dataset [all]
#   MAX_NEW_TOKENS PROMPT_TYPE   generation settings [eval's defaults]
#   BIND            coordinator endpoint [tcp://127.0.0.1:* = a free port, written to $OUT/coordinator/endpoint]
#   SHARD_SIZE      items per lease [16]
#   BATCH_SIZE      rows in flight per evaluator [8]
#   THREADS         OpenBLAS threads per evaluator [cores / N, at least 1]
#   CURVE_DIR       run keys from `lightreasoner keygen --out DIR`: coordinator and evaluators use CURVE [off]
#   EXTRA_COORDINATOR_ARGS EXTRA_EVALUATOR_ARGS   appended to each command line
#
# Logs: $OUT/logs/ (coordinator.log, evaluator-K.log). Exit status: the coordinator's (evaluators-only: 0).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-2}
LR_BIN=${LR_BIN:-.build/release/lightreasoner}
MODEL=${MODEL:-models/tiny-expert}
DATA=${DATA:-gsm8k}
DATA_DIR=${DATA_DIR:-data}
OUT=${OUT:-runs/local-eval}
BIND=${BIND:-tcp://127.0.0.1:*}
SHARD_SIZE=${SHARD_SIZE:-16}
BATCH_SIZE=${BATCH_SIZE:-8}
CORES=$(nproc 2>/dev/null || echo 2)
THREADS=${THREADS:-$(( CORES / N > 0 ? CORES / N : 1 ))}

[ -x "$LR_BIN" ] || { echo "eval.sh: no $LR_BIN; build it with: swift build -c release" >&2; exit 1; }
coordinator=""
if [ -n "${ENDPOINT_FILE:-}" ]; then
    logs=$(dirname "$ENDPOINT_FILE")/logs
else
    ENDPOINT_FILE=$OUT/coordinator/endpoint
    logs=$OUT/logs
    mkdir -p "$logs"
    rm -f "$ENDPOINT_FILE"
    eval_args=(eval --model "$MODEL" --data "$DATA" --data-dir "$DATA_DIR" --out "$OUT" --bind "$BIND" --shard-size "$SHARD_SIZE" --resume)
    [ -n "${LIMIT:-}" ] && eval_args+=(--limit "$LIMIT")
    [ -n "${MAX_NEW_TOKENS:-}" ] && eval_args+=(--max-new-tokens "$MAX_NEW_TOKENS")
    [ -n "${PROMPT_TYPE:-}" ] && eval_args+=(--prompt-type "$PROMPT_TYPE")
    [ -n "${CURVE_DIR:-}" ] && eval_args+=(--curve "$CURVE_DIR")
    # shellcheck disable=SC2206
    eval_args+=(${EXTRA_COORDINATOR_ARGS:-})
    "$LR_BIN" "${eval_args[@]}" 2> >(tee "$logs/coordinator.log" >&2) &
    coordinator=$!
fi
mkdir -p "$logs"
evaluators=()
cleanup() {
    for pid in "${evaluators[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -n "$coordinator" ] && kill "$coordinator" 2>/dev/null || true
}
trap cleanup INT TERM

# The coordinator writes the endpoint it bound (the port chosen for '*') once it listens.
for _ in $(seq 1 6000); do
    [ -s "$ENDPOINT_FILE" ] && break
    if [ -n "$coordinator" ] && ! kill -0 "$coordinator" 2>/dev/null; then wait "$coordinator"; exit $?; fi
    sleep 0.1
done
[ -s "$ENDPOINT_FILE" ] || { echo "eval.sh: no endpoint in $ENDPOINT_FILE" >&2; cleanup; exit 1; }
endpoint=$(head -n1 "$ENDPOINT_FILE")
endpoint=${endpoint/0.0.0.0/127.0.0.1}

for k in $(seq 1 "$N"); do
    evaluator_args=(evaluator --connect "$endpoint" --model "$MODEL" --batch-size "$BATCH_SIZE" --name "$(hostname -s)-$k")
    [ -n "${CURVE_DIR:-}" ] && evaluator_args+=(--curve "$CURVE_DIR")
    # shellcheck disable=SC2206
    evaluator_args+=(${EXTRA_EVALUATOR_ARGS:-})
    OPENBLAS_NUM_THREADS=$THREADS "$LR_BIN" "${evaluator_args[@]}" 2> "$logs/evaluator-$k.log" &
    evaluators+=($!)
done

status=0
[ -n "$coordinator" ] && { wait "$coordinator" || status=$?; }
for pid in "${evaluators[@]}"; do wait "$pid" 2>/dev/null || true; done
[ "$status" -eq 0 ] && [ -n "$coordinator" ] && echo "eval.sh: done: $OUT/summary.json" >&2
exit "$status"
