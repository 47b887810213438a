#ifndef LR_ISA_H
#define LR_ISA_H
/// The instruction set the kernels may use: 2 avx512f, 1 avx2+fma, 0 portable (after lr_skinny_limit_isa).
int lr_isa_level(void);
#endif
