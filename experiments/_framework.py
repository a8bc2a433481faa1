"""The experiment framework: typed configs, the command line, run directories, the tour.

An experiment module defines a frozen dataclass config (defaults reproduce the paper or the
course), a `QUICK` dict of overrides (the documented small config that `--quick` selects: the same
code path, smaller numbers) and a `run(ctx) -> dict` function, and registers them as

    EXPERIMENT = Experiment(name="info_theory", title="...", config=Config, quick=QUICK, run=run)

    if __name__ == "__main__":
        EXPERIMENT.main()

`run` writes figures and tables into `ctx.report`, metrics into `ctx.metrics`, and returns the
summary (final numbers) that lands in `summary.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from genjax import report as report_lib

DEFAULT_RUNS_DIR = Path("runs")

# Config fields that may change when a run directory is reused: they extend or re-pace a run
# without changing what its first steps compute.
RESUMABLE_FIELDS = frozenset({"steps", "checkpoint_every", "eval_every", "log_every"})


class ConfigError(ValueError):
    """A bad command line or config override; the message lists what is valid."""


@dataclasses.dataclass
class Context:
    """What an experiment's `run` receives."""

    name: str
    config: Any  # the experiment's frozen config dataclass
    workdir: Path
    quick: bool
    report: report_lib.Report
    metrics: report_lib.MetricsLog | report_lib.NullSink
    is_main_process: bool = True
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # launcher options

    def log(self, message: str) -> None:
        """Prints a progress line on the main process (stderr, so stdout stays clean)."""
        if self.is_main_process:
            print(f"[{self.name}] {message}", file=sys.stderr, flush=True)

    def fit(self, state: Any, step_fn: Any, source: Any, *, subdir: str | None = None, **kwargs: Any):
        """`genjax.train.fit` with this run's config: steps, checkpoint_every, log_every,
        parallel ("auto": sharded over all devices when there are several, else one device),
        checkpoints and metrics under the workdir (or `workdir/subdir` for a run's sub-model)."""
        import jax

        from genjax import train

        cfg = self.config
        parallel = getattr(cfg, "parallel", "auto")
        if parallel == "auto":
            parallel = "sharded" if jax.device_count() > 1 else "none"
        workdir = self.workdir / subdir if subdir else self.workdir
        options = dict(
            num_steps=cfg.steps,
            workdir=workdir,
            checkpoint_every=cfg.checkpoint_every,
            log_every=getattr(cfg, "log_every", 100),
            keep_checkpoints=getattr(cfg, "keep_checkpoints", 3),
            parallel=parallel,
            description=f"{self.name}/{subdir}" if subdir else self.name,
        )
        options.update(kwargs)
        return train.fit(state, step_fn, source, **options)


@dataclasses.dataclass(frozen=True)
class Built:
    """What every experiment's `build(...)` returns: one trainable model's pieces, by name.

    `init` and `step` are all that `genjax.train.fit` (and the benchmarks) need; the other
    fields are what the experiment itself needs to evaluate or sample the trained model, and are
    None where the model has no such piece.

    Attributes:
      model: the Flax module (a dict of modules for a GAN: "generator", "discriminator").
      init: `init(key) -> TrainState`, the state of one run (one seed).
      step: the train step `(state, batch, axis_name=None) -> (state, metrics)`.
      loss_fn: the loss `step` was made from with `genjax.train.make_train_step`, if it was.
      sample: the generative model's sampler (its signature is in the experiment's `build`).
      schedule: a diffusion noise schedule (`genjax.diffusion.Schedule`).
      apply_fn: the denoiser `(params, x_t, t) -> predicted noise`.
      options: the variant's options (a GAN's `GanOptions`).
    """

    model: Any
    init: Callable[[Any], Any]
    step: Callable[..., Any]
    loss_fn: Callable[..., Any] | None = None
    sample: Callable[..., Any] | None = None
    schedule: Any = None
    apply_fn: Callable[..., Any] | None = None
    options: Any = None


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    description: str
    config: type
    run: Callable[[Context], Mapping[str, Any]]
    quick: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trains: bool = False  # takes --steps/--checkpoint-every and resumes from checkpoints
    # config fields that only affect what happens after training (e.g. how many samples are
    # scored): a finished or interrupted run may be resumed with other values of these
    evaluation_fields: frozenset[str] = frozenset()

    def __post_init__(self):
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"Experiment {self.name!r}: config must be a dataclass type, got {self.config!r}")
        names = {f.name for f in dataclasses.fields(self.config)}
        if "seed" not in names:
            raise TypeError(f"Experiment {self.name!r}: its config needs a `seed: int` field")
        if self.trains and not {"steps", "checkpoint_every"} <= names:
            raise TypeError(f"Experiment {self.name!r} trains, so its config needs `steps` and `checkpoint_every`")
        bad = set(self.evaluation_fields) - names
        if bad:
            raise TypeError(f"Experiment {self.name!r}: evaluation_fields {sorted(bad)} are not config fields")
        bad = set(self.quick) - names
        if bad:
            raise TypeError(f"Experiment {self.name!r}: quick overrides {sorted(bad)} are not config fields")

    # configs -------------------------------------------------------------------------------
    def make_config(self, quick: bool = False, **overrides: Any) -> Any:
        """The default config, with the quick overrides if `quick`, then `overrides` (typed)."""
        fields = config_fields(self.config)
        unknown = set(overrides) - set(fields)
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {sorted(unknown)} for experiment {self.name!r}; "
                f"valid fields: {', '.join(sorted(fields))}"
            )
        values = dict(self.quick) if quick else {}
        for k, v in overrides.items():
            values[k] = coerce(v, fields[k], k)
        return dataclasses.replace(self.config(), **values)

    # command line --------------------------------------------------------------------------
    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=f"python -m experiments.{self.name}",
            description=f"{self.title}. {self.description}",
        )
        p.add_argument("--workdir", type=Path, default=None, help=f"run directory (default: runs/{self.name})")
        p.add_argument("--quick", action="store_true", help=f"the small config: {dict(self.quick)}")
        add_distributed_flags(p) if self.trains else None
        defaults = self.config()
        for name, tp in config_fields(self.config).items():
            flag = "--" + name.replace("_", "-")
            default = getattr(defaults, name)
            p.add_argument(flag, dest=name, default=None, metavar=type_name(tp),
                           help=f"default {default!r}" + (f"; --quick: {self.quick[name]!r}" if name in self.quick else ""))
        return p

    def parse_args(self, argv: Sequence[str] | None) -> tuple[Any, Path, bool, dict[str, Any]]:
        p = self.parser()
        args, unknown = p.parse_known_args(argv)
        if unknown:
            valid = ["--workdir", "--quick"] + ["--" + n.replace("_", "-") for n in config_fields(self.config)]
            raise ConfigError(
                f"unknown argument(s) {' '.join(unknown)} for experiment {self.name!r}; valid options: "
                + ", ".join(valid)
            )
        overrides = {n: getattr(args, n) for n in config_fields(self.config) if getattr(args, n) is not None}
        config = self.make_config(quick=args.quick, **overrides)
        workdir = args.workdir or DEFAULT_RUNS_DIR / self.name
        extra = {k: getattr(args, k) for k in DISTRIBUTED_FLAGS if hasattr(args, k)}
        return config, workdir, args.quick, extra

    def main(self, argv: Sequence[str] | None = None) -> int:
        try:
            config, workdir, quick, extra = self.parse_args(argv)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        summary = run_experiment(self, config, workdir, quick=quick, extra=extra)
        print(f"[{self.name}] done: {workdir}/report.md", file=sys.stderr)
        for k, v in summary.items():
            if isinstance(v, (int, float, str)) and k not in ("experiment",):
                print(f"  {k}: {report_lib.format_number(v) if not isinstance(v, str) else v}")
        return 0


# ------------------------------------------------------------------------------ typing helpers


def config_fields(config_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return f"{type_name(typing.get_args(tp)[0])},..."
    if origin is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(tp))) + "}"
    if origin in (typing.Union, types.UnionType):
        return "|".join(type_name(a) for a in typing.get_args(tp) if a is not type(None))
    return getattr(tp, "__name__", str(tp)).upper()


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Converts a command-line string (or a Python value) to the field's declared type."""
    origin = typing.get_origin(tp)
    flag = "--" + name.replace("_", "-")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "")):
            return None
        return coerce(value, args[0], name)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if value == c or (isinstance(value, str) and str(c) == value):
                return c
        raise ConfigError(f"{flag}: expected one of {list(choices)}, got {value!r}")
    if origin is tuple:
        (elem, *rest) = typing.get_args(tp)
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(coerce(v.strip() if isinstance(v, str) else v, elem, name) for v in items if v != "")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{flag}: expected a boolean (true/false), got {value!r}")
    if tp in (int, float, str):
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{flag}: expected an integer, got {value!r}")
        if tp is int and isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                try:
                    f = float(value)  # accept 1e4
                except ValueError:
                    f = None
                if f is not None and f.is_integer():
                    return int(f)
                raise ConfigError(f"{flag}: expected an integer, got {value!r}") from None
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{flag}: expected {tp.__name__}, got {value!r}") from None
    return value


# ------------------------------------------------------------------------------ distributed flags

DISTRIBUTED_FLAGS = ("distributed", "coordinator_address", "num_processes", "process_id")


def add_distributed_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("multi-host")
    g.add_argument("--distributed", action="store_true",
                   help="initialize jax.distributed (flags below, or the cluster's environment variables)")
    g.add_argument("--coordinator-address", default=None, help="host:port of process 0")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)


# ------------------------------------------------------------------------------ running


def environment_info() -> dict[str, Any]:
    import jax

    devices = jax.devices()
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def run_experiment(
    experiment: Experiment,
    config: Any,
    workdir: str | os.PathLike,
    *,
    quick: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs one experiment into `workdir` and returns its summary (also in `summary.json`)."""
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")

    extra = dict(extra or {})
    if extra.get("distributed"):
        from genjax import train

        train.initialize_distributed(
            coordinator_address=extra.get("coordinator_address"),
            num_processes=extra.get("num_processes"),
            process_id=extra.get("process_id"),
        )
    import jax

    is_main = jax.process_index() == 0
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "config.json"
    config_record = {"experiment": experiment.name, "quick": quick, "config": config}
    if config_path.exists():
        check_config_compatible(experiment.name, report_lib.read_json(config_path), config_record,
                                experiment.evaluation_fields)
    if is_main:
        report_lib.write_json(config_path, config_record)

    ctx = Context(
        name=experiment.name,
        config=config,
        workdir=workdir,
        quick=quick,
        report=report_lib.Report(experiment.title, workdir, enabled=is_main),
        metrics=report_lib.MetricsLog(workdir / "metrics.jsonl") if is_main else report_lib.NullSink(),
        is_main_process=is_main,
        extra=extra,
    )
    start = time.perf_counter()
    result = dict(experiment.run(ctx))
    summary = {
        "experiment": experiment.name,
        "quick": quick,
        "seed": config.seed,
        **result,
        "wall_time_s": time.perf_counter() - start,
        **environment_info(),
    }
    if is_main:
        report_lib.write_json(workdir / "summary.json", summary)
        ctx.report.save()
    return summary


def check_config_compatible(name: str, old: Mapping[str, Any], new: Mapping[str, Any],
                            evaluation_fields: frozenset[str] = frozenset()) -> None:
    """A run directory is reused only by the same experiment with the same config, apart from
    `RESUMABLE_FIELDS` and the experiment's `evaluation_fields`."""
    new = report_lib.to_jsonable(new)
    if old.get("experiment") != name:
        raise ConfigError(
            f"workdir holds a run of experiment {old.get('experiment')!r}, not {name!r}; choose another --workdir"
        )
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    diff = {k for k in set(old_cfg) | set(new_cfg) if old_cfg.get(k) != new_cfg.get(k)}
    diff -= RESUMABLE_FIELDS | evaluation_fields
    if diff:
        details = ", ".join(f"{k}: {old_cfg.get(k)!r} -> {new_cfg.get(k)!r}" for k in sorted(diff))
        raise ConfigError(
            f"workdir already holds a {name} run with a different config ({details}); "
            "resume it with the same options, or choose another --workdir"
        )
