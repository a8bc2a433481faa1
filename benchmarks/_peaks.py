"""The peak FLOP/s that achieved FLOP/s are compared with.

- CPU: measured in the same run, as the best throughput of a jitted dense float32 matmul
  (n x n @ n x n, 2 n^3 FLOPs; n = 2048 by default) over its timed repetitions, once before the
  benchmarks and once after them (`combine`: the better of the two). CPUs have no useful
  published number (it depends on the core count, the vector units, the clock and the load).
  Other processes can only slow a repetition down, so the best one is the closest to what the
  machine can do; with the median a busy moment during the peak measurement made fractions of
  the benchmarks that ran later exceed 100%. The matmul's FLOPs per CPU-second (median) are
  recorded too: the denominator of the load-independent `cpu_time_peak_fraction`.
- GPU / TPU: the published dense bfloat16 peak of one JAX device (the usual denominator of "model
  FLOPs utilisation"; TPUs run float32 matmuls at default precision on the bfloat16 units too).
  The float32 non-tensor peak is recorded alongside where the vendor publishes one. Devices not in
  the table get no peak (fractions are then None) unless `--peak-flops` gives one.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

# (substring of device_kind, lower-case; dense bf16 FLOP/s; fp32 non-tensor FLOP/s or None;
#  source), per JAX device, most specific first. NVIDIA datasheets quote bf16 "with sparsity";
# the dense figure is half of it.
_PUBLISHED: tuple[tuple[str, float, float | None, str], ...] = (
    # NVIDIA H100 Tensor Core GPU datasheet (2023), PCIe column: BF16 1,513 TFLOPS sparse, FP32 51.
    ("h100 pcie", 756.5e12, 51e12, "NVIDIA H100 datasheet, H100 PCIe"),
    # Same datasheet, H100 NVL column: BF16 1,671 TFLOPS sparse, FP32 60.
    ("h100 nvl", 835.5e12, 60e12, "NVIDIA H100 datasheet, H100 NVL"),
    # Same datasheet, H100 SXM column (device_kind "NVIDIA H100 80GB HBM3"): BF16 1,979 TFLOPS
    # sparse = 989.5 dense, FP32 67.
    ("h100", 989.5e12, 67e12, "NVIDIA H100 datasheet, H100 SXM"),
    # NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM: the H100 SXM chip with more memory;
    # BF16 1,979 TFLOPS sparse, FP32 67.
    ("h200", 989.5e12, 67e12, "NVIDIA H200 datasheet, H200 SXM"),
    # NVIDIA A100 Tensor Core GPU datasheet (2021): BF16 312 TFLOPS dense, FP32 19.5.
    ("a100", 312e12, 19.5e12, "NVIDIA A100 datasheet"),
    # Google Cloud TPU documentation, system architecture pages (cloud.google.com/tpu/docs):
    # v6e (Trillium, device_kind "TPU v6 lite") 918 TFLOPS bf16 per chip, one device per chip.
    ("tpu v6 lite", 918e12, None, "Google Cloud TPU docs, TPU v6e"),
    ("tpu v6e", 918e12, None, "Google Cloud TPU docs, TPU v6e"),
    # v5e (device_kind "TPU v5 lite"): 197 TFLOPS bf16 per chip, one device per chip.
    ("tpu v5 lite", 197e12, None, "Google Cloud TPU docs, TPU v5e"),
    ("tpu v5e", 197e12, None, "Google Cloud TPU docs, TPU v5e"),
    # v5p (device_kind "TPU v5" / "TPU v5p"): 459 TFLOPS bf16 per chip, one device per chip.
    ("tpu v5", 459e12, None, "Google Cloud TPU docs, TPU v5p"),
    # v4: 275 TFLOPS bf16 per chip; its two TensorCores form one device (megacore).
    ("tpu v4", 275e12, None, "Google Cloud TPU docs, TPU v4"),
    # v3: 123 TFLOPS bf16 per chip of two cores; JAX has one device per core.
    ("tpu v3", 61.5e12, None, "Google Cloud TPU docs, TPU v3 (per core: half a chip)"),
)


@dataclasses.dataclass(frozen=True)
class Peak:
    """A peak FLOP/s and where it comes from.

    Attributes:
        flops_per_s: the peak used for `peak_fraction`; None when unknown.
        source: how it was obtained (measured, published with the document, user-given, unknown).
        dtype: the precision the peak refers to ("float32" measured on CPU, "bfloat16" published).
        by_dtype: every known peak of the device by precision.
        measured: the measurement (matrix size, median seconds, repeats) on CPU, else None.
    """

    flops_per_s: float | None
    source: str
    dtype: str | None = None
    by_dtype: dict[str, float | None] = dataclasses.field(default_factory=dict)
    measured: dict[str, Any] | None = None
    flops_per_cpu_s: float | None = None  # CPU: the matmul's FLOPs per CPU-second of this process

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def published_peak(device_kind: str) -> Peak | None:
    """The published dense bf16 peak of one device of this kind, or None if not in the table."""
    kind = device_kind.lower()
    for pattern, bf16, fp32, source in _PUBLISHED:
        if pattern in kind:
            return Peak(
                flops_per_s=bf16,
                source=f"published: {source} (dense bfloat16)",
                dtype="bfloat16",
                by_dtype={"bfloat16": bf16, "float32": fp32},
            )
    return None


def measure_matmul_peak(n: int = 2048, *, repeats: int = 7, warmup: int = 1) -> Peak:
    """Measured float32 peak: the best throughput of a jitted n x n @ n x n matmul (2 n^3 FLOPs)
    over `repeats` timed repetitions."""
    import jax.numpy as jnp

    from benchmarks._harness import Benchmark, Case, run_benchmark

    if n < 1:
        raise ValueError(f"the peak matmul size must be >= 1, got {n}")

    def setup() -> Case:
        ka, kb = jax.random.split(jax.random.key(0))
        a = jax.random.normal(ka, (n, n), jnp.float32)
        b = jax.random.normal(kb, (n, n), jnp.float32)
        return Case(fn=jnp.matmul, args=(a, b), flops_per_call=2.0 * n**3)

    result = run_benchmark(Benchmark(f"peak/matmul_f32_{n}", setup), repeats=repeats, warmup=warmup)
    best = 2.0 * n**3 / result.min_s
    return Peak(
        flops_per_s=best,
        flops_per_cpu_s=result.flops_per_cpu_s,
        source=f"measured: jitted float32 matmul {n}x{n} @ {n}x{n}, best of {repeats}",
        dtype="float32",
        by_dtype={"float32": best},
        measured={"n": n, "median_s": result.median_s, "min_s": result.min_s,
                  "max_s": result.max_s, "cpu_s": result.cpu_s, "repeats": repeats, "measurements": 1},
    )


def combine(first: Peak, second: Peak) -> Peak:
    """Two measurements of the same CPU peak (before and after the benchmarks) -> the better one,
    with both recorded. Published or given peaks are returned unchanged."""
    if first.measured is None or second.measured is None:
        return first
    best = first if first.flops_per_s >= second.flops_per_s else second
    measured = {**best.measured, "measurements": 2,
                "flops_per_s_each": [first.flops_per_s, second.flops_per_s],
                "flops_per_cpu_s_each": [first.flops_per_cpu_s, second.flops_per_cpu_s]}
    per_cpu = [v for v in (first.flops_per_cpu_s, second.flops_per_cpu_s) if v is not None]
    return dataclasses.replace(best, source=best.source + ", better of a measurement before and one after "
                                                          "the benchmarks", measured=measured,
                               flops_per_cpu_s=max(per_cpu) if per_cpu else None)


def device_peak(
    device: Any | None = None,
    *,
    matmul_size: int = 2048,
    repeats: int = 7,
    warmup: int = 1,
    override: float | None = None,
) -> Peak:
    """The peak for `device` (default: the default device): override, measured or published."""
    device = device if device is not None else jax.devices()[0]
    if override is not None:
        if not override > 0:
            raise ValueError(f"--peak-flops must be positive, got {override}")
        return Peak(flops_per_s=float(override), source="given on the command line (--peak-flops)")
    if device.platform == "cpu":
        return measure_matmul_peak(matmul_size, repeats=repeats, warmup=warmup)
    peak = published_peak(device.device_kind)
    if peak is None:
        return Peak(
            flops_per_s=None,
            source=f"unknown: no published peak for device kind {device.device_kind!r} in "
            "benchmarks/_peaks.py (pass --peak-flops)",
        )
    return peak
