// Attention of one new query position against a sequence's cached keys/values, for the `group` query
// heads that share one KV head (grouped-query attention). Decoding runs this once per row, layer and
// KV head: a BLAS call per head was ~2 × 12 × 28 tiny sgemm calls per token, run one after another.
// Each key/value row is loaded once per 4 keys and used by every head of the group.
#include "ckernels.h"
#include "isa.h"
#include <math.h>

static void attention_portable(int group, int d, int length, const float *q, int ldq, const float *k,
                               const float *v, int ldkv, float scale, float *scores, float *out, int ldo) {
    for (int h = 0; h < group; h++) {
        float *p = scores + (long)h * length;
        const float *qh = q + (long)h * ldq;
        float maximum = -INFINITY;
        for (int s = 0; s < length; s++) {
            float dot = 0;
            for (int j = 0; j < d; j++) dot += qh[j] * k[(long)s * ldkv + j];
            p[s] = dot * scale;
            if (p[s] > maximum) maximum = p[s];
        }
        float sum = 0;
        for (int s = 0; s < length; s++) {
            p[s] = expf(p[s] - maximum);
            sum += p[s];
        }
        float inverse = 1 / sum, *oh = out + (long)h * ldo;
        for (int j = 0; j < d; j++) oh[j] = 0;
        for (int s = 0; s < length; s++) {
            float weight = p[s] * inverse;
            for (int j = 0; j < d; j++) oh[j] += weight * v[(long)s * ldkv + j];
        }
    }
}

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>

// d a multiple of 16.
__attribute__((target("avx512f"))) static void attention_avx512(int group, int d, int length, const float *q, int ldq,
                                                                const float *k, const float *v, int ldkv, float scale,
                                                                float *scores, float *out, int ldo) {
    // scores (group, length) = scale · q · kᵀ, four keys per pass.
    for (int h = 0; h < group; h++) {
        const float *qh = q + (long)h * ldq;
        float *p = scores + (long)h * length;
        int s = 0;
        for (; s + 4 <= length; s += 4) {
            const float *k0 = k + (long)s * ldkv;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < d; j += 16) {
                __m512 x = _mm512_loadu_ps(qh + j);
                a0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k0 + j), a0);
                a1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k0 + ldkv + j), a1);
                a2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k0 + 2L * ldkv + j), a2);
                a3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(k0 + 3L * ldkv + j), a3);
            }
            _mm_storeu_ps(p + s, _mm_mul_ps(reduce4_512(a0, a1, a2, a3), _mm_set1_ps(scale)));
        }
        for (; s < length; s++) {
            __m512 a = _mm512_setzero_ps();
            for (int j = 0; j < d; j += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(qh + j), _mm512_loadu_ps(k + (long)s * ldkv + j), a);
            p[s] = _mm512_reduce_add_ps(a) * scale;
        }
        // softmax over the row
        float maximum = -INFINITY, sum = 0;
        for (s = 0; s < length; s++) maximum = p[s] > maximum ? p[s] : maximum;
        for (s = 0; s < length; s++) {
            p[s] = expf(p[s] - maximum);
            sum += p[s];
        }
        float inverse = 1 / sum;
        for (s = 0; s < length; s++) p[s] *= inverse;
    }
    // out (group, d) = p · v, 64 columns (4 registers) at a time, then 16.
    for (int h = 0; h < group; h++) {
        const float *p = scores + (long)h * length;
        float *oh = out + (long)h * ldo;
        int j = 0;
        for (; j + 64 <= d; j += 64) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int s = 0; s < length; s++) {
                const float *vs = v + (long)s * ldkv + j;
                __m512 w = _mm512_set1_ps(p[s]);
                a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs), a0);
                a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs + 16), a1);
                a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs + 32), a2);
                a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(vs + 48), a3);
            }
            _mm512_storeu_ps(oh + j, a0);
            _mm512_storeu_ps(oh + j + 16, a1);
            _mm512_storeu_ps(oh + j + 32, a2);
            _mm512_storeu_ps(oh + j + 48, a3);
        }
        for (; j < d; j += 16) {
            __m512 a = _mm512_setzero_ps();
            for (int s = 0; s < length; s++)
                a = _mm512_fmadd_ps(_mm512_set1_ps(p[s]), _mm512_loadu_ps(v + (long)s * ldkv + j), a);
            _mm512_storeu_ps(oh + j, a);
        }
    }
}

// The same on AVX2 (8 lanes), d a multiple of 8. Without it an AVX2 CPU ran decode attention as one small
// sgemm per row and head: 11 % of a real GSM8K evaluation's CPU time, most of it OpenBLAS packing.
__attribute__((target("avx2,fma"))) static void attention_avx2(int group, int d, int length, const float *q, int ldq,
                                                               const float *k, const float *v, int ldkv, float scale,
                                                               float *scores, float *out, int ldo) {
    for (int h = 0; h < group; h++) {
        const float *qh = q + (long)h * ldq;
        float *p = scores + (long)h * length;
        int s = 0;
        for (; s + 4 <= length; s += 4) {
            const float *k0 = k + (long)s * ldkv;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int j = 0; j < d; j += 8) {
                __m256 x = _mm256_loadu_ps(qh + j);
                a0 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + j), a0);
                a1 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + ldkv + j), a1);
                a2 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + 2L * ldkv + j), a2);
                a3 = _mm256_fmadd_ps(x, _mm256_loadu_ps(k0 + 3L * ldkv + j), a3);
            }
            _mm_storeu_ps(p + s, _mm_mul_ps(reduce4_256(a0, a1, a2, a3), _mm_set1_ps(scale)));
        }
        for (; s < length; s++) {
            __m256 a = _mm256_setzero_ps();
            for (int j = 0; j < d; j += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(qh + j), _mm256_loadu_ps(k + (long)s * ldkv + j), a);
            float lanes[4];
            _mm_storeu_ps(lanes, reduce4_256(a, _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()));
            p[s] = lanes[0] * scale;
        }
        float maximum = -INFINITY, sum = 0;
        for (s = 0; s < length; s++) maximum = p[s] > maximum ? p[s] : maximum;
        for (s = 0; s < length; s++) {
            p[s] = expf(p[s] - maximum);
            sum += p[s];
        }
        float inverse = 1 / sum;
        for (s = 0; s < length; s++) p[s] *= inverse;
    }
    // out (group, d) = p · v, 32 columns (4 registers) at a time, then 8.
    for (int h = 0; h < group; h++) {
        const float *p = scores + (long)h * length;
        float *oh = out + (long)h * ldo;
        int j = 0;
        for (; j + 32 <= d; j += 32) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int s = 0; s < length; s++) {
                const float *vs = v + (long)s * ldkv + j;
                __m256 w = _mm256_set1_ps(p[s]);
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 24), a3);
            }
            _mm256_storeu_ps(oh + j, a0);
            _mm256_storeu_ps(oh + j + 8, a1);
            _mm256_storeu_ps(oh + j + 16, a2);
            _mm256_storeu_ps(oh + j + 24, a3);
        }
        for (; j < d; j += 8) {
            __m256 a = _mm256_setzero_ps();
            for (int s = 0; s < length; s++)
                a = _mm256_fmadd_ps(_mm256_set1_ps(p[s]), _mm256_loadu_ps(v + (long)s * ldkv + j), a);
            _mm256_storeu_ps(oh + j, a);
        }
    }
}
#endif

int lr_attention_vectorized(int d) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    return (lr_isa_level() >= 2 && d % 16 == 0) || (lr_isa_level() >= 1 && d % 8 == 0);
#else
    (void)d;
    return 0;
#endif
}

void lr_attention_decode(int group, int d, int length, const float *q, int ldq, const float *k, const float *v,
                         int ldkv, float scale, float *scores, float *out, int ldo) {
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
    if (lr_isa_level() >= 2 && d % 16 == 0) {
        attention_avx512(group, d, length, q, ldq, k, v, ldkv, scale, scores, out, ldo);
        return;
    }
    if (lr_isa_level() >= 1 && d % 8 == 0) {
        attention_avx2(group, d, length, q, ldq, k, v, ldkv, scale, scores, out, ldo);
        return;
    }
#endif
    attention_portable(group, d, length, q, ldq, k, v, ldkv, scale, scores, out, ldo);
}
