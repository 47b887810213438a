#!/usr/bin/env bash
# Side by side on the same real weights (issue 20, item 6): lightreasoner, PyTorch (transformers, f32 and
# bf16) and llama.cpp (built from source, BF16 GGUF converted from the same folder), one run, one table.
#
#   bash scripts/bench/side-by-side.sh [OUT]          # default OUT: runs/side-by-side
#
# Measures, per tool: greedy decode tok/s at batch 1, 16, 64 (PROMPT-token prompts, DECODE new tokens);
# eval tok/s (GSM8K, EVAL_LIMIT questions, EVAL_BATCH rows, up to EVAL_TOKENS new tokens, stopping at
# the eos); sampling s/question (SAMPLE_BATCH questions, PROMPT + NEW tokens, expert greedy + one amateur
# pass). Writes OUT/table.md (printed at the end) with `uptime` before and after each tool: run it on an
# idle machine for numbers worth comparing.
#
# Environment (defaults in brackets):
#   EXPERT, AMATEUR   HF folders [models/real/qwen2.5-coder-1.5b-instruct, …-0.5b-instruct]
#   THREADS [2]  PROMPT [100]  NEW [128]  DECODE [NEW]  BATCHES [1,16,64]  SAMPLE_BATCH [16]
#   EVAL_LIMIT [16]  EVAL_BATCH [16]  EVAL_TOKENS [512]
#   PYTHON            python with torch, transformers, safetensors, numpy, sentencepiece [python3]
#   LLAMA_DIR         where llama.cpp is built and the GGUFs are kept [~/.cache/lightreasoner/llama.cpp]
#   SKIP              tools to leave out: ours, pytorch, llama (a later run with the others skipped adds
#                     its files to the same OUT; the table shows what OUT holds) [none]
#   LIGHTREASONER_BIN a built binary [built by scripts/setup.sh]
# llama.cpp comes from the llama-cpp-python 0.3.36 sdist (it vendors llama.cpp); building it needs
# cmake (Debian: apt-get install cmake) and a C++ compiler, about 4 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-runs/side-by-side}
EXPERT=${EXPERT:-models/real/qwen2.5-coder-1.5b-instruct}
AMATEUR=${AMATEUR:-models/real/qwen2.5-coder-0.5b-instruct}
THREADS=${THREADS:-2}; PROMPT=${PROMPT:-100}; NEW=${NEW:-128}; DECODE=${DECODE:-$NEW}; BATCHES=${BATCHES:-1,16,64}
SAMPLE_BATCH=${SAMPLE_BATCH:-16}; EVAL_LIMIT=${EVAL_LIMIT:-16}; EVAL_BATCH=${EVAL_BATCH:-16}; EVAL_TOKENS=${EVAL_TOKENS:-512}
PYTHON=${PYTHON:-python3}; LLAMA_DIR=${LLAMA_DIR:-$HOME/.cache/lightreasoner/llama.cpp}; SKIP=${SKIP:-}
for dir in "$EXPERT" "$AMATEUR"; do
  [ -f "$dir/config.json" ] || { echo "side-by-side: $dir is not a model folder; hint: bash scripts/real-models.sh, or set EXPERT/AMATEUR" >&2; exit 66; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "side-by-side: $*" >&2; }
skip() { case " $SKIP " in *" $1 "*) return 0;; esac; return 1; }
load() { echo "$1: $(uptime | sed 's/.*load average: /load /')" >> "$out/load.txt"; }
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(date -u +%FT%TZ)" > "$out/machine.txt"
export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS

# lightreasoner: bench on the folders as stored (BF16), then eval; with --compute bf16 too where the
# CPU has the instructions.
computes=()
if ! skip ours; then
  bin=${LIGHTREASONER_BIN:-$(bash scripts/setup.sh)}
  computes=(f32)
  # Without AVX512-BF16, --compute bf16 runs the f32 kernels: the same column again, so left out.
  if grep -qw avx512_bf16 /proc/cpuinfo; then computes+=(bf16); else log "lightreasoner: no avx512_bf16 here, --compute bf16 would repeat the f32 column"; fi
fi
for compute in "${computes[@]}"; do
  extra=(); [ "$compute" = bf16 ] && extra=(--compute bf16)
  load "ours $compute start"
  log "lightreasoner ($compute): bench decode + sample"
  "$bin" bench --model "$EXPERT" --amateur "$AMATEUR" --tests decode,sample --batch-sizes "$BATCHES" \
    --prompt-tokens "$PROMPT" --new-tokens "$NEW" --decode-tokens "$DECODE" --sample-batch "$SAMPLE_BATCH" \
    --repeats 1 --warmup 0 --threads "$THREADS" --json "$out/ours-$compute.json" "${extra[@]}" >&2
  log "lightreasoner ($compute): eval"
  rm -rf "$out/ours-eval-$compute"
  "$bin" eval --model "$EXPERT" --data gsm8k --data-dir data --limit "$EVAL_LIMIT" --batch-size "$EVAL_BATCH" \
    --max-new-tokens "$EVAL_TOKENS" --weights stored --threads "$THREADS" --out "$out/ours-eval-$compute" "${extra[@]}" >&2
  load "ours $compute end"
done

# PyTorch: the repo's driver on the same folders, f32 and bf16.
if ! skip pytorch; then
  for dtype in f32 bf16; do
    load "pytorch $dtype start"
    log "PyTorch ($dtype)"
    "$PYTHON" scripts/bench/pytorch_baseline.py --model "$EXPERT" --amateur-model "$AMATEUR" --dtype "$dtype" \
      --threads "$THREADS" --tests decode,onepass,eval --decode-batch "$BATCHES" --decode-tokens "$DECODE" \
      --prompt-tokens "$PROMPT" --new-tokens "$NEW" --sample-batch "$SAMPLE_BATCH" --eval-limit "$EVAL_LIMIT" \
      --eval-batch "$EVAL_BATCH" --eval-tokens "$EVAL_TOKENS" --repeats 1 --json "$out/pytorch-$dtype.json" >&2
    load "pytorch $dtype end"
  done
fi

# llama.cpp: built once from the sdist, the two folders converted to BF16 GGUF once.
if ! skip llama; then
  src="$LLAMA_DIR/llama_cpp_python-0.3.36/vendor/llama.cpp"
  if [ ! -x "$src/build/bin/llama-batched-bench" ]; then
    mkdir -p "$LLAMA_DIR"
    [ -d "$src" ] || {
      log "llama.cpp: downloading the llama-cpp-python 0.3.36 sdist"
      "$PYTHON" -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d "$LLAMA_DIR" >&2
      tar xzf "$LLAMA_DIR/llama_cpp_python-0.3.36.tar.gz" -C "$LLAMA_DIR"
    }
    log "llama.cpp: building llama-bench and llama-batched-bench"
    cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DGGML_OPENMP=ON \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_OPENSSL=OFF >&2
    nice -n 10 cmake --build "$src/build" --target llama-bench llama-batched-bench -j"$THREADS" >&2
  fi
  for dir in "$EXPERT" "$AMATEUR"; do
    gguf="$LLAMA_DIR/$(basename "$dir")-bf16.gguf"
    [ -s "$gguf" ] || { log "llama.cpp: converting $dir"; "$PYTHON" "$src/convert_hf_to_gguf.py" "$dir" --outtype bf16 --outfile "$gguf" >&2; }
  done
  expert_gguf="$LLAMA_DIR/$(basename "$EXPERT")-bf16.gguf"; amateur_gguf="$LLAMA_DIR/$(basename "$AMATEUR")-bf16.gguf"
  largest=$(echo "$BATCHES,$SAMPLE_BATCH,$EVAL_BATCH" | tr ',' '\n' | sort -n | tail -1)
  ctx=$(( largest * (PROMPT + NEW + DECODE + EVAL_TOKENS + 200) ))
  bb() { "$src/build/bin/llama-batched-bench" -c "$ctx" -b 2048 -ub 512 -t "$THREADS" --output-format jsonl "$@" 2>/dev/null | grep '^{'; }
  load "llama start"
  log "llama.cpp: decode"
  bb -m "$expert_gguf" -npp "$PROMPT" -ntg "$DECODE" -npl "$BATCHES" > "$out/llama-decode.jsonl"
  log "llama.cpp: sampling (expert generation, amateur prompt pass)"
  bb -m "$expert_gguf" -npp "$PROMPT" -ntg "$NEW" -npl "$SAMPLE_BATCH" > "$out/llama-sample-expert.jsonl"
  bb -m "$amateur_gguf" -npp "$(( PROMPT + NEW ))" -ntg 1 -npl "$SAMPLE_BATCH" > "$out/llama-sample-amateur.jsonl"
  # Eval stand-in: GSM8K prompts in this format are ~150 tokens; every row runs to the limit (no eos).
  log "llama.cpp: eval stand-in"
  bb -m "$expert_gguf" -npp 150 -ntg "$EVAL_TOKENS" -npl "$EVAL_BATCH" > "$out/llama-eval.jsonl"
  load "llama end"
fi

python3 - "$out" "$BATCHES" "$PROMPT" "$NEW" "$DECODE" "$SAMPLE_BATCH" "$EVAL_LIMIT" "$EVAL_BATCH" "$EVAL_TOKENS" "$THREADS" <<'PY' | tee "$out/table.md"
import json, os, sys
out, batches, prompt, new, decode, sample_batch, eval_limit, eval_batch, eval_tokens, threads = sys.argv[1:]
batches = [int(b) for b in batches.split(",")]
def read(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None
def lines(name):
    path = os.path.join(out, name)
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
def result(report, test, shape=None):
    for r in (report or {}).get("results", []):
        if r["test"] == test and (shape is None or r["shape"] == shape):
            return r["mean"]
columns = []   # (title, {row: value})
for compute in ("f32", "bf16"):
    report = read(f"ours-{compute}.json")
    if not report: continue
    col = {f"decode B={b}": result(report, "greedy decode", f"B={b}") for b in batches}
    col["sampling"] = result(report, "sample one-pass")
    summary = read(f"ours-eval-{compute}/summary.json")
    col["eval"] = summary["datasets"][0]["tokens_per_second"] if summary else None
    columns.append((f"lightreasoner, BF16 weights, {compute} compute", col))
for dtype in ("f32", "bf16"):
    report = read(f"pytorch-{dtype}.json")
    if not report: continue
    col = {f"decode B={b}": result(report, "greedy decode", f"B={b}") for b in batches}
    col["sampling"] = result(report, "sample one-pass")
    col["eval"] = result(report, "eval generate")
    columns.append((f"PyTorch {dtype}", col))
decode_rows = lines("llama-decode.jsonl")
if decode_rows:
    col = {f"decode B={r['pl']}": r["speed_tg"] for r in decode_rows}
    expert, amateur = lines("llama-sample-expert.jsonl"), lines("llama-sample-amateur.jsonl")
    if expert and amateur:
        col["sampling"] = (expert[0]["t"] + amateur[0]["t_pp"]) / expert[0]["pl"]
    evals = lines("llama-eval.jsonl")
    col["eval"] = evals[0]["speed_tg"] if evals else None
    columns.append(("llama.cpp BF16 GGUF", col))
rows = [(f"decode B={b}", f"greedy decode, {b} sequence(s), tok/s (prompt {prompt}, {decode} new)") for b in batches]
rows += [("eval", f"eval, tok/s (GSM8K, {eval_limit} questions, {eval_batch} rows, ≤ {eval_tokens} new) *"),
         ("sampling", f"sampling, s/question ({sample_batch} questions, prompt {prompt}, {new} new) †")]
print(open(os.path.join(out, "machine.txt")).read().strip() + f", {threads} threads")
print()
print("| measure | " + " | ".join(t for t, _ in columns) + " |")
print("|---|" + "---:|" * len(columns))
for key, title in rows:
    cells = []
    for _, col in columns:
        v = col.get(key)
        cells.append("—" if v is None else (f"{v:.2f}" if key == "sampling" or v < 10 else f"{v:.1f}"))
    print(f"| {title} | " + " | ".join(cells) + " |")
print()
print("\\* lightreasoner `eval` refills a finished row at once (continuous batching); PyTorch `generate` runs "
      "static batches until the longest row stops; llama.cpp is `llama-batched-bench` with 150-token prompts "
      "and every row generating the limit (no eos), a stand-in for eval.")
print("† lightreasoner and PyTorch: expert batched greedy, one amateur pass over prompt + generated ids with "
      "logits at every generated position, the contrastive rule (random prompt ids, no eos). llama.cpp: "
      "expert generation time plus the amateur's prompt pass over prompt + generated tokens (logits at the "
      "last position only, no KL), so a lower bound.")
print()
print("Load (`uptime`) around each tool:")
print()
for line in open(os.path.join(out, "load.txt")):
    print(f"- {line.strip()}")
PY
