// The LM head's log-prob arithmetic over vocabulary chunks (cuda/logprob.cu), for the fused
// lmhead_forward/lmhead_backward ops: per chunk of ids a GEMM (srlm_cuda_gemm) writes fp32
// logits z (N, Vc) to the workspace, then
//   forward:  lmhead_fold folds each row of the chunk into a running (max m, sum s of
//             exp(z - m)) and picks the target's logit; after the last chunk,
//             lmhead_finalize forms logp = (z_t - m) - log(s) and lse = m + log(s) and
//             checks the targets (-1: no target, logp 0; others in [0, V));
//   backward: lmhead_dz turns a chunk's recomputed logits into
//             dz = dlogp (onehot(t) - exp(z - lse)) in the op's dtype, for the two GEMMs
//             (dx += dz W_chunk, dW_chunk += dz^T x).
// Not ops of their own: the table's lmhead ops are built on them. All queue on c->stream.
#ifndef SRLM_CUDA_LOGPROB_CUH
#define SRLM_CUDA_LOGPROB_CUH

#include "common.cuh"

namespace SRLM_CUDA_NS {

// One chunk of vocabulary ids [v0, v0 + Vc).
struct lmhead_chunk {
  const float *z;          // (N, Vc) fp32 logits of the chunk, row stride ldz
  long long ldz;
  long long N, Vc, v0;
  const int32_t *targets;  // (N)
  float *m, *s;            // (N) running max and sum of exp(z - m): start at -inf and 0
  float *zt;               // (N) the target's logit, written by the chunk that holds it
  long long n0;            // the op's row of the chunk's row 0 (error records name the op's row)
};

// Folds one chunk into (m, s) and picks z_t. Chunks must be folded in order.
srlm_status lmhead_fold(context *c, const lmhead_chunk &p);

// logp[n] (and lse[n] unless NULL) from the folded state; a target outside [0, V) other
// than -1 is recorded as op `op`'s error and gives NaN.
srlm_status lmhead_finalize(context *c, float *logp, float *lse, const float *m, const float *s, const float *zt,
                            const int32_t *targets, long long N, long long V, srlm_op_id op);

// dz (N, Vc) in `dtype`, row stride lddz, for chunk p (p.m, p.s, p.zt unused):
// dz = dlogp[n] * ((v == t_n) - exp(z - lse[n])), exactly 0 where dlogp[n] = 0 (as the CPU
// twin, whatever z holds). dz may be p.z itself (fp32: each element is read, then written,
// by one thread). A bad target (outside [-1, V), or -1 with dlogp != 0: the CPU twin refuses
// both) gives a NaN row and is recorded as op `op`'s error naming row p.n0 + n.
srlm_status lmhead_dz(context *c, void *dz, long long lddz, srlm_dtype dtype, const lmhead_chunk &p, const float *lse,
                      const float *dlogp, long long V, srlm_op_id op);

// The table's lmhead ops (cuda/lmhead.cu) run rows [t0, t0 + TC) x ids [v0, v0 + VC) a chunk
// at a time, rows outer and ids inner (the CPU twin's order); lmhead_plan picks TC and VC for
// a workspace budget of fp32 logits (lmhead.cu says how). The *_chunks forms take the chunk
// shape itself, so tests can make several chunks of small shapes.
struct lmhead_plan {
  long long TC, VC;
};
lmhead_plan lmhead_plan_for(long long N, long long V, long long budget);
srlm_status lmhead_forward_chunks(srlm_backend *be, srlm_lmhead_params p, lmhead_plan plan);
srlm_status lmhead_backward_chunks(srlm_backend *be, srlm_lmhead_bwd_params p, lmhead_plan plan);

}  // namespace SRLM_CUDA_NS

#endif
