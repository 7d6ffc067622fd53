"""The timing harness's read-once floor (_core.ColdReadOp, src/cuda/null_kernel.h): it really reads every byte
(a planted all-ones vector anywhere in the buffer reaches the sink), writes nothing otherwise, and rejects bad
arguments before any CUDA call."""

from __future__ import annotations

import numpy as np
import pytest

from edgellm_ext import _core, cuda, gpu_bench

SINK_POISON = 0x5A


def _sink_after_read(src_host: np.ndarray) -> np.ndarray:
    src = cuda.from_host(src_host)
    sink = cuda.empty((16,), "uint8")
    sink.owner.fill_bytes(SINK_POISON, 0)
    op = _core.ColdReadOp(src.address, src_host.nbytes, sink.address)
    op.launch(0)
    return cuda.to_host(sink)


@pytest.mark.gpu
@pytest.mark.parametrize("nbytes", [16, 4096, 4112, 1 << 20])
def test_every_vector_is_read(nbytes: int) -> None:
    rng = np.random.default_rng(nbytes)
    for vector in (0, nbytes // 16 - 1, int(rng.integers(0, nbytes // 16))):
        host = rng.integers(0, 255, size=nbytes, dtype=np.uint8)  # 0xFF only where planted below
        host[16 * vector:16 * vector + 16] = 0xFF
        assert np.all(_sink_after_read(host) == 0xFF), f"vector {vector} of {nbytes // 16} was not read"


@pytest.mark.gpu
def test_nothing_written_without_an_all_ones_vector() -> None:
    host = np.random.default_rng(1).integers(0, 255, size=1 << 16, dtype=np.uint8)
    assert np.all(_sink_after_read(host) == SINK_POISON)


@pytest.mark.gpu
def test_timed_samples() -> None:
    with cuda.Timer() as timer:
        samples = gpu_bench.cold_read_samples(timer, 1000, warmup=2, iterations=7)  # rounded up to 1008 bytes
    assert samples.shape == (7,) and np.all(samples > 0)


@pytest.mark.parametrize("src,nbytes,sink,match", [
    (0, 16, 16, "src: device pointer must be non-null"),
    (8, 16, 16, "src: device pointer must be non-null and 16-byte aligned"),
    (16, 16, 0, "sink: device pointer must be non-null"),
    (16, 0, 16, "bytes: expected a positive multiple of 16, got 0"),
    (16, 24, 16, "bytes: expected a positive multiple of 16, got 24"),
])
def test_bad_arguments_are_errors(src: int, nbytes: int, sink: int, match: str) -> None:
    if not _core.cuda_compiled():
        pytest.skip("built without CUDA")
    with pytest.raises(ValueError, match=match):
        _core.ColdReadOp(src, nbytes, sink)
