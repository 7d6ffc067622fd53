"""Ternary (BitNet b1.58) format and CPU matvec.

The packer/unpacker are checked against an independent bit-by-bit reading of the layout in docs/formats.md; the
matvecs against a float64 reference, with the tolerance of each method stated where it is used.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgellm_ext import cpu, formats, ternary

EPS32 = float(np.finfo(np.float32).eps)
SIMD = cpu.simd_paths()
SHAPES = [(1, 1), (7, 63), (17, 64), (16, 65), (33, 1000), (40, 4097)]


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(abs(hash(request.node.nodeid)) % 2**32)


def _random_ternary(rng: np.random.Generator, m: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = rng.integers(-1, 2, (m, k)).astype(np.int8)
    scale = rng.uniform(0.01, 2.0, m).astype(np.float32) * rng.choice([-1, 1], m).astype(np.float32)
    x = (rng.standard_normal(k) * np.exp(rng.uniform(-2, 2))).astype(np.float32)
    return w, scale, x


# ----------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize("k", [1, 3, 63, 64, 65, 127, 128, 1000])
def test_pack_layout_bit_by_bit(rng, k):
    w = rng.integers(-1, 2, (5, k)).astype(np.int8)
    packed = formats.pack_ternary(w)
    kp = -(-k // 64) * 64
    assert packed.dtype == np.uint8 and packed.shape == (5, kp // 4) and (kp // 4) % 16 == 0
    for r in range(5):
        for i in range(kp):
            code = (int(packed[r, i // 4]) >> (2 * (i % 4))) & 3
            assert code == (int(w[r, i]) + 1 if i < k else 1), (r, i)  # padding is code 1 (weight 0)
    np.testing.assert_array_equal(formats.unpack_ternary(packed, k), w)


def test_nibbles_are_pair_table_indices():
    # byte j's low nibble is q(4j) + 4 q(4j+1), its high nibble q(4j+2) + 4 q(4j+3)
    w = np.array([[-1, 1, 0, -1] + [0] * 60], dtype=np.int8)
    b = int(formats.pack_ternary(w)[0, 0])
    assert b & 0xF == 0 + 4 * 2 and b >> 4 == 1 + 4 * 0


def test_ternary_padded_k():
    assert [formats.ternary_padded_k(k) for k in (1, 64, 65, 4096, 4097)] == [64, 64, 128, 4096, 4160]
    with pytest.raises(ValueError, match="k >= 1"):
        formats.ternary_padded_k(0)
    with pytest.raises(TypeError, match="int"):
        formats.ternary_padded_k(3.0)


def test_unpack_rejects_code_3(rng):
    packed = formats.pack_ternary(rng.integers(-1, 2, (4, 100)).astype(np.int8))
    packed[2, 5] |= 0b11 << 4  # weight 4*5 + 2 = 22 of row 2
    with pytest.raises(ValueError, match="code 3 at row 2, weight 22"):
        formats.unpack_ternary(packed, 100)


def test_pack_unpack_reject_bad_input(rng):
    with pytest.raises(TypeError, match="int8"):
        formats.pack_ternary(np.zeros((2, 3), dtype=np.int32))
    with pytest.raises(ValueError, match=r"w\[1, 2\] = 2"):
        formats.pack_ternary(np.array([[0, 1, 0], [0, 0, 2]], dtype=np.int8))
    with pytest.raises(ValueError, match="2-D"):
        formats.pack_ternary(np.zeros(5, dtype=np.int8))
    packed = formats.pack_ternary(rng.integers(-1, 2, (3, 70)).astype(np.int8))
    with pytest.raises(ValueError, match=r"expected shape \(M, 16\) for k = 64"):
        formats.unpack_ternary(packed, 64)  # k = 64 needs 16 bytes per row, not 32
    with pytest.raises(TypeError, match="uint8"):
        formats.unpack_ternary(packed.view(np.int8), 70)


def test_ternary_quantize_absmean(rng):
    w = (rng.standard_normal((6, 200)) * rng.uniform(0.1, 3, (6, 1))).astype(np.float32)
    w[3] = 0.0  # an all-zero row: scale 0, weights 0
    w_q, scale = formats.ternary_quantize(w)
    ref_scale = np.abs(w.astype(np.float64)).mean(axis=1)
    np.testing.assert_allclose(scale, ref_scale, rtol=EPS32)  # one float32 rounding of the float64 mean
    for r in range(6):
        if ref_scale[r] == 0:
            assert scale[r] == 0 and not w_q[r].any()
            continue
        np.testing.assert_array_equal(w_q[r], np.clip(np.round(w[r] / ref_scale[r]), -1, 1))
    with pytest.raises(ValueError, match="finite"):
        formats.ternary_quantize(np.array([[1.0, np.nan]], dtype=np.float32))
    with pytest.raises(TypeError, match="float32"):
        formats.ternary_quantize(w.astype(np.float64))


# ----------------------------------------------------------------------------------------------- matvec


def _reference(w: np.ndarray, scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    return scale.astype(np.float64) * (w.astype(np.float64) @ x.astype(np.float64))


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("method", ["decode", "lut"])
@pytest.mark.parametrize("m,k", SHAPES)
def test_f32_methods_match_reference(rng, method, simd, m, k):
    w, scale, x = _random_ternary(rng, m, k)
    y = ternary.ternary_matvec(formats.pack_ternary(w), scale, x, method=method, simd=simd)
    ref = _reference(w, scale, x)
    # decode sums k float32 products (exact: w is -1/0/1) and lut sums kp/2 table entries (each one rounding of
    # x0 +- x1): either way at most (kp + 2) eps * sum|w x| before the final scale, which adds eps |y|
    kp = formats.ternary_padded_k(k)
    tol = np.abs(scale) * (kp + 2) * EPS32 * (np.abs(w) @ np.abs(x.astype(np.float64))) + EPS32 * np.abs(ref)
    assert y.dtype == np.float32 and y.shape == (m,)
    assert np.all(np.abs(y - ref) <= tol), np.max(np.abs(y - ref) / tol)


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("m,k", SHAPES)
def test_lut_int8_within_derived_bound(rng, simd, m, k):
    w, scale, x = _random_ternary(rng, m, k)
    x[rng.integers(0, k)] *= 30  # an activation outlier: coarse table scale for its block
    y = ternary.ternary_matvec(formats.pack_ternary(w), scale, x, method="lut_int8", simd=simd)
    ref = _reference(w, scale, x)
    bound = ternary.lut_int8_error_bound(w, scale, x)  # derivation in its docstring
    assert np.all(np.abs(y - ref) <= bound), np.max(np.abs(y - ref) / bound)


def test_lut_int8_bound_is_not_vacuous(rng):
    # the rounding errors are real (the int8 result differs from the exact one) and the bound is within a small
    # factor of them at k = 4096: random-sign rounding errors grow like sqrt(n), the bound like n
    w, scale, x = _random_ternary(rng, 256, 4096)
    y = ternary.ternary_matvec(formats.pack_ternary(w), scale, x, method="lut_int8")
    err = np.abs(y - _reference(w, scale, x))
    bound = ternary.lut_int8_error_bound(w, scale, x)
    assert err.max() > 0
    assert np.max(err / bound) > 1e-3
    rel = np.linalg.norm(y - _reference(w, scale, x)) / np.linalg.norm(_reference(w, scale, x))
    # about 0.65% for normal activations at k = 4096 (measured; the worst-case bound is ~25x the largest error):
    # int8 tables keep ~7 bits per entry
    assert rel < 2e-2


@pytest.mark.parametrize("m,k", SHAPES)
def test_lut_int8_paths_bit_identical(rng, m, k):
    # exact integer block sums and the same double accumulation order on every path
    w, scale, x = _random_ternary(rng, m, k)
    packed = formats.pack_ternary(w)
    y0 = ternary.ternary_matvec(packed, scale, x, method="lut_int8", simd="scalar")
    for simd in SIMD:
        for n in (1, 3):
            y = ternary.ternary_matvec(packed, scale, x, method="lut_int8", simd=simd, n_threads=n)
            np.testing.assert_array_equal(y.view(np.uint32), y0.view(np.uint32))


@pytest.mark.parametrize("method", ternary.METHODS)
def test_threads_give_identical_results(rng, method):
    w, scale, x = _random_ternary(rng, 100, 300)
    packed = formats.pack_ternary(w)
    y1 = ternary.ternary_matvec(packed, scale, x, method=method)
    for n in (2, 3, 7, 64):
        np.testing.assert_array_equal(ternary.ternary_matvec(packed, scale, x, method=method, n_threads=n), y1)


def test_ternary_matrix_from_float(rng):
    w = rng.standard_normal((48, 300)).astype(np.float32)
    mat = ternary.TernaryMatrix.from_float(w)
    w_q, scale = formats.ternary_quantize(w)
    assert mat.shape == (48, 300)
    x = rng.standard_normal(300).astype(np.float32)
    y = mat.matvec(x, method="decode")
    ref = _reference(w_q, scale, x)
    tol = np.abs(scale) * (320 + 2) * EPS32 * (np.abs(w_q) @ np.abs(x.astype(np.float64))) + EPS32 * np.abs(ref)
    assert np.all(np.abs(y - ref) <= tol)


# ------------------------------------------------------------------------------------------ bad input


def test_matvec_rejects_bad_input(rng):
    w, scale, x = _random_ternary(rng, 5, 100)
    packed = formats.pack_ternary(w)
    with pytest.raises(ValueError, match=r"expected shape \(M >= 1, 32\)"):
        ternary.ternary_matvec(packed[:, :16].copy(), scale, x)
    with pytest.raises(ValueError, match="expected length k = 90"):
        ternary.ternary_matvec(packed, scale, x, k=90)
    with pytest.raises(TypeError, match="uint8"):
        ternary.ternary_matvec(packed.view(np.int8), scale, x)
    with pytest.raises(TypeError, match="float32"):
        ternary.ternary_matvec(packed, scale.astype(np.float64), x)
    with pytest.raises(ValueError, match=r"scale: expected shape \(5\), got \(4,\)"):
        ternary.ternary_matvec(packed, scale[:4].copy(), x)
    with pytest.raises(ValueError, match="method"):
        ternary.ternary_matvec(packed, scale, x, method="tl2")
    with pytest.raises(ValueError, match="n_threads"):
        ternary.ternary_matvec(packed, scale, x, n_threads=0)
    with pytest.raises(ValueError, match="simd"):
        ternary.ternary_matvec(packed, scale, x, simd="sve")
    with pytest.raises(ValueError, match="overlap"):
        ternary.ternary_matvec(packed, scale, x, out=x[:5])
    bad_scale = scale.copy()
    bad_scale[2] = np.nan
    with pytest.raises(ValueError, match=r"scale\[2\]"):
        ternary.ternary_matvec(packed, bad_scale, x)
    bad_x = x.copy()
    bad_x[9] = np.inf
    with pytest.raises(ValueError, match=r"x\[9\]"):
        ternary.ternary_matvec(packed, scale, bad_x)
    bad = packed.copy()
    bad[4, 3] |= 0b11  # weight 12 of row 4
    with pytest.raises(ValueError, match="code 3 at row 4, weight 12"):
        ternary.ternary_matvec(bad, scale, x)
    with pytest.raises(ValueError, match="code 3 at row 4, weight 12"):
        ternary.TernaryMatrix(bad, scale, 100)
