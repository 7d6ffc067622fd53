"""Writes variants of src/cuda/fa2_decode_kernel.cuh (tensor-core kernel's key loop) into DEST/<name>/ for
fa2_variants.sh. Usage: python3 fa2_variants.py SRC_CUDA_DIR DEST"""
import pathlib
import shutil
import sys

src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
text = (src / "fa2_decode_kernel.cuh").read_text()

RING = "static constexpr int kRingBytes = 96 * 1024;"
LOOP_HEAD = """    cp_async_wait<S - 2>();  // tile i has landed (this lane's copies) ...
    __syncwarp();            // ... and every lane's; every lane is also done reading slot i - 1
    const int refill = slot == 0 ? S - 1 : slot - 1;
    ring_issue<T, D>(ring_addr + refill * A::kTileBytes, k_base, v_base, tile_base(i + S - 1), key_end, lane);
"""
# Issue tile i + S - 1 before waiting for tile i (one more tile in flight during the wait): the slot it refills
# was read in iteration i - 1, so a __syncwarp at the end of that iteration (here: before the issue) suffices.
LOOP_HEAD_ISSUE_FIRST = """    __syncwarp();            // every lane is done reading slot i - 1
    const int refill = slot == 0 ? S - 1 : slot - 1;
    ring_issue<T, D>(ring_addr + refill * A::kTileBytes, k_base, v_base, tile_base(i + S - 1), key_end, lane);
    cp_async_wait<S - 1>();  // tile i has landed (this lane's copies) ...
    __syncwarp();            // ... and every lane's
"""
CONSUME = "      mma_consume<T, D, false>(x, qa, tile_base(i), key_end, t, scale_log2, m, l, o);"
NO_CONSUME = """      {  // diagnostic: no math, the fragments only folded into one word (wrong results)
        uint32_t f = 0;
#pragma unroll
        for (int a = 0; a < 2; ++a)
#pragma unroll
          for (int j = 0; j < D / 32; ++j) f ^= x.k[a][j].x ^ x.k[a][j].y ^ x.k[a][j].z ^ x.k[a][j].w;
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
          for (int j = 0; j < D / 64; ++j) f ^= x.v[a][j].x ^ x.v[a][j].y ^ x.v[a][j].z ^ x.v[a][j].w;
        l[0] += __uint_as_float(f & 0x3fffffu);
      }"""
# The ring's base rounded up to 128 bytes (the static shared memory of s_m / s_l sits before the dynamic
# allocation, so its base is only 16-byte aligned): 128 more bytes of dynamic shared memory.
SMEM_DECL = "  extern __shared__ __align__(16) unsigned char mma_smem[];"
SMEM_DECL_ALIGNED = """  extern __shared__ __align__(16) unsigned char mma_smem_raw[];
  unsigned char* mma_smem = mma_smem_raw + ((128u - (static_cast<uint32_t>(__cvta_generic_to_shared(mma_smem_raw)) & 127u)) & 127u);"""
SMEM_BYTES = "constexpr int mma_smem_bytes() { return MmaRing<D>::kRingBytes; }"
SMEM_BYTES_ALIGNED = "constexpr int mma_smem_bytes() { return MmaRing<D>::kRingBytes + 128; }"
for needle in (RING, LOOP_HEAD, CONSUME, SMEM_DECL, SMEM_BYTES):
    assert text.count(needle) == 1, needle

variants = {
    "base": text,
    "ring192": text.replace(RING, RING.replace("96 *", "192 *")),
    "issue_first": text.replace(LOOP_HEAD, LOOP_HEAD_ISSUE_FIRST),
    "ring192_issue_first": text.replace(RING, RING.replace("96 *", "192 *")).replace(LOOP_HEAD, LOOP_HEAD_ISSUE_FIRST),
    "no_math": text.replace(CONSUME, NO_CONSUME),
    "aligned": text.replace(SMEM_DECL, SMEM_DECL_ALIGNED).replace(SMEM_BYTES, SMEM_BYTES_ALIGNED),
    "aligned_issue_first": text.replace(SMEM_DECL, SMEM_DECL_ALIGNED).replace(SMEM_BYTES, SMEM_BYTES_ALIGNED)
    .replace(LOOP_HEAD, LOOP_HEAD_ISSUE_FIRST),
}
for name, body in variants.items():
    d = dest / name
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(src, d)
    (d / "fa2_decode_kernel.cuh").write_text(body)
    print(name)
