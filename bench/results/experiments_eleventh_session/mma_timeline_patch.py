"""Eleventh session experiment: instruments fa2_decode's tensor-core kernel (a copy of the tree, never the committed
one) with global-timer stamps per block, written past the lengths array (the driver passes a device buffer whose
first int is the length and whose bytes from offset 256 hold 8 u64 per block): [0] block start, [1..NW] each
warp's end of the key loop, [5] before the block's end (finish_block, or finish_block_cluster), [6] after it (the last block of a head
group merges there).
Usage: python mma_timeline_patch.py path/to/src/cuda/fa2_decode_kernel.cuh"""
import sys

path = sys.argv[1]
s = open(path).read()


def once(old: str, new: str) -> None:
    global s
    assert s.count(old) == 1, f"patch target not unique: {old!r}"
    s = s.replace(old, new)


stamp = 'asm volatile("mov.u64 %0, %globaltimer;" : "=l"(_ts));'
once("  const int t = lane & 3;\n\n  extern __shared__ __align__(16) unsigned char mma_smem[];",
     "  const int t = lane & 3;\n  unsigned long long _ts;\n"
     "  unsigned long long* _tr = reinterpret_cast<unsigned long long*>(const_cast<int*>(seq_lens) + 64) +"
     " (static_cast<size_t>(blockIdx.y) * gridDim.x + blockIdx.x) * 8;\n"
     f"  {stamp}\n  if (threadIdx.x == 0) _tr[0] = _ts;\n\n"
     "  extern __shared__ __align__(16) unsigned char mma_smem[];")
once("  cp_async_wait<0>();\n  __syncthreads();\n  __shared__ float s_m[NW][kMmaRows];",
     f"  {stamp}\n  if (lane == 0) _tr[1 + warp] = _ts;\n"
     "  cp_async_wait<0>();\n  __syncthreads();\n  __shared__ float s_m[NW][kMmaRows];")
# Around the kernel's end: its finish_block call (in the session's cluster experiment, the if/else choosing
# finish_block_cluster, up to #endif).
kernel_at = s.index("fa2_decode_mma_kernel(")
if "cluster_blocks() > 1) {" in s:
    call_start = s.index("  if (num_splits > 1 && cluster_blocks() > 1) {", kernel_at)
    call_end = s.index("#endif", call_start)
else:
    call_start = s.index("  finish_block<T, D, NW, kMmaRows", kernel_at)
    call_end = s.index(");\n", call_start) + 3
s = (s[:call_start] + f"  {stamp}\n  if (threadIdx.x == 0) _tr[5] = _ts;\n" + s[call_start:call_end]
     + f"  __syncthreads();\n  {stamp}\n  if (threadIdx.x == 0) _tr[6] = _ts;\n" + s[call_end:])
open(path, "w").write(s)
print("patched", path)
