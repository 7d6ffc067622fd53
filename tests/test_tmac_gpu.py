"""Ternary GEMV on the GPU (edgellm_ext.tmac): every variant against a float64 reference, plus validation.

Reference: y = (x as float64) @ (W as float64).T * scale, with W the int8 matrix that was packed (so the packer,
the upload and the kernel are checked together) and x the exact values handed to the kernel (float16 inputs are
exact in float64).

Error bound per output element (why): products w * x are exact (w in {-1, 0, 1}; float16 x is used as is and
float32 x is split exactly into three bf16 terms), so all error comes from
  - fp32 accumulation: at most (chain length) * 2^-24 * sum_k |w_k x_k| * |scale|. The longest chain is K/32 + 5
    adds for "simple" (a lane's sequential sum, then a 5-level shuffle tree) and, for "mma", steps/k_slices MMAs
    of 16 products each plus <= 8 slice partials; (K/8 + 64) covers both with a factor >= 2 spare for the tensor
    core's non-IEEE alignment inside one MMA;
  - y = scale * sum in fp32: 2^-24 |y|;
  - float16 output: round to nearest, 2^-11 |y| + 2^-25 (half the subnormal spacing).
"stream" in its codes form (long launches, src/cuda/tmac_gemv.cu) multiplies the codes q = w + 1 in {0, 1, 2}
(scaled by powers of two, exact) and subtracts each warp's sum of x: its accumulations run over |q_k x_k| and
|x_k|, so the stream bound uses sum_k (|w_k + 1| + 1) |x_k| in place of sum_k |w_k x_k| (the same chain-length
factor covers its sums: each class chain has at most K/64 MMAs, a warp's x sum 8-element chunks, <= K/256 chunk
adds and 5 shuffle levels); that bound also holds for its weights form (the mma kernel's arithmetic).
A second check bounds the relative norm error ||y - ref|| / ||ref||: 1e-5 for float32 outputs (typical fp32
accumulation error is ~sqrt(K) * 2^-24 < 4e-6 here) and 2^-11 + 1e-5 for float16 outputs.

GPU tests (marked gpu) poison the output with NaN (0xFF bytes) first and check every element was written.
Validation tests run without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgellm_ext import _core, cuda, formats, tmac
from edgellm_ext.formats import pack_ternary  # the shared reference packer


X_OUT_DTYPES = [("float16", "float16"), ("float16", "float32"), ("float32", "float32")]
VARIANTS = ["simple", "mma", "stream"]  # "stream" refuses float32 x (tested in _run)


def _weights(rng: np.random.Generator, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    w = rng.integers(-1, 2, size=(m, k), dtype=np.int8)
    scale = rng.uniform(0.25, 2.0, size=m).astype(np.float32)
    return w, scale


def _activations(rng: np.random.Generator, batch: int, k: int, dtype: str) -> np.ndarray:
    return rng.standard_normal((batch, k)).astype(dtype)


def _reference(w: np.ndarray, scale: np.ndarray, x: np.ndarray, variant: str) -> tuple[np.ndarray, np.ndarray]:
    """(y, per-element error bound before output rounding) in float64, for the variant that computed it."""
    w64, x64, s64 = w.astype(np.float64), x.astype(np.float64), scale.astype(np.float64)
    y = (x64 @ w64.T) * s64
    summed_weights = np.abs(w64 + 1.0) + 1.0 if variant == "stream" else np.abs(w64)
    abs_sum = (np.abs(x64) @ summed_weights.T) * np.abs(s64)
    k = w.shape[1]
    bound = abs_sum * (k / 8 + 64) * 2.0**-24 + np.abs(y) * 2.0**-24
    return y, bound


def _check(out: np.ndarray, w: np.ndarray, scale: np.ndarray, x: np.ndarray, out_dtype: str,
           variant: str | None = None) -> None:
    """variant: the one that ran; None: the one "auto" picks for this shape, x dtype and batch."""
    assert out.dtype == np.dtype(out_dtype)
    assert np.isfinite(out).all(), "some outputs were not written (still NaN) or overflowed"
    if variant is None:
        (m, k), batch = w.shape, x.shape[0]
        variant = tmac.choose_variant(m, k, x.dtype.name, _core.tmac_stream_fits(k, batch))
    ref, bound = _reference(w, scale, x, variant)
    out64 = out.astype(np.float64).reshape(ref.shape)
    if out_dtype == "float16":
        bound = bound + np.abs(ref) * 2.0**-11 + 2.0**-25
        norm_tol = 2.0**-11 + 1e-5
    else:
        norm_tol = 1e-5
    err = np.abs(out64 - ref)
    worst = np.unravel_index(int(np.argmax(err - bound)), err.shape)
    assert (err <= bound).all(), f"error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}"
    ref_norm = np.linalg.norm(ref)
    if ref_norm > 0:
        assert np.linalg.norm(out64 - ref) / ref_norm <= norm_tol


def _run(rng, m, k, batch, x_dtype, out_dtype, variant):
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = _activations(rng, batch, k, x_dtype)
    x_dev = cuda.from_host(x)
    out_dev = cuda.empty((batch, m), out_dtype)
    out_dev.owner.fill_bytes(0xFF, 0)  # NaN poison
    if variant == "stream" and (x_dtype == "float32" or not _core.tmac_stream_fits(k, batch)):
        match = "'stream' takes float16 x" if x_dtype == "float32" else "'stream' stages x in shared memory"
        with pytest.raises(ValueError, match=match):
            weights.matmul(x_dev, out=out_dev, out_dtype=out_dtype, variant=variant)
        return
    result = weights.matmul(x_dev, out=out_dev, out_dtype=out_dtype, variant=variant)
    assert result is out_dev
    _check(cuda.to_host(out_dev), w, scale, x, out_dtype, variant)


# ------------------------------------------------------------------------------------------- GPU: correctness
@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("x_dtype,out_dtype", X_OUT_DTYPES)
@pytest.mark.parametrize("k", [1, 7, 63, 64, 65, 577, 1000, 4097])
def test_odd_k(rng, variant, x_dtype, out_dtype, k):
    _run(rng, 33, k, 3, x_dtype, out_dtype, variant)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("x_dtype,out_dtype", X_OUT_DTYPES)
@pytest.mark.parametrize("m", [1, 7, 33, 960, 4097])
def test_odd_m(rng, variant, x_dtype, out_dtype, m):
    _run(rng, m, 577, 8, x_dtype, out_dtype, variant)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("x_dtype,out_dtype", X_OUT_DTYPES)
@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8])
def test_batch(rng, variant, x_dtype, out_dtype, batch):
    _run(rng, 960, 1000, batch, x_dtype, out_dtype, variant)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("x_dtype,out_dtype", X_OUT_DTYPES)
@pytest.mark.parametrize("m,k", [(4097, 4097), (960, 576), (576, 1536), (64, 16384), (49152, 576)])
def test_large_and_model_shapes(rng, variant, x_dtype, out_dtype, m, k):
    _run(rng, m, k, 8, x_dtype, out_dtype, variant)


@pytest.mark.gpu
@pytest.mark.parametrize("tiles_per_warp", [2, 4])
@pytest.mark.parametrize("out_dtype", ["float16", "float32"])
@pytest.mark.parametrize("k", [200, 576])  # K * 2 bytes a multiple of 16: the vector x loads tiling needs
def test_multi_tile_warps(rng, tiles_per_warp, out_dtype, k):
    # Many rows, K <= 2048 (one step per warp), fp16 x: the mma grid gives each warp 2 or 4 tiles of 16 rows once
    # there are >= 4 blocks per SM (src/cuda/tmac_gemv.cu, tmac_mma_launch_shape). M is sized from this device's
    # SM count so that the wanted T is chosen, + 7 rows for a ragged last tile.
    sms = cuda.device_info()["multiprocessor_count"]
    m = 16 * 4 * sms * tiles_per_warp + 7
    batch = 3
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = _activations(rng, batch, k, "float16")
    out_dev = cuda.empty((batch, m), out_dtype)
    out_dev.owner.fill_bytes(0xFF, 0)
    op = weights.prepare(x, out_dev, variant="mma")
    assert op.launch_shape["tiles_per_warp"] == tiles_per_warp
    op.launch(0)
    _core.stream_synchronize(0)
    _check(cuda.to_host(out_dev), w, scale, x, out_dtype, "mma")


def _run_stream_grid(rng, m, k, batch, max_k_slices, out_dtype):
    """One "stream" launch of a random M x K matrix at a K-slice cap, output poisoned first and checked against the
    float64 reference; returns the launch shape for the caller's grid assertions."""
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = _activations(rng, batch, k, "float16")
    out_dev = cuda.empty((batch, m), out_dtype)
    out_dev.owner.fill_bytes(0xFF, 0)
    op = weights.prepare(x, out_dev, variant="stream", max_k_slices=max_k_slices)
    op.launch(0)
    _core.stream_synchronize(0)
    _check(cuda.to_host(out_dev), w, scale, x, out_dtype, "stream")
    return op.launch_shape


@pytest.mark.gpu
@pytest.mark.parametrize("max_k_slices", [1, 3, 5, 8])
@pytest.mark.parametrize("batch", [1, 8])
def test_stream_tiles_per_block_and_ragged_steps(rng, max_k_slices, batch):
    # More 16-row tiles than resident blocks (each block loops over tiles, its weight ring running across tile
    # boundaries; asserted for 5 and 8 warps per block, whose blocks fit at most 4 per SM), a ragged last tile,
    # and K = 2240 (9 steps of 256, the last one partial): with 5 or 8 K-slices the last item of some warps is
    # past the row (it loads and computes nothing).
    sms = cuda.device_info()["multiprocessor_count"]
    m = 16 * 6 * sms + 9
    shape = _run_stream_grid(rng, m, 2240, batch, max_k_slices, "float32")
    assert shape["k_slices"] == max_k_slices and shape["items_per_tile"] == -(-9 // max_k_slices)
    if max_k_slices >= 5:
        assert shape["blocks"] < (m + 15) // 16, "the grid should be persistent (fewer blocks than tiles)"


@pytest.mark.gpu
@pytest.mark.parametrize("max_k_slices", [0, 9, 16])
@pytest.mark.parametrize("batch", [1, 8])
def test_stream_wide_blocks(rng, max_k_slices, batch):
    # The wide instantiation (9-16 warps, 2 blocks per SM), which the default takes from 17 steps of K on
    # (tmac_stream_launch_shape: 9 warps of 2 items here): K = 4196 is 17 steps, the last one partial, so with 16
    # K-slices every warp but the first has a second item past the row; more tiles than resident blocks and a
    # ragged last tile.
    sms = cuda.device_info()["multiprocessor_count"]
    m = 16 * 3 * sms + 5
    shape = _run_stream_grid(rng, m, 4196, batch, max_k_slices, "float16")
    slices = max_k_slices or 9
    assert shape["k_slices"] == slices and shape["threads"] == 32 * slices
    assert shape["items_per_tile"] == -(-17 // slices)
    assert shape["blocks"] < (m + 15) // 16, "the grid should be persistent (fewer blocks than tiles)"


@pytest.mark.gpu
def test_stream_default_cap_and_cap_limits(rng):
    # Default: 8 warps up to 16 steps of K (K = 4096); from 17 steps on, among the warp counts that give each warp
    # as few items as 16 warps would, the one whose busiest scheduler (warp w on w % 4) has the fewest items, then
    # the fewest warps (src/cuda/tmac_gemv.cu, stream_wide_k_slices): 17 steps -> 9 warps, 19 -> 11 (busiest
    # scheduler 5 items; 10 warps: 6), 32 -> 16, 35 -> 12 (9 items, as 16 warps), 56 -> 16. Caps beyond a
    # variant's largest block are refused with the range.
    m = 64
    for k, expect in [(4096, 8), (4097, 9), (4864, 11), (8192, 16), (8960, 12), (14336, 16)]:
        w, scale = _weights(rng, m, k)
        weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
        op = weights.prepare(_activations(rng, 1, k, "float16"), cuda.empty((1, m), "float16"), variant="stream")
        assert op.launch_shape["k_slices"] == expect, k
    x = _activations(rng, 1, k, "float16")
    with pytest.raises(ValueError, match=r"max_k_slices: expected 0 \(auto\) or 1..16"):
        weights.prepare(x, cuda.empty((1, m), "float16"), variant="stream", max_k_slices=17)
    with pytest.raises(ValueError, match=r"max_k_slices: expected 0 \(auto\) or 1..8"):
        weights.prepare(x, cuda.empty((1, m), "float16"), variant="mma", max_k_slices=9)


@pytest.mark.gpu
@pytest.mark.parametrize("m,k,max_k_slices,batch,codes", [
    (64, 14336, 0, 3, True),   # 16 warps x 4 items (56 steps), one tile per block
    (64, 4096, 0, 8, True),    # 8 warps x 2 items, one tile per block
    (300, 2240, 2, 1, True),   # 2 warps x 5 items (9 steps, the last partial), ragged last tile
    (300, 2240, 8, 5, True),   # 8 warps x 2 items (the second past the row for 7 of them)
    (300, 2240, 9, 8, False),  # 9 warps x 1 item, one tile per block
    (100, 576, 0, 2, False),   # 3 warps x 1 item (SmolLM2's K)
])
def test_stream_codes_form(rng, m, k, max_k_slices, batch, codes):
    # The stream kernel multiplies the 2-bit codes and subtracts each warp's sum of x (the "codes" form) when a
    # warp has at least 2 items over the launch, else the weights w = q - 1 (src/cuda/tmac_gemv.cu,
    # tmac_stream_launch_shape); both checked against the float64 reference.
    shape = _run_stream_grid(rng, m, k, batch, max_k_slices, "float32")
    assert shape["codes"] == codes


@pytest.mark.gpu
def test_stream_size_limit_and_auto_choice(rng):
    # x is staged in shared memory: 8 rows of K = 16384 do not fit, so "stream" refuses and "auto" takes "mma";
    # float16 x that fits goes to "stream", float32 x to "mma".
    m = 40
    for k, batch, x_dtype, expect in [(16384, 8, "float16", "mma"), (16384, 1, "float16", "stream"),
                                      (576, 8, "float16", "stream"), (576, 8, "float32", "mma")]:
        assert _core.tmac_stream_fits(k, batch) == (expect == "stream" or x_dtype == "float32")
        w, scale = _weights(rng, m, k)
        weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
        x = _activations(rng, batch, k, x_dtype)
        out_dev = cuda.empty((batch, m), x_dtype)
        out_dev.owner.fill_bytes(0xFF, 0)
        op = weights.prepare(x, out_dev)
        assert op.variant == expect, (k, batch, x_dtype)
        op.launch(0)
        _core.stream_synchronize(0)
        _check(cuda.to_host(out_dev), w, scale, x, x_dtype, op.variant)
    with pytest.raises(ValueError, match="'stream' stages x in shared memory"):
        weights = tmac.TernaryWeights(pack_ternary(_weights(rng, m, 16384)[0]), np.ones(m, np.float32), 16384)
        weights.prepare(_activations(rng, 8, 16384, "float16"), cuda.empty((8, m), "float16"), variant="stream")


@pytest.mark.gpu
@pytest.mark.parametrize("x_dtype,variant", [("float16", "mma"), ("float32", "mma"), ("float16", "stream")])
def test_unaligned_x_uses_element_loads(rng, x_dtype, variant):
    # K % 8 == 0 but x starts 1 element past a 16-byte boundary: the mma kernel must not use 16-byte loads.
    m, k, batch = 100, 1024, 3
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = _activations(rng, batch, k, x_dtype)
    backing = cuda.from_host(np.concatenate([np.zeros(1, dtype=x_dtype), x.ravel()]))
    itemsize = np.dtype(x_dtype).itemsize
    x_dev = cuda.DeviceArray(backing.address + itemsize, (batch, k), x_dtype, backing.owner)
    out_dev = cuda.empty((batch, m), x_dtype)
    out_dev.owner.fill_bytes(0xFF, 0)
    weights.matmul(x_dev, out=out_dev, variant=variant)
    _check(cuda.to_host(out_dev), w, scale, x, x_dtype, variant)


@pytest.mark.gpu
def test_extreme_activations_fp32_split_is_exact(rng):
    # Large and tiny magnitudes, which a float16 hi/lo split could not represent: the three bf16 terms can.
    m, k = 64, 640
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = (rng.standard_normal((2, k)) * np.exp2(rng.integers(-40, 40, size=(2, k)))).astype(np.float32)
    out = weights.matmul(x, variant="mma")
    _check(out, w, scale, x, "float32", "mma")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic(rng, variant):
    # No atomics: the same inputs give bitwise the same output.
    m, k = 1000, 4096
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = cuda.from_host(_activations(rng, 4, k, "float16"))
    first = cuda.to_host(weights.matmul(x, variant=variant, out_dtype="float32"))
    second = cuda.to_host(weights.matmul(x, variant=variant, out_dtype="float32"))
    assert np.isfinite(first).all()
    assert np.array_equal(first, second)


@pytest.mark.gpu
@pytest.mark.parametrize("x_dtype", ["float16", "float32"])
def test_numpy_in_numpy_out_and_1d(rng, x_dtype):
    m, k = 300, 700
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x1 = _activations(rng, 1, k, x_dtype)[0]
    y1 = tmac.tmac_matmul(weights, x1)
    assert isinstance(y1, np.ndarray) and y1.shape == (m,)
    _check(y1, w, scale, x1[None, :], x_dtype)
    x2 = _activations(rng, 5, k, x_dtype)
    y2 = weights.matmul(x2)
    assert isinstance(y2, np.ndarray) and y2.shape == (5, m)
    _check(y2, w, scale, x2, x_dtype)


@pytest.mark.gpu
def test_many_instances_coexist(rng):
    # No global weight slot: several matrices stay resident and each gives its own result.
    shapes = [(96, 576), (960, 576), (576, 1536)]
    mats = [(_weights(rng, m, k), k) for m, k in shapes]
    objs = [tmac.TernaryWeights(pack_ternary(w), s, k) for (w, s), k in mats]
    for ((w, s), k), obj in zip(mats, objs):
        x = _activations(rng, 2, k, "float16")
        _check(obj.matmul(x), w, s, x, "float16")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", VARIANTS)
def test_prepared_op_timer_and_graph(rng, variant):
    m, k, batch = 960, 576, 2
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = _activations(rng, batch, k, "float16")
    out_dev = cuda.empty((batch, m), "float16")
    out_dev.owner.fill_bytes(0xFF, 0)
    op = weights.prepare(x, out_dev, variant=variant)  # numpy x: copied once, kept alive by the op
    assert isinstance(op, _core.Launchable)
    assert op.variant == variant
    assert op.bytes_per_launch == weights.bytes_per_launch(batch, "float16") == (
        m * tmac.padded_k(k) // 4 + 4 * m + batch * k * 2 + batch * m * 2
    )
    shape = op.launch_shape
    assert shape["blocks"] * shape["rows_per_block"] >= m
    op.launch(0)
    _core.stream_synchronize(0)
    _check(cuda.to_host(out_dev), w, scale, x, "float16", variant)
    with cuda.Timer() as timer:
        times = timer.events(op, warmup=2, iterations=5)
        graph_times = timer.graph(op, launches_per_graph=4, warmup=1, replays=3)
    assert times.shape == (5,) and (times > 0).all()
    assert graph_times.shape == (3,) and (graph_times > 0).all()
    _check(cuda.to_host(out_dev), w, scale, x, "float16", variant)


@pytest.mark.gpu
def test_from_float_matches_formats(rng):
    m, k = 200, 333
    w_f32 = rng.standard_normal((m, k)).astype(np.float32)
    weights = tmac.TernaryWeights.from_float(w_f32)
    w_int8, scale = formats.ternary_quantize(w_f32)
    x = _activations(rng, 3, k, "float32")
    _check(weights.matmul(x), w_int8, np.asarray(scale, dtype=np.float32), x, "float32")


@pytest.mark.gpu
def test_torch_interop(rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    m, k = 500, 960
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x = _activations(rng, 4, k, "float16")
    xt = torch.from_numpy(x).cuda()
    yt = weights.matmul(xt)
    assert isinstance(yt, torch.Tensor) and yt.is_cuda and yt.dtype == torch.float16 and tuple(yt.shape) == (4, m)
    torch.cuda.synchronize()
    _check(yt.cpu().numpy(), w, scale, x, "float16")
    out = torch.full((4, m), float("nan"), dtype=torch.float32, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the NaN fill of out ran on the default stream
    with torch.cuda.stream(stream):
        assert weights.matmul(xt, out=out, stream=stream) is out
    stream.synchronize()
    _check(out.cpu().numpy(), w, scale, x, "float32")


# ------------------------------------------------------------------------------------------- GPU: bad input
@pytest.mark.gpu
def test_bad_input_on_device(rng):
    m, k = 40, 100
    w, scale = _weights(rng, m, k)
    weights = tmac.TernaryWeights(pack_ternary(w), scale, k)
    x32 = cuda.from_host(_activations(rng, 2, k, "float32"))
    with pytest.raises(ValueError, match="float32 x gives a float32 output"):
        weights.matmul(x32, out_dtype="float16")
    with pytest.raises(ValueError, match=r"out: expected shape \(2, 40\)"):
        weights.matmul(x32, out=cuda.empty((2, 41), "float32"))
    with pytest.raises(TypeError, match="out: expected dtype float16 or float32, got int32"):
        weights.matmul(x32, out=cuda.empty((2, m), "int32"))
    with pytest.raises(TypeError, match="out: must be a device array"):
        weights.matmul(x32, out=np.empty((2, m), np.float32))
    with pytest.raises(TypeError, match="out: prepare"):
        weights.prepare(x32, None)
    big = cuda.empty((2, max(m, k)), "float32")
    aliased_x = cuda.DeviceArray(big.address, (2, k), "float32", big.owner)
    aliased_out = cuda.DeviceArray(big.address, (2, m), "float32", big.owner)
    with pytest.raises(ValueError, match="overlap"):
        weights.matmul(aliased_x, out=aliased_out)
    with pytest.raises(ValueError, match="variant"):
        weights.matmul(x32, variant="fast")
    # The compiled module validates too (direct calls cannot read out of bounds).
    with pytest.raises(ValueError, match="batch must be in 1..8"):
        _core.TmacGemvOp(weights._native, x32.address, big.address, 9, "float32", "float32", "mma")
    with pytest.raises(ValueError, match="variant"):
        _core.TmacGemvOp(weights._native, x32.address, big.address, 1, "float32", "float32", "auto")
    packed = pack_ternary(w)
    packed[3, 5] |= 0x03 << 4
    with pytest.raises(ValueError, match="code 3"):
        _core.TernaryWeights(packed, scale, k, 0)
    with pytest.raises(ValueError, match="packed must be"):
        _core.TernaryWeights(pack_ternary(w), scale, k + 64, 0)


# ------------------------------------------------------------------------------------------- CPU: validation
def _packed_and_scale(rng, m=5, k=70):
    w = rng.integers(-1, 2, size=(m, k), dtype=np.int8)
    return pack_ternary(w), rng.uniform(0.5, 1.5, m).astype(np.float32)


def test_padded_k():
    assert [tmac.padded_k(k) for k in (1, 63, 64, 65, 576, 577)] == [64, 64, 64, 128, 576, 640]


def test_validate_packed_accepts_valid(rng):
    packed, scale = _packed_and_scale(rng)
    p, s, k = tmac.validate_packed(packed, scale, 70)
    assert p is packed and s is scale and k == 70


def test_validate_packed_rejects_bad_types_and_shapes(rng):
    packed, scale = _packed_and_scale(rng)
    with pytest.raises(TypeError, match="packed: expected dtype uint8"):
        tmac.validate_packed(packed.astype(np.int8), scale, 70)
    with pytest.raises(TypeError, match="packed: expected a numpy.ndarray"):
        tmac.validate_packed(packed.tolist(), scale, 70)
    with pytest.raises(ValueError, match="packed: expected 2 dimensions"):
        tmac.validate_packed(packed.ravel(), scale, 70)
    with pytest.raises(ValueError, match=r"roundup\(k, 64\) / 4\) for k = 200"):
        tmac.validate_packed(packed, scale, 200)
    with pytest.raises(ValueError, match="packed: must be C-contiguous"):
        tmac.validate_packed(np.asfortranarray(np.concatenate([packed, packed], axis=0)), np.tile(scale, 2), 70)
    with pytest.raises(TypeError, match="scale: expected dtype float32"):
        tmac.validate_packed(packed, scale.astype(np.float64), 70)
    with pytest.raises(ValueError, match=r"scale: expected shape \(5\)"):
        tmac.validate_packed(packed, scale[:4], 70)
    with pytest.raises(TypeError, match="k: expected an int"):
        tmac.validate_packed(packed, scale, 70.0)
    with pytest.raises(TypeError, match="k: expected an int"):
        tmac.validate_packed(packed, scale, True)
    with pytest.raises(ValueError, match="k: expected >= 1"):
        tmac.validate_packed(packed[:, :0], scale, 0)


def test_validate_packed_rejects_bad_values(rng):
    packed, scale = _packed_and_scale(rng)
    bad_scale = scale.copy()
    bad_scale[2] = np.nan
    with pytest.raises(ValueError, match=r"scale\[2\] is not"):
        tmac.validate_packed(packed, bad_scale, 70)
    bad_scale[2] = np.inf
    with pytest.raises(ValueError, match="finite"):
        tmac.validate_packed(packed, bad_scale, 70)
    code3 = packed.copy()
    code3[4, 3] |= 0b11 << 2
    with pytest.raises(ValueError, match="invalid 2-bit code 3 at row 4, weight 13"):
        tmac.validate_packed(code3, scale, 70)
    pad = packed.copy()
    pad[1, 70 // 4] = (pad[1, 70 // 4] & 0b00001111) | (2 << 4) | (1 << 6)  # weight 70 = +1: padding must be 0
    with pytest.raises(ValueError, match="padding weight 70 of row 1"):
        tmac.validate_packed(pad, scale, 70)
    pad = packed.copy()
    pad[0, -1] = 0  # code 0 (-1) in the last padding byte
    with pytest.raises(ValueError, match="padding must be code 1"):
        tmac.validate_packed(pad, scale, 70)


class _FakeDeviceArray:
    """Describes device memory through __cuda_array_interface__ without any (validation never dereferences)."""

    def __init__(self, shape, typestr, strides=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (1 << 40, False),
                                         "strides": strides, "version": 3}


def test_validate_activations(rng):
    assert tmac.validate_activations(np.zeros(70, np.float16), 70) == (1, "float16", (70,))
    assert tmac.validate_activations(np.zeros((8, 70), np.float32), 70) == (8, "float32", (8, 70))
    assert tmac.validate_activations(_FakeDeviceArray((3, 70), "<f2"), 70) == (3, "float16", (3, 70))
    with pytest.raises(TypeError, match="x: expected dtype float16 or float32, got float64"):
        tmac.validate_activations(np.zeros(70), 70)
    with pytest.raises(TypeError, match="x: expected dtype float16 or float32, got int32"):
        tmac.validate_activations(np.zeros(70, np.int32), 70)
    with pytest.raises(TypeError, match="x: expected a torch CUDA tensor"):
        tmac.validate_activations([0.0] * 70, 70)
    with pytest.raises(ValueError, match=r"x: expected shape \(K,\) or \(B, K\)"):
        tmac.validate_activations(np.zeros((1, 2, 70), np.float16), 70)
    with pytest.raises(ValueError, match="x: expected 70 columns"):
        tmac.validate_activations(np.zeros((2, 71), np.float16), 70)
    with pytest.raises(ValueError, match="x: expected 70 columns"):
        tmac.validate_activations(_FakeDeviceArray((2, 64), "<f4"), 70)
    for batch in (0, 9):
        with pytest.raises(ValueError, match=r"batch \(rows\) must be in 1..8"):
            tmac.validate_activations(np.zeros((batch, 70), np.float16), 70)
    with pytest.raises(ValueError, match="x: must be C-contiguous"):
        tmac.validate_activations(np.zeros((2, 140), np.float16)[:, ::2], 70)
    with pytest.raises(ValueError, match="x: must be C-contiguous"):
        tmac.validate_activations(_FakeDeviceArray((2, 70), "<f2", strides=(2, 4)), 70)


def test_resolve_variant_and_out_dtype():
    for m, k in [(1, 1), (960, 576), (49152, 576), (14336, 4096)]:
        assert tmac.resolve_variant("auto", m, k) == tmac.choose_variant(m, k) in tmac.VARIANTS
        assert tmac.resolve_variant(None, m, k) in tmac.VARIANTS
    assert tmac.resolve_variant("simple", 5, 5) == "simple"
    # float16 x whose staged copy fits goes to "stream"; float32 x, or x too large to stage, stays on "mma".
    assert tmac.resolve_variant("auto", 960, 576, "float16", True) == "stream"
    assert tmac.resolve_variant("auto", 960, 576, "float32", True) == "mma"
    assert tmac.resolve_variant("auto", 960, 576, "float16", False) == "mma"
    assert tmac.resolve_variant("mma", 960, 576, "float16", True) == "mma"
    with pytest.raises(ValueError, match="variant: expected 'auto', 'simple', 'mma' or 'stream', got 'fast'"):
        tmac.resolve_variant("fast", 5, 5)
    with pytest.raises(TypeError, match="variant"):
        tmac.resolve_variant(1, 5, 5)
    assert tmac.resolve_out_dtype("float16", None) == "float16"
    assert tmac.resolve_out_dtype("float16", "float32") == "float32"
    assert tmac.resolve_out_dtype("float32", None) == "float32"
    with pytest.raises(ValueError, match="float16 output is for float16 x"):
        tmac.resolve_out_dtype("float32", "float16")
    with pytest.raises(TypeError, match="out_dtype"):
        tmac.resolve_out_dtype("float16", "bfloat16")


def test_auto_table_is_well_formed():
    # Rows ascend by min_weights from 0 (so every shape gets a variant) and name real variants.
    mins = [row[0] for row in tmac.AUTO_VARIANT_TABLE]
    assert mins[0] == 0 and mins == sorted(mins)
    assert all(row[1] in tmac.VARIANTS for row in tmac.AUTO_VARIANT_TABLE)


def test_tmac_matmul_rejects_non_weights():
    with pytest.raises(TypeError, match="weights: expected edgellm_ext.tmac.TernaryWeights"):
        tmac.tmac_matmul(np.zeros((4, 16), np.uint8), np.zeros(64, np.float16))
