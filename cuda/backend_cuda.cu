// The CUDA backend's table and context, for both flavors (common.cuh): "cuda" on a GPU and
// "cuda-sim" on the CUDA simulator. An instance (srlm_backend) owns one context: its
// device, one non-blocking stream every op is queued on, the cuBLASLt handle and
// workspace, pinned staging memory, a growable device workspace and the kernel error
// record. Nothing lives in globals; the table is a function-local constant.
//
// Copies to or from the host wait for the stream, so host buffers can be reused (and read)
// when they return; copy_d2h and sync also report what kernels found wrong (kerr_rec),
// naming the op, the row and the value. host_memory is 0 for both flavors: the simulator
// pretends to be a device, so every staging path runs on a CPU machine too, and its
// allocation table catches a host pointer passed where device memory is expected.
#include <stdio.h>
#include <string.h>

#include <new>

#include "common.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr size_t kLtWorkspace = 32u << 20;  // cuBLASLt's recommendation for Hopper

#define W(call) SRLM_CUDA_NAME " " call  // "cuda-sim copy_h2d": where errors happened

// Waits for the stream, then turns a claimed kernel error record into an srlm error.
// Everything goes through the one stream, so the read-back follows every queued kernel
// and the clearing precedes every later one.
srlm_status wait_and_check(context *c) {
  SRLM_CUDA(cudaMemcpyAsync(c->kerr_host, c->kerr, sizeof *c->kerr, cudaMemcpyDeviceToHost, c->stream));
  SRLM_CUDA(cudaStreamSynchronize(c->stream));
  const kerr_rec e = *c->kerr_host;
  if (e.op == 0) return SRLM_OK;
  SRLM_CUDA(cudaMemsetAsync(c->kerr, 0, sizeof *c->kerr, c->stream));
  SRLM_CUDA(cudaStreamSynchronize(c->stream));
  const int op = e.op - 1;
  char where[96], msg[256];
  snprintf(where, sizeof where, "%s %s", SRLM_CUDA_NAME, op >= 0 && op < SRLM_OP_COUNT ? srlm_op_names[op] : "kernel");
  kerr_message(e, msg, sizeof msg);
  return srlm_error(SRLM_ERR_RANGE, where, "%s", msg);
}

// The workspace's stream-ordered allocation (common.cuh, workspace()). The simulator runs
// every op before it returns, so its plain calls free and allocate in the same order.
cudaError_t work_alloc(void **p, size_t bytes, cudaStream_t s) {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  (void)s;
  return cudaMalloc(p, bytes);
#else
  return cudaMallocAsync(p, bytes, s);
#endif
}

cudaError_t work_free(void *p, cudaStream_t s) {
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  (void)s;
  return cudaFree(p);
#else
  return cudaFreeAsync(p, s);
#endif
}

// Best effort: frees what create made. A failure here would hide nothing the caller can
// act on (the stream has been synchronized or create has already failed).
void release(context *c) {
#if !(defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM)
  if (c->lt) (void)cublasLtDestroy(c->lt);
  if (c->lt_work) (void)cudaFree(c->lt_work);
#endif
  if (c->work) (void)work_free(c->work, c->stream);
  if (c->staging) (void)cudaFreeHost(c->staging);
  if (c->kerr_host) (void)cudaFreeHost(c->kerr_host);
  if (c->kerr) (void)cudaFree(c->kerr);
  if (c->stream) (void)cudaStreamDestroy(c->stream);
  (void)cudaGetLastError();
  delete c;
}

srlm_status setup(context *c, int device) {
  SRLM_CUDA(cudaSetDevice(device));
  c->device = device;
  SRLM_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
  SRLM_CUDA(cudaMalloc(reinterpret_cast<void **>(&c->kerr), sizeof *c->kerr));
  SRLM_CUDA(cudaMallocHost(reinterpret_cast<void **>(&c->kerr_host), sizeof *c->kerr_host));
  SRLM_CUDA(cudaMemsetAsync(c->kerr, 0, sizeof *c->kerr, c->stream));
#if !(defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM)
  SRLM_CUBLAS(cublasLtCreate(&c->lt));
  SRLM_CUDA(cudaMalloc(&c->lt_work, kLtWorkspace));
  c->lt_work_bytes = kLtWorkspace;
#endif
  SRLM_CUDA(cudaStreamSynchronize(c->stream));
  return SRLM_OK;
}

srlm_status be_create(srlm_backend *be, int device) {
  const char *where = W("create");
  int count = 0;
  const cudaError_t rc = cudaGetDeviceCount(&count);
  if (rc != cudaSuccess || count == 0) {
    (void)cudaGetLastError();  // not sticky: leave no stale error for later calls
    return srlm_error(SRLM_ERR_UNSUPPORTED, where, "no CUDA device is visible (%s)",
                      rc != cudaSuccess ? SRLM_CUDA_ERRSTR(rc) : "0 devices");
  }
  // run.device -1: the local rank's device, wrapped, so several ranks may share one GPU
  // (e.g. learner, generator and judge on a single-GPU box)
  if (be->auto_device && device >= 0) device %= count;
  if (device < 0 || device >= count)
    return srlm_error(SRLM_ERR_RANGE, where, "device %d out of range [0, %d) (run.device)", device, count);
  cudaDeviceProp prop;
  SRLM_CUDA(cudaGetDeviceProperties(&prop, device));
  if (prop.major < 8)
    return srlm_error(SRLM_ERR_UNSUPPORTED, where,
                      "device %d (%s) has compute capability %d.%d; this build has kernels for 8.0 (A100) and 9.0 "
                      "(H100, H200) and later",
                      device, prop.name, prop.major, prop.minor);
  context *c = new (std::nothrow) context();
  if (!c) return srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate the context");
  const srlm_status st = setup(c, device);
  if (st != SRLM_OK) {
    release(c);
    return st;
  }
  c->cc = prop.major * 10 + prop.minor;
  c->smem_optin = prop.sharedMemPerBlockOptin;
  const srlm_status ap = attention_path_init(c);
  if (ap != SRLM_OK) {
    release(c);
    return ap;
  }
  be->ctx = c;
  be->device = device;
#if !(defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM)  // the simulator's one device has no UUID
  static_assert(sizeof prop.uuid.bytes == sizeof be->uuid, "a CUDA UUID is 16 bytes");
  memcpy(be->uuid, prop.uuid.bytes, sizeof be->uuid);
#endif
  srlm_log_set_device(device);
  return SRLM_OK;
}

srlm_status be_destroy(srlm_backend *be) {
  context *c = ctx(be);
  if (!c) return SRLM_OK;
  const srlm_status st = wait_and_check(c);
  release(c);
  be->ctx = nullptr;
  srlm_log_set_device(-1);
  return st;
}

srlm_status ready(srlm_backend *be, const char *where) {
  if (!be || !be->ctx) return srlm_error(SRLM_ERR_INTERNAL, where, "the backend instance is not created");
  return SRLM_OK;
}

srlm_status be_alloc(srlm_backend *be, void **ptr, size_t bytes) {
  const char *where = W("alloc");
  *ptr = nullptr;
  SRLM_TRY(ready(be, where));
  if (bytes == 0) return SRLM_OK;
  const cudaError_t rc = cudaMalloc(ptr, bytes);
  if (rc == cudaSuccess) {
    ctx(be)->counts.device_allocs++;
    return SRLM_OK;
  }
  (void)cudaGetLastError();  // out of memory is not sticky; keep it from showing up later
  *ptr = nullptr;
  if (rc == cudaErrorMemoryAllocation)
    return srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate %zu bytes on device %d", bytes, ctx(be)->device);
  return srlm_lib_error("CUDA", "cudaMalloc(ptr, bytes)", rc, SRLM_CUDA_ERRSTR(rc), __FILE__, __LINE__);
}

srlm_status be_free(srlm_backend *be, void *ptr) {
  if (!ptr) return SRLM_OK;
  SRLM_TRY(ready(be, W("free")));
  ctx(be)->counts.device_frees++;
  SRLM_CUDA(cudaFree(ptr));
  return SRLM_OK;
}

srlm_status be_host_alloc(srlm_backend *be, void **ptr, size_t bytes) {
  const char *where = W("host_alloc");
  *ptr = nullptr;
  SRLM_TRY(ready(be, where));
  if (bytes == 0) return SRLM_OK;
  const cudaError_t rc = cudaMallocHost(ptr, bytes);
  if (rc == cudaSuccess) {
    ctx(be)->counts.host_allocs++;
    return SRLM_OK;
  }
  (void)cudaGetLastError();
  *ptr = nullptr;
  return srlm_error(SRLM_ERR_NOMEM, where, "cannot allocate %zu bytes of pinned host memory (%s)", bytes,
                    SRLM_CUDA_ERRSTR(rc));
}

srlm_status be_host_free(srlm_backend *be, void *ptr) {
  if (!ptr) return SRLM_OK;
  SRLM_TRY(ready(be, W("host_free")));
  ctx(be)->counts.host_frees++;
  SRLM_CUDA(cudaFreeHost(ptr));
  return SRLM_OK;
}

#if !(defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM)
// Which kind of memory `p` is: device (or managed) memory, or host memory of any kind.
bool on_device(const void *p) {
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}
#endif

// The pointers of a copy must be what its direction says: a host pointer where device memory
// is expected (or the reverse) is a bug in the caller, named here rather than left to fault.
srlm_status check_copy(const char *where, void *dst, bool dst_dev, const void *src, bool src_dev, size_t bytes) {
  if (bytes > 0 && !dst) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL destination for %zu bytes", bytes);
  if (bytes > 0 && !src) return srlm_error(SRLM_ERR_INTERNAL, where, "NULL source for %zu bytes", bytes);
  if (bytes == 0) return SRLM_OK;
#if defined(SRLM_CUDA_SIM) && SRLM_CUDA_SIM
  const bool dst_ok = dst_dev ? ::srlm_sim::is_device(dst, bytes) : !::srlm_sim::is_device(dst, 0);
  const bool src_ok = src_dev ? ::srlm_sim::is_device(src, bytes) : !::srlm_sim::is_device(src, 0);
#else
  const bool dst_ok = on_device(dst) == dst_dev, src_ok = on_device(src) == src_dev;
#endif
  if (!dst_ok)
    return srlm_error(SRLM_ERR_INTERNAL, where, "the destination %p (%zu bytes) is %s", dst, bytes,
                      dst_dev ? "not device memory of this backend (a host pointer?)" : "device memory, not host memory");
  if (!src_ok)
    return srlm_error(SRLM_ERR_INTERNAL, where, "the source %p (%zu bytes) is %s", src, bytes,
                      src_dev ? "not device memory of this backend (a host pointer?)" : "device memory, not host memory");
  return SRLM_OK;
}

srlm_status be_zero(srlm_backend *be, void *ptr, size_t bytes) {
  const char *where = W("zero");
  SRLM_TRY(ready(be, where));
  if (!bytes) return SRLM_OK;
  SRLM_TRY(check_copy(where, ptr, true, ptr, true, bytes));
  SRLM_CUDA(cudaMemsetAsync(ptr, 0, bytes, ctx(be)->stream));
  return SRLM_OK;
}

srlm_status be_copy_h2d(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  const char *where = W("copy_h2d");
  SRLM_TRY(ready(be, where));
  SRLM_TRY(check_copy(where, dst, true, src, false, bytes));
  if (!bytes) return SRLM_OK;
  context *c = ctx(be);
  SRLM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
  SRLM_CUDA(cudaStreamSynchronize(c->stream));
  return SRLM_OK;
}

srlm_status be_copy_d2h(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  const char *where = W("copy_d2h");
  SRLM_TRY(ready(be, where));
  SRLM_TRY(check_copy(where, dst, false, src, true, bytes));
  context *c = ctx(be);
  if (bytes) SRLM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
  return wait_and_check(c);
}

srlm_status be_copy_d2d(srlm_backend *be, void *dst, const void *src, size_t bytes) {
  const char *where = W("copy_d2d");
  SRLM_TRY(ready(be, where));
  SRLM_TRY(check_copy(where, dst, true, src, true, bytes));
  if (bytes) SRLM_CUDA(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx(be)->stream));
  return SRLM_OK;
}

srlm_status be_sync(srlm_backend *be) {
  SRLM_TRY(ready(be, W("sync")));
  return wait_and_check(ctx(be));
}

srlm_status be_mem_info(srlm_backend *be, size_t *free_bytes, size_t *total_bytes) {
  SRLM_TRY(ready(be, W("mem_info")));
  SRLM_CUDA(cudaMemGetInfo(free_bytes, total_bytes));
  return SRLM_OK;
}

void *be_native_stream(srlm_backend *be) { return be->ctx ? (void *)ctx(be)->stream : nullptr; }

void be_alloc_counts(srlm_backend *be, srlm_backend_alloc_counts *out) {
  if (be->ctx) *out = ctx(be)->counts;
}

srlm_backend_ops make_ops() {
  srlm_backend_ops ops = {};
  ops.name = SRLM_CUDA_NAME;
  ops.host_memory = 0;
  ops.create = be_create;
  ops.destroy = be_destroy;
  ops.alloc = be_alloc;
  ops.free = be_free;
  ops.host_alloc = be_host_alloc;
  ops.host_free = be_host_free;
  ops.zero = be_zero;
  ops.copy_h2d = be_copy_h2d;
  ops.copy_d2h = be_copy_d2h;
  ops.copy_d2d = be_copy_d2d;
  ops.sync = be_sync;
  ops.mem_info = be_mem_info;
  ops.native_stream = be_native_stream;
  ops.alloc_counts = be_alloc_counts;
#define SRLM_CUDA_SET_OP_(op) ops.op = op_##op;
  SRLM_CUDA_OPS(SRLM_CUDA_SET_OP_)
#undef SRLM_CUDA_SET_OP_
  return ops;
}

}  // namespace

const char *kerr_kind_name(int kind) {
  switch (kind & ~KERR_SEQUENCE) {
    case KERR_TARGET_ID: return "target id";
    case KERR_TOKEN_ID: return "token id";
    case KERR_SLOT: return "slot";
    case KERR_POSITION: return "position";
    case KERR_LENGTH: return "length";
    case KERR_SEQLEN: return "cu_seqlens";
    case KERR_CU_Q: return "cu_q";
    default: return "value";
  }
}

void kerr_message(const kerr_rec &e, char *msg, size_t n) {
  switch (e.kind & ~KERR_SEQUENCE) {
    case KERR_LOGIT:
      snprintf(msg, n, "row %lld: logit of id %lld is %s", e.row, e.value, e.aux ? "+inf" : "NaN");
      break;
    case KERR_NO_FINITE:
      snprintf(msg, n, "row %lld: every logit is -inf: no token can be drawn", e.row);
      break;
    case KERR_PAIR_RESPONSE:
      snprintf(msg, n, "pair %lld: the %s answer's response (%lld tokens from row %lld) is empty or outside the "
               "batch's %lld tokens", e.row / 2, e.row % 2 ? "rejected" : "chosen", e.aux, e.value, e.limit);
      break;
    case KERR_SEQ_RESPONSE:
      snprintf(msg, n, "sequence %lld: its response (%lld tokens from row %lld) is empty or outside the batch's %lld "
               "tokens", e.row, e.aux, e.value, e.limit);
      break;
    case KERR_OFFSETS0: snprintf(msg, n, "offsets[0] = %lld, expected 0", e.value); break;
    case KERR_L_MAX: snprintf(msg, n, "sequence %lld: %lld tokens exceed l_max %lld", e.row, e.value, e.limit); break;
    case KERR_SEQLEN:
    case KERR_CU_Q: /* a boundary is not a value in [0, L): its own message */
      snprintf(msg, n, "%s[%lld] = %lld: the entries must start at 0, not decrease and end at %lld",
               kerr_kind_name(e.kind), e.row, e.value, e.limit);
      break;
    default:
      snprintf(msg, n, "%s %lld: %s %lld out of range [0, %lld)", (e.kind & KERR_SEQUENCE) ? "sequence" : "row", e.row,
               kerr_kind_name(e.kind & ~KERR_SEQUENCE), e.value, e.limit);
  }
}

srlm_status workspace(context *c, size_t bytes, void **out) {
  if (bytes > c->work_bytes) {
    if (c->work) {  // after the queued ops that may still use it, without waiting for them
      c->counts.device_frees++;
      SRLM_CUDA(work_free(c->work, c->stream));
    }
    c->work = nullptr;
    c->work_bytes = 0;
    const cudaError_t rc = work_alloc(&c->work, bytes, c->stream);
    if (rc == cudaSuccess) c->counts.device_allocs++;
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      c->work = nullptr;
      return srlm_error(SRLM_ERR_NOMEM, SRLM_CUDA_NAME " workspace", "cannot allocate %zu bytes on device %d (%s)",
                        bytes, c->device, SRLM_CUDA_ERRSTR(rc));
    }
    c->work_bytes = bytes;
  }
  *out = c->work;
  return SRLM_OK;
}

srlm_status staging(context *c, size_t bytes, void **out) {
  if (bytes > c->staging_bytes) {
    SRLM_CUDA(cudaStreamSynchronize(c->stream));
    if (c->staging) {
      c->counts.host_frees++;
      SRLM_CUDA(cudaFreeHost(c->staging));
    }
    c->staging = nullptr;
    c->staging_bytes = 0;
    const cudaError_t rc = cudaMallocHost(&c->staging, bytes);
    if (rc == cudaSuccess) c->counts.host_allocs++;
    if (rc != cudaSuccess) {
      (void)cudaGetLastError();
      c->staging = nullptr;
      return srlm_error(SRLM_ERR_NOMEM, SRLM_CUDA_NAME " staging", "cannot allocate %zu bytes of pinned memory (%s)",
                        bytes, SRLM_CUDA_ERRSTR(rc));
    }
    c->staging_bytes = bytes;
  }
  *out = c->staging;
  return SRLM_OK;
}

}  // namespace SRLM_CUDA_NS

extern "C" const srlm_backend_ops *SRLM_CUDA_OPS_FN(void) {
  static const srlm_backend_ops ops = SRLM_CUDA_NS::make_ops();
  return &ops;
}
