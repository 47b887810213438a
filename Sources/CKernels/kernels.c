// Matmul kernels for batched decoding, y (M, N) (=|+=) x (M, K) · Wᵀ with W (N, K) f32 or BF16 and
// M from 1 to a few hundred. OpenBLAS's sgemm packs W for every call, and BF16 would need a widened
// copy first; these read W in its stored form. Blocking:
//   - 4 weight rows (a tile) are taken at once; each x load then feeds 4 FMAs;
//   - MR x rows share each weight load; MR × 4 accumulators stay in registers;
//   - with more than MR rows, a BF16 tile's K block is widened once into a small per-thread buffer
//     (L1) and reused by every MR-row chunk of the batch, so widening costs 1/M per FMA;
//   - K is cut into blocks of at most KC, chosen from K alone: the x block (128 × KC) stays in L2
//     while the weight tiles stream by, and a row's sums are the same bits whatever else is in the
//     batch (continuous batching swaps rows in and out);
//   - the first chunk of a tile prefetches the next tile, hiding the weight stream at small M.
// Accumulators run along K (dot form), so a tile needs no transposition; one 4-way reduction per
// (x row, tile) per K block. The ISA is picked at run time, so one binary runs on any x86-64.
#include "ckernels.h"
#include "isa.h"
#include <stdlib.h>
#include <string.h>

#define TILE 4          // weight rows per tile (8 for one or two rows)
#define KC 2048         // K block: x (128 × KC) stays in L2, a widened tile (TILE × KC) in L1/L2
#define N_BLOCK 512     // weight rows per outer block, so y's block stays cached across K blocks

static inline float bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

// Round to nearest even, as torch's bfloat16 cast and vcvtneps2bf16 do; NaN stays NaN.
static inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40);
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16);
}

// Reference path, also the fallback: plain loops, any m.
static void skinny_portable(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                            const uint16_t *wb, float *y, int ldy, int accumulate) {
    for (int n = n0; n < n1; n++) {
        for (int i = 0; i < m; i++) {
            float s = 0;
            for (int j = 0; j < k; j++) {
                float w = wf ? wf[(long)n * k + j] : bf16_to_f32(wb[(long)n * k + j]);
                s += w * x[(long)i * ldx + j];
            }
            float *out = y + (long)i * ldy + n;
            *out = accumulate ? *out + s : s;
        }
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

// A micro kernel: `live` ≤ T weight rows (row stride ldw, f32 or BF16) × M x rows over kc
// columns. Writes (add=0) or adds (add=1) y[i, r] for i < M, r < live. Dead tile rows read row 0
// and are dropped.
// The K tail's scalar product of weight row w and x row x at column t, per weight and x type.
#define TAIL_F32(w, x, t) ((w)[t] * (x)[t])
#define TAIL_BF16(w, x, t) (bf16_to_f32((w)[t]) * (x)[t])
#define TAIL_BF16_BF16(w, x, t) (bf16_to_f32((w)[t]) * bf16_to_f32((x)[t]))

#define LOAD512_F32(p) _mm512_loadu_ps(p)
#define LOAD512_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define LOAD256_F32(p) _mm256_loadu_ps(p)
#define LOAD256_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

// What every micro-kernel shares. Its signature, over weights WTYPE and x rows XTYPE: kc columns of T
// weight rows (live of them real; a tile's dead rows read row 0) against M x rows, into y.
#define MICRO_SIGNATURE(NAME, TARGET, WTYPE, XTYPE)                                                    \
    __attribute__((target(TARGET))) static void NAME(int kc, const WTYPE *w, long ldw, int live,       \
                                                     const XTYPE *x, int ldx, float *y, int ldy, int add, \
                                                     const char *pf, long pfld, int pfstep)
// T row pointers and T × M zeroed accumulators.
#define MICRO_BEGIN(T, M, WTYPE, VEC, SETZERO)                                                         \
    const WTYPE *wr[T];                                                                                \
    for (int r = 0; r < T; r++) wr[r] = w + (r < live ? r : 0) * ldw;                                  \
    VEC acc[T][M];                                                                                     \
    for (int r = 0; r < T; r++)                                                                        \
        for (int i = 0; i < M; i++) acc[r][i] = SETZERO();                                             \
    int j = 0;
// Prefetch of the next panel's weights (one line per weight row per WIDTH columns).
#define MICRO_PREFETCH(T, WIDTH)                                                                       \
    if (pf)                                                                                            \
        for (int r = 0; r < T; r++) _mm_prefetch(pf + r * pfld + (long)(j / WIDTH) * pfstep, _MM_HINT_T0);
// Each x row's T sums reduced, the columns past the last full vector added in scalar (TAIL), stored or added.
#define MICRO_END(T, M, XTYPE, REDUCE, TAIL)                                                           \
    for (int i = 0; i < M; i++) {                                                                      \
        float s[T];                                                                                    \
        for (int g = 0; g < T; g += 4)                                                                 \
            _mm_storeu_ps(s + g, REDUCE(acc[g][i], acc[g + 1][i], acc[g + 2][i], acc[g + 3][i]));      \
        const XTYPE *xi = x + (long)i * ldx;                                                           \
        float *out = y + (long)i * ldy;                                                                \
        for (int r = 0; r < live; r++) {                                                               \
            float v = s[r];                                                                            \
            for (int t = j; t < kc; t++) v += TAIL(wr[r], xi, t);                                      \
            out[r] = add ? out[r] + v : v;                                                             \
        }                                                                                              \
    }

// X_FIRST: the M x vectors are loaded first and each weight vector then feeds M FMAs, so T × M sums
// + M + 1 registers are live instead of T × M + T + 1. AVX2 has 16: T 4 × M 3 fits only this way (the
// other order spilled a sum to the stack every step: store-to-load latency on its FMA chain, about
// half the FMA rate). AVX-512's 32 hold either order; it keeps the weights-first one. Same sums, same bits.
#define MICRO(ISA, TARGET, VEC, WIDTH, SETZERO, LOADX, FMA, REDUCE, T, M, SUFFIX, WTYPE, LOADW, TAIL, X_FIRST) \
    MICRO_SIGNATURE(micro_##ISA##_##SUFFIX##_##T##_##M, TARGET, WTYPE, float) {                        \
        MICRO_BEGIN(T, M, WTYPE, VEC, SETZERO)                                                         \
        for (; j + WIDTH <= kc; j += WIDTH) {                                                          \
            MICRO_PREFETCH(T, WIDTH)                                                                   \
            if (X_FIRST) {                                                                             \
                VEC xv[M];                                                                             \
                for (int i = 0; i < M; i++) xv[i] = LOADX(x + (long)i * ldx + j);                      \
                for (int r = 0; r < T; r++) {                                                          \
                    VEC wv = LOADW(wr[r] + j);                                                         \
                    for (int i = 0; i < M; i++) acc[r][i] = FMA(wv, xv[i], acc[r][i]);                 \
                }                                                                                      \
            } else {                                                                                   \
                VEC wv[T];                                                                             \
                for (int r = 0; r < T; r++) wv[r] = LOADW(wr[r] + j);                                  \
                for (int i = 0; i < M; i++) {                                                          \
                    VEC xv = LOADX(x + (long)i * ldx + j);                                             \
                    for (int r = 0; r < T; r++) acc[r][i] = FMA(wv[r], xv, acc[r][i]);                 \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        MICRO_END(T, M, float, REDUCE, TAIL)                                                           \
    }

#define MICRO512(M, SUFFIX, WTYPE, LOADW, TAIL, T)                                                   \
    MICRO(avx512, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps, reduce4_512, \
          T, M, SUFFIX, WTYPE, LOADW, TAIL, 0)
#define MICRO256(M, SUFFIX, WTYPE, LOADW, TAIL, T)                                                   \
    MICRO(avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, reduce4_256, \
          T, M, SUFFIX, WTYPE, LOADW, TAIL, 1)

// AVX-512: 6 x rows × 4 weight rows = 24 accumulators + 4 weight registers of 32.
#define MR512 6
MICRO512(1, f32, float, LOAD512_F32, TAIL_F32, 4) MICRO512(2, f32, float, LOAD512_F32, TAIL_F32, 4)
MICRO512(3, f32, float, LOAD512_F32, TAIL_F32, 4) MICRO512(4, f32, float, LOAD512_F32, TAIL_F32, 4)
MICRO512(5, f32, float, LOAD512_F32, TAIL_F32, 4) MICRO512(6, f32, float, LOAD512_F32, TAIL_F32, 4)
MICRO512(1, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 4) MICRO512(2, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 4)
MICRO512(3, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 4) MICRO512(4, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 4)
MICRO512(5, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 4) MICRO512(6, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 4)
// AVX2: 3 × 4 = 12 accumulators + 4 weight registers of 16.
#define MR256 3
MICRO256(1, f32, float, LOAD256_F32, TAIL_F32, 4) MICRO256(2, f32, float, LOAD256_F32, TAIL_F32, 4)
MICRO256(3, f32, float, LOAD256_F32, TAIL_F32, 4)
MICRO256(1, bf16, uint16_t, LOAD256_BF16, TAIL_BF16, 4) MICRO256(2, bf16, uint16_t, LOAD256_BF16, TAIL_BF16, 4)
MICRO256(3, bf16, uint16_t, LOAD256_BF16, TAIL_BF16, 4)

// One or two rows: 8 weight rows per tile, for more independent FMA chains and memory streams. Each
// (row, weight row) pair is still summed in the same order, so results stay batch-independent.
MICRO512(1, f32, float, LOAD512_F32, TAIL_F32, 8) MICRO512(2, f32, float, LOAD512_F32, TAIL_F32, 8)
MICRO512(1, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 8) MICRO512(2, bf16, uint16_t, LOAD512_BF16, TAIL_BF16, 8)
MICRO256(1, f32, float, LOAD256_F32, TAIL_F32, 8) MICRO256(1, bf16, uint16_t, LOAD256_BF16, TAIL_BF16, 8)

// AVX-512, BF16 weights, f32 compute: one 64-byte load holds 32 weights; a bf16 is the top half of
// an f32, so a shift by 16 gives the even columns and a mask the odd ones as exact f32, without the
// cross-lane widening. x is split the same way once per call (split_x512: each 32-column group holds
// its 16 even then its 16 odd columns; a tail of fewer than 32 stays in place), so each pair of FMAs
// covers 32 columns. Every (x row, weight row) pair sums in the same order in every kernel of this
// family, so a row's outputs stay the same bits in any batch.
#define MICRO_EO(T, M)                                                                                 \
    MICRO_SIGNATURE(micro_eo_##T##_##M, "avx512f", uint16_t, float) {                                  \
        const __m512i odd = _mm512_set1_epi32((int)0xffff0000u);                                       \
        MICRO_BEGIN(T, M, uint16_t, __m512, _mm512_setzero_ps)                                         \
        for (; j + 32 <= kc; j += 32) {                                                                \
            MICRO_PREFETCH(T, 32)                                                                      \
            __m512i raw[T];                                                                            \
            __m512 wv[T];                                                                              \
            for (int r = 0; r < T; r++) raw[r] = _mm512_loadu_si512((const void *)(wr[r] + j));        \
            for (int r = 0; r < T; r++) wv[r] = _mm512_castsi512_ps(_mm512_slli_epi32(raw[r], 16));    \
            for (int i = 0; i < M; i++) {                                                              \
                __m512 xv = _mm512_loadu_ps(x + (long)i * ldx + j);                                    \
                for (int r = 0; r < T; r++) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);         \
            }                                                                                          \
            for (int r = 0; r < T; r++) wv[r] = _mm512_castsi512_ps(_mm512_and_si512(raw[r], odd));    \
            for (int i = 0; i < M; i++) {                                                              \
                __m512 xv = _mm512_loadu_ps(x + (long)i * ldx + j + 16);                               \
                for (int r = 0; r < T; r++) acc[r][i] = _mm512_fmadd_ps(wv[r], xv, acc[r][i]);         \
            }                                                                                          \
        }                                                                                              \
        MICRO_END(T, M, float, reduce4_512, TAIL_BF16)                                                 \
    }
MICRO_EO(4, 1) MICRO_EO(4, 2) MICRO_EO(4, 3) MICRO_EO(4, 4) MICRO_EO(4, 5) MICRO_EO(4, 6)
MICRO_EO(8, 1) MICRO_EO(8, 2)

// x (m, k) → dst (m, k): each full 32-column group of a K block as 16 even then 16 odd columns. The
// groups start at every K block's start (kc a multiple of 32 except the last), matching the kernels.
__attribute__((target("avx512f"))) static void split_x512(int m, int k, int kc, const float *x, int ldx,
                                                           float *dst) {
    const __m512i even_idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd_idx = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int i = 0; i < m; i++) {
        const float *src = x + (long)i * ldx;
        float *out = dst + (long)i * k;
        for (int kb = 0; kb < k; kb += kc) {
            int end = k - kb < kc ? k : kb + kc, j = kb;
            for (; j + 32 <= end; j += 32) {
                __m512 a = _mm512_loadu_ps(src + j), b = _mm512_loadu_ps(src + j + 16);
                _mm512_storeu_ps(out + j, _mm512_permutex2var_ps(a, even_idx, b));
                _mm512_storeu_ps(out + j + 16, _mm512_permutex2var_ps(a, odd_idx, b));
            }
            for (; j < end; j++) out[j] = src[j];
        }
    }
}

// AVX512-BF16 (--compute bf16): vdpbf16ps multiplies 32 bf16 pairs exactly and adds each pair's sum
// into an f32 lane, so 32 columns per instruction at twice the FMA rate, with no widening at all. x is
// rounded to bf16 once per call (round_x_bf16512) in natural column order, which is the weights' order.
#define MICRO_DP(T, M)                                                                                 \
    MICRO_SIGNATURE(micro_dp_##T##_##M, "avx512f,avx512bf16", uint16_t, uint16_t) {                   \
        MICRO_BEGIN(T, M, uint16_t, __m512, _mm512_setzero_ps)                                         \
        for (; j + 32 <= kc; j += 32) {                                                                \
            MICRO_PREFETCH(T, 32)                                                                      \
            __m512bh wv[T];                                                                            \
            for (int r = 0; r < T; r++) wv[r] = (__m512bh)_mm512_loadu_si512((const void *)(wr[r] + j)); \
            for (int i = 0; i < M; i++) {                                                              \
                __m512bh xv = (__m512bh)_mm512_loadu_si512((const void *)(x + (long)i * ldx + j));     \
                for (int r = 0; r < T; r++) acc[r][i] = _mm512_dpbf16_ps(acc[r][i], wv[r], xv);        \
            }                                                                                          \
        }                                                                                              \
        MICRO_END(T, M, uint16_t, reduce4_512, TAIL_BF16_BF16)                                         \
    }
MICRO_DP(4, 1) MICRO_DP(4, 2) MICRO_DP(4, 3) MICRO_DP(4, 4) MICRO_DP(4, 5) MICRO_DP(4, 6)
MICRO_DP(8, 1) MICRO_DP(8, 2)

// x (m, k) → bf16 (m, k), round to nearest even (vcvtne2ps2bf16; the tail with the same rule).
__attribute__((target("avx512f,avx512bf16"))) static void round_x_bf16512(int m, int k, const float *x, int ldx,
                                                                           uint16_t *dst) {
    for (int i = 0; i < m; i++) {
        const float *src = x + (long)i * ldx;
        uint16_t *out = dst + (long)i * k;
        int j = 0;
        for (; j + 32 <= k; j += 32)
            _mm512_storeu_si512((void *)(out + j),
                                (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + j + 16), _mm512_loadu_ps(src + j)));
        for (; j < k; j++) out[j] = f32_to_bf16(src[j]);
    }
}

typedef void (*micro_f32_fn)(int, const float *, long, int, const float *, int, float *, int, int, const char *, long, int);
typedef void (*micro_bf16_fn)(int, const uint16_t *, long, int, const float *, int, float *, int, int, const char *, long, int);
static const micro_f32_fn micro512_f32[MR512 + 1] = {0, micro_avx512_f32_4_1, micro_avx512_f32_4_2, micro_avx512_f32_4_3,
                                                     micro_avx512_f32_4_4, micro_avx512_f32_4_5, micro_avx512_f32_4_6};
static const micro_bf16_fn micro512_bf16[MR512 + 1] = {0, micro_avx512_bf16_4_1, micro_avx512_bf16_4_2,
                                                       micro_avx512_bf16_4_3, micro_avx512_bf16_4_4,
                                                       micro_avx512_bf16_4_5, micro_avx512_bf16_4_6};
static const micro_f32_fn micro256_f32[MR256 + 1] = {0, micro_avx2_f32_4_1, micro_avx2_f32_4_2, micro_avx2_f32_4_3};
static const micro_bf16_fn micro256_bf16[MR256 + 1] = {0, micro_avx2_bf16_4_1, micro_avx2_bf16_4_2, micro_avx2_bf16_4_3};

// Widens rows [0, rows) × columns [0, kc) of a BF16 tile (row stride ldw) into dst (row stride kc).
__attribute__((target("avx512f"))) static void widen_tile512(const uint16_t *w, long ldw, int rows, int kc,
                                                              float *dst) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *src = w + r * ldw;
        float *out = dst + (long)r * kc;
        int j = 0;
        for (; j + 16 <= kc; j += 16) _mm512_storeu_ps(out + j, LOAD512_BF16(src + j));
        for (; j < kc; j++) out[j] = bf16_to_f32(src[j]);
    }
}
__attribute__((target("avx2,fma"))) static void widen_tile256(const uint16_t *w, long ldw, int rows, int kc,
                                                               float *dst) {
    for (int r = 0; r < rows; r++) {
        const uint16_t *src = w + r * ldw;
        float *out = dst + (long)r * kc;
        int j = 0;
        for (; j + 8 <= kc; j += 8) _mm256_storeu_ps(out + j, LOAD256_BF16(src + j));
        for (; j < kc; j++) out[j] = bf16_to_f32(src[j]);
    }
}

static const micro_f32_fn micro512_f32_8[3] = {0, micro_avx512_f32_8_1, micro_avx512_f32_8_2};
static const micro_bf16_fn micro512_bf16_8[3] = {0, micro_avx512_bf16_8_1, micro_avx512_bf16_8_2};
static const micro_f32_fn micro256_f32_8[2] = {0, micro_avx2_f32_8_1};
static const micro_bf16_fn micro256_bf16_8[2] = {0, micro_avx2_bf16_8_1};

static _Thread_local float tile_buffer[TILE * KC];
static const micro_bf16_fn micro_eo4[MR512 + 1] = {0, micro_eo_4_1, micro_eo_4_2, micro_eo_4_3,
                                                   micro_eo_4_4, micro_eo_4_5, micro_eo_4_6};
static const micro_bf16_fn micro_eo8[3] = {0, micro_eo_8_1, micro_eo_8_2};
typedef void (*micro_dp_fn)(int, const uint16_t *, long, int, const uint16_t *, int, float *, int, int, const char *, long, int);
static const micro_dp_fn micro_dp4[MR512 + 1] = {0, micro_dp_4_1, micro_dp_4_2, micro_dp_4_3,
                                                 micro_dp_4_4, micro_dp_4_5, micro_dp_4_6};
static const micro_dp_fn micro_dp8[3] = {0, micro_dp_8_1, micro_dp_8_2};

// Per-thread copies of x (split for the even/odd kernels, rounded for BF16 compute), grown to the
// largest rows × K seen; a failed allocation falls back to the kernels that read x in place.
typedef struct {
    void *data;
    long bytes;
} scratch_t;
static _Thread_local scratch_t split_scratch, round_scratch;
static void *scratch(scratch_t *s, long bytes) {
    if (bytes > s->bytes) {
        void *grown = realloc(s->data, (size_t)bytes);
        if (!grown) return 0;
        s->data = grown;
        s->bytes = bytes;
    }
    return s->data;
}

// K blocks depend on K alone, so a row's sums are the same bits whatever else is in the batch;
// multiples of 32 so every block starts an even/odd column group.
static int k_block(int k) {
    int blocks = (k + KC - 1) / KC;
    return ((k + blocks - 1) / blocks + 31) & ~31;
}

// xb: x rounded to bf16 (row stride k) for the vdpbf16ps kernels, else null (f32 compute).
static void blocked(int level, int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                    const uint16_t *wb, const uint16_t *xb, float *y, int ldy, int accumulate) {
    const int mr = level >= 2 ? MR512 : MR256;
    const int kc = k_block(k);
    // AVX-512 with BF16 weights, f32 compute: even/odd kernels on a split copy of x (widening in
    // registers costs two single-cycle ops per 32 weights, so no tile buffer is needed at any M).
    const float *xs = 0;
    if (level >= 2 && wb && !xb) {
        float *split = scratch(&split_scratch, (long)m * k * (long)sizeof(float));
        if (split) {
            split_x512(m, k, kc, x, ldx, split);
            xs = split;
        }
    }
    // With at most MR rows each weight is used by one micro call: widen it in registers.
    const int buffered = wb && !xs && !xb && m > mr;
    const int wide = m <= (level >= 2 ? 2 : 1);  // 8-row tiles (m ≤ mr, so never buffered)
    const int tile = wide ? 8 : TILE;
    // Even row chunks (8 rows: 4 + 4, not 6 + 2): a thin chunk is load-bound.
    const int chunk = (m + (m + mr - 1) / mr - 1) / ((m + mr - 1) / mr);
    for (int nb = n0; nb < n1; nb += N_BLOCK) {
        int nend = n1 - nb < N_BLOCK ? n1 : nb + N_BLOCK;
        for (int kb = 0; kb < k; kb += kc) {
            int kl = k - kb < kc ? k - kb : kc;
            int add = accumulate || kb > 0;
            for (int n = nb; n < nend; n += tile) {
                int live = nend - n < tile ? nend - n : tile;
                const float *tile_f32 = 0;
                long ldt = k;
                if (wf) {
                    tile_f32 = wf + (long)n * k + kb;
                } else if (buffered) {
                    (level >= 2 ? widen_tile512 : widen_tile256)(wb + (long)n * k + kb, k, live, kl, tile_buffer);
                    tile_f32 = tile_buffer;
                    ldt = kl;
                }
                // The first chunk's loop prefetches the next tile, so its load overlaps this tile's work
                // (at small M the weights stream from memory and nothing else would hide it).
                const char *next = 0;
                long nextld = 0;
                int step = 0;
                if (n + tile < nend) {
                    long esize = wf ? 4 : 2;
                    next = (const char *)(wf ? (const void *)(wf + (long)(n + tile) * k + kb)
                                             : (const void *)(wb + (long)(n + tile) * k + kb));
                    nextld = (long)k * esize;
                    // One vector's worth of columns per iteration (the even/odd and dot kernels take 32).
                    step = (int)((xs || xb ? 32 : level >= 2 ? 16 : 8) * esize);
                }
                for (int i = 0; i < m; i += chunk) {
                    int rows = m - i < chunk ? m - i : chunk;
                    const char *pf = i == 0 ? next : 0;
                    const float *xi = x + (long)i * ldx + kb;
                    float *yi = y + (long)i * ldy + n;
                    const uint16_t *wt = wb + (long)n * k + kb;
                    if (xb)
                        (wide ? micro_dp8 : micro_dp4)[rows](kl, wt, k, live, xb + (long)i * k + kb, k, yi, ldy, add, pf, nextld, step);
                    else if (xs)
                        (wide ? micro_eo8 : micro_eo4)[rows](kl, wt, k, live, xs + (long)i * k + kb, k, yi, ldy, add, pf, nextld, step);
                    else if (wide && wf)
                        (level >= 2 ? micro512_f32_8 : micro256_f32_8)[rows](kl, wf + (long)n * k + kb, k, live, xi,
                                                                             ldx, yi, ldy, add, pf, nextld, step);
                    else if (wide)
                        (level >= 2 ? micro512_bf16_8 : micro256_bf16_8)[rows](kl, wt, k, live, xi, ldx, yi, ldy, add, pf, nextld, step);
                    else if (tile_f32)
                        (level >= 2 ? micro512_f32 : micro256_f32)[rows](kl, tile_f32, ldt, live, xi, ldx, yi, ldy, add, pf, nextld, step);
                    else
                        (level >= 2 ? micro512_bf16 : micro256_bf16)[rows](kl, wt, k, live, xi, ldx, yi, ldy, add, pf, nextld, step);
                }
            }
        }
    }
}

#include <cpuid.h>
// 3: avx512f + avx512_bf16, 2: avx512f, 1: avx2+fma, 0: portable; lr_skinny_limit_isa lowers it
// (tests check every path).
static int detected_level = -1, level_limit = 3;
int lr_isa_level(void) {
    if (detected_level < 0) {
        __builtin_cpu_init();
        int level = __builtin_cpu_supports("avx512f") ? 2
                    : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
        // AVX512-BF16: CPUID leaf 7 subleaf 1, EAX bit 5 (the OS saves the AVX-512 state: checked above).
        unsigned a, b, c, d;
        if (level == 2 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1)) level = 3;
        detected_level = level;
    }
    return detected_level < level_limit ? detected_level : level_limit;
}

// Rows in chunks of 128 bound the x block; each re-reads W, so widening costs 1/128 per FMA.
static void skinny(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                   const uint16_t *wb, const uint16_t *xb, float *y, int ldy, int accumulate) {
    int level = lr_isa_level();
    for (int i = 0; i < m; i += 128)
        blocked(level, m - i < 128 ? m - i : 128, n0, n1, k, x + (long)i * ldx, ldx, wf, wb, xb ? xb + (long)i * k : 0,
                y + (long)i * ldy, ldy, accumulate);
}

static void skinny_dispatch(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                            const uint16_t *wb, float *y, int ldy, int accumulate) {
    if (lr_isa_level() == 0 || m <= 0 || n1 <= n0)
        skinny_portable(m, n0, n1, k, x, ldx, wf, wb, y, ldy, accumulate);
    else
        skinny(m, n0, n1, k, x, ldx, wf, wb, 0, y, ldy, accumulate);
}

const char *lr_skinny_isa(void) {
    int level = lr_isa_level();
    return level == 3 ? "avx512f+avx512bf16" : level == 2 ? "avx512f" : level == 1 ? "avx2+fma" : "portable";
}
int lr_skinny_vectorized(void) { return lr_isa_level() > 0; }
void lr_skinny_limit_isa(int level) { level_limit = level; }
#else
static void skinny_dispatch(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                            const uint16_t *wb, float *y, int ldy, int accumulate) {
    skinny_portable(m, n0, n1, k, x, ldx, wf, wb, y, ldy, accumulate);
}
int lr_isa_level(void) { return 0; }
const char *lr_skinny_isa(void) { return "portable"; }
int lr_skinny_vectorized(void) { return 0; }
void lr_skinny_limit_isa(int level) { (void)level; }
#endif

void lr_skinny_f32(int m, int n_begin, int n_end, int k, const float *x, int ldx, const float *w,
                   float *y, int ldy, int accumulate) {
    skinny_dispatch(m, n_begin, n_end, k, x, ldx, w, 0, y, ldy, accumulate);
}

void lr_skinny_bf16(int m, int n_begin, int n_end, int k, const float *x, int ldx, const uint16_t *w,
                    float *y, int ldy, int accumulate) {
    skinny_dispatch(m, n_begin, n_end, k, x, ldx, 0, w, y, ldy, accumulate);
}

int lr_bf16_dot_native(void) { return lr_isa_level() >= 3; }

void lr_skinny_bf16_dot(int m, int n_begin, int n_end, int k, const float *x, int ldx, const uint16_t *w,
                        float *y, int ldy, int accumulate) {
    if (m <= 0 || n_end <= n_begin) return;
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    if (lr_isa_level() >= 3) {
        uint16_t *xb = scratch(&round_scratch, (long)m * k * (long)sizeof(uint16_t));
        if (xb) {
            round_x_bf16512(m, k, x, ldx, xb);
            skinny(m, n_begin, n_end, k, x, ldx, 0, w, xb, y, ldy, accumulate);
            return;
        }
    }
    // Without vdpbf16ps: the same maths on the f32 kernels. Products of two bf16 are exact in f32, so
    // only the order of the f32 sums differs.
    float *xr = scratch(&round_scratch, (long)m * k * (long)sizeof(float));
#else
    float *xr = malloc((size_t)m * k * sizeof(float));
#endif
    if (!xr) {
        // No memory for the rounded copy: round row by row (slow, but the same result).
        for (int i = 0; i < m; i++) {
            for (int n = n_begin; n < n_end; n++) {
                float s = 0;
                for (int j = 0; j < k; j++) s += bf16_to_f32(w[(long)n * k + j]) * bf16_to_f32(f32_to_bf16(x[(long)i * ldx + j]));
                float *out = y + (long)i * ldy + n;
                *out = accumulate ? *out + s : s;
            }
        }
        return;
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < k; j++) xr[(long)i * k + j] = bf16_to_f32(f32_to_bf16(x[(long)i * ldx + j]));
    skinny_dispatch(m, n_begin, n_end, k, xr, k, 0, w, y, ldy, accumulate);
#if !(defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__)))
    free(xr);
#endif
}
