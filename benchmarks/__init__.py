"""genjax benchmarks: `python -m benchmarks [--quick] [--only ...] [--json PATH] [--markdown PATH]`.

Run from the repository root. Every benchmark is timed on the default JAX device (CPU, GPU or
TPU, detected): compile time, the first call, then warm-up and at least five synchronised timed
repetitions; the table gives seconds per call (median, min, max), calls/s, steps/s and
examples/s, FLOPs per call from XLA's cost analysis, achieved FLOP/s and the fraction of the
device's peak (measured with a float32 matmul on CPU, published dense bf16 on GPU/TPU).

Modules: `_harness` (Case, Benchmark, Result, Skip, run_benchmark, select), `_peaks` (the peak
FLOP/s), `_suites` (Config, QUICK, the benchmarks), `_losses` (the losses' inputs), `_families`
(the model families' train steps, from the experiments' builders), `_torch_vae` (PyTorch's VAE
example, optional), `_report` (tables, comparisons and the JSON document), `__main__` (the
command line), `device_summary` (the one table `device_check.sh` prints from a run's JSON).
"""

from benchmarks._harness import (
    MIN_REPEATS,
    Benchmark,
    Case,
    Result,
    SelectionError,
    Skip,
    cost_analysis,
    make_result,
    run_benchmark,
    select,
)
from benchmarks._peaks import Peak, device_peak, measure_matmul_peak, published_peak
from benchmarks._suites import QUICK, Config, all_benchmarks

__all__ = [
    "MIN_REPEATS",
    "QUICK",
    "Benchmark",
    "Case",
    "Config",
    "Peak",
    "Result",
    "SelectionError",
    "Skip",
    "all_benchmarks",
    "cost_analysis",
    "device_peak",
    "make_result",
    "measure_matmul_peak",
    "published_peak",
    "run_benchmark",
    "select",
]
