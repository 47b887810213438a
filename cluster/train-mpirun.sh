#!/usr/bin/env bash
# Data-parallel LoRA training with Open MPI: N ranks, each training on its block of every optimizer
# step's samples; the LoRA gradients are summed once per step. N ranks with --accumulation A train
# exactly as one process with --accumulation N·A (to float summation order).
#
#   cluster/train-mpirun.sh                                   # 2 ranks on this machine, tiny model
#   NP=4 THREADS=8 SAMPLES=runs/gsm8k OUT=runs/train-7b MODEL=models/Qwen2.5-Math-7B cluster/train-mpirun.sh
#   HOSTFILE=hosts NP=8 PER_NODE=2 THREADS=16 ... cluster/train-mpirun.sh --steps 1000   # several machines
#
# Extra arguments go to `lightreasoner train` (e.g. --steps, --lr, --resume runs/x/checkpoint-200).
#
# Variables (defaults in brackets):
#   LR_BIN     lightreasoner binary, the same build at the same path on every host [.build/release/lightreasoner]
#   NP         ranks in all [2]
#   HOSTFILE   Open MPI hostfile ("node1 slots=2" per line) [none: this machine only]
#   PER_NODE   ranks per host (--map-by ppr:PER_NODE:node) [with a hostfile: the slots; else NP]
#   THREADS    OpenBLAS threads per rank; keep PER_NODE × THREADS ≤ cores per host [cores / ranks on this host]
#   BIND       process binding: none (default; safe when oversubscribed), core, socket, numa
#   MODEL      expert model directory, same path on every host [models/tiny-expert]
#   SAMPLES    sample files, `sample --out` folders or coordinator output folders (read through their
#              manifest.json), space separated [Tests/Fixtures/reference/training/samples.jsonl]
#   OUT        output directory on a file system every rank can write (each rank writes
#              checkpoint-*/rank-<r>.json; rank 0 everything else) [runs/train-mpi]
#   BATCH_SIZE ACCUMULATION   per rank; the global batch is NP × BATCH_SIZE × ACCUMULATION [2, 1]
#   MPIRUN_ARGS  appended to mpirun's options (e.g. "--mca btl_tcp_if_include eth0")
set -euo pipefail

LR_BIN=${LR_BIN:-.build/release/lightreasoner}
NP=${NP:-2}
MODEL=${MODEL:-models/tiny-expert}
SAMPLES=${SAMPLES:-Tests/Fixtures/reference/training/samples.jsonl}
OUT=${OUT:-runs/train-mpi}
BATCH_SIZE=${BATCH_SIZE:-2}
ACCUMULATION=${ACCUMULATION:-1}
BIND=${BIND:-none}
CORES=$(nproc)

args=(-np "$NP" --bind-to "$BIND")
if [[ -n "${HOSTFILE:-}" ]]; then
    args+=(--hostfile "$HOSTFILE")
    if [[ -n "${PER_NODE:-}" ]]; then args+=(--map-by "ppr:$PER_NODE:node"); fi
    LOCAL=${PER_NODE:-$NP}
else
    LOCAL=$NP
    # More ranks than cores is allowed on one machine (slow, but useful for tests).
    args+=(--oversubscribe)
fi
THREADS=${THREADS:-$(( CORES / LOCAL > 0 ? CORES / LOCAL : 1 ))}
if (( LOCAL * THREADS > CORES )); then
    echo "warning: $LOCAL ranks × $THREADS threads > $CORES cores on this host" >&2
fi
# Open MPI refuses root unless both are set (containers often run as root).
if [[ $(id -u) == 0 ]]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OPENBLAS_NUM_THREADS=$THREADS
# -x exports these to every rank (remote hosts included).
for name in OPENBLAS_NUM_THREADS LIGHTREASONER_TRAIN_CRASH_AFTER_STEP LIGHTREASONER_TRAIN_CRASH_RANK; do
    if [[ -n "${!name:-}" ]]; then args+=(-x "$name"); fi
done

# shellcheck disable=SC2086
exec mpirun "${args[@]}" ${MPIRUN_ARGS:-} "$LR_BIN" train --model "$MODEL" --samples $SAMPLES --out "$OUT" \
    --batch-size "$BATCH_SIZE" --accumulation "$ACCUMULATION" --threads "$THREADS" "$@"
