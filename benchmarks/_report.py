"""Output: the run's metadata, the plain-text and Markdown tables, the JSON document."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from typing import Any

import jax

from benchmarks._harness import Result
from benchmarks._peaks import Peak

COLUMNS = (
    "benchmark", "median ms", "min ms", "max ms", "compile s", "first call s",
    "calls/s", "steps/s", "examples/s", "GFLOP/step", "GFLOP/s", "% peak", "CPU ms", "% peak (CPU time)",
)


def run_metadata() -> dict[str, Any]:
    """Where the numbers come from: device, backend, versions, host."""
    import jaxlib

    device = jax.devices()[0]
    return {
        "device": device.device_kind,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jaxlib, "__version__", None),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _num(x: float | None, scale: float = 1.0, digits: int = 4) -> str:
    if x is None:
        return "-"
    v = x * scale
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def table_rows(results: Sequence[Result]) -> list[tuple[str, ...]]:
    return [
        (
            r.name,
            _num(r.median_s, 1e3), _num(r.min_s, 1e3), _num(r.max_s, 1e3),
            _num(r.compile_s, digits=3), _num(r.first_call_s, digits=3),
            _num(r.calls_per_s), _num(r.steps_per_s), _num(r.examples_per_s),
            _num(r.flops_per_step if r.flops_per_step is not None else r.flops_per_call, 1e-9),
            _num(r.flops_per_s, 1e-9),
            _num(r.peak_fraction, 100.0, digits=3),
            _num(r.cpu_s, 1e3), _num(r.cpu_time_peak_fraction, 100.0, digits=3),
        )
        for r in results
    ]


def format_table(results: Sequence[Result]) -> str:
    """An aligned plain-text table (name left, numbers right)."""
    rows = [COLUMNS, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]

    def line(row):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(rows[0]), rule, *(line(r) for r in rows[1:])])


def _peak_line(peak: Peak) -> str:
    if peak.flops_per_s is None:
        return f"peak: none ({peak.source})"
    if peak.flops_per_s >= 1e12:
        return f"peak: {peak.flops_per_s / 1e12:.4g} TFLOP/s ({peak.source})"
    line = f"peak: {peak.flops_per_s / 1e9:.4g} GFLOP/s ({peak.source})"
    if peak.flops_per_cpu_s:
        line += f"; {peak.flops_per_cpu_s / 1e9:.4g} GFLOP per CPU-second"
    return line


def header_lines(meta: dict[str, Any], peak: Peak) -> list[str]:
    return [
        f"device: {meta['device']} (backend {meta['backend']}, {meta['device_count']} device(s)); "
        f"jax {meta['jax_version']}",
        _peak_line(peak),
    ]


def format_markdown(meta: dict[str, Any], peak: Peak, results: Sequence[Result],
                    failures: Sequence[dict[str, str]] = (), skipped: Sequence[dict[str, str]] = ()) -> str:
    """The same table as Markdown, under a short header naming device, versions and peak."""
    out = ["# genjax benchmarks", ""]
    out += [f"- {line}" for line in header_lines(meta, peak)]
    out += [
        f"- times are milliseconds per call (median, min, max of {results[0].repeats if results else 0} "
        "synchronised repetitions); compile and first call in seconds; FLOPs from XLA's cost "
        "analysis of the HLO before optimisation; % peak = achieved FLOP/s / peak; on CPU, CPU ms is "
        "this process's CPU time per call (all threads) and % peak (CPU time) = FLOPs per CPU-second / "
        "the peak matmul's, which other load on the machine hardly changes",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|",
    ]
    out += ["| " + " | ".join(f"`{row[0]}`" if i == 0 else c for i, c in enumerate(row)) + " |"
            for row in table_rows(results)]
    comparisons = compare(results)
    if comparisons:
        out += ["", "## Comparisons", "", "| comparison | ratio | meaning |", "|:---|---:|:---|"]
        out += [f"| `{c['name']}` | {c['ratio']:.3g} | {c['meaning']} |" for c in comparisons]
    if skipped:
        out += ["", "Skipped:", ""] + [f"- `{s['name']}`: {s['reason']}" for s in skipped]
    if failures:
        out += ["", "Failed:", ""] + [f"- `{f['name']}`: {f['error']}" for f in failures]
    return "\n".join(out) + "\n"


def report_document(meta: dict[str, Any], peak: Peak, config: dict[str, Any],
                    results: Sequence[Result], failures: Sequence[dict[str, str]] = (),
                    skipped: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """The `--json` document; `failures` are `{"name", "error"}` of benchmarks that raised,
    `skipped` `{"name", "reason"}` of those that cannot run here."""
    return {
        **meta,
        "peak_flops": peak.flops_per_s,
        "peak": peak.as_dict(),
        "config": config,
        "results": [r.as_dict() for r in results],
        "comparisons": compare(results),
        "failures": list(failures),
        "skipped": list(skipped),
    }


def compare(results: Sequence[Result]) -> list[dict[str, Any]]:
    """The ratios the suite exists to show, from whichever pairs of results are present.

    - `fused_vs_dispatch/<family>[/bf16]`: steps/s fused / steps/s dispatched (>= 1: the scan is
      no slower);
    - `<vmap|loop>_vs_sequential/<family>/r<R>`: replica-steps/s of R replicas (vmapped, or looped
      inside one program) / steps/s of one seed's plain fused step (>= 1: no slower than the seeds
      one after another; the ideal for vmap on an idle accelerator is R);
    - `pmap_vs_one_device/<family>/d<D>`: steps/s on D devices / on one;
    - `sampling_scan_vs_loop`: samples/s of the scan / the Python loop;
    - `jax_vs_torch/vae_mlp/<mode>`: steps/s of the JAX step / PyTorch's eager step;
    - `jax_vs_torch/<family>/fused` (dcgan, vqvae, ddpm_unet): steps/s of the JAX fused step /
      PyTorch's eager twin, from repetitions paired in the same run, against PyTorch at its best
      thread count; `jax_vs_torch_cpu/<family>/fused`: the same per CPU-second (on CPU).
    """
    by_name = {r.name: r for r in results}
    out = []

    def add(name, num, den, meaning, attr="steps_per_s"):
        a, b = getattr(num, attr), getattr(den, attr)
        if a and b:
            out.append({"name": name, "ratio": a / b, "numerator": num.name, "denominator": den.name,
                        "meaning": meaning})

    for r in results:
        parts = r.name.split("/")
        if parts[0] == "train_step" and parts[2] == "fused":
            other = by_name.get("/".join([parts[0], parts[1], "dispatch", *parts[3:]]))
            if other:
                add("/".join(["fused_vs_dispatch", parts[1], *parts[3:]]), r, other,
                    "steps/s in one lax.scan / steps/s dispatched one by one")
        elif parts[0] == "scaling" and parts[1] in ("vmap_seeds", "loop_seeds"):
            mode = parts[1].split("_")[0]
            name, meaning = (f"{mode}_vs_sequential/{parts[2]}/{parts[3]}",
                             f"replica-steps/s of R replicas ({mode}) / steps/s of one seed alone")
            if r.extra.get("vs_baseline"):  # measured in alternation with one seed: same machine state
                out.append({"name": name, "ratio": r.extra["vs_baseline"], "numerator": r.name,
                            "denominator": f"scaling/one_seed/{parts[2]} (paired repetitions)",
                            "meaning": meaning + ", paired repetitions"})
            elif one := by_name.get(f"scaling/one_seed/{parts[2]}"):
                add(name, r, one, meaning)
        elif parts[:2] == ["scaling", "pmap"] and parts[3] != "d1":
            one = by_name.get("/".join([*parts[:3], "d1"]))
            if one:
                add(f"pmap_vs_one_device/{parts[2]}/{parts[3]}", r, one, "steps/s on D devices / on one device")
    if "sampling/ddpm/scan" in by_name and "sampling/ddpm/loop" in by_name:
        add("sampling_scan_vs_loop", by_name["sampling/ddpm/scan"], by_name["sampling/ddpm/loop"],
            "samples/s of diffusion.sample (scan) / a Python loop over a jitted step", "examples_per_s")
    twins: dict[str, list[Result]] = {}
    for r in results:
        parts = r.name.split("/")
        if parts[0] == "torch" and parts[1] != "vae_mlp" and r.extra.get("vs_baseline"):
            twins.setdefault(parts[1], []).append(r)
    for family, rows in twins.items():
        best = min(rows, key=lambda r: 1.0 / r.extra["vs_baseline"])  # PyTorch at its fastest: the lowest ratio
        meaning = (f"steps/s of train_step/{family}/fused / PyTorch's eager twin ({best.name}, "
                   f"{best.extra.get('torch_threads')} thread(s)), repetitions paired in the same run")
        out.append({"name": f"jax_vs_torch/{family}/fused", "ratio": 1.0 / best.extra["vs_baseline"],
                    "numerator": f"train_step/{family}/fused (paired)", "denominator": best.name,
                    "meaning": meaning})
        cpu_rows = [r for r in rows if r.extra.get("vs_baseline_cpu")]
        if cpu_rows:
            best_cpu = min(cpu_rows, key=lambda r: 1.0 / r.extra["vs_baseline_cpu"])
            out.append({"name": f"jax_vs_torch_cpu/{family}/fused", "ratio": 1.0 / best_cpu.extra["vs_baseline_cpu"],
                        "numerator": f"train_step/{family}/fused (paired)", "denominator": best_cpu.name,
                        "meaning": f"the same per CPU-second of each process ({best_cpu.name})"})
    torches = [r for r in results if r.name.startswith("torch/vae_mlp/eager") and r.steps_per_s]
    torch = max(torches, key=lambda r: r.steps_per_s, default=None)  # PyTorch at its best thread count
    if torch:
        for mode in ("dispatch", "fused"):
            if f"train_step/vae_mlp/{mode}" in by_name:
                add(f"jax_vs_torch/vae_mlp/{mode}", by_name[f"train_step/vae_mlp/{mode}"], torch,
                    f"steps/s of the JAX step / PyTorch's eager step ({torch.name}; same machine, same run)")
    return out


def format_comparisons(comparisons: Sequence[dict[str, Any]]) -> str:
    width = max(len(c["name"]) for c in comparisons)
    lines = [f"{'comparison'.ljust(width)}  ratio  meaning"]
    lines += [f"{c['name'].ljust(width)}  {c['ratio']:5.3g}  {c['meaning']}" for c in comparisons]
    return "\n".join(lines)
