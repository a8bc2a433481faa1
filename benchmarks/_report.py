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
    "calls/s", "steps/s", "examples/s", "GFLOP/call", "GFLOP/s", "% peak",
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
            _num(r.flops_per_call, 1e-9), _num(r.flops_per_s, 1e-9),
            _num(r.peak_fraction, 100.0, digits=3),
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
    return f"peak: {peak.flops_per_s / 1e9:.4g} GFLOP/s ({peak.source})"


def header_lines(meta: dict[str, Any], peak: Peak) -> list[str]:
    return [
        f"device: {meta['device']} (backend {meta['backend']}, {meta['device_count']} device(s)); "
        f"jax {meta['jax_version']}",
        _peak_line(peak),
    ]


def format_markdown(meta: dict[str, Any], peak: Peak, results: Sequence[Result],
                    failures: Sequence[dict[str, str]] = ()) -> str:
    """The same table as Markdown, under a short header naming device, versions and peak."""
    out = ["# genjax benchmarks", ""]
    out += [f"- {line}" for line in header_lines(meta, peak)]
    out += [
        f"- times are milliseconds per call (median, min, max of {results[0].repeats if results else 0} "
        "synchronised repetitions); compile and first call in seconds; FLOPs from XLA's cost "
        "analysis of the HLO before optimisation; % peak = achieved FLOP/s / peak",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(COLUMNS) - 1)) + "|",
    ]
    out += ["| " + " | ".join(f"`{row[0]}`" if i == 0 else c for i, c in enumerate(row)) + " |"
            for row in table_rows(results)]
    if failures:
        out += ["", "Failed:", ""] + [f"- `{f['name']}`: {f['error']}" for f in failures]
    return "\n".join(out) + "\n"


def report_document(meta: dict[str, Any], peak: Peak, config: dict[str, Any],
                    results: Sequence[Result], failures: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """The `--json` document; `failures` are `{"name", "error"}` of benchmarks that raised."""
    return {
        **meta,
        "peak_flops": peak.flops_per_s,
        "peak": peak.as_dict(),
        "config": config,
        "results": [r.as_dict() for r in results],
        "failures": list(failures),
    }
