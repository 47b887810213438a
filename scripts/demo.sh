#!/usr/bin/env bash
# The README's first command: installs what is missing, builds, and runs the main job on the tiny
# models shipped in models/. Grows with the project (inspect → generate → sample → train → eval).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(bash scripts/setup.sh)
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}
echo "== lightreasoner inspect --model models/tiny-expert"
"$bin" inspect --model models/tiny-expert
echo
echo "== lightreasoner generate --model models/tiny-expert"
"$bin" generate --model models/tiny-expert --prompt "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?" --max-new-tokens 48
