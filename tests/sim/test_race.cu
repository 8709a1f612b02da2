/* Races the simulator must make visible to ThreadSanitizer (cuda_sim.h, "ThreadSanitizer"):
 *   shared  a block reduction with a __syncthreads missing between two phases
 *   blocks  two blocks writing one location (blocks are not ordered)
 *   warp    a shuffle used where a __syncwarp is needed (shuffles order no memory)
 *   clean   the same three done right: no report
 * In the ThreadSanitizer build, "sim.race_<mode>" runs each racy mode and passes when TSan
 * reports a data race in it; "sim.race" (no argument) runs the clean one, everywhere. */
#include "sim_test.h"

namespace {

constexpr int kThreads = 64;

__global__ void block_sum(const int *in, int *out, int racy) {
  __shared__ int part[kThreads];
  const int t = threadIdx.x;
  part[t] = in[blockIdx.x * kThreads + t];
  if (!racy) __syncthreads();  // the racy version reads a neighbour's slot before it is written
  for (int s = kThreads / 2; s > 0; s /= 2) {
    if (t < s) part[t] += part[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = part[0];
}

__global__ void per_block(int *out, int racy) {
  // racy: every block writes out[threadIdx.x] (the block offset forgotten)
  const int i = racy ? (int)threadIdx.x : (int)(blockIdx.x * blockDim.x + threadIdx.x);
  out[i] = (int)blockIdx.x;
}

__global__ void warp_pass(int *buf, int *out, int racy) {
  const int lane = threadIdx.x % 32;
  buf[lane] = lane * 3;
  if (racy) (void)__shfl_sync(0xffffffffu, lane, 0);  // exchanges a value, orders no memory
  else __syncwarp();
  out[lane] = buf[(lane + 1) % 32];
}

int run(int racy, const char *which) {
  const int blocks = 4;
  int hin[blocks * kThreads], hout[blocks * kThreads];
  for (int i = 0; i < blocks * kThreads; i++) hin[i] = i % 11;
  int *in = dev_from(hin, blocks * kThreads), *out = dev_from<int>(nullptr, blocks * kThreads);
  int *buf = dev_from<int>(nullptr, 32);
  if (!strcmp(which, "shared") || !strcmp(which, "all")) {
    SRLM_LAUNCH(block_sum, blocks, kThreads, 0, 0, in, out, racy);
    CK_LAUNCH();
    CK(cudaMemcpy(hout, out, blocks * sizeof(int), cudaMemcpyDeviceToHost));
    for (int b = 0; b < blocks && !racy; b++) {
      int s = 0;
      for (int t = 0; t < kThreads; t++) s += hin[b * kThreads + t];
      EXPECT_EQ_INT(hout[b], s);
    }
  }
  if (!strcmp(which, "blocks") || !strcmp(which, "all")) {
    SRLM_LAUNCH(per_block, blocks, kThreads, 0, 0, out, racy);
    CK_LAUNCH();
    CK(cudaMemcpy(hout, out, sizeof hout, cudaMemcpyDeviceToHost));
    for (int i = 0; i < blocks * kThreads && !racy; i++) EXPECT_EQ_INT(hout[i], i / kThreads);
  }
  if (!strcmp(which, "warp") || !strcmp(which, "all")) {
    SRLM_LAUNCH(warp_pass, 1, 32, 0, 0, buf, out, racy);
    CK_LAUNCH();
    CK(cudaMemcpy(hout, out, 32 * sizeof(int), cudaMemcpyDeviceToHost));
    for (int l = 0; l < 32 && !racy; l++) EXPECT_EQ_INT(hout[l], ((l + 1) % 32) * 3);
  }
  CK(cudaFree(in));
  CK(cudaFree(out));
  CK(cudaFree(buf));
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "clean";
  if (strcmp(mode, "clean") != 0) {
    fprintf(stderr, "running the racy kernel '%s' (ThreadSanitizer should report a data race)\n", mode);
    if (run(1, mode)) return 1;
  } else if (run(0, "all")) {
    return 1;
  }
  TEST_MAIN_END();
}
