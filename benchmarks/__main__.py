"""`python -m benchmarks [--quick] [--only SUBSTRINGS] [--json PATH] [--markdown PATH] ...`."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Sequence

from benchmarks._harness import SelectionError, Skip, run_benchmark, select
from benchmarks._suites import QUICK, Config, all_benchmarks


def _positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time genjax's losses and train steps on the default JAX device (CPU, GPU or "
        "TPU): compile time, seconds per call, throughput, FLOPs and the fraction of peak.",
    )
    p.add_argument("--quick", action="store_true",
                   help=f"the smaller documented config: {QUICK} (minutes on a 2-core CPU)")
    p.add_argument("--only", metavar="SUBSTRINGS",
                   help="run only benchmarks whose name contains one of these comma-separated substrings")
    p.add_argument("--list", action="store_true", help="list the benchmark names and exit")
    p.add_argument("--repeats", type=int, help="timed repetitions per benchmark (>= 5; default 7, quick 5)")
    p.add_argument("--warmup", type=int, help="untimed repetitions after the first call (default 1)")
    p.add_argument("--min-rep-time", type=float, metavar="SECONDS",
                   help="shortest timed repetition; more calls per repetition if one is shorter "
                        "(default 0.1, quick 0.05; 0: off)")
    p.add_argument("--batch-sizes", type=_positive_ints, metavar="B1,B2,...",
                   help="divergences: batch sizes (default 64,1024,8192; quick 64,1024)")
    p.add_argument("--fused-steps", type=int, metavar="K",
                   help="train_step: steps per fused call / per dispatch repetition (default 50, quick 10)")
    p.add_argument("--heavy-fused-steps", type=int, metavar="K",
                   help="train_step: K of the convolutional families (default 4, quick 2)")
    p.add_argument("--train-batch-size", type=int, metavar="B",
                   help="train_step: batch of vae_mlp and mnist_classifier (default 128)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"],
                   help="the train steps' compute dtype, every family (default float32); bfloat16: mixed "
                        "precision, float32 master weights, gradients and loss; train_step names end in /bf16")
    p.add_argument("--peak-flops", type=float, metavar="FLOPS",
                   help="use this peak FLOP/s instead of the measured (CPU) or published (GPU/TPU) one")
    p.add_argument("--peak-matmul-size", type=int, metavar="N",
                   help="CPU: n of the float32 n x n matmul that measures the peak (default 2048)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the table as Markdown")
    return p


def build_config(args: argparse.Namespace) -> Config:
    values = dict(QUICK) if args.quick else {}
    overrides = {"repeats": args.repeats, "warmup": args.warmup, "min_rep_s": args.min_rep_time,
                 "batch_sizes": args.batch_sizes, "fused_steps": args.fused_steps,
                 "heavy_fused_steps": args.heavy_fused_steps, "train_batch_size": args.train_batch_size,
                 "peak_matmul_size": args.peak_matmul_size, "dtype": args.dtype}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Config(**values)


def _log(message: str) -> None:
    print(f"[benchmarks] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        config = build_config(args)
        benchmarks = select(all_benchmarks(config), args.only)
    except (SelectionError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        print("\n".join(b.name for b in benchmarks))
        return 0

    from benchmarks._peaks import device_peak
    from benchmarks._report import (compare, format_comparisons, format_markdown, format_table, header_lines,
                                    report_document, run_metadata)

    start = time.perf_counter()
    meta = run_metadata()
    _log(f"{len(benchmarks)} benchmark(s) on {meta['device']} ({meta['backend']})")
    try:
        peak = device_peak(matmul_size=config.peak_matmul_size, repeats=config.repeats,
                           warmup=config.warmup, override=args.peak_flops)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _log(header_lines(meta, peak)[1])

    results, failures, skipped = [], [], []
    for i, bench in enumerate(benchmarks, 1):
        try:
            result = run_benchmark(bench, repeats=config.repeats, warmup=config.warmup,
                                   peak_flops=peak.flops_per_s, peak_flops_per_cpu_s=peak.flops_per_cpu_s,
                                   min_rep_s=config.min_rep_s)
        except Skip as e:
            skipped.append({"name": bench.name, "reason": str(e)})
            _log(f"{i}/{len(benchmarks)} {bench.name}: skipped ({e})")
            continue
        except Exception as e:  # noqa: BLE001 - report it, run the rest, exit non-zero
            failures.append({"name": bench.name, "error": f"{type(e).__name__}: {e}"})
            _log(f"{i}/{len(benchmarks)} {bench.name}: FAILED\n{traceback.format_exc()}")
            continue
        results.append(result)
        compile_note = "" if result.compile_s is None else f", compile {result.compile_s:.3g} s"
        _log(f"{i}/{len(benchmarks)} {bench.name}: median {result.median_s * 1e3:.4g} ms{compile_note}")
    if peak.measured is not None and results:  # CPU: measure again, keep the better, refresh fractions
        from benchmarks._harness import with_peak
        from benchmarks._peaks import combine

        peak = combine(peak, device_peak(matmul_size=config.peak_matmul_size, repeats=config.repeats,
                                         warmup=config.warmup))
        results = [with_peak(r, peak.flops_per_s, peak.flops_per_cpu_s) for r in results]
    meta["total_s"] = time.perf_counter() - start

    print("\n".join(header_lines(meta, peak)))
    print(format_table(results))
    comparisons = compare(results)
    if comparisons:
        print()
        print(format_comparisons(comparisons))
    for s in skipped:
        print(f"skipped {s['name']}: {s['reason']}")
    config_dict = {**dataclasses.asdict(config), "quick": args.quick, "only": args.only}
    if args.json:
        from genjax.report import write_json

        write_json(args.json, report_document(meta, peak, config_dict, results, failures, skipped))
        _log(f"wrote {args.json}")
    if args.markdown:
        from genjax.report import atomic_write_text

        atomic_write_text(args.markdown, format_markdown(meta, peak, results, failures, skipped))
        _log(f"wrote {args.markdown}")
    if failures:
        _log(f"{len(failures)} benchmark(s) failed: {', '.join(f['name'] for f in failures)}")
        return 1
    _log(f"done in {meta['total_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
