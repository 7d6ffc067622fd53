"""KVCache: contents against a numpy model of the cache, f16 conversion against numpy's float16 (IEEE binary16,
round-to-nearest-even: the comparison is exact), views, lengths, overflow and bad input."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from edgellm_ext.cpu import KVCache, KvCacheFull, simd_paths

PATHS = simd_paths()


@pytest.mark.parametrize("simd", PATHS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 7, 5), (3, 2, 65, 64)])
def test_append_and_views_match_numpy(dtype: str, shape: tuple[int, int, int, int], simd: str) -> None:
    n_layers, n_kv_heads, max_seq, head_dim = shape
    rng = np.random.default_rng(list(shape))
    cache = KVCache(n_layers, n_kv_heads, max_seq, head_dim, dtype=dtype, simd=simd)
    assert cache.simd == simd
    np_dtype = np.dtype(dtype)
    assert cache.total_bytes == 2 * n_layers * n_kv_heads * max_seq * head_dim * np_dtype.itemsize
    ref_k = np.zeros((n_layers, n_kv_heads, max_seq, head_dim), np_dtype)
    ref_v = np.zeros_like(ref_k)
    for pos in range(max_seq):
        for layer in range(n_layers):
            k = (rng.standard_normal((n_kv_heads, head_dim)) * 10).astype(np.float32)
            v = (rng.standard_normal((n_kv_heads, head_dim)) * 10).astype(np.float32)
            assert cache.append(layer, k, v) == pos
            ref_k[layer, :, pos] = k.astype(np_dtype)
            ref_v[layer, :, pos] = v.astype(np_dtype)
        for layer in range(n_layers):
            assert cache.length(layer) == pos + 1
            kv = cache.keys(layer)
            assert kv.dtype == np_dtype and kv.shape == (n_kv_heads, pos + 1, head_dim)
            np.testing.assert_array_equal(kv, ref_k[layer, :, : pos + 1])
            np.testing.assert_array_equal(cache.values(layer), ref_v[layer, :, : pos + 1])
    # read the first n only, and the float32 reader (f16 -> f32 is exact)
    layer, n = n_layers - 1, max(1, max_seq // 2)
    np.testing.assert_array_equal(cache.keys(layer, n), ref_k[layer, :, :n])
    out = np.empty((n, head_dim), np.float32)
    cache._core.read_values_f32(layer, n_kv_heads - 1, n, out)
    np.testing.assert_array_equal(out, ref_v[layer, -1, :n].astype(np.float32))


@pytest.mark.parametrize("simd", PATHS)
def test_f16_conversion_special_values(simd: str) -> None:
    vals = np.array(
        [0.0, -0.0, 1.0, -2.5, 65504.0, 65519.0, 65520.0, -1e6, 1e-8, 2.0**-24, 2.0**-25, 3 * 2.0**-26,
         2.0**-14, 2.0**-14 - 2.0**-25, 1 + 2.0**-11, 1 + 3 * 2.0**-11, np.inf, -np.inf, 1e-45],
        np.float32,
    )
    rng = np.random.default_rng(7)
    # random bit patterns across the whole float32 range (NaNs excluded here, checked below)
    bits = rng.integers(0, 2**32, 4096, dtype=np.uint64).astype(np.uint32)
    rand = bits.view(np.float32)
    rand = rand[~np.isnan(rand)]
    rand = np.concatenate([rand, (rng.standard_normal(4096) * 100).astype(np.float32)])
    data = np.concatenate([vals, rand])
    data = data[: (len(data) // 12) * 12].reshape(-1, 12)  # 12 wide: the 8-lane AVX2 body and a scalar tail
    cache = KVCache(1, 1, len(data), 12, dtype="float16", simd=simd)
    for row in data:
        cache.append(0, row[None, :], row[None, :])
    with np.errstate(over="ignore"):
        want = data.astype(np.float16)
    np.testing.assert_array_equal(cache.keys(0)[0].view(np.uint16), want.view(np.uint16))
    nan = np.array([[np.nan, -np.nan, 1.0, 2.0] * 3], np.float32)
    c2 = KVCache(1, 1, 1, 12, dtype="float16", simd=simd)
    c2.append(0, nan, nan)
    got = c2.keys(0)[0, 0]
    assert np.all(np.isnan(got[0::4])) and np.all(np.isnan(got[1::4])) and np.all(got[2::4] == 1.0)
    back = np.empty((len(data), 12), np.float32)  # f16 -> f32 reader on the same path: exact
    cache._core.read_keys_f32(0, 0, len(data), back)
    np.testing.assert_array_equal(back, want.astype(np.float32))


def test_full_layer_raises_and_changes_nothing() -> None:
    cache = KVCache(2, 1, 3, 2)
    x = np.ones((1, 2), np.float32)
    for i in range(3):
        cache.append(0, x * i, x * i)
    before = cache.keys(0).copy()
    with pytest.raises(KvCacheFull, match="layer 0 is full"):
        cache.append(0, x * 9, x * 9)
    assert isinstance(KvCacheFull("x"), IndexError)
    assert cache.length(0) == 3 and cache.length(1) == 0
    np.testing.assert_array_equal(cache.keys(0), before)
    cache.reset()
    assert cache.length(0) == 0 and cache.keys(0).shape == (1, 0, 2)
    cache.append(0, x * 5, x * 6)
    np.testing.assert_array_equal(cache.values(0)[0, 0], [6, 6])


def test_view_is_zero_copy_read_only_and_keeps_cache_alive() -> None:
    cache = KVCache(1, 2, 4, 3)
    k = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.append(0, k, k)
    view = cache.keys(0)
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0, 0, 0] = 1.0
    full = cache.keys(0)
    cache.append(0, k + 10, k + 10)
    assert view.shape == (2, 1, 3)  # a view of the first n positions as they were asked for...
    np.testing.assert_array_equal(cache.keys(0)[:, 1], k + 10)  # ...while the storage is shared
    assert np.shares_memory(full, cache.keys(0))
    del cache
    gc.collect()
    np.testing.assert_array_equal(view[:, 0], k)  # the view's base keeps the memory valid


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="n_layers"):
        KVCache(0, 1, 1, 1)
    with pytest.raises(TypeError, match="max_seq"):
        KVCache(1, 1, 2.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        KVCache(1, 1, 1, 1, dtype="bfloat16")
    with pytest.raises(ValueError, match="simd"):
        KVCache(1, 1, 1, 1, simd="avx512")
    cache = KVCache(2, 2, 4, 8)
    good = np.ones((2, 8), np.float32)
    with pytest.raises(ValueError, match=r"k: expected shape \(2, 8\)"):
        cache.append(0, np.ones((1, 8), np.float32), good)  # GQA: k must have n_kv_heads rows
    with pytest.raises(TypeError, match="v: expected dtype float32"):
        cache.append(0, good, good.astype(np.float16))
    with pytest.raises(IndexError, match="layer"):
        cache.append(2, good, good)
    with pytest.raises(IndexError, match="layer"):
        cache.keys(5)
    with pytest.raises(ValueError, match="holds 0 positions"):
        cache.keys(0, 1)
    with pytest.raises(ValueError, match="n:"):
        cache.values(0, -1)
