// Skinny matmul kernels for batched decoding. OpenBLAS's sgemm packs W for every call, which at a few
// rows costs more than the multiply; these stream each weight row once, widen BF16 in registers (no
// f32 copy of the weights in memory) and keep one accumulator per x row. The ISA is picked at run time,
// so one binary runs on any x86-64 (and the portable path anywhere else).
#include "ckernels.h"
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 16

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

// One kernel per (ISA, M): M is a constant so the accumulators live in registers. R weight rows go
// through together so each x load feeds R FMAs (measured on the 1.5B shape, B=8: R 1/2/4/8 gave
// 83/102/139/166 tok/s; tiling K for L1 measured slower, so there is none).
#define ROWS_PER_PASS(M) ((M) <= 10 ? 8 : 4)

#define AVX512_KERNEL(M)                                                                             \
    __attribute__((target("avx512f"))) static void skinny512_##M(                                    \
        int n0, int n1, int k, const float *x, int ldx, const float *wf, const uint16_t *wb, float *y, \
        int ldy, int accumulate) {                                                                   \
        enum { R = ROWS_PER_PASS(M) };                                                               \
        for (int n = n0; n < n1; n += R) {                                                           \
            int live = n1 - n < R ? n1 - n : R;                                                      \
            __m512 acc[R][M];                                                                        \
            for (int r = 0; r < R; r++)                                                              \
                for (int i = 0; i < M; i++) acc[r][i] = _mm512_setzero_ps();                         \
            int j = 0;                                                                               \
            for (; j + 16 <= k; j += 16) {                                                           \
                __m512 w[R];                                                                         \
                for (int r = 0; r < R; r++) {                                                        \
                    long row = (long)(r < live ? n + r : n) * k + j;                                 \
                    w[r] = wf ? _mm512_loadu_ps(wf + row)                                            \
                              : _mm512_castsi512_ps(_mm512_slli_epi32(                               \
                                    _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(wb + row))), \
                                    16));                                                            \
                }                                                                                    \
                for (int i = 0; i < M; i++) {                                                        \
                    __m512 xv = _mm512_loadu_ps(x + (long)i * ldx + j);                              \
                    for (int r = 0; r < R; r++) acc[r][i] = _mm512_fmadd_ps(w[r], xv, acc[r][i]);    \
                }                                                                                    \
            }                                                                                        \
            for (int r = 0; r < live; r++) {                                                         \
                for (int i = 0; i < M; i++) {                                                        \
                    float s = _mm512_reduce_add_ps(acc[r][i]);                                       \
                    for (int t = j; t < k; t++)                                                      \
                        s += (wf ? wf[(long)(n + r) * k + t] : bf16_to_f32(wb[(long)(n + r) * k + t])) * \
                             x[(long)i * ldx + t];                                                   \
                    float *out = y + (long)i * ldy + n + r;                                          \
                    *out = accumulate ? *out + s : s;                                                \
                }                                                                                    \
            }                                                                                        \
        }                                                                                            \
    }

__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

#define AVX2_KERNEL(M)                                                                               \
    __attribute__((target("avx2,fma"))) static void skinny256_##M(                                   \
        int n0, int n1, int k, const float *x, int ldx, const float *wf, const uint16_t *wb, float *y, \
        int ldy, int accumulate) {                                                                   \
        for (int n = n0; n < n1; n++) {                                                              \
            __m256 acc[M];                                                                           \
            for (int i = 0; i < M; i++) acc[i] = _mm256_setzero_ps();                                \
            int j = 0;                                                                               \
            for (; j + 8 <= k; j += 8) {                                                             \
                __m256 w = wf ? _mm256_loadu_ps(wf + (long)n * k + j)                                \
                              : _mm256_castsi256_ps(_mm256_slli_epi32(                               \
                                    _mm256_cvtepu16_epi32(                                           \
                                        _mm_loadu_si128((const __m128i *)(wb + (long)n * k + j))),   \
                                    16));                                                            \
                for (int i = 0; i < M; i++)                                                          \
                    acc[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x + (long)i * ldx + j), acc[i]);     \
            }                                                                                        \
            for (int i = 0; i < M; i++) {                                                            \
                float s = hsum256(acc[i]);                                                           \
                for (int t = j; t < k; t++)                                                          \
                    s += (wf ? wf[(long)n * k + t] : bf16_to_f32(wb[(long)n * k + t])) *             \
                         x[(long)i * ldx + t];                                                       \
                float *out = y + (long)i * ldy + n;                                                  \
                *out = accumulate ? *out + s : s;                                                    \
            }                                                                                        \
        }                                                                                            \
    }

AVX512_KERNEL(1) AVX512_KERNEL(2) AVX512_KERNEL(3) AVX512_KERNEL(4) AVX512_KERNEL(5) AVX512_KERNEL(6)
AVX512_KERNEL(7) AVX512_KERNEL(8) AVX512_KERNEL(9) AVX512_KERNEL(10) AVX512_KERNEL(11)
AVX512_KERNEL(12) AVX512_KERNEL(13) AVX512_KERNEL(14) AVX512_KERNEL(15) AVX512_KERNEL(16)
AVX2_KERNEL(1) AVX2_KERNEL(2) AVX2_KERNEL(3) AVX2_KERNEL(4) AVX2_KERNEL(5) AVX2_KERNEL(6)
AVX2_KERNEL(7) AVX2_KERNEL(8)

typedef void (*kernel_fn)(int, int, int, const float *, int, const float *, const uint16_t *, float *,
                          int, int);
static const kernel_fn kernels512[MAX_ROWS + 1] = {
    0, skinny512_1, skinny512_2, skinny512_3, skinny512_4, skinny512_5, skinny512_6, skinny512_7,
    skinny512_8, skinny512_9, skinny512_10, skinny512_11, skinny512_12, skinny512_13, skinny512_14,
    skinny512_15, skinny512_16};
static const kernel_fn kernels256[9] = {0, skinny256_1, skinny256_2, skinny256_3, skinny256_4,
                                        skinny256_5, skinny256_6, skinny256_7, skinny256_8};

// 2: avx512f, 1: avx2+fma, 0: portable; lr_skinny_limit_isa lowers it (tests check every path).
static int detected_level = -1, level_limit = 2;
static int isa_level(void) {
    if (detected_level < 0) {
        __builtin_cpu_init();
        detected_level = __builtin_cpu_supports("avx512f") ? 2
                         : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    }
    return detected_level < level_limit ? detected_level : level_limit;
}

static void skinny(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                   const uint16_t *wb, float *y, int ldy, int accumulate) {
    int level = isa_level();
    if (level == 0) {
        skinny_portable(m, n0, n1, k, x, ldx, wf, wb, y, ldy, accumulate);
        return;
    }
    int most = level == 2 ? MAX_ROWS : 8;
    for (int first = 0; first < m; first += most) {
        int rows = m - first < most ? m - first : most;
        kernel_fn f = level == 2 ? kernels512[rows] : kernels256[rows];
        f(n0, n1, k, x + (long)first * ldx, ldx, wf, wb, y + (long)first * ldy, ldy, accumulate);
    }
}

const char *lr_skinny_isa(void) {
    int level = isa_level();
    return level == 2 ? "avx512f" : level == 1 ? "avx2+fma" : "portable";
}
int lr_skinny_max_rows(void) { return isa_level() == 2 ? MAX_ROWS : isa_level() == 1 ? 8 : 1; }
void lr_skinny_limit_isa(int level) { level_limit = level; }
#else
static void skinny(int m, int n0, int n1, int k, const float *x, int ldx, const float *wf,
                   const uint16_t *wb, float *y, int ldy, int accumulate) {
    skinny_portable(m, n0, n1, k, x, ldx, wf, wb, y, ldy, accumulate);
}
const char *lr_skinny_isa(void) { return "portable"; }
int lr_skinny_max_rows(void) { return 1; }
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
