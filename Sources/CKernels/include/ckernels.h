#ifndef LR_CKERNELS_H
#define LR_CKERNELS_H
#include <stdint.h>

/// Matmul for decoding (1 to a few hundred rows): y[i, n] (=|+=) sum_j x[i, j] * W[n, j] for rows
/// i < m and weight rows n in [n_begin, n_end). W is (N, K) row-major f32, or BF16 bits widened
/// once per 4-row tile and K block (registers, or a per-thread L1 buffer reused by every row), so W
/// is read once per call in its stored size and never copied whole. x: (m, K) with row stride ldx;
/// y: row stride ldy. Threads split [n_begin, n_end) between calls.
void lr_skinny_f32(int m, int n_begin, int n_end, int k, const float *x, int ldx, const float *w,
                   float *y, int ldy, int accumulate);
void lr_skinny_bf16(int m, int n_begin, int n_end, int k, const float *x, int ldx, const uint16_t *w,
                    float *y, int ldy, int accumulate);

/// BF16 compute (`--compute bf16`): the same product with x rounded to bf16 (round to nearest even) and
/// W BF16 bits; each product of two bf16 is exact and sums are f32. vdpbf16ps (AVX512-BF16, 32 columns
/// per instruction) where the CPU has it; elsewhere the f32 kernels on the rounded x (same maths, other
/// summation order, f32 speed).
void lr_skinny_bf16_dot(int m, int n_begin, int n_end, int k, const float *x, int ldx, const uint16_t *w,
                        float *y, int ldy, int accumulate);

/// 1 when lr_skinny_bf16_dot runs on vdpbf16ps (AVX512-BF16 present and not capped by lr_skinny_limit_isa).
int lr_bf16_dot_native(void);

/// Which instruction set the kernels run with: "avx512f+avx512bf16", "avx512f", "avx2+fma" or "portable".
const char *lr_skinny_isa(void);

/// 1 when a vector path (AVX-512 or AVX2+FMA) runs, 0 for the portable loops.
int lr_skinny_vectorized(void);

/// Caps the instruction set (3 avx512f + avx512_bf16, 2 avx512f, 1 avx2+fma, 0 portable) so tests can
/// check every path.
void lr_skinny_limit_isa(int level);

/// One query position's attention for the `group` query heads sharing a KV head:
/// out[h] = softmax(scale · q[h] · k[0..<length]ᵀ) · v[0..<length]. q: (group, d), row stride ldq;
/// k, v: (length, d), row stride ldkv; scores: scratch of group × length; out: (group, d), row stride ldo.
void lr_attention_decode(int group, int d, int length, const float *q, int ldq, const float *k, const float *v,
                         int ldkv, float scale, float *scores, float *out, int ldo);

/// 1 when lr_attention_decode runs vectorized for head size d (AVX-512, d a multiple of 16).
int lr_attention_vectorized(int d);

#endif
