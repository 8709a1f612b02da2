/* The CUDA backend's table and context ("cuda-sim" here, "cuda" on a GPU): create and
 * destroy, memory and copies, a host pointer passed where device memory is expected (named
 * by the call that caught it), the kernel error record's round trip (recorded by a kernel,
 * reported by sync/copy_d2h/destroy naming op, row and value, then cleared), the workspace;
 * then the ported kernels against host references: bf16 conversion, matmul in every layout
 * and dtype (the simulator's GEMM and the fallback kernel give the CPU's bits; cuBLASLt is
 * held to a tolerance), rmsnorm in fp32 and bf16, and the LM head's chunk kernels. */
#include <math.h>

#include <vector>

#include "logprob.cuh"
#include "sim_test.h"

namespace {

struct instance {
  srlm_backend be;
  instance() {
    be.ops = cuda_table();
    be.name = be.ops->name;
    be.device = 0;
    be.host_memory = be.ops->host_memory;
    be.ctx = nullptr;
  }
};

void test_table_and_memory() {
  const srlm_backend_ops *ops = cuda_table();
  EXPECT_STR_EQ(ops->name, SIM ? "cuda-sim" : "cuda");
  EXPECT_EQ_INT(ops->host_memory, 0);
  EXPECT(ops->matmul && ops->rmsnorm_forward, "matmul and rmsnorm_forward are in the table");
  // The table holds exactly the ops of SRLM_CUDA_OPS; the others stay NULL.
  int listed[SRLM_OP_COUNT] = {0};
#define LISTED_(op) listed[SRLM_OP_##op] = 1;
  SRLM_CUDA_OPS(LISTED_)
#undef LISTED_
  for (int i = 0; i < SRLM_OP_COUNT; i++)
    EXPECT(srlm_backend_has_op(ops, (srlm_op_id)i) == listed[i], "op %s: in the table %d, in SRLM_CUDA_OPS %d",
           srlm_op_names[i], srlm_backend_has_op(ops, (srlm_op_id)i), listed[i]);

  instance bad;
  FAILS(ops->create(&bad.be, 7), SRLM_ERR_RANGE, "device 7 out of range");

  instance in;
  OK(ops->create(&in.be, 0));
  srlm_backend *be = &in.be;
  void *p = (void *)1;
  OK(ops->alloc(be, &p, 0));
  EXPECT(p == nullptr, "alloc of 0 bytes gives NULL");
  OK(ops->free(be, nullptr));
  const size_t n = 1000;
  float host[1000], back[1000];
  for (size_t i = 0; i < n; i++) host[i] = (float)i * 0.5f;
  float *a = nullptr, *b = nullptr, *pinned = nullptr;
  OK(ops->alloc(be, (void **)&a, n * sizeof(float)));
  OK(ops->alloc(be, (void **)&b, n * sizeof(float)));
  OK(ops->host_alloc(be, (void **)&pinned, n * sizeof(float)));
  OK(ops->copy_h2d(be, a, host, n * sizeof(float)));
  OK(ops->copy_d2d(be, b, a, n * sizeof(float)));
  OK(ops->zero(be, a, 10 * sizeof(float)));
  OK(ops->copy_d2h(be, back, b, n * sizeof(float)));
  EXPECT(memcmp(back, host, sizeof back) == 0, "h2d, d2d, d2h round trip");
  OK(ops->copy_d2h(be, pinned, a, n * sizeof(float)));
  EXPECT(pinned[9] == 0.0f && pinned[10] == 5.0f, "zero: %g %g", pinned[9], pinned[10]);

  // A host pointer where device memory is expected (or the reverse) is named by the call.
  FAILS(ops->copy_h2d(be, back, host, sizeof(float)), SRLM_ERR_INTERNAL, "copy_h2d: the destination");
  FAILS(ops->copy_d2h(be, back, host, sizeof(float)), SRLM_ERR_INTERNAL, "copy_d2h: the source");
  FAILS(ops->copy_d2h(be, a, b, sizeof(float)), SRLM_ERR_INTERNAL, "copy_d2h: the destination");
  FAILS(ops->copy_d2d(be, a, host, sizeof(float)), SRLM_ERR_INTERNAL, "copy_d2d: the source");
  FAILS(ops->zero(be, back, sizeof(float)), SRLM_ERR_INTERNAL, "zero: the destination");
  FAILS(ops->copy_h2d(be, a, host, (n + 1) * sizeof(float)), SRLM_ERR_INTERNAL, "not device memory");
#if SIM  // kernels' pointer arguments are checked on the simulator only
  srlm_rmsnorm_params rp = {};
  rp.out = a;
  rp.x = host;  // host memory
  rp.w = b;
  rp.N = 2;
  rp.C = 8;
  rp.eps = 1e-6f;
  rp.dtype = SRLM_F32;
  FAILS(ops->rmsnorm_forward(be, rp), SRLM_ERR_INTERNAL, "cuda-sim rmsnorm_forward: x (");
  srlm_matmul_params mp = {};
  mp.c = a;
  mp.a = b;
  mp.b = host;
  mp.M = 2;
  mp.N = 3;
  mp.K = 4;
  FAILS(ops->matmul(be, mp), SRLM_ERR_INTERNAL, "cuda-sim matmul: b (");
  mp.b = b;
  mp.M = 40;
  mp.K = 40;  // a spans 40 x 40 floats: more than the allocation
  FAILS(ops->matmul(be, mp), SRLM_ERR_INTERNAL, "cuda-sim matmul: a (");
#endif

  // The workspace grows and keeps its contents' place until the next call.
  SRLM_CUDA_NS::context *c = SRLM_CUDA_NS::ctx(be);
  void *w1 = nullptr, *w2 = nullptr, *s1 = nullptr;
  OK(SRLM_CUDA_NS::workspace(c, 100, &w1));
  OK(SRLM_CUDA_NS::workspace(c, 50, &w2));
  EXPECT(w1 && w1 == w2, "a smaller request reuses the workspace");
  OK(SRLM_CUDA_NS::workspace(c, 1 << 20, &w2));
  EXPECT(w2 != nullptr && c->work_bytes >= (1u << 20), "the workspace grew to %zu", c->work_bytes);
  OK(SRLM_CUDA_NS::staging(c, 4096, &s1));
  EXPECT(s1 != nullptr, "staging");
  memset(s1, 1, 4096);  // pinned host memory: the host may write it

  OK(ops->free(be, a));
  OK(ops->free(be, b));
  OK(ops->host_free(be, pinned));
  OK(ops->destroy(be));
  EXPECT(be->ctx == nullptr, "destroy clears the context");
}

// The kernel error record: a bad target in the LM head's finalize kernel.
void test_kernel_errors() {
  const srlm_backend_ops *ops = cuda_table();
  instance in;
  OK(ops->create(&in.be, 0));
  srlm_backend *be = &in.be;
  SRLM_CUDA_NS::context *c = SRLM_CUDA_NS::ctx(be);
  const long long N = 4, V = 5;
  const int32_t targets[4] = {1, -1, 7, -3};
  const float m[4] = {1, 1, 1, 1}, s[4] = {2, 2, 2, 2}, zt[4] = {0.5f, 0, 0, 0};
  int32_t *dt;
  float *dm, *ds, *dz, *logp, *lse;
  OK(ops->alloc(be, (void **)&dt, sizeof targets));
  OK(ops->alloc(be, (void **)&dm, sizeof m));
  OK(ops->alloc(be, (void **)&ds, sizeof s));
  OK(ops->alloc(be, (void **)&dz, sizeof zt));
  OK(ops->alloc(be, (void **)&logp, sizeof m));
  OK(ops->alloc(be, (void **)&lse, sizeof m));
  OK(ops->copy_h2d(be, dt, targets, sizeof targets));
  OK(ops->copy_h2d(be, dm, m, sizeof m));
  OK(ops->copy_h2d(be, ds, s, sizeof s));
  OK(ops->copy_h2d(be, dz, zt, sizeof zt));
  for (int round = 0; round < 3; round++) {
    OK(SRLM_CUDA_NS::lmhead_finalize(c, logp, lse, dm, ds, dz, dt, N, V, SRLM_OP_lmhead_forward));
    const char *want = SIM ? "cuda-sim lmhead_forward: row 2: target id 7 out of range [0, 5)"
                           : "cuda lmhead_forward: row 2: target id 7 out of range [0, 5)";
    if (round == 0) {
      FAILS(ops->sync(be), SRLM_ERR_RANGE, want);  // the first bad row claims the record
      OK(ops->sync(be));                           // and it is cleared once reported
    } else if (round == 1) {
      float h[4];
      FAILS(ops->copy_d2h(be, h, logp, sizeof h), SRLM_ERR_RANGE, want);
      EXPECT(h[0] == 0.5f - 1.0f - logf(2.0f) && h[1] == 0.0f && isnan(h[2]) && isnan(h[3]),
             "logp %g %g %g %g (the copy completed before the error was reported)", h[0], h[1], h[2], h[3]);
    } else {
      void *bufs[] = {dt, dm, ds, dz, logp, lse};
      for (void *b : bufs) OK(ops->free(be, b));
      FAILS(ops->destroy(be), SRLM_ERR_RANGE, want);  // destroy reports what is pending
    }
  }
}

// bf16 conversion on the device, bit for bit against the CPU's (NaN: the canonical 0x7fff).
__global__ void bf16_kernel(const float *in, unsigned short *out, float *back, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const __nv_bfloat16 b = __float2bfloat16_rn(in[i]);
  out[i] = __bfloat16_as_ushort(b);
  back[i] = __bfloat162float(b);
}

void test_bf16() {
  std::vector<float> x;
  const uint32_t specials[] = {0x00000000u, 0x80000000u, 0x3f800000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                               0x7f7fffffu, 0x7f7f8000u, 0x00000001u, 0x00008000u, 0x00018000u, 0x807fffffu,
                               0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u};
  for (uint32_t u : specials) {
    float f;
    memcpy(&f, &u, 4);
    x.push_back(f);
  }
  for (uint32_t i = 0; i < 4000; i++) {
    const uint32_t u = i * 1073741u + 12345u;
    float f;
    memcpy(&f, &u, 4);
    x.push_back(f);
  }
  const int n = (int)x.size();
  float *din = dev_from(x.data(), n), *dback = dev_from<float>(nullptr, n);
  unsigned short *dout = dev_from<unsigned short>(nullptr, n);
  SRLM_LAUNCH(bf16_kernel, (n + 127) / 128, 128, 0, 0, din, dout, dback, n);
  if (cudaGetLastError() != cudaSuccess || cudaDeviceSynchronize() != cudaSuccess) {
    EXPECT(0, "bf16 kernel failed");
    return;
  }
  std::vector<unsigned short> out(n);
  std::vector<float> back(n);
  to_host(out.data(), dout, n);
  to_host(back.data(), dback, n);
  int bad = 0;
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, &x[i], 4);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const unsigned short want = nan ? 0x7fff : srlm_f32_to_bf16(x[i]);
    if (out[i] != want || (!nan && back[i] != srlm_bf16_to_f32(want))) {
      if (bad++ < 4) fprintf(stderr, "  0x%08x -> 0x%04x, expected 0x%04x\n", u, out[i], want);
    }
  }
  EXPECT(bad == 0, "bf16 rounding: %d of %d values differ from the CPU's", bad, n);
  cudaFree(din);
  cudaFree(dback);
  cudaFree(dout);
}

// The CPU's matmul contract (backend.h) on the host: one fma chain per element.
void ref_matmul(const srlm_matmul_params &p, const std::vector<float> &A, const std::vector<float> &B,
                const std::vector<float> &bias, std::vector<float> &C) {
  for (int64_t m = 0; m < p.M; m++)
    for (int64_t n = 0; n < p.N; n++) {
      float acc = p.accumulate ? C[m * p.ldc + n] : 0.0f;
      for (int64_t k = 0; k < p.K; k++) {
        const float a = p.trans_a ? A[k * p.lda + m] : A[m * p.lda + k];
        const float b = p.trans_b ? B[n * p.ldb + k] : B[k * p.ldb + n];
        acc = fmaf(a, b, acc);
      }
      if (p.bias) acc += bias[n];
      C[m * p.ldc + n] = p.c_dtype == SRLM_BF16 ? srlm_round_bf16(acc) : acc;
    }
}

// Host data in a dtype, widened values kept for the reference.
void *to_dtype(const std::vector<float> &v, srlm_dtype dt, std::vector<float> *widened) {
  const size_t n = v.size(), es = srlm_dtype_size(dt);
  unsigned char *out = (unsigned char *)malloc(n * es + 1);
  srlm_convert(out, dt, v.data(), SRLM_F32, n);
  widened->resize(n);
  srlm_convert(widened->data(), SRLM_F32, out, dt, n);
  return out;
}

void test_matmul() {
  const srlm_backend_ops *ops = cuda_table();
  instance in;
  OK(ops->create(&in.be, 0));
  srlm_backend *be = &in.be;
  int cases = 0, exact_cases = 0;
  double worst = 0;
  for (int shape = 0; shape < 3; shape++)
    for (int combo = 0; combo < 64; combo++) {
      srlm_matmul_params p = {};
      const int64_t dims[3][3] = {{5, 7, 9}, {33, 17, 70}, {3, 4, 0}};
      p.M = dims[shape][0];
      p.N = dims[shape][1];
      p.K = dims[shape][2];
      p.trans_a = combo & 1;
      p.trans_b = combo >> 1 & 1;
      const bool has_bias = combo >> 2 & 1;
      p.accumulate = combo >> 3 & 1;
      p.dtype = (combo >> 4 & 1) ? SRLM_BF16 : SRLM_F32;
      p.c_dtype = (combo >> 5 & 1) ? SRLM_BF16 : SRLM_F32;
      const int64_t pad = shape == 1 ? 3 : 0;  // strides past the dense row length
      const int64_t arows = p.trans_a ? p.K : p.M, acols = p.trans_a ? p.M : p.K;
      const int64_t brows = p.trans_b ? p.N : p.K, bcols = p.trans_b ? p.K : p.N;
      p.lda = acols + pad;
      p.ldb = bcols + pad;
      p.ldc = p.N + pad;
      std::vector<float> A((size_t)(arows * p.lda + 1)), B((size_t)(brows * p.ldb + 1)), bias((size_t)p.N),
          C((size_t)(p.M * p.ldc));
      for (size_t i = 0; i < A.size(); i++) A[i] = val((uint32_t)i, 1 + combo, -1, 1);
      for (size_t i = 0; i < B.size(); i++) B[i] = val((uint32_t)i, 2 + combo, -1, 1);
      for (size_t i = 0; i < bias.size(); i++) bias[i] = val((uint32_t)i, 3, -0.5f, 0.5f);
      for (size_t i = 0; i < C.size(); i++) C[i] = val((uint32_t)i, 4, -2, 2);
      std::vector<float> Aw, Bw, biasw, Cw;
      void *ha = to_dtype(A, p.dtype, &Aw), *hb = to_dtype(B, p.dtype, &Bw);
      void *hbias = to_dtype(bias, p.c_dtype, &biasw), *hc = to_dtype(C, p.c_dtype, &Cw);
      const size_t as = srlm_dtype_size(p.dtype), cs = srlm_dtype_size(p.c_dtype);
      void *da, *db, *dbias, *dc;
      OK(ops->alloc(be, &da, A.size() * as));
      OK(ops->alloc(be, &db, B.size() * as));
      OK(ops->alloc(be, &dbias, bias.size() * cs));
      OK(ops->alloc(be, &dc, C.size() * cs));
      OK(ops->copy_h2d(be, da, ha, A.size() * as));
      OK(ops->copy_h2d(be, db, hb, B.size() * as));
      OK(ops->copy_h2d(be, dbias, hbias, bias.size() * cs));
      std::vector<float> ref = Cw;
      p.a = da;
      p.b = db;
      p.c = dc;
      p.bias = has_bias ? dbias : nullptr;
      srlm_matmul_params pr = p;
      pr.bias = has_bias ? (void *)1 : nullptr;
      ref_matmul(pr, Aw, Bw, biasw, ref);
      std::vector<float> got(C.size());
      void *hgot = malloc(C.size() * cs);
      for (int path = 0; path < 2; path++) {  // the op, then the fallback kernel directly
        OK(ops->copy_h2d(be, dc, hc, C.size() * cs));
        if (path == 0) OK(ops->matmul(be, p));
        else if (p.K > 0) OK(SRLM_CUDA_NS::gemm_fallback(SRLM_CUDA_NS::ctx(be), &p));
        else continue;
        OK(ops->copy_d2h(be, hgot, dc, C.size() * cs));
        srlm_convert(got.data(), SRLM_F32, hgot, p.c_dtype, C.size());
        // The simulator's GEMM and the fallback kernel follow the CPU's chain exactly; cuBLASLt
        // sums in its own order: within K fp32 roundings of the largest term, plus one bf16
        // rounding of the result.
        const bool exact = SIM || path == 1;
        int bad = 0;
        for (int64_t m = 0; m < p.M; m++)
          for (int64_t n = 0; n < p.N; n++) {
            const double r = ref[m * p.ldc + n], g = got[m * p.ldc + n];
            const double tol = exact ? 0.0 : (p.K + 4) * 1.2e-7 * (2.0 + fabs(r)) + (p.c_dtype == SRLM_BF16 ? fabs(r) / 128 : 0);
            if (fabs(r - g) > tol) bad++;
            if (!exact && fabs(r - g) > worst) worst = fabs(r - g);
          }
        for (int64_t m = 0; m < p.M; m++)  // the padding between rows is never written
          for (int64_t n = p.N; n < p.ldc && m + 1 < p.M; n++) bad += got[m * p.ldc + n] != Cw[m * p.ldc + n];
        EXPECT(bad == 0, "matmul M=%lld N=%lld K=%lld trans %d%d bias %d acc %d %s->%s (%s): %d elements off",
               (long long)p.M, (long long)p.N, (long long)p.K, p.trans_a, p.trans_b, has_bias, p.accumulate,
               srlm_dtype_name(p.dtype), srlm_dtype_name(p.c_dtype), path ? "fallback kernel" : "op", bad);
        cases++;
        exact_cases += exact;
      }
      free(hgot);
      free(ha);
      free(hb);
      free(hbias);
      free(hc);
      OK(ops->free(be, da));
      OK(ops->free(be, db));
      OK(ops->free(be, dbias));
      OK(ops->free(be, dc));
    }
  fprintf(stderr, "matmul: %d cases (%d bit-exact to the CPU contract)%s\n", cases, exact_cases,
          SIM ? "" : ", cuBLASLt's largest difference printed below");
  if (!SIM) fprintf(stderr, "matmul: cuBLASLt max |diff| %.3g\n", worst);
  OK(ops->destroy(be));
}

void test_rmsnorm() {
  const srlm_backend_ops *ops = cuda_table();
  instance in;
  OK(ops->create(&in.be, 0));
  srlm_backend *be = &in.be;
  const int64_t shapes[][2] = {{1, 1}, {3, 31}, {17, 64}, {9, 1000}};
  for (auto &sh : shapes)
    for (int d = 0; d < 2; d++)
      for (int inplace = 0; inplace < 2; inplace++) {
        const int64_t N = sh[0], C = sh[1];
        const srlm_dtype dt = d ? SRLM_BF16 : SRLM_F32;
        std::vector<float> x((size_t)(N * C)), w((size_t)C), xw, ww;
        for (size_t i = 0; i < x.size(); i++) x[i] = val((uint32_t)i, 11, -3, 3);
        for (size_t i = 0; i < w.size(); i++) w[i] = val((uint32_t)i, 12, 0.5f, 1.5f);
        void *hx = to_dtype(x, dt, &xw), *hw = to_dtype(w, dt, &ww);
        const size_t es = srlm_dtype_size(dt);
        void *dx, *dw, *dout;
        float *drstd;
        OK(ops->alloc(be, &dx, x.size() * es));
        OK(ops->alloc(be, &dw, w.size() * es));
        OK(ops->alloc(be, &dout, x.size() * es));
        OK(ops->alloc(be, (void **)&drstd, (size_t)N * sizeof(float)));
        OK(ops->copy_h2d(be, dx, hx, x.size() * es));
        OK(ops->copy_h2d(be, dw, hw, w.size() * es));
        srlm_rmsnorm_params p = {};
        p.out = inplace ? dx : dout;
        p.rstd = inplace ? nullptr : drstd;
        p.x = dx;
        p.w = dw;
        p.N = N;
        p.C = C;
        p.eps = 1e-6f;
        p.dtype = dt;
        OK(ops->rmsnorm_forward(be, p));
        void *hout = malloc(x.size() * es);
        std::vector<float> out(x.size()), rstd((size_t)N);
        OK(ops->copy_d2h(be, hout, p.out, x.size() * es));
        if (!inplace) OK(ops->copy_d2h(be, rstd.data(), drstd, (size_t)N * sizeof(float)));
        srlm_convert(out.data(), SRLM_F32, hout, dt, x.size());
        int bad = 0;
        for (int64_t n = 0; n < N; n++) {
          double ss = 0;
          for (int64_t c = 0; c < C; c++) ss += (double)xw[n * C + c] * xw[n * C + c];
          const double r = 1.0 / sqrt(ss / (double)C + 1e-6);
          if (!inplace && fabs(rstd[n] - r) > 4e-7 * r) bad++;
          for (int64_t c = 0; c < C; c++) {
            const double ref = xw[n * C + c] * r * ww[c];
            // fp32: a few ulps (the sum of squares is in another order); bf16: one rounding
            const double tol = dt == SRLM_BF16 ? fabs(ref) / 128 + 1e-30 : 8e-7 * fabs(ref) + 1e-30;
            if (fabs(out[n * C + c] - ref) > tol) bad++;
          }
        }
        EXPECT(bad == 0, "rmsnorm N=%lld C=%lld %s %s: %d values off", (long long)N, (long long)C, srlm_dtype_name(dt),
               inplace ? "in place" : "", bad);
        free(hout);
        free(hx);
        free(hw);
        OK(ops->free(be, dx));
        OK(ops->free(be, dw));
        OK(ops->free(be, dout));
        OK(ops->free(be, drstd));
      }
  OK(ops->destroy(be));
}

// The LM head's chunk kernels: fold three chunks of fp32 logits, finalize, and dz in both
// dtypes, against double references.
void test_lmhead_chunks() {
  const srlm_backend_ops *ops = cuda_table();
  instance in;
  OK(ops->create(&in.be, 0));
  srlm_backend *be = &in.be;
  SRLM_CUDA_NS::context *c = SRLM_CUDA_NS::ctx(be);
  const long long N = 6, V = 40000, Vc = 16384;
  std::vector<float> z((size_t)(N * V));
  for (size_t i = 0; i < z.size(); i++) z[i] = val((uint32_t)i, 21, -8, 8);
  z[3 * V + 5] = -INFINITY;
  const int32_t targets[6] = {0, 39999, -1, 5, 16384, 20000};
  float *dz, *dm, *ds, *dzt, *dlogp, *dlse, *ddl;
  int32_t *dt;
  OK(ops->alloc(be, (void **)&dz, z.size() * 4));
  OK(ops->alloc(be, (void **)&dm, N * 4));
  OK(ops->alloc(be, (void **)&ds, N * 4));
  OK(ops->alloc(be, (void **)&dzt, N * 4));
  OK(ops->alloc(be, (void **)&dlogp, N * 4));
  OK(ops->alloc(be, (void **)&dlse, N * 4));
  OK(ops->alloc(be, (void **)&ddl, N * 4));
  OK(ops->alloc(be, (void **)&dt, sizeof targets));
  OK(ops->copy_h2d(be, dz, z.data(), z.size() * 4));
  OK(ops->copy_h2d(be, dt, targets, sizeof targets));
  const float minf[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY}, zero[6] = {0};
  OK(ops->copy_h2d(be, dm, minf, sizeof minf));
  OK(ops->copy_h2d(be, ds, zero, sizeof zero));
  for (long long v0 = 0; v0 < V; v0 += Vc) {
    SRLM_CUDA_NS::lmhead_chunk ch = {dz + v0, V, N, V - v0 < Vc ? V - v0 : Vc, v0, dt, dm, ds, dzt, 0};
    OK(SRLM_CUDA_NS::lmhead_fold(c, ch));
  }
  OK(SRLM_CUDA_NS::lmhead_finalize(c, dlogp, dlse, dm, ds, dzt, dt, N, V, SRLM_OP_lmhead_forward));
  float logp[6], lse[6];
  OK(ops->copy_d2h(be, logp, dlogp, sizeof logp));
  OK(ops->copy_d2h(be, lse, dlse, sizeof lse));
  std::vector<double> rlse(N);
  for (long long n = 0; n < N; n++) {
    double m = -INFINITY, s = 0;
    for (long long v = 0; v < V; v++) m = z[n * V + v] > m ? z[n * V + v] : m;
    for (long long v = 0; v < V; v++) s += exp((double)z[n * V + v] - m);
    rlse[n] = m + log(s);
    const double rlogp = targets[n] < 0 ? 0.0 : z[n * V + targets[n]] - rlse[n];
    EXPECT_NEAR(lse[n], rlse[n], 4e-6 * (1 + fabs(rlse[n])));
    if (isinf(rlogp)) EXPECT(logp[n] == rlogp, "row %lld: logp %g, expected %g", n, logp[n], rlogp);  // a -inf target
    else EXPECT_NEAR(logp[n], rlogp, 4e-6 * (1 + fabs(rlogp)));
  }
  const float dl[6] = {1.0f, -0.5f, 0.0f, 2.0f, 0.25f, 1.0f};
  OK(ops->copy_h2d(be, ddl, dl, sizeof dl));
  for (int d = 0; d < 2; d++) {
    const srlm_dtype dt_ = d ? SRLM_BF16 : SRLM_F32;
    const size_t es = srlm_dtype_size(dt_);
    void *ddz;
    OK(ops->alloc(be, &ddz, (size_t)(N * Vc) * es));
    const long long v0 = 16384;  // the middle chunk
    SRLM_CUDA_NS::lmhead_chunk ch = {dz + v0, V, N, Vc, v0, dt, nullptr, nullptr, nullptr, 0};
    OK(SRLM_CUDA_NS::lmhead_dz(c, ddz, Vc, dt_, ch, dlse, ddl, V, SRLM_OP_lmhead_backward));
    std::vector<unsigned char> raw((size_t)(N * Vc) * es);
    std::vector<float> g((size_t)(N * Vc));
    OK(ops->copy_d2h(be, raw.data(), ddz, raw.size()));
    srlm_convert(g.data(), SRLM_F32, raw.data(), dt_, g.size());
    int bad = 0;
    for (long long n = 0; n < N; n++)
      for (long long v = 0; v < Vc; v++) {
        const double p = exp((double)z[n * V + v0 + v] - rlse[n]);
        const double ref = dl[n] * ((v0 + v == targets[n] ? 1.0 : 0.0) - p);
        const double tol = d ? fabs(ref) / 128 + 1e-30 : 1e-5 * (fabs(ref) + fabs(dl[n]) * p) + 1e-30;
        if (fabs(g[n * Vc + v] - ref) > tol) bad++;
      }
    EXPECT(bad == 0, "lmhead dz (%s): %d of %lld values off", srlm_dtype_name(dt_), bad, N * Vc);
    OK(ops->free(be, ddz));
  }
  void *bufs[] = {dz, dm, ds, dzt, dlogp, dlse, ddl, dt};
  for (void *b : bufs) OK(ops->free(be, b));
  OK(ops->destroy(be));
}

}  // namespace

int main() {
  test_table_and_memory();
  test_kernel_errors();
  test_bf16();
  test_matmul();
  test_rmsnorm();
  test_lmhead_chunks();
  TEST_MAIN_END();
}
