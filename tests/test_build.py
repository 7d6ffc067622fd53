"""Build facts: build_info() reports what was really compiled; cuda_available() is consistent with it."""

from __future__ import annotations

import platform

import edgellm_ext


def test_build_info_keys_and_values() -> None:
    info = edgellm_ext.build_info()
    for key in ("version", "compiler", "build_type", "cxx_flags", "target_arch", "simd_compiled", "simd",
                "cuda_compiled", "cuda_compiler_version", "cuda_architectures", "pybind11_version",
                "cuda_device_count"):
        assert key in info, key
    assert info["version"] == edgellm_ext.__version__
    assert info["simd_compiled"][0] == "scalar"
    if platform.machine() in ("x86_64", "AMD64"):
        assert info["target_arch"] == "x86_64"
    if info["cuda_compiled"]:
        assert info["cuda_compiler_version"] and info["cuda_architectures"]
    else:
        assert info["cuda_compiler_version"] is None


def test_cuda_available_consistent() -> None:
    info = edgellm_ext.build_info()
    assert edgellm_ext.cuda_available() == (info["cuda_compiled"] and info["cuda_device_count"] > 0)
