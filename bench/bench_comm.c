/* bench_comm: the comm layer's weight broadcast and gradient all-reduce, swept over bucket
 * sizes, nccl-tests style (issue 10: "algbw/busbw per bucket size"). The srlm half of
 * bench/e2e.sh's comm rows; run it alone or under mpirun, every rank colocated (the learner
 * group and the broadcast comm are the whole world, comm.h).
 *
 *   [mpirun -np P] bench_comm [--backend cpu|cuda-sim|cuda] [--transport auto|mpi|nccl]
 *                             [--bytes N]  (the whole buffer: the model's weights or gradients)
 *                             [--min-bucket B] [--max-bucket B] (doubling from min to max; bytes)
 *                             [--iters I] [--warmup W] [--json PATH]
 *
 * Per bucket size, after W untimed calls, I timed calls between two barriers (rank 0's
 * clock, per call):
 *   bcast_weights    srlm_comm_bcast_weights of N bytes of fp32 from learner 0 in buckets of B
 *   allreduce_grads  the overlapped gradient reduce (srlm_comm_reduce_begin / _end) of N bytes
 *                    in buckets of B, the learner-rank-order sum (MPI) or ncclAllReduce (NCCL)
 * algbw = N / time. busbw, nccl-tests' factors: broadcast x 1, all-reduce x 2 (P - 1) / P (the
 * bytes each rank's link carries in a ring; 0 with one rank, where nothing crosses a link).
 * Correctness outside the timed calls: receivers hold the root's pattern bit for bit after a
 * broadcast, and an all-reduce of small integers gives their exact sum; a wrong value is
 * exit 1. With one GPU only the layouts it allows can be measured: one NCCL rank (NCCL's own
 * copy path, no link), or several ranks sharing the GPU over MPI through pinned host buffers;
 * NCCL over several GPUs needs several GPUs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srlm/backend.h"
#include "srlm/comm.h"
#include "srlm/core.h"

typedef struct opts {
  const char *backend, *json;
  srlm_comm_transport transport;
  int64_t bytes, min_bucket, max_bucket;
  int iters, warmup;
} opts;

typedef struct row {
  const char *op;
  int64_t bytes, bucket;
  double us, algbw, busbw;
  int ok;
} row;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_comm [--backend NAME] [--transport auto|mpi|nccl] [--bytes N] [--min-bucket B]\n"
                  "                  [--max-bucket B] [--iters I] [--warmup W] [--json PATH]\n");
}

static int parse(int argc, char **argv, opts *o) {
  *o = (opts){.backend = "cpu", .transport = SRLM_COMM_TRANSPORT_AUTO, .bytes = 64 << 20, .min_bucket = 1 << 20,
              .max_bucket = 64 << 20, .iters = 10, .warmup = 2};
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return usage(), 0;
    if (!strcmp(a, "--backend")) o->backend = v;
    else if (!strcmp(a, "--json")) o->json = v;
    else if (!strcmp(a, "--bytes")) o->bytes = atoll(v);
    else if (!strcmp(a, "--min-bucket")) o->min_bucket = atoll(v);
    else if (!strcmp(a, "--max-bucket")) o->max_bucket = atoll(v);
    else if (!strcmp(a, "--iters")) o->iters = atoi(v);
    else if (!strcmp(a, "--warmup")) o->warmup = atoi(v);
    else if (!strcmp(a, "--transport")) {
      static const char *const k[] = {"auto", "mpi", "nccl"};
      int t = -1;
      for (int j = 0; j < 3; j++)
        if (!strcmp(v, k[j])) t = j;
      if (t < 0) return fprintf(stderr, "bench_comm: --transport %s (auto, mpi or nccl)\n", v), 0;
      o->transport = (srlm_comm_transport)t;
    } else
      return usage(), 0;
  }
  if (o->bytes < 4 || o->min_bucket < 4 || o->max_bucket < o->min_bucket || o->iters < 1 || o->warmup < 0) {
    fprintf(stderr, "bench_comm: --bytes and --min-bucket >= 4, --max-bucket >= --min-bucket, --iters >= 1, "
                    "--warmup >= 0\n");
    return 0;
  }
  return 1;
}

/* the broadcast's pattern: exact in fp32, different per element and per bucket size */
static float pattern(int64_t i, int64_t bucket) { return (float)((i * 7 + bucket / 4) % 1021) - 510.0f; }

/* One bucket size of one op: warm-up, timed calls, then the check on fresh values. */
static srlm_status run_case(srlm_comm *c, srlm_backend *be, float *dev, float *host, int64_t n, int64_t bucket,
                            int bcast, const opts *o, row *r) {
  const int P = srlm_comm_size(c), me = srlm_comm_rank(c);
  const size_t bytes = (size_t)n * sizeof(float);
  srlm_status st = SRLM_OK;
  for (int it = -o->warmup; it < o->iters && st == SRLM_OK; it++) {
    if (it == 0) {
      st = srlm_backend_sync(be);
      if (st == SRLM_OK) st = srlm_comm_barrier(c);
      r->us = now();
    }
    if (st != SRLM_OK) break;
    if (bcast) {
      int64_t version = me == 0 ? it + o->warmup : -1;
      st = srlm_comm_bcast_weights(c, dev, n, SRLM_F32, &version, (size_t)bucket);
    } else {
      st = srlm_comm_reduce_begin(c, dev, n, NULL, (size_t)bucket);
      if (st == SRLM_OK) st = srlm_comm_reduce_end(c);
    }
  }
  if (st == SRLM_OK) st = srlm_backend_sync(be);
  if (st == SRLM_OK) st = srlm_comm_barrier(c);
  if (st != SRLM_OK) return st;
  const double secs = (now() - r->us) / o->iters;
  /* the check, untimed: the root's pattern everywhere, or the exact sum of 1 + rank + i % 5 */
  for (int64_t i = 0; i < n; i++)
    host[i] = bcast ? (me == 0 ? pattern(i, bucket) : NAN) : (float)(1 + me + i % 5);
  st = srlm_backend_copy_h2d(be, dev, host, bytes);
  if (st == SRLM_OK && bcast) {
    int64_t version = me == 0 ? 0 : -1;
    st = srlm_comm_bcast_weights(c, dev, n, SRLM_F32, &version, (size_t)bucket);
  } else if (st == SRLM_OK) {
    st = srlm_comm_reduce_begin(c, dev, n, NULL, (size_t)bucket);
    if (st == SRLM_OK) st = srlm_comm_reduce_end(c);
  }
  if (st == SRLM_OK) st = srlm_backend_copy_d2h(be, host, dev, bytes);
  if (st == SRLM_OK) st = srlm_backend_sync(be);
  int64_t bad = 0;
  for (int64_t i = 0; st == SRLM_OK && i < n; i++) {
    const float want = bcast ? pattern(i, bucket) : (float)(P * (1 + i % 5) + P * (P - 1) / 2);
    if (host[i] != want && bad++ < 3)
      fprintf(stderr, "bench_comm: rank %d, %s, bucket %lld: element %lld is %g, expected %g\n", me,
              bcast ? "bcast_weights" : "allreduce_grads", (long long)bucket, (long long)i, (double)host[i],
              (double)want);
  }
  double flag = bad != 0;
  if (st == SRLM_OK) st = srlm_comm_allreduce_f64(c, &flag, 1);
  r->op = bcast ? "bcast_weights" : "allreduce_grads";
  r->bytes = (int64_t)bytes;
  r->bucket = bucket < (int64_t)bytes ? bucket : (int64_t)bytes;
  r->us = secs * 1e6;
  r->algbw = (double)bytes / secs / 1e9;
  r->busbw = r->algbw * (bcast ? 1.0 : 2.0 * (P - 1) / P);
  r->ok = flag == 0;
  return st;
}

int main(int argc, char **argv) {
  opts o;
  if (!parse(argc, argv, &o)) return 2;
#if defined(SRLM_HAVE_CUDA) && SRLM_HAVE_CUDA
  if (srlm_backend_register(srlm_backend_cuda_ops()) != SRLM_OK) return fprintf(stderr, "bench_comm: %s\n", srlm_error_message()), 1;
#endif
  srlm_comm *c = NULL;
  if (srlm_comm_init(&argc, &argv, SRLM_COMM_MPI, &c) != SRLM_OK)
    return fprintf(stderr, "bench_comm: %s\n", srlm_error_message()), 1;
  const srlm_comm_roles roles = {1, 1, 1, true};
  srlm_backend *be = NULL;
  srlm_status st = srlm_comm_assign_roles(c, &roles);
  if (st == SRLM_OK) st = srlm_backend_open(o.backend, -1, &be); /* the local rank's device */
  if (st == SRLM_OK) srlm_comm_set_backend(c, be);
  if (st == SRLM_OK) st = srlm_comm_open_transport(c, o.transport);
  st = srlm_comm_agree(c, st);
  if (st != SRLM_OK) {
    if (srlm_comm_rank(c) == 0) fprintf(stderr, "bench_comm: %s\n", srlm_error_message());
    srlm_comm_free(c);
    return 1;
  }
  const int P = srlm_comm_size(c), me = srlm_comm_rank(c);
  const int64_t n = o.bytes / (int64_t)sizeof(float);
  float *dev = NULL, *host = srlm_xmalloc((size_t)n * sizeof *host);
  st = srlm_backend_alloc(be, (void **)&dev, (size_t)n * sizeof *dev);
  if (st == SRLM_OK) st = srlm_backend_zero(be, dev, (size_t)n * sizeof *dev);
  st = srlm_comm_agree(c, st);
  int cases = 0;
  for (int64_t b = o.min_bucket; b <= o.max_bucket; b *= 2) cases++;
  row *rows = srlm_xcalloc((size_t)(2 * cases + 1), sizeof *rows);
  int nr = 0;
  const double t0 = now();
  for (int bcast = 1; bcast >= 0 && st == SRLM_OK; bcast--)
    for (int64_t b = o.min_bucket; b <= o.max_bucket && st == SRLM_OK; b *= 2) {
      st = run_case(c, be, dev, host, n, b, bcast, &o, &rows[nr]);
      if (st == SRLM_OK) nr++;
    }
  int wrong = 0;
  for (int i = 0; i < nr; i++) wrong += !rows[i].ok;
  if (st != SRLM_OK) {
    fprintf(stderr, "bench_comm: rank %d: %s\n", me, srlm_error_message());
    srlm_comm_abort(c, st);
  }
  if (me == 0) {
    char mpi[256];
    srlm_comm_library_version(mpi, sizeof mpi);
    const char *tr[] = {"mpi", "nccl"};
    printf("# bench_comm: %d rank%s colocated, backend %s, transport learners %s, broadcast %s, %lld bytes, "
           "%d iters after %d warm-up, %.1f s\n# MPI: %s\n# busbw = algbw x 1 (broadcast), x 2(P-1)/P = %.3g "
           "(all-reduce, nccl-tests' factors)\n",
           P, P == 1 ? "" : "s", o.backend, tr[srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS)],
           tr[srlm_comm_transport_of(c, SRLM_COMM_GROUP_BCAST)], (long long)n * 4, o.iters, o.warmup, now() - t0, mpi,
           2.0 * (P - 1) / P);
    printf("# %-16s %12s %12s %12s %10s %10s %6s\n", "op", "bytes", "bucket", "time_us", "algbw", "busbw", "check");
    printf("# %-16s %12s %12s %12s %10s %10s %6s\n", "", "", "", "", "GB/s", "GB/s", "");
    for (int i = 0; i < nr; i++)
      printf("  %-16s %12lld %12lld %12.1f %10.3f %10.3f %6s\n", rows[i].op, (long long)rows[i].bytes,
             (long long)rows[i].bucket, rows[i].us, rows[i].algbw, rows[i].busbw, rows[i].ok ? "ok" : "WRONG");
    if (o.json) {
      FILE *f = fopen(o.json, "w");
      if (!f) {
        fprintf(stderr, "bench_comm: cannot write %s\n", o.json);
        wrong++;
      } else {
        fprintf(f, "{\"side\": \"srlm\", \"ranks\": %d, \"backend\": \"%s\", \"transport\": {\"learners\": \"%s\", "
                   "\"broadcast\": \"%s\"}, \"results\": [",
                P, o.backend, tr[srlm_comm_transport_of(c, SRLM_COMM_GROUP_LEARNERS)],
                tr[srlm_comm_transport_of(c, SRLM_COMM_GROUP_BCAST)]);
        for (int i = 0; i < nr; i++)
          fprintf(f, "%s{\"work\": \"%s\", \"bytes\": %lld, \"bucket\": %lld, \"time_us\": %.6g, \"algbw\": %.6g, "
                     "\"busbw\": %.6g, \"check\": %s}",
                  i ? ", " : "", rows[i].op, (long long)rows[i].bytes, (long long)rows[i].bucket, rows[i].us,
                  rows[i].algbw, rows[i].busbw, rows[i].ok ? "true" : "false");
        fprintf(f, "]}\n");
        fclose(f);
      }
    }
  }
  free(rows);
  free(host);
  srlm_comm_close_transport(c, SRLM_OK);
  srlm_comm_set_backend(c, NULL);
  (void)srlm_backend_free(be, dev);
  st = srlm_backend_close(be);
  srlm_comm_free(c);
  return wrong || st != SRLM_OK ? 1 : 0;
}
