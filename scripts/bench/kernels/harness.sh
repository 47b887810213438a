#!/usr/bin/env bash
# Kernel rates of this tree against an earlier revision's kernels.c, on the decode shapes of the
# Coder-1.5B (1536 → 8960 and 8960 → 1536), 1 thread:  bash scripts/bench/kernels/harness.sh [REV] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
rev=${1:-HEAD~1}
repeats=${2:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git show "$rev:Sources/CKernels/kernels.c" > "$tmp/old_kernels.c"
git show "$rev:Sources/CKernels/isa.h" > "$tmp/isa.h"
git show "$rev:Sources/CKernels/include/ckernels.h" > "$tmp/ckernels.h"
rename=""
for f in lr_skinny_f32 lr_skinny_bf16 lr_skinny_bf16_dot lr_bf16_dot_native lr_isa_level lr_skinny_isa lr_skinny_vectorized lr_skinny_limit_isa; do
  rename="$rename -D$f=old_$f"
done
blas=$(pkg-config --cflags openblas)
clang -O2 -c "$tmp/old_kernels.c" -I"$tmp" $rename -o "$tmp/old.o"
clang -O2 -c Sources/CKernels/kernels.c -ISources/CKernels -ISources/CKernels/include -o "$tmp/new.o"
clang -O2 scripts/bench/kernels/harness.c "$tmp/old.o" "$tmp/new.o" $blas $(pkg-config --libs openblas) -o "$tmp/harness"
echo "old = $rev ($(git rev-parse --short "$rev")), new = working tree; load: $(uptime | sed 's/.*load/load/')"
OPENBLAS_NUM_THREADS=1 "$tmp/harness" 1536 8960 "$repeats"
OPENBLAS_NUM_THREADS=1 "$tmp/harness" 8960 1536 "$repeats"
