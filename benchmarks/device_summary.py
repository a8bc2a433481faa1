"""`python -m benchmarks.device_summary BENCH.json`: one table of a benchmark run on a device.

Reads the document `python -m benchmarks --json` writes (`benchmarks._report.report_document`)
and prints, as Markdown: the device and its peak; per model family the fused train step's
steps/s, the dispatched step's, their ratio, the fused step's % of the device's peak and its
compile time; replicas over seeds (`scaling/<vmap|loop>_seeds/<family>/r<R>`: replica-steps/s
over one seed's steps/s, the paired ratio where the run measured one); and data parallelism over
the local devices (`scaling/<mode>/<family>/d<D>`, e.g. `pmap`: steps/s on D devices over one).
`benchmarks/device_check.sh` prints it after its benchmark run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import Any


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|",
            *("| " + " | ".join(r) + " |" for r in rows)]


def _peak_line(doc: dict[str, Any]) -> str:
    peak = doc.get("peak") or {}
    value = peak.get("flops_per_s")
    if not value:
        return f"peak: unknown ({peak.get('source', 'not recorded')}): no % of peak"
    scaled = f"{value / 1e12:.4g} TFLOP/s" if value >= 1e12 else f"{value / 1e9:.4g} GFLOP/s"
    return f"peak: {scaled} {peak.get('dtype') or ''} ({peak.get('source')})".replace("  ", " ")


def train_step_rows(results: dict[str, dict]) -> list[list[str]]:
    """One row per `train_step/<family>/fused[/bf16]`, with its dispatched twin."""
    rows = []
    for name, r in results.items():
        m = re.fullmatch(r"train_step/([^/]+)/fused(/bf16)?", name)
        if not m:
            continue
        family = m.group(1) + (" (bf16)" if m.group(2) else "")
        dispatch = results.get(name.replace("/fused", "/dispatch"), {})
        fused_s, dispatch_s = r.get("steps_per_s"), dispatch.get("steps_per_s")
        ratio = fused_s / dispatch_s if fused_s and dispatch_s else None
        peak = r.get("peak_fraction")
        rows.append([family, _fmt(fused_s), _fmt(dispatch_s), _fmt(ratio, 3),
                     _fmt(None if peak is None else 100 * peak, 3), _fmt(r.get("compile_s"), 3)])
    return rows


def scaling_rows(results: dict[str, dict], pattern: str, baseline: str,
                 paired: dict[str, float] | None = None) -> list[list[str]]:
    """(family, mode, count, steps/s, ratio) for every result whose name matches `pattern` (groups:
    mode, family, count); the ratio is `paired[name]` where the run paired it with its baseline,
    else steps/s over those of the result named `baseline.format(mode=, family=)`."""
    rows = []
    for name, r in results.items():
        m = re.fullmatch(pattern, name)
        if not m:
            continue
        mode, family, count = m.groups()
        ratio = (paired or {}).get(name)
        one = results.get(baseline.format(mode=mode, family=family), {}).get("steps_per_s")
        if ratio is None and one and r.get("steps_per_s"):
            ratio = r["steps_per_s"] / one
        rows.append([family, mode, count, _fmt(r.get("steps_per_s")), _fmt(ratio, 3)])
    return sorted(rows, key=lambda row: (row[0], row[1], int(row[2])))


def seed_rows(doc: dict[str, Any], results: dict[str, dict]) -> list[list[str]]:
    """`scaling/<vmap|loop>_seeds/<family>/r<R>`: replica-steps/s, and over one seed's steps/s."""
    paired = {c["numerator"]: c["ratio"] for c in doc.get("comparisons", [])}
    return scaling_rows(results, r"scaling/(vmap|loop)_seeds/([^/]+)/r(\d+)", "scaling/one_seed/{family}", paired)


def device_rows(results: dict[str, dict]) -> list[list[str]]:
    """`scaling/<mode>/<family>/d<D>` (e.g. pmap): steps/s on D devices, and over those on one."""
    return scaling_rows(results, r"scaling/([^/]+)/([^/]+)/d(\d+)", "scaling/{mode}/{family}/d1")


def summarise(doc: dict[str, Any]) -> str:
    """The summary of one `python -m benchmarks --json` document, as Markdown."""
    results = {r["name"]: r for r in doc.get("results", [])}
    out = ["# genjax on " + str(doc.get("device", "an unknown device")), "",
           f"- backend {doc.get('backend')}, {doc.get('device_count')} device(s); jax {doc.get('jax_version')}, "
           f"jaxlib {doc.get('jaxlib_version')}; {len(results)} benchmark(s) in {_fmt(doc.get('total_s'), 3)} s",
           f"- {_peak_line(doc)}", ""]
    out += ["## Train steps", ""]
    rows = train_step_rows(results)
    out += _table(["family", "steps/s fused", "steps/s dispatch", "fused / dispatch", "% peak (fused)",
                   "compile s (fused)"], rows) if rows else ["(no train_step rows)"]
    out += ["", "## Seeds as replicas (one program)", ""]
    rows = seed_rows(doc, results)
    out += _table(["family", "mode", "replicas", "replica-steps/s", "vs one seed"], rows) if rows else ["(none)"]
    out += ["", "## Over the local devices", ""]
    rows = device_rows(results)
    skipped = [s for s in doc.get("skipped", []) if s["name"].startswith("scaling/")]
    out += _table(["family", "mode", "devices", "steps/s", "vs one device"], rows) if rows else ["(none)"]
    out += [f"- skipped `{s['name']}`: {s['reason']}" for s in skipped]
    if doc.get("failures"):
        out += ["", "## Failed", ""] + [f"- `{f['name']}`: {f['error']}" for f in doc["failures"]]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.device_summary", description=__doc__.splitlines()[0])
    p.add_argument("json", help="the file `python -m benchmarks --json` wrote")
    args = p.parse_args(argv)
    with open(args.json) as f:
        doc = json.load(f)
    print(summarise(doc), end="")
    return 1 if doc.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
