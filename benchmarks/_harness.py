"""The timing harness: one `Benchmark` in, one `Result` out.

For each benchmark the harness

1. builds its `Case` (inputs are created here, outside every timing);
2. times **compilation**: `genjax.train.jit(fn).lower(*args).compile()` (`jax.jit` with
   genjax's compiler options, so on CPU the programs genjax itself compiles) on a fresh function
   object (tracing, lowering and XLA compilation; nothing of `fn` is cached yet, although traces of
   jitted functions called inside may be), and reads XLA's cost analysis: FLOPs of the HLO
   before optimisation (`Lowered.cost_analysis()`: the arithmetic the program asks for, the same
   count on every backend; the compiled executable's count misses work that a backend hands to a
   library, e.g. cuDNN convolutions on GPU: 0.39 instead of 3.1 GFLOP per MNIST-classifier step
   on an H200). GPU and TPU backends do not implement `Lowered.cost_analysis()`, so there the
   program is lowered for CPU to be counted; the compiled count (`Compiled.cost_analysis()`,
   always recorded) is the last resort. Bytes accessed and transcendentals are the compiled
   executable's;
3. times the **first call** through the same jitted object (jit reuses the executable just
   compiled): `first_call_s` = compilation + this first execution, what a user waits for the
   first step;
4. runs `warmup` untimed repetitions, then `repeats` timed ones (at least `MIN_REPEATS`). A
   repetition dispatches `calls_per_rep` calls back to back and waits once, with
   `jax.block_until_ready`, for the last result (so a loop of K dispatched steps is timed as a
   Python training loop runs it: asynchronously, with one sync at the end). A repetition lasts at
   least `min_rep_s`: one more untimed repetition measures it, and if it is shorter the calls per
   repetition are multiplied until it is not (as `timeit` autoranges). Repetitions of a few
   milliseconds are dominated by wake-up latencies on CPU: the quick suite's 5-step fused
   vae_mlp call had a median 1.8x its minimum; reported times stay per call. A case with a
   `baseline` alternates its timed repetitions with the baseline's and reports their paired
   throughput ratio;
5. reports seconds per call (median, min, max over the repetitions), calls/s, steps/s and
   examples/s where the case says what a call is worth, FLOPs per call, achieved FLOP/s and the
   fraction of the device's peak.

A case whose `fn` is not one XLA program (`jit=False`: a Python loop over a jitted step, a
PyTorch step) is called as it is; its compile time and FLOPs are those of `analysis`, a jittable
`(fn, args)` that the loop runs `loop_trip_count` times per call. A benchmark may instead bring
its own `run` (e.g. one that re-runs the command in a subprocess with more virtual devices), and
a setup that cannot run here raises `Skip`.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

from genjax import train

MIN_REPEATS = 5


@dataclasses.dataclass(frozen=True)
class Case:
    """What a benchmark's `setup` returns: the function to time, its inputs, and its work.

    Attributes:
        fn: the function; jitted by the harness (with `donate_argnums`) unless it already is
            (has `.lower`, like the output of `jax.jit` or `genjax.train.compile_fused`).
        args: positional arguments (device arrays or pytrees of them).
        donate_argnums: arguments the function donates (must match `fn` if it is already jitted).
        carry: `fn` returns `(new_first_argument, aux)`, and the new first argument replaces
            `args[0]` in the next call: a train step that consumes (donates) its state.
        calls_per_rep: calls per timed repetition, dispatched back to back and synchronised once
            at the end; reported times are per call (repetition time / calls_per_rep).
        examples_per_call: examples processed by one call (None: not meaningful).
        steps_per_call: optimizer steps taken by one call (None: not a train step).
        flops_per_call: an analytic FLOP count that replaces XLA's (None: use cost analysis).
        loop_trip_count: XLA's cost analysis counts the body of a while loop once; a function
            that is one `lax.scan` over K steps (almost all of its work in the body) sets K here
            and the counted FLOPs, bytes and transcendentals are multiplied by it (with
            `analysis`: the times `analysis` runs per call).
        jit: False: call `fn` as it is (a Python loop, a foreign framework); compile time and
            FLOPs then come from `analysis` (None: not reported).
        analysis: `(jittable_fn, args)` compiled and counted in place of `fn` (with `jit=False`).
        sync: waits for a result (default `jax.block_until_ready`; e.g. a no-op for PyTorch's
            synchronous CPU tensors).
        extra: numbers recorded with the result as they are (e.g. the replica count).
        baseline: another case timed in alternation with this one, one repetition of
            each in turn, so that both see the same machine: the result's
            `extra["vs_baseline"]` is the median over repetition pairs of (this case's steps/s) /
            (the baseline's steps/s), and `extra["baseline_steps_per_s"]` the baseline's median.
            Use it where a ratio is the point: on a shared VM the speed of the same program
            drifts by up to 30 % over minutes, more than the effects being compared. On CPU,
            `extra["vs_baseline_cpu"]` is the same median ratio of steps per CPU-second.
    """

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    donate_argnums: tuple[int, ...] = ()
    carry: bool = False
    calls_per_rep: int = 1
    examples_per_call: int | None = None
    steps_per_call: int | None = None
    flops_per_call: float | None = None
    loop_trip_count: int = 1
    jit: bool = True
    analysis: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
    sync: Callable[[Any], Any] | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    baseline: "Case | None" = None

    def __post_init__(self):
        if self.baseline is not None and not (self.steps_per_call and self.baseline.steps_per_call):
            raise ValueError("a case with a baseline and its baseline must both say steps_per_call, got "
                             f"{self.steps_per_call} and {self.baseline.steps_per_call}")
        if self.calls_per_rep < 1:
            raise ValueError(f"calls_per_rep must be >= 1, got {self.calls_per_rep}")
        if self.loop_trip_count < 1:
            raise ValueError(f"loop_trip_count must be >= 1, got {self.loop_trip_count}")
        if self.carry and not self.args:
            raise ValueError("carry=True needs a first argument to carry")
        if self.donate_argnums and not (self.carry and tuple(self.donate_argnums) == (0,)):
            raise ValueError(
                "only the carried first argument may be donated (donate_argnums=(0,), carry=True): "
                f"a donated input cannot be passed again, got donate_argnums={self.donate_argnums}"
            )


class Skip(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a setup that cannot run here (no torch, too few devices); the run reports why."""


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A named benchmark; `setup()` builds its `Case` only when the benchmark is selected.

    `run(repeats=, warmup=, peak_flops=) -> Result`, when given, replaces the harness (e.g. to
    measure in a subprocess); `setup` is then unused.
    """

    name: str
    setup: Callable[[], Case]
    config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    run: Callable[..., "Result"] | None = None


@dataclasses.dataclass(frozen=True)
class Result:
    """The measurements of one benchmark. Times are seconds per call; None: not meaningful."""

    name: str
    config: dict[str, Any]
    median_s: float
    min_s: float
    max_s: float
    compile_s: float | None  # jax.jit(f).lower(*args).compile() (None: not one XLA program)
    first_call_s: float | None  # the first call: trace + lower + compile + one execution
    repeats: int
    warmup: int
    calls_per_rep: int
    times_s: list[float]  # every timed repetition, per call
    calls_per_s: float
    steps_per_s: float | None
    examples_per_s: float | None
    flops_per_call: float | None  # HLO before optimisation (see module notes), x loop_trip_count
    flops_per_step: float | None
    flops_per_s: float | None
    peak_flops: float | None
    peak_fraction: float | None  # flops_per_s / peak_flops
    bytes_accessed_per_call: float | None
    transcendentals_per_call: float | None
    flops_per_call_compiled: float | None  # the compiled executable's count (see module notes)
    flops_source: str  # "hlo_cost_analysis" | "compiled_cost_analysis" (" x loop_trip_count=K") | "analytic" | "unavailable"
    # CPU backend: this process's CPU time (all threads) per call, median over the repetitions,
    # and FLOPs per CPU-second against the peak matmul's. Other processes on the machine change
    # wall times (a shared 2-core CPU made the same step 2x slower) but hardly the CPU time a
    # program needs, so on a busy machine these are the numbers to compare; they measure the
    # work, not how well the cores were kept busy (wall-time fractions do that).
    cpu_s: float | None = None
    flops_per_cpu_s: float | None = None
    peak_flops_per_cpu_s: float | None = None
    cpu_time_peak_fraction: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def with_peak(result: Result, peak_flops: float | None, peak_flops_per_cpu_s: float | None = None) -> Result:
    """`result` against another peak (the CPU peak is re-measured after the benchmarks)."""
    fraction = None if result.flops_per_s is None or not peak_flops else result.flops_per_s / peak_flops
    cpu_fraction = (None if result.flops_per_cpu_s is None or not peak_flops_per_cpu_s
                    else result.flops_per_cpu_s / peak_flops_per_cpu_s)
    return dataclasses.replace(result, peak_flops=peak_flops, peak_fraction=fraction,
                               peak_flops_per_cpu_s=peak_flops_per_cpu_s, cpu_time_peak_fraction=cpu_fraction)


# ------------------------------------------------------------------------------- cost analysis


def cost_analysis(stage: Any) -> dict[str, float]:
    """XLA's cost analysis of a `Lowered` or `Compiled` stage as one flat dict (empty if unavailable).

    `cost_analysis()` has returned a dict (current jax), a list with one dict per program (older
    jax), or None (backends without an estimate), and may raise on some.
    """
    try:
        raw = stage.cost_analysis()
    except Exception:  # noqa: BLE001 - an estimate we cannot get is simply absent
        return {}
    if isinstance(raw, (list, tuple)):
        raw = next((r for r in raw if isinstance(r, Mapping)), None)
    if not isinstance(raw, Mapping):
        return {}
    out = {}
    for key, value in raw.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _nonnegative(cost: Mapping[str, float], key: str) -> float | None:
    """cost[key] if present, finite and >= 0 (XLA reports -1 for unknown), else None."""
    value = cost.get(key)
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return value


def hlo_cost_analysis_on_cpu(fn: Callable[..., Any], args: tuple[Any, ...]) -> dict[str, float]:
    """Cost analysis of `fn`'s HLO before optimisation, lowered for the CPU backend.

    `Lowered.cost_analysis()` is implemented only by backends outside the PJRT C API (the CPU
    one, not the GPU and TPU plugins); lowering the same program for CPU (on abstract arguments,
    so nothing moves) gives the backend-independent count there too. Empty if that fails.
    """
    try:
        cpu = jax.devices("cpu")[0]
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x, args)
        with jax.default_device(cpu):
            lowered = jax.jit(fn).lower(*abstract)
    except Exception:  # noqa: BLE001 - an estimate we cannot get is simply absent
        return {}
    return cost_analysis(lowered)


# ------------------------------------------------------------------------------------ running


def _jitted(fn: Callable[..., Any], donate_argnums: tuple[int, ...]) -> Callable[..., Any]:
    return fn if hasattr(fn, "lower") else train.jit(fn, donate_argnums=donate_argnums)


def _call(runner: Callable[..., Any], args: tuple[Any, ...], carry: bool):
    out = runner(*args)
    if carry:
        args = (out[0], *args[1:])
    return out, args


def run_benchmark(
    benchmark: Benchmark,
    *,
    repeats: int = 7,
    warmup: int = 1,
    peak_flops: float | None = None,
    peak_flops_per_cpu_s: float | None = None,
    min_rep_s: float = 0.0,
) -> Result:
    """Measures one benchmark (see the module docstring for the protocol).

    Args:
        benchmark: the benchmark; its `setup` is called once here.
        repeats: timed repetitions, at least `MIN_REPEATS`.
        warmup: untimed repetitions after the first call, >= 0.
        min_rep_s: the shortest timed repetition, seconds (>= 0; 0: `calls_per_rep` as the case
            says); benchmarks with their own `run` ignore it.
        peak_flops: the device's peak FLOP/s for `peak_fraction` (None: unknown).
        peak_flops_per_cpu_s: CPU: the peak matmul's FLOPs per CPU-second (`cpu_time_peak_fraction`).

    Returns:
        The `Result`.

    Raises:
        Skip: the benchmark cannot run here.
    """
    if repeats < MIN_REPEATS:
        raise ValueError(f"repeats must be >= {MIN_REPEATS} (for a meaningful median), got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    if not min_rep_s >= 0:
        raise ValueError(f"min_rep_s must be >= 0 seconds, got {min_rep_s}")
    if benchmark.run is not None:
        return with_peak(benchmark.run(repeats=repeats, warmup=warmup, peak_flops=peak_flops), peak_flops,
                         peak_flops_per_cpu_s)
    case = benchmark.setup()
    subject = _Timer(case, analyse=True)
    base = None if case.baseline is None else _Timer(case.baseline, analyse=False)
    for timer in (subject, base):
        if timer is not None:
            timer.first_call()
            timer.warm_up(warmup, min_rep_s)
    times, cpu_times, ratios, base_times, cpu_ratios = [], [], [], [], []
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            if base is not None:
                base_wall, base_cpu = base.repetition()
                base_times.append(base_wall)
            wall, cpu = subject.repetition()
            times.append(wall)
            cpu_times.append(cpu)
            if base is not None:  # steps/s of the subject over the baseline's, this pair
                ratios.append((base_wall / case.baseline.steps_per_call) / (wall / case.steps_per_call))
                if cpu > 0 and base_cpu > 0:  # the same per CPU-second
                    cpu_ratios.append((base_cpu / case.baseline.steps_per_call) / (cpu / case.steps_per_call))
    finally:
        if gc_was_enabled:
            gc.enable()
    extra = dict(case.extra)
    if base is not None:
        extra["vs_baseline"] = statistics.median(ratios)
        extra["baseline_steps_per_s"] = case.baseline.steps_per_call / statistics.median(base_times)
        if cpu_ratios and jax.default_backend() == "cpu":
            extra["vs_baseline_cpu"] = statistics.median(cpu_ratios)
    case = dataclasses.replace(case, calls_per_rep=subject.calls, extra=extra)
    subject.close()
    if base is not None:
        base.close()
    return make_result(benchmark, case, times, compile_s=subject.compile_s, first_call_s=subject.first_call_s,
                       cost=subject.cost, hlo_cost=subject.hlo_cost, hlo_note=subject.hlo_note, repeats=repeats,
                       warmup=warmup, peak_flops=peak_flops, peak_flops_per_cpu_s=peak_flops_per_cpu_s,
                       cpu_times=cpu_times if jax.default_backend() == "cpu" else None)


class _Timer:
    """One case's compiled function, its carried arguments, and its timed repetitions."""

    def __init__(self, case: Case, analyse: bool):
        self.case = case
        self.args = tuple(case.args)
        self.sync = case.sync or jax.block_until_ready
        self.sync(self.args)
        self.calls = case.calls_per_rep
        self.out = None
        # 1. compilation, of a fresh function object (the first call below reuses the executable).
        if case.jit:
            runner = _jitted(case.fn, case.donate_argnums)
            if runner is case.fn:  # already jitted (maybe called before): compile a fresh wrapper
                fn = case.fn

                def wrapper(*a):
                    return fn(*a)

                runner = train.jit(wrapper, donate_argnums=case.donate_argnums)
            analysed, analysis_args = runner, self.args
        else:
            runner = case.fn
            analysed, analysis_args = (None, None) if case.analysis is None else (
                train.jit(case.analysis[0]), tuple(case.analysis[1]))
        self.runner = runner
        self.cost, self.hlo_cost, self.hlo_note, self.compile_s = {}, {}, "", None
        if analysed is not None and analyse:
            start = time.perf_counter()
            lowered = analysed.lower(*analysis_args)
            compiled = lowered.compile()
            self.compile_s = time.perf_counter() - start
            self.cost = cost_analysis(compiled)
            self.hlo_cost = cost_analysis(lowered)
            if _nonnegative(self.hlo_cost, "flops") is None and jax.default_backend() != "cpu":
                base = case.fn if case.jit else case.analysis[0]
                self.hlo_cost, self.hlo_note = hlo_cost_analysis_on_cpu(base, analysis_args), " (lowered for cpu)"
            del lowered, compiled

    def _calls(self, n: int) -> None:
        for _ in range(n):
            self.out, self.args = _call(self.runner, self.args, self.case.carry)
        self.sync(self.out)

    def first_call(self) -> None:
        """2. The first call: `first_call_s` = compilation + this first execution."""
        start = time.perf_counter()
        self._calls(1)
        self.first_call_s = time.perf_counter() - start + (self.compile_s or 0.0)

    def warm_up(self, warmup: int, min_rep_s: float) -> None:
        """3. Untimed repetitions, then autorange: one more says how long a repetition takes."""
        for _ in range(warmup):
            self._calls(self.calls)
        if min_rep_s > 0:
            start = time.perf_counter()
            self._calls(self.calls)
            took = time.perf_counter() - start
            if took < min_rep_s:
                self.calls *= math.ceil(min_rep_s / max(took, 1e-9))

    def repetition(self) -> tuple[float, float]:
        """One timed repetition: (wall seconds, this process's CPU seconds) per call."""
        start, cpu_start = time.perf_counter(), time.process_time()
        self._calls(self.calls)
        return (time.perf_counter() - start) / self.calls, (time.process_time() - cpu_start) / self.calls

    def close(self) -> None:
        self.out = self.args = None


def make_result(benchmark: Benchmark, case: Case, times: Sequence[float], *, compile_s: float | None,
                first_call_s: float | None, cost: Mapping[str, float] = {}, hlo_cost: Mapping[str, float] = {},
                hlo_note: str = "", repeats: int, warmup: int, peak_flops: float | None,
                peak_flops_per_cpu_s: float | None = None, cpu_times: Sequence[float] | None = None) -> Result:
    """The derived numbers of a benchmark from its timed repetitions (seconds per call; with
    `cpu_times`, also this process's CPU seconds per call)."""
    median_s = statistics.median(times)
    trips = case.loop_trip_count

    def counted(analysis: Mapping[str, float], key: str) -> float | None:
        value = _nonnegative(analysis, key)
        return None if value is None else value * trips

    loop_note = f" x loop_trip_count={trips}" if trips > 1 else ""
    flops_compiled = counted(cost, "flops")
    if case.flops_per_call is not None:
        flops, flops_source = float(case.flops_per_call), "analytic"
    elif (flops := counted(hlo_cost, "flops")) is not None:
        flops_source = "hlo_cost_analysis" + hlo_note + loop_note
    elif (flops := flops_compiled) is not None:
        flops_source = "compiled_cost_analysis" + loop_note
    else:
        flops_source = "unavailable"
    flops_per_s = None if flops is None else flops / median_s
    fraction = None if flops_per_s is None or not peak_flops else flops_per_s / peak_flops
    steps = case.steps_per_call
    result = Result(
        name=benchmark.name,
        config=dict(benchmark.config),
        median_s=median_s,
        min_s=min(times),
        max_s=max(times),
        compile_s=compile_s,
        first_call_s=first_call_s,
        repeats=repeats,
        warmup=warmup,
        calls_per_rep=case.calls_per_rep,
        times_s=list(times),
        calls_per_s=1.0 / median_s,
        steps_per_s=None if steps is None else steps / median_s,
        examples_per_s=None if case.examples_per_call is None else case.examples_per_call / median_s,
        flops_per_call=flops,
        flops_per_step=None if flops is None or steps is None else flops / steps,
        flops_per_s=flops_per_s,
        peak_flops=peak_flops,
        peak_fraction=fraction,
        bytes_accessed_per_call=counted(cost, "bytes accessed"),
        transcendentals_per_call=counted(cost, "transcendentals"),
        flops_per_call_compiled=flops_compiled,
        flops_source=flops_source,
        extra=dict(case.extra),
    )
    if cpu_times:
        cpu_s = statistics.median(cpu_times)
        per_cpu_s = None if flops is None or cpu_s <= 0 else flops / cpu_s
        result = dataclasses.replace(result, cpu_s=cpu_s, flops_per_cpu_s=per_cpu_s)
    return with_peak(result, peak_flops, peak_flops_per_cpu_s)


# ---------------------------------------------------------------------------------- selection


class SelectionError(ValueError):
    """`--only` named something that matches no benchmark; the message lists the names."""


def select(benchmarks: Sequence[Benchmark], only: str | Sequence[str] | None) -> list[Benchmark]:
    """The benchmarks whose name contains any of the substrings in `only` (all if None/empty).

    `only` is a comma-separated string or a sequence of substrings. Every substring must match at
    least one name; otherwise `SelectionError` lists the available names.
    """
    if only is None:
        return list(benchmarks)
    tokens = only.split(",") if isinstance(only, str) else list(only)
    tokens = [t.strip() for t in tokens if t.strip()]
    if not tokens:
        return list(benchmarks)
    names = [b.name for b in benchmarks]
    unknown = [t for t in tokens if not any(t in n for n in names)]
    if unknown:
        listing = "\n  ".join(names)
        raise SelectionError(
            f"--only {', '.join(map(repr, unknown))} matches no benchmark; available benchmarks "
            f"(any substring of these names selects them):\n  {listing}"
        )
    return [b for b in benchmarks if any(t in b.name for t in tokens)]
