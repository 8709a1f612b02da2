// KV-cache append on the GPU: the new rows cu_q[i] .. cu_q[i+1] of k and v go to slot
// slot[i] at positions kv_len[i] - (cu_q[i+1] - cu_q[i]) onward (backend.h).
//
// Two kernels. The check (one block; a batch has a few hundred sequences at most): every
// sequence is checked as the CPU twin checks it, the first bad one (lowest index, found with
// a shared-memory atomicMin over ints) is recorded as the op's error naming the sequence,
// and its index (or -1) goes to a flag in the workspace. The copy: one row of k and of v per
// (y) thread row of a block, raw bits in units of 16 bytes when rows are aligned (4 or 2
// otherwise; elem.cuh); a row finds its sequence by bisecting cu_q (monotone once the check
// passed). When the check found a bad sequence nothing is written, as the CPU refuses the
// whole call. Two sequences naming one slot with overlapping positions are not checked
// (nor by the CPU); which row lands there is then undefined.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kCheckThreads = 256;

// Whether sequence i is bad; if so its error as (kind, row, value, limit): a sequence's slot
// or length names the sequence, a bad cu_q entry names the entry (its own message).
__device__ bool kv_bad(const srlm_kv_append_params &p, int i, int *kind, long long *row, long long *value,
                       long long *limit) {
  const long long s = p.slot[i], a = p.cu_q[i], b = p.cu_q[i + 1], len = p.kv_len[i], n_new = b - a;
  int k = 0;
  long long r = i, v = 0, l = 0;
  if (s < 0 || s >= p.max_slots) k = KERR_SLOT | KERR_SEQUENCE, v = s, l = p.max_slots;
  else if (a < 0 || a > p.NQ) k = KERR_CU_Q, v = a, l = p.NQ;
  else if (b < 0 || b > p.NQ || b < a) k = KERR_CU_Q, r = i + 1, v = b, l = p.NQ;
  else if (len > p.max_len) k = KERR_LENGTH | KERR_SEQUENCE, v = len, l = p.max_len + 1;
  else if (len < n_new) k = KERR_POSITION | KERR_SEQUENCE, v = len - n_new, l = p.max_len;  // the first new row's position
  *kind = k;
  *row = r;
  *value = v;
  *limit = l;
  return k != 0;
}

__global__ void __launch_bounds__(kCheckThreads) kv_check_kernel(srlm_kv_append_params p, int *first_bad, kerr_rec *kerr) {
  __shared__ int first;
  if (threadIdx.x == 0) first = p.n;
  __syncthreads();
  int kind;
  long long row, value, limit;
  for (int i = threadIdx.x; i < p.n; i += blockDim.x)
    if (kv_bad(p, i, &kind, &row, &value, &limit)) {
      atomicMin(&first, i);
      break;  // a thread's later sequences have larger indices
    }
  __syncthreads();
  if (threadIdx.x != 0) return;
  const int i = first;
  if (i < p.n && kv_bad(p, i, &kind, &row, &value, &limit)) kerr_record(kerr, SRLM_OP_kv_append, kind, row, value, limit);
  *first_bad = i < p.n ? i : -1;
}

template <class U>
__global__ void __launch_bounds__(256) kv_copy_kernel(srlm_kv_append_params p, long long units, const int *first_bad) {
  const long long r = (long long)blockIdx.x * blockDim.y + threadIdx.y;  // a row of k and v
  if (r >= p.NQ || *first_bad >= 0) return;
  int lo = 0, hi = p.n;  // the first j with cu_q[j] > r is in [lo, hi]
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (p.cu_q[mid] > r) hi = mid;
    else lo = mid + 1;
  }
  const int i = lo - 1;  // r lies in [cu_q[i], cu_q[i + 1]) unless outside every sequence
  if (i < 0 || i >= p.n || r >= p.cu_q[i + 1]) return;
  const long long n_new = (long long)p.cu_q[i + 1] - p.cu_q[i];
  const long long dst = (long long)p.slot[i] * p.max_len + p.kv_len[i] - n_new + (r - p.cu_q[i]);
  const U *k = static_cast<const U *>(p.k) + r * units, *v = static_cast<const U *>(p.v) + r * units;  // (NKV, HS)
  U *kc = static_cast<U *>(p.k_cache) + dst * units, *vc = static_cast<U *>(p.v_cache) + dst * units;  // (NKV, HS)
  for (long long j = threadIdx.x; j < units; j += blockDim.x) {
    unit_st(kc + j, unit_ld(k + j));
    unit_st(vc + j, unit_ld(v + j));
  }
}

}  // namespace

srlm_status op_kv_append(srlm_backend *be, srlm_kv_append_params p) {
  const char *where = SRLM_CUDA_NAME " kv_append";
  SRLM_TRY(srlm_kv_append_params_check(&p, where));
  if (p.n == 0) return SRLM_OK;
  const size_t row = (size_t)(p.NKV * p.HS) * srlm_dtype_size(p.dtype);
  SRLM_TRY(check_dev(where, "k_cache", p.k_cache, (size_t)(p.max_slots * p.max_len) * row));
  SRLM_TRY(check_dev(where, "v_cache", p.v_cache, (size_t)(p.max_slots * p.max_len) * row));
  SRLM_TRY(check_dev(where, "k", p.k, (size_t)p.NQ * row));
  SRLM_TRY(check_dev(where, "v", p.v, (size_t)p.NQ * row));
  SRLM_TRY(check_dev(where, "slot", p.slot, (size_t)p.n * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "cu_q", p.cu_q, (size_t)(p.n + 1) * sizeof(int32_t)));
  SRLM_TRY(check_dev(where, "kv_len", p.kv_len, (size_t)p.n * sizeof(int32_t)));
  context *c = ctx(be);
  void *ws = nullptr;
  SRLM_TRY(workspace(c, sizeof(int), &ws));
  int *first_bad = static_cast<int *>(ws);
  SRLM_LAUNCH(kv_check_kernel, 1, kCheckThreads, 0, c->stream, p, first_bad, c->kerr);
  SRLM_CUDA_LAUNCHED();
  if (p.NQ == 0) return SRLM_OK;
  const void *ptrs[] = {p.k_cache, p.v_cache, p.k, p.v};
  const int ub = unit_bytes(row, ptrs, 4);
  const long long units = (long long)row / ub;
  const dim3 block = row_block(units);
  const unsigned grid = (unsigned)((p.NQ + block.y - 1) / block.y);
  SRLM_UNIT_SWITCH(ub, U, {
    auto k = kv_copy_kernel<U>;
    SRLM_LAUNCH(k, grid, block, 0, c->stream, p, units, (const int *)first_bad);
  });
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace SRLM_CUDA_NS
