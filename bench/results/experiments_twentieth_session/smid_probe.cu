// Twentieth session probe: which SM each block of a persistent grid lands on. Launches `blocks` blocks of
// `threads` threads with `smem` bytes of dynamic shared memory (chosen so that 3 blocks fit an SM, like the T-MAC
// stream kernel on 14336 x 4096), each block spinning ~20 us so all are resident at once; prints blockIdx -> smid
// and, for the stream kernel's static assignment (block b takes tiles b, b + grid, ...), the tiles per SM.
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>

__global__ void probe(int* smid_of_block, long long spin_ns) {
  extern __shared__ int smem[];
  unsigned smid;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(smid));
  long long t0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
  long long t = t0;
  while (t - t0 < spin_ns) asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  smem[threadIdx.x] = smid;
  if (threadIdx.x == 0) smid_of_block[blockIdx.x] = smem[0];
}

int main(int argc, char** argv) {
  const int blocks = argc > 1 ? atoi(argv[1]) : 396, threads = argc > 2 ? atoi(argv[2]) : 256;
  const int smem = argc > 3 ? atoi(argv[3]) : 70 * 1024, tiles = argc > 4 ? atoi(argv[4]) : 896;
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  int per_sm = 0;
  cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, probe, threads, smem);
  int* d;
  cudaMalloc(&d, blocks * sizeof(int));
  probe<<<blocks, threads, smem>>>(d, 20000);
  if (cudaDeviceSynchronize() != cudaSuccess) { printf("launch failed\n"); return 1; }
  std::vector<int> h(blocks);
  cudaMemcpy(h.data(), d, blocks * sizeof(int), cudaMemcpyDeviceToHost);
  printf("sms %d, blocks per sm (occupancy) %d, blocks %d, tiles %d\n", sms, per_sm, blocks, tiles);
  printf("smid of blocks:");
  for (int b = 0; b < blocks; ++b) printf(" %d", h[b]);
  printf("\n");
  std::vector<int> tiles_on(sms, 0), blocks_on(sms, 0);
  for (int b = 0; b < blocks; ++b) {
    blocks_on[h[b]]++;
    for (int t = b; t < tiles; t += blocks) tiles_on[h[b]]++;
  }
  std::vector<int> hist(64, 0), bhist(16, 0);
  for (int s = 0; s < sms; ++s) { hist[std::min(tiles_on[s], 63)]++; bhist[std::min(blocks_on[s], 15)]++; }
  printf("tiles per SM: histogram (tiles: SMs):");
  for (int i = 0; i < 64; ++i) if (hist[i]) printf(" %d:%d", i, hist[i]);
  printf("\nblocks per SM: histogram:");
  for (int i = 0; i < 16; ++i) if (bhist[i]) printf(" %d:%d", i, bhist[i]);
  printf("\nmax tiles per SM %d, mean %.2f\n", *std::max_element(tiles_on.begin(), tiles_on.end()), double(tiles) / sms);
  return 0;
}
