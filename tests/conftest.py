"""Shared fixtures. Every test draws fresh random inputs from `rng` (seeded per test from the test's node id, so a
failure is reproducible and no two tests share inputs)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))
