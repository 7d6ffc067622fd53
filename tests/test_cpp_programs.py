"""Build the C++ kernels (not the Python module) with CMake and run the C++ test program edgellm_cpp_tests,
which checks every compiled SIMD path against scalar and a double reference:

- natively (x86-64: scalar + AVX2), configured with EDGELLM_CUDA=OFF;
- natively again under AddressSanitizer + UBSan;
- cross-compiled for aarch64 with g++-aarch64-linux-gnu and run under qemu-aarch64 (scalar + NEON);
- and a configure in AUTO mode with no nvcc on PATH, which must fall back to a CPU-only build.

The cross-compiler and qemu come from Debian (`apt-get install g++-aarch64-linux-gnu qemu-user`; .ci/run installs
them); without them the aarch64 test is skipped with that reason.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _tool(name: str) -> str:
    """Absolute path of a build tool, preferring the pip-installed cmake/ninja (their PATH shims need PATH)."""
    try:
        if name == "cmake":
            import cmake

            return os.path.join(cmake.CMAKE_BIN_DIR, "cmake")
        if name == "ninja":
            import ninja

            return os.path.join(ninja.BIN_DIR, "ninja")
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed")
    return found


def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def _build_tests(build_dir: Path, *extra: str) -> Path:
    _run([_tool("cmake"), "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
          f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}", "-DEDGELLM_PYTHON=OFF", "-DEDGELLM_CUDA=OFF",
          "-DEDGELLM_CPP_TESTS=ON", *extra])
    _run([_tool("cmake"), "--build", str(build_dir), "-j", str(os.cpu_count() or 2)])
    return build_dir / "edgellm_cpp_tests"


def _check_output(proc: subprocess.CompletedProcess[str], expected_path: str) -> None:
    first = proc.stdout.splitlines()[0]
    assert first.startswith("edgellm_cpp_tests: paths scalar"), proc.stdout
    assert expected_path in first.split(), f"{expected_path} not exercised: {first}"
    assert "families passed, 0 failed" in proc.stdout, proc.stdout


def _host_has_avx2() -> bool:
    try:
        return " avx2 " in f" {Path('/proc/cpuinfo').read_text()} ".replace("\n", " ")
    except OSError:
        return False


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AVX2 path exists on x86-64 only")
def test_native_avx2_against_scalar(tmp_path_factory: pytest.TempPathFactory) -> None:
    exe = _build_tests(tmp_path_factory.mktemp("native"))
    proc = _run([str(exe)])
    _check_output(proc, "avx2" if _host_has_avx2() else "scalar")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="sanitizer run is set up for x86-64")
def test_native_under_address_and_ub_sanitizers(tmp_path_factory: pytest.TempPathFactory) -> None:
    exe = _build_tests(tmp_path_factory.mktemp("asan"), "-DEDGELLM_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=RelWithDebInfo")
    proc = _run([str(exe)], env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1"})
    _check_output(proc, "scalar")
    assert "runtime error" not in proc.stderr, proc.stderr  # UBSan reports


def test_aarch64_neon_under_qemu(tmp_path_factory: pytest.TempPathFactory) -> None:
    cxx, qemu = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")
    if cxx is None or qemu is None:
        pytest.skip("needs Debian's g++-aarch64-linux-gnu and qemu-user (apt-get install g++-aarch64-linux-gnu qemu-user)")
    exe = _build_tests(tmp_path_factory.mktemp("aarch64"), "-DCMAKE_SYSTEM_NAME=Linux",
                       "-DCMAKE_SYSTEM_PROCESSOR=aarch64", f"-DCMAKE_CXX_COMPILER={cxx}",
                       "-DCMAKE_EXE_LINKER_FLAGS=-static")
    file_type = subprocess.run(["file", str(exe)], capture_output=True, text=True).stdout
    if file_type:
        assert "aarch64" in file_type or "ARM aarch64" in file_type, file_type
    proc = _run([qemu, str(exe)])
    _check_output(proc, "neon")


def test_auto_without_nvcc_configures_cpu_only(tmp_path: Path) -> None:
    path = "/usr/bin:/bin"
    if shutil.which("nvcc", path=path):
        pytest.skip(f"nvcc is in {path}; cannot hide it for this test")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDA_PATH", "CUDA_HOME", "EDGELLM_CUDA")}
    env["PATH"] = path
    proc = _run([_tool("cmake"), "-S", str(ROOT), "-B", str(tmp_path), "-G", "Ninja",
                 f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}", "-DEDGELLM_PYTHON=OFF"], env=env)
    assert "edgellm_ext: CUDA not compiled (EDGELLM_CUDA=AUTO)" in proc.stdout, proc.stdout


def test_cuda_on_without_nvcc_fails_clearly(tmp_path: Path) -> None:
    path = "/usr/bin:/bin"
    if shutil.which("nvcc", path=path):
        pytest.skip(f"nvcc is in {path}; cannot hide it for this test")
    env = {k: v for k, v in os.environ.items() if k not in ("CUDACXX", "CUDA_PATH", "CUDA_HOME")}
    env["PATH"] = path
    proc = subprocess.run([_tool("cmake"), "-S", str(ROOT), "-B", str(tmp_path), "-G", "Ninja",
                           f"-DCMAKE_MAKE_PROGRAM={_tool('ninja')}", "-DEDGELLM_PYTHON=OFF", "-DEDGELLM_CUDA=ON"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0
    assert "EDGELLM_CUDA=ON but no CUDA compiler was found" in proc.stdout + proc.stderr
