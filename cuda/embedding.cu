// Embedding gather and its scatter-add backward on the GPU.
//
// Forward, out[n] = table[ids[n]] (also the model's row gather): rows move as raw bits in
// units of 16 bytes when every row start is 16-byte aligned (4 or 2 otherwise; elem.cuh);
// block = units of a row (x) by rows (y), 256 threads. An id outside [0, V) is recorded as
// the op's error naming the row and the id, and that row of out becomes NaN.
//
// Backward, dtable[ids[n]] += dout[n] for each table row in the order n = 0..N-1, without
// float atomics (backend.h), in three steps on the workspace:
// 1. keys: key[n] = ids[n] (V for a bad id, recorded as the op's error; those rows are
//    skipped, and sort last), value n.
// 2. a stable LSD radix sort of (key, n) by key, 8 bits a pass, as many passes as V needs
//    (3 for a 151936-token vocabulary): per pass, a per-tile digit histogram (tiles of
//    kSortTile keys; shared-memory int atomics count, which is exact), one exclusive scan
//    over (digit, tile) in a single block, and a scatter that ranks each key among equal
//    digits of its tile in key order (__match_any_sync within a warp, per-warp counts across
//    the warps of a round, rounds in order). Stable, so within a key the values stay in
//    increasing n; only integer arithmetic, so it is exact and repeatable.
// 3. per run of equal keys (a table row) and chunk of 8 columns, one thread: it finds the
//    run's end (galloping then binary search on the sorted keys), then sums the run's rows
//    of dout into its chunk of the table row in fp32 in run order, i.e. in n order, from the
//    row's start value, and rounds once to table_dtype. Those are the CPU twin's bits
//    exactly (src/backend/cpu/elementwise.c). Rows of a run are loaded kUnroll at a time
//    before they are added in order, so a frequent token's long run is not one load latency
//    a row.
// Grid for step 3: (sorted positions / rows per block, column tiles); blocks whose position
// starts no run return at once.
#include "elem.cuh"

namespace SRLM_CUDA_NS {

namespace {

constexpr int kSortThreads = 256;
constexpr int kSortRounds = 4;                           // rounds of 256 keys a tile
constexpr int kSortTile = kSortThreads * kSortRounds;    // keys a block sorts
constexpr int kRadixBits = 8;
constexpr int kDigits = 1 << kRadixBits;
constexpr int kSortWarps = kSortThreads / kWarp;
constexpr int kScanThreads = 256;
constexpr int kUnroll = 4;
constexpr unsigned kMaxGridY = 65535u;

template <class U>
__global__ void __launch_bounds__(256)
    embedding_forward_kernel(srlm_embedding_params p, long long units, unsigned nan_w, kerr_rec *kerr) {
  const long long n = (long long)blockIdx.x * blockDim.y + threadIdx.y;
  if (n >= p.N) return;
  const int id = p.ids[n];
  const bool bad = id < 0 || id >= p.V;
  if (bad && threadIdx.x == 0) kerr_record(kerr, SRLM_OP_embedding_forward, KERR_TOKEN_ID, n, id, p.V);
  U *dst = static_cast<U *>(p.out) + n * units;                                       // (C) as units
  const U *src = static_cast<const U *>(p.table) + (bad ? 0 : (long long)id) * units;  // (C) as units
  for (long long j = threadIdx.x; j < units; j += blockDim.x)
    unit_st(dst + j, bad ? unit_fill<U>(nan_w) : unit_ld(src + j));
}

// Step 1: (key, value) = (id or V, n).
__global__ void __launch_bounds__(kSortThreads)
    embedding_keys_kernel(int *key, int *val, const int32_t *ids, long long N, long long V, kerr_rec *kerr) {
  for (long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += (long long)gridDim.x * blockDim.x) {
    const int id = ids[n];
    const bool bad = id < 0 || id >= V;
    if (bad) kerr_record(kerr, SRLM_OP_embedding_backward, KERR_TOKEN_ID, n, id, V);
    key[n] = bad ? (int)V : id;
    val[n] = (int)n;
  }
}

// Step 2a: hist[d * ntiles + tile] = how many keys of the tile have digit d.
__global__ void __launch_bounds__(kSortThreads)
    radix_hist_kernel(int *hist, const int *key, long long N, int shift, long long ntiles) {
  __shared__ int count[kDigits];
  const long long t0 = (long long)blockIdx.x * kSortTile;
  const long long t1 = t0 + kSortTile < N ? t0 + kSortTile : N;
  for (int d = threadIdx.x; d < kDigits; d += blockDim.x) count[d] = 0;
  __syncthreads();
  for (long long i = t0 + threadIdx.x; i < t1; i += blockDim.x) atomicAdd(&count[(key[i] >> shift) & (kDigits - 1)], 1);
  __syncthreads();
  for (int d = threadIdx.x; d < kDigits; d += blockDim.x) hist[d * ntiles + blockIdx.x] = count[d];
}

// Step 2b: exclusive prefix sum of a[0, M) in place, one block: each thread sums a
// contiguous slice, the slice sums are scanned in shared memory (Hillis-Steele), then each
// thread rewrites its slice.
__global__ void __launch_bounds__(kScanThreads) exclusive_scan_kernel(int *a, long long M) {
  __shared__ int sums[kScanThreads];
  const long long per = (M + kScanThreads - 1) / kScanThreads;
  const long long lo = threadIdx.x * per, hi = lo + per < M ? lo + per : M;
  int s = 0;
  for (long long i = lo; i < hi; i++) s += a[i];
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int off = 1; off < kScanThreads; off *= 2) {
    const int v = (int)threadIdx.x >= off ? sums[threadIdx.x - off] : 0;
    __syncthreads();
    sums[threadIdx.x] += v;
    __syncthreads();
  }
  int run = threadIdx.x ? sums[threadIdx.x - 1] : 0;
  for (long long i = lo; i < hi; i++) {
    const int t = a[i];
    a[i] = run;
    run += t;
  }
}

// Step 2c: stable scatter of the tile's (key, value) pairs to their sorted places. Every
// thread runs every round (the warp collectives need all lanes); lanes past N carry the
// digit kDigits, which no real key has, and write nothing.
__global__ void __launch_bounds__(kSortThreads)
    radix_scatter_kernel(int *key_out, int *val_out, const int *key, const int *val, const int *offsets, long long N,
                         int shift, long long ntiles) {
  __shared__ int running[kDigits];           // where the tile's next key of each digit goes
  __shared__ int wcount[kSortWarps][kDigits];  // keys of each digit per warp, this round
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int d = threadIdx.x; d < kDigits; d += blockDim.x) {
    running[d] = offsets[d * ntiles + blockIdx.x];
    for (int w = 0; w < kSortWarps; w++) wcount[w][d] = 0;
  }
  __syncthreads();
  for (int r = 0; r < kSortRounds; r++) {
    const long long i = (long long)blockIdx.x * kSortTile + (long long)r * kSortThreads + threadIdx.x;
    const bool valid = i < N;
    const int k = valid ? key[i] : 0;
    const int d = valid ? (k >> shift) & (kDigits - 1) : kDigits;
    const unsigned peers = __match_any_sync(0xffffffffu, d);
    const int rank = __popc(peers & ((1u << lane) - 1u));  // equal digits on lower lanes
    if (valid && rank == 0) wcount[warp][d] = __popc(peers);
    __syncthreads();
    if (valid) {
      int at = running[d] + rank;
      for (int w = 0; w < warp; w++) at += wcount[w][d];
      key_out[at] = k;
      val_out[at] = val[i];
    }
    __syncthreads();
    for (int dd = threadIdx.x; dd < kDigits; dd += blockDim.x) {
      int total = 0;
      for (int w = 0; w < kSortWarps; w++) {
        total += wcount[w][dd];
        wcount[w][dd] = 0;
      }
      running[dd] += total;
    }
    __syncthreads();
  }
}

// Step 3: the run of key sk[i] (when i starts one) summed into its table row, in run order.
template <class TT, class T>
__global__ void __launch_bounds__(256)
    embedding_sum_kernel(srlm_embedding_bwd_params p, const int *sk, const int *sv, bool vec) {
  const long long i = (long long)blockIdx.x * blockDim.y + threadIdx.y;
  if (i >= p.N) return;
  const int id = sk[i];
  if (id >= p.V || (i > 0 && sk[i - 1] == id)) return;  // a bad row, or not a run's start
  // The run is [i, end): gallop to a key past it, then bisect.
  long long good = i, step = 1, probe = i + 1;
  while (probe < p.N && sk[probe] == id) {
    good = probe;
    step *= 2;
    probe = i + step;
  }
  long long end = probe < p.N ? probe : p.N;
  while (end - good > 1) {
    const long long mid = good + (end - good) / 2;
    if (sk[mid] == id) good = mid;
    else end = mid;
  }
  const long long C = p.C, nch = chunks_of(C);
  TT *row = static_cast<TT *>(p.dtable) + (long long)id * C;  // (C) table_dtype
  const T *dout = static_cast<const T *>(p.dout);            // (N, C) dtype
  for (long long ch = (long long)blockIdx.y * blockDim.x + threadIdx.x; ch < nch;
       ch += (long long)gridDim.y * blockDim.x) {
    const long long c0 = ch * kChunk;
    float acc[kChunk];
    load_chunk(row, c0, C, vec, acc);
    long long j = i;
    for (; j + kUnroll <= end; j += kUnroll) {
      float v[kUnroll][kChunk];
#pragma unroll
      for (int u = 0; u < kUnroll; u++) load_chunk(dout + (long long)sv[j + u] * C, c0, C, vec, v[u]);
#pragma unroll
      for (int u = 0; u < kUnroll; u++)
#pragma unroll
        for (int k = 0; k < kChunk; k++) acc[k] += v[u][k];
    }
    for (; j < end; j++) {
      float v[kChunk];
      load_chunk(dout + (long long)sv[j] * C, c0, C, vec, v);
#pragma unroll
      for (int k = 0; k < kChunk; k++) acc[k] += v[k];
    }
    store_chunk(row, c0, C, vec, acc);
  }
}

}  // namespace

srlm_status op_embedding_forward(srlm_backend *be, srlm_embedding_params p) {
  const char *where = SRLM_CUDA_NAME " embedding_forward";
  SRLM_TRY(srlm_embedding_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  const size_t row = (size_t)p.C * srlm_dtype_size(p.dtype);
  SRLM_TRY(check_dev(where, "out", p.out, (size_t)p.N * row));
  SRLM_TRY(check_dev(where, "table", p.table, (size_t)p.V * row));
  SRLM_TRY(check_dev(where, "ids", p.ids, (size_t)p.N * sizeof(int32_t)));
  const void *ptrs[] = {p.out, p.table};
  const int ub = unit_bytes(row, ptrs, 2);
  const long long units = (long long)row / ub;
  const dim3 block = row_block(units);
  const unsigned grid = (unsigned)((p.N + block.y - 1) / block.y);
  context *c = ctx(be);
  SRLM_UNIT_SWITCH(ub, U, {
    auto k = embedding_forward_kernel<U>;
    SRLM_LAUNCH(k, grid, block, 0, c->stream, p, units, nan_word(p.dtype), c->kerr);
  });
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

srlm_status op_embedding_backward(srlm_backend *be, srlm_embedding_bwd_params p) {
  const char *where = SRLM_CUDA_NAME " embedding_backward";
  SRLM_TRY(srlm_embedding_bwd_params_check(&p, where));
  if (p.N == 0) return SRLM_OK;
  SRLM_TRY(check_dev(where, "dtable", p.dtable, (size_t)(p.V * p.C) * srlm_dtype_size(p.table_dtype)));
  SRLM_TRY(check_dev(where, "dout", p.dout, (size_t)(p.N * p.C) * srlm_dtype_size(p.dtype)));
  SRLM_TRY(check_dev(where, "ids", p.ids, (size_t)p.N * sizeof(int32_t)));
  context *c = ctx(be);
  const long long N = p.N, ntiles = (N + kSortTile - 1) / kSortTile;
  void *ws = nullptr;
  SRLM_TRY(workspace(c, (size_t)(4 * N + kDigits * ntiles) * sizeof(int), &ws));
  int *key = static_cast<int *>(ws), *val = key + N;  // (N) each, then the other buffer pair
  int *key2 = val + N, *val2 = key2 + N;
  int *hist = val2 + N;                               // (kDigits, ntiles)
  SRLM_LAUNCH(embedding_keys_kernel, grid_for(N, kSortThreads), kSortThreads, 0, c->stream, key, val, p.ids, N, p.V,
              c->kerr);
  SRLM_CUDA_LAUNCHED();
  int bits = 1;  // keys lie in [0, V], V included (bad rows)
  while (bits < 31 && (1LL << bits) <= p.V) bits++;
  for (int shift = 0; shift < bits; shift += kRadixBits) {
    SRLM_LAUNCH(radix_hist_kernel, (unsigned)ntiles, kSortThreads, 0, c->stream, hist, key, N, shift, ntiles);
    SRLM_CUDA_LAUNCHED();
    SRLM_LAUNCH(exclusive_scan_kernel, 1, kScanThreads, 0, c->stream, hist, (long long)kDigits * ntiles);
    SRLM_CUDA_LAUNCHED();
    SRLM_LAUNCH(radix_scatter_kernel, (unsigned)ntiles, kSortThreads, 0, c->stream, key2, val2, key, val, hist, N,
                shift, ntiles);
    SRLM_CUDA_LAUNCHED();
    int *t = key;
    key = key2, key2 = t;
    t = val;
    val = val2, val2 = t;
  }
  const long long nch = chunks_of(p.C);
  int bx = 1;  // threads along a row's chunks; the rest of the 256 take other positions
  while (bx < 128 && bx < nch) bx *= 2;
  const dim3 block((unsigned)bx, (unsigned)(256 / bx));
  const long long tiles = (nch + bx - 1) / bx;
  const dim3 grid((unsigned)((N + block.y - 1) / block.y), (unsigned)(tiles < kMaxGridY ? tiles : kMaxGridY));
  const bool vec = p.C % kChunk == 0 && all_aligned16({p.dtable, p.dout});
  SRLM_DTYPE_SWITCH(p.table_dtype, TT, SRLM_DTYPE_SWITCH(p.dtype, T, {
                      auto k = embedding_sum_kernel<TT, T>;
                      SRLM_LAUNCH(k, grid, block, 0, c->stream, p, key, val, vec);
                    }););
  SRLM_CUDA_LAUNCHED();
  return SRLM_OK;
}

}  // namespace SRLM_CUDA_NS
