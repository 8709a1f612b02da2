// CUDA backend: the op table over one device per process. Memory ops wrap cudaMalloc and
// friends on one non-blocking stream; ops are queued on that stream and return at once.
// Copies to or from the host wait for the stream, so host buffers can be reused (and
// read) when they return; copy_d2h and sync also report what kernels found wrong (see
// srlm_cuda_kerr). Kernels are built for sm_90 (with PTX for later GPUs).
#include <string.h>

#include "backend_cuda.cuh"

namespace {

struct cuda_state {
  bool ready;
  int device;
  cudaStream_t stream;
  srlm_cuda_kerr *kerr;      // (1) device memory the kernels write
  srlm_cuda_kerr *kerr_host; // (1) pinned, so reading the record back is one small DMA
};
const cuda_state kNoState = {false, -1, nullptr, nullptr, nullptr};
cuda_state g_state = kNoState;

const char *kerr_op_name(int op) {
  switch (op) {
    case SRLM_CUDA_KERR_LOGPROB_FORWARD: return "cuda logprob_forward";
    case SRLM_CUDA_KERR_LOGPROB_BACKWARD: return "cuda logprob_backward";
    default: return "cuda kernel";
  }
}

// Waits for the stream, then turns a claimed kernel error record into an srlm error.
// Everything goes through the one stream, so the read-back follows every queued kernel
// and the clearing precedes every later one.
srlm_status wait_and_check(void) {
  SRLM_CUDA(cudaMemcpyAsync(g_state.kerr_host, g_state.kerr, sizeof *g_state.kerr,
                            cudaMemcpyDeviceToHost, g_state.stream));
  SRLM_CUDA(cudaStreamSynchronize(g_state.stream));
  const srlm_cuda_kerr e = *g_state.kerr_host;
  if (e.op == SRLM_CUDA_KERR_NONE) return SRLM_OK;
  SRLM_CUDA(cudaMemsetAsync(g_state.kerr, 0, sizeof *g_state.kerr, g_state.stream));
  return srlm_error(SRLM_ERR_RANGE, kerr_op_name(e.op), "row %lld: target id %d out of range [0, %lld)",
                    e.row, e.value, e.limit);
}

// Best effort: frees what init made. A failure here would hide nothing the caller can
// act on (the stream has been synchronized or init has already failed).
void release(void) {
  if (g_state.kerr_host) (void)cudaFreeHost(g_state.kerr_host);
  if (g_state.kerr) (void)cudaFree(g_state.kerr);
  if (g_state.stream) (void)cudaStreamDestroy(g_state.stream);
  (void)cudaGetLastError();
  g_state = kNoState;
  srlm_log_set_device(-1);
}

srlm_status setup(int device) {
  SRLM_CUDA(cudaSetDevice(device));
  srlm_log_set_device(device);
  g_state.device = device;
  SRLM_CUDA(cudaStreamCreateWithFlags(&g_state.stream, cudaStreamNonBlocking));
  SRLM_CUDA(cudaMalloc(&g_state.kerr, sizeof *g_state.kerr));
  SRLM_CUDA(cudaMallocHost(&g_state.kerr_host, sizeof *g_state.kerr_host));
  SRLM_CUDA(cudaMemsetAsync(g_state.kerr, 0, sizeof *g_state.kerr, g_state.stream));
  SRLM_CUDA(cudaStreamSynchronize(g_state.stream));
  g_state.ready = true;
  return SRLM_OK;
}

srlm_status cuda_init(int device) {
  const char *where = "cuda init";
  if (g_state.ready) {
    if (device == g_state.device) return SRLM_OK;
    return srlm_error(SRLM_ERR_INTERNAL, where, "already initialized on device %d, asked for device %d",
                      g_state.device, device);
  }
  int count = 0;
  cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count == 0) {
    (void)cudaGetLastError(); // not sticky: leave no stale error for later calls
    return srlm_error(SRLM_ERR_UNSUPPORTED, where, "no CUDA device is visible (%s)",
                      rc != cudaSuccess ? cudaGetErrorString(rc) : "0 devices");
  }
  if (device < 0 || device >= count)
    return srlm_error(SRLM_ERR_RANGE, where, "device %d out of range [0, %d)", device, count);
  cudaDeviceProp prop;
  SRLM_CUDA(cudaGetDeviceProperties(&prop, device));
  if (prop.major < 9)
    return srlm_error(SRLM_ERR_UNSUPPORTED, where,
                      "device %d (%s) has compute capability %d.%d; this build has kernels for 9.0 and later",
                      device, prop.name, prop.major, prop.minor);
  srlm_status st = setup(device);
  if (st != SRLM_OK) release();
  return st;
}

srlm_status cuda_shutdown(void) {
  if (!g_state.ready) return SRLM_OK;
  srlm_status st = wait_and_check();
  release();
  return st;
}

srlm_status cuda_alloc(void **ptr, size_t bytes) {
  *ptr = nullptr;
  SRLM_TRY(srlm_cuda_ready("cuda alloc"));
  if (bytes == 0) return SRLM_OK;
  cudaError_t rc = cudaMalloc(ptr, bytes);
  if (rc == cudaSuccess) return SRLM_OK;
  (void)cudaGetLastError(); // out of memory is not sticky; keep it from showing up later
  *ptr = nullptr;
  if (rc == cudaErrorMemoryAllocation)
    return srlm_error(SRLM_ERR_NOMEM, "cuda alloc", "cannot allocate %zu bytes on device %d", bytes,
                      g_state.device);
  return srlm_lib_error("CUDA", "cudaMalloc(ptr, bytes)", rc, cudaGetErrorString(rc), __FILE__, __LINE__);
}

srlm_status cuda_free(void *ptr) {
  if (!ptr) return SRLM_OK;
  SRLM_TRY(srlm_cuda_ready("cuda free"));
  SRLM_CUDA(cudaFree(ptr));
  return SRLM_OK;
}

srlm_status check_bufs(const char *where, const void *dst, const void *src, size_t bytes) {
  SRLM_TRY(srlm_cuda_ready(where));
  if (bytes > 0 && !dst) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL destination for %zu bytes", bytes);
  if (bytes > 0 && !src) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL source for %zu bytes", bytes);
  return SRLM_OK;
}

srlm_status cuda_zero(void *ptr, size_t bytes) {
  SRLM_TRY(check_bufs("cuda zero", ptr, ptr, bytes));
  if (bytes) SRLM_CUDA(cudaMemsetAsync(ptr, 0, bytes, g_state.stream));
  return SRLM_OK;
}

srlm_status cuda_copy_h2d(void *dst, const void *src, size_t bytes) {
  SRLM_TRY(check_bufs("cuda copy_h2d", dst, src, bytes));
  if (!bytes) return SRLM_OK;
  SRLM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_state.stream));
  SRLM_CUDA(cudaStreamSynchronize(g_state.stream));
  return SRLM_OK;
}

srlm_status cuda_copy_d2h(void *dst, const void *src, size_t bytes) {
  SRLM_TRY(check_bufs("cuda copy_d2h", dst, src, bytes));
  if (bytes) SRLM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_state.stream));
  return wait_and_check();
}

srlm_status cuda_copy_d2d(void *dst, const void *src, size_t bytes) {
  SRLM_TRY(check_bufs("cuda copy_d2d", dst, src, bytes));
  if (bytes) SRLM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, g_state.stream));
  return SRLM_OK;
}

srlm_status cuda_sync(void) {
  SRLM_TRY(srlm_cuda_ready("cuda sync"));
  return wait_and_check();
}

srlm_backend_ops make_ops(void) {
  srlm_backend_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.name = "cuda";
  ops.host_memory = 0;
  ops.init = cuda_init;
  ops.shutdown = cuda_shutdown;
  ops.alloc = cuda_alloc;
  ops.free = cuda_free;
  ops.zero = cuda_zero;
  ops.copy_h2d = cuda_copy_h2d;
  ops.copy_d2h = cuda_copy_d2h;
  ops.copy_d2d = cuda_copy_d2d;
  ops.sync = cuda_sync;
  ops.rmsnorm_forward = srlm_cuda_rmsnorm_forward;
  ops.logprob_forward = srlm_cuda_logprob_forward;
  ops.logprob_backward = srlm_cuda_logprob_backward;
  return ops;
}

} // namespace

srlm_status srlm_cuda_ready(const char *where) {
  if (!g_state.ready)
    return srlm_error(SRLM_ERR_INTERNAL, where, "the CUDA backend is not initialized (call init first)");
  return SRLM_OK;
}

cudaStream_t srlm_cuda_stream(void) { return g_state.stream; }

srlm_cuda_kerr *srlm_cuda_kerr_ptr(void) { return g_state.kerr; }

extern "C" const srlm_backend_ops *srlm_backend_cuda(void) {
  static const srlm_backend_ops ops = make_ops();
  return &ops;
}
