/* srlm core: status codes and error reporting, logging, always-on checks,
 * library-call checks, arena allocator, Philox4x32-10 RNG, monotonic timers.
 *
 * Errors: library code never prints and never exits. A failing function calls
 * srlm_error(code, where, fmt, ...), which records "where: what" in a
 * thread-local slot and returns the code; callers propagate the code upward
 * (optionally prefixing more context with srlm_error_context). Only the top
 * level (the CLI, a role's main) prints srlm_error_message() and chooses the
 * exit status with srlm_status_exit_code().
 */
#ifndef SRLM_CORE_H
#define SRLM_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#define SRLM_NORETURN [[noreturn]]
extern "C" {
#else
#define SRLM_NORETURN _Noreturn
#endif

/* ---- status codes ------------------------------------------------------ */

typedef enum srlm_status {
  SRLM_OK = 0,
  SRLM_ERR_USAGE,       /* bad command line (exit 2) */
  SRLM_ERR_CONFIG,      /* bad config value/key/override (exit 2) */
  SRLM_ERR_IO,          /* cannot open/read/write/rename a file */
  SRLM_ERR_FORMAT,      /* a file's content is malformed */
  SRLM_ERR_UNSUPPORTED, /* valid input that srlm does not support */
  SRLM_ERR_NOMEM,       /* allocation failed */
  SRLM_ERR_RANGE,       /* value out of range (ids, sizes, indices) */
  SRLM_ERR_LIB,         /* a library call (CUDA, cuBLAS, NCCL, MPI, HDF5, ...) failed */
  SRLM_ERR_INTERNAL,    /* a broken invariant */
  SRLM_ERR_STOPPED,     /* stopped by a signal after a checkpoint: run again with --resume (exit 75) */
  SRLM_STATUS_COUNT
} srlm_status;

/* Short stable name of a code, e.g. "format error". */
const char *srlm_status_name(srlm_status code);

/* Process exit status for a code: 0 for OK, 2 for usage and config errors, 75 (EX_TEMPFAIL) for
 * SRLM_ERR_STOPPED, 1 otherwise. */
int srlm_status_exit_code(srlm_status code);

/* Records "where: what" as this thread's last error and returns code.
 * where names the file, line, key or tensor ("model.safetensors: tensor 'wte'"). */
srlm_status srlm_error(srlm_status code, const char *where, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
srlm_status srlm_verror(srlm_status code, const char *where, const char *fmt, va_list ap);

/* Prefixes the current message with "ctx: " (keeps the code); returns the code. */
srlm_status srlm_error_context(srlm_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The last error message of this thread ("" when none) and its code. */
const char *srlm_error_message(void);
srlm_status srlm_error_code(void);
void srlm_error_clear(void);

/* Propagate a non-OK status from an expression. */
#define SRLM_TRY(expr)                    \
  do {                                    \
    srlm_status srlm_try_st_ = (expr);    \
    if (srlm_try_st_ != SRLM_OK) return srlm_try_st_; \
  } while (0)

/* ---- logging (stderr; stdout is for results) ---------------------------- */

typedef enum srlm_log_level {
  SRLM_LOG_DEBUG = 0,
  SRLM_LOG_INFO,
  SRLM_LOG_WARN,
  SRLM_LOG_ERROR
} srlm_log_level;

/* Prefix every line with "[rank R role]". rank < 0 means no rank (single process). */
void srlm_log_set_context(int rank, const char *role);
void srlm_log_set_level(srlm_log_level level);
int srlm_log_rank(void);
/* The device index printed by library-call checks (-1: CPU). */
void srlm_log_set_device(int device);
int srlm_log_device(void);
void srlm_log(srlm_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SRLM_DEBUG(...) srlm_log(SRLM_LOG_DEBUG, __VA_ARGS__)
#define SRLM_INFO(...) srlm_log(SRLM_LOG_INFO, __VA_ARGS__)
#define SRLM_WARN(...) srlm_log(SRLM_LOG_WARN, __VA_ARGS__)
#define SRLM_ERROR(...) srlm_log(SRLM_LOG_ERROR, __VA_ARGS__)

/* ---- always-on checks -------------------------------------------------- */

/* Called by SRLM_CHECK failures before the process ends (the comm module installs
 * one that calls MPI_Abort, so a broken invariant on one rank ends every rank). */
typedef void (*srlm_abort_hook)(int exit_code);
void srlm_set_abort_hook(srlm_abort_hook hook);
SRLM_NORETURN void srlm_fatal(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An invariant that stays on in Release builds (unlike assert). */
#define SRLM_CHECK(cond, ...)                                        \
  do {                                                               \
    if (!(cond)) srlm_fatal(__FILE__, __LINE__, "check '" #cond "' failed: " __VA_ARGS__); \
  } while (0)

/* ---- library-call checks ------------------------------------------------ */

/* Records a failed library call (statement, code, description, file:line, rank, device)
 * as an SRLM_ERR_LIB error and returns SRLM_ERR_LIB. */
srlm_status srlm_lib_error(const char *lib, const char *stmt, long long rc, const char *desc,
                           const char *file, int line);

/* One pattern for every library: evaluates `call` once into `srlm_rc` of type `rc_type`;
 * if `ok` (an expression over srlm_rc) is false, returns SRLM_ERR_LIB from the enclosing
 * function with the statement, file:line, rank and device. Each backend wraps it, e.g.
 *   #define SRLM_CUDA(call) SRLM_LIB_CALL("CUDA", cudaError_t, call, srlm_rc == cudaSuccess, cudaGetErrorString(srlm_rc))
 *   #define SRLM_H5(call)   SRLM_LIB_CALL("HDF5", hid_t, call, srlm_rc >= 0, "see the HDF5 error stack above") */
#define SRLM_LIB_CALL(lib, rc_type, call, ok, desc)                                  \
  do {                                                                               \
    rc_type srlm_rc = (call);                                                        \
    if (!(ok)) return srlm_lib_error(lib, #call, (long long)srlm_rc, (desc), __FILE__, __LINE__); \
  } while (0)

/* Functions of the headers shared by C and CUDA kernels (losses, sampling, Philox):
 * static inline, and __host__ __device__ under nvcc. */
#ifdef __CUDACC__
#define SRLM_HD static inline __host__ __device__
#else
#define SRLM_HD static inline
#endif

/* ---- element types -------------------------------------------------------- */

/* Storage types of backend tensors (backend.h). bf16 is the top half of an fp32. */
typedef enum srlm_dtype { SRLM_F32 = 0, SRLM_BF16 = 1 } srlm_dtype;
size_t srlm_dtype_size(srlm_dtype dt);   /* 4, 2; 0 for an invalid value */
const char *srlm_dtype_name(srlm_dtype dt); /* "fp32", "bf16" ("?" when invalid) */
/* "fp32" / "bf16" (also "f32", "float32", "bfloat16") to a dtype; SRLM_ERR_CONFIG
 * naming `where` otherwise. */
srlm_status srlm_dtype_parse(const char *s, const char *where, srlm_dtype *out);
/* bf16 <-> fp32: widening is exact; narrowing rounds to nearest, ties to even (a carry
 * into the exponent is correct rounding, so large values round to inf); NaN stays a
 * quiet NaN. */
static inline float srlm_bf16_to_f32(uint16_t b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
static inline uint16_t srlm_f32_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
/* f rounded to bf16 and widened back. */
static inline float srlm_round_bf16(float f) { return srlm_bf16_to_f32(srlm_f32_to_bf16(f)); }
/* n elements from src (dtype sdt) to dst (dtype ddt), host memory; may not overlap. */
void srlm_convert(void *dst, srlm_dtype ddt, const void *src, srlm_dtype sdt, size_t n);

/* ---- arena allocator ---------------------------------------------------- */

/* A bump allocator over a chain of blocks: many small allocations, one free.
 * Memory is zeroed. Never returns NULL: out of memory is fatal (SRLM_CHECK). */
typedef struct srlm_arena_block srlm_arena_block;
typedef struct srlm_arena {
  srlm_arena_block *head;
  size_t block_size; /* default size of a new block */
  size_t used;       /* bytes handed out (for reporting) */
} srlm_arena;

void srlm_arena_init(srlm_arena *a, size_t block_size);
void *srlm_arena_alloc(srlm_arena *a, size_t size, size_t align);
char *srlm_arena_strdup(srlm_arena *a, const char *s);
char *srlm_arena_strndup(srlm_arena *a, const char *s, size_t n);
void srlm_arena_reset(srlm_arena *a); /* keeps the first block */
void srlm_arena_free(srlm_arena *a);

/* ---- Philox4x32-10 counter-based RNG ------------------------------------ */

/* Randomness is a function of (key, counter): the same inputs always give the same
 * bits, whichever rank or batch asks. Salmon et al. 2011, Random123 KAT vectors. */
typedef struct srlm_philox_out { uint32_t v[4]; } srlm_philox_out;
srlm_philox_out srlm_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2]);

/* Convenience keyed stream: key = seed, counter = (a, b, c, d) of the caller's choosing
 * (purpose, iteration, prompt index, sample/step...). */
srlm_philox_out srlm_rng_bits(uint64_t seed, uint32_t a, uint32_t b, uint32_t c, uint32_t d);
/* Uniform float in [0, 1) from 24 random bits / double from 53 bits. */
float srlm_rng_u01f(uint32_t bits);
double srlm_rng_u01d(uint32_t hi, uint32_t lo);

/* A permutation of [0, n) into order (n) by Fisher-Yates, a function of (seed, purpose,
 * epoch) alone: swap j of position i is drawn from srlm_rng_bits(seed, purpose, epoch,
 * i low, i high), 64 bits scaled to [0, i] (bias below 2^-32 for any n that fits memory). */
void srlm_rng_permutation(int64_t n, uint64_t seed, uint32_t purpose, uint32_t epoch, int64_t *order);

/* ---- timers ------------------------------------------------------------- */

double srlm_time_now(void); /* seconds, CLOCK_MONOTONIC */
typedef struct srlm_timer { double start; } srlm_timer;
void srlm_timer_start(srlm_timer *t);
double srlm_timer_elapsed(const srlm_timer *t); /* seconds since start */

/* ---- small utilities ---------------------------------------------------- */

/* Reads a whole file (NUL-terminated, size excludes the NUL). Errors name the path. */
srlm_status srlm_read_file(const char *path, char **data, size_t *size);
/* Writes data to path atomically: path.tmp.<pid>, fsync, rename. */
srlm_status srlm_write_file_atomic(const char *path, const void *data, size_t size);
/* A growing byte string, always NUL-terminated once non-empty; zero-init is empty.
 * Free p with free(). */
typedef struct srlm_strbuf {
  char *p;
  size_t n, cap;
} srlm_strbuf;
void srlm_strbuf_append(srlm_strbuf *b, const void *s, size_t n);

/* out = "a/b" (n bytes at most); a path that does not fit is SRLM_ERR_IO naming a. */
srlm_status srlm_path_join(char *out, size_t n, const char *a, const char *b);

/* Creates a directory and its missing parents (like mkdir -p); existing ones are fine. */
srlm_status srlm_mkdirs(const char *path);
/* Allocation that never returns NULL (fatal on out of memory). */
void *srlm_xmalloc(size_t n);
void *srlm_xcalloc(size_t n, size_t size);
void *srlm_xrealloc(void *p, size_t n);
char *srlm_xstrdup(const char *s);

#ifdef __cplusplus
}
#endif
#endif
