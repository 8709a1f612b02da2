// The CUDA simulator: the subset of CUDA that srlm's kernels use, for the host C++ compiler.
// cuda/common.cuh includes this header instead of <cuda_runtime.h> when SRLM_CUDA_SIM is
// defined, so every cuda/*.cu file compiles twice: by nvcc for the GPU (backend "cuda") and
// by g++/clang++ for the CPU (backend "cuda-sim", DESIGN.md "The GPU seam").
//
// Execution model (cuda/sim/runtime.cpp)
// - A launch runs the whole grid before it returns: blocks one after another (x fastest),
//   one launch at a time in the process (a global mutex), in stream order by construction.
// - A block's threads are fibers (user-level contexts on the launching OS thread), run
//   round-robin: a thread runs until it reaches a barrier (__syncthreads, or a warp
//   collective: shuffle, vote, __syncwarp, mma, ldmatrix) or returns; the last one to
//   arrive releases the others, in thread order. Threads that returned no longer count at
//   __syncthreads and drop out of their warp's collectives (as on the GPU). A barrier that
//   can never complete is reported as a launch failure naming the block and who waits
//   where, instead of hanging. DESIGN.md says "OS threads"; fibers are deliberate: a CI box
//   has two cores, a barrier costs a context switch of tens of nanoseconds instead of a
//   futex round trip of microseconds, and the schedule is deterministic. Fiber stacks come
//   from a pool, and a thread that never blocks runs on the stack its predecessor left, so
//   a barrier-free kernel costs about one function call per thread.
// - Shared memory: `__shared__` is a function-scope static (blocks never overlap, so one
//   copy serves them all); dynamic shared memory comes from srlm_dyn_smem<T>() (common.cuh)
//   because `extern __shared__` cannot be spelled as a static. It is filled with 0xff bytes
//   at each block's start (NaN, -1), as a GPU leaves garbage there.
// - Warp collectives exchange values among the warp's lanes named in the mask that have not
//   returned; a lane outside that set reads its own value (the PTX "inactive source" case).
//   mma.sync and ldmatrix (cuda/mma.cuh) are rebuilt from the PTX ISA's fragment layouts;
//   Hopper's wgmma, TMA tile loads and mbarriers (cuda/hopper.cuh) from its descriptors and
//   swizzle, computed at their issue (the asynchrony is not modelled).
// - Atomics are real (relaxed) atomic operations, so ThreadSanitizer sees them as such.
// - Device memory is host memory from cudaMalloc, tracked so that a host pointer passed as
//   device memory is caught (srlm_sim::is_device). Copies, memsets and events are
//   synchronous; streams only carry the errors of the kernels launched on them.
//
// ThreadSanitizer (-fsanitize=thread, SRLM_SIM_TSAN): each GPU thread index is a TSan fiber
// of its own, switched to with __tsan_switch_to_fiber_no_sync, so TSan sees threads that
// only synchronize where the GPU would: __syncthreads and __syncwarp release on arrival and
// acquire on leaving; shuffles exchange values but order no memory; atomics are atomics; the
// launch happens before every thread of the grid and every thread before the launch's
// return. Consecutive blocks are NOT ordered with each other, so two blocks writing one
// location race: blocks run in turn on two worker OS threads, each with its own identities,
// stacks and TLS, and `__shared__` becomes `static thread_local`, so block k and block k+1
// share no shared-memory copy either. A worker's own blocks (k and k+2) are ordered, which
// makes its reuse of shared memory and stacks legal and hides races between them only.
// The scheduler's own data stays out of TSan's sight (runtime.cpp is not instrumented, and
// what it does through libc runs in ignore regions). A missing __syncthreads thus becomes a
// reported data race (the role compute-sanitizer's racecheck plays on a GPU).
//
// Not simulated: independent progress between threads (a thread spinning on another's
// write must call __nanosleep, which yields), convergence (__activemask gives the warp's
// lanes that have not returned, so pass explicit masks), inter-block waiting, clusters,
// texture memory, cooperative launches,
// dynamic parallelism, and the exact rounding of tensor cores (mma sums in k order with
// fp32 fma).
#ifndef SRLM_CUDA_SIM_H
#define SRLM_CUDA_SIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

// SRLM_SIM_TSAN: a ThreadSanitizer build. runtime.cpp is compiled without instrumentation
// (its scheduler data is nobody's business but its own) and gets it from the build.
#ifdef SRLM_SIM_TSAN
#elif defined(__SANITIZE_THREAD__)
#define SRLM_SIM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SRLM_SIM_TSAN 1
#endif
#endif
#ifndef SRLM_SIM_TSAN
#define SRLM_SIM_TSAN 0
#endif

// ---- qualifiers ---------------------------------------------------------------------------
// (__restrict__ is GCC's own; __noinline__ is left out because libstdc++ spells
// __attribute__((__noinline__)).)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __constant__
#define __align__(n) __attribute__((aligned(n)))
#if SRLM_SIM_TSAN
#define __shared__ static thread_local
#else
#define __shared__ static
#endif

namespace srlm_sim {

// ---- vector types and the built-in indices ----------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __align__(8) int2 { int x, y; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(16) double2 { double x, y; };
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }

// Set by the scheduler for the running fiber (thread-local to the OS thread running the grid).
extern __thread uint3 threadIdx;
extern __thread uint3 blockIdx;
extern __thread dim3 blockDim;
extern __thread dim3 gridDim;
constexpr int warpSize = 32;

// ---- runtime API (the calls the backend makes) --------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void *devicePointer;
  void *hostPointer;
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
};

struct stream_rec;
struct event_rec;
typedef stream_rec *cudaStream_t;
typedef event_rec *cudaEvent_t;
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0;

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMalloc(void **ptr, size_t bytes);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t bytes);
cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attr, const void *ptr);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
// Work runs at launch here, so a stream is never busy: as cudaStreamSynchronize.
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t func_set_attribute(const void *func, cudaFuncAttribute attr, int value);
template <class F>
cudaError_t cudaFuncSetAttribute(F *func, cudaFuncAttribute attr, int value) {
  return func_set_attribute(reinterpret_cast<const void *>(func), attr, value);
}

// ---- simulator-only helpers ---------------------------------------------------------------
// Whether [ptr, ptr + bytes) lies inside one live cudaMalloc allocation (bytes 0: ptr inside
// one, or NULL).
bool is_device(const void *ptr, size_t bytes);
// The detailed message of the last error this OS thread got back from the simulator
// ("kernel k: block (1,0,0): deadlock: ..."), if `e` is its code; else cudaGetErrorString(e).
const char *describe(cudaError_t e);
// Dynamic shared memory of the running block.
void *dynamic_smem(void);
// Ends the running block with a launch failure (an error only a kernel can see).
[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Puts the running thread at the back of its block's queue (for spin-waits).
void yield(void);

// Block and warp barriers; `kind` names the collective in error messages and must agree
// among the lanes that meet.
enum collective_kind {
  kCollShfl = 1,
  kCollVote,
  kCollMatch,
  kCollReduce,
  kCollSyncwarp,
  kCollMma,
  kCollLdmatrix,
};
int syncthreads(int pred, int mode);  // mode 0: none, 1: count, 2: and, 3: or
// Contributes `bytes` (<= 64) of `in`, waits until every lane of `mask` that has not
// returned did the same, then returns the lanes' contributions (slot l at l * 64 bytes,
// valid where bit l of *parts is set) until collective_end().
const unsigned char *collective(unsigned mask, int kind, const void *in, unsigned bytes,
                                unsigned *parts);
void collective_end(void);
constexpr unsigned kSlotBytes = 64;
uint64_t shfl(unsigned mask, uint64_t bits, int mode, int b, int width);  // mode: 0 idx 1 up 2 down 3 xor
unsigned vote(unsigned mask, int pred, int mode);                       // 0 ballot 1 all 2 any
unsigned match(unsigned mask, uint64_t bits, int *all_pred);            // all_pred NULL: match_any
unsigned reduce(unsigned mask, unsigned v, int mode);                   // 0 add 1 min 2 max 3 and 4 or 5 xor (6 min 7 max: signed)
void syncwarp(unsigned mask);
unsigned activemask(void);
unsigned lane_id(void);

// cp.async (cuda/common.cuh): the runtime queues each thread's copies and hands back, at a
// wait_group, those of the groups that must have landed; the caller (instrumented kernel
// code, so ThreadSanitizer sees the shared-memory writes as that thread's) performs them.
// A copy lands only then: a kernel that reads its tile before the wait reads stale data.
// The hazards of double buffering are checked on every build, deterministically, for the
// reads that go through ldmatrix (smem_read, called by cuda/mma.cuh: the way tensor-core
// kernels read their cp.async tiles), per 4-byte word and barrier phase (the
// __syncthreads passed), as a launch failure naming the address, the threads and the
// missing barrier:
// - write after read: a cp.async into a word that another warp read by ldmatrix in the
//   same phase (the buffer refilled without a barrier after its last use);
// - read after write: an ldmatrix of a word whose copy has not landed (read before the
//   wait_group), or landed by another warp's wait in the same phase (no barrier after it).
// ThreadSanitizer does not see the first: the issuing thread's write and the other warp's
// read are both there, unordered, yet it was not reported in the tensor-core forward.
struct cp_async_copy {
  void *dst;
  const void *src;
  unsigned bytes, src_bytes;  // src_bytes < bytes: the rest is zero-filled
};
void cp_async_issue(void *dst, const void *src, unsigned bytes, unsigned src_bytes);
void cp_async_commit(void);
// Takes up to `cap` copies of the committed groups older than the newest n (oldest first).
unsigned cp_async_due(unsigned n, cp_async_copy *out, unsigned cap);
// The running thread reads [p, p + bytes) of shared memory by ldmatrix (the hazard check).
void smem_read(const void *p, unsigned bytes);

// Runs a grid (below: launch). `name` is for messages; `fn` identifies the kernel for
// cudaFuncSetAttribute; `entry(arg)` runs one thread.
void launch_grid(const char *name, const void *fn, void (*entry)(void *), void *arg, dim3 grid,
                 dim3 block, size_t smem, cudaStream_t stream);

template <class... P>
struct kernel_call {
  void (*fn)(P...);
  std::tuple<std::decay_t<P>...> args;
  // Each thread gets its own copy of the arguments, as kernel parameters are per thread.
  static void run(void *self) {
    auto *k = static_cast<kernel_call *>(self);
    std::apply(k->fn, k->args);
  }
};

// SRLM_LAUNCH's target: the arguments are converted to the kernel's parameter types once,
// as a CUDA launch does, then the grid runs to completion.
template <class... P, class... A>
void launch(const char *name, void (*fn)(P...), dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream, A &&...args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
  kernel_call<P...> call{fn, std::tuple<std::decay_t<P>...>(std::forward<A>(args)...)};
  launch_grid(name, reinterpret_cast<const void *>(fn), &kernel_call<P...>::run, &call, grid, block,
              smem, stream);
}

// ---- barriers and warp intrinsics -------------------------------------------------------
inline void __syncthreads() { (void)syncthreads(0, 0); }
inline int __syncthreads_count(int p) { return syncthreads(p, 1); }
inline int __syncthreads_and(int p) { return syncthreads(p, 2); }
inline int __syncthreads_or(int p) { return syncthreads(p, 3); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { syncwarp(mask); }
inline unsigned __activemask() { return activemask(); }

template <class T>
inline uint64_t to_bits_(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffled type must fit 8 bytes");
  uint64_t b = 0;
  memcpy(&b, &v, sizeof v);
  return b;
}
template <class T>
inline T from_bits_(uint64_t b) {
  T v;
  memcpy(&v, &b, sizeof v);
  return v;
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = warpSize) {
  return from_bits_<T>(shfl(mask, to_bits_(v), 0, src, width));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return from_bits_<T>(shfl(mask, to_bits_(v), 1, (int)delta, width));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = warpSize) {
  return from_bits_<T>(shfl(mask, to_bits_(v), 2, (int)delta, width));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = warpSize) {
  return from_bits_<T>(shfl(mask, to_bits_(v), 3, lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return vote(mask, pred, 0); }
inline int __all_sync(unsigned mask, int pred) { return (int)vote(mask, pred, 1); }
inline int __any_sync(unsigned mask, int pred) { return (int)vote(mask, pred, 2); }
template <class T>
inline unsigned __match_any_sync(unsigned mask, T v) {
  return match(mask, to_bits_(v), nullptr);
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T v, int *pred) {
  return match(mask, to_bits_(v), pred);
}
inline unsigned __reduce_add_sync(unsigned mask, unsigned v) { return reduce(mask, v, 0); }
inline unsigned __reduce_min_sync(unsigned mask, unsigned v) { return reduce(mask, v, 1); }
inline unsigned __reduce_max_sync(unsigned mask, unsigned v) { return reduce(mask, v, 2); }
inline int __reduce_add_sync(unsigned mask, int v) { return (int)reduce(mask, (unsigned)v, 0); }
inline int __reduce_min_sync(unsigned mask, int v) { return (int)reduce(mask, (unsigned)v, 6); }
inline int __reduce_max_sync(unsigned mask, int v) { return (int)reduce(mask, (unsigned)v, 7); }
inline unsigned __reduce_and_sync(unsigned mask, unsigned v) { return reduce(mask, v, 3); }
inline unsigned __reduce_or_sync(unsigned mask, unsigned v) { return reduce(mask, v, 4); }
inline unsigned __reduce_xor_sync(unsigned mask, unsigned v) { return reduce(mask, v, 5); }

inline void __nanosleep(unsigned) { yield(); }
[[noreturn]] inline void __trap() { fail("the kernel called __trap()"); }
// Memory fences order nothing between fibers of one OS thread; a compiler barrier keeps the
// code's order (std::atomic_thread_fence is not modeled by ThreadSanitizer).
inline void __threadfence() { __asm__ __volatile__("" ::: "memory"); }
inline void __threadfence_block() { __asm__ __volatile__("" ::: "memory"); }
long long clock64(void);  // nanoseconds of a monotonic clock

// ---- atomics (relaxed, like CUDA's) ---------------------------------------------------------
template <class T>
inline T atomic_fetch_add_(T *p, T v) {
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
template <class T, class F>
inline T atomic_update_(T *p, F f) {  // CAS loop for what has no fetch-op instruction
  T old;
  __atomic_load(p, &old, __ATOMIC_RELAXED);
  for (;;) {
    T desired = f(old);
    if (__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return old;
  }
}
inline int atomicAdd(int *p, int v) { return atomic_fetch_add_(p, v); }
inline unsigned atomicAdd(unsigned *p, unsigned v) { return atomic_fetch_add_(p, v); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) { return atomic_fetch_add_(p, v); }
inline float atomicAdd(float *p, float v) { return atomic_update_(p, [v](float o) { return o + v; }); }
inline double atomicAdd(double *p, double v) { return atomic_update_(p, [v](double o) { return o + v; }); }
inline int atomicSub(int *p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicSub(unsigned *p, unsigned v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
template <class T>
inline T atomic_exch_(T *p, T v) {
  T old;
  __atomic_exchange(p, &v, &old, __ATOMIC_RELAXED);
  return old;
}
inline int atomicExch(int *p, int v) { return atomic_exch_(p, v); }
inline unsigned atomicExch(unsigned *p, unsigned v) { return atomic_exch_(p, v); }
inline unsigned long long atomicExch(unsigned long long *p, unsigned long long v) { return atomic_exch_(p, v); }
inline float atomicExch(float *p, float v) { return atomic_exch_(p, v); }
template <class T>
inline T atomic_cas_(T *p, T compare, T v) {
  __atomic_compare_exchange(p, &compare, &v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
  return compare;  // the old value either way
}
inline int atomicCAS(int *p, int c, int v) { return atomic_cas_(p, c, v); }
inline unsigned atomicCAS(unsigned *p, unsigned c, unsigned v) { return atomic_cas_(p, c, v); }
inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long c, unsigned long long v) {
  return atomic_cas_(p, c, v);
}
inline unsigned short atomicCAS(unsigned short *p, unsigned short c, unsigned short v) {
  return atomic_cas_(p, c, v);
}
#define SRLM_SIM_MINMAX_(T)                                                                     \
  inline T atomicMin(T *p, T v) { return atomic_update_(p, [v](T o) { return v < o ? v : o; }); } \
  inline T atomicMax(T *p, T v) { return atomic_update_(p, [v](T o) { return v > o ? v : o; }); }
SRLM_SIM_MINMAX_(int)
SRLM_SIM_MINMAX_(unsigned)
SRLM_SIM_MINMAX_(long long)
SRLM_SIM_MINMAX_(unsigned long long)
#undef SRLM_SIM_MINMAX_
#define SRLM_SIM_BITOPS_(T)                                                                   \
  inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }         \
  inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }           \
  inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_RELAXED); }
SRLM_SIM_BITOPS_(int)
SRLM_SIM_BITOPS_(unsigned)
SRLM_SIM_BITOPS_(unsigned long long)
#undef SRLM_SIM_BITOPS_
inline unsigned atomicInc(unsigned *p, unsigned limit) {
  return atomic_update_(p, [limit](unsigned o) { return o >= limit ? 0u : o + 1; });
}
inline unsigned atomicDec(unsigned *p, unsigned limit) {
  return atomic_update_(p, [limit](unsigned o) { return (o == 0 || o > limit) ? limit : o - 1; });
}

// ---- math (host libm; CUDA's fast intrinsics are the accurate functions here) --------------
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline int __float_as_int(float f) { return from_bits_<int>(to_bits_(f)); }
inline unsigned __float_as_uint(float f) { return from_bits_<unsigned>(to_bits_(f)); }
inline float __int_as_float(int i) { return from_bits_<float>(to_bits_(i)); }
inline float __uint_as_float(unsigned u) { return from_bits_<float>(to_bits_(u)); }
inline long long __double_as_longlong(double d) { return from_bits_<long long>(to_bits_(d)); }
inline double __longlong_as_double(long long i) { return from_bits_<double>(to_bits_(i)); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}
inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((unsigned long long)a * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
template <class T>
inline T __ldg(const T *p) {
  return *p;
}

// ---- bfloat16 (cuda_bf16.h subset) ---------------------------------------------------------
// Conversions as the hardware's cvt.rn.bf16.f32: round to nearest, ties to even; NaN becomes
// the canonical 0x7fff (CUDA's CUDART_NAN_BF16).
struct __nv_bfloat16_raw {
  unsigned short x;
};
inline unsigned short f32_to_bf16_bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
inline float bf16_bits_to_f32_(unsigned short b) {
  const uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
struct __align__(2) __nv_bfloat16 {
  unsigned short __x;
  // constexpr, not "= default": a static __shared__ array of them then needs no run-time
  // initialization, hence no guard variable for the block's fibers to race on.
  constexpr __nv_bfloat16() : __x(0) {}
  __nv_bfloat16(__nv_bfloat16_raw r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(f32_to_bf16_bits_(f)) {}
  operator float() const { return bf16_bits_to_f32_(__x); }
  operator __nv_bfloat16_raw() const { return {__x}; }
};
struct __align__(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return bf16_bits_to_f32_(b.__x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16_raw{u}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__nv_bfloat16(a), __nv_bfloat16(b)}; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 a, __nv_bfloat16 b) { return {a, b}; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return {(float)v.x, (float)v.y}; }
inline float __low2float(__nv_bfloat162 v) { return (float)v.x; }
inline float __high2float(__nv_bfloat162 v) { return (float)v.y; }

}  // namespace srlm_sim

// Kernel sources name CUDA's types and functions unqualified; they live in srlm_sim so that
// no symbol of the simulator collides with the CUDA runtime's in a binary that links both.
using namespace srlm_sim;

#endif
