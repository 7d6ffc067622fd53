"""Arena: alignment, accounting, exhaustion without state change, reset and high-water mark, views."""

from __future__ import annotations

import numpy as np
import pytest

from edgellm_ext.cpu import Arena, ArenaExhausted


@pytest.mark.parametrize("alignment", [1, 2, 8, 64, 256, 4096])
def test_alignment_and_accounting(alignment: int) -> None:
    arena = Arena(1 << 20, base_alignment=64)  # room for 20 * (4096 + 300)
    assert arena.address() % 64 == 0
    rng = np.random.default_rng(alignment)
    end = 0
    for _ in range(20):
        nbytes = int(rng.integers(0, 300))
        off = arena.allocate(nbytes, alignment)
        assert (arena.address() + off) % alignment == 0
        assert off >= end  # never overlaps an earlier allocation
        if nbytes:
            end = off + nbytes
        assert arena.used_bytes == end
        assert arena.high_water_bytes == end


def test_exhaustion_is_clear_and_changes_nothing() -> None:
    arena = Arena(100, base_alignment=64)
    assert arena.allocate(60, 1) == 0
    with pytest.raises(ArenaExhausted, match=r"requested 64 bytes.*only 36 bytes are left"):
        arena.allocate(64, 64)  # would start at 64 after alignment: 36 left -> fails
    assert isinstance(ArenaExhausted("x"), MemoryError)
    assert arena.used_bytes == 60 and arena.high_water_bytes == 60
    assert arena.allocate(40, 1) == 60  # exactly fills the block
    with pytest.raises(ArenaExhausted):
        arena.allocate(1, 1)
    arena.allocate(0, 1)  # zero bytes always fit
    assert arena.used_bytes == 100


def test_reset_and_high_water() -> None:
    arena = Arena(1024)
    arena.allocate(300, 16)
    arena.allocate(200, 16)
    assert arena.used_bytes == 304 + 200  # 300 rounded up to the 16-byte boundary, then 200
    hw = arena.high_water_bytes
    assert hw == 504
    arena.reset()
    assert arena.used_bytes == 0 and arena.high_water_bytes == hw
    assert arena.allocate(10, 64) == 0
    assert arena.high_water_bytes == hw
    assert arena.capacity_bytes == 1024


def test_f32_views() -> None:
    arena = Arena(4096)
    a = arena.allocate_f32(100, 64)
    b = arena.allocate_f32(7, 32)
    assert a.dtype == np.float32 and a.shape == (100,) and a.flags.writeable
    assert a.ctypes.data % 64 == 0 and b.ctypes.data % 32 == 0
    assert not np.shares_memory(a, b)
    a[:] = 1.5
    b[:] = -2.0
    assert np.all(a == 1.5) and np.all(b == -2.0)
    del arena  # the views keep the block alive
    assert float(a.sum()) == 150.0


def test_zero_capacity() -> None:
    arena = Arena(0)
    assert arena.allocate(0, 8) == 0
    with pytest.raises(ArenaExhausted):
        arena.allocate(1, 1)


def test_bad_arguments() -> None:
    arena = Arena(128)
    for bad in (3, 48):
        with pytest.raises(ValueError, match="power of two"):
            arena.allocate(8, bad)
    with pytest.raises(ValueError, match="alignment"):
        arena.allocate(8, 0)
    with pytest.raises(ValueError, match="base_alignment"):
        Arena(128, base_alignment=24)
    with pytest.raises(ValueError, match="nbytes"):
        arena.allocate(-1)
    with pytest.raises(TypeError, match="capacity_bytes"):
        Arena(1.5)  # type: ignore[arg-type]
    # the compiled core checks alignment too
    with pytest.raises(ValueError, match="power of two"):
        arena._core.allocate(8, 12)
    with pytest.raises(ArenaExhausted):
        arena.allocate(1 << 62, 1)
    assert arena.used_bytes == 0
