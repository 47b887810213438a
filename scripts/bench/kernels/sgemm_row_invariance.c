#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
// Is OpenBLAS sgemm row-invariant? out (M,N) = x (M,K) · W^T for M = 1..32: compare row r bits with M=32's.
int main(void) {
    int K = 1536, N = 8960, MMAX = 32;
    float *w = malloc(sizeof(float) * N * K), *x = malloc(sizeof(float) * MMAX * K);
    float *ref = malloc(sizeof(float) * MMAX * N), *out = malloc(sizeof(float) * MMAX * N);
    srand(1);
    for (long i = 0; i < (long)N * K; i++) w[i] = (float)rand() / RAND_MAX - 0.5f;
    for (long i = 0; i < (long)MMAX * K; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, MMAX, N, K, 1, x, K, w, K, 0, ref, N);
    int bad = 0;
    for (int m = 1; m < MMAX; m++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, N, K, 1, x, K, w, K, 0, out, N);
        int diff = memcmp(out, ref, sizeof(float) * m * N) != 0;
        if (diff) { bad++; printf("M=%d differs from M=32 on its rows\n", m); }
    }
    printf("%d of 31 row counts differ\n", bad);
    return 0;
}
