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
#define W_F32(p, t) ((p)[t])
#define W_BF16(p, t) bf16_to_f32((p)[t])

#define LOAD512_F32(p) _mm512_loadu_ps(p)
#define LOAD512_BF16(p) \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define LOAD256_F32(p) _mm256_loadu_ps(p)
#define LOAD256_BF16(p) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))

__attribute__((target("avx2,fma"))) static inline __m128 reduce4_256(__m256 a0, __m256 a1, __m256 a2,
                                                                      __m256 a3) {
    __m256 b0 = _mm256_add_ps(_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
    __m256 b1 = _mm256_add_ps(_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
    __m256 c = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(b0), _mm256_castps_pd(b1))),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(b0), _mm256_castps_pd(b1))));
    return _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
}

#define MICRO(ISA, TARGET, VEC, WIDTH, SETZERO, LOADX, FMA, REDUCE, T, M, SUFFIX, WTYPE, LOADW, WSCALAR) \
    __attribute__((target(TARGET))) static void micro_##ISA##_##SUFFIX##_##T##_##M(                  \
        int kc, const WTYPE *w, long ldw, int live, const float *x, int ldx, float *y, int ldy,       \
        int add, const char *pf, long pfld, int pfstep) {                                             \
        const WTYPE *wr[T];                                                                        \
        for (int r = 0; r < T; r++) wr[r] = w + (r < live ? r : 0) * ldw;                          \
        VEC acc[T][M];                                                                             \
        for (int r = 0; r < T; r++)                                                                \
            for (int i = 0; i < M; i++) acc[r][i] = SETZERO();                                        \
        int j = 0;                                                                                    \
        for (; j + WIDTH <= kc; j += WIDTH) {                                                         \
            VEC wv[T];                                                                             \
            if (pf)                                                                                   \
                for (int r = 0; r < T; r++)                                                        \
                    _mm_prefetch(pf + r * pfld + (long)(j / WIDTH) * pfstep, _MM_HINT_T0);            \
            for (int r = 0; r < T; r++) wv[r] = LOADW(wr[r] + j);                                  \
            for (int i = 0; i < M; i++) {                                                             \
                VEC xv = LOADX(x + (long)i * ldx + j);                                                \
                for (int r = 0; r < T; r++) acc[r][i] = FMA(wv[r], xv, acc[r][i]);                 \
            }                                                                                         \
        }                                                                                             \
        for (int i = 0; i < M; i++) {                                                                 \
            float s[T];                                                                               \
            for (int g = 0; g < T; g += 4)                                                            \
                _mm_storeu_ps(s + g, REDUCE(acc[g][i], acc[g + 1][i], acc[g + 2][i], acc[g + 3][i]));  \
            const float *xi = x + (long)i * ldx;                                                      \
            float *out = y + (long)i * ldy;                                                           \
            for (int r = 0; r < live; r++) {                                                          \
                float v = s[r];                                                                       \
                for (int t = j; t < kc; t++) v += WSCALAR(wr[r], t) * xi[t];                          \
                out[r] = add ? out[r] + v : v;                                                        \
            }                                                                                         \
        }                                                                                             \
    }

#define MICRO512(M, SUFFIX, WTYPE, LOADW, WSCALAR, T)                                                   \
    MICRO(avx512, "avx512f", __m512, 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps, reduce4_512, \
          T, M, SUFFIX, WTYPE, LOADW, WSCALAR)
#define MICRO256(M, SUFFIX, WTYPE, LOADW, WSCALAR, T)                                                   \
    MICRO(avx2, "avx2,fma", __m256, 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, reduce4_256, \
          T, M, SUFFIX, WTYPE, LOADW, WSCALAR)

// AVX-512: 6 x rows × 4 weight rows = 24 accumulators + 4 weight registers of 32.
#define MR512 6
MICRO512(1, f32, float, LOAD512_F32, W_F32, 4) MICRO512(2, f32, float, LOAD512_F32, W_F32, 4)
MICRO512(3, f32, float, LOAD512_F32, W_F32, 4) MICRO512(4, f32, float, LOAD512_F32, W_F32, 4)
MICRO512(5, f32, float, LOAD512_F32, W_F32, 4) MICRO512(6, f32, float, LOAD512_F32, W_F32, 4)
MICRO512(1, bf16, uint16_t, LOAD512_BF16, W_BF16, 4) MICRO512(2, bf16, uint16_t, LOAD512_BF16, W_BF16, 4)
MICRO512(3, bf16, uint16_t, LOAD512_BF16, W_BF16, 4) MICRO512(4, bf16, uint16_t, LOAD512_BF16, W_BF16, 4)
MICRO512(5, bf16, uint16_t, LOAD512_BF16, W_BF16, 4) MICRO512(6, bf16, uint16_t, LOAD512_BF16, W_BF16, 4)
// AVX2: 3 × 4 = 12 accumulators + 4 weight registers of 16.
#define MR256 3
MICRO256(1, f32, float, LOAD256_F32, W_F32, 4) MICRO256(2, f32, float, LOAD256_F32, W_F32, 4)
MICRO256(3, f32, float, LOAD256_F32, W_F32, 4)
MICRO256(1, bf16, uint16_t, LOAD256_BF16, W_BF16, 4) MICRO256(2, bf16, uint16_t, LOAD256_BF16, W_BF16, 4)
MICRO256(3, bf16, uint16_t, LOAD256_BF16, W_BF16, 4)

// One or two rows: 8 weight rows per tile, for more independent FMA chains and memory streams. Each
// (row, weight row) pair is still summed in the same order, so results stay batch-independent.
MICRO512(1, f32, float, LOAD512_F32, W_F32, 8) MICRO512(2, f32, float, LOAD512_F32, W_F32, 8)
MICRO512(1, bf16, uint16_t, LOAD512_BF16, W_BF16, 8) MICRO512(2, bf16, uint16_t, LOAD512_BF16, W_BF16, 8)
MICRO256(1, f32, float, LOAD256_F32, W_F32, 8) MICRO256(1, bf16, uint16_t, LOAD256_BF16, W_BF16, 8)

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

static void blocked(int level, int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                    const uint16_t *wb, float *y, int ldy, int accumulate) {
    const int mr = level == 2 ? MR512 : MR256;
    // With at most MR rows each weight is used by one micro call: widen it in registers.
    const int buffered = wb && m > mr;
    const int wide = m <= (level == 2 ? 2 : 1);  // 8-row tiles (m ≤ mr, so never buffered)
    const int tile = wide ? 8 : TILE;
    // Even row chunks (8 rows: 4 + 4, not 6 + 2): a thin chunk is load-bound.
    const int chunk = (m + (m + mr - 1) / mr - 1) / ((m + mr - 1) / mr);
    // K blocks depend on K alone, so a row's sums are the same bits whatever else is in the batch.
    int blocks = (k + KC - 1) / KC;
    int kc = ((k + blocks - 1) / blocks + 15) & ~15;
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
                    (level == 2 ? widen_tile512 : widen_tile256)(wb + (long)n * k + kb, k, live, kl, tile_buffer);
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
                    step = (int)((level == 2 ? 16 : 8) * esize);  // one vector's worth of columns per iteration
                }
                for (int i = 0; i < m; i += chunk) {
                    int rows = m - i < chunk ? m - i : chunk;
                    const char *pf = i == 0 ? next : 0;
                    const float *xi = x + (long)i * ldx + kb;
                    float *yi = y + (long)i * ldy + n;
                    if (wide && wf)
                        (level == 2 ? micro512_f32_8 : micro256_f32_8)[rows](kl, wf + (long)n * k + kb, k, live, xi,
                                                                             ldx, yi, ldy, add, pf, nextld, step);
                    else if (wide)
                        (level == 2 ? micro512_bf16_8 : micro256_bf16_8)[rows](kl, wb + (long)n * k + kb, k, live, xi,
                                                                               ldx, yi, ldy, add, pf, nextld, step);
                    else if (tile_f32)
                        (level == 2 ? micro512_f32 : micro256_f32)[rows](kl, tile_f32, ldt, live, xi, ldx, yi, ldy, add, pf, nextld, step);
                    else
                        (level == 2 ? micro512_bf16 : micro256_bf16)[rows](kl, wb + (long)n * k + kb, k, live, xi,
                                                                           ldx, yi, ldy, add, pf, nextld, step);
                }
            }
        }
    }
}

// 2: avx512f, 1: avx2+fma, 0: portable; lr_skinny_limit_isa lowers it (tests check every path).
static int detected_level = -1, level_limit = 2;
int lr_isa_level(void) {
    if (detected_level < 0) {
        __builtin_cpu_init();
        detected_level = __builtin_cpu_supports("avx512f") ? 2
                         : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    }
    return detected_level < level_limit ? detected_level : level_limit;
}

static void skinny(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                   const uint16_t *wb, float *y, int ldy, int accumulate) {
    int level = lr_isa_level();
    if (level == 0 || m <= 0 || n1 <= n0) {
        skinny_portable(m, n0, n1, k, x, ldx, wf, wb, y, ldy, accumulate);
        return;
    }
    // Row chunks of 128 bound the x block; each re-reads W, so widening costs 1/128 per FMA.
    for (int i = 0; i < m; i += 128)
        blocked(level, m - i < 128 ? m - i : 128, n0, n1, k, x + (long)i * ldx, ldx, wf, wb, y + (long)i * ldy,
                ldy, accumulate);
}

const char *lr_skinny_isa(void) {
    int level = lr_isa_level();
    return level == 2 ? "avx512f" : level == 1 ? "avx2+fma" : "portable";
}
int lr_skinny_vectorized(void) { return lr_isa_level() > 0; }
void lr_skinny_limit_isa(int level) { level_limit = level; }
#else
static void skinny(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                   const uint16_t *wb, float *y, int ldy, int accumulate) {
    skinny_portable(m, n0, n1, k, x, ldx, wf, wb, y, ldy, accumulate);
}
const char *lr_skinny_isa(void) { return "portable"; }
int lr_skinny_vectorized(void) { return 0; }
void lr_skinny_limit_isa(int level) { (void)level; }
#endif

void lr_skinny_f32(int m, int n_begin, int n_end, int k, const float *x, int ldx, const float *w,
                   float *y, int ldy, int accumulate) {
    skinny(m, n_begin, n_end, k, x, ldx, w, 0, y, ldy, accumulate);
}

void lr_skinny_bf16(int m, int n_begin, int n_end, int k, const float *x, int ldx, const uint16_t *w,
                    float *y, int ldy, int accumulate) {
    skinny(m, n_begin, n_end, k, x, ldx, 0, w, y, ldy, accumulate);
}
