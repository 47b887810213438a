#!/usr/bin/env bash
# The whole distributed pipeline on one machine, over loopback, on the tiny models: a ZeroMQ coordinator
# and N samplers on 127.0.0.1 (cluster/local.sh) → data-parallel LoRA training under
# `mpirun -np NP --oversubscribe` (cluster/train-mpirun.sh) → merge → evaluation before and after.
# A rehearsal of a cluster run (and the test of the scripts); small sizes, well under a minute on 2 cores.
#
#   cluster/loopback.sh                     # outputs in runs/loopback (a rerun skips finished stages)
#   RUN=/tmp/lb STEPS=20 cluster/loopback.sh
#
# Variables (defaults in brackets):
#   LR_BIN          lightreasoner binary [.build/release/lightreasoner]
#   RUN             run directory: samples/ train/ merged/ eval-base/ eval-tuned/ logs/ [runs/loopback]
#   SAMPLERS        sampler processes [2]
#   NP              MPI ranks for training [2]
#   BIND            coordinator endpoint [tcp://127.0.0.1:* = an ephemeral port, written to samples/endpoint]
#   EXPERT AMATEUR  model directories [models/tiny-expert, models/tiny-amateur]
#   DATA            GSM8K-style JSONL [Tests/Fixtures/inputs/gsm8k_train_first20.jsonl]
#   MAX_QUESTIONS   questions sampled [8]
#   SHARD_SIZE      questions per lease [2]
#   MAX_NEW_TOKENS  expert tokens per question [64]
#   STEPS LR        training steps and learning rate [5, 1e-3]
#   BATCH_SIZE ACCUMULATION   per rank; global batch NP × BATCH_SIZE × ACCUMULATION [4, 1]
#   EVAL_DATA EVAL_DIR EVAL_LIMIT EVAL_TOKENS   evaluation [gsm8k, data, 5, 64]
set -euo pipefail
cd "$(dirname "$0")/.."

LR_BIN=${LR_BIN:-.build/release/lightreasoner}
RUN=${RUN:-runs/loopback}
SAMPLERS=${SAMPLERS:-2}
NP=${NP:-2}
EXPERT=${EXPERT:-models/tiny-expert}
AMATEUR=${AMATEUR:-models/tiny-amateur}
DATA=${DATA:-Tests/Fixtures/inputs/gsm8k_train_first20.jsonl}
MAX_QUESTIONS=${MAX_QUESTIONS:-8}
SHARD_SIZE=${SHARD_SIZE:-2}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-64}
STEPS=${STEPS:-5}
LR=${LR:-1e-3}
BATCH_SIZE=${BATCH_SIZE:-4}
ACCUMULATION=${ACCUMULATION:-1}
EVAL_DATA=${EVAL_DATA:-gsm8k}
EVAL_DIR=${EVAL_DIR:-data}
EVAL_LIMIT=${EVAL_LIMIT:-5}
EVAL_TOKENS=${EVAL_TOKENS:-64}
BIND=${BIND:-tcp://127.0.0.1:*}

[ -x "$LR_BIN" ] || { echo "loopback.sh: no $LR_BIN; build it with: swift build -c release" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "loopback.sh: no mpirun (apt install openmpi-bin)" >&2; exit 1; }
if [[ $(id -u) == 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mkdir -p "$RUN/logs"
start=$SECONDS
stage() { echo "== loopback: $* ($(( SECONDS - start ))s)" >&2; }

if [[ -s "$RUN/samples/manifest.json" ]]; then
    stage "sampling: skipped ($RUN/samples/manifest.json exists)"
else
    stage "sampling: coordinator + $SAMPLERS samplers on ${BIND}"
    LR_BIN=$LR_BIN OUT=$RUN/samples DATA=$DATA EXPERT=$EXPERT AMATEUR=$AMATEUR BIND=$BIND \
        MAX_QUESTIONS=$MAX_QUESTIONS SHARD_SIZE=$SHARD_SIZE MAX_NEW_TOKENS=$MAX_NEW_TOKENS \
        cluster/local.sh "$SAMPLERS" 2> "$RUN/logs/sampling.log" || { tail -n 30 "$RUN/logs/sampling.log" >&2; exit 1; }
fi
shopt -s nullglob
shards=("$RUN"/samples/samples-*.jsonl)
shopt -u nullglob
(( ${#shards[@]} > 0 )) || { echo "loopback.sh: no shard files in $RUN/samples" >&2; exit 1; }

if [[ -s "$RUN/train/adapter_model.safetensors" ]]; then
    stage "training: skipped ($RUN/train/adapter_model.safetensors exists)"
else
    resume=()
    newest=$(find "$RUN/train" -maxdepth 1 -name 'checkpoint-*' -type d 2>/dev/null | sort -t- -k2 -n | tail -n1 || true)
    [[ -n "$newest" ]] && resume=(--resume "$newest")
    stage "training: mpirun -np $NP --oversubscribe, ${#shards[@]} shard file(s)"
    LR_BIN=$LR_BIN NP=$NP MODEL=$EXPERT SAMPLES="${shards[*]}" OUT=$RUN/train BATCH_SIZE=$BATCH_SIZE \
        ACCUMULATION=$ACCUMULATION THREADS=${THREADS:-1} \
        cluster/train-mpirun.sh --steps "$STEPS" --lr "$LR" "${resume[@]}" > "$RUN/logs/train.log" 2>&1 \
        || { tail -n 30 "$RUN/logs/train.log" >&2; exit 1; }
fi

if [[ -s "$RUN/merged/config.json" ]]; then
    stage "merge: skipped"
else
    stage "merge"
    rm -rf "$RUN/merged.partial"
    "$LR_BIN" merge --model "$EXPERT" --adapter "$RUN/train" --out "$RUN/merged.partial" > "$RUN/logs/merge.log" 2>&1 \
        || { cat "$RUN/logs/merge.log" >&2; exit 1; }
    mv "$RUN/merged.partial" "$RUN/merged"
fi

evaluate() { # NAME MODEL [--compare DIR]
    local name=$1 model=$2; shift 2
    if [[ -s "$RUN/$name/summary.json" ]]; then stage "eval $name: skipped"; return; fi
    stage "eval $name"
    "$LR_BIN" eval --model "$model" --data "$EVAL_DATA" --data-dir "$EVAL_DIR" --limit "$EVAL_LIMIT" \
        --max-new-tokens "$EVAL_TOKENS" --out "$RUN/$name" --resume "$@" > "$RUN/logs/$name.log" 2>&1 \
        || { cat "$RUN/logs/$name.log" >&2; exit 1; }
}
evaluate eval-base "$EXPERT"
evaluate eval-tuned "$RUN/merged" --compare "$RUN/eval-base"
tail -n 4 "$RUN/logs/eval-tuned.log"
stage "done: $RUN"
