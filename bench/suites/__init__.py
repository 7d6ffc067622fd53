"""Benchmark suites for bench/run.py: one module per suite, discovered by file name.

THE SUITE INTERFACE (every ``bench/suites/<name>.py`` not starting with "_"):

    NAME: str          # the --suite name, e.g. "cpu"
    KIND: str          # the section's label: "kernel-only" | "end-to-end" | "host"
    DESCRIPTION: str   # one line for ``bench/run.py --list`` (optional)

    def available(ctx) -> tuple[bool, str]:
        '''Cheap check (no measuring): (True, "") or (False, "one-line reason"). False records the whole
        section as skipped with the reason, e.g. (False, "no CUDA device: edgellm_ext.cuda_available() is False").'''

    def run(ctx) -> Iterator[dict]:
        '''Measure and yield result items, built with edgellm_ext.results:
             measurement(name=, kind=, engine=, metric=, unit=, samples=, params=, model=, notes=, extra=, power=)
             comparison(name=, a=<measurement>, b=<measurement>)   # ratio of medians + bootstrap CI + p-value
             target(target=, threshold=, unit=, measured=, status=)
             skip(name, reason)                                    # a part that could not run (one line)
             note(text)
           The runner appends each item to the section and rewrites the results file atomically, so an item is
           safe once yielded. raise edgellm_ext.harness.SuiteSkip("reason") for an expected fault that ends the
           suite (server gone, GPU lost): the section becomes "skipped" and earlier items stay. Any other
           exception marks the section "error" (one line) and the run goes on with the next suite.'''

Import heavy or optional modules (torch, ...) inside available()/run(), not at the top of the file: every suite
file is imported for --list and argument checking, and a file that fails to import is recorded as a skipped
section with the import error.

``ctx`` is an edgellm_ext.harness.SuiteContext:
    ctx.methodology   frozen settings: warmup_iterations, iterations, cache_lengths, scaling_lengths, prompts,
                      num_predict, temperature, e2e_warmup_runs, e2e_runs, l2_flush, outlier_k, ... (quick-aware)
    ctx.quick         True for --quick (smoke run)
    ctx.models        list[edgellm_ext.models.ModelConfig] from --model, or None (the suite picks its default)
    ctx.options       ollama_url, openai_url, openai_model, api_key, request_timeout_s
    ctx.environment   the environment record (GPU, CPU, build_info, git, ...)
    ctx.progress(iterable, desc, total=None)   tqdm progress bar on a terminal
    ctx.power_sampler()                        PowerSampler for a timed part (``with``; then .result())
    ctx.log(msg)                               a line on stdout

The runner already wraps each whole section in a PowerSampler (section["power"]); use ctx.power_sampler() for a
per-measurement record (pass it as ``power=`` to measurement()).

Labels: a measurement's ``kind`` says what its number is. "kernel-only" numbers are device time of kernels;
a per-token figure built from them must be named "kernel-only estimate", use the model's real layer count and
include every projection of a layer (ModelConfig.layer_matrices() + lm_head_shape()):
edgellm_ext.models.kernel_only_token_estimate(model, layer_times_us, lm_head_us) enforces this. Measurements
whose params carry "cache_len" (and a model) are drawn in the latency-vs-cache-length chart. "end-to-end" numbers are
an engine's whole pipeline. "host" numbers are host-clock times of Python calls (Python call overhead included).

Suites here: cpu.py (host), ollama.py and openai.py (end-to-end); kernels.py (GPU kernel-only) and e2e.py (our
decode engine, end-to-end) are added by the CUDA kernel and decode-engine work.
"""
