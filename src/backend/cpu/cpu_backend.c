/* CPU backend: the reference op table. Buffers are host memory aligned to 64 bytes;
 * copies are memcpy and every op finishes before it returns (sync has nothing to do). */
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"

static srlm_status cpu_init(int device) {
  (void)device; /* one host, no devices to choose */
  return SRLM_OK;
}

static srlm_status cpu_shutdown(void) { return SRLM_OK; }

static srlm_status cpu_alloc(void **ptr, size_t bytes) {
  *ptr = NULL;
  if (bytes == 0) return SRLM_OK;
  void *p = NULL;
  if (posix_memalign(&p, 64, bytes) != 0)
    return srlm_error(SRLM_ERR_NOMEM, "cpu alloc", "cannot allocate %zu bytes", bytes);
  *ptr = p;
  return SRLM_OK;
}

static srlm_status cpu_free(void *ptr) {
  free(ptr);
  return SRLM_OK;
}

static srlm_status check_bufs(const char *where, const void *dst, const void *src, size_t bytes) {
  if (bytes > 0 && !dst) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL destination for %zu bytes", bytes);
  if (bytes > 0 && !src) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL source for %zu bytes", bytes);
  return SRLM_OK;
}

static srlm_status cpu_zero(void *ptr, size_t bytes) {
  SRLM_TRY(check_bufs("cpu zero", ptr, ptr, bytes));
  if (bytes) memset(ptr, 0, bytes);
  return SRLM_OK;
}

static srlm_status cpu_copy(void *dst, const void *src, size_t bytes) {
  SRLM_TRY(check_bufs("cpu copy", dst, src, bytes));
  if (bytes) memmove(dst, src, bytes);
  return SRLM_OK;
}

static srlm_status cpu_sync(void) { return SRLM_OK; }

static const srlm_backend_ops g_cpu_ops = {
    .name = "cpu",
    .host_memory = 1,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy_h2d = cpu_copy,
    .copy_d2h = cpu_copy,
    .copy_d2d = cpu_copy,
    .sync = cpu_sync,
    .rmsnorm_forward = srlm_cpu_rmsnorm_forward,
    .logprob_forward = srlm_cpu_logprob_forward,
    .logprob_backward = srlm_cpu_logprob_backward,
    .matmul = srlm_cpu_matmul,
    .rmsnorm_backward = srlm_cpu_rmsnorm_backward,
    .rope_forward = srlm_cpu_rope_forward,
    .rope_backward = srlm_cpu_rope_backward,
    .attention_forward = srlm_cpu_attention_forward,
    .attention_backward = srlm_cpu_attention_backward,
    .attention_kv = srlm_cpu_attention_kv,
    .swiglu_forward = srlm_cpu_swiglu_forward,
    .swiglu_backward = srlm_cpu_swiglu_backward,
    .embedding_forward = srlm_cpu_embedding_forward,
    .embedding_backward = srlm_cpu_embedding_backward,
    .add = srlm_cpu_add,
    .colsum = srlm_cpu_colsum,
    .lse_chunk = srlm_cpu_lse_chunk,
    .lse_finish = srlm_cpu_lse_finish,
    .logprob_chunk_backward = srlm_cpu_logprob_chunk_backward,
};

const srlm_backend_ops *srlm_backend_cpu(void) { return &g_cpu_ops; }
