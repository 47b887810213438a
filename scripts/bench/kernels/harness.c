// Decode-kernel rates, 1 thread, thread CPU time (unaffected by other processes' scheduling): OpenBLAS
// sgemm, the kernels of an earlier revision (old_*) and of this tree, f32 and BF16 weights, and BF16
// compute (lr_skinny_bf16_dot), best of N runs, GFLOP/s. Built and run by harness.sh.
// Usage: harness K N [repeats]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <cblas.h>
void lr_skinny_f32(int,int,int,int,const float*,int,const float*,float*,int,int);
void lr_skinny_bf16(int,int,int,int,const float*,int,const uint16_t*,float*,int,int);
void lr_skinny_bf16_dot(int,int,int,int,const float*,int,const uint16_t*,float*,int,int);
void old_lr_skinny_f32(int,int,int,int,const float*,int,const float*,float*,int,int);
void old_lr_skinny_bf16(int,int,int,int,const float*,int,const uint16_t*,float*,int,int);
static double now(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int K=atoi(argv[1]),N=atoi(argv[2]); int reps=argc>3?atoi(argv[3]):5;
  int Ms[]={1,2,3,4,8,16,32,64,128};  // rows of x
  float*w=malloc(sizeof(float)*N*K); uint16_t*wb=malloc(2*(size_t)N*K);
  for(long i=0;i<(long)N*K;i++){w[i]=(rand()/(float)RAND_MAX)-0.5f; uint32_t b; memcpy(&b,&w[i],4); wb[i]=b>>16;}
  float*x=malloc(sizeof(float)*128*K),*y=malloc(sizeof(float)*128*N),*y2=malloc(sizeof(float)*128*N),*y3=malloc(sizeof(float)*128*N),*y4=malloc(sizeof(float)*128*N),*y5=malloc(sizeof(float)*128*N);
  for(int i=0;i<128*K;i++)x[i]=(rand()/(float)RAND_MAX)-0.5f;
  for(int mi=0;mi<(int)(sizeof Ms/sizeof Ms[0]);mi++){int M=Ms[mi]; double fl=2.0*M*K*N;
    double best[6]={1e9,1e9,1e9,1e9,1e9,1e9};
    for(int r=0;r<reps;r++){
      double t;
      t=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,M,N,K,1,x,K,w,K,0,y,N); t=now()-t; if(t<best[0])best[0]=t;
      t=now(); old_lr_skinny_f32(M,0,N,K,x,K,w,y4,N,0); t=now()-t; if(t<best[1])best[1]=t;
      t=now(); lr_skinny_f32(M,0,N,K,x,K,w,y5,N,0); t=now()-t; if(t<best[2])best[2]=t;
      t=now(); old_lr_skinny_bf16(M,0,N,K,x,K,wb,y2,N,0); t=now()-t; if(t<best[3])best[3]=t;
      t=now(); lr_skinny_bf16(M,0,N,K,x,K,wb,y,N,0); t=now()-t; if(t<best[4])best[4]=t;
      t=now(); lr_skinny_bf16_dot(M,0,N,K,x,K,wb,y3,N,0); t=now()-t; if(t<best[5])best[5]=t;
    }
    double md=0; for(long i=0;i<(long)M*N;i++){double d=y[i]-y2[i]; if(d<0)d=-d; if(d>md)md=d;}
    double mdf=0; for(long i=0;i<(long)M*N;i++){double d=y5[i]-y4[i]; if(d<0)d=-d; if(d>mdf)mdf=d;}
    double md3=0; for(long i=0;i<(long)M*N;i++){double d=y3[i]-y2[i]; if(d<0)d=-d; if(d>md3)md3=d;}
    printf("M=%3d K=%d N=%d sgemm %6.1f old_f32 %6.1f new_f32 %6.1f old_bf16 %6.1f new_bf16 %6.1f dot %6.1f  maxdiff f32 %.2g bf16 %.2g dotdiff %.2g\n",M,K,N,
      fl/best[0]/1e9,fl/best[1]/1e9,fl/best[2]/1e9,fl/best[3]/1e9,fl/best[4]/1e9,fl/best[5]/1e9,mdf,md,md3);
  }
}
