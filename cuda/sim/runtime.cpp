// The CUDA simulator's runtime: device memory, streams, events, launches, and the fiber
// scheduler that runs a block's threads (the design and its reasons are in cuda_sim.h).
//
// Scheduler in brief. A block's threads wait in a FIFO run queue (thread order at the
// start). The running fiber executes one GPU thread; when that thread blocks (barrier,
// warp collective, yield) or returns, the same fiber pops the next thread and switches
// straight to its fiber, or, if that thread has not started yet and the current one
// returned, runs it in place (no switch at all). The last thread to reach a barrier
// releases the waiters to the queue in thread order and goes on without switching. When
// the queue is empty, control goes back to the block's main context: either every thread
// returned, or the rest wait on each other (a deadlock, reported as a launch failure).
// Fibers are persistent loops over "jobs" (GPU threads), parked in a pool between blocks
// and launches (under ThreadSanitizer: per worker thread, one per thread index). Context
// switches are ~20 instructions of x86-64 assembly (callee-saved registers, MXCSR and the
// x87 control word), or ucontext elsewhere (SRLM_SIM_UCONTEXT forces it: measured on the
// 2-core dev box, ~40 ns a thread at __syncthreads with the assembly, ~500 with ucontext,
// whose swapcontext makes a sigprocmask system call each time).
//
// The simulated device is process-wide state, as a CUDA context is: the allocation table,
// streams, the launch mutex and the fiber pool live in function-local statics here; the
// backend's own state lives in its context (cuda/backend_cuda.cu).
#include "cuda_sim.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <condition_variable>
#include <thread>
#include <unordered_map>
#include <vector>

#if defined(__x86_64__) && !defined(SRLM_SIM_UCONTEXT)
#define SRLM_SIM_ASM_SWITCH 1
#else
#define SRLM_SIM_ASM_SWITCH 0
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SRLM_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SRLM_SIM_ASAN 1
#endif
#endif
#ifndef SRLM_SIM_ASAN
#define SRLM_SIM_ASAN 0
#endif

#if SRLM_SIM_TSAN
#include <sanitizer/tsan_interface.h>
extern "C" void __tsan_ignore_thread_begin(void);
extern "C" void __tsan_ignore_thread_end(void);
#endif
#if SRLM_SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#if SRLM_SIM_ASM_SWITCH
// srlm_sim_switch(save, load): pushes the callee-saved registers and the FP control words on
// the current stack, stores the stack pointer in *save, loads `load` and pops the same set
// from it, returning into the other context. srlm_sim_fiber_start is where a new fiber's
// first switch "returns" to: it calls r13(r12), which never returns.
extern "C" void srlm_sim_switch(void **save, void *load);
extern "C" void srlm_sim_fiber_start(void);
__asm__(R"(
  .pushsection .text
  .globl srlm_sim_switch
  .hidden srlm_sim_switch
  .type srlm_sim_switch,@function
  .p2align 4
srlm_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size srlm_sim_switch,.-srlm_sim_switch

  .globl srlm_sim_fiber_start
  .hidden srlm_sim_fiber_start
  .type srlm_sim_fiber_start,@function
  .p2align 4
srlm_sim_fiber_start:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size srlm_sim_fiber_start,.-srlm_sim_fiber_start
  .popsection
)");
#endif

namespace srlm_sim {

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread dim3 blockDim;
__thread dim3 gridDim;

struct stream_rec {
  unsigned flags;
  cudaError_t pending;  // a kernel's failure, reported by the next synchronizing call
  std::string detail;
};
struct event_rec {
  double t;
};

namespace {

double now_seconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---- errors ---------------------------------------------------------------------------------

thread_local cudaError_t t_last_error = cudaSuccess;  // launch errors, for cudaGetLastError
thread_local cudaError_t t_detail_code = cudaSuccess;  // the code t_detail explains
thread_local std::string t_detail;

cudaError_t vreport(cudaError_t e, const char *fmt, va_list ap) {
  char buf[1024];
  vsnprintf(buf, sizeof buf, fmt, ap);
  t_detail = buf;
  t_detail_code = e;
  return e;
}
__attribute__((format(printf, 2, 3))) cudaError_t report(cudaError_t e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport(e, fmt, ap);
  va_end(ap);
  return e;
}

// ---- the device: allocations and streams ---------------------------------------------------

struct device_state {
  std::mutex mu;
  std::map<uintptr_t, size_t> dev;   // cudaMalloc: base -> bytes
  std::map<uintptr_t, size_t> host;  // cudaMallocHost: base -> bytes
  std::map<const void *, int> max_dyn_smem;
  std::vector<stream_rec *> streams;
  stream_rec null_stream{0, cudaSuccess, {}};
};
// Never destroyed: a static destructor elsewhere may still free device memory.
device_state &dev() {
  static device_state *d = new device_state;
  return *d;
}

constexpr size_t kDefaultDynSmem = 48 * 1024;
// The opt-in limit of dynamic shared memory per block: H100/H200's 227 KB, or the bytes in
// SRLM_SIM_SMEM_OPTIN (e.g. 101376, the 99 KB of compute capability 8.6/8.9; 166912, A100's),
// so tests can run the kernels' choices for a smaller GPU.
size_t max_dyn_smem() {
  static const size_t limit = [] {
    const char *e = getenv("SRLM_SIM_SMEM_OPTIN");
    if (!e || !*e) return (size_t)227 * 1024;
    char *end = nullptr;
    const unsigned long long v = strtoull(e, &end, 10);
    if (*end || v < kDefaultDynSmem || v > (size_t)227 * 1024) {
      fprintf(stderr, "cuda-sim: SRLM_SIM_SMEM_OPTIN=%s: expected bytes in [%zu, %zu]\n", e, kDefaultDynSmem,
              (size_t)227 * 1024);
      abort();
    }
    return (size_t)v;
  }();
  return limit;
}

// Range lookup in an allocation table; the caller holds dev().mu.
bool in_table(const std::map<uintptr_t, size_t> &t, const void *ptr, size_t bytes) {
  const uintptr_t p = (uintptr_t)ptr;
  auto it = t.upper_bound(p);
  if (it == t.begin()) return false;
  --it;
  const uintptr_t base = it->first, end = it->first + it->second;
  if (bytes == 0) return p >= base && p < (end > base ? end : base + 1);
  return p >= base && p <= end && bytes <= end - p;
}

bool valid_stream(cudaStream_t s) {
  if (!s) return true;
  for (stream_rec *r : dev().streams)
    if (r == s) return true;
  return false;
}

// Takes (and clears) a stream's pending kernel failure; caller holds dev().mu.
cudaError_t take_pending(stream_rec *s) {
  const cudaError_t e = s->pending;
  if (e != cudaSuccess) {
    t_detail = s->detail;
    t_detail_code = e;
    s->pending = cudaSuccess;
    s->detail.clear();
  }
  return e;
}

// ---- fibers -----------------------------------------------------------------------------

struct thread_rec;

struct fiber {
#if SRLM_SIM_ASM_SWITCH
  void *sp = nullptr;  // saved stack pointer while switched out
#else
  ucontext_t uc;
#endif
  char *stack = nullptr;  // usable stack [stack, stack + stack_bytes); NULL for a main context
  size_t stack_bytes = 0;
  thread_rec *job = nullptr;  // the GPU thread it runs
  fiber *next_free = nullptr;
  void *asan_fake = nullptr;
  const void *asan_bottom = nullptr;  // a main context's stack, learned at its first switch
  size_t asan_size = 0;
};

constexpr size_t kStackBytes = 256 * 1024;  // untouched pages cost nothing (MAP_NORESERVE)
constexpr size_t kGuardBytes = 4096;  // PROT_NONE below each stack: an overflow faults

[[noreturn]] void fiber_main(fiber *self);

#if !SRLM_SIM_ASM_SWITCH
void uc_entry(unsigned lo, unsigned hi) {
  fiber_main(reinterpret_cast<fiber *>((uintptr_t)lo | ((uintptr_t)hi << 32)));
}
#endif

// Gives `f` a fresh initial frame: its next switch-in starts fiber_main(f).
void fiber_prepare(fiber *f) {
#if SRLM_SIM_ASAN
  // A fiber abandoned mid-kernel (a failed block) may leave its frames poisoned.
  __asan_unpoison_memory_region(f->stack, f->stack_bytes);
#endif
#if SRLM_SIM_ASM_SWITCH
  uintptr_t top = ((uintptr_t)f->stack + f->stack_bytes) & ~(uintptr_t)15;
  void **sp = reinterpret_cast<void **>(top);
  *--sp = reinterpret_cast<void *>(&srlm_sim_fiber_start);  // ret target; leaves rsp 16-aligned
  *--sp = nullptr;                                          // rbp
  *--sp = nullptr;                                          // rbx
  *--sp = f;                                                // r12: the argument
  *--sp = reinterpret_cast<void *>(&fiber_main);            // r13: the function
  *--sp = nullptr;                                          // r14
  *--sp = nullptr;                                          // r15
  --sp;
  const uint32_t mxcsr = 0x1f80;  // SSE: round to nearest, all exceptions masked
  const uint16_t fpucw = 0x037f;  // x87: the same, extended precision
  memcpy(reinterpret_cast<char *>(sp), &mxcsr, 4);
  memcpy(reinterpret_cast<char *>(sp) + 4, &fpucw, 2);
  f->sp = sp;
#else
  getcontext(&f->uc);
  f->uc.uc_stack.ss_sp = f->stack;
  f->uc.uc_stack.ss_size = f->stack_bytes;
  f->uc.uc_link = nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->uc, reinterpret_cast<void (*)()>(&uc_entry), 2, (unsigned)(a & 0xffffffffu),
              (unsigned)(a >> 32));
#endif
  f->asan_fake = nullptr;
}

// Stacks for `count` fibers in one mapping, each above a guard page. Under TSan the mapping
// is made by the raw system call: TSan's mmap interceptor would write shadow for every byte,
// most of which a stack never touches.
char *map_stacks(size_t count) {
  const size_t each = kStackBytes + kGuardBytes;
#if SRLM_SIM_TSAN
  void *m = reinterpret_cast<void *>(syscall(SYS_mmap, nullptr, each * count, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
#else
  void *m = mmap(nullptr, each * count, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
#endif
  if (m == MAP_FAILED) return nullptr;
  for (size_t i = 0; i < count; i++) mprotect(static_cast<char *>(m) + i * each, kGuardBytes, PROT_NONE);
  return static_cast<char *>(m);
}

// ---- blocks ---------------------------------------------------------------------------------

enum tstate : unsigned char { kNew, kReady, kRunning, kBarWait, kWarpWait, kDone };

struct slot {
  uint64_t w[kSlotBytes / 8];
};
// The lanes' contributions to one warp collective, read by each participant after it
// resumes; reused once all of them have read it.
struct snapshot {
  unsigned pending = 0;
  slot s[32];
};

struct thread_rec {
  uint3 idx;
  unsigned linear, lane, warp;
  tstate state;
  fiber *f;
  // the warp collective it waits at
  unsigned wmask;
  int wkind;
  const slot *win;
  snapshot *wsnap;
  unsigned wparts;
  unsigned syncwarp_count;
  // its cp.async copies not landed yet, and where each committed group ends in them
  std::vector<cp_async_copy> cp;
  std::vector<size_t> cp_groups;
#if SRLM_SIM_TSAN
  void *tsan;   // its TSan fiber
  int ignores;  // open __tsan_ignore_thread_begin of that fiber
#endif
};

struct warp_rec {
  unsigned live;     // lanes that exist and have not returned
  unsigned arrived;  // lanes waiting at a collective
  std::vector<std::unique_ptr<snapshot>> snaps;
};

struct launch_rec {
  const char *name;
  void (*entry)(void *);
  void *arg;
  dim3 grid, block;
  size_t smem;
  stream_rec *stream;
#if SRLM_SIM_TSAN
  uint64_t *start;      // sync object: the launch releases, every thread acquires as it starts
  uint64_t *grid_done;  // sync object: every thread releases, the launch acquires at the end
#endif
};

// A shared-memory word's recent history, for the cp.async hazards.
struct smem_word {
  unsigned gen = 0;           // the block it belongs to (block_state::gen; dyn_words only)
  unsigned read_phase = ~0u;  // the barrier phase of the reads below
  uint32_t read_warps = 0;    // warps that read it by ldmatrix in that phase
  unsigned writer = 0;        // the thread whose cp.async wrote it last
  bool pending = false;       // that copy has not landed (no wait_group of the writer covered it)
  unsigned landed_phase = ~0u;  // the barrier phase in which it landed
};

struct block_state {
  unsigned n = 0;
  std::vector<thread_rec> threads;
  std::vector<warp_rec> warps;
  std::vector<unsigned> queue;  // ring of runnable thread indices
  unsigned qhead = 0, qcount = 0;
  unsigned live = 0, bar_waiting = 0, bar_phase = 0;
  int bar_count = 0;
  int bar_result[2][2] = {{0, 0}, {0, 0}};  // per phase parity: {count, arrived}
  bool failed = false;
  std::string error;
#if SRLM_SIM_TSAN
  std::unique_ptr<uint64_t[]> sync;  // fresh per block: barrier parities, then 2 per lane
#endif
  // The shared-memory words that cp.async wrote or ldmatrix read in this block (the hazard
  // check, cuda_sim.h "cp.async"), by address / 4; bar_phase counts the barriers passed.
  // Dynamic shared memory's words (the tensor-core kernels' tiles) in a flat array, valid
  // where their gen is this block's (no reset per block); other words in the map.
  std::unordered_map<uintptr_t, smem_word> words;
  std::vector<smem_word> dyn_words;
  unsigned gen = 0;
};

// The running grid on this OS thread.
struct exec {
  launch_rec *L = nullptr;
  block_state *B = nullptr;
  fiber main;            // the context that runs the block (no stack of its own)
  fiber *prev = nullptr;  // who switched last (ASan learns the main stack from it)
  thread_rec *cur = nullptr;
  unsigned char *smem = nullptr;
#if SRLM_SIM_TSAN
  void *main_tsan = nullptr;
  std::vector<std::unique_ptr<fiber>> own;  // fiber i runs thread i of every block, as TSan fiber ids[i]
  std::vector<void *> ids;
  uint64_t order = 0;  // sync object: this worker's blocks happen one after another
#endif
};
__thread exec *t_exec;

// Fibers reused across blocks and launches, by any GPU thread (under TSan each worker keeps
// one per thread index instead, see `worker`); used only under the launch mutex.
#if !SRLM_SIM_TSAN
struct fiber_pool {
  fiber *free = nullptr;
  std::vector<fiber *> all;
};
fiber_pool &pool() {
  static fiber_pool *p = new fiber_pool;
  return *p;
}
#endif
std::mutex &launch_mutex() {
  static std::mutex *m = new std::mutex;
  return *m;
}

// The scheduler's bookkeeping is shared by all fibers and kept invisible to ThreadSanitizer
// (ignore regions, which also cover what libc interceptors see). TSan requires a fiber to
// end with no region open, so the depth is counted per identity: the running GPU thread's
// fiber (t_exec->cur, set exactly while one runs) or the OS thread's main context.
#if SRLM_SIM_TSAN
__thread int t_main_ignores;
int &ignore_depth() {
  exec *x = t_exec;
  return x && x->cur ? x->cur->ignores : t_main_ignores;
}
#endif
inline void quiet_begin() {
#if SRLM_SIM_TSAN
  __tsan_ignore_thread_begin();
  ++ignore_depth();
#endif
}
inline void quiet_end() {
#if SRLM_SIM_TSAN
  --ignore_depth();
  __tsan_ignore_thread_end();
#endif
}
// Closes every region the running identity has open (before its fiber ends for good).
inline void quiet_drop() {
#if SRLM_SIM_TSAN
  for (int &d = ignore_depth(); d > 0; d--) __tsan_ignore_thread_end();
#endif
}
struct quiet {
  quiet() { quiet_begin(); }
  ~quiet() { quiet_end(); }
};

void after_switch(exec *x, fiber *self) {
#if SRLM_SIM_ASAN
  const void *bottom = nullptr;
  size_t size = 0;
  __sanitizer_finish_switch_fiber(self->asan_fake, &bottom, &size);
  if (x->prev == &x->main) {
    x->main.asan_bottom = bottom;
    x->main.asan_size = size;
  }
#else
  (void)x;
  (void)self;
#endif
}

// Switches from `from` (the running context) to `to`; returns when `from` is resumed.
void transfer(exec *x, fiber *from, fiber *to) {
  x->prev = from;
#if SRLM_SIM_ASAN
  __sanitizer_start_switch_fiber(&from->asan_fake, to->stack ? to->stack : to->asan_bottom,
                                 to->stack ? to->stack_bytes : to->asan_size);
#endif
#if SRLM_SIM_TSAN
  __tsan_switch_to_fiber(to == &x->main ? x->main_tsan : to->job->tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if SRLM_SIM_ASM_SWITCH
  srlm_sim_switch(&from->sp, to->sp);
#else
  swapcontext(&from->uc, &to->uc);
#endif
  after_switch(t_exec, from);
}

fiber *take_fiber(exec *x, thread_rec *t) {
  fiber *f;
#if SRLM_SIM_TSAN
  f = x->own[t->linear].get();
#else
  (void)x;
  fiber_pool &p = pool();
  if (p.free) {
    f = p.free;
    p.free = f->next_free;
  } else {
    f = new fiber;
    f->stack = map_stacks(1);
    if (!f->stack) {
      fprintf(stderr, "srlm cuda-sim: cannot map a %zu-byte fiber stack\n", kStackBytes);
      abort();  // no way to report from inside a running grid
    }
    f->stack += kGuardBytes;
    f->stack_bytes = kStackBytes;
    fiber_prepare(f);
    p.all.push_back(f);
  }
#endif
  f->job = t;
  t->f = f;
  return f;
}

void release_fiber(fiber *f) {
#if SRLM_SIM_TSAN
  (void)f;
#else
  f->job = nullptr;
  f->next_free = pool().free;
  pool().free = f;
#endif
}

void push(block_state *B, unsigned i) {
  B->queue[(B->qhead + B->qcount) % B->n] = i;
  B->qcount++;
}
bool pop(block_state *B, unsigned *i) {
  if (!B->qcount) return false;
  *i = B->queue[B->qhead];
  B->qhead = (B->qhead + 1) % B->n;
  B->qcount--;
  return true;
}

// Marks `t` as the running thread after its fiber resumed.
void resume_as(exec *x, thread_rec *t) {
  x->cur = t;
  threadIdx = t->idx;
}

// The running fiber `self` hands control to the next runnable thread (or to the block's
// main context when none is left); returns when `self` runs again.
void run_next(exec *x, fiber *self) {
  block_state *B = x->B;
  fiber *to = &x->main;
  unsigned i;
  if (!B->failed && pop(B, &i)) {
    thread_rec *t = &B->threads[i];
    to = t->f ? t->f : take_fiber(x, t);
  }
  if (to != self) transfer(x, self, to);
}

// Ends the block with an error: control goes to the main context and never comes back to
// the failing fiber (its stack is reset there, so nothing on it may own memory: callers
// pass a plain buffer).
[[noreturn]] void fail_block(exec *x, const char *msg) {
  block_state *B = x->B;
  if (!B->failed) {
    B->failed = true;
    B->error = msg;
  }
  fiber *self = x->cur && x->cur->f ? x->cur->f : nullptr;
  quiet_drop();
  if (self) transfer(x, self, &x->main);
  fprintf(stderr, "srlm cuda-sim: a failed block resumed\n");
  abort();
}

std::string lanes_str(unsigned mask, unsigned base) {
  std::string s;
  for (unsigned i = 0; i < 32;) {
    if (!(mask >> i & 1)) {
      i++;
      continue;
    }
    unsigned j = i;
    while (j + 1 < 32 && (mask >> (j + 1) & 1)) j++;
    char buf[32];
    if (j == i) snprintf(buf, sizeof buf, "%s%u", s.empty() ? "" : ",", base + i);
    else snprintf(buf, sizeof buf, "%s%u-%u", s.empty() ? "" : ",", base + i, base + j);
    s += buf;
    i = j + 1;
  }
  return s;
}

const char *kind_name(int kind) {
  switch (kind) {
    case kCollShfl: return "a shuffle";
    case kCollVote: return "a vote";
    case kCollMatch: return "a match";
    case kCollReduce: return "a warp reduce";
    case kCollSyncwarp: return "__syncwarp";
    case kCollMma: return "mma.sync";
    case kCollLdmatrix: return "ldmatrix";
    default: return "a warp collective";
  }
}

void release_barrier(block_state *B, thread_rec *cur) {
  const unsigned p = B->bar_phase & 1;
  B->bar_result[p][0] = B->bar_count;
  B->bar_result[p][1] = (int)B->bar_waiting;
  B->bar_count = 0;
  B->bar_waiting = 0;
  B->bar_phase++;
  for (unsigned i = 0; i < B->n; i++) {
    thread_rec *t = &B->threads[i];
    if (t->state != kBarWait) continue;
    if (t == cur) {
      t->state = kRunning;
    } else {
      t->state = kReady;
      push(B, i);
    }
  }
}

// Completes the collective `lead` waits at when every lane it needs has arrived. `cur` (the
// running thread, or NULL) goes on; the others join the run queue in lane order.
bool try_complete(exec *x, warp_rec *W, thread_rec *lead, thread_rec *cur) {
  block_state *B = x->B;
  const unsigned need = lead->wmask & W->live;
  if ((W->arrived & need) != need) return false;
  thread_rec *lanes = &B->threads[lead->warp * 32];
  for (unsigned l = 0; l < 32; l++) {
    if (!(need >> l & 1)) continue;
    const thread_rec *r = &lanes[l];
    if (r->wkind != lead->wkind || r->wmask != lead->wmask) {
      char buf[256];
      snprintf(buf, sizeof buf, "warp %u: lane %u is at %s (mask 0x%08x) while lane %u is at %s (mask 0x%08x)",
               lead->warp, lead->lane, kind_name(lead->wkind), lead->wmask, l, kind_name(r->wkind), r->wmask);
      fail_block(x, buf);
    }
  }
  snapshot *s = nullptr;
  for (auto &p : W->snaps)
    if (p->pending == 0) {
      s = p.get();
      break;
    }
  if (!s) {
    W->snaps.emplace_back(new snapshot);
    s = W->snaps.back().get();
  }
  s->pending = (unsigned)__builtin_popcount(need);
  for (unsigned l = 0; l < 32; l++) {
    if (!(need >> l & 1)) continue;
    thread_rec *r = &lanes[l];
    s->s[l] = *r->win;
    r->wsnap = s;
    r->wparts = need;
    W->arrived &= ~(1u << l);
    if (r == cur) {
      r->state = kRunning;
    } else {
      r->state = kReady;
      push(B, r->linear);
    }
  }
  return true;
}

void finish_thread(exec *x, thread_rec *t) {
  block_state *B = x->B;
  t->state = kDone;
  B->live--;
  warp_rec *W = &B->warps[t->warp];
  W->live &= ~(1u << t->lane);
#if SRLM_SIM_TSAN
  __tsan_release(x->L->grid_done);
  __tsan_release(&x->order);
#endif
  if (B->bar_waiting && B->bar_waiting == B->live) release_barrier(B, nullptr);
  // Its return may complete collectives its warp-mates wait at.
  for (unsigned l = 0; l < 32 && W->arrived; l++)
    if (W->arrived >> l & 1) try_complete(x, W, &B->threads[t->warp * 32 + l], nullptr);
}

[[noreturn]] void fiber_main(fiber *self) {
  after_switch(t_exec, self);
  for (;;) {
    exec *x = t_exec;
    thread_rec *t = self->job;
    resume_as(x, t);
    t->state = kRunning;
#if SRLM_SIM_TSAN
    __tsan_acquire(x->L->start);  // the launch happens before the thread,
    __tsan_acquire(&x->order);    // and so does this worker's previous block
#endif
    x->L->entry(x->L->arg);
    quiet_begin();
    x = t_exec;
    finish_thread(x, t);
#if SRLM_SIM_TSAN
    quiet_drop();  // this GPU thread is done; what follows touches no memory TSan watches
#else
    // The next thread that has not started runs on this stack: no switch at all.
    block_state *B = x->B;
    if (!B->failed && B->qcount && !B->threads[B->queue[B->qhead]].f) {
      unsigned i;
      pop(B, &i);
      self->job = &B->threads[i];
      B->threads[i].f = self;
      quiet_end();
      continue;
    }
    quiet_end();
#endif
    release_fiber(self);
    run_next(x, self);  // resumes here with a new job
  }
}

void setup_block(exec *x, block_state *B, const launch_rec *L) {
  const dim3 b = L->block;
  const unsigned n = b.x * b.y * b.z;
  B->n = n;
  B->threads.resize(n);
  B->warps.resize((n + 31) / 32);
  B->queue.resize(n);
  for (unsigned i = 0; i < n; i++) {
    thread_rec *t = &B->threads[i];
    t->idx = {i % b.x, (i / b.x) % b.y, i / (b.x * b.y)};
    t->linear = i;
    t->lane = i & 31;
    t->warp = i >> 5;
    t->state = kNew;
    t->f = nullptr;
    t->wmask = 0;
    t->wkind = 0;
    t->win = nullptr;
    t->wsnap = nullptr;
    t->wparts = 0;
    t->syncwarp_count = 0;
    t->cp.clear();  // a thread that ended without waiting left its copies unlanded: they never land
    t->cp_groups.clear();
    B->queue[i] = i;
  }
  for (size_t w = 0; w < B->warps.size(); w++) {
    const unsigned lanes = n - 32 * (unsigned)w >= 32 ? 32 : n - 32 * (unsigned)w;
    B->warps[w].live = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    B->warps[w].arrived = 0;
    for (auto &s : B->warps[w].snaps) s->pending = 0;
  }
  B->words.clear();
  B->gen++;
  if (B->dyn_words.size() < L->smem / 4) B->dyn_words.resize(L->smem / 4);
  B->qhead = 0;
  B->qcount = n;
  B->live = n;
  B->bar_waiting = 0;
  B->bar_phase = 0;
  B->bar_count = 0;
  B->failed = false;
  B->error.clear();
  if (L->smem) memset(x->smem, 0xff, L->smem);  // a GPU leaves garbage in shared memory
#if SRLM_SIM_TSAN
  B->sync.reset(new uint64_t[2 + 64 * B->warps.size()]);
  for (unsigned i = 0; i < n; i++) {
    thread_rec *t = &B->threads[i];
    t->tsan = x->ids[i];
    t->ignores = 0;
    // names what a race report's "Thread T.." was
    char name[128];
    snprintf(name, sizeof name, "%s block (%u,%u,%u) thread (%u,%u,%u)", L->name, blockIdx.x, blockIdx.y,
             blockIdx.z, t->idx.x, t->idx.y, t->idx.z);
    __tsan_set_fiber_name(t->tsan, name);
  }
#endif
}

std::string deadlock_message(block_state *B) {
  std::string msg = "deadlock:";
  unsigned bar = 0;
  std::string bar_threads;
  for (unsigned w = 0; w < B->warps.size(); w++) {
    unsigned m = 0;
    for (unsigned l = 0; l < 32 && w * 32 + l < B->n; l++)
      if (B->threads[w * 32 + l].state == kBarWait) m |= 1u << l;
    if (m) {
      bar_threads += (bar_threads.empty() ? "" : ",") + lanes_str(m, w * 32);
      bar += (unsigned)__builtin_popcount(m);
    }
  }
  if (bar) msg += " threads " + bar_threads + " wait at __syncthreads;";
  for (unsigned w = 0; w < B->warps.size(); w++) {
    const warp_rec *W = &B->warps[w];
    if (!W->arrived) continue;
    const thread_rec *lead = &B->threads[w * 32 + (unsigned)__builtin_ctz(W->arrived)];
    const unsigned missing = lead->wmask & W->live & ~W->arrived;
    msg += " warp " + std::to_string(w) + " lanes " + lanes_str(W->arrived, 0) + " wait at " +
           kind_name(lead->wkind) + " for lanes " + lanes_str(missing, 0) + ";";
  }
  if (msg.back() == ';') msg.pop_back();
  return msg;
}

// Runs the current block (x->B set up) to its end; returns with B->failed on a failure.
void run_block(exec *x) {
  block_state *B = x->B;
  unsigned i;
  if (pop(B, &i)) transfer(x, &x->main, take_fiber(x, &B->threads[i]));
  x->cur = nullptr;  // the main context runs again
  if (!B->failed && B->live) {
    B->failed = true;
    B->error = deadlock_message(B);
  }
  if (B->failed) {
    // Threads that will never finish leave their fibers mid-kernel: reset them.
    for (unsigned j = 0; j < B->n; j++) {
      thread_rec *t = &B->threads[j];
      if (t->state == kDone || t->state == kNew || !t->f) continue;
      fiber_prepare(t->f);
      release_fiber(t->f);
      t->f = nullptr;
    }
  }
  x->cur = nullptr;
}

void record_failure(launch_rec *L, const block_state *B, const uint3 &bi) {
  char head[256];
  snprintf(head, sizeof head, "kernel %s: block (%u,%u,%u): ", L->name, bi.x, bi.y, bi.z);
  std::lock_guard<std::mutex> lk(dev().mu);
  if (L->stream->pending == cudaSuccess) {
    L->stream->pending = cudaErrorLaunchFailure;
    L->stream->detail = head + B->error;
  }
}

#if SRLM_SIM_TSAN
// Under ThreadSanitizer blocks run on two persistent worker threads in turn (block k on
// worker k % 2), each with its own TLS (so its own copy of every `static thread_local`
// __shared__ array) and its own set of TSan fibers, one per thread index, each with its own
// stack. Consecutive blocks thus share no identity, no shared memory and no ordering, and a
// race between them is reported; a worker's blocks are ordered one after the next (each
// thread releases the worker's `order` as it ends and acquires it as it starts), so blocks
// k and k + 2 reusing shared memory and stacks is not a race (nor is a real race between
// them reported). Identities persist because TSan's fiber creation costs about a millisecond. The launching thread and the workers hand
// blocks over through a mutex, which orders nothing of the fibers: they switch with no_sync
// and only the launch's own sync objects (start, grid_done) connect them to it.
struct worker {
  std::mutex mu;
  std::condition_variable cv;
  launch_rec *L = nullptr;  // the job: a block of this launch
  uint3 bi = {0, 0, 0};
  bool has_job = false, failed = false;
  exec x;
  block_state B;
  std::vector<unsigned char> smem;
};

// Makes sure identities and fibers exist for n threads (on the worker, in its main context).
void grow_fibers(exec *x, unsigned n) {
  while (x->own.size() < n) {
    char *stack = map_stacks(1);
    if (!stack) {
      fprintf(stderr, "srlm cuda-sim: cannot map a %zu-byte fiber stack\n", kStackBytes);
      abort();
    }
    std::unique_ptr<fiber> f(new fiber);
    f->stack = stack + kGuardBytes;
    f->stack_bytes = kStackBytes;
    fiber_prepare(f.get());
    x->own.push_back(std::move(f));
    x->ids.push_back(__tsan_create_fiber(0));
  }
}

void run_job(worker *w) {
  exec *x = &w->x;
  block_state *B = &w->B;
  launch_rec *L = w->L;
  x->L = L;
  x->B = B;
  blockIdx = w->bi;
  blockDim = L->block;
  gridDim = L->grid;
  if (w->smem.size() < L->smem) w->smem.resize(L->smem);
  x->smem = w->smem.data();
  grow_fibers(x, L->block.x * L->block.y * L->block.z);
  setup_block(x, B, L);
  run_block(x);
  for (unsigned j = 0; j < B->n; j++) {
    thread_rec *t = &B->threads[j];
    if (t->state == kDone || t->state == kNew) continue;
    // Abandoned mid-kernel (a failed block): close its ignore regions and order what it did
    // before the launch's end, as a thread that returned would.
    __tsan_switch_to_fiber(t->tsan, __tsan_switch_to_fiber_no_sync);
    for (; t->ignores > 0; t->ignores--) __tsan_ignore_thread_end();
    __tsan_release(L->grid_done);
    __tsan_release(&x->order);
    __tsan_switch_to_fiber(x->main_tsan, __tsan_switch_to_fiber_no_sync);
  }
  if (B->failed) record_failure(L, B, w->bi);
  w->failed = B->failed;
}

void worker_loop(worker *w) {
  quiet_begin();  // a worker only keeps the books (mutexes still synchronize)
  t_exec = &w->x;
  w->x.main_tsan = __tsan_get_current_fiber();
  std::unique_lock<std::mutex> lk(w->mu);
  for (;;) {
    w->cv.wait(lk, [w] { return w->has_job; });
    run_job(w);
    w->has_job = false;
    w->cv.notify_all();
  }
}

worker *workers() {
  static worker *w = [] {
    worker *ws = new worker[2];
    for (int i = 0; i < 2; i++) std::thread(worker_loop, &ws[i]).detach();
    return ws;
  }();
  return w;
}

bool run_block_tsan(launch_rec *L, uint3 bi, unsigned k) {
  worker *w = &workers()[k % 2];
  std::unique_lock<std::mutex> lk(w->mu);
  w->L = L;
  w->bi = bi;
  w->has_job = true;
  w->cv.notify_all();
  w->cv.wait(lk, [w] { return !w->has_job; });
  return !w->failed;
}
#endif

}  // namespace

// ---- the kernel-side entry points -----------------------------------------------------

int syncthreads(int pred, int mode) {
  quiet q;
  exec *x = t_exec;
  if (!x) return 0;
  block_state *B = x->B;
  thread_rec *t = x->cur;
  const unsigned p = B->bar_phase & 1;
#if SRLM_SIM_TSAN
  __tsan_release(&B->sync[p]);
#endif
  B->bar_count += pred != 0;
  t->state = kBarWait;
  B->bar_waiting++;
  if (B->bar_waiting == B->live) {
    release_barrier(B, t);
  } else {
    run_next(x, t->f);
    x = t_exec;
    resume_as(x, t);
  }
#if SRLM_SIM_TSAN
  __tsan_acquire(&B->sync[p]);
#endif
  const int count = B->bar_result[p][0], arrived = B->bar_result[p][1];
  switch (mode) {
    case 1: return count;
    case 2: return count == arrived;
    case 3: return count > 0;
    default: return 0;
  }
}

const unsigned char *collective(unsigned mask, int kind, const void *in, unsigned bytes, unsigned *parts) {
  quiet q;
  exec *x = t_exec;
  thread_rec *t = x->cur;
  if (!(mask >> t->lane & 1)) {
    char buf[160];
    snprintf(buf, sizeof buf, "thread %u (warp %u lane %u) calls %s with mask 0x%08x, which leaves it out",
             t->linear, t->warp, t->lane, kind_name(kind), mask);
    fail_block(x, buf);
  }
  slot mine = {};
  memcpy(&mine, in, bytes < kSlotBytes ? bytes : kSlotBytes);
  warp_rec *W = &x->B->warps[t->warp];
  t->wmask = mask;
  t->wkind = kind;
  t->win = &mine;
  t->state = kWarpWait;
  W->arrived |= 1u << t->lane;
  if (!try_complete(x, W, t, t)) {
    run_next(x, t->f);
    x = t_exec;
    resume_as(x, t);
  }
  *parts = t->wparts;
  return reinterpret_cast<const unsigned char *>(t->wsnap->s);
}

void collective_end(void) {
  quiet q;
  thread_rec *t = t_exec->cur;
  t->wsnap->pending--;
  t->wsnap = nullptr;
}

static const slot &slot_of(const unsigned char *snap, unsigned lane) {
  return reinterpret_cast<const slot *>(snap)[lane];
}

uint64_t shfl(unsigned mask, uint64_t bits, int mode, int b, int width) {
  unsigned parts;
  const unsigned char *snap = collective(mask, kCollShfl, &bits, sizeof bits, &parts);
  quiet q;
  exec *x = t_exec;
  const unsigned lane = x->cur->lane;
  if (width < 1 || width > 32 || (width & (width - 1))) {
    collective_end();
    char buf[96];
    snprintf(buf, sizeof buf, "a shuffle with width %d (must be a power of 2 up to 32)", width);
    fail_block(x, buf);
  }
  // shfl.sync's rule (PTX ISA): segments of `width` lanes; a source outside the segment (up,
  // down, and xor past its end) or outside the participating lanes gives the own value.
  const int seg = (32 - width) & 31;  // the segment bits of a lane id
  const int min_lane = (int)lane & seg, max_lane = min_lane | (31 & ~seg);
  const int bv = b & 31;
  int j = (int)lane;
  bool ok = true;
  switch (mode) {
    case 0: j = min_lane | (bv & ~seg & 31); break;
    case 1: j = (int)lane - bv; ok = j >= min_lane; break;
    case 2: j = (int)lane + bv; ok = j <= max_lane; break;
    default: j = (int)lane ^ bv; ok = j <= max_lane; break;
  }
  if (!ok || j < 0 || j > 31 || !(parts >> j & 1)) j = (int)lane;
  const uint64_t r = slot_of(snap, (unsigned)j).w[0];
  collective_end();
  return r;
}

unsigned vote(unsigned mask, int pred, int mode) {
  const uint64_t p = pred != 0;
  unsigned parts;
  const unsigned char *snap = collective(mask, kCollVote, &p, sizeof p, &parts);
  quiet q;
  unsigned ballot = 0;
  for (unsigned l = 0; l < 32; l++)
    if ((parts >> l & 1) && slot_of(snap, l).w[0]) ballot |= 1u << l;
  collective_end();
  switch (mode) {
    case 1: return ballot == parts;
    case 2: return ballot != 0;
    default: return ballot;
  }
}

unsigned match(unsigned mask, uint64_t bits, int *all_pred) {
  unsigned parts;
  const unsigned char *snap = collective(mask, kCollMatch, &bits, sizeof bits, &parts);
  quiet q;
  unsigned same = 0;
  for (unsigned l = 0; l < 32; l++)
    if ((parts >> l & 1) && slot_of(snap, l).w[0] == bits) same |= 1u << l;
  collective_end();
  if (!all_pred) return same;
  *all_pred = same == parts;
  return same == parts ? parts : 0;
}

unsigned reduce(unsigned mask, unsigned v, int mode) {
  const uint64_t in = v;
  unsigned parts;
  const unsigned char *snap = collective(mask, kCollReduce, &in, sizeof in, &parts);
  quiet q;
  bool first = true;
  unsigned r = 0;
  for (unsigned l = 0; l < 32; l++) {
    if (!(parts >> l & 1)) continue;
    const unsigned u = (unsigned)slot_of(snap, l).w[0];
    if (first) {
      r = u;
      first = false;
      continue;
    }
    switch (mode) {
      case 0: r += u; break;
      case 1: r = u < r ? u : r; break;
      case 2: r = u > r ? u : r; break;
      case 3: r &= u; break;
      case 4: r |= u; break;
      case 5: r ^= u; break;
      case 6: r = (int)u < (int)r ? u : r; break;
      default: r = (int)u > (int)r ? u : r; break;
    }
  }
  collective_end();
  return r;
}

void syncwarp(unsigned mask) {
  exec *x = t_exec;
  if (!x) return;
  thread_rec *t = x->cur;
  const uint64_t parity = t->syncwarp_count & 1;
  {
    quiet q;
    t->syncwarp_count++;
#if SRLM_SIM_TSAN
    __tsan_release(&x->B->sync[2 + 64 * t->warp + 2 * t->lane + parity]);
#endif
  }
  unsigned parts;
  const unsigned char *snap = collective(mask, kCollSyncwarp, &parity, sizeof parity, &parts);
  quiet q;
#if SRLM_SIM_TSAN
  x = t_exec;
  for (unsigned l = 0; l < 32; l++)
    if (parts >> l & 1) __tsan_acquire(&x->B->sync[2 + 64 * t->warp + 2 * l + slot_of(snap, l).w[0]]);
#else
  (void)snap;
#endif
  collective_end();
}

unsigned activemask(void) {
  quiet q;
  exec *x = t_exec;
  return x ? x->B->warps[x->cur->warp].live : 0;
}

unsigned lane_id(void) {
  quiet q;
  exec *x = t_exec;
  return x ? x->cur->lane : 0;
}

// The words of [p, p + bytes) (4-byte aligned: cp.async's and ldmatrix's addresses are).
template <class F>
void each_word(const void *p, unsigned bytes, F f) {
  for (uintptr_t a = (uintptr_t)p & ~(uintptr_t)3; a < (uintptr_t)p + bytes; a += 4) f(a);
}

// The hazard record of the word at a (fresh: nothing read or written yet in this block).
smem_word &word_at(exec *x, uintptr_t a) {
  block_state *B = x->B;
  const uintptr_t base = (uintptr_t)x->smem;
  if (a >= base && a - base < (uintptr_t)B->dyn_words.size() * 4) {
    smem_word &w = B->dyn_words[(a - base) / 4];
    if (w.gen != B->gen) w = smem_word{B->gen};
    return w;
  }
  return B->words[a / 4];
}

void cp_async_issue(void *dst, const void *src, unsigned bytes, unsigned src_bytes) {
  quiet q;
  exec *x = t_exec;
  if (!x) fail("cp.async outside a kernel");
  block_state *B = x->B;
  thread_rec *t = x->cur;
  each_word(dst, bytes, [&](uintptr_t a) {
    smem_word &w = word_at(x, a);
    const uint32_t others = w.read_phase == B->bar_phase ? w.read_warps & ~(1u << t->warp) : 0;
    if (others)
      fail("cp.async into shared memory at %p, which warp %d read by ldmatrix since the last __syncthreads: the "
           "buffer is refilled while another warp may still read it (write after read; a __syncthreads is missing "
           "before the refill)",
           (void *)a, __builtin_ctz(others));
    w.writer = t->linear;
    w.pending = true;
  });
  t->cp.push_back({dst, src, bytes, src_bytes});
}

void cp_async_commit(void) {
  quiet q;
  exec *x = t_exec;
  if (x) x->cur->cp_groups.push_back(x->cur->cp.size());
}

unsigned cp_async_due(unsigned n, cp_async_copy *out, unsigned cap) {
  quiet q;
  exec *x = t_exec;
  if (!x) return 0;
  thread_rec *t = x->cur;
  if (t->cp_groups.size() <= n) return 0;
  const size_t end = t->cp_groups[t->cp_groups.size() - n - 1];  // the copies of the groups that must land
  const unsigned k = (unsigned)(end < cap ? end : cap);
  for (unsigned i = 0; i < k; i++)
    each_word(t->cp[i].dst, t->cp[i].bytes, [&](uintptr_t a) {
      smem_word &w = word_at(x, a);
      if (w.writer != t->linear) return;  // another thread's copy went there since
      w.pending = false;
      w.landed_phase = x->B->bar_phase;
    });
  std::copy(t->cp.begin(), t->cp.begin() + k, out);
  t->cp.erase(t->cp.begin(), t->cp.begin() + k);
  size_t drop = 0;
  for (auto &g : t->cp_groups) {
    g -= k;
    drop += g == 0;
  }
  t->cp_groups.erase(t->cp_groups.begin(), t->cp_groups.begin() + (long)drop);
  return k;
}

void smem_read(const void *p, unsigned bytes) {
  quiet q;
  exec *x = t_exec;
  if (!x) return;
  block_state *B = x->B;
  thread_rec *t = x->cur;
  each_word(p, bytes, [&](uintptr_t a) {
    smem_word &w = word_at(x, a);
    const unsigned wwarp = w.writer / 32;
    if (w.pending)
      fail("ldmatrix reads shared memory at %p, which thread %u's cp.async has not landed (no cp.async.wait_group "
           "of that thread covered it yet: read before the wait)",
           (void *)a, w.writer);
    if (w.landed_phase == B->bar_phase && wwarp != t->warp)
      fail("ldmatrix by warp %u reads shared memory at %p, which thread %u (warp %u) wrote by cp.async and waited for "
           "since the last __syncthreads: another warp's copies are visible only after a barrier (read after write; "
           "a __syncthreads is missing after the wait)",
           t->warp, (void *)a, w.writer, wwarp);
    if (w.read_phase != B->bar_phase) {
      w.read_phase = B->bar_phase;
      w.read_warps = 0;
    }
    w.read_warps |= 1u << t->warp;
  });
}

void *dynamic_smem(void) {
  exec *x = t_exec;
  return x ? x->smem : nullptr;
}

void yield(void) {
  quiet q;
  exec *x = t_exec;
  if (!x) return;
  thread_rec *t = x->cur;
  t->state = kReady;
  push(x->B, t->linear);
  run_next(x, t->f);
  x = t_exec;
  resume_as(x, t);
  t->state = kRunning;
}

void fail(const char *fmt, ...) {
  quiet_begin();  // never ended: this fiber does not come back
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  exec *x = t_exec;
  if (!x) {
    fprintf(stderr, "srlm cuda-sim: %s (outside a kernel)\n", buf);
    abort();
  }
  const thread_rec *t = x->cur;
  char msg[640];
  snprintf(msg, sizeof msg, "thread (%u,%u,%u): %s", t->idx.x, t->idx.y, t->idx.z, buf);
  fail_block(x, msg);
}

long long clock64(void) { return (long long)(now_seconds() * 1e9); }

// ---- launches ---------------------------------------------------------------------------

void launch_grid(const char *name, const void *fn, void (*entry)(void *), void *arg, dim3 grid, dim3 block,
                 size_t smem, cudaStream_t stream) {
  if (t_exec) fail("kernel %s launched from device code (dynamic parallelism is not simulated)", name);
  const unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
  if (!block.x || !block.y || !block.z || block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024 ||
      !grid.x || !grid.y || !grid.z || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
    t_last_error = report(cudaErrorInvalidConfiguration,
                          "kernel %s: invalid launch configuration: grid (%u,%u,%u), block (%u,%u,%u) (at most 1024 "
                          "threads, (1024,1024,64) per block; grid up to (2^31-1,65535,65535))",
                          name, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    return;
  }
  size_t limit = kDefaultDynSmem;
  {
    std::lock_guard<std::mutex> lk(dev().mu);
    if (!valid_stream(stream)) {
      t_last_error = report(cudaErrorInvalidResourceHandle, "kernel %s: launched on a stream that does not exist", name);
      return;
    }
    auto it = dev().max_dyn_smem.find(fn);
    if (it != dev().max_dyn_smem.end()) limit = (size_t)it->second;
  }
  if (smem > limit) {
    t_last_error = report(cudaErrorInvalidValue,
                          "kernel %s: %zu bytes of dynamic shared memory, more than the %zu allowed (raise it with "
                          "cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize))",
                          name, smem, limit);
    return;
  }
  std::lock_guard<std::mutex> lk(launch_mutex());
  launch_rec L{name, entry, arg, grid, block, smem, stream ? stream : &dev().null_stream
#if SRLM_SIM_TSAN
               ,
               nullptr, nullptr
#endif
  };
#if SRLM_SIM_TSAN
  std::unique_ptr<uint64_t[]> sync(new uint64_t[2]);
  L.start = &sync[0];
  L.grid_done = &sync[1];
  __tsan_release(L.start);
  unsigned k = 0;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++)
        if (!run_block_tsan(&L, {bx, by, bz}, k++)) goto done;
done:
  __tsan_acquire(L.grid_done);
#else
  exec x;
  block_state B;
  x.L = &L;
  x.B = &B;
  std::unique_ptr<unsigned char[]> sm(smem ? new unsigned char[smem] : nullptr);
  x.smem = sm.get();
  t_exec = &x;
  blockDim = block;
  gridDim = grid;
  for (unsigned bz = 0; bz < grid.z; bz++)
    for (unsigned by = 0; by < grid.y; by++)
      for (unsigned bx = 0; bx < grid.x; bx++) {
        blockIdx = {bx, by, bz};
        setup_block(&x, &B, &L);
        run_block(&x);
        if (B.failed) {
          record_failure(&L, &B, blockIdx);
          goto done;
        }
      }
done:
  t_exec = nullptr;
#endif
}

cudaError_t func_set_attribute(const void *func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || (size_t)value > max_dyn_smem())
      return report(cudaErrorInvalidValue, "cudaFuncSetAttribute: %d bytes of dynamic shared memory (at most %zu)",
                    value, max_dyn_smem());
    std::lock_guard<std::mutex> lk(dev().mu);
    dev().max_dyn_smem[func] = value;
  }
  return cudaSuccess;
}

// ---- device, errors ---------------------------------------------------------------------

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
  }
}
const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaErrorUnknown";
  }
}
const char *describe(cudaError_t e) {
  if (e != cudaSuccess && e == t_detail_code && !t_detail.empty()) return t_detail.c_str();
  return cudaGetErrorString(e);
}

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last_error; }

cudaError_t cudaGetDeviceCount(int *count) {
  if (!count) return report(cudaErrorInvalidValue, "cudaGetDeviceCount: NULL count");
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
  if (!device) return report(cudaErrorInvalidValue, "cudaGetDevice: NULL device");
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device != 0) return report(cudaErrorInvalidDevice, "cudaSetDevice(%d): the simulator has device 0 only", device);
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
  if (!prop) return report(cudaErrorInvalidValue, "cudaGetDeviceProperties: NULL prop");
  if (device != 0) return report(cudaErrorInvalidDevice, "cudaGetDeviceProperties(%d): the simulator has device 0 only", device);
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "srlm CUDA simulator (CPU)");
  prop->totalGlobalMem = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
  prop->sharedMemPerBlock = kDefaultDynSmem;
  prop->sharedMemPerBlockOptin = max_dyn_smem();
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = 9;  // it runs what sm_90 runs (mma.sync, ldmatrix, cp.async)
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->maxThreadsPerMultiProcessor = 2048;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  std::lock_guard<std::mutex> lk(dev().mu);
  cudaError_t e = take_pending(&dev().null_stream);
  for (stream_rec *s : dev().streams) {
    const cudaError_t e2 = take_pending(s);
    if (e == cudaSuccess) e = e2;
  }
  return e;
}
// The simulated device's size: the host's memory, or SRLM_SIM_DEVICE_MEMORY bytes (to try
// what a job does on a smaller device); free = that minus what the simulation allocated.
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  size_t total = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
  size_t avail = (size_t)sysconf(_SC_AVPHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
  const char *env = getenv("SRLM_SIM_DEVICE_MEMORY");
  if (env && *env) {
    char *end = nullptr;
    unsigned long long v = strtoull(env, &end, 10);
    if (end && !*end && v > 0) {
      total = (size_t)v;
      size_t used = 0;
      {
        std::lock_guard<std::mutex> lk(dev().mu);
        for (const auto &kv : dev().dev) used += kv.second;
      }
      avail = used < total ? total - used : 0;
    }
  }
  if (free_bytes) *free_bytes = avail;
  if (total_bytes) *total_bytes = total;
  return cudaSuccess;
}

// ---- memory -----------------------------------------------------------------------------

bool is_device(const void *ptr, size_t bytes) {
  if (!ptr) return bytes == 0;
  std::lock_guard<std::mutex> lk(dev().mu);
  return in_table(dev().dev, ptr, bytes);
}

cudaError_t cudaMalloc(void **ptr, size_t bytes) {
  if (!ptr) return report(cudaErrorInvalidValue, "cudaMalloc: NULL result pointer");
  *ptr = nullptr;
  if (!bytes) return cudaSuccess;
  void *p = nullptr;
  if (posix_memalign(&p, 256, bytes) != 0)  // cudaMalloc's alignment; the exact size, for ASan
    return report(cudaErrorMemoryAllocation, "cudaMalloc: cannot allocate %zu bytes", bytes);
  memset(p, 0xff, bytes);  // device memory starts as garbage: NaN and -1 show a read before a write
  std::lock_guard<std::mutex> lk(dev().mu);
  dev().dev[(uintptr_t)p] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lk(dev().mu);
    auto it = dev().dev.find((uintptr_t)ptr);
    if (it == dev().dev.end())
      return report(cudaErrorInvalidValue, "cudaFree(%p): not the start of a live device allocation", ptr);
    dev().dev.erase(it);
  }
  free(ptr);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **ptr, size_t bytes, unsigned) {
  if (!ptr) return report(cudaErrorInvalidValue, "cudaMallocHost: NULL result pointer");
  *ptr = nullptr;
  if (!bytes) return cudaSuccess;
  void *p = nullptr;
  if (posix_memalign(&p, 64, bytes) != 0)
    return report(cudaErrorMemoryAllocation, "cudaMallocHost: cannot allocate %zu bytes", bytes);
  std::lock_guard<std::mutex> lk(dev().mu);
  dev().host[(uintptr_t)p] = bytes;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void **ptr, size_t bytes) { return cudaHostAlloc(ptr, bytes, 0); }

cudaError_t cudaFreeHost(void *ptr) {
  if (!ptr) return cudaSuccess;
  {
    std::lock_guard<std::mutex> lk(dev().mu);
    auto it = dev().host.find((uintptr_t)ptr);
    if (it == dev().host.end())
      return report(cudaErrorInvalidValue, "cudaFreeHost(%p): not the start of a live pinned allocation", ptr);
    dev().host.erase(it);
  }
  free(ptr);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes *attr, const void *ptr) {
  if (!attr) return report(cudaErrorInvalidValue, "cudaPointerGetAttributes: NULL attributes");
  std::lock_guard<std::mutex> lk(dev().mu);
  attr->device = 0;
  attr->devicePointer = nullptr;
  attr->hostPointer = nullptr;
  if (ptr && in_table(dev().dev, ptr, 0)) {
    attr->type = cudaMemoryTypeDevice;
    attr->devicePointer = const_cast<void *>(ptr);
  } else if (ptr && in_table(dev().host, ptr, 0)) {
    attr->type = cudaMemoryTypeHost;
    attr->hostPointer = const_cast<void *>(ptr);
    attr->devicePointer = const_cast<void *>(ptr);
  } else {
    attr->type = cudaMemoryTypeUnregistered;
  }
  return cudaSuccess;
}

namespace {

const char *kind_str(cudaMemcpyKind k) {
  switch (k) {
    case cudaMemcpyHostToHost: return "HostToHost";
    case cudaMemcpyHostToDevice: return "HostToDevice";
    case cudaMemcpyDeviceToHost: return "DeviceToHost";
    case cudaMemcpyDeviceToDevice: return "DeviceToDevice";
    default: return "Default";
  }
}

// What the GPU would reject or fault on: each side must be what the kind says.
cudaError_t check_copy(const char *call, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
  if (!dst || !src) return report(cudaErrorInvalidValue, "%s: NULL %s", call, dst ? "source" : "destination");
  std::lock_guard<std::mutex> lk(dev().mu);
  const bool dst_dev = in_table(dev().dev, dst, bytes), src_dev = in_table(dev().dev, src, bytes);
  const bool dst_any = in_table(dev().dev, dst, 0), src_any = in_table(dev().dev, src, 0);
  const bool want_dst = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind == cudaMemcpyDefault) return cudaSuccess;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return report(cudaErrorInvalidMemcpyDirection, "%s: copy kind %d", call, (int)kind);
  if (want_dst && !dst_dev)
    return report(cudaErrorInvalidValue, "%s %s: the destination %p (%zu bytes) is not %s", call, kind_str(kind), dst,
                  bytes, dst_any ? "inside one device allocation" : "device memory");
  if (want_src && !src_dev)
    return report(cudaErrorInvalidValue, "%s %s: the source %p (%zu bytes) is not %s", call, kind_str(kind), src, bytes,
                  src_any ? "inside one device allocation" : "device memory");
  if (!want_dst && dst_any)
    return report(cudaErrorInvalidValue, "%s %s: the destination %p is device memory", call, kind_str(kind), dst);
  if (!want_src && src_any)
    return report(cudaErrorInvalidValue, "%s %s: the source %p is device memory", call, kind_str(kind), src);
  return cudaSuccess;
}

cudaError_t check_stream(const char *call, cudaStream_t s) {
  std::lock_guard<std::mutex> lk(dev().mu);
  if (!valid_stream(s)) return report(cudaErrorInvalidResourceHandle, "%s: the stream does not exist", call);
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
  if (!bytes) return cudaSuccess;
  const cudaError_t e = check_copy("cudaMemcpy", dst, src, bytes, kind);
  if (e != cudaSuccess) return e;
  memmove(dst, src, bytes);
  std::lock_guard<std::mutex> lk(dev().mu);
  return take_pending(&dev().null_stream);  // a synchronous copy reports earlier failures
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  cudaError_t e = check_stream("cudaMemcpyAsync", stream);
  if (e != cudaSuccess || !bytes) return e;
  e = check_copy("cudaMemcpyAsync", dst, src, bytes, kind);
  if (e != cudaSuccess) return e;
  memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void *dst, int value, size_t bytes) { return cudaMemsetAsync(dst, value, bytes, nullptr); }

cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream) {
  cudaError_t e = check_stream("cudaMemsetAsync", stream);
  if (e != cudaSuccess || !bytes) return e;
  if (!is_device(dst, bytes))
    return report(cudaErrorInvalidValue, "cudaMemset: the destination %p (%zu bytes) is not device memory", dst, bytes);
  memset(dst, value, bytes);
  return cudaSuccess;
}

// ---- streams and events -----------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
  if (!stream) return report(cudaErrorInvalidValue, "cudaStreamCreate: NULL result pointer");
  stream_rec *s = new stream_rec{flags, cudaSuccess, {}};
  std::lock_guard<std::mutex> lk(dev().mu);
  dev().streams.push_back(s);
  *stream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return report(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: the default stream");
  std::lock_guard<std::mutex> lk(dev().mu);
  auto &v = dev().streams;
  for (size_t i = 0; i < v.size(); i++)
    if (v[i] == stream) {
      v.erase(v.begin() + (long)i);
      delete stream;
      return cudaSuccess;
    }
  return report(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: the stream does not exist");
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  std::lock_guard<std::mutex> lk(dev().mu);
  if (!valid_stream(stream)) return report(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: the stream does not exist");
  return take_pending(stream ? stream : &dev().null_stream);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned) {
  if (!event) return report(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: NULL event");
  return check_stream("cudaStreamWaitEvent", stream);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned) {
  if (!event) return report(cudaErrorInvalidValue, "cudaEventCreate: NULL result pointer");
  *event = new event_rec{0.0};
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return report(cudaErrorInvalidResourceHandle, "cudaEventRecord: NULL event");
  const cudaError_t e = check_stream("cudaEventRecord", stream);
  if (e == cudaSuccess) event->t = now_seconds();
  return e;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return report(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: NULL event");
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms || !start || !end) return report(cudaErrorInvalidValue, "cudaEventElapsedTime: NULL argument");
  *ms = (float)((end->t - start->t) * 1e3);
  return cudaSuccess;
}

}  // namespace srlm_sim
