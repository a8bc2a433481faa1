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

from experiments import NOT_IN_TOUR, REGISTRY, load
from experiments._framework import (
    DEFAULT_RUNS_DIR,
    SEED_MAX,
    ConfigError,
    interrupted_message,
    lock_run_directory,
    resolve_preset,
    run_experiment,
)
from genjax import report as report_lib


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments tour", description=__doc__.splitlines()[0],
                                allow_abbrev=False)
    p.add_argument("--quick", action="store_true", help="each experiment's small config (minutes on a CPU): --preset quick")
    p.add_argument("--preset", default=None, help="each experiment's named preset (default, quick, standard); an "
                                                   "experiment without it runs its quick preset")
    p.add_argument("--workdir", type=Path, default=DEFAULT_RUNS_DIR / "tour")
    p.add_argument("--seed", type=int, default=0, help=f"every experiment's seed, in [0, {SEED_MAX}]")
    p.add_argument("--only", default=None, help="comma-separated experiment names (default: all but "
                                                 f"{', '.join(sorted(NOT_IN_TOUR))})")
    return p.parse_args(argv)


def selected(only: str | None) -> list[str]:
    """The experiments `--only` names, in the order given (without `--only`: all of them but
    `NOT_IN_TOUR`)."""
    if only is None:
        return [n for n in REGISTRY if n not in NOT_IN_TOUR]
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
        args.preset = resolve_preset(args.quick, args.preset)
        args.quick = args.preset == "quick"
        names = selected(args.only)
        known = {p for n in names for p in load(n).preset_names}
        if args.preset not in known:
            raise ConfigError(f"--preset: no experiment of the tour has a preset {args.preset!r}; "
                              f"available: {', '.join(sorted(known))}")
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
            preset = experiment.nearest_preset(args.preset)
            config = experiment.make_config(preset=preset, seed=args.seed)
            summary = run_experiment(experiment, config, workdir, preset=preset)
            results.append({"name": name, "ok": True, "seconds": time.perf_counter() - start, "summary": summary,
                            "preset": preset})
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
    write_tour_report(args.workdir, results, quick=args.quick, preset=args.preset)
    failed = [r["name"] for r in results if not r["ok"]]
    print(f"[tour] report: {args.workdir / 'report.html'} (index: {args.workdir / 'index.md'})", file=sys.stderr)
    if failed:
        print(f"[tour] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def write_tour_report(workdir: Path, results: list[dict], quick: bool, preset: str | None = None) -> None:
    preset = resolve_preset(quick, preset)
    title = "genjax experiment tour" + ("" if preset == "default" else f" (--preset {preset})")
    index = [f"# {title}", "", "| experiment | preset | status | seconds | report |", "| --- | --- | --- | --- | --- |"]
    nav, sections = [], []
    for r in results:
        name = r["name"]
        status = "ok" if r["ok"] else "FAILED"
        index.append(f"| {name} | {r.get('preset', preset)} | {status} | {r['seconds']:.1f} | [{name}/report.md]({name}/report.md) |")
        nav.append(f'<li><a href="#{name}">{name}</a> ({status}, {r["seconds"]:.1f} s)</li>')
        if r["ok"]:
            body = report_lib.Report.load(workdir / name).to_html(heading_offset=1)
        else:
            err = report_lib.html.escape(r["traceback"])
            body = f'<h2>{name}</h2><p class="failed">failed: {report_lib.html.escape(r["error"])}</p><pre>{err}</pre>'
        sections.append(f'<section id="{name}">{body}</section>')
    closing = closing_comparison(workdir, results)
    if closing is not None:
        index.append("| closing comparison | - | ok | - | [closing/report.md](closing/report.md) |")
        nav.append('<li><a href="#closing">closing comparison: FID against CPU seconds</a></li>')
        sections.append(f'<section id="closing">{closing.to_html(heading_offset=1)}</section>')
    index.append("")
    report_lib.atomic_write_text(workdir / "index.md", "\n".join(index))
    body = f"<h1>{title}</h1><nav><ul>{''.join(nav)}</ul></nav>" + "\n<hr>\n".join(sections)
    report_lib.atomic_write_text(workdir / "report.html", report_lib.html_page(title, body))
    report_lib.write_json(workdir / "summary.json", {
        "quick": preset == "quick",
        "preset": preset,
        "experiments": [{k: v for k, v in r.items() if k != "traceback"} for r in results],
    })


def generator_records(results: list[dict]) -> list[dict]:
    """Every image generator's record (`experiments._features.generator_record`) in the summaries
    of the experiments that succeeded, each with its experiment's name, in tour order."""
    records = []
    for r in results:
        if r["ok"]:
            for g in r["summary"].get("generators", ()):
                records.append({"experiment": r["name"], **g})
    return records


def separate_labels(fig, labels, step_points: float = 9.0, tries: int = 12) -> None:
    """Moves each annotation in `labels` (in order) down by `step_points` until its box overlaps
    none placed before it (at most `tries` moves), so that close points keep readable labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for label in labels:
        x, y = label.get_position()
        for _ in range(tries):
            box = label.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            y -= step_points
            label.set_position((x, y))
        placed.append(label.get_window_extent(renderer))


def closing_comparison(workdir: Path, results: list[dict]):
    """The course's closing comparison, `<workdir>/closing/`: every image generator's
    MNIST-feature FID against its CPU seconds (training plus sampling 1,000 images), one labelled
    point each, and the same as a table. None when no experiment reported a generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = generator_records(results)
    if not records:
        return None
    rep = report_lib.Report("Closing comparison: every image generator on one scale", workdir / "closing")
    floors = sorted({round(g["real_fid"], 3) for g in records})
    rep.text("Each point is one image generator of the course, trained in this tour: its MNIST-feature FID "
             "(1,000 samples against the 1,000 held-out digits, features of the tour's classifier) against the "
             "wall-clock seconds it cost on this machine: training (including the autoencoder a latent model builds on) plus "
             "sampling 1,000 images. Lower left is better; the dotted line is the floor, 1,000 real training "
             f"digits scored the same way (FID {', '.join(f'{f:.2f}' for f in floors)}). A thin line through a "
             "point is that model's FID during its training, at the seconds a run stopped there would have "
             "cost (the diffusion models: so latent and pixel diffusion compare at equal wall clock).")
    fig, ax = plt.subplots(figsize=(8, 5.5))
    families = sorted({g["experiment"] for g in records}, key=[g["experiment"] for g in records].index)
    labels = []
    for g in records:
        seconds = g["train_seconds"] + g["seconds_per_1000"]
        color = f"C{families.index(g['experiment']) % 10}"
        if g.get("curve"):  # FID during training: where a shorter run of the same model would have been
            ax.plot([p["seconds"] for p in g["curve"]], [p["fid"] for p in g["curve"]], "-", color=color, lw=1,
                    alpha=0.6, marker=".", ms=4, zorder=2)
        ax.scatter(seconds, g["fid"], color=color, s=30, zorder=3)
        labels.append(ax.annotate(g["label"], (seconds, g["fid"]), textcoords="offset points", xytext=(5, 4),
                                  fontsize=8))
    for k, f in enumerate(floors):
        ax.axhline(f, color="k", ls=":", lw=1, label="floor (real digits)" if k == 0 else None)
        ax.axhline(10 * f, color="0.5", ls="--", lw=0.8, label="10x the floor" if k == 0 else None)
    for k, fam in enumerate(families):
        ax.scatter([], [], color=f"C{k % 10}", label=fam)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("seconds on this machine (wall clock): training + sampling 1,000 images")
    ax.set_ylabel("MNIST-feature FID (lower is better)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    separate_labels(fig, labels)
    rep.figure(fig, "fid_vs_seconds", caption="FID against CPU seconds, every image generator of the tour")
    plt.close(fig)
    shown = [g for g in records if g.get("samples") and (workdir / g["experiment"] / g["samples"]).exists()]
    if shown:
        import numpy as np

        cols = min(len(shown), 4)
        rows_ = -(-len(shown) // cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(2.9 * cols, 3.2 * rows_), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, g in zip(axes.ravel(), shown):
            images = np.load(workdir / g["experiment"] / g["samples"])[:36]
            ax.imshow(report_lib.image_grid(images, rows=6, cols=6), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{g['label']}\nFID {g['fid']:.1f} ({g['fid'] / g['real_fid']:.1f}x floor)", fontsize=8)
        fig.tight_layout()
        rep.figure(fig, "samples", caption="the first 36 scored samples of every image generator, side by side")
        plt.close(fig)
    rows = sorted(records, key=lambda g: g["fid"])
    rep.table(["generator", "experiment", "MNIST-feature FID", "x floor", "KID", "precision", "recall", "train s",
               "sample s / 1,000", "total s", "note"],
              [(g["label"], g["experiment"], g["fid"], g["fid"] / g["real_fid"], g["kid"], g.get("precision", "-"),
                g.get("recall", "-"), g["train_seconds"], g["seconds_per_1000"],
                g["train_seconds"] + g["seconds_per_1000"], g["note"]) for g in rows],
              caption="sorted by FID; 'x floor' is FID over the floor of the same classifier and sample count; "
                      "precision (fidelity) and recall (diversity): k-NN manifolds of the same features, k = 3 "
                      "(Kynkaanniemi et al. 2019)")
    rep.save()
    report_lib.write_json(workdir / "closing" / "generators.json", {"generators": records})
    return rep
