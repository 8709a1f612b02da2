/* Which vector code the CPU backend runs: the best the CPU has (AMX's tiles for bf16
 * products, AVX-512 with the bf16 dot-product instruction, AVX-512, AVX2 + FMA, or
 * portable C), or a narrower level forced by srlm_backend_cpu_set_isa or, at the first
 * op, by the environment variable SRLM_CPU_ISA (tests run every level this way). The
 * build has no -march: vector code is compiled with target attributes and only called
 * at a level the CPU reports. */
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"

static const char *const k_names[] = {"generic", "avx2", "avx512", "avx512bf16", "amx"};
enum { N_LEVELS = sizeof k_names / sizeof k_names[0] };

/* avx512bf16 also needs the instruction to pass srlm_cpu_bf16_dot_ok's check (matmul.c):
 * a CPU whose vdpbf16ps rounds otherwise keeps the plain AVX-512 kernels. amx needs that
 * level and srlm_cpu_amx_ok (the tile unit, the OS's permission, matmul's check). */
static int cpu_best(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (srlm_cpu_amx_ok()) return SRLM_CPU_ISA_AMX;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16") && srlm_cpu_bf16_dot_ok())
    return SRLM_CPU_ISA_AVX512_BF16;
  if (__builtin_cpu_supports("avx512f")) return SRLM_CPU_ISA_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SRLM_CPU_ISA_AVX2;
#endif
  return SRLM_CPU_ISA_GENERIC;
}

static int parse(const char *name) {
  for (int i = 0; i < N_LEVELS; i++)
    if (!strcmp(name, k_names[i])) return i;
  return -1;
}

static int g_level = -1; /* -1: not decided yet */

int srlm_cpu_isa(void) {
  int l = __atomic_load_n(&g_level, __ATOMIC_RELAXED);
  if (l >= 0) return l;
  l = cpu_best();
  const char *env = getenv("SRLM_CPU_ISA");
  const int want = env ? parse(env) : -1;
  if (want >= 0 && want < l) l = want;
  __atomic_store_n(&g_level, l, __ATOMIC_RELAXED);
  return l;
}

srlm_status srlm_backend_cpu_set_isa(const char *isa) {
  const int best = cpu_best();
  if (!isa) {
    __atomic_store_n(&g_level, best, __ATOMIC_RELAXED);
    return SRLM_OK;
  }
  const int want = parse(isa);
  if (want < 0)
    return srlm_error(SRLM_ERR_CONFIG, "cpu backend", "unknown ISA '%s' (amx, avx512bf16, avx512, avx2, generic)", isa);
  if (want > best)
    return srlm_error(SRLM_ERR_UNSUPPORTED, "cpu backend", "this CPU has no %s (best: %s)", isa, k_names[best]);
  __atomic_store_n(&g_level, want, __ATOMIC_RELAXED);
  return SRLM_OK;
}

const char *srlm_backend_cpu_isa(void) { return k_names[srlm_cpu_isa()]; }
