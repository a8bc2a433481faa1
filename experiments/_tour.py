"""`python -m experiments tour`: every experiment in course order, one report.

Writes `<workdir>/<name>/` for each experiment, then `<workdir>/report.html` (one self-contained
page: every table and figure, images embedded) and `<workdir>/index.md` (links to each
experiment's `report.md`, and its status). An experiment that fails is reported with its error
and the tour goes on; the exit status is 1 if any failed. Re-running the tour on the same workdir
resumes each training experiment from its checkpoints.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from experiments import REGISTRY, load
from experiments._framework import (
    DEFAULT_RUNS_DIR,
    SEED_MAX,
    ConfigError,
    interrupted_message,
    lock_run_directory,
    run_experiment,
)
from genjax import report as report_lib


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments tour", description=__doc__.splitlines()[0],
                                allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="each experiment's small config (minutes on a CPU)")
    p.add_argument("--workdir", type=Path, default=DEFAULT_RUNS_DIR / "tour")
    p.add_argument("--seed", type=int, default=0, help=f"every experiment's seed, in [0, {SEED_MAX}]")
    p.add_argument("--only", default=None, help="comma-separated experiment names (default: all)")
    return p.parse_args(argv)


def selected(only: str | None) -> list[str]:
    """The experiments `--only` names, in the order given (all of them without `--only`)."""
    if only is None:
        return list(REGISTRY)
    names = [n.strip() for n in only.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--only: expected comma-separated experiment names, got {only!r}; "
                          f"available: {', '.join(REGISTRY)}")
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown experiment(s) {unknown}; available: {', '.join(REGISTRY)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--only: experiment(s) {repeated} named more than once")
    return names


def main(argv: list[str]) -> int:
    """0 when every experiment succeeded, 1 if one failed, 2 (one `error:` line, nothing written)
    for a bad command line or workdir, 130 after Ctrl-C (the same command resumes)."""
    args = parse(argv)
    lock = None
    try:
        names = selected(args.only)
        if not 0 <= args.seed <= SEED_MAX:
            raise ConfigError(f"--seed: expected an integer in [0, {SEED_MAX}], got {args.seed}")
        if args.workdir.exists() and not args.workdir.is_dir():
            raise ConfigError(f"--workdir {args.workdir} exists and is not a directory")
        try:
            args.workdir.mkdir(parents=True, exist_ok=True)
            lock = lock_run_directory(args.workdir)
        except OSError as e:
            raise ConfigError(f"cannot write to --workdir {args.workdir}: {e.strerror or e}") from None
        return _tour(args, names)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt as e:
        print(interrupted_message(e, getattr(e, "genjax_workdir", None)), file=sys.stderr, flush=True)
        return 130
    finally:
        if lock is not None:
            lock.close()


def _tour(args: argparse.Namespace, names: list[str]) -> int:
    results = []
    for i, name in enumerate(names, 1):
        print(f"[tour] ({i}/{len(names)}) {name}: {REGISTRY[name]}", file=sys.stderr, flush=True)
        start = time.perf_counter()
        workdir = args.workdir / name
        try:
            experiment = load(name)
            config = experiment.make_config(quick=args.quick, seed=args.seed)
            summary = run_experiment(experiment, config, workdir, quick=args.quick)
            results.append({"name": name, "ok": True, "seconds": time.perf_counter() - start, "summary": summary})
        except KeyboardInterrupt as e:
            e.genjax_workdir = workdir  # where the generic message looks for checkpoints
            raise
        except Exception as e:  # keep touring; the report says what failed
            tb = traceback.format_exc()
            # a config or workdir problem is one line; anything else is a bug: its traceback
            print(f"error: {e}" if isinstance(e, (ConfigError, FloatingPointError)) else tb, file=sys.stderr)
            results.append({"name": name, "ok": False, "seconds": time.perf_counter() - start,
                            "error": f"{type(e).__name__}: {e}", "traceback": tb})
        print(f"[tour] {name}: {'ok' if results[-1]['ok'] else 'FAILED'} "
              f"in {results[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    write_tour_report(args.workdir, results, quick=args.quick)
    failed = [r["name"] for r in results if not r["ok"]]
    print(f"[tour] report: {args.workdir / 'report.html'} (index: {args.workdir / 'index.md'})", file=sys.stderr)
    if failed:
        print(f"[tour] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_tour_report(workdir: Path, results: list[dict], quick: bool) -> None:
    title = "genjax experiment tour" + (" (--quick)" if quick else "")
    index = [f"# {title}", "", "| experiment | status | seconds | report |", "| --- | --- | --- | --- |"]
    nav, sections = [], []
    for r in results:
        name = r["name"]
        status = "ok" if r["ok"] else "FAILED"
        index.append(f"| {name} | {status} | {r['seconds']:.1f} | [{name}/report.md]({name}/report.md) |")
        nav.append(f'<li><a href="#{name}">{name}</a> ({status}, {r["seconds"]:.1f} s)</li>')
        if r["ok"]:
            body = report_lib.Report.load(workdir / name).to_html(heading_offset=1)
        else:
            err = report_lib.html.escape(r["traceback"])
            body = f'<h2>{name}</h2><p class="failed">failed: {report_lib.html.escape(r["error"])}</p><pre>{err}</pre>'
        sections.append(f'<section id="{name}">{body}</section>')
    index.append("")
    report_lib.atomic_write_text(workdir / "index.md", "\n".join(index))
    body = f"<h1>{title}</h1><nav><ul>{''.join(nav)}</ul></nav>" + "\n<hr>\n".join(sections)
    report_lib.atomic_write_text(workdir / "report.html", report_lib.html_page(title, body))
    report_lib.write_json(workdir / "summary.json", {
        "quick": quick,
        "experiments": [{k: v for k, v in r.items() if k != "traceback"} for r in results],
    })
