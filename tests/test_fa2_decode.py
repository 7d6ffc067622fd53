"""fa2_decode and kv_append against a float64 numpy reference.

Inputs are drawn fresh per test, rounded to the storage type, and the reference is computed in float64 from the
rounded values, so the only differences are the kernel's fp32 arithmetic and the final rounding of the output:
- float32 storage: |err| <= 1e-5 |ref| + 1e-6 (fp32 accumulation over up to 65537 keys, exp2 on the
  special-function unit, ex2.approx: relative error about 2**-22);
- float16: |err| <= 2**-10 |ref| + 1e-4 (one rounding to fp16 is 2**-11 relative, plus fp32 arithmetic);
- bfloat16: |err| <= 2**-7 |ref| + 1e-3 (one rounding to bf16 is 2**-8 relative).
The tensor-core variant ("mma") also rounds the softmax weights p to the storage type before P @ V (as
FlashAttention-2 does), which adds at most 2**-11 (fp16) / 2**-8 (bf16) of sum_i p_i |v_i| to those bounds.
Outputs are poisoned with NaN (all bytes 0xFF) before each launch and must come back fully written.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import edgellm_ext
from edgellm_ext import _core, attention, cuda

TOL = {"float32": (1e-5, 1e-6), "float16": (2.0**-10, 1e-4), "bfloat16": (2.0**-7, 1e-3)}
P_ROUNDING = {"float16": 2.0**-11, "bfloat16": 2.0**-8}  # relative rounding of p in the "mma" variant


def _round_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), round to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def _to_storage(x: np.ndarray, dtype: str) -> tuple[cuda.DeviceArray, np.ndarray]:
    """(device array in `dtype`, the exact stored values as float64)."""
    if dtype == "bfloat16":
        bits = _round_bf16_bits(x)
        dev = cuda.from_host(bits)
        return dataclasses.replace(dev, dtype="bfloat16"), (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    stored = x.astype(np.dtype(dtype))
    return cuda.from_host(stored), stored.astype(np.float64)


def _reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, lens: np.ndarray,
               scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(softmax(scale q.K^T) @ V, softmax(...) @ |V|): the output and the scale of p's rounding error. A cache of
    batch 1 beside several queries is shared by all of them (kv_shared)."""
    batch, q_heads, _ = q.shape
    group = q_heads // k.shape[1]
    out = np.zeros_like(q)
    weighted_abs = np.zeros_like(q)
    for b in range(batch):
        cb = 0 if k.shape[0] == 1 else b
        for h in range(q_heads):
            kb, vb = k[cb, h // group, : lens[b]], v[cb, h // group, : lens[b]]
            s = (kb @ q[b, h]) * scale
            p = np.exp(s - s.max())
            out[b, h] = (p / p.sum()) @ vb
            weighted_abs[b, h] = (p / p.sum()) @ np.abs(vb)
    return out, weighted_abs


def _run(rng: np.random.Generator, *, batch: int, q_heads: int, kv_heads: int, head_dim: int, lens: list[int],
         dtype: str, num_splits: int | None = None, max_seq: int | None = None, device_lens: bool = False,
         heads_per_block: int | None = None, variant: str = "auto", nan_past_lengths: bool = False,
         kv_shared: bool = False, merge: str = "auto") -> None:
    max_seq = max_seq or max(lens)
    kv_shape = (1 if kv_shared else batch, kv_heads, max_seq, head_dim)
    k_host = rng.standard_normal(kv_shape, dtype=np.float32)
    v_host = rng.standard_normal(kv_shape, dtype=np.float32)
    if nan_past_lengths:  # cache slots past each length (kv_shared: past the longest) hold NaN
        for b, n in enumerate([max(lens)] if kv_shared else lens):
            k_host[b, :, n:] = np.nan
            v_host[b, :, n:] = np.nan
    q_dev, q = _to_storage(rng.standard_normal((batch, q_heads, head_dim), dtype=np.float32), dtype)
    k_dev, k = _to_storage(k_host, dtype)
    v_dev, v = _to_storage(v_host, dtype)
    out = dataclasses.replace(cuda.empty(q.shape, "float32" if dtype == "float32" else "uint16"), dtype=dtype)
    lens_arr = np.asarray(lens, dtype=np.int32)
    seq_lens = cuda.from_host(lens_arr) if device_lens else lens_arr
    plan = attention.Fa2Decode(q_dev, k_dev, v_dev, seq_lens, out, num_splits=num_splits,
                               heads_per_block=heads_per_block, variant=variant, kv_shared=kv_shared, merge=merge)
    if merge != "auto" and plan.num_splits > 1:
        assert plan.merge == merge
    if heads_per_block is not None:
        assert plan.heads_per_block == heads_per_block
    if variant != "auto":
        assert plan.variant == variant
    ref, weighted_abs = _reference(q, k, v, lens_arr, 1.0 / math.sqrt(head_dim))
    rtol, atol = TOL[dtype]
    if plan.variant == "mma":
        atol = atol + P_ROUNDING[dtype] * weighted_abs
    for launch in range(2):  # a second launch checks the split counters were reset for replay
        out.owner.fill_bytes(0xFF, 0)
        plan.launch()
        got = cuda.to_host(out).astype(np.float64) if dtype != "float16" else cuda.to_host(out).astype(np.float64)
        assert np.all(np.isfinite(got)), f"launch {launch}: unwritten (NaN) outputs"
        err = np.abs(got - ref)
        bad = err > rtol * np.abs(ref) + atol
        assert not bad.any(), f"launch {launch}: max error {err.max():.3g}, {bad.sum()} elements out of tolerance"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("head_dim", attention.HEAD_DIMS)
def test_every_head_dim_and_dtype(rng: np.random.Generator, dtype: str, head_dim: int) -> None:
    _run(rng, batch=2, q_heads=6, kv_heads=2, head_dim=head_dim, lens=[1000, 37], dtype=dtype)
    # Both merges of every merge-kernel instantiation (its column groups and split slices depend on D).
    for merge in ("block", "kernel"):
        _run(rng, batch=2, q_heads=6, kv_heads=2, head_dim=head_dim, lens=[1000, 37], dtype=dtype, num_splits=21,
             merge=merge, nan_past_lengths=True)


@pytest.mark.gpu
@pytest.mark.parametrize("q_heads,kv_heads", [(4, 4), (9, 3), (14, 2), (32, 4), (12, 1), (24, 2)])
@pytest.mark.parametrize("length", [1, 7, 1000])
def test_gqa_ratios_and_lengths(rng: np.random.Generator, q_heads: int, kv_heads: int, length: int) -> None:
    _run(rng, batch=1, q_heads=q_heads, kv_heads=kv_heads, head_dim=64, lens=[length], dtype="float16")


@pytest.mark.gpu
@pytest.mark.parametrize("merge", ["block", "kernel"])
@pytest.mark.parametrize("variant", ["simt", "mma"])
@pytest.mark.parametrize("num_splits", [1, 2, 3, 61, 64, 128, None])
def test_split_counts_including_empty_splits(rng: np.random.Generator, num_splits: int | None, variant: str,
                                             merge: str) -> None:
    # 64 splits of 512 keys: chunks of 8 keys, so the tensor-core kernel's 16-key tiles cross every split's end.
    # Up to the 128-split limit (chunks of 4 keys); most splits are past the lengths (empty).
    _run(rng, batch=3, q_heads=8, kv_heads=8, head_dim=128, lens=[5, 300, 129], dtype="float16",
         num_splits=num_splits, max_seq=512, variant=variant, nan_past_lengths=True, merge=merge)


@pytest.mark.gpu
@pytest.mark.parametrize("merge", ["block", "kernel"])
@pytest.mark.parametrize("num_splits", [8, 64, 128])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_tensor_core_many_heads_and_splits(rng: np.random.Generator, num_splits: int, head_dim: int,
                                           merge: str) -> None:
    # 6 and 16 heads per block (the padded accumulator rows, the merge of many heads), up to the 128-split limit;
    # a length of 3000 in 4096 leaves the last splits empty.
    for q_heads in (12, 32):
        _run(rng, batch=2, q_heads=q_heads, kv_heads=2, head_dim=head_dim, lens=[4096, 3000], dtype="float16",
             num_splits=num_splits, max_seq=4096, variant="mma", nan_past_lengths=True, merge=merge)


@pytest.mark.gpu
@pytest.mark.parametrize("heads_per_block", [1, 2, 4, 8])
@pytest.mark.parametrize("head_dim", [64, 256])
def test_every_heads_per_block(rng: np.random.Generator, heads_per_block: int, head_dim: int) -> None:
    _run(rng, batch=2, q_heads=14, kv_heads=2, head_dim=head_dim, lens=[700, 9], dtype="float16",
         heads_per_block=heads_per_block, num_splits=3)
    _run(rng, batch=1, q_heads=8, kv_heads=8, head_dim=head_dim, lens=[70], dtype="float32",
         heads_per_block=heads_per_block)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("variant", ["simt", "mma"])
def test_both_variants(rng: np.random.Generator, variant: str, head_dim: int, dtype: str) -> None:
    # Lengths that end inside a warp step and a block step, several splits (the first loads reach past the
    # length), NaN in the cache past every length, group sizes 1, 3, 7, 16 and 24 (two head blocks of the mma
    # variant), device lengths.
    for q_heads, kv_heads in ((14, 2), (4, 4), (9, 3), (32, 2), (24, 1)):
        _run(rng, batch=3, q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim, lens=[1, 333, 1030], dtype=dtype,
             num_splits=3, max_seq=1100, device_lens=True, variant=variant, nan_past_lengths=True)
    _run(rng, batch=1, q_heads=8, kv_heads=2, head_dim=head_dim, lens=[4099], dtype=dtype, variant=variant)
    _run(rng, batch=2, q_heads=6, kv_heads=3, head_dim=head_dim, lens=[17, 64], dtype=dtype, variant=variant,
         num_splits=1)


@pytest.mark.gpu
@pytest.mark.parametrize("merge", ["block", "kernel"])
@pytest.mark.parametrize("variant", ["simt", "mma"])
@pytest.mark.parametrize("head_dim", [64, 128])
def test_kv_shared_queries_of_one_sequence(rng: np.random.Generator, variant: str, head_dim: int, merge: str) -> None:
    # The GPU engine's batched prefill: 8 queries of one sequence over its one cache, each with its own (causal)
    # length; the keys between a query's length and the longest one are real values that it must not see.
    lens = [9001 + i for i in range(8)]
    _run(rng, batch=8, q_heads=9, kv_heads=3, head_dim=head_dim, lens=lens, dtype="float16", variant=variant,
         max_seq=9016, nan_past_lengths=True, kv_shared=True, device_lens=True, merge=merge, num_splits=16)
    _run(rng, batch=8, q_heads=9, kv_heads=3, head_dim=head_dim, lens=[1, 2, 3, 4, 5, 6, 7, 8], dtype="bfloat16",
         variant=variant, nan_past_lengths=True, kv_shared=True)


@pytest.mark.gpu
def test_variant_limits_are_errors() -> None:
    q32 = cuda.empty((1, 8, 128), "float32")
    k32 = cuda.empty((1, 2, 64, 128), "float32")
    with pytest.raises(ValueError, match=r"the tensor-core kernel needs fp16 or bf16 storage, head_dim 64 or 128"):
        attention.Fa2Decode(q32, k32, k32, [64], variant="mma")
    q80 = cuda.empty((1, 8, 80), "float16")
    k80 = cuda.empty((1, 2, 64, 80), "float16")
    with pytest.raises(ValueError, match=r"the tensor-core kernel needs fp16 or bf16 storage, head_dim 64 or 128"):
        attention.Fa2Decode(q80, k80, k80, [64], variant="mma")
    assert attention.Fa2Decode(q80, k80, k80, [64]).variant == "simt"  # auto: the kernel that exists


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["simt", "mma"])
def test_long_context_65537(rng: np.random.Generator, variant: str) -> None:
    _run(rng, batch=1, q_heads=8, kv_heads=1, head_dim=128, lens=[65537], dtype="float16", variant=variant)
    # Many ring tiles per warp (a single split: 1024 tiles each) and lengths ending inside a tile, NaN past them.
    _run(rng, batch=1, q_heads=7, kv_heads=1, head_dim=64, lens=[65537], dtype="bfloat16", variant=variant,
         num_splits=1)
    _run(rng, batch=2, q_heads=4, kv_heads=1, head_dim=128, lens=[20001, 9], dtype="float16", variant=variant,
         num_splits=1, max_seq=20008, nan_past_lengths=True)


@pytest.mark.gpu
def test_device_lengths_shorter_than_cache(rng: np.random.Generator) -> None:
    _run(rng, batch=2, q_heads=14, kv_heads=2, head_dim=64, lens=[3, 999], dtype="bfloat16", max_seq=4096,
         device_lens=True)


@pytest.mark.gpu
def test_numpy_in_numpy_out(rng: np.random.Generator) -> None:
    q = rng.standard_normal((1, 9, 64)).astype(np.float32)
    k = rng.standard_normal((1, 3, 100, 64)).astype(np.float32)
    v = rng.standard_normal((1, 3, 100, 64)).astype(np.float32)
    got = attention.fa2_decode(q, k, v, [100])
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    ref, _ = _reference(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), np.array([100]), 1 / 8)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("merge", ["block", "kernel"])
def test_graph_replay_matches_eager(rng: np.random.Generator, merge: str) -> None:
    q_dev, q = _to_storage(rng.standard_normal((1, 32, 128), dtype=np.float32), "float16")
    k_dev, k = _to_storage(rng.standard_normal((1, 8, 2048, 128), dtype=np.float32), "float16")
    v_dev, v = _to_storage(rng.standard_normal((1, 8, 2048, 128), dtype=np.float32), "float16")
    out = cuda.empty(q.shape, "float16")
    plan = attention.Fa2Decode(q_dev, k_dev, v_dev, [2048], out, merge=merge)
    assert plan.num_splits > 1 and plan.merge == merge
    assert plan.op.kernels_per_launch == (2 if merge == "kernel" else 1)
    with cuda.Timer(flush_l2=False) as timer:
        out.owner.fill_bytes(0xFF, 0)
        times = timer.graph(plan.op, launches_per_graph=5, warmup=1, replays=3)
    assert np.all(times > 0)
    got = cuda.to_host(out).astype(np.float64)
    ref, weighted_abs = _reference(q, k, v, np.array([2048]), 1 / math.sqrt(128))
    p_term = P_ROUNDING["float16"] * weighted_abs if plan.variant == "mma" else 0.0
    assert np.all(np.abs(got - ref) <= 2.0**-10 * np.abs(ref) + 1e-4 + p_term)


@pytest.mark.gpu
def test_kv_append_writes_only_its_rows(rng: np.random.Generator) -> None:
    batch, kv_heads, max_seq, head_dim = 2, 3, 16, 64
    cache_host = rng.standard_normal((batch, kv_heads, max_seq, head_dim)).astype(np.float16)
    k_cache, v_cache = cuda.from_host(cache_host), cuda.from_host(cache_host[::-1].copy())
    k_new = rng.standard_normal((batch, kv_heads, head_dim)).astype(np.float16)
    v_new = rng.standard_normal((batch, kv_heads, head_dim)).astype(np.float16)
    attention.kv_append(k_cache, v_cache, k_new, v_new, [5, 15])
    k_after, v_after = cuda.to_host(k_cache), cuda.to_host(v_cache)
    k_expect, v_expect = cache_host.copy(), cache_host[::-1].copy()
    k_expect[0, :, 5], k_expect[1, :, 15] = k_new[0], k_new[1]
    v_expect[0, :, 5], v_expect[1, :, 15] = v_new[0], v_new[1]
    np.testing.assert_array_equal(k_after, k_expect)
    np.testing.assert_array_equal(v_after, v_expect)
    with pytest.raises(ValueError, match=r"positions: every position must be in \[0, max_seq=16\), got \[3, 16\]"):
        attention.kv_append(k_cache, v_cache, k_new, v_new, [3, 16])


# ------------------------------------------------------------------ bad input (runs without a GPU)
def _arrays(batch=1, q_heads=4, kv_heads=2, head_dim=64, max_seq=8, dtype=np.float16):
    q = np.ones((batch, q_heads, head_dim), dtype)
    k = np.ones((batch, kv_heads, max_seq, head_dim), dtype)
    return q, k, k.copy()


def test_rejects_bad_shapes_and_dtypes_before_touching_the_gpu() -> None:
    q, k, v = _arrays()
    with pytest.raises(ValueError, match=r"q: expected shape \(B, Hq, D\), got \(4, 64\)"):
        attention.fa2_decode(q[0], k, v, [8])
    with pytest.raises(ValueError, match=r"v_cache: expected shape \(1, 2, 8, 64\)"):
        attention.fa2_decode(q, k, v[:, :, :4].copy(), [8])
    with pytest.raises(TypeError, match=r"dtypes must match, got float16, float32, float16"):
        attention.fa2_decode(q, k.astype(np.float32), v, [8])
    with pytest.raises(TypeError, match=r"q: expected dtype float16, bfloat16 or float32, got float64"):
        attention.fa2_decode(q.astype(np.float64), k, v, [8])
    q3, k3, v3 = _arrays(q_heads=3, kv_heads=2)
    with pytest.raises(ValueError, match=r"q heads \(3\) must be a positive multiple of k_cache heads \(2\)"):
        attention.fa2_decode(q3, k3, v3, [8])
    q5, k5, v5 = _arrays(head_dim=72)
    with pytest.raises(ValueError, match=r"head_dim must be one of"):
        attention.fa2_decode(q5, k5, v5, [8])
    with pytest.raises(ValueError, match=r"seq_lens: every length must be in \[1, max_seq=8\], got \[9\]"):
        attention.fa2_decode(q, k, v, [9])
    with pytest.raises(ValueError, match=r"seq_lens: expected 1 integers"):
        attention.fa2_decode(q, k, v, [1, 2])
    with pytest.raises(ValueError, match=r"heads_per_block: expected None \(auto\), 1, 2, 4 or 8, got 3"):
        attention.Fa2Decode(q, k, v, [8], heads_per_block=3)
    with pytest.raises(ValueError, match=r"num_splits: expected 1..128 or None, got 129"):
        attention.Fa2Decode(q, k, v, [8], num_splits=129)
    with pytest.raises(ValueError, match=r"variant: expected one of \['auto', 'mma', 'simt'\], got 'tc'"):
        attention.Fa2Decode(q, k, v, [8], variant="tc")
    with pytest.raises(ValueError, match=r"merge: expected one of \['auto', 'block', 'kernel'\], got 'grid'"):
        attention.Fa2Decode(q, k, v, [8], merge="grid")
    with pytest.raises(ValueError, match=r"heads_per_block: only the 'simt' variant takes it"):
        attention.Fa2Decode(q, k, v, [8], variant="mma", heads_per_block=2)
    with pytest.raises(ValueError, match=r"scale: expected a finite value > 0, got -1"):
        attention.fa2_decode(q, k, v, [8], scale=-1)
    with pytest.raises(TypeError, match=r"k_cache: expected a torch CUDA tensor.*got list"):
        attention.fa2_decode(q, [[1]], v, [8])
    with pytest.raises(TypeError, match=r"k_cache: must be a device array"):
        attention.kv_append(k, v, q, q, [0])
    q2, k2, v2 = _arrays(batch=2)
    with pytest.raises(ValueError, match=r"k_cache: expected shape \(1, Hkv, max_seq, 64\), got \(2, 2, 8, 64\) "
                                         r"\(kv_shared: one sequence's cache for every query\)"):
        attention.Fa2Decode(q2, k2, v2, [8, 8], kv_shared=True)


def test_without_gpu_the_error_says_why() -> None:
    if edgellm_ext.cuda_available():
        pytest.skip("a GPU is visible")
    q, k, v = _arrays()
    with pytest.raises(RuntimeError, match=r"without CUDA|no CUDA device"):
        attention.fa2_decode(q, k, v, [8])


# fa2_default_num_splits is host code (no device needed). These are the choices of the rule measured on an H200 (132
# SMs) with the merge kernel in bench/results/nvidia-h200/fa2_merge_sweep.md; a rule change that moves one of them
# should come with a new sweep. Arguments: (q heads, kv heads, head dim, keys, heads per block (16: tensor cores))
# -> splits.
@pytest.mark.parametrize("q_heads,kv_heads,head_dim,keys,hpb,expected", [
    (9, 3, 64, 64, 1, 1),          # SmolLM2-135M: no split up to 4 block steps (a second kernel costs more)
    (9, 3, 64, 512, 1, 1),
    (9, 3, 64, 1024, 1, 8),        # then one step per split ...
    (9, 3, 64, 2048, 1, 16),       # ... until 16 splits x 9 blocks cover the SMs
    (9, 3, 64, 4096, 1, 16),
    (9, 3, 64, 4232, 16, 33),      # the e2e run's 4232-key bucket with tensor cores (its prefill), >= 2 steps each
    (12, 2, 128, 512, 1, 8),       # Qwen2.5-1.5B, one head per block
    (12, 2, 128, 8192, 2, 32),     # two heads per block: 6 blocks per split
    (32, 8, 128, 8192, 4, 32),     # Llama-3.1-8B, four heads per block
    (9, 3, 64, 65536, 16, 44),     # tensor cores: one block per SM, 3 x 44 = 132 (not a power of two)
    (14, 2, 64, 16384, 16, 66),
    (12, 2, 128, 16384, 16, 66),
    (32, 8, 128, 65536, 16, 16),   # 8 blocks per split
])
def test_default_split_counts_are_the_measured_ones(q_heads: int, kv_heads: int, head_dim: int, keys: int, hpb: int,
                                                    expected: int) -> None:
    if not _core.cuda_compiled():
        pytest.skip("built without CUDA")
    got = _core.fa2_default_num_splits(batch=1, q_heads=q_heads, kv_heads=kv_heads, head_dim=head_dim,
                                       max_seq=65536, dtype=0, max_len=keys, multiprocessors=132,
                                       heads_per_block=hpb)
    assert got == expected


def test_default_split_counts_stay_in_range() -> None:
    if not _core.cuda_compiled():
        pytest.skip("built without CUDA")
    for batch in (1, 8, 64):
        for keys in (1, 100, 4096, 65536):
            for hpb in (1, 2, 4, 8, 16):
                n = _core.fa2_default_num_splits(batch=batch, q_heads=32, kv_heads=8, head_dim=128, max_seq=65536,
                                                 dtype=0, max_len=keys, multiprocessors=132, heads_per_block=hpb)
                assert 1 <= n <= attention.MAX_SPLITS, (batch, keys, hpb, n)
    with pytest.raises(ValueError, match="head_dim"):
        _core.fa2_default_num_splits(batch=1, q_heads=8, kv_heads=8, head_dim=72, max_seq=16, dtype=0, max_len=16,
                                     multiprocessors=132, heads_per_block=1)
