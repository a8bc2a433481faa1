"""The experiment framework: typed configs, the command line, run directories, the tour.

An experiment module defines a frozen dataclass config (defaults reproduce the paper or the
course), a `QUICK` dict of overrides (the documented small config that `--quick` selects: the same
code path, smaller numbers), optionally more named presets of overrides (`presets`, e.g.
`{"standard": STANDARD}`: `--preset standard`, a CPU hour instead of minutes) and a
`run(ctx) -> dict` function, and registers them as

    EXPERIMENT = Experiment(name="info_theory", title="...", config=Config, quick=QUICK, run=run)

    if __name__ == "__main__":
        raise SystemExit(EXPERIMENT.main())

`run` writes figures and tables into `ctx.report`, metrics into `ctx.metrics`, and returns the
summary (final numbers) that lands in `summary.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
    quick: bool  # preset == "quick"
    report: report_lib.Report
    metrics: report_lib.MetricsLog | report_lib.NullSink
    is_main_process: bool = True
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # launcher options
    preset: str = "default"  # the named preset the config came from: "default", "quick", "standard", ...

    def log(self, message: str) -> None:
        """Prints a progress line on the main process (stderr, so stdout stays clean)."""
        if self.is_main_process:
            print(f"[{self.name}] {message}", file=sys.stderr, flush=True)

    def fit(self, state: Any, step_fn: Any, source: Any, *, subdir: str | None = None, **kwargs: Any):
        """`genjax.train.fit` with this run's config: steps, checkpoint_every, log_every,
        parallel ("auto": sharded over all devices when there are several, else one device;
        `genjax.train.resolve_parallel`), checkpoints and metrics under the workdir (or
        `workdir/subdir` for a run's sub-model)."""
        from genjax import train

        cfg = self.config
        workdir = self.workdir / subdir if subdir else self.workdir
        options = dict(
            num_steps=cfg.steps,
            workdir=workdir,
            checkpoint_every=cfg.checkpoint_every,
            log_every=getattr(cfg, "log_every", 100),
            keep_checkpoints=getattr(cfg, "keep_checkpoints", 3),
            parallel=getattr(cfg, "parallel", "auto"),
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
    # named presets beyond "default" (the config's own values) and "quick" (`quick`)
    presets: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
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
        for preset, values in {"quick": self.quick, **self.presets}.items():
            bad = set(values) - names
            if bad:
                raise TypeError(f"Experiment {self.name!r}: {preset} overrides {sorted(bad)} are not config fields")
        if {"default", "quick"} & set(self.presets):
            raise TypeError(f"Experiment {self.name!r}: 'default' and 'quick' are not names for `presets`")

    @property
    def preset_names(self) -> tuple[str, ...]:
        """"default", "quick", then the experiment's own presets."""
        return ("default", "quick", *self.presets)

    def preset_overrides(self, preset: str) -> dict[str, Any]:
        """The overrides of a named preset ("default": none)."""
        if preset not in self.preset_names:
            raise ConfigError(f"--preset: experiment {self.name!r} has no preset {preset!r}; "
                              f"available: {', '.join(self.preset_names)}")
        return {} if preset == "default" else dict(self.quick if preset == "quick" else self.presets[preset])

    def nearest_preset(self, preset: str) -> str:
        """`preset` if this experiment has it, else "quick": the tour's and a prerequisite's
        fallback (every named preset is CPU-sized, so a `--preset standard` tour runs the
        chapters that have no standard preset at their quick size)."""
        if preset in self.preset_names:
            return preset
        return "quick"

    # configs -------------------------------------------------------------------------------
    def make_config(self, quick: bool = False, preset: str | None = None, **overrides: Any) -> Any:
        """The default config, with a preset's overrides (`quick=True` is `preset="quick"`),
        then `overrides` (typed)."""
        preset = resolve_preset(quick, preset)
        fields = config_fields(self.config)
        unknown = set(overrides) - set(fields)
        if unknown:
            raise ConfigError(
                f"unknown config field(s) {sorted(unknown)} for experiment {self.name!r}; "
                f"valid fields: {', '.join(sorted(fields))}"
            )
        values = self.preset_overrides(preset)
        for k, v in overrides.items():
            values[k] = coerce(v, fields[k], k)
        defaults = self.config()
        check_domains(self.config, {f: values.get(f, getattr(defaults, f)) for f in fields})
        try:  # the config's own __post_init__ checks (e.g. names in --models) are config errors too
            return dataclasses.replace(defaults, **values)
        except ConfigError:
            raise
        except ValueError as e:
            raise ConfigError(str(e)) from None

    # command line --------------------------------------------------------------------------
    def parser(self) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog=f"python -m experiments.{self.name}",
            description=f"{self.title}. {self.description}",
            allow_abbrev=False,  # `--step 5` is an unknown option, not `--steps 5`
        )
        p.add_argument("--workdir", type=Path, default=None, help=f"run directory (default: runs/{self.name})")
        p.add_argument("--quick", action="store_true", help=f"the small config (--preset quick): {dict(self.quick)}")
        p.add_argument("--preset", default=None, choices=self.preset_names,
                       help="a named config: default (the paper's), quick (minutes on a CPU)"
                            + "".join(f", {n} {dict(v)}" for n, v in self.presets.items()))
        add_distributed_flags(p) if self.trains else None
        defaults = self.config()
        for name, tp in config_fields(self.config).items():
            flag = "--" + name.replace("_", "-")
            default = getattr(defaults, name)
            p.add_argument(flag, dest=name, default=None, metavar=type_name(tp),
                           help=f"default {default!r}" + (f"; --quick: {self.quick[name]!r}" if name in self.quick else ""))
        return p

    def parse_args(self, argv: Sequence[str] | None) -> tuple[Any, Path, str, dict[str, Any]]:
        """(config, workdir, preset name, launcher options) of a command line."""
        p = self.parser()
        args, unknown = p.parse_known_args(argv)
        if unknown:
            valid = ["--workdir", "--quick", "--preset"] + ["--" + n.replace("_", "-") for n in config_fields(self.config)]
            raise ConfigError(
                f"unknown argument(s) {' '.join(unknown)} for experiment {self.name!r}; valid options: "
                + ", ".join(valid)
            )
        overrides = {n: getattr(args, n) for n in config_fields(self.config) if getattr(args, n) is not None}
        preset = resolve_preset(args.quick, args.preset)
        config = self.make_config(preset=preset, **overrides)
        workdir = args.workdir or DEFAULT_RUNS_DIR / self.name
        extra = {k: getattr(args, k) for k in DISTRIBUTED_FLAGS if hasattr(args, k)}
        return config, workdir, preset, extra

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The command line: 0 when the run finished; 2 and one `error:` line for a bad command
        line, config or workdir (nothing is written then); 1 and one `error:` line when training
        diverged; 130 and one line saying how to resume after Ctrl-C."""
        workdir = None
        try:
            config, workdir, preset, extra = self.parse_args(argv)
            summary = run_experiment(self, config, workdir, preset=preset, extra=extra)
        except (ConfigError, report_lib.DamagedFileError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
        except FloatingPointError as e:  # genjax.train.NonFiniteError: the message says it all
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt as e:
            print(interrupted_message(e, workdir), file=sys.stderr, flush=True)
            return 130
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
        if tp in (int, float) and isinstance(value, bool):
            raise ConfigError(f"{flag}: expected {'an integer' if tp is int else 'a number'}, got {value!r}")
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


# ------------------------------------------------------------------------------ config domains
#
# What a field's value may be follows from its name, the same in every experiment, so that
# `--steps -5`, `--batch-size 0` or `--learning-rate nan` are refused on the command line, before
# anything is written, instead of failing (or silently misbehaving) mid-run. An experiment adds
# its own cross-field checks in its config's `__post_init__` (a ValueError there is a config
# error too).

INT32_MAX = 2**31 - 1  # steps, sizes and counts live in int32 on device
SEED_MAX = 2**32 - 1  # seeds are uint32 (genjax.train.seed_keys, numpy's SeedSequence)

# Integer fields where 0 means "none" (no warmup, no annealing, no augmentation). Every other
# integer field counts something (steps, examples, units, every-N intervals) and must be >= 1,
# except where the field's own default is 0 (that value is "off" by construction).
ZERO_ALLOWED = frozenset({"warmup_steps", "augment_shift", "num_res_blocks", "fourier_levels"})  # 0: none / off


def _float_domain(name: str) -> tuple[float, float, bool, bool, str]:
    """`(low, high, low_open, high_open, words)` of a float field, from its name."""
    inf = float("inf")
    if "learning_rate" in name or name.endswith(("_lr", "_eps", "_std", "_lambdas")) or name in (
            "epsilon", "clip", "grad_clip", "min_snr_gamma"):
        return 0.0, inf, True, True, "> 0"
    if name.endswith("_fraction"):
        return 0.0, 1.0, True, False, "in (0, 1]"
    if name.endswith(("_level", "_target", "_rho")):
        return 0.0, 1.0, False, False, "in [0, 1]"
    if name != "weight_decay" and (name.endswith(("decay", "_rate")) or name in ("adam_b1", "adam_b2",
                                                                                   "label_smoothing")):
        return 0.0, 1.0, False, True, "in [0, 1)"
    if name.endswith(("_weight", "_gamma", "beta", "betas", "_threshold", "_alpha", "_separation", "_noise",
                      "_averaging")) or name == "weight_decay":
        return 0.0, inf, False, True, ">= 0"
    return -inf, inf, True, True, "finite"


def _check_scalar(name: str, value: Any, tp: Any, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{flag}: expected an integer, got {value!r}")
        if name == "seed":
            low, high = 0, SEED_MAX
        else:
            low, high = (0 if name in ZERO_ALLOWED or name.endswith("_anneal_steps") or default == 0 else 1), INT32_MAX
        if not low <= value <= high:
            raise ConfigError(f"{flag}: expected an integer in [{low}, {high}], got {value}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{flag}: expected a number, got {value!r}")
        value = float(value)
        low, high, low_open, high_open, words = _float_domain(name)
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
        if not ok:
            raise ConfigError(f"{flag}: expected a finite number{'' if words == 'finite' else ' ' + words}, "
                              f"got {value!r}")


def check_domains(config_cls: type, values: Mapping[str, Any]) -> None:
    """Checks every field's value against its domain (see above); raises `ConfigError`."""
    fields = config_fields(config_cls)
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    for name, tp in fields.items():
        value = values[name]
        origin = typing.get_origin(tp)
        if origin in (typing.Union, types.UnionType):
            if value is None:
                continue
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
            origin = typing.get_origin(tp)
        if origin is tuple:
            if not isinstance(value, tuple) or not value:
                raise ConfigError(f"--{name.replace('_', '-')}: expected at least one value (comma-separated), "
                                  f"got {value!r}")
            elem = typing.get_args(tp)[0]
            dflt = defaults[name]
            for v in value:
                _check_scalar(name, v, elem, None if isinstance(dflt, tuple) and 0 not in dflt else 0)
        elif origin is typing.Literal:
            if value not in typing.get_args(tp):
                raise ConfigError(f"--{name.replace('_', '-')}: expected one of {list(typing.get_args(tp))}, "
                                  f"got {value!r}")
        else:
            _check_scalar(name, value, tp, defaults[name])
    for name in fields:  # pairs of bounds: grid_min < grid_max
        if name.endswith("_min") and name[:-4] + "_max" in fields:
            lo, hi = values[name], values[name[:-4] + "_max"]
            if not lo < hi:
                raise ConfigError(f"--{name.replace('_', '-')} ({lo}) must be below "
                                  f"--{name[:-4].replace('_', '-')}-max ({hi})")


def check_config(experiment: "Experiment", config: Any) -> None:
    """The domain checks of a config instance (e.g. one made with `dataclasses.replace`)."""
    if not isinstance(config, experiment.config):
        raise ConfigError(f"experiment {experiment.name!r} needs a {experiment.config.__name__} config, "
                          f"got {type(config).__name__}")
    check_domains(experiment.config, {f.name: getattr(config, f.name) for f in dataclasses.fields(config)})


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
    preset: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs one experiment into `workdir` and returns its summary (also in `summary.json`).
    `preset` names the preset `config` was made from (`quick=True` is `preset="quick"`); it is
    recorded in `config.json` and `summary.json` and passed to `run` as `ctx.preset`.

    Before anything is written it checks the config's domains (`check_config`), the image data
    (`check_data_available`), that `workdir` is a directory or can be one, and that a run already
    there has a compatible config; then it locks `workdir` (one run at a time) and writes
    `config.json`.

    Raises:
      ConfigError: any of those checks failed (nothing was written), or the data went missing.
      genjax.train.NonFiniteError: training diverged.
      KeyboardInterrupt: Ctrl-C (`genjax.train.TrainingInterrupted` when it stopped training);
        the same call resumes from the checkpoints.
    """
    import matplotlib

    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")

    extra = dict(extra or {})
    preset = resolve_preset(quick, preset)
    quick = preset == "quick"
    # Everything that can be checked is checked before the workdir is touched.
    check_config(experiment, config)
    check_data_available(config)
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError(f"--workdir {workdir} exists and is not a directory")
    config_record = {"experiment": experiment.name, "quick": quick, "preset": preset, "config": config}
    read_previous_config(experiment, workdir, config_record)
    if extra.get("distributed"):
        from genjax import train

        train.initialize_distributed(
            coordinator_address=extra.get("coordinator_address"),
            num_processes=extra.get("num_processes"),
            process_id=extra.get("process_id"),
        )
    import jax

    is_main = jax.process_index() == 0
    lock = open_run_directory(experiment, workdir, config_record) if is_main else None
    try:
        return _run_in(experiment, config, workdir, preset, extra, is_main)
    finally:
        if lock is not None:
            lock.close()  # releases the flock


def _run_in(experiment: Experiment, config: Any, workdir: Path, preset: str, extra: dict[str, Any],
            is_main: bool) -> dict[str, Any]:
    from genjax.data import DatasetUnavailableError

    if is_main:
        drop_result_records(workdir / "metrics.jsonl")
    ctx = Context(
        name=experiment.name,
        config=config,
        workdir=workdir,
        quick=preset == "quick",
        report=report_lib.Report(experiment.title, workdir, enabled=is_main),
        metrics=report_lib.MetricsLog(workdir / "metrics.jsonl") if is_main else report_lib.NullSink(),
        is_main_process=is_main,
        extra=extra,
        preset=preset,
    )
    start = time.perf_counter()
    try:
        result = dict(experiment.run(ctx))
    except DatasetUnavailableError as e:  # data that went missing after check_data_available
        raise ConfigError(str(e)) from None
    summary = {
        "experiment": experiment.name,
        "quick": preset == "quick",
        "preset": preset,
        "seed": config.seed,
        **result,
        "wall_time_s": time.perf_counter() - start,
        **environment_info(),
    }
    if is_main:
        report_lib.write_json(workdir / "summary.json", summary)
        ctx.report.save()
    return summary


def drop_result_records(path: Path) -> None:
    """Keeps only the training records (those with an integer "step") of a reused workdir's
    `metrics.jsonl`: the experiment's own result records are recomputed and written again by
    every run (appending would repeat them), and `fit` truncates its records to the checkpoint it
    resumes from. A line cut short by a kill goes too. The file is rewritten atomically."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    kept = [r for r in report_lib.read_jsonl(path) if isinstance(r.get("step"), int)]
    new = "".join(json.dumps(r) + "\n" for r in kept)
    if new != text:
        report_lib.atomic_write_text(path, new)


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


def prerequisite_run(ctx: Context, name: str, needs: Sequence[str], **overrides: Any) -> Path:
    """The run directory of experiment `name` beside this run (`<workdir>/../<name>`: that is
    `runs/<name>` for a single run, `runs/tour/<name>` in the tour), where an experiment finds
    what another one trained (the classifier of FID, the VQ-VAE of latent diffusion).

    If any of the files `needs` is missing there, `name` is trained there first, loudly, with
    seed 0 and `overrides`, at this run's preset (or `Experiment.nearest_preset` of it), so that
    an experiment never silently uses another model.
    """
    from experiments import load

    directory = ctx.workdir.resolve().parent / name
    missing = [f for f in needs if not (directory / f).exists()]
    if missing:
        exp = load(name)
        preset = exp.nearest_preset(ctx.preset)
        ctx.log(f"no {name} run in {directory} (missing {', '.join(missing)}); training it there first "
                f"({preset} preset)")
        run_experiment(exp, exp.make_config(preset=preset, seed=0, **overrides), directory, preset=preset)
    return directory


def resolve_preset(quick: bool, preset: str | None) -> str:
    """The preset name of `quick` and `preset` together (`quick=True` is "quick")."""
    if preset is not None and not isinstance(preset, str):
        raise TypeError(f"preset: expected a preset name (str) or None, got {type(preset).__name__}")
    if quick and preset not in (None, "quick"):
        raise ConfigError(f"--quick is --preset quick; it cannot be combined with --preset {preset}")
    return "quick" if quick else (preset or "default")


# ------------------------------------------------------------------------------ run directories

LOCK_FILE = ".lock"  # holds the pid of the run that has the workdir (flock, released at exit)


EMBEDDED_TRAIN_SIZE = 9_000  # genjax.data.split_size('mnist', 'train', 'embedded')


def check_data_available(config: Any) -> None:
    """Refuses, before anything is written, a config whose image data cannot be had here:
    `--data-source tfds` (or a dataset other than MNIST) with no prepared TFDS data and no way
    to prepare it, or `--data-source embedded` for a dataset other than MNIST. The automatic
    choice for MNIST always has data (the embedded fallback) and is not probed twice."""
    source = getattr(config, "data_source", None)
    if source is None:
        return
    dataset = getattr(config, "dataset", "mnist")
    batch_size = getattr(config, "batch_size", None)
    # The smallest training split any source gives (the embedded 9,000 for MNIST): a batch that
    # fits it fits every source, so the automatic MNIST choice need not be probed for it.
    if source == "auto" and dataset == "mnist" and (batch_size is None or batch_size <= EMBEDDED_TRAIN_SIZE):
        return
    from genjax import data

    for split in ("train", "test"):
        try:
            resolved = data.resolve_source(dataset, split, source=source, data_dir=getattr(config, "data_dir", None))
        except (ValueError, data.DatasetUnavailableError) as e:
            raise ConfigError(str(e)) from None
        if split == "train" and isinstance(batch_size, int):
            size = data.split_size(dataset, split, resolved)
            if batch_size > size:
                raise ConfigError(
                    f"--batch-size {batch_size} exceeds the {size:,} training images of {dataset} "
                    f"({resolved} data): an epoch would have no full batch; use at most {size}"
                )


def read_previous_config(experiment: Experiment, workdir: Path, record: Mapping[str, Any]) -> None:
    """If `workdir` already holds a run, checks that `record` may continue it."""
    path = workdir / "config.json"
    if not path.exists():
        return
    try:
        old = report_lib.read_json(path)
        if not isinstance(old, dict):
            raise ValueError(f"expected a JSON object, got {type(old).__name__}")
    except (OSError, ValueError) as e:
        reason = e.reason if isinstance(e, report_lib.DamagedFileError) else f"{type(e).__name__}: {e}"
        raise ConfigError(
            f"{path} is unreadable ({reason}); genjax writes it atomically, so it was "
            "damaged or written by something else: remove it (or the whole workdir) or choose another --workdir"
        ) from None
    check_config_compatible(experiment.name, old, record, experiment.evaluation_fields)


class _NoLock:
    def close(self) -> None:
        pass


def lock_run_directory(workdir: Path) -> Any:
    """An exclusive lock on `workdir` (an flock on `workdir/.lock`, released when the returned
    file is closed or the process dies); a second run on the same workdir is a `ConfigError`."""
    try:
        import fcntl
    except ImportError:  # no flock on this platform: no protection against a second run
        return _NoLock()
    f = open(workdir / LOCK_FILE, "a+", encoding="utf-8")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise ConfigError(f"--workdir {workdir} is in use by another run" + (f" (pid {holder})" if holder else "")
                          + "; wait for it to finish, or choose another --workdir") from None
    except OSError:  # a filesystem without flock (some network filesystems): run unprotected
        f.close()
        return _NoLock()
    except BaseException:
        f.close()
        raise
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def open_run_directory(experiment: Experiment, workdir: Path, record: Mapping[str, Any]) -> Any:
    """Creates and locks `workdir` and writes `config.json`; returns the lock (close it at the
    end). An unwritable workdir is a `ConfigError` naming the OS's reason."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        lock = lock_run_directory(workdir)
        try:
            read_previous_config(experiment, workdir, record)  # again: another run may have started here
            report_lib.write_json(workdir / "config.json", record)
        except BaseException:
            lock.close()
            raise
    except OSError as e:
        reason = e.strerror or str(e)
        where = f" ({e.filename})" if getattr(e, "filename", None) and Path(e.filename) != workdir else ""
        raise ConfigError(f"cannot write to --workdir {workdir}: {reason}{where}") from None
    return lock


def latest_checkpoint(workdir: str | os.PathLike | None) -> tuple[Path, int] | None:
    """`(checkpoints directory, step)` of the most recently written checkpoint under `workdir`
    (its own `checkpoints/` or a sub-model's `<sub>/checkpoints/`), or None."""
    if workdir is None:
        return None
    found = []
    for d in [Path(workdir) / "checkpoints", *Path(workdir).glob("*/checkpoints")]:
        try:
            found += [(p.stat().st_mtime, int(p.name), d) for p in d.iterdir() if p.name.isdigit() and p.is_dir()]
        except OSError:
            continue
    if not found:
        return None
    _, step, d = max(found)
    return d, step


def interrupted_message(error: BaseException, workdir: str | os.PathLike | None) -> str:
    """The one line printed after Ctrl-C: where the run stopped and what resumes it."""
    if hasattr(error, "step") and hasattr(error, "checkpoint"):  # genjax.train.TrainingInterrupted
        return str(error)
    latest = latest_checkpoint(workdir)
    if latest is None:
        return "interrupted before any checkpoint was written; the same command starts the run again"
    directory, step = latest
    return f"interrupted; the same command resumes from checkpoint {step} ({directory})"
