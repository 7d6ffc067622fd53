"""Shared fixtures and the `gpu` marker.

Every test draws fresh random inputs from `rng` (seeded per test from the test's node id, so a failure is
reproducible and no two tests share inputs). Tests marked `gpu` are skipped, with the reason, where the CUDA
kernels cannot run (not compiled, or no device visible); the same files run on the GPU machine.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import edgellm_ext


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def _gpu_skip_reason() -> str | None:
    info = edgellm_ext.build_info()
    if not info["cuda_compiled"]:
        return "edgellm_ext was built without CUDA"
    if info["cuda_device_count"] == 0:
        return "no CUDA device visible"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _gpu_skip_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
