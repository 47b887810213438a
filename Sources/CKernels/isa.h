#ifndef LR_ISA_H
#define LR_ISA_H
/// The instruction set the kernels may use: 3 avx512f + avx512_bf16, 2 avx512f, 1 avx2+fma, 0 portable
/// (after lr_skinny_limit_isa).
int lr_isa_level(void);

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
// Sums of a0..a3 in lanes 0..3.
__attribute__((target("avx512f"))) static inline __m128 reduce4_512(__m512 a0, __m512 a1, __m512 a2,
                                                                     __m512 a3) {
    __m512 b0 = _mm512_add_ps(_mm512_unpacklo_ps(a0, a1), _mm512_unpackhi_ps(a0, a1));
    __m512 b1 = _mm512_add_ps(_mm512_unpacklo_ps(a2, a3), _mm512_unpackhi_ps(a2, a3));
    __m512 c = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b0), _mm512_castps_pd(b1))),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b0), _mm512_castps_pd(b1))));
    __m256 d = _mm256_add_ps(_mm512_castps512_ps256(c),
                             _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(d), _mm256_extractf128_ps(d, 1));
}
__attribute__((target("avx2,fma"))) static inline __m128 reduce4_256(__m256 a0, __m256 a1, __m256 a2,
                                                                      __m256 a3) {
    __m256 b0 = _mm256_add_ps(_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
    __m256 b1 = _mm256_add_ps(_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
    __m256 c = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(b0), _mm256_castps_pd(b1))),
                             _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(b0), _mm256_castps_pd(b1))));
    return _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
}
#endif
#endif
