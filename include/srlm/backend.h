/* srlm backend: the op table the model code calls, so a CUDA backend swaps in for the
 * CPU one without touching model code (DESIGN.md invariants 1 and 7).
 *
 * A backend is a const table of function pointers (srlm_backend_ops). The CPU table
 * is always built in; it is the reference every other backend is tested against on
 * random inputs. The CUDA table lives in the srlm_cuda library.
 *
 * Conventions
 * - Every op returns srlm_status and reports failures with srlm_error ("where: what");
 *   nothing prints, nothing exits.
 * - Pointers passed to an op are buffers of that backend (from its alloc): host memory
 *   for the CPU backend, device memory for CUDA. Move data with the copy ops.
 * - Op parameters are one plain struct passed by value (pointers, sizes, scalars),
 *   checked on the host by the srlm_*_check function below, which every backend calls
 *   before it touches memory. Arrays are dense row-major; shape comments use
 *   N rows (tokens), C channels, V vocabulary.
 * - fp32 throughout for now (bf16 variants come with the GPU model).
 * - Outputs are overwritten. Backward ops overwrite gradients of activations (dlogits);
 *   gradients of parameters (a later rmsnorm backward's dw) will accumulate (+=), because
 *   micro-batches sum into them; each op's comment says which it does.
 * - One backend state per process (one GPU per rank): call init once before other ops.
 * - Device ops are asynchronous in stream order. Data errors that only a kernel can see
 *   (a target id out of range) are recorded on the device and reported by the next call
 *   that waits for the device: sync() or copy_d2h(). The CPU backend reports them from
 *   the op itself. Either way the message names the op, the row and the bad value.
 * - CPU ops are deterministic and give identical bits for any OpenMP thread count
 *   (rows are split over threads, each row is reduced in a fixed order by one thread).
 *   CUDA ops are deterministic too (fixed reduction trees, no atomics on data).
 */
#ifndef SRLM_BACKEND_H
#define SRLM_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "srlm/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- op parameters ------------------------------------------------------ */

/* RMSNorm forward: out[n,c] = x[n,c] * rstd[n] * w[c],
 * rstd[n] = 1 / sqrt(mean_c(x[n,c]^2) + eps). out may alias x (in place). */
typedef struct srlm_rmsnorm_params {
  float *out;      /* (N, C) */
  float *rstd;     /* (N) saved for the backward; NULL when not needed */
  const float *x;  /* (N, C) */
  const float *w;  /* (C) */
  int64_t N, C;
  float eps;       /* > 0, e.g. 1e-6 */
} srlm_rmsnorm_params;

/* Log-prob gather: logp[n] = logits[n, t_n] - logsumexp_v(logits[n, v]), with the
 * logsumexp computed in one pass with running-max rescaling. Every target must lie in
 * [0, V): a row to be ignored still names a valid id and gets gradient 0 (dlogp[n] = 0).
 * Logits may hold -inf (masked ids); a row that is all -inf has no distribution and
 * gives NaN. */
typedef struct srlm_logprob_params {
  float *logp;            /* (N) log-prob of the target */
  float *lse;             /* (N) logsumexp of the row, for the backward; NULL when not needed */
  const float *logits;    /* (N, V) */
  const int32_t *targets; /* (N) */
  int64_t N, V;
} srlm_logprob_params;

/* Backward of the gather (ALGORITHMS.md section 0):
 * dlogits[n,v] = dlogp[n] * (onehot(t_n)[v] - exp(logits[n,v] - lse[n])).
 * dlogits is OVERWRITTEN (it is a per-chunk scratch fed straight to the LM-head GEMM);
 * it may alias logits. */
typedef struct srlm_logprob_bwd_params {
  float *dlogits;         /* (N, V) */
  const float *logits;    /* (N, V) */
  const float *lse;       /* (N) from the forward */
  const float *dlogp;     /* (N) dL/dlogp */
  const int32_t *targets; /* (N) */
  int64_t N, V;
} srlm_logprob_bwd_params;

/* Host-side checks shared by all backends (pointers non-NULL, sizes in range).
 * `where` prefixes the message, e.g. "cuda rmsnorm_forward". */
srlm_status srlm_rmsnorm_params_check(const srlm_rmsnorm_params *p, const char *where);
srlm_status srlm_logprob_params_check(const srlm_logprob_params *p, const char *where);
srlm_status srlm_logprob_bwd_params_check(const srlm_logprob_bwd_params *p, const char *where);

/* ---- the table ---------------------------------------------------------- */

typedef struct srlm_backend_ops {
  const char *name;   /* "cpu", "cuda" */
  int host_memory;    /* 1 when buffers are plain host memory (the copy ops are memcpy) */

  /* Lifecycle. device: GPU index for device backends (the CPU backend ignores it).
   * init sets the device for this process and tags library-call errors with it. */
  srlm_status (*init)(int device);
  srlm_status (*shutdown)(void);

  /* Memory. alloc of 0 bytes gives NULL; free(NULL) does nothing.
   * Copies between host and device return when the data is usable at the destination. */
  srlm_status (*alloc)(void **ptr, size_t bytes);
  srlm_status (*free)(void *ptr);
  srlm_status (*zero)(void *ptr, size_t bytes);
  srlm_status (*copy_h2d)(void *dst, const void *src, size_t bytes);
  srlm_status (*copy_d2h)(void *dst, const void *src, size_t bytes);
  srlm_status (*copy_d2d)(void *dst, const void *src, size_t bytes);
  /* Waits for every queued op; reports asynchronous errors (library or kernel-found). */
  srlm_status (*sync)(void);

  /* Ops */
  srlm_status (*rmsnorm_forward)(srlm_rmsnorm_params p);
  srlm_status (*logprob_forward)(srlm_logprob_params p);
  srlm_status (*logprob_backward)(srlm_logprob_bwd_params p);
} srlm_backend_ops;

/* The CPU reference backend (always available). */
const srlm_backend_ops *srlm_backend_cpu(void);

/* The CUDA backend. Defined only in the srlm_cuda library: only binaries that link
 * srlm_cuda may call it (they are built with SRLM_HAVE_CUDA=1). Such a binary registers
 * it once at start, srlm_backend_register(srlm_backend_cuda()), so that a lookup by
 * name finds it; code that does not link srlm_cuda uses srlm_backend_find only. */
const srlm_backend_ops *srlm_backend_cuda(void);

/* Makes a backend findable by name. Registering the same table again is a no-op;
 * another table under a taken name is an error. At most 8 backends. */
srlm_status srlm_backend_register(const srlm_backend_ops *ops);

/* Looks a backend up by name ("cpu" always works). "cuda" in a binary without the
 * CUDA backend gives SRLM_ERR_UNSUPPORTED saying so; an unknown name gives
 * SRLM_ERR_CONFIG listing the available ones. */
srlm_status srlm_backend_find(const char *name, const srlm_backend_ops **out);

#ifdef __cplusplus
}
#endif
#endif
