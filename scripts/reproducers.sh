#!/usr/bin/env bash
# Issue 18's reproducers against the release binary: one Markdown row per case with the exit status,
# the wall time and the peak resident memory (GNU time), and the first line of stderr. Every case must end
# below 128 (a typed refusal or a correct result); the script exits 1 if one does not.
#   bash scripts/reproducers.sh [BINARY]      (default: the release build from scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-$(bash scripts/setup.sh)}
M=models
W=$(mktemp -d /tmp/lr-reproducers.XXXXXX)
trap 'rm -rf "$W"' EXIT
export OPENBLAS_NUM_THREADS=1
failed=0

echo "| reproducer | exit | seconds | peak MB | error (or first stderr line) |"
echo "|---|---:|---:|---:|---|"
# case NAME EXPECTED-STATUS COMMAND...: runs it under GNU time, prints its row.
case_() {
  local name=$1 expected=$2; shift 2
  local status=0
  /usr/bin/time -f "%e %M" -o "$W/time" "$@" >"$W/out" 2>"$W/err" || status=$?
  # GNU time writes "Command exited with non-zero status N" before its line.
  read -r seconds kb < <(tail -1 "$W/time") || true
  local line
  line=$( (grep -m1 -i '^error' "$W/err" || head -1 "$W/err") | cut -c1-110 | sed 's/|/\\|/g; s#'"$W"'#$W#g')
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$status" "$seconds" "$((kb / 1024))" "$line"
  if [ "$status" -ge 128 ] || [ "$status" != "$expected" ]; then
    echo "reproducers: $name exited $status, expected $expected" >&2
    failed=1
  fi
}

copy_model() { cp -r "$M/$1" "$W/$2"; }
python_edit() { python3 -c "$1" "${@:2}"; }

# 1. Empty prompt; empty chat template in generate and sample.
case_ 'generate --raw --prompt ""' 64 "$B" generate --model $M/tiny-expert --raw --prompt "" --max-new-tokens 4
copy_model tiny-expert empty-template
python_edit 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["chat_template"]=""; json.dump(c,open(p,"w"))' "$W/empty-template/tokenizer_config.json"
case_ 'generate, empty chat_template' 65 "$B" generate --model "$W/empty-template" --prompt "2+3?" --max-new-tokens 4
case_ 'sample, empty chat_template' 65 "$B" sample --expert "$W/empty-template" --amateur $M/tiny-amateur --data data/gsm8k/test.jsonl \
  --out "$W/s-empty" --max-questions 1 --max-new-tokens 4

# 2-3. Hostile chat templates (rendered by generate; inspect does not render). SOURCE is a Python expression.
template_case() {
  local name=$1 expected=$2 source=$3 command=${4:-generate}
  copy_model tiny-expert "t$((++templates))"
  python_edit 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["chat_template"]=eval(sys.argv[2]); json.dump(c,open(p,"w"))' \
    "$W/t$templates/tokenizer_config.json" "$source"
  if [ "$command" = inspect ]; then
    case_ "$name" "$expected" "$B" inspect --model "$W/t$templates"
  else
    case_ "$name" "$expected" "$B" generate --model "$W/t$templates" --prompt "2+3?" --max-new-tokens 2
  fi
}
templates=0
n=12000
template_case "template: 12,000 nested (" 65 "'{{ ' + '('*$n + '1' + ')'*$n + ' }}'"
template_case "template: 12,000 nested if" 65 "'{% if true %}'*$n + '{% endif %}'*$n"
template_case "template: 12,000 nested for" 65 "'{% for x in [1] %}'*$n + '{% endfor %}'*$n"
template_case "template: 12,000 nested [" 65 "'{{ ' + '['*$n + '1' + ']'*$n + ' }}'"
template_case "template: 12,000 not" 65 "'{{ ' + 'not '*$n + '1 }}'"
template_case "template: 6,000-term ~ chain" 65 "'{{ \\'a\\'' + ' ~ \\'a\\''*6000 + ' }}'"
template_case "template: 'x' * 100000000" 65 "'{{ \\'x\\' * 100000000 }}'"
template_case "inspect, 12,000 nested ( template" 0 "'{{ ' + '('*$n + '1' + ')'*$n + ' }}'" inspect

# 4. YAML: deep nesting, alias bombs.
python_edit 'import sys; open(sys.argv[1],"w").write("name: x\nmodels: " + "["*5000 + "]"*5000 + "\n")' "$W/deep.yaml"
case_ 'YAML nested 5,000 deep' 65 "$B" run "$W/deep.yaml" --dry-run
for levels in 7 9; do
  python_edit 'import sys
n=int(sys.argv[2]); lines=["a0: &a0 [x,x,x,x,x,x,x,x,x,x]"]
for i in range(1,n+1): lines.append("a%d: &a%d [%s]" % (i,i,",".join(["*a%d" % (i-1)]*10)))
open(sys.argv[1],"w").write("\n".join(lines)+"\nname: bomb\n")' "$W/bomb$levels.yaml" "$levels"
  case_ "YAML alias bomb, $levels levels" 65 "$B" run "$W/bomb$levels.yaml" --dry-run
done

# 5. Absurd --max-new-tokens.
case_ 'sample --max-new-tokens 1000000000000' 64 "$B" sample --expert $M/tiny-expert --amateur $M/tiny-amateur \
  --data data/gsm8k/test.jsonl --out "$W/s-huge" --max-questions 1 --max-new-tokens 1000000000000
case_ 'generate --max-new-tokens 1e15' 64 "$B" generate --model $M/tiny-expert --prompt "2+3?" --max-new-tokens 1e15
case_ 'generate --max-new-tokens 1000000000000' 64 "$B" generate --model $M/tiny-expert --prompt "2+3?" --max-new-tokens 1000000000000

# 6. config.json with absurd layer counts.
for layers in 4294967296 1000000; do
  copy_model tiny-expert "layers-$layers"
  python_edit 'import json,sys; p=sys.argv[1]; c=json.load(open(p)); c["num_hidden_layers"]=int(sys.argv[2]); json.dump(c,open(p,"w"))' \
    "$W/layers-$layers/config.json" "$layers"
  case_ "num_hidden_layers $layers" 65 "$B" inspect --model "$W/layers-$layers"
done

# 7. A FIFO named model.safetensors.
copy_model tiny-expert fifo
rm "$W/fifo/model.safetensors" && mkfifo "$W/fifo/model.safetensors"
case_ 'FIFO as model.safetensors' 65 "$B" generate --model "$W/fifo" --prompt "2+3?" --max-new-tokens 2

# 8. Infinite and NaN numbers.
case_ 'coordinator --lease-seconds inf' 64 "$B" coordinator --data data/gsm8k/test.jsonl --out "$W/c1" --bind tcp://127.0.0.1:5871 --lease-seconds inf
case_ 'coordinator --node-timeout inf' 64 "$B" coordinator --data data/gsm8k/test.jsonl --out "$W/c2" --bind tcp://127.0.0.1:5872 --node-timeout inf
samples=Tests/Fixtures/reference/training/samples.jsonl
for flag in "--lr nan" "--lr inf" "--max-grad-norm inf" "--max-grad-norm nan"; do
  # shellcheck disable=SC2086
  case_ "train $flag" 64 "$B" train --model $M/tiny-expert --samples $samples --out "$W/t" --steps 1 $flag
done
for flag in "--beta nan" "--alpha inf"; do
  # shellcheck disable=SC2086
  case_ "sample $flag" 64 "$B" sample --expert $M/tiny-expert --amateur $M/tiny-amateur --data data/gsm8k/test.jsonl --out "$W/s-nan" \
    --max-questions 1 --max-new-tokens 4 $flag
done

# 9. NaN weights.
copy_model tiny-expert nan-expert
python_edit 'import json,struct,sys
p=sys.argv[1]; b=bytearray(open(p,"rb").read()); n=struct.unpack("<Q",b[:8])[0]; h=json.loads(b[8:8+n])
s,e=h["model.norm.weight"]["data_offsets"]; b[8+n+s:8+n+e]=struct.pack("<f",float("nan"))*((e-s)//4); open(p,"wb").write(b)' \
  "$W/nan-expert/model.safetensors"
case_ 'generate, NaN weights' 65 "$B" generate --model "$W/nan-expert" --prompt "2+3?" --max-new-tokens 4
case_ 'sample, NaN weights' 65 "$B" sample --expert "$W/nan-expert" --amateur $M/tiny-amateur --data data/gsm8k/test.jsonl \
  --out "$W/s-nanw" --max-questions 2 --max-new-tokens 4

# 10. merge into the base model folder (or a folder inside it).
copy_model tiny-expert base
adapter=Tests/Fixtures/reference/training/initial_adapter
case_ 'merge --out = --model' 73 "$B" merge --model "$W/base" --adapter $adapter --out "$W/base"
case_ 'merge --out inside --model' 73 "$B" merge --model "$W/base" --adapter $adapter --out "$W/base/merged"

# Ordinary bad input.
printf '{"question": "a", "answer": "#### 1"}\n{"question": "\xff\xfe"}\n' >"$W/bad-utf8.jsonl"
case_ 'sample, non-UTF-8 question file' 65 "$B" sample --expert $M/tiny-expert --amateur $M/tiny-amateur --data "$W/bad-utf8.jsonl" \
  --out "$W/s-utf8" --max-new-tokens 4
printf '{"prompt": "a"}\n{"prompt": "\xff"}\n' >"$W/bad-prompts.jsonl"
case_ 'generate, non-UTF-8 prompts file' 65 "$B" generate --model $M/tiny-expert --prompts-file "$W/bad-prompts.jsonl" --max-new-tokens 2
head -2 data/gsm8k/test.jsonl | sed 's/$/\r/' >"$W/crlf.jsonl"
case_ 'sample, CRLF question file' 0 "$B" sample --expert $M/tiny-expert --amateur $M/tiny-amateur --data "$W/crlf.jsonl" \
  --out "$W/s-crlf" --max-new-tokens 4
case_ 'sample --data /dev/null' 65 "$B" sample --expert $M/tiny-expert --amateur $M/tiny-amateur --data /dev/null --out "$W/s-null"
mkdir -p "$W/garbage" && cp $samples "$W/garbage/samples.jsonl" && printf '\0garbage' >"$W/garbage/settings.json"
case_ 'train, garbage settings.json' 65 "$B" train --model $M/tiny-expert --samples "$W/garbage" --out "$W/t2" --steps 1
case_ 'train --targets ""' 64 "$B" train --model $M/tiny-expert --samples $samples --out "$W/t3" --steps 1 --targets ""
python_edit 'import json,sys
lines=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; lines[0]["weights"]=[w*0.5 for w in lines[0]["weights"]]
open(sys.argv[2],"w").write("".join(json.dumps(l)+"\n" for l in lines))' $samples "$W/half-weights.jsonl"
case_ 'train, label weights summing to 0.5' 65 "$B" train --model $M/tiny-expert --samples "$W/half-weights.jsonl" --out "$W/t4" --steps 1

exit $failed
